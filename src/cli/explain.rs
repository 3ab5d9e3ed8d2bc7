//! `expnet explain`: headless explanations as JSON Lines or a table.

use super::explain_io::{CliProgress, analysed_text, is_broken_pipe, read_lines, surface_texts};
use crate::model::Model;
use crate::report::{TimedExplanation, report_json, run_methods_reporting};
use clap::{Args, ValueEnum};
use std::io::Write;

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
    /// Comma-separated methods, or `all` (ExpNet included when one applies to
    /// the model). Slow ones (seconds to many minutes on long inputs;
    /// progress is shown on stderr): integrated_gradients, flow, occlusion,
    /// lime, kernel_shap.
    #[arg(long, default_value = "attention,rollout")]
    pub methods: String,
    /// ExpNet file (default: one trained for this very model, if any; see README "Which ExpNet").
    #[arg(long)]
    pub expnet: Option<String>,
    /// Class index to explain (default: the predicted class).
    #[arg(long)]
    pub target: Option<usize>,
    /// Read inputs from a file, one per line (`-` = standard input); not
    /// combined with a TEXT argument.
    #[arg(long)]
    pub input: Option<String>,
    /// Text to explain (when no --input is given).
    pub text: Vec<String>,
}

pub fn run(args: &ExplainArgs, load_model: impl FnOnce(Option<&str>) -> anyhow::Result<Model>) -> anyhow::Result<()> {
    // `| head -1` closes the pipe early: stop quietly, like other Unix tools.
    match run_inner(args, load_model) {
        Err(e) if is_broken_pipe(&e) => Ok(()),
        other => other,
    }
}

fn run_inner(args: &ExplainArgs, load_model: impl FnOnce(Option<&str>) -> anyhow::Result<Model>) -> anyhow::Result<()> {
    let selection = super::methods::parse(&args.methods)?;
    let texts = collect_inputs(args)?;
    let model = load_model(args.model.as_deref())?;
    let methods = super::methods::build_for_command(&selection, &model, args.expnet.as_deref())?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let names: Vec<&str> = methods.iter().map(|m| m.name()).collect();
    let progress = CliProgress::new(texts.len(), &names);
    for (i, text) in texts.iter().enumerate() {
        let enc = model.encode(text)?;
        if enc.truncated {
            progress.clear();
            eprintln!("note: input truncated to {} tokens (the model's limit): {:.40}…", enc.len(), text);
        }
        let forward = model.forward(&enc)?;
        progress.start_input(i);
        let results = run_methods_reporting(&model, &enc, &forward, args.target, &methods, &|m, f| progress.report(m, f))?;
        progress.clear();
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

pub(crate) fn collect_inputs(args: &ExplainArgs) -> anyhow::Result<Vec<String>> {
    let lines: Vec<String> = match args.input.as_deref() {
        Some(_) if !args.text.is_empty() => anyhow::bail!(
            "both --input and a TEXT argument were given (hint: put the text in the file, or drop --input to explain \"{:.30}\")",
            args.text.join(" ")
        ),
        Some(spec) => read_lines(spec)?,
        None => {
            anyhow::ensure!(!args.text.is_empty(), "no text to explain (hint: expnet explain \"a sentence\", or --input FILE)");
            let text = args.text.join(" ");
            anyhow::ensure!(!text.trim().is_empty(), "the text to explain is empty (hint: expnet explain \"a sentence\", or --input FILE with one text per line)");
            vec![text]
        }
    };
    let texts: Vec<String> = lines.into_iter().filter(|l| !l.trim().is_empty()).collect();
    anyhow::ensure!(!texts.is_empty(), "the input has no non-empty lines (hint: one text per line)");
    Ok(texts)
}

fn write_table(
    out: &mut impl Write,
    model: &Model,
    enc: &crate::model::Encoding,
    prediction: Option<&crate::model::Prediction>,
    results: &[TimedExplanation],
) -> anyhow::Result<()> {
    // Only the part the model saw: a 20,000-character text cut at 512 tokens
    // prints its first few hundred characters and says how much was left out.
    let (shown, left_out) = analysed_text(enc);
    if left_out > 0 {
        writeln!(out, "text: {shown}… ({left_out} more characters not analysed: the model's limit is {} tokens)", enc.len())?;
    } else {
        writeln!(out, "text: {shown}")?;
    }
    match prediction {
        Some(p) => {
            let probs: Vec<String> =
                p.labels.iter().zip(&p.probabilities).map(|(l, v)| format!("{l} {v:.3}")).collect();
            writeln!(out, "prediction: {} ({})", p.label(), probs.join(", "))?;
        }
        None => writeln!(out, "prediction: none ({} is a bare encoder)", model.name)?,
    }
    // Pieces as the user wrote them (RoBERTa's `Ġgood` shows as `good`).
    let pieces = surface_texts(enc);
    let width = pieces.iter().map(|t| t.chars().count()).max().unwrap_or(5).clamp(5, 40);
    write!(out, "{:<width$}", "token")?;
    for r in results {
        write!(out, " {:>12}", truncate(&r.label, 12))?;
    }
    writeln!(out)?;
    for (i, t) in pieces.iter().enumerate() {
        write!(out, "{:<width$}", truncate(t, width))?;
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
