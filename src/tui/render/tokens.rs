//! Pane 1: the token heatmap, its legend, and the per-token popup.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};

use super::{Hit, ellipsize, framed, gauge, popup_area, put, width, window_start};
use crate::tui::app::{App, Pane, Slot};
use crate::tui::scores::{Unit, unit_score, unit_values};
use crate::tui::theme::ColorMode;

/// Position of one unit in the wrapped token flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Placed {
    line: usize,
    x: u16,
    w: u16,
}

/// Cell text of a unit: padded by a space each side so the colour reads as a chip.
fn chip(u: &Unit, max: usize) -> String {
    format!(" {} ", ellipsize(&u.text, max.saturating_sub(2).max(1)))
}

/// Wraps units into lines of `w` cells with one space between chips.
fn flow(units: &[Unit], w: u16) -> Vec<Placed> {
    let mut out = Vec::with_capacity(units.len());
    let (mut line, mut x) = (0usize, 0u16);
    for u in units {
        let cw = width(&chip(u, w as usize)) as u16;
        if x > 0 && x + cw > w {
            line += 1;
            x = 0;
        }
        out.push(Placed { line, x, w: cw });
        x += cw + 1;
    }
    out
}

/// Where the token flow goes: rows above it, line spacing, scrolling, and
/// the row of the "most important" list (when there is room for it).
struct Geometry {
    flow_top: u16,
    placed: Vec<Placed>,
    first_line: usize,
    visible_lines: usize,
    /// 2 leaves a blank row between lines of chips (easier to read).
    spacing: u16,
    list_y: Option<u16>,
}

/// Rows the "most important" list needs (blank, header, five entries).
const LIST_ROWS: usize = 7;

fn geometry(app: &App, inner: Rect, units: &[Unit]) -> Geometry {
    let header = if inner.height >= 6 { 3 } else { inner.height.min(2) };
    let flow_top = inner.y + header;
    let placed = flow(units, inner.width);
    let avail = inner.bottom().saturating_sub(flow_top) as usize;
    let total = placed.last().map_or(0, |p| p.line + 1);
    let (spacing, visible_lines, list) = if 2 * total + LIST_ROWS <= avail + 1 {
        (2u16, total, Some(2 * total))
    } else if total + LIST_ROWS <= avail {
        (1, total, Some(total + 1))
    } else {
        (1, avail, None)
    };
    let sel_line = placed.get(app.token).map_or(0, |p| p.line);
    let first_line = window_start(sel_line, visible_lines, total);
    let list_y = list.map(|r| flow_top + r as u16);
    Geometry { flow_top, placed, first_line, visible_lines, spacing, list_y }
}

fn inner_of(area: Rect) -> Rect {
    area.inner(ratatui::layout::Margin { horizontal: 1, vertical: 1 })
}

pub(super) fn render(app: &App, buf: &mut Buffer, area: Rect) {
    let (theme, mode) = (app.theme(), app.color);
    let method = app.method_name().unwrap_or("—");
    let label = app.method_label().unwrap_or("—");
    let title = format!(" 1 Tokens · {label}{} ", if app.merge_words { " · words" } else { "" });
    let inner = framed(app, buf, area, &title, app.pane == Pane::Tokens && app.popup.is_none());
    if inner.height == 0 || inner.width < 4 {
        return;
    }
    let Some(analysis) = &app.analysis else {
        let msg = super::waiting_message(app, "type a sentence to see which tokens drive the prediction");
        put(buf, inner, inner.x, inner.y, msg, theme.muted(mode));
        return;
    };
    let units = app.units();
    let result = app.result(method);
    let norm = result.map(|r| unit_values(&units, &r.scores));
    let signed = norm.as_ref().is_some_and(|n| n.signed);

    // Legend: method name and the colour scale it is drawn with.
    let mut x = put(buf, inner, inner.x, inner.y, &format!("{label} "), theme.accent(mode));
    let (lo, hi) = if signed { ("−", "+") } else { ("low", "high") };
    x = put(buf, inner, x, inner.y, &format!("{lo} "), theme.muted(mode));
    for i in 0..12 {
        let t = i as f32 / 11.0;
        let v = if signed { t * 2.0 - 1.0 } else { t };
        let style = theme.heat_style(Some(v), signed, mode);
        let sym = if mode == ColorMode::NoColor { digit(v) } else { " ".to_string() };
        x = put(buf, inner, x, inner.y, &sym, style);
    }
    x = put(buf, inner, x, inner.y, &format!(" {hi}"), theme.muted(mode));
    let state = match app.results.get(method) {
        Some(Slot::Queued) => "  queued (fast methods first)".into(),
        Some(Slot::Running(f)) => format!("  computing {}", gauge(*f, 16)),
        Some(Slot::Failed(e)) => format!("  failed: {e}"),
        Some(Slot::Done(r)) => format!("  {:.1} ms", r.ms),
        None => "  pending…".into(),
    };
    put(buf, inner, x, inner.y, &state, theme.muted(mode));

    // Selected unit details.
    if inner.height >= 2
        && let Some(u) = units.get(app.token) {
            let raw = result.and_then(|r| unit_score(u, &r.scores));
            let n = norm.as_ref().and_then(|n| n.values.get(app.token).copied().flatten());
            let txt = selected_line(&u.text, raw, n);
            put(buf, inner, inner.x, inner.y + 1, &txt, theme.base(mode));
        }

    let g = geometry(app, inner, &units);
    for (i, (u, p)) in units.iter().zip(&g.placed).enumerate() {
        if p.line < g.first_line || p.line >= g.first_line + g.visible_lines {
            continue;
        }
        let y = g.flow_top + (p.line - g.first_line) as u16 * g.spacing;
        let v = norm.as_ref().and_then(|n| n.values.get(i).copied().flatten());
        let mut style = theme.heat_style(v, signed, mode);
        if u.special {
            style = theme.muted(mode);
        }
        if i == app.token {
            style = style.add_modifier(Modifier::UNDERLINED | Modifier::BOLD);
        }
        put(buf, inner, inner.x + p.x, y, &chip(u, inner.width as usize), style);
        if i == app.token && p.x > 0 {
            put(buf, inner, inner.x + p.x - 1, y, "▕", theme.accent(mode));
        }
    }
    if let (Some(y), Some(r), Some(n)) = (g.list_y, result, norm.as_ref()) {
        top_list(app, buf, inner, y, &units, &r.scores, n);
    }
    if analysis.truncated {
        put(buf, inner, inner.x, inner.bottom() - 1, "(input truncated to the model's maximum length)", theme.error(mode));
    }
}

/// The selected unit's line: its text (cut, so the score stays on screen),
/// raw score, and where it sits on the colour scale, said in words.
fn selected_line(text: &str, raw: Option<f32>, n: Option<f32>) -> String {
    let t = format!("{:?}", ellipsize(text, 24));
    match (raw, n) {
        (Some(r), Some(n)) => format!("▶ {t}  score {}  colour {n:+.2} (±1 = strongest)  ←/→ · Enter: all methods", fmt_score(r)),
        (Some(r), None) => format!("▶ {t}  score {}  (special token, not coloured)", fmt_score(r)),
        _ => format!("▶ {t}"),
    }
}

/// A score with four decimals, or in scientific notation when that would
/// print a non-zero score as 0.0000.
pub(crate) fn fmt_score(s: f32) -> String {
    if s != 0.0 && s.abs() < 5e-5 { format!("{s:+.2e}") } else { format!("{s:+.4}") }
}

/// Units of the "most important" list: non-special, non-zero scores, by
/// magnitude (a zero score is not important, whatever its rank).
fn ranked_units(units: &[Unit], scores: &[f32]) -> Vec<(usize, f32)> {
    let mut ranked: Vec<(usize, f32)> =
        units.iter().enumerate().filter(|(_, u)| !u.special).filter_map(|(i, u)| unit_score(u, scores).map(|s| (i, s))).filter(|(_, s)| *s != 0.0).collect();
    ranked.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()));
    ranked
}

/// The five most important units with their raw scores and a bar, so the
/// ranking is readable without judging colours.
fn top_list(app: &App, buf: &mut Buffer, inner: Rect, y: u16, units: &[Unit], scores: &[f32], norm: &crate::tui::scores::Normalized) {
    let (theme, mode) = (app.theme(), app.color);
    let ranked = ranked_units(units, scores);
    let title = if ranked.is_empty() { "most important: every token scored 0" } else { "most important" };
    put(buf, inner, inner.x, y, title, theme.muted(mode).add_modifier(Modifier::BOLD));
    let lw = ranked.iter().take(5).map(|(i, _)| width(&units[*i].text).min(16)).max().unwrap_or(0);
    let bar_w = (inner.width as usize).saturating_sub(lw + 14).min(40);
    for (row, (i, s)) in ranked.iter().take(5).enumerate() {
        let yy = y + 1 + row as u16;
        let v = norm.values.get(*i).copied().flatten();
        let x = put(buf, inner, inner.x, yy, &format!("{:>lw$} ", ellipsize(&units[*i].text, 16)), if *i == app.token { theme.accent(mode) } else { theme.base(mode) });
        let x = put(buf, inner, x, yy, &format!("{:>9} ", fmt_score(*s)), theme.muted(mode));
        let filled = v.map_or(0, |v| (v.abs() * bar_w as f32).round() as usize).max(1);
        let style = if mode == ColorMode::NoColor { Style::default().add_modifier(Modifier::REVERSED) } else { theme.heat_style(v, norm.signed, mode) };
        put(buf, inner, x, yy, &" ".repeat(filled), style);
    }
}

/// A score magnitude as one digit 0–9, for terminals without colour
/// (negative scores are told apart by italics in the style).
fn digit(v: f32) -> String {
    ((v.abs() * 9.0).round() as u32).min(9).to_string()
}

pub(super) fn hit(app: &App, area: Rect, x: u16, y: u16) -> Option<Hit> {
    let inner = inner_of(area);
    let units = app.units();
    let g = geometry(app, inner, &units);
    if y < g.flow_top || x < inner.x {
        return None;
    }
    let dy = y - g.flow_top;
    if !dy.is_multiple_of(g.spacing) {
        return None;
    }
    let line = g.first_line + (dy / g.spacing) as usize;
    let dx = x - inner.x;
    g.placed.iter().position(|p| p.line == line && dx >= p.x && dx < p.x + p.w).map(Hit::Unit)
}

/// Scores of one unit under every method (Enter or a click on a token).
pub(super) fn popup(app: &App, buf: &mut Buffer, area: Rect, unit: usize) {
    let (theme, mode) = (app.theme(), app.color);
    let units = app.units();
    let Some(u) = units.get(unit) else { return };
    let h = (app.methods.len() as u16 + 4).min(area.height);
    let r = popup_area(app, buf, area, 56, h);
    let inner = framed(app, buf, r, &format!(" {:?} under every method (Esc closes) ", ellipsize(&u.text, 16)), true);
    for (i, m) in app.methods.iter().enumerate().take(inner.height as usize) {
        let y = inner.y + i as u16;
        let style = if i == app.method { theme.accent(mode) } else { theme.base(mode) };
        let x = put(buf, inner, inner.x, y, &format!("{:<12} ", super::compare::method_label(&m.label, m.slow)), style);
        match app.results.get(&m.name) {
            Some(Slot::Done(res)) => {
                let norm = unit_values(&units, &res.scores);
                let v = norm.values.get(unit).copied().flatten();
                let raw = unit_score(u, &res.scores).map_or("—".into(), |r| format!("{r:+.4}"));
                let x = put(buf, inner, x, y, &format!("{raw:>9} "), theme.base(mode));
                let bar = v.map_or(0, |v| (v.abs() * 20.0).round() as usize);
                let style = theme.heat_style(v, norm.signed, mode);
                let x = put(buf, inner, x, y, &" ".repeat(bar.max(1)), if mode == ColorMode::NoColor { Style::default().add_modifier(Modifier::REVERSED) } else { style });
                put(buf, inner, x + 1, y, &v.map_or("special".into(), |v| format!("{v:+.2}")), theme.muted(mode));
            }
            Some(Slot::Running(f)) => {
                put(buf, inner, x, y, &gauge(*f, 24), theme.muted(mode));
            }
            Some(Slot::Queued) => {
                put(buf, inner, x, y, "queued…", theme.muted(mode));
            }
            Some(Slot::Failed(e)) => {
                put(buf, inner, x, y, &format!("failed: {e}"), theme.error(mode));
            }
            None => {
                put(buf, inner, x, y, "queued…", theme.muted(mode));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(t: &str, special: bool) -> Unit {
        Unit { text: t.into(), tokens: vec![0], special }
    }

    #[test]
    fn zero_scores_are_not_most_important() {
        let units: Vec<Unit> = ["[CLS]", "a", "good", "film"].iter().enumerate().map(|(i, t)| Unit { tokens: vec![i], ..unit(t, i == 0) }).collect();
        let ranked = ranked_units(&units, &[0.9, 0.0, -0.5, 0.0]);
        assert_eq!(ranked, vec![(2, -0.5)]);
        assert!(ranked_units(&units, &[0.9, 0.0, 0.0, 0.0]).is_empty());
        assert_eq!(fmt_score(0.00001), "+1.00e-5");
        assert_eq!(fmt_score(0.5), "+0.5000");
    }

    #[test]
    fn a_huge_token_leaves_room_for_its_score() {
        let line = selected_line(&"x".repeat(1000), Some(0.25), Some(0.5));
        assert!(line.find("score +0.2500").is_some_and(|i| i < 40), "{line}");
        assert!(line.contains("±1 = strongest"), "the scale is explained: {line}");
    }
}
