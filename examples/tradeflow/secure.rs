//! `--policy POLICY.json` and `--user NAME` (`run`, `simulate`): the engine checks who
//! may do what ([`tradeflow::security`]); a refused run exits [`REFUSED`].
//!
//! The command loads the workflow file itself (the host's own act, not checked); the run
//! is started for `--user` and checked, and so are the answers the agents file's scripted
//! approvers give (a refused answer is printed, and the step keeps waiting). Without
//! `--policy`, `--user` is recorded in the run (journaled) and nothing is checked.

use std::sync::Arc;

use tradeflow::engine::{EngineBuilder, EngineError, RunOptions};
use tradeflow::security::PolicyPermissions;

use crate::Problems;

/// Exit code of a run the engine's permissions refused.
pub(crate) const REFUSED: u8 = 3;

/// `builder` with the permissions of the policy file at `path`, if any.
///
/// # Errors
/// The file cannot be read, or every problem of it, one a line `PATH: at: problem`.
pub(crate) fn builder(
    builder: EngineBuilder,
    path: Option<&str>,
) -> Result<EngineBuilder, Problems> {
    let Some(path) = path else {
        return Ok(builder);
    };
    let text = std::fs::read_to_string(path)
        .map_err(|error| vec![format!("{path}: cannot read: {error}")])?;
    let policy = PolicyPermissions::from_json(&text).map_err(|errors| {
        errors
            .0
            .iter()
            .map(|error| format!("{path}: {error}"))
            .collect::<Problems>()
    })?;
    Ok(builder.permissions(Arc::new(policy)))
}

/// `options` for `--user`, if given.
pub(crate) fn options(options: RunOptions, user: Option<&str>) -> RunOptions {
    match user {
        Some(user) => options.user(user),
        None => options,
    }
}

/// What a run that did not start ends with: a refusal is printed on stderr
/// (`tradeflow: refused: …`) and exits [`REFUSED`]; anything else is a problem of the
/// workflow file (`workflow`).
pub(crate) fn not_started(workflow: &str, error: &EngineError) -> Result<u8, Problems> {
    match error {
        EngineError::Security(refusal) => {
            eprintln!("tradeflow: refused: {refusal}");
            Ok(REFUSED)
        }
        other => Err(vec![format!("{workflow}: {other}")]),
    }
}
