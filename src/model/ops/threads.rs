//! candle's thread settings, chosen by measurement (docs/PERFORMANCE.md).
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
}

fn set_default(name: &str, value: &str) {
    if std::env::var_os(name).is_none() {
        // SAFETY: called at the start of `main`, while the process has one thread.
        unsafe { std::env::set_var(name, value) };
    }
}
