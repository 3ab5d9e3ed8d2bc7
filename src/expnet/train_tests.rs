//! Tests of training on synthetic attention data (kept apart from train.rs for length).

use rand::Rng;

use super::*;

/// Synthetic corpus: in layer 0, head 1, [CLS] attends strongly to the
/// rationale pieces; everything else is noise. A learner that finds that
/// one feature reaches F1@k = 1.
fn synthetic(spec: &FeatureSpec, examples: usize, seed: u64) -> TrainingSet {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut set = TrainingSet::new(spec.clone(), "synthetic/2x3", "synthetic rationales");
    let (layers, heads) = (spec.layers, spec.heads);
    for ex in 0..examples {
        let n = rng.gen_range(6..14);
        let mut special = vec![false; n];
        special[0] = true;
        special[n - 1] = true;
        let mut labels: Vec<f32> = (0..n).map(|i| if !special[i] && rng.gen_bool(0.3) { 1.0 } else { 0.0 }).collect();
        if labels.iter().all(|l| *l == 0.0) {
            labels[1] = 1.0;
        }
        let mut data = Vec::with_capacity(layers * heads * n * n);
        for l in 0..layers {
            for h in 0..heads {
                for q in 0..n {
                    let logits: Vec<f32> = (0..n)
                        .map(|k| rng.gen_range(0.0..2.0) + if l == 0 && h == 1 && q == 0 && labels[k] > 0.5 { 2.5 } else { 0.0 })
                        .collect();
                    let z: f32 = logits.iter().map(|v| v.exp()).sum();
                    data.extend(logits.iter().map(|v| v.exp() / z));
                }
            }
        }
        let attn = Attentions::new(layers, heads, n, data).unwrap();
        set.push(ExampleFeatures::from_attentions(spec, format!("ex{ex}"), &attn, &special, labels).unwrap()).unwrap();
    }
    set
}

fn quick_config(seed: u64) -> TrainConfig {
    TrainConfig { net: NetConfig { hidden: vec![16, 8], ..NetConfig::default() }, epochs: 15, batch_size: 64, seed, ..TrainConfig::default() }
}

fn all_scores(net: &ExpNet, set: &TrainingSet) -> Vec<Vec<f32>> {
    set.examples.iter().map(|e| net.score_features(&e.features, &e.special).unwrap()).collect()
}

#[test]
fn learns_a_rationale_signal_hidden_in_one_head() {
    let spec = FeatureSpec::new(2, 3);
    let train_set = synthetic(&spec, 240, 1);
    let val = synthetic(&spec, 60, 2);
    let mut reports = Vec::new();
    let started = Instant::now();
    let net = train(&train_set, Some(&val), &quick_config(3), &mut |r| reports.push(r)).unwrap();
    assert!(started.elapsed().as_secs() < 30, "training took {:?}", started.elapsed());
    let last = reports.last().unwrap();
    let best = last.best_val_f1.unwrap();
    assert!(best > 0.9, "best validation F1@k {best}, reports {reports:#?}");
    assert!(reports[0].train_loss > last.train_loss, "loss did not go down: {reports:#?}");
    assert!(reports.iter().all(|r| r.pieces_per_sec > 0.0 && r.val_loss.is_some()));
    // The returned net is the best epoch's: re-evaluating it gives the best F1.
    let (_, f1) = evaluate(&net, &val, 1.0).unwrap();
    assert!((f1 - best).abs() < 1e-6, "returned net F1 {f1} != best {best}");
    let info = &net.info;
    assert_eq!(info.model_id.as_deref(), Some("synthetic/2x3"));
    assert_eq!(info.training.as_ref().unwrap().best_epoch, last.best_epoch);
    assert!((info.validation["token_f1_at_k"] - best as f64).abs() < 1e-6);
    // Special pieces are forced to zero.
    let s = net.score_features(&val.examples[0].features, &val.examples[0].special).unwrap();
    assert_eq!((s[0], *s.last().unwrap()), (0.0, 0.0));
}

#[test]
fn neighbour_variant_and_pooled_features_also_learn() {
    let mut spec = FeatureSpec::new(2, 3);
    spec.head_pooling = crate::expnet::HeadPooling::Stats;
    spec.normalization = crate::expnet::Normalization::PerSentenceRank;
    let train_set = synthetic(&spec, 200, 4);
    let val = synthetic(&spec, 50, 5);
    let mut cfg = quick_config(6);
    cfg.net.neighbour_window = 1;
    let mut best = 0.0;
    train(&train_set, Some(&val), &cfg, &mut |r| best = r.best_val_f1.unwrap()).unwrap();
    // Pooling over heads dilutes the one informative head, so the bar is lower.
    assert!(best > 0.8, "best validation F1@k {best}");
}

#[test]
fn same_seed_same_net_different_seed_different_net() {
    let spec = FeatureSpec::new(2, 3);
    let train_set = synthetic(&spec, 60, 7);
    let val = synthetic(&spec, 20, 8);
    let cfg = TrainConfig { epochs: 3, ..quick_config(11) };
    let a = train(&train_set, Some(&val), &cfg, &mut |_| {}).unwrap();
    let b = train(&train_set, Some(&val), &cfg, &mut |_| {}).unwrap();
    assert_eq!(all_scores(&a, &val), all_scores(&b, &val));
    let c = train(&train_set, Some(&val), &TrainConfig { seed: 12, ..cfg }, &mut |_| {}).unwrap();
    assert_ne!(all_scores(&a, &val), all_scores(&c, &val));
}

#[test]
fn trained_net_survives_save_and_load() {
    let spec = FeatureSpec::new(2, 3);
    let train_set = synthetic(&spec, 60, 9);
    let net = train(&train_set, None, &TrainConfig { epochs: 2, ..quick_config(1) }, &mut |_| {}).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("expnet.safetensors");
    net.save(&path).unwrap();
    let back = ExpNet::load(&path).unwrap();
    // The loaded net is frozen and scores on plain weight copies with the
    // encoder's kernels: equal to candle's path up to float rounding.
    let (a, b) = (all_scores(&net, &train_set), all_scores(&back, &train_set));
    let worst = a.iter().flatten().zip(b.iter().flatten()).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
    assert!(worst < 1e-5 && a.iter().map(Vec::len).eq(b.iter().map(Vec::len)), "scores moved by {worst} through save and load");
    assert_eq!(back.info, net.info);
    assert_eq!(back.info.training.as_ref().unwrap().epochs_run, 2);
}

#[test]
fn feature_cache_round_trips_and_rejects_garbage() {
    let spec = FeatureSpec::new(2, 3);
    let mut set = synthetic(&spec, 7, 10);
    set.examples[2].labels[1] = 0.5; // soft label survives
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cache.safetensors");
    set.save(&path).unwrap();
    assert_eq!(TrainingSet::load(&path).unwrap(), set);
    // An empty set is a valid cache too.
    let empty = TrainingSet::new(spec.clone(), "m", "d");
    empty.save(&path).unwrap();
    assert_eq!(TrainingSet::load(&path).unwrap(), empty);
    std::fs::write(&path, b"garbage").unwrap();
    let err = format!("{:#}", TrainingSet::load(&path).unwrap_err());
    assert!(err.contains("not a valid ExpNet feature cache"), "{err}");
    // An ExpNet file is not a feature cache.
    let net = train(&synthetic(&spec, 10, 1), None, &TrainConfig { epochs: 1, ..quick_config(1) }, &mut |_| {}).unwrap();
    net.save(&path).unwrap();
    let err = format!("{:#}", TrainingSet::load(&path).unwrap_err());
    assert!(err.contains("no \"expnet_features\" metadata"), "{err}");
}

#[test]
fn bad_training_input_is_rejected() {
    let spec = FeatureSpec::new(2, 3);
    let mut set = synthetic(&spec, 5, 1);
    for e in &mut set.examples {
        e.labels.iter_mut().for_each(|l| *l = 0.0);
    }
    let err = train(&set, None, &quick_config(1), &mut |_| {}).unwrap_err().to_string();
    assert!(err.contains("all 0"), "{err}");
    let mut bad = synthetic(&spec, 1, 1).examples.remove(0);
    bad.features[0].pop();
    let err = set.push(bad).unwrap_err().to_string();
    assert!(err.contains("piece 0 has"), "{err}");
    let other = synthetic(&FeatureSpec::new(1, 3), 3, 1);
    let err = train(&synthetic(&spec, 5, 1), Some(&other), &quick_config(1), &mut |_| {}).unwrap_err().to_string();
    assert!(err.contains("another feature spec"), "{err}");
}

#[test]
fn split_is_seeded_and_disjoint() {
    let spec = FeatureSpec::new(2, 3);
    let (a, b) = synthetic(&spec, 20, 3).split(0.25, 5).unwrap();
    assert_eq!((a.examples.len(), b.examples.len()), (15, 5));
    let (c, d) = synthetic(&spec, 20, 3).split(0.25, 5).unwrap();
    assert_eq!((a, b.clone()), (c, d));
    assert!(b.examples.iter().all(|e| e.id.starts_with("ex")));
}

#[test]
fn f1_at_k_counts_top_k_hits_and_skips_empty_gold() {
    let special = [true, false, false, false, false, true];
    let labels = [0.0, 1.0, 0.0, 1.0, 0.0, 0.0];
    // Special token 0 has the highest score but is ignored.
    assert_eq!(f1_at_k(&[9.0, 0.9, 0.1, 0.8, 0.2, 9.0], &labels, &special), Some(1.0));
    assert_eq!(f1_at_k(&[9.0, 0.9, 0.8, 0.1, 0.2, 9.0], &labels, &special), Some(0.5));
    assert_eq!(f1_at_k(&[0.0; 6], &[0.0; 6], &special), None);
    // Soft labels: gold means >= 0.5.
    assert_eq!(f1_at_k(&[0.0, 0.1, 0.9, 0.2, 0.3, 0.0], &[0.0, 0.3, 0.6, 0.0, 0.0, 0.0], &special), Some(1.0));
}

#[test]
fn weighted_bce_matches_the_naive_formula_and_is_stable() {
    let xs = [-3.0f32, -0.5, 0.0, 0.7, 4.0];
    let ys = [0.0f32, 1.0, 0.5, 0.0, 1.0];
    let pw = 3.0f32;
    let naive: f32 = xs
        .iter()
        .zip(&ys)
        .map(|(x, y)| {
            let p = 1.0 / (1.0 + (-x).exp());
            -(pw * y * p.ln() + (1.0 - y) * (1.0 - p).ln())
        })
        .sum::<f32>()
        / xs.len() as f32;
    let t = |v: &[f32]| Tensor::from_vec(v.to_vec(), v.len(), &Device::Cpu).unwrap();
    let got = weighted_bce_with_logits(&t(&xs), &t(&ys), pw).unwrap().to_scalar::<f32>().unwrap();
    assert!((got - naive).abs() < 1e-5, "{got} vs {naive}");
    let extreme = weighted_bce_with_logits(&t(&[-200.0, 200.0]), &t(&[1.0, 0.0]), 1.0).unwrap().to_scalar::<f32>().unwrap();
    assert!((extreme - 200.0).abs() < 1e-3, "{extreme}");
}

/// A residual ExpNet on the informative column starts at that column's
/// validation F1@k and never returns worse; on a useless column it learns
/// the signal elsewhere, as a plain MLP does.
#[test]
fn a_prior_column_is_epoch_zero_and_training_must_beat_it() {
    let spec = FeatureSpec::new(2, 3);
    let train_set = synthetic(&spec, 240, 11);
    let val = synthetic(&spec, 60, 12);
    let informative = "cls_to_token.L0.H1";
    let mut cfg = quick_config(5);
    cfg.net.prior = Some(informative.into());
    let untrained = ExpNet::init(spec.clone(), cfg.net.clone(), vec![0.0; spec.dim()], vec![1.0; spec.dim()], 5).unwrap();
    let (_, prior_f1) = evaluate(&untrained, &val, 1.0).unwrap();
    let net = train(&train_set, Some(&val), &cfg, &mut |_| {}).unwrap();
    let (_, f1) = evaluate(&net, &val, 1.0).unwrap();
    assert!(f1 + 1e-6 >= prior_f1, "residual net {f1} fell below its prior {prior_f1}");
    assert!(prior_f1 > 0.8, "the informative column alone should rank well: {prior_f1}");
    // Epochs that cannot improve on it (a learning rate too small to move
    // anything) leave the prior in place: epoch 0 is kept, not epoch 1.
    let mut still = cfg.clone();
    still.lr = 1e-12;
    still.epochs = 2;
    let net = train(&train_set, Some(&val), &still, &mut |_| {}).unwrap();
    assert_eq!(net.info.training.as_ref().unwrap().best_epoch, 0, "epoch 0 (the prior) should be kept");
    assert!((evaluate(&net, &val, 1.0).unwrap().1 - prior_f1).abs() < 1e-6);

    let mut cfg = quick_config(5);
    cfg.net.prior = Some("cls_to_token.L1.H2".into());
    let net = train(&train_set, Some(&val), &cfg, &mut |_| {}).unwrap();
    let (_, f1) = evaluate(&net, &val, 1.0).unwrap();
    assert!(f1 > 0.9, "with a useless prior the MLP should still find the signal: {f1}");
    assert!(net.info.training.as_ref().unwrap().best_epoch > 0);
}
