//! Helpers shared by several integration tests.

use std::path::Path;

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
