//! Komodo stacks (and the alerters their `send_alerts` uses) turned into `[[stack]]` and `[[notify]]` entries.
//!
//! Hooks keep Komodo's folders (`pre_deploy.path` is relative to the run directory); a stack from
//! another repository or branch is refused; `[[VAR]]` secrets become references to fill in.

use std::fmt::Write;

use toml::{Table, Value};

use super::{Imported, list, note, q, resources, strs};

/// Stack config fields this module reads (everything else is reported as not mapped).
const MAPPED: &[&str] = &[
    "run_directory",
    "file_paths",
    "server",
    "server_id",
    "swarm",
    "swarm_id",
    "pre_deploy",
    "post_deploy",
    "environment",
    "ignore_services",
    "linked_repo",
    "repo",
    "branch",
    "git_provider",
    "git_https",
    "auto_pull",
    "send_alerts",
    "webhook_enabled",
    "webhook_secret",
    "webhook_force_deploy",
];

/// Where a stack's files come from: (git provider, repository path, branch).
type Source = (String, String, String);

fn field<'t>(t: Option<&'t Table>, k: &str) -> Option<&'t str> {
    t.and_then(|c| c.get(k)).and_then(Value::as_str).filter(|v| !v.is_empty())
}

fn source(doc: &Table, cfg: Option<&Table>) -> Option<Source> {
    let get = field;
    let from = |t: Option<&Table>| {
        let repo = get(t, "repo")?;
        let provider = get(t, "git_provider").unwrap_or("github.com");
        Some((provider.to_string(), repo.to_string(), get(t, "branch").unwrap_or("main").to_string()))
    };
    match get(cfg, "linked_repo") {
        Some(name) => {
            let r = resources(doc, "repo").into_iter().find(|r| r.get("name").and_then(Value::as_str) == Some(name));
            from(r.and_then(|r| r.get("config")).and_then(Value::as_table))
                .or_else(|| Some((String::new(), name.to_string(), String::new())))
        }
        None => from(cfg),
    }
}

fn describe(s: &Source) -> String {
    if s.0.is_empty() { format!("repo `{}`", s.1) } else { format!("{}/{} (branch {})", s.0, s.1, s.2) }
}

/// A Komodo command as an argument vector: split on blanks when it is one plain command, else `sh -c`.
/// Komodo runs each non-comment line, joined with `&&`.
fn command_argv(command: &str) -> Vec<String> {
    let lines: Vec<&str> = command.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
    let plain = |c: char| c.is_ascii_alphanumeric() || "_./:=@%+,-".contains(c);
    match lines.as_slice() {
        [one] if one.split_whitespace().all(|w| w.chars().all(plain)) => {
            one.split_whitespace().map(str::to_string).collect()
        }
        _ => vec!["sh".into(), "-c".into(), lines.join(" && ")],
    }
}

/// A Komodo `[[NAME]]` placeholder filling a whole value.
fn placeholder(v: &str) -> Option<&str> {
    let name = v.strip_prefix("[[")?.strip_suffix("]]")?.trim();
    crate::vars::valid_key(name).then_some(name)
}

pub(super) fn convert(doc: &Table, toml: &mut String, out: &mut Imported) {
    let stacks = resources(doc, "stack");
    // The stacks repository: where most stacks come from (the first such on a tie).
    let sources: Vec<Option<Source>> =
        stacks.iter().map(|s| source(doc, s.get("config").and_then(Value::as_table))).collect();
    let mut home: Option<&Source> = None;
    let mut best = 0;
    for s in sources.iter().flatten() {
        let n = sources.iter().flatten().filter(|x| *x == s).count();
        if n > best {
            (home, best) = (Some(s), n);
        }
    }
    let mut alerting = Vec::new();
    let mut webhooks = Vec::new();
    for (s, src) in stacks.iter().zip(&sources) {
        let Some(name) = s.get("name").and_then(Value::as_str) else { continue };
        if let (Some(src), Some(home)) = (src, home)
            && src != home
        {
            out.warnings.push(format!(
                "stack `{name}`: comes from {}, not the stacks repository {}; not imported (declare it in that \
                 repository's berth.toml)",
                describe(src),
                describe(home)
            ));
            continue;
        }
        out.stacks += 1;
        stack(name, s, toml, out, &mut alerting, &mut webhooks);
    }
    if let Some(home) = home {
        out.confirm.push(format!("stacks come from {}: run berth in a clone of it", describe(home)));
    }
    if !webhooks.is_empty() {
        let _ = writeln!(
            toml,
            "\n# Komodo webhooks were enabled for {}: `berth serve` receives the forge's push webhook \
             (POST /webhook, secret in [[repo]] webhook_secret) and deploys what changed.",
            webhooks.join(", ")
        );
        out.confirm.push(format!(
            "stacks {}: Komodo webhooks map to `berth serve` (point the forge's push webhook at it)",
            webhooks.join(", ")
        ));
    }
    alerters(doc, toml, out, &alerting);
}

fn stack(
    name: &str,
    s: &Table,
    toml: &mut String,
    out: &mut Imported,
    alerting: &mut Vec<String>,
    webhooks: &mut Vec<String>,
) {
    let cfg = s.get("config").and_then(Value::as_table);
    let get = |k: &str| cfg.and_then(|c| c.get(k));
    let gets = |k: &str| get(k).and_then(Value::as_str);
    let mut mapped = 0;
    let _ = writeln!(toml, "\n[[stack]]\nname = {}", q(name));
    let run_directory = gets("run_directory").unwrap_or(".").trim_start_matches("./").trim_end_matches('/');
    let _ = writeln!(toml, "path = {}", q(if run_directory.is_empty() { "." } else { run_directory }));
    let files = strs(get("file_paths"));
    if !files.is_empty() {
        let _ = writeln!(toml, "compose = {}", list(&files));
        mapped += 1;
    }
    if let Some(swarm) = gets("swarm").or_else(|| gets("swarm_id")).filter(|s| !s.is_empty()) {
        let _ = writeln!(toml, "server = {}\nmode = \"swarm\"", q(swarm));
        mapped += 1;
    } else if let Some(server) = gets("server").or_else(|| gets("server_id")).filter(|s| !s.is_empty()) {
        let _ = writeln!(toml, "server = {}", q(server));
        mapped += 1;
    }
    let after = strs(s.get("after"));
    if !after.is_empty() {
        let _ = writeln!(toml, "after = {}", list(&after));
        mapped += 1;
    }
    for hook in ["pre_deploy", "post_deploy"] {
        let h = get(hook).and_then(Value::as_table);
        let field = |k: &str| h.and_then(|h| h.get(k)).and_then(Value::as_str).map(str::trim).filter(|c| !c.is_empty());
        let Some(cmd) = field("command") else { continue };
        let run = list(&command_argv(cmd));
        // Komodo runs the command in `run_directory/path`; berth's `dir` is relative to the stack folder too.
        match field("path").map(|p| p.trim_start_matches("./").trim_end_matches('/')).filter(|p| !p.is_empty()) {
            Some(dir) => {
                let _ = writeln!(toml, "{hook} = {{ run = {run}, dir = {} }}", q(dir));
            }
            None => {
                let _ = writeln!(toml, "{hook} = {run}");
            }
        }
        mapped += 1;
    }
    match get("auto_pull").and_then(Value::as_bool) {
        Some(true) => {
            let _ = writeln!(toml, "pull = \"always\"  # Komodo: auto_pull = true");
            mapped += 1;
        }
        Some(false) => {
            let _ = writeln!(toml, "pull = \"missing\"  # Komodo: auto_pull = false");
            mapped += 1;
        }
        None => {}
    }
    if let Some(env) = gets("environment") {
        let mut vars: Vec<(&str, String)> = Vec::new();
        for line in env.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
            let Some((k, v)) = line.split_once('=').map(|(k, v)| (k.trim(), v.trim())) else {
                out.warnings.push(format!("stack `{name}`: environment line `{line}` is not KEY=VALUE"));
                continue;
            };
            if !crate::vars::valid_key(k) {
                out.warnings.push(format!("stack `{name}`: environment line `{line}` is not KEY=VALUE"));
                continue;
            }
            // A Komodo secret is never written as its placeholder: a reference the user fills instead.
            let value = match placeholder(v) {
                Some(var) => {
                    out.confirm.push(format!(
                        "stack `{name}`: `{k}` was the Komodo secret [[{var}]]; berth reads it from the environment \
                         variable {var} (set it where berth runs, or use {{ file = \"...\" }})"
                    ));
                    format!("{{ env = {} }}", q(var))
                }
                None if v.contains("[[") && v.contains("]]") => {
                    out.warnings.push(format!(
                        "stack `{name}`: `{k}` embeds a Komodo secret placeholder in a longer value; not imported \
                         (give berth the whole value as a secret: {k} = {{ env = \"...\" }})"
                    ));
                    continue;
                }
                None => q(v),
            };
            match vars.iter_mut().find(|(key, _)| *key == k) {
                Some(set) => {
                    out.warnings.push(format!("stack `{name}`: environment sets `{k}` twice; the last value is kept"));
                    set.1 = value;
                }
                None => vars.push((k, value)),
            }
        }
        if !vars.is_empty() {
            let vars: Vec<String> = vars.iter().map(|(k, v)| format!("{k} = {v}")).collect();
            let _ = writeln!(toml, "env = {{ {} }}", vars.join(", "));
            mapped += 1;
        }
    }
    let ignore = strs(get("ignore_services"));
    if !ignore.is_empty() {
        let _ = writeln!(toml, "verify = {{ ignore_services = {} }}", list(&ignore));
        mapped += 1;
    }
    if s.get("deploy").and_then(Value::as_bool) == Some(false) {
        let _ = writeln!(toml, "manual = true  # Komodo: deploy = false");
        mapped += 1;
    }
    match get("send_alerts").and_then(Value::as_bool) {
        Some(true) => {
            alerting.push(name.to_string());
            mapped += 1;
        }
        Some(false) => out.warnings.push(format!(
            "stack `{name}`: send_alerts = false is not mapped; berth's [[notify]] targets hear about every stack"
        )),
        None => {}
    }
    if get("webhook_enabled").and_then(Value::as_bool) == Some(true) {
        webhooks.push(name.to_string());
    }
    out.mapped += mapped;
    for (k, _) in cfg.into_iter().flatten() {
        if !MAPPED.contains(&k.as_str()) {
            out.warnings.push(format!("stack `{name}`: field `{k}` is not mapped"));
        }
    }
    for k in s.keys() {
        if !["name", "config", "after", "deploy"].contains(&k.as_str()) {
            out.warnings.push(format!("stack `{name}`: field `{k}` is not mapped"));
        }
    }
}

/// Komodo alerters with a URL become `[[notify]]` targets, when stacks sent alerts.
fn alerters(doc: &Table, toml: &mut String, out: &mut Imported, alerting: &[String]) {
    let mut written = 0;
    for a in resources(doc, "alerter") {
        let name = a.get("name").and_then(Value::as_str).unwrap_or("?");
        let endpoint = a.get("config").and_then(|c| c.get("endpoint")).and_then(Value::as_table);
        let kind = endpoint.and_then(|e| e.get("type")).and_then(Value::as_str).unwrap_or("");
        let url = endpoint.and_then(|e| e.get("params")).and_then(|p| p.get("url")).and_then(Value::as_str);
        let berth_kind = match kind.to_ascii_lowercase().as_str() {
            "slack" => "slack",
            "discord" => "discord",
            "ntfy" => "ntfy",
            "custom" => "webhook",
            _ => "",
        };
        match (berth_kind, url, alerting.is_empty()) {
            (_, _, true) => out.warnings.push(format!("alerter `{name}`: no stack sends alerts; not imported")),
            ("", _, _) | (_, None, _) => {
                out.warnings.push(format!("alerter `{name}`: endpoint `{kind}` has no berth equivalent; not imported"))
            }
            (k, Some(url), false) => {
                let _ = writeln!(
                    toml,
                    "\n[[notify]]  # CONFIRM: Komodo alerter {}\nkind = {}\nurl = {}\nevents = [\"failed\", \"rolled_back\", \"drift\"]",
                    note(name),
                    q(k),
                    q(url)
                );
                written += 1;
                out.mapped += 1;
            }
        }
    }
    if !alerting.is_empty() {
        out.confirm.push(format!(
            "stacks {} sent Komodo alerts: {} [[notify]] target(s) written; berth notifies about every stack",
            alerting.join(", "),
            written
        ));
        if written == 0 {
            let _ = writeln!(
                toml,
                "\n# CONFIRM: Komodo sent alerts for {}; add a target:\n# [[notify]]\n# kind = \"ntfy\"\n# url = \"https://ntfy.example.com/berth\"",
                alerting.join(", ")
            );
        }
    }
}
