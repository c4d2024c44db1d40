//! The command reference (`docs/reference/cli.md`), rendered from the clap definitions, and the
//! test that keeps the checked-in file in step with them.

use std::fmt::Write;

use clap::{Arg, ArgAction, Command, CommandFactory};

use super::Cli;

/// Where the reference lives, relative to this crate.
const PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/reference/cli.md");

/// The whole reference: every verb, nested ones included, in the order `berth --help` lists them.
pub fn markdown() -> String {
    let mut root = Cli::command();
    root.build();
    let mut out = String::from(
        "# Command reference\n\n\
         <!-- Generated from crates/berth/src/cli.rs; do not edit. Regenerate with\n     \
         BERTH_UPDATE_CLI_REFERENCE=1 cargo test -p berth --bin berth cli::reference -->\n\n",
    );
    if let Some(about) = root.get_about() {
        let _ = writeln!(out, "{}\n", sentence(&about.to_string()));
    }
    out.push_str(
        "Exit codes, how the commands fit together and examples: [the guide](../guide/). \
         Every command accepts the global options below.\n\n## Global options\n\n",
    );
    options(&mut out, root.get_arguments().filter(|a| a.is_global_set()));
    out.push_str("\n## Commands\n\n");
    let verbs = || root.get_subcommands().filter(|s| !s.is_hide_set() && s.get_name() != "help");
    for sub in verbs() {
        let _ = writeln!(out, "* [`{}`](#{})", title(sub), anchor(sub));
    }
    for sub in verbs() {
        command(&mut out, sub);
    }
    out
}

fn title(cmd: &Command) -> String {
    cmd.get_bin_name().unwrap_or(cmd.get_name()).to_string()
}

/// GitHub's heading anchor for `### \`berth ci status\``.
fn anchor(cmd: &Command) -> String {
    title(cmd).replace(' ', "-")
}

fn command(out: &mut String, cmd: &Command) {
    let _ = writeln!(out, "\n### `{}`\n", title(cmd));
    if let Some(about) = cmd.get_long_about().or(cmd.get_about()) {
        let _ = writeln!(out, "{}\n", sentence(&about.to_string()));
    }
    let usage = cmd.clone().render_usage().to_string();
    let _ = writeln!(out, "```\n{}\n```", usage.trim_start_matches("Usage: ").trim());
    let positionals: Vec<&Arg> = cmd.get_positionals().filter(|a| !a.is_hide_set()).collect();
    if !positionals.is_empty() {
        out.push_str("\nArguments:\n\n");
        for arg in positionals {
            let name = arg.get_value_names().and_then(|v| v.first()).map_or(arg.get_id().as_str(), |n| n.as_str());
            let _ = writeln!(out, "* `{}`{}", name.to_uppercase(), describe(arg));
        }
    }
    let own: Vec<&Arg> =
        cmd.get_arguments().filter(|a| !a.is_positional() && !a.is_global_set() && !is_builtin(a)).collect();
    if !own.is_empty() {
        out.push_str("\nOptions:\n\n");
        options(out, own.into_iter());
    }
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set() && s.get_name() != "help") {
        command(out, sub);
    }
}

fn is_builtin(arg: &Arg) -> bool {
    matches!(arg.get_id().as_str(), "help" | "version")
}

fn options<'a>(out: &mut String, args: impl Iterator<Item = &'a Arg>) {
    for arg in args.filter(|a| !a.is_hide_set() && !is_builtin(a)) {
        let mut flag = String::new();
        if let Some(short) = arg.get_short() {
            let _ = write!(flag, "-{short}, ");
        }
        if let Some(long) = arg.get_long() {
            let _ = write!(flag, "--{long}");
        }
        if arg.get_action().takes_values() {
            let name = arg.get_value_names().and_then(|v| v.first()).map_or(arg.get_id().as_str(), |n| n.as_str());
            let _ = write!(flag, " {}", name.to_uppercase());
        }
        if matches!(arg.get_action(), ArgAction::Append) {
            flag.push_str("...");
        }
        let _ = writeln!(out, "* `{flag}`{}", describe(arg));
    }
}

/// The help text, then what clap knows besides: required, repeatable, default, environment.
fn describe(arg: &Arg) -> String {
    let mut parts: Vec<String> =
        arg.get_long_help().or(arg.get_help()).map(|h| sentence(&h.to_string())).into_iter().collect();
    if arg.is_required_set() {
        parts.push("Required.".into());
    }
    if matches!(arg.get_action(), ArgAction::Count) {
        parts.push("Repeatable.".into());
    }
    let defaults: Vec<String> = arg.get_default_values().iter().map(|v| v.to_string_lossy().into_owned()).collect();
    if !defaults.is_empty() && !matches!(arg.get_action(), ArgAction::SetTrue | ArgAction::Count) {
        parts.push(format!("Default: `{}`.", defaults.join(",")));
    }
    if let Some(env) = arg.get_env() {
        parts.push(format!("Environment: `{}`.", env.to_string_lossy()));
    }
    if parts.is_empty() { String::new() } else { format!(": {}", parts.join(" ")) }
}

/// clap drops a doc comment's final period; the reference reads as sentences.
fn sentence(text: &str) -> String {
    let text = text.trim();
    if text.ends_with(['.', '!', '?']) { text.to_string() } else { format!("{text}.") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checked_in_reference_matches_the_clap_definitions() {
        let fresh = markdown();
        if std::env::var_os("BERTH_UPDATE_CLI_REFERENCE").is_some() {
            std::fs::write(PATH, &fresh).unwrap();
            return;
        }
        let stored = std::fs::read_to_string(PATH).unwrap_or_default();
        assert!(
            stored == fresh,
            "docs/reference/cli.md is stale: the command line changed. Regenerate it with\n  \
             BERTH_UPDATE_CLI_REFERENCE=1 cargo test -p berth --bin berth cli::reference\nand commit the result."
        );
    }

    #[test]
    fn every_verb_has_a_section() {
        let text = markdown();
        for sub in Cli::command().get_subcommands() {
            assert!(text.contains(&format!("### `berth {}`", sub.get_name())), "{} missing", sub.get_name());
        }
    }
}
