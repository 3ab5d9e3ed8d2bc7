//! Bad input gives a one-line error with a hint and a non-zero exit, never a panic.

use std::path::Path;
use std::process::Command;

fn expnet(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_expnet")).args(args).output().expect("run expnet");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn assert_clean_error(args: &[&str], needle: &str) {
    let (code, _out, err) = expnet(args);
    assert_ne!(code, 0, "expected failure for {args:?}");
    assert!(!err.contains("panicked"), "panic for {args:?}: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected a one-line error for {args:?}, got:\n{err}");
    assert!(lines[0].contains(needle), "error for {args:?} lacks {needle:?}: {err}");
    assert!(lines[0].contains("hint"), "error for {args:?} lacks a hint: {err}");
}

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name).display().to_string()
}

#[test]
fn wrong_path() {
    assert_clean_error(&["explain", "--model", "./no/such/folder", "hi"], "does not exist");
}

#[test]
fn folder_without_config() {
    let tmp = tempfile::tempdir().unwrap();
    assert_clean_error(&["explain", "--model", tmp.path().to_str().unwrap(), "hi"], "no config.json");
}

#[test]
fn corrupt_safetensors() {
    let tmp = tempfile::tempdir().unwrap();
    let src = Path::new(&fixture("tiny-bert")).to_path_buf();
    for f in ["config.json", "tokenizer.json"] {
        std::fs::copy(src.join(f), tmp.path().join(f)).unwrap();
    }
    let bytes = std::fs::read(src.join("model.safetensors")).unwrap();
    std::fs::write(tmp.path().join("model.safetensors"), &bytes[..bytes.len() / 2]).unwrap();
    assert_clean_error(&["explain", "--model", tmp.path().to_str().unwrap(), "hi"], "cannot read safetensors weights");
}

#[test]
fn unsupported_model_type() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("config.json"), r#"{"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}"#).unwrap();
    assert_clean_error(&["explain", "--model", tmp.path().to_str().unwrap(), "hi"], "unsupported model_type \"gpt2\"");
}

#[test]
fn unknown_method_lists_valid_ones() {
    let (code, _, err) = expnet(&["explain", "--model", &fixture("tiny-bert"), "--methods", "nope", "hi"]);
    assert_ne!(code, 0);
    assert!(err.contains("unknown method \"nope\"") && err.contains("rollout"), "{err}");
}

#[test]
fn gradient_method_on_bare_encoder_is_refused() {
    let (code, _, err) = expnet(&["explain", "--model", &fixture("tiny-bert-encoder"), "--methods", "saliency", "hi"]);
    assert_ne!(code, 0);
    assert!(err.contains("bare encoder"), "{err}");
}

#[test]
fn bare_encoder_explains_with_attention() {
    let (code, out, err) = expnet(&["explain", "--model", &fixture("tiny-bert-encoder"), "--attentions", "hello world"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert!(v["prediction"].is_null());
    let n = v["tokens"].as_array().unwrap().len();
    assert_eq!(v["explanations"]["rollout"]["scores"].as_array().unwrap().len(), n);
    assert_eq!(v["attentions"][0][0].as_array().unwrap().len(), n);
}

#[test]
fn bench_lengths_and_repeats_are_checked() {
    let m = fixture("tiny-bert");
    assert_clean_error(&["bench", "--model", &m, "--lengths", "8,abc"], "\"abc\" is not a token count");
    // Below one word between the specials, or beyond the model's limit (which
    // used to loop for ever building the text).
    assert_clean_error(&["bench", "--model", &m, "--methods", "attention", "--lengths", "0"], "0 tokens is outside");
    assert_clean_error(&["bench", "--model", &m, "--methods", "attention", "--lengths", "8,100000"], "100000 tokens is outside");
    assert_clean_error(&["bench", "--model", &m, "--methods", "attention", "--lengths", "8", "--repeats", "0"], "--repeats must be at least 1");
    assert_clean_error(&["bench", "--model", &m, "--peer", "/nonexistent/peer.json"], "cannot read --peer /nonexistent/peer.json");
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("peer.json");
    std::fs::write(&bad, "not json").unwrap();
    assert_clean_error(&["bench", "--model", &m, "--peer", bad.to_str().unwrap()], "is not the JSON the Python peer writes");
}

#[test]
fn finetune_and_eval_numbers_are_checked_before_loading() {
    let m = fixture("tiny-bert");
    let base = ["finetune", "--base", m.as_str(), "--data", "sst:/nonexistent", "--out", "/nonexistent/out"];
    for (flag, value, needle) in [
        ("--epochs", "0", "--epochs must be at least 1"),
        ("--batch-size", "0", "--batch-size must be at least 1"),
        ("--max-len", "2", "leaves no room"),
        ("--lr", "0", "--lr must be a positive number"),
        ("--limit", "0", "--limit 0 trains on nothing"),
    ] {
        let mut args = base.to_vec();
        args.extend([flag, value]);
        assert_clean_error(&args, needle);
    }
    assert_clean_error(&["eval", "--model", &m, "--data", "sst:/nonexistent", "--limit", "0"], "--limit 0 evaluates nothing");
}

#[test]
fn train_and_distill_numbers_are_checked_before_extracting_anything() {
    let m = fixture("tiny-bert");
    assert_clean_error(&["train", "--model", &m, "--data", "sst:/nonexistent", "--out", "/nonexistent/x.safetensors", "--epochs", "0"], "--epochs must be at least 1");
    assert_clean_error(&["train", "--model", &m, "--data", "sst:/nonexistent", "--out", "/nonexistent/x.safetensors", "--lr=-0.1"], "--lr must be a positive number");
    let d = ["distill", "--model", m.as_str(), "--teacher", "occlusion", "--input", "/nonexistent.txt", "--out", "/nonexistent/d.safetensors"];
    for (extra, needle) in [(["--val-fraction", "1"], "--val-fraction must be between 0 and 1"), (["--limit", "0"], "--limit 0 distils on nothing"), (["--epochs", "0"], "--epochs must be at least 1")] {
        let mut args = d.to_vec();
        args.extend(extra);
        assert_clean_error(&args, needle);
    }
}
