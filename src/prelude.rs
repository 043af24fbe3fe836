//! What a bot needs to run workflows, in one `use`:
//! `use tradeflow::prelude::*;`.
//!
//! ```
//! use std::sync::Arc;
//! use tradeflow::prelude::*;
//!
//! struct Quotes(AgentDescriptor);
//!
//! #[async_trait]
//! impl Agent for Quotes {
//!     fn descriptor(&self) -> &AgentDescriptor { &self.0 }
//!     async fn execute(&self, _: TaskRequest) -> Result<serde_json::Value, AgentError> {
//!         Ok(serde_json::json!({"bid": 187.2, "ask": 187.3}))
//!     }
//! }
//!
//! let engine = Engine::builder().build();
//! engine.register_agent(Arc::new(Quotes(AgentDescriptor::new("q-1", "MARKET_DATA"))))?;
//! engine.create_workflow(WorkflowDefinition::from_json(r#"{"id": "quote", "steps": [
//!     {"id": "q", "type": "task", "agentCriteria": {"type": "MARKET_DATA"},
//!      "task": {"type": "QUOTE"}}]}"#)?)?;
//! let run = engine.start("quote", RunOptions::new(serde_json::json!({})))?;
//! let mut events = run.events();
//! let report = futures::executor::block_on(run);
//! assert_eq!(report.status, RunStatus::Completed);
//! let first = futures::executor::block_on(events.next());
//! assert!(matches!(first, Some(RunEvent::RunStarted { .. })));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub use crate::agent::{Agent, AgentDescriptor, AgentError, AgentErrorKind, TaskRequest};
pub use crate::async_trait;
pub use crate::clock::{Clock, SystemClock, VirtualClock};
pub use crate::definition::WorkflowDefinition;
pub use crate::engine::{
    Engine, EngineError, OrchestrationEngine, Run, RunEvent, RunOptions, RunReport, RunStatus,
    StepStatus,
};
pub use crate::run::{FailureKind, RunId};
pub use futures::StreamExt;
