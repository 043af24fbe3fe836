//! Random values in task scripts: the `random` field, its checks, and the draws.
//!
//! A script's `random` names values drawn afresh on every call, each from a
//! distribution whose two numbers are literals or `${params…}` bindings:
//! ```json
//! "random": { "fill": { "normal": ["${params.meanFill}", 0.05] }, "jitter": { "uniform": [0, 1] } }
//! ```
//! Each value is drawn from its own generator, seeded with the call's
//! [`TaskRequest::seed`](crate::agent::TaskRequest::seed) mixed with the value's name, so
//! a value's draw depends on neither the other values nor the order calls are made in.
//! Normals are drawn with the Box–Muller transform from two uniforms; uniforms as
//! `low·(1−u) + high·u`, which cannot overflow between two finite bounds.

use std::fmt;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::scripted::unresolved;
use crate::definition::{DefinitionError, Location, Quoted};
use crate::expr::{Binding, BindingValues, PathSegment, Source, Template};
use crate::run::seed::mix;

/// A distribution a random value is drawn from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Distribution {
    /// `{"normal": [mean, sd]}`: the normal distribution (sd ≥ 0; sd 0 always draws the
    /// mean).
    Normal,
    /// `{"uniform": [low, high]}`: uniform between low and high (low ≤ high; equal
    /// bounds always draw low).
    Uniform,
}

/// The distributions' names, as written.
const DISTRIBUTIONS: &[&str] = &["normal", "uniform"];

impl Distribution {
    /// The name as written in the agents file (`normal`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Normal => "normal",
            Self::Uniform => "uniform",
        }
    }

    /// What its two numbers are called: `[mean, sd]`, `[low, high]`.
    fn bound_names(self) -> [&'static str; 2] {
        match self {
            Self::Normal => ["mean", "sd"],
            Self::Uniform => ["low", "high"],
        }
    }

    fn named(name: &str) -> Option<Self> {
        match name {
            "normal" => Some(Self::Normal),
            "uniform" => Some(Self::Uniform),
            _ => None,
        }
    }
}

impl fmt::Display for Distribution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One of a distribution's numbers, as written: a number, or a `${params…}` binding to
/// the task's parameters, resolved on each call.
#[derive(Debug, Clone, PartialEq)]
pub enum RandomBound {
    /// A literal number (finite).
    Number(f64),
    /// A binding (`${params.meanFill}`) that must give a finite number on each call.
    Binding(String),
}

/// A value a task script draws at random on each call: `{"normal": [mean, sd]}` or
/// `{"uniform": [low, high]}`, each number a literal or a `${params…}` binding. Read it
/// in `output`/`outputs` as `${random.NAME}`.
///
/// ```
/// # use tradeflow::sim::{Distribution, RandomBound, RandomValue};
/// let fill: RandomValue = serde_json::from_str(r#"{"normal": ["${params.meanFill}", 0.05]}"#)?;
/// assert_eq!(fill.distribution, Distribution::Normal);
/// assert_eq!(fill.bounds[1], RandomBound::Number(0.05));
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct RandomValue {
    /// The distribution.
    pub distribution: Distribution,
    /// Its two numbers, in order: `[mean, sd]` for `normal`, `[low, high]` for
    /// `uniform`. Validation checks that there are two.
    pub bounds: Vec<RandomBound>,
}

impl Serialize for RandomBound {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Number(number) => serializer.serialize_f64(*number),
            Self::Binding(text) => serializer.serialize_str(text),
        }
    }
}

impl Serialize for RandomValue {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(1))?;
        map.serialize_entry(self.distribution.as_str(), &self.bounds)?;
        map.end()
    }
}

/// Why a random value's object is not one distribution.
const ONE_DISTRIBUTION: &str =
    "give one distribution: {\"normal\": [mean, sd]} or {\"uniform\": [low, high]}";

/// Reads `{"normal": [mean, sd]}` and `{"uniform": [low, high]}`. Every problem is said at
/// the value as a whole (`…random.fill`), so that a loader that drops what did not load
/// drops the whole value, not a part of it that would then look empty.
impl<'de> Deserialize<'de> for RandomValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ValueVisitor;

        impl<'de> Visitor<'de> for ValueVisitor {
            type Value = RandomValue;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a distribution: {\"normal\": [mean, sd]} or {\"uniform\": [low, high]}",
                )
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RandomValue, A::Error> {
                let Some(name) = map.next_key::<String>()? else {
                    return Err(de::Error::custom(ONE_DISTRIBUTION));
                };
                let Some(distribution) = Distribution::named(&name) else {
                    return Err(de::Error::unknown_variant(&name, DISTRIBUTIONS));
                };
                let written: Value = map.next_value()?;
                if map.next_key::<IgnoredAny>()?.is_some() {
                    return Err(de::Error::custom(ONE_DISTRIBUTION));
                }
                let names = distribution.bound_names();
                let Value::Array(items) = written else {
                    return Err(de::Error::custom(format_args!(
                        "`{distribution}` takes a list of 2 numbers, [{}, {}]",
                        names[0], names[1]
                    )));
                };
                let bounds = items
                    .into_iter()
                    .enumerate()
                    .map(|(index, item)| match item {
                        Value::Number(number) => number
                            .as_f64()
                            .map(RandomBound::Number)
                            .ok_or_else(|| de::Error::custom("a number beyond a float's range")),
                        Value::String(text) => Ok(RandomBound::Binding(text)),
                        other => {
                            let what = names.get(index).copied().unwrap_or("each value");
                            Err(de::Error::custom(format_args!(
                                "`{distribution}` {what} must be a number or a `${{params…}}` \
                                 binding, not {}",
                                Quoted(&other.to_string())
                            )))
                        }
                    })
                    .collect::<Result<_, _>>()?;
                Ok(RandomValue {
                    distribution,
                    bounds,
                })
            }
        }

        deserializer.deserialize_map(ValueVisitor)
    }
}

/// A random value, compiled: bindings parsed, literals checked.
#[derive(Debug)]
pub(super) struct Draw {
    name: String,
    distribution: Distribution,
    bounds: [Compiled; 2],
}

#[derive(Debug)]
enum Compiled {
    Number(f64),
    Binding(Binding),
}

impl RandomValue {
    /// Compiles the value named `name`, found at `at` (`…random.NAME`); every problem is
    /// pushed to `errors`.
    pub(super) fn compile(
        &self,
        name: &str,
        at: &Location,
        errors: &mut Vec<DefinitionError>,
    ) -> Option<Draw> {
        let before = errors.len();
        let at = at.field(self.distribution.as_str());
        let [first, second] = self.bounds.as_slice() else {
            let [a, b] = self.distribution.bound_names();
            errors.push(DefinitionError::InvalidValue {
                at,
                value: serde_json::to_string(&self.bounds).unwrap_or_default(),
                reason: format!(
                    "`{}` takes 2 numbers, [{a}, {b}]; found {}",
                    self.distribution,
                    self.bounds.len()
                ),
            });
            return None;
        };
        let first = compile_bound(first, &at.index(0), errors);
        let second = compile_bound(second, &at.index(1), errors);
        match (self.distribution, &first, &second) {
            (Distribution::Normal, _, Some(Compiled::Number(sd))) if *sd < 0.0 => {
                errors.push(DefinitionError::InvalidValue {
                    at: at.index(1),
                    value: sd.to_string(),
                    reason: "the standard deviation (sd) cannot be negative".to_owned(),
                });
            }
            (Distribution::Uniform, Some(Compiled::Number(low)), Some(Compiled::Number(high)))
                if low > high =>
            {
                errors.push(DefinitionError::InvalidValue {
                    at,
                    value: format!("[{low}, {high}]"),
                    reason: format!("low ({low}) is above high ({high})"),
                });
            }
            _ => {}
        }
        match (first, second) {
            (Some(first), Some(second)) if errors.len() == before => Some(Draw {
                name: name.to_owned(),
                distribution: self.distribution,
                bounds: [first, second],
            }),
            _ => None,
        }
    }
}

fn compile_bound(
    bound: &RandomBound,
    at: &Location,
    errors: &mut Vec<DefinitionError>,
) -> Option<Compiled> {
    match bound {
        RandomBound::Number(number) if number.is_finite() => Some(Compiled::Number(*number)),
        RandomBound::Number(number) => {
            errors.push(DefinitionError::InvalidValue {
                at: at.clone(),
                value: number.to_string(),
                reason: "a number must be finite".to_owned(),
            });
            None
        }
        RandomBound::Binding(text) => match Binding::compile_param(text, at) {
            Some(Ok(binding)) => Some(Compiled::Binding(binding)),
            Some(Err(problems)) => {
                errors.extend(problems);
                None
            }
            None => {
                errors.push(DefinitionError::InvalidValue {
                    at: at.clone(),
                    value: Value::from(text.as_str()).to_string(),
                    reason: "expected a number or one `${params…}` binding".to_owned(),
                });
                None
            }
        },
    }
}

/// Checks that `name`, a key of the `random` field at `at`, can be read as
/// `${random.NAME}`.
pub(super) fn check_name(at: &Location, name: &str, errors: &mut Vec<DefinitionError>) {
    let readable = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !readable {
        errors.push(DefinitionError::InvalidValue {
            at: at.clone(),
            value: Value::from(name).to_string(),
            reason: "a random value's name is read as `${random.NAME}`: it may only hold ASCII \
                     letters, digits, `_` and `-`, and cannot be empty"
                .to_owned(),
        });
    }
}

/// Checks that every `${random…}` binding of `template` (found at `at`) reads a value
/// of `names`, by name.
pub(super) fn check_reads<'n>(
    template: &Template,
    names: impl Iterator<Item = &'n str> + Clone,
    at: &Location,
    errors: &mut Vec<DefinitionError>,
) {
    template.for_each_binding(&mut |binding| {
        if *binding.source() != Source::Random {
            return;
        }
        let reason = match binding.path().first() {
            // `${random}`: every value, as an object.
            None => return,
            Some(PathSegment::Key(key)) if names.clone().any(|name| name == &**key) => return,
            Some(PathSegment::Key(_)) => {
                let drawn: Vec<String> = names.clone().map(|name| format!("`{name}`")).collect();
                if drawn.is_empty() {
                    "the script draws no random values (declare them in `random`)".to_owned()
                } else {
                    format!(
                        "the script draws no random value of that name (it draws {})",
                        drawn.join(", ")
                    )
                }
            }
            Some(PathSegment::Index(_)) => {
                "random values are read by name, as `${random.NAME}`".to_owned()
            }
        };
        errors.push(DefinitionError::InvalidValue {
            at: at.clone(),
            value: Value::from(binding.text()).to_string(),
            reason,
        });
    });
}

/// The task's parameters, as the input of bound bindings.
struct Params<'a>(&'a Value);

impl BindingValues for Params<'_> {
    fn input(&self) -> &Value {
        self.0
    }

    fn step_output(&self, _index: usize) -> Option<&Value> {
        None
    }
}

/// Draws every one of `draws` for the call seeded `seed` with `parameters`: an object
/// of the values by name.
///
/// # Errors
/// The first value that cannot be drawn, named: a bound whose binding does not give a
/// finite number, a negative sd or a low above high from bindings, a draw that is not
/// finite.
pub(super) fn draw_all(
    draws: &[Draw],
    seed: u64,
    parameters: &Value,
) -> Result<Map<String, Value>, String> {
    draws
        .iter()
        .map(|draw| {
            let value = draw
                .draw(seed, parameters)
                .map_err(|problem| format!("random value `{}`: {problem}", Quoted(&draw.name)))?;
            let number = serde_json::Number::from_f64(value)
                .ok_or_else(|| format!("random value `{}`: not finite", Quoted(&draw.name)))?;
            Ok((draw.name.clone(), Value::Number(number)))
        })
        .collect()
}

impl Draw {
    /// One draw for the call seeded `seed`.
    fn draw(&self, seed: u64, parameters: &Value) -> Result<f64, String> {
        let [a_name, b_name] = self.distribution.bound_names();
        let a = self.bound(&self.bounds[0], a_name, parameters)?;
        let b = self.bound(&self.bounds[1], b_name, parameters)?;
        // Each value its own stream: adding a value changes no other value's draws.
        let mut rng = StdRng::seed_from_u64(mix(seed, &self.name));
        let value = match self.distribution {
            Distribution::Normal => {
                if b < 0.0 {
                    return Err(format!("`normal` sd is {b}: it cannot be negative"));
                }
                a + b * standard_normal(&mut rng)
            }
            Distribution::Uniform => {
                if a > b {
                    return Err(format!("`uniform` low ({a}) is above high ({b})"));
                }
                let u = rng.random::<f64>();
                (a * (1.0 - u) + b * u).clamp(a, b)
            }
        };
        if value.is_finite() {
            Ok(value)
        } else {
            Err(format!(
                "`{}` drew {value}, not a finite number",
                self.distribution
            ))
        }
    }

    /// The value of `bound` (called `what`) for this call.
    fn bound(&self, bound: &Compiled, what: &str, parameters: &Value) -> Result<f64, String> {
        let binding = match bound {
            Compiled::Number(number) => return Ok(*number),
            Compiled::Binding(binding) => binding,
        };
        let distribution = self.distribution;
        let parameters = Params(parameters);
        let value = binding
            .resolve(&parameters)
            .map_err(|error| format!("`{distribution}` {what}: {}", unresolved(error)))?;
        value
            .as_f64()
            .filter(|number| number.is_finite())
            .ok_or_else(|| {
                format!(
                    "`{distribution}` {what} `{}` is {}, not a finite number",
                    Quoted(binding.text()),
                    Quoted(&value.to_string())
                )
            })
    }
}

/// A standard normal draw (Box–Muller): from `u1` in (0, 1] and `u2` in [0, 1).
fn standard_normal(rng: &mut StdRng) -> f64 {
    let u1 = 1.0 - rng.random::<f64>();
    let u2 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chrono::{TimeZone, Utc};
    use serde_json::json;

    use super::*;
    use crate::agent::{Agent, AgentErrorKind, TaskRequest};
    use crate::clock::VirtualClock;
    use crate::sim::{AgentsFile, ScriptedAgent};

    /// The agents file of one agent `a-1` with one task script `X`.
    fn file(task: Value) -> Result<AgentsFile, Vec<String>> {
        let json = json!({"agents": [{"id": "a-1", "type": "T", "tasks": {"X": task}}]});
        AgentsFile::from_json(&json.to_string()).map_err(|errors| lines_of(&errors))
    }

    fn lines_of(errors: &crate::definition::ValidationErrors) -> Vec<String> {
        errors.iter().map(ToString::to_string).collect()
    }

    fn problems(task: Value) -> Vec<String> {
        match file(task) {
            Ok(file) => panic!("expected problems, loaded {file:?}"),
            Err(problems) => problems,
        }
    }

    /// Calls task `X` of `task` with `parameters`, seeded `seed`.
    fn call(task: Value, parameters: Value, seed: u64) -> Result<Value, crate::agent::AgentError> {
        let file = file(task).unwrap_or_else(|problems| panic!("{problems:#?}"));
        let clock = VirtualClock::starting_at(Utc.with_ymd_and_hms(2026, 1, 5, 9, 0, 0).unwrap());
        let agent = ScriptedAgent::new(&file.agents[0], Arc::new(clock.clone()));
        let mut request = TaskRequest::new("r", "s", "r/s/0/0", "X", parameters);
        request.seed = seed;
        clock.block_on(agent.execute(request))
    }

    fn fill_and_jitter() -> Value {
        json!({
            "random": {"fill": {"normal": ["${params.meanFill}", 0.05]},
                       "jitter": {"uniform": [0, 1]}},
            "output": {"fillQuality": "${random.fill}", "jitter": "${random.jitter}",
                       "algo": "${params.algo}"}
        })
    }

    #[test]
    fn the_same_seed_draws_the_same_values() {
        let parameters = json!({"meanFill": 0.9, "algo": "vwap"});
        let first = call(fill_and_jitter(), parameters.clone(), 7).unwrap();
        assert_eq!(call(fill_and_jitter(), parameters, 7).unwrap(), first);
        assert_eq!(first["algo"], "vwap");
        let jitter = first["jitter"].as_f64().unwrap();
        assert!((0.0..1.0).contains(&jitter), "{first}");
        let fill = first["fillQuality"].as_f64().unwrap();
        assert!((fill - 0.9).abs() < 0.5, "{first}");
    }

    #[test]
    fn other_calls_draw_other_values() {
        let parameters = json!({"meanFill": 0.9, "algo": "vwap"});
        let draws: Vec<Value> = (0..20)
            .map(|seed| call(fill_and_jitter(), parameters.clone(), seed).unwrap())
            .collect();
        for (i, a) in draws.iter().enumerate() {
            for b in &draws[i + 1..] {
                assert_ne!(a["fillQuality"], b["fillQuality"]);
                assert_ne!(a["jitter"], b["jitter"]);
            }
        }
    }

    #[test]
    fn a_value_draws_the_same_whatever_other_values_the_script_has() {
        let alone = json!({"random": {"jitter": {"uniform": [0, 1]}},
                           "output": "${random.jitter}"});
        let with_others = json!({"random": {"a": {"normal": [0, 1]}, "jitter": {"uniform": [0, 1]},
                                            "z": {"uniform": [5, 6]}},
                                 "output": "${random.jitter}"});
        for seed in [0, 1, u64::MAX] {
            assert_eq!(
                call(alone.clone(), json!({}), seed).unwrap(),
                call(with_others.clone(), json!({}), seed).unwrap()
            );
        }
    }

    #[test]
    fn bounds_come_from_the_parameters_of_each_call() {
        let task = json!({
            "random": {"n": {"normal": ["${params.mean}", "${params.sd}"]},
                       "u": {"uniform": ["${params.range[0]}", "${params.range[1]}"]}},
            "output": {"n": "${random.n}", "u": "${random.u}", "all": "${random}"}
        });
        let output = call(
            task.clone(),
            json!({"mean": 42, "sd": 0, "range": [3, 3]}),
            1,
        )
        .unwrap();
        assert_eq!(output["n"], json!(42.0));
        assert_eq!(output["u"], json!(3.0));
        assert_eq!(output["all"], json!({"n": 42.0, "u": 3.0}));
        let output = call(task, json!({"mean": -5, "sd": 0, "range": [10, 20]}), 1).unwrap();
        assert_eq!(output["n"], json!(-5.0));
        let u = output["u"].as_f64().unwrap();
        assert!((10.0..20.0).contains(&u), "{output}");
    }

    #[test]
    fn draws_follow_their_distribution() {
        let mut rng = StdRng::seed_from_u64(3);
        let n = 20_000;
        let draws: Vec<f64> = (0..n).map(|_| standard_normal(&mut rng)).collect();
        let mean = draws.iter().sum::<f64>() / f64::from(n);
        let variance = draws.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / f64::from(n);
        assert!(mean.abs() < 0.03, "mean {mean}");
        assert!((variance - 1.0).abs() < 0.05, "variance {variance}");
        let within_one_sd = draws.iter().filter(|x| x.abs() < 1.0).count();
        let share = within_one_sd as f64 / f64::from(n);
        assert!((share - 0.6827).abs() < 0.02, "{share} within one sd");
    }

    #[test]
    fn a_binding_that_gives_no_finite_number_fails_the_call_naming_the_value() {
        let task = json!({"random": {"fill": {"normal": ["${params.mean}", "${params.sd}"]}},
                          "output": "${random.fill}"});
        let cases = [
            (
                json!({"mean": "high", "sd": 1}),
                "random value `fill`: `normal` mean `${params.mean}` is \"high\", not a finite \
                 number",
            ),
            (
                json!({"sd": 1}),
                "random value `fill`: `normal` mean: binding `${params.mean}`: `params.mean` \
                 does not exist in the task's parameters",
            ),
            (
                json!({"mean": 1, "sd": -2}),
                "random value `fill`: `normal` sd is -2: it cannot be negative",
            ),
        ];
        for (parameters, message) in cases {
            let error = call(task.clone(), parameters.clone(), 1).unwrap_err();
            assert_eq!(error.kind, AgentErrorKind::Permanent, "{parameters}");
            assert!(
                error
                    .message
                    .starts_with(&format!("agent `a-1`, task type `X`: {message}")),
                "{parameters}: {}",
                error.message
            );
        }
        // A draw beyond a float's range: about half the draws of this one.
        let huge = json!({"mean": 1.7e308, "sd": 1.7e308});
        let overflows: Vec<String> = (0..16)
            .filter_map(|seed| call(task.clone(), huge.clone(), seed).err())
            .map(|error| error.message)
            .collect();
        assert!(!overflows.is_empty());
        for message in overflows {
            let drew = message
                .strip_prefix("agent `a-1`, task type `X`: random value `fill`: `normal` drew ")
                .and_then(|rest| rest.strip_suffix("inf, not a finite number"));
            assert!(matches!(drew, Some("" | "-")), "{message}");
        }
        let task = json!({"random": {"u": {"uniform": ["${params.low}", 1]}}});
        let error = call(task, json!({"low": 2}), 1).unwrap_err();
        assert_eq!(
            error.message,
            "agent `a-1`, task type `X`: random value `u`: `uniform` low (2) is above high (1)"
        );
    }

    #[test]
    fn every_malformed_random_value_is_reported_at_once() {
        let lines = problems(json!({
            "random": {
                "a": {"poisson": [1]},
                "b": {"normal": [0, 1, 2]},
                "c": {"normal": [0, -1]},
                "d": {"uniform": [2, 1]},
                "e": {"uniform": [true, 1]},
                "f": {"uniform": ["0.5", 1]},
                "g": {"normal": ["${params.}", "${input.sd}"]},
                "h": {"normal": [0, 1], "uniform": [0, 1]},
                "i": {},
                "j.k": {"uniform": [0, 1]},
                "l": [0, 1],
                "m": {"normal": 5}
            },
            "outputs": [{"x": "${random.nope}"}, "${random[0]}"]
        }));
        let at = "agents[0].tasks.X";
        let one = r#"give one distribution: {"normal": [mean, sd]} or {"uniform": [low, high]}"#;
        assert_eq!(
            lines,
            [
                format!(
                    "{at}.random.a: unknown value `poisson`, expected one of `normal`, `uniform`"
                ),
                format!(
                    "{at}.random.e: invalid value {{\"uniform\":[true,1]}}: `uniform` low must be a \
                     number or a `${{params…}}` binding, not true"
                ),
                format!(
                    "{at}.random.h: invalid value {{\"normal\":[0,1],\"uniform\":[0,1]}}: {one}"
                ),
                format!("{at}.random.i: invalid value {{}}: {one}"),
                format!(
                    "{at}.random.l: invalid type: found sequence, expected a distribution: \
                     {{\"normal\": [mean, sd]}} or {{\"uniform\": [low, high]}}"
                ),
                format!(
                    "{at}.random.m: invalid value {{\"normal\":5}}: `normal` takes a list of 2 \
                     numbers, [mean, sd]"
                ),
                format!(
                    "{at}.random.b.normal: invalid value [0.0,1.0,2.0]: `normal` takes 2 numbers, [mean, sd]; found 3"
                ),
                format!(
                    "{at}.random.c.normal[1]: invalid value -1: the standard deviation (sd) cannot be negative"
                ),
                format!("{at}.random.d.uniform: invalid value [2, 1]: low (2) is above high (1)"),
                format!(
                    "{at}.random.f.uniform[0]: invalid value \"0.5\": expected a number or one \
                     `${{params…}}` binding"
                ),
                format!(
                    "{at}.random.g.normal[0]: invalid binding in `${{params.}}`: column 9: empty path segment"
                ),
                format!(
                    "{at}.random.g.normal[1]: invalid binding in `${{input.sd}}`: column 3: \
                     expected `.output` after step id `input` (or `input`, `output` as the root)"
                ),
                format!(
                    "{at}.random: invalid value \"j.k\": a random value's name is read as \
                     `${{random.NAME}}`: it may only hold ASCII letters, digits, `_` and `-`, \
                     and cannot be empty"
                ),
                format!(
                    "{at}.outputs[0]: invalid value \"${{random.nope}}\": the script draws no \
                     random value of that name (it draws `a`, `b`, `c`, `d`, `e`, `f`, `g`, `h`, \
                     `i`, `j.k`, `l`, `m`)"
                ),
                format!(
                    "{at}.outputs[1]: invalid value \"${{random[0]}}\": random values are read by \
                     name, as `${{random.NAME}}`"
                ),
            ]
        );
    }

    #[test]
    fn random_values_serialize_back_to_an_equal_file() {
        let file = file(fill_and_jitter()).unwrap();
        let again = AgentsFile::from_json(&serde_json::to_string(&file).unwrap()).unwrap();
        assert_eq!(again, file);
        let fill = &file.agents[0].tasks["X"].random["fill"];
        assert_eq!(
            fill.bounds,
            [
                RandomBound::Binding("${params.meanFill}".to_owned()),
                RandomBound::Number(0.05)
            ]
        );
        assert_eq!(
            serde_json::to_value(fill).unwrap(),
            json!({"normal": ["${params.meanFill}", 0.05]})
        );
    }

    #[test]
    fn scripts_built_in_code_are_checked_and_refuse_calls_when_wrong() {
        let mut file = file(json!({"output": 1})).unwrap();
        let task = file.agents[0].tasks.get_mut("X").unwrap();
        task.random.insert(
            "fill".to_owned(),
            RandomValue {
                distribution: Distribution::Normal,
                bounds: vec![RandomBound::Number(f64::NAN), RandomBound::Number(-1.0)],
            },
        );
        task.random.insert(
            "u".to_owned(),
            RandomValue {
                distribution: Distribution::Uniform,
                bounds: vec![RandomBound::Number(0.0)],
            },
        );
        task.output = Some(json!("${random.missing}"));
        let lines = lines_of(&file.validate().unwrap_err());
        let at = "agents[0].tasks.X";
        assert_eq!(
            lines,
            [
                format!("{at}.random.fill.normal[0]: invalid value NaN: a number must be finite"),
                format!(
                    "{at}.random.fill.normal[1]: invalid value -1: the standard deviation (sd) \
                     cannot be negative"
                ),
                format!(
                    "{at}.random.u.uniform: invalid value [0.0]: `uniform` takes 2 numbers, [low, high]; found 1"
                ),
                format!(
                    "{at}.output: invalid value \"${{random.missing}}\": the script draws no \
                     random value of that name (it draws `fill`, `u`)"
                ),
            ]
        );
        let clock = VirtualClock::starting_at(Utc.with_ymd_and_hms(2026, 1, 5, 9, 0, 0).unwrap());
        let agent = ScriptedAgent::new(&file.agents[0], Arc::new(clock.clone()));
        let request = TaskRequest::new("r", "s", "r/s/0/0", "X", json!({}));
        let error = clock.block_on(agent.execute(request)).unwrap_err();
        assert_eq!(error.kind, AgentErrorKind::Permanent);
        assert!(
            error.message.starts_with(
                "agent `a-1`, task type `X`: script does not compile: tasks.X.random.fill.normal[0]: "
            ),
            "{}",
            error.message
        );
    }

    #[test]
    fn random_values_interpolate_into_text_and_requests_made_with_new_differ_by_key() {
        let task = json!({"random": {"u": {"uniform": [0, 1]}}, "output": "u = ${random.u}"});
        let file = file(task).unwrap();
        let clock = VirtualClock::starting_at(Utc.with_ymd_and_hms(2026, 1, 5, 9, 0, 0).unwrap());
        let agent = ScriptedAgent::new(&file.agents[0], Arc::new(clock.clone()));
        let answer = |key: &str| {
            let request = TaskRequest::new("r", "s", key, "X", json!({}));
            clock.block_on(agent.execute(request)).unwrap()
        };
        let first = answer("r/s/0/0");
        assert!(
            first
                .as_str()
                .is_some_and(|text| text.starts_with("u = 0.")),
            "{first}"
        );
        assert_eq!(answer("r/s/0/0"), first);
        assert_ne!(answer("r/s/1/0"), first);
    }
}
