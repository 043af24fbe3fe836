//! How the SQLite store writes and checks journals: one append inside a transaction
//! (fenced by the run's lease, chained checksums, the journal's head), lease renewal, and
//! the checksum itself.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};

use crate::run::RunId;
use crate::store::{JournalEntry, Lease, StoreError};

/// One run's append, encoded before the store's lock is taken.
pub(super) struct Encoded<'a> {
    pub(super) run: &'a RunId,
    /// `None`: unfenced (allowed while no one owns the run).
    pub(super) lease: Option<&'a Lease>,
    pub(super) entries: &'a [JournalEntry],
    pub(super) bodies: Vec<String>,
}

/// Writes one append inside `transaction`: `Ok(Err(_))` when the store refuses it.
pub(super) fn write_one(
    transaction: &Connection,
    append: &Encoded<'_>,
    until: DateTime<Utc>,
) -> rusqlite::Result<Result<(), StoreError>> {
    let run = append.run;
    let creates = matches!(
        append.entries.first(),
        Some(JournalEntry::RunStarted { .. })
    );
    let head = read_head(transaction, run)?;
    let owned: Option<(Option<String>, i64)> = transaction
        .prepare_cached("SELECT owner, epoch FROM runs WHERE run_id = ?1")?
        .query_row([run.as_str()], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?;
    if creates && (head.is_some() || owned.is_some()) {
        return Ok(Err(StoreError::RunExists { run: run.clone() }));
    }
    if let Some(refused) = fence(run, append.lease, creates, owned.as_ref()) {
        return Ok(Err(refused));
    }
    if head.is_none() && !creates {
        let orphaned = transaction
            .prepare_cached("SELECT 1 FROM events WHERE run_id = ?1")?
            .exists([run.as_str()])?;
        if orphaned {
            return Ok(Err(StoreError::Damaged {
                run: run.clone(),
                position: 0,
                problem: "the journal's head is missing".to_owned(),
            }));
        }
    }
    let (mut seq, mut crc) = head.map_or((0, 0), |(last, crc)| (last + 1, crc as u32));
    let mut insert = transaction
        .prepare_cached("INSERT INTO events (run_id, seq, body, crc) VALUES (?1, ?2, ?3, ?4)")?;
    for (entry, body) in append.entries.iter().zip(&append.bodies) {
        crc = checksum(run, seq, crc, body);
        insert.execute(params![run.as_str(), seq, body, i64::from(crc)])?;
        seq += 1;
        match entry {
            JournalEntry::RunStarted {
                workflow_id,
                version,
                ..
            } => {
                transaction
                    .prepare_cached(
                        "INSERT INTO runs (run_id, workflow_id, version, started_seq, owner, epoch, lease_until)
                         VALUES (?1, ?2, ?3, (SELECT COALESCE(MAX(started_seq) + 1, 0) FROM runs), ?4, ?5, ?6)",
                    )?
                    .execute(params![
                        run.as_str(),
                        workflow_id,
                        version,
                        append.lease.map(Lease::owner),
                        append.lease.map_or(0, |lease| lease.epoch() as i64),
                        until.timestamp_millis(),
                    ])?;
            }
            JournalEntry::RunEnded { .. } => {
                transaction
                    .prepare_cached("UPDATE runs SET finished = 1, owner = NULL WHERE run_id = ?1")?
                    .execute([run.as_str()])?;
            }
            JournalEntry::RewardLearned { .. } => {
                transaction
                    .prepare_cached("INSERT OR IGNORE INTO rewarded (run_id) VALUES (?1)")?
                    .execute([run.as_str()])?;
            }
            _ => {}
        }
    }
    transaction
        .prepare_cached(
            "INSERT INTO heads (run_id, last_seq, last_crc) VALUES (?1, ?2, ?3)
             ON CONFLICT (run_id) DO UPDATE SET last_seq = ?2, last_crc = ?3",
        )?
        .execute(params![run.as_str(), seq - 1, i64::from(crc)])?;
    Ok(Ok(()))
}

/// Extends `lease` to `until`: `Ok(Err(_))` when the lease was lost.
pub(super) fn renew_one(
    connection: &Connection,
    lease: &Lease,
    until: DateTime<Utc>,
) -> rusqlite::Result<Result<(), StoreError>> {
    let run = lease.run();
    let changed = connection
        .prepare_cached(
            "UPDATE runs SET lease_until = ?4 WHERE run_id = ?1 AND owner = ?2 AND epoch = ?3",
        )?
        .execute(params![
            run.as_str(),
            lease.owner(),
            lease.epoch() as i64,
            until.timestamp_millis()
        ])?;
    if changed == 1 {
        return Ok(Ok(()));
    }
    let now: Option<(Option<String>, i64)> = connection
        .prepare_cached("SELECT owner, epoch FROM runs WHERE run_id = ?1")?
        .query_row([run.as_str()], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?;
    Ok(Err(fence(run, Some(lease), false, now.as_ref())
        .unwrap_or_else(|| StoreError::NoRun { run: run.clone() })))
}

/// Why `lease` may not append to `run` (owned as `owned`: owner and epoch), if it may not.
pub(super) fn fence(
    run: &RunId,
    lease: Option<&Lease>,
    creates: bool,
    owned: Option<&(Option<String>, i64)>,
) -> Option<StoreError> {
    let fenced = |(owner, epoch): &(Option<String>, i64)| StoreError::Fenced {
        run: run.clone(),
        owner: owner.clone(),
        epoch: u64::try_from(*epoch).unwrap_or(0),
    };
    match (lease, owned) {
        (_, None) if creates => None,
        (Some(_), None) => Some(fenced(&(None, 0))),
        (None, None) => None,
        (Some(lease), Some(owned)) => {
            let admitted = owned.0.as_deref() == Some(lease.owner())
                && u64::try_from(owned.1).ok() == Some(lease.epoch());
            (!admitted).then(|| fenced(owned))
        }
        (None, Some(owned)) => owned.0.is_some().then(|| fenced(owned)),
    }
}

/// The journal head of `run`: its last entry's position and checksum.
pub(super) fn read_head(
    connection: &Connection,
    run: &RunId,
) -> rusqlite::Result<Option<(i64, i64)>> {
    connection
        .prepare_cached("SELECT last_seq, last_crc FROM heads WHERE run_id = ?1")?
        .query_row([run.as_str()], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()
}

/// The checksum of entry `seq` of `run`, chained to the one before (`previous`): CRC-32
/// of the run id, the position, the previous checksum and the entry's JSON.
pub(super) fn checksum(run: &RunId, seq: i64, previous: u32, body: &str) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(run.as_str().as_bytes());
    hasher.update(&[0]);
    hasher.update(&seq.to_le_bytes());
    hasher.update(&previous.to_le_bytes());
    hasher.update(body.as_bytes());
    hasher.finalize()
}
