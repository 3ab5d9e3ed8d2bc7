//! Gradient feature group of ExpNets (`expnet train --gradient`): the
//! per-token scores of the one shared backward pass (issue 11, item 4).

mod common;

use std::process::Command;

use expnet::explain::{Attribution, ExplainInput, Progress, create};
use expnet::expnet::grad_features::{self, GradientGroups, RAW_WIDTH};
use expnet::expnet::{ExpNet, ExpNetMethod, FeatureSpec, NetConfig, Normalization};
use expnet::model::Model;

use common::fixture;

fn load(name: &str) -> Model {
    Model::load(fixture(name).to_str().unwrap()).unwrap()
}

/// The class every method explains by default: the predicted one.
fn predicted(fwd: &expnet::model::ForwardOutput) -> usize {
    fwd.prediction.as_ref().unwrap().index
}

#[test]
fn gradient_columns_keep_one_width_across_encoders_and_equal_the_methods() {
    let mut spec = FeatureSpec::shape_free(2, 4, 2, Normalization::PerSentenceRank);
    spec.gradient = GradientGroups::parse("all").unwrap();
    spec.validate().unwrap();
    let attention_only = FeatureSpec::shape_free(2, 4, 2, Normalization::PerSentenceRank);
    assert_eq!(spec.dim(), attention_only.dim() + 4);
    assert_eq!(spec.feature_names().len(), spec.dim());
    let net = std::sync::Arc::new(ExpNet::untrained(spec.clone(), NetConfig::default(), 3).unwrap());
    let method = ExpNetMethod::new(net.clone());
    assert!(method.reads_shared_gradients() && method.needs_classifier());
    let mut shapes = Vec::new();
    // tiny BERT and DistilBERT share a shape; ALBERT is deeper.
    for name in ["tiny-bert", "tiny-distilbert", "tiny-albert"] {
        let model = load(name);
        shapes.push((model.num_layers(), model.num_heads()));
        let enc = model.encode("a great movie, not a bad one").unwrap();
        let fwd = model.forward(&enc).unwrap();
        let target = predicted(&fwd);
        let input = ExplainInput::new(&model, &enc, &fwd, target);
        let raw = grad_features::raw_rows(input.gradients().unwrap());
        assert_eq!(raw.len(), enc.len(), "{name}");
        assert!(raw.iter().all(|r| r.len() == RAW_WIDTH), "{name}");
        // Each raw column is exactly that method's score on the shared pass.
        for (c, m) in grad_features::SIGNALS.iter().enumerate() {
            let scores = create(m).unwrap().explain(&input, &Progress::none()).unwrap().scores;
            for (j, s) in scores.iter().enumerate() {
                assert!((raw[j][c] - s).abs() <= 1e-6 * s.abs().max(1.0), "{name} {m} token {j}: {} vs {s}", raw[j][c]);
            }
        }
        let cols = grad_features::derive(&spec, &raw, &enc.special_mask()).unwrap();
        assert!(cols.iter().all(|r| r.len() == spec.gradient.width()), "{name}");
        net.check_applicable(&model).unwrap();
        let e = method.explain(&input, &Progress::none()).unwrap();
        assert_eq!((e.scores.len(), e.forward_passes), (enc.len(), 1), "{name}");
        assert!(e.scores.iter().all(|s| s.is_finite() && (0.0..=1.0).contains(s)), "{name}: {:?}", e.scores);
        // Without the backward pass: a one-line error, not a short row.
        let err = method.explain_forward(Some(&model), &enc, &fwd, target).unwrap_err().to_string();
        assert!(err.contains("gradient features") && !err.contains('\n'), "{err}");
        let err = net.score(&fwd.attentions, &enc.special_mask()).unwrap_err().to_string();
        assert!(err.contains("backward pass") && err.contains("hint"), "{err}");
    }
    assert_ne!(shapes[0], shapes[2], "the fixtures must differ in shape: {shapes:?}");
    // A bare encoder has no logit to differentiate.
    let err = net.check_applicable(&load("tiny-bert-encoder")).unwrap_err().to_string();
    assert!(err.contains("bare encoder"), "{err}");
}

/// Mixed-source training: each source's gradient rows come from its own
/// classifier (for the class that classifier predicts), and the rows a
/// training run uses equal the ones scoring computes.
#[test]
fn train_with_gradient_reads_each_source_through_its_own_model() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("rationales");
    common::tiny_rationale_set(&data, 20);
    let (bert, distil) = (fixture("tiny-bert"), fixture("tiny-distilbert"));
    let source = format!("hatexplain:{}#dev", data.display());
    let cache = dir.path().join("cache");
    let out = dir.path().join("grad.safetensors");
    let train = |extra: &[&str]| {
        common::train(&bert, &format!("{source},{source}@{}", distil.display()), &out, dir.path())
            .args(["--normalization", "rank", "--epochs", "2", "--depth-bins", "2", "--drop", "token_to_cls,received,self_attn"])
            .args(extra)
            .output()
            .unwrap()
    };
    let bad = train(&["--gradient", "saliency,ig"]);
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success() && stderr.contains("valid: saliency") && stderr.trim().lines().count() == 1, "{stderr}");
    let bad = train(&["--gradient", "saliency", "--gradient-normalization", "minmax"]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("valid: z, rank"));

    let run = train(&["--gradient", "all", "--gradient-normalization", "z", "--prior", "saliency"]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let net = ExpNet::load(&out).unwrap();
    assert_eq!(net.spec().gradient.width(), 4);
    assert_eq!(net.spec().gradient.normalization, Some(Normalization::PerSentenceZ));
    assert_eq!(net.spec().dim(), 3 * 2 + 2 + 4);

    // One cache per source model; each holds that model's backward pass.
    let ds = expnet::data::load(&format!("hatexplain:{}", data.display()), expnet::data::Split::Dev).unwrap();
    let first = ds.examples.iter().find(|e| e.rationale.is_some()).unwrap();
    let caches: Vec<_> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("grad-"))
        .map(|p| grad_features::load_raw(&p).unwrap())
        .collect();
    assert_eq!(caches.len(), 2);
    let mut own = Vec::new();
    for name in ["tiny-bert", "tiny-distilbert"] {
        let model = load(name);
        let enc = model.encode(&first.text()).unwrap();
        let fwd = model.forward(&enc).unwrap();
        let target = predicted(&fwd);
        let g = model.gradients(&enc, target).unwrap();
        let raw = grad_features::raw_rows(&g);
        let matching: Vec<usize> = (0..2)
            .filter(|&k| {
                let (id, t, rows) = &caches[k][0];
                id == &first.id && *t == target && rows.len() == raw.len()
                    && rows.iter().flatten().zip(raw.iter().flatten()).all(|(a, b)| (a - b).abs() <= 1e-4 * b.abs().max(1e-2))
            })
            .collect();
        assert_eq!(matching.len(), 1, "{name}: its rows are in exactly one cache");
        own.push(matching[0]);
        // The training rows equal the rows scoring computes with this model.
        let set = expnet::cli::train::features_for(&model, &source, net.spec(), &cache).unwrap();
        let ex = set.examples.iter().find(|e| e.id == first.id).unwrap();
        let src_rows = expnet::expnet::FeatureSource {
            attentions: &fwd.attentions,
            special: &enc.special_mask(),
            hidden_states: &fwd.hidden_states,
            lens: &[],
            decision: &[],
            target,
            decomposition: &[],
            gradient: &raw,
        };
        let direct = expnet::expnet::extract_full(net.spec(), &src_rows).unwrap();
        for (a, b) in ex.features.iter().zip(&direct) {
            for (x, y) in a.iter().zip(b) {
                assert!((x - y).abs() < 1e-3, "{name}: {a:?} vs {b:?}");
            }
        }
    }
    assert_ne!(own[0], own[1], "the two sources must come from different models");

    let explain = Command::new(env!("CARGO_BIN_EXE_expnet"))
        .args(["explain", "--model", distil.to_str().unwrap(), "--methods", "expnet,saliency", "--expnet", out.to_str().unwrap(), "a nice day", "a bad day"])
        .env("EXPNET_CACHE", dir.path().join("explainers"))
        .output()
        .unwrap();
    assert!(explain.status.success(), "{}", String::from_utf8_lossy(&explain.stderr));
    assert!(String::from_utf8_lossy(&explain.stdout).contains("expnet (transfer)"));
}
