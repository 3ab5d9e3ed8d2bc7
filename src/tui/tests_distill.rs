//! Background distillation (`D`) with the fake backend: when the key may
//! start a job, progress in the status, the finished job's labelled method,
//! stopping, and the worker running it beside explain jobs.

use std::sync::Arc;
use std::sync::mpsc::channel;
use std::time::Duration;

use crossterm::event::KeyCode;

use super::backend::{DistillProgress, ExplainBackend};
use super::testing::FakeBackend;
use super::tests::Harness;
use super::worker::{Job, Request, WorkerEvent};
use crate::explain::CancelToken;

fn texts(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("a good film number {i}")).collect()
}

/// A harness whose model has no ExpNet, with `n` texts at hand, in navigation mode.
fn without_expnet(n: usize) -> Harness {
    let mut b = FakeBackend::new();
    b.with_expnet = false;
    let mut h = Harness::with_backend(b);
    let loaded = h.app.notice.clone().unwrap().text;
    assert!(loaded.contains("no ExpNet: no ExpNet was trained for this model"), "the reason shows: {loaded}");
    h.app.distill.texts = texts(n);
    h.key(KeyCode::Esc);
    h
}

/// Runs the fake distillation for `req` synchronously, as the worker's thread would.
fn run_distill(h: &Harness, req: &Request) -> Vec<WorkerEvent> {
    let Job::Distill { texts, plan } = &req.job else { panic!("expected a Distill job, got {:?}", req.job) };
    let mut events = Vec::new();
    let id = req.id;
    let r = h.backend.distill(texts, plan, req.cancel.flag(), &mut |progress| events.push(WorkerEvent::DistillProgress { id, progress }));
    events.push(match r {
        Ok(result) => WorkerEvent::Distilled { id, result: Box::new(result) },
        Err(e) => WorkerEvent::DistillFailed { id, error: format!("{e:#}"), stopped: req.cancel.is_cancelled() },
    });
    events
}

#[test]
fn d_starts_a_job_only_without_an_own_expnet_and_with_texts() {
    // The model has its own ExpNet: refused, nothing sent.
    let mut h = Harness::new();
    h.app.distill.texts = texts(5);
    h.key(KeyCode::Esc);
    h.key(KeyCode::Char('D'));
    assert!(h.app.notice.as_ref().unwrap().text.contains("already has its own ExpNet"));
    assert!(h.app.distill.running.is_none() && h.app.reconcile().is_none());

    // No ExpNet but no texts: refused with the hint.
    let mut h = without_expnet(0);
    h.key(KeyCode::Char('D'));
    let n = h.app.notice.clone().unwrap();
    assert!(n.error && n.text.contains("--texts"), "{}", n.text);
    assert!(h.app.reconcile().is_none());

    // An ExpNet of another model counts as none: allowed.
    let mut h = Harness::new();
    h.app.distill.texts = texts(5);
    h.key(KeyCode::Esc);
    h.app.info.as_mut().unwrap().explainer.as_mut().unwrap().matches_model = Some(false);
    assert_eq!(h.app.distill_blocker(), None);

    // No ExpNet and texts: the request goes out, at most max_texts of them, teacher occlusion.
    let mut h = without_expnet(5);
    h.app.distill.plan.max_texts = 3;
    h.key(KeyCode::Char('D'));
    let req = h.app.reconcile().expect("distill request");
    match &req.job {
        Job::Distill { texts, plan } => {
            assert_eq!(texts.len(), 3);
            assert_eq!(plan.teacher, "occlusion");
        }
        j => panic!("expected Distill, got {j:?}"),
    }
    assert!(h.app.distill.running.is_some());
    // Typing still gets its explain requests while the job runs.
    h.key(KeyCode::Char('i'));
    h.type_str("great");
    assert!(matches!(h.app.reconcile().map(|r| r.job), Some(Job::Explain { .. })));
}

#[test]
fn progress_is_shown_and_the_finished_job_adds_the_labelled_method_selected() {
    let mut h = without_expnet(5);
    h.key(KeyCode::Char('i'));
    h.enter_text("a dull film");
    assert_eq!(h.app.method_name(), Some("rollout"));
    assert!(h.app.expnet_about()[0].contains("no ExpNet was trained for this model"));
    h.key(KeyCode::Char('D'));
    let req = h.app.reconcile().unwrap();
    let events = run_distill(&h, &req);
    let (progress, done): (Vec<_>, Vec<_>) = events.into_iter().partition(|e| matches!(e, WorkerEvent::DistillProgress { .. }));
    for ev in progress.into_iter().take(3) {
        h.app.on_worker(ev);
    }
    let status = h.app.distill_status().unwrap();
    assert!(status.contains("occlusion 3/5 texts"), "{status}");
    assert!(h.app.distill_fraction().unwrap() > 0.0);
    h.app.on_worker(WorkerEvent::DistillProgress { id: req.id, progress: DistillProgress::Epoch { epoch: 2, epochs: 3, val_spearman: Some(0.61) } });
    assert!(h.app.distill_status().unwrap().contains("epoch 2/3, held-out Spearman 0.61"));
    for ev in done {
        h.app.on_worker(ev);
    }
    assert!(h.app.distill.running.is_none());
    assert_eq!(h.app.methods[0].label, "expnet≈occlusion");
    assert_eq!(h.app.method_name(), Some("expnet"));
    assert_eq!(h.app.method_label(), Some("expnet≈occlusion"));
    let notice = h.app.notice.clone().unwrap().text;
    assert!(notice.contains("expnet-distilled-fake.safetensors") && notice.contains("Spearman 0.50"), "{notice}");
    assert!(h.app.expnet_about()[0].contains("distilled from occlusion"), "{:?}", h.app.expnet_about());
    assert_eq!(h.app.distill_blocker().as_deref(), Some("this model already has its own ExpNet"));
    // The new method is explained for the current text.
    h.settle();
    assert!(h.app.result("expnet").is_some_and(|r| r.scores.len() == 5));
}

#[test]
fn d_again_or_quitting_stops_the_job() {
    let mut h = without_expnet(5);
    h.key(KeyCode::Char('D'));
    let req = h.app.reconcile().unwrap();
    h.key(KeyCode::Char('D'));
    assert!(req.cancel.is_cancelled(), "the second D sets the stop flag");
    assert!(h.app.distill_status().unwrap().contains("stopping"));
    let events = run_distill(&h, &req);
    assert_eq!(events.len(), 1, "stopped before the first text");
    for ev in events {
        h.app.on_worker(ev);
    }
    assert!(h.app.distill.running.is_none());
    assert!(h.app.notice.as_ref().unwrap().text.contains("stopped"));
    assert!(h.app.methods.iter().all(|m| m.name != "expnet"));

    // Quitting stops a running job; a job not yet sent is never sent.
    h.key(KeyCode::Char('D'));
    let req = h.app.reconcile().unwrap();
    h.app.cancel_all();
    assert!(req.cancel.is_cancelled());
    h.key(KeyCode::Char('D'));
    h.key(KeyCode::Char('D'));
    assert!(h.app.reconcile().is_none_or(|r| !matches!(r.job, Job::Distill { .. })));
}

#[test]
fn the_worker_runs_distillation_beside_explain_jobs_and_stops_it() {
    let mut b = FakeBackend::new();
    b.with_expnet = false;
    b.distill_step = Duration::from_millis(5);
    let b = Arc::new(b);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).build().unwrap();
    let (tx, rx) = channel();
    let backend = b.clone();
    let h = super::worker::spawn(
        rt.handle(),
        Box::new(move |_: &super::worker::Warn| Ok(backend as Arc<dyn ExplainBackend>)),
        Arc::new(move |e| {
            let _ = tx.send(e);
        }),
    );
    assert!(matches!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), WorkerEvent::Loaded { .. }));
    let plan = super::backend::DistillPlan::default();
    let distill = |id, n| Request { id, job: Job::Distill { texts: texts(n), plan: plan.clone() }, cancel: CancelToken::new() };
    // An explain request right behind it does not supersede it, and is served.
    h.send(distill(1, 20));
    h.send(Request { id: 2, job: Job::Explain { text: "fun".into(), methods: vec!["rollout".into()] }, cancel: CancelToken::new() });
    let (mut distilled, mut explained) = (false, false);
    while !(distilled && explained) {
        match rx.recv_timeout(Duration::from_secs(10)).expect("worker event") {
            WorkerEvent::Distilled { id: 1, result } => {
                assert_eq!(result.method.label, "expnet≈occlusion");
                distilled = true;
            }
            WorkerEvent::Method { id: 2, .. } => explained = true,
            WorkerEvent::DistillFailed { error, .. } => panic!("{error}"),
            _ => {}
        }
    }
    assert_eq!(b.methods()[0].label, "expnet≈occlusion");
    // A long job stops when its token is cancelled.
    let long = distill(3, 10_000);
    let cancel = long.cancel.clone();
    h.send(long);
    loop {
        match rx.recv_timeout(Duration::from_secs(10)).expect("worker event") {
            WorkerEvent::DistillProgress { id: 3, .. } => cancel.cancel(),
            WorkerEvent::DistillFailed { id: 3, stopped, error } => {
                assert!(stopped && error.contains("stopped"), "{error}");
                break;
            }
            WorkerEvent::Distilled { id: 3, .. } => panic!("the cancelled job finished"),
            _ => {}
        }
    }
    rt.shutdown_background();
}

#[test]
fn the_transfer_expnet_is_labelled_as_such_and_d_may_still_distil() {
    let b = FakeBackend::new();
    let mut info = b.info();
    let e = info.explainer.as_mut().expect("the fake has an ExpNet");
    (e.kind, e.file, e.matches_model) = ("transfer".into(), "embedded:expnet-transfer".into(), Some(false));
    info.expnet = Some("embedded:expnet-transfer (expnet (transfer))".into());
    info.expnet_skipped = Some("no ExpNet was trained for this model".into());
    let mut h = Harness::with_backend(b);
    h.app.on_worker(WorkerEvent::Loaded { info, methods: h.backend.methods() });
    let notice = h.app.notice.clone().unwrap();
    assert!(!notice.error && notice.text.contains("transfer"), "{}", notice.text);
    h.app.distill.texts = texts(3);
    h.key(KeyCode::Esc);
    // Not an ExpNet of this model: `D` is allowed.
    assert_eq!(h.app.distill_blocker(), None);
    assert!(h.app.expnet_about()[0].contains("expnet (transfer)") && h.app.expnet_about()[0].contains("shape-free"), "{:?}", h.app.expnet_about());
    h.app.notice = None; // the load notice holds the status line until it expires
    let screen = super::render::tests::text(&super::render::tests::draw(&h.app, 140, 24));
    let status = screen.lines().last().unwrap();
    assert!(status.contains("(expnet (transfer))"), "{status}");
    assert!(!status.contains("not trained for this model"), "the label says it already: {status}");
}
