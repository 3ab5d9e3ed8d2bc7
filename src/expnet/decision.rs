//! Decision-aligned per-token features for distilled ExpNets.
//!
//! Attention and hidden states say where the model looked and what a token
//! holds, not which way it pushes *this* prediction. These columns project
//! what each token sends through every attention head onto the classifier's
//! local decision direction `g`: the gradient of the explained class's log
//! probability with respect to the last layer's pre-norm [CLS] state,
//! computed through that layer's norm, its feed-forward block on the [CLS]
//! row, the final norm and the head — one small backward pass over a single
//! row, never through the encoder's attention.
//!
//! With `f_h(x_j) = (x_j W_V + b_V)_h W_O^h` (see `explain::decomposition`)
//! and `p_hj = ⟨g, f_h(x_j)⟩`, token `j`'s columns per layer `l` and head `h` are
//! `α^h_0j · p_hj` (what it sends to [CLS], along the decision),
//! `p_hj` (what it would send), and `mean_i α^h_ij · p_hj` (what it sends to
//! every token), then `⟨g, x^l_j⟩` for every hidden state `l = 0..=L`. In the
//! last layer `Σ_j Σ_h α^h_0j p_hj` is exactly the first-order change of the
//! log probability through that layer's attention; earlier layers reuse the
//! same direction (the residual stream carries it), an approximation the
//! network learns around. `g` is scaled to unit length. `p_hj` costs `O(n·d·H)` per layer: `g` is folded
//! into the value and output weights first, so no `[n, d]` product is formed.

use candle_core::{D, Device, Tensor, Var};

use crate::model::encoder::AttentionBlockParams;
use crate::model::{ForwardOutput, Model};

/// Columns per token for an `layers × heads` encoder.
pub fn width(layers: usize, heads: usize) -> usize {
    3 * layers * heads + layers + 1
}

/// Column names, in the order of [`decision_rows`].
pub fn names(layers: usize, heads: usize) -> Vec<String> {
    let mut out = Vec::with_capacity(width(layers, heads));
    for group in ["to_cls", "value", "to_all"] {
        for l in 0..layers {
            (0..heads).for_each(|h| out.push(format!("decision.{group}.L{l}.H{h}")));
        }
    }
    (0..=layers).for_each(|l| out.push(format!("decision.hidden.L{l}")));
    out
}

fn block(model: &Model, layer: usize) -> anyhow::Result<AttentionBlockParams> {
    model.encoder().attention_block(layer).ok_or_else(|| {
        anyhow::anyhow!(
            "decision features need a post-norm BERT-style encoder; {} has no attention block {layer} (hint: --features all)",
            model.name
        )
    })
}

fn layer_norm(x: &Tensor, w: &Tensor, b: &Tensor, eps: f64) -> candle_core::Result<Tensor> {
    let centred = x.broadcast_sub(&x.mean_keepdim(D::Minus1)?)?;
    let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
    centred.broadcast_div(&(var + eps)?.sqrt()?)?.broadcast_mul(w)?.broadcast_add(b)
}

/// `[n, d]` tensor of one layer's hidden states (`layer` 0 = embeddings).
fn states(forward: &ForwardOutput, layer: usize, device: &Device) -> anyhow::Result<Tensor> {
    let rows = &forward.hidden_states[layer];
    let d = rows.first().map_or(0, Vec::len);
    let flat: Vec<f32> = rows.iter().flatten().copied().collect();
    Ok(Tensor::from_vec(flat, (rows.len(), d), device)?)
}

/// The last layer's pre-norm [CLS] state, `Σ_j Σ_h α^h_0j f_h(x_j) + b_O + x_0`, `[1, d]`.
fn cls_pre_state(model: &Model, forward: &ForwardOutput, p: &AttentionBlockParams) -> anyhow::Result<Tensor> {
    let a = &forward.attentions;
    let (l, heads, n) = (a.layers - 1, a.heads, a.len);
    let device = p.value_weight.device().clone();
    let x = states(forward, l, &device)?;
    let d = x.dim(1)?;
    let dh = d / heads;
    let mut v = x.matmul(&p.value_weight.t()?)?;
    if let Some(b) = &p.value_bias {
        v = v.broadcast_add(b)?;
    }
    let v = v.reshape((n, heads, dh))?.transpose(0, 1)?.contiguous()?; // [heads, n, dh]
    let row0: Vec<f32> = (0..heads).flat_map(|h| a.head(l, h)[..n].to_vec()).collect();
    let a0 = Tensor::from_vec(row0, (heads, 1, n), &device)?;
    let ctx = a0.matmul(&v)?.reshape((1, d))?; // heads in order along d
    let mut out = ctx.matmul(&p.out_weight.t()?)?;
    if let Some(b) = &p.out_bias {
        out = out.broadcast_add(b)?;
    }
    let _ = model;
    Ok(out.add(&x.narrow(0, 0, 1)?)?)
}

/// The explained class's log probability as a function of the last layer's
/// pre-norm [CLS] state `pre` (`[1, d]`): norm, feed-forward, norm, head.
pub(crate) fn cls_log_prob(model: &Model, p: &AttentionBlockParams, pre: &Tensor, target: usize) -> anyhow::Result<Tensor> {
    let last = model.num_layers() - 1;
    let y = layer_norm(pre, &p.norm_weight, &p.norm_bias, p.norm_eps)?;
    let ffn = model.encoder().feed_forward(last, &y)?.ok_or_else(|| anyhow::anyhow!("layer {last} has no feed-forward block"))?;
    let h = layer_norm(&(ffn + &y)?, &p.output_norm_weight, &p.output_norm_bias, p.output_norm_eps)?;
    let logits = model.encoder().head_logits(&h)?.ok_or_else(|| anyhow::anyhow!("{} is a bare encoder: decision features need its classification head", model.name))?;
    let classes = logits.dim(1)?;
    anyhow::ensure!(target < classes, "explained class {target} is outside the model's {classes} classes");
    Ok(candle_nn::ops::log_softmax(&logits, 1)?.narrow(1, target, 1)?.sum_all()?)
}

/// The decision direction `g` (`[d]`) and the reconstructed final [CLS] state's
/// log probability (for checks).
pub(crate) fn decision_direction(model: &Model, forward: &ForwardOutput, target: usize) -> anyhow::Result<(Tensor, f32)> {
    let p = block(model, model.num_layers() - 1)?;
    let pre = cls_pre_state(model, forward, &p)?;
    let var = Var::from_tensor(&pre.detach())?;
    let lp = cls_log_prob(model, &p, var.as_tensor(), target)?;
    let grads = lp.backward()?;
    let g = grads.get(var.as_tensor()).ok_or_else(|| anyhow::anyhow!("no gradient reached the [CLS] state"))?;
    Ok((g.flatten_all()?.detach(), lp.to_scalar::<f32>()?))
}

/// One row of [`width`] columns per token (special tokens included).
pub fn decision_rows(model: &Model, forward: &ForwardOutput, target: usize) -> anyhow::Result<Vec<Vec<f32>>> {
    let a = &forward.attentions;
    let (layers, heads, n) = (a.layers, a.heads, a.len);
    anyhow::ensure!(
        forward.hidden_states.len() == layers + 1,
        "decision features need every layer's hidden state, the forward pass kept {}",
        forward.hidden_states.len()
    );
    let (g, _) = decision_direction(model, forward, target)?;
    // Unit length: the gradient shrinks as the prediction grows confident
    // (∝ 1 − p), a scale the per-input standardised targets do not have.
    let g = g.broadcast_div(&g.sqr()?.sum_all()?.sqrt()?.maximum(1e-12)?)?;
    let device = g.device().clone();
    let d = g.dim(0)?;
    let dh = d / heads;
    let mut rows = vec![vec![0f32; width(layers, heads)]; n];
    let lh = layers * heads;
    for l in 0..layers {
        let p = block(model, l)?;
        // G = W_Oᵀ g: head h's slice is W_O^h g. Then M_h = W_V[h]ᵀ G[h] so that p_hj = x_j·M_h + b_V[h]·G[h].
        let big_g = p.out_weight.t()?.matmul(&g.unsqueeze(1)?)?.squeeze(1)?; // [d] (input side of W_O)
        let wv = p.value_weight.broadcast_mul(&big_g.unsqueeze(1)?)?; // [d_out, d_in] rows scaled by G
        let m = wv.reshape((heads, dh, d))?.sum(1)?; // [heads, d]
        let x = states(forward, l, &device)?;
        let mut proj = x.matmul(&m.t()?)?; // [n, heads]
        if let Some(b) = &p.value_bias {
            let c = b.mul(&big_g)?.reshape((heads, dh))?.sum(1)?; // [heads]
            proj = proj.broadcast_add(&c)?;
        }
        let proj = proj.to_vec2::<f32>()?;
        for h in 0..heads {
            let att = a.head(l, h);
            let c = l * heads + h;
            for j in 0..n {
                let pj = proj[j][h];
                let received = (0..n).map(|i| att[i * n + j]).sum::<f32>() / n as f32;
                rows[j][c] = att[j] * pj;
                rows[j][lh + c] = pj;
                rows[j][2 * lh + c] = received * pj;
            }
        }
    }
    let gcol = g.unsqueeze(1)?;
    for l in 0..=layers {
        let dots = states(forward, l, &device)?.matmul(&gcol)?.squeeze(1)?.to_vec1::<f32>()?;
        for (row, v) in rows.iter_mut().zip(dots) {
            row[3 * lh + l] = v;
        }
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> Model {
        Model::load_dir(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-bert")).unwrap()
    }

    #[test]
    fn the_cls_path_rebuilds_the_models_own_prediction() {
        let model = tiny();
        let enc = model.encode("a good film with a dull ending").unwrap();
        let fwd = model.forward(&enc).unwrap();
        let logits = &fwd.prediction.as_ref().unwrap().logits;
        for target in 0..2 {
            let (_, lp) = decision_direction(&model, &fwd, target).unwrap();
            let m = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let lse = m + logits.iter().map(|v| (v - m).exp()).sum::<f32>().ln();
            assert!((lp - (logits[target] - lse)).abs() < 1e-4, "class {target}: rebuilt {lp}, model {}", logits[target] - lse);
        }
    }

    #[test]
    fn the_direction_is_the_gradient_and_last_layer_columns_sum_to_its_first_order_change() {
        let model = tiny();
        let enc = model.encode("not a bad story at all").unwrap();
        let fwd = model.forward(&enc).unwrap();
        let (g, _) = decision_direction(&model, &fwd, 1).unwrap();
        // Finite differences along a fixed direction agree with ⟨g, δ⟩.
        let p = block(&model, model.num_layers() - 1).unwrap();
        let pre = cls_pre_state(&model, &fwd, &p).unwrap();
        let d = pre.dim(1).unwrap();
        let delta: Vec<f32> = (0..d).map(|i| ((i * 37 % 11) as f32 - 5.0) / 5.0).collect();
        let delta = Tensor::from_vec(delta, (1, d), pre.device()).unwrap();
        let eps = 1e-2;
        let f = |t: &Tensor| cls_log_prob(&model, &p, t, 1).unwrap().to_scalar::<f32>().unwrap();
        let fd = (f(&(&pre + (&delta * eps).unwrap()).unwrap()) - f(&(&pre - (&delta * eps).unwrap()).unwrap())) / (2.0 * eps as f32);
        let analytic = g.mul(&delta.flatten_all().unwrap()).unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
        assert!((fd - analytic).abs() < 1e-2 * (1.0 + analytic.abs()), "finite difference {fd} vs gradient {analytic}");
        // Σ_j Σ_h α^h_0j p_hj in the last layer = ⟨g, attention output of [CLS] − b_O⟩.
        let rows = decision_rows(&model, &fwd, 1).unwrap();
        let (layers, heads) = (model.num_layers(), model.num_heads());
        assert_eq!(rows.len(), enc.len());
        assert!(rows.iter().all(|r| r.len() == width(layers, heads) && r.iter().all(|v| v.is_finite())));
        assert_eq!(names(layers, heads).len(), width(layers, heads));
        let last = (layers - 1) * heads;
        let total: f32 = rows.iter().map(|r| r[last..last + heads].iter().sum::<f32>()).sum();
        let x0 = states(&fwd, layers - 1, pre.device()).unwrap().narrow(0, 0, 1).unwrap();
        let mut attn_out = (&pre - &x0).unwrap();
        if let Some(b) = &p.out_bias {
            attn_out = attn_out.broadcast_sub(b).unwrap();
        }
        let g = (&g / g.sqr().unwrap().sum_all().unwrap().sqrt().unwrap().to_scalar::<f32>().unwrap() as f64).unwrap();
        let expect = g.mul(&attn_out.flatten_all().unwrap()).unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
        assert!((total - expect).abs() < 1e-3 * (1.0 + expect.abs()), "columns sum {total}, direct {expect}");
        // Another class has another direction.
        let other = decision_rows(&model, &fwd, 0).unwrap();
        assert_ne!(rows[1], other[1]);
    }
}
