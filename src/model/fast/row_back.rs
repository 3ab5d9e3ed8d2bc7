//! The gradient of a function of one layer's output row with respect to that
//! layer's pre-norm attention sum (`x + attn_out`, before the first norm),
//! through the norm, the feed-forward block and the output norm.
//!
//! Distilled ExpNets' decision features need this gradient for the last
//! layer's [CLS] row on every explanation. On candle's graph it cost ~6 ms
//! per text whatever the length, most of it weight gradients nobody reads
//! (candle's matmul backward forms both operands' gradients, and adds them
//! into the store on its thread pool); one row by hand is matrix-vector work.

use super::linear::{Epilogue, linear};
use super::rows;
use crate::model::config::Activation;
use super::{LayerViews, LinView, View};
use crate::model::encoder::{Encoder, Head};
use crate::model::ops::{axpy, dot, tanh_in_place};

/// Weights of at least this many values are read by two or more threads:
/// one row's work is memory-bound, and each core streams its half of the
/// weight through its own cache (a feed-forward matrix is 2.4 MB for MiniLM).
const PAR_VALUES: usize = 1 << 16;

/// Row or column blocks for [`mat_vec`] and [`mat_t_vec`]: one per thread
/// when the weight is large, else one.
fn blocks(values: usize, len: usize) -> usize {
    let threads = rayon::current_num_threads();
    if values >= PAR_VALUES && threads > 1 { threads.min(len.max(1)) } else { 1 }
}

/// `f(i, block)` for the `chunk`-long blocks of `out`, on the pool when there
/// is more than one.
fn for_blocks(out: &mut [f32], chunk: usize, f: impl Fn((usize, &mut [f32])) + Sync + Send) {
    use rayon::prelude::*;
    if out.len() > chunk {
        out.par_chunks_mut(chunk).enumerate().for_each(f);
    } else {
        out.chunks_mut(chunk).enumerate().for_each(f);
    }
}

/// `y = W·x + b` for a torch-layout weight `[n, k]`.
fn mat_vec(w: &[f32], b: Option<&View>, x: &[f32]) -> Vec<f32> {
    let k = x.len();
    let n = w.len() / k.max(1);
    let mut y = vec![0f32; n];
    let parts = blocks(w.len(), n);
    let chunk = n.div_ceil(parts).max(1);
    let fill = |(i, ys): (usize, &mut [f32])| {
        for (j, v) in ys.iter_mut().enumerate() {
            let r = i * chunk + j;
            *v = dot(&w[r * k..(r + 1) * k], x);
        }
    };
    for_blocks(&mut y, chunk, fill);
    if let Some(b) = b {
        y.iter_mut().zip(b.data()).for_each(|(v, bv)| *v += bv);
    }
    y
}

/// `Wᵀ·g` for a torch-layout weight `[n, k]` (`g` has `n` values); with
/// several threads each one owns a block of the `k` outputs.
fn mat_t_vec(w: &[f32], g: &[f32], k: usize) -> Vec<f32> {
    let mut out = vec![0f32; k];
    if k == 0 {
        return out;
    }
    let parts = blocks(w.len(), k / 16);
    let chunk = k.div_ceil(parts).next_multiple_of(16).min(k);
    let fill = |(i, os): (usize, &mut [f32])| {
        let c0 = i * chunk;
        for (row, &gv) in w.chunks_exact(k).zip(g) {
            axpy(os, gv, &row[c0..c0 + os.len()]);
        }
    };
    for_blocks(&mut out, chunk, fill);
    out
}

/// `(value, ∂f/∂pre)` for `f(layer output row)`, where `head_back(h)`
/// returns `f(h)` and `∂f/∂h`. `None` where the layer's weights are not
/// plain f32 CPU tensors of BERT's shape (the caller then uses candle's graph).
pub(in crate::model) fn post_attention_row_back<E>(
    enc: &Encoder,
    layer: usize,
    pre: &[f32],
    head_back: impl FnOnce(&[f32]) -> Result<(f32, Vec<f32>), E>,
) -> Result<Option<(f32, Vec<f32>)>, E> {
    let hidden = pre.len();
    let Some(v) = enc.layers.get(layer).and_then(|l| LayerViews::of(l, hidden)) else { return Ok(None) };
    let act = enc.cfg.activation;
    let mut y = pre.to_vec();
    v.attn_norm.apply(&mut y);
    let (ffn_in, ffn_out) = (v.ffn_in.lin(), v.ffn_out.lin());
    let pre_act = mat_vec(ffn_in.w, v.ffn_in.b.as_ref(), &y);
    let mut a = pre_act.clone();
    rows::activate(&mut a, act);
    let mut s = mat_vec(ffn_out.w, v.ffn_out.b.as_ref(), &a);
    s.iter_mut().zip(&y).for_each(|(sv, yv)| *sv += yv);
    let mut h = s.clone();
    v.out_norm.apply(&mut h);
    let (value, d_h) = head_back(&h)?;
    let mut d_s = vec![0f32; hidden];
    rows::layer_norm_back(&s, v.out_norm.w.data(), v.out_norm.eps, &d_h, &mut d_s);
    let mut d_a = mat_t_vec(ffn_out.w, &d_s, ffn_out.k);
    rows::activate_back(&pre_act, &mut d_a, act);
    let mut d_y = mat_t_vec(ffn_in.w, &d_a, ffn_in.k);
    d_y.iter_mut().zip(&d_s).for_each(|(dv, sv)| *dv += sv);
    let mut d_pre = vec![0f32; hidden];
    rows::layer_norm_back(pre, v.attn_norm.w.data(), v.attn_norm.eps, &d_y, &mut d_pre);
    Ok(Some((value, d_pre)))
}

/// A head's activation between its two layers.
#[derive(Clone, Copy)]
enum Act {
    Tanh,
    Other(Activation),
}

fn act_in_place(x: &mut [f32], act: Act) {
    match act {
        Act::Tanh => tanh_in_place(x),
        Act::Other(a) => rows::activate(x, a),
    }
}

/// Every head family is dense → activation → output layer.
fn head_parts(head: &Head) -> (&candle_nn::Linear, Act, &candle_nn::Linear) {
    match head {
        Head::Bert { pooler, classifier } => (pooler, Act::Tanh, classifier),
        Head::DistilBert { pre_classifier, classifier } => (pre_classifier, Act::Other(Activation::Relu), classifier),
        Head::Roberta { dense, out_proj } => (dense, Act::Tanh, out_proj),
        Head::DenseAct { dense, activation, out } => (dense, Act::Other(*activation), out),
    }
}

/// The head's logits for every row of `x` (`[m, hidden]`, flat), inference
/// mode, on `gemm`: the logit-lens features run the head on every token of
/// several layers. `None` where a weight is not a plain f32 CPU tensor.
pub(in crate::model) fn head_logits_rows(head: &Head, x: &[f32], m: usize) -> Option<Vec<f32>> {
    let (dense, act, out) = head_parts(head);
    let (dense, out) = (LinView::of(dense)?, LinView::of(out)?);
    let (d, o) = (dense.lin(), out.lin());
    if x.len() != m * d.k || o.k != d.n {
        return None;
    }
    let mut z = vec![0f32; m * d.n];
    linear(x, m, &d, &mut z, d.n, 0, Epilogue::Bias);
    act_in_place(&mut z, act);
    let mut logits = vec![0f32; m * o.n];
    linear(&z, m, &o, &mut logits, o.n, 0, Epilogue::Bias);
    Some(logits)
}

/// `(log p(target), ∂ log p(target)/∂h)` through a classification head for
/// one row `h`: the head's dense layer, its activation, the output layer and
/// the log-softmax. `None` where a weight is not a plain f32 CPU tensor or
/// `target` is not a class.
pub(in crate::model) fn head_log_prob_back(head: &Head, h: &[f32], target: usize) -> Option<(f32, Vec<f32>)> {
    let (dense, act, out) = head_parts(head);
    let (dense, out) = (LinView::of(dense)?, LinView::of(out)?);
    let (d, o) = (dense.lin(), out.lin());
    if d.k != h.len() || o.k != d.n || target >= o.n {
        return None;
    }
    let z = mat_vec(d.w, dense.b.as_ref(), h);
    let mut x = z.clone();
    act_in_place(&mut x, act);
    let logits = mat_vec(o.w, out.b.as_ref(), &x);
    let m = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f32 = logits.iter().map(|v| (v - m).exp()).sum();
    let lp = logits[target] - m - sum.ln();
    // ∂ log softmax_t / ∂ logits = onehot(t) − softmax.
    let d_logits: Vec<f32> = logits.iter().enumerate().map(|(c, v)| f32::from(c == target) - (v - m).exp() / sum).collect();
    let mut d_x = mat_t_vec(o.w, &d_logits, o.k);
    match act {
        Act::Tanh => d_x.iter_mut().zip(&x).for_each(|(g, t)| *g *= 1.0 - t * t),
        Act::Other(a) => rows::activate_back(&z, &mut d_x, a),
    }
    Some((lp, mat_t_vec(d.w, &d_x, d.k)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The threaded splits of [`mat_vec`] and [`mat_t_vec`] (weights above
    /// [`PAR_VALUES`], cut into as many blocks as the pool has threads, with a
    /// ragged last block) against plain loops. The tiny test models never
    /// reach the threshold, so this is where the split is checked.
    #[test]
    fn threaded_matrix_vector_products_match_plain_loops() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
        for (n, k) in [(1536, 384), (385, 203), (203, 385), (7, 12_000)] {
            let w: Vec<f32> = (0..n * k).map(|i| ((i * 7919) % 2003) as f32 / 1001.0 - 1.0).collect();
            let x: Vec<f32> = (0..k).map(|i| ((i * 31) % 17) as f32 / 8.0 - 1.0).collect();
            let g: Vec<f32> = (0..n).map(|i| ((i * 13) % 11) as f32 / 5.0 - 1.0).collect();
            let (y, t) = pool.install(|| (mat_vec(&w, None, &x), mat_t_vec(&w, &g, k)));
            assert_eq!(pool.install(|| (blocks(n * k, n), blocks(n * k, k / 16))), (3, 3), "{n}×{k} should be split three ways");
            let want_y: Vec<f32> = w.chunks_exact(k).map(|row| dot(row, &x)).collect();
            assert_eq!(y, want_y, "W·x, {n}×{k}");
            let mut want_t = vec![0f32; k];
            for (row, &gv) in w.chunks_exact(k).zip(&g) {
                want_t.iter_mut().zip(row).for_each(|(o, wv)| *o += gv * wv);
            }
            assert_eq!(t, want_t, "Wᵀ·g, {n}×{k}");
        }
    }
}
