//! Parameter templates: JSON with `${…}` bindings, compiled once, resolved per call.

use serde_json::{Map, Value};

use super::EvalError;
use super::binding::{
    Binding, BindingValues, Locate, Piece, Scope, compile_pieces, compile_whole, is_whole_binding,
};
use crate::definition::{DefinitionError, Location, ValidationErrors};

/// A JSON value whose strings may hold bindings, compiled once.
///
/// A string that is exactly one binding resolves to the bound value with its JSON type;
/// a binding inside a longer string is interpolated as text (strings as they are, other
/// values as compact JSON). Subtrees without bindings are kept as literal JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct Template(Node);

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Literal(Value),
    Binding(Binding),
    Text(Box<[Piece]>),
    Array(Box<[Node]>),
    Object(Box<[(String, Node)]>),
}

impl Template {
    /// Compiles `value`; problems are pushed to `errors`, located under `at`.
    pub(crate) fn compile(
        value: &Value,
        scope: &Scope<'_>,
        at: Locate<'_>,
        errors: &mut Vec<DefinitionError>,
    ) -> Option<Self> {
        compile_node(value, scope, at, errors).map(Self)
    }

    /// Compiles an object of parameters (`task.parameters`, `outputMapping`).
    pub(crate) fn compile_object(
        object: &Map<String, Value>,
        scope: &Scope<'_>,
        at: Locate<'_>,
        errors: &mut Vec<DefinitionError>,
    ) -> Option<Self> {
        compile_object(object, scope, at, errors).map(Self)
    }

    /// Compiles a value whose strings may hold `${params…}` bindings, the resolved
    /// parameters of the task at hand, and `${random…}` bindings, the values drawn at
    /// random for the call, as in scripted agents' outputs ([`sim`](crate::sim)).
    /// Resolve it with the parameters as the input ([`BindingValues::input`]) and the
    /// random values, an object by name, as [`BindingValues::random`].
    ///
    /// # Errors
    /// Every malformed binding, and every binding with another root, located under `at`.
    ///
    /// # Examples
    /// ```
    /// use serde_json::json;
    /// use tradeflow::definition::Location;
    /// use tradeflow::expr::{BindingValues, Template};
    ///
    /// struct Params(serde_json::Value);
    /// impl BindingValues for Params {
    ///     fn input(&self) -> &serde_json::Value { &self.0 }
    ///     fn step_output(&self, _: usize) -> Option<&serde_json::Value> { None }
    /// }
    ///
    /// let output = Template::compile_params(&json!({"orderIds": ["${params.order.id}"]}), &Location::root())?;
    /// let resolved = output.resolve(&Params(json!({"order": {"id": "o-1"}})))?;
    /// assert_eq!(resolved, json!({"orderIds": ["o-1"]}));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn compile_params(value: &Value, at: &Location) -> Result<Self, ValidationErrors> {
        let mut errors = Vec::new();
        match compile_node(value, &Scope::script(), &|| at.clone(), &mut errors) {
            Some(node) if errors.is_empty() => Ok(Self(node)),
            _ => Err(ValidationErrors::new(errors)),
        }
    }

    /// A template of an empty object.
    pub(crate) fn empty_object() -> Self {
        Self(Node::Literal(Value::Object(Map::new())))
    }

    /// Resolves every binding against `values`.
    ///
    /// # Errors
    /// The first binding that cannot be resolved ([`EvalError::MissingPath`],
    /// [`EvalError::NoOutput`]).
    pub fn resolve(&self, values: &dyn BindingValues) -> Result<Value, EvalError> {
        resolve_node(&self.0, values)
    }

    /// Every binding in the template, in document order.
    pub fn bindings(&self) -> Vec<&Binding> {
        let mut found = Vec::new();
        self.for_each_binding(&mut |binding| found.push(binding));
        found
    }

    /// Calls `visit` with every binding in the template, in document order.
    pub fn for_each_binding<'t>(&'t self, visit: &mut dyn FnMut(&'t Binding)) {
        visit_node(&self.0, visit);
    }

    /// Whether the template has no binding (it always resolves to the same value).
    pub fn is_literal(&self) -> bool {
        matches!(self.0, Node::Literal(_))
    }

    /// For an object template: whether field `key` may resolve to an array (a literal
    /// array or a whole-string binding), or `None` if there is no such field.
    pub(crate) fn field_may_be_array(&self, key: &str) -> Option<bool> {
        match &self.0 {
            Node::Literal(Value::Object(object)) => object.get(key).map(Value::is_array),
            Node::Object(fields) => fields
                .iter()
                .find(|(name, _)| name == key)
                .map(|(_, node)| {
                    matches!(
                        node,
                        Node::Binding(_) | Node::Array(_) | Node::Literal(Value::Array(_))
                    )
                }),
            _ => None,
        }
    }

    /// For an object template: the field names, in order.
    pub(crate) fn field_names(&self) -> Vec<&str> {
        match &self.0 {
            Node::Literal(Value::Object(object)) => object.keys().map(String::as_str).collect(),
            Node::Object(fields) => fields.iter().map(|(name, _)| name.as_str()).collect(),
            _ => Vec::new(),
        }
    }
}

fn compile_node(
    value: &Value,
    scope: &Scope<'_>,
    at: Locate<'_>,
    errors: &mut Vec<DefinitionError>,
) -> Option<Node> {
    match value {
        Value::String(text) if is_whole_binding(text) => {
            compile_whole(text, scope, at, errors).map(Node::Binding)
        }
        Value::String(text) if text.contains("${") => {
            let mut pieces = compile_pieces(text, scope, at, errors)?;
            Some(if pieces.len() == 1 {
                match pieces.pop() {
                    Some(Piece::Binding(binding)) => Node::Binding(binding),
                    Some(Piece::Text(text)) => Node::Literal(Value::String(text)),
                    None => Node::Literal(Value::String(String::new())),
                }
            } else {
                Node::Text(pieces.into_boxed_slice())
            })
        }
        Value::Array(items) => {
            let mut ok = true;
            let mut nodes = Vec::with_capacity(items.len());
            for (index, item) in items.iter().enumerate() {
                match compile_node(item, scope, &|| at().index(index), errors) {
                    Some(node) => nodes.push(node),
                    None => ok = false,
                }
            }
            if !ok {
                return None;
            }
            Some(
                if nodes.iter().all(|node| matches!(node, Node::Literal(_))) {
                    Node::Literal(value.clone())
                } else {
                    Node::Array(nodes.into_boxed_slice())
                },
            )
        }
        Value::Object(object) => compile_object(object, scope, at, errors),
        other => Some(Node::Literal(other.clone())),
    }
}

fn compile_object(
    object: &Map<String, Value>,
    scope: &Scope<'_>,
    at: Locate<'_>,
    errors: &mut Vec<DefinitionError>,
) -> Option<Node> {
    let mut ok = true;
    let mut fields = Vec::with_capacity(object.len());
    for (key, item) in object {
        match compile_node(item, scope, &|| at().field(key.clone()), errors) {
            Some(node) => fields.push((key.clone(), node)),
            None => ok = false,
        }
    }
    if !ok {
        return None;
    }
    Some(
        if fields
            .iter()
            .all(|(_, node)| matches!(node, Node::Literal(_)))
        {
            Node::Literal(Value::Object(object.clone()))
        } else {
            Node::Object(fields.into_boxed_slice())
        },
    )
}

fn resolve_node(node: &Node, values: &dyn BindingValues) -> Result<Value, EvalError> {
    Ok(match node {
        Node::Literal(value) => value.clone(),
        Node::Binding(binding) => binding.resolve(values)?.clone(),
        Node::Text(pieces) => {
            let mut text = String::new();
            for piece in pieces.iter() {
                match piece {
                    Piece::Text(literal) => text.push_str(literal),
                    Piece::Binding(binding) => match binding.resolve(values)? {
                        Value::String(bound) => text.push_str(bound),
                        other => text.push_str(&other.to_string()),
                    },
                }
            }
            Value::String(text)
        }
        Node::Array(items) => Value::Array(
            items
                .iter()
                .map(|item| resolve_node(item, values))
                .collect::<Result<_, _>>()?,
        ),
        Node::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(key, item)| Ok((key.clone(), resolve_node(item, values)?)))
                .collect::<Result<_, EvalError>>()?,
        ),
    })
}

fn visit_node<'t>(node: &'t Node, visit: &mut dyn FnMut(&'t Binding)) {
    match node {
        Node::Literal(_) => {}
        Node::Binding(binding) => visit(binding),
        Node::Text(pieces) => {
            for piece in pieces.iter() {
                if let Piece::Binding(binding) = piece {
                    visit(binding);
                }
            }
        }
        Node::Array(items) => items.iter().for_each(|item| visit_node(item, visit)),
        Node::Object(fields) => fields.iter().for_each(|(_, item)| visit_node(item, visit)),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

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
        (id == "sizing").then(|| (0, crate::definition::StepId::new(id)))
    }

    fn template(value: Value) -> Template {
        let mut errors = Vec::new();
        let template = Template::compile(
            &value,
            &Scope::step(&lookup, 1),
            &Location::root,
            &mut errors,
        );
        assert!(errors.is_empty(), "{errors:?}");
        template.unwrap()
    }

    #[test]
    fn whole_bindings_keep_their_type_and_embedded_ones_interpolate() {
        let values = Values(
            json!({"symbols": ["AAPL", "MSFT"], "qty": 5, "venue": "XNAS"}),
            vec![Some(json!({"orders": [{"id": 1}]}))],
        );
        let compiled = template(json!({
            "symbols": "${input.symbols}",
            "nested": {"deep": ["${sizing.output.orders}", "x"]},
            "label": "${input.qty} on ${input.venue}",
            "fixed": [1, 2],
        }));
        assert_eq!(
            compiled.resolve(&values).unwrap(),
            json!({
                "symbols": ["AAPL", "MSFT"],
                "nested": {"deep": [[{"id": 1}], "x"]},
                "label": "5 on XNAS",
                "fixed": [1, 2],
            })
        );
        assert_eq!(compiled.bindings().len(), 4);
    }

    #[test]
    fn literal_subtrees_stay_literal() {
        assert!(template(json!({"a": [1, {"b": "c"}]})).is_literal());
        assert!(!template(json!({"a": [1, {"b": "${input.x}"}]})).is_literal());
    }

    #[test]
    fn errors_are_located_inside_the_value() {
        let mut errors = Vec::new();
        let value = json!({"a": [1, {"b": "${nope.output}"}]});
        let at = || Location::step(1, None).field("task").field("parameters");
        assert!(Template::compile(&value, &Scope::step(&lookup, 1), &at, &mut errors).is_none());
        assert_eq!(
            errors[0].location().unwrap().to_string(),
            "steps[1].task.parameters.a[1].b"
        );
    }
}
