//! Plain-Rust views of what the encoder computed, so that methods, ExpNet, the
//! evaluator and the TUI can work on numbers without touching candle.

use serde::{Deserialize, Serialize};

/// Attention probabilities of one input, `[layer][head][query][key]`, row-major.
///
/// Kept as one flat buffer because every consumer (rollout, flow, ExpNet
/// features, the head grid) walks it many times and a flat layout is both
/// cache-friendly and cheap to clone into a worker message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Attentions {
    pub layers: usize,
    pub heads: usize,
    /// Sequence length (tokens, special tokens included).
    pub len: usize,
    pub data: Vec<f32>,
}

impl Attentions {
    /// Wraps a flat `[layers][heads][len][len]` buffer; fails on a size mismatch.
    pub fn new(layers: usize, heads: usize, len: usize, data: Vec<f32>) -> anyhow::Result<Self> {
        let want = layers * heads * len * len;
        anyhow::ensure!(
            data.len() == want,
            "attention buffer has {} values, expected {layers}x{heads}x{len}x{len} = {want}",
            data.len()
        );
        Ok(Self { layers, heads, len, data })
    }

    /// Builds from nested vectors `[layer][head][query][key]`.
    pub fn from_nested(nested: &[Vec<Vec<Vec<f32>>>]) -> anyhow::Result<Self> {
        let layers = nested.len();
        let heads = nested.first().map_or(0, |l| l.len());
        let len = nested.first().and_then(|l| l.first()).map_or(0, |h| h.len());
        let mut data = Vec::with_capacity(layers * heads * len * len);
        for l in nested {
            anyhow::ensure!(l.len() == heads, "ragged attention tensor (heads)");
            for h in l {
                anyhow::ensure!(h.len() == len, "ragged attention tensor (queries)");
                for row in h {
                    anyhow::ensure!(row.len() == len, "ragged attention tensor (keys)");
                    data.extend_from_slice(row);
                }
            }
        }
        Self::new(layers, heads, len, data)
    }

    #[inline]
    pub fn get(&self, layer: usize, head: usize, query: usize, key: usize) -> f32 {
        self.data[((layer * self.heads + head) * self.len + query) * self.len + key]
    }

    /// The `len × len` matrix of one head, row-major (rows are queries).
    pub fn head(&self, layer: usize, head: usize) -> &[f32] {
        let n2 = self.len * self.len;
        let start = (layer * self.heads + head) * n2;
        &self.data[start..start + n2]
    }

    /// Mean over heads of one layer, `len × len` row-major.
    pub fn mean_heads(&self, layer: usize) -> Vec<f32> {
        let n2 = self.len * self.len;
        let mut out = vec![0.0f32; n2];
        for h in 0..self.heads {
            for (o, v) in out.iter_mut().zip(self.head(layer, h)) {
                *o += v;
            }
        }
        let inv = 1.0 / self.heads.max(1) as f32;
        out.iter_mut().for_each(|v| *v *= inv);
        out
    }

    /// Nested `[layer][head][query][key]` copy, the JSON shape of `explain --attentions`.
    pub fn to_nested(&self) -> Vec<Vec<Vec<Vec<f32>>>> {
        (0..self.layers)
            .map(|l| {
                (0..self.heads)
                    .map(|h| self.head(l, h).chunks(self.len).map(|r| r.to_vec()).collect())
                    .collect()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexing_matches_nested_layout() {
        let nested: Vec<Vec<Vec<Vec<f32>>>> = (0..2)
            .map(|l| {
                (0..3)
                    .map(|h| (0..4).map(|q| (0..4).map(|k| (l * 1000 + h * 100 + q * 10 + k) as f32).collect()).collect())
                    .collect()
            })
            .collect();
        let a = Attentions::from_nested(&nested).unwrap();
        assert_eq!(a.get(1, 2, 3, 1), 1231.0);
        assert_eq!(a.head(0, 1)[2 * 4 + 3], 123.0);
        assert_eq!(a.to_nested(), nested);
        let m = a.mean_heads(1);
        assert!((m[0] - 1100.0).abs() < 1e-3);
        assert!(Attentions::new(1, 1, 2, vec![0.0; 3]).is_err());
    }
}
