//! ExpNet (arXiv 2601.14112): a small network, trained on human token
//! rationales, that maps each token's attention pattern (all layers × heads,
//! one forward pass, no gradients) to an importance score.
//!
//! [`features`] turns attentions into per-token rows, [`net`] is the MLP and
//! its file format, [`train`] fits it on cached features, and [`method`]
//! exposes it as an [`Attribution`](crate::explain::Attribution).

mod context;
pub mod decision;
pub mod decomp_features;
pub mod distill;
pub mod features;
pub mod grad_features;
pub mod method;
pub mod net;
pub mod provenance;
mod st;
pub mod teacher;
pub mod train;

pub use decomp_features::DecompositionGroups;
pub use grad_features::GradientGroups;
pub use features::{FeatureSource, FeatureSpec, ForwardSignals, HeadPooling, Normalization, extract, extract_full};
pub use method::ExpNetMethod;
pub use net::{Activation, ExpNet, ExpNetInfo, FORMAT_VERSION, NetConfig, OutputKind, TrainingSummary};
pub use provenance::{DistillInfo, Explainer, ExpNetChoice, ExplainerKind};
pub use train::{EpochReport, ExampleFeatures, TrainConfig, TrainingSet, train};
