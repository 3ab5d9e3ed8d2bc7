//! Chefer et al. 2021b, "Generic Attention-model Explainability": relevance
//! propagated through the layers with gradient-weighted attention,
//! `R ← R + mean_h (∇A ⊙ A)⁺ · R` from `R = I`, read off the [CLS] row with
//! its self-entry zeroed. Uses attention and its gradient from one backward pass.

use super::rollout::{identity, matmul};
use super::{Attribution, ExplainInput, Explanation, Family, Progress};
use crate::model::Attentions;

/// The propagation rule on attentions and their gradients.
pub fn chefer_scores(a: &Attentions, g: &Attentions) -> Vec<f32> {
    let n = a.len;
    let mut r = identity(n);
    for l in 0..a.layers {
        let mut bar = vec![0f64; n * n];
        for h in 0..a.heads {
            for ((b, &av), &gv) in bar.iter_mut().zip(a.head(l, h)).zip(g.head(l, h)) {
                *b += (av * gv).max(0.0) as f64;
            }
        }
        bar.iter_mut().for_each(|v| *v /= a.heads as f64);
        let update = matmul(&bar, &r, n);
        r.iter_mut().zip(update).for_each(|(x, u)| *x += u);
    }
    let mut scores: Vec<f32> = r[..n].iter().map(|&v| v as f32).collect();
    scores[0] = 0.0;
    scores
}

#[derive(Clone, Debug, Default)]
pub struct Chefer;

impl Attribution for Chefer {
    fn name(&self) -> &'static str {
        "chefer"
    }
    fn family(&self) -> Family {
        Family::AttentionGradient
    }
    fn reads_shared_gradients(&self) -> bool {
        true
    }
    fn explain(&self, input: &ExplainInput, progress: &Progress) -> anyhow::Result<Explanation> {
        progress.checkpoint(0.0)?;
        let g = input.gradients()?;
        Ok(Explanation { scores: chefer_scores(&g.attentions, &g.attention_grads), forward_passes: 1, notes: vec![] })
    }
}
