//! What a run's journal says: its fold, checked against the run's report.

use tradeflow::engine::{RunReport, StepStatus};
use tradeflow::run::RunId;
use tradeflow::store::{RunState, RunStore};

/// The state of run `run` as `store`'s journal of it folds.
#[track_caller]
pub fn folded(store: &dyn RunStore, run: &RunId) -> RunState {
    RunState::fold(&store.load(run).expect("the journal loads")).expect("the journal folds")
}

/// Checks that the fold of the run's journal in `store` says what `report` says: the
/// run's status, error and end; each step's status, output, error and attempts, with
/// nothing left in flight; skip reasons; and no step the report does not have.
#[track_caller]
pub fn assert_journal_matches(store: &dyn RunStore, report: &RunReport) {
    let state = folded(store, &report.run_id);
    let shown = report.to_json_pretty();
    assert_eq!(state.status, report.status, "{shown}");
    assert_eq!(state.error, report.error, "{shown}");
    assert_eq!(state.ended_at, Some(report.ended_at), "{shown}");
    for (id, step) in &report.steps {
        let journaled = state.steps.get(id).cloned().unwrap_or_default();
        assert_eq!(journaled.status, step.status, "step `{id}` in {shown}");
        assert_eq!(journaled.output, step.output, "step `{id}` in {shown}");
        assert_eq!(journaled.error, step.error, "step `{id}` in {shown}");
        assert!(journaled.in_flight.is_empty(), "step `{id}` in {shown}");
        if let Some(attempts) = step.attempts {
            assert_eq!(journaled.attempts, attempts, "step `{id}` in {shown}");
        }
        if step.status == StepStatus::Skipped {
            assert_eq!(journaled.reason, step.reason, "step `{id}` in {shown}");
        }
    }
    assert_eq!(
        state.steps.len(),
        report.steps.len(),
        "every step is journaled"
    );
}
