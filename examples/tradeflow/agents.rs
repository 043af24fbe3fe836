//! The scripted agents of an agents file, registered on an engine, each recording its
//! calls in the effects file of `--effects` when there is one.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::sync::{Arc, Mutex, PoisonError};

use serde::Serialize;
use serde_json::Value;
use tradeflow::agent::{Agent, AgentDescriptor, AgentError, AgentId, Health, RunId, TaskRequest};
use tradeflow::clock::Clock;
use tradeflow::definition::{StepId, TaskType};
use tradeflow::engine::{Engine, EngineBuilder};
use tradeflow::scale::AgentPool;
use tradeflow::sim::{AgentsFile, scripted_agents, scripted_pools};

use crate::{Problems, files};

/// The engine of `builder`, with the resource pool of `agents` (read from `path`) and
/// its agents registered on `clock`, recording their calls in `effects` when there is
/// one; with the agent pools of its `pools` (their `min` agents registered).
pub(crate) fn engine(
    builder: EngineBuilder,
    agents: &AgentsFile,
    path: &str,
    clock: Arc<dyn Clock>,
    effects: Option<&Arc<Effects>>,
) -> Result<(Engine, Arc<AgentPool>), Problems> {
    // The rules were checked when the file was loaded.
    let builder = files::with_pool(builder, agents);
    let engine = builder
        .kill_switch(&agents.kill_switch)
        .map_err(|problems| vec![format!("{path}: {problems}")])?
        .build();
    let pools = register(&engine, agents, path, clock, effects)?;
    Ok((engine, pools))
}

/// Registers the agents of `agents` (read from `path`) on `clock`, each wrapped to
/// record its calls in `effects` when there is an effects file, and the `min` agents of
/// each of its `pools` (pool agents are not recorded in `effects`).
pub(crate) fn register(
    engine: &Engine,
    agents: &AgentsFile,
    path: &str,
    clock: Arc<dyn Clock>,
    effects: Option<&Arc<Effects>>,
) -> Result<Arc<AgentPool>, Problems> {
    for (index, agent) in scripted_agents(agents, Arc::clone(&clock))
        .into_iter()
        .enumerate()
    {
        let agent = match effects {
            Some(effects) => Arc::new(Recorded {
                agent,
                effects: Arc::clone(effects),
            }),
            None => agent,
        };
        engine
            .register_agent(agent)
            .map_err(|error| vec![format!("{path}: agents[{index}]: {error}")])?;
    }
    let pools = scripted_pools(agents, Arc::clone(engine.registry()), clock)
        .map_err(|error| vec![format!("{path}: pools: {error}")])?;
    Ok(Arc::new(pools))
}

/// The effects file of `--effects`: one JSON line per agent call.
#[derive(Debug)]
pub(crate) struct Effects {
    path: String,
    /// Opened for appending: each line is one `write` at the end of the file.
    file: Mutex<File>,
}

/// One line of the effects file, fields in the order `docs/command.md` lists them.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Effect<'a> {
    run_id: &'a RunId,
    step_id: &'a StepId,
    item: Option<usize>,
    attempt: u32,
    agent_id: &'a AgentId,
    idempotency_key: &'a str,
    /// The task asked for: the step's task, or its `reconcile` task for a call that asks
    /// whether an earlier one took effect.
    task_type: &'a TaskType,
}

impl Effects {
    /// Opens (or creates) the effects file for appending.
    pub(crate) fn open(path: &str) -> Result<Arc<Self>, Problems> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|error| vec![format!("{path}: cannot open the effects file: {error}")])?;
        Ok(Arc::new(Self {
            path: path.to_owned(),
            file: Mutex::new(file),
        }))
    }

    /// Appends the line of a call of `agent` and syncs it to disk, so that a crash right
    /// after cannot lose it.
    fn record(&self, request: &TaskRequest, agent: &AgentId) -> std::io::Result<()> {
        let mut line = serde_json::to_string(&Effect {
            run_id: &request.run_id,
            step_id: &request.step_id,
            item: request.item,
            attempt: request.attempt,
            agent_id: agent,
            idempotency_key: &request.idempotency_key,
            task_type: &request.task_type,
        })?;
        line.push('\n');
        let mut file = self.file.lock().unwrap_or_else(PoisonError::into_inner);
        file.write_all(line.as_bytes())?;
        file.sync_data()
    }
}

/// An agent whose calls are recorded in the effects file before they are made.
struct Recorded {
    agent: Arc<dyn Agent>,
    effects: Arc<Effects>,
}

#[async_trait::async_trait]
impl Agent for Recorded {
    fn descriptor(&self) -> &AgentDescriptor {
        self.agent.descriptor()
    }

    /// Records the call, then makes it. A call that cannot be recorded is not made: it
    /// fails as `TEMPORARY` (the engine may retry it), so that the file lists every call.
    async fn execute(&self, request: TaskRequest) -> Result<Value, AgentError> {
        let agent = &self.agent.descriptor().id;
        if let Err(error) = self.effects.record(&request, agent) {
            let message = format!("{}: cannot record the call: {error}", self.effects.path);
            eprintln!("{message}");
            return Err(AgentError::temporary(message));
        }
        self.agent.execute(request).await
    }

    async fn health(&self) -> Health {
        self.agent.health().await
    }
}
