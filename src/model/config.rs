//! `config.json` of a Hugging Face encoder classifier, reduced to what the
//! encoder needs, with the differences between the families (BERT, DistilBERT,
//! RoBERTa/XLM-R, ELECTRA, ALBERT) resolved in one place.

use anyhow::{Context, bail};
use serde_json::Value;
use std::path::Path;

/// The `model_type` values expnet reads, for error messages.
const SUPPORTED: &str = "bert, distilbert, roberta, xlm-roberta, camembert, electra, albert, deberta-v2 (DeBERTa-v3), modernbert";

/// Which encoder family the weights belong to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    Bert,
    DistilBert,
    Roberta,
    Electra,
    Albert,
    /// DeBERTa-v2 and DeBERTa-v3 (both `model_type: "deberta-v2"`).
    DebertaV2,
    ModernBert,
}

impl Family {
    pub fn as_str(self) -> &'static str {
        match self {
            Family::Bert => "bert",
            Family::DistilBert => "distilbert",
            Family::Roberta => "roberta",
            Family::Electra => "electra",
            Family::Albert => "albert",
            Family::DebertaV2 => "deberta-v2",
            Family::ModernBert => "modernbert",
        }
    }

    /// Prefix of the encoder's tensor names in `*ForSequenceClassification` checkpoints.
    pub fn weight_prefix(self) -> &'static str {
        match self {
            Family::DebertaV2 => "deberta.",
            Family::ModernBert => "model.",
            Family::Bert => "bert.",
            Family::DistilBert => "distilbert.",
            Family::Roberta => "roberta.",
            Family::Electra => "electra.",
            Family::Albert => "albert.",
        }
    }
}

/// Feed-forward activation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// Exact erf GELU (`gelu` in transformers).
    Gelu,
    /// tanh approximation (`gelu_new`, `gelu_pytorch_tanh`).
    GeluTanh,
    Relu,
}

impl Activation {
    /// Parses a transformers activation name (`hidden_act`, `pooler_hidden_act`).
    pub fn parse(name: &str) -> anyhow::Result<Self> {
        Ok(match name {
            "gelu" => Activation::Gelu,
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Activation::GeluTanh,
            "relu" => Activation::Relu,
            other => bail!("unsupported activation \"{other}\" (supported: gelu, gelu_new, relu)"),
        })
    }

    pub fn apply(self, x: &candle_core::Tensor) -> candle_core::Result<candle_core::Tensor> {
        match self {
            Activation::Gelu => x.gelu_erf(),
            Activation::GeluTanh => x.gelu(),
            Activation::Relu => x.relu(),
        }
    }
}

/// The parsed configuration.
#[derive(Clone, Debug)]
pub struct ModelConfig {
    pub family: Family,
    pub vocab_size: usize,
    pub hidden_size: usize,
    /// Width of the word embeddings (ELECTRA and ALBERT factorise them and
    /// project up to `hidden_size`); equals `hidden_size` for the others.
    pub embedding_size: usize,
    /// ALBERT: number of distinct layer groups shared over `num_layers`; 1 otherwise.
    pub num_hidden_groups: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    pub type_vocab_size: usize,
    pub layer_norm_eps: f64,
    pub activation: Activation,
    pub pad_token_id: u32,
    /// Label names in index order; empty for a bare encoder.
    pub labels: Vec<String>,
    /// True when `architectures` names a `*ForSequenceClassification`.
    pub is_classifier: bool,
    /// The raw JSON, kept so that `finetune` can write a faithful copy.
    pub raw: Value,
}

impl ModelConfig {
    /// Longest input (in tokens) the position embeddings allow.
    pub fn max_tokens(&self) -> usize {
        match self.family {
            // RoBERTa positions start at padding_idx + 1.
            Family::Roberta => self.max_position_embeddings - self.pad_token_id as usize - 1,
            _ => self.max_position_embeddings,
        }
    }

    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let raw: Value = serde_json::from_str(&text).with_context(|| {
            format!("{} is not valid JSON (hint: re-download the model folder)", path.display())
        })?;
        Self::from_json(raw).with_context(|| format!("in {}", path.display()))
    }

    pub fn from_json(raw: Value) -> anyhow::Result<Self> {
        let model_type = raw.get("model_type").and_then(Value::as_str).unwrap_or("");
        let architectures: Vec<String> = raw
            .get("architectures")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
            .unwrap_or_default();
        let family = match model_type {
            "bert" => Family::Bert,
            "distilbert" => Family::DistilBert,
            "roberta" | "xlm-roberta" | "camembert" => Family::Roberta,
            "electra" => Family::Electra,
            "albert" => Family::Albert,
            "deberta-v2" => Family::DebertaV2,
            "modernbert" => Family::ModernBert,
            "" => bail!("config.json has no \"model_type\" (hint: expnet reads Hugging Face folders of {SUPPORTED} models)"),
            other => bail!("unsupported model_type \"{other}\" (hint: expnet supports {SUPPORTED}; MiniLM is bert)"),
        };
        let is_classifier = architectures.iter().any(|a| a.ends_with("ForSequenceClassification"));
        let get_usize = |keys: &[&str], default: Option<usize>| -> anyhow::Result<usize> {
            for k in keys {
                if let Some(v) = raw.get(*k).and_then(Value::as_u64) {
                    return Ok(v as usize);
                }
            }
            default.with_context(|| format!("config.json lacks \"{}\"", keys[0]))
        };
        let (hidden_size, num_layers, num_heads, intermediate_size, act_key) = match family {
            Family::DistilBert => (
                get_usize(&["dim"], None)?,
                get_usize(&["n_layers"], None)?,
                get_usize(&["n_heads"], None)?,
                get_usize(&["hidden_dim"], None)?,
                "activation",
            ),
            _ => (
                get_usize(&["hidden_size"], None)?,
                get_usize(&["num_hidden_layers"], None)?,
                get_usize(&["num_attention_heads"], None)?,
                get_usize(&["intermediate_size"], None)?,
                "hidden_act",
            ),
        };
        anyhow::ensure!(
            num_heads > 0 && hidden_size % num_heads == 0,
            "hidden size {hidden_size} is not divisible by {num_heads} heads"
        );
        let act_key = if family == Family::ModernBert { "hidden_activation" } else { act_key };
        // ALBERT's default activation is the tanh approximation.
        let default_act = if family == Family::Albert { "gelu_new" } else { "gelu" };
        let activation = Activation::parse(raw.get(act_key).and_then(Value::as_str).unwrap_or(default_act))?;
        let default_pad = match family {
            Family::Roberta => 1,
            Family::ModernBert => 50283,
            _ => 0,
        };
        let labels = if is_classifier {
            parse_labels(&raw)?
        } else {
            Vec::new()
        };
        let embedding_size = match family {
            Family::Electra | Family::Albert | Family::DebertaV2 => {
                get_usize(&["embedding_size"], Some(if family == Family::Albert { 128 } else { hidden_size }))?
            }
            _ => hidden_size,
        };
        let num_hidden_groups = if family == Family::Albert { get_usize(&["num_hidden_groups"], Some(1))? } else { 1 };
        if family == Family::Albert {
            let inner = get_usize(&["inner_group_num"], Some(1))?;
            anyhow::ensure!(inner == 1, "ALBERT with inner_group_num {inner} is not supported (hint: every released ALBERT uses 1)");
            anyhow::ensure!(
                num_hidden_groups >= 1 && num_layers % num_hidden_groups == 0,
                "ALBERT num_hidden_groups {num_hidden_groups} does not divide num_hidden_layers {num_layers}"
            );
        }
        Ok(Self {
            family,
            vocab_size: get_usize(&["vocab_size"], None)?,
            hidden_size,
            embedding_size,
            num_hidden_groups,
            num_layers,
            num_heads,
            intermediate_size,
            max_position_embeddings: get_usize(
                &["max_position_embeddings"],
                Some(if family == Family::ModernBert { 8192 } else { 512 }),
            )?,
            type_vocab_size: get_usize(
                &["type_vocab_size"],
                Some(if matches!(family, Family::DistilBert | Family::DebertaV2 | Family::ModernBert) { 0 } else { 2 }),
            )?,
            layer_norm_eps: raw
                .get(if family == Family::ModernBert { "norm_eps" } else { "layer_norm_eps" })
                .and_then(Value::as_f64)
                .unwrap_or(match family {
                    Family::DebertaV2 => 1e-7,
                    Family::ModernBert => 1e-5,
                    _ => 1e-12,
                }),
            activation,
            pad_token_id: get_usize(&["pad_token_id"], Some(default_pad))? as u32,
            labels,
            is_classifier,
            raw,
        })
    }
}

/// Label names from `id2label` (keys are stringified indices), falling back to
/// `num_labels` / `LABEL_i` as transformers does.
fn parse_labels(raw: &Value) -> anyhow::Result<Vec<String>> {
    if let Some(map) = raw.get("id2label").and_then(Value::as_object) {
        let mut pairs = Vec::new();
        for (k, v) in map {
            let idx: usize = k
                .parse()
                .with_context(|| format!("id2label key \"{k}\" is not an index"))?;
            pairs.push((idx, v.as_str().unwrap_or_default().to_owned()));
        }
        pairs.sort();
        for (i, (idx, _)) in pairs.iter().enumerate() {
            anyhow::ensure!(*idx == i, "id2label indices are not 0..{}", pairs.len());
        }
        if !pairs.is_empty() {
            return Ok(pairs.into_iter().map(|(_, v)| v).collect());
        }
    }
    let n = raw.get("num_labels").and_then(Value::as_u64).unwrap_or(2) as usize;
    Ok((0..n).map(|i| format!("LABEL_{i}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_bert_classifier() {
        let c = ModelConfig::from_json(json!({
            "model_type": "bert", "architectures": ["BertForSequenceClassification"],
            "hidden_size": 8, "num_hidden_layers": 2, "num_attention_heads": 2,
            "intermediate_size": 16, "vocab_size": 10, "hidden_act": "gelu",
            "id2label": {"1": "pos", "0": "neg"}
        }))
        .unwrap();
        assert_eq!(c.labels, vec!["neg", "pos"]);
        assert!(c.is_classifier);
        assert_eq!(c.max_tokens(), 512);
    }

    #[test]
    fn rejects_unsupported_type_with_hint() {
        let e = ModelConfig::from_json(json!({"model_type": "gpt2"})).unwrap_err();
        assert!(format!("{e:#}").contains("unsupported model_type \"gpt2\""));
        let e = ModelConfig::from_json(json!({"model_type": "bert", "hidden_size": 8, "num_hidden_layers": 1,
            "num_attention_heads": 2, "intermediate_size": 4, "vocab_size": 3, "hidden_act": "swish"})).unwrap_err();
        assert!(format!("{e:#}").contains("unsupported activation"));
    }

    #[test]
    fn new_families_parse_their_own_keys() {
        let albert = ModelConfig::from_json(json!({
            "model_type": "albert", "architectures": ["AlbertForSequenceClassification"],
            "hidden_size": 8, "embedding_size": 4, "num_hidden_layers": 4, "num_hidden_groups": 2,
            "num_attention_heads": 2, "intermediate_size": 16, "vocab_size": 10
        }))
        .unwrap();
        assert_eq!((albert.embedding_size, albert.num_hidden_groups), (4, 2));
        assert_eq!(albert.activation, Activation::GeluTanh, "ALBERT defaults to gelu_new");
        let bad = json!({"model_type": "albert", "hidden_size": 8, "num_hidden_layers": 2, "inner_group_num": 2,
            "num_attention_heads": 2, "intermediate_size": 16, "vocab_size": 10});
        assert!(format!("{:#}", ModelConfig::from_json(bad).unwrap_err()).contains("inner_group_num 2"));
        let deberta = ModelConfig::from_json(json!({
            "model_type": "deberta-v2", "hidden_size": 8, "num_hidden_layers": 1,
            "num_attention_heads": 2, "intermediate_size": 16, "vocab_size": 10
        }))
        .unwrap();
        assert_eq!((deberta.type_vocab_size, deberta.layer_norm_eps), (0, 1e-7));
        assert_eq!(deberta.family.weight_prefix(), "deberta.");
        let modern = ModelConfig::from_json(json!({
            "model_type": "modernbert", "hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2,
            "intermediate_size": 16, "vocab_size": 10, "hidden_activation": "relu", "norm_eps": 1e-6
        }))
        .unwrap();
        assert_eq!((modern.activation, modern.layer_norm_eps, modern.max_tokens()), (Activation::Relu, 1e-6, 8192));
        assert_eq!(modern.family.weight_prefix(), "model.");
    }

    #[test]
    fn roberta_positions_are_offset() {
        let c = ModelConfig::from_json(json!({
            "model_type": "roberta", "architectures": ["RobertaModel"], "hidden_size": 8,
            "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 4,
            "vocab_size": 5, "max_position_embeddings": 514, "pad_token_id": 1
        }))
        .unwrap();
        assert_eq!(c.max_tokens(), 512);
        assert!(!c.is_classifier && c.labels.is_empty());
    }
}
