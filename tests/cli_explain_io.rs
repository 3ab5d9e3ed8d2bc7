//! `expnet explain` at its edges (issue 14): empty text, --input with TEXT,
//! invalid UTF-8, a closed pipe, huge and BPE inputs in tables, bare encoders.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};

fn expnet(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_expnet")).args(args).output().expect("run expnet");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name).display().to_string()
}

fn one_line_error(args: &[&str], needle: &str) -> String {
    let (code, _, err) = expnet(args);
    assert_ne!(code, 0, "{args:?} should fail");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one-line error for {args:?}:\n{err}");
    assert!(lines[0].contains(needle) && lines[0].contains("hint"), "{args:?}: {err}");
    err
}

#[test]
fn empty_text_has_a_hint() {
    let m = fixture("tiny-bert");
    one_line_error(&["explain", "--model", &m, ""], "empty");
    one_line_error(&["explain", "--model", &m, "  "], "empty");
}

#[test]
fn input_file_and_text_are_not_combined() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("in.txt");
    std::fs::write(&f, "a fine film\n").unwrap();
    one_line_error(&["explain", "--model", &fixture("tiny-bert"), "--input", f.to_str().unwrap(), "other text"], "both --input and a TEXT");
}

#[test]
fn invalid_utf8_names_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("latin1.txt");
    std::fs::write(&f, b"a fine film\nan awful caf\xe9\n").unwrap();
    let err = one_line_error(&["explain", "--model", &fixture("tiny-bert"), "--input", f.to_str().unwrap()], "not valid UTF-8");
    assert!(err.contains("latin1.txt:2:13"), "{err}");
}

#[test]
fn a_closed_pipe_ends_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("many.txt");
    std::fs::write(&f, "a fine film that goes on\n".repeat(3000)).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_expnet"))
        .args(["explain", "--model", &fixture("tiny-bert"), "--input", f.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap(); // reader dropped: pipe closed
    assert!(first.starts_with('{'));
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "status {:?}, stderr {err}", out.status);
    assert!(!err.to_lowercase().contains("broken pipe") && !err.contains("error"), "{err}");
}

#[test]
fn tables_show_the_analysed_text_and_readable_pieces() {
    let (code, out, err) = expnet(&["explain", "--model", &fixture("tiny-roberta"), "--format", "table", "a good movie"]);
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains('Ġ'), "raw byte-level BPE markers in the table:\n{out}");
    assert!(out.lines().any(|l| l.starts_with("movie ")), "pieces as written in the text:\n{out}");

    let long = "word ".repeat(4000);
    let (code, out, err) = expnet(&["explain", "--model", &fixture("tiny-bert"), "--format", "table", long.trim()]);
    assert_eq!(code, 0, "{err}");
    let text_line = out.lines().next().unwrap();
    assert!(text_line.len() < 5000, "the whole 20,000-character text was printed ({} bytes)", text_line.len());
    assert!(text_line.contains("more characters not analysed"), "{text_line:.200}");
}

#[test]
fn all_methods_on_a_bare_encoder_run_what_applies() {
    let (code, out, err) = expnet(&["explain", "--model", &fixture("tiny-bert-encoder"), "--methods", "all", "a fine film"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("skipped") && err.contains("bare encoder"), "{err}");
    let v: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    let ex = v["explanations"].as_object().unwrap();
    assert!(ex.contains_key("rollout") && ex.contains_key("attention"), "{ex:?}");
    assert!(!ex.contains_key("saliency"));
    // The transfer ExpNet needs no head: a bare encoder gets it too.
    assert_eq!(ex["expnet"]["explainer"]["kind"], "transfer", "{ex:?}");
}

#[test]
fn help_names_the_slow_methods() {
    let (_, out, _) = expnet(&["explain", "--help"]);
    let flat = out.split_whitespace().collect::<Vec<_>>().join(" ");
    for m in expnet::explain::METHOD_NAMES {
        if expnet::explain::create(m).unwrap().is_slow() {
            assert!(flat.contains(m), "--help does not name slow method {m}");
        }
    }
    assert!(flat.contains("Slow ones"));
    let _ = std::io::stdout().flush();
}
