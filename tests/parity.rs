//! Parity with transformers and captum on the tiny fixture models made by
//! `scripts/reference/make_fixtures.py` (see tests/fixtures/README.md).
//!
//! Tolerances (absolute): attentions and probabilities 1e-5; logits and hidden
//! states 1e-4 (hidden values are O(1–10)); gradients w.r.t. embeddings and
//! attentions 1e-4 relative to the largest entry; saliency, grad×input,
//! integrated gradients (Gauss–Legendre, 20 steps), Chefer and Grad-SAM 1e-4
//! relative to the largest score.

use expnet::explain::integrated_gradients::{IntegratedGradients, Quadrature};
use expnet::explain::{Attribution, ExplainInput, Progress};
use expnet::model::Model;
use serde_json::Value;
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn expected(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixture(name).join("expected.json")).unwrap()).unwrap()
}

fn flat(v: &Value) -> Vec<f32> {
    match v {
        Value::Array(a) => a.iter().flat_map(flat).collect(),
        Value::Number(n) => vec![n.as_f64().unwrap() as f32],
        other => panic!("not a number array: {other}"),
    }
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn assert_close(what: &str, got: &[f32], want: &[f32], tol: f32) {
    let d = max_abs_diff(got, want);
    eprintln!("{what}: max abs diff {d:e}");
    assert!(d <= tol, "{what}: max abs diff {d:e} > {tol:e}");
}

fn assert_close_rel(what: &str, got: &[f32], want: &[f32], rel: f32) {
    let scale = want.iter().map(|v| v.abs()).fold(0.0, f32::max).max(1e-6);
    let d = max_abs_diff(got, want);
    eprintln!("{what}: max abs diff {d:e} (relative {:e})", d / scale);
    assert!(d <= rel * scale, "{what}: max abs diff {d:e} > {rel:e} x {scale:e}");
}

fn encode(model: &Model, case: &Value) -> expnet::model::Encoding {
    let text = case["text"].as_str().unwrap();
    match case["text_pair"].as_str() {
        Some(p) => model.encode_pair(text, p).unwrap(),
        None => model.encode(text).unwrap(),
    }
}

/// Forward pass: ids, attentions, hidden states, logits, probabilities.
fn check_forward(folder: &str, expected_from: &str) {
    let model = Model::load_dir(&fixture(folder)).unwrap();
    let exp = expected(expected_from);
    for case in exp["cases"].as_array().unwrap() {
        let enc = encode(&model, case);
        let ids: Vec<u32> = serde_json::from_value(case["input_ids"].clone()).unwrap();
        assert_eq!(enc.ids, ids, "{folder}: ids");
        let offsets: Vec<[usize; 2]> = serde_json::from_value(case["offsets"].clone()).unwrap();
        for (t, o) in enc.tokens.iter().zip(&offsets) {
            if !t.special {
                assert_eq!([t.start, t.end], *o, "{folder}: offsets of {}", t.text);
            }
        }
        let out = model.forward(&enc).unwrap();
        assert_close(&format!("{folder} attentions"), &out.attentions.data, &flat(&case["attentions"]), 1e-5);
        let hidden: Vec<f32> = out.hidden_states.iter().flatten().flatten().copied().collect();
        assert_close(&format!("{folder} hidden states"), &hidden, &flat(&case["hidden_states"]), 1e-4);
        match (&out.prediction, case["logits"].is_null()) {
            (Some(p), false) => {
                assert_close(&format!("{folder} logits"), &p.logits, &flat(&case["logits"]), 1e-4);
                assert_close(&format!("{folder} probabilities"), &p.probabilities, &flat(&case["probabilities"]), 1e-5);
                assert_eq!(p.index as u64, case["predicted_index"].as_u64().unwrap());
            }
            (None, true) => {}
            _ => panic!("{folder}: head presence differs from the reference"),
        }
    }
}

#[test]
fn bert_matches_transformers() {
    check_forward("tiny-bert", "tiny-bert");
}

#[test]
fn distilbert_matches_transformers() {
    check_forward("tiny-distilbert", "tiny-distilbert");
}

#[test]
fn roberta_matches_transformers() {
    check_forward("tiny-roberta", "tiny-roberta");
}

#[test]
fn bare_encoder_matches_transformers() {
    check_forward("tiny-bert-encoder", "tiny-bert-encoder");
}

#[test]
fn f16_weights_are_computed_in_f32() {
    check_forward("tiny-bert-f16", "tiny-bert-f16");
}

#[test]
fn vocab_txt_fallback_tokenizes_like_tokenizer_json() {
    check_forward("tiny-bert-vocab-only", "tiny-bert");
}

/// Gradients and gradient-based attributions against transformers + captum.
fn check_gradients(folder: &str) {
    let model = Model::load_dir(&fixture(folder)).unwrap();
    let exp = expected(folder);
    for case in exp["cases"].as_array().unwrap() {
        let enc = encode(&model, case);
        let out = model.forward(&enc).unwrap();
        let target = case["predicted_index"].as_u64().unwrap() as usize;
        let g = model.gradients(&enc, target).unwrap();
        assert_close(&format!("{folder} word embeddings"), &g.embeddings, &flat(&case["word_embeddings"]), 1e-6);
        assert_close_rel(&format!("{folder} d/d embeddings"), &g.embedding_grads, &flat(&case["grad_inputs_embeds"]), 1e-4);
        assert_close_rel(&format!("{folder} d/d attentions"), &g.attention_grads.data, &flat(&case["grad_attentions"]), 1e-4);

        let input = ExplainInput::new(&model, &enc, &out, target);
        let attr = &case["attributions"];
        for name in ["saliency", "chefer", "grad_sam", "rollout", "attention"] {
            let m = expnet::explain::create(name).unwrap();
            let got = m.explain(&input, &Progress::none()).unwrap().scores;
            assert_close_rel(&format!("{folder} {name}"), &got, &flat(&attr[name]), 1e-4);
        }
        // grad×input sums g·x over the embedding; where the word embedding feeds a LayerNorm
        // directly (DeBERTa-v3, ModernBERT) that sum cancels to ~0 (LayerNorm is scale
        // invariant), so the yardstick is the size of the summed terms, max_t Σ_d |g·x|.
        let got = expnet::explain::create("grad_x_input").unwrap().explain(&input, &Progress::none()).unwrap().scores;
        let want = flat(&attr["grad_x_input"]);
        let terms = g.embedding_grads.chunks(g.hidden).zip(g.embeddings.chunks(g.hidden));
        let term_scale = terms.map(|(gr, x)| gr.iter().zip(x).map(|(a, b)| (a * b).abs()).sum::<f32>()).fold(0.0, f32::max);
        let scale = want.iter().map(|v| v.abs()).fold(term_scale, f32::max);
        let d = max_abs_diff(&got, &want);
        eprintln!("{folder} grad_x_input: max abs diff {d:e} (relative to the summed terms {:e})", d / scale);
        assert!(d <= 1e-4 * scale, "{folder} grad_x_input: max abs diff {d:e} > 1e-4 x {scale:e}");
        let ig = IntegratedGradients { steps: 20, quadrature: Quadrature::GaussLegendre, batch: 7, ..Default::default() };
        let e = ig.explain(&input, &Progress::none()).unwrap();
        let want = &attr["integrated_gradients"]["gausslegendre"];
        assert_close_rel(&format!("{folder} integrated gradients"), &e.scores, &flat(&want["attributions"]), 1e-4);
        let gap = e.notes.iter().find(|(k, _)| k == "completeness_gap").unwrap().1;
        let ref_gap = want["delta_fixed_positions"].as_f64().unwrap().abs();
        assert!((gap - ref_gap).abs() < 1e-3, "{folder}: completeness gap {gap} vs captum {ref_gap}");
    }
}

#[test]
fn bert_gradients_match_captum() {
    check_gradients("tiny-bert");
}

#[test]
fn distilbert_gradients_match_captum() {
    check_gradients("tiny-distilbert");
}

#[test]
fn roberta_gradients_match_captum() {
    check_gradients("tiny-roberta");
}

#[test]
fn electra_matches_transformers() {
    check_forward("tiny-electra", "tiny-electra");
}

#[test]
fn electra_gradients_match_captum() {
    check_gradients("tiny-electra");
}

#[test]
fn albert_matches_transformers() {
    check_forward("tiny-albert", "tiny-albert");
}

#[test]
fn albert_gradients_match_captum() {
    check_gradients("tiny-albert");
}

/// XLM-RoBERTa is RoBERTa with a SentencePiece (Unigram) tokenizer.json.
#[test]
fn xlm_roberta_with_unigram_tokenizer_matches_transformers() {
    check_forward("tiny-xlm-roberta", "tiny-xlm-roberta");
}

#[test]
fn xlm_roberta_gradients_match_captum() {
    check_gradients("tiny-xlm-roberta");
}

#[test]
fn deberta_v3_matches_transformers() {
    check_forward("tiny-deberta-v3", "tiny-deberta-v3");
}

#[test]
fn deberta_v3_gradients_match_captum() {
    check_gradients("tiny-deberta-v3");
}

#[test]
fn deberta_v2_matches_transformers() {
    check_forward("tiny-deberta-v2", "tiny-deberta-v2");
}

#[test]
fn deberta_v2_gradients_match_captum() {
    check_gradients("tiny-deberta-v2");
}

#[test]
fn modernbert_matches_transformers() {
    check_forward("tiny-modernbert", "tiny-modernbert");
}

#[test]
fn modernbert_gradients_match_captum() {
    check_gradients("tiny-modernbert");
}

/// Batched, padded logits (perturbation methods) equal one-by-one logits for every family.
#[test]
fn padded_batches_match_single_runs_for_every_family() {
    for folder in ["tiny-electra", "tiny-albert", "tiny-xlm-roberta", "tiny-deberta-v3", "tiny-deberta-v2", "tiny-modernbert"] {
        let model = Model::load_dir(&fixture(folder)).unwrap();
        let a = model.encode("the film was wonderful").unwrap();
        let b = model.encode("dull").unwrap();
        let batch = model.logits_batch(&[&a.ids, &b.ids], &[&a.type_ids, &b.type_ids]).unwrap();
        for (enc, got) in [&a, &b].into_iter().zip(&batch) {
            let single = model.forward(enc).unwrap().prediction.unwrap().logits;
            assert_close(&format!("{folder} padded batch logits"), got, &single, 1e-4);
        }
    }
}

/// A cancellable run (the TUI) cuts IG's points into smaller batches than an
/// uncancellable one (CLI, eval): the scores must not depend on the cut.
#[test]
fn ig_scores_do_not_depend_on_the_batch_cut() {
    let model = Model::load_dir(&fixture("tiny-bert")).unwrap();
    let enc = model.encode("an unbelievably dull film that never finds its feet").unwrap();
    let out = model.forward(&enc).unwrap();
    let input = ExplainInput::new(&model, &enc, &out, out.prediction.as_ref().unwrap().index);
    let ig = IntegratedGradients::default();
    assert!(ig.points_per_batch(enc.len(), true) < ig.points_per_batch(enc.len(), false), "the two runs must batch differently");
    let cut = ig.explain(&input, &Progress::new(expnet::explain::CancelToken::new(), None)).unwrap().scores;
    let whole = ig.explain(&input, &Progress::none()).unwrap().scores;
    let scale = whole.iter().fold(0f32, |m, v| m.max(v.abs()));
    assert!(max_abs_diff(&cut, &whole) <= 1e-5 * scale.max(1e-6), "{cut:?} vs {whole:?}");
}

/// IG completeness gap shrinks as the number of steps grows.
#[test]
fn ig_completeness_gap_shrinks_with_steps() {
    let model = Model::load_dir(&fixture("tiny-bert")).unwrap();
    let enc = model.encode("an unbelievably dull film").unwrap();
    let out = model.forward(&enc).unwrap();
    let input = ExplainInput::new(&model, &enc, &out, out.prediction.as_ref().unwrap().index);
    let gap = |steps: usize| {
        let ig = IntegratedGradients { steps, quadrature: Quadrature::Trapezoid, batch: 16, ..Default::default() };
        ig.explain(&input, &Progress::none()).unwrap().notes[0].1
    };
    let (g4, g16, g64) = (gap(4), gap(16), gap(64));
    assert!(g16 < g4 && g64 < g16, "gaps {g4} {g16} {g64} do not shrink");
}

/// candle-transformers' BERT as an independent cross-check of the hidden states.
#[test]
fn hidden_states_match_candle_transformers_bert() {
    use candle_core::{DType, Device, Tensor};
    use candle_transformers::models::bert::{BertModel, Config};
    let dir = fixture("tiny-bert-encoder");
    let cfg: Config = serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let vb = unsafe {
        candle_nn::VarBuilder::from_mmaped_safetensors(&[dir.join("model.safetensors")], DType::F32, &Device::Cpu).unwrap()
    };
    let reference = BertModel::load(vb, &cfg).unwrap();
    let model = Model::load_dir(&dir).unwrap();
    let enc = model.encode("the film was good").unwrap();
    let ids = Tensor::new(enc.ids.as_slice(), &Device::Cpu).unwrap().unsqueeze(0).unwrap();
    let types = Tensor::new(enc.type_ids.as_slice(), &Device::Cpu).unwrap().unsqueeze(0).unwrap();
    let want: Vec<f32> = reference.forward(&ids, &types, None).unwrap().flatten_all().unwrap().to_vec1().unwrap();
    let got: Vec<f32> = model.forward(&enc).unwrap().hidden_states.last().unwrap().iter().flatten().copied().collect();
    assert_close("candle-transformers last hidden state", &got, &want, 1e-4);
}
