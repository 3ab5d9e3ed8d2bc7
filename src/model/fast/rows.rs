//! Row-wise kernels of the hand-written forward: activations, layer norm and
//! the masked, scaled softmax, each one pass over a row compiled for AVX2+FMA
//! when the CPU has it (the crate itself targets baseline x86-64).

use super::linear::{Out, parallel, tasks};
use crate::model::config::Activation;
use crate::model::ops::gelu::{exp, gelu_erf_in_place, has_avx2};

/// The activation in place (exact GELU through the vectorised erf, like the
/// fused candle path; tanh GELU as candle computes it; ReLU).
pub(super) fn activate(v: &mut [f32], a: Activation) {
    match a {
        Activation::Gelu => gelu_erf_in_place(v),
        Activation::GeluTanh => {
            const C: f32 = 0.797_884_6; // √(2/π)
            v.iter_mut().for_each(|x| *x = 0.5 * *x * (1.0 + f32::tanh(C * *x * (1.0 + 0.044715 * *x * *x))));
        }
        Activation::Relu => v.iter_mut().for_each(|x| *x = x.max(0.0)),
    }
}

#[inline(always)]
fn norm_body(x: &mut [f32], w: &[f32], b: &[f32], eps: f32) {
    let n = x.len() as f32;
    let mean = x.iter().sum::<f32>() / n;
    let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
    let r = 1.0 / (var + eps).sqrt();
    for ((v, &wv), &bv) in x.iter_mut().zip(w).zip(b) {
        *v = (*v - mean) * r * wv + bv;
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn norm_avx2(x: &mut [f32], w: &[f32], b: &[f32], eps: f32) {
    norm_body(x, w, b, eps)
}

/// Layer norm of one row in place (two-pass statistics, as `ops::norm`).
fn norm_row(x: &mut [f32], w: &[f32], b: &[f32], eps: f32) {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: the CPU supports the features the function was compiled for.
        return unsafe { norm_avx2(x, w, b, eps) };
    }
    norm_body(x, w, b, eps)
}

/// Layer norm of every `w.len()`-wide row of `x`, in place.
pub(super) fn layer_norm(x: &mut [f32], w: &[f32], b: &[f32], eps: f32) {
    let n = w.len();
    assert!(b.len() == n && n > 0 && x.len() % n == 0, "layer norm: shapes disagree");
    let m = x.len() / n;
    // ~8 flops per value; rows are cut into two-thread chunks only when large.
    let par = parallel(8 * x.len());
    let chunks = if par { rayon::current_num_threads() * 4 } else { 1 }.min(m);
    let out = Out(x.as_mut_ptr());
    tasks(chunks, par, |c| {
        let (r0, r1) = (m * c / chunks, m * (c + 1) / chunks);
        // SAFETY: chunks are disjoint row ranges of `x`.
        let part = unsafe { std::slice::from_raw_parts_mut(out.at(r0 * n), (r1 - r0) * n) };
        part.chunks_mut(n).for_each(|row| norm_row(row, w, b, eps));
    });
}

#[inline(always)]
fn softmax_body(row: &mut [f32], scale: f32, mask: Option<&[f32]>) {
    if scale != 1.0 {
        row.iter_mut().for_each(|v| *v *= scale);
    }
    if let Some(m) = mask {
        row.iter_mut().zip(m).for_each(|(v, a)| *v += a);
    }
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    row.iter_mut().for_each(|v| *v = exp(*v - max));
    let inv = 1.0 / row.iter().sum::<f32>();
    row.iter_mut().for_each(|v| *v *= inv);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn softmax_avx2(row: &mut [f32], scale: f32, mask: Option<&[f32]>) {
    softmax_body(row, scale, mask)
}

/// `softmax(scale · row + mask)` in place; `mask` is additive (0 or −1e9).
pub(super) fn softmax_row(row: &mut [f32], scale: f32, mask: Option<&[f32]>) {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: as above.
        return unsafe { softmax_avx2(row, scale, mask) };
    }
    softmax_body(row, scale, mask)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_row_matches_the_definition_and_masks() {
        let mut row = vec![0.5f32, -1.0, 2.0, 0.0];
        let mask = [0.0f32, 0.0, -1e9, 0.0];
        softmax_row(&mut row, 2.0, Some(&mask));
        let e: Vec<f64> = [1.0f64, -2.0, f64::NEG_INFINITY, 0.0].iter().map(|v| v.exp()).collect();
        let s: f64 = e.iter().sum();
        for (got, want) in row.iter().zip(e.iter().map(|v| v / s)) {
            assert!((*got as f64 - want).abs() < 1e-6, "{got} vs {want}");
        }
        assert!(row[2] < 1e-30, "masked key kept {}", row[2]);
    }

    #[test]
    fn layer_norm_rows_have_zero_mean_unit_variance_before_gain() {
        let mut x: Vec<f32> = (0..24).map(|i| (i as f32 * 0.7).sin() * 3.0 + 1.0).collect();
        let (w, b) = (vec![1.0f32; 8], vec![0.0f32; 8]);
        layer_norm(&mut x, &w, &b, 1e-12);
        for row in x.chunks(8) {
            let mean: f32 = row.iter().sum::<f32>() / 8.0;
            let var: f32 = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / 8.0;
            assert!(mean.abs() < 1e-5 && (var - 1.0).abs() < 1e-4, "mean {mean} var {var}");
        }
    }
}
