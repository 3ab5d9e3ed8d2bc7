//! The hub download path end to end, against a hub-style HTTP server on
//! 127.0.0.1 that serves the fixture models: download, the cache layout,
//! revisions, an offline second load, and the errors for a missing repository,
//! a missing file and an interrupted download.

use expnet::model::{HubOptions, Model, resolve_hub_id_with};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

const COMMIT_MAIN: &str = "1111111111111111111111111111111111111111";
const COMMIT_V2: &str = "2222222222222222222222222222222222222222";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// A hub: `owner/name` → revision → (commit, file name → bytes).
type Repos = HashMap<String, HashMap<String, (String, HashMap<String, Vec<u8>>)>>;

struct Hub {
    url: String,
    requests: Arc<AtomicUsize>,
    /// When set, the next full download of model.safetensors stops half way.
    interrupt: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Hub {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.url.trim_start_matches("http://"));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn files_of(dir: &Path, names: &[&str]) -> HashMap<String, Vec<u8>> {
    names.iter().map(|n| (n.to_string(), std::fs::read(dir.join(n)).unwrap())).collect()
}

fn start_hub() -> Hub {
    let full = ["config.json", "model.safetensors", "tokenizer.json"];
    let mut repos: Repos = HashMap::new();
    let tiny = files_of(&fixture("tiny-bert"), &full);
    let v2 = files_of(&fixture("tiny-distilbert"), &full);
    let mut revs = HashMap::new();
    revs.insert("main".to_owned(), (COMMIT_MAIN.to_owned(), tiny.clone()));
    revs.insert(COMMIT_MAIN.to_owned(), (COMMIT_MAIN.to_owned(), tiny.clone()));
    revs.insert("v2".to_owned(), (COMMIT_V2.to_owned(), v2));
    repos.insert("acme/tiny".to_owned(), revs);
    let mut no_tok = tiny.clone();
    no_tok.remove("tokenizer.json");
    repos.insert("acme/no-tokenizer".to_owned(), HashMap::from([("main".to_owned(), (COMMIT_MAIN.to_owned(), no_tok))]));
    repos.insert("acme/flaky".to_owned(), HashMap::from([("main".to_owned(), (COMMIT_MAIN.to_owned(), tiny))]));

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let requests = Arc::new(AtomicUsize::new(0));
    let interrupt = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let repos = Arc::new(Mutex::new(repos));
    let (r, i, s) = (requests.clone(), interrupt.clone(), stop.clone());
    let thread = std::thread::spawn(move || {
        for conn in listener.incoming() {
            if s.load(Ordering::SeqCst) {
                break;
            }
            let Ok(conn) = conn else { continue };
            r.fetch_add(1, Ordering::SeqCst);
            let _ = serve(conn, &repos.lock().unwrap(), &i);
        }
    });
    Hub { url, requests, interrupt, stop, thread: Some(thread) }
}

/// Stable fake etag (FNV-1a), so equal content shares one blob.
fn etag(data: &[u8]) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in data {
        h = (h ^ *b as u64).wrapping_mul(0x100000001b3);
    }
    format!("{h:016x}{:08x}", data.len())
}

/// Answers one request as the hub's `/{repo}/resolve/{revision}/{file}` does (with ranges).
fn serve(mut conn: TcpStream, repos: &Repos, interrupt: &AtomicBool) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let path = line.split_whitespace().nth(1).unwrap_or("").to_owned();
    let mut range = None;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some(v) = h.to_ascii_lowercase().strip_prefix("range: bytes=") {
            let (a, b) = v.trim().split_once('-').unwrap();
            range = Some((a.parse::<usize>().unwrap(), b.parse::<usize>().ok()));
        }
    }
    let not_found = |conn: &mut TcpStream, code: &str| {
        write!(conn, "HTTP/1.1 404 Not Found\r\nX-Error-Code: {code}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    };
    let parts: Vec<&str> = path.trim_start_matches('/').splitn(5, '/').collect();
    if parts.len() != 5 || parts[2] != "resolve" {
        return not_found(&mut conn, "RepoNotFound");
    }
    let repo = format!("{}/{}", parts[0], parts[1]);
    let Some((commit, files)) = repos.get(&repo).and_then(|r| r.get(parts[3])) else {
        return not_found(&mut conn, "RepoNotFound");
    };
    let Some(data) = files.get(parts[4]) else {
        return not_found(&mut conn, "EntryNotFound");
    };
    let size = data.len();
    let (start, end) = match range {
        Some((a, Some(b))) => (a, b.min(size - 1)),
        Some((a, None)) => (a, size - 1),
        None => (0, size - 1),
    };
    let body = &data[start..=end];
    write!(
        conn,
        "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {start}-{end}/{size}\r\nETag: \"{}\"\r\nX-Repo-Commit: {commit}\r\nConnection: close\r\n\r\n",
        body.len(),
        etag(data)
    )?;
    let full_body = body.len() > 1;
    if full_body && parts[4] == "model.safetensors" && interrupt.swap(false, Ordering::SeqCst) {
        conn.write_all(&body[..body.len() / 2])?;
        conn.flush()?;
        return conn.shutdown(std::net::Shutdown::Both);
    }
    conn.write_all(body)

}

fn online(hub: &Hub) -> HubOptions {
    HubOptions { endpoint: hub.url.clone(), offline: false }
}

fn probabilities(dir: &Path, text: &str) -> Vec<f32> {
    let m = Model::load_dir(dir).unwrap();
    m.forward(&m.encode(text).unwrap()).unwrap().prediction.unwrap().probabilities
}

#[test]
fn downloads_into_the_hub_cache_layout_then_loads_offline() {
    let hub = start_hub();
    let cache = tempfile::tempdir().unwrap();
    let dir = resolve_hub_id_with("acme/tiny", cache.path(), &online(&hub)).unwrap();
    let repo = cache.path().join("models--acme--tiny");
    assert_eq!(dir, repo.join("snapshots").join(COMMIT_MAIN));
    assert_eq!(std::fs::read_to_string(repo.join("refs/main")).unwrap(), COMMIT_MAIN);
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        let served = std::fs::read(fixture("tiny-bert").join(f)).unwrap();
        assert_eq!(std::fs::read(dir.join(f)).unwrap(), served, "{f} differs from what was served");
        assert!(repo.join("blobs").join(etag(&served)).is_file(), "{f} has no blob");
    }
    let text = "the film was wonderful";
    assert_eq!(probabilities(&dir, text), probabilities(&fixture("tiny-bert"), text));

    // Second load: from the cache alone, with the server gone, online and offline.
    let served = hub.requests.load(Ordering::SeqCst);
    assert!(served >= 6, "expected metadata + body requests, saw {served}");
    drop(hub);
    let again = resolve_hub_id_with("acme/tiny", cache.path(), &HubOptions { endpoint: "http://127.0.0.1:9".into(), offline: false }).unwrap();
    assert_eq!(again, dir);
    let offline = HubOptions { endpoint: "http://127.0.0.1:9".into(), offline: true };
    assert_eq!(resolve_hub_id_with("acme/tiny", cache.path(), &offline).unwrap(), dir);
    let e = format!("{:#}", resolve_hub_id_with("acme/other", cache.path(), &offline).unwrap_err());
    assert!(e.contains("HF_HUB_OFFLINE") && e.contains("missing: config.json"), "{e}");
}

#[test]
fn revision_selects_its_own_snapshot() {
    let hub = start_hub();
    let cache = tempfile::tempdir().unwrap();
    let main = resolve_hub_id_with("acme/tiny", cache.path(), &online(&hub)).unwrap();
    let v2 = resolve_hub_id_with("acme/tiny@v2", cache.path(), &online(&hub)).unwrap();
    let repo = cache.path().join("models--acme--tiny");
    assert_eq!(v2, repo.join("snapshots").join(COMMIT_V2));
    assert_eq!(std::fs::read_to_string(repo.join("refs/v2")).unwrap(), COMMIT_V2);
    assert_eq!(Model::load_dir(&main).unwrap().labels().len(), 2);
    assert_eq!(Model::load_dir(&v2).unwrap().labels(), ["negative", "neutral", "positive"]);
    let pinned = resolve_hub_id_with(&format!("acme/tiny@{COMMIT_MAIN}"), cache.path(), &online(&hub)).unwrap();
    assert_eq!(pinned, main);
}

#[test]
fn missing_repository_and_missing_file_are_named() {
    let hub = start_hub();
    let cache = tempfile::tempdir().unwrap();
    let e = format!("{:#}", resolve_hub_id_with("acme/nope", cache.path(), &online(&hub)).unwrap_err());
    assert!(e.contains("repository acme/nope at revision main not found"), "{e}");
    let e = format!("{:#}", resolve_hub_id_with("acme/tiny@v9", cache.path(), &online(&hub)).unwrap_err());
    assert!(e.contains("revision v9 not found"), "{e}");
    let e = format!("{:#}", resolve_hub_id_with("acme/no-tokenizer", cache.path(), &online(&hub)).unwrap_err());
    assert!(e.contains("tokenizer.json: not found (HTTP 404)") && e.contains("vocab.txt: not found"), "{e}");
}

#[test]
fn interrupted_download_fails_clearly_and_resumes() {
    let hub = start_hub();
    let cache = tempfile::tempdir().unwrap();
    hub.interrupt.store(true, Ordering::SeqCst);
    let e = format!("{:#}", resolve_hub_id_with("acme/flaky", cache.path(), &online(&hub)).unwrap_err());
    assert!(e.contains("model.safetensors") && e.contains("resumes when run again"), "{e}");
    assert!(!hub.interrupt.load(Ordering::SeqCst), "the server did not interrupt");
    let dir = resolve_hub_id_with("acme/flaky", cache.path(), &online(&hub)).unwrap();
    let served = std::fs::read(fixture("tiny-bert").join("model.safetensors")).unwrap();
    assert_eq!(std::fs::read(dir.join("model.safetensors")).unwrap(), served);
    let text = "an unbelievably dull film";
    assert_eq!(probabilities(&dir, text), probabilities(&fixture("tiny-bert"), text));
}

/// The real command line: `HF_ENDPOINT` and `HF_HUB_CACHE` are honoured, and
/// `HF_HUB_OFFLINE=1` loads from the cache the first run filled.
#[test]
fn cli_downloads_from_hf_endpoint_then_runs_offline() {
    let hub = start_hub();
    let cache = tempfile::tempdir().unwrap();
    let run = |offline: bool| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_expnet"));
        cmd.args(["explain", "--model", "acme/tiny@v2", "--methods", "attention", "a clever film"])
            .env("HF_ENDPOINT", &hub.url)
            .env("HF_HUB_CACHE", cache.path())
            .env_remove("HF_HOME")
            .env_remove("TRANSFORMERS_OFFLINE");
        if offline {
            cmd.env("HF_HUB_OFFLINE", "1").env("HF_ENDPOINT", "http://127.0.0.1:9");
        } else {
            cmd.env_remove("HF_HUB_OFFLINE");
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "expnet failed: {}", String::from_utf8_lossy(&out.stderr));
        let line = String::from_utf8(out.stdout).unwrap();
        let v: serde_json::Value = serde_json::from_str(line.lines().next().unwrap()).unwrap();
        v
    };
    let first = run(false);
    let second = run(true);
    assert_eq!(first["model"], "acme/tiny@v2");
    assert_eq!(first["prediction"], second["prediction"]);
    assert!(cache.path().join("models--acme--tiny/snapshots").join(COMMIT_V2).join("config.json").is_file());
}
