//! Layer norm over the last dimension with an analytic backward.
//!
//! With `x̂ = (x − μ)·r`, `r = 1/√(σ² + ε)` and `gy = g ⊙ w`:
//! `dx = r·(gy − mean(gy) − x̂·mean(gy ⊙ x̂))`, `dw = Σ g ⊙ x̂`, `db = Σ g`
//! (sums over rows). The weight and bias gradients are only computed when
//! they are tracked (fine-tuning); explanations get `dx` alone.

use super::{for_rows, slice, with_values};
use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};

struct LayerNorm {
    eps: f32,
}

/// `(x − mean) / √(var + eps) · weight + bias` over the last dimension.
pub fn layer_norm(x: &Tensor, weight: &Tensor, bias: &Tensor, eps: f32) -> Result<Tensor> {
    x.contiguous()?.apply_op3(&weight.contiguous()?, &bias.contiguous()?, LayerNorm { eps })
}

/// (mean, 1/std) of one row, two-pass for accuracy.
#[inline]
fn stats(x: &[f32], eps: f32) -> (f32, f32) {
    let n = x.len() as f32;
    let mean = x.iter().sum::<f32>() / n;
    let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
    (mean, 1.0 / (var + eps).sqrt())
}

impl CustomOp3 for LayerNorm {
    fn name(&self) -> &'static str {
        "expnet-layer-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (x, w, b) = (slice(s1, l1)?, slice(s2, l2)?, slice(s3, l3)?);
        let n = l1.dims().last().copied().unwrap_or(1).max(1);
        if w.len() != n || b.len() != n {
            candle_core::bail!("layer norm: weight/bias have {}/{} values for rows of {n}", w.len(), b.len());
        }
        let mut y = vec![0f32; x.len()];
        let eps = self.eps;
        for_rows(&mut y, n, |i, row| {
            let x = &x[i * n..(i + 1) * n];
            let (mean, r) = stats(x, eps);
            for (((o, &xv), &wv), &bv) in row.iter_mut().zip(x).zip(w).zip(b) {
                *o = (xv - mean) * r * wv + bv;
            }
        });
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let n = x.dims().last().copied().unwrap_or(1).max(1);
        let eps = self.eps;
        let (want_w, want_b) = (w.track_op(), b.track_op());
        let (dx, dw, db) = with_values(x, |xs| {
            with_values(w, |ws| {
                with_values(grad, |gs| {
                    let mut dx = vec![0f32; xs.len()];
                    for_rows(&mut dx, n, |i, row| {
                        let (x, g) = (&xs[i * n..(i + 1) * n], &gs[i * n..(i + 1) * n]);
                        let (mean, r) = stats(x, eps);
                        let (mut m_gy, mut m_gyx) = (0f32, 0f32);
                        for ((&xv, &gv), &wv) in x.iter().zip(g).zip(ws) {
                            let gy = gv * wv;
                            m_gy += gy;
                            m_gyx += gy * (xv - mean) * r;
                        }
                        let (m_gy, m_gyx) = (m_gy / n as f32, m_gyx / n as f32);
                        for (((o, &xv), &gv), &wv) in row.iter_mut().zip(x).zip(g).zip(ws) {
                            let xhat = (xv - mean) * r;
                            *o = r * (gv * wv - m_gy - xhat * m_gyx);
                        }
                    });
                    let (mut dw, mut db) = (vec![0f32; n], vec![0f32; n]);
                    if want_w || want_b {
                        for (x, g) in xs.chunks(n).zip(gs.chunks(n)) {
                            let (mean, r) = stats(x, eps);
                            for (((dwv, dbv), &xv), &gv) in dw.iter_mut().zip(db.iter_mut()).zip(x).zip(g) {
                                *dwv += gv * (xv - mean) * r;
                                *dbv += gv;
                            }
                        }
                    }
                    Ok((dx, dw, db))
                })
            })
        })?;
        let dx = Tensor::from_vec(dx, x.shape(), x.device())?;
        let dw = if want_w { Some(Tensor::from_vec(dw, w.shape(), w.device())?) } else { None };
        let db = if want_b { Some(Tensor::from_vec(db, b.shape(), b.device())?) } else { None };
        Ok((Some(dx), dw, db))
    }
}
