//! Input and output edges of `expnet explain`: reading input lines (with
//! file:line for bad bytes), the progress line on stderr, what a table shows
//! of a long or BPE-tokenised text, and a closed output pipe.

use std::io::{IsTerminal, Read, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::model::Encoding;

/// True when the error is a write to a closed pipe (`expnet explain … | head -1`).
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe))
}

/// Lines of `--input SPEC` (`-` = standard input). Invalid UTF-8 fails
/// with the file and line (and column) of the first bad byte rather than
/// rejecting the whole file without saying where.
pub fn read_lines(spec: &str) -> anyhow::Result<Vec<String>> {
    let (name, bytes) = if spec == "-" {
        let mut b = Vec::new();
        std::io::stdin().lock().read_to_end(&mut b).map_err(|e| anyhow::anyhow!("cannot read standard input: {e}"))?;
        ("<stdin>".to_string(), b)
    } else {
        let b = std::fs::read(spec).map_err(|e| anyhow::anyhow!("cannot read input file {spec}: {e} (hint: one text per line)"))?;
        (spec.to_string(), b)
    };
    decode_lines(&name, &bytes)
}

/// Splits bytes into lines (LF or CRLF, a leading BOM dropped), decoding each as UTF-8.
pub fn decode_lines(name: &str, bytes: &[u8]) -> anyhow::Result<Vec<String>> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut out = Vec::new();
    for (i, raw) in bytes.split(|b| *b == b'\n').enumerate() {
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        match std::str::from_utf8(raw) {
            Ok(s) => out.push(s.to_string()),
            Err(e) => {
                let at = e.valid_up_to();
                let col = String::from_utf8_lossy(&raw[..at]).chars().count() + 1;
                anyhow::bail!(
                    "{name}:{}:{col}: not valid UTF-8 (byte 0x{:02x}) (hint: convert the file to UTF-8, e.g. iconv -f latin1 -t utf-8 {name})",
                    i + 1,
                    raw[at]
                );
            }
        }
    }
    if bytes.ends_with(b"\n") {
        out.pop();
    }
    Ok(out)
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
    input: usize,
    drawn: bool,
    last: Option<Instant>,
}

/// Per-method progress of a run on stderr: a line redrawn in place when
/// stderr is a terminal, otherwise (logs, CI) one line with an ETA per
/// finished method, and only once the run has taken a few seconds, so
/// quick runs stay silent.
pub struct CliProgress {
    out: Mutex<Box<dyn Write + Send>>,
    tty: bool,
    inputs: usize,
    methods: Vec<String>,
    start: Instant,
    /// Least time between two lines (redraws on a terminal).
    gap: Duration,
    state: Mutex<State>,
}

impl CliProgress {
    pub fn new(inputs: usize, methods: &[&str]) -> Self {
        let tty = std::io::stderr().is_terminal();
        let gap = if tty { Duration::from_millis(100) } else { Duration::from_secs(2) };
        Self::with(Box::new(std::io::stderr()), tty, gap, inputs, methods)
    }

    pub fn with(out: Box<dyn Write + Send>, tty: bool, gap: Duration, inputs: usize, methods: &[&str]) -> Self {
        Self {
            out: Mutex::new(out),
            tty,
            inputs,
            methods: methods.iter().map(|s| s.to_string()).collect(),
            start: Instant::now(),
            gap,
            state: Mutex::new(State { input: 0, drawn: false, last: None }),
        }
    }

    pub fn start_input(&self, input: usize) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).input = input;
    }

    /// Method `m` (index into the method list) is `fraction` done.
    pub fn report(&self, m: usize, fraction: f32) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let elapsed = now - self.start;
        let finished = fraction >= 1.0;
        let due = st.last.is_none_or(|t| now - t >= self.gap);
        let show = if self.tty { due } else { finished && due && elapsed >= self.gap };
        if !show {
            return;
        }
        st.last = Some(now);
        let n = self.methods.len().max(1);
        let done = (st.input as f64 + (m as f64 + fraction as f64) / n as f64) / self.inputs.max(1) as f64;
        let eta = if done > 0.0 && elapsed.as_secs_f64() > 0.5 {
            format!("ETA ~{}", secs(elapsed.as_secs_f64() * (1.0 - done) / done))
        } else {
            "ETA …".to_string()
        };
        let name = self.methods.get(m).map_or("?", String::as_str);
        let what = if finished { "done".to_string() } else { format!("{:>3.0}%", fraction * 100.0) };
        let line = format!(
            "expnet: input {}/{} · method {}/{} {name} {what} · {} elapsed · {eta}",
            st.input + 1,
            self.inputs,
            m + 1,
            n,
            secs(elapsed.as_secs_f64())
        );
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
    fn invalid_utf8_names_file_line_and_column() {
        let e = decode_lines("in.txt", b"good line\r\nfine\nca\xffff\n").unwrap_err().to_string();
        assert!(e.starts_with("in.txt:3:3: not valid UTF-8 (byte 0xff)"), "{e}");
        assert!(e.contains("hint"));
        assert_eq!(decode_lines("x", b"\xEF\xBB\xBFa\r\nb\n").unwrap(), ["a", "b"], "BOM and CRLF dropped");
        assert_eq!(decode_lines("x", b"a\n\nb").unwrap(), ["a", "", "b"]);
    }

    #[test]
    fn progress_on_a_terminal_redraws_one_line_and_clears_it() {
        let out = Shared::default();
        let p = CliProgress::with(Box::new(out.clone()), true, Duration::ZERO, 2, &["attention", "lime"]);
        p.start_input(1);
        p.report(1, 0.5);
        let t = out.text();
        assert!(t.starts_with("\r\x1b[2K") && t.contains("input 2/2 · method 2/2 lime  50%"), "{t:?}");
        assert!(!t.contains('\n'), "redrawn in place");
        p.clear();
        assert!(out.text().ends_with("\r\x1b[2K"));
    }

    #[test]
    fn progress_in_a_log_is_one_line_per_finished_method_with_an_eta() {
        let out = Shared::default();
        let p = CliProgress::with(Box::new(out.clone()), false, Duration::ZERO, 1, &["occlusion", "lime"]);
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
