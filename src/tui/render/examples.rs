//! Pane 4: the examples browser, with human rationale words underlined and
//! F1@k of the current method against them.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::Modifier;

use super::{Hit, ellipsize, framed, put, width, window_start};
use crate::tui::app::App;
use crate::tui::scores::f1_at_k;

const F1_W: u16 = 8;

/// F1@k of `method` on example `i`: `Some(None)` when scored but undefined.
pub(crate) fn example_f1(app: &App, method: &str, i: usize) -> Option<Option<f64>> {
    let e = app.examples.get(i)?;
    let ws = app.example_scores.get(&(method.to_string(), i))?;
    Some(e.rationale.as_ref().and_then(|r| if ws.is_empty() { None } else { f1_at_k(ws, r) }))
}

/// First row and number of rows of the list; the last row holds the
/// legend of the F1 column when the pane has room for it.
fn list_rows(inner: Rect) -> (u16, usize) {
    let top = inner.y + 1;
    let legend = u16::from(inner.height >= 5);
    (top, inner.bottom().saturating_sub(top + legend) as usize)
}

const LEGEND: &str = "F1@k: k = rationale size · … scoring · ? could not score · — no rationale";

pub(super) fn render(app: &App, buf: &mut Buffer, area: Rect) {
    let (theme, mode) = (app.theme(), app.color);
    let method = app.method_label().unwrap_or("—").to_string();
    let inner = framed(app, buf, area, &format!(" 4 Examples · F1@k of {method} vs human rationale "), app.popup.is_none());
    if inner.height == 0 {
        return;
    }
    let scored: Vec<f64> = (0..app.examples.len()).filter_map(|i| example_f1(app, &method, i).flatten()).collect();
    let mean = if scored.is_empty() { "—".into() } else { format!("{:.2}", scored.iter().sum::<f64>() / scored.len() as f64) };
    let head = format!("mean F1@k {mean} over {} annotated · ↑↓ select · Enter load · m method", scored.len());
    put(buf, inner, inner.x, inner.y, &head, theme.muted(mode));
    let (top, rows) = list_rows(inner);
    if inner.height >= 5 {
        put(buf, inner, inner.x, inner.bottom() - 1, LEGEND, theme.muted(mode));
    }
    let first = window_start(app.example, rows, app.examples.len());
    for (i, e) in app.examples.iter().enumerate().skip(first).take(rows) {
        let y = top + (i - first) as u16;
        let sel = i == app.example;
        let base = if sel { theme.selected(mode) } else { theme.base(mode) };
        if sel {
            put(buf, inner, inner.x, y, &" ".repeat(inner.width as usize), base);
        }
        let f1 = match (e.rationale.is_some(), example_f1(app, &method, i)) {
            (false, _) => "   —".to_string(),
            (true, None) => "   …".to_string(),
            (true, Some(None)) => "   ?".to_string(),
            (true, Some(Some(v))) => format!("{v:>4.2}"),
        };
        let mut x = put(buf, inner, inner.x, y, &format!("{}{f1:<w$}", if sel { "▶" } else { " " }, w = F1_W as usize - 1), base);
        // Words, rationale ones underlined (and accented).
        for (wi, w, wx) in place_words(&e.text, x, inner.right()) {
            let r = e.rationale.as_ref().and_then(|r| r.get(wi).copied()).unwrap_or(false);
            let style = if r { base.add_modifier(Modifier::UNDERLINED).patch(theme.accent(mode)) } else { base };
            x = put(buf, inner, wx, y, &w, style);
        }
        let _ = x;
    }
    if app.examples.is_empty() {
        put(buf, inner, inner.x, top, "no examples", theme.muted(mode));
    }
}

/// (word index, shown text, x) of the words of one example line from `x`
/// to `right`: one space between words, and the first word that does not
/// fit whole is cut with `…` and ends the line (never glued to the next).
pub(crate) fn place_words(text: &str, mut x: u16, right: u16) -> Vec<(usize, String, u16)> {
    let mut out = Vec::new();
    for (wi, w) in text.split_whitespace().enumerate() {
        if wi > 0 {
            x += 1;
        }
        if x >= right {
            break;
        }
        let room = (right - x) as usize;
        if width(w) > room {
            out.push((wi, ellipsize(w, room), x));
            break;
        }
        out.push((wi, w.to_string(), x));
        x += width(w) as u16;
    }
    out
}

pub(super) fn hit(app: &App, area: Rect, _x: u16, y: u16) -> Option<Hit> {
    let inner = area.inner(ratatui::layout::Margin { horizontal: 1, vertical: 1 });
    let (top, rows) = list_rows(inner);
    let row = y.checked_sub(top)? as usize;
    let first = window_start(app.example, rows, app.examples.len());
    (row < rows && first + row < app.examples.len()).then_some(Hit::Example(first + row))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_at_the_line_end_are_never_glued() {
        let placed = place_words("I like one movie", 0, 12);
        let shown: Vec<(&str, u16)> = placed.iter().map(|(_, w, x)| (w.as_str(), *x)).collect();
        // "I like one " is 11 cells; "movie" does not fit whole: cut, separated by a space.
        assert_eq!(shown, [("I", 0), ("like", 2), ("one", 7), ("…", 11)]);
        for pair in placed.windows(2) {
            assert!(pair[1].2 > pair[0].2 + width(&pair[0].1) as u16, "a space between {pair:?}");
        }
        assert_eq!(place_words("comes in", 3, 9).iter().map(|p| p.1.as_str()).collect::<Vec<_>>(), ["comes"]);
        assert!(place_words("a b", 5, 5).is_empty());
    }
}
