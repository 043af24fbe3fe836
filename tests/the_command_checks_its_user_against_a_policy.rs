//! `tradeflow simulate` and `run` with `--policy POLICY.json --user NAME`: the run is
//! checked for the user and refused with exit code 3 (the reason on stderr, nothing on
//! stdout); the scripted approvers' answers are checked too (four eyes); an invalid
//! policy is exit 2 with every problem located.

#[path = "support/command.rs"]
mod command;

use serde_json::json;

use command::{assert_exit, run, scratch_dir, stderr_lines, stdout, text, write};

const ALGO: [&str; 6] = [
    "examples/workflows/algo-trading.json",
    "--agents",
    "examples/agents/algo-trading.json",
    "--input",
    "examples/inputs/algo-trading.json",
    "--policy",
];

const PORTFOLIO: [&str; 6] = [
    "examples/workflows/portfolio-rebalancing.json",
    "--agents",
    "examples/agents/portfolio-rebalancing.json",
    "--input",
    "examples/inputs/portfolio-rebalancing.json",
    "--policy",
];

fn policy() -> serde_json::Value {
    json!({
        "roles": {
            "trader": {"execute": ["algo-*"], "resources": {"cpu": 4}},
            "pm": {"execute": ["portfolio-*"], "approve": ["portfolio-*"]},
            "risk": {"approve": ["*"], "cancel": ["*"]}
        },
        "users": {"alice": ["trader"], "bob": ["risk"], "carol": ["pm"], "pm@desk": ["pm"]}
    })
}

fn simulate(files: [&str; 6], policy: &str, user: Option<&str>) -> std::process::Output {
    let mut args = vec!["simulate"];
    args.extend(files);
    args.push(policy);
    if let Some(user) = user {
        args.extend(["--user", user]);
    }
    run(&args)
}

#[test]
fn simulate_runs_for_a_user_the_policy_allows_and_refuses_others_with_exit_3() {
    let dir = scratch_dir("policy-simulate");
    let policy = write(&dir, "policy.json", &policy());

    let allowed = simulate(ALGO, &policy, Some("alice"));
    assert_exit(&allowed, 0);

    for (user, reason) in [
        (
            Some("bob"),
            "tradeflow: refused: user `bob` may not execute `algo-trading-strategy`",
        ),
        (
            Some("mallory"),
            "tradeflow: refused: user `mallory` may not execute `algo-trading-strategy`",
        ),
        (
            None,
            "tradeflow: refused: execute `algo-trading-strategy` refused: no user named, and the engine checks permissions",
        ),
    ] {
        let refused = simulate(ALGO, &policy, user);
        assert_exit(&refused, 3);
        assert_eq!(stdout(&refused), "", "no report: nothing ran");
        assert_eq!(stderr_lines(&refused), [reason]);
    }
}

#[test]
fn scripted_approvals_are_checked_and_the_runs_user_may_not_approve_it() {
    let dir = scratch_dir("policy-approvals");
    let policy = write(&dir, "policy.json", &policy());

    let approved = simulate(PORTFOLIO, &policy, Some("carol"));
    assert_exit(&approved, 0);

    // The agents file's approver is pm@desk: the run's own user, so four eyes refuses
    // the answer and the step waits for one that never comes.
    let own = simulate(PORTFOLIO, &policy, Some("pm@desk"));
    assert_exit(&own, 1);
    let lines = stderr_lines(&own);
    assert!(
        lines.iter().any(|line| line.contains(
            "execution-approval: scripted answer refused: user `pm@desk` started run `run-1` and may not approve its step `execution-approval` (four eyes)"
        )),
        "{lines:#?}"
    );
}

#[test]
fn run_refuses_with_exit_3_before_anything_is_journaled() {
    let dir = scratch_dir("policy-run");
    let policy = write(&dir, "policy.json", &policy());
    let store = format!("sqlite:{}", text(&dir.join("runs.db")));
    let mut args = vec!["run"];
    args.extend(ALGO);
    args.extend([policy.as_str(), "--user", "bob", "--store", &store]);
    let refused = run(&args);
    assert_exit(&refused, 3);
    assert_eq!(
        stderr_lines(&refused),
        ["tradeflow: refused: user `bob` may not execute `algo-trading-strategy`"]
    );
    // Nothing to finish: the refused run left no journal.
    let resumed = run(&["resume", "--store", &store]);
    assert_exit(&resumed, 0);
    assert_eq!(stdout(&resumed), "");
}

#[test]
fn an_invalid_policy_is_exit_2_with_every_problem_located() {
    let dir = scratch_dir("policy-invalid");
    let policy = write(
        &dir,
        "policy.json",
        &json!({"roles": {"trader": {"execute": [""], "trade": ["*"]}},
                "users": {"alice": ["trader", "ghost"]}}),
    );
    let output = simulate(ALGO, &policy, Some("alice"));
    assert_exit(&output, 2);
    assert_eq!(
        stderr_lines(&output),
        [
            format!(
                "{policy}: roles.trader.execute[0]: pattern `` is empty or longer than 256 characters"
            ),
            format!(
                "{policy}: roles.trader.trade: unknown action `trade` (expected one of `define`, `execute`, `approve`, `pause`, `resume`, `cancel`, `adapt`, `rebalance`, `reset`, or `resources`)"
            ),
            format!("{policy}: users.alice[1]: unknown role `ghost`"),
        ]
    );
}
