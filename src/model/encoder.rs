//! The BERT-family encoder, written on candle-nn building blocks so that it can
//! return every attention matrix and, in differentiable mode, gradients w.r.t.
//! the word embeddings and the attention probabilities.
//!
//! candle-transformers' `bert.rs` drops `attention_probs`, and candle's fused
//! `layer_norm` / `softmax_last_dim` have no backward pass, so this crate keeps
//! its own encoder: one implementation whose [`RunMode`] picks fused kernels
//! (inference) or elementary ops that autograd understands (gradients, training).

use super::config::{Activation, Family, ModelConfig};
use super::weights::Weights;
use candle_core::{D, DType, Device, Module, Tensor, Var};
use candle_nn::{Embedding, Linear};

use super::ops;

/// A linear layer: the fused frozen-weight op when enabled (input gradient
/// only), candle-nn's otherwise.
fn linear(layer: &Linear, x: &Tensor) -> candle_core::Result<Tensor> {
    if ops::fused() { ops::linear::linear_input_grad(layer, x) } else { layer.forward(x) }
}

/// How to run the encoder.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RunMode {
    /// Use only ops with a backward pass (no fused layer norm / softmax).
    pub differentiable: bool,
    /// Add a zero variable to every attention matrix so its gradient can be read
    /// back (candle keeps gradients of variables only).
    pub attention_probes: bool,
    /// Dropout probability during training; `None` at inference.
    pub dropout: Option<f32>,
}

impl RunMode {
    pub const INFERENCE: RunMode = RunMode { differentiable: false, attention_probes: false, dropout: None };
    pub const GRADIENTS: RunMode = RunMode { differentiable: true, attention_probes: true, dropout: None };
}

/// Input of one batched encoder run. Word embeddings are passed in (not ids) so
/// that integrated gradients can feed interpolated embeddings.
pub struct EncoderInput<'a> {
    /// `[batch, len, hidden]` word embeddings.
    pub word_embeds: &'a Tensor,
    /// `[batch, len]` u32 position ids.
    pub position_ids: &'a Tensor,
    /// `[batch, len]` u32 token type ids (ignored by DistilBERT).
    pub type_ids: &'a Tensor,
    /// `[batch, len]` f32, 1 for real tokens, 0 for padding; `None` = no padding.
    pub attention_mask: Option<&'a Tensor>,
}

/// What one run produced.
pub struct EncoderOutput {
    /// `[batch, len, hidden]` after the embeddings and after each layer.
    pub hidden_states: Vec<Tensor>,
    /// `[batch, heads, len, len]` attention probabilities per layer.
    pub attentions: Vec<Tensor>,
    /// Zero variables added to each attention matrix (attention_probes mode).
    pub attention_probes: Vec<Var>,
    /// `[batch, labels]` classifier logits, if the model has a head.
    pub logits: Option<Tensor>,
}

struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl LayerNorm {
    fn load(w: &Weights, name: &str, eps: f64) -> anyhow::Result<Self> {
        Ok(Self { weight: w.get_norm_weight(name)?, bias: w.get_norm_bias(name)?, eps })
    }

    fn forward(&self, x: &Tensor, mode: RunMode) -> candle_core::Result<Tensor> {
        if ops::fused() && x.device().is_cpu() {
            return ops::norm::layer_norm(x, &self.weight, &self.bias, self.eps as f32);
        }
        if !mode.differentiable && x.is_contiguous() {
            return candle_nn::ops::layer_norm(x, &self.weight, &self.bias, self.eps as f32);
        }
        let mean = x.mean_keepdim(D::Minus1)?;
        let centered = x.broadcast_sub(&mean)?;
        let var = centered.sqr()?.mean_keepdim(D::Minus1)?;
        let normed = centered.broadcast_div(&(var + self.eps)?.sqrt()?)?;
        normed.broadcast_mul(&self.weight)?.broadcast_add(&self.bias)
    }
}

fn dropout(x: Tensor, mode: RunMode) -> candle_core::Result<Tensor> {
    match mode.dropout {
        Some(p) if p > 0.0 => candle_nn::ops::dropout(&x, p),
        _ => Ok(x),
    }
}

struct Layer {
    query: Linear,
    key: Linear,
    value: Linear,
    attn_out: Linear,
    attn_norm: LayerNorm,
    ffn_in: Linear,
    ffn_out: Linear,
    out_norm: LayerNorm,
}

impl Layer {
    fn load(w: &Weights, cfg: &ModelConfig, i: usize) -> anyhow::Result<Self> {
        let eps = cfg.layer_norm_eps;
        if cfg.family == Family::DistilBert {
            let p = format!("transformer.layer.{i}");
            return Ok(Self {
                query: w.linear(&format!("{p}.attention.q_lin"))?,
                key: w.linear(&format!("{p}.attention.k_lin"))?,
                value: w.linear(&format!("{p}.attention.v_lin"))?,
                attn_out: w.linear(&format!("{p}.attention.out_lin"))?,
                attn_norm: LayerNorm::load(w, &format!("{p}.sa_layer_norm"), eps)?,
                ffn_in: w.linear(&format!("{p}.ffn.lin1"))?,
                ffn_out: w.linear(&format!("{p}.ffn.lin2"))?,
                out_norm: LayerNorm::load(w, &format!("{p}.output_layer_norm"), eps)?,
            });
        }
        let p = format!("encoder.layer.{i}");
        Ok(Self {
            query: w.linear(&format!("{p}.attention.self.query"))?,
            key: w.linear(&format!("{p}.attention.self.key"))?,
            value: w.linear(&format!("{p}.attention.self.value"))?,
            attn_out: w.linear(&format!("{p}.attention.output.dense"))?,
            attn_norm: LayerNorm::load(w, &format!("{p}.attention.output.LayerNorm"), eps)?,
            ffn_in: w.linear(&format!("{p}.intermediate.dense"))?,
            ffn_out: w.linear(&format!("{p}.output.dense"))?,
            out_norm: LayerNorm::load(w, &format!("{p}.output.LayerNorm"), eps)?,
        })
    }
}

/// Classification heads as transformers defines them.
enum Head {
    /// BERT: tanh(pooler.dense(h[CLS])) → classifier.
    Bert { pooler: Linear, classifier: Linear },
    /// DistilBERT: ReLU(pre_classifier(h[CLS])) → classifier.
    DistilBert { pre_classifier: Linear, classifier: Linear },
    /// RoBERTa: tanh(classifier.dense(h[<s>])) → classifier.out_proj.
    Roberta { dense: Linear, out_proj: Linear },
}

impl Head {
    fn load(w: &Weights, family: Family) -> anyhow::Result<Self> {
        Ok(match family {
            Family::Bert => Head::Bert { pooler: w.linear("pooler.dense")?, classifier: w.linear("classifier")? },
            Family::DistilBert => Head::DistilBert {
                pre_classifier: w.linear("pre_classifier")?,
                classifier: w.linear("classifier")?,
            },
            Family::Roberta => Head::Roberta {
                dense: w.linear("classifier.dense")?,
                out_proj: w.linear("classifier.out_proj")?,
            },
        })
    }

    fn forward(&self, cls: &Tensor, mode: RunMode) -> candle_core::Result<Tensor> {
        match self {
            Head::Bert { pooler, classifier } => {
                let pooled = pooler.forward(cls)?.tanh()?;
                classifier.forward(&dropout(pooled, mode)?)
            }
            Head::DistilBert { pre_classifier, classifier } => {
                let x = pre_classifier.forward(cls)?.relu()?;
                classifier.forward(&dropout(x, mode)?)
            }
            Head::Roberta { dense, out_proj } => {
                let x = dense.forward(&dropout(cls.clone(), mode)?)?.tanh()?;
                out_proj.forward(&dropout(x, mode)?)
            }
        }
    }
}

/// The encoder and its optional classification head.
pub struct Encoder {
    pub cfg: ModelConfig,
    word_embeddings: Embedding,
    position_embeddings: Embedding,
    type_embeddings: Option<Embedding>,
    embed_norm: LayerNorm,
    layers: Vec<Layer>,
    head: Option<Head>,
}

impl Encoder {
    /// Builds the encoder from canonical (prefix-free) weights.
    pub fn new(cfg: ModelConfig, w: &Weights) -> anyhow::Result<Self> {
        let hidden = cfg.hidden_size;
        let word = w.get("embeddings.word_embeddings.weight")?;
        anyhow::ensure!(
            word.dims() == [cfg.vocab_size, hidden],
            "word embeddings have shape {:?}, config says [{}, {hidden}] (hint: config.json and the weights do not belong together)",
            word.dims(),
            cfg.vocab_size
        );
        let type_embeddings = if cfg.family == Family::DistilBert {
            None
        } else {
            Some(Embedding::new(w.get("embeddings.token_type_embeddings.weight")?, hidden))
        };
        let embed_norm = LayerNorm::load(w, "embeddings.LayerNorm", cfg.layer_norm_eps)?;
        let layers = (0..cfg.num_layers)
            .map(|i| Layer::load(w, &cfg, i))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let head = if cfg.is_classifier { Some(Head::load(w, cfg.family)?) } else { None };
        Ok(Self {
            word_embeddings: Embedding::new(word, hidden),
            position_embeddings: Embedding::new(w.get("embeddings.position_embeddings.weight")?, hidden),
            type_embeddings,
            embed_norm,
            layers,
            head,
            cfg,
        })
    }

    pub fn has_head(&self) -> bool {
        self.head.is_some()
    }

    /// The classification head applied to any hidden vectors `[n, hidden]`
    /// (inference mode): a "logit lens" on every token, read by distilled
    /// ExpNet features. `None` for a bare encoder.
    pub fn head_logits(&self, rows: &Tensor) -> candle_core::Result<Option<Tensor>> {
        match &self.head {
            Some(head) => Ok(Some(head.forward(rows, RunMode::INFERENCE)?)),
            None => Ok(None),
        }
    }

    /// `[batch, len]` ids → `[batch, len, hidden]` word embeddings.
    pub fn embed_words(&self, ids: &Tensor) -> candle_core::Result<Tensor> {
        self.word_embeddings.forward(ids)
    }

    /// The word-embedding table, `[vocab, hidden]`.
    pub fn word_embedding_table(&self) -> &Tensor {
        self.word_embeddings.embeddings()
    }

    /// Runs the encoder (and head) on a batch.
    pub fn forward(&self, input: &EncoderInput, mode: RunMode) -> candle_core::Result<EncoderOutput> {
        let cfg = &self.cfg;
        let (batch, len, hidden) = input.word_embeds.dims3()?;
        let heads = cfg.num_heads;
        let head_dim = hidden / heads;
        let mut x = input.word_embeds.broadcast_add(&self.position_embeddings.forward(input.position_ids)?)?;
        if let Some(te) = &self.type_embeddings {
            x = x.broadcast_add(&te.forward(input.type_ids)?)?;
        }
        x = dropout(self.embed_norm.forward(&x, mode)?, mode)?;

        // Additive mask: 0 for real tokens, a large negative value for padding.
        let additive_mask = match input.attention_mask {
            Some(m) => Some(((m.ones_like()? - m)? * -1e9f64)?.reshape((batch, 1, 1, len))?),
            None => None,
        };
        let scale = 1.0 / (head_dim as f64).sqrt();
        let split = |t: Tensor| -> candle_core::Result<Tensor> {
            t.reshape((batch, len, heads, head_dim))?.transpose(1, 2)?.contiguous()
        };

        let mut hidden_states = vec![x.clone()];
        let mut attentions = Vec::with_capacity(self.layers.len());
        let mut probes = Vec::new();
        for layer in &self.layers {
            let q = split(linear(&layer.query, &x)?)?;
            let k = split(linear(&layer.key, &x)?)?;
            let v = split(linear(&layer.value, &x)?)?;
            let fused_softmax = ops::fused() && q.device().is_cpu();
            let raw_scores = q.matmul(&k.t()?.contiguous()?)?;
            // The fused softmax applies the scale itself (one pass less).
            let mut scores = if fused_softmax { raw_scores } else { (raw_scores * scale)? };
            if let Some(m) = &additive_mask {
                // Divided by the scale the fused softmax multiplies by: still ≈ −1e9·√d.
                let m = if fused_softmax { (m / scale)? } else { m.clone() };
                scores = scores.broadcast_add(&m)?;
            }
            let mut probs = if fused_softmax {
                ops::softmax::scaled_softmax_last_dim(&scores, scale as f32)?
            } else if mode.differentiable {
                candle_nn::ops::softmax(&scores, D::Minus1)?
            } else {
                candle_nn::ops::softmax_last_dim(&scores)?
            };
            if mode.attention_probes {
                let probe = Var::zeros(probs.shape(), DType::F32, probs.device())?;
                probs = probs.broadcast_add(probe.as_tensor())?;
                probes.push(probe);
            }
            attentions.push(probs.clone());
            let probs_d = dropout(probs, mode)?;
            let ctx = probs_d.matmul(&v)?.transpose(1, 2)?.reshape((batch, len, hidden))?;
            let attn = dropout(linear(&layer.attn_out, &ctx)?, mode)?;
            let h = layer.attn_norm.forward(&(attn + &x)?, mode)?;
            let inter = linear(&layer.ffn_in, &h)?;
            let inter = match cfg.activation {
                Activation::Gelu if ops::fused() && inter.device().is_cpu() => ops::gelu::gelu_erf(&inter)?,
                Activation::Gelu => inter.gelu_erf()?,
                Activation::GeluTanh => inter.gelu()?,
                Activation::Relu => inter.relu()?,
            };
            let out = dropout(linear(&layer.ffn_out, &inter)?, mode)?;
            x = layer.out_norm.forward(&(out + &h)?, mode)?;
            hidden_states.push(x.clone());
        }
        let logits = match &self.head {
            Some(head) => {
                let cls = x.narrow(1, 0, 1)?.squeeze(1)?;
                Some(head.forward(&cls, mode)?)
            }
            None => None,
        };
        Ok(EncoderOutput { hidden_states, attentions, attention_probes: probes, logits })
    }

    /// Position ids for a batch of real lengths padded to `len` (RoBERTa offsets
    /// them by `padding_idx + 1` and gives padding the padding index).
    pub fn position_ids(&self, lengths: &[usize], len: usize, device: &Device) -> candle_core::Result<Tensor> {
        let pad = self.cfg.pad_token_id;
        let mut ids = Vec::with_capacity(lengths.len() * len);
        for &n in lengths {
            for i in 0..len {
                ids.push(match self.cfg.family {
                    Family::Roberta if i < n => pad + 1 + i as u32,
                    Family::Roberta => pad,
                    _ => i as u32,
                });
            }
        }
        Tensor::from_vec(ids, (lengths.len(), len), device)
    }
}
