//! Exact (erf) GELU with an analytic backward, on a vectorisable erf.
//!
//! candle's `gelu_erf` calls a scalar f64 `erf` per element (5% of a forward
//! pass in the profile) and its backward is several more ops. Here
//! `Φ(x) = ½(1 + erf(x/√2))` uses Abramowitz & Stegun 7.1.26 (|error| ≤ 1.5e-7,
//! the approximation PyTorch's vectorised `erf` uses too) with a polynomial
//! `exp`, so the loop compiles to SIMD; the `exp(−x²/2)` it needs is also the
//! Gaussian density of the backward `Φ(x) + x·φ(x)`.

use super::{for_rows, slice, with_values};
use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};

struct GeluErf;

/// `x · Φ(x)` element-wise (transformers' `gelu`, not the tanh approximation).
pub fn gelu_erf(x: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op1(GeluErf)
}

/// `e^x` to about 2 ulp for `x` in f32's range, in plain arithmetic that
/// vectorises (Cephes `expf`: range reduction by ln 2, degree-6 polynomial).
#[inline(always)]
pub(crate) fn exp(input: f32) -> f32 {
    // NaN → −87 here (`max` returns the number), and back to NaN at the end.
    let x = input.max(-87.0).min(88.0);
    // Round x·log2(e) to nearest without a `round` call (1.5·2²³ trick).
    const SHIFT: f32 = 12_582_912.0;
    let n = (x * std::f32::consts::LOG2_E + SHIFT) - SHIFT;
    let r = x - n * 0.693_359_4 - n * -2.121_944_4e-4;
    let p = 1.987_569_1e-4;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 0.5;
    let e = p * r * r + r + 1.0;
    // `as i32` saturates (NaN → 0), which LLVM cannot vectorise: every lane
    // went through a scalar convert. After the clamp `n` is an integer in
    // [−126, 127], where the unchecked conversion is exact.
    // SAFETY: `x` is finite, so `n` is an integer within i32's range (see above).
    let n = unsafe { n.to_int_unchecked::<i32>() };
    let y = e * f32::from_bits(((n + 127) as u32) << 23);
    // Below −87 the result is 0, not the clamp's e^−87 ≈ 1.6e-38: that value
    // divided by a softmax sum is subnormal, and subnormals flowing into the
    // matmuls of a backward pass made padded training batches 9× slower.
    if input.is_nan() { input } else if input < -87.0 { 0.0 } else { y }
}

/// (Φ(x), φ(x)): normal CDF and density.
#[inline(always)]
fn cdf_pdf(x: f32) -> (f32, f32) {
    const P: f32 = 0.327_591_1;
    const A: [f32; 5] = [0.254_829_6, -0.284_496_74, 1.421_413_8, -1.453_152, 1.061_405_4];
    let z = x.abs() * std::f32::consts::FRAC_1_SQRT_2;
    let t = 1.0 / (1.0 + P * z);
    let poly = t * (A[0] + t * (A[1] + t * (A[2] + t * (A[3] + t * A[4]))));
    let g = exp(-0.5 * x * x); // = exp(-z²)
    let tail = 0.5 * poly * g; // ½·erfc(|x|/√2)
    let cdf = if x < 0.0 { tail } else { 1.0 - tail };
    (cdf, g * 0.398_942_3) // 1/√(2π)
}

#[inline(always)]
fn forward_body(x: &[f32], y: &mut [f32]) {
    for (o, &v) in y.iter_mut().zip(x) {
        *o = v * cdf_pdf(v).0;
    }
}

#[inline(always)]
fn backward_body(x: &[f32], g: &[f32], dx: &mut [f32]) {
    for ((o, &v), &gv) in dx.iter_mut().zip(x).zip(g) {
        let (c, p) = cdf_pdf(v);
        *o = gv * (c + v * p);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn forward_avx2(x: &[f32], y: &mut [f32]) {
    forward_body(x, y)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn backward_avx2(x: &[f32], g: &[f32], dx: &mut [f32]) {
    backward_body(x, g, dx)
}

pub(crate) fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

fn forward_chunk(x: &[f32], y: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: the CPU supports the features the function was compiled for.
        return unsafe { forward_avx2(x, y) };
    }
    forward_body(x, y)
}

fn backward_chunk(x: &[f32], g: &[f32], dx: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: as above.
        return unsafe { backward_avx2(x, g, dx) };
    }
    backward_body(x, g, dx)
}

#[inline(always)]
fn backward_in_place_body(x: &[f32], g: &mut [f32]) {
    for (gv, &v) in g.iter_mut().zip(x) {
        let (c, p) = cdf_pdf(v);
        *gv *= c + v * p;
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn backward_in_place_avx2(x: &[f32], g: &mut [f32]) {
    backward_in_place_body(x, g)
}

/// `g ← g · (Φ(x) + x·φ(x))`: the exact GELU's backward in place, on the
/// calling thread (the hand-written backward).
pub(crate) fn gelu_erf_backward_in_place(x: &[f32], g: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: the CPU supports the features the function was compiled for.
        return unsafe { backward_in_place_avx2(x, g) };
    }
    backward_in_place_body(x, g)
}

#[inline(always)]
fn in_place_body(v: &mut [f32]) {
    for o in v.iter_mut() {
        *o *= cdf_pdf(*o).0;
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn in_place_avx2(v: &mut [f32]) {
    in_place_body(v)
}

/// `x · Φ(x)` in place, on the calling thread (the hand-written forward's epilogue).
pub(crate) fn gelu_erf_in_place(v: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: the CPU supports the features the function was compiled for.
        return unsafe { in_place_avx2(v) };
    }
    in_place_body(v)
}

/// Chunk size for splitting element-wise work across threads.
const CHUNK: usize = 16 * 1024;

impl CustomOp1 for GeluErf {
    fn name(&self) -> &'static str {
        "expnet-gelu-erf"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = slice(s, l)?;
        let mut y = vec![0f32; x.len()];
        for_rows(&mut y, CHUNK, |i, out| forward_chunk(&x[i * CHUNK..i * CHUNK + out.len()], out));
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let dx = with_values(arg, |x| {
            with_values(grad, |g| {
                let mut dx = vec![0f32; x.len()];
                for_rows(&mut dx, CHUNK, |i, out| {
                    let r = i * CHUNK..i * CHUNK + out.len();
                    backward_chunk(&x[r.clone()], &g[r], out)
                });
                Ok(dx)
            })
        })?;
        Ok(Some(Tensor::from_vec(dx, arg.shape(), arg.device())?))
    }
}
