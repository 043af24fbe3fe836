//! The workflow's `sensitive` field names, compiled once: values redacted by field name.
//!
//! A definition's top-level `"sensitive": ["apiKey", "account"]` names fields whose values
//! are secret. A name matches an object key at any depth of a value (the run's input, a
//! step's parameters, a step's output), inside objects and arrays alike; keys are
//! compared exactly (case matters). The value under a matching key — a string, a number,
//! a whole object or array — is replaced by the string [`REDACTED`] (`"***"`); `null`
//! stays `null` (it tells nothing). Keys themselves are never secret.
//!
//! The names are sorted once, at compile time, so a key is looked up by binary search:
//! redacting a value costs O(nodes × log names), walks it with an explicit stack (no
//! recursion, whatever the depth) and allocates only the stack. A workflow without
//! `sensitive` names does nothing at all: [`Sensitive::is_empty`] lets callers skip even
//! the clone.
//!
//! Redaction by name cannot reach free text (an agent's error message that quotes an API
//! key). For that, the engine also removes the *values* it has redacted from the
//! messages it journals, reports and announces (see [`Scrubber`]): every string of at
//! least [`MIN_SCRUBBED_CHARS`] characters, and every number with that many digits,
//! found under a sensitive key.

use std::borrow::Cow;

use serde_json::Value;

/// What a redacted value is replaced with: the string `"***"`.
pub const REDACTED: &str = "***";

/// The longest `sensitive` field name a definition may give, in bytes.
pub const MAX_SENSITIVE_NAME_BYTES: usize = 256;

/// The shortest secret text removed from messages: shorter values (a `"BUY"`, a `42`)
/// would garble every message that happens to contain them.
pub(crate) const MIN_SCRUBBED_CHARS: usize = 4;

/// A workflow's `sensitive` field names, compiled: sorted and deduplicated.
///
/// # Examples
/// ```
/// use serde_json::json;
/// use tradeflow::plan::Sensitive;
///
/// let sensitive = Sensitive::new(&["apiKey", "account"]);
/// let input = json!({"symbol": "AAPL", "broker": {"apiKey": "k-123", "legs": [{"account": 7}]}});
/// assert_eq!(
///     sensitive.redact(&input),
///     json!({"symbol": "AAPL", "broker": {"apiKey": "***", "legs": [{"account": "***"}]}})
/// );
/// assert!(Sensitive::default().is_empty());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sensitive {
    names: Box<[Box<str>]>,
}

impl Sensitive {
    /// The names `names`, sorted, duplicates dropped.
    pub fn new<S: AsRef<str>>(names: &[S]) -> Self {
        let mut names: Vec<Box<str>> = names.iter().map(|name| name.as_ref().into()).collect();
        names.sort_unstable();
        names.dedup();
        Self {
            names: names.into_boxed_slice(),
        }
    }

    /// Whether there are no names (nothing is ever redacted).
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> + '_ {
        self.names.iter().map(|name| &**name)
    }

    /// Whether values under the object key `key` are redacted. O(log names).
    pub fn is_sensitive(&self, key: &str) -> bool {
        self.names
            .binary_search_by(|name| (**name).cmp(key))
            .is_ok()
    }

    /// `value` with every value under a sensitive key replaced by [`REDACTED`]. Without
    /// names, a plain clone.
    pub fn redact(&self, value: &Value) -> Value {
        let mut value = value.clone();
        self.redact_in_place(&mut value);
        value
    }

    /// Replaces every value under a sensitive key in `value` by [`REDACTED`]; returns how
    /// many it replaced. Without names, returns at once.
    pub fn redact_in_place(&self, value: &mut Value) -> usize {
        if self.is_empty() {
            return 0;
        }
        let mut replaced = 0;
        let mut stack = vec![value];
        while let Some(value) = stack.pop() {
            match value {
                Value::Object(fields) => {
                    for (key, field) in fields.iter_mut() {
                        if !self.is_sensitive(key) {
                            stack.push(field);
                        } else if !field.is_null() {
                            *field = Value::String(REDACTED.to_owned());
                            replaced += 1;
                        }
                    }
                }
                Value::Array(items) => stack.extend(items.iter_mut()),
                _ => {}
            }
        }
        replaced
    }

    /// Whether `value` holds a value under a sensitive key (other than `null`).
    pub fn finds_any(&self, value: &Value) -> bool {
        let mut found = false;
        self.each_secret(value, |_, _| found = true);
        found
    }

    /// Calls `visit` with the JSON Pointer (RFC 6901: `/broker/legs/0/account`) and the
    /// value of every non-`null` value under a sensitive key of `value`, outermost
    /// first. Without names, does nothing.
    pub fn each_secret(&self, value: &Value, mut visit: impl FnMut(&str, &Value)) {
        if self.is_empty() {
            return;
        }
        let mut stack: Vec<(String, &Value)> = vec![(String::new(), value)];
        while let Some((pointer, value)) = stack.pop() {
            match value {
                Value::Object(fields) => {
                    for (key, field) in fields {
                        let pointer = child(&pointer, key);
                        if !self.is_sensitive(key) {
                            stack.push((pointer, field));
                        } else if !field.is_null() {
                            visit(&pointer, field);
                        }
                    }
                }
                Value::Array(items) => {
                    for (index, item) in items.iter().enumerate() {
                        stack.push((format!("{pointer}/{index}"), item));
                    }
                }
                _ => {}
            }
        }
    }

    /// Puts back the values a redaction replaced: for every [`REDACTED`] string under a
    /// sensitive key of `value`, calls `restore` with its JSON Pointer and puts what it
    /// returns in its place; stops at the first error. Returns how many it restored.
    ///
    /// # Errors
    /// The first error `restore` returns (the values before it are restored).
    pub fn restore<E>(
        &self,
        value: &mut Value,
        mut restore: impl FnMut(&str) -> Result<Value, E>,
    ) -> Result<usize, E> {
        if self.is_empty() {
            return Ok(0);
        }
        let mut restored = 0;
        let mut stack: Vec<(String, &mut Value)> = vec![(String::new(), value)];
        while let Some((pointer, value)) = stack.pop() {
            match value {
                Value::Object(fields) => {
                    for (key, field) in fields.iter_mut() {
                        let pointer = child(&pointer, key);
                        if !self.is_sensitive(key) {
                            stack.push((pointer, field));
                        } else if field.as_str() == Some(REDACTED) {
                            *field = restore(&pointer)?;
                            restored += 1;
                        }
                    }
                }
                Value::Array(items) => {
                    for (index, item) in items.iter_mut().enumerate() {
                        stack.push((format!("{pointer}/{index}"), item));
                    }
                }
                _ => {}
            }
        }
        Ok(restored)
    }

    /// Adds to `texts` the text of every string of at least [`MIN_SCRUBBED_CHARS`]
    /// characters and every such number found under a sensitive key of `value` (what a
    /// [`Scrubber`] removes from messages).
    pub(crate) fn secret_texts(&self, value: &Value, texts: &mut Vec<Box<str>>) {
        self.each_secret(value, |_, secret| {
            let mut stack = vec![secret];
            while let Some(value) = stack.pop() {
                let text = match value {
                    Value::String(text) if text != REDACTED => text.clone(),
                    Value::Number(number) => number.to_string(),
                    Value::Array(items) => {
                        stack.extend(items);
                        continue;
                    }
                    Value::Object(fields) => {
                        stack.extend(fields.values());
                        continue;
                    }
                    _ => continue,
                };
                if text.chars().count() >= MIN_SCRUBBED_CHARS {
                    texts.push(text.into_boxed_str());
                }
            }
        });
    }
}

/// `value` as the engine writes it: values under `sensitive` names redacted, then every
/// string that holds a text of `scrubber` scrubbed (a secret copied under another name).
pub(crate) fn redacted(sensitive: &Sensitive, scrubber: Option<&Scrubber>, value: &Value) -> Value {
    let mut value = value.clone();
    sensitive.redact_in_place(&mut value);
    if let Some(scrubber) = scrubber {
        scrubber.scrub_value(&mut value);
    }
    value
}

/// The pointer of field `key` under `pointer` (`~` and `/` escaped as RFC 6901 says).
fn child(pointer: &str, key: &str) -> String {
    let mut child = String::with_capacity(pointer.len() + key.len() + 1);
    child.push_str(pointer);
    child.push('/');
    for c in key.chars() {
        match c {
            '~' => child.push_str("~0"),
            '/' => child.push_str("~1"),
            c => child.push(c),
        }
    }
    child
}

/// The secret texts a run has seen, removed from its messages: each occurrence is
/// replaced by [`REDACTED`]. Longest first, so that a secret containing another is
/// removed whole.
#[derive(Debug, Clone, Default)]
pub(crate) struct Scrubber {
    texts: Vec<Box<str>>,
}

impl Scrubber {
    /// A scrubber of `texts` (duplicates dropped).
    pub(crate) fn new(mut texts: Vec<Box<str>>) -> Self {
        texts.sort_unstable_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        texts.dedup();
        Self { texts }
    }

    /// This scrubber with `more` texts too.
    pub(crate) fn with(&self, more: Vec<Box<str>>) -> Self {
        let mut texts = self.texts.clone();
        texts.extend(more);
        Self::new(texts)
    }

    /// `text` with every secret text replaced by [`REDACTED`]. O(text × secrets).
    pub(crate) fn scrub<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut text = Cow::Borrowed(text);
        for secret in &self.texts {
            if text.contains(&**secret) {
                text = Cow::Owned(text.replace(&**secret, REDACTED));
            }
        }
        text
    }

    /// Scrubs every string of `value` (keys too), in place, with an explicit stack.
    pub(crate) fn scrub_value(&self, value: &mut Value) {
        let mut stack = vec![value];
        while let Some(value) = stack.pop() {
            match value {
                Value::String(text) => self.scrub_in_place(text),
                Value::Array(items) => stack.extend(items.iter_mut()),
                Value::Object(fields) => {
                    if fields
                        .keys()
                        .any(|key| matches!(self.scrub(key), Cow::Owned(_)))
                    {
                        let taken = std::mem::take(fields);
                        *fields = taken
                            .into_iter()
                            .map(|(key, field)| (self.scrub(&key).into_owned(), field))
                            .collect();
                    }
                    stack.extend(fields.values_mut());
                }
                _ => {}
            }
        }
    }

    /// Scrubs `text` in place.
    pub(crate) fn scrub_in_place(&self, text: &mut String) {
        if let Cow::Owned(scrubbed) = self.scrub(text) {
            *text = scrubbed;
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn values_under_sensitive_keys_are_redacted_at_any_depth_and_null_stays() {
        let sensitive = Sensitive::new(&["apiKey", "account"]);
        let mut value = json!({
            "apiKey": {"nested": "x"},
            "list": [{"account": "ACC-1"}, {"account": null}, {"other": 1}],
            "deep": [[{"apiKey": 12345}]]
        });
        assert_eq!(sensitive.redact_in_place(&mut value), 3);
        assert_eq!(
            value,
            json!({
                "apiKey": "***",
                "list": [{"account": "***"}, {"account": null}, {"other": 1}],
                "deep": [[{"apiKey": "***"}]]
            })
        );
    }

    #[test]
    fn no_names_leave_values_untouched() {
        let mut value = json!({"apiKey": "k"});
        assert_eq!(Sensitive::default().redact_in_place(&mut value), 0);
        assert_eq!(value, json!({"apiKey": "k"}));
    }

    #[test]
    fn deeply_nested_values_are_walked_without_recursion() {
        let mut value = json!({"apiKey": "k"});
        for _ in 0..100_000 {
            value = Value::Array(vec![value]);
        }
        let sensitive = Sensitive::new(&["apiKey"]);
        assert_eq!(sensitive.redact_in_place(&mut value), 1);
        // serde_json drops values recursively: this one would overflow the test's stack.
        std::mem::forget(value);
    }

    #[test]
    fn restoring_puts_back_each_redacted_value_by_its_pointer() {
        let sensitive = Sensitive::new(&["apiKey", "a/b"]);
        let original = json!({"legs": [{"apiKey": "k-1"}, {"apiKey": "k-2"}], "a/b": 5});
        let mut value = sensitive.redact(&original);
        let restored = sensitive.restore(&mut value, |pointer| {
            original.pointer(pointer).cloned().ok_or(pointer.to_owned())
        });
        assert_eq!(restored, Ok(3));
        assert_eq!(value, original);
        let mut value = sensitive.redact(&original);
        let refused = sensitive.restore(&mut value, |pointer| Err::<Value, _>(pointer.to_owned()));
        let refused = refused.err();
        assert!(matches!(
            refused.as_deref(),
            Some("/a~1b" | "/legs/0/apiKey" | "/legs/1/apiKey")
        ));
    }

    #[test]
    fn secret_texts_are_long_strings_and_numbers_under_sensitive_keys() {
        let sensitive = Sensitive::new(&["apiKey", "account"]);
        let mut texts = Vec::new();
        sensitive.secret_texts(
            &json!({"apiKey": "k-12345", "account": 123456, "x": "public-value", "y": {"account": "abc"}}),
            &mut texts,
        );
        texts.sort();
        assert_eq!(
            texts,
            vec!["123456".into(), "k-12345".into()] as Vec<Box<str>>
        );
    }

    #[test]
    fn scrubbers_replace_every_secret_in_messages_longest_first() {
        let scrubber = Scrubber::new(vec!["secret".into(), "secret-long".into()]);
        assert_eq!(
            scrubber.scrub("bad key secret-long, then secret"),
            "bad key ***, then ***"
        );
        assert!(matches!(scrubber.scrub("nothing here"), Cow::Borrowed(_)));
    }

    #[test]
    fn secrets_copied_under_other_names_are_scrubbed_from_values() {
        let sensitive = Sensitive::new(&["apiKey"]);
        let scrubber = Scrubber::new(vec!["k-12345".into()]);
        let value = json!({"apiKey": "k-12345", "copy": ["key k-12345"], "k-12345": 1, "n": 2});
        assert_eq!(
            redacted(&sensitive, Some(&scrubber), &value),
            json!({"apiKey": "***", "copy": ["key ***"], "***": 1, "n": 2})
        );
    }
}
