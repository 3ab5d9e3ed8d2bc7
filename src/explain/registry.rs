//! The list of methods by name: one place the CLI (`--methods`), the evaluator
//! and the TUI read from.

use super::Attribution;
use std::sync::Arc;

/// Names in display order (learned explainer first, then by family).
pub const METHOD_NAMES: &[&str] = &[
    "attention",
    "rollout",
    "flow",
    "saliency",
    "grad_x_input",
    "integrated_gradients",
    "chefer",
    "grad_sam",
    "value_norm",
    "alti",
    "globenc",
    "occlusion",
    "lime",
    "kernel_shap",
];

/// Builds a method by name, or fails listing the valid names.
pub fn create(name: &str) -> anyhow::Result<Arc<dyn Attribution>> {
    Ok(match name {
        "attention" => Arc::new(super::attention::RawAttention::default()),
        "rollout" => Arc::new(super::rollout::Rollout),
        "saliency" => Arc::new(super::saliency::Saliency),
        "grad_x_input" => Arc::new(super::grad_x_input::GradXInput),
        "integrated_gradients" | "ig" => Arc::new(super::integrated_gradients::IntegratedGradients::default()),
        "chefer" => Arc::new(super::chefer::Chefer),
        "grad_sam" => Arc::new(super::grad_sam::GradSam),
        "flow" => Arc::new(super::flow::AttentionFlow),
        "value_norm" => Arc::new(super::value_norm::ValueNorm::default()),
        "alti" => Arc::new(super::alti::Alti),
        "globenc" => Arc::new(super::globenc::GlobEnc),
        "occlusion" => Arc::new(super::occlusion::Occlusion::default()),
        "lime" => Arc::new(super::lime::Lime::default()),
        "kernel_shap" | "shap" => Arc::new(super::kernel_shap::KernelShap::default()),
        other => anyhow::bail!("unknown method \"{other}\" (valid: {}, or all)", METHOD_NAMES.join(", ")),
    })
}
