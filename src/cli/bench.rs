//! `expnet bench`: milliseconds and forward passes per explanation for every
//! method at 8 / 32 / 128 tokens, next to the Python stack measured by
//! `scripts/bench_python.py` in the same run (ratios printed when given `--peer`).

use crate::explain::{Attribution, CancelToken, ExplainInput, Progress, is_cancelled};
use crate::model::Model;
use clap::Args;
use std::time::Instant;

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Model folder (default: the embedded classifier).
    #[arg(long)]
    pub model: Option<String>,
    /// ExpNet file (default: the embedded one when it fits).
    #[arg(long)]
    pub expnet: Option<String>,
    /// Comma-separated token lengths, specials included.
    #[arg(long, default_value = "8,32,128")]
    pub lengths: String,
    /// Comma-separated methods, or `all`.
    #[arg(long, default_value = "all")]
    pub methods: String,
    /// Timed repeats per (method, length); the median is reported.
    #[arg(long, default_value_t = 5)]
    pub repeats: usize,
    /// Samples for LIME and KernelSHAP (default: their own defaults). Set it to
    /// the Python side's `--lime-samples`/`--shap-samples` for a matched comparison;
    /// KernelSHAP then samples (no exact enumeration) N coalitions in total.
    #[arg(long)]
    pub samples: Option<usize>,
    /// JSON written by `scripts/bench_python.py --json` on the same machine.
    #[arg(long)]
    pub peer: Option<String>,
    /// Encoder kernels: `fused` (default: the hand-written forward and backward
    /// passes, fused custom ops wherever candle's graph still runs), `graph` (the
    /// fused ops inside candle's graph, nothing hand-written), `candle` (candle's elementary
    /// ops and candle-nn's Linear), `both` (= `fused,candle`), or a comma list of
    /// these: the first fills the main columns, each other one alternates with
    /// it in every repeat (same run, same load) and adds its ms and the speed-up.
    #[arg(long, default_value = "fused")]
    pub kernels: String,
}

/// The CPU's name from `/proc/cpuinfo`, with its family and model numbers:
/// virtual machines often show only a brand ("AMD EPYC"), and the numbers
/// tell the generations apart (family 25 model 1 is a Zen 3, model 17 a Zen 4).
fn cpu_name(cpuinfo: &str) -> Option<String> {
    let field = |key: &str| {
        cpuinfo.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == key).then(|| v.trim().to_owned())
        })
    };
    let name = field("model name")?;
    Some(match (field("cpu family"), field("model")) {
        (Some(f), Some(m)) => format!("{name}, family {f} model {m}"),
        _ => name,
    })
}

/// The CPU and its vector extensions, for the header of every table.
pub fn machine_line() -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| cpu_name(&c))
        .unwrap_or_else(|| std::env::consts::ARCH.to_owned());
    #[allow(unused_mut)]
    let mut ext: Vec<&str> = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        for (name, on) in [
            ("sse4.2", has!("sse4.2")),
            ("avx", has!("avx")),
            ("avx2", has!("avx2")),
            ("fma", has!("fma")),
            ("avx512f", has!("avx512f")),
            ("avx512bw", has!("avx512bw")),
            ("avx512vl", has!("avx512vl")),
        ] {
            if on {
                ext.push(name);
            }
        }
    }
    let env = |k: &str| std::env::var(k).unwrap_or_else(|_| "unset".into());
    format!(
        "CPU: {model} ({} logical); vector extensions: {}; rayon threads {} (RAYON_NUM_THREADS={}); CANDLE_NUM_THREADS={}; CANDLE_BARRIER_POOL_SPIN_LIMIT={}",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        if ext.is_empty() { "none detected".to_owned() } else { ext.join(" ") },
        rayon::current_num_threads(),
        env("RAYON_NUM_THREADS"),
        env("CANDLE_NUM_THREADS"),
        env("CANDLE_BARRIER_POOL_SPIN_LIMIT"),
    )
}

/// Same filler as scripts/bench_python.py, so both sides explain the same text.
const FILLER: &str = "the film was good and the story was great but the end was too long so i think it \
was a very nice movie with a bad part in the middle and some good music at the end \
of the day the actors were fine and the plot made sense most of the time";

/// A text of exactly `len` tokens (specials included), greedily word by word.
pub fn text_of_length(model: &Model, len: usize) -> anyhow::Result<String> {
    let words: Vec<&str> = FILLER.split_whitespace().collect();
    let mut text = String::new();
    let mut i = 0;
    while model.encode(&text)?.len() < len {
        let candidate = if text.is_empty() { words[i % words.len()].to_string() } else { format!("{text} {}", words[i % words.len()]) };
        if model.encode(&candidate)?.len() <= len {
            text = candidate;
        } else {
            let dot = format!("{text} .");
            anyhow::ensure!(model.encode(&dot)?.len() <= len, "cannot build a text of {len} tokens");
            text = dot;
        }
        i += 1;
    }
    Ok(text)
}

/// Python method names for the same measurement.
fn peer_name(method: &str) -> Option<&'static str> {
    Some(match method {
        "saliency" => "saliency",
        "grad_x_input" => "ixg",
        "integrated_gradients" => "ig",
        "lime" => "lime",
        "kernel_shap" => "kernel_shap",
        "occlusion" => "occlusion",
        "forward" => "forward",
        _ => return None,
    })
}

/// (median ms, forward rows) of the peer's measurement.
fn peer_ms(peer: &serde_json::Value, method: &str, len: usize) -> Option<(f64, u64)> {
    peer_ms_named(peer, peer_name(method)?, len)
}

/// (median ms, forward rows) of the peer method called `name` in the JSON.
fn peer_ms_named(peer: &serde_json::Value, name: &str, len: usize) -> Option<(f64, u64)> {
    let results = peer.get("results")?.as_array()?;
    results.iter().find_map(|r| {
        (r.get("method")?.as_str()? == name && r.get("length")?.as_u64()? as usize == len)
            .then(|| Some((r.get("median_ms")?.as_f64()?, r.get("forward_rows")?.as_u64()?)))?
    })
}

/// Milliseconds from `cancel()` to the method returning, for a cancel issued
/// `after_ms` into a run: what a user waits when they type over a slow method.
/// `None` when the method finished before the cancel arrived.
fn cancel_latency_ms(method: &dyn Attribution, input: &ExplainInput, after_ms: f64) -> anyhow::Result<Option<f64>> {
    let token = CancelToken::new();
    let progress = Progress::new(token.clone(), None);
    std::thread::scope(|s| {
        let canceller = s.spawn(|| {
            std::thread::sleep(std::time::Duration::from_secs_f64(after_ms / 1e3));
            token.cancel();
            Instant::now()
        });
        let result = method.explain(input, &progress);
        let returned = Instant::now();
        let cancelled_at = canceller.join().expect("canceller thread");
        match result {
            Err(e) if is_cancelled(&e) => Ok(Some(returned.saturating_duration_since(cancelled_at).as_secs_f64() * 1e3)),
            Err(e) => Err(e),
            Ok(_) => Ok(None),
        }
    })
}

/// One set of encoder kernels `--kernels` can select.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Kernels {
    /// Hand-written inference forward + fused custom ops (the default).
    Fused,
    /// Fused custom ops inside candle's graph, no hand-written forward or backward.
    Graph,
    /// candle's elementary ops.
    Candle,
}

impl Kernels {
    fn name(self) -> &'static str {
        match self {
            Kernels::Fused => "fused",
            Kernels::Graph => "graph",
            Kernels::Candle => "candle",
        }
    }

    /// Makes this path the process-wide one.
    fn select(self) {
        crate::model::ops::set_fused(self != Kernels::Candle);
        crate::model::ops::set_fast(self == Kernels::Fused);
    }
}

/// `--kernels`: `both` or a comma list of distinct paths.
fn parse_kernels(spec: &str) -> anyhow::Result<Vec<Kernels>> {
    let spec = if spec == "both" { "fused,candle" } else { spec };
    let mut out = Vec::new();
    for k in spec.split(',').map(str::trim) {
        let k = match k {
            "fused" => Kernels::Fused,
            "graph" => Kernels::Graph,
            "candle" => Kernels::Candle,
            _ => anyhow::bail!("--kernels {k}: expected fused, graph, candle, both, or a comma list of them"),
        };
        anyhow::ensure!(!out.contains(&k), "--kernels names {} twice", k.name());
        out.push(k);
    }
    Ok(out)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// `--lengths`: whole numbers, checked before any model loads.
fn parse_lengths(s: &str) -> anyhow::Result<Vec<usize>> {
    s.split(',')
        .map(|p| p.trim().parse().map_err(|_| anyhow::anyhow!("--lengths \"{s}\": \"{}\" is not a token count (hint: --lengths 8,32,128)", p.trim())))
        .collect()
}

/// Every length must be one `text_of_length` can build for `model`: at least
/// one word between the special tokens, at most the model's limit.
fn check_lengths(lengths: &[usize], model: &Model) -> anyhow::Result<()> {
    let (min, max) = (model.encode("a")?.len(), model.tokenizer().max_tokens());
    if let Some(&bad) = lengths.iter().find(|&&n| n < min || n > max) {
        anyhow::bail!("--lengths: {bad} tokens is outside what {} takes, {min} to {max} (special tokens included; hint: --lengths 8,32,128)", model.name);
    }
    Ok(())
}

/// `--peer FILE`: the JSON `scripts/bench_python.py --json FILE` wrote.
fn read_peer(path: &str) -> anyhow::Result<serde_json::Value> {
    const HINT: &str = "hint: write it with `scripts/bench_python.py MODEL_DIR --json FILE` on the same machine";
    let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("cannot read --peer {path}: {e} ({HINT})"))?;
    serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("--peer {path} is not the JSON the Python peer writes: {e} ({HINT})"))
}

pub fn run(args: &BenchArgs, load_model: impl FnOnce(Option<&str>) -> anyhow::Result<Model>) -> anyhow::Result<()> {
    let selection = super::methods::parse(&args.methods)?;
    let lengths = parse_lengths(&args.lengths)?;
    anyhow::ensure!(args.repeats >= 1, "--repeats must be at least 1 (hint: --repeats 5, the default)");
    let peer = args.peer.as_deref().map(read_peer).transpose()?;
    let model = load_model(args.model.as_deref())?;
    check_lengths(&lengths, &model)?;
    let mut methods = super::methods::build_for_command(&selection, &model, args.expnet.as_deref())?;
    if let Some(n) = args.samples {
        super::methods::set_samples(&mut methods, n)?;
    }
    let kernels = parse_kernels(&args.kernels)?;
    let kernels = kernels.as_slice();
    kernels[0].select();
    println!(
        "{}; device {}; kernels {}\n",
        machine_line(),
        model.device_name(),
        kernels.iter().map(|k| k.name()).collect::<Vec<_>>().join(" vs ")
    );
    let mut extra = String::new();
    for k in &kernels[1..] {
        extra += &format!(" {} ms | {} speed-up vs {} |", k.name(), kernels[0].name(), k.name());
    }
    println!("| method | tokens | expnet ms | expnet passes | python ms | python passes | python ms / expnet ms | cancel ms |{extra}");
    println!("|---|---|---|---|---|---|---|---|{}", "---|---|".repeat(kernels.len() - 1));
    for &len in &lengths {
        let mut rows_peer_only: Vec<(String, (f64, u64))> = Vec::new();
        let text = text_of_length(&model, len)?;
        let enc = model.encode(&text)?;
        let mut times = vec![Vec::new(); kernels.len()];
        let mut fwd = model.forward(&enc)?;
        for &k in kernels {
            k.select();
            fwd = model.forward(&enc)?; // warm-up
        }
        for _ in 0..args.repeats {
            for (k, &path) in kernels.iter().enumerate() {
                path.select();
                let t0 = Instant::now();
                fwd = model.forward(&enc)?;
                times[k].push(t0.elapsed().as_secs_f64() * 1e3);
            }
        }
        kernels[0].select();
        let mut alt = vec![times[1..].iter().map(|t| median(t.clone())).collect::<Vec<_>>()];
        let mut rows = vec![("forward".to_string(), median(times.swap_remove(0)), 1usize, None)];
        let target = fwd.prediction.as_ref().map_or(0, |p| p.index);
        // A fresh input per call: nothing (e.g. shared gradients) carries over between timings.
        let input = || ExplainInput::new(&model, &enc, &fwd, target);
        for m in &methods {
            let mut times = vec![Vec::new(); kernels.len()];
            let mut passes = 0;
            for &k in kernels {
                k.select();
                let _ = m.explain(&input(), &Progress::none())?; // warm-up
            }
            // Alternate the kernel paths within each repeat, so load changes hit both alike.
            for _ in 0..args.repeats {
                for (k, &path) in kernels.iter().enumerate() {
                    path.select();
                    let fresh = input();
                    let t0 = Instant::now();
                    passes = m.explain(&fresh, &Progress::none())?.forward_passes;
                    times[k].push(t0.elapsed().as_secs_f64() * 1e3);
                }
            }
            kernels[0].select();
            alt.push(times[1..].iter().map(|t| median(t.clone())).collect());
            let ms = median(times.swap_remove(0));
            // Cancel a third of the way in (slow methods only): worst case is one batch.
            let cancel = if m.is_slow() { cancel_latency_ms(m.as_ref(), &input(), ms / 3.0)? } else { None };
            rows.push((m.name().to_string(), ms, passes, cancel));
        }
        // Peer methods without an expnet counterpart (shap's Partition explainer).
        if let Some(ms) = peer.as_ref().and_then(|p| peer_ms_named(p, "partition", len)) {
            rows_peer_only.push(("shap partition (python only)".to_string(), ms));
        }
        for ((name, ms, passes, cancel), alt) in rows.into_iter().zip(alt) {
            let p = peer.as_ref().and_then(|p| peer_ms(p, &name, len));
            let extra: String = alt.iter().map(|a| format!(" {a:.2} | {:.2}× |", a / ms)).collect();
            println!(
                "| {name} | {len} | {ms:.2} | {passes} | {} | {} | {} | {} |{extra}",
                p.map_or("-".into(), |v| format!("{:.2}", v.0)),
                p.map_or("-".into(), |v| v.1.to_string()),
                p.map_or("-".into(), |v| format!("{:.2}×", v.0 / ms)),
                cancel.map_or("-".into(), |c| format!("{c:.1}"))
            );
        }
        for (name, (ms, rows)) in rows_peer_only {
            println!("| {name} | {len} | - | - | {ms:.2} | {rows} | - | - |{}", " - | - |".repeat(kernels.len() - 1));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::cpu_name;

    #[test]
    fn cpu_name_carries_family_and_model() {
        let info = "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 17\nmodel name\t: AMD EPYC\nflags\t\t: fpu avx2\n";
        assert_eq!(cpu_name(info).as_deref(), Some("AMD EPYC, family 25 model 17"));
        assert_eq!(cpu_name("model name\t: Some CPU\n").as_deref(), Some("Some CPU"));
        assert_eq!(cpu_name("processor\t: 0\n"), None);
    }
}
