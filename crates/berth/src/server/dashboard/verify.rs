//! A deploy's stored verification results as steps a person reads: convergence with each
//! container (and why a failing one failed), every HTTP smoke check, and the rollback's own checks.

use serde_json::Value;

use super::pages::{Badge, badge};
use crate::converge::{ContainerState, Diagnosis};

/// One verification step and its outcome.
pub struct Step {
    /// `converge`, `smoke https://…`, `rollback: converge`, …
    pub name: String,
    pub badge: Badge,
    /// `passed` or `failed`.
    pub result: &'static str,
    pub summary: String,
    pub containers: Vec<Container>,
}

/// A container as verification saw it.
pub struct Container {
    pub service: String,
    pub id: String,
    pub state: String,
    pub health: String,
    pub restarts: i64,
    pub diagnosis: Option<Diagnosis>,
}

fn step(name: String, ok: bool, summary: String, containers: Vec<Container>) -> Step {
    Step {
        name,
        badge: if ok { badge("ok") } else { badge("failed") },
        result: if ok { "passed" } else { "failed" },
        summary,
        containers,
    }
}

/// Text shown on a page: every known secret value and secret-named assignment redacted.
pub fn clean(text: &str) -> String {
    crate::redact::apply(text).into_owned()
}

fn attempt(v: &serde_json::Map<String, Value>, prefix: &str, out: &mut Vec<Step>) {
    if let Some(c) = v.get("converge").filter(|c| c.get("ok").is_some()) {
        let ok = c["ok"].as_bool().unwrap_or(false);
        let containers: Vec<ContainerState> = serde_json::from_value(c["containers"].clone()).unwrap_or_default();
        let containers = containers
            .into_iter()
            .map(|c| Container {
                service: c.service,
                id: c.id,
                state: c.state,
                health: c.health.unwrap_or_default(),
                restarts: c.restarts,
                diagnosis: c.diagnosis.map(|d| Diagnosis {
                    error: clean(&d.error),
                    probes: d.probes.into_iter().map(|(code, out)| (code, clean(&out))).collect(),
                    log: clean(&d.log),
                    ..d
                }),
            })
            .collect();
        let summary = clean(c["summary"].as_str().unwrap_or_default());
        out.push(step(format!("{prefix}converge"), ok, summary, containers));
    }
    for c in v.get("http").and_then(Value::as_array).into_iter().flatten() {
        let ok = c["ok"].as_bool().unwrap_or(false);
        let tries = c["tries"].as_u64().unwrap_or(0);
        let summary = format!(
            "{} after {tries} tr{}",
            clean(c["detail"].as_str().unwrap_or_default()),
            if tries == 1 { "y" } else { "ies" }
        );
        out.push(step(
            format!("{prefix}smoke {}", clean(c["url"].as_str().unwrap_or_default())),
            ok,
            summary,
            Vec::new(),
        ));
    }
    // Any other step that says whether it passed (older records, future checks).
    for (name, c) in v.iter().filter(|(k, _)| !["converge", "http", "rollback"].contains(&k.as_str())) {
        if let Some(ok) = c.get("ok").and_then(Value::as_bool) {
            let summary = clean(c.get("summary").and_then(Value::as_str).unwrap_or_default());
            out.push(step(format!("{prefix}{name}"), ok, summary, Vec::new()));
        }
    }
}

/// Every step of the results, the rollback's after the deploy's own.
pub fn steps(json: &str) -> Vec<Step> {
    let Ok(Value::Object(m)) = serde_json::from_str::<Value>(json) else { return Vec::new() };
    let mut out = Vec::new();
    attempt(&m, "", &mut out);
    if let Some(Value::Object(rb)) = m.get("rollback") {
        attempt(rb, "rollback: ", &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smoke_checks_and_the_rollback_are_steps() {
        let json = r#"{"converge":{"ok":true,"summary":"converged","containers":[]},
            "http":[{"url":"http://127.0.0.1:1/health","ok":false,"tries":3,"detail":"HTTP 503: down"}],
            "rollback":{"converge":{"ok":true,"summary":"converged","containers":[
                {"service":"app","id":"abc","image_ok":true,"state":"running","health":"unhealthy","restarts":0,
                 "diagnosis":{"exit_code":null,"probes":[[1,"probe says no"]],"log":"last words"}}]},"http":[]}}"#;
        let s = steps(json);
        let names: Vec<_> = s.iter().map(|s| (s.name.as_str(), s.result)).collect();
        assert_eq!(
            names,
            [("converge", "passed"), ("smoke http://127.0.0.1:1/health", "failed"), ("rollback: converge", "passed")]
        );
        assert_eq!(s[1].summary, "HTTP 503: down after 3 tries");
        let d = s[2].containers[0].diagnosis.as_ref().unwrap();
        assert_eq!((d.probes[0].1.as_str(), d.log.as_str()), ("probe says no", "last words"));
        assert!(steps("not json").is_empty());
    }
}
