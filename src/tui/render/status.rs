//! The chrome: tab bar, input line, prediction bars and status line.

use ratatui::buffer::Buffer;
use ratatui::layout::{Position, Rect};
use ratatui::style::{Modifier, Style};

use super::{Hit, ellipsize, framed, put, width};
use crate::tui::app::{App, Mode, Pane};
use crate::tui::theme::ColorMode;

const BRAND: &str = " expnet ";

/// (x offset, width, pane, label) of each tab, shared with mouse hit
/// testing, and whether the brand fits before them. Narrow terminals drop
/// the brand, then the padding, then shorten titles: every tab stays visible.
fn tab_cells(total: u16) -> (bool, Vec<(u16, u16, Pane, String)>) {
    let full = |p: Pane| format!(" {} {} ", p.index() + 1, p.title());
    let tight = |p: Pane| format!("{} {}", p.index() + 1, p.title());
    let short = |p: Pane| format!("{} {}", p.index() + 1, &p.title()[..3]);
    type Label = fn(Pane) -> String;
    let variants: [(bool, Label); 4] = [(true, full), (false, full), (false, tight), (false, short)];
    let layout = |brand: bool, label: Label| {
        let mut x = if brand { width(BRAND) as u16 + 1 } else { 0 };
        let cells: Vec<(u16, u16, Pane, String)> = Pane::ALL
            .iter()
            .map(|p| {
                let l = label(*p);
                let w = width(&l) as u16;
                let cell = (x, w, *p, l);
                x += w + 1;
                cell
            })
            .collect();
        (brand, cells)
    };
    let fits = |cells: &[(u16, u16, Pane, String)]| cells.last().is_some_and(|(x, w, _, _)| x + w <= total);
    for (brand, label) in variants {
        let (b, cells) = layout(brand, label);
        if fits(&cells) {
            return (b, cells);
        }
    }
    layout(false, short)
}

pub(super) fn tab_hit(dx: u16, total: u16) -> Option<Hit> {
    tab_cells(total).1.into_iter().find(|(x, w, _, _)| dx >= *x && dx < x + w).map(|(_, _, p, _)| Hit::Tab(p))
}

pub(super) fn tabs(app: &App, buf: &mut Buffer, area: Rect) {
    let (theme, mode) = (app.theme(), app.color);
    let (brand, cells) = tab_cells(area.width);
    if brand {
        put(buf, area, area.x, area.y, BRAND, theme.accent(mode).add_modifier(Modifier::REVERSED));
    }
    for (x, _, p, label) in &cells {
        let style = if *p == app.pane { theme.selected(mode).add_modifier(Modifier::BOLD | Modifier::UNDERLINED) } else { theme.muted(mode) };
        put(buf, area, area.x + x, area.y, label, style);
    }
    let right = format!("{} · {} ", app.method_label().unwrap_or("—"), theme.name);
    let rw = width(&right) as u16;
    let end = cells.last().map_or(0, |(x, w, _, _)| x + w);
    if area.width > end + rw + 1 {
        put(buf, area, area.right() - rw, area.y, &right, theme.muted(mode));
    }
}

/// Draws the input box; returns where the terminal cursor goes in edit mode.
pub(super) fn input(app: &App, buf: &mut Buffer, area: Rect) -> Option<Position> {
    let (theme, mode) = (app.theme(), app.color);
    let editing = app.mode == Mode::Edit;
    let title = if editing { " Input · editing (Enter/Esc: navigate) " } else { " Input · i or / to edit " };
    let inner = framed(app, buf, area, title, editing);
    if inner.width == 0 || inner.height == 0 {
        return None;
    }
    let chars = app.input.chars();
    if chars.is_empty() {
        let hint = if editing { "type a sentence…" } else { "(empty) press i to type" };
        put(buf, inner, inner.x, inner.y, hint, theme.muted(mode).add_modifier(Modifier::ITALIC));
        return editing.then_some(Position { x: inner.x, y: inner.y });
    }
    // Scroll horizontally so the cursor stays visible: walk back from the
    // cursor until the line is full.
    let cur = app.input.cursor();
    let avail = inner.width as usize - 1;
    let mut start = cur;
    let mut used = 0;
    while start > 0 {
        let w = width(&chars[start - 1].to_string());
        if used + w > avail {
            break;
        }
        used += w;
        start -= 1;
    }
    let visible: String = chars[start..].iter().collect();
    put(buf, inner, inner.x, inner.y, &visible, theme.base(mode));
    let before: String = chars[start..cur].iter().collect();
    let x = inner.x + (width(&before) as u16).min(inner.width - 1);
    editing.then_some(Position { x, y: inner.y })
}

pub(super) fn prediction(app: &App, buf: &mut Buffer, area: Rect) {
    let (theme, mode) = (app.theme(), app.color);
    let boxed = area.height > 1;
    let inner = if boxed { framed(app, buf, area, " Prediction ", false) } else { area };
    let pred = app.analysis.as_ref().and_then(|a| a.prediction.as_ref());
    let Some(p) = pred else {
        let msg = match (&app.info, &app.analysis) {
            (None, _) if app.load_error.is_some() => "prediction: no model (it failed to load)",
            (None, _) => "prediction: waiting for the model…",
            (Some(_), Some(_)) => "prediction: none (bare encoder, no classification head)",
            (Some(_), None) => "prediction: —",
        };
        put(buf, inner, inner.x, inner.y, msg, theme.muted(mode));
        return;
    };
    let bar_style = |top: bool| {
        let s = theme.block(if top { theme.ui.accent } else { theme.ui.bar }, mode);
        if top { s.add_modifier(Modifier::BOLD) } else { s }
    };
    if !boxed {
        // One line: "positive ████ 0.93 · negative ░ 0.07".
        let mut x = inner.x;
        let per = (inner.width as usize / p.labels.len().max(1)).max(8);
        for (i, (l, prob)) in p.labels.iter().zip(&p.probabilities).enumerate() {
            let top = i == p.index;
            let label = ellipsize(l, per.saturating_sub(12).max(3));
            let bar_w = per.saturating_sub(width(&label) + 8).min(10);
            let filled = (prob.clamp(0.0, 1.0) * bar_w as f32).round() as usize;
            let lstyle = if top { theme.accent(mode) } else { theme.base(mode) };
            x = put(buf, inner, x, inner.y, &label, lstyle);
            x = put(buf, inner, x, inner.y, " ", Style::default());
            x = put(buf, inner, x, inner.y, &"█".repeat(filled), bar_style(top));
            x = put(buf, inner, x, inner.y, &"░".repeat(bar_w - filled), theme.muted(mode));
            x = put(buf, inner, x, inner.y, &format!(" {prob:.2}  "), lstyle);
        }
        return;
    }
    let lw = p.labels.iter().map(|l| width(l)).max().unwrap_or(0).min(16);
    let bar_w = (inner.width as usize).saturating_sub(lw + 8);
    for (i, (l, prob)) in p.labels.iter().zip(&p.probabilities).enumerate().take(inner.height as usize) {
        let y = inner.y + i as u16;
        let top = i == p.index;
        let lstyle = if top { theme.accent(mode) } else { theme.base(mode) };
        let mut x = put(buf, inner, inner.x, y, &format!("{:<lw$} ", ellipsize(l, lw)), lstyle);
        let filled = (prob.clamp(0.0, 1.0) * bar_w as f32).round() as usize;
        x = put(buf, inner, x, y, &"█".repeat(filled), bar_style(top));
        x = put(buf, inner, x, y, &"░".repeat(bar_w - filled), theme.muted(mode));
        put(buf, inner, x, y, &format!(" {prob:.3}"), lstyle);
    }
}

const SPINNER: [&str; 4] = ["⠋", "⠙", "⠸", "⠴"];

pub(super) fn status_line(app: &App, buf: &mut Buffer, area: Rect) {
    let (theme, mode) = (app.theme(), app.color);
    let (badge, color) = match app.mode {
        Mode::Edit => (" EDIT ", theme.ui.edit),
        Mode::Nav => (" NAV ", theme.ui.nav),
    };
    let badge_style = match mode {
        ColorMode::NoColor => Style::default().add_modifier(Modifier::REVERSED | Modifier::BOLD),
        _ => Style::default().bg(crate::tui::theme::paint(color, mode)).fg(crate::tui::theme::paint(theme.ui.bg, mode)).add_modifier(Modifier::BOLD),
    };
    let mut x = put(buf, area, area.x, area.y, badge, badge_style);
    x = put(buf, area, x, area.y, " ", Style::default());
    let help = " ?:help ";
    let room = (area.right().saturating_sub(x) as usize).saturating_sub(width(help));
    let (text, style) = if let (Some(line), Some(f), None) = (app.distill_status(), app.distill_fraction(), app.notice.as_ref().filter(|n| n.error)) {
        // The gauge wins over info notices while a distillation runs.
        let bar = 10usize;
        let filled = ((f.clamp(0.0, 1.0) * bar as f32).round() as usize).min(bar);
        (format!("{}{} {line}", "█".repeat(filled), "░".repeat(bar - filled)), theme.accent(mode))
    } else if let Some(n) = &app.notice {
        (n.text.clone(), if n.error { theme.error(mode) } else { theme.accent(mode) })
    } else if let Some(e) = &app.load_error {
        (format!("model failed to load: {e}"), theme.error(mode))
    } else if let Some(info) = &app.info {
        let tokens = app.analysis.as_ref().map_or(0, |a| a.tokens.len());
        let latency = app.latency_ms.map_or("— ms".into(), |l| format!("{l:.0} ms"));
        // The file, its label when it says more, and the mark for another model's ExpNet.
        let expnet = match &info.explainer {
            Some(e) => {
                let label = e.label();
                let label = if label == "expnet" { String::new() } else { format!(" ({label})") };
                // A transfer ExpNet is made for other models; its label says so.
                let mark = if e.matches_model == Some(true) || e.is_transfer() { "" } else { " not trained for this model" };
                format!("{}{label}{mark}", short_path(&e.file))
            }
            None if app.distill_blocker().is_none() => "no expnet (D distils one)".into(),
            None => info.expnet.as_deref().map_or("no expnet", short_path).into(),
        };
        (format!("{} · {} · {} · {} tokens · {}", short_path(&info.model), expnet, info.device, tokens, latency), theme.base(mode))
    } else {
        (format!("{} loading model…", SPINNER[(app.ticks % 4) as usize]), theme.accent(mode))
    };
    put(buf, area, x, area.y, &ellipsize(&text, room), style);
    if area.width as usize > width(help) + 10 {
        put(buf, area, area.right() - width(help) as u16, area.y, help, theme.muted(mode));
    }
}

/// Last path component, so long model paths do not crowd the status line.
fn short_path(p: &str) -> &str {
    p.trim_end_matches('/').rsplit('/').next().unwrap_or(p)
}
