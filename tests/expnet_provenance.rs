//! ExpNet in every command, honest about where it came from: the loading
//! rules, the `explainer` object of `explain`'s JSON, and `expnet distill`
//! end to end on the tiny fixture model.

use std::path::{Path, PathBuf};
use std::process::Command;

use expnet::expnet::provenance::choose;
use expnet::expnet::{ExpNet, ExplainerKind, FeatureSpec, NetConfig};
use expnet::model::Model;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// Runs the binary with its explainer cache in `cache` (never the user's).
fn expnet_in(cache: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_expnet"))
        .args(args)
        .env("EXPNET_CACHE", cache)
        .output()
        .expect("run expnet");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// An untrained attention ExpNet for `model`, optionally stamped with a fingerprint.
fn net_for(model: &Model, fingerprint: Option<&str>) -> ExpNet {
    let spec = FeatureSpec::new(model.num_layers(), model.num_heads());
    let mut net = ExpNet::untrained(spec, NetConfig::default(), 1).unwrap();
    net.info.model_id = Some("some/model".into());
    net.info.model_fingerprint = fingerprint.map(str::to_owned);
    net.info.kind = fingerprint.map(|_| ExplainerKind::Rationales);
    net
}

#[test]
fn loading_rules_follow_the_fingerprint_not_the_shape() {
    let tmp = tempfile::tempdir().unwrap();
    // SAFETY: this test binary's tests do not read EXPNET_CACHE concurrently except through this value.
    unsafe { std::env::set_var("EXPNET_CACHE", tmp.path()) };
    let bert = Model::load_dir(&fixture("tiny-bert")).unwrap();
    let f16 = Model::load_dir(&fixture("tiny-bert-f16")).unwrap();
    assert_eq!((bert.num_layers(), bert.num_heads()), (f16.num_layers(), f16.num_heads()));
    assert_ne!(bert.fingerprint(), f16.fingerprint(), "rounded weights are another model");
    assert_eq!(bert.fingerprint(), Model::load_dir(&fixture("tiny-bert")).unwrap().fingerprint());

    // Trained for this model: used by default, labelled plainly.
    let c = choose(None, &bert, Some((net_for(&bert, Some(bert.fingerprint())), "builtin")), None).unwrap();
    let (_, e) = c.net.as_ref().expect("used");
    assert_eq!((e.kind.as_str(), e.matches_model, e.label()), ("rationales", Some(true), "expnet".to_string()));
    assert!(e.notice().is_none());

    // Same shape, another model: never by default, and the reason says so.
    let c = choose(None, &f16, Some((net_for(&bert, Some(bert.fingerprint())), "builtin")), None).unwrap();
    assert!(c.net.is_none());
    let why = c.skipped.unwrap();
    assert!(why.contains("not this model") && why.contains("expnet distill"), "{why}");

    // Explicitly given for another model: used, and labelled as such.
    let path = tmp.path().join("other.safetensors");
    net_for(&bert, Some(bert.fingerprint())).save(&path).unwrap();
    let c = choose(Some(path.to_str().unwrap()), &f16, None, None).unwrap();
    let (_, e) = c.net.as_ref().unwrap();
    assert_eq!((e.matches_model, e.label()), (Some(false), "expnet!".to_string()));
    assert!(e.notice().unwrap().contains("not for this model"));

    // A file from before fingerprints: only when given, with a notice.
    let old = tmp.path().join("old.safetensors");
    net_for(&bert, None).save(&old).unwrap();
    let c = choose(None, &bert, Some((ExpNet::load(&old).unwrap(), "builtin")), None).unwrap();
    assert!(c.net.is_none(), "unknown provenance is never a default");
    let c = choose(Some(old.to_str().unwrap()), &bert, None, None).unwrap();
    let (_, e) = c.net.as_ref().unwrap();
    assert_eq!((e.kind.as_str(), e.matches_model), ("unknown", None));
    assert!(e.notice().unwrap().contains("predates"));

    // Registered in the explainer cache (what `distill` does): the default for that model only.
    let reg = expnet::expnet::provenance::register(&path, bert.fingerprint()).unwrap();
    assert!(reg.starts_with(tmp.path()));
    let c = choose(None, &bert, None, None).unwrap();
    assert_eq!(c.net.as_ref().unwrap().1.file, reg.display().to_string());
    assert!(choose(None, &f16, None, None).unwrap().net.is_none());

    // No ExpNet of its own: the transfer ExpNet, labelled, with the reason kept.
    let transfer = || (expnet::assets::transfer_expnet().unwrap(), "transfer-builtin");
    let c = choose(None, &f16, Some((net_for(&bert, Some(bert.fingerprint())), "builtin")), Some(transfer())).unwrap();
    let (_, e) = c.net.as_ref().expect("transfer used");
    assert_eq!((e.kind.as_str(), e.matches_model, e.label(), e.file.as_str()), ("transfer", Some(false), "expnet (transfer)".to_string(), "transfer-builtin"));
    let note = c.notice().unwrap();
    assert!(note.contains("transfer") && note.contains("not this model") && note.contains("expnet distill"), "{note}");
    // ... but never over the model's own (registered) ExpNet, nor over an explicit file.
    let c = choose(None, &bert, None, Some(transfer())).unwrap();
    assert_eq!(c.net.as_ref().unwrap().1.file, reg.display().to_string());
    let c = choose(Some(path.to_str().unwrap()), &f16, None, Some(transfer())).unwrap();
    assert_eq!(c.net.as_ref().unwrap().1.kind, "rationales");
    // A file that is not of kind `transfer` is never the fallback.
    assert!(choose(None, &f16, None, Some((net_for(&bert, Some(bert.fingerprint())), "x"))).unwrap().net.is_none());
    // A family without post-norm blocks to decompose: none, and the reason says both.
    let modern = Model::load_dir(&fixture("tiny-modernbert")).unwrap();
    let c = choose(None, &modern, None, Some(transfer())).unwrap();
    assert!(c.net.is_none());
    let why = c.skipped.unwrap();
    assert!(why.contains("transfer ExpNet does not apply") && why.contains("decompos"), "{why}");
}

#[test]
fn the_embedded_transfer_expnet_scores_models_of_other_shapes() {
    let net = std::sync::Arc::new(expnet::assets::transfer_expnet().unwrap());
    assert_eq!(net.info.kind, Some(ExplainerKind::Transfer));
    let method = expnet::expnet::ExpNetMethod::new(net.clone());
    for name in ["tiny-bert", "tiny-distilbert", "tiny-roberta", "tiny-bert-encoder"] {
        let m = Model::load_dir(&fixture(name)).unwrap();
        net.check_applicable(&m).unwrap_or_else(|e| panic!("{name}: {e:#}"));
        let enc = m.encode("the plot is thin but the actors are great").unwrap();
        let fwd = m.forward(&enc).unwrap();
        let scores = method.explain_forward(Some(&m), &enc, &fwd, 0).unwrap_or_else(|e| panic!("{name}: {e:#}")).scores;
        assert_eq!(scores.len(), enc.len(), "{name}");
        assert!(scores.iter().all(|s| s.is_finite()), "{name}: {scores:?}");
        let spread = scores.iter().cloned().fold(f32::MIN, f32::max) - scores.iter().cloned().fold(f32::MAX, f32::min);
        assert!(spread > 1e-4, "{name}: the scores do not depend on the tokens: {scores:?}");
    }
}

#[test]
fn explain_runs_expnet_with_the_embedded_model_and_says_where_it_came_from() {
    let tmp = tempfile::tempdir().unwrap();
    let (code, out, err) = expnet_in(tmp.path(), &["explain", "--methods", "expnet", "a gorgeous, witty, seductive movie"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    let e = &v["explanations"]["expnet"];
    assert_eq!(e["scores"].as_array().unwrap().len(), v["tokens"].as_array().unwrap().len());
    assert_eq!(e["explainer"]["kind"], "rationales");
    assert_eq!(e["explainer"]["matches_model"], true);
    assert_eq!(e["explainer"]["file"], "embedded:expnet-minilm-sst2");

    let (code, out, err) = expnet_in(tmp.path(), &["explain", "--methods", "all", "a dull mess"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    let names: Vec<&String> = v["explanations"].as_object().unwrap().keys().collect();
    assert_eq!(names[0], "expnet", "{names:?}");
    assert_eq!(names.len(), 1 + expnet::explain::METHOD_NAMES.len(), "{names:?}");
}

#[test]
fn unknown_method_fails_before_any_model_loads() {
    let tmp = tempfile::tempdir().unwrap();
    let (code, _, err) = expnet_in(tmp.path(), &["explain", "--model", "/no/such/model", "--methods", "expnet,bogus", "hi"]);
    assert_ne!(code, 0);
    assert!(err.contains("unknown method \"bogus\"") && !err.contains("/no/such/model"), "{err}");
    // A sample budget without a sampling method fails as early.
    let (code, _, err) = expnet_in(tmp.path(), &["explain", "--model", "/no/such/model", "--methods", "expnet", "--samples", "500", "hi"]);
    assert_ne!(code, 0);
    assert!(err.contains("--samples") && !err.contains("/no/such/model"), "{err}");
}

#[test]
fn another_model_gets_the_transfer_expnet_by_default_labelled() {
    let tmp = tempfile::tempdir().unwrap();
    let tiny = fixture("tiny-bert").display().to_string();
    let (code, out, err) = expnet_in(tmp.path(), &["explain", "--model", &tiny, "--methods", "all", "a dull mess"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("transfer ExpNet") && err.contains("expnet distill"), "{err}");
    let v: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    let e = &v["explanations"]["expnet"];
    assert_eq!(e["label"], "expnet (transfer)");
    assert_eq!(e["explainer"]["kind"], "transfer");
    assert_eq!(e["explainer"]["matches_model"], false);
    assert_eq!(e["explainer"]["file"], "embedded:expnet-transfer");
    // No post-norm blocks (ModernBERT): no ExpNet at all, and asking for it says why.
    let modern = fixture("tiny-modernbert").display().to_string();
    let (code, out, err) = expnet_in(tmp.path(), &["explain", "--model", &modern, "--methods", "all", "a dull mess"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("expnet skipped") && err.contains("expnet distill"), "{err}");
    assert!(!out.contains("\"expnet\""), "no ExpNet in the output");
    let (code, _, err) = expnet_in(tmp.path(), &["explain", "--model", &modern, "--methods", "expnet", "a dull mess"]);
    assert_ne!(code, 0);
    assert!(err.contains("method expnet is unavailable"), "{err}");
}

#[test]
fn distill_end_to_end_resumes_from_its_cache_and_registers_for_the_model() {
    let tmp = tempfile::tempdir().unwrap();
    let words = ["good", "bad", "film", "dull", "witty", "plot", "great", "awful", "the", "a", "movie", "boring", "fun"];
    let texts: Vec<String> = (0..60)
        .map(|i| (0..4 + i % 5).map(|j| words[(i * 7 + j * 3) % words.len()]).collect::<Vec<_>>().join(" "))
        .collect();
    let input = tmp.path().join("texts.txt");
    std::fs::write(&input, texts.join("\n")).unwrap();
    let out = tmp.path().join("student.safetensors");
    let tiny = fixture("tiny-bert").display().to_string();
    let args = [
        "distill", "--model", &tiny, "--teacher", "occlusion", "--input", input.to_str().unwrap(), "--out",
        out.to_str().unwrap(), "--epochs", "30", "--val-fraction", "0.25", "--hidden", "32",
    ];
    let (code, stdout, err) = expnet_in(tmp.path(), &args);
    assert_eq!(code, 0, "{err}");
    let summary: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(summary["train_texts"], 45);
    assert!(err.contains("train: 45/45 texts (45 run"), "{err}");
    let cache = out.with_extension("teacher.jsonl");
    let lines = std::fs::read_to_string(&cache).unwrap();
    assert_eq!(lines.lines().count(), 61, "header + one line per text");

    // The student learned something its untrained self did not.
    let val = summary["val"]["spearman"].as_f64().unwrap();
    let net = ExpNet::load(&out).unwrap();
    let d = net.info.distillation.clone().unwrap();
    assert_eq!((d.teacher.as_str(), d.train_texts, d.val_texts), ("occlusion", 45, 15));
    assert!((d.val_spearman - val).abs() < 1e-12);
    assert_eq!(net.info.kind, Some(ExplainerKind::Distilled));
    assert!(val > 0.3, "held-out Spearman with the teacher {val}");

    // An interrupted run: keep the header and 20 records, cut the next line in half.
    let kept: Vec<&str> = lines.lines().take(21).collect();
    let half = &lines.lines().nth(21).unwrap()[..20];
    std::fs::write(&cache, format!("{}\n{half}", kept.join("\n"))).unwrap();
    let (code, _, err) = expnet_in(tmp.path(), &args);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("skipping unreadable line 22"), "{err}");
    let reran: usize = ["train", "val"]
        .iter()
        .map(|w| {
            let at = err.find(&format!("{w}: ")).unwrap();
            let tail = &err[at..];
            let open = tail.find('(').unwrap();
            tail[open + 1..].split(' ').next().unwrap().parse::<usize>().unwrap()
        })
        .sum();
    assert_eq!(reran, 40, "only the 40 lost texts rerun: {err}");

    // Registered: `explain --methods all` on that model now includes it, labelled.
    let (code, stdout, err) = expnet_in(tmp.path(), &["explain", "--model", &tiny, "--methods", "all", "a dull film"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(stdout.lines().next().unwrap()).unwrap();
    let e = &v["explanations"]["expnet"];
    assert_eq!(e["label"], "expnet≈occlusion");
    assert_eq!(e["explainer"]["kind"], "distilled");
    assert_eq!(e["explainer"]["teacher"], "occlusion");
    assert_eq!(e["explainer"]["matches_model"], true);
}
