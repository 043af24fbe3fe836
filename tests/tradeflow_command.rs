//! The `tradeflow` example command: `validate` exits 0 on valid files and 2 on invalid
//! ones, with one problem a line on stderr, and with `--agents` also when a step has no
//! agent in the agents file; `plan` draws the graph as DOT or Mermaid.

#[path = "support/command.rs"]
mod command;

use std::path::{Path, PathBuf};

use command::{run, stderr_lines, stdout};

const ALGO_TRADING: &str = "examples/workflows/algo-trading.json";
const PORTFOLIO_REBALANCING: &str = "examples/workflows/portfolio-rebalancing.json";
const SEED_VERBATIM: &str = "examples/workflows/invalid/seed-portfolio-rebalancing-verbatim.json";

/// Writes `contents` to a file of the test's own scratch directory.
fn scratch_file(name: &str, contents: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::write(&path, contents).expect("write a scratch file");
    path
}

#[test]
fn validate_accepts_both_reference_workflows() {
    for (file, id, steps) in [
        (ALGO_TRADING, "algo-trading-strategy", "5 steps"),
        (PORTFOLIO_REBALANCING, "portfolio-rebalancing", "7 steps"),
    ] {
        let output = run(&["validate", file]);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{file}: {:?}",
            stderr_lines(&output)
        );
        let summary = stdout(&output);
        assert!(summary.starts_with(&format!("{file}: valid")), "{summary}");
        assert!(summary.contains(id), "{summary}");
        assert!(summary.contains(steps), "{summary}");
        assert!(summary.contains("2 triggers"), "{summary}");
        assert!(output.stderr.is_empty());
    }
}

#[test]
fn validate_rejects_the_seed_copy_with_exit_code_2() {
    let output = run(&["validate", SEED_VERBATIM]);
    assert_eq!(output.status.code(), Some(2));
    let lines = stderr_lines(&output);
    assert_eq!(lines.len(), 1, "one problem, one line: {lines:#?}");
    assert!(
        lines[0].starts_with(&format!(
            "{SEED_VERBATIM}: triggers[0] (SCHEDULED).condition.expression: "
        )),
        "{}",
        lines[0]
    );
    assert!(
        lines[0].contains("`portfolio.lastRebalance > 7 days ago`"),
        "{}",
        lines[0]
    );
    assert!(output.stdout.is_empty());
}

#[test]
fn validate_names_every_malformed_decision_block_at_its_field() {
    assert_validate_names(
        "examples/workflows/invalid/malformed-decisions.json",
        &[
            "steps[1] (no-options).decision.options: invalid value []: a decision needs at least one option",
            "steps[2] (bad-options).decision.criteria[0].weight: invalid value -0.7: ",
            "steps[2] (bad-options).decision.criteria[1].name: invalid value cost: two criteria have this name",
            "steps[2] (bad-options).decision.options[0].scores.sped: invalid value sped: no criterion has this name",
            "steps[2] (bad-options).decision.options[1].id: invalid value twap: two options have this id",
            "steps[2] (bad-options).decision.options[2].id: invalid value \"\": an option needs an id",
            "steps[2] (bad-options).decision.options[2].parameters.algo: invalid binding in `${signal.output.algo`",
            "steps[3] (bad-names).decision.criteria[0].goal: unknown value `FASTEST`, expected one of `MIN`, `MAX`",
            "steps[3] (bad-names).decision.policy: unknown value `GREEDY`",
            "steps[4] (bad-learning).decision: `exploration` is not allowed here: ",
            "steps[4] (bad-learning).decision.contextKey: binding `${regime.output.name}` refers to unknown step `regime`",
            "steps[4] (bad-learning).decision.reward: invalid value ${monitor.output.fillQuality} per fill: a reward is one binding",
            "steps[5] (bad-exploration).decision.exploration: invalid value 1.5: ",
            "steps[5] (bad-exploration).decision.reward: binding `${ghost.output.fillQuality}` refers to unknown step `ghost`",
            "steps[6] (not-a-decision): `decision` is not allowed here: only decision steps have it",
        ],
    );
}

#[test]
fn validate_names_every_malformed_adaptation_at_its_field() {
    assert_validate_names(
        "examples/workflows/invalid/malformed-adaptations.json",
        &[
            "adaptations[4] (typo).changes[0]: unknown field `timeoutFactr` (did you mean `timeoutFactor`?)",
            "adaptations[0].id: invalid value : an adaptation's id is not empty",
            "adaptations[1] (twice).when: binding `${risk-assessment.output.level}` is not allowed here: ",
            "adaptations[1] (twice).changes[0].stepId: unknown step `ghost`",
            "adaptations[1] (twice).changes[0].timeoutFactor: invalid value 0: must be a finite number greater than 0",
            "adaptations[1] (twice).changes[1]: invalid value {\"stepId\": \"risk-assessment\"}: a change sets at least one of",
            "adaptations[2] (twice).id: invalid value twice: adaptations[1] already has this id",
            "adaptations[2] (twice).when: invalid expression `volatility.level >`: ",
            "adaptations[2] (twice).changes[0].stepId: invalid value route: a `condition` step starts no work to change",
            "adaptations[2] (twice).changes[1].parameters.size: invalid value ${input.size}: adaptation parameters are literal values",
            "adaptations[2] (twice).changes[1].timeout: invalid value 0: a timeout is at least 1 ms",
            "adaptations[2] (twice).changes[1].retryPolicy.maxAttempts: invalid value 0: ",
            "adaptations[3] (empty).changes: invalid value []: an adaptation changes at least one step",
        ],
    );
}

#[test]
fn validate_names_every_malformed_coordination_block_at_its_field() {
    assert_validate_names(
        "examples/workflows/invalid/malformed-coordination.json",
        &[
            "steps[1] (bad-mode).coordination.goal: unknown value `LOWEST`, expected one of `MIN`, `MAX`",
            "steps[1] (bad-mode).coordination.mode: unknown value `MAJORITY`, expected one of `ALL`, `FIRST`, `QUORUM`, `BEST`",
            "steps[2] (bad-counts).coordination.quorum: invalid value 4: a quorum is at most the 2 agents asked",
            "steps[3] (bad-quorum).coordination.agents: invalid value 0: a coordination asks at least 1 agent",
            "steps[3] (bad-quorum).coordination.quorum: invalid value 0: a quorum is at least 1 answer",
            "steps[3] (bad-quorum).coordination.agreeOn: invalid value approved: only QUORUM has it; this coordination is ALL",
            "steps[4] (best-without-rank).coordination.agreeOn: invalid value weights: only QUORUM has it",
            "steps[4] (best-without-rank).coordination: `rankBy` is required with mode BEST",
            "steps[5] (first-with-ranking).coordination.rankBy: invalid value price: only BEST has it",
            "steps[5] (first-with-ranking).coordination.goal: invalid value MIN: only BEST has it",
            "steps[6] (bad-path).coordination.rankBy: invalid value quote..price: path `quote..price` has an empty segment",
            "steps[7] (not-an-agent-step): `coordination` is not allowed here: only task and decision steps",
        ],
    );
}

/// `validate FILE` exits 2 with exactly the `expected` lines (each a prefix after
/// `FILE: `), in any order, and nothing on stdout.
#[track_caller]
fn assert_validate_names(file: &str, expected: &[&str]) {
    let output = run(&["validate", file]);
    assert_eq!(output.status.code(), Some(2));
    let lines = stderr_lines(&output);
    for wanted in expected {
        assert!(
            lines
                .iter()
                .any(|line| line.starts_with(&format!("{file}: {wanted}"))),
            "no line starts with {wanted:?}: {lines:#?}"
        );
    }
    assert_eq!(lines.len(), expected.len(), "{lines:#?}");
    assert!(output.stdout.is_empty());
}

#[test]
fn validate_prints_every_problem_on_its_own_line() {
    let file = scratch_file(
        "three-problems.json",
        r#"{
          "id": "w",
          "steps": [
            {"id": "a", "type": "task", "agentCriteria": {"type": "X"},
             "task": {"type": "T", "parameters": {"x": "${nope.output}"}}},
            {"id": "b", "type": "task", "agentCriteria": {"type": "X"}, "task": {"type": "T"},
             "condition": {"expression": "${a.output.ok} == \"unterminated"}}
          ],
          "triggers": [{"type": "SCHEDULED", "schedule": "0 25 * * *"}]
        }"#,
    );
    let path = file.to_str().expect("a UTF-8 path");
    let output = run(&["validate", path]);
    assert_eq!(output.status.code(), Some(2));
    let lines = stderr_lines(&output);
    assert_eq!(lines.len(), 3, "{lines:#?}");
    for line in &lines {
        assert!(line.starts_with(&format!("{path}: ")), "{line}");
    }
    let located = |at: &str| lines.iter().any(|line| line.contains(at));
    assert!(located("steps[0] (a).task.parameters.x: "), "{lines:#?}");
    assert!(located("steps[1] (b).condition.expression: "), "{lines:#?}");
    assert!(located("triggers[0] (SCHEDULED).schedule: "), "{lines:#?}");
}

#[test]
fn validate_reports_malformed_json_with_line_and_column() {
    let file = scratch_file(
        "malformed.json",
        "{\n  \"id\": \"w\",\n  \"steps\": [,]\n}\n",
    );
    let output = run(&["validate", file.to_str().expect("a UTF-8 path")]);
    assert_eq!(output.status.code(), Some(2));
    let lines = stderr_lines(&output);
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(lines[0].contains("line 3, column"), "{}", lines[0]);
}

#[test]
fn validate_reports_an_unreadable_file() {
    let output = run(&["validate", "examples/workflows/no-such-file.json"]);
    assert_eq!(output.status.code(), Some(2));
    let lines = stderr_lines(&output);
    assert!(
        lines
            .first()
            .is_some_and(|line| line.starts_with("examples/workflows/no-such-file.json: ")),
        "{lines:#?}"
    );
}

#[test]
fn validate_with_agents_accepts_each_reference_workflow_with_its_agents() {
    for (workflow, agents) in [
        (ALGO_TRADING, "examples/agents/algo-trading.json"),
        (
            PORTFOLIO_REBALANCING,
            "examples/agents/portfolio-rebalancing.json",
        ),
    ] {
        let alone = run(&["validate", workflow]);
        let output = run(&["validate", workflow, "--agents", agents]);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{workflow}: {:?}",
            stderr_lines(&output)
        );
        assert_eq!(
            stdout(&output),
            format!(
                "{}; every step has an agent in {agents}\n",
                stdout(&alone).trim_end()
            )
        );
        assert!(output.stderr.is_empty());
    }
}

#[test]
fn validate_with_agents_names_every_step_no_agent_of_the_file_can_take() {
    // The reference agents without the risk agent, and the analyst without the
    // `technical-analysis` the workflow's first step requires.
    let agents = scratch_file(
        "agents-without-risk.json",
        r#"{"agents": [
          {"id": "ma-1", "type": "MARKET_ANALYSIS", "capabilities": ["momentum"], "tasks": {}},
          {"id": "pm-1", "type": "PORTFOLIO_MANAGEMENT", "tasks": {}},
          {"id": "exec-1", "type": "TRADING_EXECUTION", "capabilities": ["twap"], "tasks": {}}
        ]}"#,
    );
    let agents = agents.to_str().expect("a UTF-8 path");
    let output = run(&["validate", ALGO_TRADING, "--agents", agents]);
    assert_eq!(output.status.code(), Some(2));
    assert!(output.stdout.is_empty());
    assert_eq!(
        stderr_lines(&output),
        [
            format!(
                "{ALGO_TRADING}: steps[0] (market-analysis): no agent of type `MARKET_ANALYSIS` \
                 with capabilities [technical-analysis]; the type's 1 agent lacks \
                 [technical-analysis] (the agents of {agents})"
            ),
            format!(
                "{ALGO_TRADING}: steps[1] (risk-assessment): no agent of type `RISK_MANAGEMENT` \
                 (the agents of {agents})"
            ),
        ]
    );
}

#[test]
fn validate_with_agents_reports_the_problems_of_both_files_at_once() {
    let output = run(&[
        "validate",
        SEED_VERBATIM,
        "--agents",
        "examples/agents/none.json",
    ]);
    assert_eq!(output.status.code(), Some(2));
    let lines = stderr_lines(&output);
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert!(
        lines[0].starts_with(&format!("{SEED_VERBATIM}: ")),
        "{lines:#?}"
    );
    assert!(
        lines[1].starts_with("examples/agents/none.json: cannot read: "),
        "{lines:#?}"
    );

    let help = run(&["validate", "--help"]);
    assert!(
        stdout(&help).contains("--agents <AGENTS.json>"),
        "{}",
        stdout(&help)
    );
    let no_value = run(&["validate", ALGO_TRADING, "--agents"]);
    assert_eq!(no_value.status.code(), Some(2));
    assert_eq!(
        stderr_lines(&no_value).first().map(String::as_str),
        Some("tradeflow: --agents needs a value")
    );
}

#[test]
fn plan_draws_mermaid() {
    let output = run(&["plan", ALGO_TRADING, "--format", "mermaid"]);
    assert_eq!(output.status.code(), Some(0), "{:?}", stderr_lines(&output));
    let chart = stdout(&output);
    assert!(chart.starts_with("flowchart LR\n"), "{chart}");
    for step in [
        "market-analysis",
        "risk-assessment",
        "position-sizing",
        "order-execution",
        "execution-monitoring",
    ] {
        assert!(chart.contains(step), "{step} in {chart}");
    }
    // Data edges are solid arrows between node ids s<index>.
    for edge in [
        "s0 --> s1",
        "s0 --> s2",
        "s1 --> s2",
        "s1 --> s3",
        "s2 --> s3",
        "s3 --> s4",
    ] {
        assert!(chart.contains(edge), "{edge} in {chart}");
    }
}

#[test]
fn plan_draws_dot_by_default_with_order_only_edges_distinct() {
    let default = run(&["plan", PORTFOLIO_REBALANCING]);
    let flag_first = run(&["plan", "--format", "dot", PORTFOLIO_REBALANCING]);
    assert_eq!(default.status.code(), Some(0));
    assert_eq!(flag_first.status.code(), Some(0));
    let dot = stdout(&default);
    assert_eq!(dot, stdout(&flag_first));
    assert!(
        dot.starts_with("digraph \"portfolio-rebalancing\" {"),
        "{dot}"
    );
    assert!(dot.trim_end().ends_with('}'), "{dot}");
    assert!(
        dot.contains("\"portfolio-analysis\" -> \"deviation-calculation\""),
        "{dot}"
    );
    // The approval feeds no data to the execution: that edge is only listed order.
    let approval_edge = dot
        .lines()
        .find(|line| line.contains("\"execution-approval\" -> \"trade-execution\""))
        .unwrap_or_else(|| panic!("no approval -> execution edge in {dot}"));
    assert!(approval_edge.contains("style="), "{approval_edge}");
    let data_edge = dot
        .lines()
        .find(|line| line.contains("\"trade-planning\" -> \"trade-execution\""))
        .unwrap_or_else(|| panic!("no planning -> execution edge in {dot}"));
    assert!(!data_edge.contains("style="), "{data_edge}");
}

#[test]
fn plan_rejects_invalid_files_and_formats_with_exit_code_2() {
    let invalid = run(&["plan", SEED_VERBATIM, "--format", "mermaid"]);
    assert_eq!(invalid.status.code(), Some(2));
    assert!(invalid.stdout.is_empty());
    assert_eq!(stderr_lines(&invalid).len(), 1);

    let unknown_format = run(&["plan", ALGO_TRADING, "--format", "svg"]);
    assert_eq!(unknown_format.status.code(), Some(2));
    assert!(
        stderr_lines(&unknown_format)
            .iter()
            .any(|line| line.contains("svg")),
        "{:?}",
        stderr_lines(&unknown_format)
    );
}

#[test]
fn usage_errors_exit_with_code_2() {
    for args in [&[][..], &["frobnicate"][..], &["validate"][..]] {
        let output = run(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(
            stderr_lines(&output)
                .iter()
                .any(|line| line.contains("usage")),
            "{args:?}: {:?}",
            stderr_lines(&output)
        );
    }
}
