//! The terminal explorer (`expnet` / `expnet tui`).
//!
//! Architecture (as in gitui/bottom): [`app::App`] holds all state; pure
//! `render` functions draw it; one event loop merges terminal events (read
//! on a small input thread), worker results and ticks from a single channel;
//! the worker ([`worker`]) runs on a tokio task and owns the
//! [`ExplainBackend`], with a cancellation token per request. The UI is up
//! immediately and shows "loading model…" while the loader runs on the worker.

pub mod app;
pub mod backend;
pub mod distill_job;
pub mod export;
pub mod input;
pub mod keys;
pub mod render;
pub mod samples;
pub mod scores;
pub mod testing;
pub mod theme;
pub mod worker;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_abuse;
#[cfg(test)]
mod tests_distill;

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::time::Duration;

use signal_hook::consts::{SIGCONT, SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGTSTP};

use crossterm::event::{DisableBracketedPaste, DisableMouseCapture, EnableBracketedPaste, EnableMouseCapture, Event};
use crossterm::execute;
use crossterm::terminal::{EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode};
use ratatui::Terminal;
use ratatui::backend::{Backend, CrosstermBackend};
use ratatui::layout::Rect;

pub use app::App;
pub use backend::{Analysis, BackendInfo, ExplainBackend, MethodInfo, MethodResult};
pub use samples::ExampleItem;
pub use theme::{ColorMode, Theme};
pub use worker::Loader;

/// How the explorer starts.
#[derive(Clone, Debug, Default)]
pub struct TuiOptions {
    /// Theme name (`dark`, `light`, `colorblind` or a `./themes/*.toml` name).
    pub theme: Option<String>,
    /// Text to analyse as soon as the model is loaded.
    pub initial_text: Option<String>,
    /// Extra examples for the browser (e.g. from a rationale data set),
    /// shown after the built-in ones.
    pub examples: Vec<ExampleItem>,
    /// Where `e` writes exports (default: the current directory).
    pub export_dir: Option<PathBuf>,
    /// Force a colour mode instead of detecting it from the environment.
    pub color: Option<ColorMode>,
    /// Texts `D` distils an ExpNet from (`--texts`, `--data`).
    pub distill_texts: Vec<String>,
}

/// Everything the event loop reacts to, merged into one channel.
#[derive(Debug)]
pub enum AppEvent {
    Term(Event),
    Worker(worker::WorkerEvent),
    /// The input thread could not read the terminal.
    InputError(String),
    /// A signal from outside (see [`QUIT_SIGNALS`], SIGTSTP, SIGCONT).
    Signal(i32),
}

/// Signals that end the explorer like `q` (terminal restored first): a
/// closed SSH session (HUP), a supervisor or `timeout` (TERM), `kill -INT`,
/// SIGQUIT. Without handlers they would kill the process in raw mode on the
/// alternate screen and leave the shell unusable.
pub const QUIT_SIGNALS: [i32; 4] = [SIGTERM, SIGINT, SIGHUP, SIGQUIT];

/// Why [`event_loop`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoopExit {
    /// `q`, Ctrl-C, or every event source closed.
    Quit,
    /// One of [`QUIT_SIGNALS`]: quit like `q`, then exit with 128 + signal.
    Signal(i32),
    /// Ctrl-Z or SIGTSTP: restore the terminal, stop, and redraw on SIGCONT.
    Suspend,
    /// SIGCONT after a stop from outside: set the terminal up again and redraw.
    Resume,
}

/// The explorer was ended by a signal; `main` exits with 128 + the signal
/// number after the terminal has been restored.
#[derive(Debug, thiserror::Error)]
#[error("stopped by signal {0} (terminal restored)")]
pub struct Interrupted(pub i32);

/// The model never loaded: the full error, returned after the terminal is
/// restored so it is printed on stderr and the exit status is non-zero.
#[derive(Debug, thiserror::Error)]
#[error("the model failed to load: {0}")]
pub struct LoadFailed(pub String);

/// Redraw/tick period when nothing happens (spinner, fading notices).
const TICK: Duration = Duration::from_millis(200);

/// Runs the explorer until the user quits. `load` runs on the worker while the
/// UI is already drawn; its error is shown in the UI, not returned.
pub fn run(opts: TuiOptions, load: Loader) -> anyhow::Result<()> {
    anyhow::ensure!(
        std::io::stdout().is_terminal() && std::io::stdin().is_terminal(),
        "the explorer needs an interactive terminal (stdin and stdout must be a TTY); use `expnet explain` in scripts"
    );
    let (themes, warnings) = Theme::load_all(Some(Path::new("themes")));
    let theme = pick_theme(&themes, &warnings, opts.theme.as_deref())?;
    let color = opts.color.unwrap_or_else(ColorMode::detect);
    let mut examples = samples::builtin();
    examples.extend(opts.examples);
    let mut app = App::new(themes, theme, color, examples, opts.initial_text.as_deref());
    app.distill.texts = opts.distill_texts;
    if !warnings.is_empty() {
        // Stays up until dismissed: a fading status line is easy to miss.
        app.show_alert("Theme warning", warnings.join("\n"));
    }
    let export_dir = opts.export_dir.unwrap_or_else(|| PathBuf::from("."));
    app.distill.plan.out_dir = export_dir.clone();
    anyhow::ensure!(
        export_dir.is_dir(),
        "--export-dir {} is not an existing folder (hint: create it first, e.g. mkdir -p {})",
        export_dir.display(),
        export_dir.display()
    );

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).thread_name("expnet-worker").build()?;
    let (tx, rx) = channel();
    let sink_tx = tx.clone();
    let worker = worker::spawn(
        rt.handle(),
        load,
        Arc::new(move |ev| {
            let _ = sink_tx.send(AppEvent::Worker(ev));
        }),
    );

    // Handlers go in before the terminal changes mode, so no window exists
    // in which a signal kills the process in raw mode.
    let mut signals = signal_hook::iterator::Signals::new(QUIT_SIGNALS.iter().copied().chain([SIGTSTP, SIGCONT]))
        .map_err(|e| anyhow::anyhow!("cannot install signal handlers: {e}"))?;
    let signals_handle = signals.handle();
    let sig_tx = tx.clone();
    let sig_thread = std::thread::Builder::new().name("expnet-signals".into()).spawn(move || {
        for s in signals.forever() {
            if sig_tx.send(AppEvent::Signal(s)).is_err() {
                return;
            }
        }
    })?;

    let guard = TerminalGuard::enter()?;
    let stop = Arc::new(AtomicBool::new(false));
    let watch = spawn_terminal_watch(tx.clone(), stop.clone());
    let input = spawn_input(tx, stop.clone());
    let result = Terminal::new(CrosstermBackend::new(std::io::stdout())).map_err(anyhow::Error::from).and_then(|mut t| loop {
        match event_loop(&mut t, &mut app, &rx, &|r| worker.send(r), &export_dir) {
            Ok(LoopExit::Suspend) => {
                restore_terminal();
                // Stop for real (the handler replaced SIGTSTP's default); the
                // shell's `fg` sends SIGCONT and execution continues here.
                let _ = signal_hook::low_level::raise(signal_hook::consts::SIGSTOP);
                setup_terminal()?;
                t.clear()?;
            }
            Ok(LoopExit::Resume) => {
                setup_terminal()?;
                t.clear()?;
            }
            other => break other,
        }
    });
    app.cancel_all();
    stop.store(true, Ordering::SeqCst);
    drop(guard);
    signals_handle.close();
    // crossterm's poll never returns on a hung-up tty: wait briefly, then
    // leave the input thread behind (it ends with the process).
    for _ in 0..20 {
        if input.is_finished() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    if input.is_finished() {
        let _ = input.join();
    }
    let _ = watch.join();
    let _ = sig_thread.join();
    drop(worker);
    rt.shutdown_background();
    // Drawing on a terminal that hung up fails: that is a hang-up, not an error.
    let exit = match result {
        Err(_) if terminal_gone() => LoopExit::Signal(SIGHUP),
        other => other?,
    };
    for w in &app.load_warnings {
        // writeln!, not eprintln!: stderr may be a terminal that hung up.
        let _ = writeln!(std::io::stderr(), "warning: {w}");
    }
    match exit {
        LoopExit::Signal(s) => Err(Interrupted(s).into()),
        _ => match app.load_error {
            Some(e) => Err(LoadFailed(e).into()),
            None => Ok(()),
        },
    }
}

/// Index of the requested theme; an unknown name is an error listing the
/// choices, and a theme file that exists but did not parse is reported with
/// its file and parse error (from `warnings`) rather than as missing.
pub fn pick_theme(themes: &[Theme], warnings: &[String], name: Option<&str>) -> anyhow::Result<usize> {
    let Some(name) = name else { return Ok(0) };
    themes.iter().position(|t| t.name.eq_ignore_ascii_case(name)).ok_or_else(|| {
        let file = format!("{name}.toml");
        if let Some(w) = warnings.iter().find(|w| w.contains(&file)) {
            return anyhow::anyhow!("theme '{name}' could not be loaded: {w}");
        }
        let names: Vec<&str> = themes.iter().map(|t| t.name.as_str()).collect();
        anyhow::anyhow!("unknown theme '{name}'; available: {} (or add themes/{name}.toml)", names.join(", "))
    })
}

/// Whether the terminal the explorer runs in has gone (its window closed, the
/// tmux server killed, the ssh connection dropped). On a pseudo-terminal the
/// kernel sends SIGHUP only to the session leader, so a process started by a
/// shell that dies first gets no signal; a hung-up tty then reads as ready
/// forever and the input thread would spin. After the hang-up `isatty` (a
/// `tcgetattr`) fails on both standard streams, so that is checked instead.
fn terminal_gone() -> bool {
    !std::io::stdin().is_terminal() && !std::io::stdout().is_terminal()
}

/// Checks four times a second whether the terminal has gone and, if so,
/// reports SIGHUP (the event loop may be idle and never notice otherwise).
fn spawn_terminal_watch(tx: Sender<AppEvent>, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name("expnet-tty-watch".into())
        .spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                if terminal_gone() {
                    let _ = tx.send(AppEvent::Signal(SIGHUP));
                    return;
                }
                std::thread::sleep(Duration::from_millis(250));
            }
        })
        .expect("spawn terminal watch thread")
}

/// Reads terminal events on its own thread so the loop can wait on one channel.
/// A terminal that hangs up is noticed by [`spawn_terminal_watch`], not here:
/// crossterm's poll never returns on a hung-up tty.
fn spawn_input(tx: Sender<AppEvent>, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name("expnet-input".into())
        .spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                match crossterm::event::poll(Duration::from_millis(50)) {
                    Ok(false) => {}
                    Ok(true) => match crossterm::event::read() {
                        Ok(ev) => {
                            if tx.send(AppEvent::Term(ev)).is_err() {
                                return;
                            }
                        }
                        Err(e) => {
                            let _ = tx.send(AppEvent::InputError(e.to_string()));
                            return;
                        }
                    },
                    Err(e) => {
                        let _ = tx.send(AppEvent::InputError(e.to_string()));
                        return;
                    }
                }
            }
        })
        .expect("spawn input thread")
}

/// The event loop, generic over the terminal backend so tests can drive it
/// with ratatui's `TestBackend`. Each wake-up drains every queued event
/// before drawing once, so a burst of keys or results costs one frame.
pub fn event_loop<B: Backend>(
    terminal: &mut Terminal<B>,
    app: &mut App,
    rx: &Receiver<AppEvent>,
    send: &dyn Fn(worker::Request) -> bool,
    export_dir: &Path,
) -> anyhow::Result<LoopExit>
where
    B::Error: Send + Sync + 'static,
{
    app.export_dir = export_dir.to_path_buf();
    let mut area = Rect::default();
    let mut dirty = true;
    let mut worker_alive = true;
    loop {
        if let Some(req) = app.reconcile()
            && !send(req) && worker_alive {
                worker_alive = false;
                if app.load_error.is_none() {
                    app.notify_error("the model worker stopped; restart the explorer");
                }
                dirty = true;
            }
        if dirty {
            terminal.draw(|f| {
                area = f.area();
                render::render(app, f);
            })?;
            dirty = false;
        }
        let first = match rx.recv_timeout(TICK) {
            Ok(ev) => Some(ev),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => return Ok(LoopExit::Quit),
        };
        if first.is_none() {
            dirty |= app.on_tick();
        }
        for ev in first.into_iter().chain(rx.try_iter()) {
            dirty = true;
            match ev {
                AppEvent::Term(e) => match keys::handle_event(app, &e, area) {
                    Some(keys::Effect::Quit) => return Ok(LoopExit::Quit),
                    Some(keys::Effect::Suspend) => return Ok(LoopExit::Suspend),
                    Some(keys::Effect::Export) => match export::export(app, export_dir) {
                        Ok((j, h)) => app.notify(format!("exported {} and {}", j.display(), h.display())),
                        Err(e) => app.notify_error(format!("export failed: {e:#}")),
                    },
                    None => {}
                },
                AppEvent::Worker(w) => app.on_worker(w),
                AppEvent::InputError(e) => anyhow::bail!("cannot read the terminal: {e}"),
                AppEvent::Signal(s) if QUIT_SIGNALS.contains(&s) => return Ok(LoopExit::Signal(s)),
                AppEvent::Signal(SIGTSTP) => return Ok(LoopExit::Suspend),
                AppEvent::Signal(SIGCONT) => return Ok(LoopExit::Resume),
                AppEvent::Signal(_) => {}
            }
        }
    }
}

/// Puts the terminal in raw/alternate-screen mode and restores it on drop,
/// including when the UI thread panics (the hook restores first, so the
/// panic message is readable). Panics on other threads are not printed: the
/// worker turns them into error messages shown in the UI.
/// A panic hook shared between the guard and the hook that wraps it.
type Hook = Arc<dyn Fn(&std::panic::PanicHookInfo<'_>) + Send + Sync>;

struct TerminalGuard {
    previous_hook: Option<Hook>,
}

fn restore_terminal() {
    let _ = execute!(std::io::stdout(), DisableMouseCapture, DisableBracketedPaste, LeaveAlternateScreen, crossterm::cursor::Show);
    let _ = disable_raw_mode();
}

/// Raw mode, alternate screen, bracketed paste and mouse reporting; also
/// after a resume, where the shell has put the terminal back in cooked mode.
fn setup_terminal() -> anyhow::Result<()> {
    enable_raw_mode().map_err(|e| anyhow::anyhow!("cannot switch the terminal to raw mode: {e}"))?;
    if let Err(e) = execute!(std::io::stdout(), EnterAlternateScreen, EnableBracketedPaste, EnableMouseCapture) {
        restore_terminal();
        anyhow::bail!("cannot set up the terminal: {e}");
    }
    Ok(())
}

impl TerminalGuard {
    fn enter() -> anyhow::Result<Self> {
        setup_terminal()?;
        let previous: Hook = Arc::from(std::panic::take_hook());
        let prev = previous.clone();
        let ui_thread = std::thread::current().id();
        std::panic::set_hook(Box::new(move |info| {
            if std::thread::current().id() == ui_thread {
                restore_terminal();
                prev(info);
            }
        }));
        Ok(Self { previous_hook: Some(previous) })
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore_terminal();
        if let Some(prev) = self.previous_hook.take()
            && !std::thread::panicking() {
                let _ = std::panic::take_hook();
                std::panic::set_hook(Box::new(move |info| prev(info)));
            }
    }
}
