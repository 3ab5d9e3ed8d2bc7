//! Integrated gradients (Sundararajan et al. 2017) on the word embeddings:
//! `(x − x′) · ∫₀¹ ∇f(x′ + α(x − x′)) dα`, summed over the hidden dimension.
//! The baseline x′ puts the [PAD] embedding at every non-special token (special
//! tokens keep theirs), as captum's LayerIntegratedGradients is usually set up.
//! The integral uses captum's default Gauss–Legendre rule (or the trapezoid
//! rule), with the steps run through the encoder in batches.

use super::{Attribution, ExplainInput, Explanation, Family, Progress};

/// Quadrature rule for the path integral.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Quadrature {
    GaussLegendre,
    Trapezoid,
}

/// Tokens per forward+backward batch (points × input length) when the run
/// can be cancelled: one batch is the unit of cancellation. On two cores 256
/// tokens take about 50–110 ms (cancel latencies 20–56 ms measured, session
/// 12), and twice the old 128 made IG 1.2–1.35× faster at 8–128 tokens.
pub const IG_BATCH_TOKENS: usize = 256;

/// The same cap for runs nobody can cancel ([`Progress::none`]: `explain`,
/// `eval`, `bench`, `distill`'s teacher): larger batches amortise `gemm`'s
/// packing of every weight (15% of IG's samples at 32 tokens with 128-token
/// batches). 800 measured
/// best of 400/800/1,600 (docs/PERFORMANCE.md, session 12).
pub const IG_BATCH_TOKENS_UNCANCELLABLE: usize = 800;

#[derive(Clone, Debug)]
pub struct IntegratedGradients {
    pub steps: usize,
    pub quadrature: Quadrature,
    /// Most interpolation points per encoder batch.
    pub batch: usize,
    /// Most tokens per batch (points × input length) when the run can be
    /// cancelled, so long inputs get smaller batches.
    pub batch_tokens: usize,
    /// The same when it cannot ([`Progress::is_cancellable`] false).
    pub batch_tokens_uncancellable: usize,
}

impl Default for IntegratedGradients {
    fn default() -> Self {
        Self {
            steps: 50,
            quadrature: Quadrature::GaussLegendre,
            batch: 50,
            batch_tokens: IG_BATCH_TOKENS,
            batch_tokens_uncancellable: IG_BATCH_TOKENS_UNCANCELLABLE,
        }
    }
}

impl IntegratedGradients {
    /// Interpolation points per batch for an input of `len` tokens.
    pub fn points_per_batch(&self, len: usize, cancellable: bool) -> usize {
        let tokens = if cancellable { self.batch_tokens } else { self.batch_tokens_uncancellable };
        self.batch.max(1).min((tokens / len.max(1)).max(1))
    }
}

/// Points `α` in \[0, 1\] and weights summing to 1.
pub fn quadrature(rule: Quadrature, m: usize) -> (Vec<f64>, Vec<f64>) {
    let m = m.max(2);
    match rule {
        Quadrature::Trapezoid => {
            let alphas = (0..m).map(|i| i as f64 / (m - 1) as f64).collect();
            let h = 1.0 / (m - 1) as f64;
            let weights = (0..m).map(|i| if i == 0 || i == m - 1 { h / 2.0 } else { h }).collect();
            (alphas, weights)
        }
        Quadrature::GaussLegendre => {
            let (x, w) = gauss_legendre(m);
            (x.iter().map(|v| 0.5 * (v + 1.0)).collect(), w.iter().map(|v| 0.5 * v).collect())
        }
    }
}

/// Gauss–Legendre nodes and weights on \[−1, 1\] (Newton iteration on P_m),
/// in increasing order as numpy's `leggauss`.
fn gauss_legendre(m: usize) -> (Vec<f64>, Vec<f64>) {
    let mut x = vec![0f64; m];
    let mut w = vec![0f64; m];
    for i in 0..m.div_ceil(2) {
        let mut z = (std::f64::consts::PI * (i as f64 + 0.75) / (m as f64 + 0.5)).cos();
        let mut dp = 0.0;
        for _ in 0..100 {
            let (mut p0, mut p1) = (1.0, z);
            for k in 2..=m {
                let p2 = ((2 * k - 1) as f64 * z * p1 - (k - 1) as f64 * p0) / k as f64;
                p0 = p1;
                p1 = p2;
            }
            let pm = if m == 1 { z } else { p1 };
            let pm1 = if m == 1 { 1.0 } else { p0 };
            dp = m as f64 * (z * pm - pm1) / (z * z - 1.0);
            let dz = pm / dp;
            z -= dz;
            if dz.abs() < 1e-15 {
                break;
            }
        }
        x[i] = -z;
        x[m - 1 - i] = z;
        w[i] = 2.0 / ((1.0 - z * z) * dp * dp);
        w[m - 1 - i] = w[i];
    }
    (x, w)
}

impl Attribution for IntegratedGradients {
    fn name(&self) -> &'static str {
        "integrated_gradients"
    }
    fn family(&self) -> Family {
        Family::Gradient
    }
    fn is_slow(&self) -> bool {
        true
    }
    fn explain(&self, input: &ExplainInput, progress: &Progress) -> anyhow::Result<Explanation> {
        let model = input.model;
        let enc = input.encoding;
        let d = model.config().embedding_size;
        let x = model.word_embeddings(&enc.ids)?;
        let baseline_ids: Vec<u32> = enc
            .tokens
            .iter()
            .map(|t| if t.special { t.id } else { model.config().pad_token_id })
            .collect();
        let x0 = model.word_embeddings(&baseline_ids)?;
        let (alphas, weights) = quadrature(self.quadrature, self.steps);
        let mut avg_grad = vec![0f64; x.len()];
        let mut passes = 0;
        let batch = self.points_per_batch(enc.len(), progress.is_cancellable());
        for (chunk_idx, chunk) in alphas.chunks(batch).enumerate() {
            progress.checkpoint((chunk_idx * batch) as f32 / alphas.len() as f32)?;
            let points: Vec<Vec<f32>> = chunk
                .iter()
                .map(|&a| x0.iter().zip(&x).map(|(b, v)| b + (a as f32) * (v - b)).collect())
                .collect();
            let (_, grads) = model.logit_and_embedding_grads(enc, &points, input.target)?;
            passes += chunk.len();
            for (k, g) in grads.iter().enumerate() {
                let w = weights[chunk_idx * batch + k];
                avg_grad.iter_mut().zip(g).for_each(|(acc, gv)| *acc += w * *gv as f64);
            }
        }
        progress.checkpoint(1.0)?;
        let scores: Vec<f32> = (0..enc.len())
            .map(|t| {
                (0..d)
                    .map(|j| {
                        let i = t * d + j;
                        (x[i] - x0[i]) as f64 * avg_grad[i]
                    })
                    .sum::<f64>() as f32
            })
            .collect();
        // Completeness: Σ attributions should equal f(x) − f(x′).
        // Logits only (no backward): the baseline is the [PAD]-id sequence, so
        // its embeddings are exactly `x0`.
        let ends = model.logits_batch(&[&baseline_ids, &enc.ids], &[&enc.type_ids, &enc.type_ids])?;
        passes += 2;
        let total: f64 = scores.iter().map(|&v| v as f64).sum();
        let gap = (total - (ends[1][input.target] - ends[0][input.target]) as f64).abs();
        Ok(Explanation { scores, forward_passes: passes, notes: vec![("completeness_gap".into(), gap)] })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_inputs_get_smaller_batches() {
        let ig = IntegratedGradients::default();
        assert_eq!(ig.points_per_batch(8, true), 32);
        assert_eq!(ig.points_per_batch(32, true), 8);
        assert_eq!(ig.points_per_batch(128, true), 2);
        assert_eq!(ig.points_per_batch(512, true), 1);
        // Nobody waits on a cancel: all 50 points of a short input at once.
        assert_eq!(ig.points_per_batch(8, false), 50);
        assert_eq!(ig.points_per_batch(32, false), 25);
        assert_eq!(ig.points_per_batch(128, false), 6);
        assert_eq!(IntegratedGradients { batch: 0, ..ig }.points_per_batch(8, true), 1);
    }

    #[test]
    fn gauss_legendre_matches_known_nodes() {
        let (x, w) = gauss_legendre(3);
        let r = (0.6f64).sqrt();
        assert!((x[0] + r).abs() < 1e-12 && x[1].abs() < 1e-12 && (x[2] - r).abs() < 1e-12);
        assert!((w[0] - 5.0 / 9.0).abs() < 1e-12 && (w[1] - 8.0 / 9.0).abs() < 1e-12);
    }

    #[test]
    fn quadratures_integrate_polynomials() {
        for rule in [Quadrature::GaussLegendre, Quadrature::Trapezoid] {
            let (a, w) = quadrature(rule, 50);
            assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-12);
            let integral: f64 = a.iter().zip(&w).map(|(x, w)| w * x * x).sum();
            assert!((integral - 1.0 / 3.0).abs() < 1e-3, "{rule:?}: {integral}");
        }
    }
}
