//! Decomposition family (value norms, ALTI, GlobEnc) against the float64 Python
//! reference `scripts/reference/decomposition.py` on the tiny fixture models
//! (BERT, DistilBERT, RoBERTa), plus GlobEnc, and the laws they must obey.
//!
//! Tolerance: max abs difference ≤ 1e-4 × the largest reference value, for
//! every per-layer matrix and for the scores.

use expnet::explain::decomposition::{aggregate, alti_contributions, globenc_contributions, value_norm_matrix};
use expnet::explain::{ExplainInput, Progress, create};
use expnet::model::{Encoding, Model};
use serde_json::Value;
use std::path::{Path, PathBuf};

const MODELS: &[&str] = &["tiny-bert", "tiny-distilbert", "tiny-roberta"];
const REL: f64 = 1e-4;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn reference(name: &str) -> Value {
    let path = fixture(name).join("decomposition.json");
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn flat(v: &Value) -> Vec<f64> {
    match v {
        Value::Array(a) => a.iter().flat_map(flat).collect(),
        Value::Number(n) => vec![n.as_f64().unwrap()],
        other => panic!("not a number array: {other}"),
    }
}

fn assert_close_rel(what: &str, got: &[f64], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().map(|v| v.abs()).fold(0.0, f64::max).max(1e-12);
    let d = got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    assert!(d <= REL * scale, "{what}: max abs diff {d:e} > {REL:e} x {scale:e}");
    d / scale
}

fn encoding(model: &Model, case: &Value) -> Encoding {
    let text = case["text"].as_str().unwrap();
    let enc = match case["text_pair"].as_str() {
        Some(p) => model.encode_pair(text, p).unwrap(),
        None => model.encode(text).unwrap(),
    };
    let ids: Vec<u32> = serde_json::from_value(case["input_ids"].clone()).unwrap();
    assert_eq!(enc.ids, ids, "ids");
    enc
}

#[test]
fn matches_the_python_reference() {
    let mut worst: f64 = 0.0;
    for name in MODELS {
        let model = Model::load_dir(&fixture(name)).unwrap();
        let reference = reference(name);
        for (k, case) in reference["cases"].as_array().unwrap().iter().enumerate() {
            let enc = encoding(&model, case);
            let fwd = model.forward(&enc).unwrap();
            let n = enc.len();
            let layers = model.num_layers();
            let vn_want = flat(&case["value_norm_matrices"]);
            let alti_want = flat(&case["alti_layers"]);
            let globenc_want = flat(&case["globenc_layers"]);
            let alti = alti_contributions(&model, &fwd).unwrap();
            let globenc = globenc_contributions(&model, &fwd).unwrap();
            for l in 0..layers {
                let want = &vn_want[l * n * n..(l + 1) * n * n];
                let got = value_norm_matrix(&model, &fwd, l).unwrap();
                worst = worst.max(assert_close_rel(&format!("{name} case {k} value norms layer {l}"), &got, want));
                let want = &alti_want[l * n * n..(l + 1) * n * n];
                worst = worst.max(assert_close_rel(&format!("{name} case {k} ALTI layer {l}"), &alti[l], want));
                let want = &globenc_want[l * n * n..(l + 1) * n * n];
                worst = worst.max(assert_close_rel(&format!("{name} case {k} GlobEnc layer {l}"), &globenc[l], want));
            }
            let agg = aggregate(&alti, n);
            worst = worst.max(assert_close_rel(&format!("{name} case {k} ALTI rollout"), &agg[..n], &flat(&case["alti"])));
            let agg = aggregate(&globenc, n);
            worst = worst.max(assert_close_rel(&format!("{name} case {k} GlobEnc rollout"), &agg[..n], &flat(&case["globenc"])));

            // Through the registry, as explain/eval/TUI run them.
            let target = fwd.prediction.as_ref().map_or(0, |p| p.index);
            let input = ExplainInput::new(&model, &enc, &fwd, target);
            for method in ["value_norm", "alti", "globenc"] {
                let m = create(method).unwrap();
                assert_eq!(serde_json::to_value(m.family()).unwrap(), "decomposition");
                let e = m.explain(&input, &Progress::none()).unwrap();
                let got: Vec<f64> = e.scores.iter().map(|&v| v as f64).collect();
                assert_eq!(e.forward_passes, 0, "forward-only");
                assert_close_rel(&format!("{name} case {k} {method}"), &got, &flat(&case[method]));
            }
        }
    }
    eprintln!("worst relative difference vs the Python reference: {worst:e}");
}

#[test]
fn alti_and_globenc_rows_are_distributions() {
    let texts = ["a", "The film was wonderful and the actors were great.", "no no no no no no no no no no no no no"];
    for name in MODELS {
        let model = Model::load_dir(&fixture(name)).unwrap();
        for text in texts {
            let enc = model.encode(text).unwrap();
            let fwd = model.forward(&enc).unwrap();
            let n = enc.len();
            let layers = alti_contributions(&model, &fwd).unwrap();
            assert_eq!(layers.len(), model.num_layers());
            for (l, c) in layers.iter().chain(&globenc_contributions(&model, &fwd).unwrap()).enumerate() {
                for (i, row) in c.chunks(n).enumerate() {
                    let s: f64 = row.iter().sum();
                    assert!((s - 1.0).abs() < 1e-9, "{name} layer {l} row {i} sums to {s}");
                    assert!(row.iter().all(|&v| v >= 0.0), "{name} layer {l} row {i} has a negative entry");
                }
            }
            let agg = aggregate(&layers, n);
            for row in agg.chunks(n) {
                assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-9);
            }
            // Value norms are norms: non-negative, and zero exactly where attention is zero.
            let vn = value_norm_matrix(&model, &fwd, model.num_layers() - 1).unwrap();
            assert!(vn.iter().all(|&v| v >= 0.0 && v.is_finite()));
        }
    }
}

#[test]
fn out_of_range_layer_is_an_error() {
    let model = Model::load_dir(&fixture("tiny-bert")).unwrap();
    let enc = model.encode("fine").unwrap();
    let fwd = model.forward(&enc).unwrap();
    let err = value_norm_matrix(&model, &fwd, 7).unwrap_err().to_string();
    assert!(err.contains("out of range"), "{err}");
}
