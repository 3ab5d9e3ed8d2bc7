//! Single-row vector kernels: dot product, `y += a·x`, tanh. The matrix-vector
//! loops of one-row work (decision features, one row's backward, a distilled
//! student's logit lens) run on them, and the crate targets baseline x86-64,
//! so each body is compiled a second time with AVX2 + FMA enabled and chosen
//! at run time. Rust never contracts `a·b + c` into a fused multiply-add, so
//! both builds give the same bits; only the vector width differs.

use super::gelu::{exp, has_avx2};

#[inline(always)]
fn dot_body(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    let (ac, bc) = (a.chunks_exact(16), b.chunks_exact(16));
    let tail: f32 = ac.remainder().iter().zip(bc.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ac.zip(bc) {
        for i in 0..16 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    dot_body(a, b)
}

/// `Σ a_i·b_i` over the shorter length, in 16 independent partial sums so
/// the compiler keeps them in vector registers (a plain `zip().sum()` is one
/// sequential chain: float addition may not be reordered).
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: the CPU supports the features the function was compiled for.
        return unsafe { dot_avx2(a, b) };
    }
    dot_body(a, b)
}

#[inline(always)]
fn axpy_body(y: &mut [f32], a: f32, x: &[f32]) {
    y.iter_mut().zip(x).for_each(|(v, xv)| *v += a * xv);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn axpy_avx2(y: &mut [f32], a: f32, x: &[f32]) {
    axpy_body(y, a, x)
}

/// `y_i += a·x_i` over the shorter length.
pub fn axpy(y: &mut [f32], a: f32, x: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: the CPU supports the features the function was compiled for.
        return unsafe { axpy_avx2(y, a, x) };
    }
    axpy_body(y, a, x)
}

/// tanh to about 1e-7 relative: an odd Taylor polynomial below |x| = 0.5
/// (the next term is under 1e-9 of the value there), `(1 − e^{−2|x|}) /
/// (1 + e^{−2|x|})` above it, where the subtraction loses under a bit; both
/// branches are plain arithmetic, so the loop compiles to a select of two
/// vectors. libm's scalar `tanhf` was a fifth of a distilled student's cost
/// (the pooler's tanh on every token of three layers).
#[inline(always)]
fn tanh_one(x: f32) -> f32 {
    let a = x.abs();
    let z = a * a;
    // Coefficients of x^1, x^3, …, x^17 in the Taylor series of tanh.
    let mut p = 0.000_590_027_4_f32;
    for c in [-0.001_455_834_4, 0.003_592_128, -0.008_863_236, 0.021_869_488, -0.053_968_254, 0.133_333_33, -0.333_333_34, 1.0] {
        p = p * z + c;
    }
    let small = a * p;
    let e = exp(-2.0 * a);
    let large = (1.0 - e) / (1.0 + e);
    let t = if a < 0.5 { small } else { large };
    // NaN stays NaN (both branches are NaN); the sign comes back from x.
    f32::from_bits(t.to_bits() | (x.to_bits() & 0x8000_0000))
}

#[inline(always)]
fn tanh_body(v: &mut [f32]) {
    v.iter_mut().for_each(|x| *x = tanh_one(*x));
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn tanh_avx2(v: &mut [f32]) {
    tanh_body(v)
}

/// tanh of every value in place (see [`tanh_one`] for the accuracy).
pub fn tanh_in_place(v: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: the CPU supports the features the function was compiled for.
        return unsafe { tanh_avx2(v) };
    }
    tanh_body(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tanh_matches_libm_within_its_stated_accuracy() {
        let mut xs: Vec<f32> = (-4000..=4000).map(|i| i as f32 * 0.0025).collect();
        xs.extend([1e-30, -1e-30, 1e-6, 0.499_999_97, 0.5, 0.500_000_06, 9.0, 20.0, -50.0, 1e30, -1e30, f32::INFINITY, f32::NEG_INFINITY, 0.0, -0.0]);
        let mut got = xs.clone();
        tanh_in_place(&mut got);
        let mut portable = xs.clone();
        tanh_body(&mut portable);
        for ((&x, &g), &p) in xs.iter().zip(&got).zip(&portable) {
            let want = (x as f64).tanh();
            let err = (g as f64 - want).abs();
            assert!(err <= 1.5e-7 * want.abs().max(1e-30) + 1e-37, "tanh({x}) = {g}, want {want}");
            assert_eq!(g.to_bits(), p.to_bits(), "vector and portable builds differ at {x}");
        }
        assert_eq!(got[xs.len() - 1].to_bits(), (-0.0f32).to_bits(), "the sign of −0 is kept");
        let mut nan = [f32::NAN];
        tanh_in_place(&mut nan);
        assert!(nan[0].is_nan());
    }

    #[test]
    fn axpy_and_dot_agree_with_plain_loops() {
        let x: Vec<f32> = (0..103).map(|i| ((i * 37) % 11) as f32 * 0.25 - 1.0).collect();
        let mut y: Vec<f32> = (0..103).map(|i| i as f32 * 0.5).collect();
        let want: Vec<f32> = y.iter().zip(&x).map(|(v, xv)| v + 1.5 * xv).collect();
        axpy(&mut y, 1.5, &x);
        assert_eq!(y, want);
        let mut short = vec![0f32; 5];
        axpy(&mut short, 2.0, &x);
        assert_eq!(short, x[..5].iter().map(|v| 2.0 * v).collect::<Vec<_>>());
        assert_eq!(dot(&x, &y).to_bits(), dot_body(&x, &y).to_bits());
    }
}
