//! The real model behind the terminal explorer's [`ExplainBackend`] boundary.

use crate::explain::{Attribution, ExplainInput, Progress};
use crate::model::{Encoding, ForwardOutput, Gradients, Model};
use crate::expnet::{ExpNetChoice, Explainer};
use crate::tui::backend::{Analysis, BackendInfo, DistillPlan, DistillProgress, Distilled, ExplainBackend, MethodInfo, MethodResult};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// A loaded model plus the methods that apply to it.
pub struct LibraryBackend {
    model: Model,
    /// Grows when `D` distils an ExpNet while the explorer runs.
    methods: RwLock<Vec<Arc<dyn Attribution>>>,
    expnet: RwLock<ExpNetState>,
    /// Gradients of the last explained input, keyed by its token ids and
    /// target: the four gradient methods of one keystroke share one backward pass.
    last_gradients: Mutex<Option<KeptGradients>>,
    /// Hidden states of the last analysed input, keyed by its token ids:
    /// the UI's [`Analysis`] does not carry them, a distilled ExpNet reads them.
    last_hidden: Mutex<Option<(Vec<u32>, Arc<Vec<Vec<Vec<f32>>>>)>>,
}

/// The ExpNet shown in the status line and help: name, provenance, or why none.
#[derive(Clone, Default)]
struct ExpNetState {
    name: Option<String>,
    explainer: Option<Explainer>,
    skipped: Option<String>,
}

/// Token ids and target the gradients belong to, the gradients, and their cost.
type KeptGradients = (Vec<u32>, usize, Arc<Gradients>, Duration);

impl LibraryBackend {
    /// `methods` in display order; those needing a head are dropped for a bare encoder.
    pub fn new(model: Model, methods: Vec<Arc<dyn Attribution>>, expnet_name: Option<String>) -> Self {
        let classifier = model.is_classifier();
        let methods = methods.into_iter().filter(|m| classifier || !m.needs_classifier()).collect();
        let expnet = ExpNetState { name: expnet_name, ..Default::default() };
        Self { model, methods: RwLock::new(methods), expnet: RwLock::new(expnet), last_gradients: Mutex::new(None), last_hidden: Mutex::new(None) }
    }

    /// Records which ExpNet was chosen (or why none), for the status line and help.
    pub fn with_choice(self, choice: &ExpNetChoice) -> Self {
        {
            let mut e = self.expnet.write().unwrap_or_else(|e| e.into_inner());
            e.explainer = choice.net.as_ref().map(|(_, x)| x.clone());
            e.skipped = choice.skipped.clone();
        }
        self
    }

    fn method(&self, name: &str) -> Option<Arc<dyn Attribution>> {
        self.methods.read().unwrap_or_else(|e| e.into_inner()).iter().find(|m| m.name() == name).cloned()
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
        let e = self.expnet.read().unwrap_or_else(|e| e.into_inner()).clone();
        BackendInfo {
            model: self.model.name.clone(),
            expnet: e.name,
            device: self.model.device_name(),
            labels: self.model.labels().to_vec(),
            layers: self.model.num_layers(),
            heads: self.model.num_heads(),
            explainer: e.explainer.map(Box::new),
            expnet_skipped: e.skipped,
        }
    }

    fn methods(&self) -> Vec<MethodInfo> {
        self.methods.read().unwrap_or_else(|e| e.into_inner()).iter().map(|m| method_info(m.as_ref())).collect()
    }

    fn analyze(&self, text: &str) -> anyhow::Result<Analysis> {
        let enc = self.model.encode(text)?;
        let fwd = self.model.forward(&enc)?;
        *self.last_hidden.lock().unwrap_or_else(|e| e.into_inner()) = Some((enc.ids.clone(), Arc::new(fwd.hidden_states)));
        Ok(Analysis {
            text: text.to_owned(),
            tokens: enc.tokens,
            prediction: fwd.prediction,
            attentions: fwd.attentions,
            truncated: enc.truncated,
        })
    }

    fn explain(&self, analysis: &Analysis, method: &str, progress: &Progress) -> anyhow::Result<MethodResult> {
        let m = self.method(method).ok_or_else(|| anyhow::anyhow!("method {method} is not available for this model"))?;
        let (enc, mut fwd) = self.restore(analysis);
        // ExpNet, ALTI and value norms read hidden states, which the UI's
        // Analysis does not carry: give every method the kept ones (a copy of
        // a few hundred KB at most, cheaper than asking each method).
        {
            let kept = self.last_hidden.lock().unwrap_or_else(|e| e.into_inner()).clone();
            fwd.hidden_states = match kept {
                Some((ids, h)) if ids == enc.ids => h.as_ref().clone(),
                _ => self.model.forward(&enc)?.hidden_states,
            };
        }
        let target = fwd.prediction.as_ref().map_or(0, |p| p.index);
        // Told the whole list: when it has a method reading attention
        // gradients, the first gradient method computes the full pass for all.
        let input = ExplainInput::new(&self.model, &enc, &fwd, target).for_methods(&self.methods.read().unwrap_or_else(|e| e.into_inner()));
        let kept = self.last_gradients.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some((ids, t, g, cost)) = kept
            && ids == enc.ids
            && t == target
        {
            input.seed_gradients(g, cost);
        }
        let t0 = Instant::now();
        let e = m.explain(&input, progress)?;
        // Shown times stay what the method costs alone (a reused backward pass counts).
        let ms = (t0.elapsed() + input.take_reused_cost()).as_secs_f64() * 1e3;
        if let Some((g, cost)) = input.computed_gradients() {
            *self.last_gradients.lock().unwrap_or_else(|e| e.into_inner()) = Some((enc.ids.clone(), target, g, cost));
        }
        let label = Some(m.label()).filter(|l| l != method);
        Ok(MethodResult { method: method.to_owned(), scores: e.scores, ms, forward_passes: e.forward_passes, notes: e.notes, label, explainer: m.provenance() })
    }

    /// See [`super::tui_distill::run`]; the result replaces any ExpNet of
    /// another model in the list, or goes first.
    fn distill(&self, texts: &[String], plan: &DistillPlan, stop: &AtomicBool, progress: &mut dyn FnMut(DistillProgress)) -> anyhow::Result<Distilled> {
        let out = super::tui_distill::run(&self.model, texts, plan, stop, progress)?;
        let method: Arc<dyn Attribution> = Arc::new(crate::expnet::ExpNetMethod::with_explainer(Arc::new(out.net), out.explainer.clone()));
        let info = method_info(method.as_ref());
        {
            let mut list = self.methods.write().unwrap_or_else(|e| e.into_inner());
            match list.iter().position(|m| m.name() == method.name()) {
                Some(i) => list[i] = method,
                None => list.insert(0, method),
            }
        }
        *self.expnet.write().unwrap_or_else(|e| e.into_inner()) = ExpNetState {
            name: Some(format!("{} ({})", out.path.display(), out.explainer.label())),
            explainer: Some(out.explainer),
            skipped: None,
        };
        Ok(Distilled { method: info, info: self.info(), path: out.path, registered: out.registered, val_spearman: out.val_spearman })
    }
}

fn method_info(m: &dyn Attribution) -> MethodInfo {
    MethodInfo { name: m.name().to_owned(), label: m.label(), family: m.family(), slow: m.is_slow() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gradient_methods_of_one_input_share_the_backward_pass() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-bert");
        let model = Model::load_dir(&dir).unwrap();
        let methods = crate::cli::methods::build_simple("saliency,grad_x_input", &model, None).unwrap();
        let b = LibraryBackend::new(model, methods, None);
        let a = b.analyze("an unbelievably dull film").unwrap();
        let first = b.explain(&a, "saliency", &Progress::none()).unwrap();
        let kept = b.last_gradients.lock().unwrap().clone().expect("gradients kept");
        let second = b.explain(&a, "grad_x_input", &Progress::none()).unwrap();
        let after = b.last_gradients.lock().unwrap().clone().unwrap();
        assert!(Arc::ptr_eq(&kept.2, &after.2), "the second method reused the kept gradients");
        // Same scores as computing alone, and the reused cost is still shown.
        let (enc, fwd) = b.restore(&a);
        let alone = crate::explain::create("grad_x_input").unwrap();
        let target = fwd.prediction.as_ref().unwrap().index;
        let e = alone.explain(&ExplainInput::new(&b.model, &enc, &fwd, target), &Progress::none()).unwrap();
        assert_eq!(second.scores, e.scores);
        assert!(second.ms >= kept.3.as_secs_f64() * 1e3 && first.ms > 0.0);
        // Another input does not reuse them.
        let other = b.analyze("a gorgeous film").unwrap();
        b.explain(&other, "saliency", &Progress::none()).unwrap();
        let replaced = b.last_gradients.lock().unwrap().clone().unwrap();
        assert!(!Arc::ptr_eq(&kept.2, &replaced.2));
    }

    /// What `expnet tui --model DIR` runs, for every model family's fixture: analysis
    /// (prediction, attention shape) and every fast method plus occlusion give finite scores.
    #[test]
    fn explorer_backend_runs_every_family() {
        let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        for name in ["tiny-electra", "tiny-albert", "tiny-xlm-roberta", "tiny-deberta-v3", "tiny-deberta-v2", "tiny-modernbert"] {
            let model = Model::load_dir(&fixtures.join(name)).unwrap();
            let (layers, heads) = (model.num_layers(), model.num_heads());
            let methods = crate::cli::methods::build_simple("all", &model, None).unwrap();
            // ModernBERT's pre-norm layers have no blocks to decompose: `all` leaves those out.
            let decomposition = methods.iter().filter(|m| m.family() == crate::explain::Family::Decomposition).count();
            assert_eq!(decomposition, if name == "tiny-modernbert" { 0 } else { 3 }, "{name}");
            let b = LibraryBackend::new(model, methods, None);
            assert_eq!((b.info().layers, b.info().heads), (layers, heads), "{name}");
            let a = b.analyze("an unbelievably dull film").unwrap();
            let n = a.tokens.len();
            assert_eq!((a.attentions.layers, a.attentions.heads, a.attentions.len), (layers, heads, n), "{name}");
            assert!(a.prediction.is_some(), "{name} has a head");
            for m in b.methods().iter().filter(|m| !m.slow || m.name == "occlusion") {
                let r = b.explain(&a, &m.name, &Progress::none()).unwrap_or_else(|e| panic!("{name} {}: {e:#}", m.name));
                assert_eq!(r.scores.len(), n, "{name} {}", m.name);
                assert!(r.scores.iter().all(|v| v.is_finite()), "{name} {}: {:?}", m.name, r.scores);
            }
        }
    }
}
