//! What a run starts with: [`RunOptions`].

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::expr::Context;
use crate::run::RunId;

/// What a run starts with.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub(super) input: Value,
    pub(super) context: Context,
    pub(super) seed: Option<u64>,
    pub(super) run_id: Option<RunId>,
    pub(super) trigger: Option<String>,
    pub(super) version: Option<String>,
    pub(super) data_as_of: Option<DateTime<Utc>>,
    pub(super) user: Option<String>,
    /// The run is the host's own: not checked against permissions.
    pub(super) host: bool,
}

impl RunOptions {
    /// Options with `input` as the run's input (`${input…}`).
    pub fn new(input: Value) -> Self {
        Self {
            input,
            ..Self::default()
        }
    }

    /// Records that a trigger started the run (`triggers[0] (SCHEDULED)`): journaled
    /// (`runTriggered`) and in the `RunStarted` event.
    #[must_use]
    pub fn triggered_by(mut self, trigger: impl Into<String>) -> Self {
        self.trigger = Some(trigger.into());
        self
    }

    /// The host context of conditions (`market.isOpen()`). Defaults to empty.
    #[must_use]
    pub fn context(mut self, context: Context) -> Self {
        self.context = context;
        self
    }

    /// The seed of the run's random choices (balancers, jitter). Defaults to the
    /// engine's seed mixed with the run id.
    #[must_use]
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Starts this version of the workflow (as [`Engine::workflow_version`] finds it)
    /// instead of the latest, with [`Engine::start`] and
    /// [`OrchestrationEngine::start`](super::OrchestrationEngine::start); an unknown
    /// version is [`EngineError::UnknownVersion`](super::EngineError::UnknownVersion).
    /// Defaults to the latest. [`Engine::start_plan`] ignores it.
    ///
    /// [`Engine::workflow_version`]: super::Engine::workflow_version
    /// [`Engine::start`]: super::Engine::start
    /// [`Engine::start_plan`]: super::Engine::start_plan
    #[must_use]
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.version = Some(version.into());
        self
    }

    /// The time the run's data is as of (the market snapshot it decides on): a step with
    /// `maxDataAgeMs` does not call its agent on data older than that, measured on the
    /// engine's clock. Journaled, so a recovered run keeps it. Without it, the input's
    /// `asOf` (RFC 3339), when present, is the data time; without either, no step checks.
    #[must_use]
    pub fn data_as_of(mut self, as_of: DateTime<Utc>) -> Self {
        self.data_as_of = Some(as_of);
        self
    }

    /// The user the run is started for (the principal: a person or a service). Journaled
    /// (`startedBy`) and in the `RunStarted` event, so that a recovered run keeps it.
    /// Without it the run is the host's own, started for no one.
    #[must_use]
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.user = Some(user.into());
        self
    }

    /// Marks the run as the host's own (a trigger's, a scheduled task's, a bot's
    /// housekeeping): when the engine checks permissions
    /// ([`EngineBuilder::permissions`](super::EngineBuilder::permissions)), a run that
    /// names no [`user`](Self::user) is refused unless it is the host's own. A run that
    /// names a user is checked for that user whatever this says. Not journaled.
    #[must_use]
    pub fn as_host(mut self) -> Self {
        self.host = true;
        self
    }

    /// The user the run is started for, if [`user`](Self::user) named one.
    pub fn user_name(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// The run id. Defaults to a new one, as the engine's [`RunIds`] say (a UUIDv7 by
    /// default). A store refuses an id it has already: the run then fails to start.
    #[must_use]
    pub fn run_id(mut self, run_id: impl Into<RunId>) -> Self {
        self.run_id = Some(run_id.into());
        self
    }
}

/// How the engine names the runs [`RunOptions::run_id`] does not name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum RunIds {
    /// `run-` and a UUIDv7 (`run-0193a1f4-7c2e-7b3d-9f10-2a6c5e4d3b21`): ordered by start
    /// time (from the engine's clock) and unique across processes and restarts (74
    /// random bits), so a restarted bot never reuses an id, nor the idempotency keys
    /// built from it. The default.
    #[default]
    TimeOrdered,
    /// `run-1`, `run-2`, … in the order runs start, unique only within this engine (and
    /// past the runs it recovers). For tests and simulations, whose output must not
    /// change from one process to the next; never for a bot that restarts on a store
    /// (a store refuses a run id it has already: the run fails to start).
    Numbered,
}
