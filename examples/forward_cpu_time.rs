//! CPU time (not wall time) per inference forward pass, per kernel path: a
//! measure that survives a loaded machine, where wall-clock ratios do not.
//! Run single-threaded for a per-core cost, or with 2 threads to see the
//! parallel overhead (total CPU seconds over all threads).
//!
//! ```sh
//! RAYON_NUM_THREADS=1 CANDLE_NUM_THREADS=1 cargo run --release --example forward_cpu_time -- [MODEL_DIR] [ITERS]
//! ```

use expnet::model::{Model, ops};
use std::time::Instant;

/// User + system CPU seconds of this process so far (/proc/self/stat, clock ticks of 10 ms).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat (Linux only)");
    let after = &stat[stat.rfind(')').expect("stat format") + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    ticks / 100.0
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let dir = args.get(1).cloned().unwrap_or_else(|| "assets/models/minilm-sst2".into());
    let iters: usize = args.get(2).map_or(Ok(200), |s| s.parse())?;
    let model = Model::load_dir(std::path::Path::new(&dir))?;
    println!("threads {}; {iters} forwards per cell; ms per forward: CPU (wall)", rayon::current_num_threads());
    for len in [8usize, 32, 128] {
        let text = expnet::cli::bench::text_of_length(&model, len)?;
        let enc = model.encode(&text)?;
        let mut line = format!("len {len:4}:");
        for (name, fused, fast) in [("fast", true, true), ("graph", true, false), ("candle", false, false)] {
            ops::set_fused(fused);
            ops::set_fast(fast);
            model.forward(&enc)?;
            let iters = if len == 128 { iters / 4 } else { iters };
            let (c0, t0) = (cpu_seconds(), Instant::now());
            for _ in 0..iters {
                model.forward(&enc)?;
            }
            let cpu = (cpu_seconds() - c0) * 1e3 / iters as f64;
            let wall = t0.elapsed().as_secs_f64() * 1e3 / iters as f64;
            line += &format!("  {name} {cpu:6.2} ({wall:6.2})");
        }
        println!("{line}");
    }
    Ok(())
}
