//! e-SNLI premise/hypothesis pairs with annotator 1's highlighted words.
//!
//! Files: `dev_highlights_ann1.jsonl`, `test_highlights_ann1.jsonl` (no train
//! split in this copy). Each record has `label` (a name), `merged_tokens`
//! (premise tokens then hypothesis tokens) and `merged_highlight_idx`. In dev,
//! `premise`/`hypothesis` are token lists; in test they are raw strings, so
//! the premise/hypothesis boundary in `merged_tokens` is found by matching the
//! tokens' concatenation against the strings with whitespace removed. Records
//! without the merged fields fall back to whitespace-split strings (or the
//! given lists) and get rationale `None`.
//!
//! `words` = premise tokens, `words_pair` = hypothesis tokens, rationale over
//! both (1 = highlighted). Labels: entailment 0, neutral 1, contradiction 2.

use std::path::Path;

use anyhow::{Result, bail};
use serde::Deserialize;
use serde_json::Value;

use super::{
    Dataset, Example, Split, in_folder, line_error, numbered_lines, parse_json_line, read_file,
};

pub const LABELS: [&str; 3] = ["entailment", "neutral", "contradiction"];

#[derive(Deserialize)]
struct Record {
    label: Value,
    premise: Value,
    hypothesis: Value,
    #[serde(default)]
    merged_tokens: Option<Vec<String>>,
    #[serde(default)]
    merged_highlight_idx: Option<Vec<i64>>,
}

/// Tokens of a `premise`/`hypothesis` field: a list as is, a string split on
/// whitespace.
fn tokens(v: &Value, what: &str) -> std::result::Result<Vec<String>, String> {
    match v {
        Value::String(s) => Ok(s.split_whitespace().map(String::from).collect()),
        Value::Array(items) => items
            .iter()
            .map(|t| {
                t.as_str()
                    .map(String::from)
                    .ok_or_else(|| format!("{what} contains a non-string token {t}"))
            })
            .collect(),
        other => Err(format!(
            "{what} is neither a string nor a token list: {other}"
        )),
    }
}

fn squash(s: &str) -> String {
    s.chars().filter(|c| !c.is_whitespace()).collect()
}

/// Index in `merged` where the hypothesis starts, given the raw strings.
fn split_point(merged: &[String], premise: &str, hypothesis: &str) -> Option<usize> {
    let (p, h) = (squash(premise), squash(hypothesis));
    let mut acc = String::new();
    for k in 0..=merged.len() {
        if acc == p && squash(&merged[k..].concat()) == h {
            return Some(k);
        }
        if k < merged.len() {
            acc.push_str(&squash(&merged[k]));
            if acc.len() > p.len() {
                break;
            }
        }
    }
    None
}

fn label_of(v: &Value) -> Option<usize> {
    match v {
        Value::String(s) => LABELS.iter().position(|l| l.eq_ignore_ascii_case(s.trim())),
        Value::Number(n) => n.as_u64().filter(|&i| i < 3).map(|i| i as usize),
        _ => None,
    }
}

/// e-SNLI dev or test pairs from the folder holding the highlight files.
pub fn load_esnli(path: &Path, split: Split) -> Result<Dataset> {
    let name = match split {
        Split::Train => bail!(
            "e-SNLI has no train split here (only dev_highlights_ann1.jsonl and test_highlights_ann1.jsonl): use dev or test"
        ),
        Split::Dev => "dev_highlights_ann1.jsonl",
        Split::Test => "test_highlights_ann1.jsonl",
    };
    let file = in_folder(path, name)?;
    let text = read_file(&file, "e-SNLI highlights, one JSON object per line")?;
    let mut examples = Vec::new();
    for (line_no, line) in numbered_lines(&text) {
        let rec: Record = parse_json_line(&file, line_no, line)?;
        let err = |m: String| line_error(&file, line_no, m);
        let label = label_of(&rec.label)
            .ok_or_else(|| err(format!("label {} is not one of {LABELS:?}", rec.label)))?;
        let (words, words_pair, rationale) = match (rec.merged_tokens, rec.merged_highlight_idx) {
            (Some(merged), Some(idx)) => {
                let k = match (&rec.premise, &rec.hypothesis) {
                    (Value::String(p), Value::String(h)) => {
                        split_point(&merged, p, h).ok_or_else(|| {
                            err("merged_tokens do not spell premise followed by hypothesis".into())
                        })?
                    }
                    _ => {
                        let p = tokens(&rec.premise, "premise").map_err(&err)?;
                        let h = tokens(&rec.hypothesis, "hypothesis").map_err(&err)?;
                        if p.len() + h.len() != merged.len()
                            || merged[..p.len()] != p[..]
                            || merged[p.len()..] != h[..]
                        {
                            return Err(err(
                                "merged_tokens differ from premise + hypothesis".into()
                            ));
                        }
                        p.len()
                    }
                };
                let mut r = vec![0.0f32; merged.len()];
                for i in idx {
                    if i < 0 || i as usize >= merged.len() {
                        return Err(err(format!(
                            "highlight index {i} outside the {} merged tokens",
                            merged.len()
                        )));
                    }
                    r[i as usize] = 1.0;
                }
                let mut merged = merged;
                let hyp = merged.split_off(k);
                (merged, hyp, Some(r))
            }
            (None, None) => {
                let p = tokens(&rec.premise, "premise").map_err(&err)?;
                let h = tokens(&rec.hypothesis, "hypothesis").map_err(&err)?;
                (p, h, None)
            }
            _ => {
                return Err(err(
                    "only one of merged_tokens / merged_highlight_idx is present".into(),
                ));
            }
        };
        if words.is_empty() || words_pair.is_empty() {
            return Err(err("empty premise or hypothesis".into()));
        }
        examples.push(Example {
            id: format!("esnli-{split}-{line_no}"),
            words,
            words_pair: Some(words_pair),
            label,
            rationale,
            split,
        });
    }
    Ok(Dataset {
        name: "esnli".into(),
        labels: LABELS.map(String::from).to_vec(),
        examples,
        skipped: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    const DEV: &str = r#"{"label": "contradiction", "merged_tokens": ["A", "cat", "sleeps", ".", "A", "cat", "runs", "."], "merged_highlight_idx": [2, 6], "premise": ["A", "cat", "sleeps", "."], "hypothesis": ["A", "cat", "runs", "."], "premise_highlight_idx": [2], "hypothesis_highlight_idx": [2]}
"#;
    const TEST: &str = r#"{"label": "entailment", "merged_tokens": ["Kids", "play", "outside", ".", "Children", "play", "."], "merged_highlight_idx": [0, 4], "premise": "Kids play outside.", "hypothesis": "Children play."}
{"label": "neutral", "premise": "A dog barks.", "hypothesis": "The dog is angry."}
"#;

    #[test]
    fn loads_pairs_with_merged_rationale() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("dev_highlights_ann1.jsonl"), DEV).unwrap();
        fs::write(dir.path().join("test_highlights_ann1.jsonl"), TEST).unwrap();
        let dev = load_esnli(dir.path(), Split::Dev).unwrap();
        let e = &dev.examples[0];
        assert_eq!(e.label, 2);
        assert_eq!(e.text(), "A cat sleeps .");
        assert_eq!(e.text_pair().as_deref(), Some("A cat runs ."));
        assert_eq!(
            e.rationale.as_deref(),
            Some(&[0., 0., 1., 0., 0., 0., 1., 0.][..])
        );
        assert_eq!(e.word_char_spans_pair().unwrap()[2], (6, 10));

        let test = load_esnli(dir.path(), Split::Test).unwrap();
        let e = &test.examples[0];
        assert_eq!(e.words, vec!["Kids", "play", "outside", "."]);
        assert_eq!(
            e.words_pair.as_deref(),
            Some(&["Children".to_string(), "play".into(), ".".into()][..])
        );
        assert_eq!(e.label, 0);
        assert_eq!(
            e.rationale.as_deref(),
            Some(&[1., 0., 0., 0., 1., 0., 0.][..])
        );
        let e = &test.examples[1];
        assert_eq!(e.rationale, None);
        assert_eq!(e.words, vec!["A", "dog", "barks."]);
        assert_eq!(e.label, 1);

        let err = load_esnli(dir.path(), Split::Train)
            .unwrap_err()
            .to_string();
        assert!(err.contains("no train split"), "{err}");
    }

    #[test]
    fn inconsistent_records_name_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("test_highlights_ann1.jsonl");
        fs::write(&p, TEST.replace("\"Children\"", "\"Kids\"")).unwrap();
        let err = load_esnli(dir.path(), Split::Test).unwrap_err().to_string();
        assert!(
            err.contains("test_highlights_ann1.jsonl:1:") && err.contains("spell"),
            "{err}"
        );
        fs::write(&p, TEST.replace("[0, 4]", "[0, 9]")).unwrap();
        let err = load_esnli(dir.path(), Split::Test).unwrap_err().to_string();
        assert!(err.contains(":1:") && err.contains("index 9"), "{err}");
        fs::write(&p, TEST.replace("neutral", "maybe")).unwrap();
        let err = load_esnli(dir.path(), Split::Test).unwrap_err().to_string();
        assert!(err.contains(":2:") && err.contains("maybe"), "{err}");
    }
}
