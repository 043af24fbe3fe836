//! Bounds on the JSON values a run carries: inputs, parameters, outputs.

use serde_json::Value;

/// How deep a run's input, a step's parameters or an agent's output may nest (objects
/// and arrays inside each other). Deeper values are refused where they enter: a run
/// input fails the run before any step (kind `BINDING`), an agent output fails the call
/// (kind `INVALID_OUTPUT`), a store refuses to journal one. Every value the engine keeps
/// can then be written, read back (JSON parsers bound their recursion: serde_json's at
/// 128) and walked without exhausting the stack.
pub const MAX_VALUE_DEPTH: usize = 64;

/// How deep `value` nests: 0 for a scalar, 1 for `[]` or `{}` of scalars. Walks with an
/// explicit stack, so any value can be measured; stops as soon as `limit` is exceeded
/// (the result is then `limit + 1`).
pub fn value_depth(value: &Value, limit: usize) -> usize {
    let mut deepest = 0;
    let mut stack: Vec<(&Value, usize)> = vec![(value, 0)];
    while let Some((value, depth)) = stack.pop() {
        let depth = depth + 1;
        match value {
            Value::Array(items) => stack.extend(items.iter().map(|item| (item, depth))),
            Value::Object(fields) => stack.extend(fields.values().map(|field| (field, depth))),
            _ => continue,
        }
        deepest = deepest.max(depth);
        if deepest > limit {
            return limit + 1;
        }
    }
    deepest
}

/// Drops `value` without recursing: a value nested thousands deep would exhaust the stack
/// if dropped the usual way (serde_json drops recursively). Used for values refused for
/// their depth, which the engine must get rid of.
pub(crate) fn dismantle(value: Value) {
    let mut stack = vec![value];
    while let Some(value) = stack.pop() {
        match value {
            Value::Array(items) => stack.extend(items),
            Value::Object(fields) => stack.extend(fields.into_iter().map(|(_, field)| field)),
            _ => {}
        }
    }
}

/// `value` if it nests at most [`MAX_VALUE_DEPTH`] deep; otherwise how deep it was seen
/// to nest (past the bound), the value dismantled.
pub(crate) fn bounded(value: Value) -> Result<Value, usize> {
    match value_depth(&value, MAX_VALUE_DEPTH) {
        depth if depth <= MAX_VALUE_DEPTH => Ok(value),
        depth => {
            dismantle(value);
            Err(depth)
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn depth_counts_nested_containers_and_stops_past_the_limit() {
        assert_eq!(value_depth(&json!(1), 10), 0);
        assert_eq!(value_depth(&json!([]), 10), 1);
        assert_eq!(value_depth(&json!({"a": [1, {"b": []}]}), 10), 4);
        let mut deep = json!(0);
        for _ in 0..10_000 {
            deep = Value::Array(vec![deep]);
        }
        assert_eq!(value_depth(&deep, 64), 65);
        // Dropping a deep value recurses in serde_json: take it apart iteratively.
        assert_eq!(bounded(deep), Err(65));
        assert_eq!(bounded(json!([[1]])), Ok(json!([[1]])));
    }
}
