//! Shape-free (transfer) ExpNets: one file for encoders of any depth and
//! head count, trained on several tasks, each read through its own model.

mod common;

use std::process::Command;

use expnet::expnet::{ExpNet, FeatureSpec, NetConfig, Normalization, extract};
use expnet::model::Model;

use common::fixture;


#[test]
fn shape_free_features_have_one_width_for_every_encoder_and_score_each() {
    let spec = FeatureSpec::shape_free(2, 4, 4, Normalization::PerSentenceRank);
    spec.validate().unwrap();
    let net = ExpNet::untrained(spec.clone(), NetConfig::default(), 3).unwrap();
    for name in ["tiny-bert", "tiny-distilbert", "tiny-roberta", "tiny-albert", "tiny-electra"] {
        let model = Model::load(fixture(name).to_str().unwrap()).unwrap();
        let enc = model.encode("a great movie, not a bad one").unwrap();
        let fwd = model.forward(&enc).unwrap();
        let rows = extract(&spec, &fwd.attentions, &enc.special_mask()).unwrap();
        assert!(rows.iter().all(|r| r.len() == spec.dim()), "{name}: width differs from {}", spec.dim());
        net.check_applicable(&model).unwrap();
        let scores = net.score(&fwd.attentions, &enc.special_mask()).unwrap();
        assert_eq!(scores.len(), enc.len(), "{name}");
        assert!(scores.iter().all(|s| s.is_finite()), "{name}: {scores:?}");
    }
}

#[test]
fn mixed_source_training_reads_each_source_through_its_own_model() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("rationales");
    common::tiny_rationale_set(&data, 24);
    let (bert, distil) = (fixture("tiny-bert"), fixture("tiny-distilbert"));
    let spec = FeatureSpec::shape_free(2, 4, 3, Normalization::PerSentenceRank);
    let cache = dir.path().join("cache");
    let source = format!("hatexplain:{}#dev", data.display());
    let models = [Model::load(bert.to_str().unwrap()).unwrap(), Model::load(distil.to_str().unwrap()).unwrap()];
    let sets: Vec<_> =
        models.iter().map(|m| expnet::cli::train::features_for(m, &source, &spec, &cache).unwrap()).collect();
    // Same texts, different models: each set equals extraction through its own model.
    for (m, set) in models.iter().zip(&sets) {
        let ex = &set.examples[0];
        let ds = expnet::data::load(&format!("hatexplain:{}", data.display()), expnet::data::Split::Dev).unwrap();
        let first = ds.examples.iter().find(|e| e.id == ex.id).unwrap();
        let enc = m.encode(&first.text()).unwrap();
        let direct = extract(&spec, &m.forward(&enc).unwrap().attentions, &enc.special_mask()).unwrap();
        assert_eq!(ex.features, direct, "{}", m.name);
    }
    assert_ne!(sets[0].examples[0].features, sets[1].examples[0].features, "both sources read the same model");

    // The CLI mixes both in one run and writes a transfer ExpNet that both models accept.
    let out = dir.path().join("transfer.safetensors");
    let run = common::train(&bert, &format!("{source},{source}@{}", distil.display()), &out, dir.path())
        .args(["--depth-bins", "3", "--normalization", "rank", "--epochs", "3"])
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let net = ExpNet::load(&out).unwrap();
    assert!(net.spec().is_shape_free());
    assert_eq!(net.info.kind.map(|k| k.as_str()), Some("transfer"));
    assert!(net.info.model_id.as_deref().unwrap().contains("tiny-distilbert"), "{:?}", net.info.model_id);
    let explain = Command::new(env!("CARGO_BIN_EXE_expnet"))
        .args(["explain", "--model", distil.to_str().unwrap(), "--methods", "expnet", "--expnet", out.to_str().unwrap(), "a nice day"])
        .env("EXPNET_CACHE", dir.path().join("explainers"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&explain.stdout);
    assert!(explain.status.success(), "{}", String::from_utf8_lossy(&explain.stderr));
    assert!(stdout.contains("\"kind\":\"transfer\"") && stdout.contains("expnet (transfer)"), "{stdout}");
}

#[test]
fn a_model_replaced_in_the_same_folder_is_not_read_through_the_old_cache() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("rationales");
    common::tiny_rationale_set(&data, 12);
    let source = format!("hatexplain:{}#dev", data.display());
    let cache = dir.path().join("cache");
    // One folder, first holding tiny-bert, then the same model rounded to f16
    // (same name and shape, other weights): the second read must not come
    // from the first one's cache.
    let folder = dir.path().join("classifier");
    let copy = |from: &str| {
        std::fs::create_dir_all(&folder).unwrap();
        for f in std::fs::read_dir(fixture(from)).unwrap() {
            let f = f.unwrap().path();
            std::fs::copy(&f, folder.join(f.file_name().unwrap())).unwrap();
        }
        Model::load(folder.to_str().unwrap()).unwrap()
    };
    let first = copy("tiny-bert");
    // Raw rows (unnormalised attention), which any change of weight shows in.
    let spec = FeatureSpec::new(first.num_layers(), first.num_heads());
    let before = expnet::cli::train::features_for(&first, &source, &spec, &cache).unwrap();
    let second = copy("tiny-bert-f16");
    assert_eq!(first.name, second.name);
    assert_ne!(first.fingerprint(), second.fingerprint());
    let after = expnet::cli::train::features_for(&second, &source, &spec, &cache).unwrap();
    let fresh = expnet::cli::train::features_for(&second, &source, &spec, &dir.path().join("empty")).unwrap();
    assert_eq!(after.examples.len(), fresh.examples.len());
    for (a, f) in after.examples.iter().zip(&fresh.examples) {
        assert_eq!(a.features, f.features, "{}: cached rows differ from the model's own", a.id);
    }
    assert!(
        before.examples.iter().zip(&after.examples).any(|(b, a)| b.features != a.features),
        "f16 rounding changed no feature: the test cannot tell the caches apart"
    );
}

#[test]
fn a_source_model_of_another_shape_needs_shape_free_features() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("rationales");
    common::tiny_rationale_set(&data, 24);
    // tiny-albert has 3 layers, tiny-bert 2: per-layer features cannot mix them.
    let source = format!("hatexplain:{}#dev@{}", data.display(), fixture("tiny-albert").display());
    let run = |extra: &[&str]| {
        common::train(&fixture("tiny-bert"), &source, &dir.path().join("x.safetensors"), dir.path())
            .args(["--epochs", "1"])
            .args(extra)
            .output()
            .unwrap()
    };
    let refused = run(&[]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && stderr.contains("--depth-bins"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    let accepted = run(&["--depth-bins", "2"]);
    assert!(accepted.status.success(), "{}", String::from_utf8_lossy(&accepted.stderr));
}
