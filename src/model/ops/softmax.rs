//! Softmax over the last dimension, of `scale · x`, with an analytic backward:
//! `dx = scale · y ⊙ (g − Σ g⊙y)` per row, one pass instead of candle's five
//! ops (six with the attention scaling folded in).

use super::gelu::{exp, has_avx2};
use super::{for_rows, slice, with_values};
use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};

struct SoftmaxLastDim {
    scale: f32,
}

/// Softmax of an f32 tensor over its last dimension.
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    scaled_softmax_last_dim(x, 1.0)
}

/// `softmax(scale · x)` over the last dimension (attention scores).
pub fn scaled_softmax_last_dim(x: &Tensor, scale: f32) -> Result<Tensor> {
    x.contiguous()?.apply_op1(SoftmaxLastDim { scale })
}

#[inline(always)]
fn forward_body(x: &[f32], y: &mut [f32], scale: f32) {
    let m = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    for (o, &v) in y.iter_mut().zip(x) {
        *o = exp((v - m) * scale);
    }
    let inv = 1.0 / y.iter().sum::<f32>();
    y.iter_mut().for_each(|o| *o *= inv);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn forward_avx2(x: &[f32], y: &mut [f32], scale: f32) {
    forward_body(x, y, scale)
}

fn forward_row(x: &[f32], y: &mut [f32], scale: f32) {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: the CPU supports the features the function was compiled for.
        return unsafe { forward_avx2(x, y, scale) };
    }
    forward_body(x, y, scale)
}

impl CustomOp1 for SoftmaxLastDim {
    fn name(&self) -> &'static str {
        "expnet-softmax-last-dim"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = slice(s, l)?;
        let n = l.dims().last().copied().unwrap_or(1).max(1);
        let mut y = vec![0f32; x.len()];
        if self.scale <= 0.0 {
            candle_core::bail!("softmax: scale must be positive (got {})", self.scale);
        }
        let scale = self.scale;
        for_rows(&mut y, n, |i, row| forward_row(&x[i * n..(i + 1) * n], row, scale));
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    fn bwd(&self, _arg: &Tensor, res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let n = res.dims().last().copied().unwrap_or(1).max(1);
        let scale = self.scale;
        let dx = with_values(res, |y| {
            with_values(grad, |g| {
                let mut dx = vec![0f32; y.len()];
                for_rows(&mut dx, n, |i, row| {
                    let (y, g) = (&y[i * n..(i + 1) * n], &g[i * n..(i + 1) * n]);
                    let dot: f32 = y.iter().zip(g).map(|(a, b)| a * b).sum();
                    for ((o, &yv), &gv) in row.iter_mut().zip(y).zip(g) {
                        *o = scale * yv * (gv - dot);
                    }
                });
                Ok(dx)
            })
        })?;
        Ok(Some(Tensor::from_vec(dx, res.shape(), res.device())?))
    }
}
