//! What an audit entry says ([`AuditEvent`], [`AuditRecord`]), the entry as sealed in
//! the chain ([`AuditEntry`]), its canonical body and its hash.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The `prev` of the first entry: 64 zeros (no entry before it).
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What happened, with its subject: the entry's `kind` and the fields after it.
///
/// Values a person or a market gave (a run's input, an approval step's parameters, a
/// definition) are never written in clear: the entry holds their SHA-256 (see
/// [`sha256_json`], [`sha256_text`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "kind",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
#[non_exhaustive]
pub enum AuditEvent {
    /// A workflow was defined (`create_workflow`, `add_plan`).
    WorkflowDefined {
        /// The workflow's id.
        workflow: String,
        /// Its version (empty when it has none).
        version: String,
        /// SHA-256 (hex) of the definition's JSON text, as stored with the runs.
        definition_sha256: String,
    },
    /// A fresh run started.
    RunStarted {
        /// The run.
        run: String,
        /// Its workflow.
        workflow: String,
        /// The workflow's version.
        version: String,
        /// SHA-256 (hex) of the input as the run's journal holds it.
        input_sha256: String,
    },
    /// A run ended.
    RunEnded {
        /// The run.
        run: String,
        /// Its workflow.
        workflow: String,
        /// How it ended: `COMPLETED`, `FAILED`, `CANCELLED`, `TIMED_OUT` or `SKIPPED`
        /// (as the run's report says it).
        status: String,
    },
    /// A waiting approval step was approved.
    StepApproved {
        /// The run.
        run: String,
        /// The step.
        step: String,
        /// SHA-256 (hex) of the step's resolved parameters (what was approved).
        parameters_sha256: String,
    },
    /// A waiting approval step was rejected.
    StepRejected {
        /// The run.
        run: String,
        /// The step.
        step: String,
        /// SHA-256 (hex) of the step's resolved parameters (what was rejected).
        parameters_sha256: String,
    },
    /// A run was paused.
    RunPaused {
        /// The run.
        run: String,
    },
    /// A run was resumed.
    RunResumed {
        /// The run.
        run: String,
    },
    /// A run was cancelled.
    RunCancelled {
        /// The run.
        run: String,
    },
    /// An adaptation rule was added to a workflow at run time.
    AdaptationAdded {
        /// The workflow.
        workflow: String,
        /// The rule's id.
        rule: String,
    },
    /// The agents were rebalanced.
    WorkloadRebalanced {
        /// What changed, as the rebalancing reported it (drained, undrained, weights,
        /// the utilization ceiling's moves).
        changes: serde_json::Value,
    },
    /// A kill switch rule tripped.
    KillSwitchTripped {
        /// The rule.
        rule: String,
    },
    /// One person's reset of a tripped kill switch rule was counted.
    KillSwitchReset {
        /// The rule.
        rule: String,
        /// Whether this reset reached the rule's quorum (the rule is armed again).
        armed: bool,
    },
    /// An operation was refused for lack of a permission.
    PermissionRefused {
        /// The operation asked for (`start`, `approve`, …).
        action: String,
        /// The workflow it concerned, if any.
        workflow: Option<String>,
        /// The step it concerned, if any.
        step: Option<String>,
        /// The refusal, as one line (`user `bob` may not execute `algo-twap``).
        reason: String,
    },
}

impl AuditEvent {
    /// The entry's `kind`, as written in its body and its `kind` column.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::WorkflowDefined { .. } => "workflowDefined",
            Self::RunStarted { .. } => "runStarted",
            Self::RunEnded { .. } => "runEnded",
            Self::StepApproved { .. } => "stepApproved",
            Self::StepRejected { .. } => "stepRejected",
            Self::RunPaused { .. } => "runPaused",
            Self::RunResumed { .. } => "runResumed",
            Self::RunCancelled { .. } => "runCancelled",
            Self::AdaptationAdded { .. } => "adaptationAdded",
            Self::WorkloadRebalanced { .. } => "workloadRebalanced",
            Self::KillSwitchTripped { .. } => "killSwitchTripped",
            Self::KillSwitchReset { .. } => "killSwitchReset",
            Self::PermissionRefused { .. } => "permissionRefused",
        }
    }
}

/// An entry before it is sealed: when, who, what. The log gives it its place (sequence
/// number, previous hash) and its hash.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct AuditRecord {
    /// When it happened, on the engine's clock (kept to the millisecond).
    pub at: DateTime<Utc>,
    /// Who asked (a user's name); `None` for what the engine did by itself (a run's
    /// end, a kill switch trip, a workflow defined without a user).
    pub actor: Option<String>,
    /// What happened.
    pub event: AuditEvent,
}

impl AuditRecord {
    /// A record of `event`, asked by `actor`, at `at` (truncated to the millisecond).
    pub fn new(at: DateTime<Utc>, actor: Option<&str>, event: AuditEvent) -> Self {
        Self {
            at: DateTime::from_timestamp_millis(at.timestamp_millis()).unwrap_or(at),
            actor: actor.map(str::to_owned),
            event,
        }
    }
}

/// An entry of the chain, as stored.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct AuditEntry {
    /// Its sequence number: 1 for the first entry, then one more for each.
    pub seq: u64,
    /// When it happened (the engine's clock, to the millisecond).
    pub at: DateTime<Utc>,
    /// Who asked; `None` for what the engine did by itself.
    pub actor: Option<String>,
    /// What happened.
    pub event: AuditEvent,
    /// The hash of the entry before it ([`GENESIS`] for the first).
    pub prev: String,
    /// SHA-256 (lowercase hex) of [`body`](Self::body).
    pub hash: String,
    /// The canonical body: the bytes hashed (see the [module docs](super)).
    pub body: String,
}

/// The body's fields, in their canonical order.
#[derive(Serialize)]
struct Body<'a> {
    seq: u64,
    #[serde(serialize_with = "millis")]
    at: &'a DateTime<Utc>,
    actor: &'a Option<String>,
    #[serde(flatten)]
    event: &'a AuditEvent,
    prev: &'a str,
}

/// A body read back.
#[derive(Deserialize)]
struct ReadBody {
    seq: u64,
    at: DateTime<Utc>,
    actor: Option<String>,
    #[serde(flatten)]
    event: AuditEvent,
    prev: String,
}

fn millis<S: serde::Serializer>(at: &&DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&format_at(at))
}

/// An entry's time as written: RFC 3339, UTC, milliseconds, `Z`.
pub(crate) fn format_at(at: &DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl AuditEntry {
    /// Seals `record` as entry `seq` after the entry whose hash is `prev`.
    pub fn seal(record: AuditRecord, seq: u64, prev: &str) -> Self {
        let body = canonical(seq, &record.at, &record.actor, &record.event, prev);
        Self {
            seq,
            hash: sha256_text(&body),
            at: record.at,
            actor: record.actor,
            event: record.event,
            prev: prev.to_owned(),
            body,
        }
    }

    /// The entry a stored body describes, and whether the body is canonical (the
    /// entry written again gives the same bytes).
    ///
    /// # Errors
    /// The body is not JSON of an entry (serde's message).
    pub(crate) fn parse(body: &str) -> Result<(Self, bool), String> {
        let read: ReadBody = serde_json::from_str(body).map_err(|error| error.to_string())?;
        let entry = Self::seal(
            AuditRecord {
                at: read.at,
                actor: read.actor,
                event: read.event,
            },
            read.seq,
            &read.prev,
        );
        let canonical = entry.body == body;
        Ok((entry, canonical))
    }
}

/// The canonical body of an entry: compact JSON (serde_json), keys in this order —
/// `seq`, `at`, `actor`, `kind`, the event's fields as declared, `prev`.
fn canonical(
    seq: u64,
    at: &DateTime<Utc>,
    actor: &Option<String>,
    event: &AuditEvent,
    prev: &str,
) -> String {
    let body = Body {
        seq,
        at,
        actor,
        event,
        prev,
    };
    // Serializing strings, numbers and a `Value` into a `String` cannot fail; should it
    // ever, the empty body's hash would not verify, so nothing passes unseen.
    serde_json::to_string(&body).unwrap_or_default()
}

/// SHA-256 of `text`'s UTF-8 bytes, lowercase hex.
pub fn sha256_text(text: &str) -> String {
    sha256_bytes(text.as_bytes())
}

/// SHA-256 of `bytes`, lowercase hex.
pub fn sha256_bytes(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut hex = String::with_capacity(64);
    for byte in digest {
        hex.push(char::from(HEX[usize::from(byte >> 4)]));
        hex.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    hex
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// SHA-256 of a JSON value's canonical text, lowercase hex. Canonical text: object keys
/// sorted by their UTF-8 bytes (whatever order the map keeps them in), no whitespace,
/// strings and numbers as `serde_json` writes them; so two values equal as JSON hash the
/// same. Cost: O(size of the value) and a sort of each object's keys; the writer recurses
/// once per level, and the values the engine handles nest at most
/// [`MAX_VALUE_DEPTH`](crate::run::MAX_VALUE_DEPTH) levels.
pub fn sha256_json(value: &serde_json::Value) -> String {
    let mut text = String::new();
    canonical_json(value, &mut text);
    sha256_text(&text)
}

/// Appends `value`'s canonical text to `out`.
fn canonical_json(value: &serde_json::Value, out: &mut String) {
    use serde_json::Value;
    match value {
        Value::Object(fields) => {
            let mut keys: Vec<&String> = fields.keys().collect();
            keys.sort_unstable();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::from(key.as_str()).to_string());
                out.push(':');
                if let Some(field) = fields.get(key) {
                    canonical_json(field, out);
                }
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical_json(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn at() -> DateTime<Utc> {
        "2026-01-05T09:00:00.123456Z".parse().unwrap()
    }

    #[test]
    fn sha256_matches_the_standard_vector() {
        assert_eq!(
            sha256_text("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn json_values_hash_with_sorted_keys_and_no_whitespace() {
        let value: serde_json::Value = serde_json::from_str(r#"{ "b": 1, "a": [true] }"#).unwrap();
        assert_eq!(value.to_string(), r#"{"a":[true],"b":1}"#);
        assert_eq!(sha256_json(&value), sha256_text(r#"{"a":[true],"b":1}"#));
    }

    #[test]
    fn bodies_are_written_in_canonical_order_and_hash_their_bytes() {
        let record = AuditRecord::new(
            at(),
            Some("alice"),
            AuditEvent::RunPaused { run: "r1".into() },
        );
        let entry = AuditEntry::seal(record, 1, GENESIS);
        assert_eq!(
            entry.body,
            format!(
                r#"{{"seq":1,"at":"2026-01-05T09:00:00.123Z","actor":"alice","kind":"runPaused","run":"r1","prev":"{GENESIS}"}}"#
            )
        );
        assert_eq!(entry.hash, sha256_text(&entry.body));
    }

    #[test]
    fn every_event_reads_back_as_the_same_canonical_body() {
        let events = [
            AuditEvent::WorkflowDefined {
                workflow: "w".into(),
                version: "1".into(),
                definition_sha256: sha256_text("{}"),
            },
            AuditEvent::RunStarted {
                run: "r".into(),
                workflow: "w".into(),
                version: String::new(),
                input_sha256: sha256_json(&json!({"x": 1.5})),
            },
            AuditEvent::RunEnded {
                run: "r".into(),
                workflow: "w".into(),
                status: "COMPLETED".into(),
            },
            AuditEvent::StepApproved {
                run: "r".into(),
                step: "s".into(),
                parameters_sha256: GENESIS.into(),
            },
            AuditEvent::WorkloadRebalanced {
                changes: json!({"drained": ["a-1"], "weights": [{"w": 0.25}]}),
            },
            AuditEvent::KillSwitchReset {
                rule: "dd".into(),
                armed: false,
            },
            AuditEvent::PermissionRefused {
                action: "approve".into(),
                workflow: None,
                step: Some("s\"\n".into()),
                reason: "user `bob` may not approve".into(),
            },
        ];
        let mut prev = GENESIS.to_owned();
        for (seq, event) in (1..).zip(events) {
            let entry = AuditEntry::seal(AuditRecord::new(at(), None, event), seq, &prev);
            let (read, canonical) = AuditEntry::parse(&entry.body).unwrap();
            assert!(canonical, "{}", entry.body);
            assert_eq!(read, entry);
            prev = entry.hash;
        }
    }

    #[test]
    fn a_reformatted_body_is_not_canonical() {
        let entry = AuditEntry::seal(
            AuditRecord::new(at(), None, AuditEvent::RunResumed { run: "r".into() }),
            1,
            GENESIS,
        );
        let spaced = entry.body.replace(",\"", ", \"");
        let (_, canonical) = AuditEntry::parse(&spaced).unwrap();
        assert!(!canonical);
        assert!(AuditEntry::parse("{\"seq\":1}").is_err());
    }
}
