//! The host context of conditions, and the JSON ↔ evalexpr value mapping.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use crate::run::MAX_VALUE_DEPTH;
use evalexpr::{EvalexprError, Value as ExprValue};
use serde_json::{Number, Value};

type HostFunction = Arc<dyn Fn(&[Value]) -> Result<Value, String> + Send + Sync>;

/// Variables and functions the host supplies to conditions, with dotted names
/// (`volatility.level`, `market.isOpen()`).
///
/// Values are JSON. A variable set to an object is flattened into dotted names:
/// setting `event` to `{"strength": 0.8}` defines `event.strength`.
///
/// # Examples
/// ```
/// use serde_json::json;
/// use tradeflow::expr::Context;
///
/// let context = Context::new()
///     .with_variable("volatility.level", json!(0.2))
///     .with_function("market.isOpen", |_args| Ok(json!(true)));
/// assert_eq!(context.variable("volatility.level"), Some(json!(0.2)));
/// ```
#[derive(Clone, Default)]
pub struct Context {
    variables: HashMap<String, ExprValue>,
    functions: HashMap<String, HostFunction>,
    /// Consulted for the names this context does not have (see [`Context::over`]).
    under: Option<Arc<Context>>,
}

impl Context {
    /// An empty context.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets variable `name`; an object defines one dotted variable per leaf.
    /// Returns the context, for chaining.
    #[must_use]
    pub fn with_variable(mut self, name: impl Into<String>, value: Value) -> Self {
        self.set_variable(name, value);
        self
    }

    /// Sets function `name`: it receives the call's arguments as JSON values.
    /// Returns the context, for chaining.
    #[must_use]
    pub fn with_function<F>(mut self, name: impl Into<String>, function: F) -> Self
    where
        F: Fn(&[Value]) -> Result<Value, String> + Send + Sync + 'static,
    {
        self.set_function(name, function);
        self
    }

    /// Sets variable `name`; an object defines one dotted variable per leaf.
    ///
    /// A value nested deeper than [`MAX_VALUE_DEPTH`] is not set (a warning is logged):
    /// conditions compare scalars and arrays, and converting a value thousands deep
    /// would exhaust the stack.
    pub fn set_variable(&mut self, name: impl Into<String>, value: Value) {
        let name = name.into();
        match crate::run::bounded(value) {
            Ok(value) => self.set_bounded(name, value),
            Err(depth) => tracing::warn!(
                variable = name,
                depth,
                "context variable not set: it nests deeper than {MAX_VALUE_DEPTH} levels"
            ),
        }
    }

    /// Sets variable `name` to `value`, which nests at most [`MAX_VALUE_DEPTH`] deep.
    fn set_bounded(&mut self, name: String, value: Value) {
        match value {
            Value::Object(fields) => {
                for (key, field) in fields {
                    self.set_bounded(format!("{name}.{key}"), field);
                }
            }
            other => {
                // Only objects fail to convert, and they are flattened above.
                if let Ok(converted) = to_expr(&other) {
                    self.variables.insert(name, converted);
                }
            }
        }
    }

    /// Sets `name` as a host value: a variable and a function of no arguments that
    /// returns it, so that conditions read it as `market.isOpen` or `market.isOpen()`
    /// alike. A trailing `()` in `name` is dropped; an object sets each leaf under its
    /// dotted name (`"market": {"isOpen": true}` sets `market.isOpen`). This is how a
    /// timeline's `context` and `tradeflow simulate --context` set names.
    ///
    /// A value nested deeper than [`MAX_VALUE_DEPTH`] is not set (a warning is logged),
    /// as in [`set_variable`](Self::set_variable).
    ///
    /// ```
    /// # use serde_json::json;
    /// # use tradeflow::expr::{Condition, Context};
    /// let mut context = Context::new();
    /// context.set_value("market.isOpen()", json!(true));
    /// context.set_value("volatility", json!({"level": 0.2}));
    /// let condition = Condition::parse("market.isOpen() && volatility.level() < 0.3")?;
    /// assert!(condition.evaluate_with(&context)?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_value(&mut self, name: &str, value: Value) {
        let name = name.strip_suffix("()").unwrap_or(name);
        match crate::run::bounded(value) {
            Ok(value) => self.set_bounded_value(name, value),
            Err(depth) => tracing::warn!(
                variable = name,
                depth,
                "context value not set: it nests deeper than {MAX_VALUE_DEPTH} levels"
            ),
        }
    }

    /// Sets `name` as a host value; `value` nests at most [`MAX_VALUE_DEPTH`] deep.
    fn set_bounded_value(&mut self, name: &str, value: Value) {
        match value {
            Value::Object(fields) => {
                for (key, field) in fields {
                    self.set_bounded_value(&format!("{name}.{key}"), field);
                }
            }
            value => {
                self.set_variable(name, value.clone());
                self.set_function(name, move |_| Ok(value.clone()));
            }
        }
    }

    /// Sets function `name`: it receives the call's arguments as JSON values.
    pub fn set_function<F>(&mut self, name: impl Into<String>, function: F)
    where
        F: Fn(&[Value]) -> Result<Value, String> + Send + Sync + 'static,
    {
        self.functions.insert(name.into(), Arc::new(function));
    }

    /// Removes variable `name` (not the dotted variables below it).
    pub fn remove_variable(&mut self, name: &str) {
        self.variables.remove(name);
    }

    /// The value of variable `name`, as JSON.
    pub fn variable(&self, name: &str) -> Option<Value> {
        self.expr_variable(name)
            .and_then(|value| from_expr(value).ok())
    }

    /// This context in front of `under`: a name this context does not have is looked up
    /// in `under` (and so on, for as many layers as were stacked).
    #[must_use]
    pub(crate) fn over(mut self, under: Arc<Context>) -> Self {
        self.under = Some(under);
        self
    }

    /// Whether the context has no variables and no functions of its own.
    pub(crate) fn is_empty(&self) -> bool {
        self.variables.is_empty() && self.functions.is_empty()
    }

    pub(crate) fn expr_variable(&self, name: &str) -> Option<&ExprValue> {
        let mut layer = self;
        loop {
            if let Some(value) = layer.variables.get(name) {
                return Some(value);
            }
            layer = layer.under.as_deref()?;
        }
    }

    /// Function `name`, from the first layer that has it.
    fn function(&self, name: &str) -> Option<&HostFunction> {
        let mut layer = self;
        loop {
            if let Some(function) = layer.functions.get(name) {
                return Some(function);
            }
            layer = layer.under.as_deref()?;
        }
    }

    pub(crate) fn call(
        &self,
        name: &str,
        argument: &ExprValue,
    ) -> Result<ExprValue, EvalexprError> {
        let function = self
            .function(name)
            .ok_or_else(|| EvalexprError::FunctionIdentifierNotFound(name.to_owned()))?;
        let arguments = match argument {
            ExprValue::Empty => Vec::new(),
            ExprValue::Tuple(items) => items.iter().map(from_expr).collect::<Result<_, _>>()?,
            single => vec![from_expr(single)?],
        };
        let result = function(&arguments).map_err(|message| {
            EvalexprError::CustomMessage(format!("function `{name}` failed: {message}"))
        })?;
        let result = crate::run::bounded(result).map_err(|depth| {
            EvalexprError::CustomMessage(format!(
                "function `{name}` returned a value {depth} levels deep, more than the {MAX_VALUE_DEPTH} allowed"
            ))
        })?;
        to_expr(&result).map_err(|_| {
            EvalexprError::CustomMessage(format!(
                "function `{name}` returned an object; conditions take scalars and arrays"
            ))
        })
    }
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut variables: Vec<_> = self.variables.iter().collect();
        variables.sort_by(|a, b| a.0.cmp(b.0));
        let mut functions: Vec<_> = self.functions.keys().collect();
        functions.sort();
        f.debug_struct("Context")
            .field("variables", &variables)
            .field("functions", &functions)
            .field("under", &self.under)
            .finish()
    }
}

/// A JSON object reached a condition, which has no object values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ObjectValue;

/// JSON → evalexpr, as documented in the [module docs](super): numbers become floats
/// (so that `1 == 1.0`), `null` becomes `()`, arrays become tuples; objects have no
/// counterpart.
pub(crate) fn to_expr(value: &Value) -> Result<ExprValue, ObjectValue> {
    Ok(match value {
        Value::Null => ExprValue::Empty,
        Value::Bool(b) => ExprValue::Boolean(*b),
        Value::Number(n) => ExprValue::Float(n.as_f64().unwrap_or(f64::NAN)),
        Value::String(s) => ExprValue::String(s.clone()),
        Value::Array(items) => {
            ExprValue::Tuple(items.iter().map(to_expr).collect::<Result<_, _>>()?)
        }
        Value::Object(_) => return Err(ObjectValue),
    })
}

/// evalexpr → JSON. Non-finite floats have no JSON form and are an error.
pub(crate) fn from_expr(value: &ExprValue) -> Result<Value, EvalexprError> {
    Ok(match value {
        ExprValue::Empty => Value::Null,
        ExprValue::Boolean(b) => Value::Bool(*b),
        ExprValue::Int(i) => Value::Number((*i).into()),
        ExprValue::Float(f) => {
            Value::Number(Number::from_f64(*f).ok_or_else(|| {
                EvalexprError::CustomMessage(format!("{f} is not a finite number"))
            })?)
        }
        ExprValue::String(s) => Value::String(s.clone()),
        ExprValue::Tuple(items) => {
            Value::Array(items.iter().map(from_expr).collect::<Result<_, _>>()?)
        }
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn values_are_variables_and_functions() {
        let mut context = Context::new();
        context.set_value("market.isOpen()", Value::Bool(true));
        context.set_value("volatility", json!({"level": 0.2}));
        for text in [
            "market.isOpen() && market.isOpen",
            "volatility.level() < 0.3 && volatility.level < 0.3",
        ] {
            let condition = crate::expr::Condition::parse(text).unwrap();
            assert_eq!(condition.evaluate_with(&context), Ok(true), "{text}");
        }
        assert_eq!(context.variable("volatility"), None);
    }

    #[test]
    fn json_maps_to_expression_values_and_back() {
        let cases = [
            (json!(null), ExprValue::Empty),
            (json!(true), ExprValue::Boolean(true)),
            (json!(1), ExprValue::Float(1.0)),
            (json!(0.25), ExprValue::Float(0.25)),
            (json!("x"), ExprValue::String("x".into())),
            (
                json!([1, "a", [null]]),
                ExprValue::Tuple(vec![
                    ExprValue::Float(1.0),
                    ExprValue::String("a".into()),
                    ExprValue::Tuple(vec![ExprValue::Empty]),
                ]),
            ),
        ];
        for (json, expr) in cases {
            assert_eq!(to_expr(&json), Ok(expr.clone()), "{json}");
            let back = from_expr(&expr).unwrap();
            assert_eq!(to_expr(&back), Ok(expr), "{json}");
        }
        assert_eq!(to_expr(&json!({"a": 1})), Err(ObjectValue));
        assert_eq!(to_expr(&json!([{"a": 1}])), Err(ObjectValue));
        assert!(from_expr(&ExprValue::Float(f64::INFINITY)).is_err());
        assert_eq!(from_expr(&ExprValue::Int(3)).unwrap(), json!(3));
    }

    #[test]
    fn objects_are_flattened_into_dotted_names() {
        let context = Context::new()
            .with_variable("event", json!({"strength": 0.8, "meta": {"source": "x"}}));
        assert_eq!(context.variable("event.strength"), Some(json!(0.8)));
        assert_eq!(context.variable("event.meta.source"), Some(json!("x")));
        assert_eq!(context.variable("event"), None);
    }

    #[test]
    fn functions_receive_json_arguments() {
        let context = Context::new().with_function("math.sum", |args| {
            Ok(json!(args.iter().filter_map(Value::as_f64).sum::<f64>()))
        });
        let result = context
            .call(
                "math.sum",
                &ExprValue::Tuple(vec![ExprValue::Float(1.0), ExprValue::Float(2.0)]),
            )
            .unwrap();
        assert_eq!(result, ExprValue::Float(3.0));
        assert!(context.call("missing", &ExprValue::Empty).is_err());
    }
}
