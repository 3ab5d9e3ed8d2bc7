//! Training ExpNet on cached per-piece features and human rationale labels.
//!
//! The encoder is run once per example by the caller to build a
//! [`TrainingSet`]; the set can be cached on disk so that trying another net
//! config or seed never re-runs the encoder. Training itself is a few
//! seconds to minutes of CPU on mini-batches of pieces.

use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use candle_core::{Device, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use super::features::{FeatureSpec, extract};
use super::net::{ExpNet, NetConfig, TrainingSummary};
use super::st::{Buffer, Reader};
use crate::model::Attentions;

const CACHE_KEY: &str = "expnet_features";
const CACHE_VERSION: u32 = 1;

/// Features and labels of one example, one row per word piece.
#[derive(Clone, Debug, PartialEq)]
pub struct ExampleFeatures {
    pub id: String,
    /// `[pieces][spec.dim()]`.
    pub features: Vec<Vec<f32>>,
    /// Piece-level rationale label: 0/1, or the fraction of annotators.
    pub labels: Vec<f32>,
    /// Pieces the tokenizer added; excluded from loss and metrics.
    pub special: Vec<bool>,
}

impl ExampleFeatures {
    /// Extracts features from one forward pass's attentions.
    pub fn from_attentions(
        spec: &FeatureSpec,
        id: impl Into<String>,
        attn: &Attentions,
        special: &[bool],
        labels: Vec<f32>,
    ) -> anyhow::Result<Self> {
        let id = id.into();
        anyhow::ensure!(labels.len() == attn.len, "example {id}: {} labels for {} pieces", labels.len(), attn.len);
        let features = extract(spec, attn, special).with_context(|| format!("example {id}"))?;
        Ok(Self { id, features, labels, special: special.to_vec() })
    }

    fn check(&self, dim: usize) -> anyhow::Result<()> {
        let n = self.features.len();
        anyhow::ensure!(
            self.labels.len() == n && self.special.len() == n,
            "example {}: {n} feature rows, {} labels, {} special flags",
            self.id,
            self.labels.len(),
            self.special.len()
        );
        if let Some(r) = self.features.iter().position(|r| r.len() != dim) {
            anyhow::bail!("example {}: piece {r} has {} features, the spec has {dim}", self.id, self.features[r].len());
        }
        anyhow::ensure!(
            self.labels.iter().all(|l| (0.0..=1.0).contains(l)),
            "example {}: labels must lie in [0, 1]",
            self.id
        );
        anyhow::ensure!(
            self.features.iter().flatten().all(|v| v.is_finite()),
            "example {}: features contain NaN or infinity",
            self.id
        );
        Ok(())
    }
}

/// A feature cache: examples plus what produced them.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainingSet {
    pub spec: FeatureSpec,
    /// Encoder the attentions came from.
    pub model_id: String,
    /// Which data/split the labels came from (free text, shown in reports).
    pub data_spec: String,
    pub examples: Vec<ExampleFeatures>,
}

#[derive(Serialize, Deserialize)]
struct CacheHeader {
    format_version: u32,
    feature_spec: FeatureSpec,
    model_id: String,
    data_spec: String,
    ids: Vec<String>,
}

impl TrainingSet {
    pub fn new(spec: FeatureSpec, model_id: impl Into<String>, data_spec: impl Into<String>) -> Self {
        Self { spec, model_id: model_id.into(), data_spec: data_spec.into(), examples: Vec::new() }
    }

    /// Adds an example after checking it matches the spec.
    pub fn push(&mut self, example: ExampleFeatures) -> anyhow::Result<()> {
        example.check(self.spec.dim())?;
        self.examples.push(example);
        Ok(())
    }

    /// Total pieces over all examples.
    pub fn pieces(&self) -> usize {
        self.examples.iter().map(|e| e.features.len()).sum()
    }

    /// Splits off a validation set: a seeded shuffle, then the last `fraction` of examples.
    pub fn split(mut self, fraction: f32, seed: u64) -> anyhow::Result<(TrainingSet, TrainingSet)> {
        anyhow::ensure!((0.0..1.0).contains(&fraction), "validation fraction must be in [0, 1), got {fraction}");
        self.examples.shuffle(&mut StdRng::seed_from_u64(seed));
        let n_val = ((self.examples.len() as f32) * fraction).round() as usize;
        let val_examples = self.examples.split_off(self.examples.len() - n_val);
        let val = TrainingSet { examples: val_examples, ..TrainingSet::new(self.spec.clone(), &self.model_id, &self.data_spec) };
        Ok((self, val))
    }

    /// Writes the cache: one `[pieces, features]` f32 tensor, labels,
    /// special flags and example offsets, with spec/model/data/ids in the metadata.
    pub fn save(&self, path: impl AsRef<Path>) -> anyhow::Result<()> {
        let path = path.as_ref();
        let dim = self.spec.dim();
        let n = self.pieces();
        let mut feats = Vec::with_capacity(n * dim);
        let (mut labels, mut special, mut offsets) = (Vec::with_capacity(n), Vec::with_capacity(n), vec![0u64]);
        for e in &self.examples {
            e.check(dim)?;
            e.features.iter().for_each(|r| feats.extend_from_slice(r));
            labels.extend_from_slice(&e.labels);
            special.extend(e.special.iter().map(|s| *s as u8));
            offsets.push(labels.len() as u64);
        }
        let header = CacheHeader {
            format_version: CACHE_VERSION,
            feature_spec: self.spec.clone(),
            model_id: self.model_id.clone(),
            data_spec: self.data_spec.clone(),
            ids: self.examples.iter().map(|e| e.id.clone()).collect(),
        };
        let tensors = vec![
            ("features".to_string(), Buffer::f32(vec![n, dim], &feats)),
            ("labels".to_string(), Buffer::f32(vec![n], &labels)),
            ("special".to_string(), Buffer::u8(vec![n], special)),
            ("offsets".to_string(), Buffer::u64(vec![offsets.len()], &offsets)),
        ];
        let bytes = super::st::serialize(&tensors, CACHE_KEY, serde_json::to_string(&header)?)?;
        std::fs::write(path, bytes).with_context(|| format!("could not write feature cache {}", path.display()))
    }

    /// Reads a cache written by [`save`](Self::save).
    pub fn load(path: impl AsRef<Path>) -> anyhow::Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).with_context(|| format!("could not read feature cache {}", path.display()))?;
        Self::load_bytes(&bytes).with_context(|| format!("could not load feature cache {}", path.display()))
    }

    fn load_bytes(bytes: &[u8]) -> anyhow::Result<Self> {
        let r = Reader::new(bytes, CACHE_KEY, "ExpNet feature cache")?;
        let h: CacheHeader = serde_json::from_str(&r.json).context("feature cache has malformed metadata JSON")?;
        anyhow::ensure!(
            h.format_version == CACHE_VERSION,
            "feature cache version {} is not supported (expected {CACHE_VERSION}); rebuild the cache",
            h.format_version
        );
        h.feature_spec.validate()?;
        let dim = h.feature_spec.dim();
        let n = *r.shape("labels")?.first().context("feature cache: labels tensor has no dimension")?;
        let feats = r.f32("features", &[n, dim])?;
        let labels = r.f32("labels", &[n])?;
        let special = r.u8("special", &[n])?;
        let offsets = r.u64("offsets", &[h.ids.len() + 1])?;
        anyhow::ensure!(
            offsets.first() == Some(&0) && offsets.last() == Some(&(n as u64)) && offsets.windows(2).all(|w| w[0] <= w[1]),
            "feature cache has inconsistent example offsets"
        );
        let mut set = TrainingSet::new(h.feature_spec, h.model_id, h.data_spec);
        for (id, w) in h.ids.into_iter().zip(offsets.windows(2)) {
            let (a, b) = (w[0] as usize, w[1] as usize);
            set.push(ExampleFeatures {
                id,
                features: feats[a * dim..b * dim].chunks(dim).map(|c| c.to_vec()).collect(),
                labels: labels[a..b].to_vec(),
                special: special[a..b].iter().map(|s| *s != 0).collect(),
            })?;
        }
        Ok(set)
    }
}

/// Hyper-parameters of [`train`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub net: NetConfig,
    /// Maximum epochs.
    pub epochs: usize,
    /// Pieces per mini-batch.
    pub batch_size: usize,
    pub lr: f64,
    pub weight_decay: f64,
    /// Weight of positive pieces in the loss; `None` = negatives / positives
    /// of the training set (rationales are a minority of pieces).
    pub pos_weight: Option<f32>,
    /// Stop after this many epochs without a better validation F1.
    pub patience: usize,
    pub seed: u64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            net: NetConfig::default(),
            epochs: 30,
            batch_size: 256,
            lr: 1e-3,
            weight_decay: 0.01,
            pos_weight: None,
            patience: 5,
            seed: 42,
        }
    }
}

/// Progress after each epoch (for a progress bar or log line).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EpochReport {
    /// 1-based.
    pub epoch: usize,
    pub max_epochs: usize,
    /// Mean weighted BCE over the epoch's mini-batches.
    pub train_loss: f32,
    pub val_loss: Option<f32>,
    /// Mean token F1@k on the validation set (k = gold pieces).
    pub val_f1: Option<f32>,
    pub best_epoch: usize,
    pub best_val_f1: Option<f32>,
    pub pieces_per_sec: f32,
    pub seconds: f32,
    /// True when this epoch will end training (patience exhausted or last epoch).
    pub stopping: bool,
}

/// Trains an ExpNet. With `val`, keeps the epoch with the best validation
/// token-F1@k and stops early after `cfg.patience` epochs without progress;
/// without it, keeps the last epoch. Deterministic for a given `cfg.seed`.
pub fn train(
    train: &TrainingSet,
    val: Option<&TrainingSet>,
    cfg: &TrainConfig,
    on_epoch: &mut dyn FnMut(EpochReport),
) -> anyhow::Result<ExpNet> {
    let spec = train.spec.clone();
    let dim = spec.dim();
    anyhow::ensure!(cfg.batch_size > 0 && cfg.epochs > 0, "batch size and epochs must be positive");
    anyhow::ensure!(cfg.lr > 0.0, "learning rate must be positive");
    anyhow::ensure!(cfg.net.context_heads == 0, "the contextual layer is for distilled ExpNets (expnet distill --context)");
    if let Some(v) = val {
        anyhow::ensure!(v.spec == spec, "validation features were extracted with another feature spec than the training set");
    }
    for e in &train.examples {
        e.check(dim)?;
    }
    // Pieces that count: everything the tokenizer did not add.
    let pieces: Vec<(usize, usize)> = train
        .examples
        .iter()
        .enumerate()
        .flat_map(|(ei, e)| (0..e.features.len()).filter(move |&p| !e.special[p]).map(move |p| (ei, p)))
        .collect();
    anyhow::ensure!(!pieces.is_empty(), "the training set has no (non-special) pieces");
    let pos: f64 = pieces.iter().map(|&(e, p)| train.examples[e].labels[p] as f64).sum();
    let neg = pieces.len() as f64 - pos;
    anyhow::ensure!(pos > 0.0 && neg > 0.0, "the training labels are all {}; need both rationale and other pieces", if pos > 0.0 { "1" } else { "0" });
    let pos_weight = cfg.pos_weight.unwrap_or((neg / pos) as f32);
    anyhow::ensure!(pos_weight > 0.0 && pos_weight.is_finite(), "pos_weight must be positive, got {pos_weight}");

    let (mean, std) = column_stats(&pieces, train, dim);
    let mut net = ExpNet::init(spec, cfg.net.clone(), mean, std, cfg.seed)?;
    let mut opt = AdamW::new(net.vars(), ParamsAdamW { lr: cfg.lr, weight_decay: cfg.weight_decay, ..Default::default() })?;
    let mut rng = StdRng::seed_from_u64(cfg.seed.wrapping_add(1));
    let mut order = pieces.clone();
    let in_dim = net.input_dim();
    let (mut best_f1, mut best_epoch, mut best_snap, mut since_best) = (f32::NEG_INFINITY, 0, None, 0);
    // A residual ExpNet starts as its prior column: that is epoch 0, kept
    // unless an epoch beats it on validation (training must earn its place).
    if let (Some(v), Some(_)) = (val, &cfg.net.prior) {
        best_f1 = evaluate(&net, v, pos_weight)?.1;
        best_snap = Some(net.snapshot()?);
    }
    let mut epochs_run = 0;
    for epoch in 1..=cfg.epochs {
        let started = Instant::now();
        order.shuffle(&mut rng);
        let (mut loss_sum, mut batches) = (0.0f64, 0usize);
        for batch in order.chunks(cfg.batch_size) {
            let mut x = Vec::with_capacity(batch.len() * in_dim);
            let mut y = Vec::with_capacity(batch.len());
            for &(e, p) in batch {
                let ex = &train.examples[e];
                net.push_input(&ex.features, p, &mut x);
                y.push(ex.labels[p]);
            }
            let x = Tensor::from_vec(x, (batch.len(), in_dim), &Device::Cpu)?;
            let y = Tensor::from_vec(y, batch.len(), &Device::Cpu)?;
            let logits = net.forward_logits(&x, &[batch.len()], Some(&mut rng))?;
            let loss = weighted_bce_with_logits(&logits, &y, pos_weight)?;
            opt.backward_step(&loss)?;
            loss_sum += loss.to_scalar::<f32>()? as f64;
            batches += 1;
        }
        epochs_run = epoch;
        let train_loss = (loss_sum / batches as f64) as f32;
        let (val_loss, val_f1) = match val {
            Some(v) => {
                let (l, f) = evaluate(&net, v, pos_weight)?;
                (Some(l), Some(f))
            }
            None => (None, None),
        };
        let score = val_f1.unwrap_or(-train_loss);
        if score > best_f1 + 1e-6 || val.is_none() {
            best_f1 = score;
            best_epoch = epoch;
            since_best = 0;
            if val.is_some() {
                best_snap = Some(net.snapshot()?);
            }
        } else {
            since_best += 1;
        }
        let stopping = epoch == cfg.epochs || (val.is_some() && since_best >= cfg.patience);
        let seconds = started.elapsed().as_secs_f32();
        on_epoch(EpochReport {
            epoch,
            max_epochs: cfg.epochs,
            train_loss,
            val_loss,
            val_f1,
            best_epoch,
            best_val_f1: val.map(|_| best_f1),
            pieces_per_sec: pieces.len() as f32 / seconds.max(1e-6),
            seconds,
            stopping,
        });
        if stopping {
            break;
        }
    }
    if let Some(snap) = best_snap {
        net.restore(&snap)?;
    }
    net.info.model_id = Some(train.model_id.clone());
    net.info.training_data = Some(train.data_spec.clone());
    net.info.training = Some(TrainingSummary {
        examples: train.examples.len(),
        pieces: pieces.len(),
        epochs_run,
        best_epoch,
        pos_weight,
        seed: cfg.seed,
        train_config: serde_json::to_value(cfg)?,
    });
    if val.is_some() {
        net.info.validation.insert("token_f1_at_k".into(), best_f1 as f64);
    }
    Ok(net)
}

/// Per-feature mean and std over the training pieces (std floored so
/// constant columns pass through as zeros).
fn column_stats(pieces: &[(usize, usize)], set: &TrainingSet, dim: usize) -> (Vec<f32>, Vec<f32>) {
    let mut sum = vec![0.0f64; dim];
    let mut sq = vec![0.0f64; dim];
    for &(e, p) in pieces {
        for (c, v) in set.examples[e].features[p].iter().enumerate() {
            sum[c] += *v as f64;
            sq[c] += (*v as f64) * (*v as f64);
        }
    }
    let n = pieces.len() as f64;
    let mean: Vec<f64> = sum.iter().map(|s| s / n).collect();
    let std = sq.iter().zip(&mean).map(|(q, m)| ((q / n - m * m).max(0.0)).sqrt()).map(|s| if s < 1e-6 { 1.0 } else { s as f32 });
    (mean.iter().map(|m| *m as f32).collect(), std.collect())
}

/// Mean of `pw·y·softplus(−x) + (1−y)·softplus(x)`, written as
/// `(1−y)·x + (1 + (pw−1)·y)·softplus(−x)` with a stable softplus.
fn weighted_bce_with_logits(logits: &Tensor, y: &Tensor, pos_weight: f32) -> candle_core::Result<Tensor> {
    // softplus(−x) = max(−x, 0) + ln(1 + e^{−|x|})
    let sp = (logits.neg()?.relu()? + ((logits.abs()?.neg()?.exp()? + 1.0)?.log()?))?;
    let weight = ((y * (pos_weight as f64 - 1.0))? + 1.0)?;
    let one_minus_y = (y.neg()? + 1.0)?;
    ((one_minus_y * logits)? + (weight * sp)?)?.mean_all()
}

/// Validation loss and mean token-F1@k.
fn evaluate(net: &ExpNet, set: &TrainingSet, pos_weight: f32) -> anyhow::Result<(f32, f32)> {
    let (mut f1_sum, mut f1_n) = (0.0f64, 0usize);
    let (mut loss_sum, mut loss_n) = (0.0f64, 0usize);
    for e in &set.examples {
        let scores = net.score_features(&e.features, &e.special)?;
        for ((s, l), sp) in scores.iter().zip(&e.labels).zip(&e.special) {
            if !sp {
                let p = (*s as f64).clamp(1e-7, 1.0 - 1e-7);
                let l = *l as f64;
                loss_sum += -(pos_weight as f64 * l * p.ln() + (1.0 - l) * (1.0 - p).ln());
                loss_n += 1;
            }
        }
        if let Some(f1) = f1_at_k(&scores, &e.labels, &e.special) {
            f1_sum += f1 as f64;
            f1_n += 1;
        }
    }
    let loss = if loss_n > 0 { loss_sum / loss_n as f64 } else { 0.0 };
    let f1 = if f1_n > 0 { f1_sum / f1_n as f64 } else { 0.0 };
    Ok((loss as f32, f1 as f32))
}

/// Token F1 when the top-k non-special pieces are predicted rationales,
/// k = number of gold pieces (label ≥ 0.5). With |pred| = |gold| = k,
/// precision = recall = F1 = overlap / k. `None` when there is no gold.
fn f1_at_k(scores: &[f32], labels: &[f32], special: &[bool]) -> Option<f32> {
    let mut idx: Vec<usize> = (0..scores.len()).filter(|&i| !special[i]).collect();
    let k = idx.iter().filter(|&&i| labels[i] >= 0.5).count();
    if k == 0 {
        return None;
    }
    idx.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    let hit = idx[..k].iter().filter(|&&i| labels[i] >= 0.5).count();
    Some(hit as f32 / k as f32)
}

#[cfg(test)]
#[path = "train_tests.rs"]
mod tests;
