//! The kill switch: engine-level rules that, once their condition holds, halt the
//! workflows they cover until enough people reset them.
//!
//! # Rules
//! A rule is `{"id": "drawdown", "when": "pnl.drawdown > 0.05", "scope": {"tags":
//! ["live"]}, "flatten": "flatten-positions", "quorum": 2}`:
//! - `id`: not empty, at most [`MAX_RULE_ID_BYTES`] bytes, unique among the rules;
//! - `when`: a condition over the host's context (the values set with
//!   `Engine::report_metric` and `Engine::adapt_to_conditions`), compiled as an
//!   adaptation's `when` is, without `${…}` bindings;
//! - `scope.tags`: the rule covers the workflows that carry at least one of these tags
//!   (a workflow's `tags`); an empty or absent scope covers every workflow;
//! - `flatten`: a workflow started once each time the rule trips (it is never halted by
//!   the rule that started it);
//! - `quorum`: how many distinct people must reset the rule (default 1, at most
//!   [`MAX_QUORUM`]).
//!
//! At most [`MAX_KILL_SWITCH_RULES`] rules; every problem is reported at once, located
//! `killSwitch[i] (id).field`.
//!
//! # Tripping and resetting
//! Every report re-evaluates the rules that have not tripped; one whose `when` holds
//! trips (a `when` that cannot be evaluated, e.g. over a metric not yet reported, does
//! not hold). While a rule is tripped, the workflows it covers are *halted*: no new run
//! of them starts (kind `HALTED`), and a step with `"sideEffects": true` of a run in
//! flight does not start (it waits, as in a paused run; steps already called finish and
//! other steps go on). A reset by one person counts once however often they send it; when
//! `quorum` distinct people have reset the rule, it is re-armed (evaluated again on the
//! next report) and halted runs go on. Who may reset (an `admin` role) is the host's to
//! check before it calls the engine.
//!
//! This module holds the rules and their state only (no clock, no I/O).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::definition::{DefinitionError, Location, Quoted, ValidationErrors};
use crate::expr::{Condition, Context, Scope};

/// The most kill switch rules an engine takes.
pub const MAX_KILL_SWITCH_RULES: usize = 100;
/// The longest rule id, in bytes.
pub const MAX_RULE_ID_BYTES: usize = 64;
/// The longest workflow tag, in bytes.
pub const MAX_TAG_BYTES: usize = 64;
/// The largest `quorum` a rule may ask for.
pub const MAX_QUORUM: u32 = 16;

/// One kill switch rule, as written (`killSwitch[i]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[non_exhaustive]
pub struct KillSwitchRule {
    /// The rule's id, unique among the engine's rules.
    pub id: String,
    /// The condition over the host's context that trips the rule.
    pub when: String,
    /// The workflows the rule halts; empty: every workflow.
    #[serde(default, skip_serializing_if = "KillScope::is_everything")]
    pub scope: KillScope,
    /// A workflow started once each time the rule trips.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flatten: Option<String>,
    /// How many distinct people must reset the rule; default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quorum: Option<u32>,
}

impl KillSwitchRule {
    /// A rule `id` that trips when `when` holds, covering every workflow.
    pub fn new(id: impl Into<String>, when: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            when: when.into(),
            scope: KillScope::default(),
            flatten: None,
            quorum: None,
        }
    }

    /// Covers only the workflows carrying one of `tags`.
    #[must_use]
    pub fn scope_tags<T: Into<String>>(mut self, tags: impl IntoIterator<Item = T>) -> Self {
        self.scope.tags = tags.into_iter().map(Into::into).collect();
        self
    }

    /// Starts workflow `workflow` once each time the rule trips.
    #[must_use]
    pub fn flatten(mut self, workflow: impl Into<String>) -> Self {
        self.flatten = Some(workflow.into());
        self
    }

    /// Needs `quorum` distinct people to reset.
    #[must_use]
    pub fn quorum(mut self, quorum: u32) -> Self {
        self.quorum = Some(quorum);
        self
    }
}

/// Which workflows a rule covers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct KillScope {
    /// Workflows carrying any of these tags; empty: every workflow.
    #[serde(default)]
    pub tags: Vec<String>,
}

impl KillScope {
    fn is_everything(&self) -> bool {
        self.tags.is_empty()
    }
}

/// Something the kill switch did: a rule tripped, or was reset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
#[non_exhaustive]
pub enum KillSwitchEvent {
    /// Rule `rule` tripped at `at`; the workflows it covers are halted.
    #[serde(rename_all = "camelCase")]
    Tripped {
        /// The rule.
        rule: String,
        /// The condition that held.
        when: String,
        /// When (the engine's clock).
        at: DateTime<Utc>,
        /// The workflow started to flatten, if the rule names one.
        flatten: Option<String>,
    },
    /// Rule `rule` was reset by these people and is armed again.
    #[serde(rename_all = "camelCase")]
    Reset {
        /// The rule.
        rule: String,
        /// The distinct people who reset it, sorted.
        by: Vec<String>,
        /// When (the engine's clock).
        at: DateTime<Utc>,
    },
}

/// Where a reset stands.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResetProgress {
    /// The quorum is reached: the rule is armed again.
    Done(KillSwitchEvent),
    /// More people must reset: `have` of `need` so far.
    Pending {
        /// Distinct people who reset so far.
        have: usize,
        /// The rule's quorum.
        need: usize,
    },
}

/// Why a reset was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KillSwitchError {
    /// No rule has this id.
    #[error("no kill switch rule `{}`", Quoted(.rule))]
    UnknownRule {
        /// The id asked for.
        rule: String,
    },
    /// The rule has not tripped: there is nothing to reset.
    #[error("kill switch rule `{}` has not tripped", Quoted(.rule))]
    NotTripped {
        /// The rule.
        rule: String,
    },
    /// A reset names nobody.
    #[error("a reset of kill switch rule `{}` names who resets it", Quoted(.rule))]
    NoUser {
        /// The rule.
        rule: String,
    },
}

/// A rule, compiled.
#[derive(Debug)]
struct Rule {
    id: String,
    text: String,
    when: Condition,
    tags: Vec<String>,
    flatten: Option<String>,
    quorum: usize,
}

impl Rule {
    /// Whether the rule covers a workflow `workflow` carrying `tags`.
    fn covers(&self, workflow: &str, tags: &[String]) -> bool {
        if self.flatten.as_deref() == Some(workflow) {
            return false;
        }
        self.tags.is_empty() || self.tags.iter().any(|tag| tags.contains(tag))
    }
}

/// A rule's state.
#[derive(Debug, Default, Clone)]
struct State {
    tripped: bool,
    resets: BTreeSet<String>,
}

/// The engine's kill switch: its rules and which have tripped.
#[derive(Debug, Default)]
pub struct KillSwitch {
    rules: Vec<Rule>,
    states: Mutex<Vec<State>>,
    /// Whether any rule is tripped (the fast path of every check).
    any_tripped: AtomicBool,
}

/// A rule that has just tripped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trip {
    /// The event.
    pub event: KillSwitchEvent,
    /// The workflow to start to flatten, if the rule names one.
    pub flatten: Option<String>,
}

impl KillSwitch {
    /// Checks and compiles `rules`; every problem at once.
    ///
    /// # Errors
    /// The problems, located `killSwitch[i] (id).field`.
    pub fn compile(rules: &[KillSwitchRule]) -> Result<Self, ValidationErrors> {
        let mut errors = Vec::new();
        let invalid =
            |errors: &mut Vec<DefinitionError>, at: Location, value: &str, reason: &str| {
                errors.push(DefinitionError::InvalidValue {
                    at,
                    value: value.chars().take(80).collect(),
                    reason: reason.to_owned(),
                });
            };
        if rules.len() > MAX_KILL_SWITCH_RULES {
            invalid(
                &mut errors,
                Location::root().field("killSwitch"),
                &rules.len().to_string(),
                "at most 100 kill switch rules",
            );
        }
        let mut compiled = Vec::new();
        let mut conditions = Vec::new();
        for (index, rule) in rules.iter().take(MAX_KILL_SWITCH_RULES).enumerate() {
            let at = || Location::kill_switch(index, Some(&rule.id));
            if rule.id.is_empty() {
                invalid(
                    &mut errors,
                    at().field("id"),
                    "",
                    "a rule's id is not empty",
                );
            } else if rule.id.len() > MAX_RULE_ID_BYTES {
                invalid(
                    &mut errors,
                    at().field("id"),
                    &rule.id,
                    "a rule's id is at most 64 bytes",
                );
            } else if let Some(first) = rules.iter().take(index).position(|r| r.id == rule.id) {
                invalid(
                    &mut errors,
                    at().field("id"),
                    &rule.id,
                    &format!("killSwitch[{first}] already has this id"),
                );
            }
            for (position, tag) in rule.scope.tags.iter().enumerate() {
                if tag.is_empty() || tag.len() > MAX_TAG_BYTES {
                    invalid(
                        &mut errors,
                        at().field("scope").field("tags").index(position),
                        tag,
                        "a tag is not empty and at most 64 bytes",
                    );
                }
            }
            if rule.flatten.as_deref().is_some_and(str::is_empty) {
                invalid(
                    &mut errors,
                    at().field("flatten"),
                    "",
                    "a workflow id is not empty",
                );
            }
            let quorum = rule.quorum.unwrap_or(1);
            if quorum == 0 || quorum > MAX_QUORUM {
                invalid(
                    &mut errors,
                    at().field("quorum"),
                    &quorum.to_string(),
                    "a quorum is from 1 to 16 people",
                );
            }
            conditions.push(Condition::compile(
                &rule.when,
                &Scope::adaptation(),
                &|| at().field("when"),
                &mut errors,
            ));
            compiled.push((rule, quorum));
        }
        if !errors.is_empty() {
            return Err(ValidationErrors::new(errors));
        }
        let rules: Vec<Rule> = compiled
            .into_iter()
            .zip(conditions)
            .filter_map(|((rule, quorum), when)| {
                Some(Rule {
                    id: rule.id.clone(),
                    text: rule.when.clone(),
                    when: when?,
                    tags: rule.scope.tags.clone(),
                    flatten: rule.flatten.clone(),
                    quorum: usize::try_from(quorum).unwrap_or(1),
                })
            })
            .collect();
        Ok(Self {
            states: Mutex::new(vec![State::default(); rules.len()]),
            rules,
            any_tripped: AtomicBool::new(false),
        })
    }

    /// Whether there are no rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Evaluates the armed rules over `context` at `at`: the rules that trip now.
    pub fn evaluate(&self, context: &Context, at: DateTime<Utc>) -> Vec<Trip> {
        if self.rules.is_empty() {
            return Vec::new();
        }
        let mut states = self.states.lock().unwrap_or_else(PoisonError::into_inner);
        let mut trips = Vec::new();
        for (rule, state) in self.rules.iter().zip(states.iter_mut()) {
            if state.tripped {
                continue;
            }
            if rule.when.evaluate_with(context) == Ok(true) {
                state.tripped = true;
                state.resets.clear();
                trips.push(Trip {
                    event: KillSwitchEvent::Tripped {
                        rule: rule.id.clone(),
                        when: rule.text.clone(),
                        at,
                        flatten: rule.flatten.clone(),
                    },
                    flatten: rule.flatten.clone(),
                });
            }
        }
        if !trips.is_empty() {
            self.any_tripped.store(true, Ordering::Release);
        }
        trips
    }

    /// The tripped rule that halts workflow `workflow` carrying `tags`, if one does.
    pub fn halting(&self, workflow: &str, tags: &[String]) -> Option<String> {
        if !self.any_tripped.load(Ordering::Acquire) {
            return None;
        }
        let states = self.states.lock().unwrap_or_else(PoisonError::into_inner);
        self.rules
            .iter()
            .zip(states.iter())
            .find(|(rule, state)| state.tripped && rule.covers(workflow, tags))
            .map(|(rule, _)| rule.id.clone())
    }

    /// The ids of the rules tripped now, in listed order.
    pub fn tripped(&self) -> Vec<String> {
        let states = self.states.lock().unwrap_or_else(PoisonError::into_inner);
        self.rules
            .iter()
            .zip(states.iter())
            .filter(|(_, state)| state.tripped)
            .map(|(rule, _)| rule.id.clone())
            .collect()
    }

    /// `user` resets rule `rule` at `at`: counted once per person; at the rule's quorum
    /// the rule is armed again.
    ///
    /// # Errors
    /// No such rule, the rule has not tripped, or `user` is empty.
    pub fn reset(
        &self,
        rule: &str,
        user: &str,
        at: DateTime<Utc>,
    ) -> Result<ResetProgress, KillSwitchError> {
        let Some(index) = self.rules.iter().position(|r| r.id == rule) else {
            return Err(KillSwitchError::UnknownRule {
                rule: rule.to_owned(),
            });
        };
        if user.is_empty() {
            return Err(KillSwitchError::NoUser {
                rule: rule.to_owned(),
            });
        }
        let mut states = self.states.lock().unwrap_or_else(PoisonError::into_inner);
        let (Some(state), Some(compiled)) = (states.get_mut(index), self.rules.get(index)) else {
            return Err(KillSwitchError::UnknownRule {
                rule: rule.to_owned(),
            });
        };
        if !state.tripped {
            return Err(KillSwitchError::NotTripped {
                rule: rule.to_owned(),
            });
        }
        if state.resets.len() < compiled.quorum {
            state
                .resets
                .insert(user.chars().take(MAX_RULE_ID_BYTES * 4).collect());
        }
        if state.resets.len() < compiled.quorum {
            return Ok(ResetProgress::Pending {
                have: state.resets.len(),
                need: compiled.quorum,
            });
        }
        state.tripped = false;
        let by = std::mem::take(&mut state.resets).into_iter().collect();
        let any = states.iter().any(|state| state.tripped);
        self.any_tripped.store(any, Ordering::Release);
        Ok(ResetProgress::Done(KillSwitchEvent::Reset {
            rule: rule.to_owned(),
            by,
            at,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at() -> DateTime<Utc> {
        DateTime::<Utc>::UNIX_EPOCH
    }

    fn drawdown(quorum: u32) -> KillSwitch {
        let rule = KillSwitchRule::new("drawdown", "pnl.drawdown > 0.05")
            .scope_tags(["live"])
            .flatten("flatten-positions")
            .quorum(quorum);
        KillSwitch::compile(&[rule]).unwrap()
    }

    fn context(drawdown: f64) -> Context {
        let mut context = Context::new();
        context.set_value("pnl.drawdown", json!(drawdown));
        context
    }

    #[test]
    fn a_rule_trips_once_when_its_condition_holds() {
        let switch = drawdown(1);
        assert!(switch.evaluate(&context(0.01), at()).is_empty());
        let trips = switch.evaluate(&context(0.06), at());
        assert_eq!(trips.len(), 1);
        assert_eq!(trips[0].flatten.as_deref(), Some("flatten-positions"));
        assert!(switch.evaluate(&context(0.07), at()).is_empty());
        assert_eq!(switch.tripped(), ["drawdown"]);
    }

    #[test]
    fn a_metric_not_yet_reported_trips_nothing() {
        assert!(drawdown(1).evaluate(&Context::new(), at()).is_empty());
    }

    #[test]
    fn a_tripped_rule_halts_only_the_workflows_it_covers() {
        let switch = drawdown(1);
        switch.evaluate(&context(0.06), at());
        let live = vec!["live".to_owned()];
        assert_eq!(switch.halting("algo", &live).as_deref(), Some("drawdown"));
        assert_eq!(switch.halting("paper", &["paper".to_owned()]), None);
        assert_eq!(switch.halting("flatten-positions", &live), None);
    }

    #[test]
    fn a_reset_needs_its_quorum_of_distinct_people() {
        let switch = drawdown(2);
        switch.evaluate(&context(0.06), at());
        let pending = ResetProgress::Pending { have: 1, need: 2 };
        assert_eq!(switch.reset("drawdown", "ann", at()), Ok(pending.clone()));
        assert_eq!(switch.reset("drawdown", "ann", at()), Ok(pending));
        assert!(matches!(
            switch.reset("drawdown", "bob", at()),
            Ok(ResetProgress::Done(KillSwitchEvent::Reset { ref by, .. })) if by == &["ann", "bob"]
        ));
        assert_eq!(switch.halting("algo", &["live".to_owned()]), None);
        assert!(matches!(
            switch.reset("drawdown", "ann", at()),
            Err(KillSwitchError::NotTripped { .. })
        ));
    }

    #[test]
    fn every_problem_of_the_rules_is_located() {
        let rules = [
            KillSwitchRule::new("", "pnl.drawdown >"),
            KillSwitchRule::new("a", "x > 1").quorum(0),
            KillSwitchRule::new("a", "${steps.x.output} > 1"),
        ];
        let errors = KillSwitch::compile(&rules).unwrap_err().to_string();
        assert!(errors.contains("killSwitch[0].id"), "{errors}");
        assert!(errors.contains("killSwitch[0].when"), "{errors}");
        assert!(errors.contains("killSwitch[1] (a).quorum"), "{errors}");
        assert!(errors.contains("killSwitch[2] (a).id"), "{errors}");
        assert!(errors.contains("killSwitch[2] (a).when"), "{errors}");
    }
}
