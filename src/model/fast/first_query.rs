//! The last layer for the first token only, forward and backward.
//!
//! A classifier reads the last hidden state of the first token ([CLS] / <s>)
//! alone. So when only the logits (and their gradients) are wanted —
//! perturbation batches, integrated gradients — the last layer needs keys and
//! values for every token but queries, attention output, the norms and the
//! feed-forward block for the first token only: about 5/6 of that layer's
//! arithmetic is skipped (1/7 of a 6-layer forward pass).

use super::attention::Dims;
use super::backward::LayerTape;
use super::linear::{Epilogue, linear, linear_back, parallel, tasks, Out};
use super::{LayerViews, rows};
use crate::model::config::Activation;

/// The first token's row of every sequence, `[batch, hidden]`.
fn first_rows(x: &[f32], d: Dims) -> Vec<f32> {
    x.chunks(d.len * d.hidden).flat_map(|seq| seq[..d.hidden].iter().copied()).collect()
}

/// The last layer's output for the first token of each sequence (`[batch,
/// hidden]`) from its input `x` (`[batch·len, hidden]`), and with
/// `keep_probs` the first token's attention probabilities (`[batch, heads,
/// len]`). `qkv` is scratch of `[batch·len, 3·hidden]`; its key and value
/// columns are filled. With a tape, what [`backward`] needs is pushed onto it.
#[allow(clippy::too_many_arguments)]
pub(super) fn forward(
    v: &LayerViews,
    x: &[f32],
    d: Dims,
    scale: f32,
    mask: Option<&[f32]>,
    act: Activation,
    qkv: &mut [f32],
    tape: Option<&mut super::backward::Tape>,
    keep_probs: bool,
) -> (Vec<f32>, Option<Vec<f32>>) {
    let Dims { batch, len, heads, hidden } = d;
    let rows_n = batch * len;
    let dh = hidden / heads;
    for (i, l) in [&v.key, &v.value].into_iter().enumerate() {
        linear(x, rows_n, &l.lin(), qkv, 3 * hidden, (i + 1) * hidden, Epilogue::Bias);
    }
    let xf = first_rows(x, d);
    let mut q = vec![0f32; batch * hidden];
    linear(&xf, batch, &v.query.lin(), &mut q, hidden, 0, Epilogue::Bias);
    let mut probs = vec![0f32; batch * heads * len];
    let mut ctx = vec![0f32; batch * hidden];
    let (pp, cp) = (Out(probs.as_mut_ptr()), Out(ctx.as_mut_ptr()));
    let ld = 3 * hidden;
    let qkv_r: &[f32] = qkv;
    tasks(batch * heads, parallel(4 * batch * heads * len * dh), |t| {
        let (b, h) = (t / heads, t % heads);
        // SAFETY: task t alone writes probability row t and head h's columns of context row b.
        let (p, c) = unsafe {
            (std::slice::from_raw_parts_mut(pp.at(t * len), len), std::slice::from_raw_parts_mut(cp.at(b * hidden + h * dh), dh))
        };
        let qh = &q[b * hidden + h * dh..b * hidden + (h + 1) * dh];
        for (j, s) in p.iter_mut().enumerate() {
            let k = &qkv_r[(b * len + j) * ld + hidden + h * dh..][..dh];
            *s = qh.iter().zip(k).map(|(a, b)| a * b).sum();
        }
        rows::softmax_row(p, scale, mask.map(|m| &m[b * len..(b + 1) * len]));
        c.iter_mut().for_each(|v| *v = 0.0);
        for (j, &pj) in p.iter().enumerate() {
            let val = &qkv_r[(b * len + j) * ld + 2 * hidden + h * dh..][..dh];
            c.iter_mut().zip(val).for_each(|(o, v)| *o += pj * v);
        }
    });
    let mut hs = vec![0f32; batch * hidden];
    linear(&ctx, batch, &v.attn_out.lin(), &mut hs, hidden, 0, Epilogue::Residual(&xf));
    let attn_sum = tape.is_some().then(|| hs.clone());
    v.attn_norm.apply(&mut hs);
    let inter_n = v.ffn_in.w.dims[0];
    let mut inter = vec![0f32; batch * inter_n];
    linear(&hs, batch, &v.ffn_in.lin(), &mut inter, inter_n, 0, Epilogue::Bias);
    let ffn_pre = tape.is_some().then(|| inter.clone());
    rows::activate(&mut inter, act);
    let mut out = vec![0f32; batch * hidden];
    linear(&inter, batch, &v.ffn_out.lin(), &mut out, hidden, 0, Epilogue::Residual(&hs));
    let out_sum = tape.is_some().then(|| out.clone());
    v.out_norm.apply(&mut out);
    let kept = keep_probs.then(|| probs.clone());
    if let Some(t) = tape {
        t.layers.push(LayerTape {
            qkv: qkv.to_vec(),
            probs,
            attn_sum: attn_sum.unwrap_or_default(),
            ffn_pre: ffn_pre.unwrap_or_default(),
            out_sum: out_sum.unwrap_or_default(),
            first_query: Some(q),
        });
    }
    (out, kept)
}

/// Backward of [`forward`]: from the gradient of the first tokens' outputs
/// (`[batch, hidden]`) to the gradient of the layer input `dx` (`[batch·len,
/// hidden]`, overwritten). `d_qkv` is scratch of `[batch·len, 3·hidden]`.
pub(super) fn backward(v: &LayerViews, lt: &LayerTape, d: Dims, scale: f32, act: Activation, d_out: &[f32], d_qkv: &mut [f32], dx: &mut [f32]) {
    let Dims { batch, len, heads, hidden } = d;
    let rows_n = batch * len;
    let dh = hidden / heads;
    let ld = 3 * hidden;
    let q = lt.first_query.as_deref().expect("a first-query tape");
    let inter_n = v.ffn_in.w.dims[0];
    let mut d_sum = vec![0f32; batch * hidden];
    rows::layer_norm_back(&lt.out_sum, v.out_norm.w.data(), v.out_norm.eps, d_out, &mut d_sum);
    let mut d_inter = vec![0f32; batch * inter_n];
    linear_back(&d_sum, hidden, 0, batch, &v.ffn_out.lin(), &mut d_inter, false);
    rows::activate_back(&lt.ffn_pre, &mut d_inter, act);
    let mut d_h = d_sum.clone();
    linear_back(&d_inter, inter_n, 0, batch, &v.ffn_in.lin(), &mut d_h, true);
    rows::layer_norm_back(&lt.attn_sum, v.attn_norm.w.data(), v.attn_norm.eps, &d_h, &mut d_sum);
    let mut d_ctx = vec![0f32; batch * hidden];
    linear_back(&d_sum, hidden, 0, batch, &v.attn_out.lin(), &mut d_ctx, false);
    // Attention: keys and values of every token, the query of the first.
    // (Every key and value column of `d_qkv` is written below; query columns are not read.)
    let mut d_q = vec![0f32; batch * hidden];
    let (kv_out, q_out) = (Out(d_qkv.as_mut_ptr()), Out(d_q.as_mut_ptr()));
    let qkv = &lt.qkv;
    tasks(batch * heads, parallel(6 * batch * heads * len * dh), |t| {
        let (b, h) = (t / heads, t % heads);
        let p = &lt.probs[t * len..(t + 1) * len];
        let dc = &d_ctx[b * hidden + h * dh..][..dh];
        let qh = &q[b * hidden + h * dh..][..dh];
        let key = |j: usize| &qkv[(b * len + j) * ld + hidden + h * dh..][..dh];
        let value = |j: usize| &qkv[(b * len + j) * ld + 2 * hidden + h * dh..][..dh];
        let dp: Vec<f32> = (0..len).map(|j| dc.iter().zip(value(j)).map(|(a, b)| a * b).sum()).collect();
        let dot: f32 = p.iter().zip(&dp).map(|(a, b)| a * b).sum();
        // SAFETY: task t alone writes head h's columns of sequence b's rows.
        let dq = unsafe { std::slice::from_raw_parts_mut(q_out.at(b * hidden + h * dh), dh) };
        for j in 0..len {
            let ds = scale * p[j] * (dp[j] - dot);
            // SAFETY: as above (row b·len + j, head h's key and value columns).
            let (dk, dv) = unsafe {
                let row = (b * len + j) * ld + h * dh;
                (std::slice::from_raw_parts_mut(kv_out.at(row + hidden), dh), std::slice::from_raw_parts_mut(kv_out.at(row + 2 * hidden), dh))
            };
            dk.iter_mut().zip(qh).for_each(|(o, qv)| *o = ds * qv);
            dv.iter_mut().zip(dc).for_each(|(o, g)| *o = p[j] * g);
            dq.iter_mut().zip(key(j)).for_each(|(o, kv)| *o += ds * kv);
        }
    });
    // dx = keys' and values' input gradients for every row, plus the first
    // rows' residual and query gradients.
    for (i, l) in [&v.key, &v.value].into_iter().enumerate() {
        linear_back(d_qkv, ld, (i + 1) * hidden, rows_n, &l.lin(), dx, i > 0);
    }
    let mut d_first = d_sum;
    linear_back(&d_q, hidden, 0, batch, &v.query.lin(), &mut d_first, true);
    for b in 0..batch {
        dx[b * len * hidden..][..hidden].iter_mut().zip(&d_first[b * hidden..][..hidden]).for_each(|(o, g)| *o += g);
    }
}
