//! Value norms (Kobayashi et al. 2020, "Attention is not only a weight"):
//! attention weight × size of what is sent. In the last layer the [CLS]
//! token receives `Σ_j Σ_h α^h_0j f_h(x_j)` with `f_h(x) = (x W_V + b_V)_h W_O^h`;
//! token `j`'s score is `‖Σ_h α^h_0j f_h(x_j)‖₂`.
//!
//! Why the [CLS] row of the last layer: the classification head reads only the
//! last layer's [CLS] vector, so this row says how much each token's vector
//! contributes to what the head reads — the value-norm counterpart of the raw
//! attention baseline (same layer, same row), which shows how much the norm of
//! `f(x_j)` changes the ranking. Scores are not normalised (their sum is not
//! meaningful; residual and layer norm are left out, as in the paper).

use super::decomposition::{LayerParts, value_norm_rows};
use super::{Attribution, ExplainInput, Explanation, Family, Progress};

/// Value norms of one layer, [CLS] row.
#[derive(Clone, Debug, Default)]
pub struct ValueNorm {
    /// Layer index; `None` = last layer.
    pub layer: Option<usize>,
}

impl Attribution for ValueNorm {
    fn name(&self) -> &'static str {
        "value_norm"
    }
    fn family(&self) -> Family {
        Family::Decomposition
    }
    fn unsupported(&self, model: &crate::model::Model) -> Option<String> {
        super::decomposition::unsupported(model)
    }
    fn needs_classifier(&self) -> bool {
        false
    }
    fn explain(&self, input: &ExplainInput, _progress: &Progress) -> anyhow::Result<Explanation> {
        let layers = input.forward.attentions.layers;
        let layer = self.layer.unwrap_or(layers.saturating_sub(1));
        let parts = LayerParts::new(input.model, input.forward, layer)?;
        let row = value_norm_rows(&parts, 0, 1)?;
        Ok(Explanation { scores: row.iter().map(|&v| v as f32).collect(), forward_passes: 0, notes: vec![] })
    }
}
