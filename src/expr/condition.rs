//! Conditions: boolean expressions compiled once to evalexpr operator trees.

use std::cell::Cell;
use std::fmt::Write as _;
use std::panic::catch_unwind;

use evalexpr::{EvalexprError, EvalexprResult, Node, Operator, Value as ExprValue};

use super::arithmetic::{self, Fault};
use super::binding::{Binding, BindingValues, Locate, Scope, compile_pieces, compile_whole};
use super::context::Context;
use super::program::{Env, Program};
use super::{EvalError, ExpressionProblem};
use crate::definition::{DefinitionError, Location, Quoted};

/// Longest expression accepted, in bytes of the text as written. (The text handed to
/// evalexpr is never longer: each binding becomes a shorter identifier.)
pub const MAX_EXPRESSION_LENGTH: usize = 2048;
/// Deepest nesting accepted: parentheses plus runs of unary `!`/`-` before parsing, and
/// the operator tree's depth after.
pub const MAX_EXPRESSION_DEPTH: usize = 32;
/// Prefix of the identifiers that stand for bindings in the compiled tree.
pub(super) const SLOT_PREFIX: &str = "__tf";

/// A compiled condition: the expression's operator tree and the bindings it reads.
///
/// Bindings reach evalexpr as generated identifiers, never as text, so hyphenated step
/// ids cannot parse as subtraction; `===`/`!==` are rewritten to `==`/`!=`; every number
/// is a float, so `${x} == 1` holds for `x = 1.0`. Evaluation substitutes the bound
/// values and consults the host [`Context`] for the rest.
#[derive(Debug, Clone)]
pub struct Condition {
    text: Box<str>,
    program: Program,
    slots: Box<[Binding]>,
}

impl PartialEq for Condition {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text && self.slots == other.slots
    }
}

impl Condition {
    /// Compiles `text`; problems are pushed to `errors`, located at `at`.
    pub(crate) fn compile(
        text: &str,
        scope: &Scope<'_>,
        at: Locate<'_>,
        errors: &mut Vec<DefinitionError>,
    ) -> Option<Self> {
        let compiled = normalize(text, scope, at, errors).and_then(|normalized| {
            let tree = build(&normalized.text)?;
            Ok((!normalized.binding_problems).then(|| Self {
                text: text.into(),
                program: Program::from_tree(&tree),
                slots: normalized.slots.into_boxed_slice(),
            }))
        });
        compiled.unwrap_or_else(|problem| {
            errors.push(DefinitionError::Expression {
                at: at(),
                expression: text.to_owned(),
                problem,
            });
            None
        })
    }

    /// Compiles a condition that reads only the host context (no bindings), as trigger
    /// conditions do.
    ///
    /// # Errors
    /// The [`ExpressionProblem`] that keeps `text` from compiling; a binding is reported
    /// as [`ExpressionProblem::Binding`].
    ///
    /// # Examples
    /// ```
    /// use serde_json::json;
    /// use tradeflow::expr::{Condition, Context};
    ///
    /// let condition = Condition::parse("market.isOpen() && volatility.level < 0.3")?;
    /// let context = Context::new()
    ///     .with_variable("volatility.level", json!(0.2))
    ///     .with_function("market.isOpen", |_| Ok(json!(true)));
    /// assert!(condition.evaluate_with(&context)?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn parse(text: &str) -> Result<Self, ExpressionProblem> {
        let mut errors = Vec::new();
        match Self::compile(text, &Scope::trigger(), &Location::root, &mut errors) {
            Some(condition) => Ok(condition),
            None => Err(match errors.into_iter().next() {
                Some(DefinitionError::Expression { problem, .. }) => problem,
                Some(other) => {
                    let message = other.to_string();
                    let prefix = format!("{}: ", Location::root());
                    ExpressionProblem::Binding(
                        message.strip_prefix(&prefix).unwrap_or(&message).to_owned(),
                    )
                }
                None => ExpressionProblem::Empty,
            }),
        }
    }

    /// The expression as written.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The bindings the condition reads, in order of first use.
    pub fn bindings(&self) -> &[Binding] {
        &self.slots
    }

    /// The host variables the condition reads (not its bindings), each once, in order of
    /// first appearance.
    pub(crate) fn variables(&self) -> Vec<String> {
        let mut names = Vec::new();
        self.program.variables(&mut names);
        let mut seen = std::collections::HashSet::with_capacity(names.len());
        names
            .into_iter()
            .filter(|name| seen.insert(*name))
            .map(str::to_owned)
            .collect()
    }

    /// Evaluates the condition with its bindings resolved against `values`.
    ///
    /// # Errors
    /// An unresolvable binding ([`EvalError::MissingPath`], [`EvalError::NoOutput`]), an
    /// object where a value is needed ([`EvalError::ObjectValue`]), a result that is not
    /// a boolean ([`EvalError::NotBoolean`]), arithmetic with no finite result
    /// ([`EvalError::DivisionByZero`], [`EvalError::NotFinite`]) or any other evaluation
    /// failure ([`EvalError::Evaluation`]). Never panics.
    pub fn evaluate(
        &self,
        values: &dyn BindingValues,
        context: &Context,
    ) -> Result<bool, EvalError> {
        Env::new(&self.text, &self.slots, Some(values), context).truth(&self.program, true)
    }

    /// Evaluates a condition that has no bindings against the host context alone.
    ///
    /// # Errors
    /// As [`Condition::evaluate`].
    pub fn evaluate_with(&self, context: &Context) -> Result<bool, EvalError> {
        Env::new(&self.text, &self.slots, None, context).truth(&self.program, true)
    }
}

/// An expression rewritten for evalexpr.
struct Normalized {
    text: String,
    /// The bindings, slot `i` being identifier `__tf{i}`.
    slots: Vec<Binding>,
    /// Whether some binding had a problem (already reported; a stand-in took its place).
    binding_problems: bool,
}

/// Rewrites `text` for evalexpr: bindings become slot identifiers, `===`/`!==` become
/// `==`/`!=`, string literals are kept as they are; checks length and nesting on the way.
/// The flag says whether binding problems were pushed to `errors` (the bindings in
/// question are replaced by a stand-in so that the rest can still be checked).
fn normalize(
    text: &str,
    scope: &Scope<'_>,
    at: Locate<'_>,
    errors: &mut Vec<DefinitionError>,
) -> Result<Normalized, ExpressionProblem> {
    if text.len() > MAX_EXPRESSION_LENGTH {
        return Err(ExpressionProblem::TooLong {
            length: text.len(),
            max: MAX_EXPRESSION_LENGTH,
        });
    }
    if text.trim().is_empty() {
        return Err(ExpressionProblem::Empty);
    }
    let mut rewrite = Rewrite::new(text.len());
    let mut chars = text.char_indices();
    while let Some((position, c)) = chars.next() {
        let rest = &text[position..];
        match c {
            '"' => rewrite.string_literal(&mut chars)?,
            '$' if rest.starts_with("${") => {
                let end = rest.find('}').map_or(rest.len(), |end| end + 1);
                let raw = &rest[..end];
                rewrite.binding(raw, scope, at, errors);
                for _ in 1..raw.chars().count() {
                    chars.next();
                }
            }
            _ => rewrite.operator_or_other(c, rest, &mut chars)?,
        }
        rewrite.check_depth()?;
    }
    let normalized = rewrite.done;
    debug_assert!(normalized.text.len() <= text.len() + 2 * normalized.slots.len() + 2);
    Ok(normalized)
}

/// [`normalize`]'s progress through an expression.
struct Rewrite {
    /// The text written and the bindings met so far.
    done: Normalized,
    /// Parentheses open at this point.
    depth: usize,
    /// Unary `!`/`-` in a row at this point.
    unary_run: usize,
    /// The greatest `depth + unary_run` so far.
    deepest: usize,
}

impl Rewrite {
    /// Nothing written yet, room for `length` bytes.
    fn new(length: usize) -> Self {
        Self {
            done: Normalized {
                text: String::with_capacity(length),
                slots: Vec::new(),
                binding_problems: false,
            },
            depth: 0,
            unary_run: 0,
            deepest: 0,
        }
    }

    /// Copies a string literal verbatim, from the opening quote (already read) up to
    /// its closing quote.
    fn string_literal(
        &mut self,
        chars: &mut impl Iterator<Item = (usize, char)>,
    ) -> Result<(), ExpressionProblem> {
        let out = &mut self.done.text;
        out.push('"');
        let mut closed = false;
        while let Some((_, c)) = chars.next() {
            out.push(c);
            if c == '\\' {
                if let Some((_, escaped)) = chars.next() {
                    out.push(escaped);
                }
            } else if c == '"' {
                closed = true;
                break;
            }
        }
        if !closed {
            return Err(ExpressionProblem::UnterminatedString);
        }
        self.unary_run = 0;
        Ok(())
    }

    /// Writes the slot identifier of the binding `raw` (`${…}`, or an unterminated
    /// `${…`), or a stand-in if it has a problem.
    fn binding(
        &mut self,
        raw: &str,
        scope: &Scope<'_>,
        at: Locate<'_>,
        errors: &mut Vec<DefinitionError>,
    ) {
        let compiled = if raw.ends_with('}') {
            compile_whole(raw, scope, at, errors)
        } else {
            // Unterminated: reported by the general path.
            compile_pieces(raw, scope, at, errors);
            None
        };
        let Normalized {
            text: out,
            slots,
            binding_problems,
        } = &mut self.done;
        match compiled {
            Some(binding) => {
                let slot = match slots
                    .iter()
                    .position(|known| known.text() == binding.text())
                {
                    Some(slot) => slot,
                    None => {
                        slots.push(binding);
                        slots.len() - 1
                    }
                };
                let _ = write!(out, " {SLOT_PREFIX}{slot} ");
            }
            None => {
                // Reported already; a stand-in keeps the rest of the expression
                // checkable, so its own problems are reported in the same pass.
                *binding_problems = true;
                out.push_str(" __tfx ");
            }
        }
        self.unary_run = 0;
    }

    /// Writes `c`, which starts `rest`: strict (in)equality rewritten, unary operators
    /// and parentheses counted, the slot prefix refused.
    fn operator_or_other(
        &mut self,
        c: char,
        rest: &str,
        chars: &mut impl Iterator<Item = (usize, char)>,
    ) -> Result<(), ExpressionProblem> {
        let out = &mut self.done.text;
        match c {
            '=' if rest.starts_with("===") => {
                out.push_str("==");
                chars.next();
                chars.next();
            }
            '!' if rest.starts_with("!==") => {
                out.push_str("!=");
                chars.next();
                chars.next();
            }
            '!' | '-' if !rest.starts_with("!=") => {
                out.push(c);
                self.unary_run += 1;
            }
            '(' => {
                out.push(c);
                self.depth += 1;
            }
            ')' => {
                out.push(c);
                self.depth = self.depth.saturating_sub(1);
                self.unary_run = 0;
            }
            '_' if rest.starts_with(SLOT_PREFIX) => {
                return Err(ExpressionProblem::ReservedName(SLOT_PREFIX.to_owned()));
            }
            c => {
                out.push(c);
                if c.is_alphanumeric() || c == '_' || c == '.' {
                    self.unary_run = 0;
                }
            }
        }
        Ok(())
    }

    /// Fails once parentheses plus a run of unary operators nest deeper than allowed.
    fn check_depth(&mut self) -> Result<(), ExpressionProblem> {
        self.deepest = self.deepest.max(self.depth + self.unary_run);
        if self.deepest > MAX_EXPRESSION_DEPTH {
            return Err(ExpressionProblem::TooDeep {
                depth: self.deepest,
                max: MAX_EXPRESSION_DEPTH,
            });
        }
        Ok(())
    }
}

/// Parses the normalized text and checks and adjusts the tree.
fn build(normalized: &str) -> Result<Node, ExpressionProblem> {
    let parsed = catch_unwind(|| evalexpr::build_operator_tree(normalized))
        .map_err(|_| ExpressionProblem::Syntax("the expression parser panicked".to_owned()))?;
    let mut tree = parsed.map_err(|error| ExpressionProblem::Syntax(describe(&error)))?;
    if tree.children().is_empty() {
        return Err(ExpressionProblem::Empty);
    }
    // Iterative walk: the tree may be deep, and this is what keeps evaluation from
    // recursing past the bound.
    let mut stack: Vec<(&mut Node, usize)> = vec![(&mut tree, 1)];
    while let Some((node, depth)) = stack.pop() {
        if depth > MAX_EXPRESSION_DEPTH * 2 {
            return Err(ExpressionProblem::TooDeep {
                depth,
                max: MAX_EXPRESSION_DEPTH * 2,
            });
        }
        let arity = node.children().len();
        let expected = match node.operator() {
            Operator::Add
            | Operator::Sub
            | Operator::Mul
            | Operator::Div
            | Operator::Mod
            | Operator::Exp
            | Operator::Eq
            | Operator::Neq
            | Operator::Gt
            | Operator::Lt
            | Operator::Geq
            | Operator::Leq
            | Operator::And
            | Operator::Or => Some(2),
            Operator::Neg | Operator::Not | Operator::FunctionIdentifier { .. } => Some(1),
            _ => None,
        };
        if expected.is_some_and(|expected| expected != arity) {
            // evalexpr accepts `a == true &&` and fails only when evaluating it.
            return Err(ExpressionProblem::Syntax(format!(
                "`{}` is missing an operand",
                node.operator()
            )));
        }
        match node.operator_mut() {
            Operator::Const { value } => {
                // One numeric policy: every number is a float, as in JSON.
                if let ExprValue::Int(int) = value {
                    *value = ExprValue::Float(*int as f64);
                }
                if let ExprValue::Float(number) = value {
                    if !number.is_finite() {
                        return Err(ExpressionProblem::NumberTooLarge);
                    }
                }
            }
            Operator::Assign
            | Operator::AddAssign
            | Operator::SubAssign
            | Operator::MulAssign
            | Operator::DivAssign
            | Operator::ModAssign
            | Operator::ExpAssign
            | Operator::AndAssign
            | Operator::OrAssign
            | Operator::VariableIdentifierWrite { .. } => {
                return Err(ExpressionProblem::Assignment);
            }
            Operator::Chain => return Err(ExpressionProblem::Chain),
            _ => {}
        }
        stack.extend(
            node.children_mut()
                .iter_mut()
                .map(|child| (child, depth + 1)),
        );
    }
    arithmetic::guard(&mut tree);
    Ok(tree)
}

/// evalexpr's error, said the way our messages are: lowercase, no trailing period, and
/// in the user's terms for the common cases.
pub(super) fn describe(error: &EvalexprError) -> String {
    match error {
        EvalexprError::AppendedToLeafNode => {
            "two values in a row with no operator between them".to_owned()
        }
        EvalexprError::UnmatchedLBrace => "unmatched `(`".to_owned(),
        EvalexprError::UnmatchedRBrace => "unmatched `)`".to_owned(),
        EvalexprError::UnmatchedDoubleQuote => "unmatched `\"`".to_owned(),
        EvalexprError::MissingOperatorOutsideOfBrace => {
            "a value is followed by `(` with no operator between them".to_owned()
        }
        EvalexprError::WrongOperatorArgumentAmount { .. }
        | EvalexprError::WrongFunctionArgumentAmount { .. } => {
            "an operator or function is missing an operand".to_owned()
        }
        EvalexprError::VariableIdentifierNotFound(name) => {
            format!(
                "unknown variable `{}` (the host context does not define it)",
                Quoted(name)
            )
        }
        EvalexprError::FunctionIdentifierNotFound(name) => {
            format!(
                "unknown function `{}` (neither built in nor defined by the host context)",
                Quoted(name)
            )
        }
        EvalexprError::CustomMessage(message) => message.clone(),
        other => {
            let text = other.to_string();
            let text = text.trim_end_matches('.');
            let mut chars = text.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_lowercase().chain(chars).collect()
            })
        }
    }
}

/// Why evaluating an evalexpr tree failed.
#[derive(Debug)]
pub(super) enum TreeError {
    /// evalexpr's own error (an unknown name, a type mismatch, a host function's error).
    Evalexpr(EvalexprError),
    /// Arithmetic with no finite answer, found by a guard (see `arithmetic.rs`).
    Arithmetic(Fault),
}

/// Evaluates an evalexpr (sub)tree with bound slot values and the host context.
pub(super) fn eval_tree(
    tree: &Node,
    bound: &[ExprValue],
    host: &Context,
) -> Result<ExprValue, TreeError> {
    let context = EvalContext {
        bound,
        host,
        fault: Cell::new(None),
    };
    // A failing guard fails the evaluation; its fault says why.
    tree.eval_with_context(&context)
        .map_err(|error| match context.fault.take() {
            Some(fault) => TreeError::Arithmetic(fault),
            None => TreeError::Evalexpr(error),
        })
}

/// The evalexpr context of one evaluation: bound values by slot, then the host; and
/// the arithmetic guards, which leave their fault here.
struct EvalContext<'a> {
    bound: &'a [ExprValue],
    host: &'a Context,
    fault: Cell<Option<Fault>>,
}

static NULL: ExprValue = ExprValue::Empty;

impl evalexpr::Context for EvalContext<'_> {
    fn get_value(&self, identifier: &str) -> Option<&ExprValue> {
        if let Some(slot) = identifier.strip_prefix(SLOT_PREFIX) {
            return slot
                .parse::<usize>()
                .ok()
                .and_then(|slot| self.bound.get(slot));
        }
        if identifier == "null" {
            return Some(&NULL);
        }
        self.host.expr_variable(identifier)
    }

    fn call_function(&self, identifier: &str, argument: &ExprValue) -> EvalexprResult<ExprValue> {
        match arithmetic::check(identifier, argument) {
            Some(Ok(())) => return Ok(argument.clone()),
            Some(Err(fault)) => {
                self.fault.set(Some(fault));
                return Err(EvalexprError::CustomMessage(
                    "arithmetic without a finite result".to_owned(),
                ));
            }
            None => {}
        }
        match builtin(identifier, argument) {
            Some(result) => result,
            None => self.host.call(identifier, argument),
        }
    }

    fn are_builtin_functions_disabled(&self) -> bool {
        // Only the vetted functions below are reachable (evalexpr's own `str::substring`
        // panics on non-ASCII text).
        true
    }

    fn set_builtin_functions_disabled(&mut self, _disabled: bool) -> EvalexprResult<()> {
        Err(EvalexprError::ContextNotMutable)
    }
}

/// The vetted built-in functions: `min`, `max`, `abs`, `floor`, `ceil`, `round`, `len`,
/// `contains`. `None` when `name` is not one of them.
fn builtin(name: &str, argument: &ExprValue) -> Option<EvalexprResult<ExprValue>> {
    let number = |value: &ExprValue| -> EvalexprResult<f64> {
        match value {
            ExprValue::Float(f) => Ok(*f),
            ExprValue::Int(i) => Ok(*i as f64),
            other => Err(EvalexprError::expected_number(other.clone())),
        }
    };
    let numbers = |argument: &ExprValue| -> EvalexprResult<Vec<f64>> {
        match argument {
            ExprValue::Tuple(items) => items.iter().map(number).collect(),
            single => Ok(vec![number(single)?]),
        }
    };
    let unary = |f: fn(f64) -> f64| number(argument).map(|x| ExprValue::Float(f(x)));
    Some(match name {
        "min" | "max" => numbers(argument).and_then(|values| {
            let pick = if name == "min" { f64::min } else { f64::max };
            values
                .into_iter()
                .reduce(pick)
                .map(ExprValue::Float)
                .ok_or_else(|| {
                    EvalexprError::CustomMessage(format!("`{name}` needs at least one number"))
                })
        }),
        "abs" => unary(f64::abs),
        "floor" => unary(f64::floor),
        "ceil" => unary(f64::ceil),
        "round" => unary(f64::round),
        "len" => match argument {
            ExprValue::String(s) => Ok(ExprValue::Float(s.chars().count() as f64)),
            ExprValue::Tuple(items) => Ok(ExprValue::Float(items.len() as f64)),
            other => Err(EvalexprError::CustomMessage(format!(
                "`len` takes a string or an array, not {other}"
            ))),
        },
        "contains" => match argument {
            ExprValue::Tuple(pair) if pair.len() == 2 => match (&pair[0], &pair[1]) {
                (ExprValue::String(haystack), ExprValue::String(needle)) => {
                    Ok(ExprValue::Boolean(haystack.contains(needle.as_str())))
                }
                (ExprValue::Tuple(items), needle) => Ok(ExprValue::Boolean(items.contains(needle))),
                _ => Err(EvalexprError::CustomMessage(
                    "`contains` takes (string, string) or (array, value)".to_owned(),
                )),
            },
            _ => Err(EvalexprError::CustomMessage(
                "`contains` takes two arguments".to_owned(),
            )),
        },
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    struct Values(Value, Vec<Option<Value>>);

    impl BindingValues for Values {
        fn input(&self) -> &Value {
            &self.0
        }
        fn step_output(&self, index: usize) -> Option<&Value> {
            self.1.get(index)?.as_ref()
        }
    }

    fn lookup(id: &str) -> Option<(usize, crate::definition::StepId)> {
        let index = ["risk-assessment", "sizing"]
            .iter()
            .position(|known| *known == id)?;
        Some((index, crate::definition::StepId::new(id)))
    }

    fn compile(text: &str) -> Result<Condition, Vec<DefinitionError>> {
        let mut errors = Vec::new();
        Condition::compile(text, &Scope::step(&lookup, 5), &Location::root, &mut errors)
            .ok_or(errors)
    }

    fn problem(text: &str) -> ExpressionProblem {
        match compile(text).unwrap_err().as_slice() {
            [
                DefinitionError::Expression {
                    problem,
                    expression,
                    ..
                },
            ] => {
                assert_eq!(expression, text);
                problem.clone()
            }
            other => panic!("{other:?}"),
        }
    }

    fn holds(text: &str, values: &Values) -> Result<bool, EvalError> {
        compile(text).unwrap().evaluate(values, &Context::new())
    }

    fn values() -> Values {
        Values(
            json!({"qty": 1.0, "tags": ["a", "b"], "nothing": null}),
            vec![
                Some(json!({"approved": true, "score": 0.75, "detail": {"x": 1}})),
                None,
            ],
        )
    }

    /// The whole condition evaluated by evalexpr alone, as the reference for the native path.
    fn by_evalexpr(text: &str, values: &Values, context: &Context) -> Result<bool, String> {
        let mut errors = Vec::new();
        let normalized = normalize(text, &Scope::step(&lookup, 5), &Location::root, &mut errors)
            .map_err(|problem| problem.to_string())?;
        let tree = build(&normalized.text).map_err(|problem| problem.to_string())?;
        let bound: Vec<ExprValue> = normalized
            .slots
            .iter()
            .map(|binding| binding.resolve(values).map_err(|e| e.to_string()))
            .map(|value| {
                value.and_then(|v| {
                    super::super::context::to_expr(v).map_err(|_| "object".to_owned())
                })
            })
            .collect::<Result<_, _>>()?;
        match eval_tree(&tree, &bound, context) {
            Ok(ExprValue::Boolean(holds)) => Ok(holds),
            other => Err(format!("{other:?}")),
        }
    }

    #[test]
    fn the_native_path_agrees_with_evalexpr() {
        let v = values();
        let context = Context::new()
            .with_variable("volatility.level", json!(0.2))
            .with_variable("market.name", json!("XNAS"))
            .with_variable("limits", json!([1, 2]))
            .with_variable("flag", json!(true))
            .with_function("market.isOpen", |_| Ok(json!(true)));
        let cases = [
            "${risk-assessment.output.approved} == true",
            "${risk-assessment.output.approved} != false && ${risk-assessment.output.score} >= 0.75",
            "${risk-assessment.output.score} > 0.5 || ${input.qty} < 0",
            "!(${input.qty} == 1) || volatility.level <= 0.2",
            "${input.tags} == (\"a\", \"b\")",
            "${input.tags} != (\"a\")",
            "${input.nothing} == null && null == ${input.nothing}",
            "${input.qty} == \"1\"",
            "market.name == \"XNAS\" && market.name > \"XA\" && market.name < \"XZ\"",
            "limits == (1, 2.0)",
            "flag",
            "!flag || market.isOpen()",
            "${input.qty} + 1 == 2",
            "(${input.qty} >= 1) == true",
            "1 == 1.0 && 2 > 1.5",
        ];
        for text in cases {
            let native = compile(text).unwrap().evaluate(&v, &context);
            let reference = by_evalexpr(text, &v, &context);
            match (&native, &reference) {
                (Ok(a), Ok(b)) => assert_eq!(a, b, "{text}"),
                (Err(_), Err(_)) => {}
                _ => panic!("{text}: native {native:?}, evalexpr {reference:?}"),
            }
            assert!(reference.is_ok(), "{text}: {reference:?}");
        }
        // Errors where evalexpr has them: ordering values of different kinds.
        let mixed = "${input.qty} > \"a\"";
        assert!(by_evalexpr(mixed, &v, &context).is_err());
        assert!(matches!(
            compile(mixed).unwrap().evaluate(&v, &context),
            Err(EvalError::Evaluation { .. })
        ));
    }

    #[test]
    fn and_and_or_short_circuit() {
        let v = values();
        // evalexpr evaluates both sides, so the unknown variable would be an error there.
        assert_eq!(holds("${input.qty} == 2 && unknown.flag", &v), Ok(false));
        assert_eq!(holds("${input.qty} == 1 || unknown.flag", &v), Ok(true));
        assert!(holds("${input.qty} == 1 && unknown.flag", &v).is_err());
    }

    #[test]
    fn hyphenated_step_ids_and_strict_equality() {
        let v = values();
        assert!(holds("${risk-assessment.output.approved} === true", &v).unwrap());
        assert!(!holds("${risk-assessment.output.approved} !== true", &v).unwrap());
        assert_eq!(
            compile("${risk-assessment.output.approved} === true")
                .unwrap()
                .bindings()
                .len(),
            1
        );
    }

    #[test]
    fn numbers_compare_by_value() {
        let v = values();
        assert!(holds("${input.qty} == 1", &v).unwrap());
        assert!(
            holds(
                "${risk-assessment.output.score} > 0.5 && ${input.qty} < 2",
                &v
            )
            .unwrap()
        );
        assert!(holds("7 / 2 == 3.5", &v).unwrap());
    }

    #[test]
    fn null_arrays_and_builtins() {
        let v = values();
        assert!(holds("${input.nothing} == null", &v).unwrap());
        assert!(
            holds(
                "len(${input.tags}) == 2 && contains(${input.tags}, \"b\")",
                &v
            )
            .unwrap()
        );
        assert!(holds("max(1, ${input.qty}, 3) == 3", &v).unwrap());
        // Text that looks like a binding inside a string literal stays text.
        assert!(holds("\"${input.qty}\" == \"${input.qty}\"", &v).unwrap());
    }

    #[test]
    fn host_context_supplies_dotted_names() {
        let condition = Condition::parse("market.isOpen() && volatility.level < 0.3").unwrap();
        let context = Context::new()
            .with_variable("volatility.level", json!(0.2))
            .with_function("market.isOpen", |_| Ok(json!(true)));
        assert!(condition.evaluate_with(&context).unwrap());
        let closed = context
            .clone()
            .with_function("market.isOpen", |_| Ok(json!(false)));
        assert!(!condition.evaluate_with(&closed).unwrap());
    }

    #[test]
    fn runtime_errors_are_typed() {
        let v = values();
        assert!(matches!(
            holds("${input.missing} == 1", &v),
            Err(EvalError::MissingPath { .. })
        ));
        assert!(matches!(
            holds("${sizing.output.x} == 1", &v),
            Err(EvalError::NoOutput { .. })
        ));
        assert!(matches!(
            holds("${risk-assessment.output.detail} == 1", &v),
            Err(EvalError::ObjectValue { .. })
        ));
        assert!(matches!(
            holds("${input.qty} + 1", &v),
            Err(EvalError::NotBoolean { .. })
        ));
        assert!(matches!(
            holds("unknown.flag == 1", &v),
            Err(EvalError::Evaluation { .. })
        ));
        assert_eq!(
            holds("1 / ${input.qty} - 1 > 0", &v),
            Ok(false),
            "arithmetic with a finite result is untouched"
        );
        for (text, by_zero, operator) in [
            ("${input.qty} / 0 > 1e308", true, '/'),
            ("5 % (${input.qty} - 1) == 0", true, '%'),
            ("1e308 * 10 / 1e308 > 1", false, '*'),
            ("(-8) ^ 0.5 != 0", false, '^'),
        ] {
            let found = match holds(text, &v) {
                Err(EvalError::DivisionByZero { operator, .. }) => (true, operator),
                Err(EvalError::NotFinite { operator, .. }) => (false, operator),
                other => panic!("{text}: {other:?}"),
            };
            assert_eq!(found, (by_zero, operator), "{text}");
        }
        // Builtins of evalexpr that are not vetted are unreachable.
        assert!(matches!(
            holds("str::substring(\"héllo\", 0, 2) == \"h\"", &v),
            Err(EvalError::Evaluation { .. })
        ));
    }

    #[test]
    fn compile_time_problems() {
        assert!(matches!(
            problem("portfolio.lastRebalance > 7 days ago"),
            ExpressionProblem::Syntax(_)
        ));
        assert!(matches!(problem("  "), ExpressionProblem::Empty));
        assert!(matches!(
            problem("${risk-assessment.output.approved} === true &&"),
            ExpressionProblem::Syntax(_)
        ));
        assert!(matches!(problem("!"), ExpressionProblem::Syntax(_)));
        assert!(compile("market.isOpen()").is_ok());
        assert!(matches!(problem("a = 1"), ExpressionProblem::Assignment));
        assert!(matches!(
            problem("1e999 > 1"),
            ExpressionProblem::NumberTooLarge
        ));
        assert!(matches!(problem("a == 1; b"), ExpressionProblem::Chain));
        assert!(matches!(
            problem("__tf0 == 1"),
            ExpressionProblem::ReservedName(_)
        ));
        assert!(matches!(
            problem("\"open"),
            ExpressionProblem::UnterminatedString
        ));
        let deep = format!("{}1{} == 1", "(".repeat(20_000), ")".repeat(20_000));
        assert!(matches!(problem(&deep), ExpressionProblem::TooLong { .. }));
        let nested = format!("{}1{} == 1", "(".repeat(40), ")".repeat(40));
        assert!(matches!(
            problem(&nested),
            ExpressionProblem::TooDeep { .. }
        ));
        assert!(matches!(
            problem(&format!("{}true", "!".repeat(40))),
            ExpressionProblem::TooDeep { .. }
        ));
        let chain = format!("{}1 == 1", "1 + ".repeat(200));
        assert!(matches!(problem(&chain), ExpressionProblem::TooDeep { .. }));
        let binding_errors = compile("${nope.output} == 1").unwrap_err();
        assert!(matches!(
            &binding_errors[..],
            [DefinitionError::UnknownBindingStep { .. }]
        ));
    }

    #[test]
    fn the_longest_accepted_expressions_evaluate_on_a_small_stack() {
        // Debug builds recurse deepest; run on a 256 KiB thread to keep a margin.
        let worst = [
            format!(
                "{}1{} == 1",
                "(".repeat(MAX_EXPRESSION_DEPTH),
                ")".repeat(MAX_EXPRESSION_DEPTH)
            ),
            format!("{}true", "!".repeat(MAX_EXPRESSION_DEPTH)),
            format!("{}1 == 1", "1 + ".repeat(MAX_EXPRESSION_DEPTH * 2 - 4)),
            // Arithmetic is guarded, up to two more levels per operation: the deepest
            // accepted chains of guarded operations.
            format!("{}1 == 1", "1 / ".repeat(MAX_EXPRESSION_DEPTH * 2 - 4)),
            format!("{}2 == 1", "2 ^ ".repeat(MAX_EXPRESSION_DEPTH * 2 - 4)),
            format!(
                "{}1{} == 1",
                "1 / (".repeat(MAX_EXPRESSION_DEPTH - 2),
                ")".repeat(MAX_EXPRESSION_DEPTH - 2)
            ),
            format!("{}1 == 1", "1+".repeat(MAX_EXPRESSION_LENGTH / 2 - 4)),
            format!("{}1 == 1", "-".repeat(MAX_EXPRESSION_LENGTH - 10)),
        ];
        for guarded in &worst[3..6] {
            assert!(compile(guarded).is_ok(), "{guarded}");
        }
        std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || {
                for text in worst {
                    if let Ok(condition) = compile(&text) {
                        let _ = condition.evaluate(&values(), &Context::new());
                    }
                }
            })
            .unwrap()
            .join()
            .unwrap();
    }
}
