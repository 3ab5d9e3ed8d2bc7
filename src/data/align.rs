//! Word ↔ word-piece alignment through character spans, shared by training
//! (word rationales → piece targets) and evaluation (piece scores → word
//! scores). Working on spans keeps it independent of the tokenizer: any
//! tokenizer that reports character offsets into [`super::Example::text`]
//! (and [`super::Example::text_pair`]) can be aligned.
//!
//! Word indices follow the rationale order: words of the first text, then
//! words of the second text offset by `words.len()`.

use super::Example;
use crate::model::Token;

/// For each piece, the index of the word it belongs to: the word whose span
/// overlaps the piece most (the first on a tie); a zero-width piece belongs to
/// the word containing its position. Special pieces, and pieces that touch no
/// word, map to `None`. `word_spans` must be sorted and non-overlapping (as
/// [`Example::word_char_spans`] returns them); spans are `[start, end)` in
/// characters.
pub fn piece_to_word(
    piece_spans: &[(usize, usize)],
    special: &[bool],
    word_spans: &[(usize, usize)],
) -> Vec<Option<usize>> {
    // A single text is a pair without a second sequence.
    piece_to_word_pair(piece_spans, &[], special, word_spans, &[])
}

fn word_of((ps, pe): (usize, usize), word_spans: &[(usize, usize)]) -> Option<usize> {
    let first = word_spans.partition_point(|&(_, we)| we <= ps);
    if ps == pe {
        return word_spans
            .get(first)
            .filter(|&&(ws, _)| ws <= ps)
            .map(|_| first);
    }
    let mut best: Option<(usize, usize)> = None;
    for (j, &(ws, we)) in word_spans.iter().enumerate().skip(first) {
        if ws >= pe {
            break;
        }
        let overlap = pe.min(we).saturating_sub(ps.max(ws));
        if overlap > 0 && best.is_none_or(|(_, o)| overlap > o) {
            best = Some((j, overlap));
        }
    }
    best.map(|(j, _)| j)
}

/// [`piece_to_word`] for a sentence pair: pieces of sequence 0 are matched
/// against `word_spans` (offsets in the first text), pieces of sequence 1
/// against `pair_word_spans` (offsets in the second text) and numbered after
/// the first text's words.
pub fn piece_to_word_pair(
    piece_spans: &[(usize, usize)],
    piece_sequence: &[u8],
    special: &[bool],
    word_spans: &[(usize, usize)],
    pair_word_spans: &[(usize, usize)],
) -> Vec<Option<usize>> {
    piece_spans
        .iter()
        .enumerate()
        .map(|(i, &span)| {
            if special.get(i) == Some(&true) {
                return None;
            }
            match piece_sequence.get(i).copied().unwrap_or(0) {
                0 => word_of(span, word_spans),
                _ => word_of(span, pair_word_spans).map(|j| j + word_spans.len()),
            }
        })
        .collect()
}

/// Piece → word map for an example and its encoded tokens (offsets, special
/// flags and sequence index as the model's tokenizer reports them); handles
/// single texts and pairs.
pub fn example_piece_map(example: &Example, tokens: &[Token]) -> Vec<Option<usize>> {
    let spans: Vec<(usize, usize)> = tokens.iter().map(|t| (t.start, t.end)).collect();
    let special: Vec<bool> = tokens.iter().map(|t| t.special).collect();
    let words = example.word_char_spans();
    match example.word_char_spans_pair() {
        None => piece_to_word(&spans, &special, &words),
        Some(pair) => {
            let seq: Vec<u8> = tokens.iter().map(|t| t.sequence).collect();
            piece_to_word_pair(&spans, &seq, &special, &words, &pair)
        }
    }
}

/// Word values spread to pieces: every piece of a word gets the word's value
/// (so all pieces of a rationale word are positives); specials and unmapped
/// pieces get 0.
pub fn word_to_piece_labels(word_values: &[f32], map: &[Option<usize>]) -> Vec<f32> {
    map.iter()
        .map(|w| w.and_then(|w| word_values.get(w).copied()).unwrap_or(0.0))
        .collect()
}

/// How piece scores combine into a word score.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Pool {
    /// The strongest piece speaks for the word (default: insensitive to how
    /// many pieces the tokenizer made).
    #[default]
    Max,
    Mean,
    /// Additive attributions (gradient × input, SHAP) sum over pieces.
    Sum,
}

/// Word scores from piece scores. A word no piece maps to (cut off by
/// truncation) gets `None`: the model never saw it, and the caller decides
/// whether to rank it last ([`fill_missing`] with `f32::NEG_INFINITY`, which
/// the metrics in `crate::eval` handle) or to drop it.
pub fn piece_to_word_scores(
    piece_scores: &[f32],
    map: &[Option<usize>],
    n_words: usize,
    pool: Pool,
) -> Vec<Option<f32>> {
    let mut acc: Vec<Option<(f32, usize)>> = vec![None; n_words];
    for (&s, w) in piece_scores.iter().zip(map) {
        let Some(slot) = w.and_then(|w| acc.get_mut(w)) else {
            continue;
        };
        *slot = Some(match (*slot, pool) {
            (None, _) => (s, 1),
            (Some((a, n)), Pool::Max) => (a.max(s), n + 1),
            (Some((a, n)), Pool::Mean | Pool::Sum) => (a + s, n + 1),
        });
    }
    acc.into_iter()
        .map(|a| {
            a.map(|(v, n)| match pool {
                Pool::Mean => v / n as f32,
                _ => v,
            })
        })
        .collect()
}

/// Replace missing word scores by `missing`.
pub fn fill_missing(word_scores: &[Option<f32>], missing: f32) -> Vec<f32> {
    word_scores.iter().map(|s| s.unwrap_or(missing)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Split;

    fn example(words: &[&str], pair: Option<&[&str]>) -> Example {
        Example {
            id: "x".into(),
            words: words.iter().map(|s| s.to_string()).collect(),
            words_pair: pair.map(|p| p.iter().map(|s| s.to_string()).collect()),
            label: 0,
            rationale: None,
            split: Split::Dev,
        }
    }

    #[test]
    fn spans_follow_the_joined_text() {
        let e = example(&["Un", "café", "(noir)"], None);
        assert_eq!(e.text(), "Un café (noir)");
        assert_eq!(e.word_char_spans(), vec![(0, 2), (3, 7), (8, 14)]);
    }

    /// "[CLS] un ##believ ##able ! [SEP]" over words "unbelievable !"
    #[test]
    fn multi_piece_words_and_specials() {
        let e = example(&["unbelievable", "!"], None);
        let words = e.word_char_spans(); // (0,12), (13,14)
        let pieces = [(0, 0), (0, 2), (2, 8), (8, 12), (13, 14), (0, 0)];
        let special = [true, false, false, false, false, true];
        let map = piece_to_word(&pieces, &special, &words);
        assert_eq!(map, vec![None, Some(0), Some(0), Some(0), Some(1), None]);

        assert_eq!(
            word_to_piece_labels(&[1.0, 0.0], &map),
            vec![0.0, 1.0, 1.0, 1.0, 0.0, 0.0]
        );
        assert_eq!(
            word_to_piece_labels(&[0.5, 1.0], &map),
            vec![0.0, 0.5, 0.5, 0.5, 1.0, 0.0]
        );

        let scores = [9.0, 0.1, 0.6, 0.2, 0.3, 9.0];
        let max = piece_to_word_scores(&scores, &map, 2, Pool::Max);
        assert_eq!(max, vec![Some(0.6), Some(0.3)]);
        let mean = piece_to_word_scores(&scores, &map, 2, Pool::Mean);
        assert!((mean[0].unwrap() - 0.3).abs() < 1e-6 && mean[1] == Some(0.3));
        let sum = piece_to_word_scores(&scores, &map, 2, Pool::Sum);
        assert!((sum[0].unwrap() - 0.9).abs() < 1e-6);
    }

    #[test]
    fn overlap_picks_the_largest_share_and_truncation_leaves_gaps() {
        // words "ab cd ef": a piece spanning "b c" (1..4) overlaps "ab" by 1 and "cd" by 1 → first;
        // a piece 2..5 ("space + cd") lies mostly in "cd".
        let words = [(0, 2), (3, 5), (6, 8)];
        let map = piece_to_word(&[(1, 4), (2, 5), (2, 3)], &[false, false, false], &words);
        assert_eq!(map, vec![Some(0), Some(1), None]);
        // truncated after "cd": "ef" gets no piece
        let map = piece_to_word(&[(0, 2), (3, 5)], &[false, false], &words);
        let s = piece_to_word_scores(&[0.4, 0.7], &map, 3, Pool::Max);
        assert_eq!(s, vec![Some(0.4), Some(0.7), None]);
        assert_eq!(fill_missing(&s, f32::NEG_INFINITY)[2], f32::NEG_INFINITY);
    }

    #[test]
    fn pairs_number_second_text_words_after_the_first() {
        // "[CLS] a dog [SEP] an ##imal [SEP]" for ("a dog", "animal")
        let e = example(&["a", "dog"], Some(&["animal"]));
        let tok = |text: &str, start, end, special, sequence| Token {
            text: text.into(),
            start,
            end,
            special,
            id: 0,
            word: None,
            sequence,
        };
        let tokens = vec![
            tok("[CLS]", 0, 0, true, 0),
            tok("a", 0, 1, false, 0),
            tok("dog", 2, 5, false, 0),
            tok("[SEP]", 0, 0, true, 0),
            tok("an", 0, 2, false, 1),
            tok("##imal", 2, 6, false, 1),
            tok("[SEP]", 0, 0, true, 1),
        ];
        let map = example_piece_map(&e, &tokens);
        assert_eq!(
            map,
            vec![None, Some(0), Some(1), None, Some(2), Some(2), None]
        );
        let labels = word_to_piece_labels(&[0.0, 1.0, 1.0], &map);
        assert_eq!(labels, vec![0.0, 0.0, 1.0, 0.0, 1.0, 1.0, 0.0]);
        let words = piece_to_word_scores(
            &[0.0, 0.1, 0.2, 0.0, 0.5, 0.3, 0.0],
            &map,
            e.n_words(),
            Pool::Mean,
        );
        assert_eq!(words, vec![Some(0.1), Some(0.2), Some(0.4)]);
    }
}
