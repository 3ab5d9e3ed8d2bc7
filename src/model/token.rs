//! Tokens as the rest of the program sees them: text, where they came from in
//! the input, and whether the tokenizer added them.

use serde::{Deserialize, Serialize};

/// One word piece of an encoded input.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Token {
    /// The piece as the vocabulary spells it (`##ing`, `Ġthe`, `[CLS]`).
    pub text: String,
    /// Start offset in the original text, in characters (Unicode scalar values).
    pub start: usize,
    /// End offset (exclusive), in characters.
    pub end: usize,
    /// True for tokens the tokenizer added ([CLS], [SEP], <s>, …).
    pub special: bool,
    /// Vocabulary id.
    #[serde(skip)]
    pub id: u32,
    /// Index of the word this piece belongs to (pre-tokenizer words), if any.
    #[serde(skip)]
    pub word: Option<u32>,
    /// Which sequence of a pair this piece belongs to (0 or 1).
    #[serde(skip)]
    pub sequence: u8,
}

/// A tokenized input, ready for the encoder.
#[derive(Clone, Debug, PartialEq)]
pub struct Encoding {
    pub text: String,
    /// Second sequence of a sentence pair (e-SNLI), if any.
    pub text_pair: Option<String>,
    pub ids: Vec<u32>,
    pub type_ids: Vec<u32>,
    pub tokens: Vec<Token>,
    /// True when the input was longer than the model accepts and was cut.
    pub truncated: bool,
}

impl Encoding {
    pub fn len(&self) -> usize {
        self.ids.len()
    }
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
    /// Mask of special tokens (true = added by the tokenizer).
    pub fn special_mask(&self) -> Vec<bool> {
        self.tokens.iter().map(|t| t.special).collect()
    }
}
