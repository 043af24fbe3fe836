//! Compiled triggers: cron schedules parsed, conditions compiled.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, LocalResult, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds, Year};
use croner::time::days_in_month;
use croner::{Cron, CronPattern, Weekday};

use crate::definition::{Quoted, TriggerType};
use crate::expr::Condition;

/// A compiled trigger.
#[derive(Debug, Clone)]
pub struct Trigger {
    pub(super) index: usize,
    pub(super) kind: TriggerKind,
    pub(super) condition: Option<Condition>,
}

impl Trigger {
    /// Index in the definition's `triggers`.
    pub fn index(&self) -> usize {
        self.index
    }

    /// What fires it.
    pub fn kind(&self) -> &TriggerKind {
        &self.kind
    }

    /// Must hold, against the host context, for the trigger to fire.
    pub fn condition(&self) -> Option<&Condition> {
        self.condition.as_ref()
    }

    /// The trigger type as written.
    pub fn trigger_type(&self) -> TriggerType {
        match self.kind {
            TriggerKind::Scheduled(_) => TriggerType::Scheduled,
            TriggerKind::Event { .. } => TriggerType::Event,
            TriggerKind::Threshold { .. } => TriggerType::Threshold,
        }
    }
}

/// What fires a trigger.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum TriggerKind {
    /// A cron schedule.
    Scheduled(Box<Schedule>),
    /// A host event of this type.
    Event {
        /// The event type.
        event_type: String,
    },
    /// A metric crossing a threshold upward.
    Threshold {
        /// The metric name.
        metric: String,
        /// The value to cross.
        threshold: f64,
        /// Minimum time between firings.
        cooldown: Option<Duration>,
    },
}

/// A 5-field cron pattern in a time zone (UTC unless given), parsed once.
#[derive(Clone)]
pub struct Schedule {
    pattern: String,
    cron: Cron,
    timezone: Option<Tz>,
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Schedule")
            .field("pattern", &self.pattern)
            .field("timezone", &self.timezone.map(|tz| tz.name()))
            .finish()
    }
}

/// Why a cron schedule is not usable. Messages show the pattern, name and reason
/// through [`Quoted`]: one line of bounded length.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CronError {
    /// The pattern does not parse, or never matches a date.
    #[error("invalid cron pattern `{}`: {}", Quoted(.pattern), Quoted(.reason))]
    Pattern {
        /// The pattern as given.
        pattern: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The time zone is not an IANA name.
    #[error(
        "unknown time zone `{}` (an IANA name such as America/New_York)",
        Quoted(.name)
    )]
    Timezone {
        /// The name as given.
        name: String,
    },
}

impl Schedule {
    /// Parses a 5-field cron pattern (minute hour day-of-month month day-of-week, POSIX
    /// weekdays: `1-5` is Monday to Friday) in an optional IANA time zone, as a
    /// `SCHEDULED` trigger does (and a task scheduler's cron policy can).
    ///
    /// ```
    /// # use tradeflow::plan::Schedule;
    /// let schedule = Schedule::parse("0 9 * * 1-5", Some("America/New_York"))?;
    /// let next = schedule.next_after("2026-11-27T15:00:00Z".parse()?); // a Friday, 10:00 EST
    /// assert_eq!(next, Some("2026-11-30T14:00:00Z".parse()?)); // Monday 9:00 EST
    /// assert!(Schedule::parse("0 9 * *", None).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`CronError::Pattern`] for a pattern that does not have 5 fields, does not parse
    /// or never matches a date; [`CronError::Timezone`] for an unknown time zone.
    pub fn parse(pattern: &str, timezone: Option<&str>) -> Result<Self, CronError> {
        let invalid = |reason: String| CronError::Pattern {
            pattern: pattern.to_owned(),
            reason,
        };
        let fields = pattern.split_whitespace().count();
        if fields != 5 {
            return Err(invalid(format!(
                "expected 5 fields (minute hour day-of-month month day-of-week), found {fields}"
            )));
        }
        let timezone = timezone
            .map(|name| {
                Tz::from_str(name).map_err(|_| CronError::Timezone {
                    name: name.to_owned(),
                })
            })
            .transpose()?;
        let parser = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .build();
        let cron = parser
            .parse(pattern)
            .map_err(|error| invalid(error.to_string()))?;
        // A pattern such as `0 0 30 2 *` parses but never fires. croner's search takes
        // milliseconds to give up on one; reasoning on the fields takes microseconds.
        if fires_on_no_day(&cron.pattern) == Some(true) {
            return Err(invalid("the pattern never matches a date".to_owned()));
        }
        let schedule = Self {
            pattern: pattern.to_owned(),
            cron,
            timezone,
        };
        // A pattern that matches some day fires within about 40 years of any instant
        // (the calendar's month shapes recur within that), so this search is short; it
        // stays as the check of last resort.
        let reference = Utc
            .with_ymd_and_hms(2000, 1, 1, 0, 0, 0)
            .single()
            .unwrap_or_default();
        if schedule.next_after(reference).is_none() {
            return Err(invalid("the pattern never matches a date".to_owned()));
        }
        Ok(schedule)
    }

    /// The pattern as written.
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// The IANA time zone name (`UTC` when none was given).
    pub fn timezone(&self) -> &str {
        self.timezone.map_or("UTC", |tz| tz.name())
    }

    /// The first firing strictly after `after`, if any.
    ///
    /// In a time zone the pattern matches wall-clock (local) times, and each matching
    /// local time fires once: a time the clocks skip (02:30 on the day they go forward)
    /// fires at the end of the gap (03:00 local; several skipped times fire there once),
    /// and a time the clocks repeat (01:30 on the day they go back) fires at its first
    /// occurrence only. (croner's own zone handling differs from pattern to pattern:
    /// `30 2 * * *` fires at 03:00 but `0,30 2 * * *` not at all, `30 1 * * *` once but
    /// `0,30 1 * * *` twice; so matching is done here on local times, in UTC where
    /// croner has no daylight saving, and each match is mapped to an instant.)
    ///
    /// # Complexity
    /// About half a microsecond for ordinary patterns (croner's search); around a
    /// daylight-saving change, one search per skipped or repeated match.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let Some(tz) = self.timezone else {
            return self.cron.find_next_occurrence(&after, false).ok();
        };
        let mut local = after.with_timezone(&tz).naive_local();
        // Each round passes one local match that is not after `after`: at most the
        // matches of one repeated or skipped stretch (an hour of minutes, usually).
        for _ in 0..MAX_LOCAL_MATCHES_SKIPPED {
            let next = self
                .cron
                .find_next_occurrence(&Utc.from_utc_datetime(&local), false)
                .ok()?
                .naive_utc();
            let instant = match tz.from_local_datetime(&next) {
                LocalResult::Single(instant) | LocalResult::Ambiguous(instant, _) => {
                    instant.with_timezone(&Utc)
                }
                LocalResult::None => gap_end(tz, next)?,
            };
            if instant > after {
                return Some(instant);
            }
            local = next;
        }
        None
    }
}

/// Whether `pattern` matches no day at all (`0 0 30 2 *`, `0 0 31 4,6,9,11 *`), or no
/// time of day; `None` if croner cannot say (it never fails on a parsed pattern).
///
/// Whether a day matches depends only on its month's number, its length, the weekday it
/// starts on and the day's number (`L`, `W` and `#` included), and every month starts on
/// every weekday in some year, in common and leap years alike. So the 12 months × 7
/// first weekdays (February in both lengths) stand for the whole calendar: at most
/// 2,821 checks of a day, microseconds, where croner's search for a first firing runs
/// to its limit (milliseconds) on such a pattern.
fn fires_on_no_day(pattern: &CronPattern) -> Option<bool> {
    let some_time = (0..24).try_fold(false, |found, hour| {
        Some(found || pattern.hour_match(hour).ok()?)
    })? && (0..60).try_fold(false, |found, minute| {
        Some(found || pattern.minute_match(minute).ok()?)
    })?;
    if !some_time {
        return Some(true);
    }
    for month in 1..=12 {
        if !pattern.month_match(month).ok()? {
            continue;
        }
        // A common and a leap year: February's two lengths.
        let years: &[i32] = if month == 2 { &[2001, 2004] } else { &[2001] };
        for &year in years {
            for first in 0..7 {
                for day in 1..=days_in_month(year, month) {
                    let weekday = Weekday::from_days_from_sunday(first + day - 1);
                    if pattern.day_match(year, month, day, weekday).ok()? {
                        return Some(false);
                    }
                }
            }
        }
    }
    Some(true)
}

/// Bound on the local matches [`Schedule::next_after`] passes over in one call (those
/// mapped to an instant not after the one asked about: a repeated hour's second pass, a
/// skipped hour's merged times). A day of minutes, far more than a change needs.
const MAX_LOCAL_MATCHES_SKIPPED: usize = 1440;

/// The instant a daylight-saving gap ends, for `local`, a time inside it: the first
/// instant whose local time is not before `local` (03:00 local for 02:30 in New York on
/// the day clocks go forward).
fn gap_end(tz: Tz, local: NaiveDateTime) -> Option<DateTime<Utc>> {
    // Offsets, even historical ones, lie well within ±26 h, so `local` read as UTC ± 26 h
    // brackets the instant; local time increases with the instant across a gap, so
    // bisect on whole seconds (18 rounds), where zone transitions fall. Invariant:
    // local(before) < local <= local(after).
    const BRACKET: i64 = 26 * 3600;
    let at = |seconds: i64| DateTime::<Utc>::from_timestamp(seconds, 0);
    let local_at = |instant: DateTime<Utc>| instant.with_timezone(&tz).naive_local();
    let seconds = Utc.from_utc_datetime(&local).timestamp();
    let (mut before, mut after) = (seconds - BRACKET, seconds + BRACKET);
    while after - before > 1 {
        let middle = before + (after - before) / 2;
        if local_at(at(middle)?) < local {
            before = middle;
        } else {
            after = middle;
        }
    }
    at(after)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn weekday_mornings_in_utc() {
        let schedule = Schedule::parse("0 9 * * 1-5", None).unwrap();
        let mut next = at("2026-11-25T10:00:00Z");
        let mut fired = Vec::new();
        for _ in 0..3 {
            next = schedule.next_after(next).unwrap();
            fired.push(next.to_rfc3339());
        }
        assert_eq!(
            fired,
            [
                "2026-11-26T09:00:00+00:00",
                "2026-11-27T09:00:00+00:00",
                "2026-11-30T09:00:00+00:00"
            ]
        );
    }

    #[test]
    fn time_zones_apply() {
        let schedule = Schedule::parse("0 9 * * 1-5", Some("America/New_York")).unwrap();
        assert_eq!(
            schedule.next_after(at("2026-11-25T10:00:00Z")).unwrap(),
            at("2026-11-25T14:00:00Z")
        );
        assert_eq!(schedule.timezone(), "America/New_York");
    }

    #[test]
    fn rare_days_are_found_by_the_calendar_check() {
        // February 29th, the fifth Monday of February (leap years starting on a Monday),
        // the last weekday of the month, the nearest weekday to the 31st.
        for (pattern, first) in [
            ("0 0 29 2 *", "2000-02-29T00:00:00Z"),
            ("0 0 * 2 1#5", "2016-02-29T00:00:00Z"),
            ("0 0 LW 2 *", "2000-02-29T00:00:00Z"),
            ("0 0 31W * *", "2000-01-31T00:00:00Z"),
            ("0 0 30 2 1", "2000-02-07T00:00:00Z"),
        ] {
            let schedule = Schedule::parse(pattern, None).unwrap();
            assert!(
                fires_on_no_day(&schedule.cron.pattern) == Some(false),
                "{pattern}"
            );
            assert_eq!(
                schedule.next_after(at("2000-01-01T00:00:00Z")),
                Some(at(first)),
                "{pattern}"
            );
        }
    }

    #[test]
    fn the_calendar_check_agrees_with_crons_search() {
        let reference = at("2000-01-01T00:00:00Z");
        let parser = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .build();
        let mut never = 0;
        for dom in ["*", "1", "29", "30", "31", "L", "LW", "30W", "31W", "?"] {
            for month in ["*", "2", "4,6", "2,4"] {
                for dow in ["*", "1", "5#5", "0L", "?"] {
                    let pattern = format!("0 0 {dom} {month} {dow}");
                    let cron = parser.parse(&pattern).unwrap();
                    let searched = cron.find_next_occurrence(&reference, false).is_err();
                    assert_eq!(fires_on_no_day(&cron.pattern), Some(searched), "{pattern}");
                    never += usize::from(searched);
                }
            }
        }
        assert!(never > 0);
    }

    #[test]
    fn bad_patterns() {
        assert!(matches!(
            Schedule::parse("0 9 * *", None),
            Err(CronError::Pattern { .. })
        ));
        assert!(matches!(
            Schedule::parse("0 0 9 * * 1-5", None),
            Err(CronError::Pattern { .. })
        ));
        assert!(matches!(
            Schedule::parse("0 25 * * *", None),
            Err(CronError::Pattern { .. })
        ));
        assert!(matches!(
            Schedule::parse("0 0 30 2 *", None),
            Err(CronError::Pattern { .. })
        ));
        for never in [
            "0 0 31 2 *",
            "0 0 30,31 2 *",
            "0 0 31 4,6,9,11 *",
            "0 0 31W 2 *",
            "0 0 30 2 ?",
        ] {
            assert_eq!(
                Schedule::parse(never, None).unwrap_err(),
                CronError::Pattern {
                    pattern: never.to_owned(),
                    reason: "the pattern never matches a date".to_owned()
                },
                "{never}"
            );
        }
        assert_eq!(
            Schedule::parse("0 9 * * *", Some("Mars/Olympus")).unwrap_err(),
            CronError::Timezone {
                name: "Mars/Olympus".to_owned()
            }
        );
    }
}
