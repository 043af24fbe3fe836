//! What a run starts with: [`RunOptions`].

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

    /// The run id. Defaults to `run-N`, N counting the engine's runs from 1.
    #[must_use]
    pub fn run_id(mut self, run_id: impl Into<RunId>) -> Self {
        self.run_id = Some(run_id.into());
        self
    }
}
