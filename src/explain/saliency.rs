//! Saliency (Simonyan et al. 2014): the L2 norm of the gradient of the target
//! logit w.r.t. each token's word embedding — how sensitive the decision is to
//! a small change of that token.

use super::{Attribution, ExplainInput, Explanation, Family, Progress};
use crate::model::Gradients;

/// The L2 norm of each token's embedding gradient.
pub fn saliency_scores(g: &Gradients) -> Vec<f32> {
    g.embedding_grads.chunks(g.hidden).map(|row| row.iter().map(|v| v * v).sum::<f32>().sqrt()).collect()
}

#[derive(Clone, Debug, Default)]
pub struct Saliency;

impl Attribution for Saliency {
    fn name(&self) -> &'static str {
        "saliency"
    }
    fn family(&self) -> Family {
        Family::Gradient
    }
    fn reads_shared_gradients(&self) -> bool {
        true
    }
    fn reads_attention_gradients(&self) -> bool {
        false
    }
    fn explain(&self, input: &ExplainInput, progress: &Progress) -> anyhow::Result<Explanation> {
        progress.checkpoint(0.0)?;
        let g = input.embedding_gradients()?;
        Ok(Explanation { scores: saliency_scores(g), forward_passes: 1, notes: vec![] })
    }
}
