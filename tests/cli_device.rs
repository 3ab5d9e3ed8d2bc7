//! `--device` on every command (issue 12), and commands whose stdout reader
//! goes away. This build has no `cuda` feature (CI is CPU-only): `cpu` and
//! `auto` run on the CPU, `cuda` explains how to get a CUDA build.

use std::path::Path;
use std::process::{Command, Stdio};

fn expnet(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_expnet")).args(args).output().expect("run expnet");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name).display().to_string()
}

#[test]
fn cpu_and_auto_run_and_give_the_same_scores() {
    let m = fixture("tiny-bert");
    let runs: Vec<String> = [vec![], vec!["--device", "cpu"], vec!["--device", "auto"], vec!["--device=CPU"]]
        .into_iter()
        .map(|extra| {
            let mut args = vec!["explain", "--model", &m, "a fine film"];
            args.extend(extra);
            let (code, out, err) = expnet(&args);
            assert_eq!(code, 0, "{args:?}: {err}");
            // Everything but the timings.
            let mut v: serde_json::Value = serde_json::from_str(&out).unwrap();
            for m in v["explanations"].as_object_mut().unwrap().values_mut() {
                m.as_object_mut().unwrap().remove("ms");
            }
            v.to_string()
        })
        .collect();
    assert!(runs[0].contains("\"scores\""), "{}", runs[0]);
    assert!(runs.iter().all(|r| r == &runs[0]), "{runs:?}");
    // Before the subcommand too (a global flag), and named in bench's header.
    let (code, out, err) = expnet(&["--device", "cpu", "bench", "--model", &m, "--methods", "attention", "--lengths", "8", "--repeats", "1"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.lines().next().is_some_and(|l| l.contains("device cpu")), "{out}");
}

#[test]
fn cuda_without_the_feature_is_a_one_line_error_with_the_rebuild_hint() {
    if cfg!(feature = "cuda") {
        return; // a CUDA build: `cuda` opens a GPU instead (untested here)
    }
    let m = fixture("tiny-bert");
    for args in [
        vec!["explain", "--model", &m, "--device", "cuda", "a fine film"],
        vec!["--device", "cuda:1", "eval", "--model", &m, "--data", "sst:/nonexistent"],
        vec!["finetune", "--device", "gpu", "--base", &m, "--data", "sst:/nonexistent", "--out", "/nonexistent/out"],
    ] {
        let (code, out, err) = expnet(&args);
        assert_eq!(code, 1, "{args:?}: {err}");
        assert!(out.is_empty(), "{args:?}: {out}");
        let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{args:?}: {err}");
        assert!(lines[0].contains("built without CUDA") && lines[0].contains("--features cuda") && lines[0].contains("hint"), "{err}");
    }
}

#[test]
fn an_unknown_device_is_refused_with_the_choices() {
    let (code, _, err) = expnet(&["explain", "--device", "tpu", "x"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("unknown device \"tpu\"") && err.contains("cpu, cuda, cuda:N or auto"), "{err}");
    let (code, _, err) = expnet(&["explain", "--device", "cuda:x", "x"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("cuda:0"), "{err}");
}

#[test]
fn a_reader_that_goes_away_ends_bench_quietly() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_expnet"))
        .args(["bench", "--model", &fixture("tiny-bert"), "--methods", "attention", "--lengths", "8", "--repeats", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // closed before the first line is written
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "status {:?}, stderr {err}", out.status);
    assert!(!err.contains("panicked") && !err.to_lowercase().contains("broken pipe"), "{err}");
}
