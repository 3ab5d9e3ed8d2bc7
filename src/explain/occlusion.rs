//! Leave-one-out occlusion: how much the target probability drops when one
//! token is masked. The cheapest perturbation baseline (n + 1 passes) and the
//! reference point for LIME and KernelSHAP, which spend many more passes.

use super::Explanation;
use super::Progress;
use super::masking::{Predict, evaluate, expand_mask, maskable_indices};

/// Settings for [`occlusion`].
#[derive(Clone, Debug)]
pub struct OcclusionConfig {
    /// Masks per `predict` call (one encoder batch).
    pub batch: usize,
}

impl Default for OcclusionConfig {
    fn default() -> Self {
        Self { batch: 32 }
    }
}

/// `score_i = p(full input) − p(input with token i masked)` for every
/// maskable token; special tokens (`maskable[i] == false`) score 0 and are
/// never masked.
///
/// Evaluates the full input plus one mask per maskable token, so
/// `forward_passes = 1 + #maskable` (0 when nothing is maskable). The note
/// `p_full` records the unperturbed probability.
pub fn occlusion(
    maskable: &[bool],
    predict: &mut Predict,
    progress: &Progress,
    config: &OcclusionConfig,
) -> anyhow::Result<Explanation> {
    let n = maskable.len();
    let features = maskable_indices(maskable);
    let mut scores = vec![0.0f32; n];
    if features.is_empty() {
        return Ok(Explanation { scores, forward_passes: 0, notes: Vec::new() });
    }
    let mut masks = Vec::with_capacity(features.len() + 1);
    masks.push(vec![true; n]);
    for k in 0..features.len() {
        let mut present = vec![true; features.len()];
        present[k] = false;
        masks.push(expand_mask(n, &features, &present));
    }
    let probs = evaluate(&masks, predict, progress, config.batch, 0, masks.len())?;
    let full = probs[0];
    for (&pos, p) in features.iter().zip(&probs[1..]) {
        scores[pos] = (full - p) as f32;
    }
    Ok(Explanation { scores, forward_passes: masks.len(), notes: vec![("p_full".into(), full)] })
}

#[cfg(test)]
#[allow(clippy::needless_range_loop)] // tests compare by token index
mod tests {
    use super::*;
    use crate::explain::{CancelToken, is_cancelled};

    /// Additive black box: base + Σ weights of kept tokens.
    fn additive(weights: Vec<f32>) -> impl FnMut(&[Vec<bool>]) -> anyhow::Result<Vec<f32>> {
        move |masks| {
            Ok(masks
                .iter()
                .map(|m| 0.1 + m.iter().zip(&weights).filter(|(k, _)| **k).map(|(_, w)| w).sum::<f32>())
                .collect())
        }
    }

    #[test]
    fn additive_predictor_gives_back_its_weights_and_specials_stay_zero() {
        let weights = vec![0.7, 0.3, -0.2, 0.05, 0.0, 0.4];
        let maskable = vec![false, true, true, true, true, false];
        let mut seen = Vec::new();
        let mut inner = additive(weights.clone());
        let mut predict = |m: &[Vec<bool>]| {
            seen.extend(m.iter().cloned());
            inner(m)
        };
        let config = OcclusionConfig { batch: 2 };
        let e = occlusion(&maskable, &mut predict, &Progress::none(), &config).unwrap();
        assert_eq!(e.forward_passes, 5);
        assert_eq!(seen.len(), 5);
        assert!(seen.iter().all(|m| m[0] && m[5]), "special tokens were masked");
        assert_eq!(e.scores[0], 0.0);
        assert_eq!(e.scores[5], 0.0);
        for i in 1..5 {
            assert!((e.scores[i] - weights[i]).abs() < 1e-6, "{:?}", e.scores);
        }
    }

    #[test]
    fn nothing_maskable_costs_nothing() {
        let mut predict = |_: &[Vec<bool>]| -> anyhow::Result<Vec<f32>> { panic!("must not be called") };
        let e = occlusion(&[false, false], &mut predict, &Progress::none(), &Default::default()).unwrap();
        assert_eq!(e.scores, vec![0.0, 0.0]);
        assert_eq!(e.forward_passes, 0);
    }

    #[test]
    fn cancel_inside_first_batch_stops_before_the_second() {
        let token = CancelToken::new();
        let progress = Progress::new(token.clone(), None);
        let mut batches = 0;
        let mut predict = |m: &[Vec<bool>]| -> anyhow::Result<Vec<f32>> {
            batches += 1;
            token.cancel();
            Ok(vec![0.5; m.len()])
        };
        let config = OcclusionConfig { batch: 4 };
        let err = occlusion(&[true; 20], &mut predict, &progress, &config).unwrap_err();
        assert!(is_cancelled(&err));
        assert!(batches <= 2, "ran {batches} batches after cancel");
    }
}

super::masking::perturbation_method!(Occlusion, OcclusionConfig, "occlusion", occlusion);
