//! `audit verify` and `audit list`: the audit log kept in a store's file.

use tradeflow::audit::{AuditError, AuditLog};

use crate::{NOT_COMPLETED, Problems, cli, store};

/// The lines of `audit` in the usage.
pub(crate) const USAGE: &str = "tradeflow audit verify|list --store sqlite:PATH";

/// Entries read at a time by `list`.
const PAGE: usize = 1000;

/// The arguments of `audit` as clap reads them (its help is in [`crate::cli::Verb`]).
#[derive(Debug, clap::Args)]
#[command(override_usage = USAGE)]
pub(crate) struct Args {
    #[command(subcommand)]
    action: Action,
}

/// What `audit` does.
#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Recomputes the store's audit chain from its first entry.
    ///
    /// Prints `N entries, head HASH` and exits 0 when every entry matches; names the
    /// first entry that does not (its sequence number and what differs) on stderr and
    /// exits 1; exits 2 when PATH is not a tradeflow store.
    Verify(Store),
    /// Prints the store's audit entries, one JSON object a line, in order.
    ///
    /// {"hash": HASH, "entry": BODY}, where BODY is the entry's canonical body as
    /// stored (the bytes HASH is the SHA-256 of). Does not verify (see `audit verify`).
    List(Store),
}

/// The store option of both actions.
#[derive(Debug, clap::Args)]
struct Store {
    /// The store, sqlite:PATH (required).
    #[arg(long, value_name = "sqlite:PATH", allow_hyphen_values = true)]
    store: Option<String>,
}

/// `audit`: its exit code.
pub(crate) fn audit(args: Args) -> Result<u8, Problems> {
    match args.action {
        Action::Verify(store) => verify(store),
        Action::List(store) => list(store),
    }
}

/// The audit log of the existing store `--store` names.
fn open(verb: &str, option: &Store) -> Result<(String, impl AuditLog), Problems> {
    let path = cli::store(verb, option.store.as_deref())?;
    let log = store::open_sqlite(&path, false)?.audit_log();
    Ok((path, log))
}

fn verify(option: Store) -> Result<u8, Problems> {
    let (path, log) = open("audit verify", &option)?;
    match log.verify() {
        Ok(head) => {
            println!("{head}");
            Ok(0)
        }
        Err(AuditError::Tampered(tampered)) => {
            eprintln!("{path}: {tampered}");
            Ok(NOT_COMPLETED)
        }
        Err(error) => Err(store::problem(&path, &error)),
    }
}

fn list(option: Store) -> Result<u8, Problems> {
    let (path, log) = open("audit list", &option)?;
    let mut from = 1;
    loop {
        let entries = log
            .read(from, PAGE)
            .map_err(|error| store::problem(&path, &error))?;
        let Some(last) = entries.last() else {
            return Ok(0);
        };
        from = last.seq.saturating_add(1);
        for entry in &entries {
            println!("{{\"hash\":\"{}\",\"entry\":{}}}", entry.hash, entry.body);
        }
    }
}
