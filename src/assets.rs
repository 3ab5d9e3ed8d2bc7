//! The embedded default model and ExpNet, so `expnet` works with no arguments
//! and no network: MiniLM-L6 fine-tuned on SST-2 (f16 weights, computed in
//! f32; see assets/models/minilm-sst2/MODEL_CARD.md) and the ExpNet trained on
//! its attentions (assets/expnet/), plus the shape-free transfer ExpNet that
//! every other model gets until it has one of its own.

use crate::expnet::ExpNet;
use crate::model::weights::Weights;
use crate::model::{Model, ModelConfig, TextTokenizer};

const CONFIG: &str = include_str!("../assets/models/minilm-sst2/config.json");
const TOKENIZER: &[u8] = include_bytes!("../assets/models/minilm-sst2/tokenizer.json");
const WEIGHTS: &[u8] = include_bytes!("../assets/models/minilm-sst2/model.safetensors");
const EXPNET: &[u8] = include_bytes!("../assets/expnet/minilm-sst2.safetensors");
const TRANSFER_EXPNET: &[u8] = include_bytes!("../assets/expnet/transfer.safetensors");

/// Name shown for the embedded model.
pub const DEFAULT_MODEL_NAME: &str = "embedded:minilm-sst2";
/// Name shown for the embedded ExpNet.
pub const DEFAULT_EXPNET_NAME: &str = "embedded:expnet-minilm-sst2";
/// Name shown for the embedded transfer ExpNet.
pub const TRANSFER_EXPNET_NAME: &str = "embedded:expnet-transfer";

/// Loads the embedded default classifier, on the CPU.
pub fn default_model() -> anyhow::Result<Model> {
    default_model_on(&candle_core::Device::Cpu)
}

/// [`default_model`] onto `device`.
pub fn default_model_on(device: &candle_core::Device) -> anyhow::Result<Model> {
    let cfg = ModelConfig::from_json(serde_json::from_str(CONFIG)?)?;
    let weights = Weights::load_safetensors_bytes(WEIGHTS, "bert.", DEFAULT_MODEL_NAME)?;
    let tokenizer = TextTokenizer::from_bytes(TOKENIZER, cfg.max_tokens())?;
    Model::from_parts_on(cfg, &weights, tokenizer, DEFAULT_MODEL_NAME, device)
}

/// Loads the embedded default ExpNet (trained for [`default_model`]).
pub fn default_expnet() -> anyhow::Result<ExpNet> {
    ExpNet::load_bytes(EXPNET)
}

/// Loads the embedded transfer ExpNet: shape-free features (depth bins, pooled
/// heads, ALTI / value-norm / GlobEnc), trained on SST-2, HateXplain and e-SNLI
/// rationales through three classifiers (`scripts/models.sh transfer-expnet`).
pub fn transfer_expnet() -> anyhow::Result<ExpNet> {
    ExpNet::load_bytes(TRANSFER_EXPNET)
}

#[cfg(test)]
mod tests {
    #[test]
    fn embedded_model_and_expnet_load_and_agree_in_shape() {
        let m = super::default_model().unwrap();
        assert!(m.is_classifier());
        assert_eq!(m.labels(), ["negative", "positive"]);
        let net = super::default_expnet().unwrap();
        net.check_compatible(m.num_layers(), m.num_heads()).unwrap();
        let enc = m.encode("a gorgeous, witty, seductive movie").unwrap();
        let out = m.forward(&enc).unwrap();
        assert_eq!(out.prediction.unwrap().label(), "positive");
        let neg = m.forward(&m.encode("a dull, tedious mess").unwrap()).unwrap();
        assert_eq!(neg.prediction.unwrap().label(), "negative");
    }
}
