//! expnet: explain why a BERT-family text classifier decided what it decided.
//!
//! The library core (no terminal code): [`model`] loads and runs the encoder
//! with attention capture and gradients, [`explain`] holds the attribution
//! methods, [`expnet`] the learned explainer, [`data`] the rationale corpora,
//! [`eval`] plausibility and faithfulness metrics. The binary's CLI and TUI sit
//! on top.

pub mod data;
pub mod eval;
pub mod explain;
pub mod expnet;
pub mod model;
pub mod assets;
pub mod cli;
pub mod report;
pub mod finetune;
pub mod tui;
