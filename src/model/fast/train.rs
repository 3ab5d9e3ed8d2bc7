//! One fine-tuning step on the hand-written path: the forward pass with
//! dropout, then the gradient of the loss w.r.t. every encoder weight.
//!
//! Training on candle's graph ran at a seventh of PyTorch's speed
//! (docs/PERFORMANCE.md): a dozen elementary ops per layer norm and softmax,
//! batched small matmuls, an allocation per op. This is the inference
//! forward ([`super::run`]) with dropout masks added and every input a
//! weight gradient needs kept, and the reverse of [`super::backward`] with
//! the weight gradients added (`dW = dyᵀ·x`, `db = Σ dy`, the norms' gains
//! and biases, embedding rows scattered into their tables). The head and the
//! loss stay on candle's autograd; the gradients go into the same
//! `GradStore`, so the optimizer cannot tell the paths apart.
//!
//! Dropout masks come from a counter-based hash of (seed, site, index):
//! a step is reproducible from its seed whatever the thread count.

use super::attention::{Dims, context};
use super::backward::attention_back;
use super::linear::{Epilogue, Keep, Out, View as MatView, linear, linear_back, linear_weight_grad, matmul, parallel, tasks};
use super::rows::{self, softmax_row};
use super::{LayerViews, NormView, additive_mask, embeddings};
use crate::model::encoder::{Encoder, EncoderInput, LayerNorm, RunMode};
use candle_core::backprop::GradStore;
use candle_core::{Device, Tensor, Var};
use std::borrow::Cow;

/// Dropout with probability `p`, its masks drawn from `seed`.
#[derive(Clone, Copy)]
struct Dropout {
    p: f32,
    seed: u64,
}

impl Dropout {
    fn active(self) -> bool {
        self.p > 0.0
    }

    /// What a kept value is multiplied by.
    fn keep_scale(self) -> f32 {
        1.0 / (1.0 - self.p)
    }

    /// Whether value `i` of dropout site `site` is kept.
    #[inline(always)]
    fn keeps(self, site: u64, i: usize) -> bool {
        // SplitMix64's finaliser over (seed, site, index): 24 uniform bits.
        let mut z = self.seed.wrapping_add(site.wrapping_mul(0x9E37_79B9_7F4A_7C15)).wrapping_add((i as u64).wrapping_mul(0xD1B5_4A32_D192_ED03));
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        ((z >> 40) as f32) * (1.0 / 16_777_216.0) >= self.p
    }

    /// Multipliers (0 or `1/(1 − p)`) for `n` values of `site`; empty when inactive.
    fn mask(self, site: u64, n: usize) -> Vec<f32> {
        if !self.active() {
            return Vec::new();
        }
        let s = self.keep_scale();
        (0..n).map(|i| if self.keeps(site, i) { s } else { 0.0 }).collect()
    }
}

/// Dropout sites: the embeddings, then three per layer.
fn site(layer: usize, which: u64) -> u64 {
    1 + 3 * layer as u64 + which
}

/// `v ⊙ mask`; `v` itself, not a copy, when there is no mask.
fn masked<'a>(v: &'a [f32], mask: &[f32]) -> Cow<'a, [f32]> {
    if mask.is_empty() { Cow::Borrowed(v) } else { Cow::Owned(v.iter().zip(mask).map(|(a, m)| a * m).collect()) }
}

/// What the forward pass of one layer keeps for the weight gradients.
struct LayerTape {
    /// The layer's input (q/k/v's input).
    x_in: Vec<f32>,
    qkv: Vec<f32>,
    probs: Vec<f32>,
    /// The probabilities after dropout (empty without dropout).
    dropped: Vec<f32>,
    /// Attention output before its projection.
    ctx: Vec<f32>,
    attn_mask: Vec<f32>,
    attn_sum: Vec<f32>,
    /// The first norm's output (the feed-forward input).
    h: Vec<f32>,
    ffn_pre: Vec<f32>,
    ffn_act: Vec<f32>,
    out_mask: Vec<f32>,
    out_sum: Vec<f32>,
}

/// One training step of the cross-entropy loss of `labels` (`[batch]`, u32)
/// for a batch; `word_ids` are the ids behind `input.word_embeds`
/// (`[batch·len]`). Returns the loss and the gradients of every weight
/// (encoder and head), or `None` where the hand-written path does not apply
/// (the caller then uses the candle graph). `head_dropout` = dropout in the
/// head too (candle's, not seeded; off in the tests).
pub(in crate::model) fn step(
    enc: &Encoder,
    input: &EncoderInput,
    word_ids: &[u32],
    labels: &Tensor,
    dropout: f32,
    seed: u64,
    head_dropout: bool,
) -> candle_core::Result<Option<(f32, GradStore)>> {
    let Some(head) = &enc.head else { return Ok(None) };
    if !super::eligible(enc, input) || enc.embed_project.is_some() || !(0.0..1.0).contains(&dropout) {
        return Ok(None);
    }
    let cfg = &enc.cfg;
    let (batch, len, emb) = input.word_embeds.dims3()?;
    let (hidden, heads) = (cfg.hidden_size, cfg.num_heads);
    if heads == 0 || hidden % heads != 0 || len == 0 || emb != hidden {
        return Ok(None);
    }
    let rows_n = batch * len;
    if word_ids.len() != rows_n {
        candle_core::bail!("{} word ids for {batch}×{len} tokens", word_ids.len());
    }
    let drop = Dropout { p: dropout, seed };
    let device = input.word_embeds.device();

    // Forward.
    let Some(embed_sum) = embeddings(enc, input, batch, len, emb)? else { return Ok(None) };
    let mut x = embed_sum.clone();
    match NormView::of(&enc.embed_norm, emb) {
        Some(norm) => norm.apply(&mut x),
        None => return Ok(None),
    }
    let embed_mask = drop.mask(0, rows_n * hidden);
    if drop.active() {
        x.iter_mut().zip(&embed_mask).for_each(|(v, m)| *v *= m);
    }
    let mask = additive_mask(input, batch, len)?;
    let dims = Dims { batch, len, heads, hidden };
    let scale = 1.0 / ((hidden / heads) as f32).sqrt();
    let mut tapes = Vec::with_capacity(enc.layers.len());
    for (li, layer) in enc.layers.iter().enumerate() {
        let Some(v) = LayerViews::of(layer, hidden) else { return Ok(None) };
        let inter_n = v.ffn_in.w.dims[0];
        let mut qkv = vec![0f32; rows_n * 3 * hidden];
        for (i, l) in [&v.query, &v.key, &v.value].into_iter().enumerate() {
            linear(&x, rows_n, &l.lin(), &mut qkv, 3 * hidden, i * hidden, Epilogue::Bias);
        }
        let mut probs = vec![0f32; batch * heads * len * len];
        let mut ctx = vec![0f32; rows_n * hidden];
        let dropped = attention(&qkv, dims, scale, mask.as_deref(), &mut probs, drop, site(li, 0), &mut ctx);
        let mut attn_sum = vec![0f32; rows_n * hidden];
        linear(&ctx, rows_n, &v.attn_out.lin(), &mut attn_sum, hidden, 0, Epilogue::Bias);
        let attn_mask = drop.mask(site(li, 1), rows_n * hidden);
        add_residual(&mut attn_sum, &attn_mask, &x);
        let mut h = attn_sum.clone();
        v.attn_norm.apply(&mut h);
        let mut ffn_pre = vec![0f32; rows_n * inter_n];
        let mut ffn_act = vec![0f32; rows_n * inter_n];
        linear(&h, rows_n, &v.ffn_in.lin(), &mut ffn_act, inter_n, 0, Epilogue::ActKeep(cfg.activation, Keep::new(&mut ffn_pre)));
        let mut out_sum = vec![0f32; rows_n * hidden];
        linear(&ffn_act, rows_n, &v.ffn_out.lin(), &mut out_sum, hidden, 0, Epilogue::Bias);
        let out_mask = drop.mask(site(li, 2), rows_n * hidden);
        add_residual(&mut out_sum, &out_mask, &h);
        let mut out = out_sum.clone();
        v.out_norm.apply(&mut out);
        let x_in = std::mem::replace(&mut x, out);
        tapes.push(LayerTape { x_in, qkv, probs, dropped, ctx, attn_mask, attn_sum, h, ffn_pre, ffn_act, out_mask, out_sum });
    }

    // Head and loss on candle's autograd, from the [CLS] rows.
    let cls: Vec<f32> = x.chunks(len * hidden).flat_map(|seq| seq[..hidden].iter().copied()).collect();
    let cls = Var::from_vec(cls, (batch, hidden), device)?;
    let mode = RunMode { differentiable: true, attention_probes: false, dropout: (head_dropout && drop.active()).then_some(dropout) };
    let logits = head.forward(cls.as_tensor(), mode)?;
    let loss = candle_nn::loss::cross_entropy(&logits, labels)?;
    let mut grads = loss.backward()?;
    let d_cls = grads.remove(cls.as_tensor()).ok_or_else(|| candle_core::Error::Msg("no gradient reached [CLS]".into()))?;
    let d_cls = d_cls.flatten_all()?.to_vec1::<f32>()?;
    let mut dx = vec![0f32; rows_n * hidden];
    for b in 0..batch {
        dx[b * len * hidden..b * len * hidden + hidden].copy_from_slice(&d_cls[b * hidden..(b + 1) * hidden]);
    }

    // Backward, layer by layer.
    let act = cfg.activation;
    for (layer, lt) in enc.layers.iter().zip(tapes).rev() {
        let Some(v) = LayerViews::of(layer, hidden) else { return Ok(None) };
        let inter_n = v.ffn_in.w.dims[0];
        // Second norm; its input was dropout(ffn_out(act)) + h.
        let d_sum = norm_back(&mut grads, &layer.out_norm, &v.out_norm, &lt.out_sum, &dx)?;
        let d_y = masked(&d_sum, &lt.out_mask);
        linear_grads(&mut grads, &layer.ffn_out, &d_y, hidden, 0, rows_n, &lt.ffn_act)?;
        let mut d_inter = vec![0f32; rows_n * inter_n];
        linear_back(&d_y, hidden, 0, rows_n, &v.ffn_out.lin(), &mut d_inter, false);
        rows::activate_back(&lt.ffn_pre, &mut d_inter, act);
        linear_grads(&mut grads, &layer.ffn_in, &d_inter, inter_n, 0, rows_n, &lt.h)?;
        let mut d_h = d_sum;
        linear_back(&d_inter, inter_n, 0, rows_n, &v.ffn_in.lin(), &mut d_h, true);
        // First norm; its input was dropout(attn_out(ctx)) + x_in.
        let d_sum = norm_back(&mut grads, &layer.attn_norm, &v.attn_norm, &lt.attn_sum, &d_h)?;
        let d_y = masked(&d_sum, &lt.attn_mask);
        linear_grads(&mut grads, &layer.attn_out, &d_y, hidden, 0, rows_n, &lt.ctx)?;
        let mut d_ctx = vec![0f32; rows_n * hidden];
        linear_back(&d_y, hidden, 0, rows_n, &v.attn_out.lin(), &mut d_ctx, false);
        let mut d_qkv = vec![0f32; rows_n * 3 * hidden];
        let dropped = drop.active().then(|| (lt.dropped.as_slice(), drop.keep_scale()));
        attention_back(&lt.qkv, &lt.probs, dropped, dims, scale, &d_ctx, None, &mut d_qkv);
        dx = d_sum;
        for (i, (l, lv)) in [(&layer.query, &v.query), (&layer.key, &v.key), (&layer.value, &v.value)].into_iter().enumerate() {
            linear_grads(&mut grads, l, &d_qkv, 3 * hidden, i * hidden, rows_n, &lt.x_in)?;
            linear_back(&d_qkv, 3 * hidden, i * hidden, rows_n, &lv.lin(), &mut dx, true);
        }
    }

    // Embeddings: dropout, their norm, then rows scattered into the tables.
    let d_norm = masked(&dx, &embed_mask);
    let Some(view) = NormView::of(&enc.embed_norm, emb) else { return Ok(None) };
    let d_embed = norm_back(&mut grads, &enc.embed_norm, &view, &embed_sum, &d_norm)?;
    scatter_rows(&mut grads, enc.word_embedding_table(), word_ids, &d_embed, emb)?;
    for (table, ids) in [(&enc.position_embeddings, input.position_ids), (&enc.type_embeddings, input.type_ids)] {
        if let Some(table) = table {
            let ids = ids.flatten_all()?.to_dtype(candle_core::DType::U32)?.to_vec1::<u32>()?;
            scatter_rows(&mut grads, table.embeddings(), &ids, &d_embed, emb)?;
        }
    }
    Ok(Some((loss.to_scalar::<f32>()?, grads)))
}

/// `sum = dropout(sum) + residual` in place (`mask` empty: no dropout).
fn add_residual(sum: &mut [f32], mask: &[f32], residual: &[f32]) {
    if mask.is_empty() {
        sum.iter_mut().zip(residual).for_each(|(s, r)| *s += r);
    } else {
        sum.iter_mut().zip(mask).zip(residual).for_each(|((s, m), r)| *s = *s * m + r);
    }
}

/// Attention as in [`super::attention::attention`], keeping the
/// probabilities in `probs` and, with dropout, returning them dropped (what
/// multiplied v); empty without dropout.
#[allow(clippy::too_many_arguments)]
fn attention(qkv: &[f32], d: Dims, scale: f32, mask: Option<&[f32]>, probs: &mut [f32], drop: Dropout, site: u64, ctx: &mut [f32]) -> Vec<f32> {
    let Dims { batch, len, heads, hidden } = d;
    let dh = hidden / heads;
    let (ld, ll) = (3 * hidden, len * len);
    assert!(qkv.len() == batch * len * ld && ctx.len() == batch * len * hidden && probs.len() == batch * heads * ll, "attention: shapes disagree");
    let mut dropped = if drop.active() { vec![0f32; probs.len()] } else { Vec::new() };
    let (probs_out, dropped_out, ctx_out) = (Out(probs.as_mut_ptr()), Out(dropped.as_mut_ptr()), Out(ctx.as_mut_ptr()));
    let keep_scale = drop.keep_scale();
    tasks(batch * heads, parallel(4 * batch * heads * ll * dh), |t| {
        let (b, h) = (t / heads, t % heads);
        let base = b * len * ld + h * dh;
        // SAFETY: task t owns block t of `probs` and `dropped`, and the
        // context block (rows of sequence b, columns of head h); the q/k/v
        // views stay inside `qkv`.
        unsafe {
            let s = std::slice::from_raw_parts_mut(probs_out.at(t * ll), ll);
            matmul(len, len, dh, (s.as_mut_ptr(), 1, len as isize), MatView(qkv.as_ptr().add(base), 1, ld as isize), MatView(qkv.as_ptr().add(base + hidden), ld as isize, 1));
            let m = mask.map(|m| &m[b * len..(b + 1) * len]);
            s.chunks_mut(len).for_each(|row| softmax_row(row, scale, m));
            let pv: &[f32] = if drop.active() {
                let pd = std::slice::from_raw_parts_mut(dropped_out.at(t * ll), ll);
                for (i, (o, &p)) in pd.iter_mut().zip(s.iter()).enumerate() {
                    *o = if drop.keeps(site, t * ll + i) { p * keep_scale } else { 0.0 };
                }
                pd
            } else {
                s
            };
            context(pv, qkv, d, t, ctx_out);
        }
    });
    dropped
}

/// Adds the gradient of a parameter tensor to the store.
fn put(grads: &mut GradStore, param: &Tensor, values: Vec<f32>, device: &Device) -> candle_core::Result<()> {
    grads.insert(param, Tensor::from_vec(values, param.shape(), device)?);
    Ok(())
}

/// Weight and bias gradients of a linear layer from its output gradient
/// (`dy`, row stride `dys`, columns from `col0`) and input `x`.
fn linear_grads(grads: &mut GradStore, l: &candle_nn::Linear, dy: &[f32], dys: usize, col0: usize, m: usize, x: &[f32]) -> candle_core::Result<()> {
    let (n, k) = l.weight().dims2()?;
    let (mut dw, mut db) = (vec![0f32; n * k], vec![0f32; n]);
    linear_weight_grad(dy, dys, col0, m, x, n, k, &mut dw, &mut db);
    put(grads, l.weight(), dw, l.weight().device())?;
    if let Some(b) = l.bias() {
        put(grads, b, db, b.device())?;
    }
    Ok(())
}

/// A layer norm's backward from its input `x` and output gradient `dy`:
/// returns the input gradient; the gain and bias gradients go into the store.
fn norm_back(grads: &mut GradStore, norm: &LayerNorm, view: &NormView, x: &[f32], dy: &[f32]) -> candle_core::Result<Vec<f32>> {
    let mut dx = vec![0f32; x.len()];
    rows::layer_norm_back(x, view.w.data(), view.eps, dy, &mut dx);
    let n = norm.weight.elem_count();
    let (mut dw, mut db) = (vec![0f32; n], vec![0f32; n]);
    rows::layer_norm_param_grads(x, view.eps, dy, &mut dw, &mut db);
    put(grads, &norm.weight, dw, norm.weight.device())?;
    put(grads, &norm.bias, db, norm.bias.device())?;
    Ok(dx)
}

/// An embedding table's gradient: row `ids[r]` receives `d[r]`.
fn scatter_rows(grads: &mut GradStore, table: &Tensor, ids: &[u32], d: &[f32], width: usize) -> candle_core::Result<()> {
    let (rows_t, w) = table.dims2()?;
    if w != width || d.len() != ids.len() * width {
        candle_core::bail!("embedding gradient: shapes disagree");
    }
    let mut g = vec![0f32; rows_t * width];
    for (&id, row) in ids.iter().zip(d.chunks(width)) {
        let id = id as usize;
        if id >= rows_t {
            candle_core::bail!("embedding id {id} out of range (table has {rows_t} rows)");
        }
        g[id * width..(id + 1) * width].iter_mut().zip(row).for_each(|(a, b)| *a += b);
    }
    put(grads, table, g, table.device())
}

#[cfg(test)]
#[path = "train_tests.rs"]
mod tests;
