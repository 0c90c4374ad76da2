//! The values a schedule is made of: its id, its name, its cron expression and the time
//! zone the expression is read in; and the one computation they exist for, the next tick
//! after an instant ([`CronExpr::next_after`]).
//!
//! A cron expression has the standard five fields (minute, hour, day of month, month,
//! day of week), or six with a leading seconds field (`*/10 * * * * *`: every ten
//! seconds), which tests use to tick every second. Parsing is croner's, so its
//! extensions (`L`, `W`, `#`, `@daily`, names of months and weekdays) are accepted too.
//!
//! Daylight saving time, as croner resolves it on the zone's wall clock:
//! - a time the clock skips (02:30 on a spring-forward night) fires a fixed-time
//!   expression at the first instant after the gap (03:00), once; an interval expression
//!   (`*/15 * * * *`) simply has no ticks inside the gap;
//! - a time the clock passes twice (01:30 on a fall-back night) fires a fixed-time
//!   expression once, at the first pass; an interval expression fires on both passes,
//!   since both are real instants fifteen minutes apart from their neighbours.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;
use serde::{Serialize, Serializer};

/// A schedule's id: a UUID, stored as text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct ScheduleId(uuid::Uuid);

impl ScheduleId {
    pub fn new() -> Self {
        Self(uuid::Uuid::new_v4())
    }
}

impl Default for ScheduleId {
    fn default() -> Self {
        Self::new()
    }
}

impl FromStr for ScheduleId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, uuid::Error> {
        uuid::Uuid::parse_str(s).map(Self)
    }
}

impl fmt::Display for ScheduleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.as_hyphenated().fmt(f)
    }
}

/// A schedule's name: what people (and `roster schedule remove`) call it; unique.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct ScheduleName(String);

impl ScheduleName {
    pub const MAX_CHARS: usize = 100;

    /// Trims `raw`; refuses an empty name, a long one, and control characters (a name is
    /// printed in tables and logs).
    pub fn parse(raw: &str) -> Result<Self, String> {
        let name = raw.trim();
        if name.is_empty() {
            return Err("must not be empty".into());
        }
        if name.chars().count() > Self::MAX_CHARS {
            return Err(format!("must be at most {} characters", Self::MAX_CHARS));
        }
        if name.chars().any(char::is_control) {
            return Err("must not contain control characters".into());
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ScheduleName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A cron expression that parses and fires at least once: five fields, or six with a
/// leading seconds field. Keeps the text it was written as.
#[derive(Clone)]
pub struct CronExpr {
    text: String,
    // Shared: a parsed pattern is some 400 bytes, and schedules are cloned into tasks.
    cron: Arc<Cron>,
}

impl CronExpr {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let text = raw.split_whitespace().collect::<Vec<_>>().join(" ");
        let fields = text.split(' ').count();
        // croner would also take a trailing year field; a standard 6-field expression
        // means seconds first, so refuse 7 fields rather than guess.
        if !text.starts_with('@') && !(5..=6).contains(&fields) {
            return Err(format!(
                "must have 5 fields (minute hour day-of-month month day-of-week), \
                 or 6 with a leading seconds field; found {fields}"
            ));
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Disallowed)
            .build()
            .parse(&text)
            .map_err(|e| e.to_string())?;
        let expr = Self {
            text,
            cron: Arc::new(cron),
        };
        // An expression such as `0 0 30 2 *` parses but names no real time.
        if expr.next_after(TimeZone::UTC, Utc::now()).is_none() {
            return Err("never matches a real date and time".into());
        }
        Ok(expr)
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The first tick strictly after `after`, reading the expression on `zone`'s wall
    /// clock; `None` when there is none (not before the year 5000).
    pub fn next_after(&self, zone: TimeZone, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = after.with_timezone(&zone.0);
        // Not inclusive: a tick at `after` itself has fired (or is firing) already.
        self.cron
            .find_next_occurrence(&local, false)
            .ok()
            .map(|next| next.with_timezone(&Utc))
    }
}

impl fmt::Debug for CronExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("CronExpr").field(&self.text).finish()
    }
}

impl fmt::Display for CronExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl PartialEq for CronExpr {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Serialize for CronExpr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

/// An IANA time zone (`Europe/Paris`, `America/Manaus`, `UTC`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeZone(chrono_tz::Tz);

impl TimeZone {
    pub const UTC: TimeZone = TimeZone(chrono_tz::Tz::UTC);

    pub fn parse(raw: &str) -> Result<Self, String> {
        raw.trim()
            .parse::<chrono_tz::Tz>()
            .map(Self)
            .map_err(|_| "is not an IANA time zone (such as UTC or Europe/Paris)".to_owned())
    }

    pub fn name(&self) -> &'static str {
        self.0.name()
    }

    pub fn tz(&self) -> chrono_tz::Tz {
        self.0
    }
}

impl Default for TimeZone {
    fn default() -> Self {
        Self::UTC
    }
}

impl fmt::Display for TimeZone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for TimeZone {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone as _;

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
    }

    fn zone(name: &str) -> TimeZone {
        TimeZone::parse(name).unwrap()
    }

    fn cron(text: &str) -> CronExpr {
        CronExpr::parse(text).unwrap()
    }

    #[test]
    fn five_fields_or_six_with_seconds_first() {
        assert_eq!(cron(" 0  9 * * * ").as_str(), "0 9 * * *");
        let every_second = cron("* * * * * *");
        let at = utc(2026, 1, 1, 12, 0, 0);
        assert_eq!(
            every_second.next_after(TimeZone::UTC, at),
            Some(utc(2026, 1, 1, 12, 0, 1))
        );
        assert!(CronExpr::parse("* * * *").is_err());
        assert!(
            CronExpr::parse("0 0 0 1 1 * 2030").is_err(),
            "no year field"
        );
        assert!(CronExpr::parse("").is_err());
        let reason = CronExpr::parse("61 * * * *").unwrap_err();
        assert!(!reason.is_empty());
        assert!(CronExpr::parse("0 0 30 2 *").is_err(), "30 February");
    }

    #[test]
    fn the_next_tick_is_strictly_after_the_instant_and_on_a_whole_second() {
        let hourly = cron("0 * * * *");
        let on_the_tick = utc(2026, 5, 1, 10, 0, 0);
        assert_eq!(
            hourly.next_after(TimeZone::UTC, on_the_tick),
            Some(utc(2026, 5, 1, 11, 0, 0))
        );
        let just_after = on_the_tick + chrono::Duration::milliseconds(300);
        assert_eq!(
            cron("* * * * * *").next_after(TimeZone::UTC, just_after),
            Some(utc(2026, 5, 1, 10, 0, 1))
        );
    }

    #[test]
    fn the_expression_is_read_on_the_zones_wall_clock() {
        // Manaus is UTC-4 all year.
        let nine = cron("0 9 * * *");
        assert_eq!(
            nine.next_after(zone("America/Manaus"), utc(2026, 7, 1, 12, 0, 0)),
            Some(utc(2026, 7, 1, 13, 0, 0))
        );
        assert_eq!(
            nine.next_after(zone("America/Manaus"), utc(2026, 7, 1, 13, 0, 0)),
            Some(utc(2026, 7, 2, 13, 0, 0))
        );
        // Paris: UTC+1 in winter, UTC+2 in summer.
        let paris = zone("Europe/Paris");
        assert_eq!(
            nine.next_after(paris, utc(2026, 1, 10, 0, 0, 0)),
            Some(utc(2026, 1, 10, 8, 0, 0))
        );
        assert_eq!(
            nine.next_after(paris, utc(2026, 7, 10, 0, 0, 0)),
            Some(utc(2026, 7, 10, 7, 0, 0))
        );
    }

    #[test]
    fn a_time_the_clock_skips_fires_once_just_after_the_gap() {
        // New York, 8 March 2026: 02:00 EST becomes 03:00 EDT (07:00 UTC).
        let ny = zone("America/New_York");
        let half_past_two = cron("30 2 * * *");
        let before = utc(2026, 3, 8, 5, 0, 0); // 00:00 EST
        let fired = half_past_two.next_after(ny, before).unwrap();
        assert_eq!(fired, utc(2026, 3, 8, 7, 0, 0), "03:00 EDT");
        // And not again that day: the next is 02:30 EDT on the 9th.
        assert_eq!(
            half_past_two.next_after(ny, fired),
            Some(utc(2026, 3, 9, 6, 30, 0))
        );
        // An interval expression has no ticks in the gap.
        let quarterly = cron("*/15 * * * *");
        assert_eq!(
            quarterly.next_after(ny, utc(2026, 3, 8, 6, 45, 0)), // 01:45 EST
            Some(utc(2026, 3, 8, 7, 0, 0))                       // 03:00 EDT
        );
    }

    #[test]
    fn a_time_the_clock_passes_twice_fires_a_fixed_expression_once() {
        // New York, 1 November 2026: 02:00 EDT becomes 01:00 EST; 01:30 happens at 05:30
        // and again at 06:30 UTC.
        let ny = zone("America/New_York");
        let half_past_one = cron("30 1 * * *");
        let first = half_past_one
            .next_after(ny, utc(2026, 11, 1, 4, 0, 0))
            .unwrap();
        assert_eq!(first, utc(2026, 11, 1, 5, 30, 0), "the first pass");
        assert_eq!(
            half_past_one.next_after(ny, first),
            Some(utc(2026, 11, 2, 6, 30, 0)),
            "not the second pass, the next day"
        );
        // An interval expression fires on both passes.
        let half_hourly = cron("*/30 * * * *");
        let ticks: Vec<_> = std::iter::successors(Some(utc(2026, 11, 1, 5, 0, 0)), |t| {
            half_hourly.next_after(ny, *t)
        })
        .take(5)
        .collect();
        assert_eq!(
            ticks,
            vec![
                utc(2026, 11, 1, 5, 0, 0),  // 01:00 EDT
                utc(2026, 11, 1, 5, 30, 0), // 01:30 EDT
                utc(2026, 11, 1, 6, 0, 0),  // 01:00 EST
                utc(2026, 11, 1, 6, 30, 0), // 01:30 EST
                utc(2026, 11, 1, 7, 0, 0),  // 02:00 EST
            ]
        );
    }

    #[test]
    fn zones_are_iana_names() {
        assert_eq!(zone("America/Manaus").name(), "America/Manaus");
        assert_eq!(zone("UTC"), TimeZone::UTC);
        assert!(TimeZone::parse("Mars/Olympus_Mons").is_err());
        assert!(TimeZone::parse("").is_err());
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(
            ScheduleName::parse("  nightly ").unwrap().as_str(),
            "nightly"
        );
        assert!(ScheduleName::parse("   ").is_err());
        assert!(ScheduleName::parse(&"x".repeat(101)).is_err());
        assert!(ScheduleName::parse("a\nb").is_err());
    }
}
