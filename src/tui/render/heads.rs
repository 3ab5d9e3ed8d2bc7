//! Pane 2: every attention head as a miniature, and the zoomed matrix.
//!
//! A miniature is the head's token×token matrix max-pooled to the cell size
//! and drawn with `▀` (upper pixel as foreground, lower as background), so a
//! one-row cell still shows two rows of the pattern.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};

use super::{Hit, ellipsize, framed, put, put_cell, width, window_start};
use crate::tui::app::App;
use crate::tui::scores::units;
use crate::tui::theme::{ColorMode, Theme, paint};

const LABEL_W: u16 = 4;

/// The grid geometry shared by drawing and hit testing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Grid {
    inner: Rect,
    cell_w: u16,
    cell_h: u16,
    gap: u16,
    first_layer: usize,
    layers_shown: usize,
    first_head: usize,
    heads_shown: usize,
}

impl Grid {
    fn top(&self) -> u16 {
        self.inner.y + 2
    }
    fn cell(&self, li: usize, hi: usize) -> Rect {
        Rect {
            x: self.inner.x + LABEL_W + hi as u16 * self.cell_w + self.gap,
            y: self.top() + li as u16 * self.cell_h,
            width: self.cell_w - self.gap,
            height: self.cell_h - u16::from(self.cell_h >= 3),
        }
    }
}

fn grid(app: &App, inner: Rect) -> Option<Grid> {
    let info = app.info.as_ref()?;
    let (layers, heads) = (info.layers, info.heads);
    if layers == 0 || heads == 0 || inner.width <= LABEL_W + 2 || inner.height < 3 {
        return None;
    }
    let avail_w = inner.width - LABEL_W;
    let avail_h = inner.height - 2;
    let cell_w = (avail_w / heads as u16).clamp(3, 12);
    let cell_h = (avail_h / layers as u16).clamp(1, 4);
    let heads_shown = ((avail_w / cell_w) as usize).min(heads).max(1);
    let layers_shown = ((avail_h / cell_h) as usize).min(layers).max(1);
    Some(Grid {
        inner,
        cell_w,
        cell_h,
        gap: 1,
        first_layer: window_start(app.layer, layers_shown, layers),
        layers_shown,
        first_head: window_start(app.head, heads_shown, heads),
        heads_shown,
    })
}

/// Max-pools an `n×n` matrix into `rows×cols` pixels, normalised by its max.
/// Sub-samples large blocks so a 512-token input stays cheap to draw.
fn pool(m: &[f32], n: usize, rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; rows * cols];
    if n == 0 || rows == 0 || cols == 0 {
        return out;
    }
    let span = |i: usize, parts: usize| {
        let a = i * n / parts;
        let b = ((i + 1) * n / parts).max(a + 1).min(n);
        (a.min(n - 1), b)
    };
    for r in 0..rows {
        let (r0, r1) = span(r, rows);
        let rs = ((r1 - r0) / 8).max(1);
        for c in 0..cols {
            let (c0, c1) = span(c, cols);
            let cs = ((c1 - c0) / 8).max(1);
            let mut mx = 0.0f32;
            for q in (r0..r1).step_by(rs) {
                for k in (c0..c1).step_by(cs) {
                    mx = mx.max(m[q * n + k]);
                }
            }
            out[r * cols + c] = mx;
        }
    }
    let top = out.iter().cloned().fold(0.0f32, f32::max);
    if top > 0.0 {
        out.iter_mut().for_each(|v| *v /= top);
    }
    out
}

/// Draws one miniature. With `half_gap` the last half row stays background,
/// so vertically adjacent cells stay apart when there is no room for a gap row.
fn draw_mini(theme: &Theme, mode: ColorMode, buf: &mut Buffer, r: Rect, m: &[f32], n: usize, half_gap: bool) {
    let rows = (r.height as usize * 2).saturating_sub(usize::from(half_gap)).max(1);
    let cols = r.width as usize;
    let px = pool(m, n, rows, cols);
    let heat = |v: f32| theme.heat_style(Some(v), false, mode).bg.unwrap_or_default();
    for cy in 0..r.height as usize {
        for cx in 0..cols {
            let up = px.get((2 * cy) * cols + cx).copied();
            let lo = if 2 * cy + 1 < rows { px.get((2 * cy + 1) * cols + cx).copied() } else { None };
            let (x, y) = (r.x + cx as u16, r.y + cy as u16);
            let Some(up) = up else { continue };
            if mode == ColorMode::NoColor {
                let avg = lo.map_or(up, |lo| (up + lo) / 2.0);
                let shade = [" ", "░", "▒", "▓", "█"][(avg * 4.0).round().clamp(0.0, 4.0) as usize];
                put_cell(buf, r, x, y, shade, Style::default());
            } else {
                let bg = lo.map_or(paint(theme.ui.bg, mode), heat);
                put_cell(buf, r, x, y, "▀", Style::default().fg(heat(up)).bg(bg));
            }
        }
    }
}

/// "Layer 3/12 · Head 7/12" (1-based, as people count).
pub(super) fn selection_label(app: &App) -> String {
    let (l, h) = app.info.as_ref().map_or((0, 0), |i| (i.layers, i.heads));
    if app.mean_heads {
        format!("Layer {}/{l} · mean of {h} heads", app.layer + 1)
    } else {
        format!("Layer {}/{l} · Head {}/{h}", app.layer + 1, app.head + 1)
    }
}

/// Matrix of the selection: one head, or the mean over the layer's heads.
fn selected_matrix(app: &App) -> Option<(Vec<f32>, usize)> {
    let a = &app.analysis.as_ref()?.attentions;
    if app.layer >= a.layers || app.head >= a.heads {
        return None;
    }
    let m = if app.mean_heads { a.mean_heads(app.layer) } else { a.head(app.layer, app.head).to_vec() };
    Some((m, a.len))
}

pub(super) fn render(app: &App, buf: &mut Buffer, area: Rect) {
    let (theme, mode) = (app.theme(), app.color);
    // The selection is named once, in the title; without a model there is none.
    let title = if app.info.is_some() { format!(" 2 Heads · {} ", selection_label(app)) } else { " 2 Heads ".to_string() };
    let inner = framed(app, buf, area, &title, app.popup.is_none());
    let Some(analysis) = &app.analysis else {
        put(buf, inner, inner.x, inner.y, super::waiting_message(app, "type a sentence first"), theme.muted(mode));
        return;
    };
    if app.zoom.is_some() {
        return zoom(app, buf, inner);
    }
    let a = &analysis.attentions;
    let hint = "←→ head · ↑↓/PgUp/PgDn layer · a mean · Enter zoom";
    put(buf, inner, inner.x, inner.y, hint, theme.muted(mode));
    let Some(g) = grid(app, inner) else {
        put(buf, inner, inner.x, inner.y + 1, "pane too small for the head grid", theme.muted(mode));
        return;
    };
    // Column headers: head numbers.
    for hi in 0..g.heads_shown {
        let h = g.first_head + hi;
        let c = g.cell(0, hi);
        let sel = h == app.head && !app.mean_heads;
        let style = if sel { theme.accent(mode).add_modifier(Modifier::UNDERLINED) } else { theme.muted(mode) };
        put(buf, inner, c.x, inner.y + 1, &ellipsize(&format!("H{}", h + 1), c.width as usize), style);
    }
    for li in 0..g.layers_shown {
        let l = g.first_layer + li;
        let y = g.cell(li, 0).y;
        let lsel = l == app.layer;
        let lstyle = if lsel { theme.accent(mode) } else { theme.muted(mode) };
        put(buf, inner, inner.x, y, &format!("{:<3}", format!("L{}", l + 1)), lstyle);
        for hi in 0..g.heads_shown {
            let h = g.first_head + hi;
            if l >= a.layers || h >= a.heads {
                continue;
            }
            let c = g.cell(li, hi);
            draw_mini(theme, mode, buf, c, a.head(l, h), a.len, g.cell_h < 3);
            let selected = lsel && (app.mean_heads || h == app.head);
            if selected {
                // Brackets in the gaps around the selected cell.
                for dy in 0..c.height {
                    put(buf, inner, c.x - 1, c.y + dy, "▐", theme.accent(mode));
                    if c.right() < inner.right() {
                        put(buf, inner, c.right(), c.y + dy, "▌", theme.accent(mode));
                    }
                }
            }
        }
    }
}

/// Zoomed matrix with token labels on both axes; arrows move a cursor and
/// the view scrolls to keep it visible.
fn zoom(app: &App, buf: &mut Buffer, inner: Rect) {
    let (theme, mode) = (app.theme(), app.color);
    let (Some((m, n)), Some(z), Some(analysis)) = (selected_matrix(app), app.zoom, app.analysis.as_ref()) else { return };
    let labels: Vec<String> = units(&analysis.text, &analysis.tokens, false).into_iter().map(|u| u.text).collect();
    let (row, col) = (z.row.min(n.saturating_sub(1)), z.col.min(n.saturating_sub(1)));
    let v = m.get(row * n + col).copied().unwrap_or(0.0);
    let label = |i: usize| labels.get(i).map(String::as_str).unwrap_or("?");
    let head = format!("{} · {:?} → {:?} = {v:.3}   arrows move · Esc back", selection_label(app), label(row), label(col));
    put(buf, inner, inner.x, inner.y, &head, theme.accent(mode));
    let lw = (labels.iter().map(|l| width(l)).max().unwrap_or(1).min(10) + 1) as u16;
    let hh = (inner.height.saturating_sub(2) / 3).clamp(1, 6);
    let cw = 2u16;
    let top = inner.y + 1 + hh;
    let rows = inner.bottom().saturating_sub(top) as usize;
    let cols = (inner.width.saturating_sub(lw) / cw) as usize;
    if rows == 0 || cols == 0 {
        return;
    }
    let (r0, c0) = (window_start(row, rows, n), window_start(col, cols, n));
    let top_v = m.iter().cloned().fold(0.0f32, f32::max).max(1e-12);
    // Column headers, written vertically.
    for ci in 0..cols.min(n - c0) {
        let k = c0 + ci;
        let style = if k == col { theme.accent(mode).add_modifier(Modifier::UNDERLINED) } else { theme.muted(mode) };
        for (dy, ch) in label(k).chars().take(hh as usize).enumerate() {
            put(buf, inner, inner.x + lw + ci as u16 * cw, inner.y + 1 + dy as u16, &ch.to_string(), style);
        }
    }
    for ri in 0..rows.min(n - r0) {
        let q = r0 + ri;
        let y = top + ri as u16;
        let style = if q == row { theme.accent(mode) } else { theme.muted(mode) };
        put(buf, inner, inner.x, y, &format!("{:>w$} ", ellipsize(label(q), lw as usize - 1), w = lw as usize - 1), style);
        for ci in 0..cols.min(n - c0) {
            let k = c0 + ci;
            let val = m[q * n + k] / top_v;
            let mut st = theme.heat_style(Some(val), false, mode);
            let sym = if q == row && k == col {
                st = st.add_modifier(Modifier::BOLD);
                "◆ "
            } else if mode == ColorMode::NoColor {
                ["  ", "░░", "▒▒", "▓▓", "██"][(val * 4.0).round().clamp(0.0, 4.0) as usize]
            } else {
                "  "
            };
            put(buf, inner, inner.x + lw + ci as u16 * cw, y, sym, st);
        }
    }
}

pub(super) fn hit(app: &App, area: Rect, x: u16, y: u16) -> Option<Hit> {
    if app.zoom.is_some() {
        return None;
    }
    let inner = area.inner(ratatui::layout::Margin { horizontal: 1, vertical: 1 });
    let g = grid(app, inner)?;
    if x < inner.x + LABEL_W || y < g.top() {
        return None;
    }
    let hi = ((x - inner.x - LABEL_W) / g.cell_w) as usize;
    let li = ((y - g.top()) / g.cell_h) as usize;
    (hi < g.heads_shown && li < g.layers_shown).then(|| Hit::Head(g.first_layer + li, g.first_head + hi))
}

#[cfg(test)]
mod tests {
    use super::pool;

    #[test]
    fn pooling_keeps_peaks_and_normalises() {
        // 4x4 identity pooled to 2x2: diagonal blocks hold the peak.
        let mut m = vec![0.0; 16];
        for i in 0..4 {
            m[i * 4 + i] = 0.5;
        }
        assert_eq!(pool(&m, 4, 2, 2), vec![1.0, 0.0, 0.0, 1.0]);
        // Upsampling (n smaller than the pixel grid) repeats values.
        assert_eq!(pool(&[1.0, 0.0, 0.0, 0.0], 2, 4, 4)[..4], [1.0, 1.0, 0.0, 0.0]);
    }
}
