//! Runs `tests/e2e_tui.sh` (tmux: type, wait for coloured tokens, move in the
//! head grid, toggle methods, quit, check the terminal is restored) against
//! the `tui_fake` example, i.e. the real explorer on the fake backend.
//! Skipped with a notice when tmux is not installed.

use std::path::PathBuf;
use std::process::Command;

fn fake_explorer() -> PathBuf {
    // target/debug/deps/tui_e2e-HASH -> target/debug/examples/tui_fake
    let exe = std::env::current_exe().expect("test executable path");
    let debug = exe.parent().and_then(|d| d.parent()).expect("target profile dir");
    debug.join("examples").join(format!("tui_fake{}", std::env::consts::EXE_SUFFIX))
}

#[test]
fn explorer_in_tmux_with_fake_backend() {
    if Command::new("tmux").arg("-V").output().is_err() {
        eprintln!("skipping the tmux end-to-end test: tmux is not installed");
        return;
    }
    let bin = fake_explorer();
    assert!(bin.exists(), "{} missing: run `cargo test` (builds examples) or `cargo build --example tui_fake`", bin.display());
    let out = Command::new("bash").arg("tests/e2e_tui.sh").arg(&bin).output().expect("run bash");
    let log = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "e2e_tui.sh failed:\n{log}");
    assert!(log.contains("4 passed, 0 failed"), "{log}");
}

/// The same script against the real binary on the tiny fixture classifier and
/// a tiny ExpNet trained for it: the explorer with the library backend.
#[test]
fn explorer_in_tmux_with_real_model() {
    if Command::new("tmux").arg("-V").output().is_err() {
        eprintln!("skipping the tmux end-to-end test: tmux is not installed");
        return;
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("bash")
        .arg("tests/e2e_tui.sh")
        .arg(env!("CARGO_BIN_EXE_expnet"))
        .arg("tui")
        .arg("--model")
        .arg(root.join("tests/fixtures/tiny-bert"))
        .arg("--expnet")
        .arg(root.join("tests/fixtures/tiny-bert-expnet.safetensors"))
        .output()
        .expect("run bash");
    let log = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "e2e_tui.sh failed:\n{log}");
    assert!(log.contains("4 passed, 0 failed"), "{log}");
}

/// `tests/soak_tui.sh` on the real binary and the tiny fixture model: a few
/// thousand random keys, CR-separated pastes and resizes, then SIGTSTP /
/// SIGCONT and SIGTERM; checks no panic, exit 143, and a restored terminal
/// (alternate screen left, cursor shown, mouse off, cooked mode).
#[test]
fn explorer_survives_a_key_storm_and_signals() {
    if Command::new("tmux").arg("-V").output().is_err() {
        eprintln!("skipping the tmux soak test: tmux is not installed");
        return;
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let t0 = std::time::Instant::now();
    let out = Command::new("bash")
        .arg(root.join("tests/soak_tui.sh"))
        .arg(env!("CARGO_BIN_EXE_expnet"))
        .arg("tui")
        .arg("--model")
        .arg(root.join("tests/fixtures/tiny-bert"))
        .arg("--expnet")
        .arg(root.join("tests/fixtures/tiny-bert-expnet.safetensors"))
        .output()
        .expect("run bash");
    let log = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "soak_tui.sh failed:\n{log}");
    assert!(log.contains("4 passed, 0 failed"), "{log}");
    assert!(t0.elapsed() < std::time::Duration::from_secs(60), "soak took {:?}", t0.elapsed());
}

/// A model that does not load: the explorer shows the error, and after
/// Ctrl-C prints the whole error on stderr and exits 1 (real binary, tmux).
#[test]
fn load_failure_is_printed_after_quitting_with_a_nonzero_exit() {
    if Command::new("tmux").arg("-V").output().is_err() {
        eprintln!("skipping the tmux load-failure test: tmux is not installed");
        return;
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    std::fs::create_dir(&model).unwrap();
    let src = root.join("tests/fixtures/tiny-bert");
    for f in ["config.json", "tokenizer.json"] {
        std::fs::copy(src.join(f), model.join(f)).unwrap();
    }
    let bytes = std::fs::read(src.join("model.safetensors")).unwrap();
    std::fs::write(model.join("model.safetensors"), &bytes[..bytes.len() / 2]).unwrap();
    let err = dir.path().join("stderr.txt");
    let session = format!("expnet-loadfail-{}", std::process::id());
    let cmd = format!(
        "sh -c '{} tui --model {} 2>{}; echo __EXIT__ $?; sleep 30'",
        env!("CARGO_BIN_EXE_expnet"),
        model.display(),
        err.display()
    );
    let tmux = |args: &[&str]| Command::new("tmux").args(args).output().expect("tmux");
    tmux(&["new-session", "-d", "-s", &session, "-x", "80", "-y", "24", &cmd]);
    let screen = || String::from_utf8_lossy(&tmux(&["capture-pane", "-t", &session, "-p"]).stdout).into_owned();
    let wait = |pat: &str| {
        for _ in 0..200 {
            if screen().contains(pat) {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        false
    };
    let shown = wait("Model failed to load");
    let on_screen = screen();
    tmux(&["send-keys", "-t", &session, "C-c"]);
    let exited = wait("__EXIT__");
    let last = screen();
    tmux(&["kill-session", "-t", &session]);
    assert!(shown, "no error popup:\n{on_screen}");
    assert!(exited && last.contains("__EXIT__ 1"), "exit status:\n{last}");
    let stderr = std::fs::read_to_string(&err).unwrap();
    assert!(stderr.contains("the model failed to load") && stderr.contains("cannot read safetensors weights") && stderr.contains("hint"), "{stderr}");
}

/// An explorer whose terminal disappears (tmux server killed, window
/// closed) exits instead of spinning: a shell between tmux and the explorer
/// means the kernel's SIGHUP goes to the shell only, so the explorer has to
/// notice the hang-up itself.
#[test]
fn explorer_exits_when_its_terminal_disappears() {
    if Command::new("tmux").arg("-V").output().is_err() {
        eprintln!("skipping the tmux hang-up test: tmux is not installed");
        return;
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    // A unique argument to find the explorer's process by.
    let marker = dir.path().join(format!("hangup-{}", std::process::id()));
    std::fs::create_dir(&marker).unwrap();
    let socket = format!("expnet-hangup-{}", std::process::id());
    let cmd = format!(
        "sh -c '{} tui --model {} --export-dir {}; echo __EXIT__ $?; sleep 30'",
        env!("CARGO_BIN_EXE_expnet"),
        root.join("tests/fixtures/tiny-bert").display(),
        marker.display()
    );
    let tmux = |args: &[&str]| Command::new("tmux").arg("-L").arg(&socket).args(args).output().expect("tmux");
    tmux(&["new-session", "-d", "-s", "hangup", "-x", "80", "-y", "24", &cmd]);
    let pids = || -> Vec<String> {
        let out = Command::new("pgrep").arg("-f").arg(marker.to_str().unwrap()).output().expect("pgrep");
        String::from_utf8_lossy(&out.stdout).split_whitespace().map(str::to_owned).collect()
    };
    let screen = || String::from_utf8_lossy(&tmux(&["capture-pane", "-t", "hangup", "-p"]).stdout).into_owned();
    let mut started = false;
    for _ in 0..200 {
        if screen().contains("tiny-bert") {
            started = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(started, "the explorer did not start:\n{}", screen());
    // Only the explorer and its `sh -c` parent carry the marker.
    assert!(!pids().is_empty(), "explorer process not found");
    tmux(&["kill-server"]);
    let mut left = pids();
    for _ in 0..50 {
        if left.is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        left = pids();
    }
    for pid in &left {
        let _ = Command::new("kill").arg("-9").arg(pid).status();
    }
    assert!(left.is_empty(), "processes still running 5 s after their terminal went away: {left:?}");
}
