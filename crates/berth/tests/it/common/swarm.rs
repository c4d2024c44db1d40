//! The single-node swarm tests share: one test at a time, left as it was found.

use std::process::Command;
use std::sync::Mutex;

use super::docker_out;

/// Tests that need the swarm take turns: one leaving it must not pull it from under another.
static SWARM: Mutex<()> = Mutex::new(());

/// Hold off swarm init and leave for a test whose outcome depends on Docker's DNS on a bridge
/// network: they reconfigure the engine's networking, and names stop resolving meanwhile.
pub fn calm() -> std::sync::MutexGuard<'static, ()> {
    SWARM.lock().unwrap_or_else(|p| p.into_inner())
}

/// Leaves the swarm (if this test made it) and removes its stacks, even on failure.
pub struct Swarm {
    made: bool,
    stacks: Vec<String>,
    _turn: std::sync::MutexGuard<'static, ()>,
}

impl Swarm {
    /// Take the swarm's turn; init a single-node swarm when the engine is in none.
    pub fn join(stacks: Vec<String>) -> Swarm {
        let turn = SWARM.lock().unwrap_or_else(|p| p.into_inner());
        let state = docker_out(&["info", "--format", "{{.Swarm.LocalNodeState}}"]);
        let made = state != "active";
        if made {
            let o = Command::new("docker").args(["swarm", "init", "--advertise-addr", "127.0.0.1"]).output().unwrap();
            assert!(o.status.success(), "docker swarm init: {}", String::from_utf8_lossy(&o.stderr));
        }
        Swarm { made, stacks, _turn: turn }
    }
}

impl Drop for Swarm {
    fn drop(&mut self) {
        for s in &self.stacks {
            let _ = Command::new("docker").args(["stack", "rm", s]).output();
        }
        if self.made {
            let _ = Command::new("docker").args(["swarm", "leave", "--force"]).output();
        }
    }
}

/// The environment of a swarm service's task template, as JSON.
pub fn service_env(service: &str) -> String {
    docker_out(&["service", "inspect", "--format", "{{json .Spec.TaskTemplate.ContainerSpec.Env}}", service])
}

/// How many of a swarm service's tasks that should run are running.
pub fn running_tasks(service: &str) -> usize {
    let ps =
        docker_out(&["service", "ps", "--filter", "desired-state=running", "--format", "{{.CurrentState}}", service]);
    ps.lines().filter(|l| l.starts_with("Running")).count()
}
