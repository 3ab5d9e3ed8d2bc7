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

#[derive(Clone)]
pub(super) struct LayerNorm {
    pub(super) weight: Tensor,
    pub(super) bias: Tensor,
    pub(super) eps: f64,
}

impl LayerNorm {
    pub(super) fn load(w: &Weights, name: &str, eps: f64) -> anyhow::Result<Self> {
        Ok(Self { weight: w.get_norm_weight(name)?, bias: w.get_norm_bias(name)?, eps })
    }

    /// A LayerNorm whose bias may be absent (ModernBERT's `norm_bias: false`): zero then.
    pub(super) fn load_bias_optional(w: &Weights, name: &str, eps: f64) -> anyhow::Result<Self> {
        let weight = w.get_norm_weight(name)?;
        let bias = match w.get_norm_bias(name) {
            Ok(b) => b,
            Err(_) => weight.zeros_like()?,
        };
        Ok(Self { weight, bias, eps })
    }

    pub(super) fn forward(&self, x: &Tensor, mode: RunMode) -> candle_core::Result<Tensor> {
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

/// Softmax over keys, plus (in `attention_probes` mode) a zero variable whose
/// gradient is d output / d probabilities; every family's attention goes through here.
pub(super) fn attention_probs(scores: &Tensor, mode: RunMode, probes: &mut Vec<Var>) -> candle_core::Result<Tensor> {
    let mut probs = if mode.differentiable {
        candle_nn::ops::softmax(scores, D::Minus1)?
    } else {
        candle_nn::ops::softmax_last_dim(scores)?
    };
    if mode.attention_probes {
        let probe = Var::zeros(probs.shape(), DType::F32, probs.device())?;
        probs = probs.broadcast_add(probe.as_tensor())?;
        probes.push(probe);
    }
    Ok(probs)
}

pub(super) fn dropout(x: Tensor, mode: RunMode) -> candle_core::Result<Tensor> {
    match mode.dropout {
        Some(p) if p > 0.0 => candle_nn::ops::dropout(&x, p),
        _ => Ok(x),
    }
}

/// One post-norm transformer layer (BERT, DistilBERT, RoBERTa, ELECTRA, ALBERT).
#[derive(Clone)]
pub(super) struct Layer {
    pub(super) query: Linear,
    pub(super) key: Linear,
    pub(super) value: Linear,
    pub(super) attn_out: Linear,
    pub(super) attn_norm: LayerNorm,
    pub(super) ffn_in: Linear,
    pub(super) ffn_out: Linear,
    pub(super) out_norm: LayerNorm,
}

impl Layer {
    /// Loads a layer from its eight parameter names (query, key, value, attention
    /// output, attention norm, FFN in, FFN out, output norm); families differ only there.
    pub(super) fn from_names(w: &Weights, eps: f64, n: [&str; 8]) -> anyhow::Result<Self> {
        Ok(Self {
            query: w.linear(n[0])?,
            key: w.linear(n[1])?,
            value: w.linear(n[2])?,
            attn_out: w.linear(n[3])?,
            attn_norm: LayerNorm::load(w, n[4], eps)?,
            ffn_in: w.linear(n[5])?,
            ffn_out: w.linear(n[6])?,
            out_norm: LayerNorm::load(w, n[7], eps)?,
        })
    }

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

/// The weights of one layer's attention block that decomposition methods
/// (value norms, ALTI) need to split its output into per-token parts. Read
/// from the loaded encoder, so the forward pass itself is untouched: with the
/// layer's input (a hidden state) and its attention probabilities, these give
/// every per-head transformed vector `f_h(x_j) = (x_j W_V + b_V)_h W_O^h`.
#[derive(Clone, Debug)]
pub struct AttentionBlockParams {
    /// `[hidden, hidden]`, torch layout (`out × in`).
    pub value_weight: Tensor,
    pub value_bias: Option<Tensor>,
    /// Output projection `W_O`, `[hidden, hidden]` (`out × in`, heads along `in`).
    pub out_weight: Tensor,
    pub out_bias: Option<Tensor>,
    /// Layer norm after the residual connection: gain, bias, epsilon.
    pub norm_weight: Tensor,
    pub norm_bias: Tensor,
    pub norm_eps: f64,
    /// Layer norm after the feed-forward block (GlobEnc carries the pieces through it).
    pub output_norm_weight: Tensor,
    pub output_norm_bias: Tensor,
    pub output_norm_eps: f64,
}

/// Classification heads as transformers defines them.
pub(super) enum Head {
    /// BERT: tanh(pooler.dense(h[CLS])) → classifier.
    Bert { pooler: Linear, classifier: Linear },
    /// DistilBERT: ReLU(pre_classifier(h[CLS])) → classifier.
    DistilBert { pre_classifier: Linear, classifier: Linear },
    /// RoBERTa: tanh(classifier.dense(h[<s>])) → classifier.out_proj.
    Roberta { dense: Linear, out_proj: Linear },
    /// act(dense(h[CLS])) → out: ELECTRA (`classifier.dense`, erf GELU,
    /// `classifier.out_proj`) and DeBERTa's ContextPooler (`pooler.dense`,
    /// `pooler_hidden_act`, `classifier`).
    DenseAct { dense: Linear, activation: Activation, out: Linear },
}

impl Head {
    fn load(w: &Weights, cfg: &ModelConfig) -> anyhow::Result<Self> {
        Ok(match cfg.family {
            Family::Bert => Head::Bert { pooler: w.linear("pooler.dense")?, classifier: w.linear("classifier")? },
            Family::DistilBert => Head::DistilBert {
                pre_classifier: w.linear("pre_classifier")?,
                classifier: w.linear("classifier")?,
            },
            Family::Roberta => Head::Roberta {
                dense: w.linear("classifier.dense")?,
                out_proj: w.linear("classifier.out_proj")?,
            },
            Family::Electra => super::electra::head(w)?,
            Family::Albert => super::albert::head(w)?,
            Family::DebertaV2 => super::deberta_v2::head(w, cfg)?,
            Family::ModernBert => anyhow::bail!("ModernBERT's head is built by modernbert.rs"),
        })
    }

    pub(super) fn forward(&self, cls: &Tensor, mode: RunMode) -> candle_core::Result<Tensor> {
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
            Head::DenseAct { dense, activation, out } => {
                let x = activation.apply(&dense.forward(&dropout(cls.clone(), mode)?)?)?;
                out.forward(&dropout(x, mode)?)
            }
        }
    }
}

/// The encoder and its optional classification head.
pub struct Encoder {
    pub cfg: ModelConfig,
    word_embeddings: Embedding,
    /// Absent for DeBERTa-v3 (`position_biased_input: false`): positions enter through attention.
    pub(super) position_embeddings: Option<Embedding>,
    pub(super) type_embeddings: Option<Embedding>,
    pub(super) embed_norm: LayerNorm,
    /// ELECTRA / ALBERT / DeBERTa: projection of the (narrower) embeddings to the hidden size.
    pub(super) embed_project: Option<Linear>,
    /// DeBERTa projects before the embedding LayerNorm, ELECTRA and ALBERT after it.
    pub(super) project_before_norm: bool,
    /// DeBERTa-v2/v3: disentangled relative-position terms added to the attention scores.
    pub(super) relative: Option<super::deberta_v2::Relative>,
    /// ModernBERT: its own pre-norm rotary layers and head replace `layers` and `head`.
    pub(super) modern: Option<super::modernbert::ModernBert>,
    pub(super) layers: Vec<Layer>,
    pub(super) head: Option<Head>,
    /// Packed weight copies for the hand-written passes (see [`super::fast::PackedWeights`]).
    pub(super) packed: super::fast::PackedWeights,
}

impl Encoder {
    /// Builds the encoder from canonical (prefix-free) weights.
    pub fn new(cfg: ModelConfig, w: &Weights) -> anyhow::Result<Self> {
        let hidden = cfg.embedding_size;
        if cfg.family == Family::ModernBert {
            return super::modernbert::encoder(cfg, w);
        }
        let word = w.get("embeddings.word_embeddings.weight")?;
        anyhow::ensure!(
            word.dims() == [cfg.vocab_size, hidden],
            "word embeddings have shape {:?}, config says [{}, {hidden}] (hint: config.json and the weights do not belong together)",
            word.dims(),
            cfg.vocab_size
        );
        let type_embeddings = if cfg.family == Family::DistilBert || cfg.type_vocab_size == 0 {
            None
        } else {
            Some(Embedding::new(w.get("embeddings.token_type_embeddings.weight")?, hidden))
        };
        let (position_embeddings, relative) = match cfg.family {
            Family::DebertaV2 => super::deberta_v2::positions(w, &cfg)?,
            _ => (Some(w.get("embeddings.position_embeddings.weight")?), None),
        };
        let embed_norm = LayerNorm::load(w, "embeddings.LayerNorm", cfg.layer_norm_eps)?;
        let (layers, embed_project) = match cfg.family {
            Family::Albert => (super::albert::layers(w, &cfg)?, Some(super::albert::projection(w)?)),
            Family::DebertaV2 => (super::deberta_v2::layers(w, &cfg)?, super::deberta_v2::projection(w, &cfg)?),
            _ => {
                let layers = (0..cfg.num_layers).map(|i| Layer::load(w, &cfg, i)).collect::<anyhow::Result<Vec<_>>>()?;
                let project = if cfg.family == Family::Electra { super::electra::projection(w, &cfg)? } else { None };
                (layers, project)
            }
        };
        let head = if cfg.is_classifier { Some(Head::load(w, &cfg)?) } else { None };
        Ok(Self {
            word_embeddings: Embedding::new(word, hidden),
            position_embeddings: position_embeddings.map(|t| Embedding::new(t, hidden)),
            type_embeddings,
            embed_norm,
            embed_project,
            project_before_norm: cfg.family == Family::DebertaV2,
            relative,
            modern: None,
            layers,
            head,
            cfg,
            packed: Default::default(),
        })
    }

    /// Drops the copies the hand-written forward made of the weights; call
    /// after changing weights in place (a fine-tuning step).
    pub fn weights_changed(&self) {
        self.packed.clear();
    }

    pub fn has_head(&self) -> bool {
        self.head.is_some() || self.modern.as_ref().is_some_and(|m| m.has_head())
    }

    /// An encoder whose layers and head live elsewhere (ModernBERT): only the
    /// word embeddings, their norm and the family hook are set here.
    pub(super) fn with_family_body(
        cfg: ModelConfig,
        word: Tensor,
        embed_norm: LayerNorm,
        modern: super::modernbert::ModernBert,
    ) -> Self {
        let hidden = cfg.embedding_size;
        Self {
            word_embeddings: Embedding::new(word, hidden),
            position_embeddings: None,
            type_embeddings: None,
            embed_norm,
            embed_project: None,
            project_before_norm: false,
            relative: None,
            modern: Some(modern),
            layers: Vec::new(),
            head: None,
            cfg,
            packed: Default::default(),
        }
    }

    /// Attention-block weights of `layer` (see [`AttentionBlockParams`]).
    pub fn attention_block(&self, layer: usize) -> Option<AttentionBlockParams> {
        let l = self.layers.get(layer)?;
        Some(AttentionBlockParams {
            value_weight: l.value.weight().clone(),
            value_bias: l.value.bias().cloned(),
            out_weight: l.attn_out.weight().clone(),
            out_bias: l.attn_out.bias().cloned(),
            norm_weight: l.attn_norm.weight.clone(),
            norm_bias: l.attn_norm.bias.clone(),
            norm_eps: l.attn_norm.eps,
            output_norm_weight: l.out_norm.weight.clone(),
            output_norm_bias: l.out_norm.bias.clone(),
            output_norm_eps: l.out_norm.eps,
        })
    }

    /// The feed-forward block of `layer` alone, `FFN(h)` without residual or
    /// norm, for `[.., hidden]` inputs (inference; decomposition methods need
    /// the state the second layer norm sees).
    pub fn feed_forward(&self, layer: usize, h: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let Some(l) = self.layers.get(layer) else { return Ok(None) };
        let inter = l.ffn_in.forward(h)?;
        let inter = match self.cfg.activation {
            Activation::Gelu => inter.gelu_erf()?,
            Activation::GeluTanh => inter.gelu()?,
            Activation::Relu => inter.relu()?,
        };
        l.ffn_out.forward(&inter).map(Some)
    }

    /// `(f(h), ∂f/∂pre)` for a function `f` of `layer`'s output row `h`,
    /// where `pre` is that row's pre-norm attention sum and `head_back(h)`
    /// returns `f(h)` and `∂f/∂h`: one row through the norms and the
    /// feed-forward block by hand. `None` where the hand-written path does
    /// not apply (weights not plain f32 CPU tensors, ModernBERT, fused
    /// kernels switched off); the caller then builds the row on candle's graph.
    pub fn post_attention_row_back<E>(
        &self,
        layer: usize,
        pre: &[f32],
        head_back: impl FnOnce(&[f32]) -> Result<(f32, Vec<f32>), E>,
    ) -> Result<Option<(f32, Vec<f32>)>, E> {
        if self.modern.is_some() || pre.len() != self.cfg.hidden_size || !super::ops::fused() {
            return Ok(None);
        }
        super::fast::post_attention_row_back(self, layer, pre, head_back)
    }

    /// `(log p(target), ∂ log p(target)/∂h)` of the classification head on
    /// one row `h`, by hand (no graph). `None` for a bare encoder, ModernBERT,
    /// weights that are not plain f32 CPU tensors, a target outside the
    /// classes, or with the fused kernels switched off (`ops::set_fused`).
    pub fn head_log_prob_back(&self, h: &[f32], target: usize) -> Option<(f32, Vec<f32>)> {
        if self.modern.is_some() || !super::ops::fused() {
            return None;
        }
        super::fast::head_log_prob_back(self.head.as_ref()?, h, target)
    }

    /// [`Self::head_logits`] on `m` flat rows by hand (`[m·classes]`); `None`
    /// where the hand-written head does not apply (the caller uses candle).
    pub fn head_logits_flat(&self, x: &[f32], m: usize) -> Option<Vec<f32>> {
        if self.modern.is_some() || !super::ops::fused() {
            return None;
        }
        super::fast::head_logits_rows(self.head.as_ref()?, x, m)
    }

    /// The classification head applied to any hidden vectors `[n, hidden]`
    /// (inference mode): a "logit lens" on every token, read by distilled
    /// ExpNet features. `None` for a bare encoder.
    pub fn head_logits(&self, rows: &Tensor) -> candle_core::Result<Option<Tensor>> {
        if let Some(m) = &self.modern {
            return m.head_logits(rows);
        }
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

    /// Whether this encoder's runs can take the hand-written path at all
    /// (its family and the switches; the input is checked per run).
    pub(super) fn fast_capable(&self) -> bool {
        super::ops::fast() && self.relative.is_none() && self.modern.is_none() && !self.project_before_norm
    }

    /// Whether a run in `mode` may take the hand-written path ([`super::fast`]).
    fn fast_path(&self, input: &EncoderInput, mode: RunMode) -> bool {
        !mode.differentiable && !mode.attention_probes && mode.dropout.is_none_or(|p| p == 0.0) && super::fast::eligible(self, input)
    }

    /// Classifier logits `[batch, labels]` of an inference run, without keeping
    /// attentions or intermediate hidden states (perturbation batches).
    pub fn logits(&self, input: &EncoderInput) -> candle_core::Result<Option<Tensor>> {
        if self.fast_path(input, RunMode::INFERENCE) {
            if let Some(out) = super::fast::forward(self, input, false)? {
                return Ok(out.logits);
            }
        }
        Ok(self.forward(input, RunMode::INFERENCE)?.logits)
    }

    /// Gradients of each text's `targets[i]` logit by the hand-written
    /// backward ([`super::fast::gradients`]); `None` where it does not apply
    /// (the caller then differentiates the candle graph).
    pub(super) fn gradients_fast(
        &self,
        input: &EncoderInput,
        targets: &[usize],
        with_attention: bool,
    ) -> candle_core::Result<Option<super::fast::FastGradients>> {
        if !self.fast_path(input, RunMode::INFERENCE) {
            return Ok(None);
        }
        // One team of pool threads for the forward and the backward pass.
        super::fast::with_team(|| super::fast::gradients(self, input, targets, with_attention))
    }

    /// One fine-tuning step — the cross-entropy loss of `labels` and the
    /// gradients of every weight — on the hand-written path
    /// ([`super::fast::train_step`], dropout `dropout` with masks drawn from
    /// `seed`); `None` where it does not apply (the caller then differentiates
    /// the candle graph). `word_ids` are the ids behind `input.word_embeds`.
    pub fn train_step_fast(
        &self,
        input: &EncoderInput,
        word_ids: &[u32],
        labels: &Tensor,
        dropout: f32,
        seed: u64,
    ) -> candle_core::Result<Option<(f32, candle_core::backprop::GradStore)>> {
        // One team of pool threads for the step's forward and backward passes.
        super::fast::with_team(|| super::fast::train_step(self, input, word_ids, labels, dropout, seed, true))
    }

    /// Runs the encoder (and head) on a batch.
    pub fn forward(&self, input: &EncoderInput, mode: RunMode) -> candle_core::Result<EncoderOutput> {
        if self.fast_path(input, mode) {
            if let Some(out) = super::fast::forward(self, input, true)? {
                return Ok(out);
            }
        }
        self.forward_graph(input, mode)
    }

    /// An inference [`Self::forward`] that may skip the last layer's rows
    /// other than the first token's (the hand-written path does): there, the
    /// last layer's attention rows and output rows after the first are NaN.
    /// For readers of the first query's attention and the logits only.
    pub fn forward_first_query(&self, input: &EncoderInput) -> candle_core::Result<EncoderOutput> {
        if self.fast_path(input, RunMode::INFERENCE) {
            if let Some(out) = super::fast::forward_first_query(self, input)? {
                return Ok(out);
            }
        }
        self.forward_graph(input, RunMode::INFERENCE)
    }

    /// [`Self::forward`] on the candle graph, whatever the mode (the reference
    /// the hand-written path is tested against).
    pub(super) fn forward_graph(&self, input: &EncoderInput, mode: RunMode) -> candle_core::Result<EncoderOutput> {
        let cfg = &self.cfg;
        if let Some(m) = &self.modern {
            return m.forward(&self.embed_norm, input, mode);
        }
        let (batch, len, _) = input.word_embeds.dims3()?;
        let hidden = cfg.hidden_size;
        let heads = cfg.num_heads;
        let head_dim = hidden / heads;
        let mut x = input.word_embeds.clone();
        if let Some(pe) = &self.position_embeddings {
            x = x.broadcast_add(&pe.forward(input.position_ids)?)?;
        }
        if let Some(te) = &self.type_embeddings {
            x = x.broadcast_add(&te.forward(input.type_ids)?)?;
        }
        let (pre, post) = match &self.embed_project {
            Some(p) if self.project_before_norm => (Some(p), None),
            p => (None, p.as_ref()),
        };
        if let Some(project) = pre {
            x = project.forward(&x)?;
        }
        x = dropout(self.embed_norm.forward(&x, mode)?, mode)?;
        if let Some(project) = post {
            x = project.forward(&x)?;
        }

        // Additive mask: 0 for real tokens, a large negative value for padding.
        let additive_mask = match input.attention_mask {
            Some(m) => Some(((m.ones_like()? - m)? * -1e9f64)?.reshape((batch, 1, 1, len))?),
            None => None,
        };
        let scale = match &self.relative {
            Some(rel) => rel.scale(head_dim),
            None => 1.0 / (head_dim as f64).sqrt(),
        };
        let relative = match &self.relative {
            Some(rel) => Some(rel.prepare(len, mode)?),
            None => None,
        };
        let split = |t: Tensor| -> candle_core::Result<Tensor> {
            t.reshape((batch, len, heads, head_dim))?.transpose(1, 2)?.contiguous()
        };

        let mut hidden_states = vec![x.clone()];
        let mut attentions = Vec::with_capacity(self.layers.len());
        let mut probes = Vec::new();
        for (li, layer) in self.layers.iter().enumerate() {
            let q = split(linear(&layer.query, &x)?)?;
            let k = split(linear(&layer.key, &x)?)?;
            let v = split(linear(&layer.value, &x)?)?;
            // DeBERTa's relative terms carry their own scale, so they take the unfused path.
            let fused_softmax = ops::fused() && q.device().is_cpu() && self.relative.is_none();
            let raw_scores = q.matmul(&k.t()?.contiguous()?)?;
            // The fused softmax applies the scale itself (one pass less).
            let mut scores = if fused_softmax { raw_scores } else { (raw_scores * scale)? };
            if let (Some(rel), Some(prepared)) = (&self.relative, &relative) {
                scores = (scores + rel.scores(li, prepared, &q, &k)?)?;
            }
            if let Some(m) = &additive_mask {
                // Divided by the scale the fused softmax multiplies by: still ≈ −1e9·√d.
                let m = if fused_softmax { (m / scale)? } else { m.clone() };
                scores = scores.broadcast_add(&m)?;
            }
            let probs = if fused_softmax {
                let mut probs = ops::softmax::scaled_softmax_last_dim(&scores, scale as f32)?;
                if mode.attention_probes {
                    let probe = Var::zeros(probs.shape(), DType::F32, probs.device())?;
                    probs = probs.broadcast_add(probe.as_tensor())?;
                    probes.push(probe);
                }
                probs
            } else {
                attention_probs(&scores, mode, &mut probes)?
            };
            attentions.push(probs.clone());
            let probs_d = dropout(probs, mode)?;
            let ctx = probs_d.matmul(&v)?.transpose(1, 2)?.reshape((batch, len, hidden))?;
            let attn = dropout(linear(&layer.attn_out, &ctx)?, mode)?;
            let h = layer.attn_norm.forward(&(attn + &x)?, mode)?;
            let inter = linear(&layer.ffn_in, &h)?;
            let inter = match cfg.activation {
                Activation::Gelu if ops::fused() && inter.device().is_cpu() => ops::gelu::gelu_erf(&inter)?,
                _ => cfg.activation.apply(&inter)?,
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
