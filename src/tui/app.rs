//! Application state and its reaction to worker events.
//!
//! `App` is plain data: keys (`keys.rs`) and worker events mutate it, render
//! functions only read it, and [`App::reconcile`] decides which requests the
//! worker needs, so every behaviour is testable without a terminal.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use super::backend::{Analysis, BackendInfo, MethodInfo, MethodResult};
use super::input::LineInput;
use super::samples::ExampleItem;
use super::scores::{self, Unit};
use super::theme::{ColorMode, Theme};
use super::worker::{Job, Request, WorkerEvent};
use crate::explain::CancelToken;

/// Examples scored per worker job (see [`App::reconcile`]).
const EXAMPLE_BATCH: usize = 16;

/// The four panes, in tab order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pane {
    Tokens,
    Heads,
    Compare,
    Examples,
}

impl Pane {
    pub const ALL: [Pane; 4] = [Pane::Tokens, Pane::Heads, Pane::Compare, Pane::Examples];
    pub fn title(self) -> &'static str {
        match self {
            Pane::Tokens => "Tokens",
            Pane::Heads => "Heads",
            Pane::Compare => "Compare",
            Pane::Examples => "Examples",
        }
    }
    pub fn index(self) -> usize {
        Pane::ALL.iter().position(|p| *p == self).unwrap_or(0)
    }
}

/// Edit mode: keys type into the input. Navigation mode: single keys act.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Edit,
    Nav,
}

/// Where one method stands for the current text.
#[derive(Clone, Debug, PartialEq)]
pub enum Slot {
    /// Requested, waiting behind other methods of the same job.
    Queued,
    /// Running; fraction done from progress reports.
    Running(f32),
    Done(MethodResult),
    Failed(String),
}

/// Cursor inside the zoomed attention matrix (query row, key column).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Zoom {
    pub row: usize,
    pub col: usize,
}

/// A status-line message; errors stay until replaced, info fades after a while.
#[derive(Clone, Debug, PartialEq)]
pub struct Notice {
    pub text: String,
    pub error: bool,
    pub at: Instant,
}

/// A message that stays on screen until dismissed (Esc / Enter): load
/// errors and theme warnings, shown whole (the status line cuts them).
#[derive(Clone, Debug, PartialEq)]
pub struct Alert {
    pub title: String,
    pub text: String,
}

/// The request the worker is busy with (the UI keeps at most one live).
#[derive(Clone, Debug)]
struct InFlight {
    id: u64,
    cancel: CancelToken,
    examples: bool,
    /// Methods of an Explain job, in the order the worker runs them.
    methods: Vec<String>,
}

pub struct App {
    pub mode: Mode,
    pub pane: Pane,
    pub input: LineInput,
    pub themes: Vec<Theme>,
    pub theme: usize,
    pub color: ColorMode,
    /// `None` while the model is loading.
    pub info: Option<BackendInfo>,
    pub load_error: Option<String>,
    /// Non-fatal load problems (a bad ExpNet file): shown, and printed on
    /// stderr after quitting.
    pub load_warnings: Vec<String>,
    pub methods: Vec<MethodInfo>,
    /// Index into `methods` of the method shown in the heatmap.
    pub method: usize,
    pub analysis: Option<Arc<Analysis>>,
    /// Per-method state for `analysis`.
    pub results: HashMap<String, Slot>,
    /// Merge word pieces into words (`w`).
    pub merge_words: bool,
    /// Selected display unit (token or word) in the Tokens/Compare panes.
    pub token: usize,
    pub layer: usize,
    pub head: usize,
    /// Show the mean over the heads of the selected layer (`a`).
    pub mean_heads: bool,
    pub zoom: Option<Zoom>,
    pub help: bool,
    /// First help line shown when the key list is taller than the screen.
    pub help_scroll: usize,
    /// Unit whose scores under every method are shown in a popup.
    pub popup: Option<usize>,
    pub examples: Vec<ExampleItem>,
    pub example: usize,
    /// Word scores per (method, example index); empty when the example failed.
    pub example_scores: HashMap<(String, usize), Vec<f32>>,
    pub notice: Option<Notice>,
    pub alert: Option<Alert>,
    /// Background distillation (`D`): texts, plan, the running job.
    pub distill: super::distill_job::DistillState,
    /// Where `e` writes (set by the event loop; shown when asking).
    pub export_dir: std::path::PathBuf,
    /// `e` was pressed once: the next `e` or `y` writes, any other key cancels.
    pub export_pending: bool,
    /// Milliseconds from sending a text to the selected method's result.
    pub latency_ms: Option<f64>,
    pub should_quit: bool,
    /// Incremented on every tick, for the loading spinner.
    pub ticks: u64,
    next_id: u64,
    inflight: Option<InFlight>,
    /// Text of the newest Explain request.
    requested_text: Option<String>,
    /// Id of the first request for the current text: anything older is stale.
    text_since: u64,
    latency_start: Option<Instant>,
}

impl App {
    pub fn new(themes: Vec<Theme>, theme: usize, color: ColorMode, examples: Vec<ExampleItem>, initial_text: Option<&str>) -> Self {
        let mut input = LineInput::default();
        let mut notice = None;
        if let Some(t) = initial_text {
            let dropped = input.set(t);
            if dropped > 0 {
                notice = Some(Notice { text: format!("input truncated to {} characters", input.len()), error: false, at: Instant::now() });
            }
        }
        Self {
            mode: Mode::Edit,
            pane: Pane::Tokens,
            input,
            themes,
            theme,
            color,
            info: None,
            load_error: None,
            load_warnings: Vec::new(),
            methods: Vec::new(),
            method: 0,
            analysis: None,
            results: HashMap::new(),
            merge_words: false,
            token: 0,
            layer: 0,
            head: 0,
            mean_heads: false,
            zoom: None,
            help: false,
            help_scroll: 0,
            popup: None,
            examples,
            example: 0,
            example_scores: HashMap::new(),
            notice,
            alert: None,
            distill: Default::default(),
            export_dir: std::path::PathBuf::from("."),
            export_pending: false,
            latency_ms: None,
            should_quit: false,
            ticks: 0,
            next_id: 1,
            inflight: None,
            requested_text: None,
            text_since: 0,
            latency_start: None,
        }
    }

    pub fn theme(&self) -> &Theme {
        &self.themes[self.theme.min(self.themes.len().saturating_sub(1))]
    }

    pub fn notify(&mut self, text: impl Into<String>) {
        self.notice = Some(Notice { text: text.into(), error: false, at: Instant::now() });
    }
    pub fn notify_error(&mut self, text: impl Into<String>) {
        self.notice = Some(Notice { text: text.into(), error: true, at: Instant::now() });
    }
    /// Shows `text` in a popup until dismissed; a second alert is appended.
    pub fn show_alert(&mut self, title: impl Into<String>, text: impl Into<String>) {
        let (title, text) = (title.into(), text.into());
        self.alert = Some(match self.alert.take() {
            Some(a) => Alert { title: a.title, text: format!("{}\n\n{title}: {text}", a.text) },
            None => Alert { title, text },
        });
    }

    /// Name of the method shown in the heatmap.
    pub fn method_name(&self) -> Option<&str> {
        self.methods.get(self.method).map(|m| m.name.as_str())
    }
    /// Label of the method shown in the heatmap (`expnet≈occlusion`, `expnet!`).
    pub fn method_label(&self) -> Option<&str> {
        self.methods.get(self.method).map(|m| m.label.as_str())
    }
    pub fn result(&self, method: &str) -> Option<&MethodResult> {
        match self.results.get(method) {
            Some(Slot::Done(r)) => Some(r),
            _ => None,
        }
    }
    /// Display units of the current analysis (pieces or words).
    pub fn units(&self) -> Vec<Unit> {
        self.analysis.as_ref().map(|a| scores::units(&a.text, &a.tokens, self.merge_words)).unwrap_or_default()
    }
    /// Method the Compare pane measures agreement against.
    pub fn reference_method(&self) -> Option<&str> {
        self.methods.iter().find(|m| m.name == "expnet").or(self.methods.first()).map(|m| m.name.as_str())
    }

    // ---- selection helpers (used by keys and mouse) ----

    pub fn select_method(&mut self, name: &str) -> bool {
        match self.methods.iter().position(|m| m.name == name) {
            Some(i) => {
                self.method = i;
                true
            }
            None => false,
        }
    }
    /// `r` / Ctrl-T: flip between ExpNet and attention rollout.
    pub fn toggle_expnet_rollout(&mut self) {
        let target = if self.method_name() == Some("expnet") { "rollout" } else { "expnet" };
        if !self.select_method(target) {
            let other = if target == "expnet" { "rollout" } else { "expnet" };
            if self.method_name() != Some(other) && self.select_method(other) {
                return;
            }
            self.notify_error(format!("no '{target}' method in this backend"));
        }
    }
    /// `m` / `M`: next or previous method, wrapping.
    pub fn cycle_method(&mut self, forward: bool) {
        let n = self.methods.len();
        if n > 0 {
            self.method = if forward { (self.method + 1) % n } else { (self.method + n - 1) % n };
        }
    }
    fn dims(&self) -> (usize, usize) {
        self.info.as_ref().map(|i| (i.layers, i.heads)).unwrap_or((0, 0))
    }
    /// Moves the selected head by (layers, heads), wrapping on both axes.
    pub fn move_head(&mut self, dl: isize, dh: isize) {
        let (l, h) = self.dims();
        if l == 0 || h == 0 {
            return;
        }
        self.layer = (self.layer as isize + dl).rem_euclid(l as isize) as usize;
        self.head = (self.head as isize + dh).rem_euclid(h as isize) as usize;
    }
    /// Moves the selected token/word, clamped to the units on screen.
    pub fn move_token(&mut self, d: isize) {
        let n = self.units().len();
        if n > 0 {
            self.token = (self.token as isize + d).clamp(0, n as isize - 1) as usize;
        }
    }
    /// Moves the zoom cursor, clamped to the matrix.
    pub fn move_zoom(&mut self, dr: isize, dc: isize) {
        let n = self.analysis.as_ref().map_or(0, |a| a.attentions.len);
        if let Some(z) = self.zoom.as_mut()
            && n > 0 {
                z.row = (z.row as isize + dr).clamp(0, n as isize - 1) as usize;
                z.col = (z.col as isize + dc).clamp(0, n as isize - 1) as usize;
            }
    }
    pub fn toggle_words(&mut self) {
        // Keep the same token selected across the toggle.
        let tok = self.units().get(self.token).map(|u| u.tokens[0]).unwrap_or(0);
        self.merge_words = !self.merge_words;
        self.token = self.units().iter().position(|u| u.tokens.contains(&tok)).unwrap_or(0);
        self.popup = None;
    }
    pub fn cycle_theme(&mut self) {
        if !self.themes.is_empty() {
            self.theme = (self.theme + 1) % self.themes.len();
            let name = self.theme().name.clone();
            self.notify(format!("theme: {name}"));
        }
    }
    /// Replaces the input text (loading an example) and returns to the tokens pane.
    pub fn load_text(&mut self, text: &str) {
        if self.input.set(text) > 0 {
            self.notify(format!("input truncated to {} characters", self.input.len()));
        }
        self.token = 0;
        self.popup = None;
    }
    /// Inserts pasted or typed text, reporting truncation.
    pub fn insert_text(&mut self, text: &str) {
        let dropped = self.input.insert_str(text);
        if dropped > 0 {
            self.notify(format!("input is limited to {} characters: {dropped} dropped", super::input::MAX_INPUT_CHARS));
        }
    }

    /// Advances the spinner and fades old notices; true when a redraw is needed.
    pub fn on_tick(&mut self) -> bool {
        self.ticks += 1;
        let mut redraw = self.info.is_none() && self.load_error.is_none();
        if let Some(n) = &self.notice {
            let ttl = if n.error { 10 } else { 4 };
            if n.at.elapsed().as_secs() >= ttl {
                self.notice = None;
                redraw = true;
            }
        }
        redraw
    }

    // ---- worker protocol ----

    /// Methods the current view needs, in the order the worker should run
    /// them: every fast method first (the shown one leading), then the slow
    /// ones that are on screen — the selected one in the Tokens pane, all of
    /// them in the Compare pane or the token popup. A slow method never
    /// delays a fast one, and an idle explorer never burns CPU on LIME.
    pub fn wanted_methods(&self) -> Vec<String> {
        let sel = self.method_name();
        let all_visible = self.pane == Pane::Compare || self.popup.is_some();
        let sel_visible = all_visible || self.pane == Pane::Tokens;
        let first = |slow: bool| self.methods.iter().filter(move |m| m.slow == slow && Some(m.name.as_str()) == sel);
        let rest = |slow: bool| self.methods.iter().filter(move |m| m.slow == slow && Some(m.name.as_str()) != sel);
        let fast = first(false).chain(rest(false));
        let slow = first(true).filter(|_| sel_visible).chain(rest(true).filter(|_| all_visible));
        fast.chain(slow).map(|m| m.name.clone()).collect()
    }

    fn is_slow(&self, name: &str) -> bool {
        self.methods.iter().any(|m| m.slow && m.name == name)
    }

    /// True when the worker is running (or about to run) a slow method that
    /// is no longer on screen: it must stop rather than hold the core.
    fn runs_hidden_slow_method(&self) -> bool {
        let Some(f) = self.inflight.as_ref().filter(|f| !f.examples) else { return false };
        let wanted = self.wanted_methods();
        f.methods.iter().any(|m| {
            self.is_slow(m) && !wanted.contains(m) && !matches!(self.results.get(m), Some(Slot::Done(_) | Slot::Failed(_)))
        })
    }

    fn send(&mut self, job: Job) -> Request {
        if let Some(f) = self.inflight.take() {
            f.cancel.cancel();
        }
        let id = self.next_id;
        self.next_id += 1;
        let cancel = CancelToken::new();
        let methods = match &job {
            Job::Explain { methods, .. } => methods.clone(),
            Job::Examples { .. } | Job::Distill { .. } => Vec::new(),
        };
        self.inflight = Some(InFlight { id, cancel: cancel.clone(), examples: matches!(job, Job::Examples { .. }), methods });
        Request { id, job, cancel }
    }

    /// Decides what the worker should do now; call after every batch of
    /// events. Text changes always go out at once (cancelling older work);
    /// missing methods and example scores are requested when the worker is idle.
    pub fn reconcile(&mut self) -> Option<Request> {
        self.info.as_ref()?;
        if let Some(r) = self.distill.pending.take() {
            return Some(r);
        }
        let text = self.input.text();
        if text.trim().is_empty() && self.requested_text.as_deref() != Some(text.as_str()) {
            // Nothing to explain: clear the view and make in-flight answers stale.
            if self.inflight.as_ref().is_some_and(|f| !f.examples)
                && let Some(f) = self.inflight.take() {
                    f.cancel.cancel();
                }
            self.text_since = self.next_id;
            self.requested_text = Some(text.clone());
            self.analysis = None;
            self.results.clear();
            self.popup = None;
            self.zoom = None;
        } else if self.requested_text.as_deref() != Some(text.as_str()) {
            let methods = self.wanted_methods();
            let req = self.send(Job::Explain { text: text.clone(), methods });
            self.text_since = req.id;
            self.requested_text = Some(text);
            self.latency_start = Some(Instant::now());
            return Some(req);
        }
        let analysed = self.analysis.as_ref().is_some_and(|a| a.text == text);
        if self.runs_hidden_slow_method()
            && let Some(f) = self.inflight.take()
        {
            // Cancel it; the fast methods it had not reached yet go back to
            // "not requested" and are asked for again below.
            f.cancel.cancel();
            self.results.retain(|m, s| !(f.methods.contains(m) && matches!(s, Slot::Queued | Slot::Running(_))));
            if !analysed {
                self.requested_text = None;
                return self.reconcile();
            }
        }
        let busy_with_examples = self.inflight.as_ref().is_some_and(|f| f.examples);
        if analysed && (self.inflight.is_none() || busy_with_examples) {
            let missing: Vec<String> = self.wanted_methods().into_iter().filter(|m| !self.results.contains_key(m)).collect();
            if !missing.is_empty() {
                for m in &missing {
                    self.results.insert(m.clone(), Slot::Queued);
                }
                return Some(self.send(Job::Explain { text, methods: missing }));
            }
        }
        // Example scoring only runs while the browser is open.
        if self.pane != Pane::Examples
            && self.inflight.as_ref().is_some_and(|f| f.examples)
            && let Some(f) = self.inflight.take()
        {
            f.cancel.cancel();
        }
        if self.pane == Pane::Examples && self.inflight.is_none() {
            let method = self.method_name()?.to_string();
            // Nearest to the selection first, in batches, so what is on
            // screen fills in first and scrolling re-plans the next batch.
            let mut todo: Vec<usize> = (0..self.examples.len())
                .filter(|i| self.examples[*i].rationale.is_some() && !self.example_scores.contains_key(&(method.clone(), *i)))
                .collect();
            todo.sort_by_key(|i| i.abs_diff(self.example));
            todo.truncate(EXAMPLE_BATCH);
            if !todo.is_empty() {
                let texts = todo.into_iter().map(|i| (i, self.examples[i].text.clone())).collect();
                return Some(self.send(Job::Examples { method, texts }));
            }
        }
        None
    }

    /// Cancels whatever the worker is doing (on quit).
    pub fn cancel_all(&mut self) {
        if let Some(f) = self.inflight.take() {
            f.cancel.cancel();
        }
        self.stop_distill();
    }

    /// A request id outside the one-live-request bookkeeping (distillation).
    pub(super) fn side_request_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id - 1
    }

    /// `name` was replaced by a new method (a distilled ExpNet): its old
    /// scores go, and answers still on their way become stale.
    pub(super) fn forget_method(&mut self, name: &str) {
        if let Some(f) = self.inflight.take() {
            f.cancel.cancel();
            self.results.retain(|_, s| !matches!(s, Slot::Running(_) | Slot::Queued));
        }
        self.results.remove(name);
        self.example_scores.retain(|(m, _), _| m != name);
        self.text_since = self.next_id;
    }

    fn stale(&self, id: u64) -> bool {
        id < self.text_since
    }

    /// Applies one worker event. Events of requests older than the current
    /// text are dropped, so a slow answer can never overwrite a newer one.
    pub fn on_worker(&mut self, ev: WorkerEvent) {
        match ev {
            WorkerEvent::Loaded { info, methods } => {
                self.method = methods.iter().position(|m| m.name == "expnet").unwrap_or(0);
                if info.expnet.is_none() && self.load_warnings.is_empty() {
                    let why = info.expnet_skipped.as_deref().unwrap_or("no ExpNet weights loaded");
                    self.notify(format!("no ExpNet: {why}"));
                } else if info.expnet.is_none() {
                    self.notify_error("ExpNet not loaded (see the message): the other methods work");
                } else if info.explainer.as_ref().is_some_and(|e| e.is_transfer()) && self.load_warnings.is_empty() {
                    self.notify("ExpNet: the shape-free transfer one, no ExpNet was trained for this model (? says more)");
                } else {
                    self.notice = None;
                }
                self.info = Some(info);
                self.methods = methods;
            }
            WorkerEvent::LoadWarning(w) => {
                self.load_warnings.push(w.clone());
                self.show_alert("Loaded with a problem", w);
            }
            WorkerEvent::LoadFailed(e) => {
                self.load_error = Some(e.clone());
                self.notify_error("model failed to load: Esc closes the error, Ctrl-C quits and prints it");
                self.show_alert("Model failed to load", e);
            }
            WorkerEvent::Finished { id }
                if self.inflight.as_ref().is_some_and(|f| f.id == id) => {
                    self.inflight = None;
                    // Cancelled methods go back to "not requested".
                    self.results.retain(|_, s| !matches!(s, Slot::Running(_) | Slot::Queued));
                }
            WorkerEvent::Analyzed { id, analysis } if !self.stale(id) => {
                let same_text = self.analysis.as_ref().is_some_and(|a| a.text == analysis.text);
                if !same_text {
                    self.results.clear();
                    self.popup = None;
                    if analysis.truncated {
                        self.notify("input was longer than the model accepts: truncated");
                    }
                }
                let us = scores::units(&analysis.text, &analysis.tokens, self.merge_words);
                self.token = self.token.min(us.len().saturating_sub(1));
                // Start on the first real word rather than [CLS].
                if us.get(self.token).is_some_and(|u| u.special) {
                    self.token = us.iter().position(|u| !u.special).unwrap_or(self.token);
                }
                if let Some(z) = self.zoom.as_mut() {
                    let n = analysis.attentions.len.saturating_sub(1);
                    z.row = z.row.min(n);
                    z.col = z.col.min(n);
                }
                self.analysis = Some(analysis);
                // The job's methods wait in order: "queued" until their turn.
                if let Some(f) = self.inflight.as_ref().filter(|f| f.id == id) {
                    for m in &f.methods {
                        self.results.entry(m.clone()).or_insert(Slot::Queued);
                    }
                }
            }
            WorkerEvent::AnalyzeFailed { id, error, .. } if !self.stale(id) => {
                self.notify_error(format!("analysis failed: {error}"));
            }
            WorkerEvent::Method { id, result } if !self.stale(id) => {
                if Some(result.method.as_str()) == self.method_name()
                    && let Some(t0) = self.latency_start.take() {
                        self.latency_ms = Some(t0.elapsed().as_secs_f64() * 1000.0);
                    }
                self.results.insert(result.method.clone(), Slot::Done(result));
            }
            WorkerEvent::MethodFailed { id, method, error } if !self.stale(id) => {
                self.notify_error(format!("{method} failed: {error}"));
                self.results.insert(method, Slot::Failed(error));
            }
            // Only the live request's progress counts: a cancelled one may
            // still report once before it reaches its checkpoint.
            WorkerEvent::Progress { id, method, fraction } if self.inflight.as_ref().is_some_and(|f| f.id == id)
                && !matches!(self.results.get(&method), Some(Slot::Done(_)) | Some(Slot::Failed(_))) => {
                    self.results.insert(method, Slot::Running(fraction));
                }
            WorkerEvent::ExampleScored { index, method, word_scores, .. } => {
                // Example scores do not depend on the input text: never stale.
                self.example_scores.insert((method, index), word_scores);
            }
            WorkerEvent::DistillProgress { .. } | WorkerEvent::Distilled { .. } | WorkerEvent::DistillFailed { .. } => self.on_distill(ev),
            _ => {}
        }
    }

    /// Test/diagnostic view of the request bookkeeping: (in-flight id, first id of the current text).
    pub fn request_state(&self) -> (Option<u64>, u64) {
        (self.inflight.as_ref().map(|f| f.id), self.text_since)
    }
}
