//! Agent and run identifiers.

use std::borrow::Borrow;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

macro_rules! shared_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Arc<str>);

        impl $name {
            /// Creates an id; any text is allowed.
            pub fn new(id: impl AsRef<str>) -> Self {
                Self(Arc::from(id.as_ref()))
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&*self.0, f)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl From<&str> for $name {
            fn from(id: &str) -> Self {
                Self::new(id)
            }
        }

        impl From<String> for $name {
            fn from(id: String) -> Self {
                Self(Arc::from(id))
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                &*self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                &*self.0 == *other
            }
        }
    };
}

shared_id! {
    /// The id of a registered agent: unique in its [`AgentRegistry`](super::AgentRegistry).
    ///
    /// Cheap to clone (shared string), so candidates, leases and events carry it freely.
    ///
    /// ```
    /// # use tradeflow::agent::AgentId;
    /// let id = AgentId::from("exec-1");
    /// assert_eq!(id, "exec-1");
    /// assert_eq!(serde_json::to_string(&id).unwrap(), "\"exec-1\"");
    /// ```
    AgentId
}

shared_id! {
    /// The id of one run of a workflow. Cheap to clone (shared string).
    RunId
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn ids_hash_and_borrow_as_text() {
        let ids: HashSet<AgentId> = ["b", "a"].into_iter().map(AgentId::from).collect();
        assert!(ids.contains("a"));
        let mut sorted: Vec<AgentId> = ids.into_iter().collect();
        sorted.sort();
        assert_eq!(sorted, ["a", "b"]);
        assert_eq!(format!("{:?}", RunId::from("r1")), "\"r1\"");
        assert_eq!(RunId::from(String::from("r1")).to_string(), "r1");
        let parsed: RunId = serde_json::from_str("\"r2\"").unwrap();
        assert_eq!(parsed, "r2");
    }
}
