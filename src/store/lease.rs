//! Who drives a run: owners, leases and the fencing epoch.
//!
//! Every unfinished run in a store has at most one *owner*, the engine instance that
//! drives it, named by a string such as `bot-host/4242/1733312345/1` (host, process id,
//! process start, engine number). The owner holds the run's *lease* until a time; every
//! append it makes carries the run's *epoch*, a number the store increments each time
//! another owner takes the run. A store refuses an append whose epoch is not the run's
//! current one ([`StoreError::Fenced`](super::StoreError::Fenced)): an instance that lost a
//! run (it paused, or was partitioned, past its lease) cannot write to it any more, so a
//! run is driven by one instance at a time.
//!
//! A run is taken ([`RunStore::claim`](super::RunStore::claim)) when it has no owner (it
//! was released), when the lease has expired, when the claimant already owns it, or when
//! the owner is a process on this host that has exited (read from `/proc` where there
//! is one: a crashed bot's runs are taken over at once instead of when the lease ends).

use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::run::RunId;

/// A claim on a run: the owner that drives it and the epoch its appends carry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Lease {
    run: RunId,
    owner: Arc<str>,
    epoch: u64,
}

impl Lease {
    /// The lease of `owner` on `run` at `epoch`. A new run starts at epoch 1, taken by
    /// the owner whose append journals its `runStarted`.
    pub fn new(run: RunId, owner: impl Into<Arc<str>>, epoch: u64) -> Self {
        Self {
            run,
            owner: owner.into(),
            epoch,
        }
    }

    /// The run.
    pub fn run(&self) -> &RunId {
        &self.run
    }

    /// Who holds it.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// The fencing epoch: the store refuses appends that carry another.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }
}

/// The owner name of a new engine in this process: `host/pid/start/n`, unique among the
/// engines of every process on this host, and (with `/proc`) telling whether the process
/// still runs.
pub(crate) fn new_owner() -> String {
    static ENGINES: AtomicU64 = AtomicU64::new(0);
    let n = ENGINES.fetch_add(1, Ordering::Relaxed) + 1;
    format!("{}/{n}", this_process())
}

/// `host/pid/start` of this process.
fn this_process() -> &'static str {
    static PROCESS: OnceLock<String> = OnceLock::new();
    PROCESS.get_or_init(|| {
        let pid = std::process::id();
        let start = process_start(pid).unwrap_or_else(|| {
            // Without /proc: a random stand-in (never matches, so never "gone").
            uuid::Uuid::now_v7().as_u64_pair().1
        });
        format!("{}/{pid}/{start}", host())
    })
}

/// Whether `owner` is provably gone: a process of this host that no longer runs (its pid
/// is free, or taken by a process that started at another time). `false` when it cannot
/// be told (another host, no `/proc`, a name not made by this crate).
pub(crate) fn owner_is_gone(owner: &str) -> bool {
    let mut parts = owner.split('/');
    let (Some(host_name), Some(pid), Some(start)) = (parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let (Ok(pid), Ok(start)) = (pid.parse::<u32>(), start.parse::<u64>()) else {
        return false;
    };
    if host_name != host() || !std::path::Path::new("/proc/self/stat").exists() {
        return false;
    }
    process_start(pid) != Some(start)
}

/// The host's name (from `/proc`, else `HOSTNAME`, else `localhost`), without `/`.
fn host() -> &'static str {
    static HOST: OnceLock<String> = OnceLock::new();
    HOST.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .map(|name| name.trim().replace('/', "_"))
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| "localhost".to_owned())
    })
}

/// When process `pid` started, in clock ticks since boot (`/proc/<pid>/stat`, field 22).
fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: skip past it.
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_are_unique_per_engine_and_this_process_is_not_gone() {
        let (a, b) = (new_owner(), new_owner());
        assert_ne!(a, b);
        assert!(!owner_is_gone(&a));
        assert!(!owner_is_gone("not/an/owner name"));
        assert!(!owner_is_gone("another-host/1/2/3"));
    }

    #[test]
    fn a_process_that_exited_is_gone() {
        if !std::path::Path::new("/proc/self/stat").exists() {
            return;
        }
        let child = std::process::Command::new("true").spawn();
        let Ok(mut child) = child else { return };
        let pid = child.id();
        let start = process_start(pid);
        let _ = child.wait();
        if let Some(start) = start {
            let owner = format!("{}/{pid}/{start}/1", host());
            assert!(owner_is_gone(&owner));
        }
        let me = format!(
            "{}/{}/{}/9",
            host(),
            std::process::id(),
            process_start(std::process::id()).unwrap_or(0)
        );
        assert!(!owner_is_gone(&me));
    }
}
