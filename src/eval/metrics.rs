//! Plausibility and agreement metrics: how well importance scores match a
//! human rationale, and how much two methods agree.
//!
//! Conventions shared by all functions here:
//! - Higher score = more important. NaN scores rank lowest (like
//!   `f32::NEG_INFINITY`), so a word the model never saw (see
//!   `data::align::fill_missing`) is never preferred over a scored one.
//! - Slices that are compared must have the same length; a mismatch is a
//!   programming error and panics with a message saying which.

use std::cmp::Ordering;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Precision, recall and F1 of a binary selection against a gold mask.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Prf {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
}

fn key(x: f32) -> f32 {
    if x.is_nan() { f32::NEG_INFINITY } else { x }
}

fn cmp_desc(a: f32, b: f32) -> Ordering {
    key(b).partial_cmp(&key(a)).unwrap_or(Ordering::Equal)
}

fn check_len(what: &str, a: usize, b: usize) {
    assert_eq!(a, b, "{what}: score and gold lengths differ ({a} vs {b})");
}

/// Indices ordered by descending score, ties by lower index first.
pub fn rank_desc(scores: &[f32]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&i, &j| cmp_desc(scores[i], scores[j]).then(i.cmp(&j)));
    idx
}

/// The `k` highest-scoring indices (ties by lower index), as a mask.
pub fn top_k_mask(scores: &[f32], k: usize) -> Vec<bool> {
    let mut mask = vec![false; scores.len()];
    for i in rank_desc(scores).into_iter().take(k) {
        mask[i] = true;
    }
    mask
}

/// Token F1 with the scores binarised at their top k, k = number of gold
/// positives (so precision = recall = F1; all three are reported for the
/// tables). Ties at the cut are broken by lower index, i.e. earlier words win.
/// `None` when the gold has no positive.
pub fn f1_at_k(scores: &[f32], gold: &[bool]) -> Option<Prf> {
    check_len("f1_at_k", scores.len(), gold.len());
    let k = gold.iter().filter(|&&g| g).count();
    if k == 0 {
        return None;
    }
    let sel = top_k_mask(scores, k);
    Some(prf(&sel, gold))
}

/// Precision/recall/F1 of a selection mask against gold (0 where undefined).
pub fn prf(selected: &[bool], gold: &[bool]) -> Prf {
    check_len("prf", selected.len(), gold.len());
    let tp = selected.iter().zip(gold).filter(|&(&s, &g)| s && g).count() as f64;
    let n_sel = selected.iter().filter(|&&s| s).count() as f64;
    let n_gold = gold.iter().filter(|&&g| g).count() as f64;
    let precision = if n_sel > 0.0 { tp / n_sel } else { 0.0 };
    let recall = if n_gold > 0.0 { tp / n_gold } else { 0.0 };
    let f1 = if precision + recall > 0.0 {
        2.0 * precision * recall / (precision + recall)
    } else {
        0.0
    };
    Prf {
        precision,
        recall,
        f1,
    }
}

/// 1-based ascending ranks, tied values sharing their average rank.
pub fn average_ranks(values: &[f32]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..values.len()).collect();
    idx.sort_by(|&i, &j| cmp_desc(values[j], values[i]));
    let mut ranks = vec![0.0; values.len()];
    let mut start = 0;
    while start < idx.len() {
        let mut end = start + 1;
        while end < idx.len() && cmp_desc(values[idx[start]], values[idx[end]]) == Ordering::Equal {
            end += 1;
        }
        // positions start..end hold ranks start+1..=end
        let avg = (start + 1 + end) as f64 / 2.0;
        for &i in &idx[start..end] {
            ranks[i] = avg;
        }
        start = end;
    }
    ranks
}

/// Area under the ROC curve: the probability that a random gold word
/// outscores a random other word, ties counting half (Mann–Whitney U from
/// average ranks). `None` if either class is absent.
pub fn auroc(scores: &[f32], gold: &[bool]) -> Option<f64> {
    check_len("auroc", scores.len(), gold.len());
    let n_pos = gold.iter().filter(|&&g| g).count();
    let n_neg = gold.len() - n_pos;
    if n_pos == 0 || n_neg == 0 {
        return None;
    }
    let ranks = average_ranks(scores);
    let r_pos: f64 = ranks
        .iter()
        .zip(gold)
        .filter(|&(_, &g)| g)
        .map(|(r, _)| r)
        .sum();
    let (p, n) = (n_pos as f64, n_neg as f64);
    Some((r_pos - p * (p + 1.0) / 2.0) / (p * n))
}

/// Average precision as scikit-learn defines it: Σ (Rₙ − Rₙ₋₁) Pₙ over the
/// distinct score thresholds in descending order (tied scores enter
/// together, no interpolation). `None` if the gold has no positive.
pub fn auprc(scores: &[f32], gold: &[bool]) -> Option<f64> {
    check_len("auprc", scores.len(), gold.len());
    let n_pos = gold.iter().filter(|&&g| g).count();
    if n_pos == 0 {
        return None;
    }
    let order = rank_desc(scores);
    let (mut tp, mut fp) = (0usize, 0usize);
    let (mut ap, mut prev_recall) = (0.0, 0.0);
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j < order.len() && cmp_desc(scores[order[i]], scores[order[j]]) == Ordering::Equal {
            if gold[order[j]] {
                tp += 1
            } else {
                fp += 1
            }
            j += 1;
        }
        let recall = tp as f64 / n_pos as f64;
        let precision = tp as f64 / (tp + fp) as f64;
        ap += (recall - prev_recall) * precision;
        prev_recall = recall;
        i = j;
    }
    Some(ap)
}

/// Mean of `values` with a 95% percentile-bootstrap interval: `iters`
/// resamples with replacement from a `StdRng` seeded with `seed` (so reports
/// are reproducible); the bounds are the 2.5% and 97.5% quantiles of the
/// resampled means, linearly interpolated as numpy's default. Empty input
/// gives `(NaN, NaN, NaN)`; `iters == 0` gives `(mean, mean, mean)`.
pub fn bootstrap_mean_ci(values: &[f64], iters: usize, seed: u64) -> (f64, f64, f64) {
    let n = values.len();
    if n == 0 {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    let mean = values.iter().sum::<f64>() / n as f64;
    if iters == 0 {
        return (mean, mean, mean);
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let mut means: Vec<f64> = (0..iters)
        .map(|_| (0..n).map(|_| values[rng.gen_range(0..n)]).sum::<f64>() / n as f64)
        .collect();
    means.sort_by(|a, b| a.total_cmp(b));
    (mean, quantile(&means, 0.025), quantile(&means, 0.975))
}

/// Linear-interpolated quantile of sorted values (numpy's default method).
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// Spearman rank correlation (Pearson correlation of average ranks).
/// `None` with fewer than two items or when either side is constant.
pub fn spearman(a: &[f32], b: &[f32]) -> Option<f64> {
    assert_eq!(
        a.len(),
        b.len(),
        "spearman: lengths differ ({} vs {})",
        a.len(),
        b.len()
    );
    if a.len() < 2 {
        return None;
    }
    let (ra, rb) = (average_ranks(a), average_ranks(b));
    let n = ra.len() as f64;
    let (ma, mb) = (ra.iter().sum::<f64>() / n, rb.iter().sum::<f64>() / n);
    let (mut cov, mut va, mut vb) = (0.0, 0.0, 0.0);
    for (x, y) in ra.iter().zip(&rb) {
        cov += (x - ma) * (y - mb);
        va += (x - ma) * (x - ma);
        vb += (y - mb) * (y - mb);
    }
    if va <= 0.0 || vb <= 0.0 {
        return None;
    }
    Some(cov / (va.sqrt() * vb.sqrt()))
}

/// Share of the top-`k` items of `a` that are also in the top `k` of `b`
/// (ties by lower index). `k` is clamped to the length; when that leaves
/// nothing to compare (k = 0 or empty input) the selections trivially agree
/// and the result is 1.
pub fn top_k_overlap(a: &[f32], b: &[f32], k: usize) -> f64 {
    assert_eq!(
        a.len(),
        b.len(),
        "top_k_overlap: lengths differ ({} vs {})",
        a.len(),
        b.len()
    );
    let k = k.min(a.len());
    if k == 0 {
        return 1.0;
    }
    let (ma, mb) = (top_k_mask(a, k), top_k_mask(b, k));
    let common = ma.iter().zip(&mb).filter(|&(&x, &y)| x && y).count();
    common as f64 / k as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn f1_at_k_takes_top_k_with_index_tiebreak() {
        // gold has 2 positives; top-2 of scores = idx 0 (0.9) and idx 2 (0.5, tie with idx 3, lower index wins)
        let scores = [0.9, 0.1, 0.5, 0.5];
        let p = f1_at_k(&scores, &[true, false, false, true]).unwrap();
        assert!(close(p.precision, 0.5) && close(p.recall, 0.5) && close(p.f1, 0.5));
        let p = f1_at_k(&scores, &[true, false, true, false]).unwrap();
        assert!(close(p.f1, 1.0));
        assert_eq!(f1_at_k(&scores, &[false; 4]), None);
        // NaN ranks lowest
        let p = f1_at_k(&[f32::NAN, 0.0], &[false, true]).unwrap();
        assert!(close(p.f1, 1.0));
    }

    #[test]
    fn prf_counts_selection() {
        let p = prf(&[true, true, true, false], &[true, false, false, true]);
        assert!(close(p.precision, 1.0 / 3.0) && close(p.recall, 0.5) && close(p.f1, 0.4));
    }

    #[test]
    fn average_ranks_share_ties() {
        assert_eq!(
            average_ranks(&[0.3, 0.1, 0.3, 0.2]),
            vec![3.5, 1.0, 3.5, 2.0]
        );
        assert_eq!(average_ranks(&[0.0, -0.0]), vec![1.5, 1.5]);
    }

    #[test]
    fn auroc_counts_pairs_with_half_ties() {
        // positives 0.8, 0.4; negatives 0.4, 0.1, 0.6
        // pairs: 0.8 beats all 3; 0.4 vs 0.4 tie (0.5), beats 0.1, loses to 0.6 → (3 + 1.5) / 6
        let scores = [0.8, 0.4, 0.4, 0.1, 0.6];
        let gold = [true, true, false, false, false];
        assert!(close(auroc(&scores, &gold).unwrap(), 4.5 / 6.0));
        assert!(close(auroc(&[1.0, 0.0], &[true, false]).unwrap(), 1.0));
        assert!(close(auroc(&[1.0, 0.0], &[false, true]).unwrap(), 0.0));
        assert_eq!(auroc(&[1.0, 0.0], &[true, true]), None);
        assert_eq!(auroc(&[1.0, 0.0], &[false, false]), None);
    }

    #[test]
    fn auprc_matches_sklearn_definition() {
        // sklearn: average_precision_score([1,0,1,0], [0.9,0.8,0.7,0.1]) = 0.8333…
        // thresholds: 0.9 → P=1,R=.5; 0.8 → P=.5; 0.7 → P=2/3,R=1 → .5*1 + .5*2/3
        let ap = auprc(&[0.9, 0.8, 0.7, 0.1], &[true, false, true, false]).unwrap();
        assert!(close(ap, 0.5 + 0.5 * 2.0 / 3.0));
        // a tie across classes enters as one threshold: [1,0] both 0.5 → P=.5 at R=1
        let ap = auprc(&[0.5, 0.5, 0.1], &[true, false, false]).unwrap();
        assert!(close(ap, 0.5));
        assert_eq!(auprc(&[0.5, 0.5], &[false, false]), None);
    }

    #[test]
    fn bootstrap_is_seeded_and_brackets_the_mean() {
        let v: Vec<f64> = (0..50).map(|i| (i % 7) as f64).collect();
        let (m, lo, hi) = bootstrap_mean_ci(&v, 500, 7);
        let mean = v.iter().sum::<f64>() / 50.0;
        assert!(close(m, mean));
        assert!(lo < m && m < hi && hi - lo < 2.0, "{lo} {m} {hi}");
        assert_eq!(bootstrap_mean_ci(&v, 500, 7), (m, lo, hi));
        assert_ne!(bootstrap_mean_ci(&v, 500, 8), (m, lo, hi));
        let c = bootstrap_mean_ci(&[2.0; 10], 100, 1);
        assert_eq!(c, (2.0, 2.0, 2.0));
        assert!(bootstrap_mean_ci(&[], 10, 1).0.is_nan());
        assert_eq!(bootstrap_mean_ci(&[1.0, 3.0], 0, 1), (2.0, 2.0, 2.0));
    }

    #[test]
    fn quantile_interpolates() {
        let s = [0.0, 10.0, 20.0, 30.0, 40.0];
        assert!(close(quantile(&s, 0.5), 20.0));
        assert!(close(quantile(&s, 0.1), 4.0));
        assert!(close(quantile(&s, 1.0), 40.0));
    }

    #[test]
    fn spearman_uses_average_ranks() {
        assert!(close(
            spearman(&[1., 2., 3., 4.], &[10., 20., 30., 40.]).unwrap(),
            1.0
        ));
        assert!(close(spearman(&[1., 2., 3.], &[3., 2., 1.]).unwrap(), -1.0));
        // ranks a = [1,2,3,4], b = [1,2.5,2.5,4]: cov = 4.5, var a = 5, var b = 4.5 → 4.5/sqrt(22.5)
        let r = spearman(&[1., 2., 3., 4.], &[0., 1., 1., 2.]).unwrap();
        assert!(close(r, 4.5 / 22.5f64.sqrt()));
        assert_eq!(spearman(&[1., 1., 1.], &[1., 2., 3.]), None);
        assert_eq!(spearman(&[1.], &[1.]), None);
    }

    #[test]
    fn top_k_overlap_counts_shared_items() {
        let a = [0.9, 0.8, 0.1, 0.0];
        let b = [0.9, 0.0, 0.8, 0.1];
        assert!(close(top_k_overlap(&a, &b, 2), 0.5));
        assert!(close(top_k_overlap(&a, &b, 1), 1.0));
        assert!(close(top_k_overlap(&a, &b, 10), 1.0));
        assert!(close(top_k_overlap(&a, &b, 0), 1.0));
    }
}
