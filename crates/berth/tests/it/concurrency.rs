//! One stack, several deployers: two processes at once, `kill -9` mid-`up`, and the
//! memory of configs that failed, on the real engine.

use std::process::{Child, Stdio};
use std::time::Duration;

use crate::common::*;

const FAST: &str = "[defaults]\nverify = { timeout = \"60s\", stable = \"1s\" }\n";

/// One service whose health check fails when `REV` is `bad`; `REV` defaults to `default`.
fn app(default: &str) -> String {
    format!(
        r#"services:
  app:
    image: {IMAGE}
    stop_signal: SIGKILL
    environment:
      REV: "${{REV:-{default}}}"
    command: ["sleep", "2147483647"]
    healthcheck:
      test: ["CMD-SHELL", "test \"$$REV\" != bad"]
      interval: 1s
      retries: 2
"#
    )
}

fn spawn(repo: &Repo, args: &[&str]) -> Child {
    repo.command(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
}

fn finish(child: Child) -> Run {
    Run::from(child.wait_with_output().unwrap())
}

fn history(repo: &Repo, stack: &str) -> Vec<serde_json::Value> {
    repo.json(&["history", stack, "--json"]).as_array().cloned().unwrap_or_default()
}

/// The newest deploy of `stack` once it is running (has entered a phase) with `trigger`.
fn running(repo: &Repo, stack: &str, trigger: &str, phase: &str) -> i64 {
    wait_for(&format!("a {trigger} of {stack} in phase {phase}"), Duration::from_secs(60), || {
        let h = history(repo, stack);
        let d = h.first()?;
        (d["status"] == "running" && d["trigger"] == trigger && d["phase"] == phase).then(|| d["id"].as_i64())?
    })
}

/// A file whose presence holds every deploy of a stack in its `pre_deploy` hook (the stack's
/// lock is held from checkout on): two deployers meet for sure, however slow the machine.
struct Hold(tempfile::TempDir);

impl Hold {
    fn new() -> Hold {
        Hold(tempfile::tempdir().unwrap())
    }
    fn path(&self) -> std::path::PathBuf {
        self.0.path().join("hold")
    }
    fn close(&self) {
        std::fs::write(self.path(), "").unwrap();
    }
    fn open(&self) {
        std::fs::remove_file(self.path()).unwrap();
    }
}

/// A repository whose one stack `s` runs `app("v1")`, deployed by `apply`; its deploys wait
/// in `pre_deploy` while `hold` is closed.
fn held_v1(s: &str, hold: &Hold) -> Repo {
    let repo = Repo::new();
    let hook = format!("while [ -e {} ]; do sleep 0.05; done", hold.path().display());
    repo.write("berth.toml", &format!("{FAST}[[stack]]\nname = \"{s}\"\npre_deploy = [\"sh\", \"-c\", \"{hook}\"]\n"));
    repo.stack(s, &app("v1"));
    repo.commit("v1");
    repo.berth(&["apply"]).ok();
    repo
}

/// (trigger, status) of each deploy in `history`, newest first.
fn outcomes(h: &[serde_json::Value]) -> Vec<(&str, &str)> {
    h.iter().map(|d| (d["trigger"].as_str().unwrap_or(""), d["status"].as_str().unwrap_or(""))).collect()
}

fn env_of(stack: &str) -> String {
    inspect(&container(stack, "app"), "{{json .Config.Env}}")
}

#[test]
fn a_second_deploy_waits_for_the_first_or_is_refused_and_the_last_one_wins() {
    let hold = Hold::new();
    let f = Fixture::of(&["twice"], |n| held_v1(&n[0], &hold));
    let (s, repo) = (f.stack(), &f.repo);

    hold.close();
    let bad = spawn(repo, &["deploy", &s, "--set", "REV=bad"]);
    let bad_id = running(repo, &s, "deploy", "pre-deploy");

    // Refused at once, naming the deploy that holds the stack; nothing recorded.
    let refused = repo.berth(&["deploy", &s, "--set", "REV=good", "--no-wait"]);
    assert_eq!(refused.code, 1, "{}{}", refused.stdout, refused.stderr);
    assert!(refused.stdout.contains(&format!("deploy {bad_id} of `berth deploy`")), "{}", refused.stdout);
    assert!(refused.stdout.contains("pid "), "{}", refused.stdout);

    // The default waits for it (and says so), then deploys its own version.
    let out = hold.0.path().join("good.out");
    let good = repo
        .command(&["deploy", &s, "--set", "REV=good"])
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let waiting = format!("waiting for deploy {bad_id}");
    wait_for("the second deploy to wait", Duration::from_secs(60), || {
        std::fs::read_to_string(&out).ok().filter(|o| o.contains(&waiting)).map(|_| ())
    });
    hold.open();
    let good = finish(good);
    let good = Run { stdout: std::fs::read_to_string(&out).unwrap(), ..good };
    let bad = finish(bad);
    assert_eq!(bad.code, 3, "the bad deploy rolls back: {}{}", bad.stdout, bad.stderr);
    assert_eq!(good.code, 0, "{}{}", good.stdout, good.stderr);
    assert!(good.stdout.contains(&format!("waiting for deploy {bad_id}")), "{}", good.stdout);

    assert!(env_of(&s).contains("REV=good"), "{}", env_of(&s));
    let h = history(repo, &s);
    let outcomes = outcomes(&h);
    assert_eq!(outcomes, [("deploy", "succeeded"), ("deploy", "rolled_back"), ("apply", "succeeded")], "{h:?}");
    assert_eq!(h[1]["id"].as_i64(), Some(bad_id));
    // The good deploy verified the container that runs now, not one another deploy made.
    let good_id = h[0]["id"].as_i64().unwrap().to_string();
    let logs = repo.berth(&["logs", &good_id]).ok();
    let id = container(&s, "app");
    assert!(logs.stdout.contains(&format!("\"id\": \"{}\"", &id[..12])), "{id}: {}", logs.stdout);
}

#[test]
fn two_applies_of_one_commit_record_one_deploy_per_stack() {
    let f = Fixture::bare(&["pair-a", "pair-b"]);
    let (a, b) = (f.stacks[0].clone(), f.stacks[1].clone());
    let repo = &f.repo;
    repo.write("berth.toml", FAST);
    repo.stack(&a, &app("v1"));
    repo.stack(&b, &app("v1"));
    repo.commit("two stacks");
    let first = spawn(repo, &["apply"]);
    let second = spawn(repo, &["apply"]);
    let (first, second) = (finish(first), finish(second));
    assert_eq!((first.code, second.code), (0, 0), "{first:?}\n{second:?}");
    for s in [&a, &b] {
        let h = history(repo, s);
        assert_eq!(h.len(), 1, "one deploy of {s}: {h:?}");
        assert_eq!(h[0]["status"], "succeeded");
    }
    let both = format!("{}{}", first.stdout, second.stdout);
    assert_eq!(both.matches("already running this config").count(), 2, "{both}");
}

#[test]
fn kill_9_mid_up_is_redeployed_by_the_next_apply_and_read_only_commands_do_not_wait() {
    let f = Fixture::bare(&["crash"]);
    let (s, repo) = (f.stack(), &f.repo);
    repo.write("berth.toml", FAST);
    // `up` waits for `db` to be healthy before it creates `app`: a wide window inside `up`.
    repo.stack(
        &s,
        &format!(
            r#"services:
  db:
    image: {IMAGE}
    stop_signal: SIGKILL
    command: ["sh", "-c", "sleep 10; touch /tmp/ready; exec sleep 2147483647"]
    healthcheck:
      test: ["CMD", "test", "-f", "/tmp/ready"]
      interval: 1s
      retries: 30
  app:
    image: {IMAGE}
    stop_signal: SIGKILL
    command: ["sleep", "2147483647"]
    depends_on:
      db:
        condition: service_healthy
"#
        ),
    );
    repo.commit("db and app");
    let mut child = spawn(repo, &["apply"]);
    let id = running(repo, &s, "apply", "up");
    // Mid-`up` for sure: compose has started `db` and waits for it to be healthy.
    wait_for("compose to start db", Duration::from_secs(60), || {
        containers(&s).iter().any(|(svc, _)| svc == "db").then_some(())
    });
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    // Read-only commands answer at once and say what happened, without settling it.
    let status = repo.json(&["status", "--json"]);
    let row = status.as_array().unwrap().iter().find(|r| r["stack"] == s.as_str()).unwrap().clone();
    assert_eq!((row["status"].as_str(), row["deploy_id"].as_i64()), (Some("interrupted"), Some(id)), "{row}");
    let plan = repo.json(&["plan", "--json"]);
    let step = step(&plan, &s);
    assert_eq!((step["action"].as_str(), step["reason"].as_str()), (Some("deploy"), Some("interrupted")), "{step}");
    assert_eq!(history(repo, &s)[0]["status"], "running", "read-only commands record nothing");

    // The next apply settles the interruption and redeploys: it is not a failure of that config.
    // The compose the dead berth started still waits for `db` and holds the stack's lock: the
    // apply waits for it instead of running a second `up` beside it.
    let out = repo.berth(&["apply"]).ok();
    assert!(out.stdout.contains(&format!("deploy {id} was interrupted")), "{}", out.stdout);
    assert!(out.stdout.contains(&format!("waiting for deploy {id} of `berth apply`")), "{}", out.stdout);
    assert!(out.stdout.contains("gone; a command it started still runs"), "{}", out.stdout);
    let h = history(repo, &s);
    let outcomes: Vec<&str> = h.iter().map(|d| d["status"].as_str().unwrap()).collect();
    assert_eq!(outcomes, ["succeeded", "interrupted"], "{h:?}");
    let running: Vec<String> = containers(&s).into_iter().map(|(svc, _)| svc).collect();
    assert_eq!(running, ["app", "db"]);
}

#[test]
fn a_config_that_failed_is_not_retried_after_an_unrelated_deploy() {
    let f = Fixture::bare(&["memory"]);
    let (s, repo) = (f.stack(), &f.repo);
    repo.write("berth.toml", FAST);
    repo.stack(&s, &app("v1"));
    let good = repo.commit("good");
    repo.berth(&["apply"]).ok();
    repo.stack(&s, &app("bad"));
    repo.commit("bad");
    assert_eq!(repo.berth(&["apply"]).code, 3, "the bad commit rolls back");
    let failed = history(repo, &s)[0]["id"].as_i64().unwrap();
    // Something unrelated deploys the stack meanwhile.
    repo.berth(&["deploy", &s, "--ref", &good]).ok();

    let plan = repo.json(&["plan", "--json"]);
    let step = step(&plan, &s);
    assert_eq!((step["action"].as_str(), step["reason"].as_str()), (Some("skip"), Some("failed_before")), "{step}");
    assert!(step["detail"].as_str().unwrap().contains(&format!("deploy {failed} ")), "{step}");
    let before = history(repo, &s).len();
    repo.berth(&["apply"]).ok();
    assert_eq!(history(repo, &s).len(), before, "apply retried a config that failed");
    assert!(env_of(&s).contains("REV=v1"));
}

#[test]
fn the_cli_and_berth_serve_take_turns_on_one_stack() {
    let hold = Hold::new();
    let f = Fixture::of(&["both"], |n| held_v1(&n[0], &hold));
    let (s, repo) = (f.stack(), &f.repo);

    // A CLI deploy is running when the controller starts: the controller leaves it alone.
    hold.close();
    let cli = spawn(repo, &["deploy", &s, "--set", "REV=bad"]);
    let cli_id = running(repo, &s, "deploy", "pre-deploy");
    let server = server::Server::start(repo);
    // Asked for meanwhile, the controller's deploy waits for the CLI's to end, then runs.
    let (code, body) =
        server.post(&format!("/api/v1/stacks/{s}/deploy"), &serde_json::json!({"vars": {"REV": "good"}}));
    assert_eq!(code, 202, "{body}");
    let log = repo.state.path().join("serve.log");
    wait_for("the controller to wait for the CLI's deploy", Duration::from_secs(60), || {
        std::fs::read_to_string(&log).ok().filter(|l| l.contains("waiting for the stack's lock")).map(|_| ())
    });
    hold.open();
    let cli = finish(cli);
    assert_eq!(cli.code, 3, "{}{}", cli.stdout, cli.stderr);
    server.settle();
    assert!(env_of(&s).contains("REV=good"), "{}", env_of(&s));
    let h = history(repo, &s);
    let outcomes = outcomes(&h);
    assert_eq!(outcomes[1..], [("deploy", "rolled_back"), ("apply", "succeeded")], "{h:?}");
    assert_eq!((outcomes[0].1, h[1]["id"].as_i64()), ("succeeded", Some(cli_id)), "{h:?}");

    // The other way round: the controller deploys, a CLI deploy that will not wait is refused.
    hold.close();
    let (code, body) = server.post(&format!("/api/v1/stacks/{s}/deploy"), &serde_json::json!({"vars": {"REV": "bad"}}));
    assert_eq!(code, 202, "{body}");
    let serve_id = running(repo, &s, h[0]["trigger"].as_str().unwrap(), "pre-deploy");
    let refused = repo.berth(&["deploy", &s, "--set", "REV=other", "--no-wait"]);
    assert_eq!(refused.code, 1, "{}{}", refused.stdout, refused.stderr);
    assert!(refused.stdout.contains(&format!("deploy {serve_id} of `berth serve`")), "{}", refused.stdout);
    hold.open();
    server.settle();
    assert!(env_of(&s).contains("REV=good"), "the controller rolled back to the good version");
}
