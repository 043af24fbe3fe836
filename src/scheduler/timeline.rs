//! Timelines: a recorded (or imagined) stretch of market life — context changes, events
//! and metric reports — played through a workflow's triggers, for backtests.
//!
//! [`Timeline`] is the file, its loader and its player; [`Replay`] what playing did.
//! Their docs hold the format and the semantics (this module is private: the types are
//! re-exported by [`scheduler`](super)).

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt, select_biased};
use serde::de::{Error as _, Unexpected};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use super::triggers::{Agenda, Decision, FiringOutcome, NotFiredReason, Tagged, Triggers};
use crate::clock::Clock;
use crate::definition::{DefinitionError, Location, ValidationErrors, load_as, parse};
use crate::engine::RunReport;

/// A timeline as written.
///
/// The file format is the timeline of `tradeflow replay` (`docs/command.md`):
/// ```json
/// {
///   "start": "2026-11-23T00:00:00Z", "end": "2026-11-28T00:00:00Z",
///   "context": { "market.isOpen": true, "volatility.level": 0.2 },
///   "changes": [ { "at": "2026-11-24T08:00:00Z", "set": { "volatility.level": 0.4 } } ],
///   "events": [ { "at": "2026-11-24T13:00:00Z", "type": "MARKET_SIGNAL", "payload": { "strength": 0.8 } } ],
///   "metrics": [ { "at": "2026-11-25T10:00:00Z", "name": "portfolio.deviation", "value": 0.12 } ],
///   "input": { }
/// }
/// ```
/// `start` and `end` are required (RFC 3339, any offset); every other field defaults to
/// empty (`input` to `{}`). Context names are set as [`Triggers::set_value`] does: each
/// value is a variable and a function returning it (`market.isOpen` and
/// `market.isOpen()` alike). They are also the engine's conditions
/// ([`OrchestrationEngine::adapt_to_conditions`](crate::engine::OrchestrationEngine::adapt_to_conditions)),
/// so a change reaches the workflow's adaptations in runs already in flight: their steps
/// that start after it adapt to it. `input` is the input of every run started. Entries need not
/// be in time order, but each must lie in `[start, end)`.
///
/// # Playing
/// [`Timeline::play`] sets the context and input, then walks time from `start` to `end`
/// on the engine's clock. At each instant where something happens it first applies the
/// context changes of that instant (in file order), then considers the triggers: metric
/// reports and events of that instant in file order, and the `SCHEDULED` triggers whose
/// cron occurrence it is. The runs those start are started in order of trigger index,
/// then file order, and keep running while time moves on; after `end`, `play` waits for
/// every run to end. The result, [`Replay`], lists the runs ordered by firing time (ties:
/// trigger index, then file order), each with its report.
///
/// On a [`VirtualClock`](crate::clock::VirtualClock) driven by its `block_on`, a week
/// plays in milliseconds and the same timeline, workflow, agents and engine seed give the
/// same [`Replay`], byte for byte once serialized: nothing reads the wall clock, and the
/// runs are numbered in the order they start.
///
/// # Cost
/// Loading is linear in the file. Playing costs, per entry, what
/// [`Triggers`] costs per event or report, plus one cron search per occurrence of a
/// `SCHEDULED` trigger in the range.
///
/// # Examples
/// ```
/// use tradeflow::scheduler::Timeline;
///
/// let timeline = Timeline::from_json(r#"{
///     "start": "2026-11-23T00:00:00Z", "end": "2026-11-28T00:00:00Z",
///     "metrics": [{"at": "2026-11-25T10:00:00Z", "name": "portfolio.deviation", "value": 0.12}]
/// }"#)?;
/// assert_eq!(timeline.metrics[0].value, 0.12);
///
/// let errors = Timeline::from_json(r#"{
///     "start": "2026-11-23T00:00:00Z", "end": "2026-11-28T00:00:00Z",
///     "events": [{"at": "2026-12-01T00:00:00Z", "type": "MARKET_SIGNAL"}]
/// }"#).unwrap_err();
/// assert!(errors.to_string().starts_with("events[0].at: invalid value"));
/// # Ok::<(), tradeflow::definition::ValidationErrors>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Timeline {
    /// Where the timeline starts (included).
    #[serde(deserialize_with = "time")]
    pub start: DateTime<Utc>,
    /// Where it ends (excluded); after `start`.
    #[serde(deserialize_with = "time")]
    pub end: DateTime<Utc>,
    /// The host context at `start`, by name. Default: empty.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub context: BTreeMap<String, Value>,
    /// Context changes. Default: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<ContextChange>,
    /// Events the host publishes. Default: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<TimelineEvent>,
    /// Metric values the host reports. Default: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<MetricReport>,
    /// The input of every run started. Default: `{}`.
    #[serde(default = "empty_object")]
    pub input: Value,
}

fn empty_object() -> Value {
    Value::Object(Map::new())
}

/// An RFC 3339 time (any offset), in UTC; the error says what is expected.
fn time<'de, D: Deserializer<'de>>(deserializer: D) -> Result<DateTime<Utc>, D::Error> {
    let text = String::deserialize(deserializer)?;
    parse_time(&text).map_err(|error| {
        D::Error::custom(format!(
            "{error} (expected RFC 3339, like 2026-11-24T13:00:00Z)"
        ))
    })
}

fn parse_time(text: &str) -> Result<DateTime<Utc>, chrono::ParseError> {
    DateTime::parse_from_rfc3339(text).map(|time| time.with_timezone(&Utc))
}

/// A change of the host context at an instant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContextChange {
    /// When.
    #[serde(deserialize_with = "time")]
    pub at: DateTime<Utc>,
    /// The names set, with their new values (others keep theirs).
    pub set: BTreeMap<String, Value>,
}

/// An event the host publishes at an instant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TimelineEvent {
    /// When.
    #[serde(deserialize_with = "time")]
    pub at: DateTime<Utc>,
    /// The event type, matched against `EVENT` triggers' `eventType`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// What conditions see as `event.*`. Default: `{}`.
    #[serde(default = "empty_object")]
    pub payload: Value,
}

/// A metric value the host reports at an instant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MetricReport {
    /// When.
    #[serde(deserialize_with = "time")]
    pub at: DateTime<Utc>,
    /// The metric, matched against `THRESHOLD` triggers' `metric`.
    pub name: String,
    /// Its value.
    pub value: f64,
}

/// What playing a timeline did: the runs its triggers started, with their reports.
///
/// Serializes to the result of `tradeflow replay`:
/// `{"runs": [{"trigger": …, "firedAt": …, "report": …}]}`, and, when the engine's kill
/// switch refused some, `"refused": [{"trigger": …, "firedAt": …, "refused": "HALTED",
/// "reason": …}]`.
///
/// The timeline's metrics are also reported to the engine (`Engine::report_metric`) and
/// its context changes re-evaluate the kill switch, so a metric that crosses a rule
/// mid-week halts the later runs; a rule's `flatten` run is listed among the runs, its
/// trigger `killSwitch (rule)`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Replay {
    /// The runs started, ordered by firing time (ties: trigger index, then the order
    /// of the timeline's entries).
    pub runs: Vec<ReplayedRun>,
    /// Every trigger considered, fired or not, in the same order. Not serialized.
    #[serde(skip)]
    pub considered: Vec<Considered>,
    /// The firings whose run the engine's kill switch refused, in firing order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refused: Vec<RefusedRun>,
}

/// A firing whose run the engine refused to start because a kill switch rule had
/// tripped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RefusedRun {
    /// The trigger that fired.
    pub trigger: String,
    /// When it fired.
    pub fired_at: DateTime<Utc>,
    /// The kind: `HALTED`.
    pub refused: crate::run::FailureKind,
    /// The engine's words (which rule, which workflow).
    pub reason: String,
}

impl Replay {
    /// The result as pretty-printed JSON (the output of `tradeflow replay`).
    pub fn to_json_pretty(&self) -> String {
        // Plain data with string keys: serializing cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

/// A run a trigger started during a replay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplayedRun {
    /// The trigger, as the run records it: `triggers[1] (THRESHOLD)`.
    pub trigger: String,
    /// When it fired (the run started then).
    pub fired_at: DateTime<Utc>,
    /// How the run ended.
    pub report: RunReport,
}

/// A trigger considered during a replay: its cron occurrence came, an event of its
/// type was published, or its metric reached the threshold while it was armed.
#[derive(Debug, Clone, PartialEq)]
pub struct Considered {
    /// The trigger: `triggers[0] (SCHEDULED)`.
    pub trigger: String,
    /// Its index in the definition's `triggers`.
    pub trigger_index: usize,
    /// When it was considered.
    pub at: DateTime<Utc>,
    /// `Ok(i)`: it fired and started `runs[i]` of the [`Replay`]; `Err`: why it did not
    /// fire.
    pub outcome: Result<usize, NotFiredReason>,
}

impl Timeline {
    /// Parses and checks a timeline.
    ///
    /// # Errors
    /// [`ValidationErrors`] with every problem, each located like workflow problems
    /// (`events[2].at: invalid value …`): malformed JSON (line and column), unknown
    /// fields (with the closest known name), wrong types, missing fields, times that are
    /// not RFC 3339, and what [`validate`](Self::validate) checks. Problems of the top
    /// level itself (a missing `start`, an unknown field) are located at `workflow`, the
    /// name the crate's locations give to the root of a file.
    pub fn from_json(json: &str) -> Result<Self, ValidationErrors> {
        load(&parse(json)?)
    }

    /// Checks what the JSON shape does not: `end` after `start`, every entry in
    /// `[start, end)`, context names, event types and metric names not empty.
    /// [`from_json`](Self::from_json) runs it; call it on a timeline built in code.
    ///
    /// # Errors
    /// [`ValidationErrors`] with every problem found, located as in `from_json`.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut check = Checker::default();
        let range = check.range(self.start, self.end);
        check.names(&Location::root().field("context"), self.context.keys());
        for (index, change) in self.changes.iter().enumerate() {
            let at = Location::root().field("changes").index(index);
            check.instant(&at, change.at, range);
            check.names(&at.field("set"), change.set.keys());
        }
        for (index, event) in self.events.iter().enumerate() {
            let at = Location::root().field("events").index(index);
            check.instant(&at, event.at, range);
            check.not_empty(&at.field("type"), &event.event_type);
        }
        for (index, metric) in self.metrics.iter().enumerate() {
            let at = Location::root().field("metrics").index(index);
            check.instant(&at, metric.at, range);
            check.not_empty(&at.field("name"), &metric.name);
        }
        check.finish(())
    }

    /// Plays the timeline through `triggers` on their engine's clock (see
    /// [Playing](Self#playing)), and returns when every run started has ended.
    ///
    /// The timeline's context is set on top of the triggers' context, and its input
    /// replaces theirs. Play it on a clock at or before `start` (the runs start at the
    /// clock's time). Human approvals are answered by whoever the host lets answer
    /// ([`Engine::approve`](crate::engine::Engine::approve)), in a future polled
    /// alongside this one; a run that waits for an answer nobody gives keeps `play`
    /// waiting.
    ///
    /// # Examples
    /// ```
    /// use std::sync::Arc;
    /// use serde_json::{Value, json};
    /// use tradeflow::agent::{Agent, AgentDescriptor, AgentError, TaskRequest};
    /// use tradeflow::clock::VirtualClock;
    /// use tradeflow::engine::Engine;
    /// use tradeflow::plan::ExecutionPlan;
    /// use tradeflow::scheduler::{Timeline, Triggers};
    ///
    /// struct Rebalancer(AgentDescriptor);
    ///
    /// #[tradeflow::async_trait]
    /// impl Agent for Rebalancer {
    ///     fn descriptor(&self) -> &AgentDescriptor { &self.0 }
    ///     async fn execute(&self, _: TaskRequest) -> Result<Value, AgentError> {
    ///         Ok(json!({"rebalanced": true}))
    ///     }
    /// }
    ///
    /// let timeline = Timeline::from_json(r#"{
    ///     "start": "2026-11-23T00:00:00Z", "end": "2026-11-28T00:00:00Z",
    ///     "context": {"market.volatility": 0.2},
    ///     "metrics": [
    ///         {"at": "2026-11-24T10:00:00Z", "name": "portfolio.deviation", "value": 0.12},
    ///         {"at": "2026-11-24T11:00:00Z", "name": "portfolio.deviation", "value": 0.13},
    ///         {"at": "2026-11-25T10:00:00Z", "name": "portfolio.deviation", "value": 0.04},
    ///         {"at": "2026-11-26T10:00:00Z", "name": "portfolio.deviation", "value": 0.11}
    ///     ]
    /// }"#)?;
    /// let clock = VirtualClock::starting_at(timeline.start);
    /// let engine = Engine::builder().clock(clock.clone()).build();
    /// engine.register_agent(Arc::new(Rebalancer(AgentDescriptor::new("pm-1", "PORTFOLIO_MANAGEMENT"))))?;
    /// engine.add_plan(ExecutionPlan::from_json(r#"{
    ///     "id": "rebalance",
    ///     "steps": [{"id": "rebalance", "type": "task",
    ///                "agentCriteria": {"type": "PORTFOLIO_MANAGEMENT"},
    ///                "task": {"type": "REBALANCE"}}],
    ///     "triggers": [{"type": "THRESHOLD", "metric": "portfolio.deviation", "threshold": 0.1,
    ///                   "condition": {"expression": "market.volatility < 0.25"}}]
    /// }"#)?);
    /// let triggers = Triggers::new(&engine, "rebalance")?;
    ///
    /// let replay = clock.block_on(timeline.play(&triggers));
    /// // Up through 0.1 twice, with a fall below in between: two runs.
    /// let fired: Vec<String> = replay.runs.iter().map(|run| run.fired_at.to_rfc3339()).collect();
    /// assert_eq!(fired, ["2026-11-24T10:00:00+00:00", "2026-11-26T10:00:00+00:00"]);
    /// assert_eq!(replay.runs[0].trigger, "triggers[0] (THRESHOLD)");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub async fn play(&self, triggers: &Triggers) -> Replay {
        set_context(triggers, &self.context);
        triggers.set_input(self.input.clone());
        let clock = Arc::clone(triggers.engine().clock());
        let plan = Arc::clone(triggers.plan());
        let entries = self.entries();
        let mut next_entry = 0;
        let mut agenda = Agenda::new(plan.triggers(), self.start);
        let mut running = FuturesUnordered::new();
        // The runs in the order they started (which is the order of the result).
        let mut started: Vec<(String, DateTime<Utc>, Option<RunReport>)> = Vec::new();
        let mut considered = Vec::new();
        let mut refused = Vec::new();
        loop {
            let cron = agenda.peek().filter(|at| *at < self.end);
            let entry = entries.get(next_entry).map(|entry| entry.at);
            let Some(at) = cron.into_iter().chain(entry).min() else {
                break;
            };
            drive_until(&*clock, at, &mut running, &mut started).await;

            // (decision, file order) of every trigger considered at `at`.
            let mut decisions: Vec<(Decision, usize)> = Vec::new();
            while let Some(entry) = entries.get(next_entry).filter(|entry| entry.at == at) {
                match entry.what {
                    What::Change(index) => {
                        set_context(triggers, &self.changes[index].set);
                        let tripped = triggers.engine().check_kill_switch();
                        flatten_runs(tripped, at, &mut running, &mut started);
                    }
                    What::Event(index) => {
                        let event = &self.events[index];
                        let considered =
                            triggers.decide_event(&event.event_type, &event.payload, at);
                        decisions.extend(considered.into_iter().map(|decision| (decision, index)));
                    }
                    What::Metric(index) => {
                        let metric = &self.metrics[index];
                        let engine = triggers.engine();
                        engine.adapt_to_conditions(vec![(
                            metric.name.clone(),
                            Value::from(metric.value),
                        )]);
                        let tripped = engine.check_kill_switch();
                        flatten_runs(tripped, at, &mut running, &mut started);
                        let considered = triggers.decide_metric(&metric.name, metric.value, at);
                        decisions.extend(considered.into_iter().map(|decision| (decision, index)));
                    }
                }
                next_entry += 1;
            }
            while agenda.peek() == Some(at) {
                let Some((at, index)) = agenda.pop(plan.triggers()) else {
                    break;
                };
                if let Some(trigger) = plan.triggers().get(index) {
                    decisions.push((triggers.decide_scheduled(trigger, at), 0));
                }
            }
            decisions.sort_by_key(|(decision, order)| (decision.index, *order));
            let decisions = decisions
                .into_iter()
                .map(|(decision, _)| decision)
                .collect();
            for firing in triggers.start(decisions) {
                let trigger = firing.trigger();
                let outcome = match firing.outcome {
                    FiringOutcome::Started(run) => {
                        let tag = started.len();
                        running.push(Tagged { tag, run });
                        started.push((trigger.clone(), firing.at, None));
                        Ok(tag)
                    }
                    FiringOutcome::NotFired(reason) => {
                        if let NotFiredReason::StartRefused(
                            error @ crate::engine::EngineError::Halted { .. },
                        ) = &reason
                        {
                            refused.push(RefusedRun {
                                trigger: trigger.clone(),
                                fired_at: firing.at,
                                refused: crate::run::FailureKind::Halted,
                                reason: error.to_string(),
                            });
                        }
                        Err(reason)
                    }
                };
                considered.push(Considered {
                    trigger,
                    trigger_index: firing.trigger_index,
                    at: firing.at,
                    outcome,
                });
            }
        }
        while let Some((tag, report)) = running.next().await {
            if let Some(slot) = started.get_mut(tag) {
                slot.2 = Some(report);
            }
        }
        // Every run ended, so every slot holds a report and `runs[i]` is run `i`.
        debug_assert!(started.iter().all(|(_, _, report)| report.is_some()));
        Replay {
            runs: started
                .into_iter()
                .filter_map(|(trigger, fired_at, report)| {
                    Some(ReplayedRun {
                        trigger,
                        fired_at,
                        report: report?,
                    })
                })
                .collect(),
            considered,
            refused,
        }
    }

    /// The entries in `[start, end)` in the order they are played: by time; at one
    /// instant, context changes first, then events and metrics; each kind in file order.
    fn entries(&self) -> Vec<Entry> {
        let mut entries: Vec<Entry> = self
            .changes
            .iter()
            .enumerate()
            .map(|(index, change)| Entry {
                at: change.at,
                what: What::Change(index),
            })
            .chain(self.events.iter().enumerate().map(|(index, event)| Entry {
                at: event.at,
                what: What::Event(index),
            }))
            .chain(
                self.metrics
                    .iter()
                    .enumerate()
                    .map(|(index, metric)| Entry {
                        at: metric.at,
                        what: What::Metric(index),
                    }),
            )
            .collect();
        // Outside the range only in a timeline built in code (validation rejects them).
        entries.retain(|entry| self.start <= entry.at && entry.at < self.end);
        // Stable: entries of one kind at one instant keep the file's order.
        entries.sort_by_key(|entry| (entry.at, !matches!(entry.what, What::Change(_))));
        entries
    }
}

/// One entry of the timeline, by kind and index in its array.
#[derive(Debug, Clone, Copy)]
struct Entry {
    at: DateTime<Utc>,
    what: What,
}

#[derive(Debug, Clone, Copy)]
enum What {
    Change(usize),
    Event(usize),
    Metric(usize),
}

/// Drives the `running` runs until `clock` reaches `at`, recording the reports of
/// those that end in `started`.
async fn drive_until(
    clock: &dyn Clock,
    at: DateTime<Utc>,
    running: &mut FuturesUnordered<Tagged>,
    started: &mut [(String, DateTime<Utc>, Option<RunReport>)],
) {
    let mut sleep = clock.sleep_until(at).fuse();
    loop {
        select_biased! {
            () = sleep => return,
            ended = running.next() => {
                if let Some((tag, report)) = ended {
                    if let Some(slot) = started.get_mut(tag) {
                        slot.2 = Some(report);
                    }
                }
            }
        }
    }
}

/// Loads the file part by part (the top level, each change, event and metric), so that
/// a problem in one part does not hide those in the others.
fn load(value: &Value) -> Result<Timeline, ValidationErrors> {
    let mut check = Checker::default();
    let Value::Object(root) = value else {
        check.not_an_object(value, &Location::root());
        return Err(ValidationErrors::new(check.errors));
    };
    const ARRAYS: [&str; 3] = ["changes", "events", "metrics"];
    let top: Map<String, Value> = root
        .iter()
        .map(|(key, field)| {
            let emptied = ARRAYS.contains(&key.as_str()) && field.is_array();
            let field = if emptied {
                Value::Array(Vec::new())
            } else {
                field.clone()
            };
            (key.clone(), field)
        })
        .collect();
    let timeline = check.loaded::<Timeline>(&Value::Object(top), &Location::root());
    // Read from the text, so that entries are checked even when the top level has
    // another problem.
    let instant = |key: &str| {
        root.get(key)
            .and_then(Value::as_str)
            .and_then(|text| parse_time(text).ok())
    };
    let range = match (instant("start"), instant("end")) {
        (Some(start), Some(end)) => check.range(start, end),
        _ => None,
    };
    if let Some(timeline) = &timeline {
        check.names(&Location::root().field("context"), timeline.context.keys());
    }
    let elements = |name: &'static str| {
        root.get(name)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
            .map(move |(index, element)| (Location::root().field(name).index(index), element))
    };
    let mut changes = Vec::new();
    for (at, raw) in elements("changes") {
        if let Some(change) = check.loaded::<ContextChange>(raw, &at) {
            check.instant(&at, change.at, range);
            check.names(&at.field("set"), change.set.keys());
            changes.push(change);
        }
    }
    let mut events = Vec::new();
    for (at, raw) in elements("events") {
        if let Some(event) = check.loaded::<TimelineEvent>(raw, &at) {
            check.instant(&at, event.at, range);
            check.not_empty(&at.field("type"), &event.event_type);
            events.push(event);
        }
    }
    let mut metrics = Vec::new();
    for (at, raw) in elements("metrics") {
        if let Some(metric) = check.loaded::<MetricReport>(raw, &at) {
            check.instant(&at, metric.at, range);
            check.not_empty(&at.field("name"), &metric.name);
            metrics.push(metric);
        }
    }
    match timeline {
        Some(timeline) if check.errors.is_empty() => Ok(Timeline {
            changes,
            events,
            metrics,
            ..timeline
        }),
        // A part that did not load always left a problem.
        _ => Err(ValidationErrors::new(check.errors)),
    }
}

/// Collects problems, in the order of the file.
#[derive(Default)]
struct Checker {
    errors: Vec<DefinitionError>,
}

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

impl Checker {
    /// Deserializes one part, which must be an object, keeping its problems.
    fn loaded<T: serde::de::DeserializeOwned>(
        &mut self,
        value: &Value,
        at: &Location,
    ) -> Option<T> {
        if !value.is_object() {
            // serde would read a struct from an array too.
            self.not_an_object(value, at);
            return None;
        }
        load_as(value, at)
            .map_err(|errors| self.errors.extend(errors))
            .ok()
    }

    fn not_an_object(&mut self, value: &Value, at: &Location) {
        let found = match value {
            Value::Null => Unexpected::Unit,
            Value::Bool(b) => Unexpected::Bool(*b),
            Value::Number(_) => Unexpected::Other("a number"),
            Value::String(s) => Unexpected::Str(s),
            Value::Array(_) => Unexpected::Seq,
            Value::Object(_) => Unexpected::Map,
        };
        self.errors.push(DefinitionError::InvalidType {
            at: at.clone(),
            found: found.to_string(),
            expected: "a JSON object".to_owned(),
        });
    }

    /// The range `[start, end)`, when `end` is after `start`.
    fn range(
        &mut self,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        if end > start {
            return Some((start, end));
        }
        self.errors.push(DefinitionError::InvalidValue {
            at: Location::root().field("end"),
            value: Value::from(rfc3339(end)).to_string(),
            reason: format!("the end must be after the start ({})", rfc3339(start)),
        });
        None
    }

    /// Checks that the entry at `at` happens in `range` (unchecked without one).
    fn instant(
        &mut self,
        at: &Location,
        instant: DateTime<Utc>,
        range: Option<(DateTime<Utc>, DateTime<Utc>)>,
    ) {
        let Some((start, end)) = range else {
            return;
        };
        let reason = if instant < start {
            format!("before the timeline's start ({})", rfc3339(start))
        } else if instant >= end {
            format!("at or after the timeline's end ({})", rfc3339(end))
        } else {
            return;
        };
        self.errors.push(DefinitionError::InvalidValue {
            at: at.field("at"),
            value: Value::from(rfc3339(instant)).to_string(),
            reason,
        });
    }

    /// Checks context names: not empty, even without a trailing `()`.
    fn names<'a>(&mut self, at: &Location, names: impl IntoIterator<Item = &'a String>) {
        for name in names {
            let bare = name.strip_suffix("()").unwrap_or(name);
            if bare.trim().is_empty() {
                self.errors.push(DefinitionError::InvalidValue {
                    at: at.clone(),
                    value: Value::from(name.as_str()).to_string(),
                    reason: "a context name cannot be empty".to_owned(),
                });
            }
        }
    }

    fn not_empty(&mut self, at: &Location, text: &str) {
        if text.trim().is_empty() {
            self.errors.push(DefinitionError::InvalidValue {
                at: at.clone(),
                value: Value::from(text).to_string(),
                reason: "cannot be empty".to_owned(),
            });
        }
    }

    /// `Ok(value)` if no problem was found.
    fn finish<T>(self, value: T) -> Result<T, ValidationErrors> {
        if self.errors.is_empty() {
            Ok(value)
        } else {
            Err(ValidationErrors::new(self.errors))
        }
    }
}

/// Sets `values` in the triggers' host context (what runs started from now on read) and
/// as the engine's conditions (what the adaptations of runs in flight read).
/// The flatten runs of the kill switch rules that just tripped join the replay's runs,
/// their trigger `killSwitch (rule)`.
fn flatten_runs(
    tripped: Vec<crate::engine::Tripped>,
    at: DateTime<Utc>,
    running: &mut FuturesUnordered<Tagged>,
    started: &mut Vec<(String, DateTime<Utc>, Option<RunReport>)>,
) {
    for tripped in tripped {
        let rule = match &tripped.event {
            crate::safety::KillSwitchEvent::Tripped { rule, .. } => rule.clone(),
            _ => String::new(),
        };
        if let Some(Ok(run)) = tripped.flatten {
            let tag = started.len();
            running.push(Tagged { tag, run });
            started.push((format!("killSwitch ({rule})"), at, None));
        }
    }
}

fn set_context<'v>(triggers: &Triggers, values: impl IntoIterator<Item = (&'v String, &'v Value)>) {
    let mut conditions = Vec::new();
    for (name, value) in values {
        triggers.set_value(name, value.clone());
        conditions.push((name.clone(), value.clone()));
    }
    if !conditions.is_empty() {
        triggers.engine().adapt_to_conditions(conditions);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn playing_is_send() {
        fn assert_send<T: Send>(_: &T) {}
        let engine = crate::engine::Engine::builder().build();
        let plan = crate::plan::ExecutionPlan::from_json(
            r#"{"id": "w", "steps": [{"id": "s", "type": "task", "agentCriteria": {"type": "T"},
                "task": {"type": "T"}}], "triggers": [{"type": "EVENT", "eventType": "X"}]}"#,
        )
        .unwrap();
        engine.add_plan(plan);
        let triggers = Triggers::new(&engine, "w").unwrap();
        let timeline = Timeline::from_json(
            r#"{"start": "2026-11-23T00:00:00Z", "end": "2026-11-28T00:00:00Z"}"#,
        )
        .unwrap();
        assert_send(&timeline.play(&triggers));
    }

    fn problems(json: &Value) -> Vec<String> {
        match Timeline::from_json(&json.to_string()) {
            Ok(timeline) => panic!("expected problems, loaded {timeline:?}"),
            Err(errors) => errors.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn defaults_fill_what_is_left_out() {
        let timeline = Timeline::from_json(
            r#"{"start": "2026-11-23T00:00:00+01:00", "end": "2026-11-28T00:00:00Z"}"#,
        )
        .unwrap();
        assert_eq!(timeline.start.to_rfc3339(), "2026-11-22T23:00:00+00:00");
        assert!(timeline.context.is_empty() && timeline.events.is_empty());
        assert_eq!(timeline.input, json!({}));
        let again = Timeline::from_json(&serde_json::to_string(&timeline).unwrap()).unwrap();
        assert_eq!(again, timeline);
    }

    #[test]
    fn problems_in_every_part_are_reported_at_once() {
        let json = json!({
            "start": "2026-11-28T00:00:00Z", "end": "2026-11-23T00:00:00Z",
            "contxt": {},
            "changes": [{"at": "2026-11-24T08:00:00Z", "set": {"()": 1}}, 3],
            "events": [{"at": "yesterday", "type": "X"}, {"at": "2026-11-24T08:00:00Z", "type": ""}],
            "metrics": [{"at": "2026-11-24T08:00:00Z", "name": "m"}]
        });
        let lines = problems(&json);
        assert_eq!(lines.len(), 7, "{lines:#?}");
        assert!(
            lines[0].contains("unknown field `contxt` (did you mean `context`?)"),
            "{lines:#?}"
        );
        assert!(
            lines[1].starts_with(
                "end: invalid value \"2026-11-23T00:00:00Z\": the end must be after the start"
            ),
            "{lines:#?}"
        );
        assert!(
            lines[2].starts_with("changes[0].set: invalid value \"()\""),
            "{lines:#?}"
        );
        assert!(
            lines[3].starts_with("changes[1]: invalid type"),
            "{lines:#?}"
        );
        assert!(lines[4].starts_with("events[0].at: "), "{lines:#?}");
        assert!(
            lines[5].starts_with("events[1].type: invalid value \"\""),
            "{lines:#?}"
        );
        assert!(
            lines[6].starts_with("metrics[0]: missing required field `value`"),
            "{lines:#?}"
        );
    }

    #[test]
    fn entries_must_lie_in_the_range() {
        let json = json!({
            "start": "2026-11-23T00:00:00Z", "end": "2026-11-28T00:00:00Z",
            "metrics": [
                {"at": "2026-11-22T23:59:59Z", "name": "m", "value": 1},
                {"at": "2026-11-23T00:00:00Z", "name": "m", "value": 1},
                {"at": "2026-11-28T00:00:00Z", "name": "m", "value": 1}
            ]
        });
        assert_eq!(
            problems(&json),
            [
                "metrics[0].at: invalid value \"2026-11-22T23:59:59Z\": before the timeline's start (2026-11-23T00:00:00Z)",
                "metrics[2].at: invalid value \"2026-11-28T00:00:00Z\": at or after the timeline's end (2026-11-28T00:00:00Z)",
            ]
        );
    }
}
