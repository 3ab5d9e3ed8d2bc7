//! Scaled dot-product attention per (sequence, head), straight from the fused
//! `[rows, 3·hidden]` q/k/v buffer: `gemm` reads each head's q, k and v with
//! strides and writes the context into its columns of `[rows, hidden]`, so no
//! head is ever transposed or copied.

use super::linear::{Out, View, matmul, parallel, tasks};
use super::rows::softmax_row;

/// Sizes of one attention call.
#[derive(Clone, Copy, Default)]
pub(super) struct Dims {
    pub batch: usize,
    pub len: usize,
    pub heads: usize,
    pub hidden: usize,
}

/// Fills `ctx` (`[batch·len, hidden]`) with every head's `softmax(q·kᵀ·scale +
/// mask)·v`. `mask` is additive per key (`[batch·len]`, 0 or −1e9). When
/// `probs` is given (`[batch, heads, len, len]`) the probabilities are kept
/// there; otherwise each task uses a scratch matrix.
pub(super) fn attention(qkv: &[f32], d: Dims, scale: f32, mask: Option<&[f32]>, probs: Option<&mut [f32]>, ctx: &mut [f32]) {
    let Dims { batch, len, heads, hidden } = d;
    let dh = hidden / heads;
    let (ld, ll) = (3 * hidden, len * len);
    assert!(qkv.len() == batch * len * ld && ctx.len() == batch * len * hidden, "attention: shapes disagree");
    assert!(mask.is_none_or(|m| m.len() == batch * len), "attention: mask shape");
    let probs_ptr = match probs {
        Some(p) => {
            assert_eq!(p.len(), batch * heads * ll, "attention: probabilities shape");
            Some(Out(p.as_mut_ptr()))
        }
        None => None,
    };
    let ctx_ptr = Out(ctx.as_mut_ptr());
    let par = parallel(4 * batch * heads * ll * dh);
    tasks(batch * heads, par, |t| {
        let (b, h) = (t / heads, t % heads);
        let mut scratch = Vec::new();
        let s: &mut [f32] = match probs_ptr {
            // SAFETY: task t owns probability block t.
            Some(p) => unsafe { std::slice::from_raw_parts_mut(p.at(t * ll), ll) },
            _ => {
                scratch.resize(ll, 0.0);
                &mut scratch
            }
        };
        let base = b * len * ld + h * dh;
        // SAFETY: q, k and v views stay inside `qkv` (rows b·len.., columns of
        // head h); the context block (rows of b, columns of h) is task t's alone.
        unsafe {
            // scores[i, j] = Σ_c q[i, c]·k[j, c], times the scale.
            matmul(
                len,
                len,
                dh,
                (s.as_mut_ptr(), 1, len as isize),
                View(qkv.as_ptr().add(base), 1, ld as isize),
                View(qkv.as_ptr().add(base + hidden), ld as isize, 1),
            );
            let m = mask.map(|m| &m[b * len..(b + 1) * len]);
            s.chunks_mut(len).for_each(|row| softmax_row(row, scale, m));
            context(s, qkv, d, t, ctx_ptr);
        }
    });
}

/// `ctx[i, c] = Σ_j p[i, j]·v[j, c]` for task `t` = (sequence, head):
/// the probabilities `p` (`[len, len]`) times that head's values, into its
/// columns of the sequence's context rows.
///
/// # Safety
/// `qkv` and `ctx` must have the shapes of [`attention`], and no other task
/// may write the same (sequence, head) block of `ctx` at the same time.
pub(super) unsafe fn context(p: &[f32], qkv: &[f32], d: Dims, t: usize, ctx: Out) {
    let Dims { len, heads, hidden, .. } = d;
    let (b, h, dh, ld) = (t / heads, t % heads, hidden / heads, 3 * hidden);
    // SAFETY: passed on from the caller; the views stay inside the buffers.
    unsafe {
        matmul(
            len,
            dh,
            len,
            (ctx.at(b * len * hidden + h * dh), 1, hidden as isize),
            View(p.as_ptr(), 1, len as isize),
            View(qkv.as_ptr().add(b * len * ld + h * dh + 2 * hidden), 1, ld as isize),
        );
    }
}
