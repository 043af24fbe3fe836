//! Verifying a chain: the stored rows, in sequence order, checked one at a time.

use super::entry::{AuditEntry, GENESIS, format_at, sha256_bytes};
use super::{AuditHead, Problem, Tampered};

/// One stored entry as its columns hold it, bytes as stored (a column changed outside
/// the log need not be UTF-8 any more).
#[derive(Debug, Clone)]
pub(crate) struct StoredRow {
    /// As stored (a row renumbered outside the log may hold any integer).
    pub(crate) seq: i64,
    pub(crate) at: Vec<u8>,
    pub(crate) kind: Vec<u8>,
    pub(crate) actor: Option<Vec<u8>>,
    pub(crate) prev: Vec<u8>,
    pub(crate) hash: Vec<u8>,
    pub(crate) body: Vec<u8>,
}

impl StoredRow {
    /// The row an entry is stored as.
    pub(crate) fn of(entry: &AuditEntry) -> Self {
        Self {
            seq: i64::try_from(entry.seq).unwrap_or(i64::MAX),
            at: format_at(&entry.at).into_bytes(),
            kind: entry.event.kind().as_bytes().to_vec(),
            actor: entry.actor.as_ref().map(|actor| actor.as_bytes().to_vec()),
            prev: entry.prev.as_bytes().to_vec(),
            hash: entry.hash.as_bytes().to_vec(),
            body: entry.body.as_bytes().to_vec(),
        }
    }
}

/// The chain checked so far: the next sequence number expected and the last hash.
#[derive(Debug, Clone)]
pub(crate) struct Chain {
    next: u64,
    head: String,
}

impl Default for Chain {
    fn default() -> Self {
        Self {
            next: 1,
            head: GENESIS.to_owned(),
        }
    }
}

impl Chain {
    /// Checks `row`, the next stored row in sequence order, and moves on past it.
    ///
    /// # Errors
    /// The first problem of the row, in this order: a missing entry (its sequence number
    /// is not the next), its hash (not the SHA-256 of its body), its body (not an entry,
    /// or not canonical), a column that differs from its body, its link (its `prev` is
    /// not the hash of the entry before).
    pub(crate) fn check(&mut self, row: &StoredRow) -> Result<(), Tampered> {
        let seq = self.next;
        let bad = |problem| Tampered { seq, problem };
        if i64::try_from(seq).ok() != Some(row.seq) {
            // A row whose own hashed body says it is a later entry was renumbered; else
            // the entry expected here is missing.
            return Err(match renumbered(row) {
                Some(moved) if moved >= seq => Tampered {
                    seq: moved,
                    problem: Problem::Column { column: "seq" },
                },
                _ => bad(Problem::Missing { next: row.seq }),
            });
        }
        if sha256_bytes(&row.body).as_bytes() != row.hash.as_slice() {
            return Err(bad(Problem::Hash));
        }
        let body = std::str::from_utf8(&row.body).map_err(|_| {
            bad(Problem::Body {
                reason: "it is not UTF-8".to_owned(),
            })
        })?;
        let (entry, canonical) =
            AuditEntry::parse(body).map_err(|reason| bad(Problem::Body { reason }))?;
        if !canonical {
            return Err(bad(Problem::NotCanonical));
        }
        let differs = |column| bad(Problem::Column { column });
        if entry.seq != seq {
            return Err(differs("seq"));
        }
        if format_at(&entry.at).as_bytes() != row.at.as_slice() {
            return Err(differs("at"));
        }
        if entry.event.kind().as_bytes() != row.kind.as_slice() {
            return Err(differs("kind"));
        }
        if entry.actor.as_ref().map(String::as_bytes) != row.actor.as_deref() {
            return Err(differs("actor"));
        }
        if entry.prev.as_bytes() != row.prev.as_slice() {
            return Err(differs("prev"));
        }
        if entry.prev != self.head {
            return Err(bad(Problem::Link));
        }
        self.head = entry.hash;
        self.next = seq.saturating_add(1);
        Ok(())
    }

    /// The chain's head after the rows checked.
    pub(crate) fn head(&self) -> AuditHead {
        AuditHead {
            entries: self.next.saturating_sub(1),
            hash: self.head.clone(),
        }
    }
}

/// The sequence number `row`'s intact body gives, when it differs from its column.
fn renumbered(row: &StoredRow) -> Option<u64> {
    if sha256_bytes(&row.body).as_bytes() != row.hash.as_slice() {
        return None;
    }
    let (entry, _) = AuditEntry::parse(std::str::from_utf8(&row.body).ok()?).ok()?;
    (i64::try_from(entry.seq).ok() != Some(row.seq)).then_some(entry.seq)
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;

    use super::*;
    use crate::audit::{AuditEvent, AuditRecord};

    fn rows(n: u64) -> Vec<StoredRow> {
        let mut prev = GENESIS.to_owned();
        (1..=n)
            .map(|seq| {
                let record = AuditRecord::new(
                    DateTime::UNIX_EPOCH,
                    Some("ops"),
                    AuditEvent::RunPaused {
                        run: format!("r{seq}"),
                    },
                );
                let entry = AuditEntry::seal(record, seq, &prev);
                prev = entry.hash.clone();
                StoredRow::of(&entry)
            })
            .collect()
    }

    fn first_bad(rows: &[StoredRow]) -> Result<AuditHead, Tampered> {
        let mut chain = Chain::default();
        for row in rows {
            chain.check(row)?;
        }
        Ok(chain.head())
    }

    #[test]
    fn an_intact_chain_verifies_to_its_head() {
        let rows = rows(3);
        let head = first_bad(&rows).unwrap();
        assert_eq!(head.entries, 3);
        assert_eq!(head.hash.as_bytes(), rows[2].hash.as_slice());
        assert_eq!(first_bad(&[]).unwrap().hash, GENESIS);
    }

    #[test]
    fn each_kind_of_damage_names_the_entry_and_what_differs() {
        let mut changed = rows(3);
        changed[1].body[20] ^= 1;
        assert_eq!(
            first_bad(&changed).unwrap_err().to_string(),
            "audit entry 2: its hash is not the SHA-256 of its body"
        );

        let mut removed = rows(3);
        removed.remove(1);
        assert_eq!(
            first_bad(&removed).unwrap_err().to_string(),
            "audit entry 2 is missing: entry 3 follows entry 1"
        );

        let mut actor = rows(3);
        actor[2].actor = Some(b"mallory".to_vec());
        assert_eq!(
            first_bad(&actor).unwrap_err(),
            Tampered {
                seq: 3,
                problem: Problem::Column { column: "actor" }
            }
        );

        // Entry 2 rewritten whole, its hash recomputed: its link to entry 1 still breaks.
        let mut forged = rows(3);
        let record = AuditRecord::new(
            DateTime::UNIX_EPOCH,
            Some("ops"),
            AuditEvent::RunPaused { run: "r2".into() },
        );
        forged[1] = StoredRow::of(&AuditEntry::seal(record, 2, GENESIS));
        assert_eq!(
            first_bad(&forged).unwrap_err(),
            Tampered {
                seq: 2,
                problem: Problem::Link
            }
        );
    }
}
