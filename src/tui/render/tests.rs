//! Render tests on ratatui's `TestBackend`: text content (insta snapshots)
//! and the colours of specific cells.

use crossterm::event::KeyCode;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::style::{Color, Modifier};

use crate::tui::app::{App, Pane, Zoom};
use crate::tui::tests::Harness;
use crate::tui::theme::ColorMode;

/// Draws the whole screen at `w`×`h`.
pub(crate) fn draw(app: &App, w: u16, h: u16) -> Buffer {
    let mut t = Terminal::new(TestBackend::new(w, h)).expect("test terminal");
    t.draw(|f| super::render(app, f)).expect("draw");
    t.backend().buffer().clone()
}

/// The screen as text, one line per row (trailing spaces trimmed).
pub(crate) fn text(buf: &Buffer) -> String {
    let a = buf.area;
    (a.y..a.bottom())
        .map(|y| {
            let mut line = String::new();
            for x in a.x..a.right() {
                line.push_str(buf[(x, y)].symbol());
            }
            line.trim_end().to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Position of the first occurrence of `needle` (single-width text only).
pub(crate) fn find(buf: &Buffer, needle: &str) -> Option<(u16, u16)> {
    find_from(buf, needle, 0)
}

/// Like [`find`], below the input box and prediction (the pane area), so a
/// token chip is not confused with the same word in the input line.
pub(crate) fn find_chip(buf: &Buffer, needle: &str) -> Option<(u16, u16)> {
    find_from(buf, needle, 5)
}

fn find_from(buf: &Buffer, needle: &str, min_y: u16) -> Option<(u16, u16)> {
    let a = buf.area;
    let n: Vec<char> = needle.chars().collect();
    for y in (a.y + min_y)..a.bottom() {
        let row: Vec<String> = (a.x..a.right()).map(|x| buf[(x, y)].symbol().to_string()).collect();
        for x in 0..row.len().saturating_sub(n.len() - 1) {
            if n.iter().enumerate().all(|(i, c)| row[x + i] == c.to_string()) {
                return Some((a.x + x as u16, y));
            }
        }
    }
    None
}

fn rgb(c: crate::tui::theme::Rgb) -> Color {
    Color::Rgb(c.0, c.1, c.2)
}

fn ready(text: &str) -> Harness {
    let mut h = Harness::new();
    h.enter_text(text);
    freeze(&mut h.app);
    h
}

/// Run times vary between runs: pin them so snapshots are stable.
fn freeze(app: &mut App) {
    for s in app.results.values_mut() {
        if let crate::tui::app::Slot::Done(r) = s {
            r.ms = 1.0;
        }
    }
    app.latency_ms = Some(5.0);
}

#[test]
fn tokens_pane() {
    let h = ready("a great film");
    let buf = draw(&h.app, 80, 24);
    insta::assert_snapshot!("tokens_pane", text(&buf));
    let theme = h.app.theme();
    let (gx, gy) = find_chip(&buf, " great ").unwrap();
    let (fx, fy) = find_chip(&buf, " film ").unwrap();
    assert_eq!(buf[(gx + 1, gy)].bg, rgb(theme.heat_rgb(1.0, false)), "most important token: hottest colour");
    assert_ne!(buf[(fx + 1, fy)].bg, buf[(gx + 1, gy)].bg);
    // [CLS] is drawn muted, without a heat background.
    let (cx, cy) = find_chip(&buf, " [CLS] ").unwrap();
    assert_eq!(buf[(cx, cy)].fg, rgb(theme.ui.muted));
    // Legend shows the method name and both ends of the scale.
    assert!(text(&buf).contains("expnet low"));
}

#[test]
fn signed_method_uses_the_diverging_map() {
    let mut h = ready("a great but awful film");
    while h.app.method_name() != Some("saliency") {
        h.key(KeyCode::Char('m'));
    }
    h.settle();
    let buf = draw(&h.app, 80, 24);
    let theme = h.app.theme();
    let (ax, ay) = find_chip(&buf, " awful ").unwrap();
    let (gx, gy) = find_chip(&buf, " great ").unwrap();
    assert_eq!(buf[(ax + 1, ay)].bg, rgb(theme.heat_rgb(-1.0, true)));
    let g = theme.heat_rgb(1.0, true);
    assert!(matches!(buf[(gx + 1, gy)].bg, Color::Rgb(r, _, _) if r.abs_diff(g.0) < 30));
    assert!(text(&buf).contains("saliency − "), "signed legend");
}

#[test]
fn heads_pane_and_zoom() {
    let mut h = ready("a good film");
    h.key(KeyCode::Char('2'));
    h.key(KeyCode::Right);
    h.key(KeyCode::Down);
    let buf = draw(&h.app, 80, 30);
    insta::assert_snapshot!("heads_pane", text(&buf));
    let t = text(&buf);
    assert!(t.contains("Layer 2/4 · Head 2/4"));
    // Miniatures are half blocks with two colours each.
    let (hx, hy) = find(&buf, "H1").unwrap();
    let cell = &buf[(hx, hy + 1)];
    assert_eq!(cell.symbol(), "▀");
    assert!(matches!(cell.fg, Color::Rgb(..)) && matches!(cell.bg, Color::Rgb(..)));
    assert!(t.contains('▐'), "selected head bracketed");
    h.key(KeyCode::Enter);
    h.key(KeyCode::Right);
    let z = draw(&h.app, 80, 30);
    let zt = text(&z);
    insta::assert_snapshot!("heads_zoom", zt);
    assert!(zt.contains("\"[CLS]\" → \"a\""), "{zt}");
    assert!(zt.contains("good"), "token labels on the rows");
    h.key(KeyCode::Char('a'));
    assert!(text(&draw(&h.app, 80, 30)).contains("mean of 4 heads"));
}

#[test]
fn zoom_scrolls_long_inputs() {
    let words: Vec<String> = (0..60).map(|i| format!("w{i}")).collect();
    let mut h = ready(&words.join(" "));
    h.key(KeyCode::Char('2'));
    h.key(KeyCode::Enter);
    for _ in 0..55 {
        h.key(KeyCode::Down);
    }
    let t = text(&draw(&h.app, 60, 20));
    assert!(t.contains("w54"), "the cursor row scrolled into view:\n{t}");
    assert!(!t.lines().skip(4).any(|l| l.trim_start().starts_with("[CLS]")), "first rows scrolled away");
}

#[test]
fn compare_pane() {
    let mut h = ready("a great film");
    h.key(KeyCode::Char('3'));
    // Before the slow method ran, it is queued; then a gauge while running.
    let t = text(&draw(&h.app, 100, 24));
    assert!(t.contains("occlusion*"));
    let req = h.app.reconcile().unwrap();
    h.app.on_worker(crate::tui::worker::WorkerEvent::Progress { id: req.id, method: "occlusion".into(), fraction: 0.5 });
    let t = text(&draw(&h.app, 100, 24));
    assert!(t.contains("running █") && t.contains("50%"), "{t}");
    h.serve(req);
    freeze(&mut h.app);
    let buf = draw(&h.app, 100, 24);
    let t = text(&buf);
    insta::assert_snapshot!("compare_pane", t);
    assert!(t.contains("ref"), "expnet is the reference row");
    assert!(t.contains("+1.00") || t.contains("+0."), "spearman column filled");
    // Each row is coloured on its own scale: 'great' is hottest in the expnet row.
    let (_, ey) = find(&buf, "▶expnet").unwrap();
    let gx = (0..100).find(|&x| buf[(x, ey)].symbol() == "g" && buf[(x + 1, ey)].symbol() == "r").unwrap();
    assert_eq!(buf[(gx, ey)].bg, rgb(h.app.theme().heat_rgb(1.0, false)));
}

#[test]
fn examples_pane_underlines_rationales() {
    let mut h = Harness::new();
    h.key(KeyCode::Esc);
    h.key(KeyCode::Char('4'));
    h.settle();
    let buf = draw(&h.app, 100, 26);
    insta::assert_snapshot!("examples_pane", text(&buf));
    let (x, y) = find(&buf, "loved").unwrap();
    assert!(buf[(x, y)].modifier.contains(Modifier::UNDERLINED));
    let (kx, ky) = find(&buf, "kids").unwrap();
    assert!(!buf[(kx, ky)].modifier.contains(Modifier::UNDERLINED));
    assert!(text(&buf).contains("1.00"));
}

#[test]
fn help_and_status_line() {
    let mut h = ready("fun");
    h.key(KeyCode::Char('?'));
    let t = text(&draw(&h.app, 100, 45));
    for k in ["Ctrl-W", "PgUp", "Shift-Tab", "export", "rollout"] {
        assert!(t.contains(k), "help lists {k}");
    }
    h.key(KeyCode::Esc);
    let t = text(&draw(&h.app, 120, 24));
    let status = t.lines().last().unwrap();
    assert!(status.contains("NAV") && status.contains("fake-bert-sst2") && status.contains("fake.expnet.safetensors"), "{status}");
    assert!(status.contains("cpu") && status.contains("3 tokens") && status.contains(" ms"), "{status}");
    h.key(KeyCode::Char('i'));
    assert!(text(&draw(&h.app, 120, 24)).lines().last().unwrap().contains("EDIT"));
}

#[test]
fn loading_state_and_too_small() {
    let app = App::new(crate::tui::theme::Theme::builtin(), 0, ColorMode::TrueColor, vec![], None);
    let t = text(&draw(&app, 60, 16));
    assert!(t.contains("loading model…"));
    let t = text(&draw(&app, 39, 12));
    assert!(t.contains("terminal too small"));
    let t = text(&draw(&app, 40, 11));
    assert!(t.contains("too small"));
}

#[test]
fn no_color_and_256_colour_modes() {
    let mut h = ready("a great film");
    h.app.color = ColorMode::NoColor;
    let buf = draw(&h.app, 80, 24);
    assert!(buf.content().iter().all(|c| matches!(c.bg, Color::Reset) && matches!(c.fg, Color::Reset)));
    let (gx, gy) = find_chip(&buf, " great ").unwrap();
    assert!(buf[(gx + 1, gy)].modifier.contains(Modifier::REVERSED), "importance shown without colour");
    h.app.color = ColorMode::Ansi256;
    let buf = draw(&h.app, 80, 24);
    let (gx, gy) = find_chip(&buf, " great ").unwrap();
    assert!(matches!(buf[(gx + 1, gy)].bg, Color::Indexed(_)));
    assert!(buf.content().iter().all(|c| !matches!(c.bg, Color::Rgb(..))));
}

#[test]
fn never_panics_at_any_size() {
    let mut h = ready("an unforgettable and wonderful experience , truly great");
    h.app.example_scores.clear();
    type Step = Box<dyn Fn(&mut App)>;
    let mut states: Vec<Step> = vec![
        Box::new(|a| a.pane = Pane::Tokens),
        Box::new(|a| a.pane = Pane::Heads),
        Box::new(|a| a.zoom = Some(Zoom { row: 9, col: 9 })),
        Box::new(|a| {
            a.zoom = None;
            a.pane = Pane::Compare;
        }),
        Box::new(|a| a.pane = Pane::Examples),
        Box::new(|a| a.popup = Some(3)),
        Box::new(|a| a.help = true),
        Box::new(|a| {
            a.help = false;
            a.merge_words = true;
        }),
    ];
    for s in states.iter_mut() {
        s(&mut h.app);
        for w in (1..=70).step_by(3).chain([40, 41]) {
            for ht in (1..=30).step_by(2).chain([12, 13]) {
                let _ = draw(&h.app, w, ht);
            }
        }
    }
}

#[test]
fn help_scrolls_when_taller_than_the_screen() {
    let mut h = ready("fun");
    h.key(KeyCode::Char('?'));
    let t = text(&draw(&h.app, 80, 24));
    assert!(t.contains("keys 1-") && t.contains("scroll"), "{t}");
    assert!(t.contains("Anywhere") && !t.contains("click head"));
    for _ in 0..40 {
        h.key(KeyCode::Down);
    }
    assert!(h.app.help, "arrows scroll instead of closing");
    let t = text(&draw(&h.app, 80, 24));
    assert!(!t.contains("Anywhere") && t.contains("click head"), "{t}");
    h.key(KeyCode::Char('x'));
    assert!(!h.app.help);
}

#[test]
fn big_models_window_the_head_grid_around_the_selection() {
    let mut b = crate::tui::testing::FakeBackend::new();
    b.layers = 12;
    b.heads = 12;
    let mut h = Harness::with_backend(b);
    h.enter_text("a great film");
    h.key(KeyCode::Char('2'));
    h.key(KeyCode::Up);
    h.key(KeyCode::Left);
    let t = text(&draw(&h.app, 60, 16));
    assert!(t.contains("Layer 12/12 · Head 12/12"));
    assert!(t.contains("L12") && t.contains("H12"), "selected row and column stay visible:\n{t}");
    let buf = draw(&h.app, 120, 40);
    let full = text(&buf);
    assert!(full.contains("L1 ") && full.contains("L12") && full.contains("H1 ") && full.contains("H12"), "{full}");
    // Two-row cells without a gap row keep their last half row as background.
    let (hx, hy) = find(&buf, "H1 ").unwrap();
    let bg = rgb(h.app.theme().ui.bg);
    assert_eq!(buf[(hx, hy + 1)].symbol(), "▀");
    assert_ne!(buf[(hx, hy + 1)].bg, bg);
    assert_eq!(buf[(hx, hy + 2)].bg, bg);
    assert_ne!(buf[(hx, hy + 2)].fg, bg);
}

#[test]
fn long_inputs_scroll_the_token_flow_to_the_selection() {
    let words: Vec<String> = (0..80).map(|i| format!("word{i}")).collect();
    let mut h = ready(&words.join(" "));
    h.key(KeyCode::End);
    for _ in 0..100 {
        h.key(KeyCode::Right);
    }
    let buf = draw(&h.app, 60, 16);
    assert!(find_chip(&buf, " word79 ").is_some(), "{}", text(&buf));
    assert!(find_chip(&buf, " word0 ").is_none());
}

#[test]
fn token_popup_lists_every_method() {
    let mut h = ready("a great film");
    h.key(KeyCode::Right);
    h.key(KeyCode::Enter);
    assert_eq!(h.app.popup, Some(2));
    let t = text(&draw(&h.app, 90, 26));
    assert!(t.contains("\"great\" under every method"), "{t}");
    assert!(t.contains("+0.9700"), "expnet's raw score of 'great':\n{t}");
    assert!(t.contains("occlusion") && t.contains("queued"), "slow method not run yet:\n{t}");
    // The popup asks for the slow methods too.
    h.settle();
    let t = text(&draw(&h.app, 90, 26));
    assert!(!t.contains("queued"), "{t}");
    // Moving the selection moves the popup.
    h.key(KeyCode::Right);
    assert!(text(&draw(&h.app, 90, 26)).contains("\"film\" under every method"));
}
