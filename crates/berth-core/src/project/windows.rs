//! `[[window]]` deploy windows: each checked (kind, schedule, the names it applies to) into a
//! [`WindowSpec`]; time zones are looked up by the binary (`window::resolve`).

use super::{Environment, Server, Source, Stack};
use crate::config::{ConfigFile, WindowToml};
use crate::duration;
use crate::error::ConfigError;
use crate::window::{Cron, Kind, Schedule, WindowSpec};

const WEEKDAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

pub(super) fn resolve(
    src: &Source,
    cfg: &ConfigFile,
    servers: &[Server],
    stacks: &[Stack],
    environments: &[Environment],
    errors: &mut Vec<ConfigError>,
) -> Vec<WindowSpec> {
    let mut out = Vec::new();
    for (i, w) in cfg.window.iter().enumerate() {
        let location = src.at(w.span());
        let w = w.get_ref();
        let name = w.name.clone().unwrap_or_else(|| format!("#{}", i + 1));
        let mut problem = |m: String, help: &str| {
            let e = ConfigError::new(format!("window {name}: {m}")).at(location.clone());
            errors.push(if help.is_empty() { e } else { e.help(help) });
        };
        let kind = match w.kind.as_str() {
            "allow" => Some(Kind::Allow),
            "deny" => Some(Kind::Deny),
            other => {
                problem(format!("unknown kind `{other}`"), "kind is `allow` or `deny`");
                None
            }
        };
        let schedule = match schedule(w) {
            Ok(s) => Some(s),
            Err(m) => {
                let help = "give schedule = \"0 18 * * FRI\" with duration = \"62h\", \
                            or days = [\"mon-fri\"] with hours = \"08:00-18:00\"";
                problem(m, help);
                None
            }
        };
        for s in w.stacks.iter().filter(|s| !stacks.iter().any(|x| &x.name == *s)) {
            problem(format!("unknown stack `{s}`"), "");
        }
        for s in w.servers.iter().filter(|s| !servers.iter().any(|x| &x.name == *s)) {
            problem(format!("unknown server `{s}`"), "");
        }
        for e in w.environments.iter().filter(|e| !environments.iter().any(|x| &x.name == *e)) {
            problem(format!("unknown environment `{e}`"), "");
        }
        let timezone = w.timezone.clone().unwrap_or_else(|| "UTC".into());
        if timezone.trim().is_empty() {
            problem("empty timezone".into(), "use an IANA name such as `Europe/Berlin`, or `UTC`");
        }
        if let (Some(kind), Some(schedule)) = (kind, schedule) {
            out.push(WindowSpec {
                name,
                kind,
                schedule,
                timezone,
                stacks: w.stacks.clone(),
                environments: w.environments.clone(),
                servers: w.servers.clone(),
                self_heal: w.self_heal.unwrap_or(true),
                location,
            });
        }
    }
    out
}

fn schedule(w: &WindowToml) -> Result<Schedule, String> {
    match (&w.schedule, &w.duration, &w.days, &w.hours) {
        (Some(_), _, Some(_), _) | (Some(_), _, _, Some(_)) => {
            Err("give either schedule and duration, or days and hours, not both".into())
        }
        (Some(expr), Some(d), None, None) => {
            let cron = Cron::parse(expr)?;
            let length = duration::parse(d).map_err(|e| format!("duration: {e}"))?.as_secs() as i64;
            if length == 0 {
                return Err("duration: a window of 0s is never open".into());
            }
            Ok(Schedule::Cron { cron, length })
        }
        (Some(_), None, None, None) => Err("schedule needs a duration (how long the window stays open)".into()),
        (None, Some(_), _, _) => Err("duration goes with schedule".into()),
        (None, None, days, Some(hours)) => {
            let days = match days {
                Some(d) => weekdays(d)?,
                None => 0x7f,
            };
            let (start, end) = hours_range(hours)?;
            Ok(Schedule::Hours { days, start, end })
        }
        (None, None, Some(_), None) => Err("days needs hours, e.g. hours = \"00:00-24:00\" for whole days".into()),
        (None, None, None, None) => Err("no schedule".into()),
    }
}

/// `["mon-fri", "sun"]` as a bit set (bit 0 Sunday); a range may wrap (`fri-mon`).
fn weekdays(days: &[String]) -> Result<u8, String> {
    let day = |d: &str| {
        let l = d.trim().to_ascii_lowercase();
        const FULL: [&str; 7] = ["sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday"];
        (0..7)
            .find(|&i| l == WEEKDAYS[i] || l == FULL[i])
            .ok_or_else(|| format!("days: `{d}` is not a weekday (mon, tue, wed, thu, fri, sat, sun)"))
    };
    if days.is_empty() {
        return Err("days is empty".into());
    }
    let mut set = 0u8;
    for d in days {
        match d.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (day(a)?, day(b)?);
                let mut i = a;
                loop {
                    set |= 1 << i;
                    if i == b {
                        break;
                    }
                    i = (i + 1) % 7;
                }
            }
            None => set |= 1 << day(d)?,
        }
    }
    Ok(set)
}

/// `08:00-18:00` as minutes of the day; the end may be `24:00`.
fn hours_range(text: &str) -> Result<(u32, u32), String> {
    let bad = || format!("hours: `{text}` is not HH:MM-HH:MM (e.g. 08:00-18:00)");
    let (a, b) = text.split_once('-').ok_or_else(bad)?;
    let time = |t: &str| -> Result<u32, String> {
        let (h, m) = t.trim().split_once(':').ok_or_else(bad)?;
        let (h, m): (u32, u32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
        if m > 59 || h > 24 || (h == 24 && m > 0) {
            return Err(bad());
        }
        Ok(h * 60 + m)
    };
    let (start, end) = (time(a)?, time(b)?);
    if start == 1440 {
        return Err(format!("hours: `{text}` starts at 24:00; start at 00:00"));
    }
    if start == end {
        return Err(format!("hours: `{text}` is empty; for whole days use 00:00-24:00"));
    }
    Ok((start, end))
}

#[cfg(test)]
mod tests {
    use super::super::testing::check;
    use crate::window::Schedule;

    #[test]
    fn windows_are_checked_and_located() {
        let toml = "[[server]]\nname = \"onyx\"\n[[window]]\nkind = \"allow\"\ndays = [\"mon-fri\"]\nhours = \"08:00-18:00\"\ntimezone = \"Europe/Berlin\"\n\
                    [[window]]\nname = \"weekend\"\nkind = \"deny\"\nschedule = \"0 18 * * FRI\"\nduration = \"62h\"\nstacks = [\"web\"]\n";
        let p = check(toml, &[]).unwrap();
        assert_eq!(p.windows.len(), 2);
        assert_eq!(p.windows[0].name, "#1");
        assert_eq!(p.windows[0].schedule, Schedule::Hours { days: 0b0111110, start: 480, end: 1080 });
        assert_eq!(p.windows[1].location.as_ref().unwrap().line, 8);
        assert!(matches!(p.windows[1].schedule, Schedule::Cron { length: 223_200, .. }));
    }

    #[test]
    fn bad_windows_name_the_line() {
        let cases = [
            ("kind = \"maybe\"\nhours = \"08:00-18:00\"", "unknown kind `maybe`"),
            (
                "kind = \"deny\"\nschedule = \"0 25 * * *\"\nduration = \"1h\"",
                "`0 25 * * *`: hour field `25`: 25 is outside 0-23",
            ),
            ("kind = \"deny\"\nschedule = \"0 1 * * *\"", "schedule needs a duration"),
            ("kind = \"deny\"\nhours = \"8-18\"", "hours: `8-18` is not HH:MM-HH:MM"),
            ("kind = \"deny\"\ndays = [\"funday\"]\nhours = \"08:00-09:00\"", "days: `funday` is not a weekday"),
            ("kind = \"deny\"\nhours = \"08:00-09:00\"\nstacks = [\"wbe\"]", "unknown stack `wbe`"),
            ("kind = \"deny\"\nhours = \"08:00-09:00\"\nenvironments = [\"prod\"]", "unknown environment `prod`"),
        ];
        for (body, expect) in cases {
            let toml = format!("[[server]]\nname = \"onyx\"\n[[window]]\n{body}\n");
            check(&toml, &[&format!("berth.toml:3:1: window #1: {expect}")]);
        }
    }

    #[test]
    fn weekday_ranges_wrap() {
        assert_eq!(super::weekdays(&["fri-mon".into()]).unwrap(), 0b1100011);
        assert_eq!(super::weekdays(&["Saturday".into(), "sun".into()]).unwrap(), 0b1000001);
        assert_eq!(super::hours_range("22:00-06:00").unwrap(), (1320, 360));
        assert_eq!(super::hours_range("00:00-24:00").unwrap(), (0, 1440));
    }
}
