//! Continuing a store's unfinished runs after a restart: [`Engine::recover`].

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::error::{RecoveryError, recovery, store_failed};
use super::{Engine, EngineError, Resumed, Run, run};
use crate::expr::Context;
use crate::plan::ExecutionPlan;
use crate::store::{RunState as Journaled, RunStore};

impl Engine {
    /// Continues every run the store lists as unfinished, as it was when the previous
    /// engine stopped: returns their [`Run`]s, which make progress only while polled.
    ///
    /// Each run is its journal's fold ([`RunState::fold`](crate::store::RunState::fold)),
    /// under its journaled id and seed, on the plan of the version it started with (the
    /// engine's, else the definition the store keeps, compiled and kept). Steps that
    /// completed, were skipped or failed keep their status, output and report and do not
    /// run again. Steps that were running or pending run as usual: a call cut off by the
    /// restart is made again with the same idempotency key (keys are
    /// `run/step/item/iteration`), so an agent that honours keys acts once. A step that
    /// waited for approval waits again (`StepWaiting` is emitted again and
    /// [`approve`](Self::approve) answers it), unless its answer was journaled: then it
    /// acts on that answer. Recovered runs see an empty host [`Context`]; timeouts of
    /// steps restart, the workflow's timeout keeps its deadline. Without a store, there
    /// is nothing to recover.
    ///
    /// # Errors
    /// [`EngineError::Store`] when the store cannot list its runs;
    /// [`EngineError::Recovery`] naming the first run that cannot be loaded, whose
    /// journal does not fold, or whose definition is missing or invalid (no run is
    /// returned then).
    pub fn recover(&self) -> Result<Vec<Run>, EngineError> {
        let Some(store) = &self.inner.store else {
            return Ok(Vec::new());
        };
        let unfinished = store.unfinished_runs().map_err(store_failed)?;
        let mut recovered = Vec::with_capacity(unfinished.len());
        for run in unfinished {
            let failed = |reason| recovery(&run, reason);
            let entries = store
                .load(&run)
                .map_err(|error| failed(RecoveryError::Store(Arc::new(error))))?;
            let journaled =
                Journaled::fold(&entries).map_err(|error| failed(RecoveryError::Journal(error)))?;
            let plan = self
                .recovered_plan(store.as_ref(), &journaled)
                .map_err(failed)?;
            recovered.push((plan, journaled));
        }
        Ok(recovered
            .into_iter()
            .map(|(plan, journaled)| {
                // Runs this engine numbers must not reuse a recovered run's id.
                if let Some(number) = journaled
                    .run_id
                    .as_str()
                    .strip_prefix("run-")
                    .and_then(|number| number.parse::<u64>().ok())
                {
                    self.inner.runs.fetch_max(number, Ordering::Relaxed);
                }
                let id = journaled.run_id.clone();
                let resumed = Resumed::of(&journaled);
                let control = self.inner.controls.register(&id);
                let future = run::resume(
                    Arc::clone(&self.inner),
                    Arc::clone(&plan),
                    journaled,
                    Arc::new(Context::default()),
                    control,
                );
                Run {
                    id,
                    plan,
                    resumed: Some(resumed),
                    future: Box::pin(future),
                }
            })
            .collect())
    }

    /// The plan a recovered run started with: the engine's, else the store's definition.
    fn recovered_plan(
        &self,
        store: &dyn RunStore,
        journaled: &Journaled,
    ) -> Result<Arc<ExecutionPlan>, RecoveryError> {
        let (id, version) = (&journaled.workflow_id, &journaled.version);
        if let Some(plan) = self.workflow_version(id, version) {
            return Ok(plan);
        }
        let json = store
            .definition(id, version)
            .map_err(|error| RecoveryError::Store(Arc::new(error)))?
            .ok_or_else(|| RecoveryError::NoDefinition {
                workflow_id: id.clone(),
                version: version.clone(),
            })?;
        let plan = ExecutionPlan::from_json(&json).map_err(|source| RecoveryError::Definition {
            workflow_id: id.clone(),
            version: version.clone(),
            source,
        })?;
        self.keep(plan);
        self.workflow_version(id, version)
            .ok_or_else(|| RecoveryError::NoDefinition {
                workflow_id: id.clone(),
                version: version.clone(),
            })
    }
}
