//! `expnet explain`: headless explanations as JSON Lines or a table.

use crate::explain::Progress;
use crate::model::Model;
use crate::report::{TimedExplanation, report_json, run_methods};
use anyhow::Context;
use clap::{Args, ValueEnum};
use std::io::{BufRead, Write};

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum Format {
    Json,
    Table,
}

#[derive(Args, Debug)]
pub struct ExplainArgs {
    /// Model folder or hub id (default: the embedded MiniLM SST-2 classifier).
    #[arg(long)]
    pub model: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Json)]
    pub format: Format,
    /// Include every attention matrix `[layer][head][query][key]` in the JSON.
    #[arg(long)]
    pub attentions: bool,
    /// Comma-separated methods, or `all` (ExpNet included when one applies to the model).
    #[arg(long, default_value = "attention,rollout")]
    pub methods: String,
    /// ExpNet file (default: one trained for this very model, if any; see README "Which ExpNet").
    #[arg(long)]
    pub expnet: Option<String>,
    /// Class index to explain (default: the predicted class).
    #[arg(long)]
    pub target: Option<usize>,
    /// Read inputs from a file, one per line (`-` = standard input).
    #[arg(long)]
    pub input: Option<String>,
    /// Text to explain (when no --input is given).
    pub text: Vec<String>,
}

pub fn run(args: &ExplainArgs, load_model: impl FnOnce(Option<&str>) -> anyhow::Result<Model>) -> anyhow::Result<()> {
    let selection = super::methods::parse(&args.methods)?;
    let texts = collect_inputs(args)?;
    let model = load_model(args.model.as_deref())?;
    let expnet = super::methods::choose_expnet(args.expnet.as_deref(), &model)?;
    let list = super::methods::build(&selection, &model, &expnet)?;
    if let Some(note) = expnet.net.as_ref().and_then(|(_, e)| e.notice()) {
        eprintln!("{note}");
    }
    for line in &list.skipped {
        eprintln!("note: {line}");
    }
    let methods = list.methods;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for text in texts {
        let enc = model.encode(&text)?;
        if enc.truncated {
            eprintln!("note: input truncated to {} tokens (the model's limit): {:.40}…", enc.len(), text);
        }
        let forward = model.forward(&enc)?;
        let results = run_methods(&model, &enc, &forward, args.target, &methods, &Progress::none())?;
        match args.format {
            Format::Json => {
                let v = report_json(
                    &model.name,
                    &enc,
                    forward.prediction.as_ref(),
                    &results,
                    args.attentions.then_some(&forward.attentions),
                );
                writeln!(out, "{}", serde_json::to_string(&v)?)?;
            }
            Format::Table => write_table(&mut out, &model, &enc, forward.prediction.as_ref(), &results)?,
        }
    }
    Ok(())
}

fn collect_inputs(args: &ExplainArgs) -> anyhow::Result<Vec<String>> {
    let lines: Vec<String> = match args.input.as_deref() {
        Some("-") => std::io::stdin().lock().lines().collect::<Result<_, _>>().context("cannot read standard input")?,
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read input file {path} (hint: one text per line)"))?
            .lines()
            .map(str::to_owned)
            .collect(),
        None => {
            anyhow::ensure!(!args.text.is_empty(), "no text to explain (hint: expnet explain \"a sentence\", or --input FILE)");
            vec![args.text.join(" ")]
        }
    };
    let texts: Vec<String> = lines.into_iter().filter(|l| !l.trim().is_empty()).collect();
    anyhow::ensure!(!texts.is_empty(), "the input has no non-empty lines");
    Ok(texts)
}

fn write_table(
    out: &mut impl Write,
    model: &Model,
    enc: &crate::model::Encoding,
    prediction: Option<&crate::model::Prediction>,
    results: &[TimedExplanation],
) -> anyhow::Result<()> {
    writeln!(out, "text: {}", enc.text)?;
    match prediction {
        Some(p) => {
            let probs: Vec<String> =
                p.labels.iter().zip(&p.probabilities).map(|(l, v)| format!("{l} {v:.3}")).collect();
            writeln!(out, "prediction: {} ({})", p.label(), probs.join(", "))?;
        }
        None => writeln!(out, "prediction: none ({} is a bare encoder)", model.name)?,
    }
    let width = enc.tokens.iter().map(|t| t.text.chars().count()).max().unwrap_or(5).max(5);
    write!(out, "{:<width$}", "token")?;
    for r in results {
        write!(out, " {:>12}", truncate(&r.label, 12))?;
    }
    writeln!(out)?;
    for (i, t) in enc.tokens.iter().enumerate() {
        write!(out, "{:<width$}", t.text)?;
        for r in results {
            write!(out, " {:>12.4}", r.explanation.scores[i])?;
        }
        writeln!(out)?;
    }
    write!(out, "{:<width$}", "ms")?;
    for r in results {
        write!(out, " {:>12.1}", r.ms)?;
    }
    writeln!(out)?;
    writeln!(out)?;
    Ok(())
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}
