//! The corpus side of `expnet explain --input`: lines read by a background
//! thread into a bounded queue (memory stays bounded however long the file
//! is), `--shard K/N` splitting by line number, and `--batch-size` parsing.
//!
//! Lines are numbered from 1 counting every line, empty ones included, as
//! editors, `sed -n` and the file:line of errors do. Shard K of N takes lines
//! K, K+N, K+2N, … — line L belongs to shard ((L − 1) mod N) + 1 — so the
//! shards are disjoint, cover the file, and depend on nothing but N.

use std::io::{BufRead, BufReader, Read};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TryRecvError, sync_channel};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Texts per forward pass when `--batch-size` is not given (measured: see
/// docs/PERFORMANCE.md "Corpus runs").
pub const DEFAULT_BATCH_SIZE: usize = 16;

/// `--batch-size N`: a whole number ≥ 1.
pub fn parse_batch_size(s: Option<&str>) -> anyhow::Result<usize> {
    let Some(s) = s else { return Ok(DEFAULT_BATCH_SIZE) };
    match s.trim().parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => anyhow::bail!(
            "--batch-size must be a whole number of texts ≥ 1, got \"{s}\" (hint: --batch-size {DEFAULT_BATCH_SIZE}, the default; 1 explains one text at a time)"
        ),
    }
}

/// `--shard K/N`: this run explains shard K (1-based) of N.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    pub fn parse(s: &str) -> anyhow::Result<Self> {
        let hint = "hint: --shard K/N with 1 ≤ K ≤ N, e.g. --shard 1/4 … --shard 4/4, or --shard $((SLURM_ARRAY_TASK_ID+1))/$SLURM_ARRAY_TASK_COUNT";
        let Some((k, n)) = s.split_once('/') else {
            anyhow::bail!("--shard \"{s}\" is not of the form K/N ({hint})");
        };
        let (Ok(index), Ok(count)) = (k.trim().parse::<usize>(), n.trim().parse::<usize>()) else {
            anyhow::bail!("--shard \"{s}\": K and N must be whole numbers ({hint})");
        };
        anyhow::ensure!(count >= 1, "--shard \"{s}\": N must be at least 1 ({hint})");
        anyhow::ensure!((1..=count).contains(&index), "--shard \"{s}\": K must be between 1 and N={count} ({hint})");
        Ok(Self { index, count })
    }

    /// Whether line `line` (1-based, every line counted) belongs to this shard.
    pub fn takes(&self, line: usize) -> bool {
        (line - 1) % self.count + 1 == self.index
    }
}

/// One non-empty input line of this shard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    /// 1-based, counting every line of the input (empty ones and other shards' too).
    pub number: usize,
    pub text: String,
}

enum Msg {
    Line(Line),
    Error(anyhow::Error),
    /// End of input: lines read in all, and how many of them were non-empty (all shards).
    End { lines: usize, non_empty: usize },
}

/// Totals known once the input has been read to its end.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub lines: usize,
    pub non_empty: usize,
}

/// Lines of `--input`, read ahead by a thread into a queue of bounded length.
pub struct LineSource {
    pub name: String,
    /// A regular file (not a pipe or terminal): batches are filled to the full size.
    pub regular_file: bool,
    rx: Receiver<Msg>,
    pending: Option<Msg>,
    totals: Option<Totals>,
}

impl LineSource {
    /// Opens `spec` (`-` = standard input) and starts reading; a file that
    /// cannot be opened fails here, before any model loads.
    pub fn open(spec: &str, shard: Option<Shard>, queue: usize) -> anyhow::Result<Self> {
        let (name, regular_file, reader): (String, bool, Box<dyn Read + Send>) = if spec == "-" {
            ("<stdin>".into(), false, Box::new(std::io::stdin()))
        } else {
            let f = std::fs::File::open(spec).map_err(|e| anyhow::anyhow!("cannot read input file {spec}: {e} (hint: one text per line)"))?;
            let meta = f.metadata().map_err(|e| anyhow::anyhow!("cannot read input file {spec}: {e}"))?;
            anyhow::ensure!(!meta.is_dir(), "input {spec} is a folder (hint: --input FILE with one text per line, or - for standard input)");
            (spec.to_string(), meta.is_file(), Box::new(f))
        };
        Ok(Self::from_reader(name, regular_file, reader, shard, queue))
    }

    /// A source over any reader (tests use byte slices).
    pub fn from_reader(name: String, regular_file: bool, reader: Box<dyn Read + Send>, shard: Option<Shard>, queue: usize) -> Self {
        let (tx, rx) = sync_channel(queue.max(1));
        let thread_name = name.clone();
        std::thread::Builder::new()
            .name("expnet-input".into())
            .spawn(move || read_into(&thread_name, reader, shard, &tx))
            .expect("spawn the input reader thread");
        Self { name, regular_file, rx, pending: None, totals: None }
    }

    /// Totals of the whole input, once its end has been reached.
    pub fn totals(&self) -> Option<Totals> {
        self.totals
    }

    /// The next line, waiting for it; `None` at the end of the input.
    pub fn next_line(&mut self) -> anyhow::Result<Option<Line>> {
        let msg = match self.pending.take() {
            Some(m) => m,
            None => self.rx.recv().unwrap_or(Msg::End { lines: 0, non_empty: 0 }),
        };
        self.take(msg)
    }

    /// The next line only if it has already been read (a pipe whose writer
    /// is waiting for our answer gets it now instead of after a full batch).
    pub fn ready_line(&mut self) -> anyhow::Result<Option<Line>> {
        let msg = match self.pending.take() {
            Some(m) => m,
            None => match self.rx.try_recv() {
                Ok(m) => m,
                Err(TryRecvError::Empty) => return Ok(None),
                Err(TryRecvError::Disconnected) => Msg::End { lines: 0, non_empty: 0 },
            },
        };
        self.take(msg)
    }

    /// Like [`Self::ready_line`], but waits up to `wait` for a line in flight.
    pub fn line_within(&mut self, wait: Duration) -> anyhow::Result<Option<Line>> {
        if self.pending.is_none() {
            match self.rx.recv_timeout(wait) {
                Ok(m) => self.pending = Some(m),
                Err(RecvTimeoutError::Timeout) => return Ok(None),
                Err(RecvTimeoutError::Disconnected) => {}
            }
        }
        self.ready_line()
    }

    /// Whether the end of the input has been reached.
    pub fn at_end(&self) -> bool {
        self.totals.is_some()
    }

    fn take(&mut self, msg: Msg) -> anyhow::Result<Option<Line>> {
        match msg {
            Msg::Line(l) => Ok(Some(l)),
            Msg::Error(e) => {
                // Keep failing on later calls too: the reader stopped there.
                self.pending = Some(Msg::Error(anyhow::anyhow!("{e}")));
                Err(e)
            }
            Msg::End { lines, non_empty } => {
                if self.totals.is_none() {
                    self.totals = Some(Totals { lines, non_empty });
                }
                self.pending = Some(Msg::End { lines, non_empty });
                Ok(None)
            }
        }
    }
}

/// The reader thread: splits lines (LF or CRLF, a leading BOM dropped),
/// decodes each as UTF-8, drops empty lines and other shards' lines, and
/// stops at the first error or when nobody listens any more.
fn read_into(name: &str, reader: Box<dyn Read + Send>, shard: Option<Shard>, tx: &SyncSender<Msg>) {
    let mut reader = BufReader::with_capacity(1 << 16, reader);
    let mut raw = Vec::new();
    let (mut lines, mut non_empty) = (0usize, 0usize);
    loop {
        raw.clear();
        match reader.read_until(b'\n', &mut raw) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                let _ = tx.send(Msg::Error(anyhow::anyhow!("cannot read {name} after line {lines}: {e}")));
                return;
            }
        }
        lines += 1;
        let mut bytes = raw.as_slice();
        if lines == 1 {
            bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        }
        bytes = bytes.strip_suffix(b"\n").unwrap_or(bytes);
        bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
        let text = match decode_line(name, lines, bytes) {
            Ok(t) => t,
            Err(e) => {
                let _ = tx.send(Msg::Error(e));
                return;
            }
        };
        if text.trim().is_empty() {
            continue;
        }
        non_empty += 1;
        if shard.is_some_and(|s| !s.takes(lines)) {
            continue;
        }
        if tx.send(Msg::Line(Line { number: lines, text })).is_err() {
            return;
        }
    }
    let _ = tx.send(Msg::End { lines, non_empty });
}

/// One line as UTF-8, or an error naming file:line:column of the first bad byte.
pub fn decode_line(name: &str, number: usize, raw: &[u8]) -> anyhow::Result<String> {
    match std::str::from_utf8(raw) {
        Ok(s) => Ok(s.to_string()),
        Err(e) => {
            let at = e.valid_up_to();
            let col = String::from_utf8_lossy(&raw[..at]).chars().count() + 1;
            anyhow::bail!(
                "{name}:{number}:{col}: not valid UTF-8 (byte 0x{:02x}) (hint: convert the file to UTF-8, e.g. iconv -f latin1 -t utf-8 {name})",
                raw[at]
            )
        }
    }
}

/// Lines in a regular file (a final line without newline counted), read in
/// chunks in the background so the progress line can show an ETA without
/// delaying the first result. Empty when counting fails.
pub fn count_lines_in_background(path: &str) -> Arc<OnceLock<usize>> {
    let out = Arc::new(OnceLock::new());
    let (path, slot) = (path.to_string(), out.clone());
    let _ = std::thread::Builder::new().name("expnet-count".into()).spawn(move || {
        let Ok(mut f) = std::fs::File::open(&path) else { return };
        let mut buf = vec![0u8; 1 << 20];
        let (mut n, mut last) = (0usize, b'\n');
        loop {
            match f.read(&mut buf) {
                Ok(0) => break,
                Ok(k) => {
                    n += buf[..k].iter().filter(|&&b| b == b'\n').count();
                    last = buf[k - 1];
                }
                Err(_) => return,
            }
        }
        let _ = slot.set(n + usize::from(last != b'\n'));
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_lines(bytes: &'static [u8], shard: Option<Shard>) -> (anyhow::Result<Vec<Line>>, Option<Totals>) {
        let mut src = LineSource::from_reader("in.txt".into(), true, Box::new(bytes), shard, 2);
        let mut out = Vec::new();
        loop {
            match src.next_line() {
                Ok(Some(l)) => out.push(l),
                Ok(None) => return (Ok(out), src.totals()),
                Err(e) => return (Err(e), src.totals()),
            }
        }
    }

    #[test]
    fn invalid_utf8_names_file_line_and_column() {
        let (r, _) = all_lines(b"good line\r\nfine\nca\xffff\n", None);
        let e = r.unwrap_err().to_string();
        assert!(e.starts_with("in.txt:3:3: not valid UTF-8 (byte 0xff)"), "{e}");
        assert!(e.contains("hint"));
    }

    #[test]
    fn bom_crlf_and_empty_lines() {
        let (r, totals) = all_lines(b"\xEF\xBB\xBFa\r\n\n  \nb", None);
        let got: Vec<(usize, String)> = r.unwrap().into_iter().map(|l| (l.number, l.text)).collect();
        assert_eq!(got, [(1, "a".to_string()), (4, "b".to_string())], "numbers count empty lines");
        assert_eq!(totals, Some(Totals { lines: 4, non_empty: 2 }));
    }

    #[test]
    fn shards_are_disjoint_and_cover_the_lines() {
        let text: &'static [u8] = b"l1\nl2\n\nl4\nl5\nl6\nl7\n\nl9\nl10\nl11\n";
        let (all, _) = all_lines(text, None);
        let all: Vec<usize> = all.unwrap().iter().map(|l| l.number).collect();
        for n in 1..=12 {
            let mut seen = Vec::new();
            for k in 1..=n {
                let (got, totals) = all_lines(text, Some(Shard { index: k, count: n }));
                let got = got.unwrap();
                assert!(got.iter().all(|l| (l.number - 1) % n == k - 1), "shard {k}/{n}: {got:?}");
                assert_eq!(totals.unwrap().non_empty, all.len(), "totals count every shard");
                seen.extend(got.iter().map(|l| l.number));
            }
            seen.sort_unstable();
            assert_eq!(seen, all, "{n} shards cover every non-empty line exactly once");
        }
    }

    #[test]
    fn shard_and_batch_size_values() {
        assert_eq!(Shard::parse("2/3").unwrap(), Shard { index: 2, count: 3 });
        assert_eq!(Shard::parse(" 1 / 1 ").unwrap(), Shard { index: 1, count: 1 });
        for bad in ["0/3", "4/3", "1/0", "0/0", "a/3", "1/b", "3", "", "-1/3", "1/3/4"] {
            let e = Shard::parse(bad).unwrap_err().to_string();
            assert!(e.contains("--shard") && e.contains("hint") && !e.contains('\n'), "{bad}: {e}");
        }
        assert_eq!(parse_batch_size(None).unwrap(), DEFAULT_BATCH_SIZE);
        assert_eq!(parse_batch_size(Some("1")).unwrap(), 1);
        for bad in ["0", "-2", "x", "1.5", ""] {
            let e = parse_batch_size(Some(bad)).unwrap_err().to_string();
            assert!(e.contains("--batch-size") && e.contains("hint"), "{bad}: {e}");
        }
    }

    #[test]
    fn line_count_of_a_file() {
        let dir = tempfile::tempdir().unwrap();
        for (body, want) in [(&b"a\nb\n"[..], 2), (b"a\nb", 2), (b"", 0), (b"\n\n\n", 3)] {
            let p = dir.path().join("f.txt");
            std::fs::write(&p, body).unwrap();
            let c = count_lines_in_background(p.to_str().unwrap());
            let t0 = std::time::Instant::now();
            while c.get().is_none() && t0.elapsed() < Duration::from_secs(5) {
                std::thread::sleep(Duration::from_millis(5));
            }
            assert_eq!(c.get(), Some(&want), "{body:?}");
        }
    }
}
