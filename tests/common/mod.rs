//! Helpers shared by several integration tests.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A tiny fixture model folder.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// `expnet train --model MODEL --data DATA --out OUT --cache DIR/cache`, with
/// the explainer registry inside `dir`; callers add the options under test.
pub fn train(model: &Path, data: &str, out: &Path, dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_expnet"));
    c.arg("train").arg("--model").arg(model).arg("--data").arg(data).arg("--out").arg(out);
    c.arg("--cache").arg(dir.join("cache")).env("EXPNET_CACHE", dir.join("explainers"));
    c
}

/// A HateXplain-format folder with `posts` made-up posts and rationales
/// (project-made, not data excerpts): `raw/validation.jsonl` is the `#dev` split.
pub fn tiny_rationale_set(dir: &Path, posts: usize) {
    let words = ["the", "movie", "was", "great", "and", "bad", "people", "are", "nice", "awful", "fun", "a", "day"];
    let mut lines = String::new();
    for i in 0..posts {
        let n = 4 + i % 5;
        let tokens: Vec<&str> = (0..n).map(|k| words[(i * 7 + k * 3) % words.len()]).collect();
        let marked: Vec<u8> = tokens.iter().map(|t| ["great", "bad", "awful", "nice"].contains(t) as u8).collect();
        let label = i % 3;
        lines.push_str(
            &serde_json::json!({
                "id": format!("post{i}"),
                "annotators": {"label": [label, label, label]},
                "rationales": [marked, marked],
                "post_tokens": tokens,
            })
            .to_string(),
        );
        lines.push('\n');
    }
    std::fs::create_dir_all(dir.join("raw")).unwrap();
    std::fs::write(dir.join("raw/validation.jsonl"), lines).unwrap();
}
