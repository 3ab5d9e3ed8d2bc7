use clap::Parser;
use expnet::cli::{Cli, Command};
use expnet::model::Model;

fn load_model(spec: Option<&str>) -> anyhow::Result<Model> {
    match spec {
        Some(s) => Model::load(s),
        None => expnet::assets::default_model(),
    }
}

fn main() {
    expnet::model::ops::threads::configure();
    let cli = Cli::parse();
    let result = match &cli.command {
        Some(Command::Explain(args)) => expnet::cli::explain::run(args, load_model),
        Some(Command::Finetune(args)) => expnet::cli::finetune::run(args, load_model),
        Some(Command::Train(args)) => expnet::cli::train::run(args, load_model),
        Some(Command::Distill(args)) => expnet::cli::distill::run(args, load_model),
        Some(Command::Inspect(args)) => expnet::cli::inspect::run(args, load_model),
        Some(Command::Bench(args)) => expnet::cli::bench::run(args, load_model),
        Some(Command::Eval(args)) => expnet::cli::eval::run(args, load_model),
        Some(Command::Tui(args)) => expnet::cli::tui::run(args.clone(), load_model),
        None => expnet::cli::tui::run(Default::default(), load_model),
    };
    if let Err(e) = result {
        // Ended by SIGTERM & co. with the terminal restored: exit like a
        // process killed by that signal would report it, without a message.
        if let Some(expnet::tui::Interrupted(sig)) = e.downcast_ref() {
            std::process::exit(128 + sig);
        }
        // Not eprintln!: it panics when stderr is a terminal that has hung up.
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), "error: {e:#}");
        std::process::exit(1);
    }
}
