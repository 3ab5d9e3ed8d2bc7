//! `expnet inspect`: what an ExpNet file is, which model it was trained
//! for, and whether it fits a given model; `--stamp` adopts an old file.

use crate::expnet::{ExpNet, Explainer, ExplainerKind};
use crate::model::Model;
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// The ExpNet file.
    pub file: PathBuf,
    /// Also say whether it was trained for this model (default: the embedded one).
    #[arg(long)]
    pub model: Option<String>,
    /// Write a copy that records MODEL's fingerprint (for files written before
    /// fingerprints existed, when you know which model they were trained for).
    #[arg(long)]
    pub stamp: Option<PathBuf>,
    /// With --stamp: the kind to record if the file has none.
    #[arg(long, value_parser = ["rationales", "distilled", "transfer"])]
    pub kind: Option<String>,
}

pub fn run(args: &InspectArgs, load_model: impl FnOnce(Option<&str>) -> anyhow::Result<Model>) -> anyhow::Result<()> {
    let mut net = ExpNet::load(&args.file)?;
    let model = load_model(args.model.as_deref())?;
    let file = args.file.display().to_string();
    let explainer = Explainer::describe(&net, &file, &model);
    let fits = net.check_applicable(&model).err().map(|e| format!("{e:#}"));
    let report = serde_json::json!({
        "file": file,
        "label": explainer.label(),
        "explainer": explainer,
        "model": model.name,
        "model_fingerprint": model.fingerprint(),
        "applicable": fits.is_none(),
        "not_applicable_because": fits,
        "feature_spec": net.spec(),
        "features": net.spec().dim(),
        "net": net.config(),
        "info": net.info,
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    if let Some(out) = &args.stamp {
        net.check_applicable(&model)?;
        if let Some(old) = &net.info.model_fingerprint {
            anyhow::ensure!(
                old == model.fingerprint(),
                "{file} already records another model ({old}); refusing to overwrite its provenance"
            );
        }
        net.info.model_fingerprint = Some(model.fingerprint().to_owned());
        if net.info.model_id.is_none() {
            net.info.model_id = Some(model.name.clone());
        }
        if net.info.kind.is_none() {
            net.info.kind = Some(match args.kind.as_deref() {
                Some("distilled") => ExplainerKind::Distilled,
                Some("transfer") => ExplainerKind::Transfer,
                Some("rationales") => ExplainerKind::Rationales,
                _ => anyhow::bail!("{file} records no kind: say which with --kind rationales|distilled|transfer"),
            });
        }
        net.save(out)?;
        eprintln!("wrote {} (trained for {}, fingerprint {})", out.display(), model.name, model.fingerprint());
    }
    Ok(())
}
