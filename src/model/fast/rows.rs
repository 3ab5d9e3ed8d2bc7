//! Row-wise kernels of the hand-written forward: activations, layer norm and
//! the masked, scaled softmax, each one pass over a row compiled for AVX2+FMA
//! when the CPU has it (the crate itself targets baseline x86-64).

use super::linear::{Out, parallel, tasks};
use crate::model::config::Activation;
use crate::model::ops::gelu::{exp, gelu_erf_backward_in_place, gelu_erf_in_place, has_avx2};

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

/// Runs `f(r0, part)` over disjoint runs of whole `n`-wide rows of `out`
/// (`part` starts at row `r0`), on the pool when `flops` make it worth it.
fn for_row_chunks(out: &mut [f32], n: usize, flops: usize, f: impl Fn(usize, &mut [f32]) + Sync + Send) {
    let m = out.len() / n;
    let par = parallel(flops);
    let chunks = if par { rayon::current_num_threads() * 4 } else { 1 }.min(m);
    let ptr = Out(out.as_mut_ptr());
    tasks(chunks, par, |c| {
        let (r0, r1) = (m * c / chunks, m * (c + 1) / chunks);
        // SAFETY: chunks are disjoint row ranges of `out`.
        f(r0, unsafe { std::slice::from_raw_parts_mut(ptr.at(r0 * n), (r1 - r0) * n) });
    });
}

/// Layer norm of every `w.len()`-wide row of `x`, in place.
pub(super) fn layer_norm(x: &mut [f32], w: &[f32], b: &[f32], eps: f32) {
    let n = w.len();
    assert!(b.len() == n && n > 0 && x.len() % n == 0, "layer norm: shapes disagree");
    // ~8 flops per value; rows are cut into two-thread chunks only when large.
    let flops = 8 * x.len();
    for_row_chunks(x, n, flops, |_, part| part.chunks_mut(n).for_each(|row| norm_row(row, w, b, eps)));
}

#[inline(always)]
fn norm_back_body(x: &[f32], w: &[f32], eps: f32, dy: &[f32], dx: &mut [f32]) {
    let n = x.len() as f32;
    let mean = x.iter().sum::<f32>() / n;
    let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
    let r = 1.0 / (var + eps).sqrt();
    // dx = r·(ĝ − mean(ĝ) − x̂·mean(ĝ·x̂)) with ĝ = dy·w, x̂ = (x − mean)·r.
    let (mut sg, mut sgx) = (0f32, 0f32);
    for ((&xv, &wv), &g) in x.iter().zip(w).zip(dy) {
        let gh = g * wv;
        sg += gh;
        sgx += gh * (xv - mean) * r;
    }
    let (mg, mgx) = (sg / n, sgx / n);
    for (((o, &xv), &wv), &g) in dx.iter_mut().zip(x).zip(w).zip(dy) {
        *o = r * (g * wv - mg - (xv - mean) * r * mgx);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn norm_back_avx2(x: &[f32], w: &[f32], eps: f32, dy: &[f32], dx: &mut [f32]) {
    norm_back_body(x, w, eps, dy, dx)
}

/// The layer norm's input gradient, row by row: `x` is the norm's input
/// (`[m, n]`), `dy` the gradient of its output; `dx` is overwritten.
pub(super) fn layer_norm_back(x: &[f32], w: &[f32], eps: f32, dy: &[f32], dx: &mut [f32]) {
    let n = w.len();
    assert!(n > 0 && x.len() % n == 0 && dy.len() == x.len() && dx.len() == x.len(), "layer norm backward: shapes disagree");
    for_row_chunks(dx, n, 12 * x.len(), |r0, part| {
        for (i, o) in part.chunks_mut(n).enumerate() {
            let (xr, gr) = (&x[(r0 + i) * n..(r0 + i + 1) * n], &dy[(r0 + i) * n..(r0 + i + 1) * n]);
            #[cfg(target_arch = "x86_64")]
            if has_avx2() {
                // SAFETY: the CPU supports the features the function was compiled for.
                unsafe { norm_back_avx2(xr, w, eps, gr, o) };
                continue;
            }
            norm_back_body(xr, w, eps, gr, o);
        }
    });
}

/// The layer norm's weight and bias gradients (training), summed over the
/// rows: `dw = Σ dy ⊙ x̂`, `db = Σ dy`, with `x` the norm's input (both overwritten).
pub(super) fn layer_norm_param_grads(x: &[f32], eps: f32, dy: &[f32], dw: &mut [f32], db: &mut [f32]) {
    let n = dw.len();
    assert!(n > 0 && db.len() == n && x.len() % n == 0 && dy.len() == x.len(), "layer norm parameter gradients: shapes disagree");
    dw.fill(0.0);
    db.fill(0.0);
    for (xr, gr) in x.chunks(n).zip(dy.chunks(n)) {
        let mean = xr.iter().sum::<f32>() / n as f32;
        let var = xr.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n as f32;
        let r = 1.0 / (var + eps).sqrt();
        for (((w, b), &xv), &g) in dw.iter_mut().zip(db.iter_mut()).zip(xr).zip(gr) {
            *w += g * (xv - mean) * r;
            *b += g;
        }
    }
}

/// `g ← g · act'(pre)` in place: the activation's backward, given its input.
pub(super) fn activate_back(pre: &[f32], g: &mut [f32], a: Activation) {
    assert_eq!(pre.len(), g.len(), "activation backward: shapes disagree");
    match a {
        Activation::Gelu => {
            let flops = 40 * g.len();
            for_row_chunks(g, 1, flops, |a0, part| gelu_erf_backward_in_place(&pre[a0..a0 + part.len()], part));
        }
        Activation::GeluTanh => {
            const C: f32 = 0.797_884_6; // √(2/π)
            for (gv, &x) in g.iter_mut().zip(pre) {
                let t = f32::tanh(C * x * (1.0 + 0.044715 * x * x));
                *gv *= 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * C * (1.0 + 3.0 * 0.044715 * x * x);
            }
        }
        Activation::Relu => g.iter_mut().zip(pre).for_each(|(gv, &x)| {
            if x <= 0.0 {
                *gv = 0.0
            }
        }),
    }
}

#[inline(always)]
fn softmax_body(row: &mut [f32], scale: f32, mask: Option<&[f32]>) {
    // Max and sum over eight independent lanes: a single running fold is a
    // chain of dependent scalar ops (and `max` checks for NaN at each step),
    // which made this the third-largest cost of a short-text forward pass.
    const L: usize = 8;
    match mask {
        Some(m) => row.iter_mut().zip(m).for_each(|(v, a)| *v = *v * scale + a),
        None if scale != 1.0 => row.iter_mut().for_each(|v| *v *= scale),
        None => {}
    }
    let mut lanes = [f32::NEG_INFINITY; L];
    let mut chunks = row.chunks_exact(L);
    for c in &mut chunks {
        for i in 0..L {
            lanes[i] = lanes[i].max(c[i]);
        }
    }
    let max = lanes.iter().chain(chunks.remainder()).copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sums = [0f32; L];
    let mut chunks = row.chunks_exact_mut(L);
    for c in &mut chunks {
        for i in 0..L {
            c[i] = exp(c[i] - max);
            sums[i] += c[i];
        }
    }
    let mut sum = 0f32;
    for v in chunks.into_remainder() {
        *v = exp(*v - max);
        sum += *v;
    }
    let inv = 1.0 / (sum + sums.iter().sum::<f32>());
    row.iter_mut().for_each(|v| *v *= inv);
}

/// [`crate::model::ops::gelu::exp`] on eight lanes, operation for operation
/// (same clamps, same rounding trick, same polynomial, no fused multiply-add),
/// so it returns the same bits as the scalar function.
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn exp8(input: std::arch::x86_64::__m256) -> std::arch::x86_64::__m256 {
    use std::arch::x86_64::*;
    let c = _mm256_set1_ps;
    // max(x, −87) with x second: a NaN lane becomes −87, as in the scalar clamp.
    let x = _mm256_min_ps(_mm256_max_ps(c(-87.0), input), c(88.0));
    let shift = c(12_582_912.0);
    let n = _mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(x, c(std::f32::consts::LOG2_E)), shift), shift);
    let r = _mm256_sub_ps(_mm256_sub_ps(x, _mm256_mul_ps(n, c(0.693_359_4))), _mm256_mul_ps(n, c(-2.121_944_4e-4)));
    let mut p = c(1.987_569_1e-4);
    for k in [1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 1.666_666_5e-1, 0.5] {
        p = _mm256_add_ps(_mm256_mul_ps(p, r), c(k));
    }
    let e = _mm256_add_ps(_mm256_add_ps(_mm256_mul_ps(_mm256_mul_ps(p, r), r), r), c(1.0));
    let bits = _mm256_slli_epi32::<23>(_mm256_add_epi32(_mm256_cvttps_epi32(n), _mm256_set1_epi32(127)));
    let y = _mm256_mul_ps(e, _mm256_castsi256_ps(bits));
    let y = _mm256_blendv_ps(y, _mm256_setzero_ps(), _mm256_cmp_ps::<_CMP_LT_OQ>(input, c(-87.0)));
    _mm256_blendv_ps(y, input, _mm256_cmp_ps::<_CMP_UNORD_Q>(input, input))
}

/// [`softmax_body`] with explicit eight-lane vectors: LLVM left the exp loop
/// of the portable version scalar (`perf annotate`: `vmulss`/`vaddss` and a
/// branch per element), which made softmax 17% of a 128-token forward pass.
/// Lane `i` takes elements `i, i + 8, …` as there, so the results are equal.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn softmax_avx2(row: &mut [f32], scale: f32, mask: Option<&[f32]>) {
    use std::arch::x86_64::*;
    const L: usize = 8;
    match mask {
        Some(m) => row.iter_mut().zip(m).for_each(|(v, a)| *v = *v * scale + a),
        None if scale != 1.0 => row.iter_mut().for_each(|v| *v *= scale),
        None => {}
    }
    let full = row.len() / L * L;
    let ptr = row.as_mut_ptr();
    // SAFETY: every vector access below covers indices < `full` ≤ row.len().
    unsafe {
        let mut acc = _mm256_set1_ps(f32::NEG_INFINITY);
        for i in (0..full).step_by(L) {
            // A NaN element leaves the lane's maximum as it was (f32::max).
            acc = _mm256_max_ps(_mm256_loadu_ps(ptr.add(i)), acc);
        }
        let mut lanes = [0f32; L];
        _mm256_storeu_ps(lanes.as_mut_ptr(), acc);
        let max = lanes.iter().chain(&row[full..]).copied().fold(f32::NEG_INFINITY, f32::max);
        let (vmax, mut sums) = (_mm256_set1_ps(max), _mm256_setzero_ps());
        for i in (0..full).step_by(L) {
            let e = exp8(_mm256_sub_ps(_mm256_loadu_ps(ptr.add(i)), vmax));
            _mm256_storeu_ps(ptr.add(i), e);
            sums = _mm256_add_ps(sums, e);
        }
        _mm256_storeu_ps(lanes.as_mut_ptr(), sums);
        let mut sum = 0f32;
        for v in &mut row[full..] {
            *v = exp(*v - max);
            sum += *v;
        }
        let inv = 1.0 / (sum + lanes.iter().sum::<f32>());
        row.iter_mut().for_each(|v| *v *= inv);
    }
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
    fn vector_softmax_equals_the_portable_one_bit_for_bit() {
        if !has_avx2() {
            return;
        }
        for len in [1usize, 7, 8, 13, 64, 129] {
            let base: Vec<f32> = (0..len).map(|i| ((i * 37 % 23) as f32 - 11.0) * 0.9).collect();
            let mut mask = vec![0f32; len];
            mask.iter_mut().step_by(5).skip(1).for_each(|m| *m = -1e9);
            for (scale, m) in [(1.0, None), (0.125, None), (0.17, Some(&mask[..]))] {
                let (mut a, mut b) = (base.clone(), base.clone());
                softmax_body(&mut a, scale, m);
                // SAFETY: AVX2 checked above.
                unsafe { softmax_avx2(&mut b, scale, m) };
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&a), bits(&b), "len {len}");
            }
        }
        // The edge values of the scalar exp: NaN stays NaN, far below −87 is 0, +huge is finite.
        let mut v = vec![f32::NAN, -1e9, 1e9, 0.0, -87.5, 3.0, -3.0, 88.5];
        let want: Vec<f32> = v.iter().map(|x| exp(*x)).collect();
        // SAFETY: AVX2 checked above.
        unsafe {
            use std::arch::x86_64::*;
            _mm256_storeu_ps(v.as_mut_ptr(), exp8(_mm256_loadu_ps(v.as_ptr())));
        }
        assert!(v[0].is_nan());
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&v[1..]), bits(&want[1..]));
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
