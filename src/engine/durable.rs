//! Durable runs: journaling transitions to a [`RunStore`], and what recovery needs.
//!
//! With a store set, every transition of a run is appended to its journal *before* the
//! engine acts on it (calls the agent, makes an output visible, emits the event). An
//! append that fails is retried on the engine's clock, 10 ms doubling to 1 s, until it
//! succeeds: the run neither loses a transition nor acts on one it could not record.
//! Without a store nothing here runs: the executor checks one `Option` per transition.

use std::sync::Arc;
use std::time::Duration;

use super::{EngineError, Inner};
use crate::agent::RunId;
use crate::definition::ValidationErrors;
use crate::store::{FoldError, JournalEntry, RunStore, StoreError};

/// The first pause after a failed append; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(10);
/// The longest pause between two tries of an append.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

impl Inner {
    /// Appends `entries` to run `run`'s journal, retrying until the store takes them.
    /// Does nothing without a store (`entries` is only called with one).
    pub(crate) async fn journal(&self, run: &RunId, entries: impl FnOnce() -> Vec<JournalEntry>) {
        if let Some(store) = &self.store {
            append(&**store, &*self.clock, run, &entries()).await;
        }
    }
}

/// Appends until the store succeeds, backing off on `clock` between tries.
async fn append(
    store: &dyn RunStore,
    clock: &dyn crate::clock::Clock,
    run: &RunId,
    entries: &[JournalEntry],
) {
    let mut backoff = FIRST_BACKOFF;
    loop {
        match store.append(run, entries) {
            Ok(()) => return,
            Err(error) => {
                tracing::warn!(
                    run = %run,
                    retry_in_ms = backoff.as_millis() as u64,
                    error = &error as &dyn std::error::Error,
                    "journal append failed; the run waits until it succeeds"
                );
                clock.sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// Why a run could not be recovered from the store.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum RecoveryError {
    /// The store could not be read.
    #[error("the run store failed")]
    Store(#[source] Arc<StoreError>),
    /// The run's journal does not describe a run.
    #[error("its journal does not describe a run")]
    Journal(#[source] FoldError),
    /// Neither the engine nor the store keeps the definition the run started with.
    #[error(
        "workflow `{workflow_id}` version `{version}` is kept neither by the engine nor by the store"
    )]
    NoDefinition {
        /// The workflow.
        workflow_id: String,
        /// The version the run started with.
        version: String,
    },
    /// The definition the store keeps does not compile.
    #[error("the stored definition of workflow `{workflow_id}` version `{version}` is invalid")]
    Definition {
        /// The workflow.
        workflow_id: String,
        /// The version.
        version: String,
        /// Every problem of the definition.
        #[source]
        source: ValidationErrors,
    },
}

impl PartialEq for RecoveryError {
    /// Store errors are equal only when they are the same error (they carry a backend's).
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Store(a), Self::Store(b)) => Arc::ptr_eq(a, b),
            (Self::Journal(a), Self::Journal(b)) => a == b,
            (
                Self::NoDefinition {
                    workflow_id: a,
                    version: v,
                },
                Self::NoDefinition {
                    workflow_id: b,
                    version: w,
                },
            ) => a == b && v == w,
            (
                Self::Definition {
                    workflow_id: a,
                    version: v,
                    source: x,
                },
                Self::Definition {
                    workflow_id: b,
                    version: w,
                    source: y,
                },
            ) => a == b && v == w && x == y,
            _ => false,
        }
    }
}

/// An [`EngineError::Recovery`] for run `run`.
pub(super) fn recovery(run: &RunId, reason: RecoveryError) -> EngineError {
    EngineError::Recovery {
        run: run.clone(),
        reason,
    }
}

/// An [`EngineError::Store`], for an operation on no particular run.
pub(super) fn store_failed(error: StoreError) -> EngineError {
    EngineError::Store {
        source: Arc::new(error),
    }
}
