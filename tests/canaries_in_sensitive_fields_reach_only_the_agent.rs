//! A canary test: canary values planted in a sensitive input field and in a sensitive
//! output field of a scripted agent reach the agents' requests, and no byte the engine
//! or the `tradeflow` command writes — the SQLite file and its WAL, the captured
//! `tracing` output (every thread's), the audit log in the store's file, the run report, the events, the metrics a recorder
//! sees, the performance report, stdout, stderr, the effects file and `tradeflow stats`.

#[path = "support/command.rs"]
mod command;
mod support;

use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

use command::{assert_exit, run, scratch_dir, stdout};
use metrics_util::debugging::DebuggingRecorder;
use serde_json::{Value, json};
use support::engine::{Harness, assert_status, run_approving};
use support::trace::Capture;
use tradeflow::agent::{Agent, AgentDescriptor, AgentError, TaskRequest};
use tradeflow::audit::AuditLog;
use tradeflow::clock::Clock;
use tradeflow::engine::RunStatus;
use tradeflow::sim::{AgentScript, ScriptedAgent};
use tradeflow::store::SqliteStore;

/// The canary of the input (an API key).
const KEY_CANARY: &str = "CANARY-KEY-5e2b9d01";
/// The canary of an agent's output (an account number).
const ACCOUNT_CANARY: &str = "CANARY-ACCT-88c41f7a";

/// The process's subscriber: installed once, for every thread (the journal writer's
/// too), capturing everything at every level.
fn capture() -> &'static Capture {
    static CAPTURE: OnceLock<Capture> = OnceLock::new();
    CAPTURE.get_or_init(|| {
        let capture = Capture::default();
        tracing::subscriber::set_global_default(capture.subscriber())
            .expect("the only global subscriber");
        capture
    })
}

/// `login` (sends the key; its agent answers the account, and echoes the key under a
/// name that is not sensitive), `approve` (a person asked to approve the account under
/// another name), `order` (sends the account; its agent echoes it in a memo).
fn workflow() -> Value {
    json!({
        "id": "canary",
        "version": "1",
        "sensitive": ["apiKey", "account"],
        "steps": [
            {"id": "login", "type": "task", "agentCriteria": {"type": "BROKER"},
             "task": {"type": "LOGIN", "parameters": {"auth": {"apiKey": "${input.auth.apiKey}"}}},
             "retryPolicy": {"maxAttempts": 2, "initialDelayMs": 5}},
            {"id": "approve", "type": "human_approval",
             "task": {"type": "APPROVAL_REQUEST", "parameters": {"payFrom": "${login.output.account}"}}},
            {"id": "order", "type": "task", "agentCriteria": {"type": "BROKER"},
             "task": {"type": "ORDER", "parameters": {"account": "${login.output.account}", "qty": 10}}}
        ]
    })
}

fn input() -> Value {
    json!({"desk": "fx", "auth": {"apiKey": KEY_CANARY}})
}

/// The scripted broker: `LOGIN` fails once, then answers the account canary and echoes
/// the key; `ORDER` echoes the account it was sent.
fn broker_script() -> Value {
    json!({
        "id": "broker-1", "type": "BROKER", "maxConcurrency": 4,
        "tasks": {
            "LOGIN": {"fail": {"times": 1, "kind": "TEMPORARY", "message": "session busy"},
                      "output": {"account": ACCOUNT_CANARY, "echo": "${params.auth.apiKey}"}},
            "ORDER": {"output": {"filled": 10, "memo": "${params.account}"}}
        }
    })
}

/// A scripted agent whose requests are kept, to check what the agent was sent.
struct Recorded {
    agent: ScriptedAgent,
    requests: Mutex<Vec<TaskRequest>>,
}

#[tradeflow::async_trait]
impl Agent for Recorded {
    fn descriptor(&self) -> &AgentDescriptor {
        self.agent.descriptor()
    }

    async fn execute(&self, request: TaskRequest) -> Result<Value, AgentError> {
        self.requests.lock().unwrap().push(request.clone());
        self.agent.execute(request).await
    }
}

/// Every file under `dir`, by name, with its bytes (SQLite removes its `-wal` and `-shm`
/// files as its last connection closes: one gone since the listing is left out).
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|entry| {
            let path = entry.unwrap().path();
            match std::fs::read(&path) {
                Ok(bytes) => Some((path.display().to_string(), bytes)),
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
                Err(error) => panic!("{}: {error}", path.display()),
            }
        })
        .collect()
}

fn holds(bytes: &[u8], canary: &str) -> bool {
    bytes
        .windows(canary.len())
        .any(|window| window == canary.as_bytes())
}

#[track_caller]
fn assert_no_canary(what: &str, bytes: &[u8]) {
    for canary in [KEY_CANARY, ACCOUNT_CANARY] {
        assert!(
            !holds(bytes, canary),
            "{what} holds {canary}:\n{}",
            String::from_utf8_lossy(bytes)
        );
    }
}

#[test]
fn canaries_reach_the_agent_and_no_byte_of_the_journal_logs_report_events_or_metrics() {
    let capture = capture();
    let dir = scratch_dir("canary-engine");
    let db = dir.join("runs.db");
    let store = SqliteStore::open(&db).unwrap();
    // The audit log in the store's file: its bytes are searched with the journal's.
    let audit = Arc::new(store.audit_log());
    let log = Arc::clone(&audit);
    let h = Harness::with(|builder| builder.store(store).audit(log));
    let script: AgentScript = serde_json::from_value(broker_script()).unwrap();
    let clock: Arc<dyn Clock> = Arc::new(h.clock.clone());
    let broker = Arc::new(Recorded {
        agent: ScriptedAgent::new(&script, clock),
        requests: Mutex::default(),
    });
    h.engine
        .register_agent(Arc::clone(&broker) as Arc<dyn Agent>)
        .unwrap();
    h.workflow(&workflow());
    let mut events = h.engine.subscribe();
    let run = h
        .engine
        .start("canary", tradeflow::engine::RunOptions::new(input()))
        .unwrap();

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();

    let report = metrics::with_local_recorder(&recorder, || {
        run_approving(&h.clock, &h.engine, &mut events, run, "pm")
    });

    assert_status(&report, RunStatus::Completed);
    // The agent was sent both canaries.
    let requests = broker.requests.lock().unwrap().clone();
    let sent: Vec<String> = requests
        .iter()
        .map(|request| request.parameters.to_string())
        .collect();
    assert_eq!(sent.len(), 3, "{sent:#?}");
    assert!(
        sent[0].contains(KEY_CANARY) && sent[1].contains(KEY_CANARY),
        "{sent:#?}"
    );
    assert!(sent[2].contains(ACCOUNT_CANARY), "{sent:#?}");
    // The WAL as the run left it, before the engine (and its connection) goes.
    let while_open = files(&dir);
    assert!(
        while_open
            .iter()
            .any(|(name, _)| name.ends_with("runs.db-wal")),
        "WAL mode"
    );
    let recorded = snapshotter.snapshot().into_vec();
    let recorded = format!("{recorded:?}");
    assert!(
        recorded.contains("\"login\"") && recorded.contains("\"broker-1\""),
        "the recorder saw the run's steps and agent, with their labels: {recorded}"
    );
    assert_no_canary("the metrics", recorded.as_bytes());
    let performance = h.engine.generate_performance_report();
    assert_eq!(performance.workflows.len(), 1, "{performance:?}");
    let performance = serde_json::to_vec(&performance).unwrap();
    assert_no_canary("the performance report", &performance);
    let audited: Vec<&str> = audit
        .read(1, 100)
        .unwrap()
        .iter()
        .map(|entry| entry.event.kind())
        .collect();
    assert!(
        audited.contains(&"runStarted") && audited.contains(&"stepApproved"),
        "the audit log recorded the run: {audited:?}"
    );
    drop(audit);
    drop(h);
    let everything = [while_open, files(&dir)].concat();
    assert!(
        everything
            .iter()
            .map(|(_, bytes)| bytes.len())
            .sum::<usize>()
            > 0
    );
    for (name, bytes) in &everything {
        assert_no_canary(name, bytes);
    }
    assert_no_canary("the report", report.to_json_pretty().as_bytes());
    assert_no_canary("the report's Debug", format!("{report:?}").as_bytes());
    let announced = support::engine::drain(&mut events);
    assert_no_canary("the events", format!("{announced:?}").as_bytes());
    let logged = capture.text();
    assert!(
        logged.contains("tradeflow.step"),
        "tracing was captured:\n{logged}"
    );
    assert_no_canary("the tracing output", logged.as_bytes());
    // Redacted, not dropped: the fields are there with stars.
    let login = report.step("login").unwrap().output.clone().unwrap();
    assert_eq!(login, json!({"account": "***", "echo": "***"}));
}

/// The command's input files in a scratch directory (the workflow, the input, `agents`),
/// and `out/`, where the store (and any effects file) goes.
struct CommandFiles {
    _dir: command::ScratchDir,
    workflow: String,
    input: String,
    agents: String,
    out: std::path::PathBuf,
    /// `sqlite:out/runs.db`.
    store: String,
}

impl CommandFiles {
    fn new(name: &str, agents: Value) -> Self {
        let dir = scratch_dir(name);
        let write = |name: &str, value: &Value| {
            let path = dir.join(name);
            std::fs::write(&path, serde_json::to_vec_pretty(value).unwrap()).unwrap();
            path.display().to_string()
        };
        let (workflow, input) = (
            write("workflow.json", &workflow()),
            write("input.json", &input()),
        );
        let agents = write("agents.json", &agents);
        let out = dir.join("out");
        std::fs::create_dir(&out).unwrap();
        let store = format!("sqlite:{}", out.join("runs.db").display());
        Self {
            _dir: dir,
            workflow,
            input,
            agents,
            out,
            store,
        }
    }

    /// `tradeflow run` of the workflow with the input, the agents and the store, and
    /// `extra` arguments.
    fn run(&self, extra: &[&str]) -> std::process::Output {
        let mut args = vec!["run", &self.workflow, "--agents", &self.agents];
        args.extend(["--input", &self.input, "--store", &self.store]);
        args.extend(extra);
        run(&args)
    }
}

#[test]
fn canaries_reach_no_byte_the_tradeflow_command_writes() {
    let files_in = CommandFiles::new(
        "canary-command",
        json!({"agents": [broker_script()],
               "approvals": {"approve": {"approved": true, "by": "pm@desk"}}}),
    );
    let effects = files_in.out.join("effects.jsonl").display().to_string();

    let output = files_in.run(&["--effects", &effects]);

    assert_exit(&output, 0);
    let report: Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(report["status"], "COMPLETED", "{report:#}");
    assert_eq!(
        report["steps"]["order"]["output"],
        json!({"filled": 10, "memo": "***"})
    );
    assert_no_canary("stdout", &output.stdout);
    assert_no_canary("stderr", &output.stderr);
    let written = files(&files_in.out);
    assert!(
        written
            .iter()
            .any(|(name, _)| name.ends_with("effects.jsonl"))
    );
    assert!(written.iter().any(|(name, _)| name.ends_with("runs.db")));
    for (name, bytes) in &written {
        assert_no_canary(name, bytes);
    }
    let audit = run(&["audit", "list", "--store", &files_in.store]);
    assert_exit(&audit, 0);
    assert!(
        stdout(&audit).contains("runStarted") && stdout(&audit).contains("stepApproved"),
        "the command audited the run into its store: {}",
        stdout(&audit)
    );
    assert_no_canary("audit list's stdout", &audit.stdout);
    let stats = run(&["stats", "--store", &files_in.store]);
    assert_exit(&stats, 0);
    assert!(stdout(&stats).contains("\"canary\""), "{}", stdout(&stats));
    assert_no_canary("stats' stdout", &stats.stdout);
    assert_no_canary("stats' stderr", &stats.stderr);
}

#[test]
fn tradeflow_resume_leaves_a_run_whose_secrets_it_cannot_restore_naming_the_field() {
    // Nobody answers the approval: the run stays unfinished in the store.
    let files_in = CommandFiles::new("canary-resume", json!({"agents": [broker_script()]}));

    let stuck = files_in.run(&[]);
    assert_exit(&stuck, 1);
    let resumed = run(&[
        "resume",
        "--store",
        &files_in.store,
        "--agents",
        &files_in.agents,
    ]);

    assert_ne!(resumed.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&resumed.stderr);
    assert!(
        stderr.contains("cannot be resumed: its input field `/auth/apiKey` is sensitive"),
        "{stderr}"
    );
    for output in [&stuck, &resumed] {
        assert_no_canary("stdout", &output.stdout);
        assert_no_canary("stderr", &output.stderr);
    }
    for (name, bytes) in &files(&files_in.out) {
        assert_no_canary(name, bytes);
    }
}
