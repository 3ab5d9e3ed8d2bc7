//! Gradient × input (Shrikumar et al. 2016): gradient of the target logit
//! times the word embedding, summed over the hidden dimension — a first-order
//! estimate of each token's signed contribution.

use super::{Attribution, ExplainInput, Explanation, Family, Progress};
use crate::model::Gradients;

/// Each token's embedding gradient dotted with its embedding.
pub fn grad_x_input_scores(g: &Gradients) -> Vec<f32> {
    g.embedding_grads.chunks(g.hidden).zip(g.embeddings.chunks(g.hidden)).map(|(gr, e)| gr.iter().zip(e).map(|(a, b)| a * b).sum()).collect()
}

#[derive(Clone, Debug, Default)]
pub struct GradXInput;

impl Attribution for GradXInput {
    fn name(&self) -> &'static str {
        "grad_x_input"
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
        Ok(Explanation { scores: grad_x_input_scores(g), forward_passes: 1, notes: vec![] })
    }
}
