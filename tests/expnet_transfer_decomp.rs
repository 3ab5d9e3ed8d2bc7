//! Decomposition feature groups of shape-free (transfer) ExpNets
//! (`expnet train --decomposition`): value norms and ALTI per depth bin.

mod common;

use std::process::Command;

use expnet::explain::{Attribution, ExplainInput, Progress, alti::Alti};
use expnet::expnet::decomp_features::{self, DecompositionGroups};
use expnet::expnet::{ExpNet, ExpNetMethod, FeatureSpec, NetConfig, Normalization};
use expnet::model::Model;

use common::fixture;

fn load(name: &str) -> Model {
    Model::load(fixture(name).to_str().unwrap()).unwrap()
}

fn spec(groups: &str, bins: usize) -> FeatureSpec {
    let mut s = FeatureSpec::shape_free(2, 4, bins, Normalization::PerSentenceRank);
    s.decomposition = DecompositionGroups::parse(groups).unwrap();
    s.validate().unwrap();
    s
}

#[test]
fn decomposition_columns_keep_one_width_across_encoders_and_a_transfer_net_scores_each() {
    let spec = spec("value_norm,alti,globenc", 3);
    let attention_only = FeatureSpec::shape_free(2, 4, 3, Normalization::PerSentenceRank);
    assert_eq!(spec.dim(), attention_only.dim() + 3 * (4 + 2 + 2));
    assert_eq!(spec.feature_names().len(), spec.dim());
    let net = std::sync::Arc::new(ExpNet::untrained(spec.clone(), NetConfig::default(), 7).unwrap());
    let method = ExpNetMethod::new(net.clone());
    let mut shapes = Vec::new();
    for name in ["tiny-bert", "tiny-distilbert", "tiny-albert"] {
        let model = load(name);
        shapes.push((model.num_layers(), model.num_heads()));
        let enc = model.encode("a great movie, not a bad one").unwrap();
        let fwd = model.forward(&enc).unwrap();
        let raw = decomp_features::raw_rows(&spec.decomposition, &model, &fwd).unwrap();
        assert_eq!(raw[0].len(), spec.decomposition.raw_width(model.num_layers(), model.num_heads()), "{name}");
        let cols = decomp_features::derive(&spec, &raw, &enc.special_mask(), model.num_layers(), model.num_heads()).unwrap();
        assert!(cols.iter().all(|r| r.len() == spec.decomposition.width(3)), "{name}");
        net.check_applicable(&model).unwrap();
        let e = method.explain_forward(Some(&model), &enc, &fwd, 0).unwrap();
        assert_eq!(e.scores.len(), enc.len(), "{name}");
        assert!(e.scores.iter().all(|s| s.is_finite() && (0.0..=1.0).contains(s)), "{name}: {:?}", e.scores);
        // Attentions alone cannot feed it: a clear error, not a short row.
        let err = net.score(&fwd.attentions, &enc.special_mask()).unwrap_err().to_string();
        assert!(err.contains("decomposition") && err.contains("hint"), "{err}");
        assert!(method.explain_forward(None, &enc, &fwd, 0).unwrap_err().to_string().contains("needs the model"));
    }
    assert_ne!(shapes[0], shapes[2], "the fixtures must differ in depth: {shapes:?}");
}

/// The rolled-out ALTI column at the deepest layer is the `alti` method's
/// score, and after rank normalisation the last bin's column orders the
/// content tokens exactly as `alti` does.
#[test]
fn the_last_bins_alti_rollout_is_the_alti_method() {
    let spec = spec("alti", 2);
    for name in ["tiny-bert", "tiny-albert"] {
        let model = load(name);
        let enc = model.encode("the plot was dull but the actors were wonderful").unwrap();
        let fwd = model.forward(&enc).unwrap();
        let alti = Alti.explain(&ExplainInput::new(&model, &enc, &fwd, 0), &Progress::none()).unwrap().scores;
        let (layers, heads) = (model.num_layers(), model.num_heads());
        let raw = decomp_features::raw_rows(&spec.decomposition, &model, &fwd).unwrap();
        for (j, r) in raw.iter().enumerate() {
            assert!((r[2 * (layers - 1) + 1] - alti[j]).abs() < 1e-5, "{name} token {j}: {} vs {}", r[2 * (layers - 1) + 1], alti[j]);
        }
        let special = enc.special_mask();
        let cols = decomp_features::derive(&spec, &raw, &special, layers, heads).unwrap();
        // Columns: [bin0.layer, bin0.rollout, bin1.layer, bin1.rollout].
        let content: Vec<usize> = (0..enc.len()).filter(|&i| !special[i]).collect();
        assert!(content.len() >= 6);
        let mut distinct = 0;
        for &a in &content {
            for &b in &content {
                let (da, db) = (cols[a][3], cols[b][3]);
                if (alti[a] - alti[b]).abs() > 1e-6 {
                    distinct += 1;
                    assert_eq!(da > db, alti[a] > alti[b], "{name}: tokens {a},{b} ranked {da},{db}, alti {},{}", alti[a], alti[b]);
                }
            }
        }
        assert!(distinct > 0, "{name}: alti gives every token the same score");
        // The column is the rank, scaled to 0..=1: the top alti token gets 1.
        let top = *content.iter().max_by(|&&a, &&b| alti[a].total_cmp(&alti[b])).unwrap();
        assert!((cols[top][3] - 1.0).abs() < 1e-6, "{name}: {:?}", cols[top]);
    }
}


#[test]
fn train_with_decomposition_records_it_caches_it_and_explains_another_model() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("rationales");
    common::tiny_rationale_set(&data, 20);
    let (bert, albert) = (fixture("tiny-bert"), fixture("tiny-albert"));
    let source = format!("hatexplain:{}#dev", data.display());
    let cache = dir.path().join("cache");
    let out = dir.path().join("decomp.safetensors");
    let train = |extra: &[&str]| {
        common::train(&bert, &format!("{source},{source}@{}", albert.display()), &out, dir.path())
            .args(["--normalization", "rank", "--epochs", "2"])
            .args(extra)
            .output()
            .unwrap()
    };
    let refused = train(&["--decomposition", "alti"]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && stderr.contains("--depth-bins") && stderr.trim().lines().count() == 1, "{stderr}");
    let bad = train(&["--depth-bins", "2", "--decomposition", "alti,lrp"]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("valid: value_norm"));

    let run = train(&["--depth-bins", "2", "--decomposition", "value_norm,alti", "--drop", "token_to_cls,received,self_attn"]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let net = ExpNet::load(&out).unwrap();
    assert_eq!(net.spec().decomposition, DecompositionGroups { value_norm: true, alti: true, globenc: false });
    assert_eq!(net.spec().dim(), 3 * 2 + 2 + (4 + 2) * 2);
    // One cache file per group and source model.
    let cached = std::fs::read_dir(&cache).unwrap().filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with("decomp-")).count();
    assert_eq!(cached, 4);
    // The feature rows of training equal the ones scoring computes.
    let bert_model = load("tiny-bert");
    let set = expnet::cli::train::features_for(&bert_model, &source, net.spec(), &cache).unwrap();
    let ex = &set.examples[0];
    let ds = expnet::data::load(&format!("hatexplain:{}", data.display()), expnet::data::Split::Dev).unwrap();
    let first = ds.examples.iter().find(|e| e.id == ex.id).unwrap();
    let enc = bert_model.encode(&first.text()).unwrap();
    let fwd = bert_model.forward(&enc).unwrap();
    let src_rows = decomp_features::raw_rows(&net.spec().decomposition, &bert_model, &fwd).unwrap();
    let src = expnet::expnet::FeatureSource {
        attentions: &fwd.attentions,
        special: &enc.special_mask(),
        hidden_states: &fwd.hidden_states,
        lens: &[],
        decision: &[],
        target: 0,
        decomposition: &src_rows,
        gradient: &[],
    };
    let direct = expnet::expnet::extract_full(net.spec(), &src).unwrap();
    for (a, b) in ex.features.iter().zip(&direct) {
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() < 1e-5, "{a:?} vs {b:?}");
        }
    }

    let explain = Command::new(env!("CARGO_BIN_EXE_expnet"))
        .args(["explain", "--model", fixture("tiny-distilbert").to_str().unwrap(), "--methods", "expnet,alti", "--expnet", out.to_str().unwrap(), "a nice day"])
        .env("EXPNET_CACHE", dir.path().join("explainers"))
        .output()
        .unwrap();
    assert!(explain.status.success(), "{}", String::from_utf8_lossy(&explain.stderr));
    assert!(String::from_utf8_lossy(&explain.stdout).contains("expnet (transfer)"));
    // Files without the field still load, with the groups off.
    let old = ExpNet::load(fixture("tiny-bert-expnet.safetensors")).unwrap();
    assert!(old.spec().decomposition.is_off());
}
