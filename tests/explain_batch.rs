//! Corpus runs of `expnet explain --input` (issue 12): several texts per
//! padded forward/backward pass give the same scores as one text at a time,
//! `--shard K/N` splits the lines disjointly and completely, results stream.

use expnet::explain::{Attribution, create};
use expnet::model::Model;
use expnet::report::{resolve_target, run_methods, run_methods_reporting};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

/// Scores of batched and one-at-a-time runs agree to this (relative to the
/// score's size when it is above 1): padding changes only float rounding.
const TOL: f32 = 1e-5;

/// Methods whose per-text results come from the batch's shared passes.
const BATCHABLE: &[&str] =
    &["attention", "rollout", "flow", "value_norm", "alti", "globenc", "saliency", "grad_x_input", "chefer", "grad_sam"];

const TEXTS: &[&str] = &[
    "a fine film",
    "the story was great but the end was far too long and slow",
    "bad",
    "the actors were fine and the plot made sense most of the time , i think",
];

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name).display().to_string()
}

fn close(a: f32, b: f32) -> bool {
    (a - b).abs() <= TOL * a.abs().max(b.abs()).max(1.0)
}

#[test]
fn batched_forward_and_backward_match_one_text_at_a_time_for_every_family() {
    for name in ["tiny-bert", "tiny-distilbert", "tiny-roberta", "tiny-electra", "tiny-albert", "tiny-deberta-v2", "tiny-deberta-v3", "tiny-modernbert", "tiny-bert-encoder"] {
        let model = Model::load(&fixture(name)).unwrap();
        let encs: Vec<_> = TEXTS.iter().map(|t| model.encode(t).unwrap()).collect();
        let lengths: Vec<usize> = encs.iter().map(|e| e.len()).collect();
        assert!(lengths.iter().min() < lengths.iter().max(), "{name}: the batch must need padding: {lengths:?}");
        let refs: Vec<_> = encs.iter().collect();
        let batched = model.forward_batch(&refs).unwrap();
        let methods: Vec<Arc<dyn Attribution>> = BATCHABLE
            .iter()
            .map(|m| Arc::from(create(m).unwrap()))
            .filter(|m: &Arc<dyn Attribution>| (model.is_classifier() || !m.needs_classifier()) && m.unsupported(&model).is_none())
            .collect();
        assert!(methods.len() >= 3, "{name}: only {} methods apply", methods.len());
        let seeds = if model.is_classifier() {
            let targets: Vec<usize> = batched.iter().map(|f| resolve_target(f, None).unwrap()).collect();
            let grads = model.gradients_batch(&refs, &targets, true).unwrap();
            // Without attention gradients (the last layer for [CLS] only where
            // the hand-written pass applies): the same logits and embedding
            // gradients, relative to the largest gradient.
            let cheap = model.gradients_batch(&refs, &targets, false).unwrap();
            for (g, c) in grads.iter().zip(&cheap) {
                assert!(close(g.logit, c.logit), "{name}: logit {} vs {} without attention gradients", g.logit, c.logit);
                let scale = g.embedding_grads.iter().fold(0f32, |m, v| m.max(v.abs()));
                let diff = g.embedding_grads.iter().zip(&c.embedding_grads).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
                assert!(diff <= 1e-4 * scale, "{name}: embedding gradients differ by {diff} (largest {scale})");
            }
            for ((enc, g), &t) in encs.iter().zip(&grads).zip(&targets) {
                let single = model.gradients(enc, t).unwrap();
                assert!(close(g.logit, single.logit), "{name}: logit {} vs {}", g.logit, single.logit);
                assert_eq!(g.embedding_grads.len(), single.embedding_grads.len(), "{name}: cut to the text's length");
                assert_eq!(g.attention_grads.len, enc.len());
            }
            grads.into_iter().map(|g| Some((Arc::new(g), Duration::from_millis(1)))).collect()
        } else {
            vec![None; encs.len()]
        };
        for ((enc, fb), seed) in encs.iter().zip(&batched).zip(seeds) {
            let f1 = model.forward(enc).unwrap();
            assert_eq!(fb.attentions.len, enc.len(), "{name}: attentions cut to the text");
            assert_eq!(fb.hidden_states[0].len(), enc.len());
            assert!(fb.attentions.data.iter().zip(&f1.attentions.data).all(|(a, b)| close(*a, *b)), "{name}: attentions differ");
            if let (Some(p), Some(q)) = (&fb.prediction, &f1.prediction) {
                assert!(p.logits.iter().zip(&q.logits).all(|(a, b)| close(*a, *b)), "{name}: logits {:?} vs {:?}", p.logits, q.logits);
            }
            let one = run_methods(&model, enc, &f1, None, &methods, &expnet::explain::Progress::none()).unwrap();
            let many = run_methods_reporting(&model, enc, fb, None, &methods, seed, &|_, _| {}).unwrap();
            for (a, b) in one.iter().zip(&many) {
                assert_eq!(a.explanation.scores.len(), enc.len());
                assert_eq!(b.explanation.scores.len(), enc.len(), "{name} {}: cut to the text", b.method);
                for (x, y) in a.explanation.scores.iter().zip(&b.explanation.scores) {
                    assert!(close(*x, *y), "{name} {} on {:?}: {x} unbatched vs {y} batched", a.method, enc.text);
                }
            }
        }
    }
}

fn expnet_cli(args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_expnet"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run expnet");
    let mut sin = child.stdin.take().unwrap();
    if let Some(s) = stdin {
        sin.write_all(s.as_bytes()).unwrap();
    }
    drop(sin);
    let out = child.wait_with_output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// `line` → method → scores, from JSON Lines output.
fn scores_by_line(out: &str) -> BTreeMap<u64, BTreeMap<String, Vec<f32>>> {
    out.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let ex = v["explanations"].as_object().unwrap();
            let scores = ex
                .iter()
                .map(|(k, m)| (k.clone(), m["scores"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()))
                .collect();
            (v["line"].as_u64().expect("every object carries its line"), scores)
        })
        .collect()
}

fn corpus() -> (tempfile::TempDir, String, Vec<u64>) {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("corpus.txt");
    let mut body = String::new();
    let mut lines = Vec::new();
    for i in 0..23 {
        if i % 7 == 3 {
            body.push_str("  \n"); // empty lines are skipped but keep their number
        } else {
            body.push_str(TEXTS[i % TEXTS.len()]);
            body.push_str(&" again".repeat(i % 5));
            body.push('\n');
            lines.push(i as u64 + 1);
        }
    }
    std::fs::write(&f, body).unwrap();
    (dir, f.display().to_string(), lines)
}

fn assert_same_scores(a: &BTreeMap<u64, BTreeMap<String, Vec<f32>>>, b: &BTreeMap<u64, BTreeMap<String, Vec<f32>>>, what: &str) {
    for (line, methods) in b {
        let reference = &a[line];
        assert_eq!(reference.keys().collect::<Vec<_>>(), methods.keys().collect::<Vec<_>>(), "{what}");
        for (m, s) in methods {
            assert_eq!(s.len(), reference[m].len(), "{what}: line {line} {m}");
            for (x, y) in reference[m].iter().zip(s) {
                assert!(close(*x, *y), "{what}: line {line} {m}: {x} vs {y}");
            }
        }
    }
}

#[test]
fn cli_batch_sizes_and_shards_give_the_same_results() {
    let (_dir, f, lines) = corpus();
    let model = fixture("tiny-bert");
    let expnet_file = fixture("tiny-bert-expnet.safetensors");
    let methods = format!("expnet,{}", BATCHABLE.join(","));
    let run = |extra: &[&str]| {
        let mut args = vec!["explain", "--model", &model, "--expnet", &expnet_file, "--methods", &methods, "--input", &f];
        args.extend_from_slice(extra);
        let (code, out, err) = expnet_cli(&args, None);
        assert_eq!(code, 0, "{extra:?}: {err}");
        let got: Vec<u64> = out.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["line"].as_u64().unwrap()).collect();
        (got, scores_by_line(&out))
    };
    let (order1, one) = run(&["--batch-size", "1"]);
    assert_eq!(order1, lines, "one object per non-empty line, in input order");
    for bs in ["2", "5", "64"] {
        let (order, many) = run(&["--batch-size", bs]);
        assert_eq!(order, lines, "batch size {bs}: input order");
        assert_same_scores(&one, &many, &format!("batch size {bs}"));
    }
    for n in [1usize, 2, 3, 5, 30] {
        let mut seen = Vec::new();
        for k in 1..=n {
            let shard = format!("{k}/{n}");
            let (order, part) = run(&["--shard", &shard, "--batch-size", "3"]);
            assert!(order.iter().all(|&l| (l as usize - 1) % n + 1 == k), "shard {shard} took lines {order:?}");
            assert!(order.windows(2).all(|w| w[0] < w[1]), "shard {shard} in input order");
            assert_same_scores(&one, &part, &format!("shard {shard}"));
            seen.extend(order);
        }
        seen.sort_unstable();
        assert_eq!(seen, lines, "{n} shards are disjoint and cover every non-empty line");
    }
}

#[test]
fn an_empty_shard_is_a_note_not_a_failure() {
    let (code, out, err) = expnet_cli(&["explain", "--model", &fixture("tiny-bert"), "--input", "-", "--shard", "3/3"], Some("a fine film\n\n"));
    assert_eq!(code, 0, "{err}");
    assert!(out.is_empty() && err.contains("shard 3/3 holds none"), "{out} / {err}");
    let (code, _, err) = expnet_cli(&["explain", "--model", &fixture("tiny-bert"), "--input", "-"], Some("\n  \n"));
    assert_ne!(code, 0);
    assert!(err.contains("no non-empty lines") && err.contains("hint"), "{err}");
}

#[test]
fn stdin_is_answered_line_by_line_before_it_closes() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_expnet"))
        .args(["explain", "--model", &fixture("tiny-bert"), "--methods", "attention,saliency", "--input", "-", "--batch-size", "16"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    for (i, text) in ["a fine film", "", "bad"].iter().enumerate() {
        writeln!(stdin, "{text}").unwrap();
        stdin.flush().unwrap();
        if text.is_empty() {
            continue;
        }
        let got = rx.recv_timeout(Duration::from_secs(60)).expect("an answer while stdin is still open");
        let v: serde_json::Value = serde_json::from_str(&got).unwrap();
        assert_eq!(v["line"], i + 1);
        assert_eq!(v["text"], *text);
    }
    drop(stdin);
    let status = child.wait().unwrap();
    assert!(status.success());
    assert!(rx.recv_timeout(Duration::from_secs(5)).is_err(), "nothing after the end");
}

#[test]
fn bad_shard_and_batch_size_values_fail_with_one_line() {
    let (_dir, f, _) = corpus();
    let model = fixture("tiny-bert");
    let cases: &[(&[&str], &str)] = &[
        (&["--shard", "0/3"], "--shard"),
        (&["--shard", "4/3"], "between 1 and N"),
        (&["--shard", "1/0"], "at least 1"),
        (&["--shard", "x/3"], "whole numbers"),
        (&["--shard", "2"], "K/N"),
        (&["--shard", "-1/3"], "whole numbers"),
        (&["--batch-size", "0"], "--batch-size"),
        (&["--batch-size", "many"], "--batch-size"),
        (&["--batch-size", "-4"], "--batch-size"),
    ];
    for (extra, needle) in cases {
        let mut args = vec!["explain", "--model", &model, "--input", &f];
        args.extend_from_slice(extra);
        let (code, out, err) = expnet_cli(&args, None);
        assert_eq!(code, 1, "{extra:?} should fail: {err}");
        assert!(out.is_empty(), "{extra:?}: nothing explained");
        let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{extra:?}: one-line error:\n{err}");
        assert!(lines[0].contains(needle) && lines[0].contains("hint") && !err.contains("panicked"), "{extra:?}: {err}");
    }
    let (code, _, err) = expnet_cli(&["explain", "--model", &model, "--shard", "1/2", "a fine film"], None);
    assert_eq!(code, 1);
    assert!(err.contains("--shard") && err.contains("--input") && err.lines().count() == 1, "{err}");
}

#[test]
fn lines_before_a_bad_byte_are_still_answered() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("mixed.txt");
    std::fs::write(&f, b"a fine film\n\nbad film\nan awful caf\xe9\nnever read\n").unwrap();
    let (code, out, err) = expnet_cli(&["explain", "--model", &fixture("tiny-bert"), "--input", f.to_str().unwrap()], None);
    assert_eq!(code, 1, "{err}");
    let lines: Vec<u64> = out.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["line"].as_u64().unwrap()).collect();
    assert_eq!(lines, [1, 3], "the lines before the bad one, in order");
    assert!(err.trim().lines().count() == 1 && err.contains("mixed.txt:4:13: not valid UTF-8"), "{err}");
}
