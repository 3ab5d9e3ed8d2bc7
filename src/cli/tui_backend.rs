//! The real model behind the terminal explorer's [`ExplainBackend`] boundary.

use crate::explain::{Attribution, ExplainInput, Progress};
use crate::model::{Encoding, ForwardOutput, Model};
use crate::tui::backend::{Analysis, BackendInfo, ExplainBackend, MethodInfo, MethodResult};
use std::sync::Arc;
use std::time::Instant;

/// A loaded model plus the methods that apply to it.
pub struct LibraryBackend {
    model: Model,
    methods: Vec<Arc<dyn Attribution>>,
    expnet_name: Option<String>,
}

impl LibraryBackend {
    /// `methods` in display order; those needing a head are dropped for a bare encoder.
    pub fn new(model: Model, methods: Vec<Arc<dyn Attribution>>, expnet_name: Option<String>) -> Self {
        let classifier = model.is_classifier();
        let methods = methods.into_iter().filter(|m| classifier || !m.needs_classifier()).collect();
        Self { model, methods, expnet_name }
    }

    /// Rebuilds the encoding and forward output an [`Analysis`] was made from.
    fn restore(&self, a: &Analysis) -> (Encoding, ForwardOutput) {
        let enc = Encoding {
            text: a.text.clone(),
            text_pair: None,
            ids: a.tokens.iter().map(|t| t.id).collect(),
            type_ids: a.tokens.iter().map(|t| t.sequence as u32).collect(),
            tokens: a.tokens.clone(),
            truncated: a.truncated,
        };
        let fwd = ForwardOutput { prediction: a.prediction.clone(), attentions: a.attentions.clone(), hidden_states: vec![] };
        (enc, fwd)
    }
}

impl ExplainBackend for LibraryBackend {
    fn info(&self) -> BackendInfo {
        BackendInfo {
            model: self.model.name.clone(),
            expnet: self.expnet_name.clone(),
            device: self.model.device_name().to_owned(),
            labels: self.model.labels().to_vec(),
            layers: self.model.num_layers(),
            heads: self.model.num_heads(),
        }
    }

    fn methods(&self) -> Vec<MethodInfo> {
        self.methods
            .iter()
            .map(|m| MethodInfo { name: m.name().to_owned(), family: m.family(), slow: m.is_slow() })
            .collect()
    }

    fn analyze(&self, text: &str) -> anyhow::Result<Analysis> {
        let enc = self.model.encode(text)?;
        let fwd = self.model.forward(&enc)?;
        Ok(Analysis {
            text: text.to_owned(),
            tokens: enc.tokens,
            prediction: fwd.prediction,
            attentions: fwd.attentions,
            truncated: enc.truncated,
        })
    }

    fn explain(&self, analysis: &Analysis, method: &str, progress: &Progress) -> anyhow::Result<MethodResult> {
        let m = self
            .methods
            .iter()
            .find(|m| m.name() == method)
            .ok_or_else(|| anyhow::anyhow!("method {method} is not available for this model"))?;
        let (enc, fwd) = self.restore(analysis);
        let target = fwd.prediction.as_ref().map_or(0, |p| p.index);
        let t0 = Instant::now();
        let e = m.explain(&ExplainInput::new(&self.model, &enc, &fwd, target), progress)?;
        Ok(MethodResult { method: method.to_owned(), scores: e.scores, ms: t0.elapsed().as_secs_f64() * 1e3 })
    }
}
