//! The decision pass: a `decision` step's `decision` block checked and compiled into a
//! [`Choice`].
//!
//! Checked, every problem at once, each located under `steps[i] (id).decision`:
//! `options` is not empty, each option's `id` is not empty and no two options share one;
//! each option's `parameters` compile as a template over the step's scope (its bindings
//! become data edges, like the task's parameters) and its `scores` name only listed
//! criteria; `criteria` names are not empty and not repeated, each `weight` is finite
//! and at least 0; `exploration` is in [0, 1] and only with `EPSILON_GREEDY`;
//! `contextKey` compiles as a template over the step's scope (evaluated when the step
//! starts; its bindings are data edges too); `reward` is one binding (`${step.output…}`
//! or `${input…}`) that may read any step of the workflow, the decision step itself
//! included, because it is evaluated when the run ends (it adds no edge). Unknown
//! `goal` and `policy` values are structural problems, reported when the file loads.

use std::collections::HashSet;

use serde_json::Value;

use super::Compiler;
use crate::definition::{DecisionPolicy, DecisionSettings, DefinitionError};
use crate::expr::{Locate, Scope, StepLookup, Template};
use crate::plan::Choice;

impl Compiler {
    /// Checks and compiles a step's `decision` block (the caller refuses it on steps of
    /// other types); `None` when it has a problem (pushed to `errors`).
    pub(super) fn choice(
        &mut self,
        settings: &DecisionSettings,
        at: Locate<'_>,
        scope: &Scope<'_>,
        lookup: StepLookup<'_>,
    ) -> Option<Choice> {
        let at = || at().field("decision");
        let errors_before = self.errors.len();
        let criteria = self.criteria(settings, &at);
        let parameters = self.options(settings, &criteria, &at, scope);
        self.exploration(settings, &at);
        let context_key = settings.context_key.as_ref().and_then(|text| {
            Template::compile(
                &Value::String(text.clone()),
                scope,
                &|| at().field("contextKey"),
                &mut self.errors,
            )
        });
        let reward = settings
            .reward
            .as_ref()
            .and_then(|text| self.reward(text, &|| at().field("reward"), lookup));
        if self.errors.len() > errors_before {
            return None;
        }
        Some(Choice::new(
            settings.clone(),
            parameters?,
            context_key,
            reward,
        ))
    }

    /// Checks the criteria; their names, for checking the options' scores.
    fn criteria<'s>(&mut self, settings: &'s DecisionSettings, at: Locate<'_>) -> HashSet<&'s str> {
        let mut names = HashSet::new();
        for (index, criterion) in settings.criteria.iter().flatten().enumerate() {
            let at = || at().field("criteria").index(index);
            if criterion.name.is_empty() {
                self.invalid(at().field("name"), "\"\"", "a criterion needs a name");
            } else if !names.insert(criterion.name.as_str()) {
                self.invalid(
                    at().field("name"),
                    &criterion.name,
                    "two criteria have this name",
                );
            }
            if let Some(weight) = criterion.weight
                && !(weight.is_finite() && weight >= 0.0)
            {
                self.invalid(
                    at().field("weight"),
                    &weight.to_string(),
                    "a weight is a finite number of at least 0",
                );
            }
        }
        names
    }

    /// Checks the options and compiles their parameters (in option order); `None` when
    /// any has a problem.
    fn options(
        &mut self,
        settings: &DecisionSettings,
        criteria: &HashSet<&str>,
        at: Locate<'_>,
        scope: &Scope<'_>,
    ) -> Option<Box<[Option<Template>]>> {
        if settings.options.is_empty() {
            self.invalid(
                at().field("options"),
                "[]",
                "a decision needs at least one option",
            );
            return None;
        }
        let mut ids: HashSet<&str> = HashSet::with_capacity(settings.options.len());
        let mut parameters = Vec::with_capacity(settings.options.len());
        let mut ok = true;
        for (index, option) in settings.options.iter().enumerate() {
            let at = || at().field("options").index(index);
            if option.id.is_empty() {
                self.invalid(at().field("id"), "\"\"", "an option needs an id");
            } else if !ids.insert(option.id.as_str()) {
                self.invalid(at().field("id"), &option.id, "two options have this id");
            }
            for name in option.scores.iter().flat_map(|scores| scores.keys()) {
                if !criteria.contains(name.as_str()) {
                    self.invalid(
                        at().field("scores").field(name.clone()),
                        name,
                        "no criterion has this name",
                    );
                }
            }
            match &option.parameters {
                None => parameters.push(None),
                Some(object) => {
                    let compiled = Template::compile_object(
                        object,
                        scope,
                        &|| at().field("parameters"),
                        &mut self.errors,
                    );
                    ok &= compiled.is_some();
                    parameters.push(compiled);
                }
            }
        }
        ok.then(|| parameters.into_boxed_slice())
    }

    /// `exploration`: in [0, 1], and only for `EPSILON_GREEDY`.
    fn exploration(&mut self, settings: &DecisionSettings, at: Locate<'_>) {
        let Some(exploration) = settings.exploration else {
            return;
        };
        if settings.policy != Some(DecisionPolicy::EpsilonGreedy) {
            self.not_allowed(
                at,
                "exploration",
                "only the EPSILON_GREEDY policy explores at random",
            );
        } else if !(0.0..=1.0).contains(&exploration) {
            self.invalid(
                at().field("exploration"),
                &exploration.to_string(),
                "exploration is a share of decisions, from 0 to 1",
            );
        }
    }

    /// `reward`: one binding, which may read any step of the workflow.
    fn reward(&mut self, text: &str, at: Locate<'_>, lookup: StepLookup<'_>) -> Option<Template> {
        if !crate::expr::is_whole_binding(text) {
            self.errors.push(DefinitionError::InvalidValue {
                at: at(),
                value: text.to_owned(),
                reason: "a reward is one binding that gives a number, such as \
                         \"${monitor.output.fillQuality}\""
                    .to_owned(),
            });
            return None;
        }
        Template::compile(
            &Value::String(text.to_owned()),
            &Scope::run_end(lookup),
            at,
            &mut self.errors,
        )
    }
}

#[cfg(test)]
mod tests {
    use crate::definition::{Location, StepId};
    use crate::plan::{ExecutionPlan, Policy};

    /// Where a step's `decision` block is.
    fn decision_at(index: usize, id: &str) -> Location {
        Location::step(index, Some(&StepId::new(id))).field("decision")
    }

    fn workflow(decision: &str) -> String {
        format!(
            r#"{{"id": "w", "steps": [
                {{"id": "signal", "type": "task", "agentCriteria": {{"type": "A"}}, "task": {{"type": "T"}}}},
                {{"id": "pick", "type": "decision", "agentCriteria": {{"type": "A"}},
                  "task": {{"type": "EXECUTE", "parameters": {{"qty": 5}}}},
                  "decision": {decision}}},
                {{"id": "monitor", "type": "task", "agentCriteria": {{"type": "A"}}, "task": {{"type": "T"}}}}
            ]}}"#
        )
    }

    fn problems(decision: &str) -> Vec<String> {
        match ExecutionPlan::from_json(&workflow(decision)) {
            Ok(_) => Vec::new(),
            Err(errors) => errors.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn a_valid_block_compiles_with_its_policy() {
        let plan = ExecutionPlan::from_json(&workflow(
            r#"{"options": [{"id": "twap", "parameters": {"algo": "TWAP", "regime": "${signal.output.regime}"}, "scores": {"cost": 2}},
                            {"id": "vwap", "scores": {"cost": 1.5}}],
                "criteria": [{"name": "cost", "weight": 0.7, "goal": "MIN"}],
                "contextKey": "${signal.output.regime}",
                "reward": "${monitor.output.fillQuality}"}"#,
        ))
        .expect("valid");
        let step = plan.step(1).expect("pick");
        let choice = step.choice().expect("a choice");
        assert_eq!(choice.policy(), Policy::Thompson);
        assert_eq!(choice.options().len(), 2);
        assert!(choice.option_parameters(0).is_some());
        assert!(choice.option_parameters(1).is_none());
        assert!(choice.context_key().is_some());
        // The option's parameters and the context key read `signal`: a data edge. The
        // reward reads `monitor`, a later step, and adds none.
        assert_eq!(step.data_inputs(), [0]);
        assert!(!plan.step(2).expect("monitor").data_inputs().contains(&1));
    }

    #[test]
    fn every_problem_of_a_block_is_named_at_its_field() {
        let found = problems(
            r#"{"options": [{"id": "a", "scores": {"speed": 1}}, {"id": "a"}, {"id": ""}],
                "criteria": [{"name": "cost", "weight": -1}, {"name": "cost"}],
                "exploration": 2,
                "contextKey": "${nowhere.output.x}",
                "reward": "${monitor.output.q} extra"}"#,
        );
        let at = decision_at(1, "pick");
        let expected = [
            format!("{at}.criteria[0].weight: invalid value -1"),
            format!("{at}.criteria[1].name: invalid value cost: two criteria have this name"),
            format!(
                "{at}.options[0].scores.speed: invalid value speed: no criterion has this name"
            ),
            format!("{at}.options[1].id: invalid value a: two options have this id"),
            format!("{at}.options[2].id"),
            format!("{at}: `exploration` is not allowed here"),
            format!("{at}.contextKey"),
            format!("{at}.reward: invalid value"),
        ];
        for wanted in expected {
            assert!(
                found.iter().any(|problem| problem.starts_with(&wanted)),
                "no problem starting with {wanted:?} in {found:#?}"
            );
        }
    }

    #[test]
    fn empty_options_unknown_reward_steps_and_blocks_on_other_steps_are_refused() {
        let at = decision_at(1, "pick");
        let empty = problems(r#"{"options": []}"#);
        assert!(
            empty[0].starts_with(&format!("{at}.options: invalid value []")),
            "{empty:?}"
        );
        let unknown = problems(r#"{"options": [{"id": "a"}], "reward": "${ghost.output.q}"}"#);
        assert!(
            unknown[0].starts_with(&format!("{at}.reward")),
            "{unknown:?}"
        );
        assert!(unknown[0].contains("ghost"), "{unknown:?}");
        let bad_goal = problems(
            r#"{"options": [{"id": "a"}], "criteria": [{"name": "c", "goal": "LOWEST"}]}"#,
        );
        assert!(
            bad_goal[0].starts_with(&format!("{at}.criteria[0].goal")),
            "{bad_goal:?}"
        );
        let bad_policy = problems(r#"{"options": [{"id": "a"}], "policy": "GREEDY"}"#);
        assert!(
            bad_policy[0].starts_with(&format!("{at}.policy")),
            "{bad_policy:?}"
        );
        let greedy = problems(
            r#"{"options": [{"id": "a"}], "policy": "EPSILON_GREEDY", "exploration": 1.5}"#,
        );
        assert!(
            greedy[0].starts_with(&format!("{at}.exploration: invalid value 1.5")),
            "{greedy:?}"
        );

        let on_task = r#"{"id": "w", "steps": [{"id": "t", "type": "task", "agentCriteria": {"type": "A"},
            "task": {"type": "T"}, "decision": {"options": [{"id": "a"}]}}]}"#;
        let errors = ExecutionPlan::from_json(on_task).expect_err("refused");
        assert!(
            errors
                .iter()
                .any(|e| e.to_string().contains("`decision` is not allowed here")),
            "{errors}"
        );
    }
}
