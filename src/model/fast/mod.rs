//! A hand-written forward pass for the post-norm encoders (BERT, RoBERTa,
//! XLM-R, DistilBERT, ELECTRA, ALBERT) on the CPU, in f32, and its backward
//! for the gradients explanations read ([`backward`]).
//!
//! At 8–128 tokens candle's per-op costs (an allocation and a thread-pool
//! dispatch per op, q/k/v and context transposes made contiguous) outweigh the
//! arithmetic of a small encoder. Here a layer is four `gemm` matmul passes
//! that read the weights packed in panels, copied once from the candle
//! tensors on first use ([`PackedWeights`]; fine-tuning reads them in place,
//! as their values change every step), attention
//! per (sequence, head) on strided views of one q/k/v buffer, and bias,
//! residual, GELU, layer norm and softmax as one row-wise loop each. The
//! parallel sections of one pass run on one team of pool threads that spin
//! between them ([`team`]) instead of waking rayon's workers each time.
//!
//! candle stays the tensor library: inputs and outputs are candle tensors and
//! the classification head runs on candle (its backward too). Fine-tuning
//! steps of BERT-shaped encoders have their own forward and backward
//! ([`train`]). Every other case — DeBERTa's relative terms,
//! ModernBERT, non-f32 or non-CPU tensors — keeps the candle graph
//! ([`super::encoder::Encoder::forward`]).
//! `ops::set_fast(false)` (or `ops::set_fused(false)`) turns this path off.

mod attention;
mod backward;
mod first_query;
mod linear;
mod row_back;
mod rows;
mod team;
mod train;

pub(super) use backward::{FastGradients, gradients};
pub(super) use linear::serial;
pub(crate) use linear::dense;
pub(super) use row_back::{head_log_prob_back, head_logits_rows, post_attention_row_back};
pub(super) use team::with_team;
pub(super) use train::step as train_step;

use super::encoder::{Encoder, EncoderInput, EncoderOutput, LayerNorm};
use candle_core::{CpuStorage, Storage, StorageRef, Tensor};
use linear::{Epilogue, Lin, linear};

/// Read access to the f32 values of a contiguous CPU tensor, in place.
struct View<'a> {
    guard: StorageRef<'a>,
    start: usize,
    end: usize,
    dims: Vec<usize>,
}

impl<'a> View<'a> {
    /// `None` unless the tensor is a contiguous f32 CPU tensor.
    fn of(t: &'a Tensor) -> Option<Self> {
        let (guard, layout) = t.storage_and_layout();
        let (start, end) = layout.contiguous_offsets()?;
        matches!(&*guard, Storage::Cpu(CpuStorage::F32(_))).then(|| Self { guard, start, end, dims: t.dims().to_vec() })
    }

    fn data(&self) -> &[f32] {
        match &*self.guard {
            Storage::Cpu(CpuStorage::F32(v)) => &v[self.start..self.end],
            _ => &[],
        }
    }
}

/// Copies of linear weights packed for gemm, made on first use and keyed by
/// where the weight's values live (so ALBERT's shared layers share one copy)
/// and by direction: `Wᵀ` in panels for the forward pass, `W` in panels for
/// the input gradient ([`pack_panels`]). Read in place, gemm either packs a
/// strided `Wᵀ` element by element on every call (18–21% of a 128-token
/// forward pass) or, for few rows, streams it with one broadcast per weight
/// and half-empty registers (an 8-token forward pass ran at 27 GFLOP/s on one
/// core). A panel is one contiguous stream with full registers: see
/// docs/PERFORMANCE.md, session 14. The price is up to two more copies of the
/// linear weights in memory (the second only once gradients are asked for).
/// Fine-tuning changes weights in place, so it calls
/// [`PackedWeights::clear`] after every step.
#[derive(Default)]
pub(crate) struct PackedWeights(std::sync::RwLock<PanelsByWeight>);

/// Panels keyed by (where the weight's values live, their count, backward).
type PanelsByWeight = std::collections::HashMap<(usize, usize, bool), std::sync::Arc<Vec<f32>>>;

/// Whether the hand-written passes read packed copies: `EXPNET_PACK=0`
/// reads every weight in place instead (no copies in memory, slower).
fn packing() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("EXPNET_PACK").map_or(true, |v| v != "0"))
}

impl PackedWeights {
    /// The panels of `w` (`[n, k]`) for the forward pass, or for the input
    /// gradient when `back`.
    fn get(&self, w: &[f32], n: usize, k: usize, back: bool) -> std::sync::Arc<Vec<f32>> {
        let key = (w.as_ptr() as usize, w.len(), back);
        if let Some(t) = self.0.read().unwrap_or_else(|e| e.into_inner()).get(&key) {
            return t.clone();
        }
        let t = if back { pack_panels(w, k, n, 1, k) } else { pack_panels(w, n, k, k, 1) };
        let mut map = self.0.write().unwrap_or_else(|e| e.into_inner());
        map.entry(key).or_insert_with(|| std::sync::Arc::new(t)).clone()
    }

    /// Forgets every copy (the weights changed).
    pub(crate) fn clear(&self) {
        self.0.write().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

/// A `rows × depth` matrix, `a(r, d) = w[r·rs + d·ds]`, in panels of
/// [`linear::PANEL`] rows, each stored column-major: `a(p·P + i, d)` at
/// `(p·depth + d)·P + i`, zero past `rows`. gemm reads a panel as its left
/// operand (column stride `P`, unit row stride) in one contiguous stream.
pub(super) fn pack_panels(w: &[f32], rows: usize, depth: usize, rs: usize, ds: usize) -> Vec<f32> {
    const P: usize = linear::PANEL;
    assert!(rows == 0 || depth == 0 || (rows - 1) * rs + (depth - 1) * ds < w.len(), "pack_panels: out of bounds");
    let mut t = vec![0f32; rows.div_ceil(P) * P * depth];
    for (p, panel) in t.chunks_mut(P * depth).enumerate() {
        let height = P.min(rows - p * P);
        // Read `w` along its contiguous axis (a panel stays in cache meanwhile).
        if ds == 1 {
            for i in 0..height {
                let src = &w[(p * P + i) * rs..][..depth];
                src.iter().enumerate().for_each(|(d, v)| panel[d * P + i] = *v);
            }
        } else {
            for (d, col) in panel.chunks_mut(P).enumerate() {
                col[..height].iter_mut().enumerate().for_each(|(i, v)| *v = w[(p * P + i) * rs + d * ds]);
            }
        }
    }
    t
}

/// Views of a linear layer's weight `[n, k]` and bias, and optionally its packed panels.
struct LinView<'a> {
    w: View<'a>,
    b: Option<View<'a>>,
    panels: Option<std::sync::Arc<Vec<f32>>>,
    back_panels: Option<std::sync::Arc<Vec<f32>>>,
}

impl<'a> LinView<'a> {
    fn of(l: &'a candle_nn::Linear) -> Option<Self> {
        let w = View::of(l.weight())?;
        if w.dims.len() != 2 {
            return None;
        }
        let b = match l.bias() {
            Some(b) => Some(View::of(b).filter(|v| v.dims == [w.dims[0]])?),
            None => None,
        };
        Some(Self { w, b, panels: None, back_panels: None })
    }

    /// The same view, reading packed panels from `cache`: in [`linear`], or
    /// in [`linear_back`] when `back`.
    fn packed(mut self, cache: &PackedWeights, back: bool) -> Self {
        let p = cache.get(self.w.data(), self.w.dims[0], self.w.dims[1], back);
        if back {
            self.back_panels = Some(p);
        } else {
            self.panels = Some(p);
        }
        self
    }

    fn lin(&self) -> Lin<'_> {
        let (panels, back_panels) = (self.panels.as_deref().map(Vec::as_slice), self.back_panels.as_deref().map(Vec::as_slice));
        Lin { w: self.w.data(), b: self.b.as_ref().map(View::data), n: self.w.dims[0], k: self.w.dims[1], wt: None, panels, back_panels }
    }
}

struct NormView<'a> {
    w: View<'a>,
    b: View<'a>,
    eps: f32,
}

impl<'a> NormView<'a> {
    fn of(n: &'a LayerNorm, width: usize) -> Option<Self> {
        let (w, b) = (View::of(&n.weight)?, View::of(&n.bias)?);
        (w.dims == [width] && b.dims == [width]).then_some(Self { w, b, eps: n.eps as f32 })
    }

    fn apply(&self, x: &mut [f32]) {
        rows::layer_norm(x, self.w.data(), self.b.data(), self.eps)
    }
}

/// Whether [`forward`] may replace the candle graph for this encoder and input.
pub(super) fn eligible(enc: &Encoder, input: &EncoderInput) -> bool {
    enc.fast_capable()
        && input.word_embeds.device().is_cpu()
        && input.word_embeds.dtype() == candle_core::DType::F32
}

/// The inference forward pass. `keep` = return every hidden state and
/// attention matrix (else only the last hidden state and the logits, for
/// perturbation batches). `Ok(None)` when a weight is not a contiguous f32 CPU
/// tensor: the caller then runs the candle graph.
///
/// Without `keep` the last layer runs for the first token only
/// ([`first_query`]): the returned last hidden state is then `[batch, 1, hidden]`.
pub(super) fn forward(enc: &Encoder, input: &EncoderInput, keep: bool) -> candle_core::Result<Option<EncoderOutput>> {
    run(enc, input, keep, None, !keep)
}

/// [`forward`] keeping every attention matrix and hidden state except in
/// the last layer, which runs for the first token only: its attention
/// matrices hold the first query's row, and its output the first token's row,
/// with every other row NaN (so that a reader that should not be there shows
/// it). For methods that read nothing else of the last layer (raw [CLS]
/// attention, rollout): 1/7 of a 6-layer forward pass skipped.
pub(super) fn forward_first_query(enc: &Encoder, input: &EncoderInput) -> candle_core::Result<Option<EncoderOutput>> {
    run(enc, input, true, None, true)
}

/// [`forward`], recording on `tape` what the backward pass needs when given;
/// `first_only` = the last layer for the first token only (with `keep`, its
/// other rows come back NaN: [`forward_first_query`]).
fn run(
    enc: &Encoder,
    input: &EncoderInput,
    keep: bool,
    tape: Option<&mut backward::Tape>,
    first_only: bool,
) -> candle_core::Result<Option<EncoderOutput>> {
    team::with_team(|| run_on(enc, input, keep, tape, first_only))
}

/// [`run`] on the calling thread's team (if any).
fn run_on(
    enc: &Encoder,
    input: &EncoderInput,
    keep: bool,
    mut tape: Option<&mut backward::Tape>,
    first_only: bool,
) -> candle_core::Result<Option<EncoderOutput>> {
    // A taped run (the backward pass) returns its attentions from the tape.
    debug_assert!(!keep || tape.is_none(), "a taped run keeps no attentions");
    let cfg = &enc.cfg;
    let (batch, len, emb) = input.word_embeds.dims3()?;
    let (hidden, heads) = (cfg.hidden_size, cfg.num_heads);
    if heads == 0 || hidden % heads != 0 || len == 0 {
        return Ok(None);
    }
    let rows_n = batch * len;
    let Some(mut x) = embeddings(enc, input, batch, len, emb)? else { return Ok(None) };
    let Some(norm) = NormView::of(&enc.embed_norm, emb) else { return Ok(None) };
    if let Some(t) = tape.as_deref_mut() {
        t.embed_sum = x.clone();
    }
    norm.apply(&mut x);
    drop(norm);
    if let Some(p) = &enc.embed_project {
        let Some(pv) = LinView::of(p) else { return Ok(None) };
        let lin = pv.lin();
        if lin.k != emb || lin.n != hidden {
            return Ok(None);
        }
        let mut y = vec![0f32; rows_n * hidden];
        linear(&x, rows_n, &lin, &mut y, hidden, 0, Epilogue::Bias);
        x = y;
    } else if emb != hidden {
        return Ok(None);
    }
    let mask = additive_mask(input, batch, len)?;
    let dims = attention::Dims { batch, len, heads, hidden };
    if let Some(t) = tape.as_deref_mut() {
        t.dims = dims;
    }
    let scale = 1.0 / ((hidden / heads) as f32).sqrt();
    let device = input.word_embeds.device();
    let mut hidden_states = Vec::new();
    let mut attentions = Vec::new();
    // Scratch reused by every layer.
    let mut qkv = vec![0f32; rows_n * 3 * hidden];
    let mut ctx = vec![0f32; rows_n * hidden];
    let mut h = vec![0f32; rows_n * hidden];
    let mut inter = Vec::new();
    let mut first_rows_only = false;
    for (li, layer) in enc.layers.iter().enumerate() {
        let Some(v) = LayerViews::of(layer, hidden) else { return Ok(None) };
        let v = v.packed(&enc.packed, false);
        if first_only && li + 1 == enc.layers.len() {
            let (out, probs) = first_query::forward(&v, &x, dims, scale, mask.as_deref(), cfg.activation, &mut qkv, tape.as_deref_mut(), keep);
            if let Some(p) = probs {
                attentions.push(Tensor::from_vec(first_rows_of_nan(&p, batch * heads, len, len), (batch, heads, len, len), device)?);
                let prev = std::mem::replace(&mut x, out);
                hidden_states.push(Tensor::from_vec(prev, (batch, len, hidden), device)?);
            } else {
                x = out;
            }
            first_rows_only = true;
            break;
        }
        let inter_n = v.ffn_in.w.dims[0];
        inter.resize(rows_n * inter_n, 0.0);
        for (i, l) in [&v.query, &v.key, &v.value].into_iter().enumerate() {
            linear(&x, rows_n, &l.lin(), &mut qkv, 3 * hidden, i * hidden, Epilogue::Bias);
        }
        let want_probs = keep || tape.is_some();
        let mut probs = if want_probs { vec![0f32; batch * heads * len * len] } else { Vec::new() };
        attention::attention(&qkv, dims, scale, mask.as_deref(), want_probs.then_some(probs.as_mut_slice()), &mut ctx);
        linear(&ctx, rows_n, &v.attn_out.lin(), &mut h, hidden, 0, Epilogue::Residual(&x));
        let attn_sum = tape.is_some().then(|| h.clone());
        v.attn_norm.apply(&mut h);
        let ffn_pre = if tape.is_some() {
            // The backward pass needs the activation's input.
            let mut pre = vec![0f32; rows_n * inter_n];
            linear(&h, rows_n, &v.ffn_in.lin(), &mut inter, inter_n, 0, Epilogue::ActKeep(cfg.activation, linear::Keep::new(&mut pre)));
            pre
        } else {
            linear(&h, rows_n, &v.ffn_in.lin(), &mut inter, inter_n, 0, Epilogue::Act(cfg.activation));
            Vec::new()
        };
        let mut out = if keep { vec![0f32; rows_n * hidden] } else { std::mem::take(&mut x) };
        linear(&inter, rows_n, &v.ffn_out.lin(), &mut out, hidden, 0, Epilogue::Residual(&h));
        let out_sum = tape.is_some().then(|| out.clone());
        v.out_norm.apply(&mut out);
        match tape.as_deref_mut() {
            Some(t) => {
                t.layers.push(backward::LayerTape {
                    qkv: qkv.clone(),
                    probs,
                    attn_sum: attn_sum.unwrap_or_default(),
                    ffn_pre,
                    out_sum: out_sum.unwrap_or_default(),
                    first_query: None,
                });
            }
            None if keep => attentions.push(Tensor::from_vec(probs, (batch, heads, len, len), device)?),
            None => {}
        }
        let prev = std::mem::replace(&mut x, out);
        if keep {
            hidden_states.push(Tensor::from_vec(prev, (batch, len, hidden), device)?);
        }
    }
    let cls: Vec<f32> = if first_rows_only {
        x.clone()
    } else {
        x.chunks(len * hidden).flat_map(|seq| seq[..hidden].iter().copied()).collect()
    };
    if keep && first_rows_only {
        hidden_states.push(Tensor::from_vec(first_rows_of_nan(&x, batch, len, hidden), (batch, len, hidden), device)?);
    } else {
        let last_len = if first_rows_only { 1 } else { len };
        hidden_states.push(Tensor::from_vec(x, (batch, last_len, hidden), device)?);
    }
    let logits = match &enc.head {
        Some(head) => Some(head.forward(&Tensor::from_vec(cls, (batch, hidden), device)?, super::encoder::RunMode::INFERENCE)?),
        None => None,
    };
    Ok(Some(EncoderOutput { hidden_states, attentions, attention_probes: Vec::new(), logits }))
}

/// `blocks` blocks of `rows × width` whose first row is the next `width`
/// values of `first` and every other value NaN.
fn first_rows_of_nan(first: &[f32], blocks: usize, rows: usize, width: usize) -> Vec<f32> {
    debug_assert_eq!(first.len(), blocks * width);
    let mut out = vec![f32::NAN; blocks * rows * width];
    for (block, row) in out.chunks_mut(rows * width).zip(first.chunks(width)) {
        block[..width].copy_from_slice(row);
    }
    out
}

/// The attention mask as additive values per key, `[batch·len]`: 0 for a
/// token, −1e9 for padding (`None` without a mask).
fn additive_mask(input: &EncoderInput, batch: usize, len: usize) -> candle_core::Result<Option<Vec<f32>>> {
    let Some(m) = input.attention_mask else { return Ok(None) };
    let mask: Vec<f32> = m.flatten_all()?.to_dtype(candle_core::DType::F32)?.to_vec1::<f32>()?.iter().map(|&v| (1.0 - v) * -1e9).collect();
    if mask.len() != batch * len {
        candle_core::bail!("attention mask has {} values for {batch}×{len} tokens", mask.len());
    }
    Ok(Some(mask))
}

/// Word + position + type embeddings, `[batch·len, emb]` (before their layer norm).
fn embeddings(enc: &Encoder, input: &EncoderInput, batch: usize, len: usize, emb: usize) -> candle_core::Result<Option<Vec<f32>>> {
    let words = input.word_embeds.contiguous()?;
    let Some(wv) = View::of(&words) else { return Ok(None) };
    let mut x = wv.data().to_vec();
    drop(wv);
    for (table, ids) in [(&enc.position_embeddings, input.position_ids), (&enc.type_embeddings, input.type_ids)] {
        let Some(table) = table else { continue };
        let Some(tv) = View::of(table.embeddings()) else { return Ok(None) };
        if tv.dims.len() != 2 || tv.dims[1] != emb {
            return Ok(None);
        }
        let ids = ids.flatten_all()?.to_dtype(candle_core::DType::U32)?.to_vec1::<u32>()?;
        if ids.len() != batch * len {
            candle_core::bail!("{} ids for {batch}×{len} tokens", ids.len());
        }
        let t = tv.data();
        for (row, &id) in x.chunks_mut(emb).zip(&ids) {
            let id = id as usize;
            if id >= tv.dims[0] {
                candle_core::bail!("embedding id {id} out of range (table has {} rows)", tv.dims[0]);
            }
            row.iter_mut().zip(&t[id * emb..(id + 1) * emb]).for_each(|(v, e)| *v += e);
        }
    }
    Ok(Some(x))
}

/// In-place views of one layer's weights, held for the duration of the layer.
struct LayerViews<'a> {
    query: LinView<'a>,
    key: LinView<'a>,
    value: LinView<'a>,
    attn_out: LinView<'a>,
    attn_norm: NormView<'a>,
    ffn_in: LinView<'a>,
    ffn_out: LinView<'a>,
    out_norm: NormView<'a>,
}

impl<'a> LayerViews<'a> {
    fn of(l: &'a super::encoder::Layer, hidden: usize) -> Option<Self> {
        let v = Self {
            query: LinView::of(&l.query)?,
            key: LinView::of(&l.key)?,
            value: LinView::of(&l.value)?,
            attn_out: LinView::of(&l.attn_out)?,
            attn_norm: NormView::of(&l.attn_norm, hidden)?,
            ffn_in: LinView::of(&l.ffn_in)?,
            ffn_out: LinView::of(&l.ffn_out)?,
            out_norm: NormView::of(&l.out_norm, hidden)?,
        };
        let square = |l: &LinView| l.w.dims == [hidden, hidden];
        let inter = v.ffn_in.w.dims[0];
        let ok = square(&v.query)
            && square(&v.key)
            && square(&v.value)
            && square(&v.attn_out)
            && v.ffn_in.w.dims == [inter, hidden]
            && v.ffn_out.w.dims == [hidden, inter];
        ok.then_some(v)
    }

    /// Every linear reading packed panels from `cache` ([`LinView::packed`]),
    /// unless packing is off ([`packing`]).
    fn packed(self, cache: &PackedWeights, back: bool) -> Self {
        if !packing() {
            return self;
        }
        Self {
            query: self.query.packed(cache, back),
            key: self.key.packed(cache, back),
            value: self.value.packed(cache, back),
            attn_out: self.attn_out.packed(cache, back),
            ffn_in: self.ffn_in.packed(cache, back),
            ffn_out: self.ffn_out.packed(cache, back),
            ..self
        }
    }
}

#[cfg(test)]
mod tests;
