//! Tests for the explorer under abuse (issue 14): scheduling of slow
//! methods, load failures, export confirmation, theme errors, signals,
//! pastes with CR line breaks, and narrow terminals.

use std::sync::Arc;
use std::sync::mpsc::channel;

use crossterm::event::{Event, KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::layout::Rect;

use super::app::{App, Pane, Slot};
use super::backend::ExplainBackend;
use super::keys::{Effect, handle_event};
use super::render::tests::{draw, text};
use super::testing::FakeBackend;
use super::tests::Harness;
use super::theme::{ColorMode, Theme};
use super::worker::{Job, WorkerEvent};
use super::{AppEvent, LoopExit};

fn methods_of(job: &Job) -> Vec<String> {
    match job {
        Job::Explain { methods, .. } => methods.clone(),
        Job::Examples { .. } | Job::Distill { .. } => panic!("expected an Explain job"),
    }
}

#[test]
fn fast_methods_run_before_a_selected_slow_one() {
    let mut h = Harness::new();
    h.key(KeyCode::Esc);
    assert!(h.app.select_method("occlusion"));
    h.key(KeyCode::Char('i'));
    h.type_str("a great film");
    let req = h.app.reconcile().expect("a request for the new text");
    let order = methods_of(&req.job);
    assert_eq!(order.last().map(String::as_str), Some("occlusion"), "the slow method goes last: {order:?}");
    assert_eq!(order.len(), 5, "every fast method, then the visible slow one: {order:?}");
    // Fast rows wait as "queued" (not "running 0%") until their turn.
    let events = h.run_job(req);
    let analyzed = events.iter().position(|e| matches!(e, WorkerEvent::Analyzed { .. })).unwrap();
    for e in events[..=analyzed].iter().cloned() {
        h.app.on_worker(e);
    }
    assert!(order.iter().all(|m| h.app.results.get(m) == Some(&Slot::Queued)), "{:?}", h.app.results);
    let first_slow = events.iter().position(|e| matches!(e, WorkerEvent::Progress { method, .. } if method == "occlusion")).unwrap();
    let fast_done = events.iter().filter(|e| matches!(e, WorkerEvent::Method { result, .. } if result.method != "occlusion")).count();
    let fast_before = events[..first_slow].iter().filter(|e| matches!(e, WorkerEvent::Method { .. })).count();
    assert_eq!((fast_done, fast_before), (4, 4), "all fast results arrive before the slow method starts");
}

#[test]
fn a_slow_method_is_cancelled_when_it_leaves_the_screen() {
    let mut h = Harness::new();
    h.enter_text("a great film");
    h.key(KeyCode::Char('3'));
    let req = h.app.reconcile().expect("compare wants the slow method");
    assert_eq!(methods_of(&req.job), ["occlusion"]);
    let cancel = req.cancel.clone();
    // The job is running when the user switches to the Heads pane.
    h.app.on_worker(WorkerEvent::Progress { id: req.id, method: "occlusion".into(), fraction: 0.3 });
    assert_eq!(h.app.results.get("occlusion"), Some(&Slot::Running(0.3)));
    h.key(KeyCode::Char('2'));
    assert!(h.app.reconcile().is_none(), "nothing else is needed on the Heads pane");
    assert!(cancel.is_cancelled(), "leaving the pane cancels the slow method");
    assert!(!h.app.results.contains_key("occlusion"), "and it goes back to not requested");
    // A late progress report of the cancelled job does not bring it back.
    h.app.on_worker(WorkerEvent::Progress { id: req.id, method: "occlusion".into(), fraction: 0.4 });
    assert!(!h.app.results.contains_key("occlusion"));
    // Examples are scored at once on pane 4, not after the slow method.
    h.key(KeyCode::Char('4'));
    let req = h.app.reconcile().expect("examples scoring starts");
    assert!(matches!(req.job, Job::Examples { .. }));
    // Back on Compare it is requested again.
    h.key(KeyCode::Char('3'));
    let req = h.app.reconcile().expect("compare asks again");
    assert_eq!(methods_of(&req.job), ["occlusion"]);
}

#[test]
fn heads_pane_does_not_run_a_selected_slow_method() {
    let mut h = Harness::new();
    h.enter_text("fun");
    h.key(KeyCode::Char('2'));
    assert!(h.app.select_method("occlusion"));
    assert!(!h.app.wanted_methods().contains(&"occlusion".to_string()));
    h.key(KeyCode::Char('1'));
    assert_eq!(h.app.wanted_methods().last().map(String::as_str), Some("occlusion"));
}

#[test]
fn load_failure_shows_the_whole_error_until_dismissed() {
    let mut app = App::new(Theme::builtin(), 0, ColorMode::TrueColor, vec![], None);
    let long = format!("cannot read safetensors weights {}: truncated at byte 1234 (hint: re-download the model)", "/very/long/path".repeat(8));
    app.on_worker(WorkerEvent::LoadFailed(long.clone()));
    let t = text(&draw(&app, 80, 24));
    assert!(t.contains("1234") && t.contains("re-download"), "the end of the error is visible:\n{t}");
    assert!(!t.contains("loading model") && !t.contains("waiting for the model"), "no endless loading state:\n{t}");
    for _ in 0..200 {
        app.on_tick();
    }
    assert!(app.alert.is_some(), "stays until dismissed");
    app.pane = Pane::Heads;
    let t = text(&draw(&app, 80, 24));
    assert!(!t.contains("1/0"), "no 'Layer 1/0 · Head 1/0' without a model:\n{t}");
    let key = |c| Event::Key(KeyEvent::new(c, KeyModifiers::NONE));
    assert_eq!(handle_event(&mut app, &key(KeyCode::Char('x')), Rect::new(0, 0, 80, 24)), None);
    assert!(app.alert.is_some(), "typing does not dismiss it");
    handle_event(&mut app, &key(KeyCode::Esc), Rect::new(0, 0, 80, 24));
    assert!(app.alert.is_none());
    assert_eq!(app.load_error.as_deref(), Some(long.as_str()), "kept for the exit message");
}

#[test]
fn a_bad_expnet_is_reported_and_the_model_stays_usable() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).build().unwrap();
    let (tx, rx) = channel();
    let _w = super::worker::spawn(
        rt.handle(),
        Box::new(|warn: &super::worker::Warn| {
            warn("ExpNet not loaded, continuing without it: bad.safetensors: header too large".into());
            Ok(Arc::new(FakeBackend::new()) as Arc<dyn ExplainBackend>)
        }),
        Arc::new(move |e| {
            let _ = tx.send(e);
        }),
    );
    let mut app = App::new(Theme::builtin(), 0, ColorMode::TrueColor, vec![], None);
    for _ in 0..2 {
        app.on_worker(rx.recv_timeout(std::time::Duration::from_secs(5)).unwrap());
    }
    assert!(app.info.is_some() && app.load_error.is_none(), "the model loaded");
    assert_eq!(app.load_warnings.len(), 1);
    assert!(app.alert.as_ref().is_some_and(|a| a.text.contains("header too large")));
    rt.shutdown_background();
}

#[test]
fn export_asks_first_and_names_the_folder() {
    let mut h = Harness::new();
    h.enter_text("a great film");
    h.app.export_dir = "/tmp/exports".into();
    assert_eq!(h.key(KeyCode::Char('e')), None, "one keystroke writes nothing");
    assert!(h.app.notice.as_ref().unwrap().text.contains("/tmp/exports"));
    assert_eq!(h.key(KeyCode::Char('e')), Some(Effect::Export));
    assert_eq!(h.key(KeyCode::Char('e')), None);
    assert_eq!(h.key(KeyCode::Char('x')), None, "any other key cancels");
    assert!(h.app.notice.as_ref().unwrap().text.contains("cancelled"));
    assert_eq!(h.key(KeyCode::Char('e')), None);
    assert_eq!(h.key(KeyCode::Char('y')), Some(Effect::Export));
}

#[test]
fn a_theme_that_does_not_parse_is_named_with_its_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.toml"), "name = \"bad\"\n[ui\nbg = 1").unwrap();
    let (themes, warnings) = Theme::load_all(Some(dir.path()));
    assert_eq!(warnings.len(), 1);
    let e = super::pick_theme(&themes, &warnings, Some("bad")).unwrap_err().to_string();
    assert!(e.contains("bad.toml") && e.contains("could not be loaded") && !e.contains("unknown theme"), "{e}");
    let mut app = App::new(themes, 0, ColorMode::TrueColor, vec![], None);
    app.show_alert("Theme warning", warnings.join("\n"));
    for _ in 0..200 {
        app.on_tick();
    }
    let t = text(&draw(&app, 100, 30));
    assert!(t.contains("bad.toml"), "{t}");
}

#[test]
fn carriage_return_pastes_do_not_glue_words() {
    let mut h = Harness::new();
    handle_event(&mut h.app, &Event::Paste("here\rsecond\r\nthird\nfourth".into()), Rect::new(0, 0, 80, 24));
    assert_eq!(h.app.input.text(), "here second third fourth");
}

#[test]
fn every_tab_stays_visible_at_the_minimum_size() {
    let mut h = Harness::new();
    h.enter_text("fun");
    for (w, hgt) in [(40, 12), (45, 12), (60, 16), (100, 30)] {
        let t = text(&draw(&h.app, w, hgt));
        let tabs = t.lines().next().unwrap();
        for p in ["1 Tok", "2 Hea", "3 Com", "4 Exa"] {
            assert!(tabs.contains(p), "{w}×{hgt}: {p} missing in {tabs:?}");
        }
    }
    // Clicking a tab still hits it at 40 columns.
    let t = text(&draw(&h.app, 40, 12));
    let x = t.lines().next().unwrap().find("4 Exa").unwrap() as u16;
    super::keys::handle_event(
        &mut h.app,
        &Event::Mouse(crossterm::event::MouseEvent {
            kind: crossterm::event::MouseEventKind::Down(crossterm::event::MouseButton::Left),
            column: x,
            row: 0,
            modifiers: KeyModifiers::NONE,
        }),
        Rect::new(0, 0, 40, 12),
    );
    assert_eq!(h.app.pane, Pane::Examples);
}

#[test]
fn heads_pane_names_the_selection_once() {
    let mut h = Harness::new();
    h.enter_text("a great film");
    h.key(KeyCode::Char('2'));
    let t = text(&draw(&h.app, 100, 30));
    assert_eq!(t.matches("Layer 1/").count(), 1, "{t}");
}

/// Signals reach the loop as events: quit signals end it like `q`, SIGTSTP
/// asks for a suspend and SIGCONT for a redraw (the terminal part is in `run`).
#[test]
fn signals_end_or_suspend_the_event_loop() {
    use signal_hook::consts::{SIGCONT, SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGTSTP};
    for (sig, want) in [
        (SIGTERM, LoopExit::Signal(SIGTERM)),
        (SIGINT, LoopExit::Signal(SIGINT)),
        (SIGHUP, LoopExit::Signal(SIGHUP)),
        (SIGQUIT, LoopExit::Signal(SIGQUIT)),
        (SIGTSTP, LoopExit::Suspend),
        (SIGCONT, LoopExit::Resume),
    ] {
        let (tx, rx) = channel();
        tx.send(AppEvent::Signal(sig)).unwrap();
        let mut app = App::new(Theme::builtin(), 0, ColorMode::TrueColor, vec![], None);
        let mut term = Terminal::new(TestBackend::new(60, 20)).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let got = super::event_loop(&mut term, &mut app, &rx, &|_| true, dir.path()).unwrap();
        assert_eq!(got, want, "signal {sig}");
    }
    let mut h = Harness::new();
    assert_eq!(h.ctrl('z'), Some(Effect::Suspend), "Ctrl-Z arrives as a key in raw mode");
}
