//! Syntax errors of `${…}` bindings and condition expressions.
//!
//! The [`expr`](crate::expr) module parses bindings and expressions; what it finds wrong
//! is described here, below it, because [`DefinitionError`](super::DefinitionError)s
//! carry these errors with the location they were found at. `expr` re-exports them.
//! Text quoted from the definition is shown through [`Quoted`]: on one line, of bounded
//! length.

use super::Quoted;

/// A malformed `${…}` binding: what is wrong and at which character.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("column {column}: {kind}")]
pub struct BindingError {
    /// 1-based character position in the string.
    pub column: usize,
    /// What is wrong.
    pub kind: BindingErrorKind,
}

/// The ways a binding can be malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BindingErrorKind {
    /// `${` without a closing `}`.
    #[error("`${{` is never closed by `}}`")]
    Unterminated,
    /// `${}`.
    #[error("empty binding")]
    Empty,
    /// A step id not followed by `.output` (`${risk}` or `${risk.result}`).
    #[error(
        "expected `.output` after step id `{}` (or `input`, `output` as the root)",
        Quoted(.0)
    )]
    MissingOutput(String),
    /// `..`, a trailing `.`, or `[]`.
    #[error("empty path segment")]
    EmptySegment,
    /// `[x]` where `x` is not a non-negative integer.
    #[error("array index `{}` is not a non-negative integer", Quoted(.0))]
    BadIndex(String),
    /// A character that cannot appear in a binding path.
    #[error("unexpected character `{}`", Quoted(.0.encode_utf8(&mut [0; 4])))]
    UnexpectedChar(char),
}

/// Why an expression does not compile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExpressionProblem {
    /// The expression is empty.
    #[error("the expression is empty")]
    Empty,
    /// The expression is longer than the bound.
    #[error("{length} bytes long, more than the {max} allowed")]
    TooLong {
        /// Its length in bytes.
        length: usize,
        /// The bound.
        max: usize,
    },
    /// Parentheses, unary operators or chained operators nest deeper than the bound.
    #[error("nested {depth} levels deep, more than the {max} allowed")]
    TooDeep {
        /// The depth reached (where checking stopped).
        depth: usize,
        /// The bound.
        max: usize,
    },
    /// evalexpr cannot parse it. (The message can quote the expression's tokens, so it
    /// is shown through [`Quoted`].)
    #[error("{}", Quoted(.0))]
    Syntax(String),
    /// A string literal is never closed.
    #[error("a string literal is never closed")]
    UnterminatedString,
    /// It assigns to a variable; conditions only read.
    #[error("conditions cannot assign (`=`, `+=`, …); compare with `==`")]
    Assignment,
    /// It chains expressions with `;`.
    #[error("conditions cannot chain expressions with `;`")]
    Chain,
    /// A number literal is beyond the range of a float (`1e999`): it would be an
    /// infinity, which every comparison would take at face value.
    #[error("a number is too large for a float (beyond ±1.8e308)")]
    NumberTooLarge,
    /// It uses an identifier reserved for bindings.
    #[error("identifiers starting with `{0}` are reserved")]
    ReservedName(String),
    /// It holds a binding where none is allowed (see the message).
    #[error("{0}")]
    Binding(String),
}
