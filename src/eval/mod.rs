//! Evaluation of explanations: plausibility (agreement with human
//! rationales, [`metrics`]) and faithfulness (does the model depend on what
//! the explanation ranks high, [`faithfulness`]). Pure functions over score
//! vectors, so they are testable without a model.

pub mod faithfulness;
pub mod metrics;

pub use faithfulness::{DEFAULT_FRACTIONS, PredictFn, comprehensiveness_sufficiency};
pub use metrics::{Prf, auprc, auroc, bootstrap_mean_ci, f1_at_k, spearman, top_k_overlap};

/// The plausibility metrics of one example's word scores against a binary
/// gold rationale; each is `None` where undefined (no gold positive, or for
/// AUROC no gold negative), and such examples are left out of averages.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Plausibility {
    pub token_f1: Option<Prf>,
    pub auprc: Option<f64>,
    pub auroc: Option<f64>,
}

/// All plausibility metrics at once (same conventions as [`metrics`]).
pub fn plausibility(word_scores: &[f32], gold: &[bool]) -> Plausibility {
    Plausibility {
        token_f1: f1_at_k(word_scores, gold),
        auprc: auprc(word_scores, gold),
        auroc: auroc(word_scores, gold),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plausibility_combines_metrics() {
        let p = plausibility(&[0.9, 0.2, 0.4], &[true, false, false]);
        assert_eq!(p.token_f1.unwrap().f1, 1.0);
        assert_eq!(p.auprc, Some(1.0));
        assert_eq!(p.auroc, Some(1.0));
        let p = plausibility(&[0.9, 0.2], &[true, true]);
        assert_eq!(p.auroc, None);
        assert!(p.auprc.is_some());
    }
}
pub mod runner;
