//! A deterministic [`ExplainBackend`] for tests and for the `tui_fake` example
//! binary, so the explorer can be exercised end to end without model weights.
//!
//! Tokens are the whitespace words of the input (lower-cased; words longer than
//! six characters are split into a head and a `##` tail piece to exercise word
//! merging), wrapped in `[CLS]` … `[SEP]`. Scores come from a tiny sentiment
//! lexicon, so "great" lights up and "the" does not.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::backend::{Analysis, BackendInfo, DistillPlan, DistillProgress, Distilled, ExplainBackend, MethodInfo, MethodResult};
use crate::explain::{Family, Progress, is_cancelled};
use crate::model::{Attentions, Prediction, Token};

const POSITIVE: &[&str] = &["good", "great", "love", "loved", "wonderful", "best", "fun", "brilliant", "superb", "enjoyable"];
const NEGATIVE: &[&str] = &["bad", "awful", "hate", "boring", "worst", "terrible", "dull", "waste", "poor", "not"];

/// Fake model: see the module docs. Counters let tests see what the worker asked.
pub struct FakeBackend {
    /// Number of checkpoints of the slow method ("occlusion").
    pub slow_steps: usize,
    /// Sleep between two checkpoints of the slow method.
    pub slow_step: Duration,
    /// Sleep inside every `analyze`, to simulate a forward pass.
    pub analyze_delay: Duration,
    pub layers: usize,
    pub heads: usize,
    pub with_expnet: bool,
    /// Sleep per text of the fake distillation (it checks the stop flag between texts).
    pub distill_step: Duration,
    /// Set once a fake distillation finished: `expnet≈occlusion` is listed.
    distilled: AtomicBool,
    analyzed: AtomicUsize,
    slow_cancelled: AtomicUsize,
    slow_completed: AtomicUsize,
    calls: Mutex<Vec<(String, String)>>,
}

impl Default for FakeBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeBackend {
    pub fn new() -> Self {
        Self {
            slow_steps: 20,
            slow_step: Duration::from_millis(10),
            analyze_delay: Duration::ZERO,
            layers: 4,
            heads: 4,
            with_expnet: true,
            distill_step: Duration::from_millis(1),
            distilled: AtomicBool::new(false),
            analyzed: AtomicUsize::new(0),
            slow_cancelled: AtomicUsize::new(0),
            slow_completed: AtomicUsize::new(0),
            calls: Mutex::new(Vec::new()),
        }
    }
    /// Sets the slow method's number of checkpoints and the sleep between them.
    pub fn slow(mut self, steps: usize, step: Duration) -> Self {
        self.slow_steps = steps;
        self.slow_step = step;
        self
    }
    /// How many times `analyze` ran.
    pub fn analyzed(&self) -> usize {
        self.analyzed.load(Ordering::SeqCst)
    }
    /// How many runs of the slow method stopped on a cancelled token.
    pub fn slow_cancelled(&self) -> usize {
        self.slow_cancelled.load(Ordering::SeqCst)
    }
    /// How many runs of the slow method finished.
    pub fn slow_completed(&self) -> usize {
        self.slow_completed.load(Ordering::SeqCst)
    }
    /// Every `(text, method)` pair `explain` was called with, in order.
    pub fn calls(&self) -> Vec<(String, String)> {
        self.calls.lock().map(|c| c.clone()).unwrap_or_default()
    }

    fn lexicon(word: &str) -> f32 {
        let w = word.trim_matches(|c: char| !c.is_alphanumeric()).trim_start_matches("##");
        if POSITIVE.contains(&w) {
            1.0
        } else if NEGATIVE.contains(&w) {
            -1.0
        } else {
            0.0
        }
    }

    /// Splits text into fake word pieces with char offsets and word indices.
    fn tokenize(text: &str) -> Vec<Token> {
        let special = |s: &str| Token { text: s.into(), start: 0, end: 0, special: true, id: 0, word: None, sequence: 0 };
        let mut tokens = vec![special("[CLS]")];
        let chars: Vec<char> = text.chars().collect();
        let mut word = 0u32;
        let mut i = 0;
        while i < chars.len() {
            if chars[i].is_whitespace() {
                i += 1;
                continue;
            }
            let start = i;
            while i < chars.len() && !chars[i].is_whitespace() {
                i += 1;
            }
            let w: String = chars[start..i].iter().collect::<String>().to_lowercase();
            let n = w.chars().count();
            let piece = |t: String, s: usize, e: usize| Token { text: t, start: s, end: e, special: false, id: 1000 + word, word: Some(word), sequence: 0 };
            if n > 6 {
                let head: String = w.chars().take(4).collect();
                let tail: String = w.chars().skip(4).collect();
                tokens.push(piece(head, start, start + 4));
                tokens.push(piece(format!("##{tail}"), start + 4, i));
            } else {
                tokens.push(piece(w, start, i));
            }
            word += 1;
        }
        let mut sep = special("[SEP]");
        sep.start = chars.len();
        sep.end = chars.len();
        tokens.push(sep);
        tokens
    }

    /// Row-normalised attention that depends on layer, head and the tokens,
    /// with sentiment words attracting attention in later layers.
    fn attentions(&self, tokens: &[Token]) -> Attentions {
        let n = tokens.len();
        let mut data = Vec::with_capacity(self.layers * self.heads * n * n);
        for l in 0..self.layers {
            for h in 0..self.heads {
                for q in 0..n {
                    let row: Vec<f32> = (0..n)
                        .map(|k| {
                            let dist = (q as f32 - k as f32).abs();
                            let local = 1.0 / (1.0 + dist * (h as f32 + 1.0) * 0.5);
                            let lex = Self::lexicon(&tokens[k].text).abs() * (l as f32 + 1.0) / self.layers as f32;
                            let cls = if k == 0 { 0.5 * ((l + h) % 3) as f32 } else { 0.0 };
                            local + 2.0 * lex + cls + 0.01
                        })
                        .collect();
                    let sum: f32 = row.iter().sum();
                    data.extend(row.iter().map(|v| v / sum));
                }
            }
        }
        Attentions::new(self.layers, self.heads, n, data).expect("fake attention size")
    }

    fn fast_scores(analysis: &Analysis, method: &str) -> anyhow::Result<Vec<f32>> {
        let t = &analysis.tokens;
        let a = &analysis.attentions;
        let lex: Vec<f32> = t.iter().map(|t| if t.special { 0.0 } else { Self::lexicon(&t.text) }).collect();
        Ok(match method {
            "expnet" => lex.iter().enumerate().map(|(i, v)| v.abs() * 0.9 + 0.05 + 0.01 * (i % 3) as f32).collect(),
            "attention" => (0..a.len).map(|k| a.get(a.layers - 1, 0, 0, k)).collect(),
            "rollout" => (0..a.len).map(|k| (0..a.layers).map(|l| a.mean_heads(l)[k]).sum::<f32>() / a.layers as f32).collect(),
            "saliency" => lex.iter().enumerate().map(|(i, v)| v * 0.8 + 0.02 * ((i % 2) as f32 - 0.5)).collect(),
            other => anyhow::bail!("unknown method '{other}' (fake backend knows expnet, attention, rollout, saliency, occlusion)"),
        })
    }
}

impl ExplainBackend for FakeBackend {
    fn info(&self) -> BackendInfo {
        let distilled = self.distilled.load(Ordering::SeqCst);
        let explainer = (self.with_expnet || distilled).then(|| crate::expnet::Explainer {
            file: if distilled { "expnet-distilled-fake.safetensors" } else { "fake.expnet.safetensors" }.into(),
            kind: if distilled { "distilled" } else { "rationales" }.into(),
            teacher: distilled.then(|| "occlusion".into()),
            trained_for: "fake-bert-sst2 (4x4)".into(),
            matches_model: Some(true),
        });
        BackendInfo {
            model: "fake-bert-sst2".into(),
            expnet: explainer.as_ref().map(|e| e.file.clone()),
            device: "cpu".into(),
            labels: vec!["negative".into(), "positive".into()],
            layers: self.layers,
            heads: self.heads,
            expnet_skipped: explainer.is_none().then(|| "no ExpNet was trained for this model".into()),
            explainer: explainer.map(Box::new),
        }
    }

    fn methods(&self) -> Vec<MethodInfo> {
        let m = |name: &str, family, slow| MethodInfo { name: name.into(), label: name.into(), family, slow };
        let mut v = Vec::new();
        if self.distilled.load(Ordering::SeqCst) {
            v.push(MethodInfo { label: "expnet≈occlusion".into(), ..m("expnet", Family::Learned, false) });
        } else if self.with_expnet {
            v.push(m("expnet", Family::Learned, false));
        }
        v.push(m("rollout", Family::Attention, false));
        v.push(m("attention", Family::Attention, false));
        v.push(m("saliency", Family::Gradient, false));
        v.push(m("occlusion", Family::Perturbation, true));
        v
    }

    fn analyze(&self, text: &str) -> anyhow::Result<Analysis> {
        if !self.analyze_delay.is_zero() {
            std::thread::sleep(self.analyze_delay);
        }
        self.analyzed.fetch_add(1, Ordering::SeqCst);
        let tokens = Self::tokenize(text);
        let attentions = self.attentions(&tokens);
        let s: f32 = tokens.iter().map(|t| Self::lexicon(&t.text)).sum();
        let p = 1.0 / (1.0 + (-1.5 * s).exp());
        let prediction = Prediction {
            labels: vec!["negative".into(), "positive".into()],
            logits: vec![-s, s],
            probabilities: vec![1.0 - p, p],
            index: usize::from(p >= 0.5),
        };
        Ok(Analysis { text: text.to_string(), tokens, prediction: Some(prediction), attentions, truncated: false })
    }

    fn explain(&self, analysis: &Analysis, method: &str, progress: &Progress) -> anyhow::Result<MethodResult> {
        let t0 = Instant::now();
        if let Ok(mut c) = self.calls.lock() {
            c.push((analysis.text.clone(), method.to_string()));
        }
        let scores = if method == "occlusion" {
            for step in 0..self.slow_steps {
                if let Err(e) = progress.checkpoint(step as f32 / self.slow_steps as f32) {
                    if is_cancelled(&e) {
                        self.slow_cancelled.fetch_add(1, Ordering::SeqCst);
                    }
                    return Err(e);
                }
                std::thread::sleep(self.slow_step);
            }
            progress.checkpoint(1.0)?;
            self.slow_completed.fetch_add(1, Ordering::SeqCst);
            Self::fast_scores(analysis, "saliency")?.iter().map(|v| v * 0.7).collect()
        } else {
            Self::fast_scores(analysis, method)?
        };
        Ok(MethodResult { method: method.to_string(), scores, ms: t0.elapsed().as_secs_f64() * 1000.0, forward_passes: 1, notes: vec![], label: None, explainer: None })
    }

    /// Pretends to run the teacher on every text (sleeping `distill_step`,
    /// checking `stop` between texts) and to train three epochs.
    fn distill(&self, texts: &[String], plan: &DistillPlan, stop: &AtomicBool, progress: &mut dyn FnMut(DistillProgress)) -> anyhow::Result<Distilled> {
        let total = texts.len().min(plan.max_texts);
        for done in 1..=total {
            anyhow::ensure!(!stop.load(Ordering::SeqCst), "distillation stopped after {} texts", done - 1);
            std::thread::sleep(self.distill_step);
            progress(DistillProgress::Teacher { done, total, eta_secs: Some((total - done) as f64 * self.distill_step.as_secs_f64()) });
        }
        for epoch in 1..=3 {
            anyhow::ensure!(!stop.load(Ordering::SeqCst), "distillation stopped before epoch {epoch}");
            progress(DistillProgress::Epoch { epoch, epochs: 3, val_spearman: Some(0.5) });
        }
        self.distilled.store(true, Ordering::SeqCst);
        let method = self.methods().remove(0);
        Ok(Distilled { method, info: self.info(), path: plan.out_dir.join("expnet-distilled-fake.safetensors"), registered: None, val_spearman: 0.5 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenizes_with_offsets_and_pieces() {
        let b = FakeBackend::new();
        let a = b.analyze("A wonderful film").unwrap();
        let texts: Vec<&str> = a.tokens.iter().map(|t| t.text.as_str()).collect();
        assert_eq!(texts, ["[CLS]", "a", "wond", "##erful", "film", "[SEP]"]);
        assert_eq!((a.tokens[3].start, a.tokens[3].end), (6, 11));
        assert_eq!(a.tokens[2].word, a.tokens[3].word);
        assert_eq!(a.attentions.len, 6);
        let row: f32 = (0..6).map(|k| a.attentions.get(1, 2, 3, k)).sum();
        assert!((row - 1.0).abs() < 1e-4);
        assert_eq!(a.prediction.unwrap().label(), "positive");
    }

    #[test]
    fn unknown_method_is_an_error() {
        let b = FakeBackend::new();
        let a = b.analyze("ok").unwrap();
        assert!(b.explain(&a, "nope", &Progress::none()).is_err());
        assert_eq!(b.explain(&a, "expnet", &Progress::none()).unwrap().scores.len(), 3);
    }
}
