//! ModernBERT: pre-norm layers without biases (by default), rotary position
//! embeddings on queries and keys, a GeGLU feed-forward, and attention that
//! alternates between global layers and local layers limited to a sliding
//! window (|query − key| ≤ local_attention / 2; every
//! `global_attn_every_n_layers`-th layer, starting with the first, is global).
//! In a local layer a token's attention row is zero outside its window, so
//! rows still sum to 1 but cover only nearby keys. Layer 0 has no attention
//! norm (the embedding norm precedes it). Hidden states follow transformers:
//! the embedding output, then each layer's output, the last one after
//! `final_norm`. Head:
//! CLS or mean pooling of the final-normed states → dense → activation →
//! LayerNorm → classifier.

use super::config::{Activation, ModelConfig};
use super::encoder::{Encoder, EncoderInput, EncoderOutput, LayerNorm, RunMode, attention_probs, dropout};
use super::weights::Weights;
use anyhow::bail;
use candle_core::{D, Device, Module, Tensor};
use candle_nn::Linear;
use serde_json::Value;

struct Layer {
    /// `None` for layer 0 (transformers uses Identity there).
    attn_norm: Option<LayerNorm>,
    wqkv: Linear,
    wo: Linear,
    mlp_norm: LayerNorm,
    wi: Linear,
    mlp_out: Linear,
    /// Local (sliding-window) layers use their own rotary base.
    local: bool,
}

impl Head {
    /// dense → activation → LayerNorm → classifier on pooled vectors.
    fn apply(&self, pooled: &Tensor, mode: RunMode) -> candle_core::Result<Tensor> {
        let z = self.norm.forward(&self.activation.apply(&self.dense.forward(pooled)?)?, mode)?;
        self.classifier.forward(&dropout(z, mode)?)
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Pooling {
    Cls,
    Mean,
}

struct Head {
    dense: Linear,
    activation: Activation,
    norm: LayerNorm,
    classifier: Linear,
    pooling: Pooling,
}

/// The ModernBERT body hooked into the shared [`Encoder`].
pub(super) struct ModernBert {
    layers: Vec<Layer>,
    final_norm: LayerNorm,
    head: Option<Head>,
    heads: usize,
    /// `hidden_activation` of the GeGLU (exact GELU by default).
    activation: Activation,
    /// Half window of local layers: keys with |q − k| > this are masked.
    half_window: usize,
    global_theta: f64,
    local_theta: f64,
}

fn rope_theta(raw: &Value, kind: &str, legacy: &str, default: f64) -> f64 {
    raw.get("rope_parameters")
        .and_then(|p| p.get(kind))
        .and_then(|p| p.get("rope_theta"))
        .and_then(Value::as_f64)
        .or_else(|| raw.get(legacy).and_then(Value::as_f64))
        .unwrap_or(default)
}

/// Which layers are local: `layer_types` if present, else every layer not divisible by
/// `global_attn_every_n_layers` (default 3), as transformers derives it.
fn local_layers(raw: &Value, n: usize) -> anyhow::Result<Vec<bool>> {
    if let Some(types) = raw.get("layer_types").and_then(Value::as_array) {
        anyhow::ensure!(types.len() == n, "ModernBERT layer_types lists {} layers, num_hidden_layers is {n}", types.len());
        return types
            .iter()
            .map(|t| match t.as_str() {
                Some("sliding_attention") => Ok(true),
                Some("full_attention") => Ok(false),
                other => bail!("unknown ModernBERT layer type {other:?} (expected full_attention or sliding_attention)"),
            })
            .collect();
    }
    let every = raw.get("global_attn_every_n_layers").and_then(Value::as_u64).unwrap_or(3).max(1) as usize;
    Ok((0..n).map(|i| i % every != 0).collect())
}

/// Builds the shared encoder for a ModernBERT checkpoint.
pub(super) fn encoder(cfg: ModelConfig, w: &Weights) -> anyhow::Result<Encoder> {
    let raw = &cfg.raw;
    let eps = cfg.layer_norm_eps;
    let word = w.get("embeddings.tok_embeddings.weight")?;
    anyhow::ensure!(
        word.dims() == [cfg.vocab_size, cfg.hidden_size],
        "word embeddings have shape {:?}, config says [{}, {}] (hint: config.json and the weights do not belong together)",
        word.dims(),
        cfg.vocab_size,
        cfg.hidden_size
    );
    let embed_norm = LayerNorm::load_bias_optional(w, "embeddings.norm", eps)?;
    let local = local_layers(raw, cfg.num_layers)?;
    let layers = (0..cfg.num_layers)
        .map(|i| {
            let p = format!("layers.{i}");
            Ok(Layer {
                attn_norm: if i == 0 { None } else { Some(LayerNorm::load_bias_optional(w, &format!("{p}.attn_norm"), eps)?) },
                wqkv: w.linear(&format!("{p}.attn.Wqkv"))?,
                wo: w.linear(&format!("{p}.attn.Wo"))?,
                mlp_norm: LayerNorm::load_bias_optional(w, &format!("{p}.mlp_norm"), eps)?,
                wi: w.linear(&format!("{p}.mlp.Wi"))?,
                mlp_out: w.linear(&format!("{p}.mlp.Wo"))?,
                local: local[i],
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let head = if cfg.is_classifier {
        let pooling = match raw.get("classifier_pooling").and_then(Value::as_str).unwrap_or("cls") {
            "cls" => Pooling::Cls,
            "mean" => Pooling::Mean,
            other => bail!("unsupported ModernBERT classifier_pooling \"{other}\" (supported: cls, mean)"),
        };
        Some(Head {
            dense: w.linear("head.dense")?,
            activation: Activation::parse(raw.get("classifier_activation").and_then(Value::as_str).unwrap_or("gelu"))?,
            norm: LayerNorm::load_bias_optional(w, "head.norm", eps)?,
            classifier: w.linear("classifier")?,
            pooling,
        })
    } else {
        None
    };
    let local_attention = raw.get("local_attention").and_then(Value::as_u64).unwrap_or(128) as usize;
    let body = ModernBert {
        layers,
        final_norm: LayerNorm::load_bias_optional(w, "final_norm", eps)?,
        head,
        heads: cfg.num_heads,
        activation: cfg.activation,
        half_window: local_attention / 2,
        global_theta: rope_theta(raw, "full_attention", "global_rope_theta", 160_000.0),
        local_theta: rope_theta(raw, "sliding_attention", "local_rope_theta", 10_000.0),
    };
    Ok(Encoder::with_family_body(cfg, word, embed_norm, body))
}

/// `[batch, len, head_dim]` cos and sin for positions, as transformers' default rope (f32).
fn rotary(theta: f64, head_dim: usize, positions: &Tensor) -> candle_core::Result<(Tensor, Tensor)> {
    let half = head_dim / 2;
    let inv: Vec<f32> = (0..half).map(|i| 1.0 / (theta as f32).powf((2 * i) as f32 / head_dim as f32)).collect();
    let inv = Tensor::from_vec(inv, (1, 1, half), positions.device())?;
    let freqs = positions.to_dtype(candle_core::DType::F32)?.unsqueeze(2)?.broadcast_mul(&inv)?;
    let emb = Tensor::cat(&[&freqs, &freqs], 2)?;
    Ok((emb.cos()?, emb.sin()?))
}

/// x·cos + rotate_half(x)·sin for `x` of shape `[batch, heads, len, head_dim]`.
fn apply_rotary(x: &Tensor, cos: &Tensor, sin: &Tensor) -> candle_core::Result<Tensor> {
    let d = x.dim(3)?;
    let x1 = x.narrow(3, 0, d / 2)?;
    let x2 = x.narrow(3, d / 2, d / 2)?;
    let rotated = Tensor::cat(&[&x2.neg()?, &x1], 3)?;
    x.broadcast_mul(&cos.unsqueeze(1)?)? + rotated.broadcast_mul(&sin.unsqueeze(1)?)?
}

impl ModernBert {
    pub(super) fn has_head(&self) -> bool {
        self.head.is_some()
    }

    /// The head (without pooling) on hidden vectors `[n, hidden]`: the encoder's logit lens.
    pub(super) fn head_logits(&self, rows: &Tensor) -> candle_core::Result<Option<Tensor>> {
        match &self.head {
            Some(h) => Ok(Some(h.apply(rows, RunMode::INFERENCE)?)),
            None => Ok(None),
        }
    }

    pub(super) fn forward(&self, embed_norm: &LayerNorm, input: &EncoderInput, mode: RunMode) -> candle_core::Result<EncoderOutput> {
        let (batch, len, hidden) = input.word_embeds.dims3()?;
        let heads = self.heads;
        let head_dim = hidden / heads;
        let device = input.word_embeds.device();
        let mut x = dropout(embed_norm.forward(input.word_embeds, mode)?, mode)?;

        let key_mask = match input.attention_mask {
            Some(m) => Some(((m.ones_like()? - m)? * -1e9f64)?.reshape((batch, 1, 1, len))?),
            None => None,
        };
        let window: Vec<f32> = (0..len * len)
            .map(|i| if (i / len).abs_diff(i % len) <= self.half_window { 0.0 } else { -1e9 })
            .collect();
        let window = Tensor::from_vec(window, (1, 1, len, len), &Device::Cpu)?.to_device(device)?;
        let global = rotary(self.global_theta, head_dim, input.position_ids)?;
        let local = rotary(self.local_theta, head_dim, input.position_ids)?;
        let scale = 1.0 / (head_dim as f64).sqrt();

        let mut hidden_states = vec![x.clone()];
        let mut attentions = Vec::with_capacity(self.layers.len());
        let mut probes = Vec::new();
        for layer in &self.layers {
            let h = match &layer.attn_norm {
                Some(n) => n.forward(&x, mode)?,
                None => x.clone(),
            };
            // Wqkv → [batch, len, 3, heads, head_dim] → three [batch, heads, len, head_dim].
            let qkv = layer.wqkv.forward(&h)?.reshape((batch, len, 3, heads, head_dim))?;
            let part = |i: usize| qkv.narrow(2, i, 1)?.squeeze(2)?.transpose(1, 2)?.contiguous();
            let (cos, sin) = if layer.local { &local } else { &global };
            let q = apply_rotary(&part(0)?, cos, sin)?;
            let k = apply_rotary(&part(1)?, cos, sin)?;
            let v = part(2)?;
            let mut scores = (q.matmul(&k.t()?.contiguous()?)? * scale)?;
            if let Some(m) = &key_mask {
                scores = scores.broadcast_add(m)?;
            }
            if layer.local {
                scores = scores.broadcast_add(&window)?;
            }
            let probs = attention_probs(&scores, mode, &mut probes)?;
            attentions.push(probs.clone());
            let ctx = dropout(probs, mode)?.matmul(&v)?.transpose(1, 2)?.reshape((batch, len, hidden))?;
            x = (x + dropout(layer.wo.forward(&ctx)?, mode)?)?;
            let inner = layer.wi.forward(&layer.mlp_norm.forward(&x, mode)?)?;
            let half = inner.dim(D::Minus1)? / 2;
            let gated = (self.activation.apply(&inner.narrow(2, 0, half)?)? * inner.narrow(2, half, half)?)?;
            x = (x + layer.mlp_out.forward(&dropout(gated, mode)?)?)?;
            hidden_states.push(x.clone());
        }
        // transformers reports the final-normed state as the last hidden state.
        let last = self.final_norm.forward(&x, mode)?;
        if let Some(h) = hidden_states.last_mut() {
            *h = last.clone();
        }
        let logits = match &self.head {
            Some(head) => {
                let pooled = match (head.pooling, input.attention_mask) {
                    (Pooling::Cls, _) => last.narrow(1, 0, 1)?.squeeze(1)?,
                    (Pooling::Mean, None) => last.mean(1)?,
                    (Pooling::Mean, Some(m)) => {
                        let m3 = m.unsqueeze(2)?;
                        last.broadcast_mul(&m3)?.sum(1)?.broadcast_div(&m.sum_keepdim(1)?)?
                    }
                };
                Some(head.apply(&pooled, mode)?)
            }
            None => None,
        };
        Ok(EncoderOutput { hidden_states, attentions, attention_probes: probes, logits })
    }
}
