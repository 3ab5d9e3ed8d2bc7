//! Grad-SAM (Barkan et al. 2021): attention weighted by the positive part of
//! its gradient, `mean_{l,h} A ⊙ ReLU(∇A)`, summed over queries to give each
//! key token a score.

use super::{Attribution, ExplainInput, Explanation, Family, Progress};
use crate::model::Attentions;

pub fn grad_sam_scores(a: &Attentions, g: &Attentions) -> Vec<f32> {
    let n = a.len;
    let mut scores = vec![0f64; n];
    for l in 0..a.layers {
        for h in 0..a.heads {
            for (idx, (&av, &gv)) in a.head(l, h).iter().zip(g.head(l, h)).enumerate() {
                scores[idx % n] += (av * gv.max(0.0)) as f64;
            }
        }
    }
    let denom = (a.layers * a.heads).max(1) as f64;
    scores.into_iter().map(|v| (v / denom) as f32).collect()
}

#[derive(Clone, Debug, Default)]
pub struct GradSam;

impl Attribution for GradSam {
    fn name(&self) -> &'static str {
        "grad_sam"
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
        Ok(Explanation { scores: grad_sam_scores(&g.attentions, &g.attention_grads), forward_passes: 1, notes: vec![] })
    }
}
