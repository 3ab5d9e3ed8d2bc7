//! ALBERT specifics: factorised embeddings (width `embedding_size`, projected to
//! the hidden size by `encoder.embedding_hidden_mapping_in`) and one layer group
//! (or `num_hidden_groups` groups) whose weights are reused for all
//! `num_hidden_layers` applications. Each application is its own entry in the
//! attention tensor, so `[layer]` counts applications, not distinct weights.

use super::config::ModelConfig;
use super::encoder::{Head, Layer};
use super::weights::Weights;
use candle_nn::Linear;

/// `encoder.embedding_hidden_mapping_in`.
pub(super) fn projection(w: &Weights) -> anyhow::Result<Linear> {
    w.linear("encoder.embedding_hidden_mapping_in")
}

/// One `Layer` per application; applications of the same group share tensors
/// (clones of candle tensors share storage, so gradients accumulate on one weight).
pub(super) fn layers(w: &Weights, cfg: &ModelConfig) -> anyhow::Result<Vec<Layer>> {
    let groups = (0..cfg.num_hidden_groups)
        .map(|g| {
            let p = format!("encoder.albert_layer_groups.{g}.albert_layers.0");
            let names = [
                "attention.query",
                "attention.key",
                "attention.value",
                "attention.dense",
                "attention.LayerNorm",
                "ffn",
                "ffn_output",
                "full_layer_layer_norm",
            ]
            .map(|n| format!("{p}.{n}"));
            Layer::from_names(w, cfg.layer_norm_eps, names.each_ref().map(String::as_str))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    // transformers: group_idx = int(i / (num_hidden_layers / num_hidden_groups)).
    let per_group = cfg.num_layers / cfg.num_hidden_groups;
    Ok((0..cfg.num_layers).map(|i| groups[i / per_group].clone()).collect())
}

/// `AlbertForSequenceClassification`: tanh(pooler(h[CLS])) → classifier.
pub(super) fn head(w: &Weights) -> anyhow::Result<Head> {
    Ok(Head::Bert { pooler: w.linear("pooler")?, classifier: w.linear("classifier")? })
}
