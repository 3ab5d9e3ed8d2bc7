//! Fine-tuning a BERT-family encoder plus a fresh classification head (the
//! hand-written training step of `model::fast`, candle's autograd where it
//! does not apply) and AdamW, writing a Hugging Face folder that
//! transformers loads unchanged. No terminal code: progress goes to a callback.

use crate::model::encoder::{EncoderInput, RunMode};
use crate::model::weights::Weights;
use crate::model::{Model, ModelConfig, ModelFamily, TextTokenizer};
use anyhow::Context;
use candle_core::{DType, Device, Tensor, Var};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

pub mod adamw;
use adamw::{AdamWParams, FusedAdamW};

/// One labelled training input (optionally a sentence pair).
#[derive(Clone, Debug)]
pub struct LabelledText {
    pub text: String,
    pub pair: Option<String>,
    pub label: usize,
}

/// Hyper-parameters.
#[derive(Clone, Debug)]
pub struct FinetuneConfig {
    pub epochs: usize,
    pub lr: f64,
    pub batch_size: usize,
    pub max_len: usize,
    pub seed: u64,
    pub warmup: f64,
    pub weight_decay: f64,
    pub dropout: f32,
    pub max_grad_norm: f64,
    /// Save weights as f16 (halves the folder; computation stays f32).
    pub save_f16: bool,
}

impl Default for FinetuneConfig {
    fn default() -> Self {
        Self {
            epochs: 3,
            lr: 5e-5,
            batch_size: 32,
            max_len: 66,
            seed: 42,
            warmup: 0.1,
            weight_decay: 0.01,
            dropout: 0.1,
            max_grad_norm: 1.0,
            save_f16: false,
        }
    }
}

/// What the progress callback receives.
#[derive(Clone, Debug)]
pub enum FinetuneEvent {
    Step { epoch: usize, step: usize, steps: usize, loss: f64, tokens_per_sec: f64, eta_secs: f64 },
    Epoch { epoch: usize, train_loss: f64, dev_accuracy: f64, best: bool, secs: f64 },
    Stopped { epoch: usize, step: usize },
}

/// Summary returned at the end.
#[derive(Clone, Debug)]
pub struct FinetuneReport {
    pub best_epoch: usize,
    pub best_dev_accuracy: f64,
    pub epochs_run: usize,
    pub interrupted: bool,
}

/// A trainable classifier: the weights live in candle `Var`s shared with a [`Model`].
pub struct Trainable {
    pub model: Model,
    vars: Vec<(String, Var)>,
    labels: Vec<String>,
}

impl Trainable {
    /// Loads the base encoder folder and adds a fresh head for `labels`, on the CPU.
    pub fn from_base(dir: &Path, labels: &[String], seed: u64) -> anyhow::Result<Self> {
        Self::from_base_on(dir, labels, seed, &Device::Cpu)
    }

    /// [`Trainable::from_base`] with the variables on `device` (`--device`).
    pub fn from_base_on(dir: &Path, labels: &[String], seed: u64, device: &Device) -> anyhow::Result<Self> {
        let cfg_path = dir.join("config.json");
        let base = ModelConfig::from_file(&cfg_path)?;
        anyhow::ensure!(
            base.family == ModelFamily::Bert,
            "finetune supports BERT-architecture bases (MiniLM is BERT); {} is {}",
            dir.display(),
            base.family.as_str()
        );
        let mut raw = base.raw.clone();
        let id2label: serde_json::Map<String, serde_json::Value> =
            labels.iter().enumerate().map(|(i, l)| (i.to_string(), serde_json::json!(l))).collect();
        let label2id: serde_json::Map<String, serde_json::Value> =
            labels.iter().enumerate().map(|(i, l)| (l.clone(), serde_json::json!(i))).collect();
        raw["architectures"] = serde_json::json!(["BertForSequenceClassification"]);
        raw["id2label"] = serde_json::Value::Object(id2label);
        raw["label2id"] = serde_json::Value::Object(label2id);
        raw["problem_type"] = serde_json::json!("single_label_classification");
        let cfg = ModelConfig::from_json(raw)?;
        let mut weights = Weights::load_dir(dir, "bert.")?;
        let h = cfg.hidden_size;
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut normal = |rows: usize, cols: usize| -> anyhow::Result<Tensor> {
            // transformers initialises linear layers with N(0, 0.02).
            let v: Vec<f32> = (0..rows * cols).map(|_| gaussian(&mut rng) * 0.02).collect();
            Ok(Tensor::from_vec(v, (rows, cols), &Device::Cpu)?)
        };
        if !weights.contains("pooler.dense.weight") {
            weights.insert("pooler.dense.weight", normal(h, h)?);
            weights.insert("pooler.dense.bias", Tensor::zeros(h, DType::F32, &Device::Cpu)?);
        }
        // A classifier checkpoint with the same labels keeps its head, so training
        // can continue from it; anything else gets a fresh head.
        let keep_head = base.is_classifier
            && base.labels == labels
            && weights.get("classifier.weight").is_ok_and(|w| w.dims() == [labels.len(), h]);
        if !keep_head {
            weights.insert("classifier.weight", normal(labels.len(), h)?);
            weights.insert("classifier.bias", Tensor::zeros(labels.len(), DType::F32, &Device::Cpu)?);
        }
        // Every tensor becomes a Var; the model is built on the Vars' storage, so
        // optimizer updates are seen by the model without rebuilding it.
        let mut vars = Vec::new();
        let mut var_weights = Weights::default();
        let mut names: Vec<String> = weights.names().cloned().collect();
        names.sort();
        for name in names {
            if name.ends_with("position_ids") {
                continue;
            }
            let var = Var::from_tensor(&weights.get(&name)?.to_device(device)?)?;
            var_weights.insert(&name, var.as_tensor().clone());
            vars.push((name, var));
        }
        let tokenizer = TextTokenizer::from_dir(dir, cfg.max_tokens())?;
        let model = Model::from_parts_on(cfg, &var_weights, tokenizer, &dir.display().to_string(), device)?;
        Ok(Self { model, vars, labels: labels.to_vec() })
    }

    /// Writes a Hugging Face folder (config.json, model.safetensors, tokenizer.json).
    pub fn save(&self, out: &Path, f16: bool, extra_files_from: Option<&Path>) -> anyhow::Result<()> {
        std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
        let mut tensors = HashMap::new();
        for (name, var) in &self.vars {
            let key = if name.starts_with("classifier.") { name.clone() } else { format!("bert.{name}") };
            let t = var.as_tensor().detach().to_device(&Device::Cpu)?;
            tensors.insert(key, if f16 { t.to_dtype(DType::F16)? } else { t });
        }
        let tmp = out.join("model.safetensors.tmp");
        candle_core::safetensors::save(&tensors, &tmp)?;
        std::fs::rename(&tmp, out.join("model.safetensors"))?;
        let mut raw = self.model.config().raw.clone();
        raw["torch_dtype"] = serde_json::json!(if f16 { "float16" } else { "float32" });
        std::fs::write(out.join("config.json"), serde_json::to_string_pretty(&raw)?)?;
        let tok = self.model.tokenizer().inner();
        tok.save(out.join("tokenizer.json"), false).map_err(|e| anyhow::anyhow!("cannot save tokenizer: {e}"))?;
        if let Some(src) = extra_files_from {
            for f in ["vocab.txt", "tokenizer_config.json", "special_tokens_map.json"] {
                if src.join(f).is_file() {
                    std::fs::copy(src.join(f), out.join(f))?;
                }
            }
        }
        Ok(())
    }

    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// Every trainable tensor with its canonical (prefix-free) name.
    pub fn vars(&self) -> &[(String, Var)] {
        &self.vars
    }

    /// Every variable with its weight decay: none for biases and norms
    /// (the usual BERT recipe).
    fn with_weight_decay(&self, weight_decay: f64) -> Vec<(Var, f64)> {
        self.vars
            .iter()
            .map(|(name, var)| {
                let plain = name.ends_with(".bias") || name.contains("LayerNorm");
                (var.clone(), if plain { 0.0 } else { weight_decay })
            })
            .collect()
    }
}

/// Standard normal sample (Box–Muller), to avoid another dependency.
fn gaussian(rng: &mut impl Rng) -> f32 {
    let u1: f64 = rng.r#gen::<f64>().max(1e-12);
    let u2: f64 = rng.r#gen();
    ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
}

/// Tokenized example, cut to `max_len`.
struct Tokenized {
    ids: Vec<u32>,
    types: Vec<u32>,
    label: u32,
}

fn tokenize_all(model: &Model, data: &[LabelledText], max_len: usize) -> anyhow::Result<Vec<Tokenized>> {
    data.iter()
        .map(|ex| {
            let enc = match &ex.pair {
                Some(p) => model.encode_pair(&ex.text, p)?,
                None => model.encode(&ex.text)?,
            };
            let (mut ids, mut types) = (enc.ids, enc.type_ids);
            if ids.len() > max_len {
                // Keep the final [SEP] so the input stays well formed.
                let last = *ids.last().expect("non-empty");
                ids.truncate(max_len - 1);
                ids.push(last);
                types.truncate(max_len);
            }
            Ok(Tokenized { ids, types, label: ex.label as u32 })
        })
        .collect()
}

/// Accuracy of the model on labelled texts (batched inference).
pub fn accuracy(model: &Model, data: &[LabelledText], batch_size: usize) -> anyhow::Result<f64> {
    let toks = tokenize_all(model, data, model.tokenizer().max_tokens())?;
    let mut order: Vec<usize> = (0..toks.len()).collect();
    order.sort_by_key(|&i| toks[i].ids.len());
    let mut correct = 0usize;
    for chunk in order.chunks(batch_size.max(1)) {
        let ids: Vec<&[u32]> = chunk.iter().map(|&i| toks[i].ids.as_slice()).collect();
        let types: Vec<&[u32]> = chunk.iter().map(|&i| toks[i].types.as_slice()).collect();
        let logits = model.logits_batch(&ids, &types)?;
        for (&i, l) in chunk.iter().zip(&logits) {
            correct += (crate::model::argmax(l) as u32 == toks[i].label) as usize;
        }
    }
    Ok(correct as f64 / toks.len().max(1) as f64)
}

/// Batches of similar length (less padding), shuffled, from a seeded RNG.
fn make_batches(toks: &[Tokenized], batch_size: usize, rng: &mut impl Rng) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..toks.len()).collect();
    order.shuffle(rng);
    // Sort within windows of 50 batches by length, then shuffle the batches.
    let window = batch_size * 50;
    let mut batches = Vec::new();
    for w in order.chunks_mut(window) {
        w.sort_by_key(|&i| toks[i].ids.len());
        batches.extend(w.chunks(batch_size).map(|c| c.to_vec()));
    }
    batches.shuffle(rng);
    batches
}

/// Trains `t` in place; on each better dev accuracy, `save_best` is called.
pub fn finetune(
    t: &Trainable,
    train: &[LabelledText],
    dev: &[LabelledText],
    cfg: &FinetuneConfig,
    stop: &Arc<AtomicBool>,
    on_event: &mut dyn FnMut(FinetuneEvent),
    save_best: &mut dyn FnMut(&Trainable) -> anyhow::Result<()>,
) -> anyhow::Result<FinetuneReport> {
    anyhow::ensure!(!train.is_empty(), "no training examples");
    anyhow::ensure!(cfg.batch_size >= 1 && cfg.epochs >= 1, "batch size and epochs must be at least 1");
    let n_labels = t.labels.len();
    if let Some(bad) = train.iter().find(|e| e.label >= n_labels) {
        anyhow::bail!("training label {} is out of range for {} labels", bad.label, n_labels);
    }
    let model = &t.model;
    let toks = tokenize_all(model, train, cfg.max_len.min(model.tokenizer().max_tokens()))?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(cfg.seed);
    let steps_per_epoch = toks.len().div_ceil(cfg.batch_size);
    let total_steps = steps_per_epoch * cfg.epochs;
    let warmup_steps = ((total_steps as f64) * cfg.warmup).round() as usize;
    let mut optimizer =
        FusedAdamW::new(t.with_weight_decay(cfg.weight_decay), AdamWParams { lr: cfg.lr, ..Default::default() })?;
    let mode = RunMode { differentiable: true, attention_probes: false, dropout: Some(cfg.dropout) };
    let encoder = model.encoder();
    let dev_ = model.device().clone();

    let mut report = FinetuneReport { best_epoch: 0, best_dev_accuracy: f64::NEG_INFINITY, epochs_run: 0, interrupted: false };
    let mut global_step = 0usize;
    let started = Instant::now();
    let mut tokens_seen = 0usize;
    for epoch in 1..=cfg.epochs {
        let epoch_start = Instant::now();
        let batches = make_batches(&toks, cfg.batch_size, &mut rng);
        let mut loss_sum = 0.0;
        for (step, batch) in batches.iter().enumerate() {
            if stop.load(Ordering::SeqCst) {
                on_event(FinetuneEvent::Stopped { epoch, step });
                report.interrupted = true;
                return Ok(report);
            }
            let lr = if global_step < warmup_steps {
                cfg.lr * (global_step + 1) as f64 / warmup_steps.max(1) as f64
            } else {
                cfg.lr * (total_steps - global_step) as f64 / (total_steps - warmup_steps).max(1) as f64
            };
            optimizer.set_learning_rate(lr);
            let len = batch.iter().map(|&i| toks[i].ids.len()).max().unwrap_or(1);
            let b = batch.len();
            let mut ids = Vec::with_capacity(b * len);
            let mut types = Vec::with_capacity(b * len);
            let mut mask = Vec::with_capacity(b * len);
            let mut labels = Vec::with_capacity(b);
            let lengths: Vec<usize> = batch.iter().map(|&i| toks[i].ids.len()).collect();
            for &i in batch {
                let tk = &toks[i];
                for p in 0..len {
                    ids.push(tk.ids.get(p).copied().unwrap_or(model.config().pad_token_id));
                    types.push(tk.types.get(p).copied().unwrap_or(0));
                    mask.push(if p < tk.ids.len() { 1f32 } else { 0f32 });
                }
                labels.push(tk.label);
                tokens_seen += tk.ids.len();
            }
            let ids_t = Tensor::from_vec(ids.clone(), (b, len), &dev_)?;
            let types = Tensor::from_vec(types, (b, len), &dev_)?;
            let mask = Tensor::from_vec(mask, (b, len), &dev_)?;
            let pos = encoder.position_ids(&lengths, len, &dev_)?;
            let embeds = encoder.embed_words(&ids_t)?;
            let input = EncoderInput { word_embeds: &embeds, position_ids: &pos, type_ids: &types, attention_mask: Some(&mask) };
            let labels = Tensor::from_vec(labels, b, &dev_)?;
            // The hand-written step where it applies (BERT-shaped encoders on
            // the CPU), candle's graph otherwise; both give every gradient.
            let step_seed = cfg.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(global_step as u64);
            let (l, grads) = match encoder.train_step_fast(&input, &ids, &labels, cfg.dropout, step_seed)? {
                Some(done) => done,
                None => {
                    let out = encoder.forward(&input, mode)?;
                    let logits = out.logits.context("model has no head")?;
                    let loss = candle_nn::loss::cross_entropy(&logits, &labels)?;
                    (loss.to_scalar::<f32>()?, loss.backward()?)
                }
            };
            optimizer.step(&grads, cfg.max_grad_norm)?;
            encoder.weights_changed();
            let l = l as f64;
            loss_sum += l;
            global_step += 1;
            let elapsed = started.elapsed().as_secs_f64();
            on_event(FinetuneEvent::Step {
                epoch,
                step: step + 1,
                steps: steps_per_epoch,
                loss: loss_sum / (step + 1) as f64,
                tokens_per_sec: tokens_seen as f64 / elapsed.max(1e-9),
                eta_secs: elapsed / global_step as f64 * (total_steps - global_step) as f64,
            });
        }
        let dev_accuracy = if dev.is_empty() { f64::NAN } else { accuracy(model, dev, 64)? };
        let best = dev.is_empty() || dev_accuracy > report.best_dev_accuracy;
        report.epochs_run = epoch;
        if best {
            report.best_epoch = epoch;
            report.best_dev_accuracy = dev_accuracy;
            save_best(t)?;
        }
        on_event(FinetuneEvent::Epoch {
            epoch,
            train_loss: loss_sum / batches.len().max(1) as f64,
            dev_accuracy,
            best,
            secs: epoch_start.elapsed().as_secs_f64(),
        });
    }
    Ok(report)
}
