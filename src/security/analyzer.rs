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
