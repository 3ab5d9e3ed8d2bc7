//! Shared maths of the decomposition family: a layer's attention block output
//! for token `i` is a sum of one vector per source token `j`,
//!
//! ```text
//! pre_i = Σ_j Σ_h α^h_ij f_h(x_j) + x_i + b_O,   f_h(x) = (x W_V + b_V)_h W_O^h
//! ```
//!
//! (the value bias rides along with each `f_h` because attention rows sum to
//! one). Value norms (Kobayashi et al. 2020) measure `‖Σ_h α^h_ij f_h(x_j)‖`;
//! ALTI (Ferrando et al. 2022) adds the residual and the layer norm. Everything
//! is rebuilt from what the inference pass already returns (each layer's input
//! hidden state and attention probabilities) plus the block's weights, so the
//! default forward path pays nothing for these methods.
//!
//! The `[n, n, hidden]` tensor of per-pair vectors is never held whole: it is
//! produced in blocks of source tokens, each reduced to one number per pair.

use crate::model::encoder::AttentionBlockParams;
use crate::model::{ForwardOutput, Model};
use candle_core::{D, DType, Tensor};

/// Floats per block of per-pair vectors (16 MiB of f32).
const BLOCK_FLOATS: usize = 4 << 20;

/// One layer's attention block, ready to be decomposed.
pub(crate) struct LayerParts {
    pub n: usize,
    /// Layer input `x`, `[n, hidden]` (also the residual).
    pub x: Tensor,
    /// Attention probabilities, `[heads, n, n]`.
    pub alpha: Tensor,
    /// Per-head transformed vectors `f_h(x_j)`, `[heads, n, hidden]`.
    pub transformed: Tensor,
    pub params: AttentionBlockParams,
}

impl LayerParts {
    /// Builds the parts of `layer` from a forward pass of `model`.
    pub fn new(model: &Model, forward: &ForwardOutput, layer: usize) -> anyhow::Result<Self> {
        let a = &forward.attentions;
        anyhow::ensure!(layer < a.layers, "layer {layer} out of range (model has {} layers)", a.layers);
        anyhow::ensure!(
            forward.hidden_states.len() == a.layers + 1,
            "the forward pass kept {} hidden states, decomposition needs {} (embeddings + every layer)",
            forward.hidden_states.len(),
            a.layers + 1
        );
        let params = model
            .encoder()
            .attention_block(layer)
            .ok_or_else(|| anyhow::anyhow!("layer {layer} has no attention block"))?;
        let device = params.value_weight.device().clone();
        let (n, heads) = (a.len, a.heads);
        let rows = &forward.hidden_states[layer];
        anyhow::ensure!(rows.len() == n, "hidden state has {} tokens, attentions {n}", rows.len());
        let hidden = rows.first().map_or(0, Vec::len);
        anyhow::ensure!(hidden > 0 && hidden.is_multiple_of(heads), "hidden size {hidden} is not a multiple of {heads} heads");
        let flat: Vec<f32> = rows.iter().flatten().copied().collect();
        let x = Tensor::from_vec(flat, (n, hidden), &device)?;
        let alpha = Tensor::from_slice(
            &a.data[layer * heads * n * n..(layer + 1) * heads * n * n],
            (heads, n, n),
            &device,
        )?;
        let transformed = per_head_transformed(&x, &params, heads)?;
        Ok(Self { n, x, alpha, transformed, params })
    }
}

/// `f_h(x_j) = (x_j W_V + b_V)_h W_O^h` for every head and token: `[heads, n, hidden]`.
fn per_head_transformed(x: &Tensor, p: &AttentionBlockParams, heads: usize) -> candle_core::Result<Tensor> {
    let (n, hidden) = x.dims2()?;
    let head_dim = hidden / heads;
    let mut v = x.matmul(&p.value_weight.t()?)?;
    if let Some(b) = &p.value_bias {
        v = v.broadcast_add(b)?;
    }
    // [n, heads, dh] → [heads, n, dh]
    let v = v.reshape((n, heads, head_dim))?.transpose(0, 1)?.contiguous()?;
    // W_O is [out, in] with heads along `in`: W_O^h = W_O[:, h·dh..(h+1)·dh]ᵀ, [heads, dh, out].
    let wo = p.out_weight.reshape((hidden, heads, head_dim))?.permute((1, 2, 0))?.contiguous()?;
    v.matmul(&wo)
}

/// Centres each vector and scales it by the layer-norm gain: the linear part of
/// layer norm, `(z − mean(z)) ⊙ γ`, still to be divided by the token's σ.
pub(crate) fn ln_linear(z: &Tensor, gain: &Tensor) -> candle_core::Result<Tensor> {
    z.broadcast_sub(&z.mean_keepdim(D::Minus1)?)?.broadcast_mul(gain)
}

/// For the query rows `alpha` selects (`[heads, r, n]`) and per-head vectors
/// `vectors` (`[heads, n, hidden]`), calls `reduce(j0, block)` with blocks
/// `block[j - j0, i, :] = Σ_h alpha[h, i, j] · vectors[h, j, :]`, shape `[jc, r, hidden]`.
pub(crate) fn mixed_blocks(
    alpha: &Tensor,
    vectors: &Tensor,
    mut reduce: impl FnMut(usize, Tensor) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let (_, r, n) = alpha.dims3()?;
    let hidden = vectors.dims3()?.2;
    let chunk = (BLOCK_FLOATS / (r * hidden).max(1)).clamp(1, n.max(1));
    let mut j0 = 0;
    while j0 < n {
        let jc = chunk.min(n - j0);
        let a = alpha.narrow(2, j0, jc)?.permute((2, 1, 0))?.contiguous()?; // [jc, r, heads]
        let v = vectors.narrow(1, j0, jc)?.transpose(0, 1)?.contiguous()?; // [jc, heads, hidden]
        reduce(j0, a.matmul(&v)?)?;
        j0 += jc;
    }
    Ok(())
}

/// Writes a `[jc, r]` block (source-major) into a row-major `r × n` matrix at column `j0`.
pub(crate) fn scatter_columns(block: &Tensor, j0: usize, n: usize, out: &mut [f64]) -> anyhow::Result<()> {
    let cols = block.to_dtype(DType::F64)?.to_vec2::<f64>()?;
    for (dj, col) in cols.iter().enumerate() {
        for (i, &v) in col.iter().enumerate() {
            out[i * n + j0 + dj] = v;
        }
    }
    Ok(())
}

/// Value-norm matrix of one layer (Kobayashi et al. 2020): entry `(i, j)` is
/// `‖Σ_h α^h_ij f_h(x_j)‖₂`, how large the vector that token `j` sends to
/// token `i` through the attention heads is (attention weight × size of what
/// is sent). Row-major `n × n`; rows are receiving tokens. Not normalised.
pub fn value_norm_matrix(model: &Model, forward: &ForwardOutput, layer: usize) -> anyhow::Result<Vec<f64>> {
    let parts = LayerParts::new(model, forward, layer)?;
    value_norm_rows(&parts, 0, parts.n)
}

/// Rows `i0..i0+r` of the value-norm matrix of `parts`' layer, row-major `r × n`.
pub(crate) fn value_norm_rows(parts: &LayerParts, i0: usize, r: usize) -> anyhow::Result<Vec<f64>> {
    let n = parts.n;
    let alpha = parts.alpha.narrow(1, i0, r)?;
    let mut out = vec![0f64; r * n];
    mixed_blocks(&alpha, &parts.transformed, |j0, block| {
        let norms = block.sqr()?.sum(D::Minus1)?.sqrt()?; // [jc, r]
        scatter_columns(&norms, j0, n, &mut out)
    })?;
    Ok(out)
}

/// ALTI contribution matrix of one layer (Ferrando et al. 2022), row-major
/// `n × n`, each row non-negative and summing to one.
///
/// With σ_i the layer norm's standard deviation for token `i` and
/// `L(z) = (z − mean z) ⊙ γ`, the block output is
/// `y_i = LN(pre_i) = Σ_j T_i(x_j) + (L(b_O)/σ_i + β)`, where
/// `T_i(x_j) = L(Σ_h α^h_ij f_h(x_j) + [i = j] x_j) / σ_i`. Contributions use
/// the negative Manhattan distance as proximity:
/// `c_ij = max(0, ‖y_i‖₁ − ‖y_i − T_i(x_j)‖₁)`, rows normalised to sum 1.
/// σ_i is the true layer-norm scale `sqrt(Var(pre_i) + ε)` (biased variance).
/// A row whose proximities are all zero (possible only in degenerate
/// models) is given entirely to the token itself.
pub fn alti_layer(model: &Model, forward: &ForwardOutput, layer: usize) -> anyhow::Result<Vec<f64>> {
    layer_matrix(model, layer, &LayerParts::new(model, forward, layer)?, Measure::Alti)
}

/// [`alti_layer`] from parts already built (shared with other measures).
pub(crate) fn alti_layer_of(model: &Model, layer: usize, parts: &LayerParts) -> anyhow::Result<Vec<f64>> {
    layer_matrix(model, layer, parts, Measure::Alti)
}

/// [`globenc_layer`] from parts already built (shared with other measures).
pub(crate) fn globenc_layer_of(model: &Model, layer: usize, parts: &LayerParts) -> anyhow::Result<Vec<f64>> {
    layer_matrix(model, layer, parts, Measure::GlobEnc)
}

/// GlobEnc attribution matrix of one layer (Modarressi et al. 2022), row-major
/// `n × n`, rows summing to one: the ALTI vectors `T_i(x_j)` carried through
/// the second residual and layer norm, the feed-forward network left out of
/// the split (it only sets that norm's scale σ2_i, taken from the real
/// `FFN(y_i) + y_i`): `N_ij = ‖(T_i(x_j) − mean) ⊙ γ₂ / σ2_i‖₂`, normalised per row.
pub fn globenc_layer(model: &Model, forward: &ForwardOutput, layer: usize) -> anyhow::Result<Vec<f64>> {
    layer_matrix(model, layer, &LayerParts::new(model, forward, layer)?, Measure::GlobEnc)
}

#[derive(Clone, Copy, PartialEq)]
enum Measure {
    Alti,
    GlobEnc,
}

fn layer_matrix(model: &Model, layer: usize, parts: &LayerParts, measure: Measure) -> anyhow::Result<Vec<f64>> {
    let n = parts.n;
    let p = &parts.params;
    let gain = &p.norm_weight;
    // The real pre-norm state: Σ_h α_h F_h summed over sources, plus b_O and the residual.
    let mut pre = parts.alpha.matmul(&parts.transformed)?.sum(0)?.add(&parts.x)?; // [n, hidden]
    if let Some(b) = &p.out_bias {
        pre = pre.broadcast_add(b)?;
    }
    let (centred, sigma) = centre_and_scale(&pre, p.norm_eps)?;
    let y = centred.broadcast_div(&sigma)?.broadcast_mul(gain)?.broadcast_add(&p.norm_bias)?;
    let y_l1 = y.abs()?.sum(D::Minus1)?.to_dtype(DType::F64)?.to_vec1::<f64>()?;
    let inv_sigma2 = match measure {
        Measure::Alti => None,
        Measure::GlobEnc => {
            let ffn = model
                .encoder()
                .feed_forward(layer, &y)?
                .ok_or_else(|| anyhow::anyhow!("layer {layer} has no feed-forward block"))?;
            Some(centre_and_scale(&(ffn + &y)?, p.output_norm_eps)?.1.recip()?.flatten_all()?.to_vec1::<f32>()?)
        }
    };

    let lin = ln_linear(&parts.transformed, gain)?.flatten_all()?.to_vec1::<f32>()?; // L(f_h(x_j)), [heads, n, hidden]
    let hidden = parts.x.dims2()?.1;
    let pairs = PairInputs {
        n,
        hidden,
        heads: parts.alpha.dims3()?.0,
        alpha: &parts.alpha.flatten_all()?.to_vec1::<f32>()?,
        lin: &lin,
        residual: &ln_linear(&parts.x, gain)?.flatten_all()?.to_vec1::<f32>()?, // L(x_j)
        inv_sigma: &sigma.recip()?.flatten_all()?.to_vec1::<f32>()?,
        y: &y.flatten_all()?.to_vec1::<f32>()?,
        gain2: &match measure {
            Measure::Alti => vec![],
            Measure::GlobEnc => p.output_norm_weight.to_vec1::<f32>()?,
        },
        inv_sigma2: inv_sigma2.as_deref(),
    };
    // One source token per task: its vectors T_i(x_j) for every i, each
    // reduced to one number as soon as it is formed.
    use rayon::prelude::*;
    let columns: Vec<Vec<f64>> = (0..n).into_par_iter().map(|j| pairs.column(j)).collect();
    let mut m = vec![0f64; n * n];
    for (j, col) in columns.iter().enumerate() {
        for (i, v) in col.iter().enumerate() {
            m[i * n + j] = *v;
        }
    }
    Ok(match measure {
        Measure::Alti => normalise_proximities(&m, &y_l1, n),
        Measure::GlobEnc => normalise_rows(m, n),
    })
}

/// `Σ_k f(a_k, b_k)` over eight independent f64 lanes: one running sum is a
/// chain of dependent adds that no compiler may reorder or vectorise, and was
/// most of the cost of the pair loop below.
#[inline(always)]
fn lane_sum(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f64) -> f64 {
    let mut acc = [0f64; 8];
    let (mut ac, mut bc) = (a.chunks_exact(8), b.chunks_exact(8));
    for (x, y) in (&mut ac).zip(&mut bc) {
        for l in 0..8 {
            acc[l] += f(x[l], y[l]);
        }
    }
    let tail: f64 = ac.remainder().iter().zip(bc.remainder()).map(|(&x, &y)| f(x, y)).sum();
    tail + acc.iter().sum::<f64>()
}

/// What [`layer_matrix`] reduces, as flat f32 rows.
struct PairInputs<'a> {
    n: usize,
    hidden: usize,
    heads: usize,
    /// `[heads, n, n]`
    alpha: &'a [f32],
    /// `L(f_h(x_j))`, `[heads, n, hidden]`
    lin: &'a [f32],
    /// `L(x_j)`, `[n, hidden]`
    residual: &'a [f32],
    inv_sigma: &'a [f32],
    /// The block output, `[n, hidden]`.
    y: &'a [f32],
    /// GlobEnc: the second norm's gain and 1/σ2 per token; ALTI: empty / `None`.
    gain2: &'a [f32],
    inv_sigma2: Option<&'a [f32]>,
}

impl PairInputs<'_> {
    /// Column `j` of the measure: for every receiving token `i`, ALTI's
    /// `‖y_i − T_i(x_j)‖₁` or GlobEnc's `‖(T_i(x_j) − mean) ⊙ γ₂‖₂ / σ2_i`, with
    /// `T_i(x_j) = (Σ_h α^h_ij L(f_h(x_j)) + [i = j] L(x_j)) / σ_i`. Formed
    /// per pair in f32 (as the matmul that built them before), reduced in f64.
    /// The `[n, n, hidden]` vectors are never stored: at 128 tokens building
    /// them in blocks through candle and reducing them in scalar f64 took
    /// 27 ms per layer (ALTI) and 41 ms (GlobEnc).
    #[inline(always)]
    fn column_body(&self, j: usize) -> Vec<f64> {
        let (n, hidden) = (self.n, self.hidden);
        let mut t = vec![0f32; hidden];
        let mut col = vec![0f64; n];
        for (i, out) in col.iter_mut().enumerate() {
            if i == j {
                t.copy_from_slice(&self.residual[j * hidden..(j + 1) * hidden]);
            } else {
                t.fill(0.0);
            }
            for h in 0..self.heads {
                let a = self.alpha[(h * n + i) * n + j];
                let g = &self.lin[(h * n + j) * hidden..(h * n + j + 1) * hidden];
                t.iter_mut().zip(g).for_each(|(tk, gk)| *tk += a * gk);
            }
            let s = self.inv_sigma[i] as f64;
            *out = match self.inv_sigma2 {
                None => {
                    let yi = &self.y[i * hidden..(i + 1) * hidden];
                    lane_sum(&t, yi, |tk, yk| (yk as f64 - tk as f64 * s).abs())
                }
                Some(s2) => {
                    let mean = lane_sum(&t, &t, |tk, _| tk as f64) * s / hidden as f64;
                    let sq = lane_sum(&t, self.gain2, |tk, g| ((tk as f64 * s - mean) * g as f64).powi(2));
                    sq.sqrt() * s2[i] as f64
                }
            };
        }
        col
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn column_avx2(&self, j: usize) -> Vec<f64> {
        self.column_body(j)
    }

    fn column(&self, j: usize) -> Vec<f64> {
        #[cfg(target_arch = "x86_64")]
        if crate::model::ops::gelu::has_avx2() {
            // SAFETY: the CPU supports the features the function was compiled for.
            return unsafe { self.column_avx2(j) };
        }
        self.column_body(j)
    }
}

/// `(z − mean z, sqrt(Var z + ε))` over the last dimension (biased variance, as layer norm).
fn centre_and_scale(z: &Tensor, eps: f64) -> candle_core::Result<(Tensor, Tensor)> {
    let centred = z.broadcast_sub(&z.mean_keepdim(D::Minus1)?)?;
    let sigma = (centred.sqr()?.mean_keepdim(D::Minus1)? + eps)?.sqrt()?;
    Ok((centred, sigma))
}

/// Rows divided by their sums; an all-zero row goes to the diagonal.
fn normalise_rows(mut m: Vec<f64>, n: usize) -> Vec<f64> {
    for i in 0..n {
        let row = &mut m[i * n..(i + 1) * n];
        let s: f64 = row.iter().sum();
        if s > 0.0 && s.is_finite() {
            row.iter_mut().for_each(|v| *v /= s);
        } else {
            row.iter_mut().for_each(|v| *v = 0.0);
            row[i] = 1.0;
        }
    }
    m
}

/// `c_ij = max(0, ‖y_i‖₁ − d_ij)`, rows normalised; an all-zero row goes to the diagonal.
pub(crate) fn normalise_proximities(dist: &[f64], y_l1: &[f64], n: usize) -> Vec<f64> {
    let c = (0..n * n).map(|k| (y_l1[k / n] - dist[k]).max(0.0)).collect();
    normalise_rows(c, n)
}

/// ALTI contribution matrices of every layer, `[layer][n × n]` (see [`alti_layer`]).
pub fn alti_contributions(model: &Model, forward: &ForwardOutput) -> anyhow::Result<Vec<Vec<f64>>> {
    (0..forward.attentions.layers).map(|l| alti_layer(model, forward, l)).collect()
}

/// GlobEnc matrices of every layer, `[layer][n × n]` (see [`globenc_layer`]).
pub fn globenc_contributions(model: &Model, forward: &ForwardOutput) -> anyhow::Result<Vec<Vec<f64>>> {
    (0..forward.attentions.layers).map(|l| globenc_layer(model, forward, l)).collect()
}

/// Aggregates per-layer row-stochastic matrices as the ALTI paper does
/// (rollout without the extra identity, the residual being inside already):
/// `C_L · … · C_1`, row-major `n × n`.
pub fn aggregate(layers: &[Vec<f64>], n: usize) -> Vec<f64> {
    let mut r = super::rollout::identity(n);
    for c in layers {
        r = super::rollout::matmul(c, &r, n);
    }
    r
}

/// Row 0 of [`aggregate`] (what ALTI and GlobEnc score with) as a chain of
/// vector–matrix products from the top, `e₀ᵀ·C_L·…·C_1`: `O(L·n²)` instead of
/// `O(L·n³)`; equal up to f64 rounding.
pub fn aggregate_first_row(layers: &[Vec<f64>], n: usize) -> Vec<f64> {
    let Some((top, below)) = layers.split_last() else { return super::rollout::identity(n)[..n].to_vec() };
    below.iter().rev().fold(top[..n].to_vec(), |r, c| super::rollout::row_times(&r, c, n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_row_of_the_aggregate_is_row_zero_of_the_product() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for (layers, n) in [(0, 3), (1, 1), (1, 5), (3, 4), (6, 9)] {
            let mats: Vec<Vec<f64>> = (0..layers)
                .map(|_| {
                    let m: Vec<f64> = (0..n * n).map(|_| rng.gen_range(0.0..1.0)).collect();
                    normalise_rows(m, n)
                })
                .collect();
            let want = aggregate(&mats, n);
            let got = aggregate_first_row(&mats, n);
            assert_eq!(got.len(), n);
            assert!(got.iter().zip(&want[..n]).all(|(a, b)| (a - b).abs() <= 1e-14), "{layers} layers, n = {n}: {got:?} vs {:?}", &want[..n]);
        }
    }

    #[test]
    fn proximities_are_clipped_and_normalised() {
        // ‖y‖₁ = 3; distances 1, 2, 5 → 2, 1, 0 → 2/3, 1/3, 0.
        let c = normalise_proximities(&[1.0, 2.0, 5.0, 9.0, 9.0, 9.0, 0.5, 0.5, 0.5], &[3.0, 3.0, 1.0], 3);
        let want = [2.0 / 3.0, 1.0 / 3.0, 0.0, 0.0, 1.0, 0.0, 1.0 / 3.0, 1.0 / 3.0, 1.0 / 3.0];
        for (g, w) in c.iter().zip(want) {
            assert!((g - w).abs() < 1e-12, "{c:?}");
        }
    }

    #[test]
    fn mixed_blocks_match_a_direct_sum() {
        let dev = candle_core::Device::Cpu;
        let (h, n, d) = (2, 3, 4);
        let alpha: Vec<f32> = (0..h * n * n).map(|k| (k % 5) as f32 * 0.1).collect();
        let vecs: Vec<f32> = (0..h * n * d).map(|k| (k as f32 * 0.37).sin()).collect();
        let a = Tensor::from_vec(alpha.clone(), (h, n, n), &dev).unwrap();
        let v = Tensor::from_vec(vecs.clone(), (h, n, d), &dev).unwrap();
        let mut seen = 0;
        mixed_blocks(&a, &v, |j0, block| {
            let b = block.to_vec3::<f32>()?;
            for (dj, rows) in b.iter().enumerate() {
                let j = j0 + dj;
                for (i, vec) in rows.iter().enumerate() {
                    for (k, &got) in vec.iter().enumerate() {
                        let want: f32 = (0..h).map(|hh| alpha[(hh * n + i) * n + j] * vecs[(hh * n + j) * d + k]).sum();
                        assert!((got - want).abs() < 1e-6, "({i},{j},{k}): {got} vs {want}");
                        seen += 1;
                    }
                }
            }
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, n * n * d);
    }
}

/// The decomposition methods read post-norm BERT-style attention blocks;
/// a model without them (ModernBERT's pre-norm layers) is not covered.
pub fn unsupported(model: &crate::model::Model) -> Option<String> {
    model.encoder().attention_block(0).is_none().then(|| {
        format!("{} has no post-norm attention blocks to decompose", model.config().family.as_str())
    })
}
