//! The `?` / F1 overlay: every key binding, drawn from [`KEYS`].

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;

use super::{ellipsize, framed, popup_area, put, width, wrap_plain};
use crate::tui::app::App;
use crate::tui::keys::KEYS;

pub(super) fn render(app: &App, buf: &mut Buffer, area: Rect) {
    let (theme, mode) = (app.theme(), app.color);
    // The keys, then what the ExpNet is (or why there is none) and any distillation.
    let mut list: Vec<(&str, String)> = KEYS.iter().map(|(k, d)| (*k, d.to_string())).collect();
    let about: Vec<String> = app.expnet_about().into_iter().chain(app.distill_status()).collect();
    if !about.is_empty() {
        list.push(("", "ExpNet".into()));
        list.extend(about.into_iter().map(|l| ("·", l)));
    }
    let list = &list;
    let kw = list.iter().map(|(k, _)| width(k)).max().unwrap_or(0) + 2;
    let dw = list.iter().map(|(_, d)| width(d)).max().unwrap_or(0);
    // Two columns when the list is taller than the screen and it is wide
    // enough; otherwise one column that scrolls with the arrows.
    let two = list.len() as u16 + 2 > area.height && area.width as usize >= 2 * (kw + dw) + 5;
    let per_col = if two { list.len().div_ceil(2) } else { list.len() };
    let w = if two { 2 * (kw + dw) + 5 } else { kw + dw + 3 };
    let r = popup_area(app, buf, area, w as u16, per_col as u16 + 2);
    let rows = r.height.saturating_sub(2) as usize;
    let scrolls = !two && per_col > rows;
    let first = if scrolls { app.help_scroll.min(per_col - rows) } else { 0 };
    let title = if scrolls { format!(" keys {}-{} of {} · ↑↓ scroll · other keys close ", first + 1, first + rows, per_col) } else { " keys · any key closes ".into() };
    let inner = framed(app, buf, r, &title, true);
    let col_w = if two { inner.width / 2 } else { inner.width };
    for (i, (k, d)) in list.iter().enumerate() {
        let (col, row) = (i / per_col, i % per_col);
        if row < first || row - first >= rows {
            continue;
        }
        let x = inner.x + col as u16 * col_w;
        let y = inner.y + (row - first) as u16;
        if k.is_empty() {
            put(buf, inner, x, y, d, theme.accent(mode));
        } else {
            let nx = put(buf, inner, x, y, &format!(" {k:<w$}", w = kw - 1), theme.fg(theme.ui.nav, mode));
            put(buf, inner, nx, y, &ellipsize(d, (col_w as usize).saturating_sub(kw)), theme.base(mode));
        }
    }
}

/// The alert popup (load error, theme warning): the whole text, wrapped,
/// until Esc / Enter; a text taller than the screen shows its start and end.
pub(super) fn alert(app: &App, buf: &mut Buffer, area: Rect, a: &crate::tui::app::Alert) {
    let (theme, mode) = (app.theme(), app.color);
    let w = area.width.saturating_sub(4).clamp(1, 100);
    let lines: Vec<String> = a.text.lines().flat_map(|l| wrap_plain(l, w.saturating_sub(2) as usize)).collect();
    let r = popup_area(app, buf, area, w, lines.len() as u16 + 3);
    let inner = framed(app, buf, r, &format!(" {} · Esc closes · Ctrl-C quits ", a.title), true);
    let rows = inner.height.saturating_sub(1) as usize;
    let shown: Vec<&String> = if lines.len() <= rows {
        lines.iter().collect()
    } else {
        let head = rows / 2;
        lines.iter().take(head).chain(lines.iter().skip(lines.len() - (rows - head))).collect()
    };
    for (i, l) in shown.iter().enumerate() {
        put(buf, inner, inner.x, inner.y + i as u16, l, theme.error(mode));
    }
    if inner.height > 0 {
        put(buf, inner, inner.x, inner.bottom() - 1, "(printed on stderr again when you quit)", theme.muted(mode));
    }
}
