//! A linear layer whose backward pass yields the input gradient only.
//!
//! candle's matmul backward always computes both operand gradients, and the
//! bias `broadcast_add` adds a reduction over every row; with frozen weights
//! (every explanation method) nobody reads them. This op keeps the weight and
//! bias as constants inside the op: forward is `x·Wᵀ + b` on candle's matmul,
//! backward is `g·W` and nothing else, about a third fewer backward FLOPs.
//! Fine-tuning, whose weights are `Var`s, keeps candle-nn's `Linear`.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, Layout, Module, Result, Shape, Storage, Tensor};
use candle_nn::Linear;

/// `x·Wᵀ + b` with a frozen weight: backward propagates to `x` only.
/// Falls back to candle-nn's `Linear` when the weight is trainable.
pub fn linear_input_grad(layer: &Linear, x: &Tensor) -> Result<Tensor> {
    let trainable = layer.weight().track_op() || layer.bias().is_some_and(|b| b.track_op());
    if trainable || !x.device().is_cpu() {
        return layer.forward(x);
    }
    x.contiguous()?
        .apply_op1(FrozenLinear { weight: layer.weight().contiguous()?, bias: layer.bias().cloned() })
}

struct FrozenLinear {
    /// `[out, in]`, contiguous.
    weight: Tensor,
    bias: Option<Tensor>,
}

impl CustomOp1 for FrozenLinear {
    fn name(&self) -> &'static str {
        "expnet-frozen-linear"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (out_f, in_f) = self.weight.dims2()?;
        let dims = l.dims();
        let k = dims.last().copied().unwrap_or(0);
        if k != in_f {
            candle_core::bail!("linear: input has {k} features, weight expects {in_f}");
        }
        let m = l.shape().elem_count() / k.max(1);
        let x_layout = Layout::contiguous_with_offset((m, k), l.start_offset());
        let (w_storage, w_layout) = self.weight.storage_and_layout();
        let Storage::Cpu(w) = &*w_storage else { candle_core::bail!("linear: weight is not on the CPU") };
        let wt_layout = w_layout.transpose(0, 1)?;
        let y = s.matmul(w, (1, m, out_f, k), &x_layout, &wt_layout)?;
        let mut y = match y {
            CpuStorage::F32(v) => v,
            _ => candle_core::bail!("linear: expected f32"),
        };
        if let Some(b) = &self.bias {
            super::with_values(b, |b| {
                for row in y.chunks_mut(out_f) {
                    row.iter_mut().zip(b).for_each(|(o, bv)| *o += bv);
                }
                Ok(())
            })?;
        }
        let mut shape = dims.to_vec();
        *shape.last_mut().expect("rank ≥ 1") = out_f;
        Ok((CpuStorage::F32(y), Shape::from(shape)))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let out_f = self.weight.dim(0)?;
        let m = grad.elem_count() / out_f.max(1);
        let dx = grad.contiguous()?.reshape((m, out_f))?.matmul(&self.weight)?;
        Ok(Some(dx.reshape(arg.shape())?))
    }
}
