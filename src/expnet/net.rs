//! The ExpNet network: a small MLP from standardised attention features to a
//! per-token rationale probability, and its self-describing file format.
//!
//! The file is a safetensors file whose header metadata (key `"expnet"`)
//! holds the feature spec, the net config, the encoder shape it was trained
//! for and provenance, so a file alone is enough to score and to refuse a
//! mismatched model.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use candle_core::{Device, Module, Tensor, Var};
use candle_nn::{Linear, VarMap};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use super::context::ContextLayer;
use super::features::{FeatureSpec, extract};
use super::st::{Buffer, Reader};
use crate::model::Attentions;

/// Bumped when the file layout changes incompatibly.
pub const FORMAT_VERSION: u32 = 1;
const META_KEY: &str = "expnet";

/// Hidden-layer non-linearity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// Exact (erf) GELU, as in the paper's reference setup.
    #[default]
    Gelu,
    Relu,
}

/// Architecture of the MLP.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NetConfig {
    /// Hidden layer widths, input side first.
    pub hidden: Vec<usize>,
    pub activation: Activation,
    /// Dropout probability after each hidden activation (training only).
    pub dropout: f32,
    /// Neighbour-aware variant: the input of token `i` is the concatenation
    /// of the standardised features of tokens `i−w ..= i+w` (zeros beyond
    /// the ends), so a token's score can depend on its context. 0 = off.
    #[serde(default)]
    pub neighbour_window: usize,
    /// Heads of the contextual layer (self-attention over the input's
    /// tokens between the MLP and the output, see [`super::context`]); 0 =
    /// off, as in every file written before it existed.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub context_heads: usize,
    /// What the output unit means.
    #[serde(default)]
    pub output: OutputKind,
    /// A feature column the output starts from (`alti.depth3of4.rollout`:
    /// the `alti` method's score, rank-normalised): the logit is
    /// `w·x[prior] + mlp(x)` with `w` learned from 1 and the MLP's output
    /// layer starting at zero, so an untrained network ranks tokens exactly
    /// as that column does and training learns a correction to it. `None`:
    /// a plain MLP, as in every file written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prior: Option<String>,
}

/// The meaning of the network's single output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OutputKind {
    /// Sigmoid: the probability that the token is part of a human rationale.
    #[default]
    Probability,
    /// Linear: a signed importance on the teacher's per-input standardised
    /// scale (distilled ExpNets), positive = supports the explained class.
    Score,
}

fn is_zero(v: &usize) -> bool {
    *v == 0
}

impl Default for NetConfig {
    fn default() -> Self {
        Self {
            hidden: vec![64, 32],
            activation: Activation::Gelu,
            dropout: 0.1,
            neighbour_window: 0,
            context_heads: 0,
            output: OutputKind::Probability,
            prior: None,
        }
    }
}

/// How training went, for `expnet info`-style reports and reproducibility.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainingSummary {
    pub examples: usize,
    pub pieces: usize,
    pub epochs_run: usize,
    pub best_epoch: usize,
    pub pos_weight: f32,
    pub seed: u64,
    pub train_config: serde_json::Value,
}

/// Provenance stored with the weights; filled partly by `train`, partly by the caller.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ExpNetInfo {
    /// Encoder the attentions came from (e.g. a Hugging Face id).
    pub model_id: Option<String>,
    /// Encoder hidden size, informational.
    pub hidden_size: Option<usize>,
    /// Which rationale data it was trained on.
    pub training_data: Option<String>,
    /// The command line that produced it.
    pub command: Option<String>,
    pub training: Option<TrainingSummary>,
    /// Validation metrics by name, e.g. `token_f1_at_k`.
    #[serde(default)]
    pub validation: BTreeMap<String, f64>,
    /// Fingerprint of the model it was trained for ([`crate::model::Model::fingerprint`]);
    /// `None` in files written before provenance existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_fingerprint: Option<String>,
    /// How it learned: `rationales` (human), `distilled` (a teacher method)
    /// or `transfer` (meant for models it was not trained on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<super::provenance::ExplainerKind>,
    /// For distilled ExpNets: teacher, sample count, data and fidelity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distillation: Option<super::provenance::DistillInfo>,
}

/// Header JSON layout (key `"expnet"` of the safetensors metadata).
#[derive(Serialize, Deserialize)]
struct Header {
    format_version: u32,
    feature_spec: FeatureSpec,
    net: NetConfig,
    model: ModelShape,
    info: ExpNetInfo,
}

#[derive(Serialize, Deserialize)]
struct ModelShape {
    layers: usize,
    heads: usize,
    hidden_size: Option<usize>,
}

/// A frozen net's MLP as plain values: per layer the transposed weight
/// (`[in, out]`) and the bias, and the prior column's weight.
struct FrozenMlp {
    layers: Vec<(Vec<f32>, Vec<f32>)>,
    prior_weight: f32,
}

/// A trained (or freshly initialised) explainer.
pub struct ExpNet {
    spec: FeatureSpec,
    config: NetConfig,
    mean: Vec<f32>,
    std: Vec<f32>,
    varmap: VarMap,
    layers: Vec<Linear>,
    context: Option<ContextLayer>,
    /// The prior column's index in the network input and its weight (`[1]`).
    prior: Option<(usize, Tensor)>,
    /// Set for a net loaded from a file, cleared once anything may change its
    /// weights ([`vars`](Self::vars), [`restore`](Self::restore)): only a
    /// frozen net scores through [`Self::frozen`].
    is_frozen: AtomicBool,
    /// Plain copies of the MLP's weights for [`Self::frozen_logits`], made on first use.
    frozen: OnceLock<FrozenMlp>,
    /// Provenance; the caller may fill `model_id`, `training_data`, `command` before saving.
    pub info: ExpNetInfo,
}

impl std::fmt::Debug for ExpNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExpNet").field("spec", &self.spec).field("config", &self.config).field("info", &self.info).finish()
    }
}

/// Weights by name with their shapes, as moved between files, snapshots and the var map.
pub(crate) type NamedWeights = Vec<(String, Vec<usize>, Vec<f32>)>;

fn layer_name(i: usize, part: &str) -> String {
    format!("layers.{i}.{part}")
}

/// The weight of [`NetConfig::prior`].
const PRIOR_WEIGHT: &str = "prior.weight";

impl ExpNet {
    /// Builds a network with seeded uniform(±1/√fan_in) weights (PyTorch's
    /// default), so training is reproducible; candle's CPU RNG cannot be seeded.
    pub(crate) fn init(spec: FeatureSpec, config: NetConfig, mean: Vec<f32>, std: Vec<f32>, seed: u64) -> anyhow::Result<Self> {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut tensors = Vec::new();
        let dims = Self::dims(&spec, &config);
        for (i, w) in dims.windows(2).enumerate() {
            let bound = 1.0 / (w[0] as f32).sqrt();
            let weight: Vec<f32> = (0..w[0] * w[1]).map(|_| rng.gen_range(-bound..bound)).collect();
            let bias: Vec<f32> = (0..w[1]).map(|_| rng.gen_range(-bound..bound)).collect();
            tensors.push((layer_name(i, "weight"), vec![w[1], w[0]], weight));
            tensors.push((layer_name(i, "bias"), vec![w[1]], bias));
        }
        if config.prior.is_some() {
            // Output layer at zero: the untrained network is the prior column.
            let last = dims.len() - 2;
            for (name, _, values) in tensors.iter_mut() {
                if *name == layer_name(last, "weight") || *name == layer_name(last, "bias") {
                    values.fill(0.0);
                }
            }
            tensors.push((PRIOR_WEIGHT.to_string(), vec![1], vec![1.0]));
        }
        if config.context_heads > 0 {
            let width = *dims.iter().rev().nth(1).unwrap_or(&1);
            for (name, shape) in super::context::shapes(width, config.context_heads) {
                let count: usize = shape.iter().product();
                // Position biases start at 0; projections as a linear layer of fan-in `width`.
                let bound = if name == super::context::REL_BIAS { 0.0 } else { 1.0 / (width as f32).sqrt() };
                let values: Vec<f32> = (0..count).map(|_| if bound > 0.0 { rng.gen_range(-bound..bound) } else { 0.0 }).collect();
                tensors.push((name, shape, values));
            }
        }
        Self::from_parts(spec, config, mean, std, tensors, ExpNetInfo::default())
    }

    /// A freshly initialised network with identity standardisation: the
    /// "untrained student" baseline, and a starting point for tests.
    pub fn untrained(spec: FeatureSpec, config: NetConfig, seed: u64) -> anyhow::Result<Self> {
        let d = spec.dim();
        Self::init(spec, config, vec![0.0; d], vec![1.0; d], seed)
    }

    /// Layer widths: input, hidden…, 1.
    fn dims(spec: &FeatureSpec, config: &NetConfig) -> Vec<usize> {
        let mut d = vec![spec.dim() * (2 * config.neighbour_window + 1)];
        d.extend(&config.hidden);
        d.push(1);
        d
    }

    fn from_parts(
        spec: FeatureSpec,
        config: NetConfig,
        mean: Vec<f32>,
        std: Vec<f32>,
        tensors: NamedWeights,
        info: ExpNetInfo,
    ) -> anyhow::Result<Self> {
        spec.validate()?;
        anyhow::ensure!(config.hidden.iter().all(|h| *h > 0), "net config has a zero-width hidden layer");
        anyhow::ensure!((0.0..1.0).contains(&config.dropout), "dropout must be in [0, 1), got {}", config.dropout);
        if config.context_heads > 0 {
            let width = config.hidden.last().copied().unwrap_or(0);
            anyhow::ensure!(
                width > 0 && width.is_multiple_of(config.context_heads),
                "the contextual layer needs a last hidden width divisible by its {} heads (got {width})",
                config.context_heads
            );
        }
        anyhow::ensure!(
            mean.len() == spec.dim() && std.len() == spec.dim(),
            "normalisation statistics have {}/{} entries but the feature spec has {} features",
            mean.len(),
            std.len(),
            spec.dim()
        );
        anyhow::ensure!(std.iter().all(|s| *s > 0.0), "normalisation std must be positive");
        let prior_column = match &config.prior {
            Some(name) => Some(spec.feature_names().iter().position(|n| n == name).with_context(|| {
                format!("the prior column \"{name}\" is not among this ExpNet's features (hint: --prior alti needs --decomposition alti and --depth-bins)")
            })?),
            None => None,
        };
        let varmap = VarMap::new();
        let mut layers = Vec::new();
        let mut prior = None;
        let context = {
            let mut data = varmap.data().lock().map_err(|_| anyhow::anyhow!("ExpNet weight map lock poisoned"))?;
            let mut get = |name: &str| -> anyhow::Result<Tensor> {
                let (_, shape, values) =
                    tensors.iter().find(|(n, _, _)| n == name).with_context(|| format!("ExpNet weights lack \"{name}\""))?;
                let var = Var::from_vec(values.clone(), shape.as_slice(), &Device::Cpu)?;
                let t = var.as_tensor().clone();
                data.insert(name.to_string(), var);
                Ok(t)
            };
            for i in 0..Self::dims(&spec, &config).len() - 1 {
                let w = get(&layer_name(i, "weight"))?;
                let b = get(&layer_name(i, "bias"))?;
                layers.push(Linear::new(w, Some(b)));
            }
            if let Some(col) = prior_column {
                // The centre token's block of a neighbour-expanded input row.
                prior = Some((config.neighbour_window * spec.dim() + col, get(PRIOR_WEIGHT)?));
            }
            match config.context_heads {
                0 => None,
                heads => Some(ContextLayer::new(heads, &mut get)?),
            }
        };
        Ok(Self { spec, config, mean, std, varmap, layers, context, prior, is_frozen: AtomicBool::new(false), frozen: OnceLock::new(), info })
    }

    pub fn spec(&self) -> &FeatureSpec {
        &self.spec
    }
    pub fn config(&self) -> &NetConfig {
        &self.config
    }
    /// Per-feature training mean and std used for standardisation.
    pub fn normalisation(&self) -> (&[f32], &[f32]) {
        (&self.mean, &self.std)
    }

    /// Fails with a clear error if this ExpNet cannot read attentions of a
    /// `layers × heads` encoder (it was trained on another architecture).
    pub fn check_compatible(&self, layers: usize, heads: usize) -> anyhow::Result<()> {
        if self.spec.is_shape_free() {
            return self.spec.check_shape(layers, heads);
        }
        let name = self.info.model_id.as_deref().map(|m| format!(" ({m})")).unwrap_or_default();
        anyhow::ensure!(
            layers == self.spec.layers && heads == self.spec.heads,
            "this ExpNet was trained on attentions of a {}-layer x {}-head encoder{name}, but the loaded \
             model has {layers} layers x {heads} heads; train one for this model with `expnet train` \
             or load the matching model",
            self.spec.layers,
            self.spec.heads
        );
        Ok(())
    }

    /// Fails with a clear error if this ExpNet cannot read `model`'s forward
    /// pass (shape, hidden width, or a head it needs). Says nothing about
    /// whether it was trained for this model: see [`super::provenance`].
    pub fn check_applicable(&self, model: &crate::model::Model) -> anyhow::Result<()> {
        self.check_compatible(model.num_layers(), model.num_heads())?;
        self.spec.decomposition.check_model(model)?;
        anyhow::ensure!(
            self.spec.gradient.is_off() || model.is_classifier(),
            "this ExpNet reads gradient features (the shared backward pass), but {} is a bare encoder (hint: use an ExpNet trained without --gradient)",
            model.name
        );
        let sig = &self.spec.signals;
        anyhow::ensure!(
            sig.hidden_layers == 0 || sig.hidden_size == model.config().hidden_size,
            "this ExpNet reads {}-wide hidden states, the model's are {} wide",
            sig.hidden_size,
            model.config().hidden_size
        );
        anyhow::ensure!(
            !sig.needs_head() || model.is_classifier(),
            "this ExpNet reads the classification head, but {} is a bare encoder",
            model.name
        );
        anyhow::ensure!(
            sig.target_classes == 0 || sig.target_classes == model.labels().len(),
            "this ExpNet was distilled for a {}-class model, {} has {} classes",
            sig.target_classes,
            model.name,
            model.labels().len()
        );
        Ok(())
    }

    /// Scores one forward pass through [`super::features::extract_full`].
    pub fn score_source(&self, src: &super::features::FeatureSource) -> anyhow::Result<Vec<f32>> {
        self.check_compatible(src.attentions.layers, src.attentions.heads)?;
        let features = super::features::extract_full(&self.spec, src)?;
        self.score_features(&features, src.special)
    }

    /// Rationale probability per token (0..1); special tokens get 0.
    pub fn score(&self, attn: &Attentions, special: &[bool]) -> anyhow::Result<Vec<f32>> {
        self.check_compatible(attn.layers, attn.heads)?;
        let features = extract(&self.spec, attn, special)?;
        self.score_features(&features, special)
    }

    /// Scores already-extracted feature rows (e.g. from a feature cache).
    pub fn score_features(&self, features: &[Vec<f32>], special: &[bool]) -> anyhow::Result<Vec<f32>> {
        anyhow::ensure!(
            features.len() == special.len(),
            "{} feature rows but {} special-mask entries",
            features.len(),
            special.len()
        );
        if features.is_empty() {
            return Ok(Vec::new());
        }
        let dim = self.spec.dim();
        if let Some(bad) = features.iter().position(|r| r.len() != dim) {
            anyhow::bail!("feature row {bad} has {} values, the ExpNet expects {dim}", features[bad].len());
        }
        let mut x = Vec::with_capacity(features.len() * self.input_dim());
        for i in 0..features.len() {
            self.push_input(features, i, &mut x);
        }
        let out = match self.frozen_logits(&x, features.len())? {
            Some(logits) => match self.config.output {
                OutputKind::Probability => logits.into_iter().map(|v| 1.0 / (1.0 + (-v).exp())).collect(),
                OutputKind::Score => logits,
            },
            None => {
                let x = Tensor::from_vec(x, (features.len(), self.input_dim()), &Device::Cpu)?;
                let logits = self.forward_logits(&x, &[features.len()], None)?;
                match self.config.output {
                    OutputKind::Probability => candle_nn::ops::sigmoid(&logits)?.to_vec1::<f32>()?,
                    OutputKind::Score => logits.to_vec1::<f32>()?,
                }
            }
        };
        Ok(out.into_iter().zip(special).map(|(p, s)| if *s { 0.0 } else { p }).collect())
    }

    /// Width of the network input (features × neighbourhood).
    pub(crate) fn input_dim(&self) -> usize {
        self.spec.dim() * (2 * self.config.neighbour_window + 1)
    }

    /// Appends token `i`'s standardised (and neighbour-expanded) input row.
    pub(crate) fn push_input(&self, features: &[Vec<f32>], i: usize, out: &mut Vec<f32>) {
        let w = self.config.neighbour_window as isize;
        for off in -w..=w {
            let j = i as isize + off;
            if j < 0 || j >= features.len() as isize {
                // Standardised zero = the training mean: "nothing there".
                out.extend(std::iter::repeat_n(0.0, self.spec.dim()));
                continue;
            }
            let row = &features[j as usize];
            out.extend(row.iter().zip(&self.mean).zip(&self.std).map(|((x, m), s)| (x - m) / s));
        }
    }

    /// [`forward_logits`](Self::forward_logits) without dropout, on plain
    /// weight copies and the encoder's kernels, for a frozen net without a
    /// contextual layer (`None` otherwise): candle's matmul repacked each
    /// layer's strided `Wᵀ` on every call, a fifth of a distilled student's
    /// cost. Equal to candle's path within float rounding (tested).
    fn frozen_logits(&self, x: &[f32], m: usize) -> anyhow::Result<Option<Vec<f32>>> {
        if !self.is_frozen.load(Ordering::Relaxed) || self.context.is_some() {
            return Ok(None);
        }
        let mlp = match self.frozen.get() {
            Some(mlp) => mlp,
            None => {
                let mut layers = Vec::new();
                for layer in &self.layers {
                    let w = layer.weight();
                    let wt = w.t()?.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
                    let b = match layer.bias() {
                        Some(b) => b.to_vec1::<f32>()?,
                        None => vec![0.0; w.dims2()?.0],
                    };
                    layers.push((wt, b));
                }
                let prior_weight = match &self.prior {
                    Some((_, w)) => w.flatten_all()?.to_vec1::<f32>()?[0],
                    None => 0.0,
                };
                self.frozen.get_or_init(|| FrozenMlp { layers, prior_weight })
            }
        };
        let act = match self.config.activation {
            Activation::Gelu => crate::model::config::Activation::Gelu,
            Activation::Relu => crate::model::config::Activation::Relu,
        };
        let last = mlp.layers.len() - 1;
        let mut out: Option<Vec<f32>> = None;
        for (i, (wt, b)) in mlp.layers.iter().enumerate() {
            out = Some(crate::model::dense(out.as_deref().unwrap_or(x), m, wt, b, (i < last).then_some(act)));
        }
        let mut h = out.context("an ExpNet MLP has at least one layer")?;
        if let Some((col, _)) = &self.prior {
            let width = self.input_dim();
            h.iter_mut().enumerate().for_each(|(r, v)| *v += x[r * width + col] * mlp.prior_weight);
        }
        Ok(Some(h))
    }

    /// Logits `[batch]` for inputs `[batch, input_dim]`, the rows of
    /// consecutive texts of lengths `segments` (read only by the contextual
    /// layer). With `dropout` (training), hidden activations are dropped with
    /// masks drawn from the given seeded RNG.
    pub(crate) fn forward_logits(&self, x: &Tensor, segments: &[usize], mut dropout: Option<&mut StdRng>) -> anyhow::Result<Tensor> {
        let mut h = x.clone();
        let last = self.layers.len() - 1;
        for (i, layer) in self.layers.iter().enumerate() {
            if i == last && let Some(ctx) = &self.context {
                h = ctx.forward(&h, segments)?;
            }
            h = layer.forward(&h)?;
            if i == last {
                if let Some((col, w)) = &self.prior {
                    h = (h + x.narrow(1, *col, 1)?.broadcast_mul(w)?)?;
                }
                break;
            }
            h = match self.config.activation {
                // The fused op: a vectorised erf and an analytic backward (candle's
                // `gelu_erf` calls a scalar erf per value, 12% of a student's cost).
                Activation::Gelu => crate::model::ops::gelu::gelu_erf(&h)?,
                Activation::Relu => h.relu()?,
            };
            let p = self.config.dropout;
            if let Some(rng) = dropout.as_deref_mut().filter(|_| p > 0.0) {
                let keep = 1.0 / (1.0 - p);
                let mask: Vec<f32> = (0..h.elem_count()).map(|_| if rng.r#gen::<f32>() < p { 0.0 } else { keep }).collect();
                h = h.mul(&Tensor::from_vec(mask, h.shape(), &Device::Cpu)?)?;
            }
        }
        Ok(h.squeeze(1)?)
    }

    /// The trainable variables, for the optimiser.
    pub(crate) fn vars(&self) -> Vec<Var> {
        self.is_frozen.store(false, Ordering::Relaxed);
        let data = self.varmap.data().lock().expect("ExpNet weight map lock poisoned");
        let mut named: Vec<_> = data.iter().collect();
        named.sort_by(|a, b| a.0.cmp(b.0));
        named.into_iter().map(|(_, v)| v.clone()).collect()
    }

    /// Copies of all weights by name (to keep the best epoch).
    pub(crate) fn snapshot(&self) -> anyhow::Result<NamedWeights> {
        let data = self.varmap.data().lock().map_err(|_| anyhow::anyhow!("ExpNet weight map lock poisoned"))?;
        let mut out = Vec::new();
        for (name, var) in data.iter() {
            out.push((name.clone(), var.dims().to_vec(), var.as_tensor().flatten_all()?.to_vec1::<f32>()?));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// Restores weights taken with [`snapshot`](Self::snapshot).
    pub(crate) fn restore(&self, snap: &[(String, Vec<usize>, Vec<f32>)]) -> anyhow::Result<()> {
        self.is_frozen.store(false, Ordering::Relaxed);
        let data = self.varmap.data().lock().map_err(|_| anyhow::anyhow!("ExpNet weight map lock poisoned"))?;
        for (name, shape, values) in snap {
            let var = data.get(name).with_context(|| format!("no weight \"{name}\" to restore"))?;
            var.set(&Tensor::from_vec(values.clone(), shape.as_slice(), &Device::Cpu)?)?;
        }
        Ok(())
    }

    /// Serialises to safetensors bytes with the JSON header described in the module docs.
    pub fn to_bytes(&self) -> anyhow::Result<Vec<u8>> {
        let header = Header {
            format_version: FORMAT_VERSION,
            feature_spec: self.spec.clone(),
            net: self.config.clone(),
            model: ModelShape { layers: self.spec.layers, heads: self.spec.heads, hidden_size: self.info.hidden_size },
            info: self.info.clone(),
        };
        let mut tensors = vec![
            ("norm.mean".to_string(), Buffer::f32(vec![self.mean.len()], &self.mean)),
            ("norm.std".to_string(), Buffer::f32(vec![self.std.len()], &self.std)),
        ];
        for (name, shape, values) in self.snapshot()? {
            tensors.push((name, Buffer::f32(shape, &values)));
        }
        super::st::serialize(&tensors, META_KEY, serde_json::to_string(&header)?)
    }

    /// Writes the ExpNet file.
    pub fn save(&self, path: impl AsRef<Path>) -> anyhow::Result<()> {
        let path = path.as_ref();
        std::fs::write(path, self.to_bytes()?).with_context(|| format!("could not write ExpNet to {}", path.display()))
    }

    /// Reads an ExpNet file written by [`save`](Self::save).
    pub fn load(path: impl AsRef<Path>) -> anyhow::Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).with_context(|| format!("could not read ExpNet file {}", path.display()))?;
        Self::load_bytes(&bytes).with_context(|| format!("could not load ExpNet from {}", path.display()))
    }

    /// Parses an ExpNet from memory (the default one is embedded in the binary).
    pub fn load_bytes(bytes: &[u8]) -> anyhow::Result<Self> {
        let r = Reader::new(bytes, META_KEY, "ExpNet file")?;
        let header: Header = serde_json::from_str(&r.json).context("ExpNet file has malformed \"expnet\" metadata JSON")?;
        anyhow::ensure!(
            header.format_version == FORMAT_VERSION,
            "ExpNet file format version {} is not supported (this build reads version {FORMAT_VERSION}); retrain it",
            header.format_version
        );
        let spec = header.feature_spec;
        spec.validate()?;
        anyhow::ensure!(
            header.model.layers == spec.layers && header.model.heads == spec.heads,
            "ExpNet file is inconsistent: model shape {}x{} but feature spec {}x{}",
            header.model.layers,
            header.model.heads,
            spec.layers,
            spec.heads
        );
        let f = spec.dim();
        let mean = r.f32("norm.mean", &[f])?;
        let std = r.f32("norm.std", &[f])?;
        let dims = Self::dims(&spec, &header.net);
        let mut tensors = Vec::new();
        for (i, w) in dims.windows(2).enumerate() {
            for (part, shape) in [("weight", vec![w[1], w[0]]), ("bias", vec![w[1]])] {
                let name = layer_name(i, part);
                let values = r.f32(&name, &shape)?;
                tensors.push((name, shape, values));
            }
        }
        if header.net.context_heads > 0 {
            let width = header.net.hidden.last().copied().unwrap_or(0);
            for (name, shape) in super::context::shapes(width, header.net.context_heads) {
                let values = r.f32(&name, &shape)?;
                tensors.push((name, shape, values));
            }
        }
        if header.net.prior.is_some() {
            tensors.push((PRIOR_WEIGHT.to_string(), vec![1], r.f32(PRIOR_WEIGHT, &[1])?));
        }
        let mut info = header.info;
        if info.hidden_size.is_none() {
            info.hidden_size = header.model.hidden_size;
        }
        let net = Self::from_parts(spec, header.net, mean, std, tensors, info)?;
        net.is_frozen.store(true, Ordering::Relaxed);
        Ok(net)
    }
}

#[cfg(test)]
#[path = "net_tests.rs"]
mod tests;
