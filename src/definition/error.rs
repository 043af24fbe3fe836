//! Definition errors: what is wrong, where, and the offending text.

use std::borrow::Cow;
use std::fmt;

use super::syntax::{BindingError, ExpressionProblem};
use super::{Quoted, StepId, TriggerType};

/// Where in a definition a problem is: `steps[3] (order-execution).condition`,
/// `triggers[0] (SCHEDULED).schedule`, `dependencies[2].to`.
///
/// Steps and triggers are named by index and, when known, by id or type, so that a
/// message is readable even when the ids themselves are what is wrong. Ids and field
/// names are shown through [`Quoted`]: a location is one line of bounded length however
/// long or strange they are.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Location {
    segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Segment {
    Field(Cow<'static, str>),
    Index(usize),
    Step {
        index: usize,
        id: Option<StepId>,
    },
    Trigger {
        index: usize,
        kind: Option<TriggerType>,
    },
    Adaptation {
        index: usize,
        id: Option<String>,
    },
    KillSwitch {
        index: usize,
        id: Option<String>,
    },
}

impl Location {
    /// The workflow itself (the top-level object).
    pub fn root() -> Self {
        Self::default()
    }

    /// This location's field `name`.
    #[must_use]
    pub fn field(&self, name: impl Into<Cow<'static, str>>) -> Self {
        self.with(Segment::Field(name.into()))
    }

    /// This location's array element `index`.
    #[must_use]
    pub fn index(&self, index: usize) -> Self {
        self.with(Segment::Index(index))
    }

    /// The step at `index` of `steps`, with its id when it has one.
    pub fn step(index: usize, id: Option<&StepId>) -> Self {
        Self::root().with(Segment::Step {
            index,
            id: id.cloned(),
        })
    }

    /// The trigger at `index` of `triggers`, with its type when it has a valid one.
    pub fn trigger(index: usize, kind: Option<TriggerType>) -> Self {
        Self::root().with(Segment::Trigger { index, kind })
    }

    /// The adaptation at `index` of `adaptations`, with its id when it has a string one.
    pub fn adaptation(index: usize, id: Option<&str>) -> Self {
        Self::root().with(Segment::Adaptation {
            index,
            id: id.map(str::to_owned),
        })
    }

    /// The engine's kill switch rule listed at `index` (`killSwitch[0] (drawdown)`).
    pub fn kill_switch(index: usize, id: Option<&str>) -> Self {
        Self::root().with(Segment::KillSwitch {
            index,
            id: id.map(str::to_owned),
        })
    }

    /// The id of the step this location is in, if it is in a step that has one.
    pub fn step_id(&self) -> Option<&StepId> {
        self.segments.iter().find_map(|segment| match segment {
            Segment::Step { id, .. } => id.as_ref(),
            _ => None,
        })
    }

    /// The index (in `steps`) of the step this location is in.
    pub fn step_index(&self) -> Option<usize> {
        self.segments.iter().find_map(|segment| match segment {
            Segment::Step { index, .. } => Some(*index),
            _ => None,
        })
    }

    /// The index (in `triggers`) of the trigger this location is in.
    pub fn trigger_index(&self) -> Option<usize> {
        self.segments.iter().find_map(|segment| match segment {
            Segment::Trigger { index, .. } => Some(*index),
            _ => None,
        })
    }

    fn renumber_steps(&mut self, origin: &[usize]) {
        for segment in &mut self.segments {
            if let Segment::Step { index, .. } = segment {
                *index = origin.get(*index).copied().unwrap_or(*index);
            }
        }
    }

    fn with(&self, segment: Segment) -> Self {
        let mut segments = Vec::with_capacity(self.segments.len() + 1);
        segments.extend_from_slice(&self.segments);
        segments.push(segment);
        Self { segments }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.segments.is_empty() {
            return f.write_str("workflow");
        }
        for (i, segment) in self.segments.iter().enumerate() {
            match segment {
                Segment::Field(name) if i == 0 => write!(f, "{}", Quoted(name))?,
                Segment::Field(name) => write!(f, ".{}", Quoted(name))?,
                Segment::Index(index) => write!(f, "[{index}]")?,
                Segment::Step { index, id } => {
                    write!(f, "steps[{index}]")?;
                    if let Some(id) = id {
                        write!(f, " ({})", Quoted(id.as_str()))?;
                    }
                }
                Segment::Trigger { index, kind } => {
                    write!(f, "triggers[{index}]")?;
                    if let Some(kind) = kind {
                        write!(f, " ({})", kind.as_str())?;
                    }
                }
                Segment::Adaptation { index, id } => {
                    write!(f, "adaptations[{index}]")?;
                    if let Some(id) = id.as_deref().filter(|id| !id.is_empty()) {
                        write!(f, " ({})", Quoted(id))?;
                    }
                }
                Segment::KillSwitch { index, id } => {
                    write!(f, "killSwitch[{index}]")?;
                    if let Some(id) = id.as_deref().filter(|id| !id.is_empty()) {
                        write!(f, " ({})", Quoted(id))?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// One problem in a workflow definition.
///
/// Every variant says where the problem is and quotes the offending text; callers
/// match on variants, never on message text. The fields hold the text in full; the
/// message shows it through [`Quoted`] (control characters escaped, cut after
/// [`Quoted::MAX_CHARS`] characters), so that every message is one line of bounded
/// length.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum DefinitionError {
    /// The text is not well-formed JSON.
    #[error("line {line}, column {column}: malformed JSON: {}", Quoted(.message))]
    Syntax {
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
        /// What the JSON parser expected.
        message: String,
    },
    /// An object has a field the format does not know (often a typo).
    #[error("{at}: unknown field `{}`{}", Quoted(.field), suggestion_text(.suggestion))]
    UnknownField {
        /// The object holding the field.
        at: Location,
        /// The unknown field's name.
        field: String,
        /// The closest known field name, if one is close.
        suggestion: Option<&'static str>,
    },
    /// A value is not one of the names the format allows (a step type, a policy, …).
    #[error("{at}: unknown value `{}`, expected one of {}", Quoted(.value), quoted_list(.expected))]
    UnknownVariant {
        /// The field holding the value.
        at: Location,
        /// The value as written.
        value: String,
        /// The values allowed there.
        expected: &'static [&'static str],
    },
    /// A required field is absent.
    #[error("{at}: missing required field `{}`", Quoted(.field))]
    MissingField {
        /// The object missing the field.
        at: Location,
        /// The missing field's name.
        field: String,
    },
    /// A field is required because of another field's value (the step type, the trigger type).
    #[error("{at}: `{field}` is required {reason}")]
    Required {
        /// The object missing the field.
        at: Location,
        /// The missing field's name.
        field: &'static str,
        /// Why it is required here (`for condition steps`).
        reason: String,
    },
    /// A field is present where it has no meaning (an agent on a `human_approval` step).
    #[error("{at}: `{field}` is not allowed here: {reason}")]
    NotAllowed {
        /// The object holding the field.
        at: Location,
        /// The field's name.
        field: &'static str,
        /// Why it does not apply.
        reason: String,
    },
    /// A value has the wrong JSON type.
    #[error("{at}: invalid type: found {}, expected {expected}", Quoted(.found))]
    InvalidType {
        /// The field holding the value.
        at: Location,
        /// What was found (`string "3"`).
        found: String,
        /// What the format expects there.
        expected: String,
    },
    /// A value has the right type but is out of range or otherwise unusable.
    #[error("{at}: invalid value {}: {reason}", Quoted(.value))]
    InvalidValue {
        /// The field holding the value.
        at: Location,
        /// The value as written (JSON).
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Two steps share an id.
    #[error("{at}: duplicate step id `{}` (first used by steps[{first}])", Quoted(.id.as_str()))]
    DuplicateStepId {
        /// The second (or later) step with the id.
        at: Location,
        /// The id.
        id: StepId,
        /// Index of the first step with this id.
        first: usize,
    },
    /// A step id has characters that bindings cannot name.
    #[error("{at}: invalid step id `{}`: {reason}", Quoted(.id))]
    InvalidStepId {
        /// The `id` field.
        at: Location,
        /// The id as written.
        id: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A step's `budget` names a budget neither the workflow nor the engine declares.
    #[error("{at}: unknown budget `{}`", Quoted(.budget))]
    UnknownBudget {
        /// The step's `budget.<name>`.
        at: Location,
        /// The name as written.
        budget: String,
    },
    /// A dependency or fallback names a step that does not exist.
    #[error("{at}: unknown step `{}`", Quoted(.step))]
    UnknownStep {
        /// The field naming the step.
        at: Location,
        /// The name as written.
        step: String,
    },
    /// A binding refers to a step that does not exist.
    #[error("{at}: binding `{}` refers to unknown step `{}`", Quoted(.binding), Quoted(.step))]
    UnknownBindingStep {
        /// The field holding the binding.
        at: Location,
        /// The binding text (`${x.output}`).
        binding: String,
        /// The step id as written.
        step: String,
    },
    /// A step binds to its own output outside `loop.until` and `outputMapping`, or
    /// depends on itself.
    #[error("{at}: `{}` refers to the step itself{}", Quoted(.binding), self_reference_hint(.binding))]
    SelfReference {
        /// Where the reference is.
        at: Location,
        /// The binding or step id as written.
        binding: String,
    },
    /// A binding is not allowed in this place (`${output…}` outside `loop.until` and
    /// `outputMapping`, step outputs in workflow conditions, any binding in a trigger).
    #[error("{at}: binding `{}` is not allowed here: {reason}", Quoted(.binding))]
    BindingNotAllowed {
        /// The field holding the binding.
        at: Location,
        /// The binding text.
        binding: String,
        /// Why, and what to write instead.
        reason: &'static str,
    },
    /// A `${…}` binding is malformed.
    #[error("{at}: invalid binding in `{}`: {error}", Quoted(.text))]
    InvalidBinding {
        /// The field holding the text.
        at: Location,
        /// The whole string as written.
        text: String,
        /// What is wrong, and at which character.
        error: BindingError,
    },
    /// An expression (condition, branch, `loop.until`, trigger condition) cannot be compiled.
    #[error("{at}: invalid expression `{}`: {problem}", Quoted(.expression))]
    Expression {
        /// The field holding the expression.
        at: Location,
        /// The expression as written.
        expression: String,
        /// What is wrong with it.
        problem: ExpressionProblem,
    },
    /// The steps' ordering edges form a cycle.
    #[error("{at}: dependency cycle: {}{}", cycle_text(.steps), cycle_hint(*.through_listed_order))]
    Cycle {
        /// The first step on the cycle.
        at: Location,
        /// The steps on the cycle in order; the first is repeated at the end.
        steps: Vec<StepId>,
        /// Whether an edge of the cycle comes from listed order (no `dependencies`).
        through_listed_order: bool,
    },
    /// A `SCHEDULED` trigger's cron pattern is invalid or never fires.
    #[error("{at}: invalid cron pattern `{}`: {}", Quoted(.schedule), Quoted(.reason))]
    InvalidCron {
        /// The `schedule` field.
        at: Location,
        /// The pattern as written.
        schedule: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A trigger names a time zone that is not in the IANA database.
    #[error(
        "{at}: unknown time zone `{}` (use an IANA name such as `America/New_York`)",
        Quoted(.timezone)
    )]
    UnknownTimezone {
        /// The `timezone` field.
        at: Location,
        /// The name as written.
        timezone: String,
    },
}

/// The location of any variant but `Syntax`; works for `&` and `&mut` alike.
macro_rules! location_of {
    ($error:expr) => {
        match $error {
            DefinitionError::Syntax { .. } => None,
            DefinitionError::UnknownField { at, .. }
            | DefinitionError::UnknownVariant { at, .. }
            | DefinitionError::MissingField { at, .. }
            | DefinitionError::Required { at, .. }
            | DefinitionError::NotAllowed { at, .. }
            | DefinitionError::InvalidType { at, .. }
            | DefinitionError::InvalidValue { at, .. }
            | DefinitionError::DuplicateStepId { at, .. }
            | DefinitionError::InvalidStepId { at, .. }
            | DefinitionError::UnknownStep { at, .. }
            | DefinitionError::UnknownBudget { at, .. }
            | DefinitionError::UnknownBindingStep { at, .. }
            | DefinitionError::SelfReference { at, .. }
            | DefinitionError::BindingNotAllowed { at, .. }
            | DefinitionError::InvalidBinding { at, .. }
            | DefinitionError::Expression { at, .. }
            | DefinitionError::Cycle { at, .. }
            | DefinitionError::InvalidCron { at, .. }
            | DefinitionError::UnknownTimezone { at, .. } => Some(at),
        }
    };
}

impl DefinitionError {
    /// Where the problem is, when it is inside the definition (every kind but `Syntax`).
    pub fn location(&self) -> Option<&Location> {
        location_of!(self)
    }

    /// Renumbers step indices: step `i` of a partially loaded definition is step
    /// `origin[i]` of the file.
    pub(crate) fn renumber_steps(&mut self, origin: &[usize]) {
        if let Some(at) = location_of!(self) {
            at.renumber_steps(origin);
        }
        if let Self::DuplicateStepId { first, .. } = self {
            *first = origin.get(*first).copied().unwrap_or(*first);
        }
    }
}

fn suggestion_text(suggestion: &Option<&'static str>) -> String {
    suggestion.map_or_else(String::new, |s| format!(" (did you mean `{s}`?)"))
}

fn quoted_list(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|item| format!("`{item}`")).collect();
    quoted.join(", ")
}

fn self_reference_hint(binding: &str) -> &'static str {
    if binding.starts_with("${") {
        "; only `loop.until` and `outputMapping` may read the step's own output, as `${output…}`"
    } else {
        ""
    }
}

/// The steps of a cycle, `a -> b -> a`; a long cycle shows its first steps, then `…`,
/// the step it ends with and how many steps it has.
fn cycle_text(steps: &[StepId]) -> String {
    const SHOWN: usize = 12;
    let name = |id: &StepId| Quoted(id.as_str()).to_string();
    match steps {
        [shown @ .., last] if steps.len() > SHOWN => {
            let first: Vec<String> = shown.iter().take(SHOWN - 1).map(name).collect();
            format!(
                "{} -> … -> {} ({} steps)",
                first.join(" -> "),
                name(last),
                steps.len() - 1
            )
        }
        _ => {
            let names: Vec<String> = steps.iter().map(name).collect();
            names.join(" -> ")
        }
    }
}

fn cycle_hint(through_listed_order: bool) -> &'static str {
    if through_listed_order {
        " (without `dependencies`, steps also run in listed order)"
    } else {
        ""
    }
}

/// Every problem found in a definition, in the order of the file.
///
/// At most [`ValidationErrors::MAX_PROBLEMS`] problems are kept, the first ones found;
/// [`ValidationErrors::omitted`] counts the others. `Display` prints one problem a line,
/// then `… and N more problems` when some were omitted.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidationErrors {
    errors: Vec<DefinitionError>,
    omitted: usize,
}

impl ValidationErrors {
    /// How many problems are kept: a file with more is broken throughout, and its first
    /// problems are what its author needs (and a bounded report is what a terminal can
    /// show).
    pub const MAX_PROBLEMS: usize = 1000;

    pub(crate) fn new(mut errors: Vec<DefinitionError>) -> Self {
        debug_assert!(
            !errors.is_empty(),
            "a validation failure has at least one problem"
        );
        let omitted = errors.len().saturating_sub(Self::MAX_PROBLEMS);
        errors.truncate(Self::MAX_PROBLEMS);
        Self { errors, omitted }
    }

    /// The problems kept (the first [`ValidationErrors::MAX_PROBLEMS`]).
    pub fn errors(&self) -> &[DefinitionError] {
        &self.errors
    }

    /// Iterates over the problems kept.
    pub fn iter(&self) -> std::slice::Iter<'_, DefinitionError> {
        self.errors.iter()
    }

    /// How many problems are kept: at least one, at most
    /// [`ValidationErrors::MAX_PROBLEMS`].
    pub fn len(&self) -> usize {
        self.errors.len()
    }

    /// Always false: a `ValidationErrors` holds at least one problem.
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// How many more problems were found than are kept (0 for most files).
    pub fn omitted(&self) -> usize {
        self.omitted
    }

    /// The line that stands for the omitted problems, `… and 5 more problems`; `None`
    /// when none were omitted.
    pub fn omitted_line(&self) -> Option<String> {
        match self.omitted {
            0 => None,
            1 => Some("… and 1 more problem".to_owned()),
            n => Some(format!("… and {n} more problems")),
        }
    }

    /// The problems kept, by value.
    pub fn into_vec(self) -> Vec<DefinitionError> {
        self.errors
    }
}

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        if let Some(line) = self.omitted_line() {
            write!(f, "\n{line}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ValidationErrors {}

impl From<DefinitionError> for ValidationErrors {
    fn from(error: DefinitionError) -> Self {
        Self::new(vec![error])
    }
}

impl IntoIterator for ValidationErrors {
    type Item = DefinitionError;
    type IntoIter = std::vec::IntoIter<DefinitionError>;

    fn into_iter(self) -> Self::IntoIter {
        self.errors.into_iter()
    }
}

impl<'a> IntoIterator for &'a ValidationErrors {
    type Item = &'a DefinitionError;
    type IntoIter = std::slice::Iter<'a, DefinitionError>;

    fn into_iter(self) -> Self::IntoIter {
        self.errors.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_read_like_paths() {
        let id = StepId::new("order-execution");
        assert_eq!(
            Location::step(3, Some(&id)).field("condition").to_string(),
            "steps[3] (order-execution).condition"
        );
        assert_eq!(
            Location::trigger(0, Some(TriggerType::Scheduled))
                .field("schedule")
                .to_string(),
            "triggers[0] (SCHEDULED).schedule"
        );
        assert_eq!(
            Location::root()
                .field("dependencies")
                .index(2)
                .field("to")
                .to_string(),
            "dependencies[2].to"
        );
        assert_eq!(Location::root().to_string(), "workflow");
        assert_eq!(Location::step(1, None).step_index(), Some(1));
    }

    #[test]
    fn locations_show_ids_and_names_on_one_line() {
        let id = StepId::new("a\nb\u{1b}[31m");
        assert_eq!(
            Location::step(0, Some(&id)).field("x\ty").to_string(),
            r"steps[0] (a\nb\u{1b}[31m).x\ty"
        );
        let huge = StepId::new("x".repeat(1 << 20));
        let shown = Location::step(0, Some(&huge)).to_string();
        assert!(
            shown.len() < 200 && shown.ends_with("…(1048576 bytes))"),
            "{shown}"
        );
    }

    #[test]
    fn long_cycles_are_shortened() {
        let mut steps: Vec<StepId> = (0..100).map(|i| StepId::new(format!("s{i}"))).collect();
        steps.push(StepId::new("s0"));
        let error = DefinitionError::Cycle {
            at: Location::step(0, steps.first()),
            steps,
            through_listed_order: false,
        };
        assert_eq!(
            error.to_string(),
            "steps[0] (s0): dependency cycle: s0 -> s1 -> s2 -> s3 -> s4 -> s5 -> s6 -> s7 -> \
             s8 -> s9 -> s10 -> … -> s0 (100 steps)"
        );
    }

    #[test]
    fn problems_past_the_bound_are_counted_not_kept() {
        let problem = |i: usize| DefinitionError::MissingField {
            at: Location::root().field("steps").index(i),
            field: "id".to_owned(),
        };
        let errors = ValidationErrors::new(
            (0..ValidationErrors::MAX_PROBLEMS + 5)
                .map(problem)
                .collect(),
        );
        assert_eq!(errors.len(), ValidationErrors::MAX_PROBLEMS);
        assert_eq!(errors.omitted(), 5);
        let text = errors.to_string();
        assert_eq!(text.lines().count(), ValidationErrors::MAX_PROBLEMS + 1);
        assert_eq!(text.lines().last(), Some("… and 5 more problems"));
        let one = ValidationErrors::new(
            (0..ValidationErrors::MAX_PROBLEMS + 1)
                .map(problem)
                .collect(),
        );
        assert_eq!(one.omitted_line().as_deref(), Some("… and 1 more problem"));
        assert_eq!(ValidationErrors::new(vec![problem(0)]).omitted_line(), None);
    }

    #[test]
    fn cycle_message_names_every_step() {
        let error = DefinitionError::Cycle {
            at: Location::step(0, Some(&StepId::new("a"))),
            steps: ["a", "b", "a"].into_iter().map(StepId::new).collect(),
            through_listed_order: false,
        };
        assert_eq!(
            error.to_string(),
            "steps[0] (a): dependency cycle: a -> b -> a"
        );
    }
}
