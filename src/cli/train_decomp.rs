//! `expnet train --decomposition`: raw decomposition rows (value norms,
//! ALTI, GlobEnc) of every training example, cached per group so that other
//! variants and reruns never decompose the same texts again.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;

use super::train::{encode_example, parse_spec};
use crate::data;
use crate::expnet::FeatureSpec;
use crate::expnet::decomp_features::{self, Group};
use crate::model::Model;

fn cache_file(model: &Model, spec_str: &str, group: Group, cache: &Path) -> anyhow::Result<PathBuf> {
    super::train::cache_file(cache, &format!("decomp-{}", group.name()), model, spec_str, group.name())
}

/// The examples of `spec_str` with a rationale, which must be `ids` in
/// order: the attention feature cache's examples, for the feature groups
/// (decomposition, gradients) cached beside it.
pub(super) fn cached_examples(spec_str: &str, ids: &[String]) -> anyhow::Result<Vec<data::Example>> {
    let (data_spec, split) = parse_spec(spec_str)?;
    let ds = data::load(&data_spec, split)?;
    let with: Vec<data::Example> = ds.examples.into_iter().filter(|e| e.rationale.is_some()).collect();
    anyhow::ensure!(
        with.iter().map(|e| &e.id).eq(ids.iter()),
        "the attention feature cache of {spec_str} lists other examples than the data (hint: delete the stale cache folder)"
    );
    Ok(with)
}

/// Raw decomposition rows ([`decomp_features::raw_rows`]) of the examples
/// `ids` of `spec_str` (those [`super::train::features_for`] keeps, in its
/// order), read through `model`. Empty when `spec` reads no decomposition.
pub fn decomposition_rows(model: &Model, spec_str: &str, spec: &FeatureSpec, ids: &[String], cache: &Path) -> anyhow::Result<Vec<Vec<Vec<f32>>>> {
    let groups = spec.decomposition.groups();
    if groups.is_empty() {
        return Ok(Vec::new());
    }
    spec.decomposition.check_model(model)?;
    let (layers, heads) = (model.num_layers(), model.num_heads());
    let mut per_group: Vec<Option<Vec<Vec<Vec<f32>>>>> = Vec::new();
    for &g in &groups {
        let file = cache_file(model, spec_str, g, cache)?;
        let cached = file.is_file().then(|| decomp_features::load_raw(&file, g, layers, heads).ok()).flatten();
        per_group.push(cached.filter(|c| c.iter().map(|(id, _)| id).eq(ids.iter())).map(|c| c.into_iter().map(|(_, r)| r).collect()));
    }
    let missing: Vec<usize> = (0..groups.len()).filter(|&k| per_group[k].is_none()).collect();
    if !missing.is_empty() {
        let with = cached_examples(spec_str, ids)?;
        let mut fresh: Vec<Vec<(String, Vec<Vec<f32>>)>> = vec![Vec::with_capacity(ids.len()); missing.len()];
        let names: Vec<&str> = missing.iter().map(|&k| groups[k].name()).collect();
        let wanted: Vec<Group> = missing.iter().map(|&k| groups[k]).collect();
        for (i, (id, ex)) in ids.iter().zip(&with).enumerate() {
            if i % 50 == 0 {
                let _ = write!(std::io::stderr(), "\rdecomposing ({}) {spec_str}: {i}/{}   ", names.join(","), ids.len());
            }
            let fwd = model.forward(&encode_example(model, ex)?)?;
            for (out, rows) in fresh.iter_mut().zip(decomp_features::raw_groups_rows(&wanted, model, &fwd)?) {
                out.push((id.clone(), rows));
            }
        }
        eprintln!("\rdecomposed ({}) {} examples from {spec_str}            ", names.join(","), ids.len());
        std::fs::create_dir_all(cache).with_context(|| format!("cannot create cache folder {}", cache.display()))?;
        for (rows, &k) in fresh.into_iter().zip(&missing) {
            decomp_features::save_raw(&cache_file(model, spec_str, groups[k], cache)?, groups[k], layers, heads, &rows)?;
            per_group[k] = Some(rows.into_iter().map(|(_, r)| r).collect());
        }
    }
    // Concatenate the groups per token, in the spec's column order.
    let mut out: Vec<Vec<Vec<f32>>> = Vec::with_capacity(ids.len());
    for i in 0..ids.len() {
        let mut rows: Vec<Vec<f32>> = Vec::new();
        for g in per_group.iter().map(|g| g.as_ref().expect("filled above")) {
            if rows.is_empty() {
                rows = g[i].clone();
            } else {
                anyhow::ensure!(rows.len() == g[i].len(), "example {}: decomposition groups cover different token counts", ids[i]);
                rows.iter_mut().zip(&g[i]).for_each(|(r, p)| r.extend_from_slice(p));
            }
        }
        out.push(rows);
    }
    Ok(out)
}
