//! The hand-written backward pass of [`super::forward`]: gradients of chosen
//! logits w.r.t. the word embeddings and every attention matrix, for
//! saliency, grad×input, integrated gradients, Chefer and Grad-SAM.
//!
//! The candle graph computes the same numbers with a dozen ops per layer
//! norm and softmax, and weight gradients for every matmul that nobody
//! reads. Here each layer's backward is the reverse of its forward: two
//! layer-norm backwards, the activation's derivative, attention's backward
//! per (sequence, head) on strided views, and five input-gradient matmuls
//! (`dx = dy·W`, weights read in place). The classification head is tiny and
//! stays on candle's autograd.

use super::attention::Dims;
use super::linear::{Out, View, linear_back, matmul_into, parallel, tasks};
use super::{LayerViews, LinView, NormView, rows};
use crate::model::encoder::{Encoder, EncoderInput, RunMode};
use candle_core::{Tensor, Var};

/// What the forward pass keeps for the backward pass (pre-norm sums and the
/// activation's input, since the norms and GELU are differentiated at their
/// inputs; q/k/v and the probabilities for attention). Padding needs no
/// mask here: masked keys have probability 0, so their gradients vanish.
#[derive(Default)]
pub(super) struct Tape {
    pub dims: Dims,
    /// Word + position + type embeddings before their layer norm.
    pub embed_sum: Vec<f32>,
    pub layers: Vec<LayerTape>,
}

/// One layer's part of the [`Tape`].
pub(super) struct LayerTape {
    /// `[rows, 3·hidden]`: q, k, v side by side.
    pub qkv: Vec<f32>,
    /// `[batch, heads, len, len]` attention probabilities.
    pub probs: Vec<f32>,
    /// Attention output + residual, the first norm's input.
    pub attn_sum: Vec<f32>,
    /// The feed-forward activation's input.
    pub ffn_pre: Vec<f32>,
    /// Feed-forward output + residual, the second norm's input.
    pub out_sum: Vec<f32>,
    /// `Some([batch, hidden])` queries when the layer ran for the first token
    /// only ([`super::first_query`]); every per-row buffer but `qkv` then
    /// has one row per sequence and `probs` is `[batch, heads, len]`.
    pub first_query: Option<Vec<f32>>,
}

/// Result of [`gradients`] for a batch.
pub(in crate::model) struct FastGradients {
    /// Classifier logits, `[batch][classes]`.
    pub logits: Vec<Vec<f32>>,
    /// d Σᵢ logit[i, targets[i]] / d word embeddings, `[batch, len, emb]` flat
    /// (each text's rows hold the gradient of its own logit: texts do not mix).
    pub embed_grads: Vec<f32>,
    /// Per layer `[batch, heads, len, len]`; empty unless attention was asked for.
    pub attentions: Vec<Tensor>,
    /// d Σ logits / d attention probabilities, same layout as `attentions`.
    pub attention_grads: Vec<Tensor>,
}

/// Forward and backward of the `targets[i]` logit of every text in the
/// batch. `Ok(None)` when the hand-written forward does not cover this
/// encoder (the caller then uses the candle graph) or it has no head.
pub(in crate::model) fn gradients(
    enc: &Encoder,
    input: &EncoderInput,
    targets: &[usize],
    with_attention: bool,
) -> candle_core::Result<Option<FastGradients>> {
    let Some(head) = &enc.head else { return Ok(None) };
    let mut tape = Tape::default();
    // Without attention outputs only the logits matter: the last layer runs
    // for the first token only.
    let Some(out) = super::run(enc, input, false, Some(&mut tape), !with_attention)? else { return Ok(None) };
    let Dims { batch, len, heads, hidden } = tape.dims;
    if targets.len() != batch {
        candle_core::bail!("{} targets for a batch of {batch}", targets.len());
    }
    let device = input.word_embeds.device();
    // Head: candle autograd from the [CLS] rows.
    let last = out.hidden_states.last().expect("the forward pass returns the last hidden state");
    let cls = Var::from_tensor(&last.narrow(1, 0, 1)?.squeeze(1)?)?;
    let mode = RunMode { differentiable: true, attention_probes: false, dropout: None };
    let logits = head.forward(cls.as_tensor(), mode)?;
    let classes = logits.dim(1)?;
    let mut pick = vec![0f32; batch * classes];
    for (i, &t) in targets.iter().enumerate() {
        if t >= classes {
            candle_core::bail!("target {t} is out of range (the model has {classes} labels)");
        }
        pick[i * classes + t] = 1.0;
    }
    let chosen = (&logits * Tensor::from_vec(pick, (batch, classes), device)?)?.sum_all()?;
    let grads = chosen.backward()?;
    let d_cls = grads.get(cls.as_tensor()).ok_or_else(|| candle_core::Error::Msg("no gradient reached [CLS]".into()))?;
    let d_cls = d_cls.flatten_all()?.to_vec1::<f32>()?;

    let rows_n = batch * len;
    let mut dx = vec![0f32; rows_n * hidden];
    let first_only = tape.layers.last().is_some_and(|l| l.first_query.is_some());
    if !first_only {
        for b in 0..batch {
            dx[b * len * hidden..b * len * hidden + hidden].copy_from_slice(&d_cls[b * hidden..(b + 1) * hidden]);
        }
    }
    let scale = 1.0 / ((hidden / heads) as f32).sqrt();
    let mut attention_grads = Vec::new();
    let mut attentions = Vec::new();
    // Scratch reused by every layer.
    let mut d_sum = vec![0f32; rows_n * hidden];
    let mut d_h = vec![0f32; rows_n * hidden];
    let mut d_ctx = vec![0f32; rows_n * hidden];
    let mut d_qkv = vec![0f32; rows_n * 3 * hidden];
    let mut d_inter = Vec::new();
    let dims = tape.dims;
    // The tape is consumed: each layer's probabilities move into the output.
    for (layer, lt) in enc.layers.iter().zip(std::mem::take(&mut tape.layers)).rev() {
        let Some(v) = LayerViews::of(layer, hidden).map(|v| v.packed(&enc.packed, true)) else { return Ok(None) };
        if lt.first_query.is_some() {
            super::first_query::backward(&v, &lt, dims, scale, enc.cfg.activation, &d_cls, &mut d_qkv, &mut dx);
            continue;
        }
        let inter_n = v.ffn_in.w.dims[0];
        // Second norm, then the feed-forward block (its residual passes d_sum on).
        rows::layer_norm_back(&lt.out_sum, v.out_norm.w.data(), v.out_norm.eps, &dx, &mut d_sum);
        d_inter.resize(rows_n * inter_n, 0.0);
        linear_back(&d_sum, hidden, 0, rows_n, &v.ffn_out.lin(), &mut d_inter, false);
        rows::activate_back(&lt.ffn_pre, &mut d_inter, enc.cfg.activation);
        d_h.copy_from_slice(&d_sum);
        linear_back(&d_inter, inter_n, 0, rows_n, &v.ffn_in.lin(), &mut d_h, true);
        // First norm, then attention (its residual passes d_sum on).
        rows::layer_norm_back(&lt.attn_sum, v.attn_norm.w.data(), v.attn_norm.eps, &d_h, &mut d_sum);
        linear_back(&d_sum, hidden, 0, rows_n, &v.attn_out.lin(), &mut d_ctx, false);
        let mut d_probs = if with_attention { vec![0f32; batch * heads * len * len] } else { Vec::new() };
        attention_back(&lt.qkv, &lt.probs, None, dims, scale, &d_ctx, with_attention.then_some(d_probs.as_mut_slice()), &mut d_qkv);
        if with_attention {
            attention_grads.push(Tensor::from_vec(d_probs, (batch, heads, len, len), device)?);
            attentions.push(Tensor::from_vec(lt.probs, (batch, heads, len, len), device)?);
        }
        dx.copy_from_slice(&d_sum);
        for (i, l) in [&v.query, &v.key, &v.value].into_iter().enumerate() {
            linear_back(&d_qkv, 3 * hidden, i * hidden, rows_n, &l.lin(), &mut dx, true);
        }
    }
    attention_grads.reverse();
    attentions.reverse();
    // Embeddings: the optional projection, then their layer norm.
    let emb = tape.embed_sum.len() / rows_n.max(1);
    if let Some(p) = &enc.embed_project {
        let Some(pv) = LinView::of(p) else { return Ok(None) };
        let mut d = vec![0f32; rows_n * emb];
        linear_back(&dx, hidden, 0, rows_n, &pv.lin(), &mut d, false);
        dx = d;
    }
    let Some(norm) = NormView::of(&enc.embed_norm, emb) else { return Ok(None) };
    let mut embed_grads = vec![0f32; rows_n * emb];
    rows::layer_norm_back(&tape.embed_sum, norm.w.data(), norm.eps, &dx, &mut embed_grads);
    Ok(Some(FastGradients { logits: logits.to_vec2()?, embed_grads, attentions, attention_grads }))
}

/// Attention's backward per (sequence, head): from the context gradient
/// `d_ctx` (`[rows, hidden]`) to the q/k/v gradients (`[rows, 3·hidden]`,
/// overwritten) and, when asked, the probabilities' gradient. `dropped` =
/// the probabilities after dropout and the kept entries' scale `1/(1 − p)`
/// (training): the context was `dropped·v`, so `v`'s gradient reads them and
/// the probabilities' gradient is masked like them.
#[allow(clippy::too_many_arguments)]
pub(super) fn attention_back(
    qkv: &[f32],
    probs: &[f32],
    dropped: Option<(&[f32], f32)>,
    d: Dims,
    scale: f32,
    d_ctx: &[f32],
    d_probs: Option<&mut [f32]>,
    d_qkv: &mut [f32],
) {
    let Dims { batch, len, heads, hidden } = d;
    let dh = hidden / heads;
    let (ld, ll) = (3 * hidden, len * len);
    assert!(qkv.len() == batch * len * ld && d_qkv.len() == qkv.len() && probs.len() == batch * heads * ll, "attention backward: shapes disagree");
    assert!(dropped.is_none_or(|(pd, _)| pd.len() == probs.len()), "attention backward: dropout shapes disagree");
    let dp_out = d_probs.map(|p| Out(p.as_mut_ptr()));
    let dq = Out(d_qkv.as_mut_ptr());
    let par = parallel(8 * batch * heads * ll * dh);
    tasks(batch * heads, par, |t| {
        let (b, h) = (t / heads, t % heads);
        let base = b * len * ld + h * dh;
        let ctx_base = b * len * hidden + h * dh;
        let p = &probs[t * ll..(t + 1) * ll];
        // What multiplied v in the forward pass.
        let pv = dropped.map_or(p, |(pd, _)| &pd[t * ll..(t + 1) * ll]);
        let mut scratch = Vec::new();
        let dp: &mut [f32] = match dp_out {
            // SAFETY: task t owns block t of the probability gradient.
            Some(o) => unsafe { std::slice::from_raw_parts_mut(o.at(t * ll), ll) },
            None => {
                scratch.resize(ll, 0.0);
                &mut scratch
            }
        };
        // SAFETY: every view stays inside its buffer (rows of sequence b,
        // columns of head h); task t alone writes head h's columns of the
        // rows of sequence b in `d_qkv`.
        unsafe {
            // dP[i, j] = Σ_c dctx[i, c]·v[j, c]
            matmul_into(
                len,
                len,
                dh,
                (dp.as_mut_ptr(), 1, len as isize),
                View(d_ctx.as_ptr().add(ctx_base), 1, hidden as isize),
                View(qkv.as_ptr().add(base + 2 * hidden), ld as isize, 1),
                false,
            );
            // dv[j, c] = Σ_i P[i, j]·dctx[i, c]
            matmul_into(
                len,
                dh,
                len,
                (dq.at(base + 2 * hidden), 1, ld as isize),
                View(pv.as_ptr(), len as isize, 1),
                View(d_ctx.as_ptr().add(ctx_base), 1, hidden as isize),
                false,
            );
            // Dropout: a dropped entry passed no gradient, a kept one `1/(1 − p)` of it.
            if let Some((_, keep_scale)) = dropped {
                dp.iter_mut().zip(pv).for_each(|(g, &kept)| *g = if kept != 0.0 { *g * keep_scale } else { 0.0 });
            }
            // dS = scale · P ⊙ (dP − Σ_j P·dP), row by row.
            let mut ds = vec![0f32; ll];
            for ((dsr, pr), dpr) in ds.chunks_mut(len).zip(p.chunks(len)).zip(dp.chunks(len)) {
                let dot: f32 = pr.iter().zip(dpr).map(|(a, b)| a * b).sum();
                for ((o, &pv), &g) in dsr.iter_mut().zip(pr).zip(dpr) {
                    *o = scale * pv * (g - dot);
                }
            }
            // dq = dS·k, dk = dSᵀ·q
            matmul_into(
                len,
                dh,
                len,
                (dq.at(base), 1, ld as isize),
                View(ds.as_ptr(), 1, len as isize),
                View(qkv.as_ptr().add(base + hidden), 1, ld as isize),
                false,
            );
            matmul_into(
                len,
                dh,
                len,
                (dq.at(base + hidden), 1, ld as isize),
                View(ds.as_ptr(), len as isize, 1),
                View(qkv.as_ptr().add(base), 1, ld as isize),
                false,
            );
        }
    });
}
