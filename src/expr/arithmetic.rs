//! Arithmetic that fails instead of lying: `/` and `%` by zero, and any operation whose
//! result is not a finite number, fail the evaluation. Left to evalexpr, `1 / 0` is an
//! infinity and `0 / 0` is NaN, so `1 / 0 > 1e308` holds and a bot trades on it.
//!
//! evalexpr computes arithmetic itself and has no hook between two operations, so the
//! checks are compiled into the tree ([`guard`]): every `+ - * / % ^` node is wrapped in
//! a call to a guard that checks its result, and the right side of every `/` and `%` in
//! one that checks it is not zero. Guards are functions of the evaluation context
//! ([`check`]) named with the reserved `__tf` prefix, so no expression can name them; a
//! guard that fails leaves its [`Fault`] for the evaluation to report. Unary `-` needs no
//! guard (it keeps a finite number finite), and number literals beyond a float's range
//! are refused when the condition is compiled.
//!
//! Cost: one function call per arithmetic operation; conditions without arithmetic are
//! unchanged. The tree gets at most two levels deeper per operation, while the depth
//! bounds apply to the expression as written: in a debug build the deepest accepted
//! arithmetic now evaluates in 128 KiB of stack instead of 96 (a tokio worker has 2 MiB;
//! the test in `condition.rs` runs the worst cases on 256 KiB).

use std::mem;

use evalexpr::{Node, Operator, Value as ExprValue};

use super::EvalError;
use super::condition::SLOT_PREFIX;

/// Arithmetic with no finite answer, found by a guard.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Fault {
    /// `/` or `%` with a right side of zero.
    ByZero {
        /// `/` or `%`.
        operator: char,
    },
    /// An operation whose result is an infinity or NaN.
    NotFinite {
        /// The operator.
        operator: char,
        /// Its result.
        result: f64,
    },
}

impl Fault {
    /// The evaluation error of this fault in the condition `expression`.
    pub(super) fn error(self, expression: &str) -> EvalError {
        let expression = expression.to_owned();
        match self {
            Self::ByZero { operator } => EvalError::DivisionByZero {
                expression,
                operator,
            },
            Self::NotFinite { operator, result } => EvalError::NotFinite {
                expression,
                operator,
                result: result.to_string(),
            },
        }
    }
}

/// What a guard checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Guard {
    /// The right side of `/` or `%` is not zero.
    Divisor,
    /// The operation's result is a finite number (or not a number at all: `+` also
    /// joins strings).
    Result,
}

impl Guard {
    /// The function name of this guard around (or in) an `operator` node.
    fn name(self, operator: char) -> String {
        let what = match self {
            Self::Divisor => "divisor",
            Self::Result => "result",
        };
        format!("{SLOT_PREFIX}_{what}{operator}")
    }

    /// The guard and operator a function name stands for, if it names a guard.
    fn parse(identifier: &str) -> Option<(Self, char)> {
        let rest = identifier.strip_prefix(SLOT_PREFIX)?.strip_prefix('_')?;
        let (guard, operator) = if let Some(operator) = rest.strip_prefix("divisor") {
            (Self::Divisor, operator)
        } else {
            (Self::Result, rest.strip_prefix("result")?)
        };
        let mut chars = operator.chars();
        match (chars.next(), chars.next()) {
            (Some(operator), None) => Some((guard, operator)),
            _ => None,
        }
    }
}

/// The operator an arithmetic node applies, as written.
fn arithmetic(operator: &Operator) -> Option<char> {
    Some(match operator {
        Operator::Add => '+',
        Operator::Sub => '-',
        Operator::Mul => '*',
        Operator::Div => '/',
        Operator::Mod => '%',
        Operator::Exp => '^',
        _ => return None,
    })
}

/// Wraps the arithmetic of a compiled tree in guards: each operation's result, and the
/// right side of each `/` and `%`. Iterative, as the tree may be deep.
pub(super) fn guard(tree: &mut Node) {
    let mut stack: Vec<&mut Node> = vec![tree];
    while let Some(node) = stack.pop() {
        let Some(operator) = arithmetic(node.operator()) else {
            stack.extend(node.children_mut().iter_mut());
            continue;
        };
        if matches!(operator, '/' | '%') {
            if let Some(divisor) = node.children_mut().get_mut(1) {
                wrap(divisor, Guard::Divisor.name(operator));
            }
        }
        wrap(node, Guard::Result.name(operator));
        // The operation is now the guard's only child: walk its operands, not it again.
        if let Some(operation) = node.children_mut().first_mut() {
            stack.extend(operation.children_mut().iter_mut());
        }
    }
}

/// Replaces `node` by a call of the function `name` with `node` as its argument.
fn wrap(node: &mut Node, name: String) {
    let children = mem::take(node.children_mut());
    // A childless copy of the node: its operator alone.
    let mut inner = node.clone();
    *inner.children_mut() = children;
    *node.operator_mut() = Operator::FunctionIdentifier { identifier: name };
    *node.children_mut() = vec![inner];
}

/// Runs the guard `identifier` names on `value`: `None` when `identifier` is not a
/// guard's name, else whether `value` passes.
pub(super) fn check(identifier: &str, value: &ExprValue) -> Option<Result<(), Fault>> {
    let (guard, operator) = Guard::parse(identifier)?;
    let number = match value {
        ExprValue::Float(number) => *number,
        // Ints never reach a condition (every number is a float), and other values are
        // evalexpr's to refuse.
        _ => return Some(Ok(())),
    };
    Some(match guard {
        Guard::Divisor if number == 0.0 => Err(Fault::ByZero { operator }),
        Guard::Result if !number.is_finite() => Err(Fault::NotFinite {
            operator,
            result: number,
        }),
        Guard::Divisor | Guard::Result => Ok(()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guard_names_round_trip() {
        for guard in [Guard::Divisor, Guard::Result] {
            for operator in ['+', '-', '*', '/', '%', '^'] {
                assert_eq!(Guard::parse(&guard.name(operator)), Some((guard, operator)));
            }
        }
        for other in [
            "__tf0",
            "__tf_result",
            "__tf_result//",
            "__tf_other+",
            "min",
        ] {
            assert_eq!(Guard::parse(other), None, "{other}");
        }
    }

    #[test]
    fn every_operation_is_guarded_once() {
        let mut tree = evalexpr::build_operator_tree("a / (b - c) % d + -e").unwrap();
        guard(&mut tree);
        let mut names: Vec<String> = tree
            .iter_function_identifiers()
            .map(str::to_owned)
            .collect();
        names.sort();
        let expected = [
            "__tf_divisor%",
            "__tf_divisor/",
            "__tf_result%",
            "__tf_result+",
            "__tf_result-",
            "__tf_result/",
        ];
        assert_eq!(names, expected);
    }

    #[test]
    fn guards_pass_finite_numbers_and_other_values() {
        let float = ExprValue::Float;
        assert_eq!(check("__tf_divisor/", &float(2.0)), Some(Ok(())));
        assert_eq!(
            check("__tf_divisor%", &float(-0.0)),
            Some(Err(Fault::ByZero { operator: '%' }))
        );
        assert_eq!(check("__tf_result*", &float(1e308)), Some(Ok(())));
        assert!(matches!(
            check("__tf_result*", &float(f64::INFINITY)),
            Some(Err(Fault::NotFinite { operator: '*', .. }))
        ));
        assert!(matches!(
            check("__tf_result^", &float(f64::NAN)),
            Some(Err(Fault::NotFinite { operator: '^', .. }))
        ));
        let text = ExprValue::String("ab".into());
        assert_eq!(check("__tf_result+", &text), Some(Ok(())));
        assert_eq!(check("max", &float(f64::NAN)), None);
    }
}
