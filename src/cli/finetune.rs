//! `expnet finetune`: fine-tune a BERT-family base into a classifier folder,
//! with a progress line, dev accuracy each epoch, best-checkpoint keeping and
//! a clean Ctrl-C (the best checkpoint so far stays on disk).

use crate::data::{self, Split};
use crate::finetune::{FinetuneConfig, FinetuneEvent, LabelledText, Trainable, accuracy, finetune};
use anyhow::Context;
use clap::Args;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

#[derive(Args, Debug)]
pub struct FinetuneArgs {
    /// Base encoder folder (e.g. all-MiniLM-L6-v2 from ../shared/scripts/fetch-base-model.sh).
    #[arg(long)]
    pub base: Option<String>,
    /// Training data, DATASET:PATH[#SPLIT] (sst, sst-phrases, hatexplain, esnli, cola, movies);
    /// `#dev` trains on the dev split (e-SNLI, which has no train split here).
    #[arg(long)]
    pub data: String,
    /// Output folder (a Hugging Face folder).
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[arg(long, default_value_t = 3)]
    pub epochs: usize,
    #[arg(long, default_value_t = 5e-5)]
    pub lr: f64,
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Longest training input in tokens (longer ones are cut).
    #[arg(long, default_value_t = 66)]
    pub max_len: usize,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Use at most N training examples (quick runs).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Store weights as float16 (half the size; computation stays float32).
    #[arg(long)]
    pub f16: bool,
    /// Only measure accuracy of --model on the dev and test splits of --data.
    #[arg(long)]
    pub eval_only: bool,
    /// Model to evaluate with --eval-only (default: the embedded model).
    #[arg(long)]
    pub model: Option<String>,
}

/// `sst:PATH` sentences, `sst-phrases:PATH` every polar phrase of the train trees.
fn load_split(spec: &str, split: Split) -> anyhow::Result<(Vec<String>, Vec<LabelledText>)> {
    let ds = match spec.split_once(':') {
        Some(("sst-phrases", path)) if split == Split::Train => data::sst_phrases(std::path::Path::new(path), split)?,
        Some(("sst-phrases", path)) => data::load(&format!("sst:{path}"), split)?,
        _ => data::load(spec, split)?,
    };
    let examples = ds
        .examples
        .iter()
        .map(|e| LabelledText { text: e.text(), pair: e.text_pair(), label: e.label })
        .collect();
    Ok((ds.labels.clone(), examples))
}

/// Training settings that cannot work, refused before anything loads.
fn check_numbers(args: &FinetuneArgs) -> anyhow::Result<()> {
    super::check_training(args.epochs, 3, args.lr, "5e-5")?;
    anyhow::ensure!(args.batch_size >= 1, "--batch-size must be at least 1 (hint: --batch-size 32, the default)");
    anyhow::ensure!(args.max_len >= 3, "--max-len {} leaves no room for a word between the special tokens (hint: --max-len 66, the default)", args.max_len);
    anyhow::ensure!(args.limit != Some(0), "--limit 0 trains on nothing (hint: --limit 640 for a quick run, or leave it out)");
    Ok(())
}

pub fn run(
    args: &FinetuneArgs,
    device: &candle_core::Device,
    load_model: impl FnOnce(Option<&str>) -> anyhow::Result<crate::model::Model>,
) -> anyhow::Result<()> {
    if args.eval_only {
        let model = load_model(args.model.as_deref())?;
        let data = args.data.rsplit_once('#').map_or(args.data.as_str(), |(d, _)| d);
        for split in [Split::Dev, Split::Test] {
            match load_split(data, split) {
                Ok((_, ex)) => {
                    let acc = accuracy(&model, &ex, 64)?;
                    println!("{split} accuracy of {}: {:.4} ({} examples)", model.name, acc, ex.len());
                }
                Err(e) => eprintln!("{split}: skipped ({e:#})"),
            }
        }
        return Ok(());
    }
    check_numbers(args)?;
    let base = args.base.as_deref().context("--base is required (hint: a BERT-family encoder folder, e.g. from ../shared/scripts/fetch-base-model.sh)")?;
    let out = args.out.clone().context("--out is required (the folder the fine-tuned model is written to)")?;
    // `DATASET:PATH#SPLIT` trains on another split (e-SNLI has no train
    // split: its dev set trains, its test set tests); the dev split then
    // cannot also select epochs, so a seeded tenth of the training split does.
    let (data, train_split) = match args.data.rsplit_once('#') {
        Some((d, s)) => (d, s.parse::<Split>()?),
        None => (args.data.as_str(), Split::Train),
    };
    let (labels, mut train) = load_split(data, train_split)?;
    use rand::{SeedableRng, seq::SliceRandom};
    let dev = if train_split == Split::Dev {
        train.shuffle(&mut rand::rngs::StdRng::seed_from_u64(args.seed ^ 0x5eed));
        let held = (train.len() / 10).max(1);
        eprintln!("finetune: training on the dev split; {held} of its examples are held out to pick the epoch");
        train.split_off(train.len() - held)
    } else {
        load_split(data, Split::Dev).unwrap_or_default().1
    };
    if let Some(n) = args.limit {
        train.shuffle(&mut rand::rngs::StdRng::seed_from_u64(args.seed));
        train.truncate(n);
    }
    eprintln!("finetune: {} train / {} dev examples, labels {:?}", train.len(), dev.len(), labels);
    let base_dir = crate::model::resolve_model_dir(base)?;
    let trainable = Trainable::from_base_on(&base_dir, &labels, args.seed, device)?;
    let cfg = FinetuneConfig {
        epochs: args.epochs,
        lr: args.lr,
        batch_size: args.batch_size,
        max_len: args.max_len,
        seed: args.seed,
        save_f16: args.f16,
        ..Default::default()
    };
    let stop = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGINT, stop.clone()).context("cannot install the Ctrl-C handler")?;
    let mut on_event = |ev: FinetuneEvent| {
        let mut err = std::io::stderr().lock();
        match ev {
            FinetuneEvent::Step { epoch, step, steps, loss, tokens_per_sec, eta_secs } => {
                let done = step * 30 / steps.max(1);
                let _ = write!(
                    err,
                    "\repoch {epoch} [{}{}] {step}/{steps} loss {loss:.4} {tokens_per_sec:.0} tok/s ETA {:.0}m{:02.0}s   ",
                    "#".repeat(done),
                    ".".repeat(30 - done),
                    (eta_secs / 60.0).floor(),
                    eta_secs % 60.0
                );
            }
            FinetuneEvent::Epoch { epoch, train_loss, dev_accuracy, best, secs } => {
                let _ = writeln!(
                    err,
                    "\nepoch {epoch}: train loss {train_loss:.4}, dev accuracy {dev_accuracy:.4}{} ({secs:.0} s)",
                    if best { " (best, saved)" } else { "" }
                );
            }
            FinetuneEvent::Stopped { epoch, step } => {
                let _ = writeln!(err, "\ninterrupted at epoch {epoch} step {step}; keeping the best checkpoint saved so far");
            }
        }
    };
    let f16 = args.f16;
    let mut save = |t: &Trainable| t.save(&out, f16, Some(&base_dir));
    let report = finetune(&trainable, &train, &dev, &cfg, &stop, &mut on_event, &mut save)?;
    if report.epochs_run == 0 {
        anyhow::bail!("stopped before the first epoch finished; nothing was saved");
    }
    eprintln!(
        "best dev accuracy {:.4} at epoch {}; model in {}",
        report.best_dev_accuracy,
        report.best_epoch,
        out.display()
    );
    Ok(())
}
