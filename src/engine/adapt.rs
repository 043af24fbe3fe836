//! Adaptations from the engine's side: the engine-wide conditions runs read as each
//! step starts ([`Engine::adapt_to_conditions`]), the rules added at run time
//! ([`Engine::adapt_workflow`]), and the measurements behind the built-in names.
//!
//! # Rules added at run time, and a store
//! A rule added with [`Engine::adapt_workflow`] is checked as one in the file would be
//! (against the workflow's latest version, its id unique among the workflow's rules)
//! and applies, after the workflow's own rules, to every step that starts from then on
//! — in runs already in flight too. With a store, it is kept in the store's definitions
//! under the workflow's id and the version `tradeflow:adaptation:<n>` (n = 1, 2, … in
//! the order they were added; versions with this prefix are reserved), so an engine
//! built on the same store reads them back the first time it needs the workflow's rules
//! and a recovered run finds the rules it journaled.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use serde_json::Value;

use super::error::store_failed;
use super::{Engine, EngineError, Inner};
use crate::adapt::Measures;
use crate::definition::AdaptationDefinition;
use crate::expr::Context;
use crate::plan::{Adaptation, Builtin, ExecutionPlan};
use crate::resource::ResourceKind;

/// The version prefix under which rules added at run time are stored.
const STORED_PREFIX: &str = "tradeflow:adaptation:";

/// The most rules that can be added at run time to one workflow.
pub const MAX_ADDED_ADAPTATIONS: usize = 1_000;

/// An adaptation that holds: which workflow's, and its id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HeldAdaptation {
    /// The workflow.
    pub workflow_id: String,
    /// The adaptation.
    pub adaptation_id: String,
}

/// What the engine keeps for adaptations.
#[derive(Debug, Default)]
pub(crate) struct Adapting {
    /// The conditions the host set; replaced whole (copy on write) when it sets more.
    context: RwLock<Arc<Context>>,
    /// Calls measured for the built-in names.
    pub(crate) measures: Measures,
    /// Whether calls are measured: once a workflow with adaptations runs or one is
    /// added.
    recording: AtomicBool,
    /// Rules added at run time, by workflow id.
    added: RwLock<HashMap<String, Arc<[Arc<Adaptation>]>>>,
    /// Whether any rule was added (a run of a workflow without rules then looks).
    any_added: AtomicBool,
    /// Workflows whose stored rules were read.
    loaded: Mutex<HashSet<String>>,
}

impl Adapting {
    /// The host's conditions now.
    pub(crate) fn context(&self) -> Arc<Context> {
        Arc::clone(&self.context.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Whether calls are measured.
    pub(crate) fn recording(&self) -> bool {
        self.recording.load(Ordering::Relaxed)
    }

    /// Measure calls from now on.
    pub(crate) fn record_calls(&self) {
        self.recording.store(true, Ordering::Relaxed);
    }

    /// Whether a store may hold rules of workflows, or some were added.
    fn may_have_added(&self, inner: &Inner) -> bool {
        inner.has_store() || self.any_added.load(Ordering::Relaxed)
    }

    /// The rules added at run time to `plan`'s workflow (read from the store the first
    /// time).
    pub(crate) fn added(
        &self,
        inner: &Inner,
        plan: &ExecutionPlan,
    ) -> Option<Arc<[Arc<Adaptation>]>> {
        if !self.may_have_added(inner) {
            return None;
        }
        self.load_stored(inner, plan);
        self.added
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(plan.workflow_id())
            .cloned()
    }

    /// Reads the rules the store keeps for `plan`'s workflow, once per workflow.
    fn load_stored(&self, inner: &Inner, plan: &ExecutionPlan) {
        let Some(store) = inner.store() else { return };
        let workflow = plan.workflow_id();
        {
            let mut loaded = self.loaded.lock().unwrap_or_else(PoisonError::into_inner);
            if !loaded.insert(workflow.to_owned()) {
                return;
            }
        }
        let mut rules: Vec<Arc<Adaptation>> = Vec::new();
        for n in 1..=MAX_ADDED_ADAPTATIONS {
            let text = match store.definition(workflow, &format!("{STORED_PREFIX}{n}")) {
                Ok(Some(text)) => text,
                Ok(None) => break,
                Err(error) => {
                    tracing::warn!(
                        workflow,
                        error = &error as &dyn std::error::Error,
                        "cannot read the adaptations added to the workflow"
                    );
                    break;
                }
            };
            let compiled = serde_json::from_str::<AdaptationDefinition>(&text)
                .map_err(|error| error.to_string())
                .and_then(|rule| {
                    let others: Vec<_> = plan.adaptations().iter().chain(&rules).cloned().collect();
                    plan.compile_adaptation(&rule, &others)
                        .map_err(|errors| errors.to_string())
                });
            match compiled {
                Ok(rule) => rules.push(Arc::new(rule)),
                Err(error) => tracing::warn!(
                    workflow,
                    n,
                    error,
                    "an adaptation the store keeps no longer fits the workflow: left out"
                ),
            }
        }
        if rules.is_empty() {
            return;
        }
        self.record_calls();
        self.any_added.store(true, Ordering::Relaxed);
        let mut added = self.added.write().unwrap_or_else(PoisonError::into_inner);
        let kept = added
            .entry(workflow.to_owned())
            .or_insert_with(|| Arc::from(Vec::new()));
        let mut all: Vec<_> = rules;
        all.extend(kept.iter().cloned());
        *kept = Arc::from(all);
    }
}

/// The value of built-in `builtin` for a run of `workflow` now; `None` when it is not
/// defined.
pub(crate) fn builtin_value(inner: &Inner, workflow: &str, builtin: &Builtin) -> Option<f64> {
    match builtin {
        Builtin::AgentsAvailable(agent_type) => Some(inner.registry.available(agent_type) as f64),
        Builtin::AgentsFailureRate(agent_type) => inner.adapting.measures.failure_rate(agent_type),
        Builtin::StepP95Ms(step) => inner.adapting.measures.p95_ms(workflow, step),
        Builtin::ResourceAvailable(name) | Builtin::ResourceUtilization(name) => {
            let usage = inner.resources.as_ref()?.monitor_resource_usage();
            let kind = usage.kind(&ResourceKind::new(name.clone()))?;
            Some(match builtin {
                Builtin::ResourceAvailable(_) => kind.available(),
                _ if kind.capacity > 0.0 => kind.in_use / kind.capacity,
                _ => 0.0,
            })
        }
        #[allow(unreachable_patterns)]
        _ => None,
    }
}

/// The context adaptations of a run read under the built-ins: the host's conditions
/// over the run's own context.
pub(crate) fn conditions_over(engine: Arc<Context>, run: &Arc<Context>) -> Arc<Context> {
    if run.is_empty() {
        engine
    } else if engine.is_empty() {
        Arc::clone(run)
    } else {
        Arc::new(Context::clone(&engine).over(Arc::clone(run)))
    }
}

/// Whether `rule` holds for a run of `workflow` against `context` (the host's
/// conditions under the built-ins); a rule that cannot be evaluated does not (logged).
pub(crate) fn holds(
    inner: &Inner,
    workflow: &str,
    rule: &Adaptation,
    context: &Arc<Context>,
) -> bool {
    let context =
        crate::adapt::builtin_context(rule, &mut |builtin| builtin_value(inner, workflow, builtin))
            .over(Arc::clone(context));
    match rule.when().evaluate_with(&context) {
        Ok(holds) => holds,
        Err(error) => {
            tracing::debug!(
                workflow,
                adaptation = rule.id(),
                error = &error as &dyn std::error::Error,
                "the adaptation's condition cannot be evaluated: it does not hold"
            );
            false
        }
    }
}

impl Engine {
    /// Sets market conditions — each a name and a JSON value, set as a timeline's
    /// `context` sets them (an object sets each leaf under its dotted name) — that
    /// adaptations read from now on: in runs started later and in the steps that runs
    /// in flight have not started yet. Returns the adaptations of the workflows the
    /// engine keeps (latest versions, and the rules added at run time) that hold now
    /// against these conditions and the built-in names, by workflow then listed order.
    ///
    /// # Examples
    /// ```
    /// # use serde_json::json;
    /// # use tradeflow::engine::Engine;
    /// # use tradeflow::definition::WorkflowDefinition;
    /// let engine = Engine::builder().build();
    /// engine.create_workflow(WorkflowDefinition::from_json(r#"{"id": "w",
    ///     "steps": [{"id": "risk", "type": "task", "agentCriteria": {"type": "RISK"},
    ///                "task": {"type": "CHECK"}}],
    ///     "adaptations": [{"id": "high-volatility", "when": "volatility.level > 0.5",
    ///                      "changes": [{"stepId": "risk", "timeout": 5000}]}]}"#)?)?;
    /// let held = engine.adapt_to_conditions([("volatility.level", json!(0.8))]);
    /// assert_eq!(held[0].adaptation_id, "high-volatility");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn adapt_to_conditions<N: AsRef<str>>(
        &self,
        conditions: impl IntoIterator<Item = (N, Value)>,
    ) -> Vec<HeldAdaptation> {
        let adapting = &self.inner.adapting;
        {
            let mut current = adapting
                .context
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            let mut next = Context::clone(&current);
            for (name, value) in conditions {
                next.set_value(name.as_ref(), value);
            }
            *current = Arc::new(next);
        }
        let context = adapting.context();
        let mut held = Vec::new();
        for plan in self.inner.catalogue.latest_all() {
            let added = adapting.added(&self.inner, &plan);
            for rule in plan
                .adaptations()
                .iter()
                .chain(added.iter().flat_map(|rules| rules.iter()))
            {
                if holds(&self.inner, plan.workflow_id(), rule, &context) {
                    held.push(HeldAdaptation {
                        workflow_id: plan.workflow_id().to_owned(),
                        adaptation_id: rule.id().to_owned(),
                    });
                }
            }
        }
        held
    }

    /// Adds adaptation `adaptation` to workflow `workflow_id` at run time: checked as one
    /// in the file (against the workflow's latest version; its id unique among the
    /// workflow's rules), it applies after the workflow's own rules to every step that
    /// starts from now on, runs in flight included. With a store it is stored first, so
    /// an engine built on the store later has it too (see the module docs). `by` is the
    /// user who adds it (logged, target `tradeflow::adapt`).
    ///
    /// # Errors
    /// [`EngineError::Security`] when the engine checks permissions and `by` may not
    /// `adapt` the workflow; [`EngineError::UnknownWorkflow`]; [`EngineError::Invalid`] with every problem of
    /// the rule, located at `adaptations[n] (id)`; [`EngineError::Store`] when the store
    /// fails (the rule is then not added); [`EngineError::TooManyAdaptations`] past
    /// [`MAX_ADDED_ADAPTATIONS`]; [`EngineError::Audit`] when the audit log does not take
    /// the entry (the rule is then not added).
    pub fn adapt_workflow(
        &self,
        workflow_id: &str,
        adaptation: AdaptationDefinition,
        by: &str,
    ) -> Result<(), EngineError> {
        self.inner
            .permit(Some(by), crate::security::Action::Adapt, Some(workflow_id))?;
        let plan = self.known_workflow(workflow_id)?;
        let adapting = &self.inner.adapting;
        let added = adapting
            .added(&self.inner, &plan)
            .unwrap_or_else(|| Arc::from(Vec::new()));
        if added.len() >= MAX_ADDED_ADAPTATIONS {
            return Err(EngineError::TooManyAdaptations {
                workflow: workflow_id.to_owned(),
                max: MAX_ADDED_ADAPTATIONS,
            });
        }
        let others: Vec<_> = plan
            .adaptations()
            .iter()
            .chain(added.iter())
            .cloned()
            .collect();
        let rule = plan.compile_adaptation(&adaptation, &others)?;
        self.inner
            .audit(Some(by), || crate::audit::AuditEvent::AdaptationAdded {
                workflow: workflow_id.to_owned(),
                rule: adaptation.id.clone(),
            })?;
        if let Some(store) = self.inner.store() {
            let text = serde_json::to_string(&adaptation).unwrap_or_default();
            let version = format!("{STORED_PREFIX}{}", added.len() + 1);
            store
                .put_definition(workflow_id, &version, &text)
                .map_err(store_failed)?;
        }
        adapting.record_calls();
        adapting.any_added.store(true, Ordering::Relaxed);
        let mut all = adapting
            .added
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let kept = all
            .entry(workflow_id.to_owned())
            .or_insert_with(|| Arc::from(Vec::new()));
        let mut rules: Vec<_> = kept.to_vec();
        rules.push(Arc::new(rule));
        *kept = Arc::from(rules);
        tracing::info!(
            target: "tradeflow::adapt",
            workflow = workflow_id,
            adaptation = adaptation.id.as_str(),
            by,
            "adaptation added"
        );
        Ok(())
    }
}
