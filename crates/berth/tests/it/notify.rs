//! Notifications to local receivers that check the exact payloads of each format.

use std::time::Duration;

use crate::common::http::Api;
use crate::common::*;

fn ok_receiver() -> Api {
    Api::start(Box::new(|_, _| (200, "{}".into())))
}

#[test]
fn every_target_gets_its_format_and_a_failing_one_blocks_nothing() {
    let f = Fixture::bare(&["good", "bad"]);
    let (good, bad) = (f.stacks[0].clone(), f.stacks[1].clone());
    let (hook, ntfy, slack, discord, gotify) =
        (ok_receiver(), ok_receiver(), ok_receiver(), ok_receiver(), ok_receiver());
    // A target that always fails: the deploy must not care.
    let broken = Api::start(Box::new(|_, _| (503, "down".into())));
    let repo = &f.repo;
    repo.write(
        "berth.toml",
        &format!(
            r#"[defaults]
verify = {{ stable = "1s", timeout = "20s" }}
rollback = "manual"
[[notify]]
kind = "webhook"
url = "{}/hook"
secret = {{ env = "BERTH_TEST_HOOK_SECRET" }}
[[notify]]
kind = "ntfy"
url = "{}/deploys"
events = ["failed"]
[[notify]]
kind = "slack"
url = "{}/slack"
events = ["succeeded"]
[[notify]]
kind = "discord"
url = "{}/discord"
events = ["failed", "rolled_back"]
[[notify]]
kind = "gotify"
url = "{}/message"
token = {{ env = "BERTH_TEST_GOTIFY_TOKEN" }}
events = ["succeeded"]
[[notify]]
kind = "slack"
url = "{}/broken"
"#,
            hook.base, ntfy.base, slack.base, discord.base, gotify.base, broken.base
        ),
    );
    repo.stack(&good, &sleeper(&["app"]));
    repo.stack(&bad, &format!("services:\n  app:\n    image: {IMAGE}\n    command: [\"sh\", \"-c\", \"exit 3\"]\n"));
    repo.commit("one good, one bad");
    let out = repo.berth_with(
        &["apply"],
        &[("BERTH_TEST_HOOK_SECRET", "hook-secret"), ("BERTH_TEST_GOTIFY_TOKEN", "gotify-app-token")],
    );
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    container(&good, "app");

    let posts = |api: &Api| {
        wait_for("notifications", Duration::from_secs(20), || {
            let p = api.posts.lock().unwrap().clone();
            (!p.is_empty()).then_some(p)
        })
    };
    // Generic webhook: every event as JSON, signed.
    let hooks = wait_for("4 webhook events", Duration::from_secs(20), || {
        let p = hook.posts.lock().unwrap().clone();
        (p.len() >= 4).then_some(p)
    });
    let events: Vec<String> = hooks
        .iter()
        .map(|p| {
            let body = p.split_once(' ').unwrap().1.lines().next().unwrap();
            let v: serde_json::Value = serde_json::from_str(body).unwrap();
            let sig = berth_core::webhook::sign(b"hook-secret", body.as_bytes());
            assert!(p.contains(&format!("x-berth-signature-256: {sig}")), "{p}");
            format!("{} {}", v["stack"].as_str().unwrap(), v["event"].as_str().unwrap())
        })
        .collect();
    for want in
        [format!("{good} started"), format!("{good} succeeded"), format!("{bad} started"), format!("{bad} failed")]
    {
        assert!(events.contains(&want), "{want} missing from {events:?}");
    }
    // ntfy: text body, title and priority headers, failures only.
    let n = posts(&ntfy);
    assert_eq!(n.len(), 1, "{n:?}");
    assert!(n[0].starts_with(&format!("/deploys {bad}: deploy failed at ")), "{}", n[0]);
    assert!(n[0].contains("priority: high") && n[0].contains(&format!("title: {bad}: deploy failed")), "{}", n[0]);
    // Slack and Discord: their JSON shapes, filtered by event.
    let s = posts(&slack);
    assert_eq!(s.len(), 1);
    assert!(s[0].starts_with(&format!("/slack {{\"text\":\"{good}: deployed at ")), "{}", s[0]);
    let d = posts(&discord);
    assert!(d[0].starts_with(&format!("/discord {{\"content\":\"{bad}: deploy failed at ")), "{}", d[0]);
    // Gotify: title, message, priority, and the app token as a header.
    let g = posts(&gotify);
    assert!(g[0].contains("\"priority\":4") && g[0].contains("x-gotify-key: gotify-app-token"), "{}", g[0]);
    // The broken target was retried, and nothing waited on it for long.
    assert!(broken.hits.lock().unwrap().len() >= 2);
}
