//! The entries of a run's journal.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::agent::AgentId;
use crate::definition::{DecisionPolicy, StepId, TaskType};
use crate::run::{FailureKind, RecoveryDecision, RunError, RunId, RunStatus, value_depth};

/// One thing that happened to a run, as the engine journals it.
///
/// A run's journal is the list of its entries in the order they were appended; its state
/// is their fold ([`RunState::fold`](super::RunState::fold)). Entries are stored as JSON,
/// tagged by `type`, with camelCase fields; that format is what stores keep on disk, so
/// variants and fields are only ever added.
///
/// ```
/// # use tradeflow::store::JournalEntry;
/// let entry = JournalEntry::StepSkipped {
///     step_id: "trade".into(),
///     reason: "condition is false".into(),
///     at: "2026-01-05T09:00:00Z".parse()?,
/// };
/// assert_eq!(
///     serde_json::to_string(&entry)?,
///     r#"{"type":"stepSkipped","stepId":"trade","reason":"condition is false","at":"2026-01-05T09:00:00Z"}"#,
/// );
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "type",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
#[non_exhaustive]
pub enum JournalEntry {
    /// The run started. Always the first entry, and only there.
    RunStarted {
        /// The run.
        run_id: RunId,
        /// Its workflow.
        workflow_id: String,
        /// The version of the definition it runs (see [`RunStore::definition`](super::RunStore::definition)).
        version: String,
        /// The run's input, the workflow's `sensitive` fields written `"***"` (a resumed
        /// run gets them back from the engine's `Secrets`).
        input: Value,
        /// The seed of the run's random choices (agent selection, jitter).
        seed: u64,
        /// When.
        at: DateTime<Utc>,
    },
    /// A call to an agent started: one per attempt, per item of a `parallel` step, per
    /// iteration of a `loop` step.
    StepStarted {
        /// The step.
        step_id: StepId,
        /// The item, for a `parallel` step.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        item: Option<usize>,
        /// The iteration, from 1, for a `loop` step.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        iteration: Option<u32>,
        /// The attempt, from 1.
        attempt: u32,
        /// The agent called.
        agent_id: AgentId,
        /// The key the agent receives; a recovery re-makes the call with the same key.
        idempotency_key: String,
        /// When.
        at: DateTime<Utc>,
    },
    /// A call whose outcome is unknown (`OUTCOME_UNKNOWN`, or a side-effect step's own
    /// timeout, or a side-effect call a crash cut off) is being reconciled: the step's
    /// `reconcile` task was sent to `agent_id` with the call's idempotency key. It is not
    /// a call of the step (it counts no attempt) and ends none: the call it asks about
    /// stays in flight until the step ends or calls again, so a crash before the answer
    /// reconciles again.
    ReconcileStarted {
        /// The step.
        step_id: StepId,
        /// The item, for a `parallel` step.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        item: Option<usize>,
        /// The iteration, from 1, for a `loop` step.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        iteration: Option<u32>,
        /// The attempt asked about.
        attempt: u32,
        /// The agent asked.
        agent_id: AgentId,
        /// The key of the call asked about.
        idempotency_key: String,
        /// The reconcile task's type (`ORDER_STATUS`).
        task_type: TaskType,
        /// When.
        at: DateTime<Utc>,
    },
    /// A step completed.
    StepCompleted {
        /// The step.
        step_id: StepId,
        /// Its output (with `outputMapping` applied), the workflow's `sensitive` fields
        /// written `"***"`.
        output: Value,
        /// Calls made, all agents together.
        attempts: u32,
        /// The agent whose result it is.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        agent_id: Option<AgentId>,
        /// For `parallel` steps: the agent of each item, in input order.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        agent_ids: Option<Vec<AgentId>>,
        /// For `human_approval` steps: who approved.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        approved_by: Option<String>,
        /// When.
        at: DateTime<Utc>,
    },
    /// A step failed (a recovery may still follow).
    StepFailed {
        /// The step.
        step_id: StepId,
        /// Why.
        kind: FailureKind,
        /// What happened.
        message: String,
        /// Calls made, all agents together.
        attempts: u32,
        /// When.
        at: DateTime<Utc>,
    },
    /// A step was skipped.
    StepSkipped {
        /// The step.
        step_id: StepId,
        /// Why.
        reason: String,
        /// When.
        at: DateTime<Utc>,
    },
    /// A `human_approval` step waits for an answer.
    StepWaiting {
        /// The step.
        step_id: StepId,
        /// What the approver is asked to approve (the step's resolved parameters), the
        /// workflow's `sensitive` fields written `"***"`.
        parameters: Value,
        /// When.
        at: DateTime<Utc>,
    },
    /// A person (or the approval timeout) answered a waiting step.
    StepAnswered {
        /// The step.
        step_id: StepId,
        /// Approved or rejected.
        approved: bool,
        /// Who answered.
        by: String,
        /// Why.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        comment: Option<String>,
        /// When.
        at: DateTime<Utc>,
    },
    /// One approval of a step that needs a quorum of approvers (`approval.quorum`),
    /// counted before the quorum is reached; the final `stepAnswered` follows once it is.
    ApprovalCounted {
        /// The step.
        step_id: StepId,
        /// Who approved.
        by: String,
        /// Why.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        comment: Option<String>,
        /// When.
        at: DateTime<Utc>,
    },
    /// An approval was void: the step's parameters changed (an adaptation now holds, or
    /// no longer does) since the approver was asked; the step asks again (a new
    /// `stepWaiting` follows) and approvals counted before are void too.
    ApprovalVoided {
        /// The step.
        step_id: StepId,
        /// Whose approval was void.
        by: String,
        /// The hash of the parameters the approver was shown (`security::canonical_hash`).
        asked: String,
        /// The hash of the parameters the step has now.
        now: String,
        /// When.
        at: DateTime<Utc>,
    },
    /// Self-healing chose how to recover from a step's failure (journaled with the
    /// `stepFailed` it follows, in one append).
    RecoveryDecided {
        /// The step that failed.
        step_id: StepId,
        /// The strategy, its estimate (finite numbers) and the failure.
        decision: RecoveryDecision,
        /// When.
        at: DateTime<Utc>,
    },
    /// A `ROLLBACK` returned part of the run to a checkpoint: the steps in `redo` are
    /// pending again and run again (with new idempotency keys: see
    /// [`StepState::generation`](super::StepState::generation)).
    RolledBack {
        /// The step whose failure the rollback recovers.
        step_id: StepId,
        /// The checkpoint returned to: the step after which it was taken (`None`: the
        /// run's start).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to_checkpoint: Option<StepId>,
        /// The steps that run again, in plan order.
        redo: Vec<StepId>,
        /// When.
        at: DateTime<Utc>,
    },
    /// A checkpoint a `ROLLBACK` recovery can return to: taken after every completed
    /// step, in the same append as its `stepCompleted`.
    Checkpoint {
        /// The step after which it was taken.
        after_step: StepId,
        /// When.
        at: DateTime<Utc>,
    },
    /// A trigger started the run (right after `runStarted`, in the same append).
    RunTriggered {
        /// Which trigger, as `triggers[<n>] (<TYPE>)`, with what fired it.
        trigger: String,
        /// When it fired.
        at: DateTime<Utc>,
    },
    /// The time the run's data is as of, given by the host (`RunOptions::data_as_of`) or
    /// by the event that started it (right after `runStarted`, in the same append). A run
    /// whose data time is its input's `asOf` journals none: the input is journaled.
    DataAsOf {
        /// The data time.
        as_of: DateTime<Utc>,
        /// When the run started.
        at: DateTime<Utc>,
    },
    /// The user the host started the run for ([`RunOptions::user`]; right after
    /// `runStarted`, in the same append). A run recovered after a restart keeps its
    /// starter, so that the person who started it still cannot approve its steps.
    ///
    /// [`RunOptions::user`]: crate::engine::RunOptions::user
    StartedBy {
        /// Who started the run.
        user: String,
        /// When.
        at: DateTime<Utc>,
    },
    /// The host paused the run.
    RunPaused {
        /// Who paused it (absent in journals written before pauses named their user).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
        /// When.
        at: DateTime<Utc>,
    },
    /// The host resumed the run.
    RunResumed {
        /// Who resumed it (absent in journals written before resumptions named their
        /// user).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
        /// When.
        at: DateTime<Utc>,
    },
    /// The host asked to cancel the run; [`RunEnded`](Self::RunEnded) follows.
    RunCancelled {
        /// Who cancelled.
        by: String,
        /// When.
        at: DateTime<Utc>,
    },
    /// A `decision` step with options chose one, before its first call. A run
    /// recovered after a crash keeps the choice.
    DecisionMade {
        /// The step.
        step_id: StepId,
        /// The option chosen.
        option: String,
        /// The value of the step's `contextKey` (`""` without one): which model chose.
        context_key: String,
        /// The policy that chose.
        policy: DecisionPolicy,
        /// Every option's prior score, by option id.
        prior_scores: BTreeMap<String, f64>,
        /// When.
        at: DateTime<Utc>,
    },
    /// A decision's reward was learned from: evaluated when the run ended (before
    /// `runEnded`, in the same append) or reported by the host later (after it). At
    /// most once per decision.
    RewardLearned {
        /// The decision step.
        step_id: StepId,
        /// The reward (a finite number).
        reward: f64,
        /// Reported by the host (`Engine::report_outcome`) rather than evaluated.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        reported: bool,
        /// When.
        at: DateTime<Utc>,
    },
    /// A decision's reward could not be evaluated when the run ended (the step it reads
    /// did not complete, the path is missing, the value is not a number): nothing was
    /// learned. The host may still report one.
    RewardMissing {
        /// The decision step.
        step_id: StepId,
        /// Why.
        reason: String,
        /// When.
        at: DateTime<Utc>,
    },
    /// The workflow's adaptations that applied to a step as it was about to start (in
    /// the order they applied; empty when none held), before its first call. A run
    /// recovered after a crash applies exactly these again.
    AdaptationsApplied {
        /// The step.
        step_id: StepId,
        /// The ids of the adaptations applied.
        ids: Vec<String>,
        /// When.
        at: DateTime<Utc>,
    },
    /// The run ended. Always the last entry, but for rewards reported afterwards.
    RunEnded {
        /// How (a final status).
        status: RunStatus,
        /// The failure that ended it, if one did.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<RunError>,
        /// When.
        at: DateTime<Utc>,
    },
}

impl JournalEntry {
    /// The entry's type as stored (`"stepStarted"`).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::RunStarted { .. } => "runStarted",
            Self::StepStarted { .. } => "stepStarted",
            Self::ReconcileStarted { .. } => "reconcileStarted",
            Self::StepCompleted { .. } => "stepCompleted",
            Self::StepFailed { .. } => "stepFailed",
            Self::StepSkipped { .. } => "stepSkipped",
            Self::StepWaiting { .. } => "stepWaiting",
            Self::StepAnswered { .. } => "stepAnswered",
            Self::ApprovalCounted { .. } => "approvalCounted",
            Self::ApprovalVoided { .. } => "approvalVoided",
            Self::RecoveryDecided { .. } => "recoveryDecided",
            Self::RolledBack { .. } => "rolledBack",
            Self::Checkpoint { .. } => "checkpoint",
            Self::RunTriggered { .. } => "runTriggered",
            Self::DataAsOf { .. } => "dataAsOf",
            Self::StartedBy { .. } => "startedBy",
            Self::RunPaused { .. } => "runPaused",
            Self::RunResumed { .. } => "runResumed",
            Self::RunCancelled { .. } => "runCancelled",
            Self::RunEnded { .. } => "runEnded",
            Self::DecisionMade { .. } => "decisionMade",
            Self::RewardLearned { .. } => "rewardLearned",
            Self::RewardMissing { .. } => "rewardMissing",
            Self::AdaptationsApplied { .. } => "adaptationsApplied",
        }
    }

    /// The step the entry is about (for a checkpoint, the step it follows).
    pub fn step_id(&self) -> Option<&StepId> {
        match self {
            Self::StepStarted { step_id, .. }
            | Self::ReconcileStarted { step_id, .. }
            | Self::StepCompleted { step_id, .. }
            | Self::StepFailed { step_id, .. }
            | Self::StepSkipped { step_id, .. }
            | Self::StepWaiting { step_id, .. }
            | Self::StepAnswered { step_id, .. }
            | Self::ApprovalCounted { step_id, .. }
            | Self::ApprovalVoided { step_id, .. }
            | Self::RecoveryDecided { step_id, .. }
            | Self::RolledBack { step_id, .. }
            | Self::DecisionMade { step_id, .. }
            | Self::RewardLearned { step_id, .. }
            | Self::RewardMissing { step_id, .. }
            | Self::AdaptationsApplied { step_id, .. }
            | Self::Checkpoint {
                after_step: step_id,
                ..
            } => Some(step_id),
            Self::RunStarted { .. }
            | Self::RunTriggered { .. }
            | Self::DataAsOf { .. }
            | Self::StartedBy { .. }
            | Self::RunPaused { .. }
            | Self::RunResumed { .. }
            | Self::RunCancelled { .. }
            | Self::RunEnded { .. } => None,
        }
    }

    /// When it happened (from the engine's clock).
    pub fn at(&self) -> DateTime<Utc> {
        match self {
            Self::RunStarted { at, .. }
            | Self::StepStarted { at, .. }
            | Self::ReconcileStarted { at, .. }
            | Self::StepCompleted { at, .. }
            | Self::StepFailed { at, .. }
            | Self::StepSkipped { at, .. }
            | Self::StepWaiting { at, .. }
            | Self::StepAnswered { at, .. }
            | Self::ApprovalCounted { at, .. }
            | Self::ApprovalVoided { at, .. }
            | Self::RecoveryDecided { at, .. }
            | Self::RolledBack { at, .. }
            | Self::Checkpoint { at, .. }
            | Self::RunTriggered { at, .. }
            | Self::DataAsOf { at, .. }
            | Self::StartedBy { at, .. }
            | Self::RunPaused { at, .. }
            | Self::RunResumed { at, .. }
            | Self::RunCancelled { at, .. }
            | Self::DecisionMade { at, .. }
            | Self::RewardLearned { at, .. }
            | Self::RewardMissing { at, .. }
            | Self::AdaptationsApplied { at, .. }
            | Self::RunEnded { at, .. } => *at,
        }
    }

    /// Why a store cannot keep the entry in run `run`'s journal, if it cannot. Every
    /// store checks this before writing, so all of them accept the same entries and
    /// every kept entry reads back as written.
    pub(super) fn problem(&self, run: &RunId) -> Option<&'static str> {
        match self {
            Self::RunStarted { run_id, .. } if run_id != run => {
                Some("`runStarted` names another run")
            }
            // JSON has no NaN or infinity: serde_json would write `null`, which does not
            // read back as an f64.
            Self::RecoveryDecided { decision, .. }
                if ![decision.confidence, decision.cost, decision.score]
                    .iter()
                    .all(|number| number.is_finite()) =>
            {
                Some("`confidence`, `cost` and `score` must be finite")
            }
            Self::DecisionMade { prior_scores, .. }
                if !prior_scores.values().all(|score| score.is_finite()) =>
            {
                Some("`priorScores` must be finite")
            }
            Self::RewardLearned { reward, .. } if !reward.is_finite() => {
                Some("`reward` must be finite")
            }
            _ => self
                .values()
                .any(|value| value_depth(value, MAX_JOURNAL_DEPTH) > MAX_JOURNAL_DEPTH)
                .then_some("a value nests deeper than 100 levels: it would not read back"),
        }
    }

    /// The JSON values the entry carries (input, output, parameters).
    fn values(&self) -> impl Iterator<Item = &Value> {
        match self {
            Self::RunStarted { input: value, .. }
            | Self::StepCompleted { output: value, .. }
            | Self::StepWaiting {
                parameters: value, ..
            } => Some(value),
            _ => None,
        }
        .into_iter()
    }
}

/// How deep a value in a journal entry may nest: the entry adds a level or two, and JSON
/// parsers bound their recursion (serde_json's at 128).
const MAX_JOURNAL_DEPTH: usize = 100;
