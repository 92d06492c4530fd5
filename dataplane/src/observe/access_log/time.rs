//! `%START_TIME(...)%`: a strftime-like format compiled once, rendered in UTC as Envoy does,
//! with Envoy's additions: `%s` (seconds since the epoch), `%f` / `%1f`..`%9f` (fractional
//! seconds, 9 digits by default) and absl's `%E3S` (seconds with 3 fractional digits).

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

/// Envoy's default `%START_TIME%`: `2026-12-04T11:32:56.630Z`.
pub const DEFAULT: &str = "%Y-%m-%dT%H:%M:%E3SZ";

#[derive(Debug, Clone, PartialEq, Eq)]
enum Spec {
    Lit(String),
    Year,
    Year2,
    Month,
    Day,
    DaySpace,
    DayOfYear,
    Hour,
    Hour12,
    Minute,
    Second,
    /// Seconds with that many fractional digits (`%E3S`).
    SecondFrac(u8),
    Epoch,
    /// Fractional seconds, that many digits.
    Frac(u8),
    Weekday,
    WeekdayLong,
    MonthName,
    MonthNameLong,
    AmPm,
    Offset,
    Zone,
}

/// A compiled time format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeFormat(Vec<Spec>);

const DAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];
const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

impl TimeFormat {
    pub fn parse(format: &str) -> TimeFormat {
        let mut specs = Vec::new();
        let mut lit = String::new();
        let mut chars = format.chars().peekable();
        while let Some(c) = chars.next() {
            if c != '%' {
                lit.push(c);
                continue;
            }
            let spec = match chars.next() {
                Some('Y') => Spec::Year,
                Some('y') => Spec::Year2,
                Some('m') => Spec::Month,
                Some('d') => Spec::Day,
                Some('e') => Spec::DaySpace,
                Some('j') => Spec::DayOfYear,
                Some('H') => Spec::Hour,
                Some('I') => Spec::Hour12,
                Some('M') => Spec::Minute,
                Some('S') => Spec::Second,
                Some('s') => Spec::Epoch,
                Some('f') => Spec::Frac(9),
                Some('a') => Spec::Weekday,
                Some('A') => Spec::WeekdayLong,
                Some('b') | Some('h') => Spec::MonthName,
                Some('B') => Spec::MonthNameLong,
                Some('p') => Spec::AmPm,
                Some('z') => Spec::Offset,
                Some('Z') => Spec::Zone,
                Some('T') => {
                    specs.extend(flush(&mut lit));
                    specs.extend(TimeFormat::parse("%H:%M:%S").0);
                    continue;
                }
                Some('F') => {
                    specs.extend(flush(&mut lit));
                    specs.extend(TimeFormat::parse("%Y-%m-%d").0);
                    continue;
                }
                Some('D') => {
                    specs.extend(flush(&mut lit));
                    specs.extend(TimeFormat::parse("%m/%d/%y").0);
                    continue;
                }
                Some('n') => Spec::Lit("\n".into()),
                Some('t') => Spec::Lit("\t".into()),
                Some('%') => Spec::Lit("%".into()),
                Some(d @ '1'..='9') if chars.peek() == Some(&'f') => {
                    chars.next();
                    Spec::Frac(d as u8 - b'0')
                }
                Some('E') => {
                    let mut look = chars.clone();
                    match (look.next(), look.next()) {
                        (Some(d @ '0'..='9'), Some('S')) => {
                            chars.next();
                            chars.next();
                            Spec::SecondFrac(d as u8 - b'0')
                        }
                        _ => Spec::Lit("%E".into()),
                    }
                }
                // Anything else is written as it is (absl does the same).
                Some(other) => Spec::Lit(format!("%{other}")),
                None => Spec::Lit("%".into()),
            };
            specs.extend(flush(&mut lit));
            specs.push(spec);
        }
        specs.extend(flush(&mut lit));
        TimeFormat(specs)
    }

    pub fn write(&self, t: SystemTime, out: &mut String) {
        let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
        let secs = since.as_secs() as i64;
        let nanos = since.subsec_nanos();
        let days = secs.div_euclid(86_400);
        let of_day = secs.rem_euclid(86_400);
        let (year, month, day) = civil(days);
        let (h, m, s) = (of_day / 3600, of_day / 60 % 60, of_day % 60);
        let weekday = (days + 4).rem_euclid(7) as usize; // 1970-01-01 was a Thursday
        for spec in &self.0 {
            let _ = match spec {
                Spec::Lit(l) => {
                    out.push_str(l);
                    Ok(())
                }
                Spec::Year => write!(out, "{year:04}"),
                Spec::Year2 => write!(out, "{:02}", year.rem_euclid(100)),
                Spec::Month => write!(out, "{month:02}"),
                Spec::Day => write!(out, "{day:02}"),
                Spec::DaySpace => write!(out, "{day:2}"),
                Spec::DayOfYear => write!(out, "{:03}", days - days_from_civil(year, 1, 1) + 1),
                Spec::Hour => write!(out, "{h:02}"),
                Spec::Hour12 => write!(out, "{:02}", if h % 12 == 0 { 12 } else { h % 12 }),
                Spec::Minute => write!(out, "{m:02}"),
                Spec::Second => write!(out, "{s:02}"),
                Spec::SecondFrac(0) => write!(out, "{s:02}"),
                Spec::SecondFrac(d) => {
                    let _ = write!(out, "{s:02}.");
                    frac(out, nanos, *d)
                }
                Spec::Epoch => write!(out, "{secs}"),
                Spec::Frac(d) => frac(out, nanos, *d),
                Spec::Weekday => write!(out, "{}", &DAYS[weekday][..3]),
                Spec::WeekdayLong => write!(out, "{}", DAYS[weekday]),
                Spec::MonthName => write!(out, "{}", &MONTHS[month as usize - 1][..3]),
                Spec::MonthNameLong => write!(out, "{}", MONTHS[month as usize - 1]),
                Spec::AmPm => write!(out, "{}", if h < 12 { "AM" } else { "PM" }),
                Spec::Offset => write!(out, "+0000"),
                Spec::Zone => write!(out, "UTC"),
            };
        }
    }
}

fn flush(lit: &mut String) -> Option<Spec> {
    (!lit.is_empty()).then(|| Spec::Lit(std::mem::take(lit)))
}

/// The first `digits` of the fractional second (truncated, as Envoy does).
fn frac(out: &mut String, nanos: u32, digits: u8) -> std::fmt::Result {
    let digits = u32::from(digits.clamp(1, 9));
    write!(
        out,
        "{:0width$}",
        nanos / 10u32.pow(9 - digits),
        width = digits as usize
    )
}

/// (year, month, day) of a day count since 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Days since 1970-01-01 of a date (Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(secs: u64, nanos: u32) -> SystemTime {
        UNIX_EPOCH + Duration::new(secs, nanos)
    }

    fn render(f: &str, t: SystemTime) -> String {
        let mut out = String::new();
        TimeFormat::parse(f).write(t, &mut out);
        out
    }

    #[test]
    fn renders_as_envoy_does() {
        // Seen from Envoy 1.40 for the same instant (2026-12-04T11:32:56.630Z).
        let t = at(1_796_383_976, 630_123_456);
        assert_eq!(render(DEFAULT, t), "2026-12-04T11:32:56.630Z");
        assert_eq!(
            render("%Y/%m/%dT%H:%M:%S%z %s", t),
            "2026/12/04T11:32:56+0000 1796383976"
        );
        assert_eq!(
            render("%s.%3f %e %j %a %b %T %F %y %Z", t),
            "1796383976.630  4 338 Fri Dec 11:32:56 2026-12-04 26 UTC"
        );
        assert_eq!(render("%f|%6f|%%|%Q", t), "630123456|630123|%|%Q");
        assert_eq!(
            render("%A %B %I%p %D", at(0, 0)),
            "Thursday January 12AM 01/01/70"
        );
    }

    #[test]
    fn calendar_round_trips() {
        for days in [-1, 0, 59, 365, 11_016, 20_791, 2_932_896] {
            let (y, m, d) = civil(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(civil(11_016), (2000, 2, 29));
    }
}
