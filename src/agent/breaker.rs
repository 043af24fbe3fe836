//! Circuit breakers: an agent that keeps failing is not called for a while, then one
//! probe call decides whether it is back.
//!
//! The state machine is [`Breaker`], pure and driven with explicit instants; the
//! registry keeps one per agent (under the agent's stats lock) and gives it the time of
//! its clock. See the [module documentation](super#circuit-breakers) for the contract.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::score::Outcome;
use crate::clock::add_saturating;
use crate::plan::MAX_DURATION_MS;

/// When an agent's circuit breaker opens, and for how long: after `failures` consecutive
/// failed calls (of any kind; a success resets the count) the agent is not selected for
/// `open_for`, then one probe call decides (see [Circuit breakers](super#circuit-breakers)).
///
/// Written in an agents file as `"circuitBreaker": {"failures": 3, "openMs": 10000}`
/// (either field may be left out for its default).
///
/// ```
/// # use std::time::Duration;
/// # use tradeflow::agent::CircuitBreaker;
/// let breaker = CircuitBreaker::new(3, Duration::from_secs(10));
/// assert_eq!(breaker.failures, 3);
/// assert_eq!(CircuitBreaker::default(), CircuitBreaker::DEFAULT);
/// let parsed: CircuitBreaker = serde_json::from_str(r#"{"failures": 3, "openMs": 10000}"#)?;
/// assert_eq!(parsed, breaker);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[non_exhaustive]
pub struct CircuitBreaker {
    /// Consecutive failed calls that open the breaker; at least 1. Default 5.
    #[serde(default = "default_failures")]
    pub failures: u32,
    /// How long the breaker stays open before it lets one probe call through; at most
    /// [`MAX_DURATION_MS`](crate::plan::MAX_DURATION_MS). Default 30 s. `openMs` in
    /// an agents file.
    #[serde(
        rename = "openMs",
        default = "default_open_for",
        serialize_with = "millis",
        deserialize_with = "from_millis"
    )]
    pub open_for: Duration,
}

fn default_failures() -> u32 {
    CircuitBreaker::DEFAULT.failures
}

fn default_open_for() -> Duration {
    CircuitBreaker::DEFAULT.open_for
}

fn millis<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    u64::try_from(duration.as_millis())
        .unwrap_or(u64::MAX)
        .serialize(serializer)
}

fn from_millis<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    u64::deserialize(deserializer).map(Duration::from_millis)
}

/// The longest `open_for`, [`MAX_DURATION_MS`].
const MAX_OPEN_FOR: Duration = Duration::from_millis(MAX_DURATION_MS);

impl CircuitBreaker {
    /// 5 consecutive failures open the breaker for 30 seconds.
    pub const DEFAULT: Self = Self {
        failures: 5,
        open_for: Duration::from_secs(30),
    };

    /// A breaker that opens after `failures` consecutive failed calls, for `open_for`.
    /// `failures` below 1 is taken as 1, `open_for` above
    /// [`MAX_DURATION_MS`](crate::plan::MAX_DURATION_MS) as that.
    pub fn new(failures: u32, open_for: Duration) -> Self {
        Self {
            failures: failures.max(1),
            open_for: open_for.min(MAX_OPEN_FOR),
        }
    }

    /// Why the settings are out of range, if they are (a breaker read from JSON, or
    /// whose fields were set one by one).
    pub(crate) fn problem(&self) -> Option<&'static str> {
        if self.failures == 0 {
            Some("circuitBreaker.failures must be at least 1")
        } else if self.open_for > MAX_OPEN_FOR {
            Some("circuitBreaker.openMs must be at most 3155760000000 (100 years)")
        } else {
            None
        }
    }

    /// The failures that open it, at least 1 whatever the field says.
    fn threshold(&self) -> u32 {
        self.failures.max(1)
    }

    /// The instant a breaker opened at `now` lets its probe through.
    fn until(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        add_saturating(now, self.open_for.min(MAX_OPEN_FOR))
    }
}

impl Default for CircuitBreaker {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// An agent's circuit breaker as it stands, from
/// [`AgentRegistry::circuit`](super::AgentRegistry::circuit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CircuitState {
    /// The agent has no breaker (switched off): it is never kept from calls.
    Off,
    /// Calls go to the agent as usual.
    Closed {
        /// Consecutive failed calls so far (the breaker opens when they reach its
        /// `failures`).
        failures: u32,
    },
    /// The agent is not selected until `until`.
    Open {
        /// Consecutive failed calls, counted across the open periods.
        failures: u32,
        /// When it turns half open and lets one probe call through.
        until: DateTime<Utc>,
    },
    /// The open period passed: the next call is let through as the probe, whose outcome
    /// closes the breaker or opens it again.
    HalfOpen {
        /// Whether the probe call is in flight (then no other call is let through).
        probing: bool,
    },
}

/// A change of a breaker that a recorded outcome made, from
/// [`AgentRegistry::record`](super::AgentRegistry::record).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CircuitChange {
    /// The breaker opened: after `failures` consecutive failed calls, or again after a
    /// failed probe. The agent is not selected until `until`.
    Opened {
        /// Consecutive failed calls, counted across the open periods.
        failures: u32,
        /// When it turns half open.
        until: DateTime<Utc>,
    },
    /// A success once the breaker was half open (the probe's, as a rule) closed it.
    Closed,
}

/// Whether a breaker lets a call through now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Closed (or off): calls go through.
    Closed,
    /// Half open with no probe in flight: one call may go through, as the probe.
    Probe,
    /// Open, until `half_open_at` (none: a probe is in flight, and its outcome decides).
    Refused {
        /// When the open period ends.
        half_open_at: Option<DateTime<Utc>>,
    },
}

impl Admission {
    /// Whether the breaker keeps calls from the agent now.
    pub(crate) fn is_refused(self) -> bool {
        matches!(self, Self::Refused { .. })
    }

    /// When an open breaker turns half open.
    pub(crate) fn half_open_at(self) -> Option<DateTime<Utc>> {
        match self {
            Self::Refused { half_open_at } => half_open_at,
            Self::Closed | Self::Probe => None,
        }
    }
}

/// One agent's breaker: its settings (none: off) and its state.
pub(crate) struct Breaker {
    policy: Option<CircuitBreaker>,
    state: State,
    /// Probes let through so far: numbers them, so that a probe abandoned late cannot
    /// touch a later one.
    probes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed {
        failures: u32,
    },
    /// Open until `until`; half open once it has passed.
    Open {
        failures: u32,
        until: DateTime<Utc>,
    },
    /// Half open, its probe abandoned before it had an outcome: the next call probes.
    HalfOpen {
        failures: u32,
    },
    /// Half open, probe `probe` in flight.
    Probing {
        failures: u32,
        probe: u64,
    },
}

impl fmt::Debug for Breaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Breaker")
            .field("policy", &self.policy)
            .field("state", &self.state)
            .finish()
    }
}

impl Breaker {
    /// A closed breaker with these settings (none: off).
    pub(crate) fn new(policy: Option<CircuitBreaker>) -> Self {
        Self {
            policy,
            state: State::Closed { failures: 0 },
            probes: 0,
        }
    }

    /// The state at `now`.
    pub(crate) fn state(&self, now: DateTime<Utc>) -> CircuitState {
        if self.policy.is_none() {
            return CircuitState::Off;
        }
        match self.state {
            State::Closed { failures } => CircuitState::Closed { failures },
            State::Open { failures, until } if now < until => {
                CircuitState::Open { failures, until }
            }
            State::Open { .. } | State::HalfOpen { .. } => {
                CircuitState::HalfOpen { probing: false }
            }
            State::Probing { .. } => CircuitState::HalfOpen { probing: true },
        }
    }

    /// Whether a call may go through at the time `now` gives (asked only when the
    /// breaker is open: a closed one needs no time).
    pub(crate) fn admission(&self, now: impl FnOnce() -> DateTime<Utc>) -> Admission {
        match self.state {
            State::Closed { .. } => Admission::Closed,
            State::Open { until, .. } if now() < until => Admission::Refused {
                half_open_at: Some(until),
            },
            State::Open { .. } | State::HalfOpen { .. } => Admission::Probe,
            State::Probing { .. } => Admission::Refused { half_open_at: None },
        }
    }

    /// Whether the breaker is open or probing, whatever the time: a freed slot on the
    /// agent is not worth waking a waiting caller for (one waiting for the open period
    /// to pass has a timer of its own).
    pub(crate) fn is_blocking(&self) -> bool {
        matches!(self.state, State::Open { .. } | State::Probing { .. })
    }

    /// Lets the probe through (after [`admission`](Self::admission) said
    /// [`Admission::Probe`] and a slot was reserved): returns its number.
    pub(crate) fn start_probe(&mut self) -> u64 {
        let failures = self.failures();
        self.probes = self.probes.wrapping_add(1);
        self.state = State::Probing {
            failures,
            probe: self.probes,
        };
        self.probes
    }

    /// Probe `probe` ended without an outcome (its call was dropped): the breaker is
    /// half open again, and the next call probes. Returns whether anything changed.
    pub(crate) fn abandon(&mut self, probe: u64) -> bool {
        match self.state {
            State::Probing {
                failures,
                probe: current,
            } if current == probe => {
                self.state = State::HalfOpen { failures };
                true
            }
            _ => false,
        }
    }

    /// Counts a call's outcome at `now`. Every failure counts, whatever its kind (an
    /// error the agent returned, a call cut off by its timeout); a call the engine
    /// cancelled has no outcome and is never recorded.
    ///
    /// - Closed: a success resets the count; a failure adds one, and the breaker opens
    ///   when the count reaches the threshold.
    /// - Open (before `until`): ignored; these are calls that began before it opened.
    /// - Half open (probing or not): the first outcome decides: a success closes the
    ///   breaker, a failure opens it again for `open_for`.
    pub(crate) fn record(
        &mut self,
        outcome: &Outcome,
        now: DateTime<Utc>,
    ) -> Option<CircuitChange> {
        let policy = self.policy?;
        let success = matches!(outcome, Outcome::Success { .. });
        match self.state {
            State::Closed { failures } => {
                if success {
                    self.state = State::Closed { failures: 0 };
                    return None;
                }
                let failures = failures.saturating_add(1);
                if failures >= policy.threshold() {
                    return Some(self.open(failures, policy, now));
                }
                self.state = State::Closed { failures };
                None
            }
            State::Open { until, .. } if now < until => None,
            State::Open { failures, .. }
            | State::HalfOpen { failures }
            | State::Probing { failures, .. } => {
                if success {
                    self.state = State::Closed { failures: 0 };
                    Some(CircuitChange::Closed)
                } else {
                    Some(self.open(failures.saturating_add(1), policy, now))
                }
            }
        }
    }

    fn open(&mut self, failures: u32, policy: CircuitBreaker, now: DateTime<Utc>) -> CircuitChange {
        let until = policy.until(now);
        self.state = State::Open { failures, until };
        CircuitChange::Opened { failures, until }
    }

    fn failures(&self) -> u32 {
        match self.state {
            State::Closed { failures }
            | State::Open { failures, .. }
            | State::HalfOpen { failures }
            | State::Probing { failures, .. } => failures,
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::agent::AgentErrorKind;

    fn t(ms: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 5, 9, 0, 0).unwrap() + chrono::Duration::milliseconds(ms)
    }

    fn failure(kind: AgentErrorKind) -> Outcome {
        Outcome::Failure {
            kind,
            latency: Duration::ZERO,
        }
    }

    fn temporary() -> Outcome {
        failure(AgentErrorKind::Temporary)
    }

    fn success() -> Outcome {
        Outcome::Success {
            latency: Duration::ZERO,
        }
    }

    /// 3 failures, open 10 s.
    fn breaker() -> Breaker {
        Breaker::new(Some(CircuitBreaker::new(3, Duration::from_secs(10))))
    }

    #[test]
    fn it_opens_after_the_threshold_of_consecutive_failures() {
        let mut b = breaker();
        assert_eq!(b.record(&temporary(), t(0)), None);
        assert_eq!(b.record(&temporary(), t(1)), None);
        assert_eq!(b.state(t(1)), CircuitState::Closed { failures: 2 });
        assert_eq!(b.admission(|| t(1)), Admission::Closed);
        let opened = b.record(&failure(AgentErrorKind::Timeout), t(2));
        assert_eq!(
            opened,
            Some(CircuitChange::Opened {
                failures: 3,
                until: t(10_002)
            })
        );
        assert_eq!(
            b.state(t(2)),
            CircuitState::Open {
                failures: 3,
                until: t(10_002)
            }
        );
        assert_eq!(
            b.admission(|| t(10_001)),
            Admission::Refused {
                half_open_at: Some(t(10_002))
            }
        );
        assert!(b.is_blocking());
    }

    #[test]
    fn a_success_resets_the_count_and_every_kind_of_failure_counts() {
        let mut b = breaker();
        b.record(&temporary(), t(0));
        b.record(&temporary(), t(1));
        assert_eq!(b.record(&success(), t(2)), None);
        assert_eq!(b.state(t(2)), CircuitState::Closed { failures: 0 });
        b.record(&failure(AgentErrorKind::Permanent), t(3));
        b.record(&failure(AgentErrorKind::AgentUnavailable), t(4));
        assert_eq!(b.state(t(4)), CircuitState::Closed { failures: 2 });
        assert!(!b.is_blocking());
        assert!(b.record(&temporary(), t(5)).is_some());
    }

    #[test]
    fn it_turns_half_open_after_the_open_period_and_a_probe_success_closes_it() {
        let mut b = breaker();
        for n in 0..3 {
            b.record(&temporary(), t(n));
        }
        // Outcomes of calls that began before it opened are ignored while it is open.
        assert_eq!(b.record(&success(), t(5_000)), None);
        assert_eq!(
            b.state(t(10_001)),
            CircuitState::Open {
                failures: 3,
                until: t(10_002)
            }
        );
        assert_eq!(
            b.state(t(10_002)),
            CircuitState::HalfOpen { probing: false }
        );
        assert_eq!(b.admission(|| t(10_002)), Admission::Probe);
        b.start_probe();
        assert_eq!(b.state(t(10_002)), CircuitState::HalfOpen { probing: true });
        // Only one probe at a time, however long it takes.
        assert_eq!(
            b.admission(|| t(99_999)),
            Admission::Refused { half_open_at: None }
        );
        assert!(b.is_blocking());
        assert_eq!(b.record(&success(), t(10_050)), Some(CircuitChange::Closed));
        assert_eq!(b.state(t(10_050)), CircuitState::Closed { failures: 0 });
        assert_eq!(b.admission(|| t(10_050)), Admission::Closed);
        assert!(!b.is_blocking());
        // Closed again: it takes the full threshold to open it once more.
        assert_eq!(b.record(&temporary(), t(10_060)), None);
        assert_eq!(b.record(&temporary(), t(10_070)), None);
        assert!(b.record(&temporary(), t(10_080)).is_some());
    }

    #[test]
    fn a_failed_probe_opens_it_again_for_another_period() {
        let mut b = breaker();
        for n in 0..3 {
            b.record(&temporary(), t(n));
        }
        b.start_probe();
        let again = b.record(&failure(AgentErrorKind::Permanent), t(10_500));
        assert_eq!(
            again,
            Some(CircuitChange::Opened {
                failures: 4,
                until: t(20_500)
            })
        );
        assert_eq!(
            b.admission(|| t(20_499)),
            Admission::Refused {
                half_open_at: Some(t(20_500))
            }
        );
        assert_eq!(b.admission(|| t(20_500)), Admission::Probe);
    }

    #[test]
    fn an_abandoned_probe_lets_the_next_call_probe() {
        let mut b = breaker();
        for n in 0..3 {
            b.record(&temporary(), t(n));
        }
        let first = b.start_probe();
        assert!(b.abandon(first));
        assert_eq!(
            b.state(t(10_010)),
            CircuitState::HalfOpen { probing: false }
        );
        assert!(!b.is_blocking());
        assert_eq!(b.admission(|| t(10_010)), Admission::Probe);
        let second = b.start_probe();
        assert_ne!(first, second);
        // A late drop of the first probe does not touch the second.
        assert!(!b.abandon(first));
        assert_eq!(b.state(t(10_020)), CircuitState::HalfOpen { probing: true });
        assert!(b.abandon(second));
        // Nor does the drop of a probe that had its outcome.
        let third = b.start_probe();
        assert_eq!(b.record(&success(), t(10_030)), Some(CircuitChange::Closed));
        assert!(!b.abandon(third));
        assert_eq!(b.state(t(10_030)), CircuitState::Closed { failures: 0 });
    }

    #[test]
    fn an_off_breaker_never_opens() {
        let mut b = Breaker::new(None);
        for n in 0..1_000 {
            assert_eq!(b.record(&temporary(), t(n)), None);
        }
        assert_eq!(b.state(t(1_000)), CircuitState::Off);
        assert_eq!(b.admission(|| t(1_000)), Admission::Closed);
    }

    #[test]
    fn out_of_range_settings_are_clamped_by_new_and_named_by_problem() {
        let clamped = CircuitBreaker::new(0, Duration::MAX);
        assert_eq!(clamped.failures, 1);
        assert_eq!(clamped.open_for, MAX_OPEN_FOR);
        assert_eq!(clamped.problem(), None);
        let mut zero = CircuitBreaker::DEFAULT;
        zero.failures = 0;
        assert_eq!(
            zero.problem(),
            Some("circuitBreaker.failures must be at least 1")
        );
        let mut long = CircuitBreaker::DEFAULT;
        long.open_for = MAX_OPEN_FOR + Duration::from_millis(1);
        let problem = long.problem().unwrap();
        assert!(problem.contains(&MAX_DURATION_MS.to_string()), "{problem}");
        // A zero threshold read from JSON still opens after one failure.
        let mut b = Breaker::new(Some(zero));
        assert!(b.record(&temporary(), t(0)).is_some());
        // The longest open period does not overflow the clock.
        long.failures = 1;
        let mut b = Breaker::new(Some(long));
        let Some(CircuitChange::Opened { until, .. }) = b.record(&temporary(), t(0)) else {
            panic!("opened");
        };
        assert!(until > t(0));
    }

    #[test]
    fn the_agents_file_form_round_trips() {
        let parsed: CircuitBreaker = serde_json::from_str(r#"{"openMs": 2500}"#).unwrap();
        assert_eq!(parsed, CircuitBreaker::new(5, Duration::from_millis(2500)));
        assert_eq!(
            serde_json::to_value(parsed).unwrap(),
            serde_json::json!({"failures": 5, "openMs": 2500})
        );
        let unknown = serde_json::from_str::<CircuitBreaker>(r#"{"open": 1}"#);
        assert!(unknown.is_err());
    }
}
