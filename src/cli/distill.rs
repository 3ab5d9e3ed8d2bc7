//! `expnet distill`: an ExpNet for any classifier, learned from a slow
//! attribution method instead of human rationales.
//!
//! The teacher runs once per text and its scores are appended to a JSON
//! Lines cache as they come, so Ctrl-C keeps what is done, a rerun resumes,
//! and retraining with other settings never reruns the teacher.

use crate::expnet::distill::{DistillConfig, DistillExample, DistillLoss, DistillTarget, Fidelity, distill, fidelity, predict};
use crate::expnet::teacher::{Cache, TeachProgress, is_sampling, read_texts, student_spec, teacher_method};
use crate::expnet::{DistillInfo, ExplainerKind, NetConfig};
use crate::model::Model;
use anyhow::Context;
use clap::{Args, ValueEnum};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum Teacher {
    Occlusion,
    IntegratedGradients,
    KernelShap,
    Lime,
}

impl Teacher {
    pub fn name(self) -> &'static str {
        match self {
            Self::Occlusion => "occlusion",
            Self::IntegratedGradients => "integrated_gradients",
            Self::KernelShap => "kernel_shap",
            Self::Lime => "lime",
        }
    }
}

/// Which forward-pass signals the student reads (see `ForwardSignals`).
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum Features {
    /// The rationale ExpNet's attention features only.
    Attention,
    /// Attention + the last two layers' hidden states + the target class.
    Hidden,
    /// Attention + the head's logit lens on the last three layers + the target class.
    Lens,
    /// Attention, hidden states, lens and class.
    All,
    /// Attention + decision-aligned head contributions (expnet::decision) + the target class.
    Decision,
    /// All of the above plus the decision-aligned columns.
    Full,
}

#[derive(Args, Debug)]
pub struct DistillArgs {
    /// Classifier to explain (default: the embedded one).
    #[arg(long)]
    pub model: Option<String>,
    /// The slow method the student learns to imitate.
    #[arg(long, value_enum)]
    pub teacher: Teacher,
    /// Teacher samples (LIME, KernelSHAP: perturbations, sampled even for short
    /// inputs; integrated gradients: steps). Default: the method's own.
    #[arg(long)]
    pub samples: Option<usize>,
    /// Texts: a file with one per line, or DATASET:PATH[#SPLIT] (default split train).
    #[arg(long)]
    pub input: String,
    /// Where to write the ExpNet (safetensors).
    #[arg(long)]
    pub out: PathBuf,
    /// Teacher cache (JSON Lines; default: OUT with `.teacher.jsonl`).
    #[arg(long)]
    pub cache: Option<PathBuf>,
    /// Fraction of the texts held out for early stopping and the reported fidelity.
    #[arg(long, default_value_t = 0.1)]
    pub val_fraction: f32,
    /// Use the first N texts only.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Extra held-out texts (FILE or DATASET:PATH[#SPLIT], default split test), fidelity only.
    #[arg(long)]
    pub test: Option<String>,
    /// Use the first N test texts only.
    #[arg(long)]
    pub test_limit: Option<usize>,
    /// Also run the teacher with this many samples on the held-out texts and
    /// report how well the student and a second same-budget teacher run agree with it.
    #[arg(long)]
    pub reference_samples: Option<usize>,
    #[arg(long, default_value_t = 40)]
    pub epochs: usize,
    /// Default `full`: best validation fidelity (docs/RESULTS.md); models
    /// without post-norm attention blocks (ModernBERT) fall back to `all`.
    #[arg(long, value_enum, default_value_t = Features::Full)]
    pub features: Features,
    #[arg(long, default_value = "mse-rank")]
    pub loss: String,
    /// Regress on the ranks of the teacher's scores within each text (`rank`,
    /// better on validation, docs/RESULTS.md) or on the z-scored scores (`score`).
    #[arg(long, default_value = "rank")]
    pub target: String,
    /// Hidden layer widths, comma-separated.
    #[arg(long, default_value = "128,64")]
    pub hidden: String,
    /// Neighbour window (0 = each token alone; ±1 measured no better, docs/RESULTS.md).
    #[arg(long, default_value_t = 0)]
    pub window: usize,
    /// Heads of a contextual layer (self-attention over the input's tokens)
    /// between the MLP and the output; 0 = each token scored on its own.
    #[arg(long, default_value_t = 0)]
    pub context: usize,
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Do not register the result as the default ExpNet of this model.
    #[arg(long)]
    pub no_register: bool,
}

pub fn run(args: &DistillArgs, load_model: impl FnOnce(Option<&str>) -> anyhow::Result<Model>) -> anyhow::Result<()> {
    super::check_training(args.epochs, 40, args.lr, "1e-3")?;
    anyhow::ensure!(
        args.val_fraction > 0.0 && args.val_fraction < 1.0,
        "--val-fraction must be between 0 and 1, got {} (hint: --val-fraction 0.1, the default)",
        args.val_fraction
    );
    anyhow::ensure!(args.limit != Some(0), "--limit 0 distils on nothing (hint: --limit 2000, or leave it out)");
    let loss = match args.loss.as_str() {
        "mse" => DistillLoss::Mse,
        "rank" => DistillLoss::Rank,
        "mse-rank" => DistillLoss::MseRank,
        other => anyhow::bail!("unknown --loss {other} (valid: mse, rank, mse-rank)"),
    };
    let target = match args.target.as_str() {
        "score" => DistillTarget::Score,
        "rank" => DistillTarget::Rank,
        other => anyhow::bail!("unknown --target {other} (valid: score, rank)"),
    };
    let hidden: Vec<usize> = args
        .hidden
        .split(',')
        .map(|s| s.trim().parse::<usize>())
        .collect::<Result<_, _>>()
        .with_context(|| format!("--hidden {} is not a comma-separated list of widths", args.hidden))?;
    anyhow::ensure!((0.0..0.9).contains(&args.val_fraction), "--val-fraction must be in [0, 0.9)");
    let items = read_texts(&args.input, crate::data::Split::Train, args.limit)?;
    let test_items = match &args.test {
        Some(t) => read_texts(t, crate::data::Split::Test, args.test_limit)?,
        None => Vec::new(),
    };
    let model = load_model(args.model.as_deref())?;
    anyhow::ensure!(model.is_classifier(), "{} is a bare encoder: the teachers need a classification head", model.name);
    let decomposable = model.encoder().attention_block(0).is_some();
    let features = match args.features {
        Features::Full if !decomposable => {
            eprintln!("note: {} has no post-norm attention blocks, so no decision features: using --features all", model.name);
            Features::All
        }
        Features::Decision if !decomposable => {
            anyhow::bail!("{} has no post-norm attention blocks to read decision features from (hint: --features all)", model.name)
        }
        f => f,
    };
    let (hidden_layers, lens_layers, decision) = match features {
        Features::Attention => (0, 0, false),
        Features::Hidden => (2, 0, false),
        Features::Lens => (0, 3, false),
        Features::All => (2, 3, false),
        Features::Decision => (0, 0, true),
        Features::Full => (2, 3, true),
    };
    let mut spec = student_spec(&model, hidden_layers, lens_layers);
    if decision {
        spec.signals.decision = true;
        spec.signals.target_classes = model.labels().len();
    }
    let teacher = teacher_method(args.teacher.name(), args.samples, args.seed)?;
    let cache_path = args.cache.clone().unwrap_or_else(|| args.out.with_extension("teacher.jsonl"));
    let mut cache = Cache::open(&cache_path, args.teacher.name(), &model)?;
    eprintln!(
        "distilling {} on {} for {} ({} texts, teacher cache {} with {} runs)",
        args.teacher.name(),
        model.name,
        args.input,
        items.len(),
        cache_path.display(),
        cache.records.len()
    );
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone())?;
    }
    // Seeded split first, so the cache order does not decide what is held out.
    let mut order: Vec<usize> = (0..items.len()).collect();
    rand::seq::SliceRandom::shuffle(order.as_mut_slice(), &mut <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(args.seed));
    let n_val = ((items.len() as f32) * args.val_fraction).round() as usize;
    let val_items: Vec<_> = order[..n_val].iter().map(|&i| items[i].clone()).collect();
    let train_items: Vec<_> = order[n_val..].iter().map(|&i| items[i].clone()).collect();
    let key = (args.seed, args.samples);
    let mut teach = |spec: &crate::expnet::FeatureSpec,
                     teacher: &dyn crate::explain::Attribution,
                     key: (u64, Option<usize>),
                     items: &[(String, Option<String>)],
                     what: &str| {
        crate::expnet::teacher::teach(&model, spec, teacher, key, items, &mut cache, &stop, what, &mut |p| print_progress(what, p))
    };
    let (train, teacher_ms) = teach(&spec, teacher.as_ref(), key, &train_items, "train")?;
    let (val, _) = teach(&spec, teacher.as_ref(), key, &val_items, "val")?;
    let (test, _) = teach(&spec, teacher.as_ref(), key, &test_items, "test")?;
    // The teacher against itself with another seed: the noise floor of a sampling teacher.
    let held_out = if test.is_empty() { &val } else { &test };
    let held_items = if test.is_empty() { &val_items } else { &test_items };
    let seed_agreement = if is_sampling(args.teacher.name()) && !held_out.is_empty() {
        let second = teacher_method(args.teacher.name(), args.samples, args.seed + 1)?;
        let (again, _) = teach(&spec, second.as_ref(), (args.seed + 1, args.samples), held_items, "seed2")?;
        Some((again.iter().map(|e| e.teacher.clone()).collect::<Vec<_>>(), agreement(&again, held_out)))
    } else {
        None
    };

    let cfg = DistillConfig {
        net: NetConfig { hidden, neighbour_window: args.window, context_heads: args.context, ..DistillConfig::default().net },
        loss,
        target,
        epochs: args.epochs,
        lr: args.lr,
        seed: args.seed,
        ..Default::default()
    };
    let t0 = Instant::now();
    let (mut net, val_fid) = distill(spec, &train, &val, &cfg, &mut |e| {
        let v = e.val.map(|f| format!(", val Spearman {:.3}, top-k {:.3}", f.spearman, f.top_k_overlap)).unwrap_or_default();
        eprintln!("epoch {:>3}: loss {:.4}{v} ({:.1} s)", e.epoch, e.train_loss, e.secs);
    })?;
    eprintln!("trained in {:.0} s", t0.elapsed().as_secs_f64());
    let val_fid = val_fid.unwrap_or_default();
    let test_fid = (!test.is_empty()).then(|| -> anyhow::Result<Fidelity> {
        let t: Vec<_> = test.iter().map(|e| e.teacher.clone()).collect();
        let s: Vec<_> = test.iter().map(|e| e.special.clone()).collect();
        Ok(fidelity(&predict(&net, &test)?, &t, &s))
    });
    let test_fid = test_fid.transpose()?;
    let (student_ms, forward_ms) = student_cost(&model, &net, held_items)?;

    net.info.model_id = Some(model.name.clone());
    net.info.hidden_size = Some(model.config().hidden_size);
    net.info.training_data = Some(args.input.clone());
    net.info.command = Some(std::env::args().collect::<Vec<_>>().join(" "));
    net.info.model_fingerprint = Some(model.fingerprint().to_owned());
    net.info.kind = Some(ExplainerKind::Distilled);
    net.info.distillation = Some(DistillInfo {
        teacher: args.teacher.name().to_owned(),
        samples: args.samples,
        teacher_seed: args.seed,
        texts: args.input.clone(),
        train_texts: train.len(),
        val_texts: val.len(),
        val_spearman: val_fid.spearman,
        val_top_k_overlap: val_fid.top_k_overlap,
        teacher_seed_agreement: seed_agreement.as_ref().map(|(_, f)| f.spearman),
        loss: match target {
            DistillTarget::Score => loss.as_str().to_owned(),
            DistillTarget::Rank => format!("{} on ranks", loss.as_str()),
        },
        test_texts: test.len(),
        test_spearman: test_fid.map(|f| f.spearman),
        test_top_k_overlap: test_fid.map(|f| f.top_k_overlap),
        teacher_ms_per_text: teacher_ms,
        student_ms_per_text: student_ms,
    });
    net.save(&args.out)?;
    let mut summary = serde_json::json!({
        "out": args.out.display().to_string(),
        "teacher": args.teacher.name(),
        "samples": args.samples,
        "features": format!("{features:?}").to_lowercase(),
        "loss": loss.as_str(),
        "target": args.target,
        "context_heads": args.context,
        "train_texts": train.len(),
        "val": val_fid,
        "test": test_fid,
        "teacher_seed_agreement": seed_agreement.as_ref().map(|(_, f)| f),
        "teacher_ms_per_text": teacher_ms,
        "student_ms_per_text": student_ms,
        "forward_ms_per_text": forward_ms,
        "speedup": teacher_ms / student_ms.max(1e-9),
        "speedup_with_forward": teacher_ms / (student_ms + forward_ms).max(1e-9),
    });
    if let Some(n) = args.reference_samples {
        let reference = teacher_method(args.teacher.name(), Some(n), args.seed + 100)?;
        let (refs, _) = teach(&spec_of(&net), reference.as_ref(), (args.seed + 100, Some(n)), held_items, "reference")?;
        let rs: Vec<_> = refs.iter().map(|e| e.teacher.clone()).collect();
        let sp: Vec<_> = refs.iter().map(|e| e.special.clone()).collect();
        let student = predict(&net, held_out)?;
        let first: Vec<_> = held_out.iter().map(|e| e.teacher.clone()).collect();
        summary["reference"] = serde_json::json!({
            "samples": n,
            "student_vs_reference": fidelity(&student, &rs, &sp),
            "teacher_vs_reference": fidelity(&first, &rs, &sp),
            "teacher_seed2_vs_reference": seed_agreement.as_ref().map(|(s2, _)| fidelity(s2, &rs, &sp)),
        });
    }
    if !args.no_register {
        let dest = crate::expnet::provenance::register(&args.out, model.fingerprint())?;
        eprintln!("registered as the default ExpNet of this model: {}", dest.display());
    }
    println!("{}", serde_json::to_string_pretty(&summary)?);
    Ok(())
}

/// One progress line: rewritten in place on a terminal, every 100 texts otherwise.
fn print_progress(what: &str, p: &TeachProgress) {
    let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
    if !(tty || p.done == p.total || p.done % 100 == 0) {
        return;
    }
    let rate = p.fresh as f64 / p.secs.max(1e-9);
    let eta = p.eta_secs().map_or_else(|| "cached".to_owned(), |s| format!("ETA {s:.0} s"));
    let end = if tty && p.done < p.total { "\r" } else { "\n" };
    eprint!("{what}: {}/{} texts ({} run, {rate:.1}/s, {eta})   {end}", p.done, p.total, p.fresh);
}

fn spec_of(net: &crate::expnet::ExpNet) -> crate::expnet::FeatureSpec {
    net.spec().clone()
}

/// Fidelity of a second teacher run to the first on the same texts.
fn agreement(second: &[DistillExample], first: &[DistillExample]) -> Fidelity {
    let a: Vec<_> = second.iter().map(|e| e.teacher.clone()).collect();
    let b: Vec<_> = first.iter().map(|e| e.teacher.clone()).collect();
    let s: Vec<_> = first.iter().map(|e| e.special.clone()).collect();
    fidelity(&a, &b, &s)
}

/// The student's cost per text on top of the shared forward pass (features,
/// lens, network), and the cost of that forward pass (tokenising included),
/// in milliseconds, medians of three passes over `items`.
fn student_cost(model: &Model, net: &crate::expnet::ExpNet, items: &[(String, Option<String>)]) -> anyhow::Result<(f64, f64)> {
    let items = &items[..items.len().min(100)];
    if items.is_empty() {
        return Ok((0.0, 0.0));
    }
    let encode_forward = |(t, p): &(String, Option<String>)| -> anyhow::Result<_> {
        let enc = match p {
            Some(p) => model.encode_pair(t, p)?,
            None => model.encode(t)?,
        };
        let fwd = model.forward(&enc)?;
        Ok((enc, fwd))
    };
    let prepared: Vec<_> = items.iter().map(encode_forward).collect::<anyhow::Result<_>>()?;
    let method = crate::expnet::ExpNetMethod::new(Arc::new(clone_net(net)?));
    // Alternating rounds, so load changes on a shared machine hit both alike.
    let (mut runs, mut forward_runs) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        let t0 = Instant::now();
        for item in items {
            encode_forward(item)?;
        }
        forward_runs.push(t0.elapsed().as_secs_f64() * 1e3 / items.len() as f64);
        let t0 = Instant::now();
        for (enc, fwd) in &prepared {
            let target = fwd.prediction.as_ref().map_or(0, |p| p.index);
            method.explain_forward(Some(model), enc, fwd, target)?;
        }
        runs.push(t0.elapsed().as_secs_f64() * 1e3 / prepared.len() as f64);
    }
    forward_runs.sort_by(|a, b| a.total_cmp(b));
    runs.sort_by(|a, b| a.total_cmp(b));
    Ok((runs[1], forward_runs[1]))
}

fn clone_net(net: &crate::expnet::ExpNet) -> anyhow::Result<crate::expnet::ExpNet> {
    crate::expnet::ExpNet::load_bytes(&net.to_bytes()?)
}
