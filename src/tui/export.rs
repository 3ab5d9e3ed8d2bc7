//! `e`: save the current explanation as JSON (the `explain` command's schema)
//! and as a self-contained HTML page (inline CSS, no scripts) to share.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};

use super::app::App;
use super::backend::Analysis;
use super::scores::{normalize, units};
use super::theme::Theme;

/// `YYYYMMDD-HHMMSS` in UTC (no date crate needed for one timestamp).
pub fn timestamp(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}{m:02}{d:02}-{:02}{:02}{:02}", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// The explanation of the current text as JSON, with every finished method.
pub fn to_json(app: &App, a: &Analysis) -> Value {
    let tokens: Vec<Value> = a.tokens.iter().map(|t| json!(crate::report::token_json(t))).collect();
    let prediction = a.prediction.as_ref().map_or(Value::Null, crate::report::prediction_json);
    let mut expl = Map::new();
    for m in &app.methods {
        if let Some(r) = app.result(&m.name) {
            expl.insert(m.name.clone(), crate::report::method_json(&r.scores, r.ms, r.forward_passes, &r.notes, r.label.as_deref(), r.explainer.as_ref()));
        }
    }
    json!({
        "text": a.text,
        "model": app.info.as_ref().map(|i| i.model.clone()),
        "tokens": tokens,
        "prediction": prediction,
        "explanations": expl,
        "truncated": a.truncated,
    })
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// A standalone page: one row of coloured tokens per method.
pub fn to_html(app: &App, a: &Analysis, theme: &Theme) -> String {
    let ui = &theme.ui;
    let mut h = String::new();
    h.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>expnet explanation</title>\n<style>\n");
    h.push_str(&format!(
        "body{{background:{};color:{};font-family:system-ui,sans-serif;margin:2em;max-width:70em}}\n\
         h1{{font-size:1.3em}} h2{{font-size:1em;margin:1.2em 0 .3em;color:{}}}\n\
         .tok{{display:inline-block;padding:.15em .35em;margin:.12em;border-radius:.25em;font-family:ui-monospace,monospace}}\n\
         .special{{opacity:.55;border:1px dashed {}}} .meta{{color:{};font-size:.9em}}\n",
        ui.bg.hex(),
        ui.fg.hex(),
        ui.accent.hex(),
        ui.border.hex(),
        ui.muted.hex()
    ));
    h.push_str("</style></head><body>\n");
    h.push_str(&format!("<h1>{}</h1>\n", esc(&a.text)));
    let model = app.info.as_ref().map_or("?".to_string(), |i| i.model.clone());
    let pred = a.prediction.as_ref().map_or("no classification head".to_string(), |p| {
        let probs: Vec<String> = p.labels.iter().zip(&p.probabilities).map(|(l, v)| format!("{} {:.3}", esc(l), v)).collect();
        format!("prediction <b>{}</b> ({})", esc(p.label()), probs.join(", "))
    });
    h.push_str(&format!("<p class=\"meta\">model {} · {pred}{}</p>\n", esc(&model), if a.truncated { " · input truncated" } else { "" }));
    let us = units(&a.text, &a.tokens, false);
    let special: Vec<bool> = a.tokens.iter().map(|t| t.special).collect();
    for m in &app.methods {
        let Some(r) = app.result(&m.name) else { continue };
        let raw: Vec<Option<f32>> = r.scores.iter().map(|v| Some(*v)).collect();
        let n = normalize(&raw, &special);
        h.push_str(&format!("<h2>{} <span class=\"meta\">{:.1} ms{}</span></h2>\n<div>", esc(&m.name), r.ms, if n.signed { " · signed scale" } else { "" }));
        for (i, u) in us.iter().enumerate() {
            let score = r.scores.get(i).copied().unwrap_or(f32::NAN);
            match n.values.get(i).copied().flatten() {
                Some(v) if !u.special => {
                    let bg = theme.heat_rgb(v, n.signed);
                    let fg = if bg.luminance() > 0.35 { "#000000" } else { "#ffffff" };
                    h.push_str(&format!(
                        "<span class=\"tok\" style=\"background:{};color:{fg}\" title=\"{score:.4}\">{}</span>",
                        bg.hex(),
                        esc(&u.text)
                    ));
                }
                _ => h.push_str(&format!("<span class=\"tok special\" title=\"{score:.4}\">{}</span>", esc(&u.text))),
            }
        }
        h.push_str("</div>\n");
    }
    h.push_str("<p class=\"meta\">exported by expnet</p>\n</body></html>\n");
    h
}

/// Writes `expnet-<timestamp>.json` and `.html` into `dir`; returns both paths.
pub fn export(app: &App, dir: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    let a = app.analysis.as_ref().ok_or_else(|| anyhow::anyhow!("nothing to export yet: type a sentence first"))?;
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let base = format!("expnet-{}", timestamp(secs));
    // Two exports in the same second get a numeric suffix instead of overwriting.
    let mut stem = base.clone();
    let mut n = 2;
    while dir.join(format!("{stem}.json")).exists() || dir.join(format!("{stem}.html")).exists() {
        stem = format!("{base}-{n}");
        n += 1;
    }
    let jp = dir.join(format!("{stem}.json"));
    let hp = dir.join(format!("{stem}.html"));
    let json = serde_json::to_string_pretty(&to_json(app, a))?;
    std::fs::write(&jp, json).map_err(|e| anyhow::anyhow!("cannot write {}: {e} (is the directory writable?)", jp.display()))?;
    std::fs::write(&hp, to_html(app, a, app.theme())).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", hp.display()))?;
    Ok((jp, hp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_utc_calendar_dates() {
        assert_eq!(timestamp(0), "19700101-000000");
        assert_eq!(timestamp(951_782_400), "20000229-000000");
        assert_eq!(timestamp(1_700_000_000), "20231114-221320");
    }

    /// The export is `expnet explain`'s JSON: same keys, same per-method
    /// fields (forward passes, notes such as IG's completeness gap).
    #[test]
    fn export_json_matches_the_explain_schema() {
        use crate::explain::Explanation;
        use crate::report::{TimedExplanation, report_json};
        let mut h = crate::tui::tests::Harness::new();
        h.enter_text("a great film");
        let notes = vec![("completeness_gap".to_string(), 0.25)];
        if let Some(crate::tui::app::Slot::Done(r)) = h.app.results.get_mut("expnet") {
            r.forward_passes = 3;
            r.notes = notes.clone();
            r.label = Some("expnet≈occlusion".into());
            r.explainer = Some(json!({"teacher": "occlusion"}));
        }
        let a = h.app.analysis.clone().unwrap();
        let got = to_json(&h.app, &a);
        let enc = crate::model::Encoding {
            text: a.text.clone(),
            text_pair: None,
            ids: a.tokens.iter().map(|t| t.id).collect(),
            type_ids: vec![0; a.tokens.len()],
            tokens: a.tokens.clone(),
            truncated: a.truncated,
        };
        let timed: Vec<TimedExplanation> = h
            .app
            .methods
            .iter()
            .filter_map(|m| h.app.result(&m.name))
            .map(|r| TimedExplanation {
                method: r.method.clone(),
                label: r.label.clone().unwrap_or_else(|| r.method.clone()),
                explainer: r.explainer.clone(),
                explanation: Explanation { scores: r.scores.clone(), forward_passes: r.forward_passes, notes: r.notes.clone() },
                ms: r.ms,
            })
            .collect();
        let model = h.app.info.as_ref().unwrap().model.clone();
        let want = report_json(&model, &enc, a.prediction.as_ref(), &timed, None);
        assert_eq!(got, want);
        assert_eq!(got["explanations"]["expnet"]["forward_passes"], 3);
        assert_eq!(got["explanations"]["expnet"]["completeness_gap"], 0.25);
        assert_eq!(got["explanations"]["expnet"]["explainer"]["teacher"], "occlusion");
        assert_eq!(got["explanations"]["expnet"]["label"], "expnet≈occlusion");
    }

    #[test]
    fn html_escapes_text() {
        assert_eq!(esc("<b>\"x\" & y</b>"), "&lt;b&gt;&quot;x&quot; &amp; y&lt;/b&gt;");
    }
}
