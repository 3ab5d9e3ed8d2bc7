//! Decomposition feature groups for shape-free (transfer) ExpNets.
//!
//! Raw attention says where [CLS] looked, not how much arrived there. The
//! decomposition methods weigh each source token by the size of what it
//! sends (value norms, Kobayashi et al. 2020) and, for ALTI (Ferrando et al.
//! 2022) and GlobEnc (Modarressi et al. 2022), by the residual and the layer
//! norm too; on classifiers of other tasks they are the strongest
//! forward-only baselines (docs/RESULTS.md), so a transfer ExpNet that reads
//! them starts from them rather than from raw attention alone. They come
//! from the same forward pass (hidden states and attention probabilities)
//! plus the model's attention-block weights, via `explain::decomposition`.
//!
//! Per depth bin (`features::depth_bin_layers`) the columns are:
//! - `value_norm`: mean, max and std over heads of `α^h_0j ‖f_h(x_j)‖` (each
//!   head's attention from [CLS] weighted by the norm of the transformed
//!   value vector), and the multi-head norm `‖Σ_h α^h_0j f_h(x_j)‖` (the
//!   `value_norm` method's score at the last layer), averaged over the bin's layers;
//! - `alti` / `globenc`: the token's share of [CLS] within the bin's layers
//!   (mean of the per-layer matrices' [CLS] row), and its share rolled out
//!   up to the bin's deepest layer (`C_l · … · C_1`, row 0: at the last bin,
//!   the `alti` / `globenc` method's score).
//!
//! Every column gets the spec's per-input normalisation, like the attention
//! columns, so the scale of a model's value vectors does not matter.

use std::path::Path;

use anyhow::Context;
use candle_core::D;
use serde::{Deserialize, Serialize};

use super::features::{FeatureSpec, depth_bin_layers, normalize_columns};
use super::st::{Buffer, Reader};
use crate::explain::decomposition::{LayerParts, alti_layer_of, globenc_layer_of, value_norm_rows};
use crate::explain::rollout::{identity, matmul};
use crate::model::{ForwardOutput, Model};

/// One decomposition feature group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Group {
    ValueNorm,
    Alti,
    GlobEnc,
}

impl Group {
    pub const ALL: [Group; 3] = [Group::ValueNorm, Group::Alti, Group::GlobEnc];

    pub fn name(self) -> &'static str {
        match self {
            Group::ValueNorm => "value_norm",
            Group::Alti => "alti",
            Group::GlobEnc => "globenc",
        }
    }

    /// Raw columns per layer: every head's weighted norm and the total, or
    /// the layer's and the rolled-out [CLS] share.
    fn per_layer(self, heads: usize) -> usize {
        match self {
            Group::ValueNorm => heads + 1,
            Group::Alti | Group::GlobEnc => 2,
        }
    }

    /// Names of the derived columns of one depth bin.
    fn stats(self) -> &'static [&'static str] {
        match self {
            Group::ValueNorm => &["mean", "max", "std", "total"],
            Group::Alti | Group::GlobEnc => &["layer", "rollout"],
        }
    }

    /// Raw columns for a `layers × heads` encoder.
    pub fn raw_width(self, layers: usize, heads: usize) -> usize {
        layers * self.per_layer(heads)
    }
}

/// Which decomposition groups a spec reads; all off in older files.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecompositionGroups {
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub value_norm: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub alti: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub globenc: bool,
}

impl DecompositionGroups {
    /// From a comma-separated list (`value_norm,alti,globenc`; `none` = off).
    pub fn parse(list: &str) -> anyhow::Result<Self> {
        let mut g = Self::default();
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty() && *s != "none") {
            match item {
                "value_norm" => g.value_norm = true,
                "alti" => g.alti = true,
                "globenc" => g.globenc = true,
                o => anyhow::bail!("unknown decomposition group {o} (valid: value_norm, alti, globenc, none)"),
            }
        }
        Ok(g)
    }

    pub fn is_off(&self) -> bool {
        self.groups().is_empty()
    }

    /// The enabled groups, in column order.
    pub fn groups(&self) -> Vec<Group> {
        let on = [self.value_norm, self.alti, self.globenc];
        Group::ALL.into_iter().zip(on).filter(|(_, on)| *on).map(|(g, _)| g).collect()
    }

    /// Derived columns with `bins` depth bins (independent of the encoder's shape).
    pub fn width(&self, bins: usize) -> usize {
        self.groups().iter().map(|g| g.stats().len() * bins).sum()
    }

    /// Raw columns of [`raw_rows`] for a `layers × heads` encoder.
    pub fn raw_width(&self, layers: usize, heads: usize) -> usize {
        self.groups().iter().map(|g| g.raw_width(layers, heads)).sum()
    }

    /// Names of the derived columns, in order.
    pub fn feature_names(&self, bins: usize) -> Vec<String> {
        let mut names = Vec::with_capacity(self.width(bins));
        for g in self.groups() {
            for b in 0..bins {
                g.stats().iter().for_each(|s| names.push(format!("{}.depth{b}of{bins}.{s}", g.name())));
            }
        }
        names
    }

    /// Fails with a one-line error when `model` has no blocks to decompose.
    pub fn check_model(&self, model: &Model) -> anyhow::Result<()> {
        if self.is_off() {
            return Ok(());
        }
        match crate::explain::decomposition::unsupported(model) {
            Some(why) => anyhow::bail!("this ExpNet reads decomposition features, but {why} (hint: use an ExpNet trained without --decomposition)"),
            None => Ok(()),
        }
    }
}

/// Raw rows of each of `groups`, one per token (special tokens included):
/// `layers × per_layer` columns per group, layer-major. Each layer's parts
/// are built once for all groups (per group, rebuilding them through candle
/// was most of the transfer ExpNet's cost on short texts).
pub fn raw_groups_rows(groups: &[Group], model: &Model, forward: &ForwardOutput) -> anyhow::Result<Vec<Vec<Vec<f32>>>> {
    if groups.is_empty() {
        return Ok(Vec::new());
    }
    let parts: Vec<LayerParts> = (0..forward.attentions.layers).map(|l| LayerParts::new(model, forward, l)).collect::<anyhow::Result<_>>()?;
    groups.iter().map(|&g| raw_group_rows_of(g, model, forward, &parts)).collect()
}

/// One group's raw rows from every layer's parts.
fn raw_group_rows_of(group: Group, model: &Model, forward: &ForwardOutput, parts: &[LayerParts]) -> anyhow::Result<Vec<Vec<f32>>> {
    let a = &forward.attentions;
    let (layers, heads, n) = (a.layers, a.heads, a.len);
    let per = group.per_layer(heads);
    let mut rows = vec![vec![0f32; layers * per]; n];
    match group {
        Group::ValueNorm => {
            for (l, parts) in parts.iter().enumerate() {
                let norms = parts.transformed.sqr()?.sum(D::Minus1)?.sqrt()?.to_vec2::<f32>()?; // [heads][n]
                let total = value_norm_rows(parts, 0, 1)?;
                for (j, row) in rows.iter_mut().enumerate() {
                    for (h, norm) in norms.iter().enumerate() {
                        row[l * per + h] = a.head(l, h)[j] * norm[j];
                    }
                    row[l * per + heads] = total[j] as f32;
                }
            }
        }
        Group::Alti | Group::GlobEnc => {
            let mut rolled = identity(n);
            for (l, p) in parts.iter().enumerate() {
                let c = if group == Group::Alti { alti_layer_of(model, l, p)? } else { globenc_layer_of(model, l, p)? };
                rolled = matmul(&c, &rolled, n);
                for (j, row) in rows.iter_mut().enumerate() {
                    row[2 * l] = c[j] as f32;
                    row[2 * l + 1] = rolled[j] as f32;
                }
            }
        }
    }
    Ok(rows)
}

/// Raw rows of every group `groups` enables, concatenated per token.
pub fn raw_rows(groups: &DecompositionGroups, model: &Model, forward: &ForwardOutput) -> anyhow::Result<Vec<Vec<f32>>> {
    let mut rows = vec![Vec::new(); forward.attentions.len];
    for group_rows in raw_groups_rows(&groups.groups(), model, forward)? {
        for (row, part) in rows.iter_mut().zip(group_rows) {
            row.extend(part);
        }
    }
    Ok(rows)
}

/// The derived, normalised decomposition columns of `spec` from raw rows of
/// a `layers × heads` encoder ([`raw_rows`]).
pub fn derive(spec: &FeatureSpec, raw: &[Vec<f32>], special: &[bool], layers: usize, heads: usize) -> anyhow::Result<Vec<Vec<f32>>> {
    let groups = spec.decomposition;
    let bins = spec.depth_bins;
    anyhow::ensure!(bins > 0, "decomposition features need shape-free (depth-binned) features");
    anyhow::ensure!(raw.len() == special.len(), "this ExpNet reads decomposition features: {} rows were given for {} tokens", raw.len(), special.len());
    let want = groups.raw_width(layers, heads);
    if let Some(r) = raw.iter().find(|r| r.len() != want) {
        anyhow::bail!("decomposition rows have {} columns, expected {want} for {layers}x{heads}", r.len());
    }
    let members = depth_bin_layers(layers, bins);
    let mut rows: Vec<Vec<f32>> = vec![Vec::with_capacity(groups.width(bins)); raw.len()];
    for (row, r) in rows.iter_mut().zip(raw) {
        let mut at = 0;
        for g in groups.groups() {
            let vals = &r[at..at + g.raw_width(layers, heads)];
            at += g.raw_width(layers, heads);
            for bin in &members {
                let k = bin.len() as f32;
                match g {
                    Group::ValueNorm => {
                        let per = heads + 1;
                        let mut acc = [0f32; 4];
                        for &l in bin {
                            let hv = &vals[l * per..l * per + heads];
                            let mean = hv.iter().sum::<f32>() / heads as f32;
                            let max = hv.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                            let std = (hv.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / heads as f32).sqrt();
                            for (s, v) in acc.iter_mut().zip([mean, max, std, vals[l * per + heads]]) {
                                *s += v / k;
                            }
                        }
                        row.extend_from_slice(&acc);
                    }
                    Group::Alti | Group::GlobEnc => {
                        row.push(bin.iter().map(|&l| vals[2 * l]).sum::<f32>() / k);
                        let deepest = *bin.iter().max().expect("bins are never empty");
                        row.push(vals[2 * deepest + 1]);
                    }
                }
            }
        }
    }
    normalize_columns(spec.normalization, &mut rows, groups.width(bins), special);
    Ok(rows)
}

const CACHE_KEY: &str = "expnet_decomposition";

#[derive(Serialize, Deserialize)]
struct CacheHeader {
    group: String,
    layers: usize,
    heads: usize,
    ids: Vec<String>,
}

/// Writes one group's raw rows of many examples (a feature cache).
pub fn save_raw(path: &Path, group: Group, layers: usize, heads: usize, examples: &[(String, Vec<Vec<f32>>)]) -> anyhow::Result<()> {
    let width = group.raw_width(layers, heads);
    let mut flat = Vec::new();
    let mut offsets = vec![0u64];
    for (id, rows) in examples {
        anyhow::ensure!(rows.iter().all(|r| r.len() == width), "example {id}: decomposition rows are not {width} wide");
        rows.iter().for_each(|r| flat.extend_from_slice(r));
        offsets.push((flat.len() / width.max(1)) as u64);
    }
    let n = flat.len() / width.max(1);
    let header = CacheHeader { group: group.name().into(), layers, heads, ids: examples.iter().map(|(id, _)| id.clone()).collect() };
    let tensors = vec![
        ("rows".to_string(), Buffer::f32(vec![n, width], &flat)),
        ("offsets".to_string(), Buffer::u64(vec![offsets.len()], &offsets)),
    ];
    let bytes = super::st::serialize(&tensors, CACHE_KEY, serde_json::to_string(&header)?)?;
    std::fs::write(path, bytes).with_context(|| format!("could not write decomposition cache {}", path.display()))
}

/// Reads a cache written by [`save_raw`] for `group` of a `layers × heads` encoder.
pub fn load_raw(path: &Path, group: Group, layers: usize, heads: usize) -> anyhow::Result<Vec<(String, Vec<Vec<f32>>)>> {
    let bytes = std::fs::read(path).with_context(|| format!("could not read decomposition cache {}", path.display()))?;
    let r = Reader::new(&bytes, CACHE_KEY, "decomposition feature cache")?;
    let h: CacheHeader = serde_json::from_str(&r.json).context("decomposition cache has malformed metadata")?;
    anyhow::ensure!(
        h.group == group.name() && h.layers == layers && h.heads == heads,
        "decomposition cache {} holds {} for {}x{}, not {} for {layers}x{heads}",
        path.display(),
        h.group,
        h.layers,
        h.heads,
        group.name()
    );
    let width = group.raw_width(layers, heads);
    let n = *r.shape("rows")?.first().context("decomposition cache: rows tensor has no dimension")?;
    let flat = r.f32("rows", &[n, width])?;
    let offsets = r.u64("offsets", &[h.ids.len() + 1])?;
    anyhow::ensure!(
        offsets.first() == Some(&0) && offsets.last() == Some(&(n as u64)) && offsets.windows(2).all(|w| w[0] <= w[1]),
        "decomposition cache has inconsistent example offsets"
    );
    Ok(h.ids
        .into_iter()
        .zip(offsets.windows(2))
        .map(|(id, w)| (id, flat[w[0] as usize * width..w[1] as usize * width].chunks(width).map(<[f32]>::to_vec).collect()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expnet::Normalization;

    fn raw(layers: usize, heads: usize, n: usize, groups: &DecompositionGroups) -> Vec<Vec<f32>> {
        let w = groups.raw_width(layers, heads);
        (0..n).map(|i| (0..w).map(|c| ((i * 31 + c * 7) % 13) as f32 / 13.0).collect()).collect()
    }

    #[test]
    fn width_and_names_do_not_depend_on_the_encoder_shape() {
        let groups = DecompositionGroups::parse("value_norm, alti,globenc").unwrap();
        let mut spec = FeatureSpec::shape_free(2, 4, 3, Normalization::PerSentenceRank);
        spec.decomposition = groups;
        let special = [true, false, false, false, true];
        for (l, h) in [(2, 4), (3, 2), (12, 12), (1, 1)] {
            let d = derive(&spec, &raw(l, h, 5, &groups), &special, l, h).unwrap();
            assert!(d.iter().all(|r| r.len() == groups.width(3)), "{l}x{h}");
            assert!(d.iter().flatten().all(|v| (0.0..=1.0).contains(v)), "rank-normalised: {d:?}");
        }
        assert_eq!(groups.width(3), 3 * (4 + 2 + 2));
        assert_eq!(groups.feature_names(3).len(), groups.width(3));
        assert_eq!(groups.feature_names(3)[4], "value_norm.depth1of3.mean");
        assert!(derive(&spec, &raw(2, 4, 5, &groups), &special, 3, 4).unwrap_err().to_string().contains("expected"));
        assert!(DecompositionGroups::parse("alti,lrp").unwrap_err().to_string().contains("valid: value_norm"));
        assert!(DecompositionGroups::parse("none").unwrap().is_off());
    }

    #[test]
    fn bins_average_layers_and_take_the_deepest_rollout() {
        // 4 layers, 2 heads, 2 bins {0,1} {2,3}; global normalisation keeps raw values.
        let groups = DecompositionGroups { value_norm: true, alti: true, globenc: false };
        let mut spec = FeatureSpec::shape_free(4, 2, 2, Normalization::Global);
        spec.decomposition = groups;
        // value_norm: per layer [h0, h1, total]; alti: per layer [layer, rollout].
        let vn = [[1.0, 3.0, 5.0], [3.0, 3.0, 7.0], [0.0, 2.0, 1.0], [2.0, 2.0, 3.0]];
        let alti = [[0.1, 0.1], [0.3, 0.2], [0.5, 0.4], [0.7, 0.6]];
        let row: Vec<f32> = vn.iter().flatten().chain(alti.iter().flatten()).copied().collect();
        let d = derive(&spec, &[row], &[false], 4, 2).unwrap();
        // Bin 0: means [2, 3] -> 2.5; maxes [3, 3] -> 3; stds [1, 0] -> 0.5; totals 6.
        // Bin 1: means [1, 2] -> 1.5; maxes [2, 2]; stds [1, 0] -> 0.5; totals 2.
        // alti bin 0: layer mean 0.2, rollout at layer 1 = 0.2; bin 1: 0.6, 0.6 (layer 3).
        let want = [2.5, 3.0, 0.5, 6.0, 1.5, 2.0, 0.5, 2.0, 0.2, 0.2, 0.6, 0.6];
        assert_eq!(d[0].len(), want.len());
        for (g, w) in d[0].iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "{:?}", d[0]);
        }
    }

    #[test]
    fn raw_cache_round_trips_and_refuses_another_shape() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.safetensors");
        let g = DecompositionGroups { alti: true, ..Default::default() };
        let ex = vec![("a".to_string(), raw(2, 4, 3, &g)), ("b".to_string(), raw(2, 4, 5, &g))];
        save_raw(&path, Group::Alti, 2, 4, &ex).unwrap();
        assert_eq!(load_raw(&path, Group::Alti, 2, 4).unwrap(), ex);
        assert!(load_raw(&path, Group::Alti, 3, 4).unwrap_err().to_string().contains("not alti for 3x4"));
        assert!(load_raw(&path, Group::GlobEnc, 2, 4).is_err());
    }
}
