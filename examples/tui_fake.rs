//! `expnet-tui-fake`: the explorer on the deterministic fake backend, so the
//! terminal UI (and `tests/e2e_tui.sh`) can be exercised without weights.
//!
//! Usage: cargo run --example tui_fake -- [--theme NAME] [--text TEXT]
//!        [--slow-ms N] [--load-ms N] [--layers N] [--heads N] [--fail-load]

use std::sync::Arc;
use std::time::Duration;

use expnet::tui::testing::FakeBackend;
use expnet::tui::{ExplainBackend, TuiOptions};

fn main() {
    let mut opts = TuiOptions::default();
    let mut slow_ms = 10u64;
    let mut load_ms = 300u64;
    let mut fail = false;
    let (mut layers, mut heads) = (4usize, 4usize);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| args.next().unwrap_or_else(|| die(&format!("{name} needs a value")));
        match a.as_str() {
            "--theme" => opts.theme = Some(value("--theme")),
            "--text" => opts.initial_text = Some(value("--text")),
            "--slow-ms" => slow_ms = value("--slow-ms").parse().unwrap_or_else(|_| die("--slow-ms wants a number")),
            "--load-ms" => load_ms = value("--load-ms").parse().unwrap_or_else(|_| die("--load-ms wants a number")),
            "--layers" => layers = value("--layers").parse().unwrap_or_else(|_| die("--layers wants a number")),
            "--heads" => heads = value("--heads").parse().unwrap_or_else(|_| die("--heads wants a number")),
            "--fail-load" => fail = true,
            "-h" | "--help" => {
                println!("usage: tui_fake [--theme NAME] [--text TEXT] [--slow-ms N] [--load-ms N] [--layers N] [--heads N] [--fail-load]");
                return;
            }
            other => die(&format!("unknown argument '{other}' (try --help)")),
        }
    }
    let load = Box::new(move |_warn: &expnet::tui::worker::Warn| -> anyhow::Result<Arc<dyn ExplainBackend>> {
        // Pretend to load weights, so the "loading model…" state is visible.
        std::thread::sleep(Duration::from_millis(load_ms));
        anyhow::ensure!(!fail, "cannot open fake.safetensors: file not found (--fail-load)");
        let mut b = FakeBackend::new().slow(100, Duration::from_millis(slow_ms));
        (b.layers, b.heads) = (layers.max(1), heads.max(1));
        Ok(Arc::new(b))
    });
    if let Err(e) = expnet::tui::run(opts, load) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn die(msg: &str) -> ! {
    eprintln!("error: {msg}");
    std::process::exit(2);
}
