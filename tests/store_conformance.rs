//! One conformance suite for every `RunStore`: each behaviour is a function over
//! `&dyn RunStore`, instantiated by `conformance!` for `MemoryStore` and for
//! `SqliteStore` on a temporary file. SQLite-only behaviours (reopening, settings,
//! schema, busy and mid-transaction faults) follow in `sqlite_only`.

#[path = "support/forward.rs"]
mod forward;

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};
use serde_json::json;
use tradeflow::agent::RunId;
use tradeflow::definition::{DecisionPolicy, RecoveryStrategy};
use tradeflow::engine::{FailureKind, RecoveryDecision, RunStatus};
use tradeflow::store::{
    JournalEntry, ListingStore, MemoryStore, RunFilter, RunState, RunStore, StoreError, WriteFault,
    list_runs,
};

fn at(seconds: i64) -> DateTime<Utc> {
    "2026-01-05T09:00:00Z".parse::<DateTime<Utc>>().unwrap() + Duration::seconds(seconds)
}

fn run_started(run: &str) -> JournalEntry {
    JournalEntry::RunStarted {
        run_id: run.into(),
        workflow_id: "algo-trading".into(),
        version: "3".into(),
        input: json!({"symbols": ["AAPL", "MSFT"], "capital": 1e6}),
        seed: u64::MAX,
        at: at(0),
    }
}

fn call(run: &str, step: &str, item: Option<usize>, t: i64) -> JournalEntry {
    JournalEntry::StepStarted {
        step_id: step.into(),
        item,
        iteration: None,
        attempt: 1,
        agent_id: "agent-1".into(),
        idempotency_key: format!("{run}/{step}/{item:?}/1"),
        at: at(t),
    }
}

fn completed(step: &str, t: i64) -> JournalEntry {
    JournalEntry::StepCompleted {
        step_id: step.into(),
        output: json!({"step": step, "price": 187.25, "ratio": 0.1}),
        attempts: 1,
        agent_id: Some("agent-1".into()),
        agent_ids: None,
        approved_by: None,
        at: at(t),
    }
}

fn run_ended(t: i64) -> JournalEntry {
    JournalEntry::RunEnded {
        status: RunStatus::Completed,
        error: None,
        at: at(t),
    }
}

/// A small run's journal, one batch per transition (11 entries in 4 appends); batches
/// group the events of concurrent steps, as the engine's group commit does.
fn small_run(run: &str) -> Vec<Vec<JournalEntry>> {
    vec![
        vec![run_started(run), call(run, "analysis", None, 1)],
        vec![
            completed("analysis", 2),
            JournalEntry::Checkpoint {
                after_step: "analysis".into(),
                at: at(2),
            },
            call(run, "orders", Some(0), 3),
            call(run, "orders", Some(1), 3),
        ],
        vec![
            JournalEntry::StepCompleted {
                step_id: "orders".into(),
                output: json!([{"filled": true}, {"filled": false}]),
                attempts: 2,
                agent_id: None,
                agent_ids: Some(vec!["agent-1".into(), "agent-2".into()]),
                approved_by: None,
                at: at(4),
            },
            JournalEntry::StepWaiting {
                step_id: "approve".into(),
                parameters: json!({"notional": 250_000}),
                at: at(4),
            },
        ],
        vec![
            JournalEntry::StepAnswered {
                step_id: "approve".into(),
                approved: true,
                by: "alice".into(),
                comment: Some("ok".into()),
                at: at(5),
            },
            JournalEntry::RecoveryDecided {
                step_id: "orders".into(),
                decision: RecoveryDecision {
                    strategy: RecoveryStrategy::Retry,
                    confidence: 0.1 + 0.2,
                    cost: 1.0 / 3.0,
                    score: 0.25,
                    kind: FailureKind::Temporary,
                    message: "venue timeout".into(),
                },
                at: at(5),
            },
            run_ended(6),
        ],
    ]
}

fn append_all(store: &dyn RunStore, run: &RunId, batches: &[Vec<JournalEntry>]) {
    for batch in batches {
        store.append(run, batch).unwrap();
    }
}

// ----- The suite: every store must pass each of these. -----

fn appends_load_back_in_order(store: &dyn RunStore) {
    let run = RunId::from("r1");
    let batches = small_run("r1");
    append_all(store, &run, &batches);
    let loaded = store.load(&run).unwrap();
    assert_eq!(
        loaded,
        batches.concat(),
        "entries read back as written, in order"
    );
    let state = RunState::fold(&loaded).unwrap();
    assert_eq!(state.status, RunStatus::Completed);

    assert!(store.load(&RunId::from("never")).unwrap().is_empty());
    store.append(&RunId::from("never"), &[]).unwrap();
    assert!(store.load(&RunId::from("never")).unwrap().is_empty());
    assert!(store.unfinished_runs().unwrap().is_empty());
}

fn an_invalid_entry_fails_the_whole_append(store: &dyn RunStore) {
    let run = RunId::from("r1");
    store.append(&run, &[run_started("r1")]).unwrap();
    let mut batch = small_run("r1")[1].clone();
    batch.insert(
        2,
        JournalEntry::RecoveryDecided {
            step_id: "orders".into(),
            decision: RecoveryDecision {
                strategy: RecoveryStrategy::Skip,
                confidence: f64::NAN,
                cost: 0.0,
                score: 0.25,
                kind: FailureKind::Temporary,
                message: "venue timeout".into(),
            },
            at: at(2),
        },
    );
    let error = store.append(&run, &batch).unwrap_err();
    assert!(
        matches!(&error, StoreError::Invalid { run, position: 2, .. } if run == "r1"),
        "{error:?}"
    );
    assert_eq!(store.load(&run).unwrap(), [run_started("r1")]);

    let error = store
        .append(&RunId::from("r2"), &[run_started("r1")])
        .unwrap_err();
    assert!(
        matches!(error, StoreError::Invalid { position: 0, .. }),
        "{error:?}"
    );
    assert!(store.load(&RunId::from("r2")).unwrap().is_empty());
    assert_eq!(store.unfinished_runs().unwrap(), ["r1"]);
}

fn unfinished_runs_are_listed_in_start_order(store: &dyn RunStore) {
    for run in ["b", "a", "d", "c"] {
        store
            .append(&RunId::from(run), &[run_started(run)])
            .unwrap();
    }
    // Started and ended in one append: never listed.
    store
        .append(&RunId::from("e"), &[run_started("e"), run_ended(1)])
        .unwrap();
    store
        .append(&RunId::from("a"), &[completed("x", 1), run_ended(2)])
        .unwrap();
    // More entries do not move a run; a second start is refused, and nothing of its
    // append is stored.
    store
        .append(&RunId::from("b"), &[completed("x", 1)])
        .unwrap();
    let again = store.append(&RunId::from("b"), &[run_started("b")]);
    assert!(
        matches!(&again, Err(StoreError::RunExists { run }) if run == "b"),
        "{again:?}"
    );
    assert_eq!(store.load(&RunId::from("b")).unwrap().len(), 2);
    // Entries of a run that never started do not list it.
    store
        .append(&RunId::from("f"), &[completed("x", 1)])
        .unwrap();
    assert_eq!(store.unfinished_runs().unwrap(), ["b", "d", "c"]);
}

fn every_run_is_listed_in_start_order(store: &dyn ListingStore) {
    assert!(store.runs().unwrap().is_empty());
    for run in ["b", "a", "d"] {
        store
            .append(&RunId::from(run), &[run_started(run)])
            .unwrap();
    }
    // Ended runs stay listed, where they started; a run that never started is not.
    store
        .append(&RunId::from("c"), &[run_started("c"), run_ended(1)])
        .unwrap();
    store.append(&RunId::from("a"), &[run_ended(2)]).unwrap();
    store
        .append(&RunId::from("f"), &[completed("x", 1)])
        .unwrap();
    assert_eq!(store.runs().unwrap(), ["b", "a", "d", "c"]);
    let listing = list_runs(store, &RunFilter::new().status(RunStatus::Completed)).unwrap();
    let ended: Vec<&str> = listing.runs.iter().map(|run| run.run_id.as_str()).collect();
    assert_eq!(ended, ["c", "a"], "newest first");
}

fn started_runs_are_listed_in_start_order_finished_or_not(store: &dyn RunStore) {
    for run in ["b", "a", "c"] {
        store
            .append(&RunId::from(run), &[run_started(run)])
            .unwrap();
    }
    store
        .append(&RunId::from("a"), &[completed("x", 1), run_ended(2)])
        .unwrap();
    // Entries of a run that never started do not list it.
    store
        .append(&RunId::from("f"), &[completed("x", 1)])
        .unwrap();
    assert_eq!(store.started_runs().unwrap(), ["b", "a", "c"]);
}

fn definitions_are_kept_by_id_and_version(store: &dyn RunStore) {
    store
        .put_definition("momentum", "1", r#"{"id":"momentum","v":1}"#)
        .unwrap();
    store
        .put_definition("momentum", "2", r#"{"id":"momentum","v":2}"#)
        .unwrap();
    store
        .put_definition("hedge", "1", r#"{"id":"hedge"}"#)
        .unwrap();
    // Putting the same text again is a no-op; other text under a kept version is refused.
    store
        .put_definition("momentum", "1", r#"{"id":"momentum","v":1}"#)
        .unwrap();
    let error = store
        .put_definition("momentum", "1", r#"{"id":"momentum","v":9}"#)
        .unwrap_err();
    assert!(
        matches!(&error, StoreError::Conflict { id, version } if id == "momentum" && version == "1"),
        "{error:?}"
    );
    assert_eq!(
        store.definition("momentum", "1").unwrap().as_deref(),
        Some(r#"{"id":"momentum","v":1}"#)
    );
    assert_eq!(
        store.definition("momentum", "2").unwrap().as_deref(),
        Some(r#"{"id":"momentum","v":2}"#)
    );
    assert_eq!(
        store.definition("hedge", "1").unwrap().as_deref(),
        Some(r#"{"id":"hedge"}"#)
    );
    assert_eq!(store.definition("momentum", "3").unwrap(), None);
    assert_eq!(store.definition("nope", "1").unwrap(), None);
}

/// Fails, once, the append holding the `fail_at`-th entry written (from 1), as a full
/// disk would, and passes every other append through.
#[derive(Debug)]
struct FailingStore<'a> {
    inner: &'a dyn RunStore,
    fail_at: usize,
    /// Entries written so far, and whether the fault fired.
    progress: Mutex<(usize, bool)>,
}

impl RunStore for FailingStore<'_> {
    fn append(&self, run: &RunId, entries: &[JournalEntry]) -> Result<(), StoreError> {
        let mut progress = self.progress.lock().unwrap();
        let (written, fired) = &mut *progress;
        if !*fired && (*written + 1..=*written + entries.len()).contains(&self.fail_at) {
            *fired = true;
            return Err(StoreError::Write {
                run: run.clone(),
                step: entries.iter().find_map(JournalEntry::step_id).cloned(),
                fault: WriteFault::Full,
                source: "injected fault".into(),
            });
        }
        self.inner.append(run, entries)?;
        *written += entries.len();
        Ok(())
    }

    fn commit(
        &self,
        appends: &[tradeflow::store::Append<'_>],
        until: chrono::DateTime<chrono::Utc>,
    ) -> Vec<Result<(), StoreError>> {
        self.inner.commit(appends, until)
    }

    forward_store!(inner);
}

/// Journals a small run through `store` (which fails one append) and checks that after
/// the failure exactly the successful appends are stored, that appending the failed
/// batch again succeeds, and that the run then completes. Returns how many faults fired.
fn journal_through_a_fault(store: &dyn RunStore, inner: &dyn RunStore, run: &RunId) -> usize {
    let batches = small_run(run.as_str());
    let mut faults = 0;
    for (index, batch) in batches.iter().enumerate() {
        if let Err(error) = store.append(run, batch) {
            faults += 1;
            let step = batch.iter().find_map(JournalEntry::step_id);
            assert!(
                matches!(&error, StoreError::Write { run: r, step: s, .. } if r == run && s.as_ref() == step),
                "the error names the run and the batch's first step: {error:?}"
            );
            assert_eq!(
                inner.load(run).unwrap(),
                batches[..index].concat(),
                "nothing partial"
            );
            let listed = inner.unfinished_runs().unwrap().contains(run);
            assert_eq!(listed, index > 0, "listed only once its start is stored");
            store
                .append(run, batch)
                .expect("appending again after the fault succeeds");
        }
    }
    assert_eq!(inner.load(run).unwrap(), batches.concat());
    assert_eq!(
        RunState::fold(&inner.load(run).unwrap()).unwrap().status,
        RunStatus::Completed
    );
    assert!(!inner.unfinished_runs().unwrap().contains(run));
    faults
}

fn a_failed_write_keeps_nothing_and_the_next_append_succeeds(store: &dyn RunStore) {
    let entries = small_run("x").concat().len();
    for fail_at in 1..=entries {
        let failing = FailingStore {
            inner: store,
            fail_at,
            progress: Mutex::new((0, false)),
        };
        let run = RunId::from(format!("fault-{fail_at}"));
        assert_eq!(
            journal_through_a_fault(&failing, store, &run),
            1,
            "k = {fail_at}"
        );
    }
    assert!(store.unfinished_runs().unwrap().is_empty());
}

fn concurrent_appends_to_different_runs_all_land(store: &dyn RunStore) {
    const THREADS: usize = 8;
    const APPENDS: usize = 10;
    let done = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for thread in 0..THREADS {
            let done = &done;
            scope.spawn(move || {
                let run = RunId::from(format!("t{thread}"));
                store.append(&run, &[run_started(run.as_str())]).unwrap();
                for i in 0..APPENDS {
                    let step = format!("s{i}");
                    let t = i64::try_from(i).unwrap();
                    store
                        .append(
                            &run,
                            &[call(run.as_str(), &step, None, t), completed(&step, t)],
                        )
                        .unwrap();
                }
                done.fetch_add(1, Ordering::Relaxed);
            });
        }
    });
    assert_eq!(done.load(Ordering::Relaxed), THREADS);
    for thread in 0..THREADS {
        let run = RunId::from(format!("t{thread}"));
        let journal = store.load(&run).unwrap();
        assert_eq!(journal.len(), 1 + 2 * APPENDS);
        let steps: Vec<String> = journal[1..]
            .iter()
            .map(|entry| entry.step_id().unwrap().to_string())
            .collect();
        let expected: Vec<String> = (0..APPENDS)
            .flat_map(|i| [format!("s{i}"), format!("s{i}")])
            .collect();
        assert_eq!(
            steps, expected,
            "each run's entries in its own append order"
        );
    }
    let mut unfinished: Vec<String> = store
        .unfinished_runs()
        .unwrap()
        .iter()
        .map(ToString::to_string)
        .collect();
    unfinished.sort();
    assert_eq!(
        unfinished,
        (0..THREADS).map(|t| format!("t{t}")).collect::<Vec<_>>()
    );
}

// ----- Fixtures and instantiation. -----

/// A store, and the temporary directory it lives in (removed after the store closes).
struct Fixture<S> {
    store: S,
    _dir: Option<TempDir>,
}

/// A temporary directory under the target directory, removed when dropped.
struct TempDir(PathBuf);

#[cfg(feature = "sqlite")]
impl TempDir {
    fn new() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "store-conformance-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn memory() -> Fixture<MemoryStore> {
    Fixture {
        store: MemoryStore::new(),
        _dir: None,
    }
}

#[cfg(feature = "sqlite")]
fn decided(step: &str) -> JournalEntry {
    JournalEntry::DecisionMade {
        step_id: step.into(),
        option: "vwap".into(),
        context_key: String::new(),
        policy: DecisionPolicy::Ucb1,
        prior_scores: [("vwap".to_owned(), 1.0)].into(),
        at: at(1),
    }
}

fn learned(step: &str, reported: bool) -> JournalEntry {
    JournalEntry::RewardLearned {
        step_id: step.into(),
        reward: 0.75,
        reported,
        at: at(2),
    }
}

fn rewarded_runs_are_listed_in_start_order(store: &dyn RunStore) {
    for run in ["b", "a", "c", "d"] {
        store
            .append(&RunId::from(run), &[run_started(run), decided("x")])
            .unwrap();
    }
    store
        .append(&RunId::from("c"), &[learned("x", false), run_ended(3)])
        .unwrap();
    // A reward the host reports after the run ended is kept, and lists the run.
    store.append(&RunId::from("a"), &[run_ended(3)]).unwrap();
    store
        .append(&RunId::from("a"), &[learned("x", true)])
        .unwrap();
    // A missing reward does not.
    let missing = JournalEntry::RewardMissing {
        step_id: "x".into(),
        reason: "skipped".into(),
        at: at(2),
    };
    store.append(&RunId::from("d"), &[missing]).unwrap();
    assert_eq!(store.rewarded_runs().unwrap(), ["a", "c"]);
    let a = RunState::fold(&store.load(&RunId::from("a")).unwrap()).unwrap();
    assert_eq!(a.decisions["x"].reward, Some(0.75));
    // A reward that JSON cannot carry is refused, and nothing of its append is stored.
    let nan = JournalEntry::RewardLearned {
        step_id: "x".into(),
        reward: f64::NAN,
        reported: false,
        at: at(2),
    };
    let refused = store.append(&RunId::from("b"), &[nan]);
    assert!(
        matches!(refused, Err(StoreError::Invalid { .. })),
        "{refused:?}"
    );
    assert_eq!(store.rewarded_runs().unwrap(), ["a", "c"]);
}

fn sqlite() -> Fixture<tradeflow::store::SqliteStore> {
    let dir = TempDir::new();
    Fixture {
        store: tradeflow::store::SqliteStore::open(dir.0.join("runs.db")).unwrap(),
        _dir: Some(dir),
    }
}

macro_rules! conformance {
    ($($(#[$meta:meta])* $store:ident => $open:expr;)*) => {$(
        $(#[$meta])*
        mod $store {
            conformance!(@tests $open =>
                appends_load_back_in_order,
                an_invalid_entry_fails_the_whole_append,
                unfinished_runs_are_listed_in_start_order,
                started_runs_are_listed_in_start_order_finished_or_not,
                rewarded_runs_are_listed_in_start_order,
                every_run_is_listed_in_start_order,
                definitions_are_kept_by_id_and_version,
                a_failed_write_keeps_nothing_and_the_next_append_succeeds,
                concurrent_appends_to_different_runs_all_land,
            );
        }
    )*};
    (@tests $open:expr => $($test:ident),* $(,)?) => {$(
        #[test]
        fn $test() {
            let fixture = $open;
            super::$test(&fixture.store);
        }
    )*};
}

conformance! {
    memory_store => super::memory();
    #[cfg(feature = "sqlite")]
    sqlite_store => super::sqlite();
}

#[test]
fn arc_and_box_forward_to_the_store() {
    let shared: Arc<dyn RunStore> = Arc::new(MemoryStore::new());
    appends_load_back_in_order(&shared);
    let boxed: Box<dyn RunStore> = Box::new(MemoryStore::new());
    definitions_are_kept_by_id_and_version(&boxed);
    let listing: Arc<dyn ListingStore> = Arc::new(MemoryStore::new());
    every_run_is_listed_in_start_order(&listing);
    let listing: Box<dyn ListingStore> = Box::new(MemoryStore::new());
    every_run_is_listed_in_start_order(&listing);
}

#[cfg(feature = "sqlite")]
mod sqlite_only {
    use std::time::Duration;

    use rusqlite::Connection;
    use tradeflow::store::SqliteStore;

    use super::*;

    #[test]
    fn a_reopened_store_finds_everything() {
        let dir = TempDir::new();
        let path = dir.0.join("runs.db");
        let batches = small_run("done");
        {
            let store = SqliteStore::open(&path).unwrap();
            append_all(&store, &RunId::from("done"), &batches);
            store
                .append(&RunId::from("late"), &[run_started("late")])
                .unwrap();
            store
                .append(&RunId::from("early"), &[run_started("early")])
                .unwrap();
            store.put_definition("momentum", "1", "{}").unwrap();
        }
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(store.path(), path);
        assert_eq!(store.load(&RunId::from("done")).unwrap(), batches.concat());
        assert_eq!(store.unfinished_runs().unwrap(), ["late", "early"]);
        assert_eq!(
            store.definition("momentum", "1").unwrap().as_deref(),
            Some("{}")
        );
        // Positions and start order carry on from the file.
        store
            .append(&RunId::from("late"), &[completed("a", 1)])
            .unwrap();
        store
            .append(&RunId::from("newest"), &[run_started("newest")])
            .unwrap();
        assert_eq!(
            store.load(&RunId::from("late")).unwrap(),
            [run_started("late"), completed("a", 1)]
        );
        assert_eq!(
            store.unfinished_runs().unwrap(),
            ["late", "early", "newest"]
        );
    }

    #[test]
    fn the_file_is_in_wal_mode_at_schema_version_4() {
        let dir = TempDir::new();
        let path = dir.0.join("runs.db");
        let _store = SqliteStore::open(&path).unwrap();
        let raw = Connection::open(&path).unwrap();
        let mode: String = raw
            .query_row("PRAGMA journal_mode", [], |row| row.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let version: i64 = raw
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .unwrap();
        assert_eq!(version, 4);
        let tables: Vec<String> = raw
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            tables,
            [
                "audit",
                "definitions",
                "events",
                "heads",
                "rewarded",
                "runs"
            ]
        );
    }

    #[test]
    fn a_store_that_cannot_be_wal_refuses_to_start() {
        // SQLite keeps an in-memory database in journal mode `memory`, never `wal`.
        let error = SqliteStore::open(":memory:").unwrap_err();
        assert!(
            matches!(
                &error,
                StoreError::Settings { pragma: "journal_mode", wanted, got, .. }
                    if wanted == "wal" && got == "memory"
            ),
            "{error:?}"
        );
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = TempDir::new();
        let path = dir.0.join("runs.db");
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", 99)
            .unwrap();
        let error = SqliteStore::open(&path).unwrap_err();
        assert!(
            matches!(
                error,
                StoreError::Schema {
                    found: 99,
                    supported: 4,
                    ..
                }
            ),
            "{error:?}"
        );
    }

    #[test]
    fn a_corrupt_entry_is_reported_with_its_position() {
        let fixture = sqlite();
        let run = RunId::from("r1");
        append_all(&fixture.store, &run, &small_run("r1")[..1]);
        Connection::open(fixture.store.path())
            .unwrap()
            .execute(
                "UPDATE events SET body = '{\"type\":\"fromTheFuture\"}' WHERE seq = 1",
                [],
            )
            .unwrap();
        // Changed behind the store's back: its checksum no longer matches.
        let error = fixture.store.load(&run).unwrap_err();
        assert!(
            matches!(&error, StoreError::Damaged { run, position: 1, .. } if run == "r1"),
            "{error:?}"
        );
    }

    #[test]
    fn a_busy_store_fails_writes_naming_the_run_and_still_reads() {
        let dir = TempDir::new();
        let path = dir.0.join("runs.db");
        let store = SqliteStore::builder()
            .busy_timeout(Duration::from_millis(20))
            .open(&path)
            .unwrap();
        let run = RunId::from("r1");
        let batches = small_run("r1");
        store.append(&run, &batches[0]).unwrap();

        let other = Connection::open(&path).unwrap();
        other.execute_batch("BEGIN IMMEDIATE").unwrap();
        let error = store.append(&run, &batches[1]).unwrap_err();
        assert!(
            matches!(
                &error,
                StoreError::Write { run, step: Some(step), fault: WriteFault::Busy, .. }
                    if run == "r1" && step == "analysis"
            ),
            "{error:?}"
        );
        assert_eq!(
            error.to_string(),
            "cannot append to run `r1` at step `analysis`: busy"
        );
        let error = store.put_definition("w", "1", "{}").unwrap_err();
        assert!(
            matches!(
                error,
                StoreError::WriteDefinition {
                    fault: WriteFault::Busy,
                    ..
                }
            ),
            "{error:?}"
        );
        // WAL: readers are not blocked by the writer.
        assert_eq!(store.load(&run).unwrap(), batches[0]);
        other.execute_batch("ROLLBACK").unwrap();

        append_all(&store, &run, &batches[1..]);
        assert_eq!(store.load(&run).unwrap(), batches.concat());
    }

    /// A real failure inside the store's transaction: a trigger aborts the insert of one
    /// chosen event row, after the rows before it in the same append were inserted (and
    /// the `runs` row, when the append started the run). The store must roll all of it
    /// back, for every k.
    #[test]
    fn a_transaction_failing_midway_keeps_nothing() {
        let fixture = sqlite();
        let store = &fixture.store;
        let raw = Connection::open(store.path()).unwrap();
        raw.execute_batch(
            "CREATE TABLE faults (run_id TEXT, seq INTEGER);
             CREATE TRIGGER inject_fault BEFORE INSERT ON events
             WHEN EXISTS (SELECT 1 FROM faults WHERE run_id = NEW.run_id AND seq = NEW.seq)
             BEGIN SELECT RAISE(ABORT, 'injected fault'); END;",
        )
        .unwrap();
        let raw = Mutex::new(raw);

        /// Clears the fault once it fired, so that appending again can succeed.
        #[derive(Debug)]
        struct ClearingFault<'a>(&'a SqliteStore, &'a Mutex<Connection>);

        impl RunStore for ClearingFault<'_> {
            fn append(&self, run: &RunId, entries: &[JournalEntry]) -> Result<(), StoreError> {
                let result = self.0.append(run, entries);
                if result.is_err() {
                    self.1
                        .lock()
                        .unwrap()
                        .execute("DELETE FROM faults", [])
                        .unwrap();
                }
                result
            }
            fn commit(
                &self,
                appends: &[tradeflow::store::Append<'_>],
                until: chrono::DateTime<chrono::Utc>,
            ) -> Vec<Result<(), StoreError>> {
                self.0.commit(appends, until)
            }

            crate::forward_store!(0);
        }

        let entries = small_run("x").concat().len();
        for k in 1..=entries {
            let run = RunId::from(format!("fault-{k}"));
            raw.lock()
                .unwrap()
                .execute(
                    "INSERT INTO faults (run_id, seq) VALUES (?1, ?2)",
                    rusqlite::params![run.as_str(), i64::try_from(k - 1).unwrap()],
                )
                .unwrap();
            let clearing = ClearingFault(store, &raw);
            assert_eq!(
                journal_through_a_fault(&clearing, store, &run),
                1,
                "k = {k}"
            );
        }
    }
}
