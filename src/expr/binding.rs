//! `${…}` bindings: parsing, scope checks and resolution against run values.

use std::fmt;

use serde_json::Value;

use super::EvalError;
use crate::definition::{BindingError, BindingErrorKind, DefinitionError, Location, StepId};

/// Where a binding reads from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Source {
    /// The run's input (`${input…}`).
    Input,
    /// Another step's output (`${<step-id>.output…}`), by id and index in the plan.
    Step {
        /// The step's id.
        id: StepId,
        /// The step's index in `steps` (and node index in the plan's graph).
        index: usize,
    },
    /// The step's own current output (`${output…}`), in `loop.until` and `outputMapping`.
    Output,
    /// The random values a scripted agent drew for the call at hand (`${random…}`), in
    /// scripted outputs ([`sim`](crate::sim)).
    Random,
}

/// One segment of a binding path: `.key` or `[n]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PathSegment {
    /// An object field.
    Key(Box<str>),
    /// An array element.
    Index(usize),
}

/// A compiled `${…}` binding: its source, its path and its text (for messages).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Binding {
    source: Source,
    path: Box<[PathSegment]>,
    text: Box<str>,
}

/// What a binding reads at run time: the run input and the outputs of steps.
///
/// The executor implements this over its run state; steps are addressed by index, so
/// resolving a binding involves no string lookups beyond the path's own keys.
pub trait BindingValues {
    /// The run's input.
    fn input(&self) -> &Value;
    /// The output of the step at `index`, if it has completed.
    fn step_output(&self, index: usize) -> Option<&Value>;
    /// The current step's own output (for `loop.until` and `outputMapping`).
    fn own_output(&self) -> Option<&Value> {
        None
    }
    /// The random values drawn for the call at hand, by name (for scripted outputs'
    /// `${random…}`); the default has none.
    fn random(&self) -> Option<&Value> {
        None
    }
}

impl Binding {
    /// Where the binding reads from.
    pub fn source(&self) -> &Source {
        &self.source
    }

    /// The path below the source.
    pub fn path(&self) -> &[PathSegment] {
        &self.path
    }

    /// The binding as written, `${…}` included.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The index of the step this binding reads, if it reads a step.
    pub fn step_index(&self) -> Option<usize> {
        match self.source {
            Source::Step { index, .. } => Some(index),
            _ => None,
        }
    }

    /// Resolves the binding to the value it names.
    ///
    /// # Errors
    /// [`EvalError::NoOutput`] when the step has no output (it did not complete);
    /// [`EvalError::MissingPath`] naming the first path segment that does not exist.
    pub fn resolve<'v>(&self, values: &'v dyn BindingValues) -> Result<&'v Value, EvalError> {
        let root = match &self.source {
            Source::Input => values.input(),
            Source::Step { id, index } => {
                values
                    .step_output(*index)
                    .ok_or_else(|| EvalError::NoOutput {
                        binding: self.text.to_string(),
                        step: id.clone(),
                    })?
            }
            Source::Output => values.own_output().ok_or_else(|| EvalError::NoOutput {
                binding: self.text.to_string(),
                step: StepId::new("output"),
            })?,
            Source::Random => values.random().ok_or_else(|| EvalError::MissingPath {
                binding: self.text.to_string(),
                path: "random".to_owned(),
            })?,
        };
        let mut current = root;
        for (depth, segment) in self.path.iter().enumerate() {
            let next = match segment {
                PathSegment::Key(key) => current.as_object().and_then(|object| object.get(&**key)),
                PathSegment::Index(index) => current.as_array().and_then(|items| items.get(*index)),
            };
            current = next.ok_or_else(|| EvalError::MissingPath {
                binding: self.text.to_string(),
                path: self.path_text(depth + 1),
            })?;
        }
        Ok(current)
    }

    /// Compiles `text` if it is exactly one binding (`None` otherwise), as a scripted
    /// random value's bound: a `${params…}` binding to the task's parameters.
    pub(crate) fn compile_param(
        text: &str,
        at: &Location,
    ) -> Option<Result<Self, Vec<DefinitionError>>> {
        if !is_whole_binding(text) {
            return None;
        }
        let mut errors = Vec::new();
        let binding = compile_whole(text, &Scope::params(), &|| at.clone(), &mut errors);
        Some(binding.filter(|_| errors.is_empty()).ok_or(errors))
    }

    /// The source and the first `segments` path segments, as text (`input.orders[0]`).
    fn path_text(&self, segments: usize) -> String {
        let mut text = match &self.source {
            Source::Input => "input".to_owned(),
            Source::Step { id, .. } => format!("{id}.output"),
            Source::Output => "output".to_owned(),
            Source::Random => "random".to_owned(),
        };
        for segment in self.path.iter().take(segments) {
            match segment {
                PathSegment::Key(key) => {
                    text.push('.');
                    text.push_str(key);
                }
                PathSegment::Index(index) => text.push_str(&format!("[{index}]")),
            }
        }
        text
    }
}

impl fmt::Display for Binding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Maps a step id to its index in `steps` and its shared id.
pub(crate) type StepLookup<'a> = &'a dyn Fn(&str) -> Option<(usize, StepId)>;

/// Builds the location of a problem; called only when there is one, so that the common
/// (valid) case allocates no locations.
pub(crate) type Locate<'l> = &'l dyn Fn() -> Location;

/// What a binding may refer to where it appears.
#[derive(Clone, Copy)]
pub(crate) struct Scope<'a> {
    /// Step ids → index; `None` where step outputs cannot be read.
    steps: Option<StepLookup<'a>>,
    /// The step the binding belongs to.
    this: Option<usize>,
    /// Whether `${output…}` (and a reference to `this`) means the step's own output.
    own_output: bool,
    /// Whether `${input…}` may be used.
    input: bool,
    /// The root name that reads the input (`input`; `params` in scripted outputs).
    input_root: &'static str,
    /// Whether `${random…}` reads the call's random values (in scripted outputs); where
    /// it does not, `random` is a step id like any other.
    random: bool,
    /// Why bindings of the forbidden kinds are not allowed here.
    reason: &'static str,
}

impl<'a> Scope<'a> {
    /// In a step's parameters and conditions: input and other steps.
    pub(crate) fn step(steps: StepLookup<'a>, this: usize) -> Self {
        Self {
            steps: Some(steps),
            this: Some(this),
            own_output: false,
            input: true,
            input_root: "input",
            random: false,
            reason: "`${output…}` is the step's own output, readable only in `loop.until` and `outputMapping`",
        }
    }

    /// In `loop.until` and `outputMapping`: also the step's own output.
    pub(crate) fn with_own_output(self) -> Self {
        Self {
            own_output: true,
            ..self
        }
    }

    /// In a decision's `reward`, evaluated when the run ends: the input and every step,
    /// the step itself included (as `${id.output…}`); no step waits for it.
    pub(crate) fn run_end(steps: StepLookup<'a>) -> Self {
        Self {
            steps: Some(steps),
            this: None,
            own_output: false,
            input: true,
            input_root: "input",
            random: false,
            reason: "a reward reads the run's input and its steps' outputs, as `${step.output…}`",
        }
    }

    /// In workflow `conditions`: the input only (no step has run yet).
    pub(crate) fn workflow() -> Self {
        Self {
            steps: None,
            this: None,
            own_output: false,
            input: true,
            input_root: "input",
            random: false,
            reason: "workflow conditions are checked before any step runs; only `${input…}` can be read",
        }
    }

    /// In trigger conditions: no bindings (they read the host context).
    pub(crate) fn trigger() -> Self {
        Self {
            steps: None,
            this: None,
            own_output: false,
            input: false,
            input_root: "input",
            random: false,
            reason: "trigger conditions read the host context (`market.isOpen()`, `event.strength`), not bindings",
        }
    }

    /// In a workflow's adaptations: no bindings at all; `when` reads the host context
    /// and the engine's built-in names.
    pub(crate) fn adaptation() -> Self {
        Self {
            reason: "adaptation conditions read the host context and the engine's built-in names (`volatility.level`, `agents.RISK.available`), not bindings",
            ..Self::trigger()
        }
    }

    /// In scripted agents' random bounds: `${params…}`, the parameters of the task at
    /// hand.
    pub(crate) fn params() -> Self {
        Self {
            steps: None,
            this: None,
            own_output: false,
            input: true,
            input_root: "params",
            random: false,
            reason: "a random value's bounds read the task's parameters, as `${params…}`",
        }
    }

    /// In scripted agents' outputs: `${params…}`, the parameters of the task at hand, and
    /// `${random…}`, the values drawn for the call.
    pub(crate) fn script() -> Self {
        Self {
            random: true,
            reason: "scripted outputs read the task's parameters, as `${params…}`, and the \
                     call's random values, as `${random…}`",
            ..Self::params()
        }
    }
}

/// A piece of a string: literal text or a binding.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Piece {
    Text(String),
    Binding(Binding),
}

/// Whether `text` is exactly one binding (`${…}` and nothing else).
pub(crate) fn is_whole_binding(text: &str) -> bool {
    text.starts_with("${") && text.find('}') == Some(text.len() - 1)
}

/// Compiles `text`, which [`is_whole_binding`]; see [`compile_pieces`].
pub(crate) fn compile_whole(
    text: &str,
    scope: &Scope<'_>,
    at: Locate<'_>,
    errors: &mut Vec<DefinitionError>,
) -> Option<Binding> {
    compile_binding(text, 0, text, scope, at, errors)
}

/// How many binding problems one string reports: each malformed binding's problem
/// holds the whole string, so without a bound a string of many would cost its length
/// times their number.
pub(crate) const MAX_BINDING_PROBLEMS_PER_STRING: usize = 8;

/// Splits `text` into literal text and compiled bindings, checking each against `scope`.
/// `$${` is a literal `${`. Problems are pushed to `errors` (located by `at`), up to
/// [`MAX_BINDING_PROBLEMS_PER_STRING`] of them (then the rest of the string is not
/// read); the result is `None` when there was any.
pub(crate) fn compile_pieces(
    text: &str,
    scope: &Scope<'_>,
    at: Locate<'_>,
    errors: &mut Vec<DefinitionError>,
) -> Option<Vec<Piece>> {
    let mut pieces = Vec::new();
    let mut literal = String::new();
    let mut ok = true;
    let mut rest = text;
    let errors_before = errors.len();
    while let Some(start) = rest.find("${") {
        if errors.len() - errors_before >= MAX_BINDING_PROBLEMS_PER_STRING {
            return None;
        }
        if rest[..start].ends_with('$') {
            // `$${` escapes a literal `${`.
            literal.push_str(&rest[..start - 1]);
            literal.push_str("${");
            rest = &rest[start + 2..];
            continue;
        }
        literal.push_str(&rest[..start]);
        let offset = text.len() - rest.len() + start;
        let Some(length) = rest[start..].find('}') else {
            errors.push(DefinitionError::InvalidBinding {
                at: at(),
                text: text.to_owned(),
                error: BindingError {
                    column: column(text, offset),
                    kind: BindingErrorKind::Unterminated,
                },
            });
            return None;
        };
        let raw = &rest[start..start + length + 1];
        match compile_binding(raw, offset, text, scope, at, errors) {
            Some(binding) => {
                if !literal.is_empty() {
                    pieces.push(Piece::Text(std::mem::take(&mut literal)));
                }
                pieces.push(Piece::Binding(binding));
            }
            None => ok = false,
        }
        rest = &rest[start + length + 1..];
    }
    literal.push_str(rest);
    if !literal.is_empty() {
        pieces.push(Piece::Text(literal));
    }
    ok.then_some(pieces)
}

/// Parses and scope-checks `raw` (`${…}`, at byte `offset` of `whole`).
fn compile_binding(
    raw: &str,
    offset: usize,
    whole: &str,
    scope: &Scope<'_>,
    at: Locate<'_>,
    errors: &mut Vec<DefinitionError>,
) -> Option<Binding> {
    let checked = parse(raw, offset, whole, scope)
        .map_err(|error| DefinitionError::InvalidBinding {
            at: at(),
            text: whole.to_owned(),
            error,
        })
        .and_then(|parsed| check_scope(parsed, raw, scope, at));
    checked.map_err(|error| errors.push(error)).ok()
}

/// 1-based character column of byte `offset` in `text`.
fn column(text: &str, offset: usize) -> usize {
    text.get(..offset)
        .map_or(1, |before| before.chars().count() + 1)
}

/// A parsed binding before its scope is checked.
struct Parsed<'t> {
    root: Root<'t>,
    path: Vec<PathSegment>,
}

enum Root<'t> {
    Input,
    Output,
    Random,
    Step(&'t str),
}

/// Parses `raw` (`${…}`, found at byte `offset` of `whole`).
fn parse<'t>(
    raw: &'t str,
    offset: usize,
    whole: &str,
    scope: &Scope<'_>,
) -> Result<Parsed<'t>, BindingError> {
    let fail = |at: usize, kind| BindingError {
        column: column(whole, offset + at),
        kind,
    };
    let inner = &raw[2..raw.len() - 1];
    if inner.is_empty() {
        return Err(fail(0, BindingErrorKind::Empty));
    }
    let root_end = inner.find(['.', '[']).unwrap_or(inner.len());
    let root_text = &inner[..root_end];
    if let Some((position, bad)) = root_text
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
    {
        return Err(fail(2 + position, BindingErrorKind::UnexpectedChar(bad)));
    }
    if root_text.is_empty() {
        return Err(fail(2, BindingErrorKind::EmptySegment));
    }
    let (root, path_start) = match root_text {
        root if root == scope.input_root => (Root::Input, root_end),
        "output" => (Root::Output, root_end),
        "random" if scope.random => (Root::Random, root_end),
        step => {
            // `<step>.output`, then the path.
            let after = &inner[root_end..];
            let follows = after
                .strip_prefix(".output")
                .filter(|rest| rest.is_empty() || rest.starts_with(['.', '[']));
            if follows.is_none() {
                return Err(fail(2, BindingErrorKind::MissingOutput(step.to_owned())));
            }
            (Root::Step(step), root_end + ".output".len())
        }
    };
    let path =
        parse_path(&inner[path_start..]).map_err(|(at, kind)| fail(2 + path_start + at, kind))?;
    Ok(Parsed { root, path })
}

/// Parses `.key` and `[n]` segments; errors carry the byte offset within `text`.
fn parse_path(text: &str) -> Result<Vec<PathSegment>, (usize, BindingErrorKind)> {
    let mut segments =
        Vec::with_capacity(text.bytes().filter(|b| matches!(b, b'.' | b'[')).count());
    let mut position = 0;
    while position < text.len() {
        let rest = &text[position..];
        if let Some(key_text) = rest.strip_prefix('.') {
            let length = key_text.find(['.', '[']).unwrap_or(key_text.len());
            let key = &key_text[..length];
            if key.is_empty() {
                return Err((position, BindingErrorKind::EmptySegment));
            }
            if let Some((at, bad)) = key
                .char_indices()
                .find(|(_, c)| c.is_whitespace() || matches!(c, ']' | '{' | '$' | '"'))
            {
                return Err((position + 1 + at, BindingErrorKind::UnexpectedChar(bad)));
            }
            segments.push(PathSegment::Key(key.into()));
            position += 1 + length;
        } else if let Some(index_text) = rest.strip_prefix('[') {
            let Some(close) = index_text.find(']') else {
                return Err((position, BindingErrorKind::UnexpectedChar('[')));
            };
            let digits = &index_text[..close];
            if digits.is_empty() {
                return Err((position, BindingErrorKind::EmptySegment));
            }
            let index = digits
                .parse::<usize>()
                .ok()
                .filter(|_| digits.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| (position + 1, BindingErrorKind::BadIndex(digits.to_owned())))?;
            segments.push(PathSegment::Index(index));
            position += close + 2;
        } else {
            let bad = rest.chars().next().unwrap_or('?');
            return Err((position, BindingErrorKind::UnexpectedChar(bad)));
        }
    }
    Ok(segments)
}

fn check_scope(
    parsed: Parsed<'_>,
    raw: &str,
    scope: &Scope<'_>,
    at: Locate<'_>,
) -> Result<Binding, DefinitionError> {
    let not_allowed = || DefinitionError::BindingNotAllowed {
        at: at(),
        binding: raw.to_owned(),
        reason: scope.reason,
    };
    let source = match parsed.root {
        Root::Input if scope.input => Source::Input,
        Root::Output if scope.own_output => Source::Output,
        // Only parsed where the scope reads random values.
        Root::Random => Source::Random,
        Root::Input | Root::Output => return Err(not_allowed()),
        Root::Step(id) => {
            let Some(lookup) = scope.steps else {
                return Err(not_allowed());
            };
            match lookup(id) {
                None => {
                    return Err(DefinitionError::UnknownBindingStep {
                        at: at(),
                        binding: raw.to_owned(),
                        step: id.to_owned(),
                    });
                }
                Some((index, _)) if Some(index) == scope.this => {
                    if !scope.own_output {
                        return Err(DefinitionError::SelfReference {
                            at: at(),
                            binding: raw.to_owned(),
                        });
                    }
                    Source::Output
                }
                Some((index, id)) => Source::Step { id, index },
            }
        }
    };
    Ok(Binding {
        source,
        path: parsed.path.into_boxed_slice(),
        text: raw.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(id: &str) -> Option<(usize, StepId)> {
        let index = ["market-analysis", "risk", "me"]
            .iter()
            .position(|known| *known == id)?;
        Some((index, StepId::new(id)))
    }

    fn pieces(text: &str, scope: Scope<'_>) -> Result<Vec<Piece>, Vec<DefinitionError>> {
        let mut errors = Vec::new();
        compile_pieces(text, &scope, &Location::root, &mut errors).ok_or(errors)
    }

    fn binding(text: &str) -> Binding {
        match pieces(text, Scope::step(&lookup, 2).with_own_output())
            .unwrap()
            .as_slice()
        {
            [Piece::Binding(binding)] => binding.clone(),
            other => panic!("not one binding: {other:?}"),
        }
    }

    #[test]
    fn parses_roots_and_paths() {
        let b = binding("${market-analysis.output.orders[0].qty}");
        assert_eq!(
            b.source(),
            &Source::Step {
                id: StepId::new("market-analysis"),
                index: 0
            }
        );
        assert_eq!(
            b.path(),
            &[
                PathSegment::Key("orders".into()),
                PathSegment::Index(0),
                PathSegment::Key("qty".into())
            ]
        );
        assert_eq!(binding("${input}").source(), &Source::Input);
        assert_eq!(binding("${output.done}").source(), &Source::Output);
        // A step's own id means its own output where that is allowed.
        assert_eq!(binding("${me.output.x}").source(), &Source::Output);
    }

    #[test]
    fn splits_text_and_bindings() {
        let parsed = pieces(
            "buy ${input.qty} of ${risk.output.symbol}!",
            Scope::step(&lookup, 2),
        )
        .unwrap();
        assert_eq!(parsed.len(), 5);
        assert_eq!(parsed[0], Piece::Text("buy ".into()));
        assert_eq!(parsed[4], Piece::Text("!".into()));
        assert_eq!(
            pieces("cost $${x}", Scope::step(&lookup, 2)).unwrap(),
            vec![Piece::Text("cost ${x}".into())]
        );
    }

    #[test]
    fn malformed_bindings_name_the_column() {
        let cases = [
            ("ab ${input.x", 4, BindingErrorKind::Unterminated),
            ("${}", 1, BindingErrorKind::Empty),
            ("${risk}", 3, BindingErrorKind::MissingOutput("risk".into())),
            (
                "${risk.result}",
                3,
                BindingErrorKind::MissingOutput("risk".into()),
            ),
            ("${input..x}", 8, BindingErrorKind::EmptySegment),
            ("${input.a[x]}", 11, BindingErrorKind::BadIndex("x".into())),
            ("${input.a b}", 10, BindingErrorKind::UnexpectedChar(' ')),
        ];
        for (text, expected_column, expected_kind) in cases {
            let errors = pieces(text, Scope::step(&lookup, 2)).unwrap_err();
            match &errors[..] {
                [DefinitionError::InvalidBinding { error, .. }] => {
                    assert_eq!(
                        (error.column, &error.kind),
                        (expected_column, &expected_kind),
                        "{text}"
                    );
                }
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    #[test]
    fn scope_rules() {
        let unknown = pieces("${nope.output}", Scope::step(&lookup, 2)).unwrap_err();
        assert!(
            matches!(&unknown[..], [DefinitionError::UnknownBindingStep { step, .. }] if step == "nope")
        );
        let own = pieces("${me.output.x}", Scope::step(&lookup, 2)).unwrap_err();
        assert!(matches!(&own[..], [DefinitionError::SelfReference { .. }]));
        let output = pieces("${output.x}", Scope::step(&lookup, 2)).unwrap_err();
        assert!(matches!(
            &output[..],
            [DefinitionError::BindingNotAllowed { .. }]
        ));
        let workflow = pieces("${risk.output}", Scope::workflow()).unwrap_err();
        assert!(matches!(
            &workflow[..],
            [DefinitionError::BindingNotAllowed { .. }]
        ));
        assert!(pieces("${input.x}", Scope::workflow()).is_ok());
        assert!(pieces("${input.x}", Scope::trigger()).is_err());
    }

    struct Values(Value, Vec<Option<Value>>);

    impl BindingValues for Values {
        fn input(&self) -> &Value {
            &self.0
        }
        fn step_output(&self, index: usize) -> Option<&Value> {
            self.1.get(index)?.as_ref()
        }
    }

    #[test]
    fn resolution_names_the_missing_path() {
        let values = Values(serde_json::json!({"orders": [{"qty": 5}]}), vec![None]);
        assert_eq!(
            binding("${input.orders[0].qty}").resolve(&values).unwrap(),
            &serde_json::json!(5)
        );
        let missing = binding("${input.orders[1].qty}")
            .resolve(&values)
            .unwrap_err();
        assert!(
            matches!(&missing, EvalError::MissingPath { path, .. } if path == "input.orders[1]"),
            "{missing:?}"
        );
        let absent = binding("${market-analysis.output}")
            .resolve(&values)
            .unwrap_err();
        assert!(matches!(absent, EvalError::NoOutput { .. }));
    }
}
