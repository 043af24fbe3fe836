//! [`PolicyPermissions`]: roles and users read from a JSON policy, deny by default.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::error::{PolicyError, PolicyErrors};
use super::{Action, Glob, PermissionRequest, PermissionService, ResourceCaps, SecurityError};
use crate::definition::Quoted;

/// The role that may `reset` kill switch rules when it does not list `reset` itself.
pub const ADMIN_ROLE: &str = "admin";

/// What one role allows.
#[derive(Debug, Clone, Default)]
struct Role {
    /// By [`Action::index`]: the patterns of targets the role allows the action on.
    grants: [Vec<Glob>; Action::ALL.len()],
    /// What the role's users' runs may ask for.
    caps: ResourceCaps,
}

/// Permissions from a JSON policy: roles that allow actions on workflows whose ids match
/// patterns, and the users holding each role. Anything not allowed is refused.
///
/// ```json
/// { "roles": {
///     "trader": { "execute": ["algo-*"], "resources": { "cpu": 4 } },
///     "risk":   { "approve": ["*"], "cancel": ["*"] },
///     "admin":  { "execute": ["*"], "approve": ["*"], "cancel": ["*"], "adapt": ["*"], "define": ["*"] } },
///   "users": { "alice": ["trader"], "bob": ["risk"], "root": ["admin"] } }
/// ```
///
/// - A role's keys are actions (`define`, `execute`, `approve`, `pause`, `resume`,
///   `cancel`, `adapt`, `rebalance`, `reset`), each a list of [`Glob`] patterns on the
///   target (the workflow id; for `reset`, the kill switch rule's id; `rebalance` has no
///   target, so any pattern allows it), and `resources`, the most a step of the role's
///   runs may ask for (`cpu`, `memory`, `network`; a kind not named is not capped).
/// - A user may do what any of the user's roles allows. Unknown users, and actions no
///   role of the user names, are refused.
/// - The role named [`ADMIN_ROLE`] may `reset` every rule unless it lists `reset`
///   itself; no other role may reset unless it lists `reset`.
/// - Resource caps: only the user's roles that allow `execute` on the workflow count;
///   for each kind, the most generous of them wins (a role that does not cap a kind
///   leaves it uncapped).
///
/// # Examples
/// ```
/// use tradeflow::security::{Action, PermissionRequest, PermissionService, PolicyPermissions};
/// let policy = PolicyPermissions::from_json(r#"{
///     "roles": {"trader": {"execute": ["algo-*"]}}, "users": {"alice": ["trader"]}}"#)?;
/// assert!(policy.check(&PermissionRequest::new("alice", Action::Execute, Some("algo-twap"))).is_ok());
/// assert!(policy.check(&PermissionRequest::new("alice", Action::Execute, Some("flatten"))).is_err());
/// assert!(policy.check(&PermissionRequest::new("mallory", Action::Execute, Some("algo-twap"))).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct PolicyPermissions {
    roles: BTreeMap<String, Role>,
    users: BTreeMap<String, Vec<String>>,
}

impl PolicyPermissions {
    /// Reads and checks a policy (see the type's docs).
    ///
    /// # Errors
    /// Every problem of the file, each located (`roles.trader.execute[0]`, `users.alice[1]`):
    /// text that is not JSON, a field that is not an object or a list, an unknown action
    /// or resource, an empty or overlong pattern, a cap that is not a finite number ≥ 0,
    /// a user holding a role the file does not define.
    pub fn from_json(text: &str) -> Result<Self, PolicyErrors> {
        let value: Value = serde_json::from_str(text).map_err(|error| {
            PolicyErrors(vec![PolicyError {
                at: "policy".to_owned(),
                problem: format!("not JSON: {error}"),
            }])
        })?;
        Self::from_value(&value)
    }

    /// Checks a policy already parsed as JSON; see [`from_json`](Self::from_json).
    ///
    /// # Errors
    /// As [`from_json`](Self::from_json).
    pub fn from_value(value: &Value) -> Result<Self, PolicyErrors> {
        let mut problems = Problems::default();
        let mut policy = Self::default();
        if let Some(top) = problems.object(value, "policy") {
            for key in top.keys().filter(|key| *key != "roles" && *key != "users") {
                problems.push(
                    format!("policy.{}", Quoted(key)),
                    "unknown field (expected `roles` or `users`)",
                );
            }
            if let Some(roles) = top.get("roles").and_then(|v| problems.object(v, "roles")) {
                for (name, role) in roles {
                    policy.roles.insert(name.clone(), problems.role(name, role));
                }
            }
            if let Some(users) = top.get("users").and_then(|v| problems.object(v, "users")) {
                for (user, held) in users {
                    let held = problems.held(&policy.roles, user, held);
                    policy.users.insert(user.clone(), held);
                }
            }
        }
        if problems.0.is_empty() {
            Ok(policy)
        } else {
            Err(PolicyErrors(problems.0))
        }
    }

    /// The roles `user` holds, as the policy lists them (empty for an unknown user).
    pub fn roles_of(&self, user: &str) -> &[String] {
        self.users.get(user).map_or(&[], Vec::as_slice)
    }

    fn allows(&self, role: &str, action: Action, target: Option<&str>) -> bool {
        let Some(role) = self.roles.get(role) else {
            return false;
        };
        let Some(patterns) = role.grants.get(action.index()) else {
            return false;
        };
        match target {
            None => !patterns.is_empty(),
            Some(target) => patterns.iter().any(|glob| glob.matches(target)),
        }
    }
}

impl PermissionService for PolicyPermissions {
    fn check(&self, request: &PermissionRequest<'_>) -> Result<(), SecurityError> {
        let held = self.roles_of(request.user);
        let admin_resets = |role: &String| {
            request.action == Action::Reset
                && role == ADMIN_ROLE
                && self
                    .roles
                    .get(role)
                    .is_some_and(|r| r.grants[Action::Reset.index()].is_empty())
        };
        if held
            .iter()
            .any(|role| admin_resets(role) || self.allows(role, request.action, request.target))
        {
            Ok(())
        } else {
            Err(request.denied())
        }
    }

    fn resource_caps(&self, user: &str, workflow: &str) -> ResourceCaps {
        let executing = self
            .roles_of(user)
            .iter()
            .filter(|role| self.allows(role, Action::Execute, Some(workflow)))
            .filter_map(|role| self.roles.get(role));
        let mut caps: Option<ResourceCaps> = None;
        for role in executing {
            caps = Some(match caps {
                None => role.caps,
                Some(caps) => caps.most_generous(role.caps),
            });
        }
        // Nobody here may execute: `check` refuses first; nothing is allowed.
        caps.unwrap_or(ResourceCaps::NOTHING)
    }

    fn roles(&self, user: &str) -> Vec<String> {
        self.roles_of(user).to_vec()
    }
}

/// The problems found so far.
#[derive(Default)]
struct Problems(Vec<PolicyError>);

impl Problems {
    fn push(&mut self, at: String, problem: impl Into<String>) {
        self.0.push(PolicyError {
            at,
            problem: problem.into(),
        });
    }

    fn object<'v>(&mut self, value: &'v Value, at: &str) -> Option<&'v Map<String, Value>> {
        let object = value.as_object();
        if object.is_none() {
            self.push(
                at.to_owned(),
                format!("expected an object, found {}", kind(value)),
            );
        }
        object
    }

    fn list<'v>(&mut self, value: &'v Value, at: &str) -> Option<&'v Vec<Value>> {
        let list = value.as_array();
        if list.is_none() {
            self.push(
                at.to_owned(),
                format!("expected a list, found {}", kind(value)),
            );
        }
        list
    }

    fn role(&mut self, name: &str, value: &Value) -> Role {
        let at = format!("roles.{}", Quoted(name));
        let mut role = Role::default();
        let Some(fields) = self.object(value, &at) else {
            return role;
        };
        for (key, value) in fields {
            let at = format!("{at}.{}", Quoted(key));
            if key == "resources" {
                role.caps = self.caps(value, &at);
                continue;
            }
            let Some(action) = Action::parse(key) else {
                self.push(
                    at,
                    format!(
                        "unknown action `{}` (expected one of {}, or `resources`)",
                        Quoted(key),
                        Action::ALL.map(|a| format!("`{a}`")).join(", ")
                    ),
                );
                continue;
            };
            let Some(patterns) = self.list(value, &at) else {
                continue;
            };
            for (i, pattern) in patterns.iter().enumerate() {
                let at = format!("{at}[{i}]");
                match pattern.as_str() {
                    None => self.push(
                        at,
                        format!("expected a pattern (text), found {}", kind(pattern)),
                    ),
                    Some(text) => match Glob::new(text) {
                        Some(glob) => role.grants[action.index()].push(glob),
                        None => self.push(
                            at,
                            format!(
                                "pattern `{}` is empty or longer than {} characters",
                                Quoted(text),
                                Glob::MAX_CHARS
                            ),
                        ),
                    },
                }
            }
        }
        role
    }

    fn caps(&mut self, value: &Value, at: &str) -> ResourceCaps {
        let mut caps = ResourceCaps::UNLIMITED;
        let Some(fields) = self.object(value, at) else {
            return caps;
        };
        for (key, value) in fields {
            let at = format!("{at}.{}", Quoted(key));
            let slot = match key.as_str() {
                "cpu" => &mut caps.cpu,
                "memory" => &mut caps.memory,
                "network" => &mut caps.network,
                _ => {
                    self.push(
                        at,
                        "unknown resource (expected `cpu`, `memory` or `network`)",
                    );
                    continue;
                }
            };
            match value.as_f64() {
                Some(cap) if cap.is_finite() && cap >= 0.0 => *slot = Some(cap),
                _ => self.push(
                    at,
                    format!(
                        "expected a number ≥ 0, found `{}`",
                        Quoted(&value.to_string())
                    ),
                ),
            }
        }
        caps
    }

    fn held(&mut self, roles: &BTreeMap<String, Role>, user: &str, value: &Value) -> Vec<String> {
        let at = format!("users.{}", Quoted(user));
        let mut held = Vec::new();
        let Some(list) = self.list(value, &at) else {
            return held;
        };
        for (i, role) in list.iter().enumerate() {
            let at = format!("{at}[{i}]");
            match role.as_str() {
                Some(role) if roles.contains_key(role) => held.push(role.to_owned()),
                Some(role) => self.push(at, format!("unknown role `{}`", Quoted(role))),
                None => self.push(at, format!("expected a role name, found {}", kind(role))),
            }
        }
        held
    }
}

/// What kind of JSON value `value` is, for messages.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "text",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"{ "roles": {
        "trader": { "execute": ["algo-*"], "resources": { "cpu": 4 } },
        "risk": { "approve": ["*"], "cancel": ["*"] },
        "admin": { "execute": ["*"], "approve": ["*"], "cancel": ["*"], "adapt": ["*"], "define": ["*"] } },
      "users": { "alice": ["trader"], "bob": ["risk"], "root": ["admin"] } }"#;

    #[test]
    fn the_example_policy_loads_and_admins_reset_by_default() {
        let policy = PolicyPermissions::from_json(EXAMPLE).unwrap();
        let reset = |user| {
            policy.check(&PermissionRequest::new(
                user,
                Action::Reset,
                Some("drawdown"),
            ))
        };
        assert!(reset("root").is_ok());
        assert!(reset("bob").is_err());
        assert_eq!(policy.roles_of("alice"), ["trader"]);
    }

    #[test]
    fn every_problem_is_located_on_one_line() {
        let errors = PolicyPermissions::from_json(
            r#"{ "roles": { "trader": { "execute": [""], "fly": ["*"], "resources": {"cpu": -1, "gpu": 2} },
                 "risk": [] },
               "users": { "alice": ["trader", "ghost"], "bob": "risk" }, "extra": 1 }"#,
        )
        .unwrap_err();
        let lines: Vec<String> = errors.0.iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            [
                "policy.extra: unknown field (expected `roles` or `users`)",
                "roles.risk: expected an object, found a list",
                "roles.trader.execute[0]: pattern `` is empty or longer than 256 characters",
                "roles.trader.fly: unknown action `fly` (expected one of `define`, `execute`, `approve`, `pause`, `resume`, `cancel`, `adapt`, `rebalance`, `reset`, or `resources`)",
                "roles.trader.resources.cpu: expected a number ≥ 0, found `-1`",
                "roles.trader.resources.gpu: unknown resource (expected `cpu`, `memory` or `network`)",
                "users.alice[1]: unknown role `ghost`",
                "users.bob: expected a list, found text",
            ]
        );
        assert!(lines.iter().all(|line| !line.contains('\n')));
    }

    #[test]
    fn the_most_generous_executing_role_sets_the_caps() {
        let policy = PolicyPermissions::from_json(
            r#"{ "roles": { "small": { "execute": ["*"], "resources": {"cpu": 2, "memory": 100} },
                            "big": { "execute": ["algo-*"], "resources": {"cpu": 8} },
                            "viewer": { "approve": ["*"] } },
                 "users": { "carol": ["small", "big", "viewer"] } }"#,
        )
        .unwrap();
        let caps = policy.resource_caps("carol", "algo-1");
        assert_eq!(
            (caps.cpu, caps.memory, caps.network),
            (Some(8.0), None, None)
        );
        let caps = policy.resource_caps("carol", "other");
        assert_eq!((caps.cpu, caps.memory), (Some(2.0), Some(100.0)));
    }
}
