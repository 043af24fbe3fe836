//! What an engine and its runs share: [`Inner`], behind the engine's `Arc`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};

use super::approvals::Approvals;
use super::catalogue::Catalogue;
use super::control::Controls;
use super::durable::Journal;
use super::event::Listeners;
use super::options::RunIds;
use super::outcome::{Outcomes, Relearned};
use super::{AgentCheck, RunEvent};
use crate::agent::{AgentRegistry, LoadBalancer};
use crate::clock::Clock;
use crate::decision::DecisionEngine;
use crate::definition::LoadBalancing;
use crate::resource::ResourceManager;
use crate::run::RunId;

/// The engine's state, shared by the engine's handles and every run's future.
pub(crate) struct Inner {
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) registry: Arc<AgentRegistry>,
    pub(crate) decisions: Arc<dyn DecisionEngine>,
    pub(super) listeners: Listeners,
    /// The workflows kept, by id and version.
    pub(super) catalogue: Catalogue,
    /// The steps waiting for an answer.
    pub(super) approvals: Arc<Approvals>,
    /// One balancer of each kind, shared by runs (round robin keeps its position).
    pub(super) balancers: [Arc<dyn LoadBalancer>; 4],
    pub(crate) default_balancing: LoadBalancing,
    /// The host's balancer, the default of steps that name no strategy when set.
    pub(super) host_balancer: Option<Arc<dyn LoadBalancer>>,
    /// What runs derive their seeds from.
    pub(super) seed: u64,
    /// Runs started so far (numbers `run-N` ids).
    pub(super) runs: AtomicU64,
    pub(crate) max_output_bytes: usize,
    /// Where runs are journaled, and the writer that appends; none: nothing is.
    pub(super) journal: Option<Journal>,
    /// How runs the host does not name are named.
    pub(super) run_ids: RunIds,
    /// The live runs' controls (pause, resume, cancel).
    pub(super) controls: Arc<Controls>,
    /// Where `resourceRequirements` are taken from; none: they are not enforced.
    pub(crate) resources: Option<Arc<dyn ResourceManager>>,
    /// Whether `start` checks a workflow's agents first.
    pub(super) agent_check: AgentCheck,
    /// Without a store: the decisions of ended runs, for the host's outcome reports.
    pub(crate) outcomes: Outcomes,
    /// What was learned again from the store's journals when the engine was built.
    pub(super) relearned: Relearned,
    /// The host's conditions, rules added at run time, and calls measured for
    /// adaptations.
    pub(crate) adapting: super::adapt::Adapting,
    /// The engine's budgets and the workflows', and the calls waiting for them.
    pub(crate) budgets: super::budgets::Budgets,
    /// The kill switch rules and which have tripped.
    pub(crate) kill_switch: Arc<crate::safety::KillSwitch>,
    /// The audit log, and the entries waiting for it.
    pub(crate) audit: super::audit::Auditor,
    /// Who may do what, four eyes, and the analyzers run before a run starts.
    pub(super) guard: super::guard::Guard,
    /// Restores the sensitive values a recovered run's journal holds as `"***"`.
    pub(super) secrets: Option<Arc<dyn super::Secrets>>,
    /// The metrics' hooks and the performance report's aggregation.
    pub(crate) telemetry: crate::metrics::Telemetry,
}

impl Inner {
    /// The built-in balancer of `kind`; without one, the host's balancer if the engine
    /// has one, else the built-in default.
    pub(crate) fn balancer(&self, kind: Option<LoadBalancing>) -> &dyn LoadBalancer {
        if let (None, Some(host)) = (kind, &self.host_balancer) {
            return &**host;
        }
        let index = match kind.unwrap_or(self.default_balancing) {
            LoadBalancing::RoundRobin => 0,
            LoadBalancing::Weighted => 1,
            LoadBalancing::LeastConnections => 2,
            LoadBalancing::PowerOfTwoChoices => 3,
        };
        &*self.balancers[index]
    }

    /// A name for a new run the host did not name (see [`RunIds`]).
    pub(crate) fn new_run_id(&self, now: DateTime<Utc>) -> RunId {
        match self.run_ids {
            RunIds::Numbered => {
                let number = self.runs.fetch_add(1, Ordering::Relaxed) + 1;
                RunId::new(format!("run-{number}"))
            }
            RunIds::TimeOrdered => {
                let seconds = u64::try_from(now.timestamp()).unwrap_or(0);
                let time = uuid::Timestamp::from_unix(
                    uuid::NoContext,
                    seconds,
                    now.timestamp_subsec_nanos(),
                );
                RunId::new(format!("run-{}", uuid::Uuid::new_v7(time)))
            }
        }
    }

    /// Whether anyone listens to run events (events are built only then).
    pub(crate) fn listening(&self) -> bool {
        self.listeners.active()
    }

    /// Emits the event `event` builds, when anyone listens.
    pub(crate) fn emit(&self, event: impl FnOnce() -> RunEvent) {
        if self.listeners.active() {
            self.listeners.emit(event());
        }
    }
}
