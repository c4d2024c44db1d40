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
                // The environment a deploy to this server uses: its DOCKER_CONFIG decides the plugin.
                match engine.compose_version(name) {
                    Ok(v) => line(true, &format!("server {name} compose"), &compose_detail(&engine, &v)),
                    Err(e) => {
                        line(false, &format!("server {name} compose"), &format!("{e}; deploys there would fail"));
                        ok = false;
                    }
                }
                if server.registry_auth.is_some()
                    && let Err(e) = engine.check_registry_auth()
                {
                    line(false, &format!("server {name} registry_auth"), &format!("{e}; private pulls would fail"));
                    ok = false;
                }
            }
        }
        Err(e @ crate::docker::DockerError::NoCompose) => {
            line(false, "compose", &format!("{e}: install the compose plugin or docker-compose"));
            ok = false;
        }
        Err(e) => {
            line(false, "compose", &e.to_string());
            ok = false;
        }
    }
    Ok(if ok { exit::OK } else { exit::FAILED })
}

/// Which compose a deploy to `engine` runs, from where, with which `DOCKER_CONFIG`.
fn compose_detail(engine: &Engine, version: &str) -> String {
    match &engine.compose {
        Compose::Plugin { .. } => {
            let from = engine.plugin().map(|p| p.display().to_string()).unwrap_or_else(|| "the docker CLI".into());
            format!("docker compose plugin {version} from {from} (DOCKER_CONFIG {})", engine.config_dir())
        }
        Compose::Standalone { .. } => format!("standalone docker-compose {version}"),
    }
}
