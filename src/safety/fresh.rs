//! Fresh data only: how old a run's data may be when a step calls its agent.
//!
//! A run may carry the time its data is as of ([`DataAsOf`]). A step with
//! `"maxDataAgeMs": 250` ([`Freshness`]) does not start when `now − asOf > 250 ms` on the
//! engine's clock (exactly 250 ms old is fresh; data dated after `now` is 0 ms old); the
//! age is measured when the step is about to start and again before each retry of its
//! call. Then `"onStale": "SKIP"` (the default) skips the step with the reason
//! `stale data: 412 ms > 250 ms`, and `"FAIL"` fails it with kind `STALE_DATA`, which is
//! neither retried nor healed. A run without a data time is never stale. An input `asOf`
//! that is not an RFC 3339 time makes every such step stale (a check that cannot be made
//! does not pass).

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::definition::OnStale;

/// The time a run's data is as of.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DataAsOf {
    /// Known: this instant.
    At(DateTime<Utc>),
    /// The input's `asOf`, which is not an RFC 3339 time (as written, cut to 64 bytes).
    Unreadable(String),
}

impl DataAsOf {
    /// The data time of a run: `explicit` (the host's, or the starting event's) when
    /// given, else the input's `asOf` when it has one, else none.
    pub fn of_run(explicit: Option<DateTime<Utc>>, input: &Value) -> Option<Self> {
        if let Some(at) = explicit {
            return Some(Self::At(at));
        }
        let written = input.get("asOf")?;
        let parsed = written
            .as_str()
            .and_then(|text| DateTime::parse_from_rfc3339(text).ok());
        Some(match parsed {
            Some(at) => Self::At(at.with_timezone(&Utc)),
            None => {
                let mut text = written.to_string();
                if text.len() > 64 {
                    let mut end = 64;
                    while !text.is_char_boundary(end) {
                        end -= 1;
                    }
                    text.truncate(end);
                    text.push('…');
                }
                Self::Unreadable(text)
            }
        })
    }
}

/// A step's `maxDataAgeMs` and `onStale`, compiled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Freshness {
    max_age: Duration,
    on_stale: OnStale,
}

impl Freshness {
    /// Data at most `max_age` old; `on_stale` says what a step does on older data.
    pub fn new(max_age: Duration, on_stale: OnStale) -> Self {
        Self { max_age, on_stale }
    }

    /// How old the data may be.
    pub fn max_age(&self) -> Duration {
        self.max_age
    }

    /// What the step does on stale data.
    pub fn on_stale(&self) -> OnStale {
        self.on_stale
    }

    /// Whether data as of `as_of` is fresh enough at `now`: `Err` says how stale it is.
    ///
    /// # Errors
    /// [`Stale`] when `now − as_of` exceeds the maximum age, or the data time is
    /// unreadable.
    pub fn check(&self, as_of: &DataAsOf, now: DateTime<Utc>) -> Result<(), Stale> {
        let max_ms = u64::try_from(self.max_age.as_millis()).unwrap_or(u64::MAX);
        match as_of {
            DataAsOf::At(at) => {
                // Data dated in the future is 0 ms old.
                let age = (now - *at).to_std().unwrap_or_default();
                if age > self.max_age {
                    // Reported in whole milliseconds, rounded up: never "250 ms > 250 ms".
                    let age_ms = u64::try_from(age.as_micros().div_ceil(1000)).unwrap_or(u64::MAX);
                    Err(Stale::Age { age_ms, max_ms })
                } else {
                    Ok(())
                }
            }
            DataAsOf::Unreadable(text) => Err(Stale::Unreadable {
                written: text.clone(),
                max_ms,
            }),
        }
    }
}

/// Why data is too old for a step. Prints as the reason a skipped step reports.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Stale {
    /// Older than allowed: `stale data: 412 ms > 250 ms`.
    #[error("stale data: {age_ms} ms > {max_ms} ms")]
    Age {
        /// How old the data is, in milliseconds (rounded up).
        age_ms: u64,
        /// How old it may be.
        max_ms: u64,
    },
    /// The input's `asOf` is not an RFC 3339 time.
    #[error("stale data: input.asOf {written} is not an RFC 3339 time (maxDataAgeMs {max_ms})")]
    Unreadable {
        /// The `asOf` as written (JSON).
        written: String,
        /// How old the data may be.
        max_ms: u64,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;
    use serde_json::json;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    fn fresh(ms: u64) -> Freshness {
        Freshness::new(Duration::from_millis(ms), OnStale::Skip)
    }

    #[test]
    fn data_exactly_as_old_as_allowed_is_fresh_and_a_millisecond_more_is_stale() {
        let as_of = at("2026-01-05T09:00:00Z");
        let data = DataAsOf::At(as_of);
        assert_eq!(
            fresh(250).check(&data, as_of + TimeDelta::milliseconds(250)),
            Ok(())
        );
        let stale = fresh(250)
            .check(&data, as_of + TimeDelta::milliseconds(251))
            .unwrap_err();
        assert_eq!(stale.to_string(), "stale data: 251 ms > 250 ms");
    }

    #[test]
    fn a_fraction_of_a_millisecond_over_reports_the_next_millisecond() {
        let as_of = at("2026-01-05T09:00:00Z");
        let now = as_of + TimeDelta::microseconds(250_001);
        let stale = fresh(250).check(&DataAsOf::At(as_of), now).unwrap_err();
        assert_eq!(stale.to_string(), "stale data: 251 ms > 250 ms");
    }

    #[test]
    fn data_dated_after_now_is_fresh() {
        let now = at("2026-01-05T09:00:00Z");
        let data = DataAsOf::At(now + TimeDelta::seconds(5));
        assert_eq!(fresh(0).check(&data, now), Ok(()));
    }

    #[test]
    fn the_explicit_time_wins_over_the_input_and_the_input_is_read_as_rfc_3339() {
        let explicit = at("2026-01-05T09:00:00Z");
        let input = json!({"asOf": "2026-01-05T10:00:00+01:00"});
        assert_eq!(
            DataAsOf::of_run(Some(explicit), &input),
            Some(DataAsOf::At(explicit))
        );
        assert_eq!(
            DataAsOf::of_run(None, &input),
            Some(DataAsOf::At(at("2026-01-05T09:00:00Z")))
        );
        assert_eq!(DataAsOf::of_run(None, &json!({"symbol": "BTC"})), None);
        assert_eq!(DataAsOf::of_run(None, &json!(null)), None);
    }

    #[test]
    fn an_unreadable_as_of_is_stale_for_every_step_that_checks() {
        let data = DataAsOf::of_run(None, &json!({"asOf": "yesterday"})).unwrap();
        assert_eq!(data, DataAsOf::Unreadable("\"yesterday\"".to_owned()));
        let stale = fresh(250)
            .check(&data, at("2026-01-05T09:00:00Z"))
            .unwrap_err();
        assert_eq!(
            stale.to_string(),
            "stale data: input.asOf \"yesterday\" is not an RFC 3339 time (maxDataAgeMs 250)"
        );
        let long = DataAsOf::of_run(None, &json!({"asOf": "é".repeat(100)})).unwrap();
        let DataAsOf::Unreadable(text) = long else {
            panic!("not unreadable")
        };
        assert!(text.len() <= 64 + '…'.len_utf8());
    }
}
