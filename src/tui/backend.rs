//! The one boundary between the terminal explorer and the model code.
//!
//! The TUI never touches candle, tokenizers or attribution methods directly:
//! it talks to an [`ExplainBackend`] owned by the worker. This keeps the UI
//! testable with a deterministic fake (see [`super::testing::FakeBackend`]) and
//! lets the model side change without touching a single pane.

use crate::explain::{Family, Progress};
use crate::model::{Attentions, Prediction, Token};

/// What the status line and the head grid need to know about the loaded model.
#[derive(Clone, Debug, PartialEq)]
pub struct BackendInfo {
    /// Model name or path, as the user would recognise it.
    pub model: String,
    /// The ExpNet weights file in use, if any.
    pub expnet: Option<String>,
    /// Where the encoder runs ("cpu", "cuda:0", …).
    pub device: String,
    /// Class labels in `id2label` order (empty for a bare encoder).
    pub labels: Vec<String>,
    pub layers: usize,
    pub heads: usize,
    /// Provenance of the ExpNet in use (file, kind, trained_for, matches_model).
    pub explainer: Option<Box<crate::expnet::Explainer>>,
    /// Why the model has no ExpNet of its own, in one line: set when none is
    /// used or when the transfer ExpNet stands in.
    pub expnet_skipped: Option<String>,
}

impl BackendInfo {
    /// True when the model has no ExpNet trained for it: none at all, or one
    /// made for another (or an unknown) model. Only then may `D` distil one.
    pub fn lacks_own_expnet(&self) -> bool {
        self.explainer.as_ref().is_none_or(|e| e.matches_model != Some(true))
    }
}

/// The cheap part of explaining one input: tokenization plus one forward pass.
/// Shared (behind an `Arc`) by every method run on the same text.
#[derive(Clone, Debug)]
pub struct Analysis {
    pub text: String,
    pub tokens: Vec<Token>,
    pub prediction: Option<Prediction>,
    pub attentions: Attentions,
    /// True when the model cut the input to its maximum length.
    pub truncated: bool,
}

/// One attribution method as the UI lists it.
#[derive(Clone, Debug, PartialEq)]
pub struct MethodInfo {
    pub name: String,
    /// What the user sees: `name`, or e.g. `expnet≈occlusion` / `expnet!`.
    pub label: String,
    pub family: Family,
    /// Slow methods run only when shown, after the fast ones, with a gauge.
    pub slow: bool,
}

/// The scores of one method for one analysed input (one per token, specials included).
#[derive(Clone, Debug, PartialEq)]
pub struct MethodResult {
    pub method: String,
    pub scores: Vec<f32>,
    /// Wall time the method took, in milliseconds.
    pub ms: f64,
    /// Encoder passes it cost, and method diagnostics (IG's completeness
    /// gap): exported exactly as `expnet explain` writes them.
    pub forward_passes: usize,
    pub notes: Vec<(String, f64)>,
    /// Display name with provenance (`expnet≈occlusion`) when it differs
    /// from `method`, and the provenance object (ExpNet's `explainer`).
    pub label: Option<String>,
    pub explainer: Option<serde_json::Value>,
}

/// How the explorer's background distillation runs (`D`).
#[derive(Clone, Debug, PartialEq)]
pub struct DistillPlan {
    /// Teacher method name (`occlusion`: fast enough for a background job).
    pub teacher: String,
    /// Use at most this many texts.
    pub max_texts: usize,
    /// Fraction held out for early stopping and the reported Spearman.
    pub val_fraction: f32,
    pub epochs: usize,
    /// Where the ExpNet (and its teacher cache, for resuming) is written.
    pub out_dir: std::path::PathBuf,
    /// Copy the result into the explainer cache so later runs pick it up.
    pub register: bool,
}

impl Default for DistillPlan {
    fn default() -> Self {
        Self {
            teacher: "occlusion".into(),
            max_texts: 500,
            val_fraction: 0.1,
            epochs: 40,
            out_dir: ".".into(),
            register: true,
        }
    }
}

/// Where a distillation stands.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum DistillProgress {
    /// Teacher runs: texts done of total, seconds left (when known).
    Teacher { done: usize, total: usize, eta_secs: Option<f64> },
    /// Student training: epoch done of at most `epochs`, held-out Spearman.
    Epoch { epoch: usize, epochs: usize, val_spearman: Option<f64> },
}

/// A finished distillation: the new method (already in `methods()`).
#[derive(Clone, Debug, PartialEq)]
pub struct Distilled {
    pub method: MethodInfo,
    /// The backend's info with the new ExpNet.
    pub info: BackendInfo,
    pub path: std::path::PathBuf,
    /// Where it was registered for this model, if it was.
    pub registered: Option<std::path::PathBuf>,
    pub val_spearman: f64,
}

/// What the explorer needs from the model side. Implementations must be
/// thread-safe because the worker calls them from a blocking task.
pub trait ExplainBackend: Send + Sync + 'static {
    fn info(&self) -> BackendInfo;
    /// All methods, in display order; "expnet" first when present.
    fn methods(&self) -> Vec<MethodInfo>;
    /// Tokenization and one forward pass; should be fast (tens of ms).
    fn analyze(&self, text: &str) -> anyhow::Result<Analysis>;
    /// Runs one method on an analysed input. Slow methods must call
    /// `progress.checkpoint` regularly and return its `Cancelled` error.
    fn explain(&self, analysis: &Analysis, method: &str, progress: &Progress) -> anyhow::Result<MethodResult>;
    /// Distils an ExpNet for this model from `texts` and adds it to
    /// `methods()`. Blocking (minutes): callers run it on its own thread.
    /// Must return an error soon after `stop` is set.
    fn distill(
        &self,
        texts: &[String],
        plan: &DistillPlan,
        stop: &std::sync::atomic::AtomicBool,
        progress: &mut dyn FnMut(DistillProgress),
    ) -> anyhow::Result<Distilled> {
        let _ = (texts, plan, stop, progress);
        anyhow::bail!("this backend cannot distil an ExpNet")
    }
}
