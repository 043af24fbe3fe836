//! Every message quotes user text on one line and at a bounded length: control characters
//! are escaped and long text is cut (`…(10485760 bytes)`), in the library's messages and
//! in what `tradeflow validate` prints, while the typed errors keep the full text.

#[path = "support/command.rs"]
mod command;
mod support;

use serde_json::{Value, json};
use support::{errors_in, task, with, workflow};
use tradeflow::definition::{DefinitionError, Quoted};
use tradeflow::scheduler::Timeline;
use tradeflow::sim::AgentsFile;

/// A step id of 10 MiB that is not a valid id (it ends with a newline).
fn huge_id() -> String {
    let mut id = "x".repeat(10 * 1024 * 1024);
    id.push('\n');
    id
}

/// A workflow whose problems all quote text with newlines, tabs, an ANSI escape or
/// 10 MiB: step ids, a dependency, an unknown field, an unknown value, a binding, an
/// expression, a cron pattern and a time zone.
fn hostile_workflow(huge: &str) -> Value {
    let mut steps = vec![
        task("a\nb\nc\nd"),
        task("t\tab"),
        task("\u{1b}[31mred"),
        task(huge),
        task(huge),
        with(
            task("ok"),
            json!({
                "condition": {"expression": "${nope\n.output.x} == 1"},
                "skipCondition": {"expression": "a\u{1b}[2J == == 1"},
            }),
        ),
    ];
    steps.push(json!({"id": "typed", "type": "tsk\n\u{1b}[0m"}));
    with(
        workflow(steps),
        json!({
            "dependencies": [{"from": huge, "to": "gone\r\nfake: line"}],
            "colour\n": 1,
            "triggers": [
                {"type": "SCHEDULED", "schedule": "0 0 \u{1b} * *"},
                {"type": "SCHEDULED", "schedule": "0 0 * * *", "timezone": "New\nYork"},
            ],
        }),
    )
}

/// Panics unless `text` is one line: no control character, no line or paragraph
/// separator.
#[track_caller]
fn assert_one_line(text: &str) {
    let bad = text
        .chars()
        .find(|c| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}'));
    assert!(bad.is_none(), "{bad:?} in {:?}", Quoted(text).to_string());
}

#[test]
fn definition_errors_quote_user_text_on_one_bounded_line_and_keep_it_whole() {
    let huge = huge_id();
    let errors = errors_in(&hostile_workflow(&huge));
    assert!(errors.len() >= 6, "{errors:#?}");
    for error in &errors {
        let message = error.to_string();
        assert_one_line(&message);
        assert!(message.len() < 4096, "{} bytes", message.len());
    }
    let messages: Vec<String> = errors.iter().map(ToString::to_string).collect();
    let all = messages.join("\n");
    assert!(all.contains(r"steps[0] (a\nb\nc\nd).id: invalid step id `a\nb\nc\nd`"));
    assert!(all.contains(r"steps[1] (t\tab).id"));
    assert!(all.contains(r"steps[2] (\u{1b}[31mred).id"));
    assert!(all.contains(&format!("x…({} bytes)", huge.len())), "{all}");

    // The typed errors keep the full text.
    let invalid_ids: Vec<&str> = errors
        .iter()
        .filter_map(|error| match error {
            DefinitionError::InvalidStepId { id, .. } => Some(id.as_str()),
            _ => None,
        })
        .collect();
    assert!(invalid_ids.contains(&"a\nb\nc\nd"), "{invalid_ids:?}");
    assert!(invalid_ids.contains(&huge.as_str()));
    let located = errors
        .iter()
        .filter_map(DefinitionError::location)
        .filter_map(|at| at.step_id())
        .any(|id| id.as_str() == huge);
    assert!(located, "a location keeps the whole step id");
}

#[test]
fn the_other_loaders_quote_user_text_on_one_line() {
    let agents = json!({
        "agents": [{"id": "a", "type": "T", "tasks": {"T\n\u{1b}[1m": {"outputs": []}}}],
        "approvals": {"bad\nstep": {"decision": "APPROVE"}},
        "resources": {"cpu\n": -1},
    });
    let errors = AgentsFile::from_json(&agents.to_string()).unwrap_err();
    let timeline = json!({"start\n": 1, "context": {"\u{1b}[2J": 1}});
    let timeline_errors = Timeline::from_json(&timeline.to_string()).unwrap_err();
    for error in errors.iter().chain(&timeline_errors) {
        let message = error.to_string();
        assert_one_line(&message);
        assert!(message.len() < 4096);
    }
    assert!(errors.len() >= 3, "{errors}");
    assert!(!timeline_errors.is_empty());
}

#[test]
fn tradeflow_validate_prints_one_short_line_a_problem() {
    let dir = command::scratch_dir("messages-stay-on-one-line");
    let huge = huge_id();
    let path = command::write(&dir, "hostile.json", &hostile_workflow(&huge));
    let output = command::run(&["validate", &path]);
    command::assert_exit(&output, 2);
    let expected = errors_in(&hostile_workflow(&huge)).len();
    let stderr = String::from_utf8(output.stderr.clone()).expect("UTF-8 stderr");
    assert!(stderr.len() < 64 * 1024, "{} bytes of stderr", stderr.len());
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), expected, "{stderr}");
    for line in lines {
        assert!(line.starts_with(&path), "{line}");
        assert_one_line(line);
    }
}

#[test]
fn a_single_huge_bad_id_prints_a_small_stderr() {
    let dir = command::scratch_dir("a-single-huge-bad-id");
    let huge = huge_id();
    let path = command::write(&dir, "huge.json", &workflow([task(&huge)]));
    let output = command::run(&["validate", &path]);
    command::assert_exit(&output, 2);
    let lines = command::stderr_lines(&output);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(output.stderr.len() < 1024, "{} bytes", output.stderr.len());
    assert!(lines[0].contains("…(10485761 bytes)"), "{}", lines[0]);
}

#[test]
fn tradeflow_validate_summarizes_a_valid_workflow_on_one_line() {
    let dir = command::scratch_dir("valid-summary-on-one-line");
    let mut valid = workflow([task("a")]);
    valid["id"] = json!("w\nx");
    valid["name"] = json!("name\u{1b}[2J");
    valid["version"] = json!("1\r\n2");
    let path = command::write(&dir, "valid.json", &valid);
    let output = command::run(&["validate", &path]);
    command::assert_exit(&output, 0);
    assert_eq!(
        command::stdout(&output),
        format!(
            "{path}: valid: w\\nx v1\\r\\n2 (name\\u{{1b}}[2J): 1 steps, 0 edges, 0 triggers\n"
        )
    );
}
