//! CoLA grammatical acceptability: a classification task without rationales
//! (useful to train and inspect a classifier whose decisions have no human
//! gold).
//!
//! Files: `raw/in_domain_train.tsv` (Train), `raw/in_domain_dev.tsv` (Dev),
//! `raw/out_of_domain_dev.tsv` (Test; CoLA's test labels are not public).
//! Columns, tab-separated, no header: source, label (0/1), original mark,
//! sentence. Words are the sentence split on whitespace.

use std::path::Path;

use anyhow::Result;

use super::{Dataset, Example, Split, in_folder, line_error, numbered_lines, read_file};

pub const LABELS: [&str; 2] = ["unacceptable", "acceptable"];

/// CoLA sentences of `split` from the folder holding `raw/`.
pub fn load_cola(path: &Path, split: Split) -> Result<Dataset> {
    let file = in_folder(
        path,
        match split {
            Split::Train => "raw/in_domain_train.tsv",
            Split::Dev => "raw/in_domain_dev.tsv",
            Split::Test => "raw/out_of_domain_dev.tsv",
        },
    )?;
    let text = read_file(&file, "CoLA TSV: source, label, mark, sentence")?;
    let mut examples = Vec::new();
    for (line_no, line) in numbered_lines(&text) {
        let cols: Vec<&str> = line.splitn(4, '\t').collect();
        if cols.len() != 4 {
            return Err(line_error(
                &file,
                line_no,
                format!(
                    "{} tab-separated columns, expected 4 (source, label, mark, sentence)",
                    cols.len()
                ),
            ));
        }
        let label = match cols[1].trim() {
            "0" => 0,
            "1" => 1,
            other => {
                return Err(line_error(
                    &file,
                    line_no,
                    format!("label {other:?} is not 0 or 1"),
                ));
            }
        };
        let words: Vec<String> = cols[3].split_whitespace().map(String::from).collect();
        if words.is_empty() {
            return Err(line_error(&file, line_no, "empty sentence"));
        }
        examples.push(Example {
            id: format!("cola-{split}-{line_no}"),
            words,
            words_pair: None,
            label,
            rationale: None,
            split,
        });
    }
    Ok(Dataset {
        name: "cola".into(),
        labels: LABELS.map(String::from).to_vec(),
        examples,
        skipped: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn loads_tsv_and_reports_bad_lines() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("raw")).unwrap();
        let f = dir.path().join("raw/in_domain_dev.tsv");
        fs::write(
            &f,
            "src1\t1\t\tThe cat  slept .\nsrc1\t0\t*\tSlept the the .\n",
        )
        .unwrap();
        let ds = load_cola(dir.path(), Split::Dev).unwrap();
        assert_eq!(ds.labels, vec!["unacceptable", "acceptable"]);
        assert_eq!(ds.examples.len(), 2);
        assert_eq!(ds.examples[0].words, vec!["The", "cat", "slept", "."]);
        assert_eq!((ds.examples[0].label, ds.examples[1].label), (1, 0));
        assert!(ds.examples[0].rationale.is_none());

        fs::write(&f, "src1\t1\t\tFine .\nsrc1\tx\t\tBad label .\n").unwrap();
        let err = load_cola(dir.path(), Split::Dev).unwrap_err().to_string();
        assert!(
            err.contains("in_domain_dev.tsv:2:") && err.contains("\"x\""),
            "{err}"
        );
        fs::write(&f, "src1 1 Fine .\n").unwrap();
        let err = load_cola(dir.path(), Split::Dev).unwrap_err().to_string();
        assert!(
            err.contains("in_domain_dev.tsv:1:") && err.contains("columns"),
            "{err}"
        );
    }
}
