//! Identifier and open-set name newtypes.

use std::borrow::Borrow;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// The id of a step: unique in its workflow; letters, digits, `_` and `-`.
///
/// Cheap to clone (shared string), so run state and events can carry it freely.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct StepId(Arc<str>);

impl<'de> Deserialize<'de> for StepId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(SharedStr).map(Self)
    }
}

/// Deserializes a string straight into an `Arc<str>` (one allocation, not two).
struct SharedStr;

impl serde::de::Visitor<'_> for SharedStr {
    type Value = Arc<str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Arc<str>, E> {
        Ok(Arc::from(text))
    }
}

impl StepId {
    /// Creates a step id. The text is checked when the definition is compiled.
    pub fn new(id: impl AsRef<str>) -> Self {
        Self(Arc::from(id.as_ref()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Why `id` is not a valid step id, if it is not.
    pub(crate) fn problem(id: &str) -> Option<&'static str> {
        let mut chars = id.chars();
        match chars.next() {
            None => Some("a step id cannot be empty"),
            Some('-') => Some("a step id cannot start with `-`"),
            _ if id == "input" || id == "output" => {
                Some("`input` and `output` are reserved binding roots")
            }
            _ if !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') =>
            {
                Some("a step id may only hold ASCII letters, digits, `_` and `-`")
            }
            _ => None,
        }
    }
}

impl fmt::Debug for StepId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for StepId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for StepId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for StepId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl From<&str> for StepId {
    fn from(id: &str) -> Self {
        Self::new(id)
    }
}

impl From<String> for StepId {
    fn from(id: String) -> Self {
        Self(Arc::from(id))
    }
}

impl PartialEq<str> for StepId {
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}

impl PartialEq<&str> for StepId {
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}

/// The text of an open-set name: a well-known constant or a shared string.
#[derive(Clone, Serialize)]
#[serde(untagged)]
enum Name {
    Static(&'static str),
    Shared(Arc<str>),
}

impl Name {
    fn as_str(&self) -> &str {
        match self {
            Self::Static(text) => text,
            Self::Shared(text) => text,
        }
    }
}

macro_rules! open_name {
    ($(#[$doc:meta])* $name:ident { $($(#[$cdoc:meta])* $constant:ident),* $(,)? }) => {
        $(#[$doc])*
        ///
        /// Cheap to clone: the well-known names are static and others are shared.
        #[derive(Clone, Serialize)]
        #[serde(transparent)]
        pub struct $name(Name);

        impl $name {
            $(
                $(#[$cdoc])*
                pub const $constant: Self = Self(Name::Static(stringify!($constant)));
            )*

            /// Creates a name; any text is allowed (the set is open).
            pub fn new(name: impl AsRef<str>) -> Self {
                Self(Name::Shared(Arc::from(name.as_ref())))
            }

            /// The name as text.
            pub fn as_str(&self) -> &str {
                self.0.as_str()
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                deserializer.deserialize_str(SharedStr).map(|name| Self(Name::Shared(name)))
            }
        }

        impl PartialEq for $name {
            fn eq(&self, other: &Self) -> bool {
                self.as_str() == other.as_str()
            }
        }

        impl Eq for $name {}

        impl PartialOrd for $name {
            fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
                Some(self.cmp(other))
            }
        }

        impl Ord for $name {
            fn cmp(&self, other: &Self) -> std::cmp::Ordering {
                self.as_str().cmp(other.as_str())
            }
        }

        impl std::hash::Hash for $name {
            fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
                self.as_str().hash(state);
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(self.as_str(), f)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl From<&str> for $name {
            fn from(name: &str) -> Self {
                Self::new(name)
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.as_str() == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }
    };
}

open_name! {
    /// The type of a task sent to an agent. An open set: users add their own; the names
    /// used by the reference workflows are constants.
    ///
    /// ```
    /// # use tradeflow::definition::TaskType;
    /// assert_eq!(TaskType::MARKET_ANALYSIS, TaskType::new("MARKET_ANALYSIS"));
    /// ```
    TaskType {
        /// Analyse market data and emit signals.
        MARKET_ANALYSIS,
        /// Assess the risk of proposed trades.
        RISK_ASSESSMENT,
        /// Size positions from signals, risk and capital.
        POSITION_SIZING,
        /// Execute orders on a venue.
        ORDER_EXECUTION,
        /// Watch orders until they are done.
        EXECUTION_MONITORING,
        /// Analyse a portfolio's current state.
        PORTFOLIO_ANALYSIS,
        /// Compare an allocation with its target.
        DEVIATION_ANALYSIS,
        /// Decide whether to rebalance.
        REBALANCING_DECISION,
        /// Plan the trades of a rebalance.
        TRADE_PLANNING,
        /// Validate a trade plan against risk limits.
        RISK_VALIDATION,
        /// Ask a person to approve.
        APPROVAL_REQUEST,
        /// Execute a batch of trades.
        BATCH_EXECUTION,
    }
}

open_name! {
    /// The type of an agent, matched by `agentCriteria.type`. An open set: users add their
    /// own; the names used by the reference workflows are constants.
    ///
    /// ```
    /// # use tradeflow::definition::AgentType;
    /// assert_eq!(AgentType::TRADING_EXECUTION.as_str(), "TRADING_EXECUTION");
    /// ```
    AgentType {
        /// Market analysis agents.
        MARKET_ANALYSIS,
        /// Risk management agents.
        RISK_MANAGEMENT,
        /// Portfolio management agents.
        PORTFOLIO_MANAGEMENT,
        /// Trading execution agents.
        TRADING_EXECUTION,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_id_rules() {
        assert_eq!(StepId::problem("market-analysis"), None);
        assert_eq!(StepId::problem("step_2"), None);
        assert!(StepId::problem("").is_some());
        assert!(StepId::problem("-a").is_some());
        assert!(StepId::problem("a.b").is_some());
        assert!(StepId::problem("input").is_some());
        assert!(StepId::problem("héllo").is_some());
    }

    #[test]
    fn constants_equal_parsed_names() {
        let parsed: TaskType = serde_json::from_str("\"ORDER_EXECUTION\"").unwrap();
        assert_eq!(parsed, TaskType::ORDER_EXECUTION);
        assert_eq!(
            serde_json::to_string(&AgentType::RISK_MANAGEMENT).unwrap(),
            "\"RISK_MANAGEMENT\""
        );
    }
}
