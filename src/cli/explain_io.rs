//! Output edges of `expnet explain`: the progress line on stderr, what a table shows
//! of a long or BPE-tokenised text, and a closed output pipe.

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::model::Encoding;

/// True when the error is a write to a closed pipe (`expnet explain … | head -1`).
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe))
}

/// The part of the text the model saw, and how many characters were left
/// out by truncation (0 when the whole text fits).
pub fn analysed_text(enc: &Encoding) -> (String, usize) {
    let total = enc.text.chars().count();
    if !enc.truncated {
        return (enc.text.clone(), 0);
    }
    let end = enc.tokens.iter().filter(|t| !t.special && t.sequence == 0).map(|t| t.end).max().unwrap_or(0).min(total);
    (enc.text.chars().take(end).collect(), total - end)
}

/// Each token as the user wrote it (the input slice its offsets cover),
/// with `##` before word continuations: byte-level BPE markers like `Ġ`
/// never show. Special tokens and pair texts keep the vocabulary spelling.
pub fn surface_texts(enc: &Encoding) -> Vec<String> {
    if enc.text_pair.is_some() {
        return enc.tokens.iter().map(|t| t.text.clone()).collect();
    }
    crate::tui::scores::units(&enc.text, &enc.tokens, false).into_iter().map(|u| u.text).collect()
}

struct State {
    /// Input line of the text being explained (corpus runs).
    line: Option<usize>,
    /// Texts explained so far.
    done: usize,
    drawn: bool,
    last: Option<Instant>,
}

/// Progress of a run on stderr: a line redrawn in place when stderr is a
/// terminal (for a corpus: the line reached, texts explained, rate, ETA when
/// the file's line count is known), otherwise (logs, CI) one line per
/// finished method at most every few seconds, and only once the run has
/// taken that long, so quick runs stay silent.
pub struct CliProgress {
    out: Mutex<Box<dyn Write + Send>>,
    tty: bool,
    /// A corpus run (`--input`) rather than one text.
    corpus: bool,
    /// Lines in the whole input, once counted (a regular file).
    total_lines: Option<Arc<OnceLock<usize>>>,
    methods: Vec<String>,
    start: Instant,
    /// Least time between two lines (redraws on a terminal).
    gap: Duration,
    state: Mutex<State>,
}

impl CliProgress {
    pub fn new(corpus: bool, total_lines: Option<Arc<OnceLock<usize>>>, methods: &[&str]) -> Self {
        let tty = std::io::stderr().is_terminal();
        let gap = match (tty, corpus) {
            (true, _) => Duration::from_millis(100),
            (false, false) => Duration::from_secs(2),
            (false, true) => Duration::from_secs(10),
        };
        Self::with(Box::new(std::io::stderr()), tty, gap, corpus, total_lines, methods)
    }

    pub fn with(
        out: Box<dyn Write + Send>,
        tty: bool,
        gap: Duration,
        corpus: bool,
        total_lines: Option<Arc<OnceLock<usize>>>,
        methods: &[&str],
    ) -> Self {
        Self {
            out: Mutex::new(out),
            tty,
            corpus,
            total_lines,
            methods: methods.iter().map(|s| s.to_string()).collect(),
            start: Instant::now(),
            gap,
            state: Mutex::new(State { line: None, done: 0, drawn: false, last: None }),
        }
    }

    /// The text on input line `line` (corpus runs) starts; `done` texts are finished.
    pub fn start_input(&self, line: Option<usize>, done: usize) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.line = line;
        st.done = done;
    }

    /// Method `m` (index into the method list) is `fraction` done.
    pub fn report(&self, m: usize, fraction: f32) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let elapsed = (now - self.start).as_secs_f64();
        let finished = fraction >= 1.0;
        let due = st.last.is_none_or(|t| now - t >= self.gap);
        let show = if self.tty { due } else { finished && due && elapsed >= self.gap.as_secs_f64() };
        if !show {
            return;
        }
        st.last = Some(now);
        let n = self.methods.len().max(1);
        let within = (m as f64 + fraction as f64) / n as f64;
        let total = self.total_lines.as_ref().and_then(|t| t.get().copied());
        let mut parts = Vec::new();
        let done = if self.corpus {
            let line = st.line.unwrap_or(0);
            parts.push(match total {
                Some(t) => format!("line {line}/{t}"),
                None => format!("line {line}"),
            });
            let rate = if st.done > 0 && elapsed > 0.0 { format!(" · {:.1}/s", st.done as f64 / elapsed) } else { String::new() };
            parts.push(format!("{} explained{rate}", st.done));
            total.map(|t| ((line.max(1) - 1) as f64 + within) / t.max(1) as f64)
        } else {
            Some(within)
        };
        let name = self.methods.get(m).map_or("?", String::as_str);
        let what = if finished { "done".to_string() } else { format!("{:>3.0}%", fraction * 100.0) };
        parts.push(format!("method {}/{n} {name} {what}", m + 1));
        parts.push(format!("{} elapsed", secs(elapsed)));
        match done {
            Some(d) if d > 0.0 && elapsed > 0.5 => parts.push(format!("ETA ~{}", secs(elapsed * (1.0 - d).max(0.0) / d))),
            Some(_) => parts.push("ETA …".to_string()),
            None => {}
        }
        let line = format!("expnet: {}", parts.join(" · "));
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        let _ = if self.tty { write!(out, "\r\x1b[2K{line}") } else { writeln!(out, "{line}") };
        let _ = out.flush();
        st.drawn = self.tty;
    }

    /// Removes the progress line (before results or notes are printed).
    pub fn clear(&self) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.drawn {
            let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
            let _ = write!(out, "\r\x1b[2K");
            let _ = out.flush();
            st.drawn = false;
        }
    }

    /// A closing line for a corpus run that showed progress (a terminal, or
    /// a log once the run took longer than the gap): texts, time, rate.
    pub fn finish(&self, done: usize) {
        self.clear();
        let elapsed = self.start.elapsed().as_secs_f64();
        if !self.corpus || !(self.tty || elapsed >= self.gap.as_secs_f64()) {
            return;
        }
        let rate = if elapsed > 0.0 { done as f64 / elapsed } else { 0.0 };
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        let _ = writeln!(out, "expnet: {done} texts explained in {} ({rate:.1}/s)", secs(elapsed));
    }
}

fn secs(s: f64) -> String {
    if s < 60.0 { format!("{s:.0} s") } else { format!("{}m{:02}s", (s / 60.0) as u64, (s % 60.0) as u64) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// A writer the test can read back.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    impl Shared {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    #[test]
    fn progress_on_a_terminal_redraws_one_line_and_clears_it() {
        let out = Shared::default();
        let p = CliProgress::with(Box::new(out.clone()), true, Duration::ZERO, false, None, &["attention", "lime"]);
        p.report(1, 0.5);
        let t = out.text();
        assert!(t.starts_with("\r\x1b[2K") && t.contains("method 2/2 lime  50%") && t.contains("ETA"), "{t:?}");
        assert!(!t.contains("line") && !t.contains('\n'), "one text: no line numbers; redrawn in place");
        p.clear();
        assert!(out.text().ends_with("\r\x1b[2K"));
    }

    #[test]
    fn corpus_progress_shows_line_count_rate_and_eta() {
        let out = Shared::default();
        let total = Arc::new(OnceLock::new());
        let p = CliProgress::with(Box::new(out.clone()), true, Duration::ZERO, true, Some(total.clone()), &["attention"]);
        p.start_input(Some(3), 2);
        p.report(0, 0.0);
        let t = out.text();
        assert!(t.contains("line 3 ·") && t.contains("2 explained") && !t.contains("ETA"), "no total yet, no ETA: {t:?}");
        total.set(40).unwrap();
        p.report(0, 1.0);
        let t = out.text();
        assert!(t.contains("line 3/40") && t.contains("ETA"), "{t:?}");
        p.finish(3);
        let t = out.text();
        assert!(t.ends_with("/s)\n") && t.contains("\r\x1b[2Kexpnet: 3 texts explained in "), "cleared, then a summary: {t:?}");
    }

    #[test]
    fn progress_in_a_log_is_one_line_per_finished_method_with_an_eta() {
        let out = Shared::default();
        let p = CliProgress::with(Box::new(out.clone()), false, Duration::ZERO, false, None, &["occlusion", "lime"]);
        p.report(0, 0.5);
        assert_eq!(out.text(), "", "no line for partial progress in a log");
        p.report(0, 1.0);
        let t = out.text();
        assert_eq!(t.lines().count(), 1, "{t}");
        assert!(t.contains("method 1/2 occlusion done") && t.contains("ETA"), "{t}");
        p.clear();
        assert!(!out.text().contains('\x1b'), "no escape codes in a log");
    }

    #[test]
    fn broken_pipe_is_recognised_through_context() {
        let e = anyhow::Error::from(std::io::Error::from(std::io::ErrorKind::BrokenPipe)).context("writing");
        assert!(is_broken_pipe(&e));
        assert!(!is_broken_pipe(&anyhow::anyhow!("other")));
    }
}
