//! Progress reporting and cooperative cancellation for long explanations.
//!
//! Slow methods (IG, LIME, KernelSHAP, flow) check [`Progress::checkpoint`]
//! between batches, so a cancelled request stops within one batch (well under
//! 100 ms on the default model) and the TUI can show a gauge.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Shared flag that asks a running method to stop. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
    /// The flag itself, for library loops that take a stop flag (distillation).
    pub fn flag(&self) -> &AtomicBool {
        &self.0
    }
}

/// Error returned by a method that stopped because its token was cancelled.
#[derive(Debug, thiserror::Error)]
#[error("cancelled")]
pub struct Cancelled;

/// Returns true when an error chain is a [`Cancelled`].
pub fn is_cancelled(err: &anyhow::Error) -> bool {
    err.downcast_ref::<Cancelled>().is_some()
}

/// What a method receives to report progress and learn it should stop.
pub struct Progress<'a> {
    cancel: CancelToken,
    report: Option<&'a (dyn Fn(f32) + Send + Sync)>,
    cancellable: bool,
}

impl<'a> Progress<'a> {
    /// No reporting, never cancelled: for the CLI and tests.
    pub fn none() -> Progress<'static> {
        Progress { cancel: CancelToken::new(), report: None, cancellable: false }
    }
    pub fn new(cancel: CancelToken, report: Option<&'a (dyn Fn(f32) + Send + Sync)>) -> Self {
        Self { cancel, report, cancellable: true }
    }
    /// Reports progress but is never cancelled (the CLI's progress line):
    /// keeps the large batches of [`Progress::none`].
    pub fn reporting(report: &'a (dyn Fn(f32) + Send + Sync)) -> Self {
        Self { cancel: CancelToken::new(), report: Some(report), cancellable: false }
    }
    /// False for [`Progress::none`], whose token nobody else holds: such runs
    /// (CLI, evaluation, benchmarks) may use larger, faster batches, since no
    /// one waits on a cancel.
    pub fn is_cancellable(&self) -> bool {
        self.cancellable
    }
    pub fn token(&self) -> &CancelToken {
        &self.cancel
    }
    /// Reports the fraction done (0..=1) and fails with [`Cancelled`] if asked to stop.
    pub fn checkpoint(&self, fraction: f32) -> anyhow::Result<()> {
        if let Some(r) = self.report {
            r(fraction.clamp(0.0, 1.0));
        }
        if self.cancel.is_cancelled() {
            return Err(Cancelled.into());
        }
        Ok(())
    }
}
