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
        let m = a.mean_heads(l);
        let mut hat = vec![0f64; n * n];
        for i in 0..n {
            let mut sum = 0.0;
            for j in 0..n {
                let v = 0.5 * m[i * n + j] as f64 + if i == j { 0.5 } else { 0.0 };
                hat[i * n + j] = v;
                sum += v;
            }
            if sum > 0.0 {
                hat[i * n..(i + 1) * n].iter_mut().for_each(|v| *v /= sum);
            }
        }
        r = matmul(&hat, &r, n);
    }
    r
}

pub(crate) fn identity(n: usize) -> Vec<f64> {
    let mut m = vec![0f64; n * n];
    (0..n).for_each(|i| m[i * n + i] = 1.0);
    m
}

pub(crate) fn matmul(a: &[f64], b: &[f64], n: usize) -> Vec<f64> {
    let mut out = vec![0f64; n * n];
    for i in 0..n {
        for k in 0..n {
            let aik = a[i * n + k];
            if aik == 0.0 {
                continue;
            }
            for j in 0..n {
                out[i * n + j] += aik * b[k * n + j];
            }
        }
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
    fn explain(&self, input: &ExplainInput, _progress: &Progress) -> anyhow::Result<Explanation> {
        let a = &input.forward.attentions;
        let r = rollout_matrix(a);
        Ok(Explanation { scores: r[..a.len].iter().map(|&v| v as f32).collect(), forward_passes: 0, notes: vec![] })
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
