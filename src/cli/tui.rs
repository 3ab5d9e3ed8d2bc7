//! `expnet tui` (and `expnet` with no arguments): the terminal explorer on a
//! model loaded in the background.

use super::tui_backend::LibraryBackend;
use crate::tui::{ExampleItem, TuiOptions};
use clap::Args;
use std::sync::Arc;

#[derive(Args, Clone, Debug, Default)]
pub struct TuiArgs {
    /// Model folder or hub id (default: the embedded MiniLM SST-2 classifier).
    #[arg(long)]
    pub model: Option<String>,
    /// ExpNet file (default: one trained for this very model, if any).
    #[arg(long)]
    pub expnet: Option<String>,
    /// Theme: dark, light, colorblind, or a themes/NAME.toml in the current folder.
    #[arg(long)]
    pub theme: Option<String>,
    /// Rationale data set for the examples browser, DATASET:PATH[#SPLIT] (default split test).
    #[arg(long)]
    pub data: Option<String>,
    /// Text to start with.
    pub text: Vec<String>,
}

fn examples_from(spec: &str) -> anyhow::Result<Vec<ExampleItem>> {
    let (spec, split) = match spec.rsplit_once('#') {
        Some((s, sp)) => (s, sp.parse()?),
        None => (spec, crate::data::Split::Test),
    };
    let ds = crate::data::load(spec, split)?;
    Ok(ds
        .examples
        .iter()
        .filter(|e| e.words_pair.is_none())
        .take(500)
        .map(|e| ExampleItem { text: e.text(), rationale: e.binary_rationale(0.5) })
        .collect())
}

pub fn run(args: TuiArgs, load_model: fn(Option<&str>) -> anyhow::Result<crate::model::Model>) -> anyhow::Result<()> {
    let examples = match &args.data {
        Some(spec) => examples_from(spec)?,
        None => Vec::new(),
    };
    let opts = TuiOptions {
        theme: args.theme.clone(),
        initial_text: (!args.text.is_empty()).then(|| args.text.join(" ")),
        examples,
        ..Default::default()
    };
    let (model_spec, expnet_spec) = (args.model.clone(), args.expnet.clone());
    crate::tui::run(
        opts,
        Box::new(move || {
            let model = load_model(model_spec.as_deref())?;
            let expnet = super::methods::choose_expnet(expnet_spec.as_deref(), &model)?;
            let list = super::methods::build(&super::methods::Selection::All, &model, &expnet)?;
            let name = expnet.net.as_ref().map(|(_, e)| format!("{} ({})", e.file, e.label()));
            Ok(Arc::new(LibraryBackend::new(model, list.methods, name)) as Arc<dyn crate::tui::backend::ExplainBackend>)
        }),
    )
}
