//! DeBERTa-v2 / DeBERTa-v3 (`model_type: "deberta-v2"`): BERT's post-norm
//! layers with disentangled attention. Besides content-to-content q·kᵀ, each
//! head adds content-to-position (c2p: query · key-projected relative
//! embedding) and position-to-content (p2c: key · query-projected relative
//! embedding) terms, indexed by log-bucketed relative distance; the sum is
//! scaled by 1/√(d·(1 + #terms)). The attention probabilities are still a
//! softmax over keys per query, so `[layer][head][query][key]` keeps its
//! meaning. Absolute positions enter only when `position_biased_input` (v2
//! base: true, v3: false). Head: ContextPooler (dense + `pooler_hidden_act` on
//! the first token) → classifier.

use super::config::{Activation, ModelConfig};
use super::encoder::{Head, Layer, LayerNorm, RunMode};
use super::weights::Weights;
use anyhow::bail;
use candle_core::{Module, Tensor};
use candle_nn::Linear;
use serde_json::Value;

/// The relative-position part of the configuration.
#[derive(Clone, Debug)]
struct RelConfig {
    c2p: bool,
    p2c: bool,
    /// `position_buckets` if > 0, else `max_relative_positions`: half the relative embedding rows.
    att_span: usize,
    buckets: i64,
    max_relative: i64,
    share_att_key: bool,
}

fn flag(raw: &Value, key: &str, default: bool) -> bool {
    raw.get(key).and_then(Value::as_bool).unwrap_or(default)
}

fn int(raw: &Value, key: &str, default: i64) -> i64 {
    raw.get(key).and_then(Value::as_i64).unwrap_or(default)
}

/// `pos_att_type` as a list or the old `"p2c|c2p"` string.
fn pos_att_types(raw: &Value) -> Vec<String> {
    match raw.get("pos_att_type") {
        Some(Value::String(s)) => s.to_lowercase().split('|').map(|t| t.trim().to_owned()).collect(),
        Some(Value::Array(a)) => a.iter().filter_map(|v| v.as_str().map(str::to_lowercase)).collect(),
        _ => Vec::new(),
    }
}

/// Rejects options this encoder does not implement, naming them.
fn check_supported(cfg: &ModelConfig) -> anyhow::Result<()> {
    let raw = &cfg.raw;
    if int(raw, "conv_kernel_size", 0) > 0 {
        bail!("DeBERTa-v2 with conv_kernel_size > 0 (the xlarge/xxlarge convolution layer) is not supported (hint: DeBERTa-v3 and deberta-v2 base/large have none)");
    }
    if let Some(h) = raw.get("attention_head_size").and_then(Value::as_u64) {
        anyhow::ensure!(h as usize * cfg.num_heads == cfg.hidden_size, "DeBERTa attention_head_size {h} × heads ≠ hidden size is not supported");
    }
    for t in pos_att_types(raw) {
        anyhow::ensure!(t == "c2p" || t == "p2c", "unsupported DeBERTa pos_att_type \"{t}\" (supported: c2p, p2c)");
    }
    Ok(())
}

/// Absolute position embeddings (if `position_biased_input`) and the relative-attention hook.
pub(super) fn positions(w: &Weights, cfg: &ModelConfig) -> anyhow::Result<(Option<Tensor>, Option<Relative>)> {
    check_supported(cfg)?;
    let raw = &cfg.raw;
    let absolute = if flag(raw, "position_biased_input", true) {
        Some(w.get("embeddings.position_embeddings.weight")?)
    } else {
        None
    };
    if !flag(raw, "relative_attention", false) {
        return Ok((absolute, None));
    }
    let types = pos_att_types(raw);
    let mut max_relative = int(raw, "max_relative_positions", -1);
    if max_relative < 1 {
        max_relative = cfg.max_position_embeddings as i64;
    }
    let buckets = int(raw, "position_buckets", -1);
    let att_span = if buckets > 0 { buckets } else { max_relative } as usize;
    let rc = RelConfig {
        c2p: types.iter().any(|t| t == "c2p"),
        p2c: types.iter().any(|t| t == "p2c"),
        att_span,
        buckets,
        max_relative,
        share_att_key: flag(raw, "share_att_key", false),
    };
    let table = w.get("encoder.rel_embeddings.weight")?;
    anyhow::ensure!(
        table.dims()[0] >= 2 * att_span,
        "DeBERTa rel_embeddings has {} rows, the config needs {}",
        table.dims()[0],
        2 * att_span
    );
    let table = table.narrow(0, 0, 2 * att_span)?;
    let norms: Vec<String> = raw
        .get("norm_rel_ebd")
        .and_then(Value::as_str)
        .unwrap_or("none")
        .to_lowercase()
        .split('|')
        .map(|s| s.trim().to_owned())
        .collect();
    let table_norm = if norms.iter().any(|n| n == "layer_norm") {
        Some(LayerNorm::load(w, "encoder.LayerNorm", cfg.layer_norm_eps)?)
    } else {
        None
    };
    let mut per_layer = Vec::with_capacity(cfg.num_layers);
    for i in 0..cfg.num_layers {
        let p = format!("encoder.layer.{i}.attention.self");
        let (pos_key, pos_query) = if rc.share_att_key {
            (w.linear(&format!("{p}.key_proj"))?, w.linear(&format!("{p}.query_proj"))?)
        } else {
            let k = if rc.c2p { w.linear(&format!("{p}.pos_key_proj"))? } else { w.linear(&format!("{p}.key_proj"))? };
            let q = if rc.p2c { w.linear(&format!("{p}.pos_query_proj"))? } else { w.linear(&format!("{p}.query_proj"))? };
            (k, q)
        };
        per_layer.push((pos_key, pos_query));
    }
    Ok((absolute, Some(Relative { rc, table, table_norm, per_layer, heads: cfg.num_heads })))
}

/// `embeddings.embed_proj` (no bias), when the embeddings are narrower than the hidden size.
pub(super) fn projection(w: &Weights, cfg: &ModelConfig) -> anyhow::Result<Option<Linear>> {
    if cfg.embedding_size == cfg.hidden_size {
        return Ok(None);
    }
    Ok(Some(w.linear("embeddings.embed_proj")?))
}

pub(super) fn layers(w: &Weights, cfg: &ModelConfig) -> anyhow::Result<Vec<Layer>> {
    (0..cfg.num_layers)
        .map(|i| {
            let p = format!("encoder.layer.{i}");
            let names = [
                "attention.self.query_proj",
                "attention.self.key_proj",
                "attention.self.value_proj",
                "attention.output.dense",
                "attention.output.LayerNorm",
                "intermediate.dense",
                "output.dense",
                "output.LayerNorm",
            ]
            .map(|n| format!("{p}.{n}"));
            Layer::from_names(w, cfg.layer_norm_eps, names.each_ref().map(String::as_str))
        })
        .collect()
}

/// ContextPooler (`pooler.dense`, `pooler_hidden_act`) → `classifier`.
pub(super) fn head(w: &Weights, cfg: &ModelConfig) -> anyhow::Result<Head> {
    let act = cfg.raw.get("pooler_hidden_act").and_then(Value::as_str).unwrap_or("gelu");
    Ok(Head::DenseAct { dense: w.linear("pooler.dense")?, activation: Activation::parse(act)?, out: w.linear("classifier")? })
}

/// transformers' `make_log_bucket_position` for one relative distance, in f32 as torch does.
fn log_bucket(rel: i64, bucket_size: i64, max_position: i64) -> i64 {
    let mid = bucket_size / 2;
    let abs = if rel < mid && rel > -mid { mid - 1 } else { rel.abs() };
    if abs <= mid {
        return rel;
    }
    let ratio = (abs as f32 / mid as f32).ln() / (((max_position - 1) as f64 / mid as f64) as f32).ln();
    let log_pos = (ratio * (mid - 1) as f32).ceil() as i64 + mid;
    log_pos * rel.signum()
}

/// Gather indices for one sequence length: c2p `[q][k]` and p2c `[k][q]`, as u32 `[len, len]`.
pub(super) struct Prepared {
    c2p_index: Tensor,
    p2c_index: Tensor,
    /// Relative embeddings after the optional LayerNorm, `[2·span, hidden]`.
    table: Tensor,
}

/// The disentangled-attention hook the shared encoder calls for every layer.
pub(super) struct Relative {
    rc: RelConfig,
    table: Tensor,
    table_norm: Option<LayerNorm>,
    /// Per layer: (projection for position keys, projection for position queries).
    per_layer: Vec<(Linear, Linear)>,
    heads: usize,
}

impl Relative {
    /// 1/√(d·scale_factor), scale_factor = 1 + c2p + p2c.
    pub(super) fn scale(&self, head_dim: usize) -> f64 {
        let factor = 1 + self.rc.c2p as usize + self.rc.p2c as usize;
        1.0 / ((head_dim * factor) as f64).sqrt()
    }

    /// Relative-position indices for `len` tokens and the (normalised) embedding table.
    pub(super) fn prepare(&self, len: usize, mode: RunMode) -> candle_core::Result<Prepared> {
        let span = self.rc.att_span as i64;
        let rel = |q: usize, k: usize| -> i64 {
            let r = q as i64 - k as i64;
            if self.rc.buckets > 0 && self.rc.max_relative > 0 { log_bucket(r, self.rc.buckets, self.rc.max_relative) } else { r }
        };
        let clamp = |v: i64| v.clamp(0, 2 * span - 1) as u32;
        let mut c2p = Vec::with_capacity(len * len);
        let mut p2c = Vec::with_capacity(len * len);
        for a in 0..len {
            for b in 0..len {
                // c2p[q=a][k=b] = clamp(rel(a,b) + span); p2c[k=a][q=b] = clamp(-rel(a,b) + span).
                c2p.push(clamp(rel(a, b) + span));
                p2c.push(clamp(-rel(a, b) + span));
            }
        }
        let table = match &self.table_norm {
            Some(n) => n.forward(&self.table, mode)?,
            None => self.table.clone(),
        };
        Ok(Prepared {
            c2p_index: Tensor::from_vec(c2p, (len, len), self.table.device())?,
            p2c_index: Tensor::from_vec(p2c, (len, len), self.table.device())?,
            table,
        })
    }

    /// c2p + p2c scores of layer `layer` for `q`, `k` of shape `[batch, heads, len, head_dim]`,
    /// already multiplied by [`Relative::scale`].
    pub(super) fn scores(&self, layer: usize, p: &Prepared, q: &Tensor, k: &Tensor) -> candle_core::Result<Tensor> {
        let (batch, heads, len, head_dim) = q.dims4()?;
        let span2 = 2 * self.rc.att_span;
        let scale = self.scale(head_dim);
        let (pos_key_proj, pos_query_proj) = &self.per_layer[layer];
        // [2·span, hidden] → [1, heads, 2·span, head_dim]
        let split = |t: Tensor| -> candle_core::Result<Tensor> {
            t.reshape((span2, self.heads, head_dim))?.transpose(0, 1)?.contiguous()?.unsqueeze(0)
        };
        let index = |i: &Tensor| i.to_device(q.device())?.unsqueeze(0)?.unsqueeze(0)?.broadcast_as((batch, heads, len, len))?.contiguous();
        let mut total: Option<Tensor> = None;
        if self.rc.c2p {
            let pos_key = split(pos_key_proj.forward(&p.table)?)?;
            let att = q.broadcast_matmul(&pos_key.transpose(2, 3)?.contiguous()?)?; // [b, h, q, 2·span]
            let c2p = att.contiguous()?.gather(&index(&p.c2p_index)?, 3)?;
            total = Some((c2p * scale)?);
        }
        if self.rc.p2c {
            let pos_query = split(pos_query_proj.forward(&p.table)?)?;
            let att = k.broadcast_matmul(&pos_query.transpose(2, 3)?.contiguous()?)?; // [b, h, k, 2·span]
            let p2c = att.contiguous()?.gather(&index(&p.p2c_index)?, 3)?.transpose(2, 3)?;
            let p2c = (p2c * scale)?;
            total = Some(match total {
                Some(t) => (t + p2c)?,
                None => p2c,
            });
        }
        match total {
            Some(t) => Ok(t),
            None => q.matmul(&k.t()?)?.zeros_like(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_buckets_match_transformers_values() {
        // Values from transformers' make_log_bucket_position(bucket_size=256, max_position=512).
        assert_eq!(log_bucket(0, 256, 512), 0);
        assert_eq!(log_bucket(127, 256, 512), 127);
        assert_eq!(log_bucket(-128, 256, 512), -128);
        assert_eq!(log_bucket(200, 256, 512), 169);
        assert_eq!(log_bucket(300, 256, 512), 207);
        assert_eq!(log_bucket(-511, 256, 512), -255);
        assert_eq!(log_bucket(-130, 256, 512), -130);
        // make_log_bucket_position(arange(-20, 21), 8, 16)
        let want = [
            -8, -8, -8, -8, -8, -7, -7, -7, -7, -7, -7, -6, -6, -6, -5, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 5, 6, 6, 6, 7, 7,
            7, 7, 7, 7, 8, 8, 8, 8, 8,
        ];
        let got: Vec<i64> = (-20..=20).map(|r| log_bucket(r, 8, 16)).collect();
        assert_eq!(got, want);
    }
}
