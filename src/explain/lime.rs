//! LIME (Ribeiro et al. 2016) for token masks: fit a locally weighted linear
//! surrogate to the model's probability on random maskings and read token
//! importance off its coefficients.
//!
//! Choices follow `lime.lime_text.LimeTextExplainer` as ferret calls it
//! (`bow=False`, one feature per token, `[MASK]` replacement):
//! - samples: the unperturbed input first, then for each sample a number of
//!   tokens to mask drawn uniformly from `1..=d` and that many distinct tokens
//!   drawn uniformly (`d` = maskable tokens); default count `min(n², 5000)`
//!   with `n` the sequence length, as ferret;
//! - proximity: cosine distance `δ` between the sample's binary vector and
//!   the all-ones vector (`δ = 1 − sqrt(kept/d)`, 1 when all are masked);
//!   LimeTextExplainer's kernel `sqrt(exp(−(100δ)²/25²))` is exactly
//!   `exp(−δ²/(2·0.25²))`, so we use that form (captum's
//!   `get_exp_kernel_similarity_function`) with width 0.25;
//! - surrogate: weighted ridge, `alpha = 1`, unpenalised intercept
//!   (scikit-learn `Ridge(alpha=1, fit_intercept=True)`); with
//!   `num_features = all tokens` LIME's feature selection keeps every token,
//!   so the scores are the ridge coefficients.

use rand::SeedableRng;
use rand::rngs::StdRng;

use super::Explanation;
use super::Progress;
use super::masking::{Predict, evaluate, expand_mask, maskable_indices, weighted_ridge};

/// Settings for [`lime`].
#[derive(Clone, Debug)]
pub struct LimeConfig {
    /// Perturbed samples including the unperturbed input; `None` = `min(n², 5000)`.
    pub samples: Option<usize>,
    /// Seed of the mask sampler: the same seed gives the same explanation.
    pub seed: u64,
    /// Masks per `predict` call (one encoder batch).
    pub batch: usize,
    /// Width of the exponential kernel on cosine distance (LIME text: 0.25).
    pub kernel_width: f64,
    /// Ridge penalty of the surrogate (LIME: 1.0).
    pub alpha: f64,
}

impl Default for LimeConfig {
    fn default() -> Self {
        Self { samples: None, seed: 42, batch: 32, kernel_width: 0.25, alpha: 1.0 }
    }
}

/// Cap of the default sample count (ferret's `max_samples`).
pub const LIME_MAX_SAMPLES: usize = 5000;

/// LIME scores per token (0 for special tokens, which are never masked).
///
/// `forward_passes` is the number of masks evaluated. Notes: `intercept` of
/// the surrogate, `r2` its weighted R² on the samples (how linear the model
/// looks locally), `p_full` the unperturbed probability.
pub fn lime(
    maskable: &[bool],
    predict: &mut Predict,
    progress: &Progress,
    config: &LimeConfig,
) -> anyhow::Result<Explanation> {
    anyhow::ensure!(
        config.kernel_width > 0.0 && config.kernel_width.is_finite(),
        "LIME kernel width must be positive (got {}); LIME text uses 0.25",
        config.kernel_width
    );
    let n = maskable.len();
    let features = maskable_indices(maskable);
    let d = features.len();
    let mut scores = vec![0.0f32; n];
    if d == 0 {
        return Ok(Explanation { scores, forward_passes: 0, notes: Vec::new() });
    }
    let samples = match config.samples {
        Some(s) => {
            anyhow::ensure!(s >= 2, "LIME needs at least 2 samples (got {s}); the default is min(n², 5000)");
            s
        }
        None => (n * n).min(LIME_MAX_SAMPLES).max(d + 1),
    };

    let mut rng = StdRng::seed_from_u64(config.seed);
    let mut present_rows: Vec<Vec<bool>> = Vec::with_capacity(samples);
    present_rows.push(vec![true; d]);
    while present_rows.len() < samples {
        present_rows.push(sample_present(&mut rng, d));
    }
    let masks: Vec<Vec<bool>> = present_rows.iter().map(|p| expand_mask(n, &features, p)).collect();
    let y = evaluate(&masks, predict, progress, config.batch, 0, masks.len())?;

    let rows: Vec<Vec<f64>> =
        present_rows.iter().map(|p| p.iter().map(|&k| f64::from(u8::from(k))).collect()).collect();
    let weights: Vec<f64> = present_rows
        .iter()
        .map(|p| {
            let dist = cosine_distance_to_full(p.iter().filter(|&&k| k).count(), d);
            (-dist * dist / (2.0 * config.kernel_width * config.kernel_width)).exp()
        })
        .collect();
    let (beta, intercept) = weighted_ridge(&rows, &y, &weights, config.alpha, true)?;
    for (&pos, b) in features.iter().zip(&beta) {
        scores[pos] = *b as f32;
    }
    let r2 = weighted_r2(&rows, &y, &weights, &beta, intercept);
    Ok(Explanation {
        scores,
        forward_passes: masks.len(),
        notes: vec![("intercept".into(), intercept), ("r2".into(), r2), ("p_full".into(), y[0])],
    })
}

/// One LIME text perturbation: mask a uniform number (1..=d) of distinct tokens.
fn sample_present(rng: &mut StdRng, d: usize) -> Vec<bool> {
    use rand::Rng;
    let remove = rng.gen_range(1..=d);
    let mut present = vec![true; d];
    for i in rand::seq::index::sample(rng, d, remove) {
        present[i] = false;
    }
    present
}

/// Cosine distance between a binary vector with `kept` ones out of `d` and the
/// all-ones vector; a zero vector is at distance 1 (as scikit-learn).
fn cosine_distance_to_full(kept: usize, d: usize) -> f64 {
    if kept == 0 { 1.0 } else { 1.0 - (kept as f64 / d as f64).sqrt() }
}

fn weighted_r2(rows: &[Vec<f64>], y: &[f64], w: &[f64], beta: &[f64], b: f64) -> f64 {
    let wsum: f64 = w.iter().sum();
    let mean = y.iter().zip(w).map(|(y, w)| y * w).sum::<f64>() / wsum;
    let (mut ss_res, mut ss_tot) = (0.0, 0.0);
    for ((r, &yk), &wk) in rows.iter().zip(y).zip(w) {
        let fit = b + r.iter().zip(beta).map(|(x, c)| x * c).sum::<f64>();
        ss_res += wk * (yk - fit).powi(2);
        ss_tot += wk * (yk - mean).powi(2);
    }
    if ss_tot > 0.0 { 1.0 - ss_res / ss_tot } else { 1.0 }
}

#[cfg(test)]
#[allow(clippy::needless_range_loop)] // tests compare by token index
mod tests {
    use super::*;
    use crate::explain::{CancelToken, is_cancelled};

    fn additive(weights: Vec<f32>) -> impl FnMut(&[Vec<bool>]) -> anyhow::Result<Vec<f32>> {
        move |masks| {
            Ok(masks
                .iter()
                .map(|m| 0.2 + m.iter().zip(&weights).filter(|(k, _)| **k).map(|(_, w)| w).sum::<f32>())
                .collect())
        }
    }

    #[test]
    fn kernel_matches_lime_text_form() {
        // sqrt(exp(-(100 δ)² / 25²)) == exp(-δ² / (2 · 0.25²))
        for kept in 0..=7 {
            let dist = cosine_distance_to_full(kept, 7);
            let lime_text = (-(100.0 * dist).powi(2) / 625.0f64).exp().sqrt();
            let ours = (-dist * dist / (2.0 * 0.25 * 0.25)).exp();
            assert!((lime_text - ours).abs() < 1e-12);
        }
        assert_eq!(cosine_distance_to_full(7, 7), 0.0);
    }

    #[test]
    fn linear_predictor_is_recovered_and_specials_untouched() {
        let weights = vec![0.0, 0.30, -0.10, 0.05, 0.20, 0.0, -0.25, 0.12, 0.0];
        let maskable = vec![false, true, true, true, true, true, true, true, false];
        let mut inner = additive(weights.clone());
        let mut specials_masked = false;
        let mut predict = |m: &[Vec<bool>]| {
            specials_masked |= m.iter().any(|k| !k[0] || !k[8]);
            inner(m)
        };
        let e = lime(&maskable, &mut predict, &Progress::none(), &LimeConfig::default()).unwrap();
        assert!(!specials_masked);
        assert_eq!(e.forward_passes, 81); // min(9², 5000)
        assert_eq!((e.scores[0], e.scores[8]), (0.0, 0.0));
        // alpha = 1 shrinks coefficients (LIME's real behaviour) but keeps them close.
        for i in 1..8 {
            assert!((e.scores[i] - weights[i]).abs() < 0.05, "token {i}: {:?}", e.scores);
        }
        let order = |v: &[f32]| {
            let mut idx: Vec<usize> = (1..8).collect();
            idx.sort_by(|&a, &b| v[b].total_cmp(&v[a]));
            idx
        };
        assert_eq!(order(&e.scores), order(&weights));
        let r2 = e.notes.iter().find(|(k, _)| k == "r2").unwrap().1;
        assert!(r2 > 0.95, "linear model should fit well even with shrinkage, r2 = {r2}");

        // Without the ridge penalty the weighted fit of a linear model is exact.
        let config = LimeConfig { alpha: 0.0, ..Default::default() };
        let mut predict = additive(weights.clone());
        let e = lime(&maskable, &mut predict, &Progress::none(), &config).unwrap();
        for i in 1..8 {
            assert!((e.scores[i] - weights[i]).abs() < 1e-4, "token {i}: {:?}", e.scores);
        }
        let intercept = e.notes.iter().find(|(k, _)| k == "intercept").unwrap().1;
        assert!((intercept - 0.2).abs() < 1e-4, "intercept {intercept}");
        let r2 = e.notes.iter().find(|(k, _)| k == "r2").unwrap().1;
        assert!(r2 > 1.0 - 1e-9, "unpenalised fit of a linear model must be perfect, r2 = {r2}");
    }

    #[test]
    fn seeded_runs_are_deterministic_and_seed_matters() {
        let maskable = vec![true; 10];
        let run = |seed| {
            let mut masks = Vec::new();
            let mut predict = |m: &[Vec<bool>]| -> anyhow::Result<Vec<f32>> {
                masks.extend(m.iter().cloned());
                // Nonlinear: interaction of tokens 0 and 3 plus token 5.
                let f = |b: bool| f32::from(u8::from(b));
                Ok(m.iter().map(|k| 0.5 * f(k[0] && k[3]) + 0.3 * f(k[5])).collect())
            };
            let config = LimeConfig { samples: Some(60), seed, ..Default::default() };
            let e = lime(&maskable, &mut predict, &Progress::none(), &config).unwrap();
            (e.scores, masks)
        };
        let (a, ma) = run(7);
        let (b, mb) = run(7);
        let (_, mc) = run(8);
        assert_eq!(a, b);
        assert_eq!(ma, mb);
        assert_ne!(ma, mc);
        assert_eq!(ma.len(), 60);
        assert!(ma[0].iter().all(|&k| k), "first sample must be the unperturbed input");
        assert!(ma[1..].iter().all(|m| m.iter().any(|&k| !k)), "every other sample masks something");
    }

    #[test]
    fn bad_config_is_an_error_and_cancel_stops_after_one_batch() {
        let mut predict = additive(vec![0.1; 6]);
        let bad = LimeConfig { samples: Some(1), ..Default::default() };
        assert!(lime(&[true; 6], &mut predict, &Progress::none(), &bad).is_err());
        let bad = LimeConfig { kernel_width: 0.0, ..Default::default() };
        assert!(lime(&[true; 6], &mut predict, &Progress::none(), &bad).is_err());

        let token = CancelToken::new();
        let progress = Progress::new(token.clone(), None);
        let mut batches = 0;
        let mut predict = |m: &[Vec<bool>]| -> anyhow::Result<Vec<f32>> {
            batches += 1;
            token.cancel();
            Ok(vec![0.5; m.len()])
        };
        let config = LimeConfig { batch: 8, ..Default::default() };
        let err = lime(&[true; 12], &mut predict, &progress, &config).unwrap_err();
        assert!(is_cancelled(&err));
        assert!(batches <= 2, "ran {batches} batches after cancel");
    }
}

super::masking::perturbation_method!(Lime, LimeConfig, "lime", lime);
