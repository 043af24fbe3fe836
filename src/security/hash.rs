//! A stable hash of a JSON value: SHA-256 of its canonical text, in lowercase hex (the
//! audit log's [`sha256_json`](crate::audit::sha256_json), so an approval's hash in the
//! journal and in the audit log are the same number).
//!
//! Canonical text: object keys sorted by their UTF-8 bytes, no whitespace, strings and
//! numbers as `serde_json` writes them. Two values equal as JSON hash the same whatever
//! the order their objects' keys were written in. Cost: O(size of the value), and a sort
//! of each object's keys; the writer recurses once per level, and values the engine
//! handles nest at most [`MAX_VALUE_DEPTH`](crate::run::MAX_VALUE_DEPTH) levels (deeper
//! ones are refused before they reach it).

use serde_json::Value;

/// The SHA-256 of `value`'s canonical JSON text, as 64 lowercase hex digits.
///
/// # Examples
/// ```
/// use serde_json::json;
/// use tradeflow::security::canonical_hash;
/// let a = canonical_hash(&json!({"qty": 10, "side": "BUY"}));
/// let b = canonical_hash(&serde_json::from_str(r#"{"side":"BUY","qty":10}"#)?);
/// assert_eq!(a, b);
/// assert_eq!(a.len(), 64);
/// assert_ne!(a, canonical_hash(&json!({"qty": 11, "side": "BUY"})));
/// # Ok::<(), serde_json::Error>(())
/// ```
pub fn canonical_hash(value: &Value) -> String {
    crate::audit::sha256_json(value)
}
