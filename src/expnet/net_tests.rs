//! Tests of the ExpNet network and its file format (kept apart from net.rs for length).

use super::*;

fn random_attn(layers: usize, heads: usize, len: usize, seed: u64) -> Attentions {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut data = Vec::new();
    for _ in 0..layers * heads * len {
        let row: Vec<f32> = (0..len).map(|_| rng.r#gen::<f32>().exp()).collect();
        let s: f32 = row.iter().sum();
        data.extend(row.iter().map(|v| v / s));
    }
    Attentions::new(layers, heads, len, data).unwrap()
}

fn tiny_net(window: usize) -> ExpNet {
    let spec = FeatureSpec::new(2, 3);
    let f = spec.dim();
    let config = NetConfig { hidden: vec![8, 4], neighbour_window: window, ..NetConfig::default() };
    ExpNet::init(spec, config, vec![0.1; f], vec![0.5; f], 7).unwrap()
}

/// A net loaded from a file scores through `frozen_logits` (plain weight
/// copies on the encoder's kernels), which must agree with candle's graph
/// on the same weights for every layer shape: below and above the 64 rows
/// where the kernels switch layout, GELU and ReLU, both output kinds, a
/// neighbour window and a prior column; and `vars()` unfreezes it.
#[test]
fn frozen_scores_match_candles_path() {
    let dir = tempfile::tempdir().unwrap();
    let spec = FeatureSpec::new(2, 3);
    let f = spec.dim();
    let col = "cls_to_token.L1.H2";
    let configs = [
        NetConfig { hidden: vec![16, 8], ..NetConfig::default() },
        NetConfig { hidden: vec![12], activation: Activation::Relu, output: OutputKind::Score, neighbour_window: 1, ..NetConfig::default() },
        NetConfig { hidden: vec![8, 4], prior: Some(col.into()), output: OutputKind::Score, ..NetConfig::default() },
    ];
    for (c, config) in configs.into_iter().enumerate() {
        let net = ExpNet::init(spec.clone(), config, vec![0.1; f], vec![0.5; f], 7 + c as u64).unwrap();
        let path = dir.path().join(format!("n{c}.safetensors"));
        net.save(&path).unwrap();
        let back = ExpNet::load(&path).unwrap();
        for rows in [5, 64, 65, 150] {
            let features: Vec<Vec<f32>> = (0..rows).map(|i| (0..f).map(|j| ((i * 7 + j * 3) % 13) as f32 / 6.0 - 1.0).collect()).collect();
            let special: Vec<bool> = (0..rows).map(|i| i == 0).collect();
            let frozen = back.score_features(&features, &special).unwrap();
            let graph = net.score_features(&features, &special).unwrap();
            assert!(back.frozen.get().is_some(), "config {c}: the loaded net did not take the frozen path");
            assert!(net.frozen.get().is_none(), "config {c}: a net from init must not be frozen");
            let worst = frozen.iter().zip(&graph).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(worst < 1e-5, "config {c}, {rows} rows: frozen and candle paths differ by {worst}");
            assert!(frozen.iter().any(|v| *v != 0.0));
        }
    }
    // Handing out the variables (training) leaves the frozen copies unused.
    let net = ExpNet::init(spec, NetConfig::default(), vec![0.0; f], vec![1.0; f], 1).unwrap();
    let path = dir.path().join("train.safetensors");
    net.save(&path).unwrap();
    let back = ExpNet::load(&path).unwrap();
    let features = vec![vec![0.5; f]; 3];
    let before = back.score_features(&features, &[false; 3]).unwrap();
    for v in back.vars() {
        v.set(&(v.as_tensor() * 2.0).unwrap()).unwrap();
    }
    let after = back.score_features(&features, &[false; 3]).unwrap();
    assert_ne!(before, after, "scores must follow the changed weights, not the frozen copies");
}

/// An untrained residual ExpNet ranks tokens exactly as its prior
/// column does (neighbour window or not); once its weights move it no
/// longer has to, and a file round trip keeps its scores.
#[test]
fn a_prior_column_is_the_untrained_ranking_and_survives_a_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    for window in [0, 1] {
        let spec = FeatureSpec::new(2, 3);
        let col = "cls_to_token.L1.H2";
        let idx = spec.feature_names().iter().position(|n| n == col).unwrap();
        let config = NetConfig { hidden: vec![8, 4], neighbour_window: window, prior: Some(col.into()), ..NetConfig::default() };
        let f = spec.dim();
        let net = ExpNet::init(spec, config, vec![0.1; f], vec![0.5; f], 3).unwrap();
        let features: Vec<Vec<f32>> = (0..6).map(|i| (0..f).map(|j| ((i * 7 + j * 3) % 11) as f32 / 11.0).collect()).collect();
        let special = [false; 6];
        let scores = net.score_features(&features, &special).unwrap();
        let rank = |v: &[f32]| {
            let mut o: Vec<usize> = (0..v.len()).collect();
            o.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
            o
        };
        let column: Vec<f32> = features.iter().map(|r| r[idx]).collect();
        assert_eq!(rank(&scores), rank(&column), "window {window}: scores {scores:?} vs column {column:?}");
        // Moved weights: no longer the column's ranking, and saved as is.
        let snap: NamedWeights = net.snapshot().unwrap().into_iter().map(|(n, sh, v)| {
            let v = v.iter().enumerate().map(|(i, x)| x + ((i * 13 % 7) as f32 - 3.0) * 0.3).collect();
            (n, sh, v)
        }).collect();
        net.restore(&snap).unwrap();
        let moved = net.score_features(&features, &special).unwrap();
        assert_ne!(rank(&moved), rank(&column), "window {window}: the MLP should change the ranking");
        let path = dir.path().join(format!("prior-{window}.safetensors"));
        net.save(&path).unwrap();
        let back = ExpNet::load(&path).unwrap();
        assert_eq!(back.config().prior.as_deref(), Some(col));
        // The loaded net is frozen and scores on plain weight copies (see `frozen_scores_match_candles_path`).
        let back_scores = back.score_features(&features, &special).unwrap();
        assert!(back_scores.iter().zip(&moved).all(|(a, b)| (a - b).abs() < 1e-5), "{back_scores:?} vs {moved:?}");
    }
    let bad = NetConfig { prior: Some("alti.depth3of4.rollout".into()), ..NetConfig::default() };
    let err = ExpNet::untrained(FeatureSpec::new(2, 3), bad, 1).unwrap_err().to_string();
    assert!(err.contains("not among this ExpNet's features") && err.contains("hint"), "{err}");
}

#[test]
fn scores_are_probabilities_and_special_tokens_are_zero() {
    let net = tiny_net(0);
    let special = [true, false, false, false, true];
    let s = net.score(&random_attn(2, 3, 5, 1), &special).unwrap();
    assert_eq!(s.len(), 5);
    assert_eq!((s[0], s[4]), (0.0, 0.0));
    assert!(s[1..4].iter().all(|p| *p > 0.0 && *p < 1.0));
}

#[test]
fn save_and_load_round_trip_gives_identical_scores() {
    let dir = tempfile::tempdir().unwrap();
    for window in [0, 1] {
        let mut net = tiny_net(window);
        net.info.model_id = Some("test/mini".into());
        net.info.validation.insert("token_f1_at_k".into(), 0.5);
        let path = dir.path().join(format!("net{window}.safetensors"));
        net.save(&path).unwrap();
        let back = ExpNet::load(&path).unwrap();
        assert_eq!(back.config(), net.config());
        assert_eq!(back.spec(), net.spec());
        assert_eq!(back.info, net.info);
        let attn = random_attn(2, 3, 6, 2);
        let special = [true, false, false, false, false, true];
        assert_eq!(net.score(&attn, &special).unwrap(), back.score(&attn, &special).unwrap());
    }
}

#[test]
fn neighbour_window_makes_scores_depend_on_context() {
    let net = tiny_net(1);
    let special = [false; 4];
    let a = random_attn(2, 3, 4, 3);
    let feats = extract(net.spec(), &a, &special).unwrap();
    let base = net.score_features(&feats, &special).unwrap();
    let mut changed = feats.clone();
    changed[3] = changed[3].iter().map(|v| v + 1.0).collect();
    let after = net.score_features(&changed, &special).unwrap();
    assert_eq!(base[0], after[0], "token 0 does not see token 3");
    assert_ne!(base[2], after[2], "token 2 sees its neighbour 3");
    // Without neighbours, token 2 would not move.
    let plain = tiny_net(0);
    assert_eq!(plain.score_features(&feats, &special).unwrap()[2], plain.score_features(&changed, &special).unwrap()[2]);
}

#[test]
fn incompatible_shape_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("n.safetensors");
    let mut net = tiny_net(0);
    net.info.model_id = Some("tiny/2x3".into());
    net.save(&path).unwrap();
    let net = ExpNet::load(&path).unwrap();
    net.check_compatible(2, 3).unwrap();
    let err = net.check_compatible(6, 12).unwrap_err().to_string();
    assert!(err.contains("2-layer x 3-head encoder (tiny/2x3)") && err.contains("6 layers x 12 heads"), "{err}");
    let err = net.score(&random_attn(6, 12, 3, 0), &[false; 3]).unwrap_err().to_string();
    assert!(err.contains("expnet train"), "{err}");
}

#[test]
fn corrupt_files_give_clear_errors() {
    let good = tiny_net(0).to_bytes().unwrap();
    let err = format!("{:#}", ExpNet::load_bytes(b"definitely not safetensors").unwrap_err());
    assert!(err.contains("not a valid ExpNet file"), "{err}");
    let err = format!("{:#}", ExpNet::load_bytes(&good[..good.len() - 10]).unwrap_err());
    assert!(err.contains("not a valid ExpNet file"), "{err}");
    // A valid safetensors file that is not an ExpNet.
    let other = super::super::st::serialize(&[("x".into(), Buffer::f32(vec![1], &[1.0]))], "other", "{}".into()).unwrap();
    let err = format!("{:#}", ExpNet::load_bytes(&other).unwrap_err());
    assert!(err.contains("no \"expnet\" metadata"), "{err}");
    // Tampered header JSON.
    // The header JSON sits escaped inside the safetensors header's JSON.
    let needle = br#"format_version\":1"#;
    let at = good.windows(needle.len()).position(|w| w == needle).unwrap();
    let mut tampered = good.clone();
    tampered[at + needle.len() - 1] = b'9';
    let err = format!("{:#}", ExpNet::load_bytes(&tampered).unwrap_err());
    assert!(err.contains("format version 9"), "{err}");
    let err = format!("{:#}", ExpNet::load("/nonexistent/expnet.safetensors").unwrap_err());
    assert!(err.contains("could not read ExpNet file"), "{err}");
}

#[test]
fn header_metadata_is_readable_json() {
    let bytes = tiny_net(0).to_bytes().unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let json: serde_json::Value = serde_json::from_str(&meta.metadata().as_ref().unwrap()["expnet"]).unwrap();
    assert_eq!(json["format_version"], 1);
    assert_eq!(json["model"]["layers"], 2);
    assert_eq!(json["net"]["hidden"], serde_json::json!([8, 4]));
    assert_eq!(json["feature_spec"]["normalization"], "global");
}
