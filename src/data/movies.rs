//! ERASER Movies reviews, cut into windows of whole sentences.
//!
//! Layout: `{train,val,test}.jsonl` (one annotation per line: `annotation_id`
//! = docid, `classification` POS/NEG, `evidences`: lists of spans with
//! `start_token`/`end_token` (exclusive) indexing the whitespace tokens of the
//! whole document) and `docs/<docid>` (tokens separated by spaces, sentences
//! by newlines).
//!
//! Reviews average ~770 words, well over a 512-piece encoder. [`load_movies`]
//! therefore packs consecutive whole sentences greedily into windows of at
//! most `max_words` words (default [`DEFAULT_WINDOW_WORDS`] = 200, i.e. ~260
//! word pieces for English reviews, leaving head-room under 512); a single
//! sentence longer than `max_words` is split into `max_words`-word chunks.
//! Every window carries the document's label and the evidence mask restricted
//! to its words (possibly all zero); ids are `<docid>#w<k>`, k from 0.
//! [`movies_documents`] gives whole documents for models that truncate.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use serde::Deserialize;

use super::{
    Dataset, Example, Split, in_folder, line_error, mark_evidence, numbered_lines, parse_json_line,
    read_file,
};

pub const DEFAULT_WINDOW_WORDS: usize = 200;
pub const LABELS: [&str; 2] = ["negative", "positive"];

#[derive(Deserialize)]
struct Annotation {
    annotation_id: String,
    classification: String,
    #[serde(default)]
    evidences: Vec<Vec<Evidence>>,
}

#[derive(Deserialize)]
struct Evidence {
    #[serde(default)]
    docid: Option<String>,
    start_token: i64,
    end_token: i64,
}

/// One review: its sentences (as word lists), label and word-level evidence.
struct Document {
    id: String,
    sentences: Vec<Vec<String>>,
    label: usize,
    evidence: Vec<f32>,
}

fn split_file(split: Split) -> &'static str {
    match split {
        Split::Train => "train.jsonl",
        Split::Dev => "val.jsonl",
        Split::Test => "test.jsonl",
    }
}

fn read_documents(path: &Path, split: Split) -> Result<Vec<Document>> {
    let file = in_folder(path, split_file(split))?;
    let text = read_file(&file, "ERASER annotations, one JSON object per line")?;
    let docs_dir: PathBuf = path.join("docs");
    let mut docs = Vec::new();
    for (line_no, line) in numbered_lines(&text) {
        let ann: Annotation = parse_json_line(&file, line_no, line)?;
        let label = match ann.classification.as_str() {
            "NEG" => 0,
            "POS" => 1,
            other => {
                return Err(line_error(
                    &file,
                    line_no,
                    format!("classification {other:?} is neither POS nor NEG"),
                ));
            }
        };
        if ann.annotation_id.contains('/')
            || ann.annotation_id.contains("..")
            || ann.annotation_id.is_empty()
        {
            return Err(line_error(
                &file,
                line_no,
                format!(
                    "annotation_id {:?} is not a document file name",
                    ann.annotation_id
                ),
            ));
        }
        let doc_path = docs_dir.join(&ann.annotation_id);
        let doc_text = read_file(
            &doc_path,
            &format!("document of {}:{}", file.display(), line_no),
        )?;
        let sentences: Vec<Vec<String>> = doc_text
            .lines()
            .map(|l| l.split_whitespace().map(String::from).collect::<Vec<_>>())
            .filter(|s| !s.is_empty())
            .collect();
        let n: usize = sentences.iter().map(Vec::len).sum();
        let mut evidence = vec![0.0; n];
        for ev in ann.evidences.iter().flatten() {
            if let Some(d) = &ev.docid
                && d != &ann.annotation_id
            {
                return Err(line_error(
                    &file,
                    line_no,
                    format!("evidence for another document {d:?}"),
                ));
            }
            if !mark_evidence(&mut evidence, ev.start_token, ev.end_token) {
                return Err(line_error(
                    &file,
                    line_no,
                    format!(
                        "evidence span {}..{} outside the document's {n} tokens",
                        ev.start_token, ev.end_token
                    ),
                ));
            }
        }
        docs.push(Document {
            id: ann.annotation_id,
            sentences,
            label,
            evidence,
        });
    }
    Ok(docs)
}

/// Word ranges `[start, end)` of the windows of a document: whole sentences
/// packed greedily up to `max_words`, over-long sentences chunked.
pub fn window_ranges(sentence_lengths: &[usize], max_words: usize) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let (mut start, mut pos) = (0, 0);
    for &len in sentence_lengths {
        if pos > start && pos - start + len > max_words {
            out.push((start, pos));
            start = pos;
        }
        if len > max_words {
            let mut s = pos;
            while pos + len - s > max_words {
                out.push((s, s + max_words));
                s += max_words;
            }
            start = s;
        }
        pos += len;
    }
    if pos > start {
        out.push((start, pos));
    }
    out
}

/// Sentence windows of every review of `split` (see the module doc).
pub fn load_movies(path: &Path, split: Split, max_words: usize) -> Result<Dataset> {
    if max_words == 0 {
        bail!("Movies window size must be at least 1 word");
    }
    let mut examples = Vec::new();
    for doc in read_documents(path, split)? {
        let lengths: Vec<usize> = doc.sentences.iter().map(Vec::len).collect();
        let words: Vec<String> = doc.sentences.into_iter().flatten().collect();
        for (k, (s, e)) in window_ranges(&lengths, max_words).into_iter().enumerate() {
            examples.push(Example {
                id: format!("{}#w{k}", doc.id),
                words: words[s..e].to_vec(),
                words_pair: None,
                label: doc.label,
                rationale: Some(doc.evidence[s..e].to_vec()),
                split,
            });
        }
    }
    Ok(Dataset {
        name: "movies".into(),
        labels: LABELS.map(String::from).to_vec(),
        examples,
        skipped: 0,
    })
}

/// Whole reviews (one example per document, id = docid), for models that
/// truncate or window themselves.
pub fn movies_documents(path: &Path, split: Split) -> Result<Dataset> {
    let examples = read_documents(path, split)?
        .into_iter()
        .map(|d| Example {
            id: d.id,
            words: d.sentences.into_iter().flatten().collect(),
            words_pair: None,
            label: d.label,
            rationale: Some(d.evidence),
            split,
        })
        .collect();
    Ok(Dataset {
        name: "movies".into(),
        labels: LABELS.map(String::from).to_vec(),
        examples,
        skipped: 0,
    })
}

/// Windows grouped by document id, in order, for document-level aggregation.
pub fn windows_by_document(dataset: &Dataset) -> HashMap<&str, Vec<usize>> {
    let mut map: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, e) in dataset.examples.iter().enumerate() {
        let doc = e.id.rsplit_once("#w").map_or(e.id.as_str(), |(d, _)| d);
        map.entry(doc).or_default().push(i);
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn window_ranges_pack_whole_sentences() {
        assert_eq!(
            window_ranges(&[3, 4, 2, 6], 7),
            vec![(0, 7), (7, 9), (9, 15)]
        );
        assert_eq!(window_ranges(&[3, 4, 2, 5], 7), vec![(0, 7), (7, 14)]);
        assert_eq!(window_ranges(&[3, 4, 2], 9), vec![(0, 9)]);
        // an over-long sentence is chunked, then packing resumes after it
        assert_eq!(
            window_ranges(&[2, 10, 1], 4),
            vec![(0, 2), (2, 6), (6, 10), (10, 13)]
        );
        assert_eq!(window_ranges(&[], 5), vec![]);
    }

    fn fixture() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("docs")).unwrap();
        // 3 sentences: 5 + 3 + 4 words = 12 tokens
        fs::write(
            dir.path().join("docs/negA.txt"),
            "the plot is thin .\nactors seem bored\nskip this one .\n",
        )
        .unwrap();
        fs::write(dir.path().join("docs/posB.txt"), "a joyous ride\n").unwrap();
        let ann = r#"{"annotation_id": "negA.txt", "classification": "NEG", "evidences": [[{"docid": "negA.txt", "start_token": 2, "end_token": 4, "text": "is thin"}], [{"docid": "negA.txt", "start_token": 5, "end_token": 9, "text": "actors seem bored skip"}]]}
{"annotation_id": "posB.txt", "classification": "POS", "evidences": []}
"#;
        fs::write(dir.path().join("val.jsonl"), ann).unwrap();
        dir
    }

    #[test]
    fn windows_carry_label_and_restricted_evidence() {
        let dir = fixture();
        let ds = load_movies(dir.path(), Split::Dev, 7).unwrap();
        let ids: Vec<&str> = ds.examples.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, vec!["negA.txt#w0", "negA.txt#w1", "posB.txt#w0"]);
        let w0 = &ds.examples[0];
        // 5 + 3 > 7: the first sentence is a window alone, then 3 + 4 = 7 fit.
        assert_eq!(w0.text(), "the plot is thin .");
        assert_eq!(w0.label, 0);
        assert_eq!(w0.rationale.as_deref(), Some(&[0., 0., 1., 1., 0.][..]));
        let w1 = &ds.examples[1];
        assert_eq!(
            w1.words,
            vec!["actors", "seem", "bored", "skip", "this", "one", "."]
        );
        assert_eq!(
            w1.rationale.as_deref(),
            Some(&[1., 1., 1., 1., 0., 0., 0.][..])
        );
        assert_eq!(ds.examples[2].label, 1);
        assert_eq!(ds.examples[2].rationale.as_deref(), Some(&[0., 0., 0.][..]));
        let groups = windows_by_document(&ds);
        assert_eq!(groups["negA.txt"], vec![0, 1]);

        let docs = movies_documents(dir.path(), Split::Dev).unwrap();
        assert_eq!(docs.examples[0].words.len(), 12);
        assert_eq!(
            docs.examples[0]
                .rationale
                .as_ref()
                .unwrap()
                .iter()
                .sum::<f32>(),
            6.0
        );
    }

    #[test]
    fn bad_records_name_file_and_line() {
        let dir = fixture();
        let path = dir.path().join("val.jsonl");
        fs::write(&path, "{\"annotation_id\": \"posB.txt\", \"classification\": \"POS\"}\n{\"annotation_id\": \"negA.txt\", \"classification\": \"MEH\"}\n").unwrap();
        let err = load_movies(dir.path(), Split::Dev, 200)
            .unwrap_err()
            .to_string();
        assert!(err.contains("val.jsonl:2:") && err.contains("MEH"), "{err}");
        fs::write(&path, "{\"annotation_id\": \"negA.txt\", \"classification\": \"NEG\", \"evidences\": [[{\"start_token\": 3, \"end_token\": 40}]]}\n").unwrap();
        let err = load_movies(dir.path(), Split::Dev, 200)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("val.jsonl:1:") && err.contains("outside"),
            "{err}"
        );
        fs::write(&path, "{not json\n").unwrap();
        let err = load_movies(dir.path(), Split::Dev, 200)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("val.jsonl:1:") && err.contains("malformed JSON"),
            "{err}"
        );
        fs::write(
            &path,
            "{\"annotation_id\": \"gone.txt\", \"classification\": \"NEG\"}\n",
        )
        .unwrap();
        let err = format!(
            "{:#}",
            load_movies(dir.path(), Split::Dev, 200).unwrap_err()
        );
        assert!(
            err.contains("gone.txt") && err.contains("val.jsonl:1"),
            "{err}"
        );
    }
}
