//! The fixture tokenizers are written by Python `tokenizers` (scripts/reference/make_fixtures.py);
//! this checks that the Rust `tokenizers` crate reads the same tokenizer.json into the same ids,
//! token types, pieces, special-token mask and character offsets as recorded in expected.json.

use std::path::{Path, PathBuf};

use serde_json::Value;
use tokenizers::Tokenizer;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn expected(name: &str) -> Value {
    let path = fixture(name).join("expected.json");
    let text = std::fs::read_to_string(&path).expect("read expected.json");
    serde_json::from_str(&text).expect("parse expected.json")
}

fn as_vec<T: serde::de::DeserializeOwned>(v: &Value) -> Vec<T> {
    serde_json::from_value(v.clone()).expect("array of the expected type")
}

fn check(name: &str) {
    let tok = Tokenizer::from_file(fixture(name).join("tokenizer.json"))
        .unwrap_or_else(|e| panic!("{name}: tokenizer.json does not load: {e}"));
    let exp = expected(name);
    let cases = exp["cases"].as_array().expect("cases");
    assert!(!cases.is_empty());
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let enc = match case["text_pair"].as_str() {
            Some(pair) => tok.encode_char_offsets((text, pair), true),
            None => tok.encode_char_offsets(text, true),
        }
        .unwrap();
        assert_eq!(enc.get_ids(), as_vec::<u32>(&case["input_ids"]), "{name}: ids of {text:?}");
        assert_eq!(enc.get_tokens(), as_vec::<String>(&case["tokens"]), "{name}: {text:?}");
        if !case["token_type_ids"].is_null() {
            assert_eq!(enc.get_type_ids(), as_vec::<u32>(&case["token_type_ids"]), "{text:?}");
        }
        assert_eq!(
            enc.get_special_tokens_mask(),
            as_vec::<u32>(&case["special_tokens_mask"]),
            "{name}: special mask of {text:?}"
        );
        let offsets: Vec<(usize, usize)> = as_vec::<[usize; 2]>(&case["offsets"])
            .into_iter()
            .map(|[a, b]| (a, b))
            .collect();
        assert_eq!(enc.get_offsets(), offsets.as_slice(), "{name}: char offsets of {text:?}");
    }
}

#[test]
fn tiny_bert_tokenizer_matches_python() {
    check("tiny-bert");
}

#[test]
fn tiny_distilbert_tokenizer_matches_python() {
    check("tiny-distilbert");
}

#[test]
fn tiny_roberta_tokenizer_matches_python() {
    check("tiny-roberta");
}

#[test]
fn tiny_bert_encoder_tokenizer_matches_python() {
    check("tiny-bert-encoder");
}

#[test]
fn byte_offsets_differ_from_char_offsets_for_non_ascii() {
    // Guards the fixture itself: the third tiny-bert case has "é" and an emoji, so code that
    // used the crate's default byte offsets instead of char offsets would be caught.
    let tok = Tokenizer::from_file(fixture("tiny-bert").join("tokenizer.json")).unwrap();
    let exp = expected("tiny-bert");
    let case = &exp["cases"][2];
    let text = case["text"].as_str().unwrap();
    let bytes = tok.encode(text, true).unwrap();
    let chars = tok.encode_char_offsets(text, true).unwrap();
    assert_ne!(bytes.get_offsets(), chars.get_offsets());
}
