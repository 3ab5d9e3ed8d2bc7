//! `expnet train --gradient`: the four shared-backward-pass scores
//! (saliency, grad×input, Grad-SAM, Chefer) of every training example,
//! each read through its source's own classifier for the class that
//! classifier predicts (as every method explains at run time), cached per
//! (model, data, split) so that reruns and other variants never run the
//! backward pass again.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;

use super::train::encode_example;
use crate::expnet::FeatureSpec;
use crate::expnet::grad_features::{self, CachedExample};
use crate::model::Model;

/// Texts per padded forward and backward run.
const BATCH: usize = 8;

fn cache_file(model: &Model, spec_str: &str, cache: &Path) -> anyhow::Result<PathBuf> {
    super::train::cache_file(cache, "grad", model, spec_str, "gradient")
}

/// Raw gradient rows ([`grad_features::raw_rows`]) of the examples `ids`
/// of `spec_str` (those [`super::train::features_for`] keeps, in its
/// order), read through `model`. Empty when `spec` reads no gradients.
pub fn gradient_rows(model: &Model, spec_str: &str, spec: &FeatureSpec, ids: &[String], cache: &Path) -> anyhow::Result<Vec<Vec<Vec<f32>>>> {
    if spec.gradient.is_off() {
        return Ok(Vec::new());
    }
    anyhow::ensure!(
        model.is_classifier(),
        "--gradient reads the backward pass of a classifier, but {} is a bare encoder (hint: train without --gradient)",
        model.name
    );
    let file = cache_file(model, spec_str, cache)?;
    if file.is_file()
        && let Ok(c) = grad_features::load_raw(&file)
        && c.iter().map(|(id, _, _)| id).eq(ids.iter())
    {
        return Ok(c.into_iter().map(|(_, _, r)| r).collect());
    }
    let with = super::train_decomp::cached_examples(spec_str, ids)?;
    let mut fresh: Vec<CachedExample> = Vec::with_capacity(ids.len());
    for (b, chunk) in with.chunks(BATCH).enumerate() {
        if b % 10 == 0 {
            let _ = write!(std::io::stderr(), "\rbackward pass {spec_str}: {}/{}   ", b * BATCH, ids.len());
        }
        let encs = chunk.iter().map(|ex| encode_example(model, ex)).collect::<anyhow::Result<Vec<_>>>()?;
        let refs: Vec<&crate::model::Encoding> = encs.iter().collect();
        let targets = model
            .forward_batch(&refs)?
            .iter()
            .map(|f| f.prediction.as_ref().map(|p| p.index).context("the classifier returned no prediction"))
            .collect::<anyhow::Result<Vec<_>>>()?;
        for ((ex, g), t) in chunk.iter().zip(model.gradients_batch(&refs, &targets, true)?).zip(targets) {
            fresh.push((ex.id.clone(), t, grad_features::raw_rows(&g)));
        }
    }
    eprintln!("\rbackward pass of {} examples from {spec_str}            ", ids.len());
    std::fs::create_dir_all(cache).with_context(|| format!("cannot create cache folder {}", cache.display()))?;
    grad_features::save_raw(&file, &fresh)?;
    Ok(fresh.into_iter().map(|(_, _, r)| r).collect())
}
