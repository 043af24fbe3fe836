//! Outcomes of decisions: learned when a run ends, reported by the host later
//! ([`Engine::report_outcome`]), and learned again from a store's journals when an
//! engine is built ([`Engine::relearned`]).
//!
//! Each decision is learned from once: from its `reward` evaluated when its run ended,
//! or from one reward the host reports afterwards (for instance when the P&L is known
//! hours later). A learned reward also feeds the performance history of the agent that
//! made the decision, normalised over the rewards learned for the step.
//!
//! With a store, the journal is what says whether a decision was learned from: a report
//! takes the run for a moment (so that two processes cannot both report it), checks its
//! journal, journals `rewardLearned` and learns. When the engine is built, every run the
//! store lists as rewarded is read back and its rewards learned in the order the runs
//! started, so the model is the one the previous process had. Without a store, the
//! engine remembers the last [`MAX_REMEMBERED`] decisions of ended runs for reports.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use chrono::Utc;

use super::Engine;
use super::durable::writer::lease_until;
use super::inner::Inner;
use crate::agent::AgentId;
use crate::decision::{DecisionEngine, DecisionError, MAX_ABS_REWARD, OptionKey};
use crate::definition::{StepId, TaskType};
use crate::plan::AgentTask;
use crate::run::{RunId, StepStatus};
use crate::store::{
    Append, DecisionState, FoldError, JournalEntry, RunState, RunStore, StoreError,
};

/// How many decisions of ended runs an engine without a store remembers for
/// [`Engine::report_outcome`] (the oldest are forgotten first).
pub const MAX_REMEMBERED: usize = 10_000;

/// Why a reward could not be learned from.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum OutcomeError {
    /// The reward is not a finite number within ±10^15.
    #[error("run `{run}`, step `{step}`: the reward {reward} is not a finite number within ±1e15")]
    BadReward {
        /// The run.
        run: RunId,
        /// The decision step.
        step: StepId,
        /// The reward given.
        reward: f64,
    },
    /// The engine knows no such run (without a store: not one of the decisions it
    /// remembers).
    #[error("run `{run}`: no such run{}", if *.remembered { " among the decisions this engine remembers (it has no store)" } else { " in the store" })]
    UnknownRun {
        /// The run.
        run: RunId,
        /// Whether the engine looked among the decisions it remembers (no store).
        remembered: bool,
    },
    /// The run has not ended: its reward, if it has one, is evaluated when it does.
    #[error("run `{run}` has not ended: report its outcome once it has")]
    NotEnded {
        /// The run.
        run: RunId,
    },
    /// Another engine holds the run (it drives it, or reports an outcome of it now).
    #[error("run `{run}` is held by engine `{owner}`: try again once it lets go")]
    Held {
        /// The run.
        run: RunId,
        /// The engine holding it.
        owner: String,
    },
    /// The step made no decision in the run (it is not a `decision` step with a
    /// `decision` block, or it never started).
    #[error("run `{run}`, step `{step}`: the step made no decision")]
    NoDecision {
        /// The run.
        run: RunId,
        /// The step.
        step: StepId,
    },
    /// The decision's step did not complete: there is nothing to learn from.
    #[error(
        "run `{run}`, step `{step}`: the decision's step did not complete; nothing to learn from"
    )]
    NotCompleted {
        /// The run.
        run: RunId,
        /// The step.
        step: StepId,
    },
    /// The decision was learned from already.
    #[error("run `{run}`, step `{step}`: the decision was learned from already (reward {reward})")]
    AlreadyLearned {
        /// The run.
        run: RunId,
        /// The step.
        step: StepId,
        /// The reward it was learned from.
        reward: f64,
    },
    /// The store failed.
    #[error("run `{run}`: the run store failed")]
    Store {
        /// The run.
        run: RunId,
        /// The store's error.
        #[source]
        source: Arc<StoreError>,
    },
    /// The run's journal is damaged.
    #[error("run `{run}`: its journal is damaged")]
    Journal {
        /// The run.
        run: RunId,
        /// Where and how.
        #[source]
        source: FoldError,
    },
    /// The decision engine refused the reward (its model is full, for instance).
    #[error("run `{run}`, step `{step}`: the decision engine refused the reward")]
    Learn {
        /// The run.
        run: RunId,
        /// The step.
        step: StepId,
        /// Why.
        #[source]
        source: DecisionError,
    },
}

/// What an engine built with a store learned again from the store's journals
/// ([`Engine::relearned`]).
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Relearned {
    /// The runs read back.
    pub runs: usize,
    /// The rewards learned from them.
    pub rewards: usize,
    /// Runs (or rewards) that could not be learned from, and why; the others were.
    pub failed: Vec<OutcomeError>,
    /// The store could not list its rewarded runs: nothing was learned again.
    pub unlisted: Option<Arc<StoreError>>,
}

/// A decision a reward goes to: the key of its option, and who made it.
#[derive(Debug, Clone)]
pub(crate) struct Awaiting {
    pub(crate) workflow_id: String,
    pub(crate) context: String,
    pub(crate) option: String,
    /// The agent that made the decision, credited with the reward.
    pub(crate) agent: Option<AgentId>,
    /// The step's task type, under which the agent is credited.
    pub(crate) task_type: TaskType,
}

impl Awaiting {
    /// The decision `made` in a run of `workflow_id`, by `agent`, for a step of `task`
    /// (none: the agent is not credited under any task type).
    pub(crate) fn of(
        workflow_id: &str,
        made: &DecisionState,
        agent: Option<AgentId>,
        task: Option<&AgentTask>,
    ) -> Self {
        Self {
            workflow_id: workflow_id.to_owned(),
            context: made.context_key.clone(),
            option: made.option.clone(),
            agent,
            task_type: task.map_or_else(|| "".into(), |task| task.task_type.clone()),
        }
    }

    /// The key of its option, for step `step_id`.
    pub(crate) fn key<'a>(&'a self, step_id: &'a str) -> OptionKey<'a> {
        OptionKey::new(&self.workflow_id, step_id, &self.context, &self.option)
    }
}

/// The decisions of ended runs an engine without a store remembers, the oldest first
/// forgotten.
#[derive(Debug, Default)]
pub(crate) struct Outcomes {
    remembered: Mutex<Remembered>,
}

#[derive(Debug, Default)]
struct Remembered {
    decisions: HashMap<(RunId, StepId), (Awaiting, Option<f64>)>,
    order: VecDeque<(RunId, StepId)>,
}

impl Outcomes {
    /// Remembers a decision of an ended run, with its reward if it was learned from.
    pub(crate) fn remember(
        &self,
        run: RunId,
        step: StepId,
        awaiting: Awaiting,
        reward: Option<f64>,
    ) {
        let mut remembered = self
            .remembered
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let key = (run, step);
        if remembered
            .decisions
            .insert(key.clone(), (awaiting, reward))
            .is_none()
        {
            remembered.order.push_back(key);
        }
        while remembered.order.len() > MAX_REMEMBERED {
            if let Some(oldest) = remembered.order.pop_front() {
                remembered.decisions.remove(&oldest);
            }
        }
    }

    /// Marks the decision learned from with `reward`, if it is remembered and was not.
    fn take(&self, run: &RunId, step: &StepId, reward: f64) -> Result<Awaiting, OutcomeError> {
        let mut remembered = self
            .remembered
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let Some((awaiting, learned)) = remembered.decisions.get_mut(&(run.clone(), step.clone()))
        else {
            return Err(OutcomeError::UnknownRun {
                run: run.clone(),
                remembered: true,
            });
        };
        if let Some(reward) = *learned {
            return Err(OutcomeError::AlreadyLearned {
                run: run.clone(),
                step: step.clone(),
                reward,
            });
        }
        *learned = Some(reward);
        Ok(awaiting.clone())
    }

    /// Forgets that the decision was learned from (learning it failed).
    fn untake(&self, run: &RunId, step: &StepId) {
        let mut remembered = self
            .remembered
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some((_, learned)) = remembered.decisions.get_mut(&(run.clone(), step.clone())) {
            *learned = None;
        }
    }
}

impl Inner {
    /// Learns `reward` for the decision `awaiting` of step `step_id`, and credits the
    /// agent that made it with the reward normalised over the step's rewards.
    pub(crate) fn learn(
        &self,
        awaiting: &Awaiting,
        step_id: &str,
        reward: f64,
    ) -> Result<f64, DecisionError> {
        let normalised = self
            .decisions
            .learn_from_outcome(awaiting.key(step_id), reward)?;
        if let Some(agent) = &awaiting.agent {
            let credited =
                self.registry
                    .credit_reward(agent, &awaiting.task_type, normalised.clamp(0.0, 1.0));
            if let Err(error) = credited {
                // The agent may have left the registry since: the model learned regardless.
                tracing::debug!(
                    agent = %agent,
                    error = &error as &dyn std::error::Error,
                    "the reward is not credited to the agent"
                );
            }
        }
        Ok(normalised)
    }
}

impl Engine {
    /// Learns `reward` for the decision step `step_id` made in run `run`: for a reward
    /// known only after the run ended (P&L hours later), or for a decision whose
    /// `reward` could not be evaluated (`rewardMissing`) or that has none. Each decision
    /// is learned from once; the reward also credits the agent that decided.
    ///
    /// With a store, the run is taken for the moment of the report (so two processes
    /// sharing the store cannot both report it), its journal checked, `rewardLearned`
    /// journaled, then learned: the reward survives a restart. This is blocking I/O.
    /// Without a store, the engine remembers the decisions of the last
    /// [`MAX_REMEMBERED`] decision steps of ended runs.
    ///
    /// # Errors
    /// [`OutcomeError`]: a reward that is not a finite number within ±10^15, a run that
    /// is unknown, has not ended or is held by another engine, a step that made no
    /// decision or did not complete, a decision learned from already, a store or
    /// journal that fails, a decision engine that refuses the reward. On an error
    /// nothing is journaled or learned.
    pub fn report_outcome(
        &self,
        run: &RunId,
        step_id: &str,
        reward: f64,
    ) -> Result<f64, OutcomeError> {
        let step = StepId::new(step_id);
        if !reward.is_finite() || reward.abs() > MAX_ABS_REWARD {
            return Err(OutcomeError::BadReward {
                run: run.clone(),
                step,
                reward,
            });
        }
        if self.inner.controls.is_live(run) {
            return Err(OutcomeError::NotEnded { run: run.clone() });
        }
        match self.inner.journal.as_ref().map(|journal| {
            (
                Arc::clone(&journal.store),
                Arc::clone(&journal.owner),
                journal.lease,
            )
        }) {
            Some((store, owner, lease)) => {
                self.report_journaled(&*store, &owner, lease, run, step, reward)
            }
            None => {
                let awaiting = self.inner.outcomes.take(run, &step, reward)?;
                self.inner
                    .learn(&awaiting, step.as_str(), reward)
                    .map_err(|source| {
                        self.inner.outcomes.untake(run, &step);
                        OutcomeError::Learn {
                            run: run.clone(),
                            step: step.clone(),
                            source,
                        }
                    })
            }
        }
    }

    /// [`report_outcome`](Self::report_outcome) with a store.
    fn report_journaled(
        &self,
        store: &dyn RunStore,
        owner: &str,
        lease: std::time::Duration,
        run: &RunId,
        step: StepId,
        reward: f64,
    ) -> Result<f64, OutcomeError> {
        let failed = |source: StoreError| OutcomeError::Store {
            run: run.clone(),
            source: Arc::new(source),
        };
        let held = match store.claim(run, owner, Utc::now(), lease_until(lease)) {
            Ok(held) => held,
            Err(StoreError::Held { owner, .. }) => {
                return Err(OutcomeError::Held {
                    run: run.clone(),
                    owner,
                });
            }
            Err(StoreError::NoRun { .. }) => {
                return Err(OutcomeError::UnknownRun {
                    run: run.clone(),
                    remembered: false,
                });
            }
            Err(error) => return Err(failed(error)),
        };
        let reported = (|| {
            let entries = store.load(run).map_err(failed)?;
            let state = RunState::fold(&entries).map_err(|source| OutcomeError::Journal {
                run: run.clone(),
                source,
            })?;
            let awaiting = self.awaiting(run, &state, &step)?;
            let learned = JournalEntry::RewardLearned {
                step_id: step.clone(),
                reward,
                reported: true,
                at: self.inner.clock.now(),
            };
            let append = Append {
                lease: &held,
                entries: std::slice::from_ref(&learned),
            };
            let until = lease_until(lease);
            if let Some(Err(error)) = store.commit(&[append], until).pop() {
                return Err(failed(error));
            }
            Ok(awaiting)
        })();
        if let Err(error) = store.release(&held) {
            // The lease runs out by itself; the report stands.
            tracing::warn!(run = %run, error = &error as &dyn std::error::Error, "cannot give the run back after reporting its outcome");
        }
        let awaiting = reported?;
        // Journaled: the reward is learned now, and again from the journal after a
        // restart, whatever the model says here.
        self.inner
            .learn(&awaiting, step.as_str(), reward)
            .map_err(|source| OutcomeError::Learn {
                run: run.clone(),
                step,
                source,
            })
    }

    /// The decision of `step` in the journaled run `state`, if a reward may go to it.
    fn awaiting(
        &self,
        run: &RunId,
        state: &RunState,
        step: &StepId,
    ) -> Result<Awaiting, OutcomeError> {
        if !state.status.is_final() {
            return Err(OutcomeError::NotEnded { run: run.clone() });
        }
        let Some(decision) = state.decisions.get(step) else {
            return Err(OutcomeError::NoDecision {
                run: run.clone(),
                step: step.clone(),
            });
        };
        if let Some(reward) = decision.reward {
            return Err(OutcomeError::AlreadyLearned {
                run: run.clone(),
                step: step.clone(),
                reward,
            });
        }
        let step_state = state.steps.get(step);
        if step_state.is_none_or(|done| done.status != StepStatus::Completed) {
            return Err(OutcomeError::NotCompleted {
                run: run.clone(),
                step: step.clone(),
            });
        }
        let agent = step_state.and_then(|done| done.agent_id.clone());
        let plan = self
            .workflow_version(&state.workflow_id, &state.version)
            .or_else(|| self.workflow(&state.workflow_id));
        let task = plan.as_ref().and_then(|plan| {
            let index = plan.index_of(step.as_str())?;
            plan.step(index)?.agent_task()
        });
        Ok(Awaiting::of(&state.workflow_id, decision, agent, task))
    }

    /// What this engine learned again from its store's journals when it was built:
    /// every reward journaled by earlier processes (evaluated at a run's end, or
    /// reported), learned in the order the runs started. Empty without a store, or
    /// when the builder was told not to
    /// ([`EngineBuilder::relearn_decisions`](super::EngineBuilder::relearn_decisions)).
    pub fn relearned(&self) -> &Relearned {
        &self.inner.relearned
    }
}

/// Learns every reward the journals of `store`'s rewarded runs hold into `decisions`.
/// Agents are not credited: their performance history starts afresh with the process.
pub(crate) fn relearn(store: &dyn RunStore, decisions: &dyn DecisionEngine) -> Relearned {
    let mut relearned = Relearned::default();
    let runs = match store.rewarded_runs() {
        Ok(runs) => runs,
        Err(error) => {
            tracing::error!(
                error = &error as &dyn std::error::Error,
                "cannot list the rewarded runs: the decision model starts empty"
            );
            relearned.unlisted = Some(Arc::new(error));
            return relearned;
        }
    };
    for run in runs {
        let state = store
            .load(&run)
            .map_err(|source| OutcomeError::Store {
                run: run.clone(),
                source: Arc::new(source),
            })
            .and_then(|entries| {
                RunState::fold(&entries).map_err(|source| OutcomeError::Journal {
                    run: run.clone(),
                    source,
                })
            });
        let state = match state {
            Ok(state) => state,
            Err(error) => {
                tracing::error!(run = %run, error = &error as &dyn std::error::Error, "cannot learn again from the run");
                relearned.failed.push(error);
                continue;
            }
        };
        relearned.runs += 1;
        for (step, decision) in &state.decisions {
            let Some(reward) = decision.reward else {
                continue;
            };
            let awaiting = Awaiting::of(&state.workflow_id, decision, None, None);
            match decisions.learn_from_outcome(awaiting.key(step.as_str()), reward) {
                Ok(_) => relearned.rewards += 1,
                Err(source) => {
                    let error = OutcomeError::Learn {
                        run: run.clone(),
                        step: step.clone(),
                        source,
                    };
                    tracing::error!(
                        error = &error as &dyn std::error::Error,
                        "cannot learn again from the run"
                    );
                    relearned.failed.push(error);
                }
            }
        }
    }
    relearned
}
