//! The embedded default model and ExpNet, so `expnet` works with no arguments
//! and no network.

use crate::model::Model;

/// Loads the embedded default classifier.
pub fn default_model() -> anyhow::Result<Model> {
    anyhow::bail!("no --model given and this build has no embedded default model yet (hint: pass --model DIR)")
}

/// Loads the embedded default ExpNet.
pub fn default_expnet() -> anyhow::Result<crate::expnet::ExpNet> {
    anyhow::bail!("this build has no embedded ExpNet yet (hint: pass --expnet FILE)")
}
