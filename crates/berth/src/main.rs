//! berth: GitOps for self-hosted Docker. The binary's edge: parse the command
//! line, run the command, and turn errors into reports and exit codes.

mod adopt;
mod bridge;
mod ci;
mod cli;
mod commands;
mod controller;
mod converge;
mod deploy;
mod deploydiff;
mod dial;
mod dispatch;
mod docker;
mod drift;
mod error;
mod executor;
mod forge;
mod git;
mod hook;
mod keys;
mod lock;
mod metrics;
mod notify;
mod output;
mod pr;
mod process;
mod redact;
mod registry;
mod release;
mod rollout;
mod secrets;
mod server;
mod signing;
mod smoke;
mod stackdiff;
mod state;
mod status;
mod updates;
mod variables;
mod windows;
mod workspace;

use berth_core::vars;
use clap::{CommandFactory, FromArgMatches};

fn main() {
    quiet_broken_pipe();
    let matches = cli::Cli::command().get_matches();
    if let Some((verb, _)) = matches.subcommand() {
        lock::set_command(verb);
    }
    let cli = cli::Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    register_secret_arguments(&cli.command);
    // The controller logs what it does by default, as JSON lines unless on a terminal.
    let (floor, json) = match &cli.command {
        cli::Command::Serve { json_logs, .. } => {
            (1, json_logs.unwrap_or_else(|| !std::io::IsTerminal::is_terminal(&std::io::stderr())))
        }
        _ => (0, false),
    };
    let filter = log_filter(cli.global.verbose.max(floor));
    let env_filter = tracing_subscriber::EnvFilter::try_from_env("BERTH_LOG").unwrap_or_else(|_| filter.into());
    // Every line goes through the redacting writer, whatever its level, crate or format.
    let builder = tracing_subscriber::fmt().with_env_filter(env_filter).with_writer(redact::Redacting(std::io::stderr));
    if json {
        builder.json().with_current_span(true).with_span_list(false).init();
    } else {
        builder.init();
    }
    let code = match commands::run(cli) {
        Ok(code) => code,
        Err(e) => {
            report(&e);
            e.exit_code()
        }
    };
    std::process::exit(code);
}

/// Secrets given on the command line, known before anything runs or logs: `--set` values of
/// secret-named variables, API secrets.
fn register_secret_arguments(command: &cli::Command) {
    match command {
        cli::Command::Deploy { set, .. } => redact::register(
            set.iter().filter_map(|a| a.split_once('=')).filter(|(k, _)| vars::is_secret_key(k)).map(|(_, v)| v),
        ),
        cli::Command::Trigger { api_secret, .. } => redact::register([api_secret]),
        cli::Command::Watch { api_secret: Some(secret), .. } => redact::register([secret]),
        _ => {}
    }
}

/// What `-v`s show: berth's own detail first; other crates' internals (the engine's answers
/// from bollard) only from `-vvv`, and the HTTP stack's connection chatter never by default.
fn log_filter(verbose: u8) -> &'static str {
    match verbose {
        0 => "warn",
        1 => "info",
        2 => "info,berth=debug,berth_core=debug",
        _ => "debug,berth=trace,berth_core=trace,hyper=info,hyper_util=info,h2=info,rustls=info,want=info,mio=info",
    }
}

/// `berth logs 7 | head`: when the reader of stdout (or stderr) goes away, stop quietly as a Unix tool killed by
/// SIGPIPE does (status 141), instead of the panic `print!` raises. Only stdout: SIGPIPE itself stays
/// ignored, so a closed socket or a dead child's pipe remains an error berth handles.
fn quiet_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload.downcast_ref::<String>().map(String::as_str).or(payload.downcast_ref::<&str>().copied());
        if message.is_some_and(|m| m.starts_with("failed printing to std") && m.contains("(os error 32)")) {
            std::process::exit(error::exit::BROKEN_PIPE);
        }
        default(info);
    }));
}

/// `error: what went wrong` and `help: what to do`, unwrapped (paths and commands in hints stay
/// whole to be copied), bold red and cyan on a terminal unless `NO_COLOR` is set.
fn report(e: &error::Error) {
    let color = std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none();
    let paint = |code: &str, s: &str| if color { format!("\x1b[{code}m{s}\x1b[0m") } else { s.to_string() };
    // Redacted as a whole: a value split over two lines would not match.
    let print = |message: String, help: Option<String>| {
        let mut out = format!("{} {}", paint("1;31", "error:"), redact::apply(&message));
        if let Some(h) = help {
            out.push_str(&format!("\n  {} {}", paint("36", "help:"), redact::apply(&h)));
        }
        eprintln!("{out}");
    };
    match e {
        error::Error::Config(errs) => {
            for c in errs {
                print(c.to_string(), c.help.clone());
            }
            eprintln!("{}", redact::apply(&e.to_string()));
        }
        _ => print(e.to_string(), e.help()),
    }
}
