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
    /// Folder `e` writes its JSON + HTML export to (default: the current one).
    #[arg(long, value_name = "DIR")]
    pub export_dir: Option<std::path::PathBuf>,
    /// Texts (one per line) that `D` distils an ExpNet from when the model
    /// has none of its own; `--data` examples count too.
    #[arg(long, value_name = "FILE")]
    pub texts: Option<String>,
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

pub fn run(args: TuiArgs, load_model: impl FnOnce(Option<&str>) -> anyhow::Result<crate::model::Model> + Send + 'static) -> anyhow::Result<()> {
    let examples = match &args.data {
        Some(spec) => examples_from(spec)?,
        None => Vec::new(),
    };
    // Read before the UI starts, so a missing file is a plain error.
    let mut distill_texts: Vec<String> = match &args.texts {
        Some(f) => crate::expnet::teacher::read_texts(f, crate::data::Split::Train, None)?.into_iter().map(|(t, _)| t).collect(),
        None => Vec::new(),
    };
    distill_texts.extend(examples.iter().map(|e| e.text.clone()));
    let opts = TuiOptions {
        theme: args.theme.clone(),
        initial_text: (!args.text.is_empty()).then(|| args.text.join(" ")),
        examples,
        export_dir: args.export_dir.clone(),
        distill_texts,
        ..Default::default()
    };
    let (model_spec, expnet_spec) = (args.model.clone(), args.expnet.clone());
    crate::tui::run(
        opts,
        Box::new(move |warn: &crate::tui::worker::Warn| {
            let model = load_model(model_spec.as_deref())?;
            // A bad ExpNet file must not make a good model unusable.
            let expnet = super::methods::choose_expnet(expnet_spec.as_deref(), &model).unwrap_or_else(|e| {
                warn(format!("ExpNet not loaded, continuing without it: {e:#}"));
                crate::expnet::provenance::ExpNetChoice::none(format!("{e:#}"))
            });
            let list = super::methods::build(&super::methods::Selection::All, &model, &expnet)?;
            let name = expnet.net.as_ref().map(|(_, e)| format!("{} ({})", e.file, e.label()));
            Ok(Arc::new(LibraryBackend::new(model, list.methods, name).with_choice(&expnet)) as Arc<dyn crate::tui::backend::ExplainBackend>)
        }),
    )
}
