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
}
