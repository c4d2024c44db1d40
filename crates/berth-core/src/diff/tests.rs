use serde_json::json;

use super::*;

const KEY: &[u8] = b"per-run key";

fn masked(mut v: Value, root: &str, secrets: &[&str]) -> Value {
    relativize(&mut v, root);
    let secrets: Vec<String> = secrets.iter().map(|s| s.to_string()).collect();
    mask(&mut v, KEY, &secrets, &crate::vars::is_secret_key);
    v
}

/// A model as `docker compose config --format json` renders it, checked out under `root`.
fn model(root: &str, tag: &str, level: &str, password: &str, conf: bool) -> Value {
    let mut services = json!({
        "web": {
            "image": format!("nginx:{tag}"),
            "environment": { "LOG_LEVEL": level, "DB_PASSWORD": password, "DSN": format!("pg://app:{password}@db") },
            "volumes": [{ "type": "bind", "source": format!("{root}/web/nginx.conf"), "target": "/etc/nginx/nginx.conf" }],
            "deploy": { "replicas": 1 },
        },
        "db": { "image": "postgres:16", "volumes": [{ "type": "volume", "source": "data", "target": "/var/lib" }] },
    });
    if conf {
        services["cache"] = json!({ "image": "redis:7" });
    }
    json!({ "name": "app", "services": services, "volumes": { "data": {} } })
}

#[test]
fn paths_become_relative_to_the_work_tree() {
    let mut v = json!({ "a": "/tmp/x/base/web/nginx.conf", "b": ["/tmp/x/base", "/tmp/x/base/c:/d:ro"], "c": "/etc" });
    relativize(&mut v, "/tmp/x/base/");
    assert_eq!(v, json!({ "a": "web/nginx.conf", "b": [".", "c:/d:ro"], "c": "/etc" }));
}

#[test]
fn classifies_services_and_calls_out_images() {
    let old = masked(model("/s/base", "1.25", "info", "hunter22", false), "/s/base", &["hunter22"]);
    let new = masked(model("/s/head", "1.27", "info", "hunter22", true), "/s/head", &["hunter22"]);
    let d = compare(Some(&old), Some(&new), &[]);
    let by: Vec<(&str, Status)> = d.services.iter().map(|s| (s.name.as_str(), s.status)).collect();
    assert_eq!(by, [("cache", Status::Added), ("db", Status::Unchanged), ("web", Status::Recreate)]);
    let web = &d.services[2];
    assert_eq!(web.image, Some((Some("nginx:1.25".into()), Some("nginx:1.27".into()))));
    assert!(web.diff.contains("-  \"image\": \"nginx:1.25\",\n+  \"image\": \"nginx:1.27\","), "{}", web.diff);
    assert_eq!(d.services[1].diff, "");
    assert!(d.services[0].diff.starts_with("@@ -0,0 +1,3 @@\n+{\n+  \"image\": \"redis:7\""));
    assert_eq!(d.project, "");
    let mut o = StackOutcome {
        name: "app".into(),
        server: "local".into(),
        state: "changed",
        action: None,
        diff: Some(d.clone()),
        files: vec![],
        error: None,
    };
    assert_eq!(o.summary().as_deref(), Some("recreates cache, web"));
    o.diff = Some(StackDiff { services: vec![], project: String::new() });
    assert_eq!(o.summary().as_deref(), Some("recreates no service"));
    o.diff = None;
    assert_eq!(o.summary(), None);
    // A stack that is gone: every service removed.
    let gone = compare(Some(&old), None, &[]);
    assert!(gone.services.iter().all(|s| s.status == Status::Removed && s.image.is_none()));
    assert!(gone.project.contains("-  \"volumes\""));
}

#[test]
fn fields_compose_does_not_hash_update_without_recreating() {
    let old = model("/r", "1", "info", "x", false);
    let mut new = old.clone();
    new["services"]["web"]["deploy"]["replicas"] = json!(3);
    new["services"]["db"]["depends_on"] = json!({ "web": { "condition": "service_started" } });
    let d = compare(Some(&old), Some(&new), &[]);
    assert!(d.services.iter().all(|s| s.status == Status::Updated), "{d:?}");
    assert!(d.services[1].diff.contains("-    \"replicas\": 1\n+    \"replicas\": 3"), "{}", d.services[1].diff);
}

#[test]
fn a_changed_bind_mounted_file_recreates_its_service() {
    let old = masked(model("/s/a", "1", "info", "pw1", false), "/s/a", &[]);
    let new = masked(model("/s/b", "1", "info", "pw1", false), "/s/b", &[]);
    let paths = ["web/nginx.conf".to_string(), "README.md".to_string()];
    let d = compare(Some(&old), Some(&new), &paths);
    let web = d.services.iter().find(|s| s.name == "web").unwrap();
    assert_eq!((web.status, web.bind_files.clone()), (Status::Recreate, vec!["web/nginx.conf".to_string()]));
    assert_eq!(web.diff, "", "the model itself is the same");
    assert_eq!(d.services.iter().find(|s| s.name == "db").unwrap().status, Status::Unchanged);
    // Short syntax (docker-compose 1.x) and a folder mount.
    let svc = json!({ "volumes": ["./conf:/etc/conf:ro", "data:/var/lib", "/abs/x:/x"] });
    assert_eq!(bind_sources(&svc), ["conf", "/abs/x"]);
}

#[test]
fn secrets_are_compared_by_keyed_hash_and_never_shown() {
    let old = masked(model("/r", "1", "info", "s3cr3t-old", false), "/r", &["s3cr3t-old"]);
    let new = masked(model("/r", "1", "debug", "s3cr3t-new", false), "/r", &["s3cr3t-new"]);
    let d = compare(Some(&old), Some(&new), &[]);
    let web = d.services.iter().find(|s| s.name == "web").unwrap();
    assert_eq!(web.status, Status::Recreate);
    let all = format!("{:?}{}", d, serde_json::to_string(&d).unwrap());
    for leak in ["s3cr3t", "«secret:"] {
        assert!(!all.contains(leak), "{leak} leaked: {all}");
    }
    assert!(web.diff.contains("-    \"DB_PASSWORD\": \"(secret changed)\",\n"), "{}", web.diff);
    assert!(web.diff.contains("+    \"DSN\": \"pg://app:(secret changed)@db\","), "{}", web.diff);
    assert!(web.diff.contains("-    \"LOG_LEVEL\": \"info\"\n"), "{}", web.diff);
    assert!(web.diff.contains("+    \"LOG_LEVEL\": \"debug\"\n"), "{}", web.diff);

    // Same secret, another variable changed: the secret shows as unchanged on the changed line.
    let old = masked(model("/r", "1", "info", "same-secret", false), "/r", &["same-secret"]);
    let mut new = model("/r", "1", "info", "same-secret", false);
    new["services"]["web"]["environment"]["DSN"] = json!("pg://app:same-secret@db2");
    let new = masked(new, "/r", &["same-secret"]);
    let web = compare(Some(&old), Some(&new), &[]).services.into_iter().find(|s| s.name == "web").unwrap();
    assert!(web.diff.contains("+    \"DSN\": \"pg://app:(secret unchanged)@db2\""), "{}", web.diff);
    assert!(web.diff.contains("\n     \"DB_PASSWORD\": \"(secret unchanged)\",\n"), "{}", web.diff);
}

#[test]
fn secret_named_variables_are_masked_without_knowing_their_value() {
    // A value from the service's own env_file: berth never saw it, its name says it is secret.
    let mut v = json!({ "services": { "a": { "environment": { "API_TOKEN": "tok-123", "MODE": "x" } },
                                        "b": { "environment": ["PRIVATE_KEY=abc", "N=1"] } } });
    mask(&mut v, KEY, &[], &crate::vars::is_secret_key);
    let text = v.to_string();
    assert!(!text.contains("tok-123") && !text.contains("abc"), "{text}");
    assert!(text.contains("\"MODE\":\"x\"") && text.contains("N=1"), "{text}");
    // Keyed: another key gives other tokens for the same value.
    let mut w = json!({ "services": { "a": { "environment": { "API_TOKEN": "tok-123" } } } });
    mask(&mut w, b"another key", &[], &crate::vars::is_secret_key);
    assert_ne!(v["services"]["a"]["environment"]["API_TOKEN"], w["services"]["a"]["environment"]["API_TOKEN"]);
}
