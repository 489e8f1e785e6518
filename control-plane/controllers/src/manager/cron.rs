//! Cron schedules as upstream's CronJob controller reads them (robfig/cron's standard parser):
//! five fields (minute, hour, day of month, month, day of week) with `*`, `?`, ranges `a-b`,
//! steps `*/n`, `a-b/n` and `a/n`, lists `a,b`, month names `jan`..`dec` and day names
//! `sun`..`sat` (any case), and the macros `@yearly`, `@annually`, `@monthly`, `@weekly`,
//! `@daily`, `@midnight` and `@hourly`. `@every <duration>` and `TZ=` prefixes are not accepted
//! (the API server refuses `TZ=` in favour of `spec.timeZone`).
//!
//! As in robfig/cron, when both day fields are restricted a day matching either runs; when one
//! is `*` both must match. Times are computed in a time zone: UTC when none is named, else the
//! named zone read from the system's tzdb (`/usr/share/zoneinfo`); in a DST gap the later
//! valid time is taken, in a repeated hour the first one.

use std::path::Path;

use k8s_openapi::jiff::civil::{Date, DateTime};
use k8s_openapi::jiff::tz::TimeZone;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

/// Where the system's time zone database lives.
const ZONEINFO: &str = "/usr/share/zoneinfo";
/// How far ahead [`Schedule::next_after`] looks before giving up (a schedule such as
/// `0 0 30 2 *` never fires).
const SEARCH_YEARS: i16 = 5;
/// Most field steps one search takes, whatever the input.
const MAX_STEPS: u32 = 2_000_000;
/// More missed start times than this and upstream warns "too many missed start times".
pub const TOO_MANY_MISSED: usize = 100;

/// A schedule that cannot be parsed; the text says why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid schedule: {0}")]
pub struct InvalidSchedule(pub String);

/// A parsed five-field schedule: one bit per allowed value of each field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    /// Whether the day-of-month field was `*`/`?` (robfig's star bit).
    days_star: bool,
    /// Whether the day-of-week field was `*`/`?`.
    weekdays_star: bool,
}

struct Field {
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const MINUTE: Field = Field {
    min: 0,
    max: 59,
    names: &[],
};
const HOUR: Field = Field {
    min: 0,
    max: 23,
    names: &[],
};
const DAY: Field = Field {
    min: 1,
    max: 31,
    names: &[],
};
const MONTH: Field = Field {
    min: 1,
    max: 12,
    names: &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ],
};
const WEEKDAY: Field = Field {
    min: 0,
    max: 6,
    names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
};

fn value(s: &str, f: &Field) -> Result<u32, InvalidSchedule> {
    let lower = s.to_ascii_lowercase();
    if let Some(i) = f.names.iter().position(|n| *n == lower) {
        // Month names start at 1, day names at 0: both are min + position.
        return Ok(f.min + i as u32);
    }
    s.parse::<u32>()
        .map_err(|_| InvalidSchedule(format!("failed to parse int from {s}")))
}

/// One comma-separated part of a field: its bits, and whether it was a bare star.
fn part(p: &str, f: &Field) -> Result<(u64, bool), InvalidSchedule> {
    let (range, step) = match p.split_once('/') {
        Some((r, s)) => {
            let step: u32 = s
                .parse()
                .map_err(|_| InvalidSchedule(format!("failed to parse int from {s}")))?;
            if step == 0 {
                return Err(InvalidSchedule(format!(
                    "step of range should be a positive number: {p}"
                )));
            }
            (r, Some(step))
        }
        None => (p, None),
    };
    let mut star = false;
    let (start, end) = if range == "*" || range == "?" {
        star = true;
        (f.min, f.max)
    } else if let Some((a, b)) = range.split_once('-') {
        (value(a, f)?, value(b, f)?)
    } else {
        let v = value(range, f)?;
        // `N/step` means N to the field's end.
        (v, if step.is_some() { f.max } else { v })
    };
    if start < f.min {
        return Err(InvalidSchedule(format!(
            "beginning of range ({start}) below minimum ({}): {p}",
            f.min
        )));
    }
    if end > f.max {
        return Err(InvalidSchedule(format!(
            "end of range ({end}) above maximum ({}): {p}",
            f.max
        )));
    }
    if start > end {
        return Err(InvalidSchedule(format!(
            "beginning of range ({start}) beyond end of range ({end}): {p}"
        )));
    }
    let step = step.unwrap_or(1);
    if step > 1 {
        star = false;
    }
    let mut bits = 0u64;
    let mut v = start;
    while v <= end {
        bits |= 1u64 << v;
        v += step;
    }
    Ok((bits, star))
}

fn field(s: &str, f: &Field) -> Result<(u64, bool), InvalidSchedule> {
    let mut bits = 0;
    let mut star = false;
    for p in s.split(',') {
        let (b, st) = part(p, f)?;
        bits |= b;
        star |= st;
    }
    Ok((bits, star))
}

impl Schedule {
    /// Parses a standard five-field schedule or one of the `@` macros.
    pub fn parse(spec: &str) -> Result<Schedule, InvalidSchedule> {
        let spec = spec.trim();
        if spec.is_empty() {
            return Err(InvalidSchedule("empty spec string".into()));
        }
        if spec.starts_with("TZ=") || spec.starts_with("CRON_TZ=") {
            return Err(InvalidSchedule(
                "TZ= and CRON_TZ= are not supported; use spec.timeZone".into(),
            ));
        }
        let expanded = match spec {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            s if s.starts_with('@') => {
                return Err(InvalidSchedule(format!("unrecognized descriptor: {s}")))
            }
            s => s,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(InvalidSchedule(format!(
                "expected exactly 5 fields, found {}: {spec}",
                fields.len()
            )));
        }
        let (minutes, _) = field(fields[0], &MINUTE)?;
        let (hours, _) = field(fields[1], &HOUR)?;
        let (days, days_star) = field(fields[2], &DAY)?;
        let (months, _) = field(fields[3], &MONTH)?;
        let (weekdays, weekdays_star) = field(fields[4], &WEEKDAY)?;
        Ok(Schedule {
            minutes,
            hours,
            days,
            months,
            weekdays,
            days_star,
            weekdays_star,
        })
    }

    fn day_matches(&self, date: Date) -> bool {
        let dom = self.days & (1u64 << date.day()) != 0;
        let wd = date.weekday().to_sunday_zero_offset();
        let dow = self.weekdays & (1u64 << wd) != 0;
        if self.days_star || self.weekdays_star {
            dom && dow
        } else {
            dom || dow
        }
    }

    /// The first time strictly after `after` at which the schedule fires in `tz`, if one comes
    /// within five years.
    pub fn next_after(&self, after: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        let start = tz.to_datetime(after);
        let (mut y, mut mo, mut d, mut h, mut mi) = (
            start.year(),
            start.month(),
            start.day(),
            start.hour(),
            start.minute() + 1,
        );
        let last_year = y.saturating_add(SEARCH_YEARS);
        for _ in 0..MAX_STEPS {
            // Carry overflowing fields upwards.
            if mi >= 60 {
                mi = 0;
                h += 1;
            }
            if h >= 24 {
                h = 0;
                d += 1;
            }
            if mo > 12 {
                mo = 1;
                d = 1;
                y = y.checked_add(1)?;
            }
            let dim = Date::new(y, mo, 1).ok()?.days_in_month();
            if d > dim {
                d = 1;
                mo += 1;
                if mo > 12 {
                    mo = 1;
                    y = y.checked_add(1)?;
                }
            }
            if y > last_year {
                return None;
            }
            if self.months & (1u64 << mo) == 0 {
                (mo, d, h, mi) = (mo + 1, 1, 0, 0);
                continue;
            }
            let date = Date::new(y, mo, d).ok()?;
            if !self.day_matches(date) {
                (d, h, mi) = (d + 1, 0, 0);
                continue;
            }
            if self.hours & (1u64 << h) == 0 {
                (h, mi) = (h + 1, 0);
                continue;
            }
            if self.minutes & (1u64 << mi) == 0 {
                mi += 1;
                continue;
            }
            let dt = DateTime::new(y, mo, d, h, mi, 0, 0).ok()?;
            let ts = tz.to_ambiguous_timestamp(dt).compatible().ok()?;
            if ts > after {
                return Some(ts);
            }
            // A repeated hour maps back before `after`: keep looking.
            mi += 1;
        }
        None
    }
}

/// Resolves `spec.timeZone`: UTC when unset (`UTC` and `Etc/UTC` too), else the zone's file
/// in the system's tzdb.
pub fn time_zone(name: Option<&str>) -> Result<TimeZone, InvalidSchedule> {
    time_zone_in(name, Path::new(ZONEINFO))
}

fn time_zone_in(name: Option<&str>, root: &Path) -> Result<TimeZone, InvalidSchedule> {
    let name = match name {
        None | Some("" | "UTC" | "Etc/UTC" | "Etc/Universal" | "Universal" | "Zulu") => {
            return Ok(TimeZone::UTC)
        }
        Some(n) => n,
    };
    let bad = || InvalidSchedule(format!("unknown time zone {name}"));
    let safe = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '-' | '+'))
        && !name.starts_with('/')
        && !name
            .split('/')
            .any(|p| p.is_empty() || p == "." || p == "..")
        && name.len() <= 255;
    if !safe {
        return Err(bad());
    }
    let path = root.join(name);
    let meta = std::fs::metadata(&path).map_err(|_| bad())?;
    if !meta.is_file() || meta.len() > 1 << 20 {
        return Err(bad());
    }
    let data = std::fs::read(&path).map_err(|_| bad())?;
    TimeZone::tzif(name, &data).map_err(|_| bad())
}

/// The start times a CronJob missed: the most recent time the schedule fired in
/// (`earliest`, `now`], and whether more than [`TOO_MANY_MISSED`] were missed.
pub fn most_recent(
    schedule: &Schedule,
    tz: &TimeZone,
    earliest: Timestamp,
    now: Timestamp,
) -> (Option<Timestamp>, bool) {
    let mut last = None;
    let mut t = earliest;
    for _ in 0..=TOO_MANY_MISSED {
        match schedule.next_after(t, tz) {
            Some(n) if n <= now => {
                last = Some(n);
                t = n;
            }
            _ => return (last, false),
        }
    }
    // Too many: look back over doubling windows for the newest one.
    let mut window = SignedDuration::from_hours(1);
    loop {
        let from = now
            .checked_sub(window)
            .unwrap_or(Timestamp::MIN)
            .max(earliest);
        let mut t = from;
        let mut found = None;
        for _ in 0..100_000 {
            match schedule.next_after(t, tz) {
                Some(n) if n <= now => {
                    found = Some(n);
                    t = n;
                }
                _ => break,
            }
        }
        if found.is_some() || from <= earliest {
            return (found.or(last), true);
        }
        window = window.checked_mul(2).unwrap_or(SignedDuration::MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap_or(Timestamp::UNIX_EPOCH)
    }

    fn next(spec: &str, after: &str) -> Option<String> {
        let s = Schedule::parse(spec).ok()?;
        s.next_after(ts(after), &TimeZone::UTC)
            .map(|t| t.to_string())
    }

    #[test]
    fn parses_fields_ranges_steps_lists_and_names() {
        assert!(Schedule::parse("*/1 * * * *").is_ok());
        assert!(Schedule::parse("0 9-17/2 * JAN-mar,dec MON-FRI").is_ok());
        assert!(Schedule::parse("5/15 ? 1,15 * *").is_ok());
        assert!(Schedule::parse("@hourly").is_ok());
        for bad in [
            "",
            "* * * *",
            "* * * * * *",
            "60 * * * *",
            "* 24 * * *",
            "* * 0 * *",
            "* * * 13 *",
            "* * * * 7",
            "*/0 * * * *",
            "5-1 * * * *",
            "x * * * *",
            "@every 5m",
            "TZ=UTC * * * * *",
        ] {
            assert!(Schedule::parse(bad).is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn next_times() {
        assert_eq!(
            next("*/1 * * * *", "2024-01-01T00:00:30Z").as_deref(),
            Some("2024-01-01T00:01:00Z")
        );
        assert_eq!(
            next("*/15 * * * *", "2024-01-01T00:15:00Z").as_deref(),
            Some("2024-01-01T00:30:00Z")
        );
        assert_eq!(
            next("0 0 * * *", "2024-02-28T12:00:00Z").as_deref(),
            Some("2024-02-29T00:00:00Z")
        );
        assert_eq!(
            next("@yearly", "2024-06-01T00:00:00Z").as_deref(),
            Some("2025-01-01T00:00:00Z")
        );
        assert_eq!(
            next("30 8 * * mon", "2024-01-01T09:00:00Z").as_deref(),
            Some("2024-01-08T08:30:00Z")
        );
        // Both day fields restricted: either matches (the 13th, or a Friday).
        assert_eq!(
            next("0 0 13 * 5", "2024-01-01T00:00:00Z").as_deref(),
            Some("2024-01-05T00:00:00Z")
        );
        // Day of month with weekday `*`: only the 31st, skipping short months.
        assert_eq!(
            next("0 0 31 * *", "2024-04-01T00:00:00Z").as_deref(),
            Some("2024-05-31T00:00:00Z")
        );
        assert_eq!(next("0 0 30 2 *", "2024-01-01T00:00:00Z"), None);
        assert_eq!(
            next("0 12 1 jan,jul *", "2024-01-01T12:00:00Z").as_deref(),
            Some("2024-07-01T12:00:00Z")
        );
    }

    #[test]
    fn time_zones_shift_and_follow_dst() {
        let s = match Schedule::parse("0 9 * * *") {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        };
        assert!(time_zone(Some("../etc/passwd")).is_err());
        assert!(time_zone(Some("No/Such_Zone")).is_err());
        let Ok(ny) = time_zone(Some("America/New_York")) else {
            // No tzdb on this machine: only UTC is available.
            return;
        };
        // 09:00 EST is 14:00 UTC; after DST starts (10 March 2024), 13:00 UTC.
        let a = s
            .next_after(ts("2024-03-09T00:00:00Z"), &ny)
            .map(|t| t.to_string());
        assert_eq!(a.as_deref(), Some("2024-03-09T14:00:00Z"));
        let b = s
            .next_after(ts("2024-03-10T00:00:00Z"), &ny)
            .map(|t| t.to_string());
        assert_eq!(b.as_deref(), Some("2024-03-10T13:00:00Z"));
        // 02:30 does not exist on 10 March: the later valid time, 03:30 EDT.
        let gap = Schedule::parse("30 2 * * *").ok();
        let c = gap
            .and_then(|g| g.next_after(ts("2024-03-10T05:00:00Z"), &ny))
            .map(|t| t.to_string());
        assert_eq!(c.as_deref(), Some("2024-03-10T07:30:00Z"));
    }

    #[test]
    fn missed_start_times() {
        let s = Schedule::parse("*/1 * * * *").unwrap_or_else(|e| panic!("{e}"));
        let (t, many) = most_recent(
            &s,
            &TimeZone::UTC,
            ts("2024-01-01T00:00:00Z"),
            ts("2024-01-01T00:05:30Z"),
        );
        assert_eq!(
            t.map(|t| t.to_string()).as_deref(),
            Some("2024-01-01T00:05:00Z")
        );
        assert!(!many);
        let (t, many) = most_recent(
            &s,
            &TimeZone::UTC,
            ts("2024-01-01T00:00:00Z"),
            ts("2024-01-03T07:08:09Z"),
        );
        assert_eq!(
            t.map(|t| t.to_string()).as_deref(),
            Some("2024-01-03T07:08:00Z")
        );
        assert!(many);
        let (t, _) = most_recent(
            &s,
            &TimeZone::UTC,
            ts("2024-01-01T00:00:00Z"),
            ts("2024-01-01T00:00:59Z"),
        );
        assert_eq!(t, None);
    }
}
