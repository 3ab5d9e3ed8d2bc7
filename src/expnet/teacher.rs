//! Running a teacher attribution method over many texts for distillation,
//! with an append-only JSON Lines cache so that an interrupted run keeps its
//! work, a rerun resumes, and retraining never reruns the teacher. Shared by
//! `expnet distill` and the explorer's background distillation.

use crate::explain::{Attribution, ExplainInput, Progress};
use crate::expnet::distill::DistillExample;
use crate::expnet::features::{FeatureSource, FeatureSpec, extract_full};
use crate::expnet::method::{decision_features, lens_logits};
use crate::model::Model;
use anyhow::Context;
use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// Progress of [`teach`]: texts done, of how many, run now (not cached), seconds so far.
#[derive(Clone, Copy, Debug)]
pub struct TeachProgress {
    pub done: usize,
    pub total: usize,
    pub fresh: usize,
    pub secs: f64,
}

impl TeachProgress {
    /// Seconds left at the current rate of fresh teacher runs, if known.
    pub fn eta_secs(&self) -> Option<f64> {
        (self.fresh > 0).then(|| (self.total - self.done) as f64 * self.secs / self.fresh as f64)
    }
}

/// The teacher by name (`occlusion`, `integrated_gradients`, `kernel_shap`,
/// `lime`) with an optional sample count (IG: steps) and seed.
pub fn teacher_method(name: &str, samples: Option<usize>, seed: u64) -> anyhow::Result<Arc<dyn Attribution>> {
    use crate::explain::{integrated_gradients, kernel_shap, lime, occlusion};
    Ok(match name {
        "occlusion" => Arc::new(occlusion::Occlusion::default()),
        "integrated_gradients" => Arc::new(integrated_gradients::IntegratedGradients {
            steps: samples.unwrap_or(50),
            ..Default::default()
        }),
        "lime" => Arc::new(lime::Lime { config: lime::LimeConfig { samples, seed, ..Default::default() } }),
        "kernel_shap" => Arc::new(kernel_shap::KernelShap {
            config: kernel_shap::KernelShapConfig {
                samples,
                // A given budget is spent on sampling even where exact enumeration would fit.
                exact_max: if samples.is_some() { 0 } else { kernel_shap::KernelShapConfig::default().exact_max },
                seed,
                ..Default::default()
            },
        }),
        other => anyhow::bail!("unknown teacher {other} (valid: occlusion, integrated_gradients, kernel_shap, lime)"),
    })
}

/// Whether a teacher's output depends on its seed.
pub fn is_sampling(name: &str) -> bool {
    matches!(name, "kernel_shap" | "lime")
}

/// The student's feature spec for `model`: attention features plus the last
/// `hidden_layers` hidden states, the lens on the last `lens_layers` layers
/// and (when either is on) the explained class.
pub fn student_spec(model: &Model, hidden_layers: usize, lens_layers: usize) -> FeatureSpec {
    let mut spec = FeatureSpec::new(model.num_layers(), model.num_heads());
    spec.signals.hidden_layers = hidden_layers.min(model.num_layers() + 1);
    spec.signals.hidden_size = model.config().hidden_size;
    spec.signals.lens_layers = lens_layers.min(model.num_layers() + 1);
    spec.signals.target_classes = if hidden_layers + lens_layers > 0 { model.labels().len() } else { 0 };
    spec
}

/// One cached teacher run.
#[derive(serde::Serialize, serde::Deserialize, Clone)]
pub struct Record {
    text: String,
    #[serde(default)]
    pair: Option<String>,
    seed: u64,
    samples: Option<usize>,
    target: usize,
    scores: Vec<f32>,
    ms: f64,
}

pub type Key = (String, Option<String>, u64, Option<usize>);

/// The append-only teacher cache of one model and teacher.
pub struct Cache {
    pub path: PathBuf,
    pub records: HashMap<Key, Record>,
    file: std::fs::File,
}

impl Cache {
    pub fn open(path: &Path, teacher: &str, model: &Model) -> anyhow::Result<Self> {
        let header = serde_json::json!({"expnet_teacher_cache": 1, "teacher": teacher, "model_fingerprint": model.fingerprint(), "model": model.name});
        let mut records = HashMap::new();
        if path.is_file() {
            let f = std::fs::File::open(path).with_context(|| format!("cannot read teacher cache {}", path.display()))?;
            let mut lines = std::io::BufReader::new(f).lines();
            let first: serde_json::Value = match lines.next() {
                Some(l) => serde_json::from_str(&l?).with_context(|| format!("{} is not a teacher cache", path.display()))?,
                None => header.clone(),
            };
            anyhow::ensure!(
                first["teacher"] == header["teacher"] && first["model_fingerprint"] == header["model_fingerprint"],
                "teacher cache {} belongs to teacher {} on model {} (hint: pass another --cache, or delete it)",
                path.display(),
                first["teacher"],
                first["model"]
            );
            for (i, line) in lines.enumerate() {
                let line = line?;
                // A line cut by an interrupted write is dropped and recomputed.
                let Ok(r) = serde_json::from_str::<Record>(&line) else {
                    eprintln!("note: skipping unreadable line {} of {}", i + 2, path.display());
                    continue;
                };
                records.insert((r.text.clone(), r.pair.clone(), r.seed, r.samples), r);
            }
        }
        let fresh = !path.is_file() || std::fs::metadata(path)?.len() == 0;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("cannot write teacher cache {}", path.display()))?;
        if fresh {
            writeln!(file, "{header}")?;
        }
        Ok(Self { path: path.to_owned(), records, file })
    }

    pub fn put(&mut self, r: Record) -> anyhow::Result<()> {
        let mut line = serde_json::to_string(&r)?;
        line.push('\n');
        self.file.write_all(line.as_bytes())?;
        self.file.flush()?;
        self.records.insert((r.text.clone(), r.pair.clone(), r.seed, r.samples), r);
        Ok(())
    }
}

/// `(text, optional pair)` items from a file or a data set.
pub fn read_texts(spec: &str, default_split: crate::data::Split, limit: Option<usize>) -> anyhow::Result<Vec<(String, Option<String>)>> {
    let is_dataset = spec
        .split_once(':')
        .is_some_and(|(name, _)| ["sst", "movies", "hatexplain", "hatexplain-eraser", "esnli", "cola"].contains(&name));
    let mut out: Vec<(String, Option<String>)> = if is_dataset {
        let (s, split) = match spec.rsplit_once('#') {
            Some((s, sp)) => (s, sp.parse()?),
            None => (spec, default_split),
        };
        crate::data::load(s, split)?.examples.iter().map(|e| (e.text(), e.text_pair())).collect()
    } else {
        let text = std::fs::read_to_string(spec)
            .with_context(|| format!("cannot read {spec} (hint: a text file with one text per line, or DATASET:PATH)"))?;
        text.lines().map(str::trim).filter(|l| !l.is_empty()).map(|l| (l.to_owned(), None)).collect()
    };
    if let Some(n) = limit {
        out.truncate(n);
    }
    anyhow::ensure!(!out.is_empty(), "{spec} has no texts");
    Ok(out)
}

/// Features of one text for `spec` and the class the teacher explains.
pub fn featurise(model: &Model, spec: &FeatureSpec, text: &str, pair: Option<&str>) -> anyhow::Result<(crate::model::Encoding, crate::model::ForwardOutput, Vec<Vec<f32>>)> {
    let enc = match pair {
        Some(p) => model.encode_pair(text, p)?,
        None => model.encode(text)?,
    };
    let fwd = model.forward(&enc)?;
    let target = fwd.prediction.as_ref().map_or(0, |p| p.index);
    let special = enc.special_mask();
    let lens = lens_logits(Some(model), &fwd, spec.signals.lens_layers)?;
    let decision = decision_features(Some(model), &fwd, target, spec.signals.decision)?;
    let src = FeatureSource { attentions: &fwd.attentions, special: &special, hidden_states: &fwd.hidden_states, lens: &lens, decision: &decision, target, decomposition: &[], gradient: &[] };
    let rows = extract_full(spec, &src)?;
    Ok((enc, fwd, rows))
}

/// Runs (or reads from the cache) the teacher on `items`, then builds examples.
/// Runs (or reads from `cache`) the teacher on every item and returns the
/// student's examples and the mean teacher milliseconds per text. `stop`
/// ends the run between two texts with an error that says how to resume.
#[allow(clippy::too_many_arguments)]
pub fn teach(
    model: &Model,
    spec: &FeatureSpec,
    teacher: &dyn Attribution,
    key: (u64, Option<usize>),
    items: &[(String, Option<String>)],
    cache: &mut Cache,
    stop: &AtomicBool,
    what: &str,
    progress: &mut dyn FnMut(&TeachProgress),
) -> anyhow::Result<(Vec<DistillExample>, f64)> {
    let mut out = Vec::with_capacity(items.len());
    let t0 = Instant::now();
    let (mut fresh, mut teacher_ms, mut runs) = (0usize, 0f64, 0usize);
    for (i, (text, pair)) in items.iter().enumerate() {
        if stop.load(Ordering::Relaxed) {
            anyhow::bail!(
                "interrupted: {} teacher runs are kept in {}; run the same command again to resume",
                cache.records.len(),
                cache.path.display()
            );
        }
        let (enc, fwd, rows) = featurise(model, spec, text, pair.as_deref()).with_context(|| format!("text {}", i + 1))?;
        let k: Key = (text.clone(), pair.clone(), key.0, key.1);
        let record = match cache.records.get(&k) {
            Some(r) if r.scores.len() == enc.len() => r.clone(),
            _ => {
                let target = fwd.prediction.as_ref().map_or(0, |p| p.index);
                let input = ExplainInput::new(model, &enc, &fwd, target);
                let t = Instant::now();
                let e = teacher.explain(&input, &Progress::none())?;
                let r = Record {
                    text: text.clone(),
                    pair: pair.clone(),
                    seed: key.0,
                    samples: key.1,
                    target,
                    scores: e.scores,
                    ms: t.elapsed().as_secs_f64() * 1e3,
                };
                cache.put(r.clone())?;
                fresh += 1;
                r
            }
        };
        teacher_ms += record.ms;
        runs += 1;
        progress(&TeachProgress { done: i + 1, total: items.len(), fresh, secs: t0.elapsed().as_secs_f64() });
        out.push(DistillExample { id: format!("{what}{}", i + 1), features: rows, teacher: record.scores, special: enc.special_mask() });
    }
    Ok((out, teacher_ms / runs.max(1) as f64))
}

