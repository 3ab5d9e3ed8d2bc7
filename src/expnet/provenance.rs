//! Where an ExpNet came from, and which one a model gets.
//!
//! An ExpNet is trained on one model's heads and hidden states. Applied to
//! another model, even one of the same shape, it explains nonsense without
//! any visible error (docs/RESULTS.md: a HateXplain ExpNet on the SST-2
//! model scores below random). So every file records the model it was
//! trained for, and [`choose`] applies these rules:
//!
//! - with no `--expnet`, an ExpNet whose fingerprint equals the model's is
//!   used: the embedded one, or one that `expnet distill` registered for
//!   this model in the explainer cache;
//! - failing that, the shape-free `transfer` ExpNet (made to explain models it
//!   was not trained on), labelled `expnet (transfer)`, with a one-line note
//!   saying why the model has none of its own; when even that does not apply
//!   (a family without post-norm blocks to decompose), none, with the reason;
//! - an explicit `--expnet FILE` is always used (if its shape fits), and
//!   labelled when it was trained for another model or its model is unknown
//!   (files written before provenance existed).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::net::ExpNet;
use crate::model::Model;

/// How an ExpNet learned what matters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExplainerKind {
    /// Human token rationales (`expnet train`).
    Rationales,
    /// A teacher attribution method's scores (`expnet distill`).
    Distilled,
    /// Trained to apply to models it has not seen.
    Transfer,
}

impl ExplainerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rationales => "rationales",
            Self::Distilled => "distilled",
            Self::Transfer => "transfer",
        }
    }
}

/// What `expnet distill` records about a distilled ExpNet.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DistillInfo {
    /// Teacher method name, e.g. `occlusion`.
    pub teacher: String,
    /// Teacher sample count (LIME, KernelSHAP) or steps, when it has one.
    pub samples: Option<usize>,
    pub teacher_seed: u64,
    /// Training texts (the `--input`) and how many were used.
    pub texts: String,
    pub train_texts: usize,
    pub val_texts: usize,
    /// Held-out fidelity to the teacher: mean Spearman over texts.
    pub val_spearman: f64,
    /// Held-out mean overlap of the student's and teacher's top-k tokens (k = ⌈n/5⌉).
    pub val_top_k_overlap: f64,
    /// For sampling teachers: the teacher's own Spearman between two seeds.
    pub teacher_seed_agreement: Option<f64>,
    /// The loss it was trained with.
    pub loss: String,
    /// Extra held-out texts (`--test`) and the fidelity on them.
    #[serde(default)]
    pub test_texts: usize,
    #[serde(default)]
    pub test_spearman: Option<f64>,
    #[serde(default)]
    pub test_top_k_overlap: Option<f64>,
    /// Mean teacher time per training text, and the student's time per text
    /// on top of the shared forward pass (same machine, same run).
    #[serde(default)]
    pub teacher_ms_per_text: f64,
    #[serde(default)]
    pub student_ms_per_text: f64,
}

/// The provenance of the ExpNet a method list uses, as written in reports.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Explainer {
    /// The file, or `embedded:…` for the built-in one.
    pub file: String,
    /// `rationales`, `distilled`, `transfer`, or `unknown` (old file).
    pub kind: String,
    /// Teacher of a distilled ExpNet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub teacher: Option<String>,
    /// The model it was trained for (its name and shape).
    pub trained_for: String,
    /// Whether it was trained for exactly the loaded model; `None` when the
    /// file predates fingerprints and nobody can tell.
    pub matches_model: Option<bool>,
}

impl Explainer {
    /// Describes `net` loaded from `file` relative to `model`.
    pub fn describe(net: &ExpNet, file: &str, model: &Model) -> Self {
        let info = &net.info;
        let kind = match info.kind {
            Some(k) => k.as_str().to_owned(),
            None => "unknown".to_owned(),
        };
        let trained_for = format!(
            "{} ({}x{})",
            info.model_id.as_deref().unwrap_or("unknown model"),
            net.spec().layers,
            net.spec().heads
        );
        let matches_model = info.model_fingerprint.as_deref().map(|f| f == model.fingerprint());
        let teacher = info.distillation.as_ref().map(|d| d.teacher.clone());
        Self { file: file.to_owned(), kind, teacher, trained_for, matches_model }
    }

    /// A shape-free ExpNet made for models it was not trained on.
    pub fn is_transfer(&self) -> bool {
        self.kind == "transfer"
    }

    /// Name shown in tables and the explorer: `expnet`, `expnet≈occlusion`,
    /// `expnet (transfer)`; `!` marks one not trained for this model.
    pub fn label(&self) -> String {
        let mut s = match (&self.teacher, self.kind.as_str()) {
            (Some(t), _) => format!("expnet≈{t}"),
            (None, "transfer") => "expnet (transfer)".to_owned(),
            _ => "expnet".to_owned(),
        };
        if !self.is_transfer() && self.matches_model != Some(true) {
            s.push('!');
        }
        s
    }

    /// One line for stderr / the status line when the choice needs saying.
    pub fn notice(&self) -> Option<String> {
        match (self.matches_model, self.kind.as_str()) {
            (_, "transfer") => None,
            (Some(true), _) => None,
            (Some(false), _) => Some(format!(
                "note: ExpNet {} was trained for {}, not for this model; used because you asked for it, labelled \"not trained for this model\"",
                self.file, self.trained_for
            )),
            (None, _) => Some(format!(
                "note: ExpNet {} predates model fingerprints, so nobody can tell whether it was trained for this model; used because you asked for it",
                self.file
            )),
        }
    }
}

/// The outcome of [`choose`]: an ExpNet with its provenance, or why none.
#[derive(Clone, Debug)]
pub struct ExpNetChoice {
    pub net: Option<(Arc<ExpNet>, Explainer)>,
    /// Why the model has no ExpNet of its own, in one line: set when `net`
    /// is `None` or is the transfer fallback.
    pub skipped: Option<String>,
}

impl ExpNetChoice {
    pub fn none(why: impl Into<String>) -> Self {
        Self { net: None, skipped: Some(why.into()) }
    }
    /// The provenance notice, or the reason for having none.
    pub fn notice(&self) -> Option<String> {
        match (&self.net, &self.skipped) {
            (Some((_, e)), Some(why)) if e.is_transfer() => {
                Some(format!("note: using the shape-free transfer ExpNet, labelled \"{}\": {why}", e.label()))
            }
            (Some((_, e)), _) => e.notice(),
            (None, why) => why.clone(),
        }
    }
}

/// Folder of ExpNets registered per model fingerprint by `expnet distill`:
/// `$EXPNET_CACHE`, else `$XDG_CACHE_HOME/expnet`, else `~/.cache/expnet`, plus `/explainers`.
pub fn explainer_cache_dir() -> Option<PathBuf> {
    let root = std::env::var_os("EXPNET_CACHE").map(PathBuf::from).or_else(|| {
        std::env::var_os("XDG_CACHE_HOME")
            .map(|d| PathBuf::from(d).join("expnet"))
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/expnet")))
    })?;
    Some(root.join("explainers"))
}

/// Where the ExpNet registered for a model fingerprint lives.
pub fn registered_path(fingerprint: &str) -> Option<PathBuf> {
    explainer_cache_dir().map(|d| d.join(format!("{fingerprint}.safetensors")))
}

/// Copies a freshly written ExpNet into the explainer cache, so the model
/// it was trained for picks it up by default. Returns where it went.
pub fn register(file: &Path, fingerprint: &str) -> anyhow::Result<PathBuf> {
    let dest = registered_path(fingerprint)
        .ok_or_else(|| anyhow::anyhow!("no cache folder (hint: set EXPNET_CACHE or HOME)"))?;
    if let Some(dir) = dest.parent() {
        std::fs::create_dir_all(dir).map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
    }
    std::fs::copy(file, &dest).map_err(|e| anyhow::anyhow!("cannot copy {} to {}: {e}", file.display(), dest.display()))?;
    Ok(dest)
}

/// Applies the loading rules of the module docs. `embedded` is the built-in
/// per-model ExpNet and `transfer` the built-in transfer one (passed in so
/// tests can use their own). Errors only for an explicit file that cannot be
/// read or does not fit the model's shape.
pub fn choose(
    explicit: Option<&str>,
    model: &Model,
    embedded: Option<(ExpNet, &str)>,
    transfer: Option<(ExpNet, &str)>,
) -> anyhow::Result<ExpNetChoice> {
    if let Some(path) = explicit {
        let net = ExpNet::load(path)?;
        net.check_applicable(model)?;
        let explainer = Explainer::describe(&net, path, model);
        return Ok(ExpNetChoice { net: Some((Arc::new(net), explainer)), skipped: None });
    }
    let mut why = Vec::new();
    if let Some((net, name)) = embedded {
        if net.info.model_fingerprint.as_deref() == Some(model.fingerprint()) && net.check_applicable(model).is_ok() {
            let explainer = Explainer::describe(&net, name, model);
            return Ok(ExpNetChoice { net: Some((Arc::new(net), explainer)), skipped: None });
        }
        let trained_for = net.info.model_id.clone().unwrap_or_else(|| "another model".into());
        why.push(format!("the built-in ExpNet was trained for {trained_for}, not this model"));
    }
    if let Some(path) = registered_path(model.fingerprint()).filter(|p| p.is_file()) {
        let file = path.display().to_string();
        match ExpNet::load(&path) {
            Ok(net) if net.info.model_fingerprint.as_deref() == Some(model.fingerprint()) && net.check_applicable(model).is_ok() => {
                let explainer = Explainer::describe(&net, &file, model);
                return Ok(ExpNetChoice { net: Some((Arc::new(net), explainer)), skipped: None });
            }
            Ok(_) => why.push(format!("{file} does not belong to this model")),
            Err(e) => why.push(format!("{file} is unreadable ({e:#})")),
        }
    }
    let why = if why.is_empty() { String::new() } else { format!(" ({})", why.join("; ")) };
    let mut own = format!(
        "no ExpNet was trained for this model{why}; make one with `expnet distill --model {} --teacher occlusion --input TEXTS --out FILE`, or pass --expnet FILE",
        model.name
    );
    if let Some((net, name)) = transfer.filter(|(n, _)| n.info.kind == Some(ExplainerKind::Transfer)) {
        match net.check_applicable(model) {
            Ok(()) => {
                let explainer = Explainer::describe(&net, name, model);
                return Ok(ExpNetChoice { net: Some((Arc::new(net), explainer)), skipped: Some(own) });
            }
            Err(e) => own.push_str(&format!(" (the transfer ExpNet does not apply either: {e:#})")),
        }
    }
    Ok(ExpNetChoice::none(own))
}
