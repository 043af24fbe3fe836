//! Reading an exported model: streamed from the JSON text straight into a new
//! [`Model`], checked as it goes, stopped at the first problem with its path.
//!
//! Nothing is built besides the model itself (no `serde_json::Value` in between, which
//! would cost about twenty times the text), and reading stops as soon as the import holds
//! more option statistics than the engine's limit, so the memory an import takes is
//! bounded by that limit and [`MAX_IMPORT_BYTES`], whatever the text.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, Visitor};

use super::model::{KEY_TOO_LONG, MAX_ABS_REWARD, MAX_KEY_BYTES, Model, Options, StepModel, check};
use super::{ImportError, ImportProblem, ModelPath, OptionKey, OptionStats};

/// The longest exported model an engine imports, in bytes (64 MiB).
pub const MAX_IMPORT_BYTES: usize = 64 << 20;

/// Reads the exported model `json`, holding at most `limit` option statistics.
pub(super) fn parse(json: &str, limit: usize) -> Result<Model, ImportError> {
    if json.len() > MAX_IMPORT_BYTES {
        return Err(ImportError::TooLong {
            length: json.len(),
            max: MAX_IMPORT_BYTES,
        });
    }
    let mut reading = Reading {
        model: Model::default(),
        path: ModelPath::default(),
        problem: None,
        read: 0,
        limit,
    };
    let mut deserializer = serde_json::Deserializer::from_str(json);
    let result = Root(&mut reading)
        .deserialize(&mut deserializer)
        .and_then(|()| deserializer.end());
    match result {
        Ok(()) => Ok(reading.model),
        Err(error) => Err(reading.failure(&error)),
    }
}

/// The import under way: what was read, and where the reader is.
struct Reading {
    model: Model,
    path: ModelPath,
    /// The problem found, set before the reader stops with an error.
    problem: Option<ImportProblem>,
    /// Option statistics read.
    read: usize,
    limit: usize,
}

impl Reading {
    /// Stops reading because of `problem` at the current path.
    fn stop<E: de::Error>(&mut self, problem: ImportProblem) -> E {
        self.problem = Some(problem);
        E::custom("invalid model")
    }

    /// The error the reader stopped with: the problem it found, else the JSON parser's.
    fn failure(&mut self, error: &serde_json::Error) -> ImportError {
        let problem = match self.problem.take() {
            Some(problem) => problem,
            // A value of the wrong type, found by serde where the path points.
            None if error.is_data() => match self.path.field {
                Some("n") => ImportProblem::NotACount,
                Some("mean") => ImportProblem::NotAMean,
                Some(_) => ImportProblem::NotAnM2,
                None => ImportProblem::NotAnObject,
            },
            None => {
                let position = format!(" at line {} column {}", error.line(), error.column());
                let text = error.to_string();
                return ImportError::Syntax {
                    line: error.line(),
                    column: error.column(),
                    message: text.strip_suffix(&position).unwrap_or(&text).to_owned(),
                };
            }
        };
        ImportError::Invalid {
            path: Box::new(std::mem::take(&mut self.path)),
            problem,
        }
    }
}

/// The whole model: step key → contexts.
struct Root<'r>(&'r mut Reading);

impl<'de> DeserializeSeed<'de> for Root<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Root<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object of steps")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let reading = self.0;
        while let Some(key) = map.next_key::<String>()? {
            let problem = match split(&key) {
                Err(problem) => Some(ImportProblem::InvalidKey(problem)),
                Ok((workflow_id, step_id)) if reading.model.has_step(workflow_id, step_id) => {
                    Some(ImportProblem::Duplicate)
                }
                Ok(_) => None,
            };
            reading.path.step_key = Some(key);
            if let Some(problem) = problem {
                return Err(reading.stop(problem));
            }
            let step = map.next_value_seed(Step(reading))?;
            let key = reading.path.step_key.take().unwrap_or_default();
            let (workflow_id, step_id) = split(&key).unwrap_or_default();
            reading.model.insert_step(workflow_id, step_id, step);
        }
        Ok(())
    }
}

/// `<workflowId>/<stepId>` split at the last `/`, the step id checked.
fn split(key: &str) -> Result<(&str, &str), &'static str> {
    let Some((workflow_id, step_id)) = key.rsplit_once('/') else {
        return Err("a step's key is `<workflowId>/<stepId>`");
    };
    check(OptionKey::new(workflow_id, step_id, "", ""))?;
    Ok((workflow_id, step_id))
}

/// One step: context → options.
struct Step<'r>(&'r mut Reading);

impl<'de> DeserializeSeed<'de> for Step<'_> {
    type Value = StepModel;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<StepModel, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Step<'_> {
    type Value = StepModel;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object of contexts")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<StepModel, A::Error> {
        let reading = self.0;
        let mut step = StepModel::default();
        while let Some(context) = map.next_key::<String>()? {
            let problem = if context.len() > MAX_KEY_BYTES {
                Some(ImportProblem::InvalidKey(KEY_TOO_LONG))
            } else if step.has_context(&context) {
                Some(ImportProblem::Duplicate)
            } else {
                None
            };
            reading.path.context = Some(context);
            if let Some(problem) = problem {
                return Err(reading.stop(problem));
            }
            let options = map.next_value_seed(Context(reading))?;
            let context = reading.path.context.take().unwrap_or_default();
            step.insert_context(context, options);
        }
        Ok(step)
    }
}

/// One context: option id → statistics.
struct Context<'r>(&'r mut Reading);

impl<'de> DeserializeSeed<'de> for Context<'_> {
    type Value = Options;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Options, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Context<'_> {
    type Value = Options;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object of options")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Options, A::Error> {
        let reading = self.0;
        let mut options = BTreeMap::new();
        while let Some(option_id) = map.next_key::<String>()? {
            reading.read += 1;
            let problem = if option_id.len() > MAX_KEY_BYTES {
                Some(ImportProblem::InvalidKey(KEY_TOO_LONG))
            } else if options.contains_key(&option_id) {
                Some(ImportProblem::Duplicate)
            } else if reading.read > reading.limit {
                Some(ImportProblem::TooMany { max: reading.limit })
            } else {
                None
            };
            reading.path.option_id = Some(option_id);
            if let Some(problem) = problem {
                return Err(reading.stop(problem));
            }
            let stats = map.next_value_seed(Statistics(reading))?;
            let option_id = reading.path.option_id.take().unwrap_or_default();
            options.insert(option_id, stats);
        }
        let sorted = options.into_iter().map(|(id, stats)| (id.into(), stats));
        Ok(Options::from_sorted(sorted.collect()))
    }
}

/// One option's statistics: `{"n", "mean", "m2"}`.
struct Statistics<'r>(&'r mut Reading);

impl<'de> DeserializeSeed<'de> for Statistics<'_> {
    type Value = OptionStats;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<OptionStats, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Statistics<'_> {
    type Value = OptionStats;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object with `n`, `mean` and `m2`")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<OptionStats, A::Error> {
        let reading = self.0;
        let (mut n, mut mean, mut m2) = (None, None, None);
        while let Some(field) = map.next_key::<String>()? {
            let field = match field.as_str() {
                "n" => "n",
                "mean" => "mean",
                "m2" => "m2",
                _ => return Err(reading.stop(ImportProblem::UnknownField(field))),
            };
            reading.path.field = Some(field);
            let duplicate = match field {
                "n" => n.replace(map.next_value::<u64>()?).is_some(),
                "mean" => mean.replace(map.next_value::<f64>()?).is_some(),
                _ => m2.replace(map.next_value::<f64>()?).is_some(),
            };
            if duplicate {
                return Err(reading.stop(ImportProblem::Duplicate));
            }
            let fine = match field {
                "mean" => mean.is_some_and(|mean: f64| mean.abs() <= MAX_ABS_REWARD),
                "m2" => m2.is_some_and(|m2: f64| m2.is_finite() && m2 >= 0.0),
                _ => true,
            };
            if !fine {
                let problem = match field {
                    "mean" => ImportProblem::NotAMean,
                    _ => ImportProblem::NotAnM2,
                };
                return Err(reading.stop(problem));
            }
            reading.path.field = None;
        }
        match (n, mean, m2) {
            (Some(n), Some(mean), Some(m2)) => Ok(OptionStats::new(n, mean, m2)),
            (None, _, _) => Err(reading.stop(ImportProblem::MissingField("n"))),
            (_, None, _) => Err(reading.stop(ImportProblem::MissingField("mean"))),
            (_, _, None) => Err(reading.stop(ImportProblem::MissingField("m2"))),
        }
    }
}
