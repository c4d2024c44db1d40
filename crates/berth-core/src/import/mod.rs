//! Import from Komodo: a ResourceSync TOML file turned into a `berth.toml`.
//!
//! Everything that maps is written; everything that does not is returned as a
//! warning naming the resource and the field, never silently dropped.

use std::collections::BTreeMap;
use std::fmt::Write;

use toml::{Table, Value};

mod stacks;

/// The converted configuration and what could not be mapped.
#[derive(Debug, Default)]
pub struct Imported {
    pub toml: String,
    /// What was not imported: fields and resources with no berth equivalent, refused stacks.
    pub warnings: Vec<String>,
    /// What was mapped but needs the user: a value to fill in or a guess to check (`CONFIRM` in the file).
    pub confirm: Vec<String>,
    pub stacks: usize,
    pub servers: usize,
    /// Fields written into the configuration.
    pub mapped: usize,
}

impl Imported {
    /// One line for stderr: how much was imported, and how much needs the user.
    pub fn summary(&self) -> String {
        format!(
            "imported {} stacks and {} servers: {} fields mapped, {} need confirmation, {} not mapped",
            self.stacks,
            self.servers,
            self.mapped,
            self.confirm.len(),
            self.warnings.len()
        )
    }
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
    for kind in ["deployment", "build", "procedure", "action", "builder", "resource_sync", "user_group", "variable"] {
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
                out.confirm
                    .push(format!("server `{name}`: docker endpoint `ssh://root@{h}` is a guess from {address}"));
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
        if servers.len() > 1 {
            warn(format!(
                "swarm `{name}`: server_ids beyond the first ({}) are not mapped; berth deploys through one manager",
                servers[1..].join(", ")
            ));
        }
        let _ = writeln!(toml, "\n[[server]]\nname = {}", q(name));
        match manager {
            Some(h) => {
                let _ = writeln!(
                    toml,
                    "docker = {}  # CONFIRM: a manager of swarm {}",
                    q(&format!("ssh://root@{h}")),
                    note(name)
                );
                out.confirm
                    .push(format!("swarm `{name}`: docker endpoint `ssh://root@{h}` is a guess (its first server)"));
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
            out.confirm
                .push(format!("repo `{name}`: its token is read from BERTH_GIT_TOKEN (Komodo used a git account)"));
        }
        for (k, _) in cfg.into_iter().flatten() {
            if !["git_provider", "git_https", "repo", "branch", "git_account", "server", "server_id"]
                .contains(&k.as_str())
            {
                warn(format!("repo `{name}`: field `{k}` is not mapped"));
            }
        }
    }
    out.servers = resources(&doc, "server").len() + resources(&doc, "swarm").len();
    stacks::convert(&doc, &mut toml, &mut out);
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
        assert!(out.toml.contains("pre_deploy = [\"sh\", \"scripts/check.sh\"]"), "{}", out.toml);
        assert!(out.toml.contains("pull = \"always\""), "{}", out.toml);
        assert!(out.toml.contains("env = { DOMAIN = \"example.com\" }"));
        assert!(out.toml.contains("verify = { ignore_services = [\"init\"] }"));
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

    const FAITHFUL: &str = r#"
[[server]]
name = "a"
config.address = "https://10.0.0.1:8120"
[[server]]
name = "b"
config.address = "https://10.0.0.2:8120"
[[swarm]]
name = "prod"
config.server_ids = ["a", "b"]

[[repo]]
name = "homelab"
config = { git_provider = "git.example.com", repo = "me/homelab", branch = "main" }

[[alerter]]
name = "chat"
config.endpoint = { type = "Discord", params = { url = "https://discord.example/hook" } }

[[stack]]
name = "db"
description = "the database"
tags = ["prod", "data"]
[stack.config]
linked_repo = "homelab"
run_directory = "stacks/db"
pre_deploy = { path = "../../scripts", command = "sh validate-db.sh" }
post_deploy = { command = """
# wait, then check
sleep 2
curl -fsS http://db/health
""" }
environment = """
POSTGRES_PASSWORD=[[DB_PASSWORD]]
DSN=postgres://app:[[DB_PASSWORD]]@db/app
PLAIN=1
"""
auto_pull = false
send_alerts = true
send_unhealthy_alerts = true
poll_for_updates = true
webhook_enabled = true

[[stack]]
name = "elsewhere"
[stack.config]
git_provider = "github.com"
repo = "someone/other"
branch = "dev"
run_directory = "x"
"#;

    #[test]
    fn hooks_keep_komodos_folders_and_commands() {
        let out = komodo(FAITHFUL).unwrap();
        assert!(
            out.toml.contains(r#"pre_deploy = { run = ["sh", "validate-db.sh"], dir = "../../scripts" }"#),
            "{}",
            out.toml
        );
        assert!(
            out.toml.contains(r#"post_deploy = ["sh", "-c", "sleep 2 && curl -fsS http://db/health"]"#),
            "{}",
            out.toml
        );
        crate::config::parse("berth.toml", &out.toml).unwrap();
    }

    #[test]
    fn secrets_become_references_to_fill_never_literal_values() {
        let out = komodo(FAITHFUL).unwrap();
        assert!(!out.toml.contains("[[DB_PASSWORD]]"), "{}", out.toml);
        assert!(
            out.toml.contains(r#"env = { POSTGRES_PASSWORD = { env = "DB_PASSWORD" }, PLAIN = "1" }"#),
            "{}",
            out.toml
        );
        assert!(out.confirm.iter().any(|c| c.contains("`POSTGRES_PASSWORD` was the Komodo secret [[DB_PASSWORD]]")));
        assert!(
            out.warnings.iter().any(|w| w.contains("`DSN` embeds a Komodo secret placeholder")),
            "{:?}",
            out.warnings
        );
    }

    #[test]
    fn every_unmapped_field_is_listed_and_other_repositories_are_refused() {
        let out = komodo(FAITHFUL).unwrap();
        for w in [
            "stack `db`: field `tags` is not mapped",
            "stack `db`: field `description` is not mapped",
            "stack `db`: field `send_unhealthy_alerts` is not mapped",
            "stack `db`: field `poll_for_updates` is not mapped",
            "swarm `prod`: server_ids beyond the first (b) are not mapped",
            "stack `elsewhere`: comes from github.com/someone/other (branch dev), not the stacks repository git.example.com/me/homelab (branch main)",
        ] {
            assert!(out.warnings.iter().any(|x| x.starts_with(w)), "missing {w:?} in {:#?}", out.warnings);
        }
        assert!(!out.toml.contains("elsewhere"), "{}", out.toml);
        assert!(out.toml.contains("pull = \"missing\""), "{}", out.toml);
        // send_alerts: the alerter becomes a notify target; webhooks: a note about `berth serve`.
        assert!(out.toml.contains("kind = \"discord\"\nurl = \"https://discord.example/hook\""), "{}", out.toml);
        assert!(out.confirm.iter().any(|c| c.contains("Komodo webhooks map to `berth serve`")), "{:?}", out.confirm);
        assert_eq!((out.stacks, out.servers), (1, 3));
        // Every `CONFIRM` guess in the file is also listed (here the endpoints of two servers and a swarm).
        assert_eq!(out.confirm.iter().filter(|c| c.contains("is a guess")).count(), 3, "{:?}", out.confirm);
        assert!(out.summary().starts_with("imported 1 stacks and 3 servers: "), "{}", out.summary());
        crate::config::parse("berth.toml", &out.toml).unwrap();
    }
}
