//! Gradient feature group for ExpNets (`expnet train --gradient`): per-token
//! scores of the one shared backward pass (issue 11, item 4).
//!
//! Saliency, grad×input, Grad-SAM and Chefer all read the same gradients of
//! the explained logit (word embeddings and attention probabilities), so
//! giving their scores to the ExpNet costs one backward pass, still one to
//! three orders of magnitude below integrated gradients, LIME and
//! KernelSHAP. Each signal is one column, whatever the encoder's depth and
//! head count (so the group is shape-free), normalised per input (rank or
//! z-score) because the raw scale of a gradient depends on the model.
//! Raw rows always hold all four signals ([`RAW_WIDTH`]), so a cache serves
//! every subset.

use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::features::{FeatureSpec, Normalization, normalize_columns};
use super::st::{Buffer, Reader};
use crate::explain::{chefer::chefer_scores, grad_sam::grad_sam_scores, grad_x_input::grad_x_input_scores, saliency::saliency_scores};
use crate::model::Gradients;

/// The signals, in raw and column order.
pub const SIGNALS: [&str; 4] = ["saliency", "grad_x_input", "grad_sam", "chefer"];

/// Columns of a raw row: every signal.
pub const RAW_WIDTH: usize = SIGNALS.len();

/// Which gradient signals a spec reads; all off in older files.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GradientGroups {
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub saliency: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub grad_x_input: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub grad_sam: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub chefer: bool,
    /// Per-input normalisation of these columns; `None` = the spec's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub normalization: Option<Normalization>,
}

impl GradientGroups {
    /// From a comma-separated list (`saliency,grad_x_input,grad_sam,chefer`,
    /// `all`; `none` = off).
    pub fn parse(list: &str) -> anyhow::Result<Self> {
        let mut g = Self::default();
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty() && *s != "none") {
            match item {
                "saliency" => g.saliency = true,
                "grad_x_input" => g.grad_x_input = true,
                "grad_sam" => g.grad_sam = true,
                "chefer" => g.chefer = true,
                "all" => (g.saliency, g.grad_x_input, g.grad_sam, g.chefer) = (true, true, true, true),
                o => anyhow::bail!("unknown gradient signal {o} (valid: saliency, grad_x_input, grad_sam, chefer, all, none)"),
            }
        }
        Ok(g)
    }

    fn on(&self) -> [bool; 4] {
        [self.saliency, self.grad_x_input, self.grad_sam, self.chefer]
    }

    pub fn is_off(&self) -> bool {
        self.width() == 0
    }

    /// Columns: one per enabled signal, for any encoder.
    pub fn width(&self) -> usize {
        self.on().iter().filter(|o| **o).count()
    }

    /// Indices into a raw row of the enabled signals, in column order.
    fn raw_indices(&self) -> Vec<usize> {
        (0..RAW_WIDTH).filter(|&i| self.on()[i]).collect()
    }

    /// Names of the columns, in order (`gradient.saliency`, …).
    pub fn feature_names(&self) -> Vec<String> {
        self.raw_indices().into_iter().map(|i| format!("gradient.{}", SIGNALS[i])).collect()
    }
}

/// Raw rows, one per token (special tokens included): the four methods'
/// scores on the one backward pass, exactly as the methods compute them.
pub fn raw_rows(g: &Gradients) -> Vec<Vec<f32>> {
    let cols = [saliency_scores(g), grad_x_input_scores(g), grad_sam_scores(&g.attentions, &g.attention_grads), chefer_scores(&g.attentions, &g.attention_grads)];
    (0..g.attentions.len).map(|j| cols.iter().map(|c| c[j]).collect()).collect()
}

/// The enabled, normalised gradient columns of `spec` from raw rows.
pub fn derive(spec: &FeatureSpec, raw: &[Vec<f32>], special: &[bool]) -> anyhow::Result<Vec<Vec<f32>>> {
    let groups = spec.gradient;
    anyhow::ensure!(
        raw.len() == special.len(),
        "this ExpNet reads gradient features: {} rows were given for {} tokens (hint: it needs the shared backward pass of a classifier)",
        raw.len(),
        special.len()
    );
    if let Some(r) = raw.iter().find(|r| r.len() != RAW_WIDTH) {
        anyhow::bail!("gradient rows have {} columns, expected {RAW_WIDTH}", r.len());
    }
    let idx = groups.raw_indices();
    let mut rows: Vec<Vec<f32>> = raw.iter().map(|r| idx.iter().map(|&i| r[i]).collect()).collect();
    normalize_columns(groups.normalization.unwrap_or(spec.normalization), &mut rows, idx.len(), special);
    Ok(rows)
}

const CACHE_KEY: &str = "expnet_gradient";

#[derive(Serialize, Deserialize)]
struct CacheHeader {
    signals: Vec<String>,
    ids: Vec<String>,
    /// The class each example's logit was differentiated for (the predicted one).
    targets: Vec<usize>,
}

/// One example's raw rows and the class whose logit was differentiated.
pub type CachedExample = (String, usize, Vec<Vec<f32>>);

/// Writes raw rows of many examples (a feature cache).
pub fn save_raw(path: &Path, examples: &[CachedExample]) -> anyhow::Result<()> {
    let mut flat = Vec::new();
    let mut offsets = vec![0u64];
    for (id, _, rows) in examples {
        anyhow::ensure!(rows.iter().all(|r| r.len() == RAW_WIDTH), "example {id}: gradient rows are not {RAW_WIDTH} wide");
        rows.iter().for_each(|r| flat.extend_from_slice(r));
        offsets.push((flat.len() / RAW_WIDTH) as u64);
    }
    let n = flat.len() / RAW_WIDTH;
    let header = CacheHeader {
        signals: SIGNALS.iter().map(|s| s.to_string()).collect(),
        ids: examples.iter().map(|(id, _, _)| id.clone()).collect(),
        targets: examples.iter().map(|(_, t, _)| *t).collect(),
    };
    let tensors = vec![
        ("rows".to_string(), Buffer::f32(vec![n, RAW_WIDTH], &flat)),
        ("offsets".to_string(), Buffer::u64(vec![offsets.len()], &offsets)),
    ];
    let bytes = super::st::serialize(&tensors, CACHE_KEY, serde_json::to_string(&header)?)?;
    std::fs::write(path, bytes).with_context(|| format!("could not write gradient cache {}", path.display()))
}

/// Reads a cache written by [`save_raw`].
pub fn load_raw(path: &Path) -> anyhow::Result<Vec<CachedExample>> {
    let bytes = std::fs::read(path).with_context(|| format!("could not read gradient cache {}", path.display()))?;
    let r = Reader::new(&bytes, CACHE_KEY, "gradient feature cache")?;
    let h: CacheHeader = serde_json::from_str(&r.json).context("gradient cache has malformed metadata")?;
    anyhow::ensure!(h.signals.iter().map(String::as_str).eq(SIGNALS), "gradient cache {} holds other signals ({:?})", path.display(), h.signals);
    anyhow::ensure!(h.targets.len() == h.ids.len(), "gradient cache has {} targets for {} examples", h.targets.len(), h.ids.len());
    let n = *r.shape("rows")?.first().context("gradient cache: rows tensor has no dimension")?;
    let flat = r.f32("rows", &[n, RAW_WIDTH])?;
    let offsets = r.u64("offsets", &[h.ids.len() + 1])?;
    anyhow::ensure!(
        offsets.first() == Some(&0) && offsets.last() == Some(&(n as u64)) && offsets.windows(2).all(|w| w[0] <= w[1]),
        "gradient cache has inconsistent example offsets"
    );
    Ok(h.ids
        .into_iter()
        .zip(h.targets)
        .zip(offsets.windows(2))
        .map(|((id, t), w)| (id, t, flat[w[0] as usize * RAW_WIDTH..w[1] as usize * RAW_WIDTH].chunks(RAW_WIDTH).map(<[f32]>::to_vec).collect()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(n: usize) -> Vec<Vec<f32>> {
        (0..n).map(|i| (0..RAW_WIDTH).map(|c| ((i * 31 + c * 7) % 13) as f32 / 13.0 - 0.3).collect()).collect()
    }

    fn spec(list: &str, norm: Normalization) -> FeatureSpec {
        let mut s = FeatureSpec::shape_free(2, 4, 2, Normalization::PerSentenceRank);
        s.gradient = GradientGroups::parse(list).unwrap();
        s.gradient.normalization = Some(norm);
        s
    }

    #[test]
    fn parse_names_and_width() {
        let g = GradientGroups::parse("grad_sam, saliency").unwrap();
        assert_eq!(g.width(), 2);
        assert_eq!(g.feature_names(), ["gradient.saliency", "gradient.grad_sam"]);
        assert_eq!(GradientGroups::parse("all").unwrap().width(), 4);
        assert!(GradientGroups::parse("none").unwrap().is_off());
        assert!(GradientGroups::parse("saliency,ig").unwrap_err().to_string().contains("valid: saliency"));
    }

    /// z-scored columns have mean 0 and sd 1 over a text's content pieces;
    /// ranked ones span 0..=1 and keep each column's order.
    #[test]
    fn per_input_normalisation_law() {
        let special = [true, false, false, false, false, false, true];
        let r = raw(special.len());
        let z = derive(&spec("all", Normalization::PerSentenceZ), &r, &special).unwrap();
        for c in 0..RAW_WIDTH {
            let col: Vec<f32> = (0..special.len()).filter(|&i| !special[i]).map(|i| z[i][c]).collect();
            let mean = col.iter().sum::<f32>() / col.len() as f32;
            let sd = (col.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / col.len() as f32).sqrt();
            assert!(mean.abs() < 1e-5 && (sd - 1.0).abs() < 1e-4, "column {c}: mean {mean}, sd {sd}");
        }
        let ranked = derive(&spec("chefer,saliency", Normalization::PerSentenceRank), &r, &special).unwrap();
        assert!(ranked.iter().all(|row| row.len() == 2));
        for (col, raw_col) in [(0, 0), (1, 3)] {
            for a in 1..6 {
                for b in 1..6 {
                    if r[a][raw_col] > r[b][raw_col] {
                        assert!(ranked[a][col] > ranked[b][col], "order of column {col}");
                    }
                }
            }
            let vals: Vec<f32> = (1..6).map(|i| ranked[i][col]).collect();
            assert!(vals.iter().any(|v| *v == 1.0) && vals.iter().any(|v| *v == 0.0), "{vals:?}");
        }
        assert!(derive(&spec("all", Normalization::PerSentenceZ), &r[..3], &special).unwrap_err().to_string().contains("backward pass"));
    }

    #[test]
    fn raw_cache_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.safetensors");
        let ex = vec![("a".to_string(), 1, raw(3)), ("b".to_string(), 0, raw(5))];
        save_raw(&path, &ex).unwrap();
        assert_eq!(load_raw(&path).unwrap(), ex);
        std::fs::write(&path, b"not a cache").unwrap();
        assert!(load_raw(&path).is_err());
    }
}
