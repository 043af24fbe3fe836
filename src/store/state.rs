//! A run's state as the fold of its journal.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::JournalEntry;
use crate::agent::AgentId;
use crate::definition::{DecisionPolicy, RecoveryStrategy, StepId};
use crate::run::{RecoveryDecision, RunError, RunId, RunStatus, StepError, StepStatus};

/// The state of a run as its journal says: `RunState::fold(&entries)`.
///
/// Everything the engine needs to resume a run after a crash: which steps ended and how,
/// their outputs, and the calls that were in flight (to re-make with the same
/// idempotency keys).
#[derive(Debug, Clone, PartialEq)]
pub struct RunState {
    /// The run.
    pub run_id: RunId,
    /// Its workflow.
    pub workflow_id: String,
    /// The version of the definition it runs.
    pub version: String,
    /// The run's input.
    pub input: Value,
    /// The seed of the run's random choices.
    pub seed: u64,
    /// Where the run is: a final status once it ended; otherwise `PAUSED` while paused,
    /// `WAITING` while a step waits for a person and none runs, else `RUNNING`.
    pub status: RunStatus,
    /// Every step the journal mentions (steps it does not mention are pending).
    pub steps: BTreeMap<StepId, StepState>,
    /// The steps after which checkpoints were taken, oldest first.
    pub checkpoints: Vec<StepId>,
    /// The trigger that started the run, if one did.
    pub trigger: Option<String>,
    /// Who asked to cancel the run, once someone did.
    pub cancelled_by: Option<String>,
    /// The user the host started the run for (`startedBy`), if it named one.
    pub started_by: Option<String>,
    /// When the run started.
    pub started_at: DateTime<Utc>,
    /// When it ended.
    pub ended_at: Option<DateTime<Utc>>,
    /// The failure that ended it, if one did.
    pub error: Option<RunError>,
    /// What each `decision` step with options chose, and what it learned.
    pub decisions: BTreeMap<StepId, DecisionState>,
    /// The ids of the adaptations applied to each step as it started (`adaptationsApplied`;
    /// empty when none held). A rollback that runs a step again forgets its entry.
    pub adaptations: BTreeMap<StepId, Vec<String>>,
    /// The time the run's data is as of, when the host or the starting event gave one
    /// (`dataAsOf`); a data time read from the input's `asOf` is not repeated here.
    pub data_as_of: Option<DateTime<Utc>>,
}

/// What a `decision` step chose and learned, as its run's journal says.
#[derive(Debug, Clone, PartialEq)]
pub struct DecisionState {
    /// The option chosen.
    pub option: String,
    /// The value of the step's context key (`""` without one).
    pub context_key: String,
    /// The policy that chose.
    pub policy: DecisionPolicy,
    /// Every option's prior score, by option id.
    pub prior_scores: BTreeMap<String, f64>,
    /// The reward learned from, once it is.
    pub reward: Option<f64>,
    /// Whether the host reported the reward (rather than the run's end evaluating it).
    pub reported: bool,
    /// Why no reward could be evaluated when the run ended, if none could.
    pub reward_missing: Option<String>,
}

/// The state of one step of a run.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StepState {
    /// Where the step is. A step stopped by the run's end is `CANCELLED`.
    pub status: StepStatus,
    /// Its output, once completed.
    pub output: Option<Value>,
    /// Calls made so far, all agents together.
    pub attempts: u32,
    /// The agent whose result the output is.
    pub agent_id: Option<AgentId>,
    /// For `parallel` steps: the agent of each item, in input order; for coordinated
    /// steps: every agent asked, in selection order.
    pub agent_ids: Option<Vec<AgentId>>,
    /// Why the step was skipped.
    pub reason: Option<String>,
    /// For `human_approval` steps: who approved.
    pub approved_by: Option<String>,
    /// The step's last failure, until it completes or recovers (the recovery keeps it).
    pub error: Option<StepError>,
    /// The answer to a `human_approval` step, once given.
    pub answer: Option<Answer>,
    /// The recoveries decided for the step's failures, in order.
    pub recoveries: Vec<RecoveryDecision>,
    /// How often a `ROLLBACK` reset the step: its calls' idempotency keys end in
    /// `/r<generation>` when it is not 0, so agents tell a redone call from the first.
    pub generation: u32,
    /// Calls started and not yet ended, at most one per item and lane (a coordinated
    /// step has one call in flight per agent it asks): what a recovery must re-make,
    /// with the same idempotency keys.
    pub in_flight: Vec<InFlightCall>,
    /// While the step waits for approval: what the approver is asked to approve.
    pub waiting: Option<Value>,
    /// For a `human_approval` step that needs a quorum: who approved so far, in order
    /// (`approvalCounted`), so that a restart keeps the count.
    pub approvals: Vec<String>,
    /// The position of the entry that last failed the step (its `stepFailed`): the order
    /// failures happened in, so the run's error is its first failure.
    pub failed_at: Option<usize>,
    /// When the step began: its first call (`stepStarted`), wait for a person
    /// (`stepWaiting`) or reconcile, since the run started or a rollback redid it. `None`
    /// for a step that ended without beginning (skipped, or a condition evaluated).
    pub started_at: Option<DateTime<Utc>>,
    /// When the step ended: completed, failed, skipped, or cancelled by the run's end.
    /// `None` while it has not (a step that runs again after it ended has not).
    pub ended_at: Option<DateTime<Utc>>,
}

/// A call to an agent that started and has not ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InFlightCall {
    /// The item, for a `parallel` step.
    pub item: Option<usize>,
    /// The iteration, for a `loop` step.
    pub iteration: Option<u32>,
    /// The attempt, from 1.
    pub attempt: u32,
    /// The agent called.
    pub agent_id: AgentId,
    /// The key the agent received.
    pub idempotency_key: String,
    /// When the call started.
    pub started_at: DateTime<Utc>,
}

impl InFlightCall {
    /// For a call of a coordinated step, its lane: the position (from 0) of the agent it
    /// was made for in the step's selection order, read from the key's last segment
    /// `a<k+1>` (the other keys end in a number or `r<generation>`). `None` otherwise.
    pub fn lane(&self) -> Option<usize> {
        let (_, last) = self.idempotency_key.rsplit_once('/')?;
        let number: usize = last.strip_prefix('a')?.parse().ok()?;
        number.checked_sub(1)
    }
}

/// The answer to a `human_approval` step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// Approved or rejected.
    pub approved: bool,
    /// Who answered.
    pub by: String,
    /// Why.
    pub comment: Option<String>,
    /// When.
    pub at: DateTime<Utc>,
}

/// Why a journal does not describe a run. Each names the entry at fault by its index.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FoldError {
    /// The journal has no entries.
    #[error("the journal is empty")]
    Empty,
    /// The first entry is not `runStarted`.
    #[error("entry {index} is `{kind}`, but a journal starts with `runStarted`")]
    NotStarted {
        /// The entry (always 0).
        index: usize,
        /// Its type.
        kind: &'static str,
    },
    /// A second `runStarted`.
    #[error("entry {index} starts the run again")]
    StartedTwice {
        /// The entry.
        index: usize,
    },
    /// An entry after `runEnded`.
    #[error("entry {index} (`{kind}`) follows the run's end")]
    AfterEnd {
        /// The entry.
        index: usize,
        /// Its type.
        kind: &'static str,
    },
    /// A step entry the step's state does not allow: a step completing, failing or being
    /// skipped after it ended (a completion journaled twice, say).
    #[error("entry {index} (`{kind}`) for step `{step}`, which had ended ({status})")]
    NotAllowed {
        /// The entry.
        index: usize,
        /// Its type.
        kind: &'static str,
        /// The step.
        step: StepId,
        /// The step's status before the entry.
        status: StepStatus,
    },
    /// A decision entry the journal does not allow: a second decision for a step, a
    /// reward without a decision, a second reward.
    #[error("entry {index} (`{kind}`) for step `{step}`: {problem}")]
    Decision {
        /// Its position.
        index: usize,
        /// Its type.
        kind: &'static str,
        /// The step.
        step: StepId,
        /// What is wrong.
        problem: &'static str,
    },
    /// A second `adaptationsApplied` for a step that has not been returned to pending
    /// since its first (by a `rolledBack` that redoes it or a `recoveryDecided`).
    #[error(
        "entry {index} (`adaptationsApplied`) for step `{step}`: the step was adapted already and has not run again since"
    )]
    AdaptedTwice {
        /// Its position.
        index: usize,
        /// The step.
        step: StepId,
    },
    /// `runEnded` with a status that is not final.
    #[error("entry {index} ends the run as `{status}`, which is not a final status")]
    NotFinal {
        /// The entry.
        index: usize,
        /// The status it gave.
        status: RunStatus,
    },
}

impl RunState {
    /// Folds a run's journal, in append order, into its state.
    ///
    /// The journal's grammar is checked: one `runStarted` first, nothing after
    /// `runEnded`, which gives a final status, and no step completing, failing or being
    /// skipped once it has ended (only a recovery or a rollback starts it again), and no
    /// step adapted twice (`adaptationsApplied`) unless a rollback redid it or a
    /// recovery returned it to pending in between. Step entries are taken as the engine
    /// wrote them (an approval step completes without a call; a failed step may start
    /// again after a recovery). A step started again after it ended is being re-run:
    /// its old output and skip reason are dropped. A new call on an item ends the
    /// previous call on that item, because one item's calls (attempts, iterations) are
    /// sequential. When the run ends, steps still running or waiting become
    /// `CANCELLED` and nothing stays in flight.
    ///
    /// # Errors
    /// A [`FoldError`] naming the first entry that breaks the grammar.
    ///
    /// # Complexity
    /// O(entries × log steps), plus the in-flight calls of a step per call started.
    ///
    /// # Examples
    /// ```
    /// # use serde_json::json;
    /// # use tradeflow::engine::{RunStatus, StepStatus};
    /// # use tradeflow::store::{JournalEntry, RunState};
    /// let at = "2026-01-05T09:00:00Z".parse()?;
    /// let state = RunState::fold(&[
    ///     JournalEntry::RunStarted {
    ///         run_id: "run-1".into(), workflow_id: "momentum".into(), version: "1".into(),
    ///         input: json!({}), seed: 7, at,
    ///     },
    ///     JournalEntry::StepStarted {
    ///         step_id: "signal".into(), item: None, iteration: None, attempt: 1,
    ///         agent_id: "sig-1".into(), idempotency_key: "run-1/signal/1".into(), at,
    ///     },
    /// ])?;
    /// assert_eq!(state.status, RunStatus::Running);
    /// let signal = &state.steps["signal"];
    /// assert_eq!(signal.status, StepStatus::Running);
    /// assert_eq!(signal.in_flight[0].idempotency_key, "run-1/signal/1");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn fold(entries: &[JournalEntry]) -> Result<RunState, FoldError> {
        let (first, rest) = entries.split_first().ok_or(FoldError::Empty)?;
        let mut state = Self::started(first)?;
        let mut paused = false;
        // Steps a recovery returned to pending since their `adaptationsApplied`: they may
        // be adapted again (a rollback forgets the adaptations, which allows it too).
        let mut may_adapt_again = BTreeSet::new();
        for (index, entry) in rest.iter().enumerate().map(|(i, e)| (i + 1, e)) {
            // Only a reward the host reports may follow the end.
            let reported = matches!(entry, JournalEntry::RewardLearned { .. });
            if state.ended_at.is_some() && !reported {
                return Err(FoldError::AfterEnd {
                    index,
                    kind: entry.kind(),
                });
            }
            match entry {
                JournalEntry::RunStarted { .. } => return Err(FoldError::StartedTwice { index }),
                JournalEntry::RunTriggered { trigger, .. } => state.trigger = Some(trigger.clone()),
                JournalEntry::DataAsOf { as_of, .. } => state.data_as_of = Some(*as_of),
                JournalEntry::StartedBy { user, .. } => state.started_by = Some(user.clone()),
                JournalEntry::RunPaused { .. } => paused = true,
                JournalEntry::RunResumed { .. } => paused = false,
                JournalEntry::RunCancelled { by, .. } => state.cancelled_by = Some(by.clone()),
                JournalEntry::Checkpoint { after_step, .. } => {
                    state.checkpoints.push(after_step.clone());
                }
                JournalEntry::RolledBack {
                    step_id,
                    to_checkpoint,
                    redo,
                    ..
                } => state.roll_back(step_id, to_checkpoint.as_ref(), redo),
                JournalEntry::DecisionMade { .. }
                | JournalEntry::RewardLearned { .. }
                | JournalEntry::RewardMissing { .. } => state.decision(entry, index)?,
                JournalEntry::AdaptationsApplied { step_id, ids, .. } => {
                    let again = may_adapt_again.remove(step_id);
                    if state.adaptations.contains_key(step_id) && !again {
                        return Err(FoldError::AdaptedTwice {
                            index,
                            step: step_id.clone(),
                        });
                    }
                    state.adaptations.insert(step_id.clone(), ids.clone());
                }
                JournalEntry::RunEnded { status, error, at } => {
                    if !status.is_final() {
                        return Err(FoldError::NotFinal {
                            index,
                            status: *status,
                        });
                    }
                    state.end(*status, error.clone(), *at);
                }
                step_entry => {
                    if let Some(step_id) = step_entry.step_id() {
                        let step = state.steps.entry(step_id.clone()).or_default();
                        let ends = matches!(
                            step_entry,
                            JournalEntry::StepCompleted { .. }
                                | JournalEntry::StepFailed { .. }
                                | JournalEntry::StepSkipped { .. }
                        );
                        if ends && step.status.is_final() {
                            return Err(FoldError::NotAllowed {
                                index,
                                kind: step_entry.kind(),
                                step: step_id.clone(),
                                status: step.status,
                            });
                        }
                        step.apply(step_entry, index);
                        if matches!(step_entry, JournalEntry::RecoveryDecided { .. }) {
                            may_adapt_again.insert(step_id.clone());
                        }
                    }
                }
            }
        }
        if state.ended_at.is_none() {
            state.status = state.live_status(paused);
        }
        Ok(state)
    }

    /// The state a journal's first entry starts: it must be `runStarted`.
    fn started(first: &JournalEntry) -> Result<RunState, FoldError> {
        let JournalEntry::RunStarted {
            run_id,
            workflow_id,
            version,
            input,
            seed,
            at,
        } = first
        else {
            return Err(FoldError::NotStarted {
                index: 0,
                kind: first.kind(),
            });
        };
        Ok(RunState {
            run_id: run_id.clone(),
            workflow_id: workflow_id.clone(),
            version: version.clone(),
            input: input.clone(),
            seed: *seed,
            status: RunStatus::Running,
            steps: BTreeMap::new(),
            checkpoints: Vec::new(),
            trigger: None,
            cancelled_by: None,
            started_by: None,
            started_at: *at,
            ended_at: None,
            error: None,
            decisions: BTreeMap::new(),
            adaptations: BTreeMap::new(),
            data_as_of: None,
        })
    }

    /// A rollback for `step_id` returned the steps of `redo` to pending, and the run to
    /// the checkpoint taken after `to_checkpoint` (`None`: the start).
    fn roll_back(&mut self, step_id: &StepId, to_checkpoint: Option<&StepId>, redo: &[StepId]) {
        let keep = to_checkpoint.map_or(0, |checkpoint| {
            self.checkpoints
                .iter()
                .rposition(|taken| taken == checkpoint)
                .map_or(self.checkpoints.len(), |at| at + 1)
        });
        self.checkpoints.truncate(keep);
        for id in redo {
            self.adaptations.remove(id);
            let step = self.steps.entry(id.clone()).or_default();
            // The failed step keeps the story of its recoveries.
            let recoveries = if id == step_id {
                std::mem::take(&mut step.recoveries)
            } else {
                Vec::new()
            };
            *step = StepState {
                generation: step.generation + 1,
                recoveries,
                ..StepState::default()
            };
        }
    }

    /// A decision made, or its reward learned or missing: each at most once, a reward
    /// only after its decision.
    fn decision(&mut self, entry: &JournalEntry, index: usize) -> Result<(), FoldError> {
        let refuse = |step: &StepId, problem: &'static str| FoldError::Decision {
            index,
            kind: entry.kind(),
            step: step.clone(),
            problem,
        };
        match entry {
            JournalEntry::DecisionMade {
                step_id,
                option,
                context_key,
                policy,
                prior_scores,
                ..
            } => {
                if self.decisions.contains_key(step_id) {
                    return Err(refuse(step_id, "the step had decided already"));
                }
                self.decisions.insert(
                    step_id.clone(),
                    DecisionState {
                        option: option.clone(),
                        context_key: context_key.clone(),
                        policy: *policy,
                        prior_scores: prior_scores.clone(),
                        reward: None,
                        reported: false,
                        reward_missing: None,
                    },
                );
            }
            JournalEntry::RewardLearned {
                step_id,
                reward,
                reported,
                ..
            } => {
                let decision = self
                    .decisions
                    .get_mut(step_id)
                    .ok_or_else(|| refuse(step_id, "the step made no decision"))?;
                if decision.reward.is_some() {
                    return Err(refuse(step_id, "the decision was learned from already"));
                }
                decision.reward = Some(*reward);
                decision.reported = *reported;
            }
            JournalEntry::RewardMissing {
                step_id, reason, ..
            } => {
                let decision = self
                    .decisions
                    .get_mut(step_id)
                    .ok_or_else(|| refuse(step_id, "the step made no decision"))?;
                if decision.reward.is_some() || decision.reward_missing.is_some() {
                    return Err(refuse(step_id, "the decision's reward was settled already"));
                }
                decision.reward_missing = Some(reason.clone());
            }
            _ => {}
        }
        Ok(())
    }

    /// The run ended `status`: steps still running or waiting are cancelled, and
    /// nothing stays in flight.
    fn end(&mut self, status: RunStatus, error: Option<RunError>, at: DateTime<Utc>) {
        self.status = status;
        self.error = error;
        self.ended_at = Some(at);
        for step in self.steps.values_mut() {
            if matches!(step.status, StepStatus::Running | StepStatus::Waiting) {
                step.status = StepStatus::Cancelled;
                step.ended_at = Some(at);
            }
            step.end_calls();
        }
    }

    /// Whether the run has ended.
    pub fn is_finished(&self) -> bool {
        self.status.is_final()
    }

    /// Every call in flight, by step: what a recovery re-makes, with the same keys.
    pub fn in_flight(&self) -> impl Iterator<Item = (&StepId, &InFlightCall)> {
        self.steps
            .iter()
            .flat_map(|(id, step)| step.in_flight.iter().map(move |call| (id, call)))
    }

    /// The status of a run that has not ended.
    fn live_status(&self, paused: bool) -> RunStatus {
        let any = |status| self.steps.values().any(|step| step.status == status);
        if paused {
            RunStatus::Paused
        } else if !any(StepStatus::Running) && any(StepStatus::Waiting) {
            RunStatus::Waiting
        } else {
            RunStatus::Running
        }
    }
}

impl StepState {
    /// Applies one entry about this step, entry `index` of the journal.
    fn apply(&mut self, entry: &JournalEntry, index: usize) {
        match entry {
            JournalEntry::StepStarted {
                item,
                iteration,
                attempt,
                agent_id,
                idempotency_key,
                at,
                ..
            } => self.started(InFlightCall {
                item: *item,
                iteration: *iteration,
                attempt: *attempt,
                agent_id: agent_id.clone(),
                idempotency_key: idempotency_key.clone(),
                started_at: *at,
            }),
            JournalEntry::StepCompleted {
                output,
                attempts,
                agent_id,
                agent_ids,
                approved_by,
                at,
                ..
            } => {
                self.status = StepStatus::Completed;
                self.ended_at = Some(*at);
                self.output = Some(output.clone());
                self.attempts = *attempts;
                self.agent_id = agent_id.clone();
                self.agent_ids = agent_ids.clone();
                if approved_by.is_some() {
                    self.approved_by = approved_by.clone();
                }
                self.reason = None;
                self.error = None;
                self.end_calls();
            }
            JournalEntry::StepFailed {
                kind,
                message,
                attempts,
                at,
                ..
            } => {
                self.status = StepStatus::Failed;
                self.ended_at = Some(*at);
                self.failed_at = Some(index);
                self.attempts = *attempts;
                self.error = Some(StepError {
                    kind: *kind,
                    message: message.clone(),
                });
                self.end_calls();
            }
            JournalEntry::StepSkipped { reason, at, .. } => {
                self.status = StepStatus::Skipped;
                self.ended_at = Some(*at);
                self.reason = Some(reason.clone());
                self.end_calls();
            }
            JournalEntry::StepWaiting { parameters, at, .. } => {
                self.begun(*at);
                self.status = StepStatus::Waiting;
                self.waiting = Some(parameters.clone());
            }
            JournalEntry::ApprovalCounted { by, .. } => self.approvals.push(by.clone()),
            JournalEntry::ApprovalVoided { .. } => self.approvals.clear(),
            JournalEntry::StepAnswered {
                approved,
                by,
                comment,
                at,
                ..
            } => self.answered(Answer {
                approved: *approved,
                by: by.clone(),
                comment: comment.clone(),
                at: *at,
            }),
            JournalEntry::RecoveryDecided { decision, .. } => {
                // The step recovers: it is not failed, and runs again (or is skipped), as
                // the next entries say; a step standing aside for its fallback is running
                // in spirit (the run's end cancels it).
                self.status = if decision.strategy == RecoveryStrategy::AlternativePath {
                    StepStatus::Running
                } else {
                    StepStatus::Pending
                };
                self.error = None;
                self.ended_at = None;
                self.recoveries.push(decision.clone());
            }
            // Asks about the call in flight, which stays in flight.
            JournalEntry::ReconcileStarted { at, .. } => self.begun(*at),
            _ => debug_assert!(false, "not a step entry: {}", entry.kind()),
        }
    }

    /// A call started: the one before it on the same item and lane has ended (the calls
    /// of other lanes of a coordinated step go on).
    fn started(&mut self, call: InFlightCall) {
        if self.status.is_final() {
            self.output = None;
            self.reason = None;
        }
        self.begun(call.started_at);
        self.status = StepStatus::Running;
        self.attempts += 1;
        self.waiting = None;
        let lane = call.lane();
        self.in_flight
            .retain(|earlier| earlier.item != call.item || earlier.lane() != lane);
        self.in_flight.push(call);
    }

    /// The step began (again) at `at`: it keeps the time it first began, and has not
    /// ended.
    fn begun(&mut self, at: DateTime<Utc>) {
        self.started_at.get_or_insert(at);
        self.ended_at = None;
    }

    /// A person answered: the engine acts on the answer next (completes or fails the step).
    fn answered(&mut self, answer: Answer) {
        self.status = StepStatus::Running;
        self.waiting = None;
        if answer.approved {
            self.approved_by = Some(answer.by.clone());
        }
        self.answer = Some(answer);
    }

    /// The step ended: nothing of it is in flight or waiting.
    fn end_calls(&mut self) {
        self.in_flight.clear();
        self.waiting = None;
    }
}
