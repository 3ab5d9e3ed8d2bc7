//! Pure score arithmetic for the panes: display units (pieces or merged words),
//! colour normalisation, and small agreement statistics. Kept private to the
//! TUI so it does not wait for `crate::eval::metrics`.

use crate::model::Token;

/// What one heatmap cell shows: one word piece, or a whole word in word mode.
#[derive(Clone, Debug, PartialEq)]
pub struct Unit {
    pub text: String,
    /// Indices into the analysis' tokens covered by this unit (never empty).
    pub tokens: Vec<usize>,
    pub special: bool,
}

/// Text of a token as the user typed it: the slice of the input its offsets
/// cover (so BPE markers like `Ġ` never show), falling back to the vocabulary
/// spelling for special or offset-less tokens.
fn surface(text: &[char], t: &Token) -> String {
    if !t.special && t.start < t.end && t.end <= text.len() {
        text[t.start..t.end].iter().collect()
    } else {
        t.text.clone()
    }
}

/// Builds the display units. In word mode consecutive pieces with the same
/// `word` index merge into one unit; otherwise continuation pieces get `##`.
pub fn units(text: &str, tokens: &[Token], merge_words: bool) -> Vec<Unit> {
    let chars: Vec<char> = text.chars().collect();
    let mut out: Vec<Unit> = Vec::with_capacity(tokens.len());
    for (i, t) in tokens.iter().enumerate() {
        let continues = i > 0 && !t.special && !tokens[i - 1].special && t.word.is_some() && t.word == tokens[i - 1].word;
        if continues && merge_words
            && let Some(last) = out.last_mut() {
                let first = &tokens[last.tokens[0]];
                last.tokens.push(i);
                last.text = if first.start < t.end && t.end <= chars.len() {
                    chars[first.start..t.end].iter().collect()
                } else {
                    format!("{}{}", last.text, t.text.trim_start_matches("##"))
                };
                continue;
            }
        let s = surface(&chars, t);
        let s = if continues && !s.starts_with("##") { format!("##{s}") } else { s };
        out.push(Unit { text: s, tokens: vec![i], special: t.special });
    }
    out
}

/// Score of a unit: the token score with the largest magnitude (sign kept),
/// so a merged word is as important as its most important piece.
pub fn unit_score(unit: &Unit, scores: &[f32]) -> Option<f32> {
    unit.tokens
        .iter()
        .filter_map(|&i| scores.get(i).copied())
        .filter(|v| v.is_finite())
        .max_by(|a, b| a.abs().total_cmp(&b.abs()))
}

/// Scores mapped to the colour scale of one method.
#[derive(Clone, Debug, PartialEq)]
pub struct Normalized {
    /// In `[0, 1]` for positive maps, `[-1, 1]` for signed maps; `None` for
    /// special tokens and missing values (drawn neutral).
    pub values: Vec<Option<f32>>,
    /// True when the method produced negative scores: use the diverging map.
    pub signed: bool,
}

/// Normalises over the non-special entries only, because [CLS]/[SEP] often
/// dominate attention-based scores and would wash out the real words.
/// Positive maps use min–max; signed maps divide by the largest magnitude so
/// zero stays the neutral colour.
pub fn normalize(scores: &[Option<f32>], special: &[bool]) -> Normalized {
    let live = || scores.iter().zip(special).filter(|(_, s)| !**s).filter_map(|(v, _)| v.filter(|v| v.is_finite()));
    let signed = live().any(|v| v < 0.0);
    let values = if signed {
        let m = live().fold(0.0f32, |m, v| m.max(v.abs()));
        let f = |v: f32| if m > 0.0 { (v / m).clamp(-1.0, 1.0) } else { 0.0 };
        scores.iter().zip(special).map(|(v, s)| if *s { None } else { v.filter(|v| v.is_finite()).map(f) }).collect()
    } else {
        let (lo, hi) = live().fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
        let range = hi - lo;
        let f = |v: f32| if range > 1e-12 { ((v - lo) / range).clamp(0.0, 1.0) } else { 0.0 };
        scores.iter().zip(special).map(|(v, s)| if *s { None } else { v.filter(|v| v.is_finite()).map(f) }).collect()
    };
    Normalized { values, signed }
}

/// Normalised colour values for each unit of one method's scores.
pub fn unit_values(units: &[Unit], scores: &[f32]) -> Normalized {
    let raw: Vec<Option<f32>> = units.iter().map(|u| unit_score(u, scores)).collect();
    let special: Vec<bool> = units.iter().map(|u| u.special).collect();
    normalize(&raw, &special)
}

/// Average ranks (1-based, ties share their mean rank).
fn ranks(v: &[f32]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut r = vec![0.0; v.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && v[idx[j + 1]] == v[idx[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        for &k in &idx[i..=j] {
            r[k] = avg;
        }
        i = j + 1;
    }
    r
}

/// Importance magnitudes of the non-special tokens shared by both score lists.
fn paired(a: &[f32], b: &[f32], special: &[bool]) -> (Vec<f32>, Vec<f32>) {
    a.iter()
        .zip(b)
        .zip(special)
        .filter(|((x, y), s)| !**s && x.is_finite() && y.is_finite())
        .map(|((x, y), _)| (x.abs(), y.abs()))
        .unzip()
}

/// Spearman rank correlation of importance magnitudes over non-special
/// tokens; `None` when undefined (fewer than two tokens or a constant list).
pub fn spearman(a: &[f32], b: &[f32], special: &[bool]) -> Option<f64> {
    let (x, y) = paired(a, b, special);
    if x.len() < 2 {
        return None;
    }
    let (rx, ry) = (ranks(&x), ranks(&y));
    let n = rx.len() as f64;
    let (mx, my) = (rx.iter().sum::<f64>() / n, ry.iter().sum::<f64>() / n);
    let cov: f64 = rx.iter().zip(&ry).map(|(a, b)| (a - mx) * (b - my)).sum();
    let vx: f64 = rx.iter().map(|a| (a - mx).powi(2)).sum();
    let vy: f64 = ry.iter().map(|b| (b - my).powi(2)).sum();
    (vx > 0.0 && vy > 0.0).then(|| cov / (vx * vy).sqrt())
}

/// Indices of the `k` largest values (ties broken by position).
pub fn top_k(v: &[f32], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| v[b].total_cmp(&v[a]).then(a.cmp(&b)));
    idx.truncate(k);
    idx
}

/// Size of the top-k sets compared in the compare pane.
pub const TOP_K: usize = 3;

/// Fraction of the top-k most important non-special tokens two methods share.
pub fn top_k_overlap(a: &[f32], b: &[f32], special: &[bool], k: usize) -> Option<f64> {
    let (x, y) = paired(a, b, special);
    let k = k.min(x.len());
    if k == 0 {
        return None;
    }
    let (ta, tb) = (top_k(&x, k), top_k(&y, k));
    Some(ta.iter().filter(|i| tb.contains(i)).count() as f64 / k as f64)
}

/// Char ranges of the whitespace-separated words of a text, the unit that
/// example rationales are given in.
pub fn word_spans(text: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = None;
    let mut n = 0;
    for (i, c) in text.chars().enumerate() {
        match (c.is_whitespace(), start) {
            (false, None) => start = Some(i),
            (true, Some(s)) => {
                out.push((s, i));
                start = None;
            }
            _ => {}
        }
        n = i + 1;
    }
    if let Some(s) = start {
        out.push((s, n));
    }
    out
}

/// Per-word importance: the largest magnitude of the tokens overlapping each word.
pub fn word_scores(text: &str, tokens: &[Token], scores: &[f32]) -> Vec<f32> {
    word_spans(text)
        .iter()
        .map(|&(ws, we)| {
            tokens
                .iter()
                .zip(scores)
                .filter(|(t, v)| !t.special && t.start < we && t.end > ws && v.is_finite())
                .map(|(_, v)| v.abs())
                .fold(0.0f32, f32::max)
        })
        .collect()
}

/// F1@k of the top-k words against a human rationale, with k the rationale's
/// size (so precision and recall coincide); `None` without rationale words.
pub fn f1_at_k(word_scores: &[f32], rationale: &[bool]) -> Option<f64> {
    let n = word_scores.len().min(rationale.len());
    let k = rationale[..n].iter().filter(|r| **r).count();
    if k == 0 {
        return None;
    }
    let hits = top_k(&word_scores[..n], k).iter().filter(|&&i| rationale[i]).count();
    let (p, r) = (hits as f64 / k as f64, hits as f64 / k as f64);
    Some(if p + r > 0.0 { 2.0 * p * r / (p + r) } else { 0.0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tok(text: &str, start: usize, end: usize, word: Option<u32>, special: bool) -> Token {
        Token { text: text.into(), start, end, special, id: 0, word, sequence: 0 }
    }

    fn sample() -> (String, Vec<Token>) {
        let text = "the unwatchable film".to_string();
        let t = vec![
            tok("[CLS]", 0, 0, None, true),
            tok("the", 0, 3, Some(0), false),
            tok("un", 4, 6, Some(1), false),
            tok("##watch", 6, 11, Some(1), false),
            tok("##able", 11, 15, Some(1), false),
            tok("film", 16, 20, Some(2), false),
            tok("[SEP]", 20, 20, None, true),
        ];
        (text, t)
    }

    #[test]
    fn pieces_and_merged_words() {
        let (text, t) = sample();
        let pieces = units(&text, &t, false);
        let p: Vec<&str> = pieces.iter().map(|u| u.text.as_str()).collect();
        assert_eq!(p, ["[CLS]", "the", "un", "##watch", "##able", "film", "[SEP]"]);
        let words = units(&text, &t, true);
        let w: Vec<&str> = words.iter().map(|u| u.text.as_str()).collect();
        assert_eq!(w, ["[CLS]", "the", "unwatchable", "film", "[SEP]"]);
        assert_eq!(words[2].tokens, vec![2, 3, 4]);
        let scores = [0.9, 0.1, 0.2, -0.7, 0.3, 0.4, 0.9];
        assert_eq!(unit_score(&words[2], &scores), Some(-0.7));
    }

    #[test]
    fn normalisation_ignores_specials_and_detects_sign() {
        let n = normalize(&[Some(9.0), Some(1.0), Some(3.0), Some(2.0)], &[true, false, false, false]);
        assert!(!n.signed);
        assert_eq!(n.values, vec![None, Some(0.0), Some(1.0), Some(0.5)]);
        let s = normalize(&[Some(-2.0), Some(1.0), None], &[false, false, false]);
        assert!(s.signed);
        assert_eq!(s.values, vec![Some(-1.0), Some(0.5), None]);
        let flat = normalize(&[Some(0.3), Some(0.3)], &[false, false]);
        assert_eq!(flat.values, vec![Some(0.0), Some(0.0)]);
    }

    #[test]
    fn agreement_statistics() {
        let sp = [true, false, false, false, false];
        let a = [5.0, 1.0, 2.0, 3.0, 4.0];
        assert!((spearman(&a, &[0.0, 10.0, 20.0, 30.0, 40.0], &sp).unwrap() - 1.0).abs() < 1e-9);
        assert!((spearman(&a, &[0.0, 4.0, 3.0, 2.0, 1.0], &sp).unwrap() + 1.0).abs() < 1e-9);
        assert_eq!(spearman(&a, &[0.0, 1.0, 1.0, 1.0, 1.0], &sp), None);
        assert_eq!(top_k_overlap(&a, &[0.0, 4.0, 3.0, 2.0, 1.0], &sp, 2), Some(0.0));
        assert_eq!(top_k_overlap(&a, &[0.0, 1.0, 2.0, 4.0, 3.0], &sp, 2), Some(1.0));
        // Magnitudes: a strongly negative token counts as important.
        assert_eq!(top_k_overlap(&[0.0, -9.0, 1.0], &[0.0, 9.0, 1.0], &[true, false, false], 1), Some(1.0));
    }

    /// Arbitrary Unicode text: letters of several scripts, combining marks,
    /// emoji, zero-width joiners, and many kinds of whitespace.
    fn random_text(rng: &mut impl rand::Rng) -> String {
        const POOL: &[char] = &[
            'a', 'b', 'Z', 'é', 'ß', '漢', '字', 'д', 'ﬁ', '🙂', '👍', '\u{301}', '\u{200d}', '\u{fe0f}', ' ', ' ', '\t', '\n', '\r', '\u{a0}', '\u{3000}', '\u{2028}', '.', ',', '\'',
        ];
        let n = rng.gen_range(0..40);
        (0..n).map(|_| if rng.gen_bool(0.2) { char::from_u32(rng.gen_range(0x20..0x2_0000)).unwrap_or('x') } else { POOL[rng.gen_range(0..POOL.len())] }).collect()
    }

    /// Pieces the way a WordPiece/BPE tokenizer reports them: each word cut
    /// into 1–3 pieces with character offsets, between [CLS] and [SEP].
    fn random_pieces(rng: &mut impl rand::Rng, text: &str) -> Vec<Token> {
        let chars: Vec<char> = text.chars().collect();
        let mut out = vec![tok("[CLS]", 0, 0, None, true)];
        for (w, (s, e)) in word_spans(text).into_iter().enumerate() {
            let mut cuts: Vec<usize> = (0..rng.gen_range(0..3)).map(|_| rng.gen_range(s..e)).filter(|c| *c > s).collect();
            cuts.sort();
            cuts.dedup();
            let mut a = s;
            for b in cuts.into_iter().chain([e]) {
                let piece: String = chars[a..b].iter().collect();
                let piece = if a > s { format!("##{piece}") } else { piece };
                out.push(tok(&piece, a, b, Some(w as u32), false));
                a = b;
            }
        }
        out.push(tok("[SEP]", chars.len(), chars.len(), None, true));
        out
    }

    /// Property test (seeded): on arbitrary Unicode, words are exactly the
    /// whitespace-separated runs, pieces map back to the text they cover,
    /// merged words cover every piece once in order, and word scores line
    /// up with the words.
    #[test]
    fn word_and_piece_alignment_holds_on_arbitrary_unicode() {
        use rand::{Rng, SeedableRng};
        for seed in 0..500u64 {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let text = random_text(&mut rng);
            let chars: Vec<char> = text.chars().collect();
            let spans = word_spans(&text);
            let words: Vec<String> = spans.iter().map(|&(s, e)| chars[s..e].iter().collect()).collect();
            assert_eq!(words, text.split_whitespace().collect::<Vec<_>>(), "seed {seed}: {text:?}");
            assert!(spans.windows(2).all(|w| w[0].1 < w[1].0), "seed {seed}: spans sorted, apart");
            let tokens = random_pieces(&mut rng, &text);
            let pieces = units(&text, &tokens, false);
            assert_eq!(pieces.len(), tokens.len(), "seed {seed}");
            for (i, (u, t)) in pieces.iter().zip(&tokens).enumerate() {
                if !t.special {
                    let covered: String = chars[t.start..t.end].iter().collect();
                    let continues = !tokens[i - 1].special && tokens[i - 1].word == t.word;
                    let want = if continues && !covered.starts_with("##") { format!("##{covered}") } else { covered };
                    assert_eq!(u.text, want, "seed {seed}: a piece shows the text it covers");
                }
            }
            let merged = units(&text, &tokens, true);
            let flat: Vec<usize> = merged.iter().flat_map(|u| u.tokens.clone()).collect();
            assert_eq!(flat, (0..tokens.len()).collect::<Vec<_>>(), "seed {seed}: every piece once, in order");
            let merged_words: Vec<&str> = merged.iter().filter(|u| !u.special).map(|u| u.text.as_str()).collect();
            assert_eq!(merged_words, words.iter().map(String::as_str).collect::<Vec<_>>(), "seed {seed}: merged pieces are the words");
            let scores: Vec<f32> = (0..tokens.len()).map(|_| rng.gen_range(-1.0..1.0)).collect();
            let ws = word_scores(&text, &tokens, &scores);
            assert_eq!(ws.len(), words.len(), "seed {seed}");
            for (w, v) in ws.iter().enumerate() {
                let best = tokens.iter().zip(&scores).filter(|(t, _)| t.word == Some(w as u32)).map(|(_, s)| s.abs()).fold(0.0f32, f32::max);
                assert_eq!(*v, best, "seed {seed}: word {w} scores as its strongest piece");
            }
        }
    }

    #[test]
    fn f1_against_rationale() {
        let (text, t) = sample();
        assert_eq!(word_spans(&text), vec![(0, 3), (4, 15), (16, 20)]);
        let ws = word_scores(&text, &t, &[0.0, 0.1, 0.2, -0.9, 0.3, 0.5, 0.0]);
        assert_eq!(ws, vec![0.1, 0.9, 0.5]);
        assert_eq!(f1_at_k(&ws, &[false, true, false]), Some(1.0));
        assert_eq!(f1_at_k(&ws, &[true, false, false]), Some(0.0));
        assert_eq!(f1_at_k(&ws, &[true, true, false]), Some(0.5));
        assert_eq!(f1_at_k(&ws, &[false, false, false]), None);
    }
}
