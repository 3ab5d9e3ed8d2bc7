//! Stanford Sentiment Treebank as the binary SST-2 task, with word rationales
//! derived from the treebank's own phrase labels.
//!
//! Files: `{train,dev,test}.txt`, one PTB tree per line, labels 0–4 on every
//! node. SST-2 drops sentences whose root is 2 (neutral; counted in
//! [`Dataset::skipped`]) and maps 0,1 → negative (0), 3,4 → positive (1).
//!
//! Rationales ([`SstRationale`]):
//! - `Words` (**default**): a word is a rationale word when its own leaf label
//!   has the sentence's polarity (≤1 in a negative sentence, ≥3 in a positive
//!   one). Leaf labels are annotators' judgements of the word alone, so this
//!   is the most direct human signal and does not sweep in function words.
//! - `Phrases(max_len)`: additionally marks every word inside a subtree of at
//!   most `max_len` words whose label has the sentence's polarity ("not
//!   good" marks "not"). Denser and catches negation/composition, but also
//!   marks "a", "the" inside short polar phrases; offered for comparison.
//!
//! Sentences with no polar word keep an all-zero rationale (metrics that need
//! a positive return `None` for them).
//!
//! Artifact: the release labels every `-LRB-` leaf 1 and every `-RRB-` leaf 3
//! (~500 each), which would make "(" a negative and ")" a positive word. Leaves
//! that are bare PTB brackets are therefore read as neutral (2), for
//! rationales and for [`sst_phrases`]; phrase labels above them are kept.

use std::collections::HashSet;
use std::path::Path;

use anyhow::{Result, anyhow};

use super::ptb::{BRACKETS, Tree, unescape};
use super::{Dataset, Example, Split, in_folder, line_error, numbered_lines, read_file};

/// How SST word rationales are derived (see the module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SstRationale {
    Words,
    Phrases(usize),
}

pub const LABELS: [&str; 2] = ["negative", "positive"];

fn file_for(path: &Path, split: Split) -> Result<std::path::PathBuf> {
    in_folder(
        path,
        match split {
            Split::Train => "train.txt",
            Split::Dev => "dev.txt",
            Split::Test => "test.txt",
        },
    )
}

/// Binary polarity of a 0–4 label; `None` for neutral (2).
fn polarity(label: u8) -> Option<usize> {
    match label {
        0 | 1 => Some(0),
        3 | 4 => Some(1),
        _ => None,
    }
}

/// A parsed tree with its labels checked to be 0–4.
struct SstTree {
    words: Vec<String>,
    leaf_labels: Vec<u8>,
    /// (label, start, end) of every subtree, root first.
    spans: Vec<(u8, usize, usize)>,
}

fn parse_line(file: &Path, line_no: usize, line: &str) -> Result<SstTree> {
    let tree =
        Tree::parse(line).map_err(|e| line_error(file, line_no, format!("bad tree: {e}")))?;
    let label = |s: &str| -> Result<u8> {
        match s.parse::<u8>() {
            Ok(v) if v <= 4 => Ok(v),
            _ => Err(line_error(
                file,
                line_no,
                format!("sentiment label {s:?} is not 0..4"),
            )),
        }
    };
    let mut words = Vec::new();
    let mut leaf_labels = Vec::new();
    for (l, w) in tree.leaves() {
        let l = label(l)?;
        leaf_labels.push(if is_bracket(w) { 2 } else { l });
        words.push(unescape(w));
    }
    let spans = tree
        .spans()
        .into_iter()
        .map(|s| {
            let l = if s.is_leaf {
                leaf_labels[s.start]
            } else {
                label(&s.label)?
            };
            Ok((l, s.start, s.end))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(SstTree {
        words,
        leaf_labels,
        spans,
    })
}

/// A leaf that is only a PTB bracket escape (see the module doc).
fn is_bracket(word: &str) -> bool {
    BRACKETS.iter().any(|(esc, _)| *esc == word)
}

fn has_polarity(label: u8, pol: usize) -> bool {
    polarity(label) == Some(pol)
}

/// Rationale of words `[start, end)` of `tree` for polarity `pol`.
fn rationale(tree: &SstTree, start: usize, end: usize, pol: usize, mode: SstRationale) -> Vec<f32> {
    let mut r: Vec<f32> = tree.leaf_labels[start..end]
        .iter()
        .map(|&l| if has_polarity(l, pol) { 1.0 } else { 0.0 })
        .collect();
    if let SstRationale::Phrases(max_len) = mode {
        for &(l, s, e) in &tree.spans {
            if s >= start && e <= end && e - s <= max_len && has_polarity(l, pol) {
                r[s - start..e - start].iter_mut().for_each(|v| *v = 1.0);
            }
        }
    }
    r
}

/// SST-2 sentences of `split` from the folder holding `{train,dev,test}.txt`.
pub fn load_sst(path: &Path, split: Split, mode: SstRationale) -> Result<Dataset> {
    if let SstRationale::Phrases(0) = mode {
        return Err(anyhow!(
            "SstRationale::Phrases(0) marks no phrase: use a maximum length ≥ 1"
        ));
    }
    let file = file_for(path, split)?;
    let text = read_file(&file, "SST trees, one per line")?;
    let mut examples = Vec::new();
    let mut skipped = 0;
    for (line_no, line) in numbered_lines(&text) {
        let tree = parse_line(&file, line_no, line)?;
        let root = tree.spans[0].0;
        let Some(label) = polarity(root) else {
            skipped += 1;
            continue;
        };
        let n = tree.words.len();
        examples.push(Example {
            id: format!("sst-{split}-{line_no}"),
            rationale: Some(rationale(&tree, 0, n, label, mode)),
            words: tree.words,
            words_pair: None,
            label,
            split,
        });
    }
    Ok(Dataset {
        name: "sst".into(),
        labels: LABELS.map(String::from).to_vec(),
        examples,
        skipped,
    })
}

/// Every polar subtree (phrases and single words included) as a binary
/// example, for classifier training on SST's phrase labels (the usual 67k-
/// phrase SST-2 training set is built this way). Phrases are deduplicated by
/// text within the split (first occurrence kept); neutral subtrees are
/// counted in `skipped`. Rationales follow [`SstRationale::Words`] relative to
/// the phrase's own polarity. Ids: `sst-<split>-<line>-p<k>`.
pub fn sst_phrases(path: &Path, split: Split) -> Result<Dataset> {
    let file = file_for(path, split)?;
    let text = read_file(&file, "SST trees, one per line")?;
    let mut examples = Vec::new();
    let mut seen = HashSet::new();
    let mut skipped = 0;
    for (line_no, line) in numbered_lines(&text) {
        let tree = parse_line(&file, line_no, line)?;
        for (k, &(l, s, e)) in tree.spans.iter().enumerate() {
            let Some(label) = polarity(l) else {
                skipped += 1;
                continue;
            };
            let words = tree.words[s..e].to_vec();
            if !seen.insert(words.join(" ")) {
                continue;
            }
            examples.push(Example {
                id: format!("sst-{split}-{line_no}-p{k}"),
                rationale: Some(rationale(&tree, s, e, label, SstRationale::Words)),
                words,
                words_pair: None,
                label,
                split,
            });
        }
    }
    Ok(Dataset {
        name: "sst".into(),
        labels: LABELS.map(String::from).to_vec(),
        examples,
        skipped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// Three invented trees: positive, neutral root (skipped), negative.
    const TREES: &str = "\
(4 (2 A) (4 (3 (3 bright) (2 -LRB-little-RRB-)) (3 (2 `` ) (3 gem))))
(2 (2 It) (2 exists))

(1 (2 It) (1 (2 (1 never) (2 quite)) (1 (2 takes) (1 (2 off) (1 -LRB-)))))
";

    fn fixture() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("dev.txt"), TREES).unwrap();
        dir
    }

    #[test]
    fn loads_binary_sentences_with_word_rationales() {
        let dir = fixture();
        let ds = load_sst(dir.path(), Split::Dev, SstRationale::Words).unwrap();
        assert_eq!(ds.skipped, 1);
        assert_eq!(ds.labels, vec!["negative", "positive"]);
        assert_eq!(ds.examples.len(), 2);
        let pos = &ds.examples[0];
        assert_eq!(pos.id, "sst-dev-1");
        assert_eq!(pos.label, 1);
        assert_eq!(pos.words, vec!["A", "bright", "(little)", "\"", "gem"]);
        assert_eq!(pos.text(), "A bright (little) \" gem");
        assert_eq!(
            pos.rationale.as_deref(),
            Some(&[0.0, 1.0, 0.0, 0.0, 1.0][..])
        );
        let neg = &ds.examples[1];
        assert_eq!(neg.id, "sst-dev-4");
        assert_eq!(neg.label, 0);
        assert_eq!(neg.words.last().map(String::as_str), Some("("));
        // "(1 -LRB-)" is the release's bracket artifact: not a negative word
        assert_eq!(
            neg.rationale.as_deref(),
            Some(&[0.0, 1.0, 0.0, 0.0, 0.0, 0.0][..])
        );
    }

    #[test]
    fn phrase_rationales_mark_short_polar_phrases() {
        let dir = fixture();
        let ds = load_sst(dir.path(), Split::Dev, SstRationale::Phrases(2)).unwrap();
        // positive: (3 bright (little)) and (3 `` gem) are 2-word positive phrases.
        assert_eq!(
            ds.examples[0].rationale.as_deref(),
            Some(&[0.0, 1.0, 1.0, 1.0, 1.0][..])
        );
        // negative: (1 off -LRB-) is a 2-word negative phrase; (2 never quite) is neutral
        // and (1 takes off -LRB-) has 3 words.
        assert_eq!(
            ds.examples[1].rationale.as_deref(),
            Some(&[0.0, 1.0, 0.0, 0.0, 1.0, 1.0][..])
        );
        assert!(load_sst(dir.path(), Split::Dev, SstRationale::Phrases(0)).is_err());
    }

    #[test]
    fn phrases_are_polar_and_deduplicated() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join("train.txt"),
            "(3 (3 good) (2 film))\n(1 (1 (2 not) (3 good)) (2 film))\n(2 (1 -LRB-) (2 so))\n",
        )
        .unwrap();
        let ds = sst_phrases(dir.path(), Split::Train).unwrap();
        let got: Vec<(String, usize)> = ds.examples.iter().map(|e| (e.text(), e.label)).collect();
        assert_eq!(
            got,
            vec![
                ("good film".to_string(), 1),
                ("good".to_string(), 1),
                ("not good film".to_string(), 0),
                ("not good".to_string(), 0),
            ]
        );
        // neutral: film, not, film, the whole third tree, "so", and the bracket artifact
        assert_eq!(ds.skipped, 6);
        // "not good" is negative: "good" (3) is not a negative word.
        assert_eq!(ds.examples[3].rationale.as_deref(), Some(&[0.0, 0.0][..]));
    }

    #[test]
    fn malformed_tree_names_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("test.txt"), "(3 (3 fine))\n(3 (3 broken)\n").unwrap();
        let err = load_sst(dir.path(), Split::Test, SstRationale::Words)
            .unwrap_err()
            .to_string();
        assert!(err.contains("test.txt:2:"), "{err}");
        fs::write(dir.path().join("test.txt"), "(7 (3 odd))\n").unwrap();
        let err = load_sst(dir.path(), Split::Test, SstRationale::Words)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("test.txt:1:") && err.contains("not 0..4"),
            "{err}"
        );
    }

    #[test]
    fn missing_folder_is_a_clear_error() {
        let err = load_sst(
            Path::new("/nonexistent/sst"),
            Split::Dev,
            SstRationale::Words,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("/nonexistent/sst"), "{err}");
    }
}
