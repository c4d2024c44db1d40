//! Deploy windows and freezes: whether a stack may deploy at an instant, why not, and when it next may.
//!
//! Pure: instants are unix seconds given by the caller (no clock here), and time zones are
//! `jiff::tz::TimeZone` values the binary looks up ([`resolve`]). A deny window or a freeze wins
//! over an allow window; when any allow window applies to a stack, it deploys only inside one.

pub mod cron;

use jiff::Timestamp;
use jiff::civil::Date;
use jiff::tz::TimeZone;

pub use cron::Cron;

use crate::error::{ConfigError, Location};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Allow,
    Deny,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Allow => "allow",
            Kind::Deny => "deny",
        }
    }
}

/// When a window is open, in its time zone's wall-clock time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    /// Opens at each time the expression fires, for `length` seconds of real time.
    Cron { cron: Cron, length: i64 },
    /// Open on the given weekdays (bit 0 Sunday .. 6 Saturday) from `start` to `end`, in minutes of
    /// the day (`end` up to 1440); an `end` at or before `start` runs across midnight into the next day.
    Hours { days: u8, start: u32, end: u32 },
}

/// One `[[window]]`, checked, its time zone still a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowSpec {
    /// `name`, else `#N` (its position in berth.toml).
    pub name: String,
    pub kind: Kind,
    pub schedule: Schedule,
    /// An IANA name (`Europe/Berlin`) or `UTC`.
    pub timezone: String,
    /// What it applies to; empty lists do not restrict.
    pub stacks: Vec<String>,
    pub environments: Vec<String>,
    pub servers: Vec<String>,
    /// Self-heal and `berth rollback` ignore this window (default true).
    pub self_heal: bool,
    pub location: Option<Location>,
}

/// A window with its time zone.
#[derive(Debug, Clone)]
pub struct Window {
    pub spec: WindowSpec,
    pub tz: TimeZone,
}

/// Look up every window's time zone; an unknown name is a configuration error at the window's line.
pub fn resolve(
    specs: &[WindowSpec],
    lookup: impl Fn(&str) -> Option<TimeZone>,
) -> Result<Vec<Window>, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let mut out = Vec::new();
    for spec in specs {
        match lookup(&spec.timezone) {
            Some(tz) => out.push(Window { spec: spec.clone(), tz }),
            None => errors.push(
                ConfigError::new(format!("window {}: unknown time zone `{}`", spec.name, spec.timezone))
                    .at(spec.location.clone())
                    .help("use an IANA name such as `Europe/Berlin` or `America/New_York`, or `UTC`"),
            ),
        }
    }
    if errors.is_empty() { Ok(out) } else { Err(errors) }
}

/// What a window or freeze is matched against.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub stack: &'a str,
    pub server: &'a str,
    /// The environments the stack belongs to.
    pub environments: &'a [&'a str],
}

impl WindowSpec {
    pub fn applies(&self, s: &Subject) -> bool {
        (self.stacks.is_empty() || self.stacks.iter().any(|x| x == s.stack))
            && (self.servers.is_empty() || self.servers.iter().any(|x| x == s.server))
            && (self.environments.is_empty() || self.environments.iter().any(|e| s.environments.contains(&e.as_str())))
    }
}

/// What a freeze holds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "scope", content = "name", rename_all = "lowercase")]
pub enum Scope {
    All,
    Environment(String),
    Stack(String),
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scope::All => write!(f, "every stack"),
            Scope::Environment(e) => write!(f, "environment `{e}`"),
            Scope::Stack(s) => write!(f, "stack `{s}`"),
        }
    }
}

/// A freeze: nothing in its scope deploys before `until` (unix seconds) unless forced.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Freeze {
    pub id: i64,
    #[serde(flatten)]
    pub scope: Scope,
    pub until: i64,
    pub reason: String,
    pub by: String,
    pub at: i64,
}

impl Freeze {
    pub fn applies(&self, s: &Subject) -> bool {
        match &self.scope {
            Scope::All => true,
            Scope::Environment(e) => s.environments.contains(&e.as_str()),
            Scope::Stack(x) => x == s.stack,
        }
    }
}

/// Why a stack may not deploy now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Closed {
    Frozen {
        scope: Scope,
        until: i64,
        reason: String,
        by: String,
    },
    Denied {
        window: String,
    },
    /// Allow windows apply to the stack and none is open.
    OutsideAllow,
}

impl Closed {
    /// A sentence; instants shown in `tz`.
    pub fn describe(&self, tz: &TimeZone) -> String {
        match self {
            Closed::Frozen { scope, until, reason, by } => {
                format!("{scope} is frozen until {} by {by}: {reason}", format_at(*until, tz))
            }
            Closed::Denied { window } => format!("deny window {window} is open"),
            Closed::OutsideAllow => "outside every allow window".into(),
        }
    }
}

/// The answer for one stack at one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// `None`: it may deploy now.
    pub closed: Option<Closed>,
    /// When closed: the first instant it may deploy (within about a year), unless a freeze is lifted earlier.
    pub opens: Option<i64>,
}

impl Verdict {
    pub fn is_open(&self) -> bool {
        self.closed.is_none()
    }
}

const DAY: i64 = 86_400;
/// The next opening is searched a week at a time, up to this many weeks.
const HORIZON_WEEKS: i64 = 58;

/// May `subject` deploy at `now`, and if not, when? `restore`: a self-heal or rollback, which
/// freezes and the windows with `self_heal` (the default) let through.
pub fn check(windows: &[Window], freezes: &[Freeze], subject: &Subject, now: i64, restore: bool) -> Verdict {
    let windows: Vec<&Window> =
        windows.iter().filter(|w| w.spec.applies(subject) && !(restore && w.spec.self_heal)).collect();
    let freezes: Vec<&Freeze> =
        if restore { Vec::new() } else { freezes.iter().filter(|f| f.applies(subject) && f.until > now).collect() };
    if windows.is_empty() && freezes.is_empty() {
        return Verdict { closed: None, opens: None };
    }
    let has_allow = windows.iter().any(|w| w.spec.kind == Kind::Allow);
    let mut closed_now = None;
    let mut lo = now;
    for week in 0..HORIZON_WEEKS {
        let hi = lo + 7 * DAY;
        let spans: Vec<(&Window, Vec<(i64, i64)>)> = windows.iter().map(|w| (*w, w.intervals(lo, hi))).collect();
        let blocked = |t: i64| -> Option<Closed> {
            if let Some(f) = freezes.iter().filter(|f| f.until > t).max_by_key(|f| f.until) {
                return Some(Closed::Frozen {
                    scope: f.scope.clone(),
                    until: f.until,
                    reason: f.reason.clone(),
                    by: f.by.clone(),
                });
            }
            let inside = |iv: &[(i64, i64)]| iv.iter().any(|(s, e)| *s <= t && t < *e);
            if let Some((w, _)) = spans.iter().find(|(w, iv)| w.spec.kind == Kind::Deny && inside(iv)) {
                return Some(Closed::Denied { window: w.spec.name.clone() });
            }
            if has_allow && !spans.iter().any(|(w, iv)| w.spec.kind == Kind::Allow && inside(iv)) {
                return Some(Closed::OutsideAllow);
            }
            None
        };
        if week == 0 {
            closed_now = blocked(now);
            if closed_now.is_none() {
                return Verdict { closed: None, opens: None };
            }
        }
        // The state can only change where an allow window starts, a deny window ends or a freeze ends.
        let mut candidates: Vec<i64> = vec![lo];
        for (w, iv) in &spans {
            candidates.extend(iv.iter().map(|(s, e)| if w.spec.kind == Kind::Allow { *s } else { *e }));
        }
        candidates.extend(freezes.iter().map(|f| f.until));
        candidates.retain(|t| (lo..hi).contains(t));
        candidates.sort_unstable();
        candidates.dedup();
        if let Some(t) = candidates.into_iter().find(|t| blocked(*t).is_none()) {
            return Verdict { closed: closed_now, opens: Some(t) };
        }
        lo = hi;
    }
    Verdict { closed: closed_now, opens: None }
}

impl Window {
    /// The open intervals `[start, end)` (unix seconds) that overlap `[lo, hi)`, in start order.
    pub fn intervals(&self, lo: i64, hi: i64) -> Vec<(i64, i64)> {
        let back = match &self.spec.schedule {
            Schedule::Cron { length, .. } => *length,
            Schedule::Hours { .. } => DAY,
        };
        let (Some(mut date), Some(last)) = (self.date_of(lo.saturating_sub(back + DAY)), self.date_of(hi)) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        while date <= last {
            let weekday = date.weekday().to_sunday_zero_offset() as u32;
            match &self.spec.schedule {
                Schedule::Hours { days, start, end } => {
                    if days & (1 << weekday) != 0 {
                        let end_date = if end <= start { date.tomorrow().ok() } else { Some(date) };
                        if let (Some(s), Some(e)) = (self.at(date, *start), end_date.and_then(|d| self.at(d, *end))) {
                            out.push((s, e));
                        }
                    }
                }
                Schedule::Cron { cron, length } => {
                    if cron.matches_date(date.month() as u32, date.day() as u32, weekday) {
                        for (h, m) in cron.times() {
                            if let Some(s) = self.at(date, h as u32 * 60 + m as u32) {
                                out.push((s, s + length));
                            }
                        }
                    }
                }
            }
            let Ok(next) = date.tomorrow() else { break };
            date = next;
        }
        out.retain(|(s, e)| *e > lo && *s < hi && s < e);
        out
    }

    fn date_of(&self, secs: i64) -> Option<Date> {
        Some(self.tz.to_datetime(Timestamp::from_second(secs).ok()?).date())
    }

    /// The instant of a wall-clock time: a time skipped by a DST change is taken as the same
    /// distance after the change (02:30 becomes 03:30); a repeated one as its first occurrence.
    fn at(&self, date: Date, minutes: u32) -> Option<i64> {
        let (date, minutes) = if minutes >= 1440 { (date.tomorrow().ok()?, minutes - 1440) } else { (date, minutes) };
        let dt = date.at((minutes / 60) as i8, (minutes % 60) as i8, 0, 0);
        Some(self.tz.to_ambiguous_timestamp(dt).compatible().ok()?.as_second())
    }
}

/// An instant for people: `2026-01-09 18:00 CET`.
pub fn format_at(secs: i64, tz: &TimeZone) -> String {
    match Timestamp::from_second(secs) {
        Ok(t) => t.to_zoned(tz.clone()).strftime("%Y-%m-%d %H:%M %Z").to_string(),
        Err(_) => secs.to_string(),
    }
}

#[cfg(test)]
mod tests;
