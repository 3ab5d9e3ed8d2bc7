//! State-machine tests: key sequences → state, the request protocol, export,
//! and the whole event loop on a `TestBackend` with the fake model.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossterm::event::{Event, KeyCode, KeyEvent, KeyModifiers, MouseButton, MouseEvent, MouseEventKind};
use ratatui::layout::Rect;

use super::app::{App, Mode, Pane, Slot};
use super::backend::{Analysis, ExplainBackend, MethodResult};
use super::keys::{Effect, handle_event, handle_key};
use super::samples;
use super::testing::FakeBackend;
use super::theme::{ColorMode, Theme};
use super::worker::{Job, Request, WorkerEvent};

/// An App wired to a FakeBackend, with the worker's job function run inline.
pub(crate) struct Harness {
    pub app: App,
    pub backend: Arc<FakeBackend>,
    cache: Option<Arc<Analysis>>,
}

impl Harness {
    pub fn new() -> Self {
        Self::with_backend(FakeBackend::new())
    }
    pub fn with_backend(b: FakeBackend) -> Self {
        let mut app = App::new(Theme::builtin(), 0, ColorMode::TrueColor, samples::builtin(), None);
        app.on_worker(WorkerEvent::Loaded { info: b.info(), methods: b.methods() });
        Self { app, backend: Arc::new(b), cache: None }
    }
    /// Serves requests until the app wants nothing more.
    pub fn settle(&mut self) {
        for _ in 0..20 {
            let Some(req) = self.app.reconcile() else { return };
            self.serve(req);
        }
        panic!("app kept requesting work");
    }
    pub fn serve(&mut self, req: Request) {
        for ev in self.run_job(req) {
            self.app.on_worker(ev);
        }
    }
    pub fn run_job(&mut self, req: Request) -> Vec<WorkerEvent> {
        let events = std::sync::Mutex::new(Vec::new());
        let sink = |e: WorkerEvent| events.lock().unwrap().push(e);
        self.cache = super::worker::process(&*self.backend, req, self.cache.clone(), &sink);
        events.into_inner().unwrap()
    }
    pub fn key(&mut self, code: KeyCode) -> Option<Effect> {
        handle_key(&mut self.app, KeyEvent::new(code, KeyModifiers::NONE))
    }
    pub fn ctrl(&mut self, c: char) -> Option<Effect> {
        handle_key(&mut self.app, KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL))
    }
    pub fn type_str(&mut self, s: &str) {
        for c in s.chars() {
            self.key(KeyCode::Char(c));
        }
    }
    /// Types `text` in edit mode, lets the worker answer, and leaves the input.
    pub fn enter_text(&mut self, text: &str) {
        self.type_str(text);
        self.settle();
        self.key(KeyCode::Esc);
    }
}

#[test]
fn q_types_in_edit_mode_and_quits_in_navigation() {
    let mut h = Harness::new();
    assert_eq!(h.app.mode, Mode::Edit);
    assert_eq!(h.key(KeyCode::Char('q')), None);
    assert_eq!(h.app.input.text(), "q");
    h.key(KeyCode::Enter);
    assert_eq!(h.app.mode, Mode::Nav);
    h.key(KeyCode::Char('i'));
    assert_eq!(h.app.mode, Mode::Edit);
    h.key(KeyCode::Esc);
    h.key(KeyCode::Char('/'));
    assert_eq!(h.app.mode, Mode::Edit);
    h.key(KeyCode::Esc);
    assert_eq!(h.key(KeyCode::Char('q')), Some(Effect::Quit));
    assert_eq!(h.app.input.text(), "q");
    // Ctrl-C quits from edit mode too.
    h.key(KeyCode::Char('i'));
    assert_eq!(h.ctrl('c'), Some(Effect::Quit));
}

#[test]
fn editing_keys_reach_the_input() {
    let mut h = Harness::new();
    h.type_str("good bad film");
    h.ctrl('w');
    assert_eq!(h.app.input.text(), "good bad ");
    h.ctrl('a');
    h.key(KeyCode::Delete);
    h.key(KeyCode::Right);
    h.key(KeyCode::Char('X'));
    assert_eq!(h.app.input.text(), "oXod bad ");
    h.key(KeyCode::End);
    h.key(KeyCode::Backspace);
    h.key(KeyCode::Home);
    h.ctrl('e');
    h.key(KeyCode::Left);
    h.ctrl('u');
    assert_eq!((h.app.input.text().as_str(), h.app.input.cursor()), ("d", 0));
    // Navigation keys do not type.
    h.key(KeyCode::Esc);
    h.key(KeyCode::Char('m'));
    assert_eq!(h.app.input.text(), "d");
}

#[test]
fn head_selection_wraps_and_pages_layers() {
    let mut h = Harness::new();
    h.enter_text("a good film");
    h.key(KeyCode::Char('2'));
    assert_eq!(h.app.pane, Pane::Heads);
    for _ in 0..4 {
        h.key(KeyCode::Right);
    }
    assert_eq!((h.app.layer, h.app.head), (0, 0), "4 heads: four steps right wrap around");
    h.key(KeyCode::Left);
    assert_eq!(h.app.head, 3);
    h.key(KeyCode::Up);
    assert_eq!(h.app.layer, 3, "up from the first layer wraps to the last");
    h.key(KeyCode::PageDown);
    assert_eq!(h.app.layer, 0);
    h.key(KeyCode::PageUp);
    h.key(KeyCode::PageUp);
    assert_eq!(h.app.layer, 2);
    h.key(KeyCode::Char('a'));
    assert!(h.app.mean_heads);
    h.key(KeyCode::Enter);
    assert!(h.app.zoom.is_some());
    h.key(KeyCode::Down);
    h.key(KeyCode::Right);
    h.key(KeyCode::Right);
    let z = h.app.zoom.unwrap();
    assert_eq!((z.row, z.col), (1, 2));
    for _ in 0..50 {
        h.key(KeyCode::Down);
    }
    assert_eq!(h.app.zoom.unwrap().row, 4, "zoom cursor stops at the last token");
    h.key(KeyCode::Esc);
    assert!(h.app.zoom.is_none());
    assert_eq!((h.app.layer, h.app.head), (2, 3), "arrows in zoom do not move the head");
}

#[test]
fn method_toggles_and_cycles() {
    let mut h = Harness::new();
    assert_eq!(h.app.method_name(), Some("expnet"));
    h.key(KeyCode::Esc);
    h.key(KeyCode::Char('r'));
    assert_eq!(h.app.method_name(), Some("rollout"));
    h.key(KeyCode::Char('r'));
    assert_eq!(h.app.method_name(), Some("expnet"));
    h.key(KeyCode::Char('i'));
    h.ctrl('t');
    assert_eq!(h.app.method_name(), Some("rollout"), "Ctrl-T works in edit mode");
    assert_eq!(h.app.input.text(), "");
    h.key(KeyCode::Esc);
    let names: Vec<String> = (0..5)
        .map(|_| {
            h.key(KeyCode::Char('m'));
            h.app.method_name().unwrap().to_string()
        })
        .collect();
    assert_eq!(names, ["attention", "saliency", "occlusion", "expnet", "rollout"]);
    h.key(KeyCode::Char('M'));
    h.key(KeyCode::Char('M'));
    assert_eq!(h.app.method_name(), Some("occlusion"));
}

#[test]
fn rollout_toggle_without_expnet_reports_it() {
    let mut b = FakeBackend::new();
    b.with_expnet = false;
    let mut h = Harness::with_backend(b);
    assert_eq!(h.app.method_name(), Some("rollout"));
    h.key(KeyCode::Esc);
    h.key(KeyCode::Char('r'));
    assert_eq!(h.app.method_name(), Some("rollout"));
    assert!(h.app.notice.as_ref().unwrap().text.contains("expnet"));
}

#[test]
fn stale_results_are_dropped() {
    let mut h = Harness::new();
    h.type_str("good");
    let r1 = h.app.reconcile().expect("request for 'good'");
    h.type_str(" film");
    let r2 = h.app.reconcile().expect("request for 'good film'");
    assert!(r1.cancel.is_cancelled(), "a newer text cancels the older request");
    assert!(!r2.cancel.is_cancelled());
    let old = h.run_job(r1);
    let new = h.run_job(r2);
    // Deliver the new answer first, then the late old one.
    for ev in new {
        h.app.on_worker(ev);
    }
    let expnet_new = h.app.result("expnet").unwrap().scores.clone();
    for ev in old {
        h.app.on_worker(ev);
    }
    assert_eq!(h.app.analysis.as_ref().unwrap().text, "good film");
    assert_eq!(h.app.result("expnet").unwrap().scores, expnet_new);
    // A stray result with an old id does not land either.
    let (_, since) = h.app.request_state();
    h.app.on_worker(WorkerEvent::Method { id: since - 1, result: MethodResult { method: "rollout".into(), scores: vec![7.0; 4], ms: 1.0, forward_passes: 1, notes: vec![], label: None, explainer: None } });
    assert_ne!(h.app.result("rollout").unwrap().scores, vec![7.0; 4]);
}

#[test]
fn every_edit_sends_a_request_and_latency_is_measured() {
    let mut h = Harness::new();
    h.type_str("g");
    let r = h.app.reconcile().unwrap();
    match &r.job {
        Job::Explain { text, methods } => {
            assert_eq!(text, "g");
            assert_eq!(methods[0], "expnet", "the shown method is computed first");
            assert!(!methods.contains(&"occlusion".to_string()), "slow methods only when shown");
        }
        j => panic!("unexpected job {j:?}"),
    }
    h.serve(r);
    assert!(h.app.latency_ms.is_some());
    assert!(h.app.reconcile().is_none(), "nothing more to do for the tokens pane");
    h.type_str("o");
    assert!(h.app.reconcile().is_some(), "one more character, one more request");
}

#[test]
fn slow_methods_run_when_compare_opens_and_reuse_the_analysis() {
    let mut h = Harness::new();
    h.enter_text("a great film");
    assert!(!h.app.results.contains_key("occlusion"));
    let analyses = h.backend.analyzed();
    h.key(KeyCode::Char('3'));
    let req = h.app.reconcile().expect("compare pane wants the slow method");
    assert!(matches!(&req.job, Job::Explain { methods, .. } if methods == &vec!["occlusion".to_string()]));
    assert!(matches!(h.app.results.get("occlusion"), Some(Slot::Queued)));
    h.serve(req);
    assert!(h.app.result("occlusion").is_some());
    assert_eq!(h.backend.analyzed(), analyses, "cached analysis reused");
}

#[test]
fn cancelled_methods_are_requested_again() {
    let mut h = Harness::new();
    h.enter_text("great");
    h.key(KeyCode::Char('3'));
    let req = h.app.reconcile().unwrap();
    req.cancel.cancel();
    h.serve(req);
    assert!(!h.app.results.contains_key("occlusion"), "cancelled slot cleared on Finished");
    assert!(h.app.reconcile().is_some());
}

#[test]
fn word_mode_merges_pieces_and_keeps_selection() {
    let mut h = Harness::new();
    h.enter_text("a wonderful film");
    assert_eq!(h.app.units().len(), 6);
    h.key(KeyCode::Right);
    h.key(KeyCode::Right);
    assert_eq!(h.app.units()[h.app.token].text, "##erful");
    h.key(KeyCode::Char('w'));
    assert_eq!(h.app.units().len(), 5);
    assert_eq!(h.app.units()[h.app.token].text, "wonderful");
    for _ in 0..20 {
        h.key(KeyCode::Right);
    }
    assert_eq!(h.app.token, 4, "selection clamps at the last unit");
}

#[test]
fn pane_keys_and_overlays() {
    let mut h = Harness::new();
    h.enter_text("fun");
    h.key(KeyCode::Tab);
    assert_eq!(h.app.pane, Pane::Heads);
    h.key(KeyCode::BackTab);
    h.key(KeyCode::BackTab);
    assert_eq!(h.app.pane, Pane::Examples);
    h.key(KeyCode::Char('1'));
    h.key(KeyCode::Char('?'));
    assert!(h.app.help);
    h.key(KeyCode::Char('x'));
    assert!(!h.app.help, "any key closes help");
    handle_key(&mut h.app, KeyEvent::new(KeyCode::F(1), KeyModifiers::NONE));
    assert!(h.app.help);
    h.key(KeyCode::Esc);
    h.key(KeyCode::Enter);
    assert_eq!(h.app.popup, Some(1), "selection starts on the first word, not [CLS]");
    h.key(KeyCode::Esc);
    assert_eq!(h.app.popup, None);
    h.key(KeyCode::Char('t'));
    assert_eq!(h.app.theme().name, "light");
    h.key(KeyCode::Char('o'));
    assert_eq!(h.app.pane, Pane::Examples);
}

#[test]
fn paste_is_truncated_with_a_notice() {
    let mut h = Harness::new();
    let big = "word ".repeat(400);
    handle_event(&mut h.app, &Event::Paste(big), Rect::new(0, 0, 80, 24));
    assert_eq!(h.app.input.len(), super::input::MAX_INPUT_CHARS);
    assert!(h.app.notice.as_ref().unwrap().text.contains("1000"));
}

#[test]
fn examples_browser_scores_and_loads() {
    let mut h = Harness::new();
    h.key(KeyCode::Esc);
    h.key(KeyCode::Char('o'));
    h.settle();
    let n = h.app.examples.len();
    let scored = (0..n).filter(|i| h.app.example_scores.contains_key(&("expnet".to_string(), *i))).count();
    assert_eq!(scored, n);
    // The fake lexicon knows "loved": example 8 should rank it first.
    let f1 = super::render::example_f1(&h.app, "expnet", 7).unwrap();
    assert_eq!(f1, Some(1.0));
    h.key(KeyCode::Down);
    h.key(KeyCode::Up);
    h.key(KeyCode::Up);
    assert_eq!(h.app.example, n - 1, "up from the first example wraps");
    h.key(KeyCode::Enter);
    assert_eq!(h.app.pane, Pane::Tokens);
    assert_eq!(h.app.input.text(), h.app.examples[n - 1].text);
}

#[test]
fn example_scoring_is_batched_near_the_selection_and_stops_with_the_pane() {
    let mut h = Harness::new();
    let extra: Vec<samples::ExampleItem> = (0..40).map(|i| samples::ExampleItem::marked(&format!("example {i} was *great*"))).collect();
    h.app.examples.extend(extra);
    h.key(KeyCode::Esc);
    h.key(KeyCode::Char('o'));
    for _ in 0..30 {
        h.key(KeyCode::Down);
    }
    let req = h.app.reconcile().unwrap();
    match &req.job {
        Job::Examples { texts, .. } => {
            assert_eq!(texts.len(), 16);
            assert_eq!(texts[0].0, 30, "the selected example first");
            assert!(texts.iter().all(|(i, _)| i.abs_diff(30) <= 8));
        }
        j => panic!("{j:?}"),
    }
    // Leaving the browser cancels the scoring.
    h.key(KeyCode::Char('1'));
    assert!(h.app.reconcile().is_none());
    assert!(req.cancel.is_cancelled());
    h.key(KeyCode::Char('4'));
    h.settle();
    assert_eq!(h.app.example_scores.len(), 50, "batches continue until every annotated example is scored");
}

#[test]
fn mouse_clicks_select_tokens_and_heads() {
    let mut h = Harness::new();
    h.enter_text("a great film");
    let area = Rect::new(0, 0, 100, 30);
    // Find where "great" is drawn, then click it.
    let buf = super::render::tests::draw(&h.app, 100, 30);
    let (x, y) = super::render::tests::find_chip(&buf, " great ").expect("great chip drawn");
    let click = |x, y| Event::Mouse(MouseEvent { kind: MouseEventKind::Down(MouseButton::Left), column: x, row: y, modifiers: KeyModifiers::NONE });
    handle_event(&mut h.app, &click(x + 2, y), area);
    assert_eq!(h.app.token, 2);
    assert_eq!(h.app.popup, Some(2));
    h.key(KeyCode::Esc);
    h.key(KeyCode::Char('2'));
    let buf = super::render::tests::draw(&h.app, 100, 30);
    let (hx, hy) = super::render::tests::find(&buf, "H3").expect("head header");
    let (_, ly) = super::render::tests::find(&buf, "L2 ").expect("layer label");
    let _ = hy;
    handle_event(&mut h.app, &click(hx + 1, ly), area);
    assert_eq!((h.app.layer, h.app.head), (1, 2));
}

#[test]
fn export_writes_json_and_html() {
    let mut h = Harness::new();
    h.enter_text("a great <film>");
    let dir = tempfile::tempdir().unwrap();
    let (j, html) = super::export::export(&h.app, dir.path()).unwrap();
    assert!(j.file_name().unwrap().to_str().unwrap().starts_with("expnet-"));
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&j).unwrap()).unwrap();
    assert_eq!(v["text"], "a great <film>");
    assert_eq!(v["model"], "fake-bert-sst2");
    assert_eq!(v["tokens"][0]["text"], "[CLS]");
    assert_eq!(v["tokens"][0]["special"], true);
    assert_eq!(v["tokens"][2]["start"], 2);
    assert_eq!(v["prediction"]["label"], "positive");
    assert!(v["prediction"]["probabilities"]["negative"].as_f64().unwrap() < 0.5);
    assert_eq!(v["explanations"]["expnet"]["scores"].as_array().unwrap().len(), 5);
    assert!(v["explanations"].get("occlusion").is_none(), "slow method not computed in the tokens pane");
    assert_eq!(v["truncated"], false);
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("&lt;film&gt;") && !page.contains("<film>"));
    assert!(!page.contains("<script"));
    assert!(page.matches("class=\"tok\"").count() >= 3 * 4);
    // A second export in the same second does not overwrite the first.
    let (j2, _) = super::export::export(&h.app, dir.path()).unwrap();
    assert_ne!(j, j2);
    let empty = Harness::new();
    assert!(super::export::export(&empty.app, dir.path()).unwrap_err().to_string().contains("nothing to export"));
}

#[test]
fn load_failure_is_shown_not_fatal() {
    let mut app = App::new(Theme::builtin(), 0, ColorMode::TrueColor, vec![], None);
    app.on_worker(WorkerEvent::LoadFailed("no such file: model.safetensors".into()));
    assert!(app.reconcile().is_none());
    let buf = super::render::tests::draw(&app, 80, 24);
    assert!(super::render::tests::text(&buf).contains("no such file"));
}

#[test]
fn unknown_theme_is_a_clear_error() {
    let themes = Theme::builtin();
    assert_eq!(super::pick_theme(&themes, &[], Some("LIGHT")).unwrap(), 1);
    let e = super::pick_theme(&themes, &[], Some("neon")).unwrap_err().to_string();
    assert!(e.contains("neon") && e.contains("colorblind"), "{e}");
}

/// The real event loop on a TestBackend, fed from another thread like the
/// input thread would, with the real worker and the fake model.
#[test]
fn event_loop_end_to_end() {
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;
    use std::sync::mpsc::channel;

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).build().unwrap();
    let (tx, rx) = channel();
    let sink_tx = tx.clone();
    let worker = super::worker::spawn(
        rt.handle(),
        Box::new(|_: &super::worker::Warn| Ok(Arc::new(FakeBackend::new()) as Arc<dyn ExplainBackend>)),
        Arc::new(move |ev| {
            let _ = sink_tx.send(super::AppEvent::Worker(ev));
        }),
    );
    let feeder = std::thread::spawn(move || {
        let key = |c: KeyCode| super::AppEvent::Term(Event::Key(KeyEvent::new(c, KeyModifiers::NONE)));
        std::thread::sleep(Duration::from_millis(50));
        for c in "a great film".chars() {
            tx.send(key(KeyCode::Char(c))).unwrap();
        }
        std::thread::sleep(Duration::from_millis(300));
        tx.send(key(KeyCode::Esc)).unwrap();
        tx.send(key(KeyCode::Char('q'))).unwrap();
    });
    let mut app = App::new(Theme::builtin(), 0, ColorMode::TrueColor, samples::builtin(), None);
    let mut term = Terminal::new(TestBackend::new(90, 30)).unwrap();
    let t0 = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    super::event_loop(&mut term, &mut app, &rx, &|r| worker.send(r), dir.path()).unwrap();
    feeder.join().unwrap();
    assert!(t0.elapsed() < Duration::from_secs(5));
    assert_eq!(app.analysis.as_ref().unwrap().text, "a great film");
    assert!(app.result("expnet").is_some());
    let buf = term.backend().buffer().clone();
    let (x, y) = super::render::tests::find_chip(&buf, " great ").expect("great drawn");
    let cell = &buf[(x + 1, y)];
    let theme = &Theme::builtin()[0];
    let want = theme.heat_rgb(1.0, false);
    assert_eq!(cell.bg, ratatui::style::Color::Rgb(want.0, want.1, want.2), "the most important token has the hottest colour");
    rt.shutdown_background();
}
