//! `tradeflow run` and `tradeflow resume` refuse bad arguments and bad files with exit
//! code 2 and a message naming the problem, before they run anything or create a store.

use std::path::Path;
use std::process::Output;

#[path = "support/command.rs"]
mod command;

use command::{run, scratch_dir, stderr_lines};

const WORKFLOW: &str = "examples/workflows/algo-trading.json";
const AGENTS: &str = "examples/agents/algo-trading.json";

/// Asserts exit code 2 with a stderr line containing every one of `needles`.
#[track_caller]
fn assert_refused(output: &Output, needles: &[&str]) {
    let lines = stderr_lines(output);
    assert_eq!(output.status.code(), Some(2), "{lines:#?}");
    assert!(output.stdout.is_empty(), "nothing on stdout");
    assert!(
        lines
            .iter()
            .any(|line| needles.iter().all(|needle| line.contains(needle))),
        "no line with {needles:?} in {lines:#?}"
    );
}

fn text(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

#[test]
fn a_store_that_is_not_sqlite_path_is_refused() {
    let dir = scratch_dir("bad-arguments-store");
    let db = dir.join("runs.db");
    for store in [text(&db), "postgres://localhost/runs", "sqlite:"] {
        let output = run(&["run", WORKFLOW, "--agents", AGENTS, "--store", store]);
        assert_refused(&output, &["--store", "sqlite:PATH"]);
        let output = run(&["resume", "--store", store]);
        assert_refused(&output, &["--store", "sqlite:PATH"]);
    }
    assert!(!db.exists(), "no store was created");
}

#[test]
fn run_needs_a_store_agents_and_a_workflow() {
    let output = run(&["run", WORKFLOW, "--agents", AGENTS]);
    assert_refused(&output, &["run needs --store sqlite:PATH"]);
    let output = run(&["run", WORKFLOW, "--store", "sqlite:unused.db"]);
    assert_refused(&output, &["run needs --agents"]);
    let output = run(&["run", "--agents", AGENTS, "--store", "sqlite:unused.db"]);
    assert_refused(&output, &["run needs a WORKFLOW.json"]);
    let output = run(&["run", WORKFLOW, "--agents", AGENTS, "--store"]);
    assert_refused(&output, &["--store needs a value"]);
    let output = run(&[
        "run",
        WORKFLOW,
        "--agents",
        AGENTS,
        "--store",
        "sqlite:a.db",
        "--seed",
        "1",
    ]);
    assert_refused(&output, &["run has no option `--seed`"]);
    assert!(
        !Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("unused.db")
            .exists()
    );
}

#[test]
fn resume_needs_a_store_that_exists() {
    let output = run(&["resume"]);
    assert_refused(&output, &["resume needs --store sqlite:PATH"]);
    let output = run(&["resume", "extra", "--store", "sqlite:x.db"]);
    assert_refused(&output, &["unexpected argument `extra`"]);
    let dir = scratch_dir("bad-arguments-resume");
    let missing = dir.join("missing.db");
    let output = run(&["resume", "--store", &format!("sqlite:{}", text(&missing))]);
    assert_refused(&output, &[text(&missing), "no such store"]);
    assert!(!missing.exists(), "no store was created");
}

#[test]
fn invalid_files_are_refused_before_the_store_is_created() {
    let dir = scratch_dir("bad-arguments-files");
    let db = dir.join("runs.db");
    let store = format!("sqlite:{}", text(&db));
    let missing = dir.join("missing.json");
    let output = run(&["run", text(&missing), "--agents", AGENTS, "--store", &store]);
    assert_refused(&output, &[text(&missing), "cannot read"]);
    let invalid = "examples/workflows/invalid/seed-portfolio-rebalancing-verbatim.json";
    let output = run(&["run", invalid, "--agents", AGENTS, "--store", &store]);
    assert_refused(&output, &[invalid]);
    let output = run(&[
        "run",
        WORKFLOW,
        "--agents",
        text(&missing),
        "--store",
        &store,
    ]);
    assert_refused(&output, &[text(&missing), "cannot read"]);
    assert!(!db.exists(), "no store was created");
}

#[cfg(feature = "sqlite")]
#[test]
fn a_file_that_is_not_a_store_is_refused() {
    let dir = scratch_dir("bad-arguments-not-a-store");
    let not_a_store = dir.join("notes.txt");
    std::fs::write(
        &not_a_store,
        "not a database, but long enough to look like a file\n".repeat(20),
    )
    .expect("write a file");
    let store = format!("sqlite:{}", text(&not_a_store));
    let output = run(&["run", WORKFLOW, "--agents", AGENTS, "--store", &store]);
    assert_refused(&output, &[text(&not_a_store), "cannot open the store"]);
    let output = run(&["resume", "--store", &store]);
    assert_refused(&output, &[text(&not_a_store), "cannot open the store"]);
}
