//! The scaling rules, as a pure function of what a type's agents carry now and when
//! the type was last scaled.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

/// Above this host CPU utilization, a type scales up.
pub const CPU_HIGH: f64 = 0.8;
/// Above this host memory utilization, a type scales up.
pub const MEMORY_HIGH: f64 = 0.85;
/// More calls waiting than this many per instance, and a type scales up.
pub const QUEUE_PER_INSTANCE: usize = 10;
/// Below this host CPU utilization (and [`MEMORY_LOW`], and no call waiting), a type
/// scales down.
pub const CPU_LOW: f64 = 0.3;
/// Below this host memory utilization (and [`CPU_LOW`], and no call waiting), a type
/// scales down.
pub const MEMORY_LOW: f64 = 0.4;
/// The default cooldown after a scaling action of a type: 60 s.
pub const DEFAULT_COOLDOWN: Duration = Duration::from_secs(60);

/// What the rules read about one agent type.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ScalingInputs {
    /// Calls waiting for a slot on an agent of the type.
    pub queue_length: usize,
    /// Busy slots / slots of the type's agents, in [0, 1] (reported; the rules do not
    /// read it: the host's `cpu` and `memory` stand for the load).
    pub utilization: f64,
    /// Instances of the type taking calls now (drained ones not counted).
    pub instances: usize,
    /// The host's CPU utilization, in [0, 1].
    pub cpu: f64,
    /// The host's memory utilization, in [0, 1].
    pub memory: f64,
}

impl ScalingInputs {
    /// Inputs with these values.
    pub fn new(
        queue_length: usize,
        utilization: f64,
        instances: usize,
        cpu: f64,
        memory: f64,
    ) -> Self {
        Self {
            queue_length,
            utilization,
            instances,
            cpu,
            memory,
        }
    }
}

/// The bounds and cooldown of one agent type's scaling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ScalingPolicy {
    /// Never fewer instances (scale-downs stop here).
    pub min: usize,
    /// Never more instances (scale-ups are capped here).
    pub max: usize,
    /// No scaling action of the type within this long after the last one.
    pub cooldown: Duration,
}

impl ScalingPolicy {
    /// `min` to `max` instances with the [`DEFAULT_COOLDOWN`]. A `max` below `min` is
    /// raised to `min`.
    pub fn new(min: usize, max: usize) -> Self {
        Self {
            min,
            max: max.max(min),
            cooldown: DEFAULT_COOLDOWN,
        }
    }

    /// Sets the cooldown. Defaults to [`DEFAULT_COOLDOWN`].
    #[must_use]
    pub fn cooldown(mut self, cooldown: Duration) -> Self {
        self.cooldown = cooldown;
        self
    }
}

/// Why a type was scaled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub enum ScalingReason {
    /// The host's CPU utilization was above [`CPU_HIGH`].
    Cpu,
    /// The host's memory utilization was above [`MEMORY_HIGH`].
    Memory,
    /// More calls waited than [`QUEUE_PER_INSTANCE`] per instance.
    Queue,
    /// CPU and memory were low and no call waited.
    Idle,
}

impl ScalingReason {
    /// Its name: `cpu`, `memory`, `queue` or `idle`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cpu => "cpu",
            Self::Memory => "memory",
            Self::Queue => "queue",
            Self::Idle => "idle",
        }
    }
}

impl fmt::Display for ScalingReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A type's last scaling action: when, and whether it scaled up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct LastScaling {
    /// When it was taken (on the engine's clock).
    pub at: DateTime<Utc>,
    /// Whether it added instances.
    pub up: bool,
}

impl LastScaling {
    /// The action taken `at`, up or down.
    pub fn new(at: DateTime<Utc>, up: bool) -> Self {
        Self { at, up }
    }
}

/// What the rules decided: scale the type from `from` instances to `to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ScalingDecision {
    /// Instances now.
    pub from: usize,
    /// Instances wanted.
    pub to: usize,
    /// Why.
    pub reason: ScalingReason,
}

/// Whether to scale a type now, by the rules:
///
/// - **Up** when `cpu > 0.8`, or `memory > 0.85`, or `queue_length > 10 × instances`
///   (checked in that order; the first that holds is the reason): to `instances +
///   ceil(instances / 2)` (at least one more), capped at `max`. None at `max`.
/// - **Down** when `cpu < 0.3` and `memory < 0.4` and `queue_length = 0` and
///   `instances > min`: to `instances − 1`.
/// - **Cooldown**: nothing within `policy.cooldown` after the type's `last` action (at
///   `last.at + cooldown` exactly, the rules apply again). Since every action starts
///   the cooldown, a scale-down never follows a scale-up within it: no flapping.
///
/// Values that are not numbers (NaN) hold no threshold. Pure: the same inputs give the
/// same answer.
pub fn decide(
    inputs: &ScalingInputs,
    policy: &ScalingPolicy,
    last: Option<LastScaling>,
    now: DateTime<Utc>,
) -> Option<ScalingDecision> {
    if let Some(last) = last {
        let cooldown = chrono::Duration::from_std(policy.cooldown).unwrap_or(chrono::Duration::MAX);
        let until = last.at.checked_add_signed(cooldown);
        if until.is_none_or(|until| now < until) {
            return None;
        }
    }
    let from = inputs.instances;
    let up = if inputs.cpu > CPU_HIGH {
        Some(ScalingReason::Cpu)
    } else if inputs.memory > MEMORY_HIGH {
        Some(ScalingReason::Memory)
    } else if inputs.queue_length > QUEUE_PER_INSTANCE.saturating_mul(from) {
        Some(ScalingReason::Queue)
    } else {
        None
    };
    if let Some(reason) = up {
        let to = from.saturating_add(from.div_ceil(2).max(1)).min(policy.max);
        return (to > from).then_some(ScalingDecision { from, to, reason });
    }
    let idle = inputs.cpu < CPU_LOW && inputs.memory < MEMORY_LOW && inputs.queue_length == 0;
    (idle && from > policy.min).then(|| ScalingDecision {
        from,
        to: from - 1,
        reason: ScalingReason::Idle,
    })
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn t(seconds: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 5, 9, 0, 0).unwrap() + chrono::Duration::seconds(seconds)
    }

    fn inputs(queue: usize, instances: usize, cpu: f64, memory: f64) -> ScalingInputs {
        ScalingInputs::new(queue, 0.5, instances, cpu, memory)
    }

    fn to(inputs: &ScalingInputs, policy: ScalingPolicy) -> Option<(usize, ScalingReason)> {
        decide(inputs, &policy, None, t(0)).map(|d| (d.to, d.reason))
    }

    const WIDE: ScalingPolicy = ScalingPolicy {
        min: 1,
        max: 100,
        cooldown: DEFAULT_COOLDOWN,
    };

    #[test]
    fn cpu_scales_up_only_strictly_above_the_threshold() {
        assert_eq!(to(&inputs(0, 4, 0.8, 0.5), WIDE), None);
        assert_eq!(
            to(&inputs(0, 4, 0.8001, 0.5), WIDE),
            Some((6, ScalingReason::Cpu))
        );
    }

    #[test]
    fn memory_scales_up_only_strictly_above_the_threshold() {
        assert_eq!(to(&inputs(0, 4, 0.5, 0.85), WIDE), None);
        assert_eq!(
            to(&inputs(0, 4, 0.5, 0.8501), WIDE),
            Some((6, ScalingReason::Memory))
        );
    }

    #[test]
    fn a_queue_scales_up_only_above_ten_per_instance() {
        assert_eq!(to(&inputs(30, 3, 0.5, 0.5), WIDE), None);
        assert_eq!(
            to(&inputs(31, 3, 0.5, 0.5), WIDE),
            Some((5, ScalingReason::Queue))
        );
        // No instance: any waiting call adds one.
        assert_eq!(
            to(&inputs(1, 0, 0.5, 0.5), ScalingPolicy::new(0, 4)),
            Some((1, ScalingReason::Queue))
        );
    }

    #[test]
    fn a_scale_up_adds_half_rounded_up_capped_at_max() {
        assert_eq!(
            to(&inputs(0, 1, 0.9, 0.5), WIDE),
            Some((2, ScalingReason::Cpu))
        );
        assert_eq!(
            to(&inputs(0, 3, 0.9, 0.5), WIDE),
            Some((5, ScalingReason::Cpu))
        );
        assert_eq!(
            to(&inputs(0, 3, 0.9, 0.5), ScalingPolicy::new(1, 4)),
            Some((4, ScalingReason::Cpu))
        );
        assert_eq!(
            to(&inputs(0, 4, 0.9, 0.5), ScalingPolicy::new(1, 4)),
            None,
            "at max"
        );
    }

    #[test]
    fn scale_down_needs_low_cpu_low_memory_and_an_empty_queue() {
        assert_eq!(
            to(&inputs(0, 3, 0.29, 0.39), WIDE),
            Some((2, ScalingReason::Idle))
        );
        assert_eq!(
            to(&inputs(0, 3, 0.3, 0.39), WIDE),
            None,
            "cpu at 0.3 is not below"
        );
        assert_eq!(
            to(&inputs(0, 3, 0.29, 0.4), WIDE),
            None,
            "memory at 0.4 is not below"
        );
        assert_eq!(to(&inputs(1, 3, 0.29, 0.39), WIDE), None, "a call waits");
    }

    #[test]
    fn scale_down_stops_at_min() {
        assert_eq!(
            to(&inputs(0, 2, 0.1, 0.1), ScalingPolicy::new(1, 4)),
            Some((1, ScalingReason::Idle))
        );
        assert_eq!(to(&inputs(0, 1, 0.1, 0.1), ScalingPolicy::new(1, 4)), None);
    }

    #[test]
    fn nothing_scales_within_the_cooldown_and_the_rules_apply_at_its_end() {
        let busy = inputs(0, 2, 0.9, 0.5);
        let idle = inputs(0, 4, 0.1, 0.1);
        let after_up = Some(LastScaling::new(t(0), true));
        assert_eq!(decide(&busy, &WIDE, after_up, t(59)), None);
        assert_eq!(decide(&idle, &WIDE, after_up, t(59)), None, "no flapping");
        assert_eq!(decide(&idle, &WIDE, after_up, t(60)).map(|d| d.to), Some(3));
        assert_eq!(decide(&busy, &WIDE, after_up, t(60)).map(|d| d.to), Some(3));
        let short = WIDE.cooldown(Duration::from_secs(5));
        assert_eq!(decide(&idle, &short, after_up, t(4)), None);
        assert_eq!(
            decide(&idle, &short, after_up, t(5)).map(|d| d.reason),
            Some(ScalingReason::Idle)
        );
    }

    #[test]
    fn values_that_are_not_numbers_hold_no_threshold() {
        assert_eq!(to(&inputs(0, 3, f64::NAN, f64::NAN), WIDE), None);
    }
}
