//! ExpNet (arXiv 2601.14112): a small network, trained on human token
//! rationales, that maps each token's attention pattern (all layers × heads,
//! one forward pass, no gradients) to an importance score.
//!
//! [`features`] turns attentions into per-token rows, [`net`] is the MLP and
//! its file format, [`train`] fits it on cached features, and [`method`]
//! exposes it as an [`Attribution`](crate::explain::Attribution).

pub mod features;
pub mod method;
pub mod net;
mod st;
pub mod train;

pub use features::{FeatureSpec, HeadPooling, Normalization, extract};
pub use method::ExpNetMethod;
pub use net::{Activation, ExpNet, ExpNetInfo, FORMAT_VERSION, NetConfig, TrainingSummary};
pub use train::{EpochReport, ExampleFeatures, TrainConfig, TrainingSet, train};
