//! Per-token features read off one forward pass's attention tensor.
//!
//! ExpNet never sees text: each token is described by how attention flows
//! to and from it in every layer and head (plus, when the spec asks, the
//! decomposition and shared-backward-pass columns of [`super::decomp_features`]
//! and [`super::grad_features`]). The [`FeatureSpec`]
//! is saved inside the ExpNet file so that scoring extracts exactly the
//! columns the network was trained on, in the same order.

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::decomp_features::DecompositionGroups;
use super::grad_features::GradientGroups;
use crate::model::Attentions;

/// How per-head values enter the feature vector.
///
/// `PerHead` keeps head identity (best in-task). The pooled modes are
/// invariant to permuting the heads of a layer, which helps when the
/// explainer must transfer to a classifier fine-tuned on another task, where
/// "head 7" means something else.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum HeadPooling {
    /// One value per (layer, head): `L·H` per group.
    #[default]
    PerHead,
    /// Per layer, the head values sorted in descending order: `L·H` per group.
    Sorted,
    /// Per layer, mean, max and standard deviation over heads: `3·L` per group.
    Stats,
}

/// How feature columns are scaled before the network sees them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Normalization {
    /// Raw values at extraction; the network z-scores them with statistics
    /// of the training set (stored in the ExpNet file).
    #[default]
    Global,
    /// Each attention column z-scored within the input (over its non-special
    /// tokens), so inputs of different lengths are comparable.
    PerSentenceZ,
    /// Each attention column replaced by the token's rank within the input,
    /// scaled to 0..=1 (ties share their mean rank). Scale-free.
    PerSentenceRank,
}

/// Which features to extract, and for which encoder shape.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FeatureSpec {
    /// Encoder layers the spec was built for.
    pub layers: usize,
    /// Attention heads per layer the spec was built for.
    pub heads: usize,
    /// Attention from [CLS] (query 0) to the token.
    pub cls_to_token: bool,
    /// Attention from the token (as query) to [CLS] (key 0).
    pub token_to_cls: bool,
    /// Mean over all queries of the attention paid to the token.
    pub received: bool,
    /// Attention of the token to itself, `A[i][i]`.
    pub self_attn: bool,
    /// `i / (n − 1)`: where the token sits in the input.
    pub relative_position: bool,
    /// 1 for tokens the tokenizer added, else 0.
    pub special_flag: bool,
    pub head_pooling: HeadPooling,
    pub normalization: Normalization,
    /// Layers left out of every attention group (for ablations); empty in
    /// files written before this field existed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dropped_layers: Vec<usize>,
    /// Signals beyond attention from the same forward pass (distilled
    /// ExpNets); off in rationale ExpNets and in older files.
    #[serde(default, skip_serializing_if = "ForwardSignals::is_off")]
    pub signals: ForwardSignals,
    /// Shape-free features (transfer ExpNets): when > 0, layers are mapped
    /// to this many relative-depth bins and heads pooled by statistics, so
    /// the columns are the same for any depth and head count and one file
    /// applies to every encoder. `layers`/`heads` then only record the
    /// training model's shape. 0 (the default, and older files) = per layer.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub depth_bins: usize,
    /// Decomposition groups (value norms, ALTI, GlobEnc) per depth bin, after
    /// the special flag ([`super::decomp_features`]); shape-free specs only,
    /// off in older files.
    #[serde(default, skip_serializing_if = "DecompositionGroups::is_off")]
    pub decomposition: DecompositionGroups,
    /// Per-token scores of the one shared backward pass (saliency,
    /// grad×input, Grad-SAM, Chefer), after the decomposition columns
    /// ([`super::grad_features`]); off in older files.
    #[serde(default, skip_serializing_if = "GradientGroups::is_off")]
    pub gradient: GradientGroups,
}

fn is_zero(v: &usize) -> bool {
    *v == 0
}

/// Per-token columns read off the forward pass's hidden states and the
/// classification head, appended after the attention columns.
///
/// Attention alone says where the model looked, not what it found there;
/// a teacher such as occlusion measures what a token changes in the
/// prediction, which depends on the token's content in context. The hidden
/// state carries that content, and the head applied to it ("logit lens")
/// says which class the token's own representation leans to.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForwardSignals {
    /// The token's hidden state after each of the last `hidden_layers`
    /// layers: `hidden_size` columns each.
    #[serde(default)]
    pub hidden_layers: usize,
    /// The classification head applied to the token's hidden state after
    /// each of the last `lens_layers` layers: the explained class's log
    /// probability and its logit margin over the best other class (2 each).
    #[serde(default)]
    pub lens_layers: usize,
    /// Width of a hidden state (the model's `hidden_size`).
    #[serde(default)]
    pub hidden_size: usize,
    /// One-hot of the explained class over this many classes, so one
    /// network serves every class; 0 = off.
    #[serde(default)]
    pub target_classes: usize,
    /// Decision-aligned columns ([`super::decision`]): what each token sends
    /// through every head, projected on the classifier's decision direction.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub decision: bool,
}

impl ForwardSignals {
    pub fn is_off(&self) -> bool {
        self.width(0, 0) == 0 && !self.decision
    }
    /// Columns these signals add for an `layers × heads` encoder.
    pub fn width(&self, layers: usize, heads: usize) -> usize {
        let decision = if self.decision { super::decision::width(layers, heads) } else { 0 };
        self.hidden_layers * self.hidden_size + 2 * self.lens_layers + self.target_classes + decision
    }
    /// Whether the classification head is needed to compute them.
    pub fn needs_head(&self) -> bool {
        self.lens_layers > 0 || self.target_classes > 0 || self.decision
    }
}

/// Everything a feature row can be computed from: one forward pass, and
/// for [`ForwardSignals`] the head's logits on every token's hidden states.
pub struct FeatureSource<'a> {
    pub attentions: &'a Attentions,
    pub special: &'a [bool],
    /// `[layers+1][len][hidden]` (embeddings, then each layer).
    pub hidden_states: &'a [Vec<Vec<f32>>],
    /// `lens[k][i]`: head logits of token `i`'s hidden state after layer
    /// `L − lens_layers + 1 + k` (only the last `lens_layers` layers).
    pub lens: &'a [Vec<Vec<f32>>],
    /// Rows of [`super::decision::decision_rows`] when the spec reads them, else empty.
    pub decision: &'a [Vec<f32>],
    /// Class whose decision is explained.
    pub target: usize,
    /// Raw rows of [`super::decomp_features::raw_rows`] when the spec reads
    /// decomposition groups, else empty.
    pub decomposition: &'a [Vec<f32>],
    /// Raw rows of [`super::grad_features::raw_rows`] when the spec reads
    /// gradient signals, else empty.
    pub gradient: &'a [Vec<f32>],
}

/// The attention groups in column order, with their names.
const GROUPS: [&str; 4] = ["cls_to_token", "token_to_cls", "received", "self_attn"];

impl FeatureSpec {
    /// The default spec: the four attention groups per head, relative
    /// position and the special flag, globally normalised
    /// (4·L·H + 2 = 290 features for a 6×12 MiniLM).
    pub fn new(layers: usize, heads: usize) -> Self {
        Self {
            layers,
            heads,
            cls_to_token: true,
            token_to_cls: true,
            received: true,
            self_attn: true,
            relative_position: true,
            special_flag: true,
            head_pooling: HeadPooling::PerHead,
            normalization: Normalization::Global,
            dropped_layers: Vec::new(),
            signals: ForwardSignals::default(),
            depth_bins: 0,
            decomposition: DecompositionGroups::default(),
            gradient: GradientGroups::default(),
        }
    }

    /// A shape-free spec (see [`FeatureSpec::depth_bins`]): the four
    /// attention groups as mean/max/std over heads in `bins` depth bins,
    /// plus relative position and the special flag — `12·bins + 2` columns
    /// whatever the encoder.
    pub fn shape_free(layers: usize, heads: usize, bins: usize, normalization: Normalization) -> Self {
        Self { head_pooling: HeadPooling::Stats, normalization, depth_bins: bins, ..Self::new(layers, heads) }
    }

    /// Whether one file applies to encoders of any depth and head count.
    pub fn is_shape_free(&self) -> bool {
        self.depth_bins > 0
    }

    /// Layers whose attention enters the features, in order.
    pub fn used_layers(&self) -> Vec<usize> {
        (0..self.layers).filter(|l| !self.dropped_layers.contains(l)).collect()
    }

    fn groups(&self) -> [bool; 4] {
        [self.cls_to_token, self.token_to_cls, self.received, self.self_attn]
    }

    /// Columns one attention group contributes.
    fn group_width(&self) -> usize {
        if self.is_shape_free() {
            return 3 * self.depth_bins;
        }
        let layers = self.used_layers().len();
        match self.head_pooling {
            HeadPooling::PerHead | HeadPooling::Sorted => layers * self.heads,
            HeadPooling::Stats => 3 * layers,
        }
    }

    /// Number of columns that come from attention (and get per-sentence normalisation).
    pub fn attention_dim(&self) -> usize {
        self.groups().iter().filter(|g| **g).count() * self.group_width()
    }

    /// Total feature columns per token.
    pub fn dim(&self) -> usize {
        self.attention_dim()
            + self.relative_position as usize
            + self.special_flag as usize
            + self.decomposition.width(self.depth_bins)
            + self.gradient.width()
            + self.signals.width(self.layers, self.heads)
    }

    /// Column names in order, for diagnostics and feature-importance reports.
    pub fn feature_names(&self) -> Vec<String> {
        let mut names = Vec::with_capacity(self.dim());
        for (g, on) in GROUPS.iter().zip(self.groups()) {
            if !on {
                continue;
            }
            if self.is_shape_free() {
                for b in 0..self.depth_bins {
                    ["mean", "max", "std"].iter().for_each(|s| names.push(format!("{g}.depth{b}of{}.{s}", self.depth_bins)));
                }
                continue;
            }
            for l in self.used_layers() {
                match self.head_pooling {
                    HeadPooling::PerHead => (0..self.heads).for_each(|h| names.push(format!("{g}.L{l}.H{h}"))),
                    HeadPooling::Sorted => (0..self.heads).for_each(|r| names.push(format!("{g}.L{l}.top{}", r + 1))),
                    HeadPooling::Stats => ["mean", "max", "std"].iter().for_each(|s| names.push(format!("{g}.L{l}.{s}"))),
                }
            }
        }
        if self.relative_position {
            names.push("relative_position".into());
        }
        if self.special_flag {
            names.push("special_flag".into());
        }
        names.extend(self.decomposition.feature_names(self.depth_bins));
        names.extend(self.gradient.feature_names());
        let sig = &self.signals;
        for k in 0..sig.hidden_layers {
            let l = self.layers + 1 - sig.hidden_layers + k;
            (0..sig.hidden_size).for_each(|d| names.push(format!("hidden.L{l}.{d}")));
        }
        for k in 0..sig.lens_layers {
            let l = self.layers + 1 - sig.lens_layers + k;
            names.push(format!("lens.L{l}.log_prob"));
            names.push(format!("lens.L{l}.margin"));
        }
        (0..sig.target_classes).for_each(|c| names.push(format!("target.{c}")));
        if sig.decision {
            names.extend(super::decision::names(self.layers, self.heads));
        }
        names
    }

    /// Fails with a clear message when attentions of `layers × heads` cannot feed this spec.
    pub fn check_shape(&self, layers: usize, heads: usize) -> anyhow::Result<()> {
        if self.is_shape_free() {
            anyhow::ensure!(layers > 0 && heads > 0, "the attentions are empty ({layers} layers x {heads} heads)");
            return Ok(());
        }
        anyhow::ensure!(
            layers == self.layers && heads == self.heads,
            "ExpNet features were defined for a {}-layer x {}-head encoder, but the attentions have \
             {layers} layers x {heads} heads; use an ExpNet trained for this model (expnet train)",
            self.layers,
            self.heads
        );
        Ok(())
    }

    /// Sanity checks on a spec read from a file.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.layers > 0 && self.heads > 0, "feature spec has an empty shape ({}x{})", self.layers, self.heads);
        anyhow::ensure!(self.dim() > 0, "feature spec selects no features; enable at least one group");
        if let Some(l) = self.dropped_layers.iter().find(|&&l| l >= self.layers) {
            anyhow::bail!("feature spec drops layer {l}, but the encoder has {} layers (0..{})", self.layers, self.layers);
        }
        let sig = &self.signals;
        anyhow::ensure!(
            sig.hidden_layers <= self.layers + 1 && sig.lens_layers <= self.layers + 1,
            "feature spec reads {} hidden / {} lens layers of a {}-layer encoder",
            sig.hidden_layers,
            sig.lens_layers,
            self.layers
        );
        anyhow::ensure!(sig.hidden_layers == 0 || sig.hidden_size > 0, "feature spec reads hidden states of width 0");
        anyhow::ensure!(
            self.is_shape_free() || self.decomposition.is_off(),
            "decomposition features are per depth bin (hint: add --depth-bins N to --decomposition)"
        );
        if self.is_shape_free() {
            anyhow::ensure!(
                self.head_pooling == HeadPooling::Stats && self.dropped_layers.is_empty() && sig.is_off(),
                "a shape-free feature spec pools heads by statistics and reads attention only (hint: --drop may name groups, not layers, with --depth-bins)"
            );
        }
        Ok(())
    }
}

/// Extracts one feature row per token (special tokens included).
///
/// `special[i]` marks tokens the tokenizer added; per-sentence statistics are
/// taken over the other tokens so that [CLS]/[SEP] (which soak up attention)
/// do not dominate them. Equivalent to [`derive`] applied to [`extract_raw`],
/// which is how it is computed, so cached raw features give identical rows.
pub fn extract(spec: &FeatureSpec, attn: &Attentions, special: &[bool]) -> anyhow::Result<Vec<Vec<f32>>> {
    anyhow::ensure!(
        spec.decomposition.is_off(),
        "this ExpNet reads decomposition features, which need the model's weights and hidden states, not only attentions (hint: score it as the expnet method of a loaded model)"
    );
    anyhow::ensure!(
        spec.gradient.is_off(),
        "this ExpNet reads gradient features, which need the shared backward pass, not only attentions (hint: score it as a method of a loaded classifier)"
    );
    extract_attention(spec, attn, special)
}

/// [`extract`] without the decomposition columns.
fn extract_attention(spec: &FeatureSpec, attn: &Attentions, special: &[bool]) -> anyhow::Result<Vec<Vec<f32>>> {
    spec.check_shape(attn.layers, attn.heads)?;
    let raw = extract_raw(attn, special)?;
    derive_shaped(spec, &raw, special, attn.layers, attn.heads)
}

/// The raw rows every spec is derived from: all four groups per (layer,
/// head), unnormalised, then relative position and the special flag — the
/// columns of `FeatureSpec::new(layers, heads)`. Caching these lets any
/// pooling, normalisation or ablation be trained without re-running the encoder.
pub fn extract_raw(attn: &Attentions, special: &[bool]) -> anyhow::Result<Vec<Vec<f32>>> {
    let n = attn.len;
    anyhow::ensure!(
        attn.data.len() == attn.layers * attn.heads * n * n,
        "attention buffer has {} values, expected {}x{}x{n}x{n}",
        attn.data.len(),
        attn.layers,
        attn.heads
    );
    anyhow::ensure!(
        special.len() == n,
        "special-token mask has {} entries but the attentions cover {n} tokens",
        special.len()
    );
    let (layers, heads) = (attn.layers, attn.heads);
    let lh = layers * heads;
    let mut rows = vec![vec![0.0f32; 4 * lh + 2]; n];
    let mut received = vec![0f32; n];
    for l in 0..layers {
        for h in 0..heads {
            let m = attn.head(l, h);
            let c = l * heads + h;
            // Column sums row by row: contiguous reads, and for every key the
            // same order of additions (query 0, 1, …) as a column walk.
            received.iter_mut().for_each(|r| *r = 0.0);
            for q in m[..n * n].chunks_exact(n) {
                received.iter_mut().zip(q).for_each(|(r, v)| *r += v);
            }
            for (i, row) in rows.iter_mut().enumerate() {
                row[c] = m[i]; // query 0 -> key i
                row[lh + c] = m[i * n]; // query i -> key 0
                row[2 * lh + c] = received[i] / n as f32;
                row[3 * lh + c] = m[i * n + i]; // diagonal
            }
        }
    }
    for (i, row) in rows.iter_mut().enumerate() {
        row[4 * lh] = if n > 1 { i as f32 / (n - 1) as f32 } else { 0.0 };
        row[4 * lh + 1] = if special[i] { 1.0 } else { 0.0 };
    }
    Ok(rows)
}

/// `spec`'s rows from raw rows of [`extract_raw`] (pooling, layer and group
/// selection, per-sentence normalisation, extra columns).
pub fn derive(spec: &FeatureSpec, raw: &[Vec<f32>], special: &[bool]) -> anyhow::Result<Vec<Vec<f32>>> {
    derive_shaped(spec, raw, special, spec.layers, spec.heads)
}

/// [`derive`] for raw rows of a `layers × heads` encoder, which may differ
/// from the spec's own shape when the spec is shape-free.
/// Decomposition columns are not in the raw rows: append them with
/// [`super::decomp_features::derive`].
pub fn derive_shaped(
    spec: &FeatureSpec,
    raw: &[Vec<f32>],
    special: &[bool],
    layers: usize,
    heads: usize,
) -> anyhow::Result<Vec<Vec<f32>>> {
    anyhow::ensure!(
        spec.is_shape_free() || (layers == spec.layers && heads == spec.heads),
        "raw features of a {layers}x{heads} encoder cannot feed a spec for {}x{}",
        spec.layers,
        spec.heads
    );
    let lh = layers * heads;
    anyhow::ensure!(special.len() == raw.len(), "{} special flags for {} feature rows", special.len(), raw.len());
    if let Some(r) = raw.iter().find(|r| r.len() != 4 * lh + 2) {
        anyhow::bail!("raw feature rows have {} columns, expected {} for {layers}x{heads}", r.len(), 4 * lh + 2);
    }
    let used = spec.used_layers();
    let mut rows: Vec<Vec<f32>> = vec![Vec::with_capacity(spec.dim()); raw.len()];
    for (g, on) in spec.groups().into_iter().enumerate() {
        if !on {
            continue;
        }
        for (row, r) in rows.iter_mut().zip(raw) {
            if spec.is_shape_free() {
                depth_binned_stats(&r[g * lh..(g + 1) * lh], layers, heads, spec.depth_bins, row);
                continue;
            }
            for &l in &used {
                let at = g * lh + l * heads;
                pool_heads(spec.head_pooling, &r[at..at + heads], row);
            }
        }
    }
    normalize_columns(spec.normalization, &mut rows, spec.attention_dim(), special);
    for (row, r) in rows.iter_mut().zip(raw) {
        if spec.relative_position {
            row.push(r[4 * lh]);
        }
        if spec.special_flag {
            row.push(r[4 * lh + 1]);
        }
    }
    Ok(rows)
}

/// Rows for a spec with [`ForwardSignals`] or decomposition groups: the
/// attention rows of [`extract`], then the decomposition, hidden-state, lens
/// and target columns.
pub fn extract_full(spec: &FeatureSpec, src: &FeatureSource) -> anyhow::Result<Vec<Vec<f32>>> {
    let mut rows = extract_attention(spec, src.attentions, src.special)?;
    // Every group below appends to each row: one allocation per row, not one per group.
    rows.iter_mut().for_each(|r| r.reserve(spec.dim().saturating_sub(r.len())));
    if !spec.decomposition.is_off() {
        let (l, h) = (src.attentions.layers, src.attentions.heads);
        let columns = super::decomp_features::derive(spec, src.decomposition, src.special, l, h)?;
        rows.iter_mut().zip(columns).for_each(|(r, c)| r.extend(c));
    }
    if !spec.gradient.is_off() {
        let columns = super::grad_features::derive(spec, src.gradient, src.special)?;
        rows.iter_mut().zip(columns).for_each(|(r, c)| r.extend(c));
    }
    let sig = &spec.signals;
    if sig.is_off() {
        return Ok(rows);
    }
    let n = rows.len();
    let layers = src.hidden_states.len();
    anyhow::ensure!(
        layers >= sig.hidden_layers && (sig.hidden_layers == 0 || layers == spec.layers + 1),
        "this ExpNet reads hidden states of the last {} layers, but the forward pass kept {layers} (hint: run the model's forward pass with hidden states)",
        sig.hidden_layers
    );
    anyhow::ensure!(
        src.lens.len() == sig.lens_layers,
        "this ExpNet reads the head's logits on {} layers, {} were given",
        sig.lens_layers,
        src.lens.len()
    );
    anyhow::ensure!(
        sig.target_classes == 0 || src.target < sig.target_classes,
        "explained class {} is outside this ExpNet's {} classes (hint: it was distilled for a model with other labels)",
        src.target,
        sig.target_classes
    );
    for (i, row) in rows.iter_mut().enumerate() {
        for h in &src.hidden_states[layers - sig.hidden_layers..] {
            anyhow::ensure!(h.len() == n && h[i].len() == sig.hidden_size, "hidden states have the wrong shape for this ExpNet");
            row.extend_from_slice(&h[i]);
        }
        for lens in src.lens {
            anyhow::ensure!(lens.len() == n, "lens logits cover {} tokens, not {n}", lens.len());
            let (log_prob, margin) = lens_columns(&lens[i], src.target);
            row.push(log_prob);
            row.push(margin);
        }
        for c in 0..sig.target_classes {
            row.push(if c == src.target { 1.0 } else { 0.0 });
        }
        if sig.decision {
            let d = src.decision.get(i).with_context(|| format!("this ExpNet reads decision features, {} rows were given for {n} tokens", src.decision.len()))?;
            anyhow::ensure!(d.len() == super::decision::width(spec.layers, spec.heads), "decision rows have {} columns, expected {}", d.len(), super::decision::width(spec.layers, spec.heads));
            row.extend_from_slice(d);
        }
    }
    Ok(rows)
}

/// The explained class's log-probability under `logits`, and its margin
/// over the best other class.
fn lens_columns(logits: &[f32], target: usize) -> (f32, f32) {
    let m = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let lse = m + logits.iter().map(|v| (v - m).exp()).sum::<f32>().ln();
    let t = logits.get(target).copied().unwrap_or(0.0);
    let other = logits.iter().enumerate().filter(|(c, _)| *c != target).map(|(_, v)| *v).fold(f32::NEG_INFINITY, f32::max);
    let margin = if other.is_finite() { t - other } else { 0.0 };
    (t - lse, margin)
}

/// The layers of a `layers`-deep encoder that fall into each of `bins`
/// relative-depth bins: layer `l` sits at depth `(l + ½) / layers`; a bin
/// no layer centre falls in (more bins than layers) takes the nearest layer.
pub fn depth_bin_layers(layers: usize, bins: usize) -> Vec<Vec<usize>> {
    (0..bins)
        .map(|b| {
            let inside: Vec<usize> = (0..layers)
                .filter(|&l| {
                    let depth = (l as f64 + 0.5) / layers as f64;
                    (depth * bins as f64).floor() as usize == b
                })
                .collect();
            if inside.is_empty() {
                let centre = (b as f64 + 0.5) / bins as f64;
                vec![((centre * layers as f64).floor() as usize).min(layers - 1)]
            } else {
                inside
            }
        })
        .collect()
}

/// Appends, per depth bin, the mean over the bin's layers of each layer's
/// head statistics (mean, max, std) for one group's `layers × heads` values.
fn depth_binned_stats(vals: &[f32], layers: usize, heads: usize, bins: usize, out: &mut Vec<f32>) {
    let mut per_layer = Vec::with_capacity(3 * layers);
    for l in 0..layers {
        pool_heads(HeadPooling::Stats, &vals[l * heads..(l + 1) * heads], &mut per_layer);
    }
    for members in depth_bin_layers(layers, bins) {
        let k = members.len() as f32;
        for s in 0..3 {
            out.push(members.iter().map(|&l| per_layer[3 * l + s]).sum::<f32>() / k);
        }
    }
}

/// Appends one layer's head values to `out` in the requested pooling.
fn pool_heads(pooling: HeadPooling, vals: &[f32], out: &mut Vec<f32>) {
    match pooling {
        HeadPooling::PerHead => out.extend_from_slice(vals),
        HeadPooling::Sorted => {
            let mut s = vals.to_vec();
            s.sort_by(|a, b| b.total_cmp(a));
            out.extend_from_slice(&s);
        }
        HeadPooling::Stats => {
            let k = vals.len().max(1) as f32;
            let mean = vals.iter().sum::<f32>() / k;
            let max = vals.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let var = vals.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / k;
            out.extend_from_slice(&[mean, max, var.sqrt()]);
        }
    }
}

/// Per-sentence normalisation of the first `cols` columns, in place.
///
/// Reference statistics come from non-special tokens (all tokens if every
/// token is special); special tokens are transformed with the same
/// statistics so that neighbour features stay on one scale.
pub(super) fn normalize_columns(norm: Normalization, rows: &mut [Vec<f32>], cols: usize, special: &[bool]) {
    if norm == Normalization::Global || rows.is_empty() {
        return;
    }
    let mut refs: Vec<usize> = (0..rows.len()).filter(|&i| !special[i]).collect();
    if refs.is_empty() {
        refs = (0..rows.len()).collect();
    }
    let m = refs.len();
    // Some tokens lie outside the reference set (special tokens of a normal input).
    let has_outsiders = m < rows.len();
    let mut column = vec![0.0f32; m];
    for c in 0..cols {
        for (v, &i) in column.iter_mut().zip(&refs) {
            *v = rows[i][c];
        }
        match norm {
            Normalization::PerSentenceZ => {
                let mean = column.iter().sum::<f32>() / m as f32;
                let std = (column.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / m as f32).sqrt();
                for row in rows.iter_mut() {
                    row[c] = if std > 1e-6 { (row[c] - mean) / std } else { 0.0 };
                }
            }
            Normalization::PerSentenceRank => {
                column.sort_by(|a, b| a.total_cmp(b));
                for (i, row) in rows.iter_mut().enumerate() {
                    let x = row[c];
                    let less = column.partition_point(|v| *v < x);
                    let equal = column.partition_point(|v| *v <= x) - less;
                    row[c] = if special[i] && has_outsiders {
                        // Not part of the reference set: place it among the references.
                        (less as f32 + equal as f32 / 2.0) / m as f32
                    } else if m > 1 {
                        // Mean rank of its tie group, scaled to 0..=1.
                        (less as f32 + (equal as f32 - 1.0) / 2.0) / (m - 1) as f32
                    } else {
                        0.5
                    };
                }
            }
            Normalization::Global => unreachable!("handled above"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 1 layer, 2 heads, 3 tokens ([CLS], a, [SEP]); rows sum to 1.
    fn tiny() -> Attentions {
        Attentions::from_nested(&[vec![
            vec![vec![0.5, 0.3, 0.2], vec![0.1, 0.6, 0.3], vec![0.4, 0.4, 0.2]],
            vec![vec![0.2, 0.2, 0.6], vec![0.7, 0.1, 0.2], vec![0.3, 0.3, 0.4]],
        ]])
        .unwrap()
    }

    fn close(a: &[f32], b: &[f32]) {
        assert_eq!(a.len(), b.len(), "{a:?} vs {b:?}");
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() < 1e-5, "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn hand_computed_features() {
        let spec = FeatureSpec::new(1, 2);
        assert_eq!(spec.dim(), 4 * 2 + 2);
        let f = extract(&spec, &tiny(), &[true, false, true]).unwrap();
        assert_eq!(f.len(), 3);
        // Token 1 ("a"): cls_to_token h0=0.3 h1=0.2; token_to_cls 0.1, 0.7;
        // received h0=(0.3+0.6+0.4)/3, h1=(0.2+0.1+0.3)/3; self 0.6, 0.1; pos 0.5; not special.
        close(&f[1], &[0.3, 0.2, 0.1, 0.7, 1.3 / 3.0, 0.6 / 3.0, 0.6, 0.1, 0.5, 0.0]);
        // Token 2 ([SEP]): cls 0.2, 0.6; to-cls 0.4, 0.3; received 0.7/3, 1.2/3; self 0.2, 0.4.
        close(&f[2], &[0.2, 0.6, 0.4, 0.3, 0.7 / 3.0, 1.2 / 3.0, 0.2, 0.4, 1.0, 1.0]);
        assert_eq!(spec.feature_names().len(), spec.dim());
        assert_eq!(spec.feature_names()[1], "cls_to_token.L0.H1");
    }

    #[test]
    fn pooled_heads_forget_head_identity() {
        let mut spec = FeatureSpec::new(1, 2);
        spec.token_to_cls = false;
        spec.received = false;
        spec.self_attn = false;
        spec.relative_position = false;
        spec.special_flag = false;
        spec.head_pooling = HeadPooling::Stats;
        let f = extract(&spec, &tiny(), &[false; 3]).unwrap();
        // Token 0 cls_to_token heads = [0.5, 0.2]: mean 0.35, max 0.5, std 0.15.
        close(&f[0], &[0.35, 0.5, 0.15]);
        spec.head_pooling = HeadPooling::Sorted;
        let f = extract(&spec, &tiny(), &[false; 3]).unwrap();
        close(&f[2], &[0.6, 0.2]);
        // Swapping the two heads leaves pooled features unchanged.
        let mut swapped = tiny().to_nested();
        swapped[0].swap(0, 1);
        let g = extract(&spec, &Attentions::from_nested(&swapped).unwrap(), &[false; 3]).unwrap();
        assert_eq!(f, g);
    }

    #[test]
    fn shapes_for_minilm_sized_input() {
        let (l, h, n) = (6, 12, 9);
        let data: Vec<f32> = (0..l * h * n * n).map(|i| ((i * 7919) % 101) as f32 / 101.0).collect();
        let attn = Attentions::new(l, h, n, data).unwrap();
        let spec = FeatureSpec::new(l, h);
        assert_eq!(spec.attention_dim(), 288);
        let mut special = vec![false; n];
        special[0] = true;
        special[n - 1] = true;
        let f = extract(&spec, &attn, &special).unwrap();
        assert_eq!(f.len(), n);
        assert!(f.iter().all(|r| r.len() == 290 && r.iter().all(|v| v.is_finite())));
    }

    #[test]
    fn shape_mismatch_is_a_clear_error() {
        let spec = FeatureSpec::new(6, 12);
        let err = extract(&spec, &tiny(), &[false; 3]).unwrap_err().to_string();
        assert!(err.contains("6-layer x 12-head") && err.contains("1 layers x 2 heads"), "{err}");
        let err = extract(&FeatureSpec::new(1, 2), &tiny(), &[false; 2]).unwrap_err().to_string();
        assert!(err.contains("mask has 2 entries"), "{err}");
    }

    #[test]
    fn per_sentence_z_has_zero_mean_unit_std_over_content_tokens() {
        let (l, h, n) = (2, 3, 7);
        let data: Vec<f32> = (0..l * h * n * n).map(|i| ((i * 31 + 7) % 17) as f32 / 17.0).collect();
        let attn = Attentions::new(l, h, n, data).unwrap();
        let mut spec = FeatureSpec::new(l, h);
        spec.normalization = Normalization::PerSentenceZ;
        let special = [true, false, false, false, false, false, true];
        let f = extract(&spec, &attn, &special).unwrap();
        for c in 0..spec.attention_dim() {
            let col: Vec<f32> = f[1..n - 1].iter().map(|row| row[c]).collect();
            let mean = col.iter().sum::<f32>() / col.len() as f32;
            let var = col.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / col.len() as f32;
            assert!(mean.abs() < 1e-4, "column {c} mean {mean}");
            assert!(var < 1e-6 || (var - 1.0).abs() < 1e-3, "column {c} var {var}");
        }
        // Extras are not normalised.
        assert_eq!(f[n - 1][spec.dim() - 1], 1.0);
        assert_eq!(f[n - 1][spec.dim() - 2], 1.0);
    }

    #[test]
    fn per_sentence_rank_is_order_preserving_and_in_unit_range() {
        let mut spec = FeatureSpec::new(1, 2);
        spec.normalization = Normalization::PerSentenceRank;
        let f = extract(&spec, &tiny(), &[false; 3]).unwrap();
        // cls_to_token head 0 = [0.5, 0.3, 0.2] -> ranks [1, 0.5, 0].
        close(&[f[0][0], f[1][0], f[2][0]], &[1.0, 0.5, 0.0]);
        // cls_to_token head 1 = [0.2, 0.2, 0.6] -> tie shares mean rank.
        close(&[f[0][1], f[1][1], f[2][1]], &[0.25, 0.25, 1.0]);
        // Rank features are invariant to a positive rescaling of attention…
        let doubled: Vec<f32> = tiny().data.iter().map(|v| v * 2.0).collect();
        let g = extract(&spec, &Attentions::new(1, 2, 3, doubled).unwrap(), &[false; 3]).unwrap();
        assert_eq!(f, g);
        // …and, for the per-entry groups (not the `received` mean), to any monotone map.
        spec.received = false;
        let f = extract(&spec, &tiny(), &[false; 3]).unwrap();
        let squashed: Vec<f32> = tiny().data.iter().map(|v| v * v * 3.0).collect();
        let g = extract(&spec, &Attentions::new(1, 2, 3, squashed).unwrap(), &[false; 3]).unwrap();
        assert_eq!(f, g);
        assert!(f.iter().flatten().all(|v| (0.0..=1.0).contains(v)));
    }

    #[test]
    fn spec_round_trips_through_json() {
        let mut spec = FeatureSpec::new(6, 12);
        spec.head_pooling = HeadPooling::Stats;
        spec.normalization = Normalization::PerSentenceRank;
        let json = serde_json::to_string(&spec).unwrap();
        assert!(json.contains("\"per_sentence_rank\""));
        assert_eq!(serde_json::from_str::<FeatureSpec>(&json).unwrap(), spec);
    }

    #[test]
    fn every_spec_derives_from_the_raw_rows_as_extracted() {
        let attn = Attentions::from_nested(&[tiny_layer(0.0), tiny_layer(0.05)]).unwrap();
        let special = [true, false, true];
        let raw = extract_raw(&attn, &special).unwrap();
        assert_eq!(raw[0].len(), FeatureSpec::new(2, 2).dim());
        for pooling in [HeadPooling::PerHead, HeadPooling::Sorted, HeadPooling::Stats] {
            for norm in [Normalization::Global, Normalization::PerSentenceZ, Normalization::PerSentenceRank] {
                let mut spec = FeatureSpec::new(2, 2);
                spec.head_pooling = pooling;
                spec.normalization = norm;
                spec.token_to_cls = false;
                spec.relative_position = false;
                spec.dropped_layers = vec![0];
                let width = if pooling == HeadPooling::Stats { 3 } else { 2 };
                assert_eq!(spec.dim(), 3 * width + 1);
                let derived = derive(&spec, &raw, &special).unwrap();
                let extracted = extract(&spec, &attn, &special).unwrap();
                assert_eq!(derived, extracted);
                assert_eq!(derived[0].len(), spec.dim());
                assert_eq!(spec.feature_names().len(), spec.dim());
            }
        }
        // Dropping layer 0 keeps exactly layer 1's per-head values.
        let mut spec = FeatureSpec::new(2, 2);
        spec.dropped_layers = vec![0];
        let d = derive(&spec, &raw, &special).unwrap();
        assert_eq!(d[1][..2], raw[1][2..4]);
        assert_eq!(spec.feature_names()[0], "cls_to_token.L1.H0");
        let mut bad = FeatureSpec::new(2, 2);
        bad.dropped_layers = vec![2];
        assert!(bad.validate().unwrap_err().to_string().contains("drops layer 2"));
        assert!(derive(&FeatureSpec::new(3, 2), &raw, &special).is_err(), "shape mismatch is an error");
    }

    /// One layer of two heads over 3 tokens, shifted by `d` so layers differ.
    fn tiny_layer(d: f32) -> Vec<Vec<Vec<f32>>> {
        vec![
            vec![vec![0.5 - d, 0.3 + d, 0.2], vec![0.1, 0.6 - d, 0.3 + d], vec![0.4, 0.4, 0.2]],
            vec![vec![0.2, 0.2 + d, 0.6 - d], vec![0.7, 0.1, 0.2], vec![0.3 + d, 0.3 - d, 0.4]],
        ]
    }

    /// Depth bins: every bin has layers, no layer sits in two bins, and with
    /// at least as many layers as bins every layer is used.
    #[test]
    fn depth_bins_partition_the_layers() {
        for layers in 1..=24 {
            for bins in 1..=8 {
                let groups = depth_bin_layers(layers, bins);
                assert_eq!(groups.len(), bins);
                assert!(groups.iter().all(|g| !g.is_empty() && g.iter().all(|&l| l < layers)));
                if layers >= bins {
                    let mut all: Vec<usize> = groups.concat();
                    all.sort();
                    assert_eq!(all, (0..layers).collect::<Vec<_>>(), "{layers} layers, {bins} bins");
                    // Bins follow depth: the first holds layer 0, the last the top layer.
                    assert_eq!((groups[0][0], *groups[bins - 1].last().unwrap()), (0, layers - 1));
                }
            }
        }
        assert_eq!(depth_bin_layers(6, 3), vec![vec![0, 1], vec![2, 3], vec![4, 5]]);
    }

    /// Shape-free rows: same width for 1×2 and 3×4 encoders, and a layer's
    /// head statistics land in its bin.
    #[test]
    fn shape_free_rows_do_not_depend_on_the_shape() {
        let spec = FeatureSpec::shape_free(1, 2, 2, Normalization::Global);
        let a = extract(&spec, &tiny(), &[true, false, true]).unwrap();
        // 3 layers x 4 heads, uniform attention over 3 tokens.
        let u = vec![vec![vec![vec![1.0f32 / 3.0; 3]; 3]; 4]; 3];
        let b = extract(&spec, &Attentions::from_nested(&u).unwrap(), &[true, false, true]).unwrap();
        assert_eq!(a[0].len(), spec.dim());
        assert_eq!(b[0].len(), spec.dim());
        assert_eq!(spec.dim(), 4 * 3 * 2 + 2);
        // Uniform attention: mean 1/3, max 1/3, std 0 in every bin of every group.
        for row in &b {
            for g in 0..4 {
                for bin in 0..2 {
                    let at = g * 6 + bin * 3;
                    assert!((row[at] - 1.0 / 3.0).abs() < 1e-6 && (row[at + 1] - 1.0 / 3.0).abs() < 1e-6 && row[at + 2].abs() < 1e-6);
                }
            }
        }
        assert_eq!(spec.feature_names().len(), spec.dim());
    }
}
