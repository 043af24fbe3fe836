//! The journal writer: a thread that appends every run's batches to the store.
//!
//! Runs send their batches over a channel and await the reply, so no executor thread
//! ever waits for a disk. The writer takes every batch waiting, of every run, commits
//! them in one call to [`RunStore::commit`] (one transaction, one sync, for SQLite) and
//! replies to each. A failed append is retried here, boundedly; the reply tells the run
//! what finally happened. Between commits, the writer renews the leases of the runs it
//! writes for, on a heartbeat: a run whose lease was taken is told (its batch is lost).

use std::collections::{HashMap, HashSet};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::thread;
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::channel::oneshot;

use super::{Batch, Lost};
use crate::clock::add_saturating;
use crate::metrics::CommitTimer;
use crate::run::RunId;
use crate::store::{Append, JournalEntry, Lease, RunStore, StoreError, WriteFault};

/// The most batches committed in one transaction.
const MAX_GROUP: usize = 1024;

/// A request to the writer.
enum Request {
    /// Append a run's entries, then reply.
    Commit {
        batch: Arc<Batch>,
        entries: Vec<JournalEntry>,
        reply: oneshot::Sender<Result<(), Lost>>,
    },
    /// The run ended or was dropped: stop renewing its lease.
    Forget(RunId),
}

/// The handle runs use to reach the writer thread; the thread ends when the last
/// handle is dropped (after answering what was sent).
#[derive(Debug)]
pub(crate) struct Writer {
    sender: Mutex<Sender<Request>>,
}

impl Writer {
    /// Starts the writer thread for `store`: leases last `lease`, renewed every
    /// `heartbeat`.
    /// Each commit is timed by `timer`.
    pub(crate) fn start(
        store: Arc<dyn RunStore>,
        lease: Duration,
        heartbeat: Duration,
        timer: CommitTimer,
    ) -> Self {
        let (sender, requests) = mpsc::channel();
        let spawned = thread::Builder::new()
            .name("tradeflow-journal".to_owned())
            .spawn(move || write(&*store, &requests, lease, heartbeat, &timer));
        if let Err(error) = spawned {
            // Without a writer every append fails (the channel is closed): runs stop
            // with kind STORE rather than run unjournaled.
            tracing::error!(error = %error, "cannot start the journal writer thread");
        }
        Self {
            sender: Mutex::new(sender),
        }
    }

    fn send(&self, request: Request) -> bool {
        self.sender
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .send(request)
            .is_ok()
    }

    /// Appends `entries` for the run of `batch` and waits for the store's answer.
    pub(crate) async fn commit(
        &self,
        batch: &Arc<Batch>,
        entries: Vec<JournalEntry>,
    ) -> Result<(), Lost> {
        let (reply, answer) = oneshot::channel();
        let request = Request::Commit {
            batch: Arc::clone(batch),
            entries,
            reply,
        };
        if !self.send(request) {
            return Err(stopped(batch.lease().run()));
        }
        answer
            .await
            .unwrap_or_else(|_| Err(stopped(batch.lease().run())))
    }

    /// Stops renewing run `run`'s lease.
    pub(crate) fn forget(&self, run: &RunId) {
        self.send(Request::Forget(run.clone()));
    }
}

/// The error of a run whose writer is gone.
fn stopped(run: &RunId) -> Lost {
    Arc::new(StoreError::Write {
        run: run.clone(),
        step: None,
        fault: WriteFault::Other,
        source: "the journal writer stopped".into(),
    })
}

/// The writer thread: commits what comes, renews leases on the heartbeat.
fn write(
    store: &dyn RunStore,
    requests: &Receiver<Request>,
    lease: Duration,
    heartbeat: Duration,
    timer: &CommitTimer,
) {
    let mut live: HashMap<RunId, Weak<Batch>> = HashMap::new();
    let mut renewed = Instant::now();
    loop {
        let wait = heartbeat.saturating_sub(renewed.elapsed());
        let first = match requests.recv_timeout(wait) {
            Ok(request) => Some(request),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let mut commits = Vec::new();
        let mut forgotten = HashSet::new();
        let more = std::iter::from_fn(|| requests.try_recv().ok()).take(MAX_GROUP);
        for request in first.into_iter().chain(more) {
            match request {
                Request::Commit {
                    batch,
                    entries,
                    reply,
                } => commits.push(Commit {
                    batch,
                    entries,
                    reply,
                }),
                Request::Forget(run) => {
                    forgotten.insert(run);
                }
            }
        }
        if !commits.is_empty() {
            commit_all(store, commits, lease, &mut live, timer);
        }
        live.retain(|run, _| !forgotten.contains(run));
        if renewed.elapsed() >= heartbeat {
            renew(store, &mut live, lease);
            renewed = Instant::now();
        }
    }
}

/// One run's batch to commit, and where the answer goes.
struct Commit {
    batch: Arc<Batch>,
    entries: Vec<JournalEntry>,
    reply: oneshot::Sender<Result<(), Lost>>,
}

/// Commits `pending` together, retrying failed appends boundedly (see
/// [`retry_after`]); replies to each.
fn commit_all(
    store: &dyn RunStore,
    mut pending: Vec<Commit>,
    lease: Duration,
    live: &mut HashMap<RunId, Weak<Batch>>,
    timer: &CommitTimer,
) {
    let mut tries = 0;
    while !pending.is_empty() {
        let until = lease_until(lease);
        let appends: Vec<Append<'_>> = pending
            .iter()
            .map(|commit| Append {
                lease: commit.batch.lease(),
                entries: &commit.entries,
            })
            .collect();
        let began = Instant::now();
        let mut results = store.commit(&appends, until).into_iter();
        timer.record(began.elapsed());
        drop(appends);
        let mut again = Vec::new();
        let mut pause = Duration::ZERO;
        for commit in pending {
            let run = commit.batch.lease().run().clone();
            match results.next().unwrap_or_else(|| Err(missing_result(&run))) {
                Ok(()) => {
                    live.insert(run, Arc::downgrade(&commit.batch));
                    let _ = commit.reply.send(Ok(()));
                }
                Err(error) => match retry_after(&error, tries) {
                    Some(wait) => {
                        tracing::warn!(
                            run = %run,
                            retry_in_ms = wait.as_millis() as u64,
                            error = &error as &dyn std::error::Error,
                            "journal append failed; retrying"
                        );
                        pause = pause.max(wait);
                        again.push(commit);
                    }
                    None => {
                        tracing::error!(
                            run = %run,
                            error = &error as &dyn std::error::Error,
                            "journal append failed for good; the run stops and stays unfinished in the store"
                        );
                        let _ = commit.reply.send(Err(Arc::new(error)));
                    }
                },
            }
        }
        pending = again;
        tries += 1;
        if !pending.is_empty() {
            thread::sleep(pause);
        }
    }
}

/// How long to wait before trying an append that failed with `error` again, after
/// `tries` tries; `None`: give up. A busy store is tried 8 more times (10 ms doubling to
/// 1 s, 2.27 s in all: SQLite also waits for its lock inside each try); a failing one
/// (disk full, read-only, I/O error) 3 times (100, 200, 400 ms); a
/// refusal never again.
fn retry_after(error: &StoreError, tries: u32) -> Option<Duration> {
    let (limit, first) = if error.is_refusal() {
        return None;
    } else if error.is_transient() {
        (8, Duration::from_millis(10))
    } else {
        (3, Duration::from_millis(100))
    };
    (tries < limit).then(|| {
        first
            .saturating_mul(1 << tries.min(16))
            .min(Duration::from_secs(1))
    })
}

/// When a lease taken or renewed now ends (saturating).
pub(crate) fn lease_until(lease: Duration) -> chrono::DateTime<Utc> {
    add_saturating(Utc::now(), lease)
}

/// The error of an append the store gave no result for.
fn missing_result(run: &RunId) -> StoreError {
    StoreError::Write {
        run: run.clone(),
        step: None,
        fault: WriteFault::Other,
        source: "the store returned no result for this append".into(),
    }
}

/// Renews the leases of the live runs; a run whose lease was lost stops.
fn renew(store: &dyn RunStore, live: &mut HashMap<RunId, Weak<Batch>>, lease: Duration) {
    live.retain(|_, batch| batch.strong_count() > 0);
    let batches: Vec<Arc<Batch>> = live.values().filter_map(Weak::upgrade).collect();
    if batches.is_empty() {
        return;
    }
    let leases: Vec<&Lease> = batches.iter().map(|batch| batch.lease()).collect();
    let until = lease_until(lease);
    let results = store.renew(&leases, until);
    for (batch, result) in batches.iter().zip(results) {
        match result {
            Ok(()) => {}
            Err(error) if error.is_refusal() => {
                tracing::error!(
                    run = %batch.lease().run(),
                    error = &error as &dyn std::error::Error,
                    "the run's lease was lost; the run stops here"
                );
                live.remove(batch.lease().run());
                batch.lose(Arc::new(error));
            }
            Err(error) => tracing::warn!(
                run = %batch.lease().run(),
                error = &error as &dyn std::error::Error,
                "cannot renew the run's lease; trying again at the next heartbeat"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_stores_are_retried_longer_than_failing_ones_and_refusals_never() {
        let busy = StoreError::Write {
            run: "r".into(),
            step: None,
            fault: WriteFault::Busy,
            source: "locked".into(),
        };
        let full = StoreError::Write {
            run: "r".into(),
            step: None,
            fault: WriteFault::Full,
            source: "no space".into(),
        };
        let taken = StoreError::Fenced {
            run: "r".into(),
            owner: Some("other".into()),
            epoch: 2,
        };
        let total = |error: &StoreError| -> (u32, Duration) {
            let mut tries = 0;
            let mut waited = Duration::ZERO;
            while let Some(wait) = retry_after(error, tries) {
                waited += wait;
                tries += 1;
            }
            (tries, waited)
        };
        assert_eq!(total(&busy), (8, Duration::from_millis(2_270)));
        assert_eq!(total(&full), (3, Duration::from_millis(700)));
        assert_eq!(total(&taken).0, 0);
    }
}
