//! Attribution methods behind one trait, so the CLI, the evaluator and the TUI
//! share them and a new method is one file.

pub mod alti;
pub mod attention;
pub mod chefer;
pub mod decomposition;
pub mod grad_sam;
pub mod grad_x_input;
pub mod integrated_gradients;
pub mod flow;
pub mod globenc;
pub mod kernel_shap;
pub mod lime;
pub mod masking;
pub mod occlusion;
mod progress;
pub mod registry;
pub mod rollout;
pub mod saliency;
pub mod value_norm;

pub use progress::{CancelToken, Cancelled, Progress, is_cancelled};
pub use registry::{METHOD_NAMES, create};

use crate::model::{Encoding, ForwardOutput, Gradients, Model};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The four families the paper compares against, the learned explainer, and
/// decomposition baselines (forward-only splits of the attention block output
/// into per-token vectors: value norms, ALTI, GlobEnc).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    Learned,
    Attention,
    Gradient,
    AttentionGradient,
    Perturbation,
    Decomposition,
}

/// Everything a method may need about one input. The forward pass (with
/// attentions) is computed once and shared by all methods; so is the one
/// backward pass that saliency, grad×input, Chefer and Grad-SAM all read.
pub struct ExplainInput<'a> {
    pub model: &'a Model,
    pub encoding: &'a Encoding,
    pub forward: &'a ForwardOutput,
    /// Class whose decision is explained (the predicted class unless asked).
    pub target: usize,
    gradients: OnceLock<(Arc<Gradients>, Duration)>,
    /// The cheaper backward pass without attention gradients, while nobody
    /// has asked for the full one ([`Self::embedding_gradients`]).
    embedding_gradients: OnceLock<(Arc<Gradients>, Duration)>,
    /// A later method will read attention gradients: compute the full pass
    /// at once, for everyone.
    attention_gradients_expected: bool,
    reused_cost: Mutex<Duration>,
}

impl<'a> ExplainInput<'a> {
    pub fn new(model: &'a Model, encoding: &'a Encoding, forward: &'a ForwardOutput, target: usize) -> Self {
        Self {
            model,
            encoding,
            forward,
            target,
            gradients: OnceLock::new(),
            embedding_gradients: OnceLock::new(),
            attention_gradients_expected: false,
            reused_cost: Mutex::new(Duration::ZERO),
        }
    }

    /// The same input, told which methods will read it: when one of them
    /// reads attention gradients, [`Self::embedding_gradients`] computes the
    /// full backward pass too, so that all of them share one.
    pub fn for_methods(mut self, methods: &[Arc<dyn Attribution>]) -> Self {
        self.attention_gradients_expected = any_reads_attention_gradients(methods);
        self
    }

    /// Gradients of the target logit (embeddings and attentions), computed on
    /// first use and shared by every later method on this input.
    pub fn gradients(&self) -> anyhow::Result<&Gradients> {
        self.cached(&self.gradients, || self.model.gradients(self.encoding, self.target))
    }

    /// The gradients in `cell`, computed by `compute` on first use; each
    /// later read is charged the time they took ([`Self::take_reused_cost`]).
    fn cached<'s>(&'s self, cell: &'s OnceLock<(Arc<Gradients>, Duration)>, compute: impl FnOnce() -> anyhow::Result<Gradients>) -> anyhow::Result<&'s Gradients> {
        if let Some((g, cost)) = cell.get() {
            *self.reused_cost.lock().unwrap_or_else(|e| e.into_inner()) += *cost;
            return Ok(g);
        }
        let t0 = Instant::now();
        let g = compute()?;
        let _ = cell.set((Arc::new(g), t0.elapsed()));
        Ok(&cell.get().expect("just set").0)
    }

    /// Gradients of the target logit w.r.t. the word embeddings, for methods
    /// that read nothing else (saliency, grad×input): without attention
    /// gradients (`attentions` and `attention_grads` then have no layers),
    /// the backward pass skips them and runs the last layer for [CLS] only
    /// (saliency at 128 tokens: a sixth of its matmuls). The full pass
    /// serves instead when it exists or a later method needs it.
    pub fn embedding_gradients(&self) -> anyhow::Result<&Gradients> {
        if self.attention_gradients_expected || self.gradients.get().is_some() {
            return self.gradients();
        }
        self.cached(&self.embedding_gradients, || self.model.embedding_gradients(self.encoding, self.target))
    }

    /// Seeds the shared gradients with ones computed earlier for this very
    /// input and target (e.g. kept by the TUI between method calls), with the
    /// time they took; ignored when gradients are already present. Gradients
    /// without attention layers seed [`Self::embedding_gradients`] only.
    pub fn seed_gradients(&self, gradients: Arc<Gradients>, cost: Duration) {
        let cell = if gradients.attentions.layers == 0 { &self.embedding_gradients } else { &self.gradients };
        let _ = cell.set((gradients, cost));
    }

    /// The shared gradients, if a method has computed (or been seeded with)
    /// them: the full ones when present, else the embedding-only ones.
    pub fn computed_gradients(&self) -> Option<(Arc<Gradients>, Duration)> {
        self.gradients.get().or(self.embedding_gradients.get()).cloned()
    }

    /// Time the shared backward pass took, summed over the reuses since the
    /// last call: adding it to a method's wall time gives what the method
    /// would have cost alone, so timings stay honest when work is shared.
    pub fn take_reused_cost(&self) -> Duration {
        std::mem::take(&mut *self.reused_cost.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Whether a method of `methods` reads attention gradients: then their shared
/// backward pass is the full one ([`ExplainInput::for_methods`]).
pub fn any_reads_attention_gradients(methods: &[Arc<dyn Attribution>]) -> bool {
    methods.iter().any(|m| m.reads_attention_gradients())
}

/// One score per token (special tokens included), plus bookkeeping.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Explanation {
    pub scores: Vec<f32>,
    /// Encoder forward (or forward+backward) passes this explanation cost.
    pub forward_passes: usize,
    /// Method-specific diagnostics, e.g. IG's completeness gap.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<(String, f64)>,
}

/// A token attribution method.
pub trait Attribution: Send + Sync {
    /// Name used on the command line, in JSON and in the TUI.
    fn name(&self) -> &'static str;
    fn family(&self) -> Family;
    /// Slow methods run after the fast ones in the TUI, with a gauge.
    fn is_slow(&self) -> bool {
        false
    }
    /// Whether explaining a text runs the model again (perturbations,
    /// integrated gradients), keeping the thread pool busy by itself: a
    /// corpus run then explains the texts of a batch one after another
    /// instead of side by side. Slow methods do, unless they say otherwise.
    fn runs_model(&self) -> bool {
        self.is_slow()
    }
    /// Whether the method reads only the one shared backward pass
    /// ([`ExplainInput::gradients`]); a corpus run then computes it for a
    /// whole batch of texts at once and seeds each input with its part.
    fn reads_shared_gradients(&self) -> bool {
        false
    }
    /// Whether the method reads the attention gradients of the shared
    /// backward pass, not only its embedding gradients
    /// ([`ExplainInput::embedding_gradients`]). Any method reading the shared
    /// pass does, unless it says otherwise.
    fn reads_attention_gradients(&self) -> bool {
        self.reads_shared_gradients()
    }
    /// Whether the method reads nothing of the forward pass's last layer but
    /// the first query's attention row (and the prediction): then a corpus
    /// run may skip the rest of that layer
    /// ([`crate::model::Model::forward_batch_first_query`], where those rows
    /// are NaN). Only say so when it is true.
    fn reads_first_query_of_last_layer_only(&self) -> bool {
        false
    }
    /// Whether the method needs a classification head (gradients, perturbation).
    fn needs_classifier(&self) -> bool {
        true
    }
    /// Why this method cannot explain `model` (an architecture it does not
    /// cover), or `None` when it can; `all` leaves such methods out, saying why.
    fn unsupported(&self, model: &Model) -> Option<String> {
        let _ = model;
        None
    }
    /// Name to show, which may carry provenance (`expnet≈occlusion`,
    /// `expnet!` for one not trained for this model); `name()` by default.
    fn label(&self) -> String {
        self.name().to_owned()
    }
    /// What reports write about where the method came from (ExpNet's
    /// `explainer` object); `None` for methods without a trained part.
    fn provenance(&self) -> Option<serde_json::Value> {
        None
    }
    fn explain(&self, input: &ExplainInput, progress: &Progress) -> anyhow::Result<Explanation>;
}
