//! The engine's budgets and the workflows' (see [`crate::safety::budget`]), and the calls
//! waiting for them.
//!
//! One [`Ledger`] holds every bucket: the engine's by name (shared by every run), each
//! workflow's under its workflow id and name (shared by that workflow's runs, created full
//! when a run first takes from it). A call's amounts are taken from all its budgets at
//! once; it waits its turn (lower priority first, then arrival) on the engine's clock, at
//! most until its deadline.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use chrono::{DateTime, Utc};

use crate::clock::Clock;
use crate::plan::ExecutionPlan;
use crate::safety::BudgetSpec;
use crate::safety::budget::{Amounts, Ledger, Ticket, Turn};

/// The budgets of an engine and of its workflows.
pub(crate) struct Budgets {
    engine: BTreeMap<String, BudgetSpec>,
    ledger: Mutex<Ledger>,
}

/// Takes a call out of line if it gives up (or its future is dropped) before its turn.
struct InLine<'a> {
    budgets: &'a Budgets,
    ticket: Option<Ticket>,
}

impl Drop for InLine<'_> {
    fn drop(&mut self) {
        if let Some(ticket) = self.ticket.take() {
            self.budgets.lock().leave(ticket);
        }
    }
}

impl Budgets {
    /// The engine-level budgets, full at `now`.
    pub(crate) fn new(engine: BTreeMap<String, BudgetSpec>, now: DateTime<Utc>) -> Self {
        let ledger = Ledger::new(
            engine.iter().map(|(name, spec)| (name.as_str(), *spec)),
            now,
        );
        Self {
            engine,
            ledger: Mutex::new(ledger),
        }
    }

    /// The engine-level budgets.
    pub(crate) fn engine(&self) -> &BTreeMap<String, BudgetSpec> {
        &self.engine
    }

    fn lock(&self) -> MutexGuard<'_, Ledger> {
        // Every update of the ledger completes or leaves it as it was.
        self.ledger.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits until `amounts` (by the names `plan`'s step wrote) are taken, in `priority`
    /// then arrival order, at most until `deadline`; why not, otherwise. `waiting` is
    /// called once, with the earliest instant the call's turn can come, if it waits.
    pub(crate) async fn take(
        &self,
        clock: &dyn Clock,
        plan: &ExecutionPlan,
        amounts: &Amounts,
        priority: i32,
        deadline: Option<DateTime<Utc>>,
        waiting: impl FnOnce(DateTime<Utc>),
    ) -> Result<(), String> {
        let mut waiting = Some(waiting);
        if amounts.is_empty() {
            return Ok(());
        }
        let mut keyed = Amounts::new();
        let ticket = {
            let mut ledger = self.lock();
            for (name, &amount) in amounts {
                let key = if let Some(spec) = plan.budgets().get(name) {
                    let key = workflow_key(plan, name);
                    ledger.add(&key, *spec, clock.now());
                    key
                } else if self.engine.contains_key(name) {
                    name.clone()
                } else {
                    return Err(format!(
                        "unknown budget `{}`",
                        crate::definition::Quoted(name)
                    ));
                };
                keyed.insert(key, amount);
            }
            ledger
                .join(priority, keyed)
                .map_err(|error| plain(&error.to_string(), plan.workflow_id()))?
        };
        let mut in_line = InLine {
            budgets: self,
            ticket: Some(ticket),
        };
        loop {
            let now = clock.now();
            let turn = self
                .lock()
                .poll(ticket, now)
                .map_err(|error| plain(&error.to_string(), plan.workflow_id()))?;
            match turn {
                Turn::Taken => {
                    in_line.ticket = None;
                    return Ok(());
                }
                Turn::WaitUntil(at) => match deadline {
                    _ if waiting.is_some() => {
                        if let Some(announce) = waiting.take() {
                            announce(at);
                        }
                    }
                    Some(deadline) if at > deadline => {
                        if now >= deadline {
                            return Err(format!(
                                "budget {} not available within the step's timeout (first at {})",
                                describe(amounts),
                                at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
                            ));
                        }
                        clock.sleep_until(deadline).await;
                    }
                    _ => clock.sleep_until(at).await,
                },
            }
        }
    }
}

impl Budgets {
    /// Settles a call of `plan` that took `taken` and reports `used` (budget name →
    /// tokens): refunds what it did not use, charges what it used beyond. Names it did
    /// not take from are left alone.
    pub(crate) fn settle(
        &self,
        plan: &ExecutionPlan,
        taken: &Amounts,
        used: &Amounts,
        now: DateTime<Utc>,
    ) {
        let mut ledger = self.lock();
        for (name, &used) in used {
            let Some(&reserved) = taken.get(name) else {
                continue;
            };
            ledger.settle(&ledger_key(plan, name), reserved, used, now);
        }
    }
}

impl Budgets {
    /// Tells `telemetry` how many tokens each budget of `plan` that `names` lists holds
    /// at `now` (`budget_available`): a workflow's budget is labelled `workflow/name`.
    pub(crate) fn observe<'a>(
        &self,
        plan: &ExecutionPlan,
        names: impl Iterator<Item = &'a String>,
        now: DateTime<Utc>,
        telemetry: &crate::metrics::Telemetry,
    ) {
        let ledger = self.lock();
        for name in names {
            let key = ledger_key(plan, name);
            if let Some(bucket) = ledger.bucket(&key) {
                let label = || match key {
                    Cow::Owned(_) => format!("{}/{name}", plan.workflow_id()),
                    Cow::Borrowed(name) => name.to_owned(),
                };
                telemetry.budget_available(&key, label, bucket.available(now), now);
            }
        }
    }
}

/// The ledger's key of `plan`'s own budget `name`: its workflow's id and its name.
fn workflow_key(plan: &ExecutionPlan, name: &str) -> String {
    format!("{}\u{1f}{name}", plan.workflow_id())
}

/// The ledger's key of the budget `plan`'s steps call `name`: the workflow's own
/// ([`workflow_key`]) if it defines one by that name, else the engine's, by its name.
fn ledger_key<'n>(plan: &ExecutionPlan, name: &'n str) -> Cow<'n, str> {
    if plan.budgets().contains_key(name) {
        Cow::Owned(workflow_key(plan, name))
    } else {
        Cow::Borrowed(name)
    }
}

/// A ledger's message with a workflow's budget keys back to their names.
fn plain(message: &str, workflow: &str) -> String {
    message.replace(&format!("{workflow}\u{1f}"), "")
}

/// `orders: 1, weight: 10`.
fn describe(amounts: &Amounts) -> String {
    amounts
        .iter()
        .map(|(name, amount)| format!("`{name}` {amount}"))
        .collect::<Vec<_>>()
        .join(", ")
}
