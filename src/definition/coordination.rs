//! The `coordination` block of a `task` or `decision` step, as written: the same task
//! sent to several agents at once, and how their answers make the step's output.

use serde::{Deserialize, Serialize};

use super::Goal;

/// A step's coordination of several agents, as written.
///
/// The step's task goes to `agents` distinct eligible agents at once, each chosen by the
/// selection engine and each with its own retries; `mode` says how their answers become
/// the step's output. The checks (a `quorum` within `agents`, `agreeOn` only with
/// `QUORUM`, `rankBy` required with `BEST` and only there, …) are made when the
/// definition is compiled.
///
/// # Examples
/// ```
/// use tradeflow::definition::{CoordinationMode, CoordinationSettings};
///
/// let settings: CoordinationSettings = serde_json::from_str(
///     r#"{"mode": "QUORUM", "agents": 3, "quorum": 2, "agreeOn": "approved"}"#,
/// )?;
/// assert_eq!(settings.mode, CoordinationMode::Quorum);
/// assert_eq!(settings.quorum, Some(2));
/// assert_eq!(settings.agree_on.as_deref(), Some("approved"));
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CoordinationSettings {
    /// How the answers combine: `ALL`, `FIRST`, `QUORUM` or `BEST`.
    pub mode: CoordinationMode,
    /// How many agents to ask (at least 1); absent: every eligible agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agents: Option<u32>,
    /// `ALL`: the successful answers needed (default: every agent asked). `QUORUM`: the
    /// agreeing answers needed (default: a majority of the agents asked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quorum: Option<u32>,
    /// `QUORUM` only: the dotted path of the value answers must agree on; absent: the
    /// whole output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agree_on: Option<String>,
    /// `BEST` only, and required there: the dotted path of the number answers are
    /// ranked by.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rank_by: Option<String>,
    /// `BEST` only: whether the highest (`MAX`, the default) or the lowest (`MIN`)
    /// `rankBy` value wins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub goal: Option<Goal>,
}

/// How the answers of a coordinated step combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[non_exhaustive]
pub enum CoordinationMode {
    /// Every agent answers; the output lists the answers in selection order.
    All,
    /// A hedged request: the first success is the output, the other calls are cancelled.
    First,
    /// The first answer that `quorum` answers agree with is the output.
    Quorum,
    /// Every agent answers; the best-ranked answer is the output.
    Best,
}

impl CoordinationMode {
    /// The name as written in JSON (`QUORUM`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::All => "ALL",
            Self::First => "FIRST",
            Self::Quorum => "QUORUM",
            Self::Best => "BEST",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_are_written_as_the_format_names_them() {
        for mode in [
            CoordinationMode::All,
            CoordinationMode::First,
            CoordinationMode::Quorum,
            CoordinationMode::Best,
        ] {
            let json = serde_json::to_value(mode).expect("serializes");
            assert_eq!(json, serde_json::Value::from(mode.as_str()));
            let back: CoordinationMode = serde_json::from_value(json).expect("deserializes");
            assert_eq!(back, mode);
        }
    }
}
