//! `berth adopt` against the real Docker engine: projects started with plain compose from a
//! checkout of the repository become berth deploys when they match the commit, and only then.

use std::path::Path;
use std::process::Command;

use crate::common::*;

/// `compose -p STACK -f FILE up -d` from `checkout`, as a user runs it, with the compose
/// implementation berth uses here.
fn compose_up(checkout: &Path, stack: &str) {
    let file = checkout.join(format!("stacks/{stack}/compose.yaml"));
    let mut c = if compose_is_plugin() {
        let mut c = Command::new("docker");
        c.arg("compose");
        c
    } else {
        Command::new("docker-compose")
    };
    c.current_dir(checkout).arg("-p").arg(stack).arg("-f").arg(&file).args(["up", "-d"]);
    let o = c.env_remove("COMPOSE_PROJECT_NAME").env_remove("COMPOSE_FILE").output().unwrap();
    assert!(o.status.success(), "compose up {stack}: {}", String::from_utf8_lossy(&o.stderr));
}

fn clone(repo: &Repo) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let o = Command::new("git").arg("clone").arg("-q").arg(repo.path()).arg(dir.path().join("c")).output().unwrap();
    assert!(o.status.success(), "git clone: {}", String::from_utf8_lossy(&o.stderr));
    dir
}

fn steps(repo: &Repo) -> Vec<(String, String, String)> {
    let plan = repo.json(&["plan", "--json"]);
    let mut v: Vec<(String, String, String)> = plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let f = |k: &str| s[k].as_str().unwrap().to_string();
            (f("stack"), f("action"), f("reason"))
        })
        .collect();
    v.sort();
    v
}

#[test]
fn running_projects_are_adopted_and_plans_then_start_from_them() {
    let f = Fixture::bare(&["ada", "adb"]);
    let (a, b) = (f.stacks[0].clone(), f.stacks[1].clone());
    let repo = &f.repo;
    repo.stack(&a, &colored("blue"));
    repo.stack(&b, &sleeper(&["web", "worker"]));
    let first = repo.commit("two stacks");
    let checkout = clone(repo);
    let checkout = checkout.path().join("c");
    compose_up(&checkout, &a);
    compose_up(&checkout, &b);
    let (a_id, b_ids) = (container(&a, "app"), containers(&b));

    let out = repo.berth(&["adopt"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains(&format!("✓ {a}")), "{}", out.stdout);
    assert!(out.stdout.contains("(2 containers matched)"), "{}", out.stdout);
    assert!(out.stdout.contains("adopt: 2 adopted, 0 already deployed, 0 not adopted"), "{}", out.stdout);
    // Adopting touches nothing that runs.
    assert_eq!(container(&a, "app"), a_id);
    assert_eq!(containers(&b), b_ids);

    let hist = repo.json(&["history", &a, "--json"]);
    assert_eq!(hist.as_array().unwrap().len(), 1, "{hist}");
    assert_eq!(hist[0]["trigger"], "adopt");
    assert_eq!(hist[0]["status"], "succeeded");
    assert_eq!(hist[0]["commit"], first.as_str());
    assert!(hist[0]["reason"].as_str().unwrap().starts_with("adopted: 1 container"), "{hist}");
    let plan = steps(repo);
    assert_eq!(plan, [(a.clone(), "skip".into(), "unchanged".into()), (b.clone(), "skip".into(), "unchanged".into())]);

    // The recorded verification is drift's baseline: nothing drifted, until something does.
    let drift = repo.berth(&["drift"]);
    assert_eq!(drift.code, 0, "{}{}", drift.stdout, drift.stderr);
    assert!(drift.stdout.contains("no drift"), "{}", drift.stdout);

    // A second adopt finds the stacks berth already knows at this config.
    let again = repo.berth(&["adopt", &a]).ok();
    assert!(again.stdout.contains("already deployed by berth at this config"), "{}", again.stdout);
    assert_eq!(repo.json(&["history", &a, "--json"]).as_array().unwrap().len(), 1);

    // One stack's file changes: exactly that stack is planned, and applying it leaves the other alone.
    repo.stack(&a, &colored("green"));
    repo.commit("a turns green");
    let plan = steps(repo);
    assert_eq!(
        plan,
        [(a.clone(), "deploy".into(), "paths_changed".into()), (b.clone(), "skip".into(), "unchanged".into())]
    );
    let out = repo.berth(&["apply"]).ok();
    assert!(out.stdout.contains("apply: 1 deployed, 0 failed"), "{}", out.stdout);
    let a_new = container(&a, "app");
    assert_ne!(a_new, a_id);
    assert!(inspect(&a_new, "{{json .Config.Env}}").contains("COLOR=green"));
    assert_eq!(containers(&b), b_ids, "the adopted, unchanged stack was recreated");

    // Recreating b by hand with another configuration is drift from the adopted baseline.
    std::fs::write(checkout.join(format!("stacks/{b}/compose.yaml")), colored("red").replace("app:", "web:")).unwrap();
    compose_up(&checkout, &b);
    let drift = repo.berth(&["drift"]);
    assert_eq!(drift.code, 1, "{}{}", drift.stdout, drift.stderr);
    assert!(drift.stdout.contains(&format!("✗ {b}")), "{}", drift.stdout);
    assert!(drift.stdout.contains("service `web` runs another configuration than berth deployed"), "{}", drift.stdout);
}

#[test]
fn a_project_that_runs_something_else_is_reported_and_not_adopted() {
    let f = Fixture::bare(&["adm", "adg"]);
    let (m, gone) = (f.stacks[0].clone(), f.stacks[1].clone());
    let repo = &f.repo;
    repo.stack(&m, &colored("blue"));
    repo.stack(&gone, &sleeper(&["app"]));
    repo.commit("two stacks");
    let checkout = clone(repo);
    let checkout = checkout.path().join("c");
    // What runs: another environment, and a service the commit does not have.
    let edited = format!("{}  extra:\n    image: {IMAGE}\n    command: [\"sleep\", \"2147483647\"]\n", colored("red"));
    std::fs::write(checkout.join(format!("stacks/{m}/compose.yaml")), edited).unwrap();
    compose_up(&checkout, &m);

    let out = repo.berth(&["adopt"]);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains(&format!("✗ {m}")), "{}", out.stdout);
    assert!(out.stdout.contains("service `app`: compose config hash differs"), "{}", out.stdout);
    assert!(
        out.stdout.contains("service `extra`: runs (container")
            && out.stdout.contains("the commit does not declare it"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains(&format!("✗ {gone}")), "{}", out.stdout);
    assert!(out.stdout.contains(&format!("no container of compose project `{gone}` exists")), "{}", out.stdout);
    assert!(out.stdout.contains("adopt: 0 adopted, 0 already deployed, 2 not adopted"), "{}", out.stdout);
    // Nothing was recorded: the plan still deploys both.
    assert!(repo.json(&["history", &m, "--json"]).as_array().unwrap().is_empty());
    assert_eq!(steps(repo), {
        let mut v = [(m.clone(), "deploy".into(), "new".into()), (gone.clone(), "deploy".into(), "new".into())];
        v.sort();
        v
    });

    // An unknown stack is a usage error naming it.
    let out = repo.berth(&["adopt", "nosuchstack"]);
    assert_eq!(out.code, 2, "{}{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("nosuchstack"), "{}", out.stderr);
}
