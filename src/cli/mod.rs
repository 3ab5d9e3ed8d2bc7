//! Command-line interface: argument parsing and the headless commands.

pub mod bench;
pub mod distill;
pub mod eval;
pub mod explain;
pub mod explain_io;
pub mod explain_stream;
pub mod finetune;
pub mod inspect;
pub mod methods;
pub mod train;
pub mod train_decomp;
pub mod train_grad;
pub mod tui;
pub mod tui_backend;
pub mod tui_distill;

use clap::{Parser, Subcommand};

/// Explain why a transformer text classifier decided what it decided.
#[derive(Parser, Debug)]
#[command(name = "expnet", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Where the model runs: cpu, cuda, cuda:N, or auto (the first CUDA GPU
    /// when this build has the `cuda` feature and one answers, else the CPU).
    #[arg(long, global = true, default_value = "auto", value_parser = parse_device)]
    pub device: crate::model::device::DeviceChoice,
}

fn parse_device(s: &str) -> Result<crate::model::device::DeviceChoice, String> {
    s.parse()
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Explain inputs headlessly: JSON Lines (one object per input) or a table.
    Explain(explain::ExplainArgs),
    /// Fine-tune a BERT-family encoder into a sequence classifier (Hugging Face folder).
    Finetune(finetune::FinetuneArgs),
    /// Train ExpNet on human token rationales.
    Train(train::TrainArgs),
    /// Distil a slow attribution method (occlusion, IG, KernelSHAP, LIME) into an ExpNet for any classifier.
    Distill(distill::DistillArgs),
    /// Show an ExpNet file's provenance and whether it fits a model; --stamp adopts an old file.
    Inspect(inspect::InspectArgs),
    /// The terminal explorer (also what `expnet` with no arguments runs).
    Tui(tui::TuiArgs),
    /// Speed of every method at 8/32/128 tokens, with ratios against the Python peer.
    Bench(bench::BenchArgs),
    /// Evaluate methods against human rationales (plausibility, faithfulness, speed).
    Eval(eval::EvalArgs),
}

/// `--epochs` and `--lr` of the training commands (finetune, train, distill),
/// refused before anything loads or is extracted when they cannot work.
pub(crate) fn check_training(epochs: usize, default_epochs: usize, lr: f64, default_lr: &str) -> anyhow::Result<()> {
    anyhow::ensure!(epochs >= 1, "--epochs must be at least 1 (hint: --epochs {default_epochs}, the default)");
    anyhow::ensure!(lr.is_finite() && lr > 0.0, "--lr must be a positive number, got {lr} (hint: --lr {default_lr}, the default)");
    Ok(())
}
