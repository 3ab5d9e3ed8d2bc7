//! Distilling a slow attribution method (the teacher) into an ExpNet that
//! reproduces its token scores from one forward pass.
//!
//! Users rarely have human rationales for their own task, but any
//! classifier has occlusion, integrated gradients or KernelSHAP: too slow to
//! run while typing, cheap enough to run once over a few thousand texts.
//! The student is the ExpNet MLP with a linear output, trained on the
//! teacher's scores standardised per input (only the order and relative size
//! within one input matter for an explanation, and inputs differ in scale by
//! orders of magnitude), with an optional pairwise ranking term that
//! rewards getting the order right directly. Fidelity is measured as the
//! mean Spearman correlation with the teacher over held-out texts.

use candle_core::{Device, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use super::features::FeatureSpec;
use super::net::{ExpNet, NetConfig, OutputKind};

/// One text's student inputs and teacher scores, one row per word piece.
#[derive(Clone, Debug, PartialEq)]
pub struct DistillExample {
    pub id: String,
    /// `[pieces][spec.dim()]`.
    pub features: Vec<Vec<f32>>,
    /// The teacher's signed score per piece (positive = supports the class).
    pub teacher: Vec<f32>,
    /// Pieces the tokenizer added: no loss, no metric.
    pub special: Vec<bool>,
}

/// The training objective.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum DistillLoss {
    /// Mean squared error to the per-input z-scored teacher scores.
    Mse,
    /// Pairwise logistic loss on pairs the teacher orders.
    Rank,
    /// Both, summed (`rank_weight` scales the ranking term).
    #[default]
    MseRank,
}

impl DistillLoss {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mse => "mse",
            Self::Rank => "rank",
            Self::MseRank => "mse-rank",
        }
    }
}

/// What the student regresses on, per text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum DistillTarget {
    /// The teacher's scores, z-scored over the text's pieces.
    Score,
    /// The ranks of the teacher's scores (ties share their mean rank),
    /// z-scored: Spearman is the correlation of ranks, so this regresses on
    /// what is measured. Raw scores of a confident prediction are one large
    /// value and many near-zero ones whose order the squared error (and the
    /// z > 0.1 pair filter of the ranking term) barely sees. Measured better
    /// on validation (ρ 0.691 vs 0.665, docs/RESULTS.md), hence the default.
    #[default]
    Rank,
}

/// Distillation hyper-parameters.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DistillConfig {
    pub net: NetConfig,
    pub loss: DistillLoss,
    #[serde(default)]
    pub target: DistillTarget,
    /// Weight of the ranking term in [`DistillLoss::MseRank`].
    pub rank_weight: f32,
    /// Pairs sampled per text and step for the ranking term.
    pub pairs_per_text: usize,
    pub epochs: usize,
    /// Texts per optimiser step.
    pub batch_texts: usize,
    pub lr: f64,
    pub weight_decay: f64,
    /// Stop after this many epochs without a better validation Spearman.
    pub patience: usize,
    pub seed: u64,
}

impl Default for DistillConfig {
    fn default() -> Self {
        Self {
            net: NetConfig { hidden: vec![128, 64], dropout: 0.1, output: OutputKind::Score, ..NetConfig::default() },
            loss: DistillLoss::MseRank,
            target: DistillTarget::Rank,
            rank_weight: 1.0,
            pairs_per_text: 32,
            epochs: 40,
            batch_texts: 32,
            lr: 1e-3,
            weight_decay: 1e-2,
            patience: 8,
            seed: 42,
        }
    }
}

/// Agreement of a student (or a second teacher run) with a teacher.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Fidelity {
    /// Mean over texts of the Spearman correlation on non-special pieces.
    pub spearman: f64,
    /// 95% interval of that mean (bootstrap over texts, 1,000 resamples).
    pub spearman_ci: (f64, f64),
    /// Mean over texts of |top-k(student) ∩ top-k(teacher)| / k, k = ⌈n/5⌉.
    pub top_k_overlap: f64,
    /// Texts with at least 3 non-special pieces (the others have no order to compare).
    pub texts: usize,
}

/// One epoch's progress.
#[derive(Clone, Debug)]
pub struct DistillEpoch {
    pub epoch: usize,
    pub train_loss: f32,
    pub val: Option<Fidelity>,
    pub secs: f64,
}

/// Spearman's rank correlation (ties get their mean rank); `None` when
/// either side is constant or there are fewer than 3 values.
pub fn spearman(a: &[f32], b: &[f32]) -> Option<f64> {
    if a.len() != b.len() || a.len() < 3 {
        return None;
    }
    let (ra, rb) = (ranks(a), ranks(b));
    pearson(&ra, &rb)
}

fn ranks(x: &[f32]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..x.len()).collect();
    idx.sort_by(|&i, &j| x[i].total_cmp(&x[j]));
    let mut r = vec![0.0; x.len()];
    let mut s = 0;
    while s < idx.len() {
        let mut e = s;
        while e + 1 < idx.len() && x[idx[e + 1]] == x[idx[s]] {
            e += 1;
        }
        let mean = (s + e) as f64 / 2.0;
        for &i in &idx[s..=e] {
            r[i] = mean;
        }
        s = e + 1;
    }
    r
}

fn pearson(a: &[f64], b: &[f64]) -> Option<f64> {
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        sab += (x - ma) * (y - mb);
        saa += (x - ma) * (x - ma);
        sbb += (y - mb) * (y - mb);
    }
    (saa > 0.0 && sbb > 0.0).then(|| sab / (saa * sbb).sqrt())
}

/// |top-k(a) ∩ top-k(b)| / k with k = ⌈n/5⌉ (by descending signed score).
pub fn top_k_overlap(a: &[f32], b: &[f32]) -> Option<f64> {
    if a.len() != b.len() || a.is_empty() {
        return None;
    }
    let k = a.len().div_ceil(5);
    let top = |x: &[f32]| {
        let mut idx: Vec<usize> = (0..x.len()).collect();
        idx.sort_by(|&i, &j| x[j].total_cmp(&x[i]));
        idx.truncate(k);
        idx
    };
    let (ta, tb) = (top(a), top(b));
    Some(ta.iter().filter(|i| tb.contains(i)).count() as f64 / k as f64)
}

/// Fidelity of `student` to `teacher`, per text on non-special pieces.
pub fn fidelity(student: &[Vec<f32>], teacher: &[Vec<f32>], special: &[Vec<bool>]) -> Fidelity {
    let mut rhos = Vec::new();
    let mut overlaps = Vec::new();
    for ((s, t), sp) in student.iter().zip(teacher).zip(special) {
        let keep = |v: &[f32]| -> Vec<f32> { v.iter().zip(sp).filter(|(_, s)| !**s).map(|(x, _)| *x).collect() };
        let (s, t) = (keep(s), keep(t));
        if s.len() < 3 {
            continue;
        }
        // A constant side has no order: count it as no agreement rather than skipping it.
        rhos.push(spearman(&s, &t).unwrap_or(0.0));
        overlaps.extend(top_k_overlap(&s, &t));
    }
    let mean = |v: &[f64]| if v.is_empty() { 0.0 } else { v.iter().sum::<f64>() / v.len() as f64 };
    Fidelity { spearman: mean(&rhos), spearman_ci: bootstrap_ci(&rhos, 1000, 7), top_k_overlap: mean(&overlaps), texts: rhos.len() }
}

/// Percentile 95% interval of the mean.
fn bootstrap_ci(v: &[f64], resamples: usize, seed: u64) -> (f64, f64) {
    if v.is_empty() {
        return (0.0, 0.0);
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let mut means: Vec<f64> = (0..resamples)
        .map(|_| (0..v.len()).map(|_| v[rand::Rng::gen_range(&mut rng, 0..v.len())]).sum::<f64>() / v.len() as f64)
        .collect();
    means.sort_by(|a, b| a.total_cmp(b));
    (means[resamples * 25 / 1000], means[resamples * 975 / 1000 - 1])
}

/// Teacher scores (or their ranks) z-scored over the non-special pieces (specials get 0).
fn standardise(teacher: &[f32], special: &[bool], target: DistillTarget) -> Vec<f32> {
    let mut vals: Vec<f32> = teacher.iter().zip(special).filter(|(_, s)| !**s).map(|(v, _)| *v).collect();
    if target == DistillTarget::Rank {
        vals = ranks(&vals).into_iter().map(|r| r as f32).collect();
        let mut it = vals.iter();
        let teacher: Vec<f32> = special.iter().map(|s| if *s { 0.0 } else { *it.next().unwrap_or(&0.0) }).collect();
        return standardise(&teacher, special, DistillTarget::Score);
    }
    if vals.is_empty() {
        return vec![0.0; teacher.len()];
    }
    let n = vals.len() as f32;
    let mean = vals.iter().sum::<f32>() / n;
    let std = (vals.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n).sqrt();
    teacher
        .iter()
        .zip(special)
        .map(|(v, s)| if *s || std < 1e-9 { 0.0 } else { (v - mean) / std })
        .collect()
}

/// Per-column mean and std over every piece of `examples`. Special pieces
/// count too: with a neighbour window their rows enter other tokens' inputs,
/// and [CLS]/[SEP] hidden states standardised by word statistics alone sit
/// hundreds of deviations out and swamp the first epochs (measured: initial
/// loss 519 instead of ~1).
fn column_stats(examples: &[DistillExample], dim: usize) -> (Vec<f32>, Vec<f32>) {
    let (mut sum, mut sq, mut n) = (vec![0f64; dim], vec![0f64; dim], 0usize);
    for e in examples {
        for row in &e.features {
            for (c, v) in row.iter().enumerate() {
                sum[c] += *v as f64;
                sq[c] += (*v as f64) * (*v as f64);
            }
            n += 1;
        }
    }
    let n = n.max(1) as f64;
    let mean: Vec<f32> = sum.iter().map(|s| (s / n) as f32).collect();
    let std: Vec<f32> = sq
        .iter()
        .zip(&sum)
        .map(|(q, s)| {
            let var = (q / n - (s / n) * (s / n)).max(0.0);
            if var.sqrt() > 1e-6 { var.sqrt() as f32 } else { 1.0 }
        })
        .collect();
    (mean, std)
}

fn check(examples: &[DistillExample], dim: usize) -> anyhow::Result<()> {
    for e in examples {
        let n = e.features.len();
        anyhow::ensure!(
            e.teacher.len() == n && e.special.len() == n,
            "text {}: {n} feature rows, {} teacher scores, {} special flags",
            e.id,
            e.teacher.len(),
            e.special.len()
        );
        if let Some(r) = e.features.iter().position(|r| r.len() != dim) {
            anyhow::bail!("text {}: piece {r} has {} features, the spec has {dim}", e.id, e.features[r].len());
        }
        anyhow::ensure!(
            e.teacher.iter().chain(e.features.iter().flatten()).all(|v| v.is_finite()),
            "text {}: NaN or infinity in its features or teacher scores",
            e.id
        );
    }
    Ok(())
}

/// Student scores for each example (special pieces 0).
pub fn predict(net: &ExpNet, examples: &[DistillExample]) -> anyhow::Result<Vec<Vec<f32>>> {
    examples.iter().map(|e| net.score_features(&e.features, &e.special)).collect()
}

/// Trains a student. Returns the net of the epoch with the best validation
/// Spearman (the last epoch without validation) and its validation fidelity.
pub fn distill(
    spec: FeatureSpec,
    train: &[DistillExample],
    val: &[DistillExample],
    cfg: &DistillConfig,
    report: &mut dyn FnMut(&DistillEpoch),
) -> anyhow::Result<(ExpNet, Option<Fidelity>)> {
    distill_until(spec, train, val, cfg, report, &std::sync::atomic::AtomicBool::new(false))
}

/// [`distill`] that ends with an error when `stop` is set, checked before
/// every epoch, so a background run can be cancelled within one epoch.
pub fn distill_until(
    spec: FeatureSpec,
    train: &[DistillExample],
    val: &[DistillExample],
    cfg: &DistillConfig,
    report: &mut dyn FnMut(&DistillEpoch),
    stop: &std::sync::atomic::AtomicBool,
) -> anyhow::Result<(ExpNet, Option<Fidelity>)> {
    let dim = spec.dim();
    check(train, dim)?;
    check(val, dim)?;
    anyhow::ensure!(!train.is_empty(), "no training texts (hint: --input has no usable lines)");
    anyhow::ensure!(cfg.batch_texts > 0 && cfg.epochs > 0, "batch size and epochs must be positive");
    let (mean, std) = column_stats(train, dim);
    let mut net_cfg = cfg.net.clone();
    net_cfg.output = OutputKind::Score;
    let net = ExpNet::init(spec, net_cfg, mean, std, cfg.seed)?;
    let targets: Vec<Vec<f32>> = train.iter().map(|e| standardise(&e.teacher, &e.special, cfg.target)).collect();
    let params = ParamsAdamW { lr: cfg.lr, weight_decay: cfg.weight_decay, ..Default::default() };
    let mut opt = AdamW::new(net.vars(), params)?;
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let mut order: Vec<usize> = (0..train.len()).collect();
    let val_teacher: Vec<Vec<f32>> = val.iter().map(|e| e.teacher.clone()).collect();
    let val_special: Vec<Vec<bool>> = val.iter().map(|e| e.special.clone()).collect();
    let (mut best, mut best_fid, mut since_best) = (None, None::<Fidelity>, 0usize);
    for epoch in 1..=cfg.epochs {
        anyhow::ensure!(!stop.load(std::sync::atomic::Ordering::Relaxed), "distillation stopped before epoch {epoch}");
        let t0 = std::time::Instant::now();
        order.shuffle(&mut rng);
        let (mut loss_sum, mut steps) = (0f64, 0usize);
        for chunk in order.chunks(cfg.batch_texts) {
            let loss = batch_loss(&net, train, &targets, chunk, cfg, &mut rng)?;
            let Some(loss) = loss else { continue };
            opt.backward_step(&loss)?;
            loss_sum += loss.to_scalar::<f32>()? as f64;
            steps += 1;
        }
        let val_fid = if val.is_empty() { None } else { Some(fidelity(&predict(&net, val)?, &val_teacher, &val_special)) };
        report(&DistillEpoch {
            epoch,
            train_loss: (loss_sum / steps.max(1) as f64) as f32,
            val: val_fid,
            secs: t0.elapsed().as_secs_f64(),
        });
        match val_fid {
            Some(f) if best_fid.is_none_or(|b| f.spearman > b.spearman) => {
                best = Some(net.snapshot()?);
                best_fid = Some(f);
                since_best = 0;
            }
            Some(_) => {
                since_best += 1;
                if since_best >= cfg.patience {
                    break;
                }
            }
            None => {}
        }
    }
    if let Some(b) = best {
        net.restore(&b)?;
    }
    Ok((net, best_fid))
}

/// The loss of one mini-batch of texts; `None` when it has no scorable piece.
fn batch_loss(
    net: &ExpNet,
    train: &[DistillExample],
    targets: &[Vec<f32>],
    chunk: &[usize],
    cfg: &DistillConfig,
    rng: &mut StdRng,
) -> anyhow::Result<Option<Tensor>> {
    let mut x = Vec::new();
    let mut y = Vec::new();
    let (mut pa, mut pb) = (Vec::<u32>::new(), Vec::<u32>::new());
    // Every piece goes through the net (the contextual layer reads special
    // pieces too); the loss sees the `scored` rows only.
    let (mut rows, mut scored, mut segments) = (0u32, Vec::<u32>::new(), Vec::new());
    for &t in chunk {
        let e = &train[t];
        let first = scored.len() as u32;
        let mut kept = Vec::new();
        for i in 0..e.features.len() {
            net.push_input(&e.features, i, &mut x);
            if !e.special[i] {
                y.push(targets[t][i]);
                kept.push(i);
                scored.push(rows + i as u32);
            }
        }
        rows += e.features.len() as u32;
        segments.push(e.features.len());
        // Pairs the teacher orders clearly (z differs by > 0.1), sampled.
        let z: Vec<f32> = kept.iter().map(|&i| targets[t][i]).collect();
        if z.len() >= 2 && cfg.loss != DistillLoss::Mse {
            for _ in 0..cfg.pairs_per_text {
                let a = rand::Rng::gen_range(rng, 0..z.len());
                let b = rand::Rng::gen_range(rng, 0..z.len());
                if (z[a] - z[b]).abs() <= 0.1 {
                    continue;
                }
                let (hi, lo) = if z[a] > z[b] { (a, b) } else { (b, a) };
                pa.push(first + hi as u32);
                pb.push(first + lo as u32);
            }
        }
    }
    if scored.is_empty() {
        return Ok(None);
    }
    let x = Tensor::from_vec(x, (rows as usize, net.input_dim()), &Device::Cpu)?;
    let n_scored = scored.len();
    let p = net.forward_logits(&x, &segments, Some(rng))?.index_select(&Tensor::from_vec(scored, n_scored, &Device::Cpu)?, 0)?;
    let y = Tensor::from_vec(y, n_scored, &Device::Cpu)?;
    let mse = (p.sub(&y)?.sqr()?).mean_all()?;
    let rank = if pa.is_empty() {
        None
    } else {
        let n = pa.len();
        let d = p
            .index_select(&Tensor::from_vec(pa, n, &Device::Cpu)?, 0)?
            .sub(&p.index_select(&Tensor::from_vec(pb, n, &Device::Cpu)?, 0)?)?;
        // softplus(−d) = relu(−d) + log(1 + exp(−|d|)), stable for any d.
        let neg = d.neg()?;
        let sp = (neg.relu()? + (d.abs()?.neg()?.exp()? + 1.0)?.log()?)?;
        Some(sp.mean_all()?)
    };
    let loss = match (cfg.loss, rank) {
        (DistillLoss::Mse, _) | (DistillLoss::MseRank, None) => mse,
        (DistillLoss::Rank, Some(r)) => r,
        (DistillLoss::Rank, None) => return Ok(None),
        (DistillLoss::MseRank, Some(r)) => (mse + (r * cfg.rank_weight as f64)?)?,
    };
    Ok(Some(loss))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spearman_handles_ties_order_and_constants() {
        assert!((spearman(&[1.0, 2.0, 3.0, 4.0], &[10.0, 20.0, 30.0, 40.0]).unwrap() - 1.0).abs() < 1e-12);
        assert!((spearman(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]).unwrap() + 1.0).abs() < 1e-12);
        // Ties: ranks [0.5, 0.5, 2] vs [0, 1, 2] -> Pearson of those.
        let r = spearman(&[1.0, 1.0, 2.0], &[1.0, 2.0, 3.0]).unwrap();
        assert!((r - 0.866_025_403_784_438_6).abs() < 1e-9, "{r}");
        assert_eq!(spearman(&[1.0, 1.0, 1.0], &[1.0, 2.0, 3.0]), None);
        assert_eq!(spearman(&[1.0, 2.0], &[1.0, 2.0]), None);
    }

    #[test]
    fn top_k_overlap_uses_a_fifth_of_the_tokens() {
        let a = [5.0, 4.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0];
        let b = [5.0, 0.0, 4.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0];
        assert_eq!(top_k_overlap(&a, &b), Some(0.5)); // k = 2: {0,1} vs {0,2}
        assert_eq!(top_k_overlap(&a, &a), Some(1.0));
    }

    /// Synthetic task: the teacher score is a fixed non-linear function of
    /// two of five features; the student must learn the order.
    fn synthetic(n_texts: usize, seed: u64) -> Vec<DistillExample> {
        let mut rng = StdRng::seed_from_u64(seed);
        (0..n_texts)
            .map(|t| {
                let len = rand::Rng::gen_range(&mut rng, 5..12);
                let mut features = Vec::new();
                let mut teacher = Vec::new();
                let mut special = Vec::new();
                for i in 0..len {
                    let row: Vec<f32> = (0..5).map(|_| rand::Rng::gen_range(&mut rng, -1.0f32..1.0)).collect();
                    teacher.push(row[0] * 2.0 + (row[1] * 3.0).sin());
                    special.push(i == 0 || i == len - 1);
                    features.push(row);
                }
                DistillExample { id: format!("t{t}"), features, teacher, special }
            })
            .collect()
    }

    fn spec5() -> FeatureSpec {
        // Five "hidden" columns and nothing else: a 1x1 encoder with every attention group off.
        let mut spec = FeatureSpec::new(1, 1);
        spec.cls_to_token = false;
        spec.token_to_cls = false;
        spec.received = false;
        spec.self_attn = false;
        spec.relative_position = false;
        spec.special_flag = false;
        spec.signals.hidden_layers = 1;
        spec.signals.hidden_size = 5;
        spec
    }

    #[test]
    fn distilled_student_learns_the_teachers_order_and_beats_an_untrained_one() {
        let (train, val) = (synthetic(150, 1), synthetic(40, 2));
        let cfg = DistillConfig { epochs: 25, net: NetConfig { hidden: vec![32], ..DistillConfig::default().net }, ..Default::default() };
        let mut losses = Vec::new();
        let (_net, fid) = distill(spec5(), &train, &val, &cfg, &mut |e| losses.push(e.train_loss)).unwrap();
        assert!(losses.last().unwrap() < &(losses[0] * 0.7), "loss falls: {losses:?}");
        let fid = fid.unwrap();
        let untrained = ExpNet::init(spec5(), cfg.net.clone(), vec![0.0; 5], vec![1.0; 5], 99).unwrap();
        let val_teacher: Vec<_> = val.iter().map(|e| e.teacher.clone()).collect();
        let val_special: Vec<_> = val.iter().map(|e| e.special.clone()).collect();
        let base = fidelity(&predict(&untrained, &val).unwrap(), &val_teacher, &val_special);
        assert!(fid.spearman > 0.85 && fid.spearman > base.spearman + 0.3, "trained {fid:?} vs untrained {base:?}");
        assert!(fid.spearman_ci.0 <= fid.spearman && fid.spearman <= fid.spearman_ci.1);
        assert_eq!(fid.texts, 40);
    }

    #[test]
    fn rank_targets_are_standardised_ranks_of_the_scored_pieces() {
        let special = [true, false, false, false, false, true];
        // One dominant score and three near-zero ones: ranks spread them evenly.
        let t = standardise(&[9.0, 5.0, 0.001, 0.003, 0.002, 9.0], &special, DistillTarget::Rank);
        let z = |r: f32| (r - 1.5) / 1.25f32.sqrt();
        let want = [0.0, z(3.0), z(0.0), z(2.0), z(1.0), 0.0];
        for (a, b) in t.iter().zip(want) {
            assert!((a - b).abs() < 1e-5, "{t:?} vs {want:?}");
        }
        let raw = standardise(&[9.0, 5.0, 0.001, 0.003, 0.002, 9.0], &special, DistillTarget::Score);
        assert!((raw[3] - raw[4]).abs() < 0.01, "raw z-scores leave the small ones nearly tied: {raw:?}");
        let (train, val) = (synthetic(150, 1), synthetic(40, 2));
        let cfg = DistillConfig { epochs: 20, target: DistillTarget::Rank, net: NetConfig { hidden: vec![32], ..DistillConfig::default().net }, ..Default::default() };
        let (_net, fid) = distill(spec5(), &train, &val, &cfg, &mut |_| {}).unwrap();
        assert!(fid.unwrap().spearman > 0.85, "{fid:?}");
    }

    #[test]
    fn malformed_examples_are_refused() {
        let mut bad = synthetic(2, 3);
        bad[1].teacher.pop();
        let err = distill(spec5(), &bad, &[], &DistillConfig::default(), &mut |_| {}).unwrap_err().to_string();
        assert!(err.contains("teacher scores"), "{err}");
        let mut nan = synthetic(2, 3);
        nan[0].teacher[1] = f32::NAN;
        assert!(distill(spec5(), &nan, &[], &DistillConfig::default(), &mut |_| {}).is_err());
    }
}
