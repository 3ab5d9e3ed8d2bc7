//! The hand-written training step against candle's autograd (no dropout:
//! every weight gradient within 1e-4 of the gradient's scale, the loss
//! within 1e-5) on the tiny BERT fixture and the embedded MiniLM (whose
//! sizes take the threaded kernels), and with dropout against finite
//! differences of the same seeded step.

use crate::finetune::Trainable;
use crate::model::encoder::{EncoderInput, RunMode};
use candle_core::backprop::GradStore;
use candle_core::{Device, Tensor, Var};
use std::path::Path;

fn trainable(dir: &str) -> Trainable {
    let labels = vec!["negative".to_string(), "positive".to_string()];
    Trainable::from_base(&Path::new(env!("CARGO_MANIFEST_DIR")).join(dir), &labels, 5).unwrap()
}

/// A padded batch: (ids, types, positions, mask, flat ids).
fn batch(t: &Trainable, texts: &[&str]) -> (Tensor, Tensor, Tensor, Option<Tensor>, Vec<u32>) {
    let m = &t.model;
    let encs: Vec<_> = texts.iter().map(|s| m.encode(s).unwrap()).collect();
    let ids: Vec<&[u32]> = encs.iter().map(|e| e.ids.as_slice()).collect();
    let types: Vec<&[u32]> = encs.iter().map(|e| e.type_ids.as_slice()).collect();
    let (ids, types, pos, mask) = m.batch_input(&ids, &types).unwrap();
    let flat = ids.flatten_all().unwrap().to_vec1::<u32>().unwrap();
    (ids, types, pos, mask, flat)
}

const TEXTS: [&str; 3] = ["the film was wonderful", "dull", "an unbelievably dull and overlong film, sadly"];

/// (loss, gradients) of the hand-written step.
fn fast_step(t: &Trainable, texts: &[&str], labels: &[u32], dropout: f32, seed: u64) -> (f32, GradStore) {
    let (ids, types, pos, mask, flat) = batch(t, texts);
    let enc = &t.model.encoder;
    let embeds = enc.embed_words(&ids).unwrap();
    let input = EncoderInput { word_embeds: &embeds, position_ids: &pos, type_ids: &types, attention_mask: mask.as_ref() };
    let labels = Tensor::new(labels, &Device::Cpu).unwrap();
    super::step(enc, &input, &flat, &labels, dropout, seed, false).unwrap().expect("the hand-written step applies")
}

fn graph_step(t: &Trainable, texts: &[&str], labels: &[u32]) -> (f32, GradStore) {
    let (ids, types, pos, mask, _) = batch(t, texts);
    let enc = &t.model.encoder;
    let embeds = enc.embed_words(&ids).unwrap();
    let input = EncoderInput { word_embeds: &embeds, position_ids: &pos, type_ids: &types, attention_mask: mask.as_ref() };
    let mode = RunMode { differentiable: true, attention_probes: false, dropout: None };
    let logits = enc.forward_graph(&input, mode).unwrap().logits.unwrap();
    let loss = candle_nn::loss::cross_entropy(&logits, &Tensor::new(labels, &Device::Cpu).unwrap()).unwrap();
    (loss.to_scalar::<f32>().unwrap(), loss.backward().unwrap())
}

fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

fn check_against_graph(dir: &str, texts: &[&str], labels: &[u32]) {
    let t = trainable(dir);
    let (fl, fg) = fast_step(&t, texts, labels, 0.0, 1);
    let (gl, gg) = graph_step(&t, texts, labels);
    assert!((fl - gl).abs() < 1e-5, "{dir}: loss {fl} vs graph {gl}");
    let mut checked = 0;
    for (name, var) in t.vars() {
        let want = gg.get(var.as_tensor()).unwrap_or_else(|| panic!("{dir}: graph has no gradient for {name}"));
        let got = fg.get(var.as_tensor()).unwrap_or_else(|| panic!("{dir}: no gradient for {name}"));
        assert_eq!(got.dims(), want.dims(), "{dir}: {name}");
        let (a, b) = (values(got), values(want));
        let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
        let diff = a.iter().zip(&b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
        assert!(diff <= 1e-4 * scale + 1e-7, "{dir}: {name} differs by {diff:e} (scale {scale:e})");
        checked += 1;
    }
    assert!(checked >= 16 + 2, "{dir}: only {checked} parameters");
}

#[test]
fn weight_gradients_match_autograd_on_the_tiny_bert() {
    check_against_graph("tests/fixtures/tiny-bert", &TEXTS, &[1, 0, 0]);
    // One text: no padding, no mask.
    check_against_graph("tests/fixtures/tiny-bert", &TEXTS[..1], &[1]);
}

#[test]
fn weight_gradients_match_autograd_on_the_embedded_minilm() {
    let texts = ["a gripping, beautifully shot film", "the plot is thin and the jokes fall flat every time", "fine", "not bad at all, really"];
    check_against_graph("assets/models/minilm-sst2", &texts, &[1, 0, 1, 1]);
}

/// Σ grad·direction against the central difference of the seeded loss.
#[test]
fn dropout_step_matches_finite_differences() {
    let t = trainable("tests/fixtures/tiny-bert");
    let labels = [1u32, 0, 0];
    let (p, seed) = (0.3, 11);
    let (l0, grads) = fast_step(&t, &TEXTS, &labels, p, seed);
    let (again, _) = fast_step(&t, &TEXTS, &labels, p, seed);
    assert_eq!(l0, again, "the same seed must give the same step");
    let (other, _) = fast_step(&t, &TEXTS, &labels, p, seed + 1);
    let (plain, _) = fast_step(&t, &TEXTS, &labels, 0.0, seed);
    assert!(other != l0 && plain != l0, "dropout had no effect: {l0} {other} {plain}");
    let picks = ["embeddings.word_embeddings.weight", "embeddings.LayerNorm.weight", "encoder.layer.0.attention.self.query.weight", "encoder.layer.1.intermediate.dense.weight", "encoder.layer.1.output.dense.bias"];
    for name in picks {
        let var: &Var = &t.vars().iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("no {name}")).1;
        let orig = var.as_tensor().copy().unwrap();
        let g = grads.get(var.as_tensor()).unwrap();
        // A unit direction half along the gradient, half random: the
        // directional derivative is then large against f32 rounding.
        let norm = |t: &Tensor| t.sqr().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap().sqrt() as f64;
        let r = Tensor::randn(0f32, 1.0, orig.shape(), &Device::Cpu).unwrap();
        let dir = ((g / norm(g)).unwrap() + (&r / norm(&r)).unwrap()).unwrap();
        let dir = (&dir / norm(&dir)).unwrap();
        let analytic = (g * &dir).unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap() as f64;
        let eps = 2e-3;
        let at = |s: f64| {
            var.set(&(&orig + (&dir * s).unwrap()).unwrap()).unwrap();
            fast_step(&t, &TEXTS, &labels, p, seed).0 as f64
        };
        let numeric = (at(eps) - at(-eps)) / (2.0 * eps);
        var.set(&orig).unwrap();
        assert!((numeric - analytic).abs() <= 0.02 * analytic.abs().max(numeric.abs()) + 1e-4, "{name}: analytic {analytic} vs numeric {numeric}");
    }
}
