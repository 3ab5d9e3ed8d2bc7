//! Fused CPU kernels with analytic backward passes, as candle custom ops.
//!
//! In differentiable mode candle builds layer norm, softmax and the exact GELU
//! out of a dozen elementary ops, each a full pass over memory with its own
//! backward node, and every matmul backward also computes the weight gradient
//! that explanations never read. These ops do one pass forward and one pass
//! backward, and [`linear`] returns only the input gradient. candle stays the
//! tensor and autograd library: each op is a `CustomOp` whose `bwd` candle's
//! backprop calls.
//!
//! [`set_fused`] switches them off process-wide, so `expnet bench --kernels both`
//! can time old and new paths in one run. [`set_fast`] switches off only the
//! hand-written inference forward (`model::fast`), which runs when both are on.

pub mod gelu;
pub mod linear;
pub mod norm;
pub mod softmax;
pub mod threads;
pub mod vector;

pub use vector::{axpy, dot, tanh_in_place};

#[cfg(test)]
mod tests;

use candle_core::{CpuStorage, Layout, Result, Storage, Tensor};
use std::sync::atomic::{AtomicBool, Ordering};

static FUSED: AtomicBool = AtomicBool::new(true);

/// Whether the encoder uses the fused kernels (default) or candle's elementary ops.
pub fn fused() -> bool {
    FUSED.load(Ordering::Relaxed)
}

/// Turns the fused kernels on or off for the whole process (benchmarks, tests).
pub fn set_fused(on: bool) {
    FUSED.store(on, Ordering::Relaxed);
}

static FAST: AtomicBool = AtomicBool::new(true);

/// Whether inference-mode forward passes take the hand-written path
/// (`model::fast`): on by default, and only while [`fused`] is on too.
pub fn fast() -> bool {
    FAST.load(Ordering::Relaxed) && fused()
}

/// Turns the hand-written inference forward on or off (benchmarks, tests).
pub fn set_fast(on: bool) {
    FAST.store(on, Ordering::Relaxed);
}

/// Elements below which a kernel stays on the calling thread: splitting costs
/// more than it saves (same threshold as candle's element-wise ops).
const PAR_MIN: usize = 64 * 1024;

/// The contiguous f32 values of a CPU storage.
fn slice<'a>(s: &'a CpuStorage, l: &Layout) -> Result<&'a [f32]> {
    let data = s.as_slice::<f32>()?;
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => candle_core::bail!("fused kernel needs a contiguous f32 tensor"),
    }
}

/// Runs `f` on the contiguous f32 values of a CPU tensor.
pub(crate) fn with_values<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> Result<R>) -> Result<R> {
    let t = t.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    match &*storage {
        Storage::Cpu(s) => f(slice(s, layout)?),
        _ => candle_core::bail!("fused kernels run on the CPU only"),
    }
}

/// Fills `out` row by row (`row` values each) with `f(row_index, row_out)`,
/// on rayon's pool (the one gemm uses) when the tensor is large.
fn for_rows(out: &mut [f32], row: usize, f: impl Fn(usize, &mut [f32]) + Sync) {
    use rayon::prelude::*;
    if out.len() >= PAR_MIN && rayon::current_num_threads() > 1 {
        out.par_chunks_mut(row).enumerate().for_each(|(i, r)| f(i, r));
    } else {
        out.chunks_mut(row).enumerate().for_each(|(i, r)| f(i, r));
    }
}
