//! Import from Komodo: a ResourceSync TOML file turned into a `berth.toml`.
//!
//! Everything that maps is written; everything that does not is returned as a
//! warning naming the resource and the field, never silently dropped.

use std::collections::BTreeMap;
use std::fmt::Write;

use toml::{Table, Value};

/// The converted configuration and what could not be mapped.
#[derive(Debug, Default)]
pub struct Imported {
    pub toml: String,
    pub warnings: Vec<String>,
}

fn q(s: &str) -> String {
    Value::String(s.to_string()).to_string()
}

/// A value quoted for a `#` comment: escaped onto one line (a TOML string may span lines, a comment may not).
fn note(s: &str) -> String {
    format!("{s:?}")
}

fn list(items: &[String]) -> String {
    format!("[{}]", items.iter().map(|i| q(i)).collect::<Vec<_>>().join(", "))
}

fn resources<'a>(doc: &'a Table, kind: &str) -> Vec<&'a Table> {
    doc.get(kind).and_then(Value::as_array).map(|a| a.iter().filter_map(Value::as_table).collect()).unwrap_or_default()
}

fn host_of(address: &str) -> Option<String> {
    let rest = address.split_once("://").map(|(_, r)| r).unwrap_or(address);
    let host = rest.split(['/', ':']).next()?;
    (!host.is_empty()).then(|| host.to_string())
}

fn strs(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

/// Convert a Komodo ResourceSync file.
pub fn komodo(text: &str) -> Result<Imported, String> {
    let doc: Table = toml::from_str(text).map_err(|e| format!("not a Komodo resource file: {}", e.message()))?;
    let mut out = Imported::default();
    let mut warn = |w: String| out.warnings.push(w);
    let mut toml = String::from("# Imported from Komodo by `berth import komodo`. Review every line marked CONFIRM.\n");

    let known_top = [
        "server",
        "swarm",
        "repo",
        "stack",
        "deployment",
        "build",
        "procedure",
        "action",
        "builder",
        "alerter",
        "resource_sync",
        "user_group",
        "variable",
    ];
    for key in doc.keys() {
        if !known_top.contains(&key.as_str()) {
            warn(format!("top-level `{key}` is not a Komodo resource kind berth knows; ignored"));
        }
    }
    for kind in
        ["deployment", "build", "procedure", "action", "builder", "alerter", "resource_sync", "user_group", "variable"]
    {
        for r in resources(&doc, kind) {
            let name = r.get("name").and_then(Value::as_str).unwrap_or("?");
            warn(format!("{kind} `{name}`: berth has no equivalent; not imported"));
        }
    }

    // Servers: Komodo talks to its periphery agent; berth to the Docker endpoint itself.
    let mut addresses: BTreeMap<String, String> = BTreeMap::new();
    for s in resources(&doc, "server") {
        let Some(name) = s.get("name").and_then(Value::as_str) else { continue };
        let cfg = s.get("config").and_then(Value::as_table);
        let address = cfg.and_then(|c| c.get("address")).and_then(Value::as_str).unwrap_or("");
        addresses.insert(name.to_string(), address.to_string());
        let _ = writeln!(toml, "\n[[server]]\nname = {}", q(name));
        match host_of(address) {
            Some(h) => {
                let _ = writeln!(
                    toml,
                    "docker = {}  # CONFIRM: Komodo periphery was {}",
                    q(&format!("ssh://root@{h}")),
                    note(address)
                );
            }
            None => warn(format!("server `{name}`: no address; it targets the local engine")),
        }
        for (k, _) in cfg.into_iter().flatten() {
            if !["address", "enabled"].contains(&k.as_str()) {
                warn(format!("server `{name}`: field `{k}` is not mapped"));
            }
        }
    }
    // Swarms become a server entry pointing at a manager; their stacks use mode = "swarm".
    for s in resources(&doc, "swarm") {
        let Some(name) = s.get("name").and_then(Value::as_str) else { continue };
        let cfg = s.get("config").and_then(Value::as_table);
        let servers = strs(cfg.and_then(|c| c.get("server_ids").or_else(|| c.get("servers"))));
        let manager = servers.first().and_then(|m| addresses.get(m)).and_then(|a| host_of(a));
        let _ = writeln!(toml, "\n[[server]]\nname = {}", q(name));
        match manager {
            Some(h) => {
                let _ = writeln!(
                    toml,
                    "docker = {}  # CONFIRM: a manager of swarm {}",
                    q(&format!("ssh://root@{h}")),
                    note(name)
                );
            }
            None => warn(format!("swarm `{name}`: no manager server found; set its docker endpoint by hand")),
        }
    }
    // Repositories.
    for r in resources(&doc, "repo") {
        let Some(name) = r.get("name").and_then(Value::as_str) else { continue };
        let cfg = r.get("config").and_then(Value::as_table);
        let get = |k: &str| cfg.and_then(|c| c.get(k)).and_then(Value::as_str);
        let provider = get("git_provider").unwrap_or("github.com");
        let https = cfg.and_then(|c| c.get("git_https")).and_then(Value::as_bool).unwrap_or(true);
        // berth needs a URL for every repo; an entry without one would make the whole file invalid.
        let Some(repo) = get("repo") else {
            warn(format!("repo `{name}`: no `repo` (the git path) in its config; not imported"));
            continue;
        };
        let scheme = if https { "https" } else { "http" };
        let _ = writeln!(toml, "\n[[repo]]\nname = {}", q(name));
        let _ = writeln!(toml, "url = {}", q(&format!("{scheme}://{provider}/{repo}.git")));
        if let Some(b) = get("branch") {
            let _ = writeln!(toml, "branch = {}", q(b));
        }
        if get("git_account").is_some() {
            let _ = writeln!(
                toml,
                "token = {{ env = \"BERTH_GIT_TOKEN\" }}  # CONFIRM: Komodo used git account {}",
                note(get("git_account").unwrap_or(""))
            );
        }
        for (k, _) in cfg.into_iter().flatten() {
            if !["git_provider", "git_https", "repo", "branch", "git_account", "server", "server_id"]
                .contains(&k.as_str())
            {
                warn(format!("repo `{name}`: field `{k}` is not mapped"));
            }
        }
    }
    // Stacks.
    let mut repos_used: Vec<String> = Vec::new();
    for s in resources(&doc, "stack") {
        let Some(name) = s.get("name").and_then(Value::as_str) else { continue };
        let cfg = s.get("config").and_then(Value::as_table);
        let get = |k: &str| cfg.and_then(|c| c.get(k));
        let gets = |k: &str| get(k).and_then(Value::as_str);
        let _ = writeln!(toml, "\n[[stack]]\nname = {}", q(name));
        let run_directory = gets("run_directory").unwrap_or(".").trim_start_matches("./").trim_end_matches('/');
        let _ = writeln!(toml, "path = {}", q(if run_directory.is_empty() { "." } else { run_directory }));
        let files = strs(get("file_paths"));
        if !files.is_empty() {
            let _ = writeln!(toml, "compose = {}", list(&files));
        }
        if let Some(swarm) = gets("swarm").or_else(|| gets("swarm_id")).filter(|s| !s.is_empty()) {
            let _ = writeln!(toml, "server = {}\nmode = \"swarm\"", q(swarm));
        } else if let Some(server) = gets("server").or_else(|| gets("server_id")).filter(|s| !s.is_empty()) {
            let _ = writeln!(toml, "server = {}", q(server));
        }
        let after = strs(s.get("after"));
        if !after.is_empty() {
            let _ = writeln!(toml, "after = {}", list(&after));
        }
        for hook in ["pre_deploy", "post_deploy"] {
            if let Some(cmd) = get(hook)
                .and_then(Value::as_table)
                .and_then(|h| h.get("command"))
                .and_then(Value::as_str)
                .filter(|c| !c.trim().is_empty())
            {
                let _ =
                    writeln!(toml, "{hook} = {}", list(&["sh".to_string(), "-c".to_string(), cmd.trim().to_string()]));
                if let Some(path) = get(hook)
                    .and_then(Value::as_table)
                    .and_then(|h| h.get("path"))
                    .and_then(Value::as_str)
                    .filter(|p| !p.is_empty())
                {
                    warn(format!(
                        "stack `{name}`: {hook}.path `{path}` is not mapped (berth runs hooks in the stack folder)"
                    ));
                }
            }
        }
        if let Some(env) = gets("environment") {
            // A key set twice keeps its last value, as in a dotenv file; TOML refuses a duplicate key.
            let mut vars: Vec<(&str, &str)> = Vec::new();
            for line in env.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
                match line.split_once('=').map(|(k, v)| (k.trim(), v.trim())) {
                    Some((k, v)) if crate::vars::valid_key(k) => match vars.iter_mut().find(|(key, _)| *key == k) {
                        Some(set) => {
                            warn(format!("stack `{name}`: environment sets `{k}` twice; the last value is kept"));
                            set.1 = v;
                        }
                        None => vars.push((k, v)),
                    },
                    _ => warn(format!("stack `{name}`: environment line `{line}` is not KEY=VALUE")),
                }
            }
            if !vars.is_empty() {
                let vars: Vec<String> = vars.iter().map(|(k, v)| format!("{k} = {}", q(v))).collect();
                let _ = writeln!(toml, "env = {{ {} }}", vars.join(", "));
            }
        }
        let ignore = strs(get("ignore_services"));
        if !ignore.is_empty() {
            let _ = writeln!(toml, "verify = {{ ignore_services = {} }}", list(&ignore));
        }
        if let Some(r) = gets("linked_repo").or_else(|| gets("repo")).filter(|r| !r.is_empty())
            && !repos_used.contains(&r.to_string())
        {
            repos_used.push(r.to_string());
        }
        if s.get("deploy").and_then(Value::as_bool) == Some(false) {
            let _ = writeln!(toml, "manual = true  # Komodo: deploy = false");
        }
        let mapped = [
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
        ];
        for (k, _) in cfg.into_iter().flatten() {
            if !mapped.contains(&k.as_str()) {
                warn(format!("stack `{name}`: field `{k}` is not mapped"));
            }
        }
        for k in s.keys() {
            if !["name", "config", "after", "deploy", "tags", "description"].contains(&k.as_str()) {
                warn(format!("stack `{name}`: field `{k}` is not mapped"));
            }
        }
    }
    if repos_used.len() > 1 {
        warn(format!(
            "stacks come from {} repositories ({}); berth reads one stacks repository per berth.toml: split them",
            repos_used.len(),
            repos_used.join(", ")
        ));
    }
    out.toml = toml;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
[[server]]
name = "onyx"
[server.config]
address = "https://10.0.0.5:8120"
enabled = true

[[repo]]
name = "homelab"
[repo.config]
git_provider = "git.example.com"
repo = "me/homelab"
branch = "main"

[[stack]]
name = "caddy"
deploy = true
after = ["db"]
[stack.config]
server = "onyx"
linked_repo = "homelab"
run_directory = "stacks/caddy"
file_paths = ["compose.yaml"]
environment = """
DOMAIN=example.com
"""
ignore_services = ["init"]
auto_pull = true
pre_deploy.command = "sh scripts/check.sh"

[[deployment]]
name = "legacy"
"#;

    #[test]
    fn maps_what_it_can_and_says_what_it_cannot() {
        let out = komodo(SAMPLE).unwrap();
        assert!(out.toml.contains("docker = \"ssh://root@10.0.0.5\""), "{}", out.toml);
        assert!(out.toml.contains("url = \"https://git.example.com/me/homelab.git\""));
        assert!(out.toml.contains("path = \"stacks/caddy\""));
        assert!(out.toml.contains("after = [\"db\"]"));
        assert!(out.toml.contains("pre_deploy = [\"sh\", \"-c\", \"sh scripts/check.sh\"]"));
        assert!(out.toml.contains("env = { DOMAIN = \"example.com\" }"));
        assert!(out.toml.contains("verify = { ignore_services = [\"init\"] }"));
        assert!(
            out.warnings.iter().any(|w| w == "stack `caddy`: field `auto_pull` is not mapped"),
            "{:?}",
            out.warnings
        );
        assert!(out.warnings.iter().any(|w| w.starts_with("deployment `legacy`")));
        // The output is valid berth.toml syntax.
        crate::config::parse("berth.toml", &out.toml).unwrap();
    }

    #[test]
    fn values_in_comments_stay_on_one_line() {
        // Found by fuzzing: a multi-line address was quoted as a TOML multi-line string inside a comment.
        let text = r#"
[[server]]
name = "m1"
config.address = """
http://10.0.0.9:8120
# not a comment"""
[[swarm]]
name = "prod\nswarm"
config.server_ids = ["m1"]
[[repo]]
name = "r"
config = { repo = "me/r", git_account = "a\nb = 1" }
"#;
        let out = komodo(text).unwrap();
        crate::config::parse("berth.toml", &out.toml).unwrap();
        assert!(out.toml.contains(r#"periphery was "http://10.0.0.9:8120\n# not a comment""#), "{}", out.toml);
        assert!(out.toml.contains(r#"a manager of swarm "prod\nswarm""#), "{}", out.toml);
    }

    #[test]
    fn an_environment_key_set_twice_keeps_the_last_value() {
        // Found by fuzzing: both lines were written into one inline table, a TOML duplicate key.
        let out = komodo("[[stack]]\nname = \"app\"\nconfig.environment = \"A=1\\nB=2\\nA = 3\"\n").unwrap();
        crate::config::parse("berth.toml", &out.toml).unwrap();
        assert!(out.toml.contains(r#"env = { A = "3", B = "2" }"#), "{}", out.toml);
        assert_eq!(out.warnings, ["stack `app`: environment sets `A` twice; the last value is kept"]);
    }

    #[test]
    fn a_repo_without_its_git_path_is_reported_not_written() {
        // Found by fuzzing: `[[repo]]` without `repo` was written without `url`, so the import did not parse.
        let out = komodo("[[repo]]\nname = \"homelab\"\n[repo.config]\nbranch = \"main\"\n").unwrap();
        crate::config::parse("berth.toml", &out.toml).unwrap();
        assert!(!out.toml.contains("[[repo]]"), "{}", out.toml);
        assert!(out.warnings.iter().any(|w| w.starts_with("repo `homelab`: no `repo`")), "{:?}", out.warnings);
    }
}
