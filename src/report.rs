//! The JSON schema of `expnet explain` (one object per input, JSON Lines), also
//! written by the TUI's export, built from library results.

use crate::explain::{Attribution, ExplainInput, Explanation, Progress};
use crate::model::{Encoding, ForwardOutput, Gradients, Model, Prediction, Token};
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
    let target = resolve_target(forward, target)?;
    let input = ExplainInput::new(model, enc, forward, target).for_methods(methods);
    methods.iter().map(|m| run_one(model, enc, &input, m, progress)).collect()
}

/// [`run_methods`] with per-method progress for the CLI: `report(i, f)` says
/// method `i` is `f` done (0 when it starts, 1 when it ends). `gradients`
/// seeds the shared backward pass when it was computed for a whole batch
/// (with this text's share of its time, added to the first method that reads it).
pub fn run_methods_reporting(
    model: &Model,
    enc: &Encoding,
    forward: &ForwardOutput,
    target: Option<usize>,
    methods: &[std::sync::Arc<dyn Attribution>],
    gradients: Option<(std::sync::Arc<Gradients>, std::time::Duration)>,
    report: &(dyn Fn(usize, f32) + Send + Sync),
) -> anyhow::Result<Vec<TimedExplanation>> {
    let target = resolve_target(forward, target)?;
    let input = ExplainInput::new(model, enc, forward, target).for_methods(methods);
    if let Some((g, cost)) = gradients {
        input.seed_gradients(g, cost);
    }
    let mut out = Vec::with_capacity(methods.len());
    for (i, m) in methods.iter().enumerate() {
        report(i, 0.0);
        let f = |x: f32| report(i, x.min(0.999));
        let progress = Progress::reporting(&f);
        out.push(run_one(model, enc, &input, m, &progress)?);
        report(i, 1.0);
    }
    Ok(out)
}

/// The class to explain: the one asked for, else the predicted one.
pub fn resolve_target(forward: &ForwardOutput, target: Option<usize>) -> anyhow::Result<usize> {
    let target = target.or(forward.prediction.as_ref().map(|p| p.index)).unwrap_or(0);
    if let Some(p) = &forward.prediction {
        anyhow::ensure!(target < p.labels.len(), "--target {target} is out of range (the model has {} labels)", p.labels.len());
    }
    Ok(target)
}

fn run_one(model: &Model, enc: &Encoding, input: &ExplainInput, m: &std::sync::Arc<dyn Attribution>, progress: &Progress) -> anyhow::Result<TimedExplanation> {
    if m.needs_classifier() && !model.is_classifier() {
        anyhow::bail!(
            "method \"{}\" needs a classification head, but {} is a bare encoder (hint: use --methods attention,rollout,flow for encoders)",
            m.name(),
            model.name
        );
    }
    let t0 = Instant::now();
    let explanation = m.explain(input, progress)?;
    anyhow::ensure!(
        explanation.scores.len() == enc.len(),
        "method {} returned {} scores for {} tokens",
        m.name(),
        explanation.scores.len(),
        enc.len()
    );
    Ok(TimedExplanation {
        method: m.name().to_owned(),
        label: m.label(),
        explainer: m.provenance(),
        explanation,
        ms: (t0.elapsed() + input.take_reused_cost()).as_secs_f64() * 1e3,
    })
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
        let label = (e.label != e.method).then_some(e.label.as_str());
        ex.insert(e.method.clone(), method_json(&e.explanation.scores, e.ms, e.explanation.forward_passes, &e.explanation.notes, label, e.explainer.as_ref()));
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

/// One method's entry under `explanations`: scores, time, cost and notes
/// (shared with the TUI's export so both write the same schema).
/// `label` only when it differs from the method name; `explainer` is the
/// method's provenance object (ExpNet), if any.
pub fn method_json(scores: &[f32], ms: f64, forward_passes: usize, notes: &[(String, f64)], label: Option<&str>, explainer: Option<&Value>) -> Value {
    let mut m = Map::new();
    m.insert("scores".into(), json!(scores));
    m.insert("ms".into(), json!(ms));
    m.insert("forward_passes".into(), json!(forward_passes));
    for (k, v) in notes {
        m.insert(k.clone(), json!(v));
    }
    if let Some(l) = label {
        m.insert("label".into(), json!(l));
    }
    if let Some(x) = explainer {
        m.insert("explainer".into(), x.clone());
    }
    Value::Object(m)
}

pub fn token_json(t: &Token) -> TokenJson<'_> {
    TokenJson { text: &t.text, start: t.start, end: t.end, special: t.special }
}
