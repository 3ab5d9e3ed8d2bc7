//! expnet: explain why a BERT-family text classifier decided what it decided.
//!
//! The library core (no terminal code): [`model`] loads and runs the encoder
//! with attention capture and gradients, [`explain`] holds the attribution
//! methods, [`expnet`] the learned explainer, [`data`] the rationale corpora,
//! [`eval`] plausibility and faithfulness metrics. The binary's CLI and TUI sit
//! on top.

pub mod explain;
pub mod model;
pub mod tui;
