//! Why a request was refused: [`SecurityError`]; why a policy file is invalid:
//! [`PolicyError`].

use std::fmt;

use super::Action;
use crate::definition::Quoted;

/// Why the engine refused a request on security grounds. Nothing was started, changed
/// or journaled when this is returned.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SecurityError {
    /// No role of the user allows the action on the target (deny by default: an
    /// unknown user, or an action no role names, is refused too).
    #[error("user `{}` may not {action}{}", Quoted(.user), Shown(" ", .target.as_deref()))]
    Denied {
        /// The user.
        user: String,
        /// What the user asked to do.
        action: Action,
        /// What on: the workflow id (for `reset`, the kill switch rule; none for
        /// `rebalance`).
        target: Option<String>,
    },
    /// The request named no user, and the engine checks permissions: a run needs
    /// `RunOptions::user` (or `RunOptions::as_host` for the host's own runs).
    #[error("{action}{} refused: no user named, and the engine checks permissions", Shown(" ", .target.as_deref()))]
    NoUser {
        /// What was asked.
        action: Action,
        /// What on.
        target: Option<String>,
    },
    /// A step asks for more of a resource than the user's roles allow.
    #[error(
        "user `{}` may not execute `{}`: step `{}` asks for {requested} {resource}, more than the {cap} the user's roles allow",
        Quoted(.user), Quoted(.workflow), Quoted(.step)
    )]
    OverCap {
        /// The user.
        user: String,
        /// The workflow.
        workflow: String,
        /// The step (`workflow` for the workflow's own requirements).
        step: String,
        /// The resource: `cpu`, `memory` or `network`.
        resource: &'static str,
        /// What the step asks for.
        requested: f64,
        /// The most the user's roles allow.
        cap: f64,
    },
    /// Four eyes: the user who started a run may not approve its steps.
    #[error(
        "user `{}` started run `{}` and may not approve its step `{}` (four eyes)",
        Quoted(.user), Quoted(.run), Quoted(.step)
    )]
    FourEyes {
        /// The user.
        user: String,
        /// The run.
        run: String,
        /// The step.
        step: String,
    },
    /// The step needs approvers of named roles or names (`approval.approvers`), and the
    /// user is none of them.
    #[error(
        "user `{}` is not among the approvers of step `{}` of run `{}`",
        Quoted(.user), Quoted(.step), Quoted(.run)
    )]
    NotApprover {
        /// The user.
        user: String,
        /// The run.
        run: String,
        /// The step.
        step: String,
    },
    /// The user's approval of a step that needs a quorum was counted already: a quorum
    /// needs distinct people.
    #[error(
        "user `{}` approved step `{}` of run `{}` already; its quorum needs distinct approvers",
        Quoted(.user), Quoted(.step), Quoted(.run)
    )]
    AlreadyApproved {
        /// The user.
        user: String,
        /// The run.
        run: String,
        /// The step.
        step: String,
    },
    /// The user started as many runs in the window as the rate limit allows.
    #[error(
        "user `{}` may not execute `{}` now: {limit} runs in the last {window_secs} s, the most allowed",
        Quoted(.user), Quoted(.workflow)
    )]
    RateLimited {
        /// The user.
        user: String,
        /// The workflow refused.
        workflow: String,
        /// Runs allowed per window.
        limit: u32,
        /// The window, in seconds.
        window_secs: u64,
    },
    /// A host's [`SecurityAnalyzer`](super::SecurityAnalyzer) refused the run.
    #[error(
        "{} refused the run of `{}`{}: {}",
        Quoted(.analyzer), Quoted(.workflow), Shown(" for user ", .user.as_deref()), Quoted(.reason)
    )]
    Analyzer {
        /// The analyzer's name.
        analyzer: String,
        /// The user, if the run names one.
        user: Option<String>,
        /// The workflow.
        workflow: String,
        /// Why, in the analyzer's words.
        reason: String,
    },
}

impl SecurityError {
    /// The user refused, when the request named one.
    pub fn user(&self) -> Option<&str> {
        match self {
            Self::Denied { user, .. }
            | Self::OverCap { user, .. }
            | Self::FourEyes { user, .. }
            | Self::NotApprover { user, .. }
            | Self::AlreadyApproved { user, .. }
            | Self::RateLimited { user, .. } => Some(user),
            Self::Analyzer { user, .. } => user.as_deref(),
            Self::NoUser { .. } => None,
        }
    }
}

/// `before` and the text quoted in backticks, or nothing.
struct Shown<'a>(&'static str, Option<&'a str>);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.1 {
            Some(text) => write!(f, "{}`{}`", self.0, Quoted(text)),
            None => Ok(()),
        }
    }
}

/// One problem of a policy file, located by its path in the file
/// (`roles.trader.execute[0]`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{at}: {problem}")]
pub struct PolicyError {
    /// Where: `roles.<role>.<field>[i]`, `users.<user>[i]`, or `policy` for the file.
    pub at: String,
    /// What is wrong, on one line.
    pub problem: String,
}

/// Every problem of a policy file (at least one), one a line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
pub struct PolicyErrors(pub Vec<PolicyError>);
