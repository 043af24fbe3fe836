//! Native evaluation of a condition's boolean structure.
//!
//! Most trading conditions are comparisons of a binding or a host variable with a literal,
//! joined by `&&`, `||` and `!`. Those are compiled into a [`Program`] evaluated here,
//! straight on the bound JSON values: no conversion, no allocation, and `&&`/`||`
//! short-circuit. Every other subtree (arithmetic, function calls, tuples) stays an
//! evalexpr tree, evaluated by evalexpr with the bound values converted on first need.
//! Comparisons follow evalexpr's rules exactly: numbers by value, strings
//! lexicographically, arrays element by element for `==`/`!=`; values of different kinds
//! are never equal and cannot be ordered (an error, as in evalexpr).

use std::cell::OnceCell;
use std::panic::{AssertUnwindSafe, catch_unwind};

use evalexpr::{Node, Operator, Value as ExprValue};
use serde_json::Value;

use super::EvalError;
use super::binding::{Binding, BindingValues};
use super::condition::{SLOT_PREFIX, TreeError, describe, eval_tree};
use super::context::{Context, ObjectValue, from_expr, to_expr};

/// A condition's compiled evaluation plan.
#[derive(Debug, Clone)]
pub(super) enum Program {
    And(Box<Program>, Box<Program>),
    Or(Box<Program>, Box<Program>),
    Not(Box<Program>),
    Compare {
        op: Comparison,
        left: Operand,
        right: Operand,
    },
    Leaf(Operand),
    Tree(Node),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Comparison {
    Eq,
    Neq,
    Gt,
    Lt,
    Geq,
    Leq,
}

#[derive(Debug, Clone)]
pub(super) enum Operand {
    Slot(usize),
    Variable(Box<str>),
    Constant(Scalar),
}

#[derive(Debug, Clone)]
pub(super) enum Scalar {
    Null,
    Bool(bool),
    Number(f64),
    Text(Box<str>),
}

/// A value as the native path sees it.
#[derive(Debug, Clone, Copy)]
enum Val<'a> {
    Null,
    Bool(bool),
    Number(f64),
    Text(&'a str),
    /// An array bound from JSON.
    Array(&'a [Value]),
    /// A tuple from the host context.
    Tuple(&'a [ExprValue]),
}

impl Program {
    /// Compiles an evalexpr tree (already checked and adjusted) into a program.
    pub(super) fn from_tree(node: &Node) -> Self {
        let node = unwrap_root(node);
        match (node.operator(), node.children()) {
            (Operator::And, [left, right]) => Self::And(
                Box::new(Self::from_tree(left)),
                Box::new(Self::from_tree(right)),
            ),
            (Operator::Or, [left, right]) => Self::Or(
                Box::new(Self::from_tree(left)),
                Box::new(Self::from_tree(right)),
            ),
            (Operator::Not, [inner]) => Self::Not(Box::new(Self::from_tree(inner))),
            (operator, [left, right]) => {
                let op = match operator {
                    Operator::Eq => Comparison::Eq,
                    Operator::Neq => Comparison::Neq,
                    Operator::Gt => Comparison::Gt,
                    Operator::Lt => Comparison::Lt,
                    Operator::Geq => Comparison::Geq,
                    Operator::Leq => Comparison::Leq,
                    _ => return Self::Tree(node.clone()),
                };
                match (operand(left), operand(right)) {
                    (Some(left), Some(right)) => Self::Compare { op, left, right },
                    _ => Self::Tree(node.clone()),
                }
            }
            _ => operand(node).map_or_else(|| Self::Tree(node.clone()), Self::Leaf),
        }
    }
}

impl Program {
    /// Pushes the host variables the program reads (bindings' slots left out) to
    /// `names`, in order of appearance, possibly more than once.
    pub(super) fn variables<'a>(&'a self, names: &mut Vec<&'a str>) {
        let mut pending = vec![self];
        while let Some(program) = pending.pop() {
            match program {
                Self::And(left, right) | Self::Or(left, right) => {
                    pending.push(right);
                    pending.push(left);
                }
                Self::Not(inner) => pending.push(inner),
                Self::Compare { left, right, .. } => {
                    for operand in [left, right] {
                        if let Operand::Variable(name) = operand {
                            names.push(name);
                        }
                    }
                }
                Self::Leaf(Operand::Variable(name)) => names.push(name),
                Self::Leaf(_) => {}
                Self::Tree(node) => names.extend(
                    node.iter_variable_identifiers()
                        .filter(|name| !name.starts_with(SLOT_PREFIX)),
                ),
            }
        }
    }
}

fn unwrap_root(mut node: &Node) -> &Node {
    while let (Operator::RootNode, [only]) = (node.operator(), node.children()) {
        node = only;
    }
    node
}

fn operand(node: &Node) -> Option<Operand> {
    let node = unwrap_root(node);
    if !node.children().is_empty() {
        return None;
    }
    match node.operator() {
        Operator::Const { value } => Some(Operand::Constant(match value {
            ExprValue::Empty => Scalar::Null,
            ExprValue::Boolean(b) => Scalar::Bool(*b),
            ExprValue::Float(f) => Scalar::Number(*f),
            ExprValue::Int(i) => Scalar::Number(*i as f64),
            ExprValue::String(s) => Scalar::Text(s.as_str().into()),
            ExprValue::Tuple(_) => return None,
        })),
        Operator::VariableIdentifierRead { identifier } => Some(
            match identifier
                .strip_prefix(SLOT_PREFIX)
                .and_then(|slot| slot.parse().ok())
            {
                Some(slot) => Operand::Slot(slot),
                None if identifier == "null" => Operand::Constant(Scalar::Null),
                None => Operand::Variable(identifier.as_str().into()),
            },
        ),
        _ => None,
    }
}

/// Everything one evaluation reads.
pub(super) struct Env<'a> {
    pub(super) text: &'a str,
    pub(super) slots: &'a [Binding],
    pub(super) values: Option<&'a dyn BindingValues>,
    pub(super) host: &'a Context,
    /// The slots as evalexpr values, made on first need (only evalexpr subtrees need them).
    bound: OnceCell<Vec<ExprValue>>,
}

impl<'a> Env<'a> {
    pub(super) fn new(
        text: &'a str,
        slots: &'a [Binding],
        values: Option<&'a dyn BindingValues>,
        host: &'a Context,
    ) -> Self {
        Self {
            text,
            slots,
            values,
            host,
            bound: OnceCell::new(),
        }
    }

    /// Evaluates `program` to a boolean; `root` says whether it is the whole condition
    /// (a non-boolean there is [`EvalError::NotBoolean`]).
    pub(super) fn truth(&self, program: &Program, root: bool) -> Result<bool, EvalError> {
        match program {
            Program::And(left, right) => Ok(self.truth(left, false)? && self.truth(right, false)?),
            Program::Or(left, right) => Ok(self.truth(left, false)? || self.truth(right, false)?),
            Program::Not(inner) => Ok(!self.truth(inner, false)?),
            Program::Compare { op, left, right } => {
                let (left, right) = (self.operand(left)?, self.operand(right)?);
                compare(*op, left, right).ok_or_else(|| {
                    self.evaluation(format!(
                        "cannot order {} and {} with `{}`",
                        render(left),
                        render(right),
                        op.symbol()
                    ))
                })
            }
            Program::Leaf(operand) => match self.operand(operand)? {
                Val::Bool(holds) => Ok(holds),
                other => Err(self.not_boolean(&render(other), root)),
            },
            Program::Tree(tree) => self.tree_truth(tree, root),
        }
    }

    fn operand<'v>(&'v self, operand: &'v Operand) -> Result<Val<'v>, EvalError> {
        Ok(match operand {
            Operand::Constant(Scalar::Null) => Val::Null,
            Operand::Constant(Scalar::Bool(b)) => Val::Bool(*b),
            Operand::Constant(Scalar::Number(n)) => Val::Number(*n),
            Operand::Constant(Scalar::Text(s)) => Val::Text(s),
            Operand::Slot(slot) => {
                let (Some(binding), Some(values)) = (self.slots.get(*slot), self.values) else {
                    return Err(self.evaluation("a binding has no value here".to_owned()));
                };
                let value = binding.resolve(values)?;
                json_val(value).ok_or_else(|| EvalError::ObjectValue {
                    binding: binding.text().to_owned(),
                })?
            }
            Operand::Variable(name) => match self.host.expr_variable(name) {
                Some(ExprValue::Empty) => Val::Null,
                Some(ExprValue::Boolean(b)) => Val::Bool(*b),
                Some(ExprValue::Float(f)) => Val::Number(*f),
                Some(ExprValue::Int(i)) => Val::Number(*i as f64),
                Some(ExprValue::String(s)) => Val::Text(s),
                Some(ExprValue::Tuple(items)) => Val::Tuple(items),
                None => {
                    let error =
                        evalexpr::EvalexprError::VariableIdentifierNotFound(name.to_string());
                    return Err(self.evaluation(describe(&error)));
                }
            },
        })
    }

    /// Evaluates an evalexpr subtree that must give a boolean.
    fn tree_truth(&self, tree: &Node, root: bool) -> Result<bool, EvalError> {
        let bound = match self.bound.get() {
            Some(bound) => bound,
            None => {
                let mut converted = Vec::with_capacity(self.slots.len());
                for binding in self.slots {
                    let Some(values) = self.values else { break };
                    let value = binding.resolve(values)?;
                    converted.push(to_expr(value).map_err(|ObjectValue| {
                        EvalError::ObjectValue {
                            binding: binding.text().to_owned(),
                        }
                    })?);
                }
                self.bound.get_or_init(|| converted)
            }
        };
        // evalexpr has panicked on fuzzed input; a panic is contained as an error.
        let result = catch_unwind(AssertUnwindSafe(|| eval_tree(tree, bound, self.host)))
            .map_err(|_| self.evaluation("the expression evaluator panicked".to_owned()))?;
        match result {
            Ok(ExprValue::Boolean(holds)) => Ok(holds),
            Ok(other) => {
                let found =
                    from_expr(&other).map_or_else(|_| format!("{other}"), |json| json.to_string());
                Err(self.not_boolean(&found, root))
            }
            Err(TreeError::Arithmetic(fault)) => Err(fault.error(self.text)),
            Err(TreeError::Evalexpr(error)) => Err(self.evaluation(describe(&error))),
        }
    }

    fn not_boolean(&self, found: &str, root: bool) -> EvalError {
        if root {
            EvalError::NotBoolean {
                expression: self.text.to_owned(),
                found: found.to_owned(),
            }
        } else {
            self.evaluation(format!("`&&`, `||` and `!` take booleans, not {found}"))
        }
    }

    fn evaluation(&self, message: String) -> EvalError {
        EvalError::Evaluation {
            expression: self.text.to_owned(),
            message,
        }
    }
}

impl Comparison {
    fn symbol(self) -> &'static str {
        match self {
            Self::Eq => "==",
            Self::Neq => "!=",
            Self::Gt => ">",
            Self::Lt => "<",
            Self::Geq => ">=",
            Self::Leq => "<=",
        }
    }
}

/// A JSON value as the native path sees it; `None` for objects (and arrays holding
/// them), which conditions cannot compare.
fn json_val(value: &Value) -> Option<Val<'_>> {
    Some(match value {
        Value::Null => Val::Null,
        Value::Bool(b) => Val::Bool(*b),
        Value::Number(n) => Val::Number(n.as_f64().unwrap_or(f64::NAN)),
        Value::String(s) => Val::Text(s),
        Value::Array(items) if items.iter().all(|item| json_val(item).is_some()) => {
            Val::Array(items)
        }
        Value::Array(_) | Value::Object(_) => return None,
    })
}

fn expr_val(value: &ExprValue) -> Val<'_> {
    match value {
        ExprValue::Empty => Val::Null,
        ExprValue::Boolean(b) => Val::Bool(*b),
        ExprValue::Float(f) => Val::Number(*f),
        ExprValue::Int(i) => Val::Number(*i as f64),
        ExprValue::String(s) => Val::Text(s),
        ExprValue::Tuple(items) => Val::Tuple(items),
    }
}

/// Equality as evalexpr has it (with every number a float): same kind and same value,
/// arrays element by element.
fn equal(left: Val<'_>, right: Val<'_>) -> bool {
    fn items(value: Val<'_>) -> Option<Vec<Val<'_>>> {
        match value {
            Val::Array(items) => items.iter().map(json_val).collect(),
            Val::Tuple(items) => Some(items.iter().map(expr_val).collect()),
            _ => None,
        }
    }
    match (left, right) {
        (Val::Null, Val::Null) => true,
        (Val::Bool(a), Val::Bool(b)) => a == b,
        (Val::Number(a), Val::Number(b)) => a == b,
        (Val::Text(a), Val::Text(b)) => a == b,
        (Val::Array(_) | Val::Tuple(_), Val::Array(_) | Val::Tuple(_)) => {
            match (items(left), items(right)) {
                (Some(a), Some(b)) => {
                    a.len() == b.len() && a.into_iter().zip(b).all(|(x, y)| equal(x, y))
                }
                _ => false,
            }
        }
        _ => false,
    }
}

/// Compares two values as evalexpr does; `None` when they cannot be ordered (values of
/// different kinds, or anything but numbers and strings), which is an error.
fn compare(op: Comparison, left: Val<'_>, right: Val<'_>) -> Option<bool> {
    use std::cmp::Ordering::{Equal, Greater, Less};
    let ordering = match op {
        Comparison::Eq => return Some(equal(left, right)),
        Comparison::Neq => return Some(!equal(left, right)),
        _ => match (left, right) {
            (Val::Number(a), Val::Number(b)) => a.partial_cmp(&b),
            (Val::Text(a), Val::Text(b)) => Some(a.cmp(b)),
            _ => return None,
        },
    };
    Some(match op {
        Comparison::Gt => ordering == Some(Greater),
        Comparison::Lt => ordering == Some(Less),
        Comparison::Geq => matches!(ordering, Some(Greater | Equal)),
        Comparison::Leq => matches!(ordering, Some(Less | Equal)),
        Comparison::Eq | Comparison::Neq => false,
    })
}

fn render(value: Val<'_>) -> String {
    match value {
        Val::Null => "null".to_owned(),
        Val::Bool(b) => b.to_string(),
        Val::Number(n) => {
            serde_json::Number::from_f64(n).map_or_else(|| n.to_string(), |n| n.to_string())
        }
        Val::Text(s) => Value::String(s.to_owned()).to_string(),
        Val::Array(items) => Value::Array(items.to_vec()).to_string(),
        Val::Tuple(items) => ExprValue::Tuple(items.to_vec()).to_string(),
    }
}
