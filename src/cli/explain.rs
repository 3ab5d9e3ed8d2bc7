//! `expnet explain`: headless explanations as JSON Lines or a table.

use super::explain_io::{CliProgress, analysed_text, is_broken_pipe, surface_texts};
use super::explain_stream::{LineSource, Shard, count_lines_in_background, parse_batch_size};
use crate::explain::Attribution;
use crate::model::{Encoding, ForwardOutput, Gradients, Model};
use crate::report::{TimedExplanation, report_json, resolve_target, run_methods_reporting};
use clap::{Args, ValueEnum};
use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

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
    /// Perturbed inputs per explanation for LIME and KernelSHAP in total
    /// (default: their own, 2·d + 2,048 for KernelSHAP with exact Shapley
    /// values up to 12 words). With it KernelSHAP always samples, as a
    /// distillation teacher with `--samples` does.
    #[arg(long)]
    pub samples: Option<usize>,
    /// Class index to explain (default: the predicted class).
    #[arg(long)]
    pub target: Option<usize>,
    /// Read inputs from a file, one per line (`-` = standard input), and
    /// write each result as soon as it is ready, in input order, each with
    /// its `"line"` number; not combined with a TEXT argument.
    #[arg(long)]
    pub input: Option<String>,
    /// With --input: texts per forward (and shared backward) pass, padded to
    /// the longest [default: 16; 1 = one text at a time].
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub batch_size: Option<String>,
    /// With --input: explain only shard K of N. Line L (counted from 1,
    /// empty lines included) belongs to shard ((L-1) mod N) + 1, so shard K
    /// takes lines K, K+N, K+2N, … (Slurm arrays, Kubernetes indexed Jobs).
    #[arg(long, value_name = "K/N", allow_hyphen_values = true)]
    pub shard: Option<String>,
    /// Text to explain (when no --input is given).
    pub text: Vec<String>,
}

/// Lines read ahead and sorted by token count before they are cut into
/// batches, in batches: texts of similar length share a batch, so padding
/// adds ~13% work instead of ~80% (16 SST-2 sentences in input order).
const WINDOW_BATCHES: usize = 8;

/// A batch also stops growing once texts × longest² would pass this
/// (16 texts of 128 tokens): padded attention matrices of long texts stay
/// within tens of megabytes instead of growing with the batch.
const BATCH_CELLS: usize = 16 * 128 * 128;

pub fn run(args: &ExplainArgs, load_model: impl FnOnce(Option<&str>) -> anyhow::Result<Model>) -> anyhow::Result<()> {
    // `| head -1` closes the pipe early: stop quietly, like other Unix tools.
    match run_inner(args, load_model) {
        Err(e) if is_broken_pipe(&e) => Ok(()),
        other => other,
    }
}

/// What to explain: one TEXT argument, or the lines of --input.
enum Inputs {
    One(String),
    Lines(LineSource),
}

fn open_inputs(args: &ExplainArgs, shard: Option<Shard>, batch_size: usize) -> anyhow::Result<Inputs> {
    match args.input.as_deref() {
        Some(_) if !args.text.is_empty() => anyhow::bail!(
            "both --input and a TEXT argument were given (hint: put the text in the file, or drop --input to explain \"{:.30}\")",
            args.text.join(" ")
        ),
        Some(spec) => Ok(Inputs::Lines(LineSource::open(spec, shard, 4 * batch_size.max(16))?)),
        None => {
            anyhow::ensure!(args.shard.is_none(), "--shard splits the lines of --input, and none was given (hint: --input FILE --shard 1/4)");
            anyhow::ensure!(!args.text.is_empty(), "no text to explain (hint: expnet explain \"a sentence\", or --input FILE)");
            let text = args.text.join(" ");
            anyhow::ensure!(!text.trim().is_empty(), "the text to explain is empty (hint: expnet explain \"a sentence\", or --input FILE with one text per line)");
            Ok(Inputs::One(text))
        }
    }
}

fn run_inner(args: &ExplainArgs, load_model: impl FnOnce(Option<&str>) -> anyhow::Result<Model>) -> anyhow::Result<()> {
    let selection = super::methods::parse(&args.methods)?;
    super::methods::check_samples(&selection, args.samples)?;
    let batch_size = parse_batch_size(args.batch_size.as_deref())?;
    let shard = args.shard.as_deref().map(Shard::parse).transpose()?;
    let inputs = open_inputs(args, shard, batch_size)?;
    let model = load_model(args.model.as_deref())?;
    let mut methods = super::methods::build_for_command(&selection, &model, args.expnet.as_deref())?;
    if let Some(n) = args.samples {
        super::methods::set_samples(&mut methods, n)?;
    }
    let names: Vec<&str> = methods.iter().map(|m| m.name()).collect();
    let total_lines = match (&inputs, args.input.as_deref()) {
        (Inputs::Lines(src), Some(spec)) if src.regular_file && std::io::stderr().is_terminal() => Some(count_lines_in_background(spec)),
        _ => None,
    };
    let progress = CliProgress::new(matches!(inputs, Inputs::Lines(_)), total_lines, &names);
    let stdout = std::io::stdout();
    let mut run = Run { args, model: &model, methods: &methods, progress: &progress, out: stdout.lock(), done: 0 };
    let mut src = match inputs {
        Inputs::One(text) => {
            let enc = model.encode(&text)?;
            return run.window(vec![(None, enc)], 1);
        }
        Inputs::Lines(src) => src,
    };
    // Sorting a window of several batches by length keeps padding low (see
    // WINDOW_BATCHES); with --attentions every held result is large, so
    // the window is one batch there.
    let window = if batch_size == 1 || args.attentions { batch_size } else { WINDOW_BATCHES * batch_size };
    loop {
        // A read error is reported after the lines before it are written.
        let mut pending = Vec::new();
        let failed = fill(&mut pending, &mut src, &model, window).err();
        let empty = pending.is_empty();
        if !empty {
            run.window(pending.into_iter().map(|(l, e)| (Some(l), e)).collect(), batch_size)?;
        }
        if let Some(e) = failed {
            progress.clear();
            return Err(e);
        }
        if empty {
            break;
        }
    }
    progress.finish(run.done);
    if run.done == 0 {
        let totals = src.totals().unwrap_or_default();
        anyhow::ensure!(totals.non_empty > 0, "{} has no non-empty lines (hint: one text per line)", src.name);
        if let Some(s) = shard {
            eprintln!(
                "note: shard {}/{} holds none of the {} non-empty lines of {} (line L belongs to shard ((L-1) mod {}) + 1)",
                s.index, s.count, totals.non_empty, src.name, s.count
            );
        }
    }
    Ok(())
}

/// Reads up to `window` lines: from a regular file it waits for each line;
/// from a pipe or terminal it waits for the first only and then takes what
/// has already arrived, so an interactive writer gets each answer at once.
fn fill(pending: &mut Vec<(usize, Encoding)>, src: &mut LineSource, model: &Model, window: usize) -> anyhow::Result<()> {
    while pending.len() < window {
        let line = if pending.is_empty() || src.regular_file {
            src.next_line()?
        } else {
            // A line already on its way (the reader thread has not queued it yet).
            src.line_within(Duration::from_millis(2))?
        };
        match line {
            Some(l) => {
                let enc = model.encode(&l.text)?;
                pending.push((l.number, enc));
            }
            None => break,
        }
    }
    Ok(())
}

/// How many of `lengths` (ascending) go in the next batch: at most
/// `batch_size`, at most [`BATCH_CELLS`] padded attention cells, at least one.
fn batch_len(lengths: impl Iterator<Item = usize>, batch_size: usize) -> usize {
    let mut take = 0usize;
    for n in lengths.take(batch_size) {
        if take > 0 && (take + 1) * n * n > BATCH_CELLS {
            break;
        }
        take += 1;
    }
    take.max(1)
}

struct Run<'a, W: Write> {
    args: &'a ExplainArgs,
    model: &'a Model,
    methods: &'a [Arc<dyn Attribution>],
    progress: &'a CliProgress,
    out: W,
    /// Texts written so far.
    done: usize,
}

impl<W: Write> Run<'_, W> {
    /// Explains texts (with their input line numbers for --input) in
    /// batches of similar length and writes the results in input order, each
    /// as soon as every earlier one is out.
    fn window(&mut self, items: Vec<(Option<usize>, Encoding)>, batch_size: usize) -> anyhow::Result<()> {
        for (line, enc) in &items {
            if enc.truncated {
                self.progress.clear();
                let at = line.map(|l| format!("line {l}: ")).unwrap_or_default();
                eprintln!("note: {at}input truncated to {} tokens (the model's limit): {:.40}…", enc.len(), enc.text);
            }
        }
        let mut order: Vec<usize> = (0..items.len()).collect();
        order.sort_by_key(|&i| items[i].1.len());
        let mut outputs: Vec<Option<Vec<u8>>> = vec![None; items.len()];
        let (mut next, mut rest) = (0, order.as_slice());
        while !rest.is_empty() {
            let take = batch_len(rest.iter().map(|&i| items[i].1.len()), batch_size);
            let (batch, tail) = rest.split_at(take);
            rest = tail;
            let rendered = self.batch(batch.iter().map(|&i| (items[i].0, &items[i].1)).collect())?;
            for (&i, out) in batch.iter().zip(rendered) {
                outputs[i] = Some(out);
            }
            while let Some(out) = outputs.get_mut(next).and_then(Option::take) {
                self.out.write_all(&out)?;
                next += 1;
            }
            self.out.flush()?;
        }
        Ok(())
    }

    /// Explains one batch and renders each text's result. The forward pass,
    /// and the backward pass that gradient methods share, run once for the
    /// whole batch; every method then reads its text's part, cut to the
    /// text's own length.
    fn batch(&mut self, items: Vec<(Option<usize>, &Encoding)>) -> anyhow::Result<Vec<Vec<u8>>> {
        let (model, methods, progress) = (self.model, self.methods, self.progress);
        let encs: Vec<&Encoding> = items.iter().map(|(_, e)| *e).collect();
        // Raw [CLS] attention and rollout read nothing else of the last
        // layer: its other rows are skipped unless --attentions prints them.
        let first_query = !self.args.attentions && methods.iter().all(|m| m.reads_first_query_of_last_layer_only());
        let forwards = match encs.as_slice() {
            many if first_query => model.forward_batch_first_query(many)?,
            [one] => vec![model.forward(one)?],
            many => model.forward_batch(many)?,
        };
        let mut seeds: Vec<Option<(Arc<Gradients>, Duration)>> = vec![None; items.len()];
        if items.len() > 1 && model.is_classifier() && methods.iter().any(|m| m.reads_shared_gradients()) {
            let targets = forwards.iter().map(|f| resolve_target(f, self.args.target)).collect::<anyhow::Result<Vec<_>>>()?;
            let t0 = Instant::now();
            let attention = crate::explain::any_reads_attention_gradients(methods);
            let grads = model.gradients_batch(&encs, &targets, attention)?;
            // Each text is charged an equal share: every row of a padded batch costs the same.
            let share = t0.elapsed() / items.len() as u32;
            seeds = grads.into_iter().map(|g| Some((Arc::new(g), share))).collect();
        }
        let done = self.done;
        let render = |i: usize, ((line, enc), (forward, seed)): (&(Option<usize>, &Encoding), (&ForwardOutput, Option<(Arc<Gradients>, Duration)>))| {
            progress.start_input(*line, done + i);
            let results = run_methods_reporting(model, enc, forward, self.args.target, methods, seed, &|m, f| progress.report(m, f))?;
            progress.clear();
            render_text(self.args, model, *line, enc, forward, &results)
        };
        let work = items.iter().zip(forwards.iter().zip(seeds));
        // Once the batch's forward (and backward) pass is done, what is left
        // per text (attention extraction, rollout, flow, ExpNet, rendering)
        // is single-threaded: texts go side by side on the thread pool,
        // unless a method runs the model per text (it uses the pool itself).
        let rendered: Vec<Vec<u8>> = if items.len() > 1 && !methods.iter().any(|m| m.runs_model()) {
            use rayon::prelude::*;
            work.enumerate().collect::<Vec<_>>().into_par_iter().map(|(i, w)| render(i, w)).collect::<anyhow::Result<_>>()?
        } else {
            work.enumerate().map(|(i, w)| render(i, w)).collect::<anyhow::Result<_>>()?
        };
        self.done += rendered.len();
        Ok(rendered)
    }
}

/// One text's result, as a JSON line or a table.
fn render_text(
    args: &ExplainArgs,
    model: &Model,
    line: Option<usize>,
    enc: &Encoding,
    forward: &ForwardOutput,
    results: &[TimedExplanation],
) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    match args.format {
        Format::Json => {
            let v = report_json(&model.name, enc, forward.prediction.as_ref(), results, args.attentions.then_some(&forward.attentions));
            let v = match (line, v) {
                (Some(l), serde_json::Value::Object(obj)) => {
                    let mut with_line = serde_json::Map::with_capacity(obj.len() + 1);
                    with_line.insert("line".into(), serde_json::json!(l));
                    with_line.extend(obj);
                    serde_json::Value::Object(with_line)
                }
                (_, v) => v,
            };
            serde_json::to_writer(&mut out, &v)?;
            out.push(b'\n');
        }
        Format::Table => write_table(&mut out, model, line, enc, forward.prediction.as_ref(), results)?,
    }
    Ok(out)
}

fn write_table(
    out: &mut impl Write,
    model: &Model,
    line: Option<usize>,
    enc: &Encoding,
    prediction: Option<&crate::model::Prediction>,
    results: &[TimedExplanation],
) -> anyhow::Result<()> {
    // Only the part the model saw: a 20,000-character text cut at 512 tokens
    // prints its first few hundred characters and says how much was left out.
    let (shown, left_out) = analysed_text(enc);
    if let Some(l) = line {
        writeln!(out, "line: {l}")?;
    }
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
