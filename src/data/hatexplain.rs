//! HateXplain posts: three annotators' labels and per-annotator rationale
//! masks.
//!
//! [`load_hatexplain`] (what `load("hatexplain:…")` uses):
//! - `Dev` → `raw/validation.jsonl`, `Test` → `raw/test.jsonl`: the label is
//!   the majority of the three annotators (posts where all three differ are
//!   skipped and counted in [`Dataset::skipped`]); the rationale is the mean
//!   of the masks of the annotators who gave one (a fraction per word), `None`
//!   when nobody did (posts whose majority is normal). Use
//!   [`super::Example::binary_rationale`]`(0.5)` for a majority gold.
//! - `Train` → `raw/train_labels.csv` (`text`, `majority_label`, …): the
//!   official train split's labels for classifier training, no rationales.
//!
//! Labels keep the files' encoding: 0 hatespeech, 1 normal, 2 offensive.
//!
//! [`load_hatexplain_eraser`] reads the ERASER version (`eraser/*.jsonl` +
//! `eraser/docs.jsonl`), whose documents are bert-base-uncased word-piece ids:
//! words there are word pieces (`##` continuations kept, [CLS]/[SEP] dropped)
//! and the rationale is the **union** of the evidence spans (the annotators'
//! masks merged), not a fraction. Pieces are lower-cased, and `<user>`-style
//! placeholders come out as `<`, `user`, `>` pieces. [`merge_word_pieces`]
//! joins continuations back into whole words.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Result, bail};
use serde::Deserialize;

use super::{
    Dataset, Example, Split, csv, in_folder, line_error, mark_evidence, numbered_lines, parse_json_line,
    read_file,
};

pub const LABELS: [&str; 3] = ["hatespeech", "normal", "offensive"];

#[derive(Deserialize)]
struct RawPost {
    id: String,
    annotators: Annotators,
    #[serde(default)]
    rationales: Vec<Vec<f32>>,
    post_tokens: Vec<String>,
}

#[derive(Deserialize)]
struct Annotators {
    label: Vec<i64>,
}

/// Majority of the annotators' labels (strictly more than half); `None` if
/// there is none.
fn majority(labels: &[i64]) -> Option<i64> {
    let mut counts: HashMap<i64, usize> = HashMap::new();
    for &l in labels {
        *counts.entry(l).or_default() += 1;
    }
    counts
        .into_iter()
        .find(|&(_, c)| 2 * c > labels.len())
        .map(|(l, _)| l)
}

fn check_label(file: &Path, line: usize, l: i64) -> Result<usize> {
    if (0..3).contains(&l) {
        Ok(l as usize)
    } else {
        Err(line_error(
            file,
            line,
            format!("label {l} is not 0 (hatespeech), 1 (normal) or 2 (offensive)"),
        ))
    }
}

fn load_raw(path: &Path, split: Split) -> Result<Dataset> {
    let file = in_folder(
        path,
        match split {
            Split::Dev => "raw/validation.jsonl",
            _ => "raw/test.jsonl",
        },
    )?;
    let text = read_file(&file, "HateXplain raw posts, one JSON object per line")?;
    let mut examples = Vec::new();
    let mut skipped = 0;
    for (line_no, line) in numbered_lines(&text) {
        let post: RawPost = parse_json_line(&file, line_no, line)?;
        for &l in &post.annotators.label {
            check_label(&file, line_no, l)?;
        }
        if post.post_tokens.is_empty() {
            return Err(line_error(&file, line_no, "post_tokens is empty"));
        }
        let Some(label) = majority(&post.annotators.label) else {
            skipped += 1;
            continue;
        };
        let n = post.post_tokens.len();
        let rationale = if post.rationales.is_empty() {
            None
        } else {
            let mut mean = vec![0.0f32; n];
            for (a, mask) in post.rationales.iter().enumerate() {
                if mask.len() != n {
                    return Err(line_error(
                        &file,
                        line_no,
                        format!(
                            "rationale {} has {} values for {n} post_tokens",
                            a + 1,
                            mask.len()
                        ),
                    ));
                }
                mean.iter_mut().zip(mask).for_each(|(m, v)| *m += v);
            }
            let k = post.rationales.len() as f32;
            mean.iter_mut().for_each(|m| *m /= k);
            Some(mean)
        };
        examples.push(Example {
            id: post.id,
            words: post.post_tokens,
            words_pair: None,
            label: label as usize,
            rationale,
            split,
        });
    }
    Ok(Dataset {
        name: "hatexplain".into(),
        labels: LABELS.map(String::from).to_vec(),
        examples,
        skipped,
    })
}

fn load_train_csv(path: &Path) -> Result<Dataset> {
    let file = in_folder(path, "raw/train_labels.csv")?;
    let text = read_file(&file, "HateXplain train labels CSV")?;
    let records = csv::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let Some((header, rows)) = records.split_first() else {
        bail!(
            "{}: empty file (expected a header with text and majority_label)",
            file.display()
        );
    };
    let col = |name: &str| {
        header
            .fields
            .iter()
            .position(|f| f.trim() == name)
            .ok_or_else(|| {
                line_error(
                    &file,
                    header.line,
                    format!("no {name:?} column in the header {:?}", header.fields),
                )
            })
    };
    let (text_col, label_col) = (col("text")?, col("majority_label")?);
    let mut examples = Vec::new();
    for rec in rows {
        let get = |c: usize| {
            rec.fields.get(c).ok_or_else(|| {
                line_error(
                    &file,
                    rec.line,
                    format!(
                        "{} fields, header has {}",
                        rec.fields.len(),
                        header.fields.len()
                    ),
                )
            })
        };
        let raw_label = get(label_col)?;
        let label = raw_label.trim().parse::<i64>().map_err(|_| {
            line_error(
                &file,
                rec.line,
                format!("majority_label {raw_label:?} is not a number"),
            )
        })?;
        let label = check_label(&file, rec.line, label)?;
        let words: Vec<String> = get(text_col)?
            .split_whitespace()
            .map(String::from)
            .collect();
        if words.is_empty() {
            return Err(line_error(&file, rec.line, "empty text"));
        }
        examples.push(Example {
            id: format!("hatexplain-train-{}", rec.line),
            words,
            words_pair: None,
            label,
            rationale: None,
            split: Split::Train,
        });
    }
    Ok(Dataset {
        name: "hatexplain".into(),
        labels: LABELS.map(String::from).to_vec(),
        examples,
        skipped: 0,
    })
}

/// HateXplain from the raw files (see the module doc for which file each
/// split reads).
pub fn load_hatexplain(path: &Path, split: Split) -> Result<Dataset> {
    match split {
        Split::Train => load_train_csv(path),
        _ => load_raw(path, split),
    }
}

/// Read a WordPiece `vocab.txt` (one piece per line, id = line index).
pub fn read_vocab(path: &Path) -> Result<Vec<String>> {
    let text = read_file(path, "WordPiece vocabulary, one piece per line")?;
    let vocab: Vec<String> = text
        .lines()
        .map(|l| l.trim_end_matches('\r').to_string())
        .collect();
    if vocab.is_empty() {
        bail!("{}: empty vocabulary", path.display());
    }
    Ok(vocab)
}

#[derive(Deserialize)]
struct EraserDoc {
    docid: String,
    text: String,
}

#[derive(Deserialize)]
struct EraserAnnotation {
    annotation_id: String,
    classification: String,
    #[serde(default)]
    evidences: Vec<Vec<EraserEvidence>>,
}

#[derive(Deserialize)]
struct EraserEvidence {
    start_token: i64,
    end_token: i64,
}

/// HateXplain's ERASER files decoded with `vocab` (the uncased BERT
/// vocabulary): piece-level words and the union-of-annotators evidence mask
/// (see the module doc). `path` is the `hatexplain` folder.
pub fn load_hatexplain_eraser(path: &Path, split: Split, vocab: &[String]) -> Result<Dataset> {
    let docs_file = in_folder(path, "eraser/docs.jsonl")?;
    let docs_text = read_file(&docs_file, "ERASER documents, {docid, text} per line")?;
    let mut docs: HashMap<String, Vec<String>> = HashMap::new();
    for (line_no, line) in numbered_lines(&docs_text) {
        let doc: EraserDoc = parse_json_line(&docs_file, line_no, line)?;
        let pieces = doc
            .text
            .split_whitespace()
            .map(|id| {
                let i: usize = id.parse().map_err(|_| {
                    line_error(
                        &docs_file,
                        line_no,
                        format!("token {id:?} is not a word-piece id"),
                    )
                })?;
                vocab.get(i).cloned().ok_or_else(|| {
                    line_error(
                        &docs_file,
                        line_no,
                        format!(
                            "id {i} outside the {}-entry vocabulary (wrong vocab.txt?)",
                            vocab.len()
                        ),
                    )
                })
            })
            .collect::<Result<Vec<_>>>()?;
        docs.insert(doc.docid, pieces);
    }
    let file = in_folder(
        path,
        match split {
            Split::Train => "eraser/train.jsonl",
            Split::Dev => "eraser/val.jsonl",
            Split::Test => "eraser/test.jsonl",
        },
    )?;
    let text = read_file(&file, "ERASER annotations, one JSON object per line")?;
    let mut examples = Vec::new();
    for (line_no, line) in numbered_lines(&text) {
        let ann: EraserAnnotation = parse_json_line(&file, line_no, line)?;
        let label = LABELS
            .iter()
            .position(|l| *l == ann.classification)
            .ok_or_else(|| {
                line_error(
                    &file,
                    line_no,
                    format!(
                        "classification {:?} is not one of {LABELS:?}",
                        ann.classification
                    ),
                )
            })?;
        let Some(pieces) = docs.get(&ann.annotation_id) else {
            return Err(line_error(
                &file,
                line_no,
                format!(
                    "document {:?} not in {}",
                    ann.annotation_id,
                    docs_file.display()
                ),
            ));
        };
        let n = pieces.len();
        let mut mask = vec![0.0f32; n];
        for ev in ann.evidences.iter().flatten() {
            if !mark_evidence(&mut mask, ev.start_token, ev.end_token) {
                return Err(line_error(
                    &file,
                    line_no,
                    format!(
                        "evidence {}..{} outside the {n} pieces",
                        ev.start_token, ev.end_token
                    ),
                ));
            }
        }
        // Drop the leading [CLS] and trailing [SEP] the ids carry.
        let lo = usize::from(pieces.first().is_some_and(|p| p == "[CLS]"));
        let hi = if n > lo && pieces[n - 1] == "[SEP]" {
            n - 1
        } else {
            n
        };
        examples.push(Example {
            id: ann.annotation_id,
            words: pieces[lo..hi].to_vec(),
            words_pair: None,
            label,
            rationale: Some(mask[lo..hi].to_vec()),
            split,
        });
    }
    Ok(Dataset {
        name: "hatexplain".into(),
        labels: LABELS.map(String::from).to_vec(),
        examples,
        skipped: 0,
    })
}

/// Join `##` continuation pieces onto the preceding piece, so piece-level
/// examples become word-level; a word's rationale is the maximum (union) over
/// its pieces.
pub fn merge_word_pieces(example: &Example) -> Example {
    let mut words: Vec<String> = Vec::new();
    let mut rationale: Vec<f32> = Vec::new();
    for (i, p) in example.words.iter().enumerate() {
        let v = example
            .rationale
            .as_ref()
            .and_then(|r| r.get(i).copied())
            .unwrap_or(0.0);
        match p.strip_prefix("##") {
            Some(rest) if !words.is_empty() && !rest.is_empty() => {
                words.last_mut().unwrap().push_str(rest);
                let last = rationale.last_mut().unwrap();
                *last = last.max(v);
            }
            _ => {
                words.push(p.clone());
                rationale.push(v);
            }
        }
    }
    Example {
        words,
        rationale: example.rationale.as_ref().map(|_| rationale),
        ..example.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// Four invented posts: hate (two rationales), normal (none), offensive
    /// (three), all-different labels (skipped).
    const RAW: &str = r#"{"id":"p1","annotators":{"label":[0,0,2],"annotator_id":[1,2,3]},"rationales":[[0,1,1,0],[0,1,0,0]],"post_tokens":["<user>","awful","people","here"]}
{"id":"p2","annotators":{"label":[1,1,2],"annotator_id":[1,2,3]},"rationales":[],"post_tokens":["nice","day"]}
{"id":"p3","annotators":{"label":[2,2,2],"annotator_id":[1,2,3]},"rationales":[[1,0],[1,1],[0,0]],"post_tokens":["shut","up"]}
{"id":"p4","annotators":{"label":[0,1,2],"annotator_id":[1,2,3]},"rationales":[],"post_tokens":["who","knows"]}
"#;

    fn fixture() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("raw")).unwrap();
        fs::create_dir_all(dir.path().join("eraser")).unwrap();
        fs::write(dir.path().join("raw/test.jsonl"), RAW).unwrap();
        fs::write(
            dir.path().join("raw/train_labels.csv"),
            "text,majority_label,severity,labels\nyou are all fine,1,Low,\"1, 1, 2\"\n\"quoted, text\",0,High,\"0, 0, 0\"\n",
        )
        .unwrap();
        dir
    }

    #[test]
    fn raw_posts_take_majority_and_mean_rationale() {
        let dir = fixture();
        let ds = load_hatexplain(dir.path(), Split::Test).unwrap();
        assert_eq!(ds.labels, vec!["hatespeech", "normal", "offensive"]);
        assert_eq!(ds.skipped, 1);
        let got: Vec<(&str, usize)> = ds
            .examples
            .iter()
            .map(|e| (e.id.as_str(), e.label))
            .collect();
        assert_eq!(got, vec![("p1", 0), ("p2", 1), ("p3", 2)]);
        assert_eq!(
            ds.examples[0].rationale.as_deref(),
            Some(&[0.0, 1.0, 0.5, 0.0][..])
        );
        assert_eq!(ds.examples[0].words[0], "<user>");
        assert_eq!(ds.examples[1].rationale, None);
        let r3 = ds.examples[2].rationale.as_ref().unwrap();
        assert!((r3[0] - 2.0 / 3.0).abs() < 1e-6 && (r3[1] - 1.0 / 3.0).abs() < 1e-6);
        assert_eq!(
            ds.examples[2].binary_rationale(0.5),
            Some(vec![true, false])
        );
        assert_eq!(
            ds.examples[0].binary_rationale(0.5),
            Some(vec![false, true, true, false])
        );
    }

    #[test]
    fn train_split_reads_the_csv() {
        let dir = fixture();
        let ds = load_hatexplain(dir.path(), Split::Train).unwrap();
        assert_eq!(ds.examples.len(), 2);
        assert_eq!(ds.examples[0].words, vec!["you", "are", "all", "fine"]);
        assert_eq!(ds.examples[0].label, 1);
        assert_eq!(ds.examples[1].text(), "quoted, text");
        assert_eq!(ds.examples[1].label, 0);
        assert!(
            ds.examples
                .iter()
                .all(|e| e.rationale.is_none() && e.split == Split::Train)
        );

        fs::write(
            dir.path().join("raw/train_labels.csv"),
            "text,majority_label\nok,1\nbad,7\n",
        )
        .unwrap();
        let err = load_hatexplain(dir.path(), Split::Train)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("train_labels.csv:3:") && err.contains("label 7"),
            "{err}"
        );
        fs::write(
            dir.path().join("raw/train_labels.csv"),
            "words,label\nok,1\n",
        )
        .unwrap();
        let err = load_hatexplain(dir.path(), Split::Train)
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"text\""), "{err}");
    }

    #[test]
    fn bad_raw_posts_name_file_and_line() {
        let dir = fixture();
        let bad = RAW.replace("[[1,0],[1,1],[0,0]]", "[[1,0],[1,1,1],[0,0]]");
        fs::write(dir.path().join("raw/validation.jsonl"), bad).unwrap();
        let err = load_hatexplain(dir.path(), Split::Dev)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("validation.jsonl:3:") && err.contains("rationale 2 has 3 values"),
            "{err}"
        );
        fs::write(dir.path().join("raw/validation.jsonl"), "{\"id\":\"x\"}\n").unwrap();
        let err = load_hatexplain(dir.path(), Split::Dev)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("validation.jsonl:1:") && err.contains("annotators"),
            "{err}"
        );
    }

    #[test]
    fn eraser_files_decode_pieces_with_union_mask() {
        let dir = fixture();
        let vocab: Vec<String> = [
            "[PAD]", "[CLS]", "[SEP]", "you", "dumb", "##ass", "<", "user", ">",
        ]
        .map(String::from)
        .to_vec();
        fs::write(
            dir.path().join("eraser/docs.jsonl"),
            "{\"docid\": \"e1\", \"text\": \"1 6 7 8 3 4 5 2\"}\n",
        )
        .unwrap();
        fs::write(
            dir.path().join("eraser/test.jsonl"),
            r#"{"annotation_id": "e1", "classification": "offensive", "evidences": [[{"docid": "e1", "start_token": 4, "end_token": 5, "text": "3"}, {"docid": "e1", "start_token": 5, "end_token": 7, "text": "4 5"}]]}
"#,
        )
        .unwrap();
        let ds = load_hatexplain_eraser(dir.path(), Split::Test, &vocab).unwrap();
        let e = &ds.examples[0];
        assert_eq!(e.words, vec!["<", "user", ">", "you", "dumb", "##ass"]);
        assert_eq!(e.rationale.as_deref(), Some(&[0., 0., 0., 1., 1., 1.][..]));
        assert_eq!(e.label, 2);
        let merged = merge_word_pieces(e);
        assert_eq!(merged.words, vec!["<", "user", ">", "you", "dumbass"]);
        assert_eq!(merged.rationale.as_deref(), Some(&[0., 0., 0., 1., 1.][..]));

        let short = &vocab[..5];
        let err = load_hatexplain_eraser(dir.path(), Split::Test, short)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("docs.jsonl:1:") && err.contains("vocabulary"),
            "{err}"
        );
    }
}
