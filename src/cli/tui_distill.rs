//! The explorer's background distillation on the real model (`D`): the
//! flow of `expnet distill --teacher occlusion --features all`, with the
//! explorer's progress callback and stop flag, and the result ready to add
//! to the method list.

use crate::expnet::distill::{DistillConfig, distill_until};
use crate::expnet::teacher::{Cache, TeachProgress, student_spec, teacher_method};
use crate::expnet::{DistillInfo, ExpNet, Explainer, ExplainerKind};
use crate::model::Model;
use crate::tui::backend::{DistillPlan, DistillProgress};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

/// Seed of the train/held-out split, the teacher and the student.
const SEED: u64 = 42;

/// A distilled ExpNet, where it was saved and registered, and its held-out
/// Spearman to the teacher.
pub struct Outcome {
    pub net: ExpNet,
    pub explainer: Explainer,
    pub path: PathBuf,
    pub registered: Option<PathBuf>,
    pub val_spearman: f64,
}

/// The file `D` writes for `model`: `expnet-distilled-<fingerprint[..8]>.safetensors`.
pub fn output_path(model: &Model, plan: &DistillPlan) -> PathBuf {
    let fp = model.fingerprint();
    plan.out_dir.join(format!("expnet-distilled-{}.safetensors", &fp[..fp.len().min(8)]))
}

/// Runs the teacher over `texts` (cached beside the output, so a restart
/// resumes), trains the student, saves and (per `plan`) registers it.
pub fn run(model: &Model, texts: &[String], plan: &DistillPlan, stop: &AtomicBool, progress: &mut dyn FnMut(DistillProgress)) -> anyhow::Result<Outcome> {
    anyhow::ensure!(model.is_classifier(), "{} is a bare encoder: the teacher needs a classification head", model.name);
    let items: Vec<(String, Option<String>)> = texts
        .iter()
        .map(|t| t.trim())
        .filter(|t| !t.is_empty())
        .take(plan.max_texts)
        .map(|t| (t.to_owned(), None))
        .collect();
    anyhow::ensure!(items.len() >= 2, "need at least 2 texts to distil from, got {} (hint: --texts FILE, one per line)", items.len());
    anyhow::ensure!((0.0..0.9).contains(&plan.val_fraction), "the held-out fraction must be in [0, 0.9)");
    let spec = student_spec(model, 2, 3);
    let teacher = teacher_method(&plan.teacher, None, SEED)?;
    let out = output_path(model, plan);
    let mut cache = Cache::open(&out.with_extension("teacher.jsonl"), &plan.teacher, model)?;

    let mut order: Vec<usize> = (0..items.len()).collect();
    rand::seq::SliceRandom::shuffle(order.as_mut_slice(), &mut <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(SEED));
    let n_val = ((items.len() as f32) * plan.val_fraction).round() as usize;
    let val_items: Vec<_> = order[..n_val].iter().map(|&i| items[i].clone()).collect();
    let train_items: Vec<_> = order[n_val..].iter().map(|&i| items[i].clone()).collect();
    let total = items.len();
    // One gauge over both parts: `offset` texts were done before this part.
    let mut teach = |part: &[(String, Option<String>)], offset: usize, what: &str| {
        let mut report = |p: &TeachProgress| {
            let done = offset + p.done;
            let eta_secs = (p.fresh > 0).then(|| (total - done) as f64 * p.secs / p.fresh as f64);
            progress(DistillProgress::Teacher { done, total, eta_secs });
        };
        crate::expnet::teacher::teach(model, &spec, teacher.as_ref(), (SEED, None), part, &mut cache, stop, what, &mut report)
    };
    let (train, teacher_ms) = teach(&train_items, 0, "train")?;
    let (val, _) = teach(&val_items, train_items.len(), "val")?;

    let cfg = DistillConfig { epochs: plan.epochs, seed: SEED, ..Default::default() };
    let epochs = plan.epochs;
    let (mut net, val_fid) = distill_until(spec, &train, &val, &cfg, &mut |e| {
        progress(DistillProgress::Epoch { epoch: e.epoch, epochs, val_spearman: e.val.map(|f| f.spearman) })
    }, stop)?;
    let val_fid = val_fid.unwrap_or_default();

    net.info.model_id = Some(model.name.clone());
    net.info.hidden_size = Some(model.config().hidden_size);
    net.info.training_data = Some(format!("{total} texts given to the explorer"));
    net.info.command = Some("expnet tui (D: distil in the background)".into());
    net.info.model_fingerprint = Some(model.fingerprint().to_owned());
    net.info.kind = Some(ExplainerKind::Distilled);
    net.info.distillation = Some(DistillInfo {
        teacher: plan.teacher.clone(),
        samples: None,
        teacher_seed: SEED,
        texts: "explorer --texts / --data".into(),
        train_texts: train.len(),
        val_texts: val.len(),
        val_spearman: val_fid.spearman,
        val_top_k_overlap: val_fid.top_k_overlap,
        teacher_seed_agreement: None,
        loss: cfg.loss.as_str().to_owned(),
        teacher_ms_per_text: teacher_ms,
        ..Default::default()
    });
    net.save(&out)?;
    // A file that could not be registered still works for this session.
    let registered = if plan.register { crate::expnet::provenance::register(&out, model.fingerprint()).ok() } else { None };
    let explainer = Explainer::describe(&net, &out.display().to_string(), model);
    Ok(Outcome { net, explainer, path: out, registered, val_spearman: val_fid.spearman })
}

#[cfg(test)]
mod tests {
    use crate::cli::tui_backend::LibraryBackend;
    use crate::explain::Progress;
    use crate::tui::backend::{DistillPlan, DistillProgress, ExplainBackend};
    use std::sync::atomic::AtomicBool;

    #[test]
    fn the_backend_distils_a_working_expnet_on_the_tiny_model() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-bert");
        let model = crate::model::Model::load_dir(&dir).unwrap();
        let methods = crate::cli::methods::build_simple("rollout", &model, None).unwrap();
        let b = LibraryBackend::new(model, methods, None);
        assert!(b.info().lacks_own_expnet());
        let (adj, noun) = (["good", "dull", "great", "awful", "fine", "bad"], ["film", "plot", "cast", "story", "score"]);
        let texts: Vec<String> = (0..30).map(|i| format!("a {} {} with a {} ending", adj[i % 6], noun[i % 5], adj[(i / 6) % 6])).collect();
        let out = tempfile::tempdir().unwrap();
        let plan = DistillPlan { epochs: 3, out_dir: out.path().to_owned(), register: false, ..Default::default() };
        let mut seen = Vec::new();
        let d = b.distill(&texts, &plan, &AtomicBool::new(false), &mut |p| seen.push(p)).unwrap();
        assert!(matches!(seen.first(), Some(DistillProgress::Teacher { done: 1, total: 30, .. })), "{:?}", seen.first());
        assert!(seen.iter().any(|p| matches!(p, DistillProgress::Epoch { epoch: 1, epochs: 3, .. })));
        assert_eq!(d.method.label, "expnet≈occlusion");
        assert!(d.path.is_file() && d.path.file_name().unwrap().to_str().unwrap().starts_with("expnet-distilled-"));
        assert!(d.val_spearman.is_finite() && d.registered.is_none());
        // The teacher cache beside it holds every text, for a restart to resume.
        let cache = std::fs::read_to_string(d.path.with_extension("teacher.jsonl")).unwrap();
        assert_eq!(cache.lines().count(), 31);
        let e = d.info.explainer.as_ref().unwrap();
        assert_eq!((e.kind.as_str(), e.matches_model), ("distilled", Some(true)));
        assert!(!d.info.lacks_own_expnet());
        // Listed first, and it explains.
        assert_eq!(b.methods()[0].label, "expnet≈occlusion");
        let a = b.analyze("a great plot with a dull ending").unwrap();
        let r = b.explain(&a, "expnet", &Progress::none()).unwrap();
        assert_eq!(r.scores.len(), a.tokens.len());
        assert!(r.scores.iter().all(|s| s.is_finite()) && r.scores.iter().any(|s| *s != r.scores[1]));
        assert_eq!(r.label.as_deref(), Some("expnet≈occlusion"));
        // The file loads again as this model's ExpNet; a set stop flag ends a rerun at once.
        let net = crate::expnet::ExpNet::load(&d.path).unwrap();
        assert_eq!(net.info.distillation.as_ref().unwrap().train_texts + net.info.distillation.as_ref().unwrap().val_texts, 30);
        let err = b.distill(&texts, &plan, &AtomicBool::new(true), &mut |_| {}).err().unwrap();
        assert!(format!("{err:#}").contains("interrupted"), "{err:#}");
    }
}
