//! Continuing a store's unfinished runs after a restart: [`Engine::recover`].

use std::sync::Arc;
use std::sync::atomic::Ordering;

use chrono::{DateTime, Utc};

use super::durable::Journal;
use super::durable::writer::lease_until;
use super::error::{RecoveryError, store_failed};
use super::{Engine, EngineError, Resumed, Run, run};
use crate::expr::Context;
use crate::plan::ExecutionPlan;
use crate::run::RunId;
use crate::store::{Lease, RunState as Journaled, RunStore, StoreError};

/// What [`Engine::recover_all`] found in the store.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct Recovery {
    /// The runs this engine now drives, oldest start first; they make progress only
    /// while polled.
    pub runs: Vec<Run>,
    /// Runs another live engine holds (its lease runs): left to it.
    pub held: Vec<HeldRun>,
    /// Runs that cannot be recovered, and why (their journal is damaged, their
    /// definition missing or invalid): left in the store as they are.
    pub failed: Vec<(RunId, RecoveryError)>,
}

/// An unfinished run another engine holds.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HeldRun {
    /// The run.
    pub run: RunId,
    /// The engine holding it.
    pub owner: String,
    /// Until when its lease runs (it is renewed while that engine lives).
    pub until: DateTime<Utc>,
}

impl Engine {
    /// Continues every run the store lists as unfinished that no other live engine
    /// holds, as it was when the previous engine stopped: returns their [`Run`]s, which
    /// make progress only while polled. Runs that cannot be recovered are logged and
    /// left in the store; [`recover_all`](Self::recover_all) says which, and why.
    ///
    /// Each run is first taken under this engine's lease (so no other engine drives it
    /// meanwhile), then is its journal's fold
    /// ([`RunState::fold`](crate::store::RunState::fold)), under its journaled id and
    /// seed, on the plan of the version it started with (the engine's, else the
    /// definition the store keeps, compiled and kept). Steps that completed, were
    /// skipped or failed keep their status, output and report and do not run again.
    /// Steps that were running or pending run as usual: a call cut off by the restart is
    /// made again with the same idempotency key (keys are `run/step/item/iteration`), so
    /// an agent that honours keys acts once. A step that waited for approval waits again
    /// (`StepWaiting` is emitted again and [`approve`](Self::approve) answers it), unless
    /// its answer was journaled: then it acts on that answer. Recovered runs see an empty
    /// host [`Context`]; timeouts of steps restart, the workflow's timeout keeps its
    /// deadline. Without a store, there is nothing to recover.
    ///
    /// A workflow's `sensitive` values were journaled as `"***"`: they are restored through
    /// the engine's [`Secrets`](super::Secrets) before the run is built; a run whose
    /// input's values (or outputs a remaining step binds to) cannot be restored is left
    /// in the store ([`RecoveryError::NoSecrets`], [`RecoveryError::SecretUnavailable`]).
    ///
    /// Recovered runs are not checked for agents, whatever the
    /// [`AgentCheck`](super::AgentCheck): register the agents, then check each run with
    /// [`check_plan_agents`](Self::check_plan_agents)`(run.plan())` before polling it, if
    /// you want a step with no agent found before the run goes on.
    ///
    /// # Errors
    /// [`EngineError::Store`] when the store cannot list its runs.
    pub fn recover(&self) -> Result<Vec<Run>, EngineError> {
        let recovery = self.recover_all()?;
        for (run, reason) in &recovery.failed {
            tracing::error!(
                run = %run,
                error = reason as &dyn std::error::Error,
                "cannot recover the run; it stays in the store as it is"
            );
        }
        Ok(recovery.runs)
    }

    /// As [`recover`](Self::recover), with the runs it left: held by another live
    /// engine, or that cannot be recovered (one such run never keeps the others from
    /// being recovered).
    ///
    /// # Errors
    /// [`EngineError::Store`] when the store cannot list its runs.
    pub fn recover_all(&self) -> Result<Recovery, EngineError> {
        let mut recovery = Recovery::default();
        let Some(journal) = &self.inner.journal else {
            return Ok(recovery);
        };
        let unfinished = journal.store.unfinished_runs().map_err(store_failed)?;
        for run in unfinished {
            let lease = match journal.store.claim(
                &run,
                &journal.owner,
                Utc::now(),
                lease_until(journal.lease),
            ) {
                Ok(lease) => lease,
                Err(StoreError::Held { run, owner, until }) => {
                    recovery.held.push(HeldRun { run, owner, until });
                    continue;
                }
                Err(error) => {
                    recovery
                        .failed
                        .push((run, RecoveryError::Store(Arc::new(error))));
                    continue;
                }
            };
            match self.load_run(journal, &lease) {
                Ok((plan, journaled)) => {
                    recovery.runs.push(self.resume_run(plan, journaled, lease))
                }
                Err(reason) => {
                    // Left as it is, for anyone to look at (or another build to recover).
                    let _ = journal.store.release(&lease);
                    recovery.failed.push((run, reason));
                }
            }
        }
        Ok(recovery)
    }

    /// The journal of the run `lease` holds, folded and checked against the plan it
    /// started with.
    fn load_run(
        &self,
        journal: &Journal,
        lease: &Lease,
    ) -> Result<(Arc<ExecutionPlan>, Journaled), RecoveryError> {
        let store = &*journal.store;
        let entries = store
            .load(lease.run())
            .map_err(|error| RecoveryError::Store(Arc::new(error)))?;
        let mut journaled = Journaled::fold(&entries).map_err(RecoveryError::Journal)?;
        let plan = self.recovered_plan(store, &journaled)?;
        if let Some(step) = journaled
            .steps
            .keys()
            .find(|step| plan.index_of(step.as_str()).is_none())
        {
            return Err(RecoveryError::UnknownStep {
                step: step.to_string(),
                workflow_id: journaled.workflow_id.clone(),
                version: journaled.version.clone(),
            });
        }
        super::secrets::restore(&plan, self.inner.secrets.as_ref(), &mut journaled)?;
        Ok((plan, journaled))
    }

    /// The [`Run`] that continues `journaled` on `plan`, under `lease`.
    fn resume_run(&self, plan: Arc<ExecutionPlan>, journaled: Journaled, lease: Lease) -> Run {
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
        let owner = super::control::Owner {
            workflow: journaled.workflow_id.clone(),
            started_by: journaled.started_by.clone(),
        };
        let control = self.inner.controls.register(&id, owner);
        let span = super::run_span(&id, plan.workflow_id(), journaled.trigger.as_deref());
        let future = run::resume(
            Arc::clone(&self.inner),
            Arc::clone(&plan),
            journaled,
            lease,
            Arc::new(Context::default()),
            control,
        );
        Run {
            id,
            inner: Arc::clone(&self.inner),
            plan,
            resumed: Some(resumed),
            future: Box::pin(tracing::Instrument::instrument(future, span)),
        }
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
