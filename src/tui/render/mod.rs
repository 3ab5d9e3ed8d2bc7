//! Pure drawing: `render(&App, &mut Frame)` and one module per pane.
//!
//! Geometry lives in small pure functions shared by drawing and mouse hit
//! testing, so a click always lands on what was drawn. Every write goes
//! through [`put`], which clips to its area: no size can make drawing panic.

mod compare;
mod examples;
mod heads;
mod help;
mod status;
mod tokens;

use ratatui::Frame;
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::Span;
use ratatui::widgets::{Block, Borders, Clear, Widget};

use super::app::{App, Pane};

/// Below this the explorer only says the terminal is too small.
pub const MIN_WIDTH: u16 = 40;
pub const MIN_HEIGHT: u16 = 12;

/// The screen regions, top to bottom.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Areas {
    pub tabs: Rect,
    pub input: Rect,
    pub prediction: Rect,
    pub main: Rect,
    pub status: Rect,
}

/// Splits the screen; `None` when it is below the minimum size.
pub fn areas(app: &App, area: Rect) -> Option<Areas> {
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        return None;
    }
    let labels = app.info.as_ref().map_or(2, |i| i.labels.len().max(1)) as u16;
    // Tall terminals get one bar per class in a box; short ones one line.
    let pred_h = if area.height >= 26 { labels.min(4) + 2 } else { 1 };
    let row = |y: u16, h: u16| Rect { x: area.x, y, width: area.width, height: h };
    let tabs = row(area.y, 1);
    let input = row(area.y + 1, 3);
    let prediction = row(area.y + 4, pred_h);
    let status = row(area.bottom() - 1, 1);
    let main_y = prediction.bottom();
    let main = row(main_y, status.y.saturating_sub(main_y));
    Some(Areas { tabs, input, prediction, main, status })
}

/// Draws the whole screen.
pub fn render(app: &App, f: &mut Frame) {
    let area = f.area();
    let mode = app.color;
    let theme = app.theme();
    let buf = f.buffer_mut();
    buf.set_style(area, theme.base(mode));
    let Some(a) = areas(app, area) else {
        let msg = format!("terminal too small: {}×{} (need {MIN_WIDTH}×{MIN_HEIGHT})", area.width, area.height);
        for (i, line) in wrap_plain(&msg, area.width as usize).iter().enumerate() {
            put(buf, area, area.x, area.y + i as u16, line, theme.error(mode));
        }
        return;
    };
    status::tabs(app, buf, a.tabs);
    let cursor = status::input(app, buf, a.input);
    status::prediction(app, buf, a.prediction);
    match app.pane {
        Pane::Tokens => tokens::render(app, buf, a.main),
        Pane::Heads => heads::render(app, buf, a.main),
        Pane::Compare => compare::render(app, buf, a.main),
        Pane::Examples => examples::render(app, buf, a.main),
    }
    status::status_line(app, buf, a.status);
    if let Some(u) = app.popup {
        tokens::popup(app, buf, a.main, u);
    }
    if app.help {
        help::render(app, buf, area);
    }
    if let Some(al) = &app.alert {
        help::alert(app, buf, area, al);
    }
    if let (Some(pos), false, false) = (cursor, app.help, app.alert.is_some()) {
        f.set_cursor_position(pos);
    }
}

/// What a pane says before there is anything to draw: the model is loading,
/// failed to load, or nothing has been typed yet.
pub(crate) fn waiting_message(app: &App, idle: &'static str) -> &'static str {
    if app.load_error.is_some() {
        "no model: it failed to load (Ctrl-C quits and prints the error)"
    } else if app.info.is_none() {
        "loading model…"
    } else {
        idle
    }
}

/// What a mouse click landed on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hit {
    Tab(Pane),
    Input,
    /// A display unit (token or word) in the Tokens or Compare pane.
    Unit(usize),
    /// A method row in the Compare pane.
    Method(usize),
    Head(usize, usize),
    Example(usize),
}

/// Maps a click at (x, y) to what is drawn there.
pub fn hit_test(app: &App, area: Rect, x: u16, y: u16) -> Option<Hit> {
    let a = areas(app, area)?;
    let inside = |r: Rect| x >= r.x && x < r.right() && y >= r.y && y < r.bottom();
    if inside(a.tabs) {
        return status::tab_hit(x - a.tabs.x, a.tabs.width);
    }
    if inside(a.input) {
        return Some(Hit::Input);
    }
    if !inside(a.main) || app.help {
        return None;
    }
    match app.pane {
        Pane::Tokens => tokens::hit(app, a.main, x, y),
        Pane::Heads => heads::hit(app, a.main, x, y),
        Pane::Compare => compare::hit(app, a.main, x, y),
        Pane::Examples => examples::hit(app, a.main, x, y),
    }
}

/// Writes `s` at (x, y) clipped to `clip` (and the buffer); returns the next x.
pub(crate) fn put(buf: &mut Buffer, clip: Rect, x: u16, y: u16, s: &str, style: Style) -> u16 {
    let clip = clip.intersection(buf.area);
    if y < clip.y || y >= clip.bottom() || x < clip.x || x >= clip.right() {
        return x;
    }
    let (nx, _) = buf.set_stringn(x, y, s, (clip.right() - x) as usize, style);
    nx
}

/// Sets the style of one cell if it is inside `clip`.
pub(crate) fn put_cell(buf: &mut Buffer, clip: Rect, x: u16, y: u16, symbol: &str, style: Style) {
    let clip = clip.intersection(buf.area);
    if x >= clip.x && x < clip.right() && y >= clip.y && y < clip.bottom()
        && let Some(c) = buf.cell_mut((x, y)) {
            c.set_symbol(symbol).set_style(style);
        }
}

/// Display width of a string in terminal cells.
pub(crate) fn width(s: &str) -> usize {
    Span::raw(s).width()
}

/// Cuts a string to at most `w` cells, ending in `…` when cut.
pub(crate) fn ellipsize(s: &str, w: usize) -> String {
    if width(s) <= w {
        return s.to_string();
    }
    if w == 0 {
        return String::new();
    }
    let mut out = String::new();
    for c in s.chars() {
        if width(&out) + width(&c.to_string()) > w - 1 {
            break;
        }
        out.push(c);
    }
    out.push('…');
    out
}

/// Greedy word wrap for plain messages.
pub(crate) fn wrap_plain(s: &str, w: usize) -> Vec<String> {
    let w = w.max(1);
    let mut lines = vec![String::new()];
    for word in s.split(' ') {
        let cur = lines.last_mut().expect("non-empty");
        if !cur.is_empty() && width(cur) + 1 + width(word) > w {
            lines.push(String::new());
        }
        let cur = lines.last_mut().expect("non-empty");
        if !cur.is_empty() {
            cur.push(' ');
        }
        cur.push_str(word);
    }
    lines.into_iter().flat_map(|l| if width(&l) > w { chunk(&l, w) } else { vec![l] }).collect()
}

fn chunk(s: &str, w: usize) -> Vec<String> {
    let chars: Vec<char> = s.chars().collect();
    chars.chunks(w).map(|c| c.iter().collect()).collect()
}

/// Draws a bordered box and returns its inner area.
pub(crate) fn framed(app: &App, buf: &mut Buffer, area: Rect, title: &str, focused: bool) -> Rect {
    let theme = app.theme();
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(theme.border(focused, app.color))
        .title(Span::styled(title.to_string(), if focused { theme.accent(app.color) } else { theme.muted(app.color) }));
    let inner = block.inner(area);
    block.render(area, buf);
    inner
}

/// A centred popup area of at most `w`×`h` inside `area`, cleared.
pub(crate) fn popup_area(app: &App, buf: &mut Buffer, area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width);
    let h = h.min(area.height);
    let r = Rect { x: area.x + (area.width - w) / 2, y: area.y + (area.height - h) / 2, width: w, height: h };
    Clear.render(r, buf);
    buf.set_style(r, app.theme().base(app.color));
    r
}

/// A first visible index so that `selected` is inside a window of `visible`
/// items out of `total`, keeping it centred where possible.
pub(crate) fn window_start(selected: usize, visible: usize, total: usize) -> usize {
    if visible == 0 || total <= visible {
        return 0;
    }
    selected.saturating_sub(visible / 2).min(total - visible)
}

/// A text gauge: `█████░░░░░ 45%`.
pub(crate) fn gauge(fraction: f32, w: usize) -> String {
    let bar_w = w.saturating_sub(5);
    let filled = ((fraction.clamp(0.0, 1.0) * bar_w as f32).round() as usize).min(bar_w);
    format!("{}{} {:>3}%", "█".repeat(filled), "░".repeat(bar_w - filled), (fraction * 100.0).round() as u32)
}

#[cfg(test)]
pub(crate) mod tests;

#[cfg(test)]
pub(crate) use examples::example_f1;
