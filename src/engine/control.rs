//! The host's commands to a live run: pause, resume, cancel.
//!
//! Every live run has a [`RunControl`] in the engine's table, from the moment its [`Run`]
//! is created until its future ends or is dropped. [`Engine::pause_workflow`] and friends
//! queue a command there and wake the run; the run's loop takes commands before anything
//! else, journals them and acts on them.
//!
//! [`Run`]: super::Run
//! [`Engine::pause_workflow`]: super::Engine::pause_workflow

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};

use super::{Engine, EngineError};
use crate::audit::AuditEvent;
use crate::run::RunId;
use crate::security::Action;

/// What the host asks of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Command {
    /// Start no new step until resumed; steps in flight finish.
    Pause {
        /// Who asked.
        by: String,
    },
    /// Start steps again.
    Resume {
        /// Who asked.
        by: String,
    },
    /// Look again at the steps held back (a kill switch rule was reset).
    Wake,
    /// End the run `CANCELLED`, stopping the steps in flight.
    Cancel {
        /// Who asked.
        by: String,
    },
}

/// The commands queued for one run, and the waker of its loop.
#[derive(Debug, Default)]
pub(crate) struct RunControl {
    state: Mutex<State>,
    /// Whose run it is, for the permission checks.
    owner: Owner,
}

/// What the permission checks need to know of a live run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Owner {
    /// The run's workflow id.
    pub(crate) workflow: String,
    /// The user it was started for (journaled, so kept by a recovered run).
    pub(crate) started_by: Option<String>,
}

#[derive(Debug, Default)]
struct State {
    commands: VecDeque<Command>,
    waker: Option<Waker>,
}

impl RunControl {
    /// Queues `command` and wakes the run.
    fn send(&self, command: Command) {
        let waker = {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            state.commands.push_back(command);
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// The next queued command; otherwise the run is woken by the next one sent.
    pub(crate) fn poll_command(&self, cx: &mut Context<'_>) -> Poll<Command> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        match state.commands.pop_front() {
            Some(command) => Poll::Ready(command),
            None => {
                if !state
                    .waker
                    .as_ref()
                    .is_some_and(|waker| waker.will_wake(cx.waker()))
                {
                    state.waker = Some(cx.waker().clone());
                }
                Poll::Pending
            }
        }
    }
}

/// The controls of the engine's live runs.
#[derive(Debug, Default)]
pub(crate) struct Controls {
    runs: Mutex<HashMap<RunId, Arc<RunControl>>>,
}

impl Controls {
    /// Registers run `run`; the guard unregisters it when dropped (the run ended or was
    /// dropped).
    pub(crate) fn register(self: &Arc<Self>, run: &RunId, owner: Owner) -> ControlGuard {
        let control = Arc::new(RunControl {
            owner,
            ..RunControl::default()
        });
        self.runs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(run.clone(), Arc::clone(&control));
        ControlGuard {
            controls: Arc::clone(self),
            run: run.clone(),
            control,
        }
    }

    /// Whether run `run` is live in this engine.
    pub(crate) fn is_live(&self, run: &RunId) -> bool {
        self.runs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(run)
    }

    /// Whose run `run` is, while it is live.
    pub(crate) fn owner(&self, run: &RunId) -> Option<Owner> {
        self.runs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(run)
            .map(|control| control.owner.clone())
    }

    /// Wakes every live run (a kill switch rule was reset: held steps may start).
    pub(crate) fn wake_all(&self) {
        let controls: Vec<Arc<RunControl>> = self
            .runs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        for control in controls {
            control.send(Command::Wake);
        }
    }

    /// Sends `command` to run `run`; `false` when no such run is live.
    pub(crate) fn send(&self, run: &RunId, command: Command) -> bool {
        let control = self
            .runs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(run)
            .cloned();
        match control {
            Some(control) => {
                control.send(command);
                true
            }
            None => false,
        }
    }
}

/// A live run's registration: its control, until dropped.
#[derive(Debug)]
pub(crate) struct ControlGuard {
    controls: Arc<Controls>,
    run: RunId,
    control: Arc<RunControl>,
}

impl ControlGuard {
    /// The run's control.
    pub(crate) fn control(&self) -> &RunControl {
        &self.control
    }
}

impl Drop for ControlGuard {
    fn drop(&mut self) {
        let mut runs = self
            .controls
            .runs
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // A later run under the same id keeps its own registration.
        if runs
            .get(&self.run)
            .is_some_and(|control| Arc::ptr_eq(control, &self.control))
        {
            runs.remove(&self.run);
        }
    }
}

impl Engine {
    /// Pauses run `run` on behalf of `by` (journaled with the pause): it starts no new step (steps in flight finish, approvals can
    /// still be answered) until [`resume_workflow`](Self::resume_workflow). The pause is
    /// journaled, so a run recovered after a restart is still paused; it then starts
    /// nothing, not even the calls the restart cut off, until resumed. A paused run's
    /// workflow `timeout` keeps running. Pausing a paused run does nothing.
    ///
    /// # Errors
    /// [`EngineError::NotRunning`] when the run is not live in this engine;
    /// [`EngineError::Security`] when the engine checks permissions and `by` may not
    /// (see [`crate::security`]);
    /// [`EngineError::Audit`] when the audit log does not take the entry (nothing is sent).
    pub fn pause_workflow(&self, run: &RunId, by: &str) -> Result<(), EngineError> {
        self.control(run, by, Action::Pause, Command::Pause { by: by.to_owned() })
    }

    /// Resumes a paused run on behalf of `by` (journaled). Resuming a run that is not paused does nothing.
    ///
    /// # Errors
    /// [`EngineError::NotRunning`] when the run is not live in this engine;
    /// [`EngineError::Security`] when the engine checks permissions and `by` may not
    /// (see [`crate::security`]);
    /// [`EngineError::Audit`] when the audit log does not take the entry (nothing is sent).
    pub fn resume_workflow(&self, run: &RunId, by: &str) -> Result<(), EngineError> {
        self.control(
            run,
            by,
            Action::Resume,
            Command::Resume { by: by.to_owned() },
        )
    }

    /// Cancels run `run` on behalf of `by`: the cancellation is journaled, the steps in
    /// flight are stopped (`CANCELLED`), those not started are `SKIPPED`, and the run
    /// ends `CANCELLED`. A paused run can be cancelled. A cancellation journaled before a
    /// restart ends the recovered run at once.
    ///
    /// # Errors
    /// [`EngineError::NotRunning`] when the run is not live in this engine;
    /// [`EngineError::Security`] when the engine checks permissions and `by` may not
    /// (see [`crate::security`]);
    /// [`EngineError::Audit`] when the audit log does not take the entry (nothing is sent).
    pub fn cancel_workflow(&self, run: &RunId, by: &str) -> Result<(), EngineError> {
        self.control(
            run,
            by,
            Action::Cancel,
            Command::Cancel { by: by.to_owned() },
        )
    }

    fn control(
        &self,
        run: &RunId,
        by: &str,
        action: Action,
        command: Command,
    ) -> Result<(), EngineError> {
        self.inner.permit_on_run(run, by, action)?;
        if !self.inner.controls.is_live(run) {
            return Err(EngineError::NotRunning { run: run.clone() });
        }
        // Entered before the command is sent: a command the log does not take is not sent.
        let audited = |by: &str, event: AuditEvent| self.inner.audit(Some(by), || event);
        let name = || run.as_str().to_owned();
        match &command {
            Command::Pause { by } => audited(by, AuditEvent::RunPaused { run: name() })?,
            Command::Resume { by } => audited(by, AuditEvent::RunResumed { run: name() })?,
            Command::Cancel { by } => audited(by, AuditEvent::RunCancelled { run: name() })?,
            Command::Wake => {}
        }
        if self.inner.controls.send(run, command) {
            Ok(())
        } else {
            Err(EngineError::NotRunning { run: run.clone() })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::task::noop_waker_ref;

    #[test]
    fn commands_arrive_in_order_and_only_while_registered() {
        let controls = Arc::new(Controls::default());
        let run = RunId::from("run-1");
        let pause = || Command::Pause { by: "ops".into() };
        let resume = || Command::Resume { by: "ops".into() };
        assert!(!controls.send(&run, pause()));
        let guard = controls.register(&run, Owner::default());
        assert!(controls.send(&run, pause()));
        assert!(controls.send(&run, resume()));
        let mut cx = Context::from_waker(noop_waker_ref());
        assert_eq!(guard.control().poll_command(&mut cx), Poll::Ready(pause()));
        assert_eq!(guard.control().poll_command(&mut cx), Poll::Ready(resume()));
        assert_eq!(guard.control().poll_command(&mut cx), Poll::Pending);
        drop(guard);
        assert!(!controls.send(&run, Command::Cancel { by: "ops".into() }));
    }
}
