//! [`SecurityAnalyzer`]: checks a host plugs in, run before a run starts; [`RateLimit`],
//! the built-in one.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::SecurityError;
use crate::plan::ExecutionPlan;

/// A run about to start, as an analyzer sees it.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct RunRequest<'a> {
    /// The user the run is for; `None` for the host's own runs.
    pub user: Option<&'a str>,
    /// The plan it will run.
    pub plan: &'a ExecutionPlan,
    /// The run's input.
    pub input: &'a Value,
    /// Now, on the engine's clock.
    pub now: DateTime<Utc>,
}

impl<'a> RunRequest<'a> {
    /// A run of `plan` for `user` with `input`, asked at `now`.
    pub fn new(
        user: Option<&'a str>,
        plan: &'a ExecutionPlan,
        input: &'a Value,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            user,
            plan,
            input,
            now,
        }
    }
}

/// A check run before every run [`Engine::start`](crate::engine::Engine::start) starts,
/// after the permissions, the kill switch and the agents check
/// ([`EngineBuilder::analyzer`](crate::engine::EngineBuilder::analyzer)). Only
/// [`analyze`](Self::analyze) is required.
pub trait SecurityAnalyzer: Send + Sync {
    /// The analyzer's name, for logs and [`SecurityError::Analyzer`]. Defaults to
    /// `security analyzer`.
    fn name(&self) -> &str {
        "security analyzer"
    }

    /// Lets `run` start (`Ok`), or refuses it: then the run does not start, nothing is
    /// journaled and no later analyzer is asked.
    ///
    /// # Errors
    /// The refusal.
    fn analyze(&self, run: &RunRequest<'_>) -> Result<(), SecurityError>;

    /// Whether `step`, about to call its agent (a `task`, `decision`, `parallel` or
    /// `loop` step), must first be approved by a person, though it is no
    /// `human_approval` step: `Some(why)` makes it wait as an approval step does (see
    /// [`crate::security`]). The default never does.
    fn gate(&self, step: &StepRequest<'_>) -> Option<String> {
        let _ = step;
        None
    }
}

/// At most `limit` runs per user in any `window` of the engine's clock (a sliding
/// window). Runs of the host's own (no user) are not limited. A refused run is not
/// counted.
///
/// Memory: at most `limit` instants per user seen in the last window; users quiet for a
/// whole window are forgotten as others arrive. Each check costs O(limit) at worst.
#[derive(Debug)]
pub struct RateLimit {
    limit: u32,
    window: Duration,
    started: Mutex<HashMap<String, VecDeque<DateTime<Utc>>>>,
}

impl RateLimit {
    /// At most `runs` runs per user per minute.
    pub fn per_minute(runs: u32) -> Self {
        Self::new(runs, Duration::from_secs(60))
    }

    /// At most `runs` runs per user in any `window`.
    pub fn new(runs: u32, window: Duration) -> Self {
        Self {
            limit: runs,
            window,
            started: Mutex::new(HashMap::new()),
        }
    }
}

impl SecurityAnalyzer for RateLimit {
    fn name(&self) -> &str {
        "rate limit"
    }

    fn analyze(&self, run: &RunRequest<'_>) -> Result<(), SecurityError> {
        let Some(user) = run.user else {
            return Ok(());
        };
        let window = chrono::Duration::from_std(self.window).unwrap_or(chrono::Duration::MAX);
        let since = run.now.checked_sub_signed(window);
        let recent = |at: &DateTime<Utc>| since.is_none_or(|since| *at > since);
        let mut started = self.started.lock().unwrap_or_else(PoisonError::into_inner);
        if started.len() > 1024 {
            started.retain(|_, times| times.back().is_some_and(recent));
        }
        let times = started.entry(user.to_owned()).or_default();
        while times.front().is_some_and(|at| !recent(at)) {
            times.pop_front();
        }
        if times.len() >= usize::try_from(self.limit).unwrap_or(usize::MAX) {
            return Err(SecurityError::RateLimited {
                user: user.to_owned(),
                workflow: run.plan.workflow_id().to_owned(),
                limit: self.limit,
                window_secs: self.window.as_secs(),
            });
        }
        times.push_back(run.now);
        Ok(())
    }
}

/// A step about to call its agent, as [`SecurityAnalyzer::gate`] sees it.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct StepRequest<'a> {
    /// The workflow.
    pub workflow: &'a str,
    /// The step's id.
    pub step: &'a str,
    /// The run's user, if it names one.
    pub user: Option<&'a str>,
    /// The step's resolved parameters (adaptations applied).
    pub parameters: &'a Value,
}

impl<'a> StepRequest<'a> {
    /// Step `step` of a run of `workflow` for `user`, about to call with `parameters`.
    pub fn new(
        workflow: &'a str,
        step: &'a str,
        user: Option<&'a str>,
        parameters: &'a Value,
    ) -> Self {
        Self {
            workflow,
            step,
            user,
            parameters,
        }
    }
}

/// The most notional a step may send without a person's approval: the sum of the
/// numbers at `path` in the step's resolved parameters (`orders[*].notional`: every
/// item's `notional`), over `max`, makes the step wait for an approval before it calls
/// its agent ([`SecurityAnalyzer::gate`]). Runs are never refused by it.
///
/// A path is `.`-separated keys, each optionally followed by `[*]` (every item of an
/// array) or `[n]` (one item). What the path does not reach, and values that are not
/// numbers, count 0. Cost: O(the values the path reaches).
#[derive(Debug, Clone)]
pub struct NotionalGuard {
    steps: super::Glob,
    path: String,
    segments: Vec<Segment>,
    max: f64,
}

#[derive(Debug, Clone, PartialEq)]
enum Segment {
    Key(String),
    Every,
    Item(usize),
}

impl NotionalGuard {
    /// Guards the steps whose ids match `steps` (a [`Glob`](super::Glob)): more than
    /// `max` in total at `path` needs an approval.
    ///
    /// # Errors
    /// A [`PolicyError`](super::PolicyError) at `steps`, `path` or `max`: an empty or
    /// overlong pattern, a malformed path, a `max` that is not a finite number ≥ 0.
    pub fn new(steps: &str, path: &str, max: f64) -> Result<Self, super::PolicyError> {
        let problem = |at: &str, problem: String| super::PolicyError {
            at: at.to_owned(),
            problem,
        };
        let glob = super::Glob::new(steps).ok_or_else(|| {
            problem(
                "steps",
                format!(
                    "pattern `{}` is empty or too long",
                    crate::definition::Quoted(steps)
                ),
            )
        })?;
        if !(max.is_finite() && max >= 0.0) {
            return Err(problem(
                "max",
                format!("expected a number ≥ 0, found {max}"),
            ));
        }
        let segments = parse_path(path).ok_or_else(|| {
            problem(
                "path",
                format!(
                    "`{}` is not a path like `orders[*].notional`",
                    crate::definition::Quoted(path)
                ),
            )
        })?;
        Ok(Self {
            steps: glob,
            path: path.to_owned(),
            segments,
            max,
        })
    }

    /// The sum of the numbers at the guard's path in `parameters`.
    pub fn total(&self, parameters: &Value) -> f64 {
        let mut values = vec![parameters];
        for segment in &self.segments {
            values = values
                .into_iter()
                .flat_map(|value| -> Vec<&Value> {
                    match segment {
                        Segment::Key(key) => value.get(key).into_iter().collect(),
                        Segment::Item(i) => value.get(*i).into_iter().collect(),
                        Segment::Every => value
                            .as_array()
                            .map(|a| a.iter().collect())
                            .unwrap_or_default(),
                    }
                })
                .collect();
        }
        values.into_iter().filter_map(Value::as_f64).sum()
    }
}

/// `orders[*].notional` as segments; `None` when malformed.
fn parse_path(path: &str) -> Option<Vec<Segment>> {
    if path.is_empty() || path.len() > 256 {
        return None;
    }
    let mut segments = Vec::new();
    for part in path.split('.') {
        let (key, mut rest) = match part.find('[') {
            Some(at) => part.split_at(at),
            None => (part, ""),
        };
        if key.is_empty() {
            return None;
        }
        segments.push(Segment::Key(key.to_owned()));
        while !rest.is_empty() {
            let close = rest.find(']')?;
            let inside = rest.get(1..close)?;
            segments.push(match inside {
                "*" => Segment::Every,
                index => Segment::Item(index.parse().ok()?),
            });
            rest = rest.get(close + 1..)?;
            if !rest.is_empty() && !rest.starts_with('[') {
                return None;
            }
        }
    }
    Some(segments)
}

impl SecurityAnalyzer for NotionalGuard {
    fn name(&self) -> &str {
        "notional guard"
    }

    fn analyze(&self, _run: &RunRequest<'_>) -> Result<(), SecurityError> {
        Ok(())
    }

    fn gate(&self, step: &StepRequest<'_>) -> Option<String> {
        if !self.steps.matches(step.step) {
            return None;
        }
        let total = self.total(step.parameters);
        (total > self.max).then(|| {
            format!(
                "notional {total} at `{}` is over {}, the most allowed without approval",
                self.path, self.max
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_guard_sums_every_item_at_its_path() {
        let guard = NotionalGuard::new("order-*", "orders[*].notional", 1000.0).unwrap();
        let parameters = json!({"orders": [{"notional": 600}, {"notional": 500.5}, {"qty": 1}]});
        assert_eq!(guard.total(&parameters), 1100.5);
        let step = |id| StepRequest::new("w", id, Some("alice"), &parameters);
        assert!(guard.gate(&step("order-execution")).is_some());
        assert_eq!(guard.gate(&step("sizing")), None);
        let small = json!({"orders": [{"notional": 600}]});
        assert_eq!(
            guard.gate(&StepRequest::new("w", "order-x", None, &small)),
            None
        );
        let one = NotionalGuard::new("*", "legs[1].n", 0.0).unwrap();
        assert_eq!(one.total(&json!({"legs": [{"n": 5}, {"n": 7}]})), 7.0);
    }

    #[test]
    fn malformed_guards_are_located() {
        for (path, max, at) in [
            ("", 1.0, "path"),
            ("orders[*", 1.0, "path"),
            ("orders[x]", 1.0, "path"),
            ("a..b", 1.0, "path"),
            ("orders", f64::NAN, "max"),
        ] {
            let error = NotionalGuard::new("*", path, max).unwrap_err();
            assert_eq!(error.at, at, "{path} {max}");
        }
    }
}
