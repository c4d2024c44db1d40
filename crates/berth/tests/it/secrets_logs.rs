//! Planted secrets (an age-encrypted env file, a secret reference, an env file, `--set`) never
//! reach any output: every command at `-vvv` (engine answers included), a failing deploy whose
//! compose error quotes a secret, the JSON logs of `berth serve`, the API, the dashboard,
//! notifications, deploy logs and every file of the state dir.

use std::path::PathBuf;
use std::time::Duration;

use crate::common::http::Api;
use crate::common::server::Server;
use crate::common::*;

/// Each secret is a distinctive core (what the checks look for, in any escaping) followed by a
/// quote and a backslash, so that JSON and Debug dumps show it escaped, not verbatim.
const AGE: &str = "agecore7Zq81";
const REFERENCED: &str = "refcore4Kp27";
const ENV_FILE: &str = "envcore9Wm53";
const SET: &str = "setcore2Jn64";
const FAILING: &str = "cmdcore6Hb92";
const CORES: [&str; 5] = [AGE, REFERENCED, ENV_FILE, SET, FAILING];

fn planted(core: &str) -> String {
    format!("{core}\"x\\y")
}

struct Fixture {
    repo: Repo,
    stack: String,
    _keys: tempfile::TempDir,
    identity: PathBuf,
    hook: Api,
    ntfy: Api,
    _cleanup: Cleanup,
}

/// A stack that receives every kind of secret, with notifications to local receivers.
fn fixture() -> Fixture {
    docker();
    need("age", "age");
    let stack = unique("secrets");
    let cleanup = Cleanup(vec![stack.clone()]);
    let keys = tempfile::tempdir().unwrap();
    let identity = keys.path().join("key.txt");
    let o = std::process::Command::new("age-keygen").arg("-o").arg(&identity).output().unwrap();
    assert!(o.status.success(), "age-keygen: {}", String::from_utf8_lossy(&o.stderr));
    let public = String::from_utf8_lossy(&o.stderr).trim().trim_start_matches("Public key: ").to_string();
    let reference = keys.path().join("ref-token");
    std::fs::write(&reference, format!("{}\n", planted(REFERENCED))).unwrap();
    let (hook, ntfy) =
        (Api::start(Box::new(|_, _| (200, "{}".into()))), Api::start(Box::new(|_, _| (200, "{}".into()))));
    let repo = Repo::new();
    repo.write(
        "berth.toml",
        &format!(
            "[defaults]\nverify = {{ stable = \"1s\", timeout = \"30s\" }}\n\
             [dashboard]\nread = \"public\"\n\
             [[notify]]\nkind = \"webhook\"\nurl = \"{}/hook\"\n\
             [[notify]]\nkind = \"ntfy\"\nurl = \"{}/deploys\"\n\
             [[stack]]\nname = \"{stack}\"\nenv_files = [\"plain.env\"]\n\
             env = {{ REF_TOKEN = {{ file = \"{}\" }} }}\n",
            hook.base,
            ntfy.base,
            reference.display()
        ),
    );
    // A `CMD_TOKEN` makes the engine refuse to start the container, quoting the value.
    repo.stack(&stack, &format!(
            "services:\n  app:\n    image: {IMAGE}\n    command: [\"${{CMD_TOKEN:-sleep}}\", \"2147483647\"]\n    \
             stop_signal: SIGKILL\n    environment:\n      DB_PASSWORD: ${{DB_PASSWORD}}\n      \
             REF_TOKEN: ${{REF_TOKEN}}\n      APP_PASSWORD: ${{APP_PASSWORD}}\n      API_PASSWORD: ${{API_PASSWORD:-unset}}\n"
        ),
    );
    repo.write(&format!("stacks/{stack}/plain.env"), &format!("APP_PASSWORD={}\n", planted(ENV_FILE)));
    let mut age = std::process::Command::new("age")
        .args(["-r", &public])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let plain = format!("DB_PASSWORD={}\n", planted(AGE));
    std::io::Write::write_all(&mut age.stdin.take().unwrap(), plain.as_bytes()).unwrap();
    let cipher = age.wait_with_output().unwrap().stdout;
    std::fs::write(repo.path().join(format!("stacks/{stack}/app.env.age")), cipher).unwrap();
    repo.commit("a stack with secrets");
    repo.write(&format!("stacks/{stack}/notes.txt"), "a second commit, for `changed`\n");
    repo.commit("notes");
    Fixture { repo, stack, _keys: keys, identity, hook, ntfy, _cleanup: cleanup }
}

impl Fixture {
    fn berth(&self, args: &[&str]) -> Run {
        let o = self
            .repo
            .command(args)
            .env_remove("BERTH_LOG")
            .env("BERTH_AGE_IDENTITY_FILE", &self.identity)
            .output()
            .unwrap();
        Run::from(o)
    }

    /// The container's environment: the secrets did reach it (else the test proves nothing).
    fn container_env(&self) -> String {
        inspect(&container(&self.stack, "app"), "{{json .Config.Env}}")
    }
}

fn posted(api: &Api) -> String {
    api.posts.lock().unwrap().join("\n")
}

#[test]
fn no_command_prints_a_secret_at_any_verbosity() {
    let f = fixture();
    let s = f.stack.as_str();
    let mut outputs: Vec<(String, String)> = Vec::new();
    // `code`: the exit code expected, when it says something here.
    let mut run = |args: &[&str], code: Option<i32>| {
        let mut all = args.to_vec();
        all.push("-vvv");
        let r = f.berth(&all);
        assert!(code.is_none_or(|c| c == r.code), "berth {args:?} exited {}:\n{}\n{}", r.code, r.stdout, r.stderr);
        outputs.push((format!("berth {args:?}"), format!("{}\n{}", r.stdout, r.stderr)));
        r
    };
    run(&["validate"], Some(0));
    run(&["plan"], Some(0));
    run(&["changed", "--from", "HEAD~1", "--to", "HEAD"], Some(0));
    let apply = run(&["apply"], Some(0));
    // The engine's answers (container inspections, with the environment) are in the -vvv output.
    assert!(apply.stderr.contains("bollard"), "no engine answers at -vvv: {}", apply.stderr);
    assert!(apply.stderr.contains("DB_PASSWORD=********"), "{}", apply.stderr);
    let env = f.container_env();
    for core in [AGE, REFERENCED, ENV_FILE] {
        assert!(env.contains(core), "{core} did not reach the container: {env}");
    }
    run(&["deploy", s, "--set", &format!("API_PASSWORD={}", planted(SET))], Some(0));
    assert!(f.container_env().contains(SET), "the --set value did not reach the container");
    run(&["status"], Some(0));
    run(&["status", "--json"], Some(0));
    run(&["history", s], Some(0));
    run(&["drift"], Some(0));
    // Renders the running stack with its resolved variables (secrets included) without deploying.
    let adopt = run(&["adopt", s], Some(0));
    assert!(adopt.stdout.contains("already deployed"), "{}", adopt.stdout);
    run(&["rollback", s], Some(0));
    // The engine refuses the command and quotes it (Go-escaped): the deploy rolls back.
    let failing = run(&["deploy", s, "--set", &format!("CMD_TOKEN={}", planted(FAILING))], Some(3));
    assert!(failing.stdout.contains("exec: \"********\""), "{}", failing.stdout);
    run(&["status"], Some(0));
    let history = run(&["history", s, "--json"], Some(0));
    let ids: Vec<i64> = serde_json::from_str::<serde_json::Value>(&history.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids.len(), 4, "{}", history.stdout);
    for id in &ids {
        run(&["logs", &id.to_string()], None);
    }
    // A secret added to the stack's env file: the diff renders both sides and names the change.
    let env = format!("APP_PASSWORD={}\nAPI_PASSWORD={}\n", planted(ENV_FILE), planted(SET));
    f.repo.write(&format!("stacks/{s}/plain.env"), &env);
    f.repo.commit("a changed env file");
    let diff = run(&["diff", "--base", "HEAD~1", "--head", "HEAD"], Some(0));
    assert!(diff.stdout.contains("API_PASSWORD"), "the diff names the changed variable: {}", diff.stdout);
    // Notifications of the failure (its reason quotes the engine's error) arrived, redacted.
    wait_for("the failure's notifications", Duration::from_secs(20), || {
        (posted(&f.ntfy).contains("rolled back") && posted(&f.hook).contains("rolled_back")).then_some(())
    });
    outputs.push(("webhook notifications".into(), posted(&f.hook)));
    outputs.push(("ntfy notifications".into(), posted(&f.ntfy)));
    assert_no_leak(&outputs, f.repo.state.path(), &CORES);
}

#[test]
fn the_controller_logs_answers_and_pages_hide_secrets() {
    let f = fixture();
    let s = f.stack.as_str();
    let identity = f.identity.display().to_string();
    // JSON logs (stderr is a file), with the engine's answers at debug level.
    let mut server = Server::start_env(
        &f.repo,
        &[("BERTH_AGE_IDENTITY_FILE", identity.as_str()), ("BERTH_LOG", "debug,berth=trace,hyper=info,h2=info")],
    );
    let deploy = |vars: serde_json::Value| {
        let (code, body) = server.post(&format!("/api/v1/stacks/{s}/deploy"), &serde_json::json!({ "vars": vars }));
        assert!(code < 300, "{code} {body}");
        server.settle()
    };
    deploy(serde_json::json!({ "API_PASSWORD": planted(SET) }));
    assert!(f.container_env().contains(SET) && f.container_env().contains(AGE), "{}", f.container_env());
    let settled = deploy(serde_json::json!({ "CMD_TOKEN": planted(FAILING) }));
    assert_eq!(settled[0]["status"], "rolled_back", "{settled:?}");
    let mut outputs: Vec<(String, String)> = Vec::new();
    let http = reqwest::blocking::Client::new();
    let page = |path: &str| http.get(server.url(path)).send().unwrap().text().unwrap();
    for d in server.deploys() {
        let id = d["id"].as_i64().unwrap();
        for path in [format!("/api/v1/deploys/{id}"), format!("/api/v1/deploys/{id}/log")] {
            outputs.push((path.clone(), server.get(&path).unwrap().to_string()));
        }
        for path in [format!("/deploys/{id}"), format!("/deploys/{id}/log")] {
            outputs.push((format!("dashboard {path}"), page(&path)));
        }
    }
    for path in ["/api/v1/deploys", &format!("/api/v1/stacks/{s}"), "/api/v1/stacks"] {
        outputs.push((path.to_string(), server.get(path).unwrap().to_string()));
    }
    for path in ["/", &format!("/stacks/{s}"), "/metrics"] {
        outputs.push((format!("dashboard {path}"), page(path)));
    }
    wait_for("the failure's notifications", Duration::from_secs(20), || {
        posted(&f.hook).contains("rolled_back").then_some(())
    });
    outputs.push(("webhook notifications".into(), posted(&f.hook)));
    outputs.push(("ntfy notifications".into(), posted(&f.ntfy)));
    server.stop();
    // The server's log (serve.log, in the state dir): JSON lines that still parse, engine answers included.
    let log = std::fs::read_to_string(f.repo.state.path().join("serve.log")).unwrap();
    assert!(log.contains("bollard"), "no engine answers in the server's log");
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        assert!(serde_json::from_str::<serde_json::Value>(line).is_ok(), "not a JSON line: {line}");
    }
    assert_no_leak(&outputs, f.repo.state.path(), &CORES);
}
