//! Loading and running BERT-family encoders with attention capture.
//!
//! [`Model`] is the one entry point the rest of the program uses: it tokenizes,
//! runs the encoder (inference mode, fused kernels) and returns plain-Rust
//! results, or runs it in differentiable mode for gradient methods.

mod albert;
mod batch;
pub mod config;
mod deberta_v2;
pub mod device;
mod electra;
pub mod encoder;
mod fast;
pub(crate) use fast::dense;
mod fingerprint;
mod modernbert;
pub mod ops;
mod resolve;
mod tensor;
mod token;
mod tokenize;
pub mod weights;

pub use fingerprint::fingerprint;
pub use config::{Activation, Family as ModelFamily, ModelConfig};
pub use resolve::{HubOptions, hub_cache_dir, resolve_hub_id, resolve_hub_id_with, resolve_model_dir};
pub use tensor::Attentions;
pub use token::{Encoding, Token};
pub use tokenize::TextTokenizer;

use anyhow::Context;
use candle_core::{DType, Device, Tensor};
use encoder::{Encoder, EncoderInput, EncoderOutput, RunMode};
use serde::Serialize;
use std::path::Path;
use weights::Weights;

/// The classifier's decision for one input.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Prediction {
    /// Label names, `id2label` order.
    pub labels: Vec<String>,
    pub logits: Vec<f32>,
    pub probabilities: Vec<f32>,
    /// Index of the most probable label.
    pub index: usize,
}

impl Prediction {
    pub fn from_logits(labels: &[String], logits: Vec<f32>) -> Self {
        let probabilities = softmax(&logits);
        let index = argmax(&probabilities);
        Self { labels: labels.to_vec(), logits, probabilities, index }
    }
    pub fn label(&self) -> &str {
        &self.labels[self.index]
    }
}

/// Result of one inference-mode forward pass.
#[derive(Clone, Debug)]
pub struct ForwardOutput {
    /// `None` for a bare encoder (no classification head).
    pub prediction: Option<Prediction>,
    pub attentions: Attentions,
    /// Hidden states after the embeddings and after each layer: `[layers+1][len][hidden]`.
    pub hidden_states: Vec<Vec<Vec<f32>>>,
}

/// Gradients of one logit, from one differentiable forward + backward pass.
#[derive(Clone, Debug)]
pub struct Gradients {
    /// The logit that was differentiated.
    pub logit: f32,
    /// Width of one word embedding (`embedding_size`; the hidden size except for ELECTRA/ALBERT).
    pub hidden: usize,
    /// Word embeddings of the input, `[len][hidden]` flat.
    pub embeddings: Vec<f32>,
    /// d logit / d word embeddings, `[len][hidden]` flat.
    pub embedding_grads: Vec<f32>,
    pub attentions: Attentions,
    /// d logit / d attention probabilities, same layout as `attentions`.
    pub attention_grads: Attentions,
}

/// A loaded encoder (with or without classification head) and its tokenizer.
pub struct Model {
    encoder: Encoder,
    tokenizer: TextTokenizer,
    /// What the user called it (folder, hub id, or "embedded:…").
    pub name: String,
    device: Device,
    mask_id: u32,
    /// Identity of the weights (see [`fingerprint`]): what an ExpNet file records.
    fingerprint: String,
}

impl Model {
    /// Loads from a local folder or a hub id (see [`resolve_model_dir`]), on the CPU.
    pub fn load(spec: &str) -> anyhow::Result<Self> {
        Self::load_on(spec, &Device::Cpu)
    }

    /// [`Model::load`] onto `device` (see [`device`]).
    pub fn load_on(spec: &str, device: &Device) -> anyhow::Result<Self> {
        let dir = resolve_model_dir(spec)?;
        let mut m = Self::load_dir_on(&dir, device)?;
        m.name = spec.to_owned();
        Ok(m)
    }

    /// Loads a Hugging Face model folder, on the CPU.
    pub fn load_dir(dir: &Path) -> anyhow::Result<Self> {
        Self::load_dir_on(dir, &Device::Cpu)
    }

    /// [`Model::load_dir`] onto `device`.
    pub fn load_dir_on(dir: &Path, device: &Device) -> anyhow::Result<Self> {
        let cfg_path = dir.join("config.json");
        if !cfg_path.is_file() {
            anyhow::bail!("{} has no config.json (hint: point --model at a Hugging Face model folder)", dir.display());
        }
        let cfg = ModelConfig::from_file(&cfg_path)?;
        let weights = Weights::load_dir(dir, cfg.family.weight_prefix())?;
        let tokenizer = TextTokenizer::from_dir(dir, cfg.max_tokens())?;
        Self::from_parts_on(cfg, &weights, tokenizer, &dir.display().to_string(), device)
    }

    /// Builds a model from parsed parts (also used by `finetune` with trainable weights), on the CPU.
    pub fn from_parts(cfg: ModelConfig, weights: &Weights, tokenizer: TextTokenizer, name: &str) -> anyhow::Result<Self> {
        Self::from_parts_on(cfg, weights, tokenizer, name, &Device::Cpu)
    }

    /// [`Model::from_parts`] with the weights copied to `device`. The
    /// fingerprint is taken from the weights as given, so a model and its
    /// ExpNet files match on every device.
    pub fn from_parts_on(cfg: ModelConfig, weights: &Weights, tokenizer: TextTokenizer, name: &str, device: &Device) -> anyhow::Result<Self> {
        let mask_id = ["[MASK]", "<mask>"]
            .iter()
            .find_map(|t| tokenizer.token_id(t))
            .unwrap_or(cfg.pad_token_id);
        let fingerprint = fingerprint(&cfg, weights)?;
        let weights = weights.to_device(device).with_context(|| format!("cannot copy the weights of {name} to {}", device::label(device)))?;
        let encoder = Encoder::new(cfg, &weights).with_context(|| format!("cannot build the encoder of {name}"))?;
        Ok(Self { encoder, tokenizer, name: name.to_owned(), device: device.clone(), mask_id, fingerprint })
    }

    pub fn config(&self) -> &ModelConfig {
        &self.encoder.cfg
    }
    pub fn encoder(&self) -> &Encoder {
        &self.encoder
    }
    pub fn tokenizer(&self) -> &TextTokenizer {
        &self.tokenizer
    }
    pub fn num_layers(&self) -> usize {
        self.encoder.cfg.num_layers
    }
    pub fn num_heads(&self) -> usize {
        self.encoder.cfg.num_heads
    }
    /// Fingerprint of the config and weights, stable across loads and file formats.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }
    /// `"6x12"`: layers × heads, as shown next to provenance.
    pub fn shape_label(&self) -> String {
        format!("{}x{}", self.num_layers(), self.num_heads())
    }
    pub fn is_classifier(&self) -> bool {
        self.encoder.has_head()
    }
    /// Label names; empty for a bare encoder.
    pub fn labels(&self) -> &[String] {
        &self.encoder.cfg.labels
    }
    /// Token id that perturbation methods put in place of a removed token.
    pub fn mask_token_id(&self) -> u32 {
        self.mask_id
    }
    /// Where the encoder runs: `cpu`, `cuda:0`, …
    pub fn device_name(&self) -> String {
        device::label(&self.device)
    }
    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn encode(&self, text: &str) -> anyhow::Result<Encoding> {
        self.tokenizer.encode(text, None)
    }
    pub fn encode_pair(&self, text: &str, pair: &str) -> anyhow::Result<Encoding> {
        self.tokenizer.encode(text, Some(pair))
    }

    fn batch_input(&self, ids: &[&[u32]], type_ids: &[&[u32]]) -> anyhow::Result<(Tensor, Tensor, Tensor, Option<Tensor>)> {
        anyhow::ensure!(!ids.is_empty(), "empty batch");
        let len = ids.iter().map(|r| r.len()).max().unwrap_or(0);
        anyhow::ensure!(len > 0, "empty input (hint: the tokenizer produced no tokens)");
        let pad = self.encoder.cfg.pad_token_id;
        let lengths: Vec<usize> = ids.iter().map(|r| r.len()).collect();
        let padded = lengths.iter().any(|&n| n != len);
        let mut flat_ids = Vec::with_capacity(ids.len() * len);
        let mut flat_types = Vec::with_capacity(ids.len() * len);
        let mut mask = Vec::with_capacity(ids.len() * len);
        for (row, types) in ids.iter().zip(type_ids) {
            for i in 0..len {
                flat_ids.push(row.get(i).copied().unwrap_or(pad));
                flat_types.push(types.get(i).copied().unwrap_or(0));
                mask.push(if i < row.len() { 1f32 } else { 0f32 });
            }
        }
        let b = ids.len();
        let ids_t = Tensor::from_vec(flat_ids, (b, len), &self.device)?;
        let types_t = Tensor::from_vec(flat_types, (b, len), &self.device)?;
        let pos = self.encoder.position_ids(&lengths, len, &self.device)?;
        let mask_t = if padded { Some(Tensor::from_vec(mask, (b, len), &self.device)?) } else { None };
        Ok((ids_t, types_t, pos, mask_t))
    }

    /// One inference pass with attentions and hidden states.
    pub fn forward(&self, enc: &Encoding) -> anyhow::Result<ForwardOutput> {
        let (ids, types, pos, _) = self.batch_input(&[&enc.ids], &[&enc.type_ids])?;
        let embeds = self.encoder.embed_words(&ids)?;
        let out = self.encoder.forward(
            &EncoderInput { word_embeds: &embeds, position_ids: &pos, type_ids: &types, attention_mask: None },
            RunMode::INFERENCE,
        )?;
        let attentions = stack_attentions(&out.attentions, self.num_layers(), self.num_heads(), enc.len())?;
        let hidden_states = out
            .hidden_states
            .iter()
            .map(|h| h.squeeze(0)?.to_vec2::<f32>())
            .collect::<candle_core::Result<Vec<_>>>()?;
        let prediction = match &out.logits {
            Some(l) => Some(Prediction::from_logits(self.labels(), l.squeeze(0)?.to_vec1()?)),
            None => None,
        };
        Ok(ForwardOutput { prediction, attentions, hidden_states })
    }

    /// Logits for a batch of id sequences (padded internally); needs a head.
    pub fn logits_batch(&self, ids: &[&[u32]], type_ids: &[&[u32]]) -> anyhow::Result<Vec<Vec<f32>>> {
        anyhow::ensure!(self.is_classifier(), "{} is a bare encoder without a classification head (hint: this needs a *ForSequenceClassification model)", self.name);
        // (The candle graph has its own threading: only the hand-written path splits.)
        let workers = if self.encoder.fast_capable() && self.device.is_cpu() { logits_workers(ids.len()) } else { 1 };
        if workers > 1 {
            // Halves on separate threads, each kernel single-threaded inside.
            let half = ids.len().div_ceil(2);
            let (a, b) = rayon::join(
                || fast::serial(|| self.logits_batch_one(&ids[..half], &type_ids[..half])),
                || fast::serial(|| self.logits_batch_one(&ids[half..], &type_ids[half..])),
            );
            let mut a = a?;
            a.extend(b?);
            return Ok(a);
        }
        self.logits_batch_one(ids, type_ids)
    }

    fn logits_batch_one(&self, ids: &[&[u32]], type_ids: &[&[u32]]) -> anyhow::Result<Vec<Vec<f32>>> {
        let (ids, types, pos, mask) = self.batch_input(ids, type_ids)?;
        let embeds = self.encoder.embed_words(&ids)?;
        let logits = self.encoder.logits(&EncoderInput {
            word_embeds: &embeds,
            position_ids: &pos,
            type_ids: &types,
            attention_mask: mask.as_ref(),
        })?;
        Ok(logits.context("the classifier produced no logits")?.to_vec2()?)
    }

    /// Probability of `target` for copies of `enc` in which the tokens whose
    /// keep-mask entry is false are replaced by the mask token. One batch.
    pub fn target_probabilities(&self, enc: &Encoding, keep_masks: &[Vec<bool>], target: usize) -> anyhow::Result<Vec<f32>> {
        let rows: Vec<Vec<u32>> = keep_masks
            .iter()
            .map(|keep| {
                enc.ids.iter().zip(keep).map(|(&id, &k)| if k { id } else { self.mask_id }).collect()
            })
            .collect();
        let refs: Vec<&[u32]> = rows.iter().map(Vec::as_slice).collect();
        let types: Vec<&[u32]> = vec![enc.type_ids.as_slice(); rows.len()];
        let logits = self.logits_batch(&refs, &types)?;
        Ok(logits.iter().map(|l| softmax(l)[target]).collect())
    }

    /// Gradients of the `target` logit w.r.t. the word embeddings and every attention matrix.
    pub fn gradients(&self, enc: &Encoding, target: usize) -> anyhow::Result<Gradients> {
        let mut one = self.gradients_batch(&[enc], &[target], true)?;
        one.pop().context("no gradients came back")
    }

    /// [`Self::gradients`] w.r.t. the word embeddings only: `attentions` and
    /// `attention_grads` have no layers where the hand-written backward pass
    /// applies (it then skips them), all of them where candle's graph runs.
    pub fn embedding_gradients(&self, enc: &Encoding, target: usize) -> anyhow::Result<Gradients> {
        let mut one = self.gradients_batch(&[enc], &[target], false)?;
        one.pop().context("no gradients came back")
    }

    /// For integrated gradients: given a batch of word-embedding sequences for
    /// `enc` (`[batch][len*hidden]`), returns the `target` logit of each and
    /// its gradient w.r.t. those embeddings.
    pub fn logit_and_embedding_grads(
        &self,
        enc: &Encoding,
        embeds: &[Vec<f32>],
        target: usize,
    ) -> anyhow::Result<(Vec<f32>, Vec<Vec<f32>>)> {
        anyhow::ensure!(self.is_classifier(), "gradient methods need a classification head; {} is a bare encoder", self.name);
        let (n, d, b) = (enc.len(), self.config().embedding_size, embeds.len());
        let flat: Vec<f32> = embeds.iter().flatten().copied().collect();
        anyhow::ensure!(flat.len() == b * n * d, "embedding batch has the wrong size");
        let var = candle_core::Var::from_vec(flat, (b, n, d), &self.device)?;
        let types = Tensor::from_vec(enc.type_ids.repeat(b), (b, n), &self.device)?;
        let pos = self.encoder.position_ids(&vec![n; b], n, &self.device)?;
        let input = EncoderInput { word_embeds: var.as_tensor(), position_ids: &pos, type_ids: &types, attention_mask: None };
        if let Some(g) = self.encoder.gradients_fast(&input, &vec![target; b], false)? {
            let logits = g.logits.iter().map(|l| l[target]).collect();
            return Ok((logits, g.embed_grads.chunks(n * d).map(<[f32]>::to_vec).collect()));
        }
        let mode = RunMode { differentiable: true, attention_probes: false, dropout: None };
        let out = self.encoder.forward(&input, mode)?;
        let logits = out.logits.as_ref().expect("classifier").narrow(1, target, 1)?.squeeze(1)?;
        let grads = logits.sum_all()?.backward()?;
        let g = grads.get(var.as_tensor()).context("no gradient reached the embeddings")?;
        let g = g.reshape((b, n * d))?.to_vec2::<f32>()?;
        Ok((logits.to_vec1()?, g))
    }

    /// The classification head applied to each row of `rows` (`[n][hidden]`):
    /// what the model would decide from that token's hidden state alone.
    pub fn head_logits_rows(&self, rows: &[&[f32]]) -> anyhow::Result<Vec<Vec<f32>>> {
        anyhow::ensure!(self.is_classifier(), "{} is a bare encoder without a classification head", self.name);
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let d = self.config().hidden_size;
        anyhow::ensure!(rows.iter().all(|r| r.len() == d), "hidden rows must have {d} values");
        let flat: Vec<f32> = rows.iter().flat_map(|r| r.iter().copied()).collect();
        if let Some(logits) = self.encoder.head_logits_flat(&flat, rows.len()) {
            let classes = logits.len() / rows.len();
            return Ok(logits.chunks_exact(classes).map(<[f32]>::to_vec).collect());
        }
        let t = Tensor::from_vec(flat, (rows.len(), d), &self.device)?;
        Ok(self.encoder.head_logits(&t)?.expect("classifier has a head").to_vec2()?)
    }

    /// Word embeddings of a sequence of ids, `[len*hidden]` flat.
    pub fn word_embeddings(&self, ids: &[u32]) -> anyhow::Result<Vec<f32>> {
        let t = Tensor::from_slice(ids, (1, ids.len()), &self.device)?;
        Ok(self.encoder.embed_words(&t)?.flatten_all()?.to_vec1()?)
    }

    /// Runs the raw encoder (for training code that needs tensors).
    pub fn run(&self, input: &EncoderInput, mode: RunMode) -> anyhow::Result<EncoderOutput> {
        Ok(self.encoder.forward(input, mode)?)
    }
}

/// Encoder workers for a logits batch of `rows` sequences: two when the
/// pool has two threads. Two single-threaded encoders on half a batch each
/// beat one two-threaded encoder by 1.26–1.42× on occlusion and KernelSHAP
/// batches (docs/PERFORMANCE.md): no synchronisation inside the layers.
/// `EXPNET_LOGITS_WORKERS=1` turns it off (for measuring).
fn logits_workers(rows: usize) -> usize {
    // Read once: this runs for every perturbation batch.
    static WORKERS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    let w = *WORKERS.get_or_init(|| {
        let forced = std::env::var("EXPNET_LOGITS_WORKERS").ok().and_then(|v| v.parse::<usize>().ok());
        forced.unwrap_or(2).clamp(1, 2)
    });
    if rows >= 2 && rayon::current_num_threads() >= 2 { w } else { 1 }
}

/// `[1, heads, n, n]` per layer → flat [`Attentions`].
fn stack_attentions(layers: &[Tensor], l: usize, h: usize, n: usize) -> anyhow::Result<Attentions> {
    let mut data = Vec::with_capacity(l * h * n * n);
    for a in layers {
        data.extend(a.narrow(0, 0, 1)?.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?);
    }
    Attentions::new(l, h, n, data)
}

/// Numerically stable softmax.
pub fn softmax(x: &[f32]) -> Vec<f32> {
    let m = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f32> = x.iter().map(|v| (v - m).exp()).collect();
    let s: f32 = e.iter().sum();
    e.into_iter().map(|v| v / s).collect()
}

pub fn argmax(x: &[f32]) -> usize {
    x.iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &v)| if v > bv { (i, v) } else { (bi, bv) })
        .0
}
