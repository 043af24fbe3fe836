//! The coordination pass: a `task` or `decision` step's `coordination` block checked and
//! compiled into a [`Coordination`].
//!
//! Checked, every problem at once, each located under `steps[i] (id).coordination`:
//! `agents` is at least 1; `quorum` is at least 1, at most `agents` when that is given,
//! and only with `ALL` and `QUORUM`; `agreeOn` only with `QUORUM`; `rankBy` required
//! with `BEST` and only there; `goal` only with `BEST`; `agreeOn` and `rankBy` are
//! dotted paths without empty segments. An unknown `mode` or `goal` is a structural
//! problem, reported when the file loads; a block on a step of another type is refused
//! by the steps pass.

use std::num::NonZeroU32;

use crate::coordinate::{Coordination, Mode, ValuePath};
use crate::definition::{CoordinationMode, CoordinationSettings, DefinitionError, Goal, Location};
use crate::expr::Locate;

use super::Compiler;

impl Compiler {
    /// Checks and compiles a step's `coordination` block; `None` when it has a problem
    /// (pushed to `errors`).
    pub(super) fn coordination(
        &mut self,
        settings: &CoordinationSettings,
        at: Locate<'_>,
    ) -> Option<Coordination> {
        let at = || at().field("coordination");
        let errors_before = self.errors.len();
        let mode = settings.mode;
        let agents = settings.agents.map(|agents| {
            let count = NonZeroU32::new(agents);
            if count.is_none() {
                self.invalid(
                    at().field("agents"),
                    "0",
                    "a coordination asks at least 1 agent",
                );
            }
            count
        });
        let quorum = settings
            .quorum
            .and_then(|quorum| self.quorum(quorum, settings, &at));
        let only = |field: &'static str, value: &str, owners: &str, this: &mut Self| {
            this.invalid(
                at().field(field),
                value,
                &format!(
                    "only {owners} has it; this coordination is {}",
                    mode.as_str()
                ),
            );
        };
        if let Some(agree_on) = &settings.agree_on
            && mode != CoordinationMode::Quorum
        {
            only("agreeOn", agree_on, "QUORUM", self);
        }
        if let Some(rank_by) = &settings.rank_by
            && mode != CoordinationMode::Best
        {
            only("rankBy", rank_by, "BEST", self);
        }
        if let Some(goal) = settings.goal
            && mode != CoordinationMode::Best
        {
            let written = match goal {
                Goal::Min => "MIN",
                Goal::Max => "MAX",
            };
            only("goal", written, "BEST", self);
        }
        let agree_on = settings
            .agree_on
            .as_deref()
            .and_then(|text| self.value_path(text, at().field("agreeOn")));
        let rank_by = settings
            .rank_by
            .as_deref()
            .and_then(|text| self.value_path(text, at().field("rankBy")));
        if mode == CoordinationMode::Best && settings.rank_by.is_none() {
            self.required(
                &at,
                "rankBy",
                "with mode BEST (the dotted path of the number answers are ranked by)".to_owned(),
            );
        }
        if self.errors.len() > errors_before {
            return None;
        }
        let mode = match mode {
            CoordinationMode::All => Mode::All { quorum },
            CoordinationMode::First => Mode::First,
            CoordinationMode::Quorum => Mode::Quorum { quorum, agree_on },
            CoordinationMode::Best => Mode::Best {
                rank_by: rank_by?,
                goal: settings.goal.unwrap_or_default(),
            },
        };
        let coordination = Coordination::new(mode);
        Some(match agents.flatten() {
            Some(agents) => coordination.agents(agents),
            None => coordination,
        })
    }

    /// `quorum`: at least 1, at most `agents`, and only with `ALL` and `QUORUM`.
    fn quorum(
        &mut self,
        quorum: u32,
        settings: &CoordinationSettings,
        at: Locate<'_>,
    ) -> Option<NonZeroU32> {
        let at = || at().field("quorum");
        let value = quorum.to_string();
        if !matches!(
            settings.mode,
            CoordinationMode::All | CoordinationMode::Quorum
        ) {
            self.invalid(
                at(),
                &value,
                &format!(
                    "only ALL and QUORUM have a quorum; this coordination is {}",
                    settings.mode.as_str()
                ),
            );
            return None;
        }
        if quorum == 0 {
            self.invalid(at(), &value, "a quorum is at least 1 answer");
            return None;
        }
        // An `agents` of 0 is reported on its own.
        if let Some(agents) = settings.agents.filter(|&agents| agents > 0)
            && quorum > agents
        {
            self.invalid(
                at(),
                &value,
                &format!("a quorum is at most the {agents} agents asked"),
            );
            return None;
        }
        NonZeroU32::new(quorum)
    }

    /// A dotted path, or a problem at `at`.
    fn value_path(&mut self, text: &str, at: Location) -> Option<ValuePath> {
        match ValuePath::parse(text) {
            Ok(path) => Some(path),
            Err(error) => {
                self.errors.push(DefinitionError::InvalidValue {
                    at,
                    value: text.to_owned(),
                    reason: format!("{error}: a path is dotted keys, such as \"risk.approved\""),
                });
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::coordinate::Mode;
    use crate::definition::{Goal, Location, StepId};
    use crate::plan::ExecutionPlan;

    fn workflow(step_type: &str, coordination: &str) -> String {
        format!(
            r#"{{"id": "w", "steps": [
                {{"id": "vote", "type": "{step_type}", "agentCriteria": {{"type": "A"}},
                  "task": {{"type": "T"}}, "coordination": {coordination}}}
            ]}}"#
        )
    }

    fn problems(step_type: &str, coordination: &str) -> Vec<String> {
        match ExecutionPlan::from_json(&workflow(step_type, coordination)) {
            Ok(_) => Vec::new(),
            Err(errors) => errors.iter().map(ToString::to_string).collect(),
        }
    }

    fn at() -> Location {
        Location::step(0, Some(&StepId::new("vote"))).field("coordination")
    }

    #[test]
    fn a_valid_block_compiles_with_its_defaults() {
        let plan = ExecutionPlan::from_json(&workflow(
            "decision",
            r#"{"mode": "BEST", "agents": 3, "rankBy": "edge.score"}"#,
        ))
        .expect("valid");
        let coordination = plan
            .step(0)
            .and_then(|step| step.coordination())
            .expect("a coordination");
        assert_eq!(coordination.agent_count().map(|n| n.get()), Some(3));
        assert!(matches!(
            coordination.mode(),
            Mode::Best { rank_by, goal: Goal::Max } if rank_by.as_str() == "edge.score"
        ));
        let plain =
            ExecutionPlan::from_json(&workflow("task", r#"{"mode": "FIRST"}"#)).expect("valid");
        let first = plain.step(0).and_then(|step| step.coordination());
        assert_eq!(first.map(|c| c.agent_count()), Some(None));
    }

    #[test]
    fn every_problem_of_a_block_is_named_at_its_field() {
        let found = problems(
            "task",
            r#"{"mode": "FIRST", "agents": 0, "quorum": 2, "agreeOn": "a", "rankBy": "b..c", "goal": "MIN"}"#,
        );
        let at = at();
        for wanted in [
            format!("{at}.agents: invalid value 0"),
            format!("{at}.quorum: invalid value 2: only ALL and QUORUM"),
            format!("{at}.agreeOn: invalid value a: only QUORUM"),
            format!("{at}.rankBy: invalid value b..c: only BEST"),
            format!("{at}.goal: invalid value MIN: only BEST"),
            format!("{at}.rankBy: invalid value b..c: path"),
        ] {
            assert!(
                found.iter().any(|problem| problem.starts_with(&wanted)),
                "no problem starting with {wanted:?} in {found:#?}"
            );
        }
        let quorum = problems("task", r#"{"mode": "QUORUM", "agents": 2, "quorum": 3}"#);
        assert!(
            quorum[0].starts_with(&format!(
                "{at}.quorum: invalid value 3: a quorum is at most"
            )),
            "{quorum:?}"
        );
        let zero = problems("task", r#"{"mode": "ALL", "quorum": 0}"#);
        assert!(
            zero[0].starts_with(&format!("{at}.quorum: invalid value 0")),
            "{zero:?}"
        );
        let best = problems("task", r#"{"mode": "BEST"}"#);
        assert!(
            best[0].starts_with(&format!("{at}: `rankBy` is required with mode BEST")),
            "{best:?}"
        );
        let mode = problems("task", r#"{"mode": "MAJORITY"}"#);
        assert!(
            mode[0].starts_with(&format!("{at}.mode: unknown value `MAJORITY`")),
            "{mode:?}"
        );
        let on_loop = problems("loop", r#"{"mode": "FIRST"}"#);
        assert!(
            on_loop
                .iter()
                .any(|problem| problem.contains("`coordination` is not allowed here")),
            "{on_loop:?}"
        );
    }
}
