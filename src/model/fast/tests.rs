//! The hand-written forward against the candle graph on every tiny fixture
//! model it covers, one text and a padded batch of three.
//!
//! Tolerances (absolute): attention probabilities and logits 1e-5, hidden
//! states 1e-4 (values are O(1–10); the two paths sum in different orders).

use crate::model::Model;
use crate::model::encoder::{EncoderInput, EncoderOutput, RunMode};
use candle_core::Tensor;
use std::path::Path;

fn load(name: &str) -> Model {
    Model::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)).unwrap()
}

fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims(), "shapes differ");
    values(a).iter().zip(values(b)).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// (fast, graph) outputs for a batch of texts (padded when lengths differ).
fn both(model: &Model, texts: &[&str]) -> (EncoderOutput, EncoderOutput, Option<Tensor>) {
    let encs: Vec<_> = texts.iter().map(|t| model.encode(t).unwrap()).collect();
    let ids: Vec<&[u32]> = encs.iter().map(|e| e.ids.as_slice()).collect();
    let types: Vec<&[u32]> = encs.iter().map(|e| e.type_ids.as_slice()).collect();
    let (ids, types, pos, mask) = model.batch_input(&ids, &types).unwrap();
    assert_eq!(mask.is_some(), texts.len() > 1, "the batch should be padded");
    let embeds = model.encoder.embed_words(&ids).unwrap();
    let input = EncoderInput { word_embeds: &embeds, position_ids: &pos, type_ids: &types, attention_mask: mask.as_ref() };
    assert!(super::eligible(&model.encoder, &input), "fast path not eligible");
    let fast = super::forward(&model.encoder, &input, true).unwrap().expect("fast path ran");
    let graph = model.encoder.forward_graph(&input, RunMode::INFERENCE).unwrap();
    let logits_only = super::forward(&model.encoder, &input, false).unwrap().expect("fast path ran").logits;
    (fast, graph, logits_only)
}

fn check(name: &str) {
    let model = load(name);
    let single: &[&str] = &["the film was wonderful"];
    let batch: &[&str] = &["the film was wonderful", "dull", "an unbelievably dull and overlong film, sadly"];
    for texts in [single, batch] {
        let (fast, graph, logits_only) = both(&model, texts);
        let what = format!("{name} ({} texts)", texts.len());
        assert_eq!(fast.hidden_states.len(), graph.hidden_states.len(), "{what}: hidden state count");
        assert_eq!(fast.attentions.len(), graph.attentions.len(), "{what}: attention count");
        for (i, (a, b)) in fast.hidden_states.iter().zip(&graph.hidden_states).enumerate() {
            let d = max_diff(a, b);
            assert!(d <= 1e-4, "{what}: hidden state {i} differs by {d:e}");
        }
        for (i, (a, b)) in fast.attentions.iter().zip(&graph.attentions).enumerate() {
            let d = max_diff(a, b);
            assert!(d <= 1e-5, "{what}: attention {i} differs by {d:e}");
        }
        match (&fast.logits, &graph.logits, &logits_only) {
            (Some(a), Some(b), Some(c)) => {
                let (d, e) = (max_diff(a, b), max_diff(c, b));
                assert!(d <= 1e-5 && e <= 1e-5, "{what}: logits differ by {d:e} (logits-only run {e:e})");
            }
            (None, None, None) => {}
            _ => panic!("{what}: one path has logits, the other not"),
        }
    }
}

#[test]
fn bert_fast_forward_matches_the_graph() {
    check("tiny-bert");
    check("tiny-bert-encoder");
    check("tiny-bert-f16");
}

#[test]
fn distilbert_fast_forward_matches_the_graph() {
    check("tiny-distilbert");
}

#[test]
fn roberta_and_xlm_r_fast_forward_match_the_graph() {
    check("tiny-roberta");
    check("tiny-xlm-roberta");
}

#[test]
fn electra_fast_forward_matches_the_graph() {
    check("tiny-electra");
}

#[test]
fn albert_fast_forward_matches_the_graph() {
    check("tiny-albert");
}

/// DeBERTa's relative terms and ModernBERT's layers keep the candle graph.
#[test]
fn deberta_and_modernbert_are_not_eligible() {
    for name in ["tiny-deberta-v2", "tiny-deberta-v3", "tiny-modernbert"] {
        let model = load(name);
        let enc = model.encode("a film").unwrap();
        let (ids, types, pos, _) = model.batch_input(&[&enc.ids], &[&enc.type_ids]).unwrap();
        let embeds = model.encoder.embed_words(&ids).unwrap();
        let input = EncoderInput { word_embeds: &embeds, position_ids: &pos, type_ids: &types, attention_mask: None };
        assert!(!super::eligible(&model.encoder, &input), "{name} must keep the candle graph");
    }
}

/// Larger sizes than the fixtures: several tiles and threads in every matmul
/// and the attention; compared with a plain triple loop.
#[test]
fn tiled_linear_matches_a_plain_loop() {
    use super::linear::{Epilogue, Lin, linear};
    let (m, n, k) = (300, 200, 96);
    let val = |i: usize, s: f32| (i as f32 * 0.37 + s).sin() * 0.5;
    let x: Vec<f32> = (0..m * k).map(|i| val(i, 0.1)).collect();
    let w: Vec<f32> = (0..n * k).map(|i| val(i, 0.7)).collect();
    let b: Vec<f32> = (0..n).map(|i| val(i, 1.3)).collect();
    let res: Vec<f32> = (0..m * n).map(|i| val(i, 2.1)).collect();
    let lin = Lin { w: &w, b: Some(&b), n, k };
    let ys = n + 8;
    let mut y = vec![f32::NAN; m * ys];
    linear(&x, m, &lin, &mut y, ys, 8, Epilogue::Residual(&res));
    for r in 0..m {
        for j in 0..n {
            let want: f32 = (0..k).map(|c| x[r * k + c] * w[j * k + c]).sum::<f32>() + b[j] + res[r * n + j];
            let got = y[r * ys + 8 + j];
            assert!((got - want).abs() < 1e-4, "({r}, {j}): {got} vs {want}");
        }
        assert!(y[r * ys..r * ys + 8].iter().all(|v| v.is_nan()), "columns before col0 were written");
    }
}
