use super::select::{Skip, old_enough, rank};
use super::source::{edit, images};
use super::*;
use crate::ownership::Sources;
use crate::project::testing::check_in;

const TREE: &[&str] = &["stacks/web/compose.yaml", "stacks/web/.env"];

fn project(toml: &str) -> crate::Project {
    check_in(TREE, toml, &[]).unwrap()
}

fn rule(body: &str) -> Policy {
    let p = project(&format!("[[stack]]\nname = \"web\"\n[[stack.image]]\n{body}\n"));
    p.stack("web").unwrap().images[0].clone()
}

fn tags(t: &[&str]) -> Vec<String> {
    t.iter().map(|s| s.to_string()).collect()
}

#[test]
fn rules_are_checked_and_located() {
    let toml = "[[stack]]\nname = \"web\"\n\n[[stack.image]]\nsemver = \"^x\"\n\n[[stack.image]]\nregex = \"RELEASE\"\n\n[[stack.image]]\npin = \"tag\"\nmin_age = \"3 weeks\"\nmode = \"merge\"\n\n[[stack.image]]\nservice = \"web\"\n\n[[image]]\nsemver = \"^1\"\nregex = \"(x)\"\nprerelease = true\n";
    check_in(
        TREE,
        toml,
        &[
            "berth.toml:4:1: stack `web` image rule: semver `^x` is not a version range",
            "berth.toml:7:1: stack `web` image rule: regex `RELEASE` has no capture group",
            "berth.toml:10:1: stack `web` image rule: unknown pin `tag`",
            "berth.toml:10:1: stack `web` image rule: min_age",
            "unknown mode `merge`",
            "berth.toml:15:1: stack `web` image rule: says neither how tags move nor what to follow",
            "berth.toml:18:1: [[image]] image rule: `semver` and `regex` exclude each other",
        ],
    );
    check_in(TREE, "[[stack]]\nname = \"web\"\n[[stack.image]]\nsemvr = \"^1\"\n", &["did you mean `semver`?"]);
}

#[test]
fn the_most_specific_rule_governs() {
    let p = project(
        "[[image]]\nimage = \"grafana/*\"\nsemver = \"^10\"\n[[stack]]\nname = \"web\"\n[[stack.image]]\nsemver = \"^1\"\n[[stack.image]]\nservice = \"db\"\npin = \"digest\"\n",
    );
    let s = p.stack("web").unwrap();
    assert!(policy_for(&s.images, &p.images, "db", "postgres").unwrap().pin_digest);
    assert_eq!(policy_for(&s.images, &p.images, "app", "x").unwrap().describe(), "semver ^1");
    assert_eq!(policy_for(&[], &p.images, "app", "docker.io/grafana/grafana").unwrap().describe(), "semver ^10");
    assert!(policy_for(&[], &p.images, "app", "redis").is_none());
}

#[test]
fn semver_picks_the_newest_in_range_and_says_why_others_are_skipped() {
    let p = rule("semver = \"^1\"\nignore = [\"1.3.1\"]");
    let r = rank(&p, "1.2.0", &tags(&["1.2.0", "1.3.0", "1.3.1", "v1.10.0", "2.0.0-rc1", "2.0.0", "latest", "1.1.0"]))
        .unwrap();
    assert_eq!(r.candidates, ["v1.10.0", "1.3.0"]);
    assert_eq!(
        r.skipped,
        vec![
            ("1.3.1".into(), Skip::Ignored { pattern: "1.3.1".into() }),
            ("2.0.0-rc1".into(), Skip::PreRelease),
            ("2.0.0".into(), Skip::OutOfRange),
            ("latest".into(), Skip::NotAVersion),
            ("1.1.0".into(), Skip::NotNewer),
        ]
    );
    assert!(rank(&p, "latest", &[]).unwrap_err().contains("pin = \"digest\""));
}

#[test]
fn pre_releases_follow_the_range_or_the_setting() {
    let all = tags(&["2.0.0-rc1", "2.0.0", "2.1.0-beta.1"]);
    let named = rule("semver = \"^2.0.0-0\"");
    assert_eq!(rank(&named, "1.3.0", &all).unwrap().candidates, ["2.0.0", "2.0.0-rc1"]);
    let on = rule("semver = \"^2\"\nprerelease = true");
    assert_eq!(rank(&on, "1.3.0", &all).unwrap().candidates, ["2.1.0-beta.1", "2.0.0", "2.0.0-rc1"]);
    let off = rule("semver = \"^2.0.0-0\"\nprerelease = false");
    assert_eq!(rank(&off, "1.3.0", &all).unwrap().candidates, ["2.0.0"]);
}

#[test]
fn regex_versions_order_naturally() {
    let p = rule("regex = '^RELEASE\\.(\\d{4}-\\d{2}-\\d{2})'");
    let r = rank(
        &p,
        "RELEASE.2024-01-02T00-00-00Z",
        &tags(&["RELEASE.2024-03-01T00-00-00Z", "RELEASE.2023-12-31T00-00-00Z", "latest"]),
    )
    .unwrap();
    assert_eq!(r.candidates, ["RELEASE.2024-03-01T00-00-00Z"]);
    let n = rule("regex = '^build-(\\d+)$'");
    assert_eq!(rank(&n, "build-9", &tags(&["build-10", "build-8"])).unwrap().candidates, ["build-10"]);
}

#[test]
fn young_versions_wait_for_min_age() {
    let p = rule("semver = \"^1\"\nmin_age = \"3d\"");
    let now: jiff::Timestamp = "2025-01-10T00:00:00Z".parse().unwrap();
    assert!(old_enough(&p, "2025-01-06T00:00:00Z".parse().unwrap(), now).is_ok());
    let e = old_enough(&p, "2025-01-09T00:00:00Z".parse().unwrap(), now).unwrap_err();
    assert_eq!(e.to_string(), "too new (1d00h old, min_age 3d00h)");
}

#[test]
fn versions_are_found_in_compose_or_env_files_and_edited_in_place() {
    let toml = "[[stack]]\nname = \"api\"\npath = \"stacks/web\"\ncompose = [\"compose.yaml\"]\nenv = { PINNED = \"x:1\" }\n\n[[stack]]\nname = \"web\"\nenv = { PINNED = \"x:1\" }\n";
    let p = project(toml);
    let compose = "services:\n  app:\n    # the app\n    image: \"127.0.0.1:5000/berth/app:${APP_TAG}\"  # tag in .env\n  db:\n    environment:\n      app: 1\n    image: postgres:16.1 # pinned\n  whole:\n    image: ${WHOLE}\n  fixed:\n    image: $PINNED\n  built:\n    build: .\n";
    let env = "# versions\nexport APP_TAG=\"1.2.0\"   # app\nWHOLE=reg.example/x/y:2.0@sha256:aa\n";
    let mut src = Sources::default();
    src.insert("stacks/web/compose.yaml", compose.into());
    src.insert("stacks/web/.env", env.into());
    let found = images(p.stack("web").unwrap(), &src, None);
    let by = |s: &str| found.iter().find(|i| i.service == s).unwrap();
    assert_eq!(found.len(), 4);
    assert_eq!(by("app").image, "127.0.0.1:5000/berth/app:1.2.0");
    let app = by("app").spot.clone().unwrap();
    assert_eq!((app.file.as_str(), app.variable.as_deref(), app.bare), ("stacks/web/.env", Some("APP_TAG"), true));
    let edited = edit(env, app.start, app.end, &app.replacement("1.3.0")).unwrap();
    assert_eq!(edited, "# versions\nexport APP_TAG=\"1.3.0\"   # app\nWHOLE=reg.example/x/y:2.0@sha256:aa\n");
    let db = by("db").spot.clone().unwrap();
    let edited = edit(compose, db.start, db.end, &db.replacement("16.2")).unwrap();
    assert!(edited.contains("    image: postgres:16.2 # pinned\n"), "{edited}");
    assert_eq!(edited.len(), compose.len());
    let whole = by("whole").spot.clone().unwrap();
    assert_eq!(
        edit(env, whole.start, whole.end, &whole.replacement("2.1")).unwrap().lines().last(),
        Some("WHOLE=reg.example/x/y:2.1")
    );
    assert!(by("fixed").spot.clone().unwrap_err().contains("berth.toml `env`"));
    // With berth.toml's text, the value is edited in this stack's own entry.
    let with = images(p.stack("web").unwrap(), &src, Some(toml));
    let fixed = with.iter().find(|i| i.service == "fixed").unwrap().spot.clone().unwrap();
    assert_eq!(fixed.file, "berth.toml");
    assert_eq!(
        edit(toml, fixed.start, fixed.end, &fixed.replacement("2")).unwrap(),
        toml.replacen("name = \"web\"\nenv = { PINNED = \"x:1\" }", "name = \"web\"\nenv = { PINNED = \"x:2\" }", 1)
    );
}
