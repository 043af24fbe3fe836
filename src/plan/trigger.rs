//! Compiled triggers: cron schedules parsed, conditions compiled.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

use crate::definition::TriggerType;
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

/// Why a schedule is not usable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum ScheduleProblem {
    Cron(String),
    Timezone,
}

impl Schedule {
    /// Parses a 5-field cron pattern (minute hour day-of-month month day-of-week, POSIX
    /// weekdays: `1-5` is Monday to Friday) in an optional IANA time zone.
    pub(super) fn parse(pattern: &str, timezone: Option<&str>) -> Result<Self, ScheduleProblem> {
        let fields = pattern.split_whitespace().count();
        if fields != 5 {
            return Err(ScheduleProblem::Cron(format!(
                "expected 5 fields (minute hour day-of-month month day-of-week), found {fields}"
            )));
        }
        let timezone = timezone
            .map(|name| Tz::from_str(name).map_err(|_| ScheduleProblem::Timezone))
            .transpose()?;
        let parser = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .build();
        let cron = parser
            .parse(pattern)
            .map_err(|error| ScheduleProblem::Cron(error.to_string()))?;
        let schedule = Self {
            pattern: pattern.to_owned(),
            cron,
            timezone,
        };
        // A pattern such as `0 0 30 2 *` parses but never fires.
        let reference = Utc
            .with_ymd_and_hms(2000, 1, 1, 0, 0, 0)
            .single()
            .unwrap_or_default();
        if schedule.next_after(reference).is_none() {
            return Err(ScheduleProblem::Cron(
                "the pattern never matches a date".to_owned(),
            ));
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
    /// # Complexity
    /// About half a microsecond for ordinary patterns (croner's search).
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self.timezone {
            Some(tz) => self
                .cron
                .find_next_occurrence(&after.with_timezone(&tz), false)
                .ok()
                .map(|next| next.with_timezone(&Utc)),
            None => self.cron.find_next_occurrence(&after, false).ok(),
        }
    }
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
    fn bad_patterns() {
        assert!(matches!(
            Schedule::parse("0 9 * *", None),
            Err(ScheduleProblem::Cron(_))
        ));
        assert!(matches!(
            Schedule::parse("0 0 9 * * 1-5", None),
            Err(ScheduleProblem::Cron(_))
        ));
        assert!(matches!(
            Schedule::parse("0 25 * * *", None),
            Err(ScheduleProblem::Cron(_))
        ));
        assert!(matches!(
            Schedule::parse("0 0 30 2 *", None),
            Err(ScheduleProblem::Cron(_))
        ));
        assert_eq!(
            Schedule::parse("0 9 * * *", Some("Mars/Olympus")).unwrap_err(),
            ScheduleProblem::Timezone
        );
    }
}
