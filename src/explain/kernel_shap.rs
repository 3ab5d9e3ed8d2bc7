//! KernelSHAP (Lundberg & Lee 2017): Shapley values of the maskable tokens,
//! estimated as a weighted linear regression over coalitions with the Shapley
//! kernel `π(s) = (d−1) / (C(d,s)·s·(d−s))`.
//!
//! - The empty and full coalitions have infinite weight; as in shap's
//!   `KernelExplainer` they become constraints (`φ₀ = f(∅)` and efficiency
//!   `Σφ = f(x) − f(∅)`), enforced by eliminating the last variable, so the
//!   scores always sum exactly to `f(x) − f(∅)`.
//! - With `d ≤ exact_max` (default 12) maskable tokens, or when the budget
//!   covers all `2^d − 2` coalitions, every coalition is enumerated with its
//!   kernel weight and the result equals the exact Shapley values.
//! - Otherwise shap's hybrid sampler: coalition sizes are taken in pairs
//!   (`s`, `d−s`) from the smallest; a size whose whole kernel share fits the
//!   remaining budget is enumerated exactly, the rest is sampled with sizes
//!   proportional to the kernel, each draw paired with its complement
//!   (antithetic), duplicates merged by weight. Default budget `2d + 2048`
//!   coalitions (shap's `nsamples="auto"`).
//!
//! "Masked" is the model-side baseline (`[MASK]`), so `f(∅)` is the input with
//! every non-special token masked.

use std::collections::HashMap;

use rand::Rng;
use rand::SeedableRng;
use rand::rngs::StdRng;

use super::Explanation;
use super::Progress;
use super::masking::{Predict, evaluate, expand_mask, maskable_indices, weighted_ridge};

/// Settings for [`kernel_shap`].
#[derive(Clone, Debug)]
pub struct KernelShapConfig {
    /// Coalitions besides the empty and full ones; `None` = `2d + 2048`.
    pub samples: Option<usize>,
    /// Enumerate all `2^d` coalitions (exact Shapley values) up to this many
    /// maskable tokens; at most [`EXACT_LIMIT`].
    pub exact_max: usize,
    /// Seed of the coalition sampler: the same seed gives the same explanation.
    pub seed: u64,
    /// Masks per `predict` call (one encoder batch).
    pub batch: usize,
}

impl Default for KernelShapConfig {
    fn default() -> Self {
        Self { samples: None, exact_max: 12, seed: 42, batch: 32 }
    }
}

/// Largest `exact_max` accepted: `2^20` forward passes is already hours.
pub const EXACT_LIMIT: usize = 20;

/// KernelSHAP scores per token (0 for special tokens, which are never masked).
///
/// `forward_passes` = coalitions evaluated (including empty and full). Notes:
/// `exact` (1 when all coalitions were enumerated), `f_full`, `f_empty`.
pub fn kernel_shap(
    maskable: &[bool],
    predict: &mut Predict,
    progress: &Progress,
    config: &KernelShapConfig,
) -> anyhow::Result<Explanation> {
    anyhow::ensure!(
        config.exact_max <= EXACT_LIMIT,
        "KernelSHAP exact_max {} is too large (2^{} forward passes); use at most {EXACT_LIMIT}",
        config.exact_max,
        config.exact_max
    );
    let n = maskable.len();
    let features = maskable_indices(maskable);
    let d = features.len();
    let mut scores = vec![0.0f32; n];
    if d == 0 {
        return Ok(Explanation { scores, forward_passes: 0, notes: Vec::new() });
    }
    let budget = config.samples.unwrap_or(2 * d + 2048);
    let exact = d <= config.exact_max || (d < 63 && (1u64 << d) - 2 <= budget as u64);
    let coalitions = if d == 1 {
        Vec::new()
    } else if exact {
        enumerate_all(d)
    } else {
        anyhow::ensure!(budget >= d, "KernelSHAP needs at least {d} coalitions for {d} tokens (got {budget})");
        sample_hybrid(d, budget, config.seed)
    };

    let mut masks = Vec::with_capacity(coalitions.len() + 2);
    masks.push(vec![true; n]);
    masks.push(expand_mask(n, &features, &vec![false; d]));
    masks.extend(coalitions.iter().map(|(z, _)| expand_mask(n, &features, z)));
    let f = evaluate(&masks, predict, progress, config.batch, 0, masks.len())?;
    let (f_full, f_empty) = (f[0], f[1]);
    let delta = f_full - f_empty;

    let phi = if d == 1 {
        vec![delta]
    } else {
        // Eliminate φ_{d−1} = Δ − Σ_{i<d−1} φ_i, which turns each row into
        // f(z) − f(∅) − z_last·Δ = Σ_i (z_i − z_last) φ_i.
        let last = d - 1;
        let mut rows = Vec::with_capacity(coalitions.len());
        let mut y = Vec::with_capacity(coalitions.len());
        let mut w = Vec::with_capacity(coalitions.len());
        for ((z, weight), fz) in coalitions.iter().zip(&f[2..]) {
            let zl = f64::from(u8::from(z[last]));
            rows.push(z[..last].iter().map(|&zi| f64::from(u8::from(zi)) - zl).collect());
            y.push(fz - f_empty - zl * delta);
            w.push(*weight);
        }
        let (mut phi, _) = weighted_ridge(&rows, &y, &w, 0.0, false)
            .map_err(|e| e.context("KernelSHAP regression failed; raise the sample count"))?;
        phi.push(delta - phi.iter().sum::<f64>());
        phi
    };
    for (&pos, p) in features.iter().zip(&phi) {
        scores[pos] = *p as f32;
    }
    Ok(Explanation {
        scores,
        forward_passes: masks.len(),
        notes: vec![
            ("exact".into(), f64::from(u8::from(exact))),
            ("f_full".into(), f_full),
            ("f_empty".into(), f_empty),
        ],
    })
}

fn binomial(n: usize, k: usize) -> f64 {
    (0..k).fold(1.0, |acc, i| acc * (n - i) as f64 / (i + 1) as f64)
}

/// Shapley kernel weight of one coalition with `s` of `d` tokens present.
fn kernel_weight(d: usize, s: usize) -> f64 {
    (d - 1) as f64 / (binomial(d, s) * s as f64 * (d - s) as f64)
}

/// All coalitions except empty and full, with their kernel weights.
fn enumerate_all(d: usize) -> Vec<(Vec<bool>, f64)> {
    (1u64..(1u64 << d) - 1)
        .map(|bits| {
            let z: Vec<bool> = (0..d).map(|i| bits >> i & 1 == 1).collect();
            let s = bits.count_ones() as usize;
            (z, kernel_weight(d, s))
        })
        .collect()
}

/// Calls `f` with every `k`-subset of `0..d` in lexicographic order.
fn for_each_combination(d: usize, k: usize, mut f: impl FnMut(&[usize])) {
    let mut idx: Vec<usize> = (0..k).collect();
    loop {
        f(&idx);
        let Some(i) = (0..k).rev().find(|&i| idx[i] != i + d - k) else { return };
        idx[i] += 1;
        for j in i + 1..k {
            idx[j] = idx[j - 1] + 1;
        }
    }
}

/// shap's hybrid design: exact small sizes, kernel-proportional paired sampling
/// for the rest. Returns at most `budget` coalitions with weights that sum to 1.
fn sample_hybrid(d: usize, budget: usize, seed: u64) -> Vec<(Vec<bool>, f64)> {
    let sizes = d / 2; // sizes 1..=sizes, each paired with d−s (the middle one is its own pair)
    let paired = |s: usize| s != d - s;
    // Kernel mass of size class s (both s and d−s when paired), normalised to 1.
    let mut mass: Vec<f64> = (1..=sizes)
        .map(|s| if paired(s) { 2.0 } else { 1.0 } / (s as f64 * (d - s) as f64))
        .collect();
    let total: f64 = mass.iter().sum();
    mass.iter_mut().for_each(|m| *m /= total);

    let mut out: Vec<(Vec<bool>, f64)> = Vec::new();
    let mut left = budget as f64;
    let mut share = mass.clone();
    let mut full_sizes = 0;
    for s in 1..=sizes {
        let count = binomial(d, s) * if paired(s) { 2.0 } else { 1.0 };
        if left * share[s - 1] / count < 1.0 - 1e-8 {
            break;
        }
        full_sizes = s;
        left -= count;
        let rest = 1.0 - share[s - 1];
        if rest > 0.0 {
            share.iter_mut().for_each(|v| *v /= rest);
        }
        let w = mass[s - 1] / count;
        for_each_combination(d, s, |inds| {
            let mut z = vec![false; d];
            inds.iter().for_each(|&i| z[i] = true);
            if paired(s) {
                out.push((z.iter().map(|v| !v).collect(), w));
            }
            out.push((z, w));
        });
    }
    if full_sizes == sizes {
        return out;
    }

    // Sample the remaining size classes; each draw (and its complement) costs
    // one unit of budget, so draw classes with probability ∝ mass / pairs.
    let fixed = out.len();
    let mut left = budget.saturating_sub(fixed);
    let probs: Vec<f64> = (full_sizes + 1..=sizes)
        .map(|s| mass[s - 1] / if paired(s) { 2.0 } else { 1.0 })
        .collect();
    let psum: f64 = probs.iter().sum();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut seen: HashMap<Vec<bool>, usize> = HashMap::new();
    let mut draws = 0;
    while left > 0 && draws < 4 * budget {
        draws += 1;
        let mut u = rng.r#gen::<f64>() * psum;
        let mut s = sizes;
        for (k, p) in probs.iter().enumerate() {
            if u < *p {
                s = full_sizes + 1 + k;
                break;
            }
            u -= p;
        }
        let mut z = vec![false; d];
        for i in rand::seq::index::sample(&mut rng, d, s) {
            z[i] = true;
        }
        let complement: Vec<bool> = z.iter().map(|v| !v).collect();
        let mut add = |z: Vec<bool>, left: &mut usize| {
            if let Some(&at) = seen.get(&z) {
                out[at].1 += 1.0;
            } else if *left > 0 {
                seen.insert(z.clone(), out.len());
                out.push((z, 1.0));
                *left -= 1;
            }
        };
        add(z, &mut left);
        if paired(s) {
            add(complement, &mut left);
        }
    }
    // Sampled rows share the kernel mass the enumerated sizes did not cover.
    let left_mass: f64 = mass[full_sizes..].iter().sum();
    let counted: f64 = out[fixed..].iter().map(|(_, w)| w).sum();
    if counted > 0.0 {
        out[fixed..].iter_mut().for_each(|(_, w)| *w *= left_mass / counted);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::explain::{CancelToken, is_cancelled};

    /// Exact Shapley values by the permutation-free formula over all subsets.
    fn exact_shapley(d: usize, v: &dyn Fn(&[bool]) -> f64) -> Vec<f64> {
        let fact = |k: usize| (1..=k).map(|x| x as f64).product::<f64>();
        let mut phi = vec![0.0; d];
        for bits in 0u64..(1 << d) {
            let z: Vec<bool> = (0..d).map(|i| bits >> i & 1 == 1).collect();
            let s = bits.count_ones() as usize;
            for i in (0..d).filter(|&i| !z[i]) {
                let mut with = z.clone();
                with[i] = true;
                phi[i] += fact(s) * fact(d - s - 1) / fact(d) * (v(&with) - v(&z));
            }
        }
        phi
    }

    /// Nonlinear game on the maskable tokens: max of kept weights, a pairwise
    /// product and a three-way AND, so Shapley differs from occlusion.
    fn game(z: &[bool]) -> f64 {
        let w = [0.3, 0.8, 0.1, 0.5, 0.65, 0.2, 0.45, 0.9, 0.05, 0.35, 0.6, 0.15, 0.7, 0.25, 0.55, 0.4];
        let max = z.iter().zip(w).filter(|(k, _)| **k).map(|(_, w)| w).fold(0.0, f64::max);
        let pair = if z[0] && z[2] { 0.4 } else { 0.0 };
        let triple = if z.len() > 4 && z[1] && z[3] && z[4] { -0.3 } else { 0.0 };
        0.05 + 0.5 * max + pair + triple
    }

    /// Wraps `game` over maskable positions; checks specials are never masked.
    fn predictor<'a>(
        maskable: &'a [bool],
        calls: &'a mut Vec<usize>,
    ) -> impl FnMut(&[Vec<bool>]) -> anyhow::Result<Vec<f32>> + 'a {
        move |masks| {
            calls.push(masks.len());
            masks
                .iter()
                .map(|m| {
                    let z: Vec<bool> = m.iter().zip(maskable).filter(|(_, mk)| **mk).map(|(k, _)| *k).collect();
                    anyhow::ensure!(m.iter().zip(maskable).all(|(k, mk)| *mk || *k), "special token masked");
                    Ok(game(&z) as f32)
                })
                .collect()
        }
    }

    #[test]
    fn exact_regime_equals_shapley_formula() {
        for d in 4..=6 {
            let mut maskable = vec![false];
            maskable.extend(std::iter::repeat_n(true, d));
            maskable.push(false);
            let mut calls = Vec::new();
            let mut predict = predictor(&maskable, &mut calls);
            let e = kernel_shap(&maskable, &mut predict, &Progress::none(), &Default::default()).unwrap();
            let want = exact_shapley(d, &|z| game(z) as f32 as f64);
            assert_eq!(e.forward_passes, 1 << d);
            assert_eq!((e.scores[0], e.scores[d + 1]), (0.0, 0.0));
            for i in 0..d {
                assert!((e.scores[i + 1] as f64 - want[i]).abs() < 1e-4, "d={d}: {:?} vs {want:?}", e.scores);
            }
            // The game is not additive, so leave-one-out would differ from Shapley here.
            let loo0 = game(&vec![true; d]) - game(&(0..d).map(|i| i != 0).collect::<Vec<_>>());
            assert!((loo0 - want[0]).abs() > 1e-3);
        }
    }

    #[test]
    fn sampled_regime_keeps_efficiency_and_approximates_shapley() {
        let d = 16;
        let maskable = vec![true; d];
        let mut calls = Vec::new();
        let mut predict = predictor(&maskable, &mut calls);
        let config = KernelShapConfig { batch: 64, ..Default::default() };
        let e = kernel_shap(&maskable, &mut predict, &Progress::none(), &config).unwrap();
        drop(predict);
        assert_eq!(e.notes[0], ("exact".to_string(), 0.0));
        assert!(e.forward_passes <= 2 * d + 2048 + 2, "{}", e.forward_passes);
        assert!(calls.iter().all(|&c| c <= 64));
        let f_full = game(&vec![true; d]) as f32 as f64;
        let f_empty = game(&vec![false; d]) as f32 as f64;
        let sum: f64 = e.scores.iter().map(|&s| s as f64).sum();
        assert!((sum - (f_full - f_empty)).abs() < 1e-5, "efficiency: {sum} vs {}", f_full - f_empty);
        let want = exact_shapley(d, &|z| game(z) as f32 as f64);
        let worst = e.scores.iter().zip(&want).map(|(a, b)| (*a as f64 - b).abs()).fold(0.0, f64::max);
        assert!(worst < 0.02, "max error {worst}: {:?} vs {want:?}", e.scores);
    }

    #[test]
    fn sampled_regime_is_exact_on_additive_games() {
        let weights: Vec<f32> = (0..20).map(|i| ((i * 7 % 11) as f32 - 5.0) / 10.0).collect();
        let mut predict = |masks: &[Vec<bool>]| -> anyhow::Result<Vec<f32>> {
            Ok(masks.iter().map(|m| m.iter().zip(&weights).filter(|(k, _)| **k).map(|(_, w)| w).sum()).collect())
        };
        let config = KernelShapConfig { samples: Some(300), ..Default::default() };
        let e = kernel_shap(&[true; 20], &mut predict, &Progress::none(), &config).unwrap();
        assert_eq!(e.forward_passes, 302);
        for (s, w) in e.scores.iter().zip(&weights) {
            assert!((s - w).abs() < 1e-4, "{:?}", e.scores);
        }
    }

    #[test]
    fn seeded_sampling_is_deterministic() {
        let maskable = vec![true; 14];
        let run = |seed| {
            let mut calls = Vec::new();
            let mut predict = predictor(&maskable, &mut calls);
            let config = KernelShapConfig { samples: Some(200), seed, ..Default::default() };
            kernel_shap(&maskable, &mut predict, &Progress::none(), &config).unwrap().scores
        };
        assert_eq!(run(3), run(3));
        assert_ne!(run(3), run(4));
    }

    #[test]
    fn hybrid_design_weights_and_sizes() {
        // d = 10, budget 100: sizes 1 and 9 (20 coalitions) fit exactly; size 2/8 (90) does not.
        let rows = sample_hybrid(10, 100, 1);
        assert!(rows.len() <= 100);
        let total: f64 = rows.iter().map(|(_, w)| w).sum();
        assert!((total - 1.0).abs() < 1e-9, "weights sum to {total}");
        let size = |z: &[bool]| z.iter().filter(|&&k| k).count();
        let singles = rows.iter().filter(|(z, _)| size(z) == 1 || size(z) == 9).count();
        assert_eq!(singles, 20);
        assert!(rows.iter().all(|(z, _)| (1..=9).contains(&size(z))));
        let mut seen = std::collections::HashSet::new();
        assert!(rows.iter().all(|(z, _)| seen.insert(z.clone())), "duplicate coalitions");
        // Kernel weights of a full enumeration sum to (d−1)·Σ 1/(s(d−s)) over sizes.
        let all: f64 = enumerate_all(6).iter().map(|(_, w)| w).sum();
        let want: f64 = (1..6).map(|s| 5.0 / (s * (6 - s)) as f64).sum();
        assert!((all - want).abs() < 1e-12);
        let mut combos = Vec::new();
        for_each_combination(4, 2, |c| combos.push(c.to_vec()));
        assert_eq!(combos, vec![vec![0, 1], vec![0, 2], vec![0, 3], vec![1, 2], vec![1, 3], vec![2, 3]]);
    }

    #[test]
    fn edge_cases_and_bad_config() {
        let mut predict = |m: &[Vec<bool>]| -> anyhow::Result<Vec<f32>> {
            Ok(m.iter().map(|k| if k[1] { 0.9 } else { 0.4 }).collect())
        };
        let e = kernel_shap(&[false, true, false], &mut predict, &Progress::none(), &Default::default()).unwrap();
        assert!((e.scores[1] - 0.5).abs() < 1e-6 && e.scores[0] == 0.0 && e.forward_passes == 2);
        let bad = KernelShapConfig { exact_max: 30, ..Default::default() };
        assert!(kernel_shap(&[true; 3], &mut predict, &Progress::none(), &bad).is_err());
        let few = KernelShapConfig { samples: Some(3), ..Default::default() };
        let err = kernel_shap(&[true; 16], &mut predict, &Progress::none(), &few).unwrap_err();
        assert!(err.to_string().contains("at least 16"), "{err}");
    }

    #[test]
    fn cancel_inside_first_batch_stops_before_the_second() {
        let token = CancelToken::new();
        let progress = Progress::new(token.clone(), None);
        let mut batches = 0;
        let mut predict = |m: &[Vec<bool>]| -> anyhow::Result<Vec<f32>> {
            batches += 1;
            token.cancel();
            Ok(vec![0.5; m.len()])
        };
        let err = kernel_shap(&[true; 16], &mut predict, &progress, &Default::default()).unwrap_err();
        assert!(is_cancelled(&err));
        assert!(batches <= 2, "ran {batches} batches after cancel");
    }
}

super::masking::perturbation_method!(KernelShap, KernelShapConfig, "kernel_shap", kernel_shap);
