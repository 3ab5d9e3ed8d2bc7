//! Turning `--model` into a folder: a local path, or a Hugging Face hub id
//! looked up in hf-hub's cache (`HF_HUB_CACHE`, `HF_HOME/hub`, or
//! `~/.cache/huggingface/hub`) and downloaded there when online, from
//! `HF_ENDPOINT` (default `https://huggingface.co`).

use anyhow::bail;
use hf_hub::{Cache, Repo, RepoType};
use std::path::{Path, PathBuf};

/// Files a model folder may need; the first group is required.
const REQUIRED: &[&str] = &["config.json"];
const TOKENIZER_FILES: &[&str] = &["tokenizer.json", "vocab.txt"];
const DEFAULT_ENDPOINT: &str = "https://huggingface.co";
const WEIGHT_FILES: &[&str] = &["model.safetensors", "pytorch_model.bin"];
const OPTIONAL: &[&str] = &["tokenizer_config.json"];

/// The hub cache folder as transformers and huggingface_hub compute it.
pub fn hub_cache_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("HF_HUB_CACHE").filter(|v| !v.is_empty()) {
        return PathBuf::from(p);
    }
    if let Some(p) = std::env::var_os("HF_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(p).join("hub");
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
    home.join(".cache").join("huggingface").join("hub")
}

/// Where and whether to download: `HF_ENDPOINT` and `HF_HUB_OFFLINE` by default.
#[derive(Clone, Debug)]
pub struct HubOptions {
    /// Hub base URL (a mirror, or a local server in tests).
    pub endpoint: String,
    /// Never touch the network; only the cache.
    pub offline: bool,
}

impl HubOptions {
    pub fn from_env() -> Self {
        let offline = ["HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"]
            .iter()
            .any(|k| std::env::var(k).is_ok_and(|v| matches!(v.as_str(), "1" | "true" | "TRUE" | "yes" | "ON" | "on")));
        let endpoint = std::env::var("HF_ENDPOINT")
            .ok()
            .filter(|e| !e.is_empty())
            .map(|e| e.trim_end_matches('/').to_owned())
            .unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned());
        Self { endpoint, offline }
    }
}

/// Looks like `owner/name` or `name[@revision]` rather than a path.
fn looks_like_hub_id(spec: &str) -> bool {
    let id = spec.split('@').next().unwrap_or(spec);
    !id.is_empty()
        && !id.starts_with('.')
        && !id.starts_with('/')
        && !id.starts_with('~')
        && id.matches('/').count() <= 1
        && id.chars().all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
}

/// Resolves a `--model` value to a local folder holding `config.json`.
pub fn resolve_model_dir(spec: &str) -> anyhow::Result<PathBuf> {
    let path = Path::new(spec);
    if path.is_dir() {
        if !path.join("config.json").is_file() {
            bail!(
                "{} has no config.json (hint: point --model at a Hugging Face model folder containing config.json, the weights and the tokenizer)",
                path.display()
            );
        }
        return Ok(path.to_path_buf());
    }
    if path.exists() {
        bail!("--model {spec} is a file, not a folder (hint: pass the folder that contains config.json)");
    }
    if !looks_like_hub_id(spec) {
        bail!("model folder {spec} does not exist (hint: check the path, or pass a hub id like owner/name)");
    }
    resolve_hub_id(spec, &hub_cache_dir())
}

/// Resolves a hub id through the cache at `cache_dir`, downloading missing files when online.
pub fn resolve_hub_id(spec: &str, cache_dir: &Path) -> anyhow::Result<PathBuf> {
    resolve_hub_id_with(spec, cache_dir, &HubOptions::from_env())
}

/// [`resolve_hub_id`] with explicit endpoint and offline setting.
pub fn resolve_hub_id_with(spec: &str, cache_dir: &Path, opts: &HubOptions) -> anyhow::Result<PathBuf> {
    let (id, revision) = match spec.split_once('@') {
        Some((id, rev)) => (id.to_owned(), rev.to_owned()),
        None => (spec.to_owned(), "main".to_owned()),
    };
    let repo = Repo::with_revision(id.clone(), RepoType::Model, revision.clone());
    let cache = Cache::new(cache_dir.to_path_buf()).repo(repo.clone());
    let cached = |name: &str| cache.get(name);

    let has_group = |group: &[&str]| group.iter().any(|f| cached(f).is_some());
    if REQUIRED.iter().all(|f| cached(f).is_some()) && has_group(TOKENIZER_FILES) && has_group(WEIGHT_FILES) {
        let config = cached("config.json").expect("checked above");
        return Ok(config.parent().expect("snapshot folder").to_path_buf());
    }
    let missing: Vec<&str> = REQUIRED
        .iter()
        .copied()
        .filter(|f| cached(f).is_none())
        .chain((!has_group(TOKENIZER_FILES)).then_some("tokenizer.json"))
        .chain((!has_group(WEIGHT_FILES)).then_some("model.safetensors"))
        .collect();
    if opts.offline {
        bail!(
            "model {spec} is not complete in the hub cache {} (missing: {}) and HF_HUB_OFFLINE is set (hint: unset HF_HUB_OFFLINE to download, or run `huggingface-cli download {id}` on a connected machine and copy the cache)",
            cache_dir.display(),
            missing.join(", ")
        );
    }
    download(&repo, cache_dir, &opts.endpoint).map_err(|e| {
        anyhow::anyhow!(
            "model {spec} is not complete in the hub cache {} and downloading it from {} failed: {} (hint: check the id, revision and network; an interrupted download resumes when run again; set HF_HUB_CACHE/HF_HOME to the cache you use, or pass a local folder)",
            cache_dir.display(),
            opts.endpoint,
            concise_chain(&e)
        )
    })
}

/// One hf-hub error as a short phrase; HTTP 404 becomes "not found".
fn describe(file: &str, e: &hf_hub::api::sync::ApiError) -> String {
    let text = e.to_string();
    if text.contains("status code 404") {
        format!("{file}: not found (HTTP 404)")
    } else if text.contains("status code 401") || text.contains("status code 403") {
        format!("{file}: access denied (gated or private repository; set HF_TOKEN)")
    } else {
        format!("{file}: {text}")
    }
}

/// An error chain with each cause said once: HTTP client errors repeat
/// their source inside their own message ("request error: dns failed:
/// dns failed"), which `{:#}` would print two or three times.
pub fn concise_chain(e: &anyhow::Error) -> String {
    let mut kept: Vec<String> = Vec::new();
    for msg in e.chain().map(|c| c.to_string()) {
        let msg = msg.trim().to_string();
        if msg.is_empty() || kept.iter().any(|k| k.contains(&msg)) {
            continue;
        }
        kept.retain(|k| !msg.contains(k.as_str()));
        kept.push(msg);
    }
    kept.join(": ")
}

fn download(repo: &Repo, cache_dir: &Path, endpoint: &str) -> anyhow::Result<PathBuf> {
    let api = hf_hub::api::sync::ApiBuilder::new()
        .with_cache_dir(cache_dir.to_path_buf())
        .with_endpoint(endpoint.to_owned())
        .with_progress(false)
        .build()?;
    let api = api.repo(repo.clone());
    let config = api.get("config.json").map_err(|e| {
        let what = describe("config.json", &e);
        if what.ends_with("(HTTP 404)") {
            anyhow::anyhow!("repository {} at revision {} not found ({what})", repo.url(), repo.revision())
        } else {
            anyhow::anyhow!(what)
        }
    })?;
    let first_ok = |group: &[&str]| -> anyhow::Result<()> {
        let mut errors = Vec::new();
        for f in group {
            match api.get(f) {
                Ok(_) => return Ok(()),
                Err(e) => errors.push(describe(f, &e)),
            }
        }
        anyhow::bail!("none of {} could be downloaded: {}", group.join(", "), errors.join("; "))
    };
    first_ok(TOKENIZER_FILES)?;
    first_ok(WEIGHT_FILES)?;
    for f in OPTIONAL {
        let _ = api.get(f);
    }
    Ok(config.parent().expect("snapshot folder").to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_causes_are_said_once() {
        #[derive(Debug)]
        struct Inner;
        impl std::fmt::Display for Inner {
            fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                write!(f, "Dns Failed: resolve huggingface.co")
            }
        }
        impl std::error::Error for Inner {}
        #[derive(Debug)]
        struct Outer(Inner);
        impl std::fmt::Display for Outer {
            fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                write!(f, "https://huggingface.co/x: Dns Failed: resolve huggingface.co")
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let e = anyhow::Error::new(Outer(Inner)).context("request error: https://huggingface.co/x: Dns Failed: resolve huggingface.co");
        let full = format!("{e:#}");
        assert_eq!(full.matches("Dns Failed").count(), 3, "the problem: {full}");
        let c = concise_chain(&e);
        assert_eq!(c.matches("Dns Failed").count(), 1, "{c}");
        assert!(c.starts_with("request error"), "{c}");
        let two = anyhow::anyhow!("disk full").context("cannot write");
        assert_eq!(concise_chain(&two), "cannot write: disk full");
    }

    #[test]
    fn hub_ids_and_paths_are_told_apart() {
        assert!(looks_like_hub_id("sentence-transformers/all-MiniLM-L6-v2"));
        assert!(looks_like_hub_id("bert-base-uncased@main"));
        assert!(!looks_like_hub_id("./models/x"));
        assert!(!looks_like_hub_id("/abs/path"));
        assert!(!looks_like_hub_id("a/b/c"));
    }

    #[test]
    fn resolves_from_a_cache_layout_built_here() {
        let tmp = tempfile::tempdir().unwrap();
        let snap = tmp.path().join("models--acme--tiny").join("snapshots").join("abc123");
        std::fs::create_dir_all(&snap).unwrap();
        for f in ["config.json", "tokenizer.json", "model.safetensors"] {
            std::fs::write(snap.join(f), b"{}").unwrap();
        }
        let refs = tmp.path().join("models--acme--tiny").join("refs");
        std::fs::create_dir_all(&refs).unwrap();
        std::fs::write(refs.join("main"), "abc123").unwrap();
        let dir = resolve_hub_id("acme/tiny", tmp.path()).unwrap();
        assert_eq!(dir, snap);
    }
}
