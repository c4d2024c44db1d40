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

/// Log text with known secrets redacted and also the values of secret-named assignments, as
/// compose's rendered config (`API_TOKEN: v`) and environment dumps (`API_TOKEN=v`) show them.
pub fn clean_log(text: &str) -> String {
    let text = clean(text);
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let (body, end) = match line.strip_suffix('\n') {
            Some(b) => (b, "\n"),
            None => (line, ""),
        };
        out.push_str(&assignments(body));
        out.push_str(end);
    }
    out
}

fn secret_name(k: &str) -> bool {
    let k = k.trim_matches(|c| c == '"' || c == '\'');
    !k.is_empty()
        && k.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
        && berth_core::vars::is_secret_key(k)
}

fn assignments(line: &str) -> String {
    use berth_core::vars::REDACTED;
    let lead = line.len() - line.trim_start().len();
    let rest = &line[lead..];
    let item = rest.strip_prefix("- ").unwrap_or(rest);
    // YAML: `KEY: value` (a whole line).
    if let Some((k, v)) = item.split_once(": ")
        && secret_name(k)
        && !v.trim().is_empty()
    {
        return format!("{}{k}: {REDACTED}", &line[..line.len() - item.len()]);
    }
    // `KEY=value` anywhere on the line, as words.
    line.split(' ')
        .map(|w| match w.split_once('=') {
            Some((k, v)) if secret_name(k) && !v.is_empty() => format!("{k}={REDACTED}"),
            _ => w.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ")
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
                    log: clean_log(&d.log),
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

    #[test]
    fn secret_named_assignments_are_redacted_in_logs() {
        let log = "environment:\n  API_TOKEN: abc123\n  COLOR: blue\n- DB_PASSWORD: x y\n\
                   2024-01-01T00:00:00Z start API_KEY=zzz mode=fast\nno secret: here\n";
        assert_eq!(
            clean_log(log),
            "environment:\n  API_TOKEN: ********\n  COLOR: blue\n- DB_PASSWORD: ********\n\
             2024-01-01T00:00:00Z start API_KEY=******** mode=fast\nno secret: here\n"
        );
    }
}
