//! Terminal events (keys, paste, mouse) → state changes.
//!
//! [`KEYS`] is the single list of bindings: the help overlay draws it and the
//! README copies it, so documentation cannot drift from behaviour.

use crossterm::event::{Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseButton, MouseEvent, MouseEventKind};
use ratatui::layout::Rect;

use super::app::{App, Mode, Pane, Zoom};
use super::render::{Hit, hit_test};

/// Side effects the event loop performs for the state machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    Quit,
    Export,
    /// Ctrl-Z: give the terminal back to the shell until `fg`.
    Suspend,
}

/// (keys, what they do), grouped by section headers (entries with empty keys).
pub const KEYS: &[(&str, &str)] = &[
    ("", "Anywhere"),
    ("Ctrl-C", "quit (so do SIGTERM, SIGINT, SIGHUP, SIGQUIT)"),
    ("Ctrl-Z", "suspend to the shell (fg resumes and redraws)"),
    ("F1", "help"),
    ("Ctrl-T", "toggle ExpNet ↔ attention rollout"),
    ("", "Edit mode (typing)"),
    ("Enter / Esc", "leave the input (navigation mode)"),
    ("← → Home End", "move the cursor (Ctrl-A / Ctrl-E: start / end)"),
    ("Ctrl-← Ctrl-→", "move by word"),
    ("Backspace Delete", "delete a character"),
    ("Ctrl-W / Ctrl-U / Ctrl-K", "delete word before / all before / all after the cursor"),
    ("paste", "inserts text (max 1000 characters)"),
    ("", "Navigation mode"),
    ("i  /", "edit the input"),
    ("1 2 3 4", "Tokens / Heads / Compare / Examples pane"),
    ("Tab Shift-Tab", "next / previous pane"),
    ("← →", "select token (Tokens, Compare) or head (Heads)"),
    ("↑ ↓", "method (Tokens, Compare), layer (Heads), example (Examples)"),
    ("PgUp PgDn", "previous / next layer (Heads)"),
    ("Enter", "zoom (Heads), load example (Examples), token details"),
    ("Esc", "close zoom, popup, help, or an error / warning message"),
    ("r", "toggle ExpNet ↔ attention rollout"),
    ("m / M", "next / previous method"),
    ("w", "word pieces ↔ whole words"),
    ("a", "mean over the heads of the selected layer"),
    ("o", "examples browser"),
    ("t", "next colour theme"),
    ("e", "export JSON + HTML (asks first; folder: --export-dir, default the current one)"),
    ("D", "distil an ExpNet for a model without its own, from --texts / --data (D again stops)"),
    ("?", "this help"),
    ("q", "quit"),
    ("", "Mouse"),
    ("wheel", "method, layer or example"),
    ("click token", "select it and show its score under every method"),
    ("click head", "select that head"),
    ("click tab / example", "switch pane / select example"),
    ("", "Attention by model family"),
    ("ALBERT", "a layer is one pass of the one shared layer"),
    ("DeBERTa", "scores add relative-position terms (c2p, p2c)"),
    ("ModernBERT", "local layers: 0 outside a ±local_attention/2 window"),
];

/// Applies one terminal event; `area` is the screen size for mouse hit tests.
pub fn handle_event(app: &mut App, ev: &Event, area: Rect) -> Option<Effect> {
    match ev {
        Event::Key(k) if k.kind != KeyEventKind::Release => handle_key(app, *k),
        Event::Paste(s) => {
            if app.mode == Mode::Nav {
                app.mode = Mode::Edit;
            }
            app.insert_text(s);
            None
        }
        Event::Mouse(m) => {
            handle_mouse(app, *m, area);
            None
        }
        _ => None,
    }
}

fn ctrl(k: &KeyEvent) -> bool {
    k.modifiers.contains(KeyModifiers::CONTROL)
}

pub fn handle_key(app: &mut App, k: KeyEvent) -> Option<Effect> {
    // Global keys, in both modes.
    match k.code {
        KeyCode::Char('c') if ctrl(&k) => return Some(Effect::Quit),
        KeyCode::Char('z') if ctrl(&k) => return Some(Effect::Suspend),
        KeyCode::F(1) => {
            app.help = !app.help;
            return None;
        }
        KeyCode::Char('t') if ctrl(&k) => {
            app.toggle_expnet_rollout();
            return None;
        }
        _ => {}
    }
    if app.alert.is_some() {
        // An error or warning stays until dismissed; keys meant for the
        // panes must not act behind it (nor dismiss it by accident).
        match k.code {
            KeyCode::Esc | KeyCode::Enter => app.alert = None,
            KeyCode::Char('q') if app.mode == Mode::Nav => return Some(Effect::Quit),
            _ => {}
        }
        return None;
    }
    if app.help {
        // Arrows scroll a help taller than the screen; any other key closes
        // it, and keys that mean "quit" still quit.
        match k.code {
            KeyCode::Down | KeyCode::PageDown | KeyCode::Char('j') => {
                app.help_scroll = (app.help_scroll + if k.code == KeyCode::PageDown { 10 } else { 1 }).min(KEYS.len().saturating_sub(1));
                return None;
            }
            KeyCode::Up | KeyCode::PageUp | KeyCode::Char('k') => {
                app.help_scroll = app.help_scroll.saturating_sub(if k.code == KeyCode::PageUp { 10 } else { 1 });
                return None;
            }
            _ => {}
        }
        app.help = false;
        app.help_scroll = 0;
        return (k.code == KeyCode::Char('q') && app.mode == Mode::Nav).then_some(Effect::Quit);
    }
    match app.mode {
        Mode::Edit => edit_key(app, k),
        Mode::Nav => nav_key(app, k),
    }
}

fn edit_key(app: &mut App, k: KeyEvent) -> Option<Effect> {
    let i = &mut app.input;
    match k.code {
        KeyCode::Enter | KeyCode::Esc => app.mode = Mode::Nav,
        KeyCode::Char('a') if ctrl(&k) => i.home(),
        KeyCode::Char('e') if ctrl(&k) => i.end(),
        KeyCode::Char('w') if ctrl(&k) => i.delete_word(),
        KeyCode::Char('u') if ctrl(&k) => i.delete_to_start(),
        KeyCode::Char('k') if ctrl(&k) => i.delete_to_end(),
        KeyCode::Char('h') if ctrl(&k) => i.backspace(),
        KeyCode::Left if ctrl(&k) => i.word_left(),
        KeyCode::Right if ctrl(&k) => i.word_right(),
        KeyCode::Left => i.left(),
        KeyCode::Right => i.right(),
        KeyCode::Home => i.home(),
        KeyCode::End => i.end(),
        KeyCode::Backspace => i.backspace(),
        KeyCode::Delete => i.delete(),
        KeyCode::Char(c) if !ctrl(&k) && !k.modifiers.contains(KeyModifiers::ALT)
            && !i.insert(c) => {
                app.notify(format!("input is limited to {} characters", super::input::MAX_INPUT_CHARS));
            }
        _ => {}
    }
    None
}

fn nav_key(app: &mut App, k: KeyEvent) -> Option<Effect> {
    if app.export_pending {
        // Two files per keystroke is too easy to do by accident: confirm.
        app.export_pending = false;
        if matches!(k.code, KeyCode::Char('e' | 'y')) {
            return Some(Effect::Export);
        }
        app.notify("export cancelled");
        return None;
    }
    // Overlays first: Esc closes the innermost one.
    if k.code == KeyCode::Esc {
        if app.popup.is_some() {
            app.popup = None;
        } else if app.zoom.is_some() {
            app.zoom = None;
        }
        return None;
    }
    if app.popup.is_some() && matches!(k.code, KeyCode::Enter) {
        app.popup = None;
        return None;
    }
    match k.code {
        KeyCode::Char('q') => return Some(Effect::Quit),
        KeyCode::Char('i') | KeyCode::Char('/') => {
            app.mode = Mode::Edit;
            app.popup = None;
        }
        KeyCode::Char('?') => app.help = true,
        KeyCode::Char(c @ '1'..='4') => set_pane(app, Pane::ALL[(c as u8 - b'1') as usize]),
        KeyCode::Char('o') => set_pane(app, Pane::Examples),
        KeyCode::Tab => set_pane(app, Pane::ALL[(app.pane.index() + 1) % 4]),
        KeyCode::BackTab => set_pane(app, Pane::ALL[(app.pane.index() + 3) % 4]),
        KeyCode::Char('r') => app.toggle_expnet_rollout(),
        KeyCode::Char('D') => app.toggle_distill(),
        KeyCode::Char('m') => app.cycle_method(true),
        KeyCode::Char('M') => app.cycle_method(false),
        KeyCode::Char('w') => app.toggle_words(),
        KeyCode::Char('t') => app.cycle_theme(),
        KeyCode::Char('a') => {
            app.mean_heads = !app.mean_heads;
            app.notify(if app.mean_heads { "heads: mean over the selected layer" } else { "heads: single head" });
        }
        KeyCode::Char('e') => ask_export(app),
        KeyCode::PageUp => app.move_head(-1, 0),
        KeyCode::PageDown => app.move_head(1, 0),
        KeyCode::Enter => enter(app),
        KeyCode::Left | KeyCode::Right | KeyCode::Up | KeyCode::Down => arrow(app, k.code),
        _ => {}
    }
    None
}

fn ask_export(app: &mut App) {
    if app.analysis.is_none() {
        app.notify_error("nothing to export yet: type a sentence first");
        return;
    }
    app.export_pending = true;
    let dir = app.export_dir.display().to_string();
    let dir = if dir == "." { "the current directory (.)".to_string() } else { dir };
    app.notify(format!("export JSON + HTML to {dir}? e/y: write · other key: cancel · --export-dir picks the folder"));
}

fn set_pane(app: &mut App, p: Pane) {
    app.pane = p;
    app.zoom = None;
    app.popup = None;
}

fn enter(app: &mut App) {
    match app.pane {
        Pane::Heads => {
            if app.analysis.is_some() {
                app.zoom = match app.zoom {
                    Some(_) => None,
                    None => Some(Zoom::default()),
                };
            }
        }
        Pane::Examples => {
            if let Some(e) = app.examples.get(app.example).cloned() {
                app.load_text(&e.text);
                app.pane = Pane::Tokens;
                app.notify("example loaded");
            }
        }
        Pane::Tokens | Pane::Compare => {
            if app.analysis.is_some() {
                app.popup = Some(app.token);
            }
        }
    }
}

fn arrow(app: &mut App, code: KeyCode) {
    let (dx, dy) = match code {
        KeyCode::Left => (-1, 0),
        KeyCode::Right => (1, 0),
        KeyCode::Up => (0, -1),
        _ => (0, 1),
    };
    match app.pane {
        Pane::Heads if app.zoom.is_some() => app.move_zoom(dy, dx),
        Pane::Heads => app.move_head(dy, dx),
        Pane::Tokens | Pane::Compare => {
            if dx != 0 {
                app.move_token(dx);
                if app.popup.is_some() {
                    app.popup = Some(app.token);
                }
            } else {
                app.cycle_method(dy > 0);
            }
        }
        Pane::Examples => {
            let n = app.examples.len();
            if n > 0 && dy != 0 {
                app.example = (app.example as isize + dy).rem_euclid(n as isize) as usize;
            }
        }
    }
}

fn handle_mouse(app: &mut App, m: MouseEvent, area: Rect) {
    match m.kind {
        MouseEventKind::Down(MouseButton::Left) => {}
        MouseEventKind::ScrollUp | MouseEventKind::ScrollDown if !app.help => {
            let up = m.kind == MouseEventKind::ScrollUp;
            match app.pane {
                Pane::Heads if app.zoom.is_some() => app.move_zoom(if up { -1 } else { 1 }, 0),
                Pane::Heads => app.move_head(if up { -1 } else { 1 }, 0),
                Pane::Examples => arrow(app, if up { KeyCode::Up } else { KeyCode::Down }),
                _ => app.cycle_method(!up),
            }
            return;
        }
        _ => return,
    }
    if app.help {
        app.help = false;
        return;
    }
    match hit_test(app, area, m.column, m.row) {
        Some(Hit::Tab(p)) => set_pane(app, p),
        Some(Hit::Input) => app.mode = Mode::Edit,
        Some(Hit::Unit(u)) => {
            app.mode = Mode::Nav;
            app.token = u;
            app.popup = Some(u);
        }
        Some(Hit::Method(i)) => {
            app.mode = Mode::Nav;
            app.method = i;
        }
        Some(Hit::Head(l, h)) => {
            app.mode = Mode::Nav;
            app.layer = l;
            app.head = h;
        }
        Some(Hit::Example(i)) => {
            app.mode = Mode::Nav;
            if app.example == i {
                enter(app);
            } else {
                app.example = i;
            }
        }
        None => {
            app.popup = None;
        }
    }
}
