//! Tokenization with the `tokenizers` crate: `tokenizer.json` (WordPiece, BPE or
//! Unigram) with padding and truncation switched off (many shipped files pad to a fixed 128), or a
//! WordPiece tokenizer built from `vocab.txt`. Inputs longer than the model's
//! limit are truncated and flagged, never silently.

use super::token::{Encoding, Token};
use anyhow::Context;
use std::path::Path;
use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::processors::bert::BertProcessing;
use tokenizers::{Model as _, Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

/// SentencePiece model files (ALBERT, XLM-R, DeBERTa-v2/v3, CamemBERT) that only
/// transformers' slow tokenizers read; their fast `tokenizer.json` is what expnet needs.
const SENTENCEPIECE_FILES: &[&str] = &["spm.model", "sentencepiece.bpe.model", "spiece.model", "sentencepiece.model"];

/// A tokenizer limited to the model's maximum length.
#[derive(Clone)]
pub struct TextTokenizer {
    plain: Tokenizer,
    truncating: Tokenizer,
    max_tokens: usize,
}

impl TextTokenizer {
    /// Loads `tokenizer.json`, or builds a WordPiece tokenizer from `vocab.txt`.
    pub fn from_dir(dir: &Path, max_tokens: usize) -> anyhow::Result<Self> {
        let json = dir.join("tokenizer.json");
        if json.is_file() {
            let tok = Tokenizer::from_file(&json).map_err(|e| {
                anyhow::anyhow!("cannot read {}: {e} (hint: the file may be corrupt or from a newer tokenizers version)", json.display())
            })?;
            return Self::new(tok, max_tokens);
        }
        let vocab = dir.join("vocab.txt");
        if vocab.is_file() {
            let lowercase = read_lowercase_flag(dir);
            return Self::new(wordpiece_from_vocab(&vocab, lowercase)?, max_tokens);
        }
        if let Some(spm) = SENTENCEPIECE_FILES.iter().find(|f| dir.join(f).is_file()) {
            anyhow::bail!(
                "{} has only a SentencePiece {spm}, which expnet cannot read (hint: write tokenizer.json with transformers' fast tokenizer: python -c \"from transformers import AutoTokenizer; AutoTokenizer.from_pretrained('{}').save_pretrained('{}')\")",
                dir.display(),
                dir.display(),
                dir.display()
            );
        }
        anyhow::bail!(
            "no tokenizer in {} (expected tokenizer.json or vocab.txt; hint: download the tokenizer files with the model)",
            dir.display()
        )
    }

    pub fn from_bytes(bytes: &[u8], max_tokens: usize) -> anyhow::Result<Self> {
        let tok = Tokenizer::from_bytes(bytes).map_err(|e| anyhow::anyhow!("cannot parse tokenizer.json: {e}"))?;
        Self::new(tok, max_tokens)
    }

    fn new(mut tok: Tokenizer, max_tokens: usize) -> anyhow::Result<Self> {
        tok.with_padding(None);
        tok.with_truncation(None).map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut truncating = tok.clone();
        truncating
            .with_truncation(Some(TruncationParams {
                max_length: max_tokens,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
                direction: TruncationDirection::Right,
            }))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(Self { plain: tok, truncating, max_tokens })
    }

    /// The underlying tokenizer with padding and truncation off (what `finetune` saves).
    pub fn inner(&self) -> &Tokenizer {
        &self.plain
    }

    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.plain.token_to_id(token)
    }

    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    /// Encodes one text or a text pair, with special tokens and char offsets.
    pub fn encode(&self, text: &str, pair: Option<&str>) -> anyhow::Result<Encoding> {
        let encode = |tok: &Tokenizer| -> anyhow::Result<tokenizers::Encoding> {
            let r = match pair {
                Some(p) => tok.encode_char_offsets((text, p), true),
                None => tok.encode_char_offsets(text, true),
            };
            r.map_err(|e| anyhow::anyhow!("cannot tokenize input: {e}"))
        };
        let mut enc = encode(&self.plain)?;
        let mut truncated = false;
        if enc.len() > self.max_tokens {
            enc = encode(&self.truncating)?;
            truncated = true;
        }
        let special = enc.get_special_tokens_mask();
        let seq_ids = enc.get_sequence_ids();
        let tokens = enc
            .get_tokens()
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let (start, end) = enc.get_offsets()[i];
                Token {
                    text: t.clone(),
                    start,
                    end,
                    special: special[i] == 1,
                    id: enc.get_ids()[i],
                    word: enc.get_word_ids()[i],
                    sequence: seq_ids[i].unwrap_or(0) as u8,
                }
            })
            .collect();
        Ok(Encoding {
            text: text.to_owned(),
            text_pair: pair.map(str::to_owned),
            ids: enc.get_ids().to_vec(),
            type_ids: enc.get_type_ids().to_vec(),
            tokens,
            truncated,
        })
    }
}

fn read_lowercase_flag(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("tokenizer_config.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v.get("do_lower_case").and_then(|b| b.as_bool()))
        .unwrap_or(true)
}

/// A BERT WordPiece tokenizer from a vocabulary file, as transformers' BertTokenizer.
fn wordpiece_from_vocab(vocab: &Path, lowercase: bool) -> anyhow::Result<Tokenizer> {
    let path = vocab.to_str().context("vocab.txt path is not UTF-8")?;
    let wp = WordPiece::from_file(path)
        .unk_token("[UNK]".into())
        .build()
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", vocab.display()))?;
    let cls = wp.get_vocab().get("[CLS]").copied().context("vocab.txt has no [CLS] token")?;
    let sep = wp.get_vocab().get("[SEP]").copied().context("vocab.txt has no [SEP] token")?;
    let mut tok = Tokenizer::new(wp);
    tok.with_normalizer(Some(BertNormalizer::new(true, true, None, lowercase)));
    tok.with_pre_tokenizer(Some(BertPreTokenizer));
    tok.with_post_processor(Some(BertProcessing::new(("[SEP]".into(), sep), ("[CLS]".into(), cls))));
    tok.with_decoder(Some(tokenizers::decoders::wordpiece::WordPiece::default()));
    Ok(tok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentencepiece_only_folder_says_how_to_make_tokenizer_json() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("spm.model"), b"not read").unwrap();
        let e = format!("{:#}", TextTokenizer::from_dir(tmp.path(), 512).err().unwrap());
        assert!(e.contains("only a SentencePiece spm.model"), "{e}");
        assert!(e.contains("AutoTokenizer.from_pretrained") && e.contains("save_pretrained"), "{e}");
        let empty = tempfile::tempdir().unwrap();
        let e = format!("{:#}", TextTokenizer::from_dir(empty.path(), 512).err().unwrap());
        assert!(e.contains("no tokenizer"), "{e}");
    }
}
