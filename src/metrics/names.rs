//! The names of the metrics the engine records (see [the table](super#recording)).

/// Histogram: a run's length in seconds; labels `workflow_type`, `workflow_name`.
pub const WORKFLOW_DURATION_SECONDS: &str = "workflow_duration_seconds";
/// Counter: runs that ended; labels `workflow_type`, `success` (`"true"`/`"false"`).
pub const WORKFLOW_SUCCESS_TOTAL: &str = "workflow_success_total";
/// Counter: runs that ended; labels `workflow_name`, `status` (the final status).
pub const WORKFLOW_RUNS_TOTAL: &str = "workflow_runs_total";
/// Histogram: a step's work in seconds; labels `workflow_name`, `step_id`, `task_type`.
pub const STEP_DURATION_SECONDS: &str = "step_duration_seconds";
/// Counter: calls to agents; labels `workflow_name`, `step_id`, `outcome`.
pub const STEP_ATTEMPTS_TOTAL: &str = "step_attempts_total";
/// Gauge: an agent's busy slots / slots; label `agent_id`.
pub const AGENT_UTILIZATION_RATIO: &str = "agent_utilization_ratio";
/// Gauge: calls waiting for a slot; label `agent_type`.
pub const AGENT_CALLS_WAITING: &str = "agent_calls_waiting";
/// Histogram: a decision's reward; labels `workflow_name`, `step_id`, `option`.
pub const DECISION_REWARD: &str = "decision_reward";
/// Histogram: one journal commit in seconds; label `store`.
pub const JOURNAL_COMMIT_SECONDS: &str = "journal_commit_seconds";
/// Gauge: tokens in a budget bucket; label `budget`.
pub const BUDGET_AVAILABLE: &str = "budget_available";

/// Every name, in the order of the table.
pub const ALL: [&str; 10] = [
    WORKFLOW_DURATION_SECONDS,
    WORKFLOW_SUCCESS_TOTAL,
    WORKFLOW_RUNS_TOTAL,
    STEP_DURATION_SECONDS,
    STEP_ATTEMPTS_TOTAL,
    AGENT_UTILIZATION_RATIO,
    AGENT_CALLS_WAITING,
    DECISION_REWARD,
    JOURNAL_COMMIT_SECONDS,
    BUDGET_AVAILABLE,
];
