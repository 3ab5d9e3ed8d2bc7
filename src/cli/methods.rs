//! The one place that turns `--methods` (and `--expnet`) into the method
//! list, used by `explain`, `eval`, `bench` and the explorer alike.
//!
//! Names are checked by [`parse`] before any model loads, so a typo fails in
//! milliseconds; [`build`] then instantiates them for the loaded model, with
//! the ExpNet [`crate::expnet::provenance::choose`] picked for it: the
//! model's own, else the embedded transfer ExpNet, else none.

use crate::explain::{Attribution, METHOD_NAMES, create};
use crate::expnet::provenance::{ExpNetChoice, choose};
use crate::expnet::{ExpNetMethod, ExpNet};
use crate::model::Model;
use std::sync::Arc;

/// Aliases accepted on the command line besides [`METHOD_NAMES`].
const ALIASES: &[&str] = &["ig", "shap"];

/// A checked `--methods` value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selection {
    /// `all`: ExpNet when one applies, then every method the model supports.
    All,
    /// The named methods, in the given order.
    Names(Vec<String>),
}

fn valid_names() -> String {
    format!("expnet, {}, or all", METHOD_NAMES.join(", "))
}

/// Checks a comma-separated `--methods` value without loading anything.
pub fn parse(list: &str) -> anyhow::Result<Selection> {
    if list.trim() == "all" {
        return Ok(Selection::All);
    }
    let names: Vec<String> = list.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect();
    anyhow::ensure!(!names.is_empty(), "no method given (valid: {})", valid_names());
    for n in &names {
        if n != "expnet" && !METHOD_NAMES.contains(&n.as_str()) && !ALIASES.contains(&n.as_str()) {
            anyhow::bail!("unknown method \"{n}\" (valid: {})", valid_names());
        }
    }
    Ok(Selection::Names(names))
}

/// The built list, and one line per method left out of `all` and why.
pub struct MethodList {
    pub methods: Vec<Arc<dyn Attribution>>,
    pub skipped: Vec<String>,
}

/// The ExpNet for `model`: `--expnet FILE` or, by the provenance rules,
/// the built-in one only when it was trained for this very model, else the
/// built-in transfer ExpNet.
pub fn choose_expnet(explicit: Option<&str>, model: &Model) -> anyhow::Result<ExpNetChoice> {
    let embedded = crate::assets::default_expnet().ok().map(|n| (n, crate::assets::DEFAULT_EXPNET_NAME));
    let transfer = crate::assets::transfer_expnet().ok().map(|n| (n, crate::assets::TRANSFER_EXPNET_NAME));
    choose(explicit, model, embedded, transfer)
}

/// Instantiates `selection` for `model` with the chosen ExpNet.
pub fn build(selection: &Selection, model: &Model, expnet: &ExpNetChoice) -> anyhow::Result<MethodList> {
    let expnet_method = || -> Option<Arc<dyn Attribution>> {
        expnet.net.as_ref().map(|(net, explainer)| {
            Arc::new(ExpNetMethod::with_explainer(net.clone(), explainer.clone())) as Arc<dyn Attribution>
        })
    };
    let mut skipped = Vec::new();
    let methods = match selection {
        Selection::All => {
            let mut out = Vec::new();
            match expnet_method() {
                Some(m) => out.push(m),
                None => skipped.extend(expnet.skipped.as_ref().map(|why| format!("expnet skipped: {why}"))),
            }
            let mut headless = Vec::new();
            for name in METHOD_NAMES {
                let m = create(name)?;
                if m.needs_classifier() && !model.is_classifier() {
                    headless.push(*name);
                } else if let Some(why) = m.unsupported(model) {
                    skipped.push(format!("{name} skipped: {why}"));
                } else {
                    out.push(m);
                }
            }
            if !headless.is_empty() {
                skipped.push(format!(
                    "{} skipped: {} is a bare encoder without a classification head",
                    headless.join(", "),
                    model.name
                ));
            }
            out
        }
        Selection::Names(names) => names
            .iter()
            .map(|n| {
                if n == "expnet" {
                    expnet_method().ok_or_else(|| {
                        anyhow::anyhow!(
                            "method expnet is unavailable: {}",
                            expnet.skipped.as_deref().unwrap_or("no ExpNet for this model (hint: pass --expnet FILE)")
                        )
                    })
                } else {
                    let m = create(n)?;
                    match m.unsupported(model) {
                        Some(why) => anyhow::bail!("method {n} cannot explain this model: {why} (hint: leave it out of --methods)"),
                        None => Ok(m),
                    }
                }
            })
            .collect::<anyhow::Result<_>>()?,
    };
    Ok(MethodList { methods, skipped })
}

/// What `explain`, `eval` and `bench` do: choose the ExpNet, build the
/// list, and say on stderr what was left out and any provenance notice.
pub fn build_for_command(selection: &Selection, model: &Model, expnet: Option<&str>) -> anyhow::Result<Vec<Arc<dyn Attribution>>> {
    let expnet = choose_expnet(expnet, model)?;
    let list = build(selection, model, &expnet)?;
    // Say which ExpNet stands in only when it is among the methods run (the
    // reason for having none is in `list.skipped`).
    if list.methods.iter().any(|m| m.name() == "expnet") {
        if let Some(note) = expnet.notice() {
            eprintln!("{note}");
        }
    }
    for line in &list.skipped {
        eprintln!("note: {line}");
    }
    Ok(list.methods)
}

/// Gives LIME and KernelSHAP in `methods` a budget of `samples` perturbed
/// inputs in total (KernelSHAP's empty and full coalitions included, as
/// captum's `n_samples`, and sampled even where exact enumeration would fit),
/// for runs matched against another tool or a distillation teacher. Returns
/// how many methods it changed.
pub fn set_samples(methods: &mut [Arc<dyn Attribution>], samples: usize) -> anyhow::Result<usize> {
    ensure_budget(samples)?;
    let mut changed = 0;
    for m in methods.iter_mut() {
        match m.name() {
            "lime" => {
                let config = crate::explain::lime::LimeConfig { samples: Some(samples), ..Default::default() };
                *m = Arc::new(crate::explain::lime::Lime { config });
            }
            "kernel_shap" => {
                let config = crate::explain::kernel_shap::KernelShapConfig { samples: Some(samples - 2), exact_max: 0, ..Default::default() };
                *m = Arc::new(crate::explain::kernel_shap::KernelShap { config });
            }
            _ => continue,
        }
        changed += 1;
    }
    Ok(changed)
}

fn ensure_budget(samples: usize) -> anyhow::Result<()> {
    anyhow::ensure!(samples >= 4, "--samples {samples} is too few (hint: LIME and KernelSHAP need hundreds, e.g. 500)");
    Ok(())
}

/// Checks `--samples` of `explain` and `eval` before any model loads: a
/// budget without LIME or KernelSHAP among the methods is a mistake worth saying.
pub fn check_samples(selection: &Selection, samples: Option<usize>) -> anyhow::Result<()> {
    let Some(n) = samples else { return Ok(()) };
    ensure_budget(n)?;
    let sampled = match selection {
        Selection::All => true,
        Selection::Names(names) => names.iter().any(|n| matches!(n.as_str(), "lime" | "kernel_shap" | "shap")),
    };
    anyhow::ensure!(sampled, "--samples sets LIME's and KernelSHAP's budget, and neither is among the methods (hint: --methods kernel_shap,lime)");
    Ok(())
}

/// Builds a method list from code (tests, library users): `list` is parsed
/// and built with `net` as an ExpNet of unknown provenance.
pub fn build_simple(list: &str, model: &Model, net: Option<Arc<ExpNet>>) -> anyhow::Result<Vec<Arc<dyn Attribution>>> {
    let choice = match net {
        Some(n) => {
            let explainer = crate::expnet::Explainer::describe(&n, "in-memory", model);
            ExpNetChoice { net: Some((n, explainer)), skipped: None }
        }
        None => ExpNetChoice::none("no ExpNet given"),
    };
    Ok(build(&parse(list)?, model, &choice)?.methods)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_rejects_unknown_names_and_accepts_expnet_aliases_and_all() {
        assert_eq!(parse("all").unwrap(), Selection::All);
        assert_eq!(parse(" expnet, ig ,").unwrap(), Selection::Names(vec!["expnet".into(), "ig".into()]));
        let err = parse("attention,bogus").unwrap_err().to_string();
        assert!(err.contains("unknown method \"bogus\"") && err.contains("expnet"), "{err}");
        assert!(parse(" , ").unwrap_err().to_string().contains("no method given"));
    }

    #[test]
    fn samples_need_a_sampling_method_and_a_real_budget() {
        assert!(check_samples(&parse("attention").unwrap(), None).is_ok());
        assert!(check_samples(&parse("expnet,shap").unwrap(), Some(502)).is_ok());
        assert!(check_samples(&Selection::All, Some(100)).is_ok());
        let err = check_samples(&parse("attention,occlusion").unwrap(), Some(500)).unwrap_err().to_string();
        assert!(err.contains("neither is among the methods") && err.contains("hint"), "{err}");
        assert!(check_samples(&parse("lime").unwrap(), Some(3)).unwrap_err().to_string().contains("too few"));
        let mut methods: Vec<Arc<dyn Attribution>> = ["attention", "lime", "kernel_shap"].iter().map(|n| create(n).unwrap()).collect();
        assert_eq!(set_samples(&mut methods, 300).unwrap(), 2);
        assert_eq!(methods.iter().map(|m| m.name()).collect::<Vec<_>>(), ["attention", "lime", "kernel_shap"]);
    }
}
