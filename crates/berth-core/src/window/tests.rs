//! Windows and freezes against a fixed clock, in zones with DST (POSIX rules, so no tzdb is read).

use jiff::Timestamp;
use jiff::tz::TimeZone;

use super::*;

/// Europe/Berlin's rules: CET, CEST from the last Sunday of March 02:00 to the last Sunday of October 03:00.
fn berlin() -> TimeZone {
    TimeZone::posix("CET-1CEST,M3.5.0,M10.5.0/3").unwrap()
}

fn t(s: &str) -> i64 {
    s.parse::<Timestamp>().unwrap().as_second()
}

fn show(secs: i64) -> String {
    Timestamp::from_second(secs).unwrap().to_string()
}

fn window(name: &str, kind: Kind, schedule: Schedule, tz: TimeZone) -> Window {
    let spec = WindowSpec {
        name: name.into(),
        kind,
        schedule,
        timezone: "test".into(),
        stacks: Vec::new(),
        environments: Vec::new(),
        servers: Vec::new(),
        self_heal: true,
        location: None,
    };
    Window { spec, tz }
}

fn cron(expr: &str, hours: i64) -> Schedule {
    Schedule::Cron { cron: Cron::parse(expr).unwrap(), length: hours * 3600 }
}

/// Monday to Friday (bits 1..=5), `start`..`end` in hours.
fn office(start: u32, end: u32) -> Schedule {
    Schedule::Hours { days: 0b0111110, start: start * 60, end: end * 60 }
}

const WEB: Subject = Subject { stack: "web", server: "onyx", environments: &["prod"] };

fn verdict(windows: &[Window], now: &str) -> Verdict {
    check(windows, &[], &WEB, t(now), false)
}

#[test]
fn no_window_and_no_freeze_is_open() {
    assert_eq!(verdict(&[], "2026-01-10T12:00:00Z"), Verdict { closed: None, opens: None });
}

#[test]
fn outside_an_allow_window_waits_for_the_next_one() {
    let w = [window("office", Kind::Allow, office(8, 18), berlin())];
    // Tuesday 10:00 CET: open.
    assert!(verdict(&w, "2026-01-06T09:00:00Z").is_open());
    // Saturday: closed until Monday 08:00 CET (07:00Z).
    let v = verdict(&w, "2026-01-10T12:00:00Z");
    assert_eq!(v.closed, Some(Closed::OutsideAllow));
    assert_eq!(show(v.opens.unwrap()), "2026-01-12T07:00:00Z");
    // Friday 18:00 CET exactly is closed (the end is exclusive).
    let v = verdict(&w, "2026-01-09T17:00:00Z");
    assert_eq!(show(v.opens.unwrap()), "2026-01-12T07:00:00Z");
}

#[test]
fn deny_wins_over_an_overlapping_allow() {
    let w = [
        window("office", Kind::Allow, office(8, 18), berlin()),
        window("lunch", Kind::Deny, cron("0 12 * * *", 1), berlin()),
    ];
    let v = verdict(&w, "2026-01-06T11:30:00Z");
    assert_eq!(v.closed, Some(Closed::Denied { window: "lunch".into() }));
    assert_eq!(show(v.opens.unwrap()), "2026-01-06T12:00:00Z", "13:00 CET");
    // A deny window ending outside the allow window opens at the next allow window.
    let w = [
        window("office", Kind::Allow, office(8, 18), berlin()),
        window("late", Kind::Deny, cron("0 17 * * *", 16), berlin()),
    ];
    let v = verdict(&w, "2026-01-06T16:30:00Z");
    assert_eq!(v.closed, Some(Closed::Denied { window: "late".into() }));
    assert_eq!(show(v.opens.unwrap()), "2026-01-07T08:00:00Z", "Wednesday 09:00 CET, when `late` ends");
}

#[test]
fn windows_across_midnight() {
    let night =
        [window("night", Kind::Allow, Schedule::Hours { days: 0x7f, start: 22 * 60, end: 6 * 60 }, TimeZone::UTC)];
    assert!(verdict(&night, "2026-01-06T23:00:00Z").is_open());
    assert!(verdict(&night, "2026-01-07T05:59:59Z").is_open(), "the window started the day before");
    let v = verdict(&night, "2026-01-07T06:00:00Z");
    assert_eq!(show(v.opens.unwrap()), "2026-01-07T22:00:00Z");
    // Only Fridays' nights: Saturday 03:00 belongs to Friday's window.
    let fri =
        [window("fri", Kind::Allow, Schedule::Hours { days: 1 << 5, start: 22 * 60, end: 6 * 60 }, TimeZone::UTC)];
    assert!(verdict(&fri, "2026-01-10T03:00:00Z").is_open());
    assert!(!verdict(&fri, "2026-01-09T03:00:00Z").is_open(), "Friday 03:00 belongs to Thursday");
}

#[test]
fn a_weekend_deny_window_from_cron_and_duration() {
    let w = [window("weekend", Kind::Deny, cron("0 18 * * FRI", 62), berlin())];
    assert!(verdict(&w, "2026-01-09T16:59:59Z").is_open(), "Friday 17:59 CET");
    let v = verdict(&w, "2026-01-10T12:00:00Z");
    assert_eq!(v.closed, Some(Closed::Denied { window: "weekend".into() }));
    assert_eq!(show(v.opens.unwrap()), "2026-01-12T07:00:00Z", "Monday 08:00 CET");
    // The duration is real time: over the March change the window ends at 09:00 CEST.
    let v = verdict(&w, "2026-03-28T12:00:00Z");
    assert_eq!(show(v.opens.unwrap()), "2026-03-30T07:00:00Z");
}

#[test]
fn dst_spring_forward_skipped_and_shortened_times() {
    // 2026-03-29: 02:00 CET jumps to 03:00 CEST; 02:30 does not exist and is taken as 03:30 CEST.
    let w = window("nightly", Kind::Allow, cron("30 2 * * *", 1), berlin());
    let starts: Vec<String> =
        w.intervals(t("2026-03-28T00:00:00Z"), t("2026-03-31T00:00:00Z")).iter().map(|(s, _)| show(*s)).collect();
    assert_eq!(starts, ["2026-03-28T01:30:00Z", "2026-03-29T01:30:00Z", "2026-03-30T00:30:00Z"]);
    // Wall-clock hours keep their wall-clock meaning: 08:00-18:00 CEST on the Monday after.
    let o = window("office", Kind::Allow, office(8, 18), berlin());
    let ivs = o.intervals(t("2026-03-27T00:00:00Z"), t("2026-03-31T00:00:00Z"));
    let shown: Vec<(String, String)> = ivs.iter().map(|(s, e)| (show(*s), show(*e))).collect();
    assert_eq!(shown[0], ("2026-03-27T07:00:00Z".into(), "2026-03-27T17:00:00Z".into()));
    assert_eq!(shown[1], ("2026-03-30T06:00:00Z".into(), "2026-03-30T16:00:00Z".into()));
    // A window across the change itself is an hour shorter in real time.
    let n = window("night", Kind::Allow, Schedule::Hours { days: 1 << 6, start: 22 * 60, end: 6 * 60 }, berlin());
    let (s, e) = n.intervals(t("2026-03-28T12:00:00Z"), t("2026-03-29T12:00:00Z"))[0];
    assert_eq!((show(s), (e - s) / 3600), ("2026-03-28T21:00:00Z".into(), 7));
}

#[test]
fn dst_fall_back_repeated_time_fires_once() {
    // 2026-10-25: 03:00 CEST goes back to 02:00 CET; 02:30 happens twice, the window opens at the first.
    let w = window("nightly", Kind::Allow, cron("30 2 * * *", 1), berlin());
    let starts: Vec<String> =
        w.intervals(t("2026-10-24T12:00:00Z"), t("2026-10-26T12:00:00Z")).iter().map(|(s, _)| show(*s)).collect();
    assert_eq!(starts, ["2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"]);
    // In New York too (EST5EDT: first Sunday of November).
    let ny = window("ny", Kind::Allow, cron("30 1 * * *", 1), TimeZone::posix("EST5EDT,M3.2.0,M11.1.0").unwrap());
    let v = check(&[ny], &[], &WEB, t("2026-11-01T03:00:00Z"), false);
    assert_eq!(show(v.opens.unwrap()), "2026-11-01T05:30:00Z", "01:30 EDT");
}

#[test]
fn freezes_win_and_end_at_their_time() {
    let freeze = Freeze {
        id: 1,
        scope: Scope::Environment("prod".into()),
        until: t("2026-01-06T10:00:00Z"),
        reason: "release week".into(),
        by: "ana".into(),
        at: t("2026-01-01T00:00:00Z"),
    };
    let now = t("2026-01-05T12:00:00Z");
    let v = check(&[], std::slice::from_ref(&freeze), &WEB, now, false);
    assert!(matches!(&v.closed, Some(Closed::Frozen { by, .. }) if by == "ana"));
    assert_eq!(show(v.opens.unwrap()), "2026-01-06T10:00:00Z");
    assert_eq!(
        v.closed.unwrap().describe(&berlin()),
        "environment `prod` is frozen until 2026-01-06 11:00 CET by ana: release week"
    );
    // Over once its time has passed; other environments and restores are not held.
    assert!(check(&[], std::slice::from_ref(&freeze), &WEB, t("2026-01-06T10:00:00Z"), false).is_open());
    let staging = Subject { environments: &["staging"], ..WEB };
    assert!(check(&[], std::slice::from_ref(&freeze), &staging, now, false).is_open());
    assert!(check(&[], std::slice::from_ref(&freeze), &WEB, now, true).is_open());
    // A freeze ending inside a deny window: it opens when both are over.
    let lunch = [window("lunch", Kind::Deny, cron("0 9 * * *", 2), TimeZone::UTC)];
    let v = check(&lunch, &[freeze], &WEB, now, false);
    assert_eq!(show(v.opens.unwrap()), "2026-01-06T11:00:00Z");
}

#[test]
fn restores_pass_self_heal_windows_only() {
    let mut w = window("all", Kind::Deny, cron("0 0 * * *", 24), TimeZone::UTC);
    let now = t("2026-01-05T12:00:00Z");
    assert!(!check(std::slice::from_ref(&w), &[], &WEB, now, false).is_open());
    assert!(check(std::slice::from_ref(&w), &[], &WEB, now, true).is_open());
    w.spec.self_heal = false;
    assert!(!check(std::slice::from_ref(&w), &[], &WEB, now, true).is_open());
}

#[test]
fn windows_apply_to_their_stacks_servers_and_environments() {
    let mut w = window("x", Kind::Deny, cron("0 0 * * *", 24), TimeZone::UTC);
    let now = t("2026-01-05T12:00:00Z");
    for (stacks, envs, servers, applies) in [
        (vec!["web"], vec![], vec![], true),
        (vec!["api"], vec![], vec![], false),
        (vec![], vec!["prod"], vec!["onyx"], true),
        (vec![], vec!["staging"], vec![], false),
        (vec![], vec![], vec!["beryl"], false),
    ] {
        w.spec.stacks = stacks.into_iter().map(String::from).collect();
        w.spec.environments = envs.into_iter().map(String::from).collect();
        w.spec.servers = servers.into_iter().map(String::from).collect();
        assert_eq!(!check(std::slice::from_ref(&w), &[], &WEB, now, false).is_open(), applies, "{:?}", w.spec);
    }
}

#[test]
fn an_opening_beyond_a_year_is_not_promised() {
    let leap = [window("leap", Kind::Allow, cron("0 0 29 2 *", 1), TimeZone::UTC)];
    let v = verdict(&leap, "2026-03-01T00:00:00Z");
    assert_eq!(v.closed, Some(Closed::OutsideAllow));
    assert_eq!(v.opens, None);
}

#[test]
fn unknown_time_zones_are_located() {
    let mut w = window("x", Kind::Deny, cron("0 0 * * *", 1), TimeZone::UTC).spec;
    w.timezone = "Europe/Berln".into();
    w.location = Some(Location { file: "berth.toml".into(), line: 7, column: 1 });
    let errs = resolve(&[w], |_| None).unwrap_err();
    assert_eq!(errs[0].to_string(), "berth.toml:7:1: window x: unknown time zone `Europe/Berln`");
}
