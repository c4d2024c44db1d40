//! Five-field cron expressions (`minute hour day-of-month month day-of-week`), as crontab(5) reads
//! them: `*`, numbers, ranges `a-b`, steps `*/n` and `a-b/n`, lists, month and day names; day 7 is Sunday.

/// A parsed expression: the allowed values of each field as bit sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    minutes: u64,
    hours: u32,
    /// Days of the month, bit 1..=31.
    days: u32,
    /// Months, bit 1..=12.
    months: u16,
    /// Days of the week, bit 0 (Sunday)..=6.
    weekdays: u8,
    /// Whether the day-of-month and day-of-week fields were `*`: crontab matches either restricted field.
    any_day: bool,
    any_weekday: bool,
}

const MONTHS: [&str; 12] = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];
const WEEKDAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

impl Cron {
    /// Parse `0 18 * * FRI`. The message says which field is wrong and why.
    pub fn parse(text: &str) -> Result<Cron, String> {
        let fields: Vec<&str> = text.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(format!(
                "`{text}` has {} fields; a schedule has 5: minute hour day-of-month month day-of-week",
                fields.len()
            ));
        }
        let field = |i: usize, name: &str, lo: u32, hi: u32, names: &[&str]| {
            parse_field(fields[i], lo, hi, names).map_err(|e| format!("`{text}`: {name} field `{}`: {e}", fields[i]))
        };
        let minutes = field(0, "minute", 0, 59, &[])?;
        let hours = field(1, "hour", 0, 23, &[])?;
        let days = field(2, "day-of-month", 1, 31, &[])?;
        let months = field(3, "month", 1, 12, &MONTHS)?;
        // 7 is Sunday too.
        let mut weekdays = field(4, "day-of-week", 0, 7, &WEEKDAYS)?;
        if weekdays & (1 << 7) != 0 {
            weekdays |= 1;
        }
        Ok(Cron {
            minutes,
            hours: hours as u32,
            days: days as u32,
            months: months as u16,
            weekdays: (weekdays & 0x7f) as u8,
            any_day: fields[2].starts_with('*'),
            any_weekday: fields[4].starts_with('*'),
        })
    }

    /// Does the expression fire on this date? `weekday`: 0 is Sunday.
    pub fn matches_date(&self, month: u32, day: u32, weekday: u32) -> bool {
        if self.months & (1 << month) == 0 {
            return false;
        }
        let by_day = self.days & (1 << day) != 0;
        let by_weekday = self.weekdays & (1 << weekday) != 0;
        match (self.any_day, self.any_weekday) {
            (false, false) => by_day || by_weekday,
            _ => by_day && by_weekday,
        }
    }

    /// The times of day it fires at, as (hour, minute), in order.
    pub fn times(&self) -> impl Iterator<Item = (i8, i8)> + '_ {
        (0..24)
            .filter(|h| self.hours & (1 << h) != 0)
            .flat_map(move |h| (0..60).filter(|m| self.minutes & (1u64 << m) != 0).map(move |m| (h as i8, m as i8)))
    }
}

fn parse_field(text: &str, lo: u32, hi: u32, names: &[&str]) -> Result<u64, String> {
    let mut set = 0u64;
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => {
                let step: u32 = s.parse().map_err(|_| format!("step `{s}` is not a number"))?;
                if step == 0 {
                    return Err("a step of 0 never fires".into());
                }
                (r, step)
            }
            None => (part, 1),
        };
        let (from, to) = if range == "*" {
            (lo, hi)
        } else if let Some((a, b)) = range.split_once('-') {
            (value(a, lo, hi, names)?, value(b, lo, hi, names)?)
        } else {
            let v = value(range, lo, hi, names)?;
            // `5/15` means from 5 to the end, every 15.
            (v, if step > 1 { hi } else { v })
        };
        if from > to {
            return Err(format!("range {from}-{to} runs backwards"));
        }
        for v in (from..=to).step_by(step as usize) {
            set |= 1 << v;
        }
    }
    Ok(set)
}

fn value(text: &str, lo: u32, hi: u32, names: &[&str]) -> Result<u32, String> {
    let lower = text.to_ascii_lowercase();
    if let Some(i) = names.iter().position(|n| *n == lower) {
        // Month names count from 1, weekday names from 0 (Sunday).
        return Ok(if names.len() == 12 { i as u32 + 1 } else { i as u32 });
    }
    match text.parse::<u32>() {
        Ok(v) if (lo..=hi).contains(&v) => Ok(v),
        Ok(v) => Err(format!("{v} is outside {lo}-{hi}")),
        Err(_) if names.is_empty() => Err(format!("`{text}` is not a number")),
        Err(_) => Err(format!("`{text}` is neither a number nor one of {}", names.join(", "))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_lists_ranges_steps_and_names() {
        let c = Cron::parse("0,30 8-18/2 * * MON-fri").unwrap();
        let times: Vec<_> = c.times().collect();
        assert_eq!(times[..3], [(8, 0), (8, 30), (10, 0)]);
        assert_eq!(times.len(), 12);
        assert!(c.matches_date(1, 5, 1));
        assert!(!c.matches_date(1, 4, 0), "Sunday");
        let c = Cron::parse("*/15 0 1 jan,Jul 7").unwrap();
        assert_eq!(c.times().count(), 4);
        // Day-of-month and day-of-week both restricted: either matches (crontab(5)).
        assert!(c.matches_date(1, 1, 3));
        assert!(c.matches_date(7, 9, 0));
        assert!(!c.matches_date(2, 1, 0), "February is not listed");
        assert!(!c.matches_date(1, 2, 3));
    }

    #[test]
    fn bad_expressions_say_which_field() {
        let e = Cron::parse("0 18 * * FRY").unwrap_err();
        assert!(e.contains("day-of-week field `FRY`"), "{e}");
        assert!(Cron::parse("60 * * * *").unwrap_err().contains("60 is outside 0-59"));
        assert!(Cron::parse("0 18 * *").unwrap_err().contains("has 4 fields"));
        assert!(Cron::parse("*/0 * * * *").unwrap_err().contains("step of 0"));
        assert!(Cron::parse("0 5-2 * * *").unwrap_err().contains("backwards"));
    }
}
