//! Tasks that start workflow runs when they fall due: [`Dispatcher`].
//!
//! A [`TaskScheduler`] only keeps work due at an instant; the dispatcher is the loop a
//! host would otherwise write: wait for the next due task, start a run of the workflow
//! it names, with its input, and hand the run back.
//!
//! # How a task names its run
//! With [`Dispatcher::new`], the payload is a [`WorkflowTask`]: `{workflowId, input}`
//! (serde, camelCase). With [`Dispatcher::mapping`], any payload and a function from the
//! task to the workflow id and [`RunOptions`] (a context, a seed, a version).
//!
//! # Order and time
//! Tasks come out as the scheduler pops them: by due time, then priority (lower first),
//! then scheduling order; a recurring task is scheduled again at its next occurrence
//! when it is popped, so it starts one run per occurrence. The dispatcher waits with
//! [`TaskScheduler::due`], on the scheduler's clock: build the scheduler on the
//! engine's clock (`TaskQueue::new(Arc::clone(engine.clock()))`) so that both read the
//! same time, and a [`VirtualClock`](crate::clock::VirtualClock) plays a week of tasks
//! in microseconds.
//!
//! # What each task gives
//! One [`Dispatched`] per task popped: the run started (recorded as started by
//! `task <id> (<name>)`, in its `RunStarted` event and journal), the task skipped because
//! it was popped past its deadline ([`DueStatus::Missed`]: its moment has passed), or
//! the engine's refusal ([`EngineError`]: an unknown workflow, a host wrapper's refusal).
//! A refusal ends nothing: the dispatcher goes on with the next task. Runs make progress
//! only while the host polls them.
//!
//! # Cost
//! One [`TaskScheduler::due`] and one [`OrchestrationEngine::start`] per task; no thread,
//! no timer of its own, no async runtime.

use std::fmt;
use std::sync::Arc;

use futures::stream::{self, BoxStream, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::tasks::{DueStatus, DueTask, Task, TaskScheduler};
use crate::engine::{EngineError, OrchestrationEngine, Run, RunOptions};

/// The payload of a task that starts a run: which workflow (its latest version), with
/// what input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[non_exhaustive]
pub struct WorkflowTask {
    /// The workflow to run.
    pub workflow_id: String,
    /// The run's input (`${input…}`); `{}` when absent.
    #[serde(default = "empty_object")]
    pub input: Value,
}

fn empty_object() -> Value {
    Value::Object(serde_json::Map::new())
}

impl WorkflowTask {
    /// A run of `workflow_id` with `input`.
    pub fn new(workflow_id: impl Into<String>, input: Value) -> Self {
        Self {
            workflow_id: workflow_id.into(),
            input,
        }
    }
}

type Mapping<T> = dyn Fn(&Task<T>) -> (String, RunOptions) + Send + Sync;

/// Starts a run for each task of a [`TaskScheduler`] as it falls due.
///
/// A [`TaskScheduler`] only keeps work due at an instant; the dispatcher is the loop a
/// host would otherwise write: wait for the next due task, start a run of the workflow
/// it names, with its input, and hand the run back.
///
/// # How a task names its run
/// With [`Dispatcher::new`], the payload is a [`WorkflowTask`]: `{workflowId, input}`
/// (serde, camelCase). With [`Dispatcher::mapping`], any payload and a function from the
/// task to the workflow id and [`RunOptions`] (a context, a seed, a version).
///
/// # Order and time
/// Tasks come out as the scheduler pops them: by due time, then priority (lower first),
/// then scheduling order; a recurring task is scheduled again at its next occurrence
/// when it is popped, so it starts one run per occurrence. The dispatcher waits with
/// [`TaskScheduler::due`], on the scheduler's clock: build the scheduler on the
/// engine's clock (`TaskQueue::new(Arc::clone(engine.clock()))`) so that both read the
/// same time, and a [`VirtualClock`](crate::clock::VirtualClock) plays a week of tasks
/// in microseconds.
///
/// # What each task gives
/// One [`Dispatched`] per task popped: the run started (recorded as started by
/// `task <id> (<name>)`, in its `RunStarted` event and journal), the task skipped because
/// it was popped past its deadline ([`DueStatus::Missed`]: its moment has passed), or
/// the engine's refusal ([`EngineError`]: an unknown workflow, a host wrapper's refusal).
/// A refusal ends nothing: the dispatcher goes on with the next task. Runs make progress
/// only while the host polls them.
///
/// # Cost
/// One [`TaskScheduler::due`] and one [`OrchestrationEngine::start`] per task; no thread,
/// no timer of its own, no async runtime.
///
/// # Examples
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use futures::StreamExt;
/// use serde_json::{Value, json};
/// use tradeflow::agent::{Agent, AgentDescriptor, AgentError, TaskRequest};
/// use tradeflow::clock::VirtualClock;
/// use tradeflow::engine::{Engine, RunStatus};
/// use tradeflow::plan::ExecutionPlan;
/// use tradeflow::scheduler::{Dispatcher, SchedulePolicy, Task, TaskQueue, TaskScheduler, WorkflowTask};
///
/// struct Hedger(AgentDescriptor);
///
/// #[tradeflow::async_trait]
/// impl Agent for Hedger {
///     fn descriptor(&self) -> &AgentDescriptor { &self.0 }
///     async fn execute(&self, request: TaskRequest) -> Result<Value, AgentError> {
///         Ok(request.parameters)
///     }
/// }
///
/// let clock = VirtualClock::starting_at("2026-01-05T09:00:00Z".parse()?);
/// let engine = Engine::builder().clock(clock.clone()).build();
/// engine.register_agent(Arc::new(Hedger(AgentDescriptor::new("h-1", "RISK"))))?;
/// engine.add_plan(ExecutionPlan::from_json(r#"{"id": "hedge", "steps": [{"id": "hedge",
///     "type": "task", "agentCriteria": {"type": "RISK"},
///     "task": {"type": "HEDGE", "parameters": {"book": "${input.book}"}}}]}"#)?);
///
/// let queue = Arc::new(TaskQueue::new(clock.clone()));
/// let task = Task::new("hedge-eu", WorkflowTask::new("hedge", json!({"book": "eu"})));
/// queue.schedule_task(task, SchedulePolicy::after(Duration::from_secs(60)))?;
///
/// let dispatcher = Dispatcher::new(Arc::new(engine), queue);
/// let first = clock.block_on(dispatcher.run().next()).expect("a task falls due");
/// let report = clock.block_on(first.into_run().expect("the run started"));
/// assert_eq!(report.status, RunStatus::Completed);
/// assert_eq!(report.started_at.to_rfc3339(), "2026-01-05T09:01:00+00:00");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Dispatcher<T: Send + Sync + 'static = WorkflowTask> {
    engine: Arc<dyn OrchestrationEngine>,
    scheduler: Arc<dyn TaskScheduler<T>>,
    mapping: Arc<Mapping<T>>,
}

impl<T: Send + Sync + 'static> Clone for Dispatcher<T> {
    fn clone(&self) -> Self {
        Self {
            engine: Arc::clone(&self.engine),
            scheduler: Arc::clone(&self.scheduler),
            mapping: Arc::clone(&self.mapping),
        }
    }
}

impl<T: Send + Sync + 'static> fmt::Debug for Dispatcher<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dispatcher")
            .field("scheduler", &self.scheduler)
            .finish_non_exhaustive()
    }
}

impl Dispatcher<WorkflowTask> {
    /// Starts, for each task of `scheduler` as it falls due, a run of the latest version
    /// of its payload's workflow with its payload's input, on `engine`.
    pub fn new(
        engine: Arc<dyn OrchestrationEngine>,
        scheduler: Arc<dyn TaskScheduler<WorkflowTask>>,
    ) -> Self {
        Self::mapping(engine, scheduler, |task| {
            let payload = task.payload();
            (
                payload.workflow_id.clone(),
                RunOptions::new(payload.input.clone()),
            )
        })
    }
}

impl<T: Send + Sync + 'static> Dispatcher<T> {
    /// Starts, for each task of `scheduler` as it falls due, the run `mapping` names:
    /// a workflow id and the run's options. The dispatcher adds
    /// [`RunOptions::triggered_by`] (`task <id> (<name>)`), and
    /// [`RunOptions::as_host`] when the options name no user (the host scheduled the
    /// task: with permissions, its run is the host's own).
    pub fn mapping(
        engine: Arc<dyn OrchestrationEngine>,
        scheduler: Arc<dyn TaskScheduler<T>>,
        mapping: impl Fn(&Task<T>) -> (String, RunOptions) + Send + Sync + 'static,
    ) -> Self {
        Self {
            engine,
            scheduler,
            mapping: Arc::new(mapping),
        }
    }

    /// Starts the run of one task popped (see [`Dispatcher`]).
    pub fn dispatch(&self, due: DueTask<T>) -> Dispatched<T> {
        let outcome = if due.status() == DueStatus::Missed {
            DispatchOutcome::Missed
        } else {
            let (workflow_id, options) = (self.mapping)(due.task());
            let mut options =
                options.triggered_by(format!("task {} ({})", due.id(), due.task().name()));
            // The host scheduled it: its own, unless the mapping named a user.
            if options.user_name().is_none() {
                options = options.as_host();
            }
            match self.engine.start(&workflow_id, options) {
                Ok(run) => DispatchOutcome::Started(run),
                Err(error) => {
                    tracing::warn!(
                        task = %due.id(),
                        name = due.task().name(),
                        workflow = workflow_id,
                        error = &error as &dyn std::error::Error,
                        "the engine refused to start a due task's run"
                    );
                    DispatchOutcome::Refused(error)
                }
            }
        };
        Dispatched { task: due, outcome }
    }

    /// The tasks as they fall due, each with the run it started (or why none): waits
    /// on the scheduler's clock for the next due task, pops it, starts its run, yields,
    /// and waits again. The stream never ends (more tasks may be scheduled); stop
    /// reading it when you are done (e.g. `take`, or `take_while` on the due time).
    ///
    /// Poll it on any executor, and drive the runs it yields.
    pub fn run(&self) -> BoxStream<'static, Dispatched<T>> {
        stream::unfold(self.clone(), |dispatcher| async move {
            let due = dispatcher.scheduler.due().await;
            let dispatched = dispatcher.dispatch(due);
            Some((dispatched, dispatcher))
        })
        .boxed()
    }
}

/// A task popped by a [`Dispatcher`], and what starting its run gave.
#[derive(Debug)]
#[non_exhaustive]
pub struct Dispatched<T = WorkflowTask> {
    /// The task, as popped (due time, when popped, status).
    pub task: DueTask<T>,
    /// The run started, or why none was.
    pub outcome: DispatchOutcome,
}

impl<T> Dispatched<T> {
    /// The run started, if one was.
    pub fn run(&self) -> Option<&Run> {
        match &self.outcome {
            DispatchOutcome::Started(run) => Some(run),
            DispatchOutcome::Missed | DispatchOutcome::Refused(_) => None,
        }
    }

    /// The run started, to drive, if one was.
    pub fn into_run(self) -> Option<Run> {
        match self.outcome {
            DispatchOutcome::Started(run) => Some(run),
            DispatchOutcome::Missed | DispatchOutcome::Refused(_) => None,
        }
    }
}

/// What dispatching a due task did.
#[derive(Debug)]
#[non_exhaustive]
pub enum DispatchOutcome {
    /// A run started; it makes progress only while polled.
    Started(Run),
    /// The task was popped past its deadline: no run was started.
    Missed,
    /// The engine refused to start the run.
    Refused(EngineError),
}
