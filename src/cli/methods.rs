//! Building the method list from `--methods`, with ExpNet added when available.

use crate::explain::{Attribution, METHOD_NAMES, create};
use crate::expnet::{ExpNet, ExpNetMethod};
use std::sync::Arc;

/// Loads `--expnet FILE`, or the embedded default when it fits the model.
pub fn load_expnet(path: Option<&str>, layers: usize, heads: usize) -> anyhow::Result<Option<(Arc<ExpNet>, String)>> {
    match path {
        Some(p) => {
            let net = ExpNet::load(p)?;
            net.check_compatible(layers, heads)?;
            Ok(Some((Arc::new(net), p.to_owned())))
        }
        None => Ok(crate::assets::default_expnet()
            .ok()
            .filter(|n| n.check_compatible(layers, heads).is_ok())
            .map(|n| (Arc::new(n), "embedded:expnet-minilm-sst2".to_owned()))),
    }
}

/// `all` = ExpNet (when loaded) then every registered method.
pub fn build(list: &str, expnet: Option<&Arc<ExpNet>>) -> anyhow::Result<Vec<Arc<dyn Attribution>>> {
    let names: Vec<String> = if list.trim() == "all" {
        expnet.iter().map(|_| "expnet".to_string()).chain(METHOD_NAMES.iter().map(|s| s.to_string())).collect()
    } else {
        list.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect()
    };
    anyhow::ensure!(!names.is_empty(), "no method given (valid: expnet, {}, or all)", METHOD_NAMES.join(", "));
    names
        .iter()
        .map(|n| {
            if n == "expnet" {
                let net = expnet.ok_or_else(|| {
                    anyhow::anyhow!("method expnet needs an ExpNet for this model (hint: pass --expnet FILE, trained with `expnet train`)")
                })?;
                Ok(Arc::new(ExpNetMethod::new(net.clone())) as Arc<dyn Attribution>)
            } else {
                create(n).map_err(|e| anyhow::anyhow!("{e} (also: expnet)"))
            }
        })
        .collect()
}
