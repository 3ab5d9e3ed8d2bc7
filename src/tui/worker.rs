//! The worker: a tokio task that owns the backend and runs one job at a time
//! on the blocking pool, so the UI thread never waits on the model.
//!
//! Newest request wins twice over: the UI cancels the previous request's
//! token when it sends a new one (a slow method stops at its next
//! checkpoint), and the worker skips every queued request but the last.
//! Results carry the request id so the UI can drop stale ones.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use tokio::sync::mpsc;

use super::backend::{Analysis, BackendInfo, ExplainBackend, MethodInfo, MethodResult};
use super::scores::word_scores;
use crate::explain::{CancelToken, Progress, is_cancelled};

/// What to compute.
#[derive(Clone, Debug, PartialEq)]
pub enum Job {
    /// Analyse `text` (reusing the last analysis when the text is unchanged)
    /// and run `methods` in this order, reporting each as it finishes.
    Explain { text: String, methods: Vec<String> },
    /// Run `method` on example texts, for the F1@k column of the examples pane.
    Examples { method: String, texts: Vec<(usize, String)> },
    /// Distil an ExpNet from `texts` on a thread of its own (`D`), beside
    /// the explain jobs and never superseded by them; the request's cancel
    /// token is its stop flag.
    Distill { texts: Vec<String>, plan: super::backend::DistillPlan },
}

#[derive(Clone, Debug)]
pub struct Request {
    pub id: u64,
    pub job: Job,
    pub cancel: CancelToken,
}

/// Everything the worker reports back; every per-request event carries `id`.
#[derive(Clone, Debug)]
pub enum WorkerEvent {
    Loaded { info: BackendInfo, methods: Vec<MethodInfo> },
    LoadFailed(String),
    /// The model loaded but a part of it did not (sent before `Loaded`).
    LoadWarning(String),
    Analyzed { id: u64, analysis: Arc<Analysis> },
    AnalyzeFailed { id: u64, text: String, error: String },
    Method { id: u64, result: MethodResult },
    MethodFailed { id: u64, method: String, error: String },
    Progress { id: u64, method: String, fraction: f32 },
    /// Per-word importances of one example under one method.
    ExampleScored { id: u64, index: usize, method: String, word_scores: Vec<f32> },
    /// The request is done (completed, failed or cancelled).
    Finished { id: u64 },
    DistillProgress { id: u64, progress: super::backend::DistillProgress },
    /// The distilled ExpNet is in the backend's method list.
    Distilled { id: u64, result: Box<super::backend::Distilled> },
    /// Failed, or stopped (`stopped`: the user asked for it).
    DistillFailed { id: u64, error: String, stopped: bool },
}

/// Where the worker sends its events (the UI's merged event channel).
pub type Sink = Arc<dyn Fn(WorkerEvent) + Send + Sync>;

/// Reports a non-fatal load problem (e.g. an ExpNet file that does not
/// load): the model stays usable, the user is told.
pub type Warn = dyn Fn(String) + Send + Sync;

/// Loads the backend; runs on the worker so the UI is up at once.
pub type Loader = Box<dyn FnOnce(&Warn) -> anyhow::Result<Arc<dyn ExplainBackend>> + Send>;

/// The UI's end of the worker. Dropping it stops the worker after its current job.
pub struct WorkerHandle {
    tx: mpsc::UnboundedSender<Request>,
}

impl WorkerHandle {
    /// Queues a request; false when the worker has stopped (load failure).
    pub fn send(&self, req: Request) -> bool {
        self.tx.send(req).is_ok()
    }
}

/// Starts the worker task on `rt`; it first runs `load`, then serves requests.
pub fn spawn(rt: &tokio::runtime::Handle, load: Loader, sink: Sink) -> WorkerHandle {
    let (tx, rx) = mpsc::unbounded_channel();
    rt.spawn(run(load, rx, sink));
    WorkerHandle { tx }
}

/// Text of a panic payload, so a backend panic becomes an error message.
fn panic_text(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// Runs backend code, turning a panic into an error so one bad input cannot
/// kill the worker.
fn guarded<T>(what: &str, f: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<T> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|p| Err(anyhow::anyhow!("{what} panicked: {}", panic_text(p))))
}

async fn run(load: Loader, mut rx: mpsc::UnboundedReceiver<Request>, sink: Sink) {
    let warn_sink = sink.clone();
    let loaded = tokio::task::spawn_blocking(move || {
        guarded("model loading", || {
            let b = load(&move |w| warn_sink(WorkerEvent::LoadWarning(w)))?;
            let (info, methods) = (b.info(), b.methods());
            Ok((b, info, methods))
        })
    })
    .await;
    let backend = match loaded {
        Ok(Ok((b, info, methods))) => {
            sink(WorkerEvent::Loaded { info, methods });
            b
        }
        Ok(Err(e)) => return sink(WorkerEvent::LoadFailed(format!("{e:#}"))),
        Err(e) => return sink(WorkerEvent::LoadFailed(format!("model loading failed: {e}"))),
    };
    let mut cache: Option<Arc<Analysis>> = None;
    while let Some(first) = rx.recv().await {
        let mut next = side_job(first, &backend, &sink);
        while let Ok(newer) = rx.try_recv() {
            if let Some(r) = side_job(newer, &backend, &sink) {
                next = Some(r);
            }
        }
        let Some(req) = next else { continue };
        let id = req.id;
        let (b, s, c) = (backend.clone(), sink.clone(), cache.clone());
        match tokio::task::spawn_blocking(move || process(&*b, req, c, &*s)).await {
            Ok(new_cache) => cache = new_cache,
            Err(e) => {
                sink(WorkerEvent::AnalyzeFailed { id, text: String::new(), error: format!("worker job failed: {e}") });
                sink(WorkerEvent::Finished { id });
            }
        }
    }
}

/// Starts a distillation on its own thread and returns `None`; gives any
/// other request back. The thread is never joined: it stops between texts
/// or epochs once the token is cancelled, and quitting does not wait for it.
fn side_job(req: Request, backend: &Arc<dyn ExplainBackend>, sink: &Sink) -> Option<Request> {
    let Job::Distill { texts, plan } = req.job else { return Some(req) };
    let (b, s, cancel, id) = (backend.clone(), sink.clone(), req.cancel, req.id);
    let spawned = std::thread::Builder::new().name("expnet-distill".into()).spawn(move || {
        let mut report = |progress| s(WorkerEvent::DistillProgress { id, progress });
        match guarded("distillation", || b.distill(&texts, &plan, cancel.flag(), &mut report)) {
            Ok(result) => s(WorkerEvent::Distilled { id, result: Box::new(result) }),
            Err(e) => s(WorkerEvent::DistillFailed { id, error: format!("{e:#}"), stopped: cancel.is_cancelled() }),
        }
    });
    if let Err(e) = spawned {
        sink(WorkerEvent::DistillFailed { id, error: format!("cannot start the distillation thread: {e}"), stopped: false });
    }
    None
}

/// Runs one request to completion or cancellation; returns the analysis to cache.
pub(crate) fn process(b: &dyn ExplainBackend, req: Request, cache: Option<Arc<Analysis>>, sink: &(dyn Fn(WorkerEvent) + Send + Sync)) -> Option<Arc<Analysis>> {
    let Request { id, job, cancel } = req;
    let mut keep = cache.clone();
    if !cancel.is_cancelled() {
        match job {
            Job::Explain { text, methods } => {
                let analysis = match cache.filter(|a| a.text == text) {
                    Some(a) => Some(a),
                    None => match guarded("analysis", || b.analyze(&text)) {
                        Ok(a) => Some(Arc::new(a)),
                        Err(e) => {
                            sink(WorkerEvent::AnalyzeFailed { id, text: text.clone(), error: format!("{e:#}") });
                            None
                        }
                    },
                };
                if let Some(a) = analysis {
                    sink(WorkerEvent::Analyzed { id, analysis: a.clone() });
                    run_methods(b, id, &a, &methods, &cancel, sink);
                    keep = Some(a);
                }
            }
            Job::Examples { method, texts } => {
                for (index, text) in texts {
                    if cancel.is_cancelled() {
                        break;
                    }
                    let progress = Progress::new(cancel.clone(), None);
                    let r = guarded("example", || {
                        let a = b.analyze(&text)?;
                        let r = b.explain(&a, &method, &progress)?;
                        Ok(word_scores(&a.text, &a.tokens, &r.scores))
                    });
                    match r {
                        Ok(ws) => sink(WorkerEvent::ExampleScored { id, index, method: method.clone(), word_scores: ws }),
                        Err(e) if is_cancelled(&e) => break,
                        // One failing example just has no F1; keep scoring the rest.
                        Err(_) => sink(WorkerEvent::ExampleScored { id, index, method: method.clone(), word_scores: Vec::new() }),
                    }
                }
            }
            // Started by `side_job`, never queued here.
            Job::Distill { .. } => {}
        }
    }
    sink(WorkerEvent::Finished { id });
    keep
}

fn run_methods(b: &dyn ExplainBackend, id: u64, a: &Analysis, methods: &[String], cancel: &CancelToken, sink: &(dyn Fn(WorkerEvent) + Send + Sync)) {
    for m in methods {
        if cancel.is_cancelled() {
            return;
        }
        // Forward at most ~100 progress reports per method.
        let last = AtomicU32::new(0f32.to_bits());
        let report = |f: f32| {
            let prev = f32::from_bits(last.load(Ordering::Relaxed));
            if f - prev >= 0.01 || (f >= 1.0 && prev < 1.0) {
                last.store(f.to_bits(), Ordering::Relaxed);
                sink(WorkerEvent::Progress { id, method: m.clone(), fraction: f });
            }
        };
        let progress = Progress::new(cancel.clone(), Some(&report));
        match guarded(m, || b.explain(a, m, &progress)) {
            Ok(result) => sink(WorkerEvent::Method { id, result }),
            Err(e) if is_cancelled(&e) => return,
            Err(e) => sink(WorkerEvent::MethodFailed { id, method: m.clone(), error: format!("{e:#}") }),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc::{Receiver, channel};
    use std::time::{Duration, Instant};

    use super::*;
    use crate::tui::testing::FakeBackend;

    fn start(b: Arc<FakeBackend>) -> (tokio::runtime::Runtime, WorkerHandle, Receiver<WorkerEvent>) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).build().unwrap();
        let (tx, rx) = channel();
        let h = spawn(rt.handle(), Box::new(move |_: &Warn| Ok(b as Arc<dyn ExplainBackend>)), Arc::new(move |e| {
            let _ = tx.send(e);
        }));
        match rx.recv_timeout(Duration::from_secs(5)).unwrap() {
            WorkerEvent::Loaded { methods, .. } => assert_eq!(methods[0].name, "expnet"),
            e => panic!("expected Loaded, got {e:?}"),
        }
        (rt, h, rx)
    }

    fn req(id: u64, text: &str, methods: &[&str]) -> Request {
        Request { id, job: Job::Explain { text: text.into(), methods: methods.iter().map(|s| s.to_string()).collect() }, cancel: CancelToken::new() }
    }

    /// Collects events until `Finished { id }`.
    fn until_finished(rx: &Receiver<WorkerEvent>, id: u64) -> Vec<WorkerEvent> {
        let mut out = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let e = rx.recv_timeout(Duration::from_secs(10)).expect("worker event");
            let done = matches!(e, WorkerEvent::Finished { id: f } if f == id);
            out.push(e);
            if done {
                return out;
            }
        }
        panic!("request {id} never finished: {out:?}");
    }

    #[test]
    fn newest_request_wins_and_cancels_the_slow_method() {
        let b = Arc::new(FakeBackend::new().slow(200, Duration::from_millis(10)));
        let (rt, h, rx) = start(b.clone());
        let r1 = req(1, "a good film", &["expnet", "occlusion"]);
        let c1 = r1.cancel.clone();
        assert!(h.send(r1));
        // Wait until the slow method is running.
        loop {
            match rx.recv_timeout(Duration::from_secs(5)).unwrap() {
                WorkerEvent::Progress { id: 1, method, .. } if method == "occlusion" => break,
                _ => {}
            }
        }
        // Newer requests queue up while it runs; the UI cancels the old token.
        for (id, text) in [(2, "a bad film"), (3, "a dull film"), (4, "a great film")] {
            assert!(h.send(req(id, text, &["expnet"])));
        }
        c1.cancel();
        let t0 = Instant::now();
        let events = until_finished(&rx, 4);
        assert!(t0.elapsed() < Duration::from_secs(1), "cancellation stops the slow method quickly");
        assert!(!events.iter().any(|e| matches!(e, WorkerEvent::Method { id: 1, result } if result.method == "occlusion")));
        assert!(!events.iter().any(|e| matches!(e, WorkerEvent::Analyzed { id: 2 | 3, .. })), "superseded queued requests are skipped");
        assert!(events.iter().any(|e| matches!(e, WorkerEvent::Analyzed { id: 4, analysis } if analysis.text == "a great film")));
        assert!(events.iter().any(|e| matches!(e, WorkerEvent::Method { id: 4, result } if result.method == "expnet")));
        assert_eq!(b.slow_cancelled(), 1);
        assert_eq!(b.slow_completed(), 0);
        assert_eq!(b.analyzed(), 2, "only the first and the newest text were analysed");
        rt.shutdown_background();
    }

    #[test]
    fn every_request_gets_its_fast_result() {
        // Latency is measured in README / the bench, not asserted here (timed tests flake).
        let (rt, h, rx) = start(Arc::new(FakeBackend::new()));
        for id in 1..=5 {
            h.send(req(id, &format!("a great film number {id}"), &["expnet"]));
            loop {
                if let WorkerEvent::Method { id: i, .. } = rx.recv_timeout(Duration::from_secs(5)).unwrap()
                    && i == id {
                        break;
                    }
            }
            until_finished(&rx, id);
        }
        rt.shutdown_background();
    }

    #[test]
    fn progress_is_reported_and_same_text_reuses_the_analysis() {
        let b = Arc::new(FakeBackend::new().slow(10, Duration::from_millis(1)));
        let (rt, h, rx) = start(b.clone());
        h.send(req(1, "fun", &["expnet"]));
        until_finished(&rx, 1);
        h.send(req(2, "fun", &["occlusion"]));
        let ev = until_finished(&rx, 2);
        let fractions: Vec<f32> = ev.iter().filter_map(|e| if let WorkerEvent::Progress { fraction, .. } = e { Some(*fraction) } else { None }).collect();
        assert!(fractions.len() >= 5 && fractions.windows(2).all(|w| w[0] <= w[1]), "{fractions:?}");
        assert_eq!(fractions.last(), Some(&1.0));
        assert_eq!(b.analyzed(), 1);
        rt.shutdown_background();
    }

    struct Panicky;
    impl ExplainBackend for Panicky {
        fn info(&self) -> BackendInfo {
            FakeBackend::new().info()
        }
        fn methods(&self) -> Vec<MethodInfo> {
            FakeBackend::new().methods()
        }
        fn analyze(&self, text: &str) -> anyhow::Result<Analysis> {
            FakeBackend::new().analyze(text)
        }
        fn explain(&self, a: &Analysis, method: &str, p: &Progress) -> anyhow::Result<MethodResult> {
            if method == "saliency" {
                panic!("gradient blew up");
            }
            FakeBackend::new().explain(a, method, p)
        }
    }

    #[test]
    fn backend_errors_and_panics_become_events() {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).build().unwrap();
        let (tx, rx) = channel();
        let sink: Sink = Arc::new(move |e| {
            let _ = tx.send(e);
        });
        let h = spawn(rt.handle(), Box::new(|_: &Warn| Ok(Arc::new(Panicky) as Arc<dyn ExplainBackend>)), sink.clone());
        assert!(matches!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), WorkerEvent::Loaded { .. }));
        h.send(req(1, "good", &["saliency", "nope", "expnet"]));
        let ev = until_finished(&rx, 1);
        assert!(ev.iter().any(|e| matches!(e, WorkerEvent::MethodFailed { method, error, .. } if method == "saliency" && error.contains("gradient blew up"))));
        assert!(ev.iter().any(|e| matches!(e, WorkerEvent::MethodFailed { method, error, .. } if method == "nope" && error.contains("unknown method"))));
        assert!(ev.iter().any(|e| matches!(e, WorkerEvent::Method { result, .. } if result.method == "expnet")), "the worker survives a panic");

        let (tx2, rx2) = channel();
        let _h2 = spawn(rt.handle(), Box::new(|_: &Warn| anyhow::bail!("model.safetensors not found")), Arc::new(move |e| {
            let _ = tx2.send(e);
        }));
        match rx2.recv_timeout(Duration::from_secs(5)).unwrap() {
            WorkerEvent::LoadFailed(m) => assert!(m.contains("not found")),
            e => panic!("{e:?}"),
        }
        rt.shutdown_background();
    }
}
