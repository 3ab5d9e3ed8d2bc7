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

use std::sync::Arc;

use candle_core::{D, DType, Tensor, Var};

use crate::model::encoder::AttentionBlockParams;
use crate::model::ops::{axpy, dot};
use crate::model::{ForwardOutput, Model};
use rayon::prelude::*;

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

/// One layer's value and output weights as plain row-major arrays (torch
/// layout, `out × in`). Plain loops over them beat tensor ops here: the
/// products are matrix-vector sized, where candle's thread pools cost more
/// than the arithmetic (measured: 30–50 ms per text on a loaded 2-core machine).
struct LayerWeights {
    value: Vec<f32>,
    value_bias: Vec<f32>,
    out: Vec<f32>,
    out_bias: Vec<f32>,
}

type WeightCache = std::sync::Mutex<Option<(String, Arc<Vec<LayerWeights>>)>>;

/// The weights of every layer of `model`, read once per model.
fn weights(model: &Model) -> anyhow::Result<Arc<Vec<LayerWeights>>> {
    static CACHE: std::sync::OnceLock<WeightCache> = std::sync::OnceLock::new();
    let cache = CACHE.get_or_init(|| std::sync::Mutex::new(None));
    let mut slot = cache.lock().map_err(|_| anyhow::anyhow!("decision weight cache lock poisoned"))?;
    if let Some((fp, w)) = slot.as_ref()
        && fp == model.fingerprint()
    {
        return Ok(w.clone());
    }
    let flat = |t: &Tensor| -> anyhow::Result<Vec<f32>> { Ok(t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?) };
    let d = model.config().hidden_size;
    let mut layers = Vec::new();
    for l in 0..model.num_layers() {
        let p = block(model, l)?;
        layers.push(LayerWeights {
            value: flat(&p.value_weight)?,
            value_bias: p.value_bias.as_ref().map_or(Ok(vec![0.0; d]), flat)?,
            out: flat(&p.out_weight)?,
            out_bias: p.out_bias.as_ref().map_or(Ok(vec![0.0; d]), flat)?,
        });
    }
    let w = Arc::new(layers);
    *slot = Some((model.fingerprint().to_owned(), w.clone()));
    Ok(w)
}

/// The last layer's pre-norm [CLS] state, `Σ_j Σ_h α^h_0j f_h(x_j) + b_O + x_0`.
fn cls_pre_state(forward: &ForwardOutput, w: &LayerWeights) -> Vec<f32> {
    let a = &forward.attentions;
    let (l, heads, n) = (a.layers - 1, a.heads, a.len);
    let x = &forward.hidden_states[l];
    let d = x[0].len();
    let dh = d / heads;
    let mut ctx = vec![0f32; d];
    for h in 0..heads {
        // Rows sum to one, so the value bias passes through unchanged.
        let att = &a.head(l, h)[..n];
        let mut xbar = vec![0f32; d];
        for (xj, &aj) in x.iter().zip(att) {
            xbar.iter_mut().zip(xj).for_each(|(s, v)| *s += aj * v);
        }
        for k in h * dh..(h + 1) * dh {
            ctx[k] = dot(&w.value[k * d..(k + 1) * d], &xbar) + w.value_bias[k];
        }
    }
    (0..d).map(|o| dot(&w.out[o * d..(o + 1) * d], &ctx) + w.out_bias[o] + x[0][o]).collect()
}

/// The explained class's log probability as a function of the last layer's
/// pre-norm [CLS] state `pre` (`[1, d]`): norm, feed-forward, norm, head.
pub(crate) fn cls_log_prob(model: &Model, p: &AttentionBlockParams, pre: &Tensor, target: usize) -> anyhow::Result<Tensor> {
    let last = model.num_layers() - 1;
    let y = layer_norm(pre, &p.norm_weight, &p.norm_bias, p.norm_eps)?;
    let ffn = model.encoder().feed_forward(last, &y)?.ok_or_else(|| anyhow::anyhow!("layer {last} has no feed-forward block"))?;
    let h = layer_norm(&(ffn + &y)?, &p.output_norm_weight, &p.output_norm_bias, p.output_norm_eps)?;
    head_log_prob(model, &h, target)
}

/// The explained class's log probability from a last-layer row `h` (`[1, d]`).
fn head_log_prob(model: &Model, h: &Tensor, target: usize) -> anyhow::Result<Tensor> {
    let logits = model.encoder().head_logits(h)?.ok_or_else(|| anyhow::anyhow!("{} is a bare encoder: decision features need its classification head", model.name))?;
    let classes = logits.dim(1)?;
    anyhow::ensure!(target < classes, "explained class {target} is outside the model's {classes} classes");
    Ok(candle_nn::ops::log_softmax(&logits, 1)?.narrow(1, target, 1)?.sum_all()?)
}

/// The decision direction `g` and the log probability rebuilt from the
/// last layer's [CLS] state (for checks).
pub(crate) fn decision_direction(model: &Model, forward: &ForwardOutput, target: usize) -> anyhow::Result<(Vec<f32>, f32)> {
    let last = model.num_layers() - 1;
    let p = block(model, last)?;
    let w = weights(model)?;
    let pre = cls_pre_state(forward, &w[last]);
    let d = pre.len();
    let device = p.value_weight.device().clone();
    // One row by hand: norms, feed-forward block and head (candle's graph for
    // the head only where the hand-written one does not apply).
    let head_back = |h: &[f32]| -> anyhow::Result<(f32, Vec<f32>)> {
        if let Some(back) = model.encoder().head_log_prob_back(h, target) {
            return Ok(back);
        }
        let var = Var::from_vec(h.to_vec(), (1, d), &device)?;
        let lp = head_log_prob(model, var.as_tensor(), target)?;
        let grads = lp.backward()?;
        let g = grads.get(var.as_tensor()).ok_or_else(|| anyhow::anyhow!("no gradient reached the [CLS] state"))?;
        Ok((lp.to_scalar::<f32>()?, g.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?))
    };
    if let Some((lp, g)) = model.encoder().post_attention_row_back(last, &pre, head_back)? {
        return Ok((g, lp));
    }
    direction_on_graph(model, &p, pre, target)
}

/// [`decision_direction`] on candle's graph from the pre-norm row `pre`:
/// the fallback where the hand-written row does not apply, and the
/// reference the tests hold it to.
fn direction_on_graph(model: &Model, p: &AttentionBlockParams, pre: Vec<f32>, target: usize) -> anyhow::Result<(Vec<f32>, f32)> {
    let d = pre.len();
    let var = Var::from_vec(pre, (1, d), p.value_weight.device())?;
    let lp = cls_log_prob(model, p, var.as_tensor(), target)?;
    let grads = lp.backward()?;
    let g = grads.get(var.as_tensor()).ok_or_else(|| anyhow::anyhow!("no gradient reached the [CLS] state"))?;
    Ok((g.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?, lp.to_scalar::<f32>()?))
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
    let (mut g, _) = decision_direction(model, forward, target)?;
    // Unit length: the gradient shrinks as the prediction grows confident
    // (∝ 1 − p), a scale the per-input standardised targets do not have.
    let norm = dot(&g, &g).sqrt().max(1e-12);
    g.iter_mut().for_each(|v| *v /= norm);
    let w = weights(model)?;
    let d = g.len();
    let dh = d / heads;
    let lh = layers * heads;
    // Per layer, head-major: (α[CLS]→j · p, p, mean received · p) for every token j.
    // The layers are independent and each streams two weight matrices, so
    // they run on the thread pool (the cores' caches share the reading).
    let per_layer: Vec<[Vec<f32>; 3]> = w
        .par_iter()
        .enumerate()
        .map(|(l, lw)| {
            // G = W_Oᵀ g (head h's slice is W_O^h g); M_h = W_V[h]ᵀ G[h], c_h = b_V[h]·G[h]: p_hj = x_j·M_h + c_h.
            let mut big_g = vec![0f32; d];
            for (o, &go) in g.iter().enumerate() {
                axpy(&mut big_g, go, &lw.out[o * d..(o + 1) * d]);
            }
            let mut m = vec![0f32; heads * d];
            let mut c = vec![0f32; heads];
            for k in 0..d {
                let h = k / dh;
                let gk = big_g[k];
                axpy(&mut m[h * d..(h + 1) * d], gk, &lw.value[k * d..(k + 1) * d]);
                c[h] += gk * lw.value_bias[k];
            }
            let x = &forward.hidden_states[l];
            let mut out = [vec![0f32; heads * n], vec![0f32; heads * n], vec![0f32; heads * n]];
            let mut received = vec![0f32; n];
            for h in 0..heads {
                let att = a.head(l, h);
                // Column sums of the attention map, row by row (contiguous reads).
                received.iter_mut().for_each(|r| *r = 0.0);
                for row in att[..n * n].chunks_exact(n) {
                    received.iter_mut().zip(row).for_each(|(r, v)| *r += v);
                }
                for j in 0..n {
                    let pj = dot(&x[j], &m[h * d..(h + 1) * d]) + c[h];
                    out[0][h * n + j] = att[j] * pj;
                    out[1][h * n + j] = pj;
                    out[2][h * n + j] = received[j] / n as f32 * pj;
                }
            }
            out
        })
        .collect();
    let mut rows = vec![vec![0f32; width(layers, heads)]; n];
    for (l, groups) in per_layer.iter().enumerate() {
        for (gi, group) in groups.iter().enumerate() {
            for h in 0..heads {
                let col = gi * lh + l * heads + h;
                for (row, &v) in rows.iter_mut().zip(&group[h * n..(h + 1) * n]) {
                    row[col] = v;
                }
            }
        }
    }
    for l in 0..=layers {
        for (row, x) in rows.iter_mut().zip(&forward.hidden_states[l]) {
            row[3 * lh + l] = dot(x, &g);
        }
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

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
    fn the_hand_written_row_matches_candles_graph() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        for name in ["tiny-bert", "tiny-distilbert", "tiny-roberta", "tiny-electra", "tiny-albert"] {
            let model = Model::load_dir(&dir.join(name)).unwrap();
            let enc = model.encode("not a bad story at all").unwrap();
            let fwd = model.forward(&enc).unwrap();
            let last = model.num_layers() - 1;
            let p = block(&model, last).unwrap();
            let pre = cls_pre_state(&fwd, &weights(&model).unwrap()[last]);
            let hand = model.encoder().post_attention_row_back(last, &pre, |h| Ok::<_, ()>((0.0, h.to_vec()))).unwrap();
            assert!(hand.is_some(), "{name}: the hand-written row did not apply");
            assert!(model.encoder().head_log_prob_back(&pre, 0).is_some(), "{name}: the hand-written head did not apply");
            // The hand-written head on many rows (logit-lens features) against candle's.
            let rows: Vec<f32> = fwd.hidden_states.iter().flatten().flatten().copied().collect();
            let m = rows.len() / pre.len();
            let hand = model.encoder().head_logits_flat(&rows, m).expect("hand-written head on rows");
            let t = Tensor::from_vec(rows, (m, pre.len()), &Device::Cpu).unwrap();
            let want: Vec<f32> = model.encoder().head_logits(&t).unwrap().unwrap().flatten_all().unwrap().to_vec1().unwrap();
            assert_eq!(hand.len(), want.len());
            for (a, b) in hand.iter().zip(&want) {
                assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{name}: head logits {a} vs {b}");
            }
            for target in 0..2 {
                let (g, lp) = decision_direction(&model, &fwd, target).unwrap();
                let (want, want_lp) = direction_on_graph(&model, &p, pre.clone(), target).unwrap();
                let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
                assert!(scale > 0.0, "{name}: zero reference gradient");
                for (a, b) in g.iter().zip(&want) {
                    assert!((a - b).abs() <= 1e-5 * scale + 1e-7, "{name} class {target}: {a} vs {b}");
                }
                assert!((lp - want_lp).abs() < 1e-5, "{name}: log probability {lp} vs {want_lp}");
            }
        }
    }

    #[test]
    fn the_direction_is_the_gradient_and_the_columns_match_the_decomposition() {
        let model = tiny();
        let enc = model.encode("not a bad story at all").unwrap();
        let fwd = model.forward(&enc).unwrap();
        let (g, _) = decision_direction(&model, &fwd, 1).unwrap();
        // Finite differences along a fixed direction agree with ⟨g, δ⟩.
        let last = model.num_layers() - 1;
        let p = block(&model, last).unwrap();
        let pre = cls_pre_state(&fwd, &weights(&model).unwrap()[last]);
        let d = pre.len();
        let delta: Vec<f32> = (0..d).map(|i| ((i * 37 % 11) as f32 - 5.0) / 5.0).collect();
        let eps = 1e-2f32;
        let f = |sign: f32| {
            let x: Vec<f32> = pre.iter().zip(&delta).map(|(a, b)| a + sign * eps * b).collect();
            let t = Tensor::from_vec(x, (1, d), &Device::Cpu).unwrap();
            cls_log_prob(&model, &p, &t, 1).unwrap().to_scalar::<f32>().unwrap()
        };
        let fd = (f(1.0) - f(-1.0)) / (2.0 * eps);
        let analytic = dot(&g, &delta);
        assert!((fd - analytic).abs() < 1e-2 * (1.0 + analytic.abs()), "finite difference {fd} vs gradient {analytic}");
        // Every value column is ⟨ĝ, f_h(x_j)⟩ with f_h as the decomposition methods build it.
        let rows = decision_rows(&model, &fwd, 1).unwrap();
        let (layers, heads, n) = (model.num_layers(), model.num_heads(), enc.len());
        assert_eq!(rows.len(), n);
        assert!(rows.iter().all(|r| r.len() == width(layers, heads) && r.iter().all(|v| v.is_finite())));
        assert_eq!(names(layers, heads).len(), width(layers, heads));
        let unit: Vec<f32> = g.iter().map(|v| v / dot(&g, &g).sqrt()).collect();
        for l in 0..layers {
            let parts = crate::explain::decomposition::LayerParts::new(&model, &fwd, l).unwrap();
            let t = parts.transformed.to_vec3::<f32>().unwrap(); // [heads, n, d]
            for h in 0..heads {
                for j in 0..n {
                    let want = dot(&t[h][j], &unit);
                    let got = rows[j][layers * heads + l * heads + h];
                    assert!((want - got).abs() < 1e-4 * (1.0 + want.abs()), "layer {l} head {h} token {j}: {got} vs {want}");
                    assert!((rows[j][l * heads + h] - fwd.attentions.head(l, h)[j] * got).abs() < 1e-6);
                }
            }
        }
        // Another class has another direction.
        let other = decision_rows(&model, &fwd, 0).unwrap();
        assert_ne!(rows[1], other[1]);
    }
}
