//! berth: GitOps for self-hosted Docker. The binary's edge: parse the command
//! line, run the command, and turn errors into reports and exit codes.

mod ci;
mod cli;
mod commands;
mod controller;
mod converge;
mod deploy;
mod dial;
mod dispatch;
mod docker;
mod drift;
mod error;
mod git;
mod keys;
mod lock;
mod metrics;
mod notify;
mod output;
mod process;
mod recovery;
mod release;
mod secrets;
mod server;
mod smoke;
mod state;
mod workspace;

use clap::Parser;

fn main() {
    quiet_broken_pipe();
    // Unwrapped: paths and the commands in hints must stay whole to be copied.
    let _ = miette::set_hook(Box::new(|_| Box::new(miette::MietteHandlerOpts::new().wrap_lines(false).build())));
    let cli = cli::Cli::parse();
    let filter = match cli.global.verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let (filter, json) = match &cli.command {
        // The controller logs what it does by default, as JSON lines unless on a terminal.
        cli::Command::Serve { json_logs, .. } => (
            if cli.global.verbose > 1 { "debug" } else { "info" },
            json_logs.unwrap_or_else(|| !std::io::IsTerminal::is_terminal(&std::io::stderr())),
        ),
        _ => (filter, false),
    };
    let env_filter = tracing_subscriber::EnvFilter::try_from_env("BERTH_LOG").unwrap_or_else(|_| filter.into());
    let builder = tracing_subscriber::fmt().with_env_filter(env_filter).with_writer(std::io::stderr);
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

fn report(e: &error::Error) {
    use miette::MietteDiagnostic;
    let print = |d: MietteDiagnostic| eprintln!("{:?}", miette::Report::new(d));
    match e {
        error::Error::Config(errs) => {
            for c in errs {
                let mut d = MietteDiagnostic::new(c.to_string());
                if let Some(h) = &c.help {
                    d = d.with_help(h.clone());
                }
                print(d);
            }
            eprintln!("{e}");
        }
        _ => {
            let mut d = MietteDiagnostic::new(e.to_string());
            if let Some(h) = e.help() {
                d = d.with_help(h);
            }
            print(d);
        }
    }
}
