//! ExpNet as an [`Attribution`] method: it reads the attentions of the
//! forward pass every method shares, so it costs no extra encoder pass.

use std::sync::Arc;

use super::features::FeatureSource;
use super::net::ExpNet;
use super::provenance::Explainer;
use crate::explain::{Attribution, ExplainInput, Explanation, Family, Progress};
use crate::model::{Encoding, ForwardOutput, Gradients, Model};

/// The learned explainer behind the common method interface.
#[derive(Clone, Debug)]
pub struct ExpNetMethod {
    net: Arc<ExpNet>,
    /// Where it came from; `None` for a net built in code (tests, training).
    explainer: Option<Explainer>,
}

impl ExpNetMethod {
    pub fn new(net: Arc<ExpNet>) -> Self {
        Self { net, explainer: None }
    }

    /// With its provenance, which labels it and goes into every report.
    pub fn with_explainer(net: Arc<ExpNet>, explainer: Explainer) -> Self {
        Self { net, explainer: Some(explainer) }
    }

    pub fn net(&self) -> &ExpNet {
        &self.net
    }

    pub fn explainer(&self) -> Option<&Explainer> {
        self.explainer.as_ref()
    }

    /// The scoring behind [`Attribution::explain`]. `model` is needed only
    /// by ExpNets that read the classification head (distilled ones).
    pub fn explain_forward(
        &self,
        model: Option<&Model>,
        encoding: &Encoding,
        forward: &ForwardOutput,
        target: usize,
    ) -> anyhow::Result<Explanation> {
        self.explain_with_gradients(model, encoding, forward, target, None)
    }

    /// [`Self::explain_forward`] with the shared backward pass of `target`'s
    /// logit, which ExpNets with gradient features (`expnet train --gradient`) read.
    pub fn explain_with_gradients(
        &self,
        model: Option<&Model>,
        encoding: &Encoding,
        forward: &ForwardOutput,
        target: usize,
        gradients: Option<&Gradients>,
    ) -> anyhow::Result<Explanation> {
        let special = encoding.special_mask();
        anyhow::ensure!(
            special.len() == forward.attentions.len,
            "encoding has {} tokens but the forward pass attentions cover {}",
            special.len(),
            forward.attentions.len
        );
        // Independent, and each one only partly parallel: side by side on the pool.
        let (lens, decision) = rayon::join(
            || lens_logits(model, forward, self.net.spec().signals.lens_layers),
            || decision_features(model, forward, target, self.net.spec().signals.decision),
        );
        let (lens, decision) = (lens?, decision?);
        let decomposition = decomposition_features(model, forward, &self.net.spec().decomposition)?;
        let gradient = if self.reads_gradients() {
            let g = gradients.ok_or_else(|| anyhow::anyhow!("this ExpNet reads gradient features: it needs the shared backward pass of a classifier"))?;
            super::grad_features::raw_rows(g)
        } else {
            Vec::new()
        };
        let src = FeatureSource {
            attentions: &forward.attentions,
            special: &special,
            hidden_states: &forward.hidden_states,
            lens: &lens,
            decision: &decision,
            target,
            decomposition: &decomposition,
            gradient: &gradient,
        };
        let scores = self.net.score_source(&src)?;
        Ok(Explanation { scores, forward_passes: self.reads_gradients() as usize, notes: Vec::new() })
    }

    /// Whether the net reads the shared backward pass (gradient features).
    pub fn reads_gradients(&self) -> bool {
        !self.net.spec().gradient.is_off()
    }
}

/// [`super::decision::decision_rows`] when `on`, else no rows.
pub fn decision_features(model: Option<&Model>, forward: &ForwardOutput, target: usize, on: bool) -> anyhow::Result<Vec<Vec<f32>>> {
    if !on {
        return Ok(Vec::new());
    }
    let model = model.ok_or_else(|| anyhow::anyhow!("this ExpNet reads the model's decision direction: it needs the model"))?;
    super::decision::decision_rows(model, forward, target)
}

/// [`super::decomp_features::raw_rows`] when the spec reads decomposition groups, else no rows.
pub fn decomposition_features(model: Option<&Model>, forward: &ForwardOutput, groups: &super::DecompositionGroups) -> anyhow::Result<Vec<Vec<f32>>> {
    if groups.is_off() {
        return Ok(Vec::new());
    }
    let model = model.ok_or_else(|| anyhow::anyhow!("this ExpNet reads decomposition features (value norms, ALTI): it needs the model"))?;
    groups.check_model(model)?;
    super::decomp_features::raw_rows(groups, model, forward)
}

/// The head's logits on every token's hidden state after each of the last
/// `k` layers (`[k][len][labels]`), for the lens features.
pub fn lens_logits(model: Option<&Model>, forward: &ForwardOutput, k: usize) -> anyhow::Result<Vec<Vec<Vec<f32>>>> {
    if k == 0 {
        return Ok(Vec::new());
    }
    let model = model.ok_or_else(|| anyhow::anyhow!("this ExpNet reads the classification head: it needs the model"))?;
    let h = &forward.hidden_states;
    anyhow::ensure!(h.len() >= k, "this ExpNet reads {k} layers of hidden states, the forward pass kept {}", h.len());
    h[h.len() - k..]
        .iter()
        .map(|layer| model.head_logits_rows(&layer.iter().map(Vec::as_slice).collect::<Vec<_>>()))
        .collect()
}

impl Attribution for ExpNetMethod {
    fn name(&self) -> &'static str {
        "expnet"
    }
    fn label(&self) -> String {
        self.explainer.as_ref().map_or_else(|| "expnet".to_owned(), Explainer::label)
    }
    fn provenance(&self) -> Option<serde_json::Value> {
        self.explainer.as_ref().and_then(|e| serde_json::to_value(e).ok())
    }
    fn family(&self) -> Family {
        Family::Learned
    }
    fn is_slow(&self) -> bool {
        false
    }
    fn needs_classifier(&self) -> bool {
        self.reads_gradients()
    }
    fn reads_shared_gradients(&self) -> bool {
        self.reads_gradients()
    }
    fn explain(&self, input: &ExplainInput, progress: &Progress) -> anyhow::Result<Explanation> {
        progress.checkpoint(0.0)?;
        let gradients = if self.reads_gradients() { Some(input.gradients()?) } else { None };
        let out = self.explain_with_gradients(Some(input.model), input.encoding, input.forward, input.target, gradients)?;
        progress.checkpoint(1.0)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expnet::{FeatureSpec, TrainConfig, TrainingSet, ExampleFeatures, train};
    use crate::model::{Attentions, Token};

    fn token(text: &str, special: bool) -> Token {
        Token { text: text.into(), start: 0, end: 0, special, id: 0, word: None, sequence: 0 }
    }

    fn uniform(layers: usize, heads: usize, n: usize) -> Attentions {
        Attentions::new(layers, heads, n, vec![1.0 / n as f32; layers * heads * n * n]).unwrap()
    }

    fn tiny_net() -> Arc<ExpNet> {
        let spec = FeatureSpec::new(1, 2);
        let mut set = TrainingSet::new(spec.clone(), "m", "d");
        let special = [true, false, false, true];
        set.push(ExampleFeatures::from_attentions(&spec, "a", &uniform(1, 2, 4), &special, vec![0.0, 1.0, 0.0, 0.0]).unwrap())
            .unwrap();
        let cfg = TrainConfig { epochs: 1, ..TrainConfig::default() };
        Arc::new(train(&set, None, &cfg, &mut |_| {}).unwrap())
    }

    fn encoding(tokens: Vec<Token>) -> Encoding {
        let n = tokens.len();
        Encoding { text: "a b".into(), text_pair: None, ids: vec![0; n], type_ids: vec![0; n], tokens, truncated: false }
    }

    #[test]
    fn scores_the_shared_forward_pass_without_extra_passes() {
        let m = ExpNetMethod::new(tiny_net());
        assert_eq!((m.name(), m.family(), m.is_slow(), m.needs_classifier()), ("expnet", Family::Learned, false, false));
        let enc = encoding(vec![token("[CLS]", true), token("a", false), token("b", false), token("[SEP]", true)]);
        let fwd = ForwardOutput { prediction: None, attentions: uniform(1, 2, 4), hidden_states: Vec::new() };
        let e = m.explain_forward(None, &enc, &fwd, 0).unwrap();
        assert_eq!(e.forward_passes, 0);
        assert_eq!(e.scores.len(), 4);
        assert_eq!((e.scores[0], e.scores[3]), (0.0, 0.0));
        assert!(e.scores[1] > 0.0 && e.scores[1] < 1.0);
        assert_eq!(e.scores, m.net().score(&fwd.attentions, &enc.special_mask()).unwrap());
    }

    #[test]
    fn mismatched_model_is_a_clear_error() {
        let m = ExpNetMethod::new(tiny_net());
        let enc = encoding(vec![token("[CLS]", true), token("a", false), token("[SEP]", true)]);
        let fwd = ForwardOutput { prediction: None, attentions: uniform(2, 2, 3), hidden_states: Vec::new() };
        let err = m.explain_forward(None, &enc, &fwd, 0).unwrap_err().to_string();
        assert!(err.contains("1-layer x 2-head") && err.contains("2 layers x 2 heads"), "{err}");
        let fwd = ForwardOutput { prediction: None, attentions: uniform(1, 2, 4), hidden_states: Vec::new() };
        assert!(m.explain_forward(None, &enc, &fwd, 0).unwrap_err().to_string().contains("3 tokens"));
    }
}
