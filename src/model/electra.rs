//! ELECTRA (discriminator) specifics: BERT's layers under the `electra.` prefix,
//! an up-projection when the embeddings are narrower than the hidden size
//! (`embedding_size ≠ hidden_size`, e.g. electra-small), and ELECTRA's own
//! classification head (dense → GELU → out_proj on the first token, no pooler).

use super::config::{Activation, ModelConfig};
use super::encoder::Head;
use super::weights::Weights;
use candle_nn::Linear;

/// `embeddings_project`, present exactly when the embedding and hidden sizes differ.
pub(super) fn projection(w: &Weights, cfg: &ModelConfig) -> anyhow::Result<Option<Linear>> {
    if cfg.embedding_size == cfg.hidden_size {
        return Ok(None);
    }
    let p = w.linear("embeddings_project")?;
    anyhow::ensure!(
        p.weight().dims() == [cfg.hidden_size, cfg.embedding_size],
        "ELECTRA embeddings_project has shape {:?}, config says [{}, {}]",
        p.weight().dims(),
        cfg.hidden_size,
        cfg.embedding_size
    );
    Ok(Some(p))
}

/// `ElectraClassificationHead`: transformers applies exact (erf) GELU here whatever `hidden_act` says.
pub(super) fn head(w: &Weights) -> anyhow::Result<Head> {
    Ok(Head::DenseAct {
        dense: w.linear("classifier.dense")?,
        activation: Activation::Gelu,
        out: w.linear("classifier.out_proj")?,
    })
}
