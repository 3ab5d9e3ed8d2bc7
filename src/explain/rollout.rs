//! Attention rollout (Abnar & Zuidema 2020): attention is mixed with the
//! residual stream (`0.5·mean_h A + 0.5·I`, rows renormalised) and multiplied
//! through the layers, so a token's score reflects every path from it to the
//! top [CLS] position rather than one layer's view.

use super::{Attribution, ExplainInput, Explanation, Family, Progress};
use crate::model::Attentions;

/// Rollout matrix `Â_L … Â_1` (row-major `len × len`); row 0 is the [CLS] row.
pub fn rollout_matrix(a: &Attentions) -> Vec<f64> {
    let n = a.len;
    let mut r = identity(n);
    for l in 0..a.layers {
        r = matmul(&mixed(a, l, n), &r, n);
    }
    r
}

/// Row 0 of [`rollout_matrix`] as a chain of vector–matrix products from
/// the top, `((e₀ᵀ·Â_L)·Â_{L−1})⋯Â_1`: `O(L·n²)` instead of `O(L·n³)`, and
/// only the first row of the last layer is read. Equal to the matrix's row 0
/// up to f64 rounding (products associated differently).
pub fn rollout_first_row(a: &Attentions) -> Vec<f64> {
    let n = a.len;
    if a.layers == 0 {
        return identity(n)[..n].to_vec();
    }
    let top = mixed_row(&a.mean_heads(a.layers - 1)[..n], 0);
    (0..a.layers - 1).rev().fold(top, |r, l| row_times(&r, &mixed(a, l, n), n))
}

/// `rᵀ·m` for a row vector `r` (`n`) and a row-major `n × n` matrix: one
/// step of a rollout's [CLS] row taken from the top down.
pub(crate) fn row_times(r: &[f64], m: &[f64], n: usize) -> Vec<f64> {
    let mut out = vec![0f64; n];
    for (k, &rk) in r.iter().enumerate() {
        if rk != 0.0 {
            out.iter_mut().zip(&m[k * n..(k + 1) * n]).for_each(|(o, v)| *o += rk * v);
        }
    }
    out
}

/// `Â_l = 0.5·mean_h A_l + 0.5·I`, rows renormalised.
fn mixed(a: &Attentions, l: usize, n: usize) -> Vec<f64> {
    let m = a.mean_heads(l);
    (0..n).flat_map(|i| mixed_row(&m[i * n..(i + 1) * n], i)).collect()
}

/// Row `i` of [`mixed`] from row `i` of the head mean.
fn mixed_row(m: &[f32], i: usize) -> Vec<f64> {
    let mut row: Vec<f64> = m.iter().enumerate().map(|(j, &v)| 0.5 * v as f64 + if i == j { 0.5 } else { 0.0 }).collect();
    let sum: f64 = row.iter().sum();
    if sum > 0.0 {
        row.iter_mut().for_each(|v| *v /= sum);
    }
    row
}

pub(crate) fn identity(n: usize) -> Vec<f64> {
    let mut m = vec![0f64; n * n];
    (0..n).for_each(|i| m[i * n + i] = 1.0);
    m
}

/// `a · b` for row-major `n × n` f64 matrices, on gemm (the calling thread):
/// the ALTI / GlobEnc rollouts of the transfer ExpNet's features multiply one
/// `n × n` matrix per layer, which a scalar triple loop made a large part of
/// that ExpNet's cost at 128 tokens.
pub(crate) fn matmul(a: &[f64], b: &[f64], n: usize) -> Vec<f64> {
    assert!(a.len() == n * n && b.len() == n * n, "matmul: shapes disagree");
    let mut out = vec![0f64; n * n];
    if n == 0 {
        return out;
    }
    let s = n as isize;
    // SAFETY: all three buffers hold n × n values, read and written row-major
    // (column stride 1, row stride n).
    unsafe {
        gemm::gemm(
            n, n, n, out.as_mut_ptr(), 1, s, false, a.as_ptr(), 1, s, b.as_ptr(), 1, s, 0.0, 1.0, false, false, false,
            gemm::Parallelism::None,
        )
    }
    out
}

/// Rollout, [CLS] row.
#[derive(Clone, Debug, Default)]
pub struct Rollout;

impl Attribution for Rollout {
    fn name(&self) -> &'static str {
        "rollout"
    }
    fn family(&self) -> Family {
        Family::Attention
    }
    fn needs_classifier(&self) -> bool {
        false
    }
    fn reads_first_query_of_last_layer_only(&self) -> bool {
        // Row 0 of Â_L·(Â_{L−1}⋯Â_1) reads row 0 of Â_L alone.
        true
    }
    fn explain(&self, input: &ExplainInput, _progress: &Progress) -> anyhow::Result<Explanation> {
        let a = &input.forward.attentions;
        let r = rollout_first_row(a);
        Ok(Explanation { scores: r.iter().map(|&v| v as f32).collect(), forward_passes: 0, notes: vec![] })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn random_attentions(layers: usize, heads: usize, n: usize, seed: u64) -> Attentions {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut data = Vec::new();
        for _ in 0..layers * heads * n {
            let row: Vec<f32> = (0..n).map(|_| rng.gen_range(0.01f32..1.0)).collect();
            let s: f32 = row.iter().sum();
            data.extend(row.iter().map(|v| v / s));
        }
        Attentions::new(layers, heads, n, data).unwrap()
    }

    #[test]
    fn rollout_rows_sum_to_one() {
        for seed in 0..20 {
            let a = random_attentions(1 + seed as usize % 4, 3, 2 + seed as usize % 9, seed);
            let r = rollout_matrix(&a);
            for row in r.chunks(a.len) {
                assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-9, "row sums to {}", row.iter().sum::<f64>());
                assert!(row.iter().all(|&v| v >= 0.0));
            }
        }
    }

    #[test]
    fn the_first_row_is_row_zero_of_the_matrix_and_reads_no_other_top_row() {
        for seed in 0..20 {
            let (layers, n) = (1 + seed as usize % 4, 1 + seed as usize % 9);
            let mut a = random_attentions(layers, 3, n, seed);
            let want = rollout_matrix(&a)[..n].to_vec();
            let close = |got: Vec<f64>| got.len() == n && got.iter().zip(&want).all(|(x, y)| (x - y).abs() <= 1e-14);
            assert!(close(rollout_first_row(&a)), "seed {seed}");
            // What the first-query forward leaves in the last layer.
            for h in 0..a.heads {
                let base = ((layers - 1) * a.heads + h) * n * n;
                a.data[base + n..base + n * n].iter_mut().for_each(|v| *v = f32::NAN);
            }
            assert!(close(rollout_first_row(&a)), "seed {seed}");
        }
    }

    #[test]
    fn one_layer_rollout_is_residual_average() {
        // Single head: Â = 0.5 A + 0.5 I already has unit rows.
        let a = Attentions::new(1, 1, 2, vec![0.25, 0.75, 0.5, 0.5]).unwrap();
        let r = rollout_matrix(&a);
        let want = [0.625, 0.375, 0.25, 0.75];
        for (x, y) in r.iter().zip(want) {
            assert!((x - y).abs() < 1e-12);
        }
    }
}
