//! `berth doctor`: check everything berth depends on and say what to fix.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::docker::{Compose, Engine};
use crate::error::{Result, exit};
use crate::process;
use crate::workspace::Workspace;

fn line(ok: bool, what: &str, detail: &str) {
    println!("{} {what}: {detail}", if ok { "✓" } else { "✗" });
}

pub fn doctor(repo: Option<&Path>, state_dir: Option<&Path>) -> Result<i32> {
    let mut ok = true;
    match process::run(Command::new("git").arg("--version"), Duration::from_secs(10)) {
        Ok(o) if o.success() => line(true, "git", o.stdout.trim()),
        _ => {
            line(false, "git", "not found: install git");
            ok = false;
        }
    };
    let ws = match Workspace::open(repo, state_dir) {
        Ok(ws) => {
            line(true, "repository", &ws.repo.root.display().to_string());
            Some(ws)
        }
        Err(e) => {
            line(false, "repository", &e.to_string());
            ok = false;
            None
        }
    };
    let mut servers =
        vec![berth_core::Server { name: "local".into(), docker: None, tls: None, registry_auth: None, prune: None }];
    if let Some(ws) = &ws {
        match ws.snapshot("HEAD") {
            Ok(s) => {
                line(true, "config", &format!("{} stacks at {}", s.project.stacks.len(), &s.commit[..10]));
                servers = s.project.servers.clone();
            }
            Err(e) => {
                line(false, "config", &format!("{e}; run `berth validate` for details"));
                ok = false;
            }
        }
        match ws.state() {
            Ok(_) => line(true, "state", &ws.state_dir.join("berth.db").display().to_string()),
            Err(e) => {
                line(false, "state", &e.to_string());
                ok = false;
            }
        };
    }
    if !process::on_path("docker") {
        line(false, "docker", "the docker CLI is not on PATH: install docker.io or docker-ce-cli");
        ok = false;
    }
    match Compose::detect() {
        Ok(c) => {
            line(true, "compose", &c.describe());
            for server in servers {
                let name = &server.name;
                let engine = Engine::for_server(&server, &c);
                match engine.ping() {
                    Ok(v) => line(true, &format!("server {name}"), &format!("Docker {v} at {}", engine.endpoint())),
                    Err(e) => {
                        line(false, &format!("server {name}"), &e.to_string());
                        ok = false;
                    }
                };
            }
        }
        Err(e) => {
            line(false, "compose", &format!("{e}: install the compose plugin or docker-compose"));
            ok = false;
        }
    }
    Ok(if ok { exit::OK } else { exit::FAILED })
}
