//! Pane 3: every method on the same tokens, one row each, with run time and
//! agreement with ExpNet (Spearman ρ of importance and top-k overlap).

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::Modifier;

use super::{Hit, ellipsize, framed, gauge, put, width, window_start};
use crate::tui::app::{App, Pane, Slot};
use crate::tui::scores::{TOP_K, Unit, spearman, top_k_overlap, unit_values};

const NAME_W: u16 = 12;
const STATS_W: u16 = 22; // "  12.3ms  +0.85  2/3 "
const COL_MAX: usize = 10;

fn col_width(u: &Unit) -> u16 {
    (width(&u.text).clamp(1, COL_MAX) + 1) as u16
}

/// Range of units that fit in `avail` cells with the selected one visible:
/// grow from the selection, preferring the right, then fill to the left.
fn visible_units(units: &[Unit], avail: u16, selected: usize) -> std::ops::Range<usize> {
    if units.is_empty() {
        return 0..0;
    }
    let sel = selected.min(units.len() - 1);
    let (mut a, mut b, mut used) = (sel, sel + 1, col_width(&units[sel]));
    loop {
        let mut grew = false;
        if b < units.len() && used + col_width(&units[b]) <= avail && (b - sel) <= (sel - a) + 2 {
            used += col_width(&units[b]);
            b += 1;
            grew = true;
        }
        if a > 0 && used + col_width(&units[a - 1]) <= avail {
            used += col_width(&units[a - 1]);
            a -= 1;
            grew = true;
        }
        if !grew {
            if b < units.len() && used + col_width(&units[b]) <= avail {
                used += col_width(&units[b]);
                b += 1;
                continue;
            }
            break;
        }
    }
    a..b
}

struct Geometry {
    tokens_x: u16,
    cols: std::ops::Range<usize>,
    first_row: usize,
    rows: usize,
}

fn geometry(app: &App, inner: Rect, units: &[Unit]) -> Geometry {
    let tokens_x = inner.x + (NAME_W + STATS_W).min(inner.width);
    let avail = inner.right().saturating_sub(tokens_x);
    let rows = inner.height.saturating_sub(2) as usize;
    Geometry {
        tokens_x,
        cols: visible_units(units, avail, app.token),
        first_row: window_start(app.method, rows, app.methods.len()),
        rows,
    }
}

pub(super) fn render(app: &App, buf: &mut Buffer, area: Rect) {
    let (theme, mode) = (app.theme(), app.color);
    let reference = app.reference_method().unwrap_or("—").to_string();
    let inner = framed(app, buf, area, &format!(" 3 Compare · agreement vs {reference} "), app.popup.is_none());
    let Some(analysis) = &app.analysis else {
        put(buf, inner, inner.x, inner.y, super::waiting_message(app, "type a sentence first"), theme.muted(mode));
        return;
    };
    let units = app.units();
    let special: Vec<bool> = analysis.tokens.iter().map(|t| t.special).collect();
    let g = geometry(app, inner, &units);
    let header = format!("{:<nw$}{:>8} {:>6} {:>5}", "method", "ms", "ρ", format!("top{TOP_K}"), nw = NAME_W as usize);
    put(buf, inner, inner.x, inner.y, &header, theme.muted(mode).add_modifier(Modifier::BOLD));
    let mut x = g.tokens_x;
    for i in g.cols.clone() {
        let u = &units[i];
        let style = if i == app.token { theme.accent(mode).add_modifier(Modifier::UNDERLINED) } else { theme.muted(mode) };
        put(buf, inner, x, inner.y, &ellipsize(&u.text, COL_MAX), style);
        x += col_width(u);
    }
    let ref_scores = app.result(&reference).map(|r| r.scores.clone());
    for (ri, m) in app.methods.iter().enumerate().skip(g.first_row).take(g.rows) {
        let y = inner.y + 1 + (ri - g.first_row) as u16;
        let sel = ri == app.method;
        let name_style = if sel { theme.selected(mode) } else { theme.base(mode) };
        let marker = if sel { "▶" } else { " " };
        put(buf, inner, inner.x, y, &format!("{marker}{:<w$}", method_label(&m.label, m.slow), w = NAME_W as usize - 1), name_style);
        let sx = inner.x + NAME_W;
        match app.results.get(&m.name) {
            Some(Slot::Done(r)) => {
                let (rho, top) = match &ref_scores {
                    Some(rs) if m.name != reference => (
                        spearman(&r.scores, rs, &special).map_or("—".into(), |v| format!("{v:+.2}")),
                        top_k_overlap(&r.scores, rs, &special, TOP_K).map_or("—".into(), |v| format!("{:.0}%", v * 100.0)),
                    ),
                    Some(_) => ("ref".into(), "ref".into()),
                    None => ("…".into(), "…".into()),
                };
                put(buf, inner, sx, y, &format!("{:>8.1} {rho:>6} {top:>5}", r.ms), theme.base(mode));
                let norm = unit_values(&units, &r.scores);
                let mut x = g.tokens_x;
                for i in g.cols.clone() {
                    let u = &units[i];
                    let v = norm.values.get(i).copied().flatten();
                    let mut st = if u.special { theme.muted(mode) } else { theme.heat_style(v, norm.signed, mode) };
                    if i == app.token {
                        st = st.add_modifier(Modifier::UNDERLINED);
                    }
                    put(buf, inner, x, y, &format!("{:<w$}", ellipsize(&u.text, COL_MAX), w = col_width(u) as usize - 1), st);
                    x += col_width(u);
                }
            }
            Some(Slot::Running(f)) => {
                let w = inner.right().saturating_sub(sx) as usize;
                put(buf, inner, sx, y, &format!("{:>8} {}", "running", gauge(*f, w.saturating_sub(9).min(40))), theme.accent(mode));
            }
            Some(Slot::Failed(e)) => {
                put(buf, inner, sx, y, &format!("failed: {e}"), theme.error(mode));
            }
            Some(Slot::Queued) | None => {
                put(buf, inner, sx, y, &format!("{:>8}", "queued"), theme.muted(mode));
            }
        }
    }
    if inner.height >= 3 {
        let foot = "↑↓ method · ←→ token · * slow (runs while this pane is open) · Enter: token details";
        put(buf, inner, inner.x, inner.bottom() - 1, foot, theme.muted(mode));
    }
    let _ = Pane::Compare;
}

/// Method name cut to the column with the slow marker kept: the name is
/// shortened, never the `*` that says it only runs while visible.
pub(super) fn method_label(name: &str, slow: bool) -> String {
    let w = NAME_W as usize - 1;
    if slow { format!("{}*", ellipsize(name, w - 1)) } else { ellipsize(name, w) }
}

pub(super) fn hit(app: &App, area: Rect, x: u16, y: u16) -> Option<Hit> {
    let inner = area.inner(ratatui::layout::Margin { horizontal: 1, vertical: 1 });
    let units = app.units();
    let g = geometry(app, inner, &units);
    if y == inner.y && x >= g.tokens_x {
        return unit_at(&units, &g, x);
    }
    let row = (y.checked_sub(inner.y + 1)?) as usize;
    if row >= g.rows {
        return None;
    }
    let m = g.first_row + row;
    if m >= app.methods.len() {
        return None;
    }
    if x >= g.tokens_x { unit_at(&units, &g, x).or(Some(Hit::Method(m))) } else { Some(Hit::Method(m)) }
}

fn unit_at(units: &[Unit], g: &Geometry, x: u16) -> Option<Hit> {
    let mut cx = g.tokens_x;
    for i in g.cols.clone() {
        let w = col_width(&units[i]);
        if x >= cx && x < cx + w {
            return Some(Hit::Unit(i));
        }
        cx += w;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(t: &str) -> Unit {
        Unit { text: t.into(), tokens: vec![0], special: false }
    }

    #[test]
    fn long_slow_method_names_keep_their_marker() {
        assert_eq!(method_label("integrated_gradients", true), "integrate…*");
        assert_eq!(method_label("integrated_gradients", false), "integrated…");
        assert_eq!(method_label("lime", true), "lime*");
        assert!(width(&method_label("kernel_shap_long_name", true)) < NAME_W as usize);
    }

    #[test]
    fn window_keeps_selection_visible() {
        let units: Vec<Unit> = (0..20).map(|i| u(&format!("w{i:02}"))).collect(); // 4 cells each
        assert_eq!(visible_units(&units, 16, 0), 0..4);
        let r = visible_units(&units, 16, 10);
        assert!(r.contains(&10) && r.len() == 4, "{r:?}");
        assert_eq!(visible_units(&units, 16, 19), 16..20);
        assert_eq!(visible_units(&units, 1, 5), 5..6);
    }
}
