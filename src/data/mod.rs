//! Rationale corpora: labelled texts with (where the data set has them) human
//! token rationales, in one shape so training, evaluation and the TUI share
//! them.
//!
//! [`load`] takes a spec `"<name>:<folder>"` and a [`Split`]:
//!
//! | name | data set | labels | rationale |
//! |---|---|---|---|
//! | `sst` | SST-2 sentences ([`sst`]) | negative / positive | words whose own label has the sentence's polarity |
//! | `movies` | ERASER Movies, sentence windows ([`movies`]) | negative / positive | evidence spans |
//! | `hatexplain` | HateXplain raw files ([`hatexplain`]) | hatespeech / normal / offensive | mean of annotators' masks |
//! | `hatexplain-eraser` | HateXplain ERASER files (train/val/test all with rationales) | hatespeech / normal / offensive | union of annotators (0/1) |
//! | `esnli` | e-SNLI pairs ([`esnli`]) | entailment / neutral / contradiction | annotator 1's highlights |
//! | `cola` | CoLA ([`cola`]) | unacceptable / acceptable | none |
//!
//! Words are what the data set calls tokens, made display-ready; models see
//! [`Example::text`] (words joined by single spaces) and [`align`] maps their
//! word pieces back to words through character spans, independently of the
//! tokenizer.

pub mod align;
pub mod cola;
pub mod csv;
pub mod esnli;
pub mod hatexplain;
pub mod movies;
pub mod ptb;
pub mod sst;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{Context, Result, anyhow, bail};

pub use hatexplain::{load_hatexplain_eraser, merge_word_pieces, read_vocab};
pub use movies::movies_documents;
pub use sst::{SstRationale, sst_phrases};

/// Which part of a corpus to load.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Split {
    Train,
    Dev,
    Test,
}

impl FromStr for Split {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "train" => Ok(Split::Train),
            "dev" | "val" | "validation" => Ok(Split::Dev),
            "test" => Ok(Split::Test),
            other => {
                bail!("unknown split {other:?}: expected train, dev (or val/validation) or test")
            }
        }
    }
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Split::Train => "train",
            Split::Dev => "dev",
            Split::Test => "test",
        })
    }
}

/// One labelled text (or text pair) with its optional human rationale.
#[derive(Clone, Debug, PartialEq)]
pub struct Example {
    pub id: String,
    /// Word tokens of the (first) text, display-ready (PTB escapes undone).
    pub words: Vec<String>,
    /// Word tokens of the second text of a pair (e-SNLI hypothesis).
    pub words_pair: Option<Vec<String>>,
    pub label: usize,
    /// One value per word of `words` then `words_pair`: 0/1, or the fraction
    /// of annotators who marked the word. `None` when the data set has none
    /// for this example.
    pub rationale: Option<Vec<f32>>,
    pub split: Split,
}

impl Example {
    /// The text a model sees: words joined by single spaces.
    pub fn text(&self) -> String {
        self.words.join(" ")
    }

    /// The second text of a pair, joined the same way.
    pub fn text_pair(&self) -> Option<String> {
        self.words_pair.as_ref().map(|w| w.join(" "))
    }

    /// Character (Unicode scalar) offsets `[start, end)` of each word in
    /// [`Example::text`]; the bridge to the tokenizer's offsets.
    pub fn word_char_spans(&self) -> Vec<(usize, usize)> {
        char_spans(&self.words)
    }

    /// Offsets of each word of `words_pair` in [`Example::text_pair`].
    pub fn word_char_spans_pair(&self) -> Option<Vec<(usize, usize)>> {
        self.words_pair.as_ref().map(|w| char_spans(w))
    }

    /// Number of words over both texts (the rationale's length).
    pub fn n_words(&self) -> usize {
        self.words.len() + self.words_pair.as_ref().map_or(0, Vec::len)
    }

    /// All words, first text then second, in rationale order.
    pub fn all_words(&self) -> Vec<&str> {
        let pair = self.words_pair.iter().flatten();
        self.words.iter().chain(pair).map(String::as_str).collect()
    }

    /// Binary gold for metrics that need one: a word is a rationale word when
    /// its value is at least `threshold` (0.5 = majority of annotators).
    pub fn binary_rationale(&self, threshold: f32) -> Option<Vec<bool>> {
        self.rationale
            .as_ref()
            .map(|r| r.iter().map(|&v| v >= threshold).collect())
    }
}

fn char_spans(words: &[String]) -> Vec<(usize, usize)> {
    let mut spans = Vec::with_capacity(words.len());
    let mut pos = 0;
    for (i, w) in words.iter().enumerate() {
        if i > 0 {
            pos += 1;
        }
        let n = w.chars().count();
        spans.push((pos, pos + n));
        pos += n;
    }
    spans
}

/// A loaded split of one corpus.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    /// Short name: "sst", "movies", "hatexplain", "esnli", "cola".
    pub name: String,
    /// Label names, index = `Example::label`.
    pub labels: Vec<String>,
    pub examples: Vec<Example>,
    /// Records the task definition leaves out (neutral SST roots, HateXplain
    /// posts without a majority label).
    pub skipped: usize,
}

impl Dataset {
    /// Examples per label, for reports and sanity checks.
    pub fn label_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.labels.len()];
        for e in &self.examples {
            if let Some(c) = counts.get_mut(e.label) {
                *c += 1;
            }
        }
        counts
    }

    /// How many examples carry a rationale.
    pub fn with_rationale(&self) -> usize {
        self.examples
            .iter()
            .filter(|e| e.rationale.is_some())
            .count()
    }
}

/// Knobs of the loaders that have a choice; [`Default`] is what [`load`] uses.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LoadOptions {
    pub sst_rationale: SstRationale,
    /// Maximum words per Movies window (whole sentences are packed up to it).
    pub movies_window: usize,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            sst_rationale: SstRationale::Words,
            movies_window: movies::DEFAULT_WINDOW_WORDS,
        }
    }
}

/// Corpus names [`load`] accepts before the colon.
pub const DATASETS: [&str; 6] = ["sst", "movies", "hatexplain", "hatexplain-eraser", "esnli", "cola"];

/// The uncased BERT WordPiece vocabulary (the embedded model's, identical to
/// bert-base-uncased's), which HateXplain's ERASER documents are written in.
const UNCASED_VOCAB: &str = include_str!("../../assets/models/minilm-sst2/vocab.txt");

/// Load `split` of the corpus named by `spec` (`"sst:../shared/data/sst"`),
/// with default options.
pub fn load(spec: &str, split: Split) -> Result<Dataset> {
    load_with(spec, split, &LoadOptions::default())
}

/// [`load`] with explicit options.
pub fn load_with(spec: &str, split: Split, options: &LoadOptions) -> Result<Dataset> {
    let (name, path) = spec.split_once(':').ok_or_else(|| {
        anyhow!(
            "data spec {spec:?} has no NAME:PATH form; valid names: {} (e.g. sst:../shared/data/sst)",
            DATASETS.join(", ")
        )
    })?;
    let path = Path::new(path);
    if path.as_os_str().is_empty() {
        bail!("data spec {spec:?} has an empty path: give the data set folder after the colon");
    }
    match name.trim().to_ascii_lowercase().as_str() {
        "sst" => sst::load_sst(path, split, options.sst_rationale),
        "movies" => movies::load_movies(path, split, options.movies_window),
        "hatexplain" => hatexplain::load_hatexplain(path, split),
        "hatexplain-eraser" => {
            let vocab: Vec<String> = UNCASED_VOCAB.lines().map(str::to_owned).collect();
            let mut ds = hatexplain::load_hatexplain_eraser(path, split, &vocab)?;
            // Word pieces back into words, so models see natural text.
            ds.examples = ds.examples.iter().map(hatexplain::merge_word_pieces).collect();
            Ok(ds)
        }
        "esnli" => esnli::load_esnli(path, split),
        "cola" => cola::load_cola(path, split),
        other => bail!(
            "unknown data set {other:?} in spec {spec:?}; valid names: {}",
            DATASETS.join(", ")
        ),
    }
}

/// Read a whole file, naming it (and what was expected) on failure.
pub(crate) fn read_file(path: &Path, what: &str) -> Result<String> {
    std::fs::read_to_string(path)
        .with_context(|| format!("cannot read {} ({what})", path.display()))
}

/// Sets `mask[start..end]` to 1 for an ERASER evidence span (token offsets,
/// end exclusive); false, touching nothing, when the span does not fit.
pub(crate) fn mark_evidence(mask: &mut [f32], start: i64, end: i64) -> bool {
    if start < 0 || end < start || end as usize > mask.len() {
        return false;
    }
    mask[start as usize..end as usize].iter_mut().for_each(|v| *v = 1.0);
    true
}

/// `folder/name`, failing early with a hint when the folder is not there.
pub(crate) fn in_folder(folder: &Path, name: &str) -> Result<PathBuf> {
    if !folder.is_dir() {
        bail!(
            "data folder {} does not exist or is not a folder (expected the data set folder, e.g. ../shared/data/sst)",
            folder.display()
        );
    }
    Ok(folder.join(name))
}

/// Error located at `file:line` (1-based).
pub(crate) fn line_error(path: &Path, line: usize, msg: impl fmt::Display) -> anyhow::Error {
    anyhow!("{}:{}: {}", path.display(), line, msg)
}

/// Non-empty lines of a file with their 1-based line numbers.
pub(crate) fn numbered_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim_end_matches('\r')))
        .filter(|(_, l)| !l.trim().is_empty())
}

/// Parse one JSON line, with `file:line` on failure.
pub(crate) fn parse_json_line<T: serde::de::DeserializeOwned>(
    path: &Path,
    line_no: usize,
    line: &str,
) -> Result<T> {
    serde_json::from_str(line)
        .map_err(|e| line_error(path, line_no, format!("malformed JSON record: {e}")))
}

#[cfg(test)]
mod tests;
