//! The `?` / F1 overlay: every key binding, drawn from [`KEYS`].

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;

use super::{ellipsize, framed, popup_area, put, width};
use crate::tui::app::App;
use crate::tui::keys::KEYS;

pub(super) fn render(app: &App, buf: &mut Buffer, area: Rect) {
    let (theme, mode) = (app.theme(), app.color);
    let kw = KEYS.iter().map(|(k, _)| width(k)).max().unwrap_or(0) + 2;
    let dw = KEYS.iter().map(|(_, d)| width(d)).max().unwrap_or(0);
    // Two columns when the list is taller than the screen and it is wide enough.
    let rows_needed = KEYS.len() as u16 + 2;
    let two = rows_needed > area.height && area.width as usize >= 2 * (kw + dw) + 6;
    let per_col = if two { KEYS.len().div_ceil(2) } else { KEYS.len() };
    let w = if two { 2 * (kw + dw) + 5 } else { kw + dw + 4 };
    let r = popup_area(app, buf, area, w as u16, per_col as u16 + 2);
    let inner = framed(app, buf, r, " keys · any key closes ", true);
    let col_w = if two { inner.width / 2 } else { inner.width };
    for (i, (k, d)) in KEYS.iter().enumerate() {
        let (col, row) = (i / per_col, i % per_col);
        let x = inner.x + col as u16 * col_w;
        let y = inner.y + row as u16;
        if k.is_empty() {
            put(buf, inner, x, y, d, theme.accent(mode));
        } else {
            let nx = put(buf, inner, x, y, &format!(" {k:<w$}", w = kw - 1), theme.fg(theme.ui.nav, mode));
            put(buf, inner, nx, y, &ellipsize(d, (col_w as usize).saturating_sub(kw)), theme.base(mode));
        }
    }
}
