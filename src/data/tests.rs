//! Tests of the shared types and of `load`'s dispatch; loaders are tested in
//! their own modules. The `#[ignore]`d test checks counts on the real corpora.

use super::*;
use std::fs;

#[test]
fn split_parses_aliases() {
    assert_eq!("train".parse::<Split>().unwrap(), Split::Train);
    for s in ["dev", "val", "Validation"] {
        assert_eq!(s.parse::<Split>().unwrap(), Split::Dev);
    }
    assert_eq!(" TEST ".parse::<Split>().unwrap(), Split::Test);
    let err = "holdout".parse::<Split>().unwrap_err().to_string();
    assert!(err.contains("holdout") && err.contains("train"), "{err}");
    assert_eq!(Split::Dev.to_string(), "dev");
}

#[test]
fn example_text_spans_and_binary_rationale() {
    let e = Example {
        id: "e".into(),
        words: vec!["Ça".into(), "va".into()],
        words_pair: Some(vec!["oui".into()]),
        label: 1,
        rationale: Some(vec![0.2, 0.5, 1.0]),
        split: Split::Test,
    };
    assert_eq!(e.text(), "Ça va");
    assert_eq!(e.text_pair().as_deref(), Some("oui"));
    assert_eq!(e.word_char_spans(), vec![(0, 2), (3, 5)]);
    assert_eq!(e.word_char_spans_pair(), Some(vec![(0, 3)]));
    assert_eq!(e.n_words(), 3);
    assert_eq!(e.all_words(), vec!["Ça", "va", "oui"]);
    assert_eq!(e.binary_rationale(0.5), Some(vec![false, true, true]));
}

#[test]
fn load_dispatches_on_the_spec_prefix() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("dev.txt"),
        "(4 (3 great) (2 fun))\n(2 (2 meh))\n",
    )
    .unwrap();
    let spec = format!("sst:{}", dir.path().display());
    let ds = load(&spec, Split::Dev).unwrap();
    assert_eq!(ds.name, "sst");
    assert_eq!((ds.examples.len(), ds.skipped), (1, 1));
    assert_eq!(ds.label_counts(), vec![0, 1]);
    assert_eq!(ds.with_rationale(), 1);

    let opts = LoadOptions {
        sst_rationale: SstRationale::Phrases(2),
        ..LoadOptions::default()
    };
    let ds = load_with(&spec, Split::Dev, &opts).unwrap();
    assert_eq!(ds.examples[0].rationale.as_deref(), Some(&[1.0, 1.0][..]));

    let err = load(&format!("imdb:{}", dir.path().display()), Split::Dev)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("imdb") && err.contains("sst, movies, hatexplain, hatexplain-eraser, esnli, cola"),
        "{err}"
    );
    let err = load("sst", Split::Dev).unwrap_err().to_string();
    assert!(err.contains("NAME:PATH"), "{err}");
    let err = load("sst:", Split::Dev).unwrap_err().to_string();
    assert!(err.contains("empty path"), "{err}");
    let err = load("cola:/no/such/folder", Split::Dev)
        .unwrap_err()
        .to_string();
    assert!(err.contains("/no/such/folder"), "{err}");
}

/// Counts on the real corpora (`EXPNET_DATA`, default `../shared/data`).
/// Run with `cargo test --lib data::tests::real_data_counts -- --ignored --nocapture`.
#[test]
#[ignore]
fn real_data_counts() {
    let root = std::env::var("EXPNET_DATA")
        .unwrap_or_else(|_| format!("{}/../shared/data", env!("CARGO_MANIFEST_DIR")));
    let root = std::path::PathBuf::from(root);
    if !root.is_dir() {
        eprintln!("skipping: {} not found", root.display());
        return;
    }
    let spec = |name: &str| format!("{name}:{}", root.join(name).display());
    let report = |what: &str, ds: &Dataset| {
        let n_words: usize = ds.examples.iter().map(Example::n_words).sum();
        let pos: f64 = ds
            .examples
            .iter()
            .filter_map(|e| e.binary_rationale(0.5))
            .map(|r| r.iter().filter(|&&b| b).count() as f64 / r.len().max(1) as f64)
            .sum::<f64>();
        let nr = ds.with_rationale();
        eprintln!(
            "{what}: {} examples, skipped {}, labels {:?} {:?}, with rationale {}, mean words {:.1}, mean rationale share {:.3}",
            ds.examples.len(),
            ds.skipped,
            ds.labels,
            ds.label_counts(),
            nr,
            n_words as f64 / ds.examples.len().max(1) as f64,
            pos / nr.max(1) as f64,
        );
    };
    let mut counts = Vec::new();
    for (name, split) in [
        ("sst", Split::Train),
        ("sst", Split::Dev),
        ("sst", Split::Test),
        ("movies", Split::Train),
        ("movies", Split::Dev),
        ("movies", Split::Test),
        ("hatexplain", Split::Train),
        ("hatexplain", Split::Dev),
        ("hatexplain", Split::Test),
        ("esnli", Split::Dev),
        ("esnli", Split::Test),
        ("cola", Split::Train),
        ("cola", Split::Dev),
        ("cola", Split::Test),
    ] {
        let ds = load(&spec(name), split).unwrap();
        report(&format!("{name} {split}"), &ds);
        counts.push(ds.examples.len());
    }
    assert_eq!(&counts[..3], &[6920, 872, 1821]);
    assert_eq!(&counts[6..9], &[15383, 1922, 1924]);
    assert_eq!(&counts[9..11], &[9842, 9824]);
    assert_eq!(&counts[11..], &[8551, 527, 516]);

    let docs = movies_documents(&root.join("movies"), Split::Dev).unwrap();
    report("movies documents dev", &docs);
    assert_eq!(docs.examples.len(), 200);
    let phrases = sst_phrases(&root.join("sst"), Split::Train).unwrap();
    report("sst phrases train", &phrases);
    let sst_p = load_with(
        &spec("sst"),
        Split::Dev,
        &LoadOptions {
            sst_rationale: SstRationale::Phrases(3),
            ..LoadOptions::default()
        },
    )
    .unwrap();
    report("sst dev Phrases(3)", &sst_p);

    let vocab_path =
        std::env::var("EXPNET_VOCAB").unwrap_or_else(|_| "/work/base-model/vocab.txt".into());
    if let Ok(vocab) = read_vocab(std::path::Path::new(&vocab_path)) {
        for split in [Split::Train, Split::Dev, Split::Test] {
            let ds = load_hatexplain_eraser(&root.join("hatexplain"), split, &vocab).unwrap();
            report(&format!("hatexplain eraser {split}"), &ds);
        }
    }
}

/// Alignment of the real corpora with the base model's WordPiece tokenizer:
/// every non-special piece must land in a word, and (short of truncation)
/// nearly every word must get a piece; Movies windows must fit 512 pieces.
/// Needs `EXPNET_TOKENIZER` (default `/work/base-model/tokenizer.json`).
#[test]
#[ignore]
fn real_data_alignment() {
    let root = std::env::var("EXPNET_DATA")
        .unwrap_or_else(|_| format!("{}/../shared/data", env!("CARGO_MANIFEST_DIR")));
    let tok_path = std::env::var("EXPNET_TOKENIZER")
        .unwrap_or_else(|_| "/work/base-model/tokenizer.json".into());
    let root = std::path::PathBuf::from(root);
    let Ok(mut tokenizer) = tokenizers::Tokenizer::from_file(&tok_path) else {
        eprintln!("skipping: no tokenizer at {tok_path}");
        return;
    };
    if !root.is_dir() {
        eprintln!("skipping: {} not found", root.display());
        return;
    }
    tokenizer.with_truncation(None).unwrap();
    tokenizer.with_padding(None);
    for (name, split) in [
        ("sst", Split::Dev),
        ("movies", Split::Dev),
        ("movies", Split::Test),
        ("hatexplain", Split::Test),
        ("esnli", Split::Test),
        ("cola", Split::Dev),
    ] {
        let ds = load(&format!("{name}:{}", root.join(name).display()), split).unwrap();
        let (mut words, mut missing, mut max_pieces) = (0usize, 0usize, 0usize);
        let mut examples_missing = Vec::new();
        for e in &ds.examples {
            let text = e.text();
            let enc = match e.text_pair() {
                Some(p) => tokenizer.encode_char_offsets((text.as_str(), p.as_str()), true),
                None => tokenizer.encode_char_offsets(text.as_str(), true),
            }
            .unwrap();
            max_pieces = max_pieces.max(enc.len());
            let spans: Vec<(usize, usize)> = enc.get_offsets().to_vec();
            let special: Vec<bool> = enc
                .get_special_tokens_mask()
                .iter()
                .map(|&m| m == 1)
                .collect();
            let seq: Vec<u8> = enc
                .get_sequence_ids()
                .iter()
                .map(|s| s.unwrap_or(0) as u8)
                .collect();
            let map = match e.word_char_spans_pair() {
                Some(pair) => {
                    align::piece_to_word_pair(&spans, &seq, &special, &e.word_char_spans(), &pair)
                }
                None => align::piece_to_word(&spans, &special, &e.word_char_spans()),
            };
            for (i, m) in map.iter().enumerate() {
                assert!(
                    special[i] || m.is_some(),
                    "{}: piece {i} {:?} maps to no word",
                    e.id,
                    enc.get_tokens()[i]
                );
            }
            let scores = align::piece_to_word_scores(
                &vec![1.0; map.len()],
                &map,
                e.n_words(),
                align::Pool::Max,
            );
            words += scores.len();
            let m = scores.iter().filter(|s| s.is_none()).count();
            if m > 0 && examples_missing.len() < 3 {
                let all = e.all_words();
                let which: Vec<&str> = scores
                    .iter()
                    .zip(&all)
                    .filter(|(s, _)| s.is_none())
                    .map(|(_, w)| *w)
                    .collect();
                examples_missing.push(format!("{}: {:?}", e.id, which));
            }
            missing += m;
        }
        eprintln!(
            "{name} {split}: {} examples, max {max_pieces} pieces, {missing}/{words} words without a piece {:?}",
            ds.examples.len(),
            examples_missing
        );
        assert!(
            missing * 1000 <= words,
            "{name}: too many words without pieces"
        );
        if name == "movies" {
            assert!(max_pieces <= 512, "a Movies window has {max_pieces} pieces");
        }
    }
}

#[test]
fn hatexplain_eraser_spec_decodes_with_the_uncased_vocabulary_into_words() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("eraser")).unwrap();
    let vocab: Vec<&str> = UNCASED_VOCAB.lines().collect();
    let id = |p: &str| vocab.iter().position(|v| *v == p).unwrap();
    let doc = format!("{} {} {} {} {}", id("[CLS]"), id("you"), id("dumb"), id("##ass"), id("[SEP]"));
    fs::write(dir.path().join("eraser/docs.jsonl"), format!("{{\"docid\": \"d1\", \"text\": \"{doc}\"}}\n")).unwrap();
    fs::write(
        dir.path().join("eraser/train.jsonl"),
        r#"{"annotation_id": "d1", "classification": "offensive", "evidences": [[{"docid": "d1", "start_token": 2, "end_token": 4, "text": ""}]]}
"#,
    )
    .unwrap();
    let ds = load(&format!("hatexplain-eraser:{}", dir.path().display()), Split::Train).unwrap();
    let e = &ds.examples[0];
    assert_eq!(e.words, vec!["you", "dumbass"]);
    assert_eq!(e.rationale.as_deref(), Some(&[0.0, 1.0][..]));
    assert_eq!(ds.labels[e.label], "offensive");
}

#[test]
fn evidence_spans_mark_tokens_or_are_rejected_whole() {
    let mut mask = vec![0.0f32; 5];
    assert!(mark_evidence(&mut mask, 1, 3));
    assert!(mark_evidence(&mut mask, 4, 5));
    assert_eq!(mask, vec![0.0, 1.0, 1.0, 0.0, 1.0]);
    for (s, e) in [(-1, 2), (3, 2), (4, 6)] {
        assert!(!mark_evidence(&mut mask, s, e), "{s}..{e}");
    }
    assert_eq!(mask, vec![0.0, 1.0, 1.0, 0.0, 1.0], "a rejected span touches nothing");
}
