//! The contextual layer of a distilled ExpNet: one self-attention layer over
//! the tokens of an input, between the per-token MLP and the output unit.
//!
//! A per-token MLP scores "not" and "good" each on its own features, but an
//! occlusion teacher measures interactions: masking "good" in "not good"
//! moves the prediction the other way. Self-attention with a learned
//! relative-position bias lets a token's score read its neighbours' (and the
//! whole input's) encodings. Rows of several texts are processed together
//! with a block-diagonal mask, so a batch stays one set of matrix products.

use candle_core::{D, Device, Module, Tensor};
use candle_nn::Linear;

/// Relative offsets beyond ±this share one position bias.
pub const CONTEXT_RADIUS: usize = 8;

/// Tensor names of the contextual layer, in the file and the var map.
pub(crate) const PROJECTIONS: [&str; 4] = ["q", "k", "v", "o"];

pub(crate) fn weight_name(proj: &str, part: &str) -> String {
    format!("context.{proj}.{part}")
}
pub(crate) const REL_BIAS: &str = "context.rel_bias";

/// Shapes of every tensor of a contextual layer of width `dim` with `heads` heads.
pub(crate) fn shapes(dim: usize, heads: usize) -> Vec<(String, Vec<usize>)> {
    let mut out = Vec::new();
    for p in PROJECTIONS {
        out.push((weight_name(p, "weight"), vec![dim, dim]));
        out.push((weight_name(p, "bias"), vec![dim]));
    }
    out.push((REL_BIAS.to_string(), vec![heads, 2 * CONTEXT_RADIUS + 1]));
    out
}

/// One self-attention layer with a residual connection:
/// `h' = h + O · softmax(Q h (K h)ᵀ / √d + bias(j − i)) · V h`.
pub(crate) struct ContextLayer {
    pub heads: usize,
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    /// `[heads, 2R+1]`: a learned score bonus per head and clipped offset.
    rel_bias: Tensor,
}

impl ContextLayer {
    /// From tensors looked up by name (see [`shapes`]).
    pub fn new(heads: usize, mut get: impl FnMut(&str) -> anyhow::Result<Tensor>) -> anyhow::Result<Self> {
        let mut lin = |p: &str| -> anyhow::Result<Linear> {
            Ok(Linear::new(get(&weight_name(p, "weight"))?, Some(get(&weight_name(p, "bias"))?)))
        };
        let (q, k, v, o) = (lin("q")?, lin("k")?, lin("v")?, lin("o")?);
        Ok(Self { heads, q, k, v, o, rel_bias: get(REL_BIAS)? })
    }

    /// `h`: `[rows, dim]`, the rows of consecutive texts of lengths `segments`
    /// (summing to `rows`). Tokens attend only within their own text.
    pub fn forward(&self, h: &Tensor, segments: &[usize]) -> anyhow::Result<Tensor> {
        let (rows, dim) = h.dims2()?;
        anyhow::ensure!(segments.iter().sum::<usize>() == rows, "context segments cover {} rows, not {rows}", segments.iter().sum::<usize>());
        let heads = self.heads;
        let dh = dim / heads;
        let split = |t: Tensor| -> candle_core::Result<Tensor> { t.reshape((rows, heads, dh))?.transpose(0, 1)?.contiguous() };
        let q = split(self.q.forward(h)?)?; // [heads, rows, dh]
        let k = split(self.k.forward(h)?)?;
        let v = split(self.v.forward(h)?)?;
        let scores = (q.matmul(&k.t()?)? / (dh as f64).sqrt())?; // [heads, rows, rows]
        let bias = self.bias(rows, segments)?;
        let attn = candle_nn::ops::softmax(&scores.add(&bias)?, D::Minus1)?;
        let ctx = attn.matmul(&v)?.transpose(0, 1)?.reshape((rows, dim))?;
        Ok(h.add(&self.o.forward(&ctx)?)?)
    }

    /// `[heads, rows, rows]`: the position bias within a text, −1e9 across texts.
    fn bias(&self, rows: usize, segments: &[usize]) -> anyhow::Result<Tensor> {
        let r = CONTEXT_RADIUS as i64;
        let masked = (2 * CONTEXT_RADIUS + 1) as u32;
        let mut idx = vec![masked; rows * rows];
        let mut start = 0;
        for &len in segments {
            for i in 0..len {
                for j in 0..len {
                    let off = (j as i64 - i as i64).clamp(-r, r) + r;
                    idx[(start + i) * rows + start + j] = off as u32;
                }
            }
            start += len;
        }
        let wall = Tensor::full(-1e9f32, (self.heads, 1), &Device::Cpu)?;
        let table = Tensor::cat(&[&self.rel_bias, &wall], 1)?; // [heads, 2R+2]
        let idx = Tensor::from_vec(idx, rows * rows, &Device::Cpu)?;
        Ok(table.index_select(&idx, 1)?.reshape((self.heads, rows, rows))?)
    }
}

#[cfg(test)]
mod tests {
    use crate::expnet::features::FeatureSpec;
    use crate::expnet::net::{ExpNet, NetConfig, OutputKind};

    fn spec() -> FeatureSpec {
        let mut s = FeatureSpec::new(1, 2);
        s.received = false;
        s
    }

    fn net(context_heads: usize) -> ExpNet {
        let config = NetConfig { hidden: vec![8, 8], context_heads, output: OutputKind::Score, ..NetConfig::default() };
        ExpNet::untrained(spec(), config, 5).unwrap()
    }

    fn rows(n: usize, shift: f32) -> Vec<Vec<f32>> {
        let dim = spec().dim();
        (0..n).map(|i| (0..dim).map(|c| ((i * 7 + c * 3) % 5) as f32 / 5.0 + shift).collect()).collect()
    }

    #[test]
    fn a_tokens_score_reads_far_tokens_only_with_the_contextual_layer() {
        let special = [true, false, false, false, false, false, false, true];
        let base = rows(8, 0.0);
        let mut changed = base.clone();
        changed[6] = changed[6].iter().map(|v| v + 2.0).collect();
        let ctx = net(2);
        let (a, b) = (ctx.score_features(&base, &special).unwrap(), ctx.score_features(&changed, &special).unwrap());
        assert!((a[1] - b[1]).abs() > 1e-6, "token 1 sees token 6 five places away: {} vs {}", a[1], b[1]);
        assert_eq!((a[0], a[7]), (0.0, 0.0), "special pieces still score 0");
        let plain = net(0);
        assert_eq!(plain.score_features(&base, &special).unwrap()[1], plain.score_features(&changed, &special).unwrap()[1]);
    }

    #[test]
    fn texts_in_one_batch_do_not_see_each_other() {
        let ctx = net(2);
        let (a, b) = (rows(5, 0.0), rows(4, 0.3));
        let alone = ctx.score_features(&a, &[false; 5]).unwrap();
        let mut x = Vec::new();
        for i in 0..5 {
            ctx.push_input(&a, i, &mut x);
        }
        for i in 0..4 {
            ctx.push_input(&b, i, &mut x);
        }
        let x = candle_core::Tensor::from_vec(x, (9, ctx.input_dim()), &candle_core::Device::Cpu).unwrap();
        let together = ctx.forward_logits(&x, &[5, 4], None).unwrap().to_vec1::<f32>().unwrap();
        for i in 0..5 {
            assert!((alone[i] - together[i]).abs() < 1e-5, "token {i}: {} alone, {} batched", alone[i], together[i]);
        }
        assert!(ctx.forward_logits(&x, &[5, 3], None).is_err(), "segments must cover the rows");
    }

    #[test]
    fn contextual_nets_round_trip_and_plain_files_keep_their_format() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ctx.safetensors");
        let ctx = net(2);
        ctx.save(&path).unwrap();
        let back = ExpNet::load(&path).unwrap();
        assert_eq!(back.config().context_heads, 2);
        let r = rows(6, 0.1);
        assert_eq!(ctx.score_features(&r, &[false; 6]).unwrap(), back.score_features(&r, &[false; 6]).unwrap());
        // A net without the layer writes no `context_heads` key, as files before it did, and they load as plain nets.
        let bytes = net(0).to_bytes().unwrap();
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        assert!(!meta.metadata().as_ref().unwrap()["expnet"].contains("context_heads"));
        assert_eq!(ExpNet::load_bytes(&bytes).unwrap().config().context_heads, 0);
        let old = ExpNet::load_bytes(include_bytes!("../../tests/fixtures/tiny-bert-expnet.safetensors")).unwrap();
        assert_eq!(old.config().context_heads, 0);
        let bad = NetConfig { hidden: vec![6], context_heads: 4, ..NetConfig::default() };
        assert!(ExpNet::untrained(spec(), bad, 1).unwrap_err().to_string().contains("divisible"));
    }
}
