//! candle's thread settings and the allocator's, chosen by measurement
//! (docs/PERFORMANCE.md).
//!
//! candle-core 0.11 runs element-wise ops of ≥ 64 Ki elements on its own
//! spinning "barrier pool" (`CANDLE_NUM_THREADS − 1` workers that spin
//! `CANDLE_BARRIER_POOL_SPIN_LIMIT` times before parking), while matmuls use
//! rayon's pool. Both read environment variables once, when first used, so
//! the program sets its defaults before any tensor exists; a value the user
//! exported wins.

/// Barrier-pool spin iterations before a worker parks (candle's default: 25 000).
pub const SPIN_LIMIT: &str = "1000";

/// Sets candle's thread environment defaults. Call first thing in `main`,
/// before any other thread is started.
pub fn configure() {
    set_default("CANDLE_BARRIER_POOL_SPIN_LIMIT", SPIN_LIMIT);
    // candle's CPU matmul asks for its thread count on every call, and
    // without `RAYON_NUM_THREADS` that means parsing /proc/cpuinfo for the
    // physical core count (`num_cpus::get_physical`): 13% of a distilled
    // student's time at 8 tokens went to the kernel formatting that file.
    // Reading it once and exporting it also makes rayon's pool (which the
    // hand-written kernels use) one thread per physical core, like candle's
    // matmuls and PyTorch's default, instead of one per logical CPU.
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        set_default("RAYON_NUM_THREADS", &candle_core::utils::get_num_threads().to_string());
    }
    keep_freed_memory();
}

/// glibc hands every freed block above its (dynamic, ≤ 32 MiB) mmap threshold
/// back to the kernel, and the next tensor of that size page-faults its
/// memory in again, zeroed: a fine-tuning step allocates dozens of 6–90 MB
/// tensors (activations, gradients, AdamW's moments), and a third of its time
/// went to the kernel. Keeping freed memory in the heap took the 320-sentence
/// fine-tuning bench from 432 to ~550 tokens/s (docs/PERFORMANCE.md). A
/// `MALLOC_*` variable the user exported wins.
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let set = |name: &str, param: libc::c_int, value: libc::c_int| {
            if std::env::var_os(name).is_none() {
                // SAFETY: mallopt only changes allocator parameters; no memory is touched.
                unsafe { libc::mallopt(param, value) };
            }
        };
        set("MALLOC_MMAP_THRESHOLD_", libc::M_MMAP_THRESHOLD, 32 << 20);
        set("MALLOC_TRIM_THRESHOLD_", libc::M_TRIM_THRESHOLD, 1 << 30);
        set("MALLOC_TOP_PAD_", libc::M_TOP_PAD, 256 << 20);
    }
}

fn set_default(name: &str, value: &str) {
    if std::env::var_os(name).is_none() {
        // SAFETY: called at the start of `main`, while the process has one thread.
        unsafe { std::env::set_var(name, value) };
    }
}
