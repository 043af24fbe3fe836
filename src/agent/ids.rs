//! Agent identifiers.

use crate::run::shared_id;

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
    }
}
