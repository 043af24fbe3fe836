//! Bindings, parameter templates and conditions.
//!
//! # Bindings
//! `${input.path}`, `${<step-id>.output.path}` and, in `loop.until` and `outputMapping`,
//! `${output.path}` (the step's own output). Paths use `.key` and `[n]`. Bindings are
//! parsed once, when a definition is compiled, into a [`Binding`] that addresses steps
//! by index; resolving one at run time walks the path and nothing else. `$${` writes a
//! literal `${`.
//!
//! # Templates
//! A [`Template`] is a JSON value whose strings may hold bindings, at any depth. A string
//! that is exactly one binding takes the bound value with its JSON type (an array stays
//! an array); a binding inside a longer string is interpolated as text: strings as they
//! are, other values as compact JSON.
//!
//! # Conditions
//! A [`Condition`] is an evalexpr expression, compiled once to an operator tree. Before
//! parsing, each binding is replaced by a generated identifier (so that
//! `${risk-assessment.output.approved}` cannot parse as a subtraction) and `===`/`!==`
//! become `==`/`!=` (evalexpr parses them but fails at evaluation). Text inside string
//! literals is never rewritten. Expressions are bounded — [`MAX_EXPRESSION_LENGTH`]
//! bytes and [`MAX_EXPRESSION_DEPTH`] levels of parentheses and unary operators — because
//! evalexpr parses and evaluates recursively and deep input would overflow the stack.
//! Assignments (`=`, `+=`, …) and chains (`;`) are rejected, and so are operators missing
//! an operand (`a == true &&`, which evalexpr would only reject when evaluating).
//!
//! The boolean structure of a condition — `&&`, `||`, `!` over comparisons of bindings,
//! host variables and literals — is evaluated natively on the bound JSON values (no
//! conversion, no allocation), and `&&`/`||` short-circuit; other subtrees (arithmetic,
//! function calls) are evaluated by evalexpr. Comparisons follow evalexpr's rules. Only vetted functions are
//! reachable: `min`, `max`, `abs`, `floor`, `ceil`, `round`, `len`, `contains`, and the
//! host's own; evalexpr's built-ins are disabled (some panic on non-ASCII text). Any
//! panic inside evalexpr is contained and reported as an error.
//!
//! Arithmetic never yields an infinity or NaN: a division or remainder by zero fails
//! the evaluation ([`EvalError::DivisionByZero`]), and so does an operation whose result
//! is not a finite number ([`EvalError::NotFinite`], `1e308 * 10`), where evalexpr
//! would go on and compare it (`1 / 0 > 1e308` would hold). A number literal beyond a
//! float's range is refused at compile time ([`ExpressionProblem::NumberTooLarge`]).
//!
//! # Values
//! | JSON | in a condition |
//! |---|---|
//! | `null` | `()`, also written `null` |
//! | `true`, `false` | booleans |
//! | numbers | floats, all of them (so `1 == 1.0`; integers beyond 2^53 lose precision) |
//! | strings | strings (double-quoted in expressions) |
//! | arrays | tuples (`len(${x})`, `contains(${x}, "AAPL")`) |
//! | objects | not a value: bind a field (`${x.output.approved}`), else [`EvalError::ObjectValue`] |
//!
//! In a host [`Context`], an object variable is flattened into dotted names
//! (`event` = `{"strength": 0.8}` defines `event.strength`). Results go back to JSON the
//! same way; a non-finite float has no JSON form and is an error.
//!
//! Evaluation cost: a compiled condition with two bindings evaluates in under 100 ns
//! (see `benches/definition.rs`); compiling costs a few microseconds and happens once per
//! definition.

mod arithmetic;
mod binding;
mod condition;
mod context;
mod program;
mod template;

/// Syntax errors of bindings and expressions, defined beside the definition errors that
/// carry them.
pub use crate::definition::{BindingError, BindingErrorKind, ExpressionProblem};
pub use binding::{Binding, BindingValues, PathSegment, Source};
pub(crate) use binding::{Locate, Scope, StepLookup, is_whole_binding};
pub use condition::{Condition, MAX_EXPRESSION_DEPTH, MAX_EXPRESSION_LENGTH};
pub use context::Context;
pub use template::Template;

use crate::definition::{Quoted, StepId};

/// Why a binding or condition could not be evaluated at run time.
///
/// Messages show the bindings, expressions and values they quote through
/// [`Quoted`]: one line of bounded length; the fields keep the full text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EvalError {
    /// A binding's path does not exist in the bound value.
    #[error("binding `{}`: `{}` does not exist", Quoted(.binding), Quoted(.path))]
    MissingPath {
        /// The binding as written.
        binding: String,
        /// The path up to and including the first segment that is missing.
        path: String,
    },
    /// A binding reads a step that has no output (it was skipped, failed or has not run).
    #[error("binding `{}`: step `{}` has no output", Quoted(.binding), Quoted(.step.as_str()))]
    NoOutput {
        /// The binding as written.
        binding: String,
        /// The step read.
        step: StepId,
    },
    /// A binding in a condition names a JSON object, which conditions cannot compare.
    #[error(
        "binding `{}` is an object; conditions compare scalars and arrays, so bind a field",
        Quoted(.binding)
    )]
    ObjectValue {
        /// The binding as written.
        binding: String,
    },
    /// The condition evaluated to something other than a boolean.
    #[error("condition `{}` gave {}, not a boolean", Quoted(.expression), Quoted(.found))]
    NotBoolean {
        /// The expression as written.
        expression: String,
        /// The value it gave, as JSON.
        found: String,
    },
    /// Evaluation failed (unknown variable or function, type mismatch, a host function's error).
    #[error("condition `{}`: {}", Quoted(.expression), Quoted(.message))]
    Evaluation {
        /// The expression as written.
        expression: String,
        /// What went wrong.
        message: String,
    },
    /// A division or remainder by zero (`1 / 0`, `${x} % 0`): no number is the answer,
    /// so the evaluation fails rather than compare an infinity or NaN.
    #[error(
        "condition `{}`: {} by zero",
        Quoted(.expression),
        division_name(*.operator)
    )]
    DivisionByZero {
        /// The expression as written.
        expression: String,
        /// `/` or `%`.
        operator: char,
    },
    /// Arithmetic gave a result that is not a finite number: it overflowed to an
    /// infinity (`1e308 * 10`) or is no number at all (NaN: `(-8) ^ 0.5`).
    #[error(
        "condition `{}`: `{operator}` gave {result}, not a finite number",
        Quoted(.expression)
    )]
    NotFinite {
        /// The expression as written.
        expression: String,
        /// The operator (`+ - * / % ^`).
        operator: char,
        /// What it gave: `inf`, `-inf` or `NaN`.
        result: String,
    },
}

/// What dividing by zero is called for `operator` (`/` or `%`).
fn division_name(operator: char) -> &'static str {
    if operator == '%' {
        "remainder"
    } else {
        "division"
    }
}
