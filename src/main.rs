use clap::Parser;
use expnet::cli::{Cli, Command};
use expnet::model::Model;

fn main() {
    quiet_on_closed_stdout();
    expnet::model::ops::threads::configure();
    let cli = Cli::parse();
    let device = cli.device.resolve().unwrap_or_else(|e| fail(e));
    // Every command loads its model through this, onto the --device chosen.
    let load_model = {
        let device = device.clone();
        move |spec: Option<&str>| -> anyhow::Result<Model> {
            match spec {
                Some(s) => Model::load_on(s, &device),
                None => expnet::assets::default_model_on(&device),
            }
        }
    };
    let result = match &cli.command {
        Some(Command::Explain(args)) => expnet::cli::explain::run(args, load_model),
        Some(Command::Finetune(args)) => expnet::cli::finetune::run(args, &device, load_model),
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
        fail(e);
    }
}

/// Prints `error: …` and exits with status 1.
fn fail(e: anyhow::Error) -> ! {
    // Not eprintln!: it panics when stderr is a terminal that has hung up.
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "error: {e:#}");
    std::process::exit(1);
}

/// `expnet bench | head` and the like: `println!` panics when the reader of
/// stdout has gone (Rust ignores SIGPIPE). End quietly with status 0 instead,
/// as `explain` does; every other panic keeps the default report.
fn quiet_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.starts_with("failed printing to stdout") && msg.contains("Broken pipe") {
            std::process::exit(0);
        }
        default(info);
    }));
}
