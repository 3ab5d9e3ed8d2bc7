//! GlobEnc (Modarressi et al. 2022, "GlobEnc: Quantifying Global Token
//! Attribution by Incorporating the Whole Encoder Layer in Transformers").
//! Like ALTI it splits each layer's attention block output (residual and
//! first layer norm included) into per-token vectors, then carries them
//! through the second residual and layer norm as well (the feed-forward
//! network is left out of the split; it only sets that norm's scale). The
//! per-layer matrix is the L2 norm of each piece, rows normalised to sum 1
//! (see [`super::decomposition::globenc_layer`]); layers are multiplied as in
//! rollout (`G_L · … · G_1`, no extra identity) and the score is the [CLS] row.

use super::decomposition::{aggregate_first_row, globenc_contributions};
use super::{Attribution, ExplainInput, Explanation, Family, Progress};

/// GlobEnc, [CLS] row of the aggregated attributions.
#[derive(Clone, Debug, Default)]
pub struct GlobEnc;

impl Attribution for GlobEnc {
    fn name(&self) -> &'static str {
        "globenc"
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
        let layers = globenc_contributions(input.model, input.forward)?;
        let r = aggregate_first_row(&layers, n);
        Ok(Explanation { scores: r.iter().map(|&v| v as f32).collect(), forward_passes: 0, notes: vec![] })
    }
}
