//! `expnet eval`: every method against human rationales, with faithfulness and speed.

use crate::data::{self, Split};
use crate::eval::runner::{EvalOptions, evaluate, render_table, with_random_baseline};
use clap::{Args, ValueEnum};
use std::io::Write;

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum EvalFormat {
    Table,
    Json,
    Markdown,
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Model folder or hub id (default: the embedded classifier).
    #[arg(long)]
    pub model: Option<String>,
    /// ExpNet file (default: one trained for this very model, if any).
    #[arg(long)]
    pub expnet: Option<String>,
    /// Perturbed inputs per explanation for LIME and KernelSHAP in total
    /// (default: their own, 2·d + 2,048 for KernelSHAP with exact Shapley
    /// values up to 12 words). With it KernelSHAP always samples, as a
    /// distillation teacher with `--samples` does.
    #[arg(long)]
    pub samples: Option<usize>,
    /// DATASET:PATH (sst, movies, hatexplain, esnli).
    #[arg(long)]
    pub data: String,
    #[arg(long, default_value = "test")]
    pub split: String,
    /// Comma-separated methods, or `all`.
    #[arg(long, default_value = "all")]
    pub methods: String,
    /// Evaluate the first N examples that have a rationale.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Skip comprehensiveness/sufficiency (saves forward passes).
    #[arg(long)]
    pub no_faithfulness: bool,
    #[arg(long, value_enum, default_value_t = EvalFormat::Table)]
    pub format: EvalFormat,
}

pub fn run(args: &EvalArgs, load_model: impl FnOnce(Option<&str>) -> anyhow::Result<crate::model::Model>) -> anyhow::Result<()> {
    let selection = super::methods::parse(&args.methods)?;
    super::methods::check_samples(&selection, args.samples)?;
    let split: Split = args.split.parse()?;
    anyhow::ensure!(args.limit != Some(0), "--limit 0 evaluates nothing (hint: --limit 150, or leave it out for the whole split)");
    let ds = data::load(&args.data, split)?;
    let model = load_model(args.model.as_deref())?;
    let mut methods = super::methods::build_for_command(&selection, &model, args.expnet.as_deref())?;
    if let Some(n) = args.samples {
        super::methods::set_samples(&mut methods, n)?;
    }
    let methods = with_random_baseline(methods, 7);
    let opts = EvalOptions { limit: args.limit, faithfulness: !args.no_faithfulness, ..Default::default() };
    let t0 = std::time::Instant::now();
    let mut progress = |done: usize, total: usize| {
        let el = t0.elapsed().as_secs_f64();
        let eta = if done > 0 { el / done as f64 * (total - done) as f64 } else { 0.0 };
        let _ = write!(std::io::stderr(), "\revaluating {done}/{total} ({:.0} s, ETA {:.0} s)   ", el, eta);
    };
    let report = evaluate(&model, &ds, &methods, &opts, &mut progress)?;
    eprintln!();
    match args.format {
        EvalFormat::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        EvalFormat::Table => print!("{}", render_table(&report, false)),
        EvalFormat::Markdown => print!("{}", render_table(&report, true)),
    }
    Ok(())
}
