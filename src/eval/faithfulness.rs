//! Faithfulness by erasure (ERASER, DeYoung et al. 2020), averaged over
//! removal fractions as an AOPC: does the model's confidence depend on the
//! tokens an explanation ranks highest?
//!
//! - comprehensiveness = p(full) − p(input without the top tokens): high when
//!   the explanation found what the model relies on;
//! - sufficiency = p(full) − p(input with only the top tokens): low (or
//!   negative) when those tokens alone carry the decision.
//!
//! The model is abstracted as a `predict` callback over keep-masks, so this
//! module stays pure and testable; the caller replaces removed tokens by the
//! mask token (keeping positions and special tokens) and returns the target
//! class's probability.

use anyhow::{Result, bail};

use super::metrics::rank_desc;

/// The model as faithfulness sees it: a batch of keep-masks (true = keep the
/// token) in, one target-class probability per mask out.
pub type PredictFn<'a> = dyn FnMut(&[Vec<bool>]) -> Result<Vec<f32>> + 'a;

/// ERASER's removal fractions: 1%, 5%, 10%, 20%, 50% of the tokens.
pub const DEFAULT_FRACTIONS: [f32; 5] = [0.01, 0.05, 0.1, 0.2, 0.5];

/// Number of tokens a fraction selects out of `n`: ceil(fraction·n), with a
/// small tolerance so that f32 noise (0.1f32·10 = 1.0000000149) does not add
/// a token, and at most `n`.
pub fn tokens_for_fraction(fraction: f32, n: usize) -> usize {
    let x = fraction as f64 * n as f64;
    ((x - 1e-6).ceil().max(0.0) as usize).min(n)
}

/// Keep-masks for one explanation: for each fraction, the comprehensiveness
/// mask (top tokens removed) followed by the sufficiency mask (only the top
/// tokens and all non-maskable tokens kept), i.e. `2 · fractions.len()` masks.
/// Top tokens are the highest `scores` among `maskable` (ties by lower index).
pub fn erasure_masks(
    scores: &[f32],
    maskable: &[bool],
    fractions: &[f32],
) -> Result<Vec<Vec<bool>>> {
    if scores.len() != maskable.len() {
        bail!(
            "faithfulness: {} scores for {} tokens (one score per token, specials included)",
            scores.len(),
            maskable.len()
        );
    }
    if fractions.is_empty() {
        bail!("faithfulness: no removal fractions given (ERASER uses {DEFAULT_FRACTIONS:?})");
    }
    if let Some(f) = fractions.iter().find(|f| !(**f > 0.0 && **f <= 1.0)) {
        bail!("faithfulness: removal fraction {f} is outside (0, 1]");
    }
    let candidates: Vec<usize> = (0..scores.len()).filter(|&i| maskable[i]).collect();
    if candidates.is_empty() {
        bail!("faithfulness: no maskable token (the input has only special tokens)");
    }
    let cand_scores: Vec<f32> = candidates.iter().map(|&i| scores[i]).collect();
    let order: Vec<usize> = rank_desc(&cand_scores)
        .into_iter()
        .map(|c| candidates[c])
        .collect();
    let mut masks = Vec::with_capacity(2 * fractions.len());
    for &f in fractions {
        let k = tokens_for_fraction(f, candidates.len());
        let mut without = vec![true; scores.len()];
        let mut only: Vec<bool> = maskable.iter().map(|m| !m).collect();
        for &i in &order[..k] {
            without[i] = false;
            only[i] = true;
        }
        masks.push(without);
        masks.push(only);
    }
    Ok(masks)
}

/// Comprehensiveness and sufficiency of one explanation, each averaged over
/// `fractions` (see the module doc). `scores` and `maskable` have one entry
/// per token (specials included, `maskable` false for them); `full_prob` is
/// the target-class probability on the unmodified input. `predict` receives
/// all `2 · fractions.len()` keep-masks of the example in one batch (true =
/// keep the token) and must return one target-class probability per mask.
pub fn comprehensiveness_sufficiency(
    scores: &[f32],
    maskable: &[bool],
    full_prob: f32,
    fractions: &[f32],
    predict: &mut PredictFn<'_>,
) -> Result<(f64, f64)> {
    let masks = erasure_masks(scores, maskable, fractions)?;
    let probs = predict(&masks)?;
    if probs.len() != masks.len() {
        bail!(
            "faithfulness: predict returned {} probabilities for {} masks",
            probs.len(),
            masks.len()
        );
    }
    let full = full_prob as f64;
    let (mut comp, mut suff) = (0.0, 0.0);
    for pair in probs.chunks(2) {
        comp += full - pair[0] as f64;
        suff += full - pair[1] as f64;
    }
    let n = fractions.len() as f64;
    Ok((comp / n, suff / n))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [CLS] a b c d [SEP]; the "model" sums the weights of kept tokens.
    const W: [f32; 6] = [0.1, 0.4, 0.1, 0.3, 0.2, 0.1];
    const MASKABLE: [bool; 6] = [false, true, true, true, true, false];

    fn summing(calls: &mut Vec<usize>) -> impl FnMut(&[Vec<bool>]) -> Result<Vec<f32>> + '_ {
        move |masks: &[Vec<bool>]| {
            calls.push(masks.len());
            Ok(masks
                .iter()
                .map(|m| m.iter().zip(W).filter(|(k, _)| **k).map(|(_, w)| w).sum())
                .collect())
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-6
    }

    #[test]
    fn hand_computed_aopc() {
        // specials score highest but are never ranked; order a (0.9), c (0.5), d (0.3), b (0.1)
        let scores = [5.0, 0.9, 0.1, 0.5, 0.3, 5.0];
        let mut calls = Vec::new();
        let mut predict = summing(&mut calls);
        let (c, s) =
            comprehensiveness_sufficiency(&scores, &MASKABLE, 1.2, &[0.25, 0.5], &mut predict)
                .unwrap();
        // 25%: k=1 remove a → 0.8 (comp 0.4); only a + specials → 0.6 (suff 0.6)
        // 50%: k=2 remove a,c → 0.5 (comp 0.7); only a,c + specials → 0.9 (suff 0.3)
        assert!(close(c, 0.55) && close(s, 0.45), "{c} {s}");
        drop(predict);
        assert_eq!(calls, vec![4], "one batched call with 2 masks per fraction");
    }

    #[test]
    fn default_fractions_round_up_to_at_least_one_token() {
        let scores = [0.0, 0.1, 0.9, 0.5, 0.3, 0.0]; // order: idx 2, 3, 4, 1
        let masks = erasure_masks(&scores, &MASKABLE, &DEFAULT_FRACTIONS).unwrap();
        assert_eq!(masks.len(), 10);
        // n = 4: 1%, 5%, 10%, 20% → 1 token; 50% → 2 tokens (idx 2 then idx 3)
        assert_eq!(masks[0], vec![true, true, false, true, true, true]);
        assert_eq!(masks[1], vec![true, false, true, false, false, true]);
        assert_eq!(masks[8], vec![true, true, false, false, true, true]);
        assert_eq!(masks[9], vec![true, false, true, true, false, true]);
        assert_eq!(tokens_for_fraction(0.1, 10), 1);
        assert_eq!(tokens_for_fraction(0.2, 10), 2);
        assert_eq!(tokens_for_fraction(0.01, 3), 1);
        assert_eq!(tokens_for_fraction(1.0, 7), 7);
    }

    #[test]
    fn ties_remove_earlier_tokens_first() {
        let masks = erasure_masks(&[0.0, 0.5, 0.5, 0.5, 0.5, 0.0], &MASKABLE, &[0.5]).unwrap();
        assert_eq!(masks[0], vec![true, false, false, true, true, true]);
    }

    #[test]
    fn bad_inputs_are_errors() {
        let mut calls = Vec::new();
        let mut predict = summing(&mut calls);
        let s = [0.0; 6];
        assert!(
            comprehensiveness_sufficiency(&s[..5], &MASKABLE, 1.0, &[0.5], &mut predict).is_err()
        );
        assert!(comprehensiveness_sufficiency(&s, &MASKABLE, 1.0, &[], &mut predict).is_err());
        assert!(comprehensiveness_sufficiency(&s, &MASKABLE, 1.0, &[1.5], &mut predict).is_err());
        assert!(comprehensiveness_sufficiency(&s, &[false; 6], 1.0, &[0.5], &mut predict).is_err());
        let mut short = |_: &[Vec<bool>]| -> Result<Vec<f32>> { Ok(vec![0.5]) };
        let err =
            comprehensiveness_sufficiency(&s, &MASKABLE, 1.0, &[0.5], &mut short).unwrap_err();
        assert!(
            err.to_string().contains("1 probabilities for 2 masks"),
            "{err}"
        );
        let mut failing = |_: &[Vec<bool>]| -> Result<Vec<f32>> { anyhow::bail!("model exploded") };
        let err =
            comprehensiveness_sufficiency(&s, &MASKABLE, 1.0, &[0.5], &mut failing).unwrap_err();
        assert!(err.to_string().contains("exploded"));
    }
}
