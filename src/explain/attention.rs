//! Raw attention: how much [CLS] attends to each token in one layer — the
//! simplest "explanation" people read off a transformer, and a strong baseline
//! on some rationale data sets.

use super::{Attribution, ExplainInput, Explanation, Family, Progress};

/// Which heads to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeadChoice {
    Mean,
    Head(usize),
}

/// Raw attention of one layer, [CLS] row.
#[derive(Clone, Debug)]
pub struct RawAttention {
    /// Layer index; `None` = last layer.
    pub layer: Option<usize>,
    pub heads: HeadChoice,
}

impl Default for RawAttention {
    fn default() -> Self {
        Self { layer: None, heads: HeadChoice::Mean }
    }
}

impl Attribution for RawAttention {
    fn name(&self) -> &'static str {
        "attention"
    }
    fn family(&self) -> Family {
        Family::Attention
    }
    fn needs_classifier(&self) -> bool {
        false
    }
    fn reads_first_query_of_last_layer_only(&self) -> bool {
        // The [CLS] row of one layer, whichever it is.
        true
    }
    fn explain(&self, input: &ExplainInput, _progress: &Progress) -> anyhow::Result<Explanation> {
        let a = &input.forward.attentions;
        let layer = self.layer.unwrap_or(a.layers.saturating_sub(1));
        anyhow::ensure!(layer < a.layers, "layer {layer} out of range (model has {} layers)", a.layers);
        let scores = match self.heads {
            HeadChoice::Mean => a.mean_heads(layer)[..a.len].to_vec(),
            HeadChoice::Head(h) => {
                anyhow::ensure!(h < a.heads, "head {h} out of range (model has {} heads)", a.heads);
                a.head(layer, h)[..a.len].to_vec()
            }
        };
        Ok(Explanation { scores, forward_passes: 0, notes: vec![] })
    }
}
