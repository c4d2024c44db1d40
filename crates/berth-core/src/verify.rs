//! Verification settings, resolved: convergence bounds, one-shot services, HTTP smoke checks.

use std::time::Duration;

use serde::Serialize;

use crate::config::{HttpCheckToml, SecretRef, VerifyToml};
use crate::duration;

pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);
pub const DEFAULT_STABLE: Duration = Duration::from_secs(5);
pub const DEFAULT_RETRIES: u32 = 10;
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(3);
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// What berth does when a deploy does not converge or a smoke check fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Rollback {
    /// Put the last successful deploy back and verify it.
    #[default]
    Auto,
    /// Only record the failure.
    Manual,
}

impl Rollback {
    pub fn parse(s: &str) -> Result<Rollback, String> {
        match s {
            "auto" => Ok(Rollback::Auto),
            "manual" => Ok(Rollback::Manual),
            other => Err(format!("rollback = \"{other}\" is neither \"auto\" nor \"manual\"")),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verify {
    pub timeout: Duration,
    pub stable: Duration,
    pub ignore_services: Vec<String>,
    pub http: Vec<HttpCheck>,
}

impl Default for Verify {
    fn default() -> Self {
        Verify { timeout: DEFAULT_TIMEOUT, stable: DEFAULT_STABLE, ignore_services: Vec::new(), http: Vec::new() }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HttpCheck {
    pub url: String,
    pub status: Option<u16>,
    pub body: Option<String>,
    pub retries: u32,
    pub interval: Duration,
    pub timeout: Duration,
    pub basic_auth: Option<(String, SecretRef)>,
    pub resolve: Option<std::net::IpAddr>,
    pub ca: Option<String>,
    pub insecure: bool,
    pub assets: bool,
}

fn dur(what: &str, v: &Option<String>, default: Duration, errors: &mut Vec<String>) -> Duration {
    match v.as_deref().map(duration::parse) {
        None => default,
        Some(Ok(d)) => d,
        Some(Err(e)) => {
            errors.push(format!("verify {what}: {e}"));
            default
        }
    }
}

/// Resolve `over` on top of `base` (the stack's settings over `[defaults]`).
pub fn resolve(base: &Verify, over: Option<&VerifyToml>, errors: &mut Vec<String>) -> Verify {
    let Some(v) = over else { return base.clone() };
    let mut out = base.clone();
    out.timeout = dur("timeout", &v.timeout, base.timeout, errors);
    out.stable = dur("stable", &v.stable, base.stable, errors);
    out.ignore_services.extend(v.ignore_services.iter().cloned());
    for h in &v.http {
        if let Some(c) = check(h, errors) {
            out.http.push(c);
        }
    }
    out
}

fn check(h: &HttpCheckToml, errors: &mut Vec<String>) -> Option<HttpCheck> {
    if !(h.url.starts_with("http://") || h.url.starts_with("https://")) {
        errors.push(format!("verify http url `{}` must start with http:// or https://", h.url));
        return None;
    }
    let resolve = match h.resolve.as_deref().map(str::parse) {
        None => None,
        Some(Ok(ip)) => Some(ip),
        Some(Err(_)) => {
            errors.push(format!("verify http resolve `{}` is not an IP address", h.resolve.as_deref().unwrap_or("")));
            None
        }
    };
    if h.status.is_some_and(|s| !(100..=599).contains(&s)) {
        errors.push(format!("verify http status {} is not an HTTP status", h.status.unwrap_or(0)));
    }
    Some(HttpCheck {
        url: h.url.clone(),
        status: h.status,
        body: h.body.clone(),
        retries: h.retries.unwrap_or(DEFAULT_RETRIES).max(1),
        interval: dur("interval", &h.interval, DEFAULT_INTERVAL, errors),
        timeout: dur("http timeout", &h.timeout, DEFAULT_REQUEST_TIMEOUT, errors),
        basic_auth: h.basic_auth.as_ref().map(|b| (b.user.clone(), b.password.clone())),
        resolve,
        ca: h.ca.clone(),
        insecure: h.insecure.unwrap_or(false),
        assets: h.assets.unwrap_or(false),
    })
}
