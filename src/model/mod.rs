//! Loading and running BERT-family encoders with attention capture.

mod tensor;
mod token;

pub use tensor::Attentions;
pub use token::{Encoding, Token};

use serde::Serialize;

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

/// A loaded model (placeholder until the encoder lands).
pub struct Model {
    _private: (),
}
