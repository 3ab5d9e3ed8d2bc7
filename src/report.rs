//! The JSON schema of `expnet explain` (one object per input, JSON Lines), also
//! written by the TUI's export, built from library results.

use crate::explain::{Attribution, ExplainInput, Explanation, Progress};
use crate::model::{Encoding, ForwardOutput, Model, Prediction, Token};
use serde::Serialize;
use serde_json::{Map, Value, json};
use std::time::Instant;

/// One token as written in reports.
#[derive(Serialize)]
pub struct TokenJson<'a> {
    pub text: &'a str,
    pub start: usize,
    pub end: usize,
    pub special: bool,
}

/// `{"label","index","probabilities":{label:p}}`.
pub fn prediction_json(p: &Prediction) -> Value {
    let probs: Map<String, Value> = p.labels.iter().cloned().zip(p.probabilities.iter().map(|&v| json!(v))).collect();
    json!({"label": p.label(), "index": p.index, "probabilities": probs})
}

/// A method's result with its wall-clock time.
pub struct TimedExplanation {
    pub method: String,
    /// Display name with provenance (`expnet≈occlusion`); equals `method` for most.
    pub label: String,
    /// The method's provenance object (ExpNet's `explainer`), if it has one.
    pub explainer: Option<Value>,
    pub explanation: Explanation,
    pub ms: f64,
}

/// Runs methods on one input, timing each (the shared forward pass is not counted).
pub fn run_methods(
    model: &Model,
    enc: &Encoding,
    forward: &ForwardOutput,
    target: Option<usize>,
    methods: &[std::sync::Arc<dyn Attribution>],
    progress: &Progress,
) -> anyhow::Result<Vec<TimedExplanation>> {
    let target = target.or(forward.prediction.as_ref().map(|p| p.index)).unwrap_or(0);
    if let Some(p) = &forward.prediction {
        anyhow::ensure!(target < p.labels.len(), "--target {target} is out of range (the model has {} labels)", p.labels.len());
    }
    let input = ExplainInput::new(model, enc, forward, target);
    let mut out = Vec::with_capacity(methods.len());
    for m in methods {
        if m.needs_classifier() && !model.is_classifier() {
            anyhow::bail!(
                "method \"{}\" needs a classification head, but {} is a bare encoder (hint: use --methods attention,rollout,flow for encoders)",
                m.name(),
                model.name
            );
        }
        let t0 = Instant::now();
        let explanation = m.explain(&input, progress)?;
        anyhow::ensure!(
            explanation.scores.len() == enc.len(),
            "method {} returned {} scores for {} tokens",
            m.name(),
            explanation.scores.len(),
            enc.len()
        );
        out.push(TimedExplanation {
            method: m.name().to_owned(),
            label: m.label(),
            explainer: m.provenance(),
            explanation,
            ms: (t0.elapsed() + input.take_reused_cost()).as_secs_f64() * 1e3,
        });
    }
    Ok(out)
}

/// Builds the report object.
pub fn report_json(
    model_name: &str,
    enc: &Encoding,
    prediction: Option<&Prediction>,
    explanations: &[TimedExplanation],
    attentions: Option<&crate::model::Attentions>,
) -> Value {
    let tokens: Vec<TokenJson> = enc.tokens.iter().map(token_json).collect();
    let mut ex = Map::new();
    for e in explanations {
        let mut m = Map::new();
        m.insert("scores".into(), json!(e.explanation.scores));
        m.insert("ms".into(), json!(e.ms));
        m.insert("forward_passes".into(), json!(e.explanation.forward_passes));
        for (k, v) in &e.explanation.notes {
            m.insert(k.clone(), json!(v));
        }
        if e.label != e.method {
            m.insert("label".into(), json!(e.label));
        }
        if let Some(x) = &e.explainer {
            m.insert("explainer".into(), x.clone());
        }
        ex.insert(e.method.clone(), Value::Object(m));
    }
    let mut obj = Map::new();
    obj.insert("text".into(), json!(enc.text));
    if let Some(p) = &enc.text_pair {
        obj.insert("text_pair".into(), json!(p));
    }
    obj.insert("model".into(), json!(model_name));
    obj.insert("tokens".into(), json!(tokens));
    obj.insert("prediction".into(), prediction.map_or(Value::Null, prediction_json));
    obj.insert("explanations".into(), Value::Object(ex));
    if let Some(a) = attentions {
        obj.insert("attentions".into(), json!(a.to_nested()));
    }
    obj.insert("truncated".into(), json!(enc.truncated));
    Value::Object(obj)
}

pub fn token_json(t: &Token) -> TokenJson<'_> {
    TokenJson { text: &t.text, start: t.start, end: t.end, special: t.special }
}
