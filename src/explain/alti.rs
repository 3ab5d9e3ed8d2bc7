//! ALTI (Ferrando et al. 2022, "Measuring the Mixing of Contextual Information
//! in the Transformer"). Each layer's attention block output, after the
//! residual and the layer norm (linearised with the token's own σ), is split
//! into one vector `T_i(x_j)` per source token; token `j`'s share of `y_i` is
//! its proximity `max(0, ‖y_i‖₁ − ‖y_i − T_i(x_j)‖₁)`, normalised per row (see
//! [`super::decomposition::alti_layer`]). The per-layer matrices are multiplied
//! through the layers as in rollout (`C_L · … · C_1`, no extra identity: the
//! residual is already inside), and the score is the [CLS] row of the product:
//! non-negative, summing to one.

use super::decomposition::{aggregate_first_row, alti_contributions};
use super::{Attribution, ExplainInput, Explanation, Family, Progress};

/// ALTI, [CLS] row of the aggregated contributions.
#[derive(Clone, Debug, Default)]
pub struct Alti;

impl Attribution for Alti {
    fn name(&self) -> &'static str {
        "alti"
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
        let n = input.forward.attentions.len;
        let layers = alti_contributions(input.model, input.forward)?;
        let r = aggregate_first_row(&layers, n);
        Ok(Explanation { scores: r.iter().map(|&v| v as f32).collect(), forward_passes: 0, notes: vec![] })
    }
}
