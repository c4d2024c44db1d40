//! Deploy windows and freezes at run time: the clock (`BERTH_NOW`), time zones from the system
//! tzdb, and the question both schedulers ask before a deploy starts (`verdict`).

use std::sync::OnceLock;

use berth_core::Project;
use berth_core::error::ConfigError;
use berth_core::window::{self, Freeze, Scope, Subject, Verdict, Window};
use jiff::tz::TimeZone;

/// Every window of `project` with its time zone, read from the system tzdb (`/usr/share/zoneinfo`).
pub fn zones(project: &Project) -> Result<Vec<Window>, Vec<ConfigError>> {
    window::resolve(&project.windows, |name| {
        if name.eq_ignore_ascii_case("utc") {
            return Some(TimeZone::UTC);
        }
        jiff::tz::db().get(name).ok()
    })
}

fn real_now() -> i64 {
    jiff::Timestamp::now().as_second()
}

/// Unix seconds now. `BERTH_NOW` (RFC 3339) moves the clock: it reads that instant when berth
/// starts and runs on from there, so a rehearsal or a test can stand just before a window opens.
pub fn now() -> i64 {
    static OFFSET: OnceLock<i64> = OnceLock::new();
    let offset = *OFFSET.get_or_init(|| match std::env::var("BERTH_NOW") {
        Ok(v) => match v.trim().parse::<jiff::Timestamp>() {
            Ok(t) => t.as_second() - real_now(),
            Err(e) => {
                tracing::warn!(value = %v, error = %e, "BERTH_NOW is not an RFC 3339 instant; using the real clock");
                0
            }
        },
        Err(_) => 0,
    });
    real_now() + offset
}

/// The zone instants are shown in: the system's (`TZ`).
pub fn display_tz() -> TimeZone {
    TimeZone::system()
}

/// An instant for people, in the system's zone.
pub fn show(secs: i64) -> String {
    window::format_at(secs, &display_tz())
}

/// Self-heal and rollbacks put back what ran: freezes and `self_heal` windows let them through.
/// Triggers read `KIND` or `KIND:WHO` (`rollback:ci-key`, `dashboard-rollback:ana`).
pub fn is_restore(trigger: &str) -> bool {
    let kind = trigger.split(':').next().unwrap_or(trigger);
    matches!(kind, "heal" | "rollback" | "dashboard-rollback")
}

/// May `stack` deploy at `now` (for this trigger), and if not, when.
pub fn verdict(
    project: &Project,
    windows: &[Window],
    freezes: &[Freeze],
    stack: &str,
    trigger: &str,
    now: i64,
) -> Verdict {
    let Some(s) = project.stack(stack) else { return Verdict { closed: None, opens: None } };
    let envs: Vec<&str> = project.environments_of(s).iter().map(|e| e.name.as_str()).collect();
    let subject = Subject { stack: &s.name, server: &s.server, environments: &envs };
    window::check(windows, freezes, &subject, now, is_restore(trigger))
}

/// Why it waits and until when, in one line.
pub fn explain(v: &Verdict) -> String {
    let tz = display_tz();
    let why = v.closed.as_ref().map(|c| c.describe(&tz)).unwrap_or_else(|| "open".into());
    match v.opens {
        Some(t) => format!("{why}; next opening {}", window::format_at(t, &tz)),
        None if v.closed.is_some() => format!("{why}; no opening within a year"),
        None => why,
    }
}

/// `--until`: a duration from now (`2h`, `3d`), an RFC 3339 instant, or a date and time in the
/// system's zone (`2026-12-24 18:00`, `2026-12-24`).
pub fn parse_until(text: &str, now: i64) -> Result<i64, String> {
    let t = text.trim();
    let at = if let Ok(d) = berth_core::duration::parse(t) {
        now + d.as_secs() as i64
    } else if let Ok(ts) = t.parse::<jiff::Timestamp>() {
        ts.as_second()
    } else if let Ok(dt) = t.parse::<jiff::civil::DateTime>() {
        display_tz().to_ambiguous_timestamp(dt).compatible().map_err(|e| e.to_string())?.as_second()
    } else {
        return Err(format!(
            "`{text}` is not a time: give a duration (48h, 3d), an instant (2026-12-24T18:00:00+01:00) \
             or a local date and time (2026-12-24 18:00)"
        ));
    };
    if at <= now {
        return Err(format!("`{text}` ({}) is not in the future", show(at)));
    }
    Ok(at)
}

/// What `berth freeze`/`unfreeze` (and the API) name: stacks, an environment, or everything.
/// Unknown names are refused with the known ones.
pub fn scopes(project: &Project, stacks: &[String], env: Option<&str>) -> Result<Vec<Scope>, ConfigError> {
    if let Some(e) = env {
        if !project.environments.iter().any(|x| x.name == e) {
            let names: Vec<&str> = project.environments.iter().map(|e| e.name.as_str()).collect();
            return Err(ConfigError::new(format!("no environment named `{e}`"))
                .help(format!("environments: {}", if names.is_empty() { "none".into() } else { names.join(", ") })));
        }
        return Ok(vec![Scope::Environment(e.to_string())]);
    }
    if stacks.is_empty() {
        return Ok(vec![Scope::All]);
    }
    stacks
        .iter()
        .map(|s| match project.stack(s) {
            Some(_) => Ok(Scope::Stack(s.clone())),
            None => Err(project.unknown_stack(s)),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn until_takes_durations_instants_and_local_times() {
        let now = "2026-01-05T12:00:00Z".parse::<jiff::Timestamp>().unwrap().as_second();
        assert_eq!(parse_until("2h", now).unwrap(), now + 7200);
        assert_eq!(parse_until("2026-01-06T00:00:00+01:00", now).unwrap(), now + 11 * 3600);
        assert!(parse_until("2026-01-06 08:00", now).is_ok());
        assert!(parse_until("2026-01-01T00:00:00Z", now).unwrap_err().contains("not in the future"));
        assert!(parse_until("tomorrow", now).unwrap_err().contains("not a time"));
    }

    #[test]
    fn restores_are_heals_and_rollbacks_from_anywhere() {
        for t in ["heal", "rollback", "rollback:ci", "dashboard-rollback:ana"] {
            assert!(is_restore(t), "{t}");
        }
        for t in ["apply", "deploy", "webhook:github", "dashboard:ana", "startup", "retry:3"] {
            assert!(!is_restore(t), "{t}");
        }
    }
}
