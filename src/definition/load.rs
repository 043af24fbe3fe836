//! Loading a definition from JSON while collecting every structural problem.
//!
//! serde's derive stops at the first error. To report every problem in one pass, the
//! JSON is parsed into a `serde_json::Value` first (syntax errors carry line and column),
//! then each part (the workflow's own fields, each step, each dependency, each trigger)
//! is deserialized on its own through [`ValueDeserializer`], whose error type keeps
//! serde's error *kinds* (unknown field, unknown variant, missing field, …) instead of
//! flattening them to text. After an error the offending field is pruned and the part
//! is deserialized again, so one step can report several unknown fields. The typed
//! model stays the single source of truth for what the format accepts.

use std::fmt;

use serde::de::value::{BorrowedStrDeserializer, MapDeserializer, SeqDeserializer};
use serde::de::{self, DeserializeOwned, IntoDeserializer, Unexpected, Visitor};
use serde_json::{Map, Value};

use super::{
    AdaptationDefinition, DefinitionError, Dependency, Location, Quoted, StepDefinition, StepId,
    TriggerDefinition, TriggerType, ValidationErrors, WorkflowDefinition,
};

/// Upper bound on the problems reported for one part (one step, one trigger).
const MAX_PROBLEMS_PER_PART: usize = 32;

pub(super) fn from_json(json: &str) -> Result<WorkflowDefinition, ValidationErrors> {
    match load_json(json) {
        Loaded::Complete(definition) => Ok(definition),
        Loaded::Partial(partial) => Err(ValidationErrors::new(partial.errors)),
        Loaded::Failed(error) => Err(error.into()),
    }
}

/// Loads a definition from JSON text. Valid text takes the fast path (serde straight
/// into the typed model, 3–4x faster); only text that fails it goes through the
/// collecting path, which finds every problem. Both paths use the same `Deserialize`
/// implementations, so they accept exactly the same files.
pub(crate) fn load_json(json: &str) -> Loaded {
    if let Ok(definition) = serde_json::from_str::<WorkflowDefinition>(json) {
        return Loaded::Complete(definition);
    }
    match parse(json) {
        Ok(value) => load(&value),
        Err(error) => Loaded::Failed(error),
    }
}

pub(super) fn from_value(value: &Value) -> Result<WorkflowDefinition, ValidationErrors> {
    match load(value) {
        Loaded::Complete(definition) => Ok(definition),
        Loaded::Partial(partial) => Err(ValidationErrors::new(partial.errors)),
        Loaded::Failed(error) => Err(error.into()),
    }
}

/// The outcome of loading a JSON value as a definition.
pub(crate) enum Loaded {
    /// Every part loaded.
    Complete(WorkflowDefinition),
    /// Some parts did not load; what did is kept so that semantic checks can run too.
    Partial(Partial),
    /// Nothing could be loaded (the value is not an object).
    Failed(DefinitionError),
}

/// What loaded of a definition with structural problems.
pub(crate) struct Partial {
    /// The workflow with the parts that loaded (top-level fields left at their defaults
    /// if the top level itself did not load).
    pub(crate) definition: WorkflowDefinition,
    /// For each step of `definition`, its index in the file.
    pub(crate) step_origin: Vec<usize>,
    /// How many steps did not load, counting all of them when `steps` itself is
    /// missing or not an array.
    pub(crate) lost_steps: usize,
    /// Ids (as written) of the steps that did not load.
    pub(crate) lost_step_ids: Vec<String>,
    /// The structural problems.
    pub(crate) errors: Vec<DefinitionError>,
}

pub(crate) fn parse(json: &str) -> Result<Value, DefinitionError> {
    serde_json::from_str(json).map_err(|error| {
        let position = format!(" at line {} column {}", error.line(), error.column());
        let text = error.to_string();
        DefinitionError::Syntax {
            line: error.line(),
            column: error.column(),
            message: text.strip_suffix(&position).unwrap_or(&text).to_owned(),
        }
    })
}

pub(crate) fn load(value: &Value) -> Loaded {
    let Value::Object(root) = value else {
        return Loaded::Failed(DefinitionError::InvalidType {
            at: Location::root(),
            found: unexpected(value).to_string(),
            expected: "a JSON object".to_owned(),
        });
    };
    let mut errors = Vec::new();

    // The workflow's own fields, with the big arrays emptied (they are loaded one element
    // at a time below, so that each element's problems are located and collected).
    let mut top = Map::new();
    for (key, field) in root {
        let emptied = matches!(
            key.as_str(),
            "steps" | "dependencies" | "triggers" | "adaptations"
        ) && field.is_array();
        top.insert(
            key.clone(),
            if emptied {
                Value::Array(Vec::new())
            } else {
                field.clone()
            },
        );
    }
    let top_value = Value::Object(top);
    let workflow = load_part::<WorkflowDefinition>(&top_value, &Location::root(), &mut errors);

    let (steps, lost_steps) =
        elements::<StepDefinition>(root, "steps", &mut errors, |index, element| {
            Location::step(index, raw_step_id(element).map(StepId::new).as_ref())
        });
    let (dependencies, _) =
        elements::<Dependency>(root, "dependencies", &mut errors, |index, _| {
            Location::root().field("dependencies").index(index)
        });
    let (triggers, _) =
        elements::<TriggerDefinition>(root, "triggers", &mut errors, |index, element| {
            let kind = element
                .get("type")
                .and_then(|kind| serde_json::from_value::<TriggerType>(kind.clone()).ok());
            Location::trigger(index, kind)
        });
    let (adaptations, _) =
        elements::<AdaptationDefinition>(root, "adaptations", &mut errors, |index, element| {
            Location::adaptation(index, element.get("id").and_then(Value::as_str))
        });

    let present = |key: &str| root.get(key).is_some_and(Value::is_array);
    let mut definition = workflow.unwrap_or_else(|| WorkflowDefinition {
        id: root
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        name: None,
        version: None,
        description: None,
        steps: Vec::new(),
        dependencies: present("dependencies").then(Vec::new),
        conditions: None,
        execution_policy: None,
        error_handling: None,
        timeout: None,
        resource_requirements: None,
        triggers: present("triggers").then(Vec::new),
        adaptations: present("adaptations").then(Vec::new),
        budgets: None,
        tags: None,
        sensitive: None,
        workflow_type: None,
    });
    let step_origin: Vec<usize> = steps.iter().map(|(index, _)| *index).collect();
    definition.steps = steps.into_iter().map(|(_, step)| step).collect();
    if definition.dependencies.is_some() {
        definition.dependencies = Some(dependencies.into_iter().map(|(_, item)| item).collect());
    }
    if definition.triggers.is_some() {
        definition.triggers = Some(triggers.into_iter().map(|(_, item)| item).collect());
    }
    if definition.adaptations.is_some() {
        definition.adaptations = Some(adaptations.into_iter().map(|(_, item)| item).collect());
    }
    if errors.is_empty() {
        return Loaded::Complete(definition);
    }
    let lost_step_ids = root
        .get("steps")
        .and_then(Value::as_array)
        .map(|items| {
            lost_steps
                .iter()
                .filter_map(|index| items.get(*index).and_then(raw_step_id).map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    Loaded::Partial(Partial {
        definition,
        step_origin,
        lost_steps: if present("steps") {
            lost_steps.len()
        } else {
            usize::MAX
        },
        lost_step_ids,
        errors,
    })
}

fn raw_step_id(step: &Value) -> Option<&str> {
    step.get("id").and_then(Value::as_str)
}

/// Loads each element of the array field `key`, if it is an array: the elements that
/// loaded, with their indices, and the indices of those that did not.
fn elements<T: DeserializeOwned>(
    root: &Map<String, Value>,
    key: &str,
    errors: &mut Vec<DefinitionError>,
    locate: impl Fn(usize, &Value) -> Location,
) -> (Vec<(usize, T)>, Vec<usize>) {
    let Some(items) = root.get(key).and_then(Value::as_array) else {
        return (Vec::new(), Vec::new());
    };
    let mut loaded = Vec::with_capacity(items.len());
    let mut lost = Vec::new();
    for (index, item) in items.iter().enumerate() {
        match load_part(item, &locate(index, item), errors) {
            Some(part) => loaded.push((index, part)),
            None => lost.push(index),
        }
    }
    (loaded, lost)
}

/// Deserializes any format type from a JSON value with the same error collection as
/// workflow definitions (every unknown field, wrong type, … located under `at`). Used for
/// the other files users write (the agents file of [`sim`](crate::sim)).
pub(crate) fn load_as<T: DeserializeOwned>(
    value: &Value,
    at: &Location,
) -> Result<T, ValidationErrors> {
    let mut errors = Vec::new();
    match load_part(value, at, &mut errors) {
        Some(loaded) if errors.is_empty() => Ok(loaded),
        _ => Err(ValidationErrors::new(errors)),
    }
}

/// Deserializes one part, recording every problem found in it (up to a bound).
fn load_part<T: DeserializeOwned>(
    value: &Value,
    at: &Location,
    errors: &mut Vec<DefinitionError>,
) -> Option<T> {
    let mut pruned: Option<Value> = None;
    let mut removed: Vec<(Vec<PathKey>, String)> = Vec::new();
    for _ in 0..MAX_PROBLEMS_PER_PART {
        let current = pruned.as_ref().unwrap_or(value);
        let error = match serde_path_to_error::deserialize::<_, T>(ValueDeserializer(current)) {
            Ok(loaded) => return pruned.is_none().then_some(loaded),
            Err(error) => error,
        };
        let mut segments: Vec<_> = error.path().iter().collect();
        if let DeError::UnknownField { field, .. } = error.inner() {
            // The path ends at the unknown key; the problem is located at its object. (The
            // key is not copied again: it can be long.)
            if matches!(segments.last(), Some(serde_path_to_error::Segment::Map { key }) if key == field)
            {
                segments.pop();
            }
        }
        let path = path_keys(segments);
        let error = error.into_inner();
        if let DeError::MissingField(field) = &error {
            // A field we pruned for being invalid is now missing: already reported.
            if removed
                .iter()
                .any(|(parent, key)| *parent == path && key == field)
            {
                return None;
            }
        }
        let location = path.iter().fold(at.clone(), |location, key| match key {
            PathKey::Field(name) => location.field(name.clone()),
            PathKey::Index(index) => location.index(*index),
        });
        // Only values are quoted, and only in bounded form (see `render`).
        let raw = match &error {
            DeError::InvalidValue { .. } | DeError::Custom(_) => {
                value_at(current, &path).map(render)
            }
            _ => None,
        };
        let target = pruned.get_or_insert_with(|| value.clone());
        let removal = prune(target, &path, &error);
        let unknown_field = matches!(error, DeError::UnknownField { .. });
        errors.push(error.into_definition_error(location, raw));
        match removal {
            // An unknown field can never be missing later: no need to remember it.
            Some(_) if unknown_field => {}
            Some(removal) => removed.push(removal),
            None => return None,
        }
    }
    None
}

#[derive(Debug, Clone, PartialEq)]
enum PathKey {
    Field(String),
    Index(usize),
}

fn path_keys(segments: Vec<&serde_path_to_error::Segment>) -> Vec<PathKey> {
    segments
        .into_iter()
        .filter_map(|segment| match segment {
            serde_path_to_error::Segment::Map { key } => Some(PathKey::Field(key.clone())),
            serde_path_to_error::Segment::Seq { index } => Some(PathKey::Index(*index)),
            _ => None,
        })
        .collect()
}

fn value_at<'v>(value: &'v Value, path: &[PathKey]) -> Option<&'v Value> {
    path.iter().try_fold(value, |value, key| match key {
        PathKey::Field(name) => value.get(name.as_str()),
        PathKey::Index(index) => value.get(*index),
    })
}

/// Removes what `error` complains about so that deserialization can go on past it.
/// Returns the (object path, key) removed, or `None` when nothing can be removed.
fn prune(value: &mut Value, path: &[PathKey], error: &DeError) -> Option<(Vec<PathKey>, String)> {
    let (object_path, key) = match error {
        // Reported at the object that holds the unknown key.
        DeError::UnknownField { field, .. } => (path.to_vec(), field.clone()),
        DeError::MissingField(_) => return None,
        // Reported at the bad value: remove the field holding it. Inside an array, the
        // whole array field goes, so that later indices still match the file.
        _ => {
            let field_position = path
                .iter()
                .rposition(|key| matches!(key, PathKey::Field(_)))?;
            let PathKey::Field(key) = &path[field_position] else {
                return None;
            };
            (path[..field_position].to_vec(), key.clone())
        }
    };
    let mut target = value;
    for step in &object_path {
        target = match step {
            PathKey::Field(name) => target.get_mut(name.as_str())?,
            PathKey::Index(index) => target.get_mut(*index)?,
        };
    }
    target.as_object_mut()?.remove(&key)?;
    Some((object_path, key))
}

/// serde's error kinds, kept as data.
#[derive(Debug)]
enum DeError {
    UnknownField {
        field: String,
        expected: &'static [&'static str],
    },
    UnknownVariant {
        variant: String,
        expected: &'static [&'static str],
    },
    MissingField(String),
    InvalidType {
        found: String,
        expected: String,
    },
    InvalidValue {
        expected: String,
    },
    Custom(String),
}

impl DeError {
    /// The problem at `at`; `raw` is the offending value, rendered, for the kinds that
    /// quote it.
    fn into_definition_error(self, at: Location, raw: Option<String>) -> DefinitionError {
        let raw_text = || raw.unwrap_or_default();
        match self {
            Self::UnknownField { field, expected } => {
                let suggestion = closest(&field, expected);
                DefinitionError::UnknownField {
                    at,
                    field,
                    suggestion,
                }
            }
            Self::UnknownVariant { variant, expected } => DefinitionError::UnknownVariant {
                at,
                value: variant,
                expected,
            },
            Self::MissingField(field) => DefinitionError::MissingField { at, field },
            Self::InvalidType { found, expected } => DefinitionError::InvalidType {
                at,
                found,
                expected,
            },
            Self::InvalidValue { expected } => DefinitionError::InvalidValue {
                at,
                value: raw_text(),
                reason: format!("expected {expected}"),
            },
            Self::Custom(reason) => DefinitionError::InvalidValue {
                at,
                value: raw_text(),
                reason,
            },
        }
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownField { field, .. } => write!(f, "unknown field `{}`", Quoted(field)),
            Self::UnknownVariant { variant, .. } => {
                write!(f, "unknown variant `{}`", Quoted(variant))
            }
            Self::MissingField(field) => write!(f, "missing field `{field}`"),
            Self::InvalidType { found, expected } => {
                write!(f, "invalid type: {found}, expected {expected}")
            }
            Self::InvalidValue { expected } => write!(f, "invalid value, expected {expected}"),
            Self::Custom(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(message: T) -> Self {
        Self::Custom(message.to_string())
    }

    fn invalid_type(found: Unexpected<'_>, expected: &dyn de::Expected) -> Self {
        Self::InvalidType {
            found: found.to_string(),
            expected: expected.to_string(),
        }
    }

    fn invalid_value(_found: Unexpected<'_>, expected: &dyn de::Expected) -> Self {
        Self::InvalidValue {
            expected: expected.to_string(),
        }
    }

    fn invalid_length(len: usize, expected: &dyn de::Expected) -> Self {
        Self::Custom(format!("invalid length {len}, expected {expected}"))
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        Self::UnknownVariant {
            variant: variant.to_owned(),
            expected,
        }
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        Self::UnknownField {
            field: field.to_owned(),
            expected,
        }
    }

    fn missing_field(field: &'static str) -> Self {
        Self::MissingField(field.to_owned())
    }
}

/// A serde `Deserializer` over a borrowed `serde_json::Value` whose errors are [`DeError`].
#[derive(Clone, Copy)]
struct ValueDeserializer<'de>(&'de Value);

impl<'de> IntoDeserializer<'de, DeError> for ValueDeserializer<'de> {
    type Deserializer = Self;

    fn into_deserializer(self) -> Self {
        self
    }
}

impl<'de> de::Deserializer<'de> for ValueDeserializer<'de> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.0 {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Number(n) => {
                if let Some(u) = n.as_u64() {
                    visitor.visit_u64(u)
                } else if let Some(i) = n.as_i64() {
                    visitor.visit_i64(i)
                } else {
                    visitor.visit_f64(n.as_f64().unwrap_or(f64::NAN))
                }
            }
            Value::String(s) => visitor.visit_borrowed_str(s),
            Value::Array(items) => {
                let mut seq = SeqDeserializer::new(items.iter().map(ValueDeserializer));
                let value = visitor.visit_seq(&mut seq)?;
                seq.end()?;
                Ok(value)
            }
            Value::Object(map) => {
                let entries = map.iter().map(|(key, value)| {
                    (
                        BorrowedStrDeserializer::new(key.as_str()),
                        ValueDeserializer(value),
                    )
                });
                let mut access = MapDeserializer::new(entries);
                let value = visitor.visit_map(&mut access)?;
                access.end()?;
                Ok(value)
            }
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.0 {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match self.0 {
            Value::String(s) => {
                BorrowedStrDeserializer::<DeError>::new(s).deserialize_enum(name, variants, visitor)
            }
            other => Err(de::Error::invalid_type(unexpected(other), &"a string")),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map struct identifier
        ignored_any
    }
}

fn unexpected(value: &Value) -> Unexpected<'_> {
    match value {
        Value::Null => Unexpected::Unit,
        Value::Bool(b) => Unexpected::Bool(*b),
        Value::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => Unexpected::Unsigned(u),
            (None, Some(i)) => Unexpected::Signed(i),
            _ => Unexpected::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => Unexpected::Str(s),
        Value::Array(_) => Unexpected::Seq,
        Value::Object(_) => Unexpected::Map,
    }
}

/// Compact JSON of a value, shortened for messages: at most [`RENDERED`] characters,
/// then `…`. Serialization stops there, so a huge value costs no more than a small one.
fn render(value: &Value) -> String {
    let mut text = Bounded(String::new());
    // A full `Bounded` fails the write on purpose; what was written is kept.
    let complete = serde_json::to_writer(&mut text, value).is_ok();
    let mut text = text.0;
    match text.char_indices().nth(RENDERED) {
        Some((cut, _)) => {
            text.truncate(cut);
            text.push('…');
        }
        None if !complete => text.push('…'),
        None => {}
    }
    text
}

/// How many characters of a value [`render`] shows.
const RENDERED: usize = 80;

/// A writer that takes text until it holds more than [`RENDERED`] characters' worth of
/// bytes (4 per character at most), then fails every write.
struct Bounded(String);

impl std::io::Write for Bounded {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let room = (RENDERED + 1) * 4 - self.0.len().min((RENDERED + 1) * 4);
        if room == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        // serde_json writes whole characters at a time, never more than a few bytes of
        // one, so `bytes` is valid UTF-8 unless it was cut; lossy keeps it safe anyway.
        let taken = bytes.len().min(room);
        self.0.push_str(&String::from_utf8_lossy(
            bytes.get(..taken).unwrap_or_default(),
        ));
        Ok(taken)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Names longer than this get no suggestion: a typo is a few characters off a known
/// name, and the known names are short. It bounds the work of [`closest`].
const MAX_SUGGESTED_LENGTH: usize = 64;

/// The known name closest to `name`, if one is close enough to be a likely typo.
///
/// # Complexity
/// O(known × 64²) at most: names longer than [`MAX_SUGGESTED_LENGTH`] bytes are not
/// compared at all.
fn closest(name: &str, known: &'static [&'static str]) -> Option<&'static str> {
    if name.len() > MAX_SUGGESTED_LENGTH {
        return None;
    }
    let normalized = |s: &str| s.replace(['_', '-'], "").to_ascii_lowercase();
    let wanted = normalized(name);
    if let Some(exact) = known
        .iter()
        .find(|candidate| normalized(candidate) == wanted)
    {
        return Some(exact);
    }
    let limit = (name.chars().count() / 3).max(1);
    known
        .iter()
        .map(|candidate| (edit_distance(&wanted, &normalized(candidate)), *candidate))
        .filter(|(distance, _)| *distance <= limit)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

/// Edit distance (optimal string alignment: insertions, deletions, substitutions and
/// transpositions of neighbours), O(a × b) time and O(b) space (three rows).
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    // Rows i - 2, i - 1 and i of the table; row 0 is the distance from "" to b[..j].
    let mut before: Vec<usize> = (0..=b.len()).collect();
    let mut previous = before.clone();
    let mut current = vec![0; b.len() + 1];
    for (i, &ca) in a.iter().enumerate() {
        if let Some(first) = current.first_mut() {
            *first = i + 1;
        }
        for (j, &cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            let deletion = previous.get(j + 1).map_or(usize::MAX, |d| d + 1);
            let insertion = current.get(j).map_or(usize::MAX, |d| d + 1);
            let substitution = previous.get(j).map_or(usize::MAX, |d| d + cost);
            let mut best = deletion.min(insertion).min(substitution);
            let swapped = i > 0 && j > 0 && a.get(i - 1) == Some(&cb) && b.get(j - 1) == Some(&ca);
            if swapped {
                best = best.min(before.get(j - 1).map_or(usize::MAX, |d| d + 1));
            }
            if let Some(cell) = current.get_mut(j + 1) {
                *cell = best;
            }
        }
        std::mem::swap(&mut before, &mut previous);
        std::mem::swap(&mut previous, &mut current);
    }
    previous.last().copied().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(json: &str) -> Vec<DefinitionError> {
        WorkflowDefinition::from_json(json).unwrap_err().into_vec()
    }

    const STEP: &str =
        r#"{"id": "a", "type": "task", "agentCriteria": {"type": "X"}, "task": {"type": "T"}}"#;

    #[test]
    fn syntax_errors_carry_line_and_column() {
        let errors = problems("{\n  \"id\": \"w\",\n  \"steps\": [,]\n}");
        assert!(
            matches!(
                errors[..],
                [DefinitionError::Syntax {
                    line: 3,
                    column: 13,
                    ..
                }]
            ),
            "{errors:?}"
        );
    }

    #[test]
    fn every_unknown_field_of_a_step_is_reported() {
        let json = r#"{"id": "w", "steps": [{"id": "a", "type": "task", "retryPolcy": {}, "colour": 1,
            "agentCriteria": {"type": "X"}, "task": {"type": "T"}}]}"#;
        let errors = problems(json);
        let fields: Vec<(String, String, Option<&str>)> = errors
            .iter()
            .map(|error| match error {
                DefinitionError::UnknownField {
                    at,
                    field,
                    suggestion,
                } => (at.to_string(), field.clone(), *suggestion),
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(
            fields,
            vec![
                ("steps[0] (a)".to_owned(), "colour".to_owned(), None),
                (
                    "steps[0] (a)".to_owned(),
                    "retryPolcy".to_owned(),
                    Some("retryPolicy")
                ),
            ]
        );
    }

    #[test]
    fn problems_in_several_parts_are_all_reported() {
        let json = format!(
            r#"{{"id": "w", "nmae": "x", "steps": [{STEP}, {{"id": "b", "type": "tsk"}}],
               "triggers": [{{"type": "HOURLY"}}], "dependencies": [{{"from": "a"}}]}}"#
        );
        let errors = problems(&json);
        let described: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(errors.len(), 4, "{described:#?}");
        assert!(
            matches!(&errors[0], DefinitionError::UnknownField { field, suggestion: Some("name"), .. } if field == "nmae"),
            "{errors:?}"
        );
        assert!(
            matches!(&errors[1], DefinitionError::UnknownVariant { at, value, .. } if at.to_string() == "steps[1] (b).type" && value == "tsk")
        );
        assert!(
            matches!(&errors[2], DefinitionError::MissingField { at, field } if at.to_string() == "dependencies[0]" && field == "to")
        );
        assert!(
            matches!(&errors[3], DefinitionError::UnknownVariant { at, value, .. } if at.to_string() == "triggers[0].type" && value == "HOURLY")
        );
    }

    #[test]
    fn invalid_value_of_a_required_field_is_reported_once() {
        let errors = problems(r#"{"id": "w", "steps": [{"id": "a", "type": 3}]}"#);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            matches!(&errors[0], DefinitionError::InvalidType { at, .. } if at.to_string() == "steps[0] (a).type")
        );
    }

    #[test]
    fn wrong_types_name_what_was_found() {
        let json = format!(r#"{{"id": "w", "timeout": "5s", "steps": [{STEP}]}}"#);
        let errors = problems(&json);
        assert!(
            matches!(&errors[..], [DefinitionError::InvalidType { at, found, .. }] if at.to_string() == "timeout" && found.contains("5s")),
            "{errors:?}"
        );
    }

    #[test]
    fn root_must_be_an_object() {
        assert!(matches!(
            problems("[1]")[..],
            [DefinitionError::InvalidType { .. }]
        ));
    }

    #[test]
    fn nested_problems_are_located() {
        let json = r#"{"id": "w", "steps": [{"id": "a", "type": "task", "agentCriteria": {"type": "X",
            "loadBalancing": "RANDOM"}, "task": {"type": "T"}, "retryPolicy": {"maxAttempts": -1}}]}"#;
        let errors = problems(json);
        let at: Vec<String> = errors
            .iter()
            .filter_map(|e| e.location())
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            at,
            [
                "steps[0] (a).agentCriteria.loadBalancing",
                "steps[0] (a).retryPolicy.maxAttempts"
            ]
        );
    }

    #[test]
    fn closest_field_names() {
        const KNOWN: &[&str] = &["retryPolicy", "timeout", "skipCondition"];
        assert_eq!(closest("retry_policy", KNOWN), Some("retryPolicy"));
        assert_eq!(closest("timout", KNOWN), Some("timeout"));
        assert_eq!(closest("colour", KNOWN), None);
        assert_eq!(edit_distance("nmae", "name"), 1);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("abc", ""), 3);
        assert_eq!(edit_distance("ca", "abc"), 3);
        assert_eq!(edit_distance("retryPolcy", "retryPolicy"), 1);
    }

    #[test]
    fn long_names_get_no_suggestion() {
        const KNOWN: &[&str] = &["name"];
        let long = format!("{}name", "_".repeat(MAX_SUGGESTED_LENGTH));
        assert_eq!(closest(&long, KNOWN), None);
        assert_eq!(
            closest(&long[long.len() - MAX_SUGGESTED_LENGTH..], KNOWN),
            Some("name")
        );
        assert_eq!(closest(&"y".repeat(10 * 1024 * 1024), KNOWN), None);
    }

    #[test]
    fn rendered_values_are_bounded() {
        assert_eq!(
            render(&serde_json::json!({"a": [1, "x"]})),
            r#"{"a":[1,"x"]}"#
        );
        let huge = Value::from("é".repeat(1024 * 1024));
        let shown = render(&huge);
        assert_eq!(shown.chars().count(), RENDERED + 1);
        assert!(shown.starts_with("\"é") && shown.ends_with('…'), "{shown}");
        let exact = Value::from("a".repeat(RENDERED - 2));
        assert_eq!(render(&exact).chars().count(), RENDERED);
        assert!(!render(&exact).ends_with('…'));
        let long: Value = (0..100_000).map(Value::from).collect();
        assert!(render(&long).ends_with('…'));
    }
}
