//! What the explorer says about its ExpNet, and its side of background
//! distillation (`D`): when the loaded
//! model has no ExpNet of its own and texts are at hand (`--texts`,
//! `--data`), one key distils one from the teacher (occlusion) on a thread
//! of its own; typing and inference go on meanwhile, a gauge shows the
//! progress, and the result joins the method list, selected.

use std::time::Instant;

use super::app::App;
use super::backend::{DistillPlan, DistillProgress};
use super::worker::{Job, Request, WorkerEvent};
use crate::explain::CancelToken;

/// Texts, plan and the running job.
#[derive(Debug, Default)]
pub struct DistillState {
    /// Texts to distil from (`--texts` FILE, `--data` examples).
    pub texts: Vec<String>,
    pub plan: DistillPlan,
    /// The job in progress, if any.
    pub running: Option<Running>,
    /// The request [`App::reconcile`] hands to the worker next.
    pub(super) pending: Option<Request>,
}

/// A distillation in progress.
#[derive(Debug)]
pub struct Running {
    pub id: u64,
    cancel: CancelToken,
    pub started: Instant,
    /// Latest report; `None` until the first text is done.
    pub progress: Option<DistillProgress>,
    /// The user asked it to stop; waiting for the thread to notice.
    pub stopping: bool,
}

impl App {
    /// What the ExpNet is (help overlay): file, kind, model, mark; or why there is none.
    pub fn expnet_about(&self) -> Vec<String> {
        let Some(info) = &self.info else { return Vec::new() };
        match &info.explainer {
            Some(e) => {
                let teacher = e.teacher.as_ref().map_or_else(String::new, |t| format!(" from {t}"));
                let mark = match e.matches_model {
                    Some(true) => "",
                    _ if e.is_transfer() => " · shape-free, made for models it was not trained on (D distils one for this model)",
                    Some(false) => " · not trained for this model",
                    None => " · not trained for this model (predates fingerprints)",
                };
                vec![format!("{}: {} · {}{teacher} · trained for {}{mark}", e.label(), e.file, e.kind, e.trained_for)]
            }
            None => vec![format!("no ExpNet: {}", info.expnet_skipped.as_deref().unwrap_or("none loaded"))],
        }
    }
    /// Why `D` cannot start a distillation now, or `None` when it can.
    pub fn distill_blocker(&self) -> Option<String> {
        let Some(info) = &self.info else {
            return Some("the model is still loading".into());
        };
        if !info.lacks_own_expnet() {
            return Some("this model already has its own ExpNet".into());
        }
        if info.labels.is_empty() {
            return Some("a bare encoder has no class for a teacher to explain".into());
        }
        if self.distill.texts.is_empty() {
            return Some("no texts to distil from (hint: start with --texts FILE, one text per line, or --data DATASET:PATH)".into());
        }
        None
    }

    /// `D`: starts a distillation, or stops the running one.
    pub fn toggle_distill(&mut self) {
        if self.distill.running.is_some() {
            self.stop_distill();
            self.notify("stopping the distillation… (teacher runs so far are kept for a restart)");
            return;
        }
        if let Some(why) = self.distill_blocker() {
            self.notify_error(format!("cannot distil an ExpNet: {why}"));
            return;
        }
        let id = self.side_request_id();
        let cancel = CancelToken::new();
        let texts: Vec<String> = self.distill.texts.iter().take(self.distill.plan.max_texts).cloned().collect();
        let n = texts.len();
        let job = Job::Distill { texts, plan: self.distill.plan.clone() };
        self.distill.pending = Some(Request { id, job, cancel: cancel.clone() });
        self.distill.running = Some(Running { id, cancel, started: Instant::now(), progress: None, stopping: false });
        self.notify(format!("distilling an ExpNet from {} on {n} texts in the background (D stops)", self.distill.plan.teacher));
    }

    /// Asks the running distillation to stop (on `D` and on quit); never waits.
    pub fn stop_distill(&mut self) {
        if let Some(r) = self.distill.running.as_mut() {
            r.cancel.cancel();
            r.stopping = true;
        }
        // Not yet sent: it never starts.
        self.distill.pending = None;
    }

    /// One line for the status bar while a distillation runs.
    pub fn distill_status(&self) -> Option<String> {
        let r = self.distill.running.as_ref()?;
        let secs = r.started.elapsed().as_secs();
        let what = match r.progress {
            _ if r.stopping => "stopping".to_owned(),
            None => "starting".to_owned(),
            Some(DistillProgress::Teacher { done, total, eta_secs }) => {
                let eta = eta_secs.map_or_else(String::new, |s| format!(", ETA {s:.0} s"));
                format!("{} {done}/{total} texts{eta}", self.distill.plan.teacher)
            }
            Some(DistillProgress::Epoch { epoch, epochs, val_spearman }) => {
                let v = val_spearman.map_or_else(String::new, |s| format!(", held-out Spearman {s:.2}"));
                format!("training epoch {epoch}/{epochs}{v}")
            }
        };
        Some(format!("distilling ExpNet: {what} ({secs} s)"))
    }

    /// Fraction done for the gauge: the teacher runs count for most of it.
    pub fn distill_fraction(&self) -> Option<f32> {
        let r = self.distill.running.as_ref()?;
        Some(match r.progress {
            None => 0.0,
            Some(DistillProgress::Teacher { done, total, .. }) => 0.9 * done as f32 / total.max(1) as f32,
            Some(DistillProgress::Epoch { epoch, epochs, .. }) => 0.9 + 0.1 * epoch as f32 / epochs.max(1) as f32,
        })
    }

    pub(super) fn on_distill(&mut self, ev: WorkerEvent) {
        let live = |app: &App, id: u64| app.distill.running.as_ref().is_some_and(|r| r.id == id);
        match ev {
            WorkerEvent::DistillProgress { id, progress } if live(self, id) => {
                if let Some(r) = self.distill.running.as_mut() {
                    r.progress = Some(progress);
                }
            }
            WorkerEvent::Distilled { id, result } if live(self, id) => {
                self.distill.running = None;
                let name = result.method.name.clone();
                self.forget_method(&name);
                let shown = self.method_name().map(str::to_owned);
                match self.methods.iter().position(|m| m.name == name) {
                    Some(i) => self.methods[i] = result.method.clone(),
                    None => self.methods.insert(0, result.method.clone()),
                }
                // Keep the shown method's index right after an insert, then select the new one.
                if let Some(s) = shown {
                    self.select_method(&s);
                }
                self.select_method(&name);
                self.info = Some(result.info);
                let registered = result.registered.as_ref().map_or_else(String::new, |p| format!("; registered for this model ({})", p.display()));
                self.notify(format!(
                    "{} ready: {} (held-out Spearman {:.2} vs the teacher){registered}",
                    result.method.label,
                    result.path.display(),
                    result.val_spearman
                ));
            }
            WorkerEvent::DistillFailed { id, error, stopped } if live(self, id) => {
                self.distill.running = None;
                if stopped {
                    self.notify(format!("distillation stopped: {error}"));
                } else {
                    self.notify_error(format!("distillation failed: {error}"));
                    self.show_alert("Distillation failed", error);
                }
            }
            _ => {}
        }
    }
}
