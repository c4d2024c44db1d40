//! Verification settings, resolved: convergence bounds, one-shot services, HTTP smoke checks;
//! and when the stable window may end early.

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

/// One container of a converged project, as verification last saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// Running, and its health check reports healthy.
    Healthy,
    /// Running without a health check, for this long since it last started.
    Running(Duration),
    /// A one-shot service that exited 0.
    Finished,
    /// Anything else: starting, unhealthy, exited, restarting.
    Unsettled,
}

/// How much longer the stable window has to run, given every container of a project
/// whose state is otherwise good: zero when verification may end now, `None` when only
/// a change of state (not time) can settle it.
///
/// A container with a health check settles once healthy; one without settles once it
/// has run for `stable` since it started (so one that exits or restarts within `stable`
/// of starting is still seen doing so); a finished one-shot is settled.
pub fn stable_left(seen: &[Seen], stable: Duration) -> Option<Duration> {
    let mut left = Duration::ZERO;
    for s in seen {
        match s {
            Seen::Healthy | Seen::Finished => {}
            Seen::Running(up) => left = left.max(stable.saturating_sub(*up)),
            Seen::Unsettled => return None,
        }
    }
    Some(left)
}

/// An engine timestamp (RFC 3339, as `State.StartedAt` or `SystemTime`:
/// `2024-05-01T10:00:00.123456789Z`, or with a `+02:00` offset) as nanoseconds since
/// the Unix epoch. `None` for anything else, and for the zero time of a container that
/// never started (`0001-01-01T00:00:00Z`).
pub fn parse_timestamp(s: &str) -> Option<i128> {
    let b = s.as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> {
        let digits = b.get(from..from + len)?;
        digits.iter().try_fold(0i64, |acc, d| d.is_ascii_digit().then(|| acc * 10 + i64::from(d - b'0')))
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') || b[13] != b':' {
        return None;
    }
    let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    let (hour, min, sec) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    if b[16] != b':' || year < 1970 || !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 {
        return None;
    }
    if min > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut nanos: i128 = 0;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            if i - start < 9 {
                nanos = nanos * 10 + i128::from(b[i] - b'0');
            }
            i += 1;
        }
        if i == start {
            return None;
        }
        for _ in (i - start)..9 {
            nanos *= 10;
        }
    }
    let offset = match b.get(i) {
        Some(b'Z' | b'z') if i + 1 == b.len() => 0,
        Some(sign @ (b'+' | b'-')) if i + 6 == b.len() && b[i + 3] == b':' => {
            let m = num(i + 1, 2)? * 60 + num(i + 4, 2)?;
            if *sign == b'+' { m * 60 } else { -m * 60 }
        }
        _ => return None,
    };
    // Days since the epoch of a proleptic Gregorian date (Howard Hinnant's days_from_civil).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hour * 3600 + min * 60 + sec - offset;
    Some(i128::from(secs) * 1_000_000_000 + nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(5);

    #[test]
    fn healthy_and_long_running_containers_end_the_window_at_once() {
        assert_eq!(
            stable_left(&[Seen::Healthy, Seen::Running(Duration::from_secs(60)), Seen::Finished], S),
            Some(Duration::ZERO)
        );
        assert_eq!(stable_left(&[], S), Some(Duration::ZERO), "nothing to watch");
    }

    #[test]
    fn a_container_without_health_check_must_run_for_the_window_since_it_started() {
        let left = stable_left(&[Seen::Healthy, Seen::Running(Duration::from_millis(1500)), Seen::Running(S)], S);
        assert_eq!(left, Some(Duration::from_millis(3500)), "the youngest container decides");
        assert_eq!(stable_left(&[Seen::Running(Duration::ZERO)], S), Some(S));
        assert_eq!(stable_left(&[Seen::Running(Duration::from_secs(1))], Duration::ZERO), Some(Duration::ZERO));
    }

    #[test]
    fn anything_unsettled_waits_for_a_change_of_state() {
        assert_eq!(stable_left(&[Seen::Running(S), Seen::Unsettled, Seen::Healthy], S), None);
    }

    #[test]
    fn engine_timestamps() {
        assert_eq!(parse_timestamp("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_timestamp("1970-01-01T00:00:01.5Z"), Some(1_500_000_000));
        let t = parse_timestamp("2024-05-01T10:00:00.123456789Z").unwrap();
        assert_eq!(t, 1_714_557_600_123_456_789);
        assert_eq!(parse_timestamp("2024-05-01T12:00:00.123456789+02:00"), Some(t));
        assert_eq!(parse_timestamp("2024-05-01T09:30:00.123456789-00:30"), Some(t));
        // Nanoseconds beyond 9 digits are cut, not rounded.
        assert_eq!(parse_timestamp("2024-05-01T10:00:00.1234567891Z"), Some(t));
        assert_eq!(parse_timestamp("2000-03-01T00:00:00Z"), Some(951_868_800 * 1_000_000_000));
        for bad in [
            "0001-01-01T00:00:00Z",
            "",
            "2024-05-01",
            "2024-05-01T10:00:00",
            "2024-13-01T10:00:00Z",
            "2024-05-01T10:00:00.Z",
            "2024-05-01T10:00:00Zjunk",
        ] {
            assert_eq!(parse_timestamp(bad), None, "{bad}");
        }
    }
}
