//! Budgets: named token buckets that pace the calls a venue meters (request weight,
//! order rate).
//!
//! A budget is a token bucket ([`BudgetSpec`]): it holds at most `capacity` tokens, starts
//! full, and gains `refillPerSecond` tokens each second (continuously, up to its capacity).
//! A call that declares amounts of one or more budgets takes them all at once, or none:
//! it waits until every bucket it names holds enough. Calls wait their turn in a
//! [`Ledger`]: lower priority first, then in the order they arrived; a call never takes
//! tokens a call ahead of it is waiting for, so a large call is not starved by small
//! ones. An amount larger than a bucket's capacity can never be served.
//!
//! Everything here is pure: the time is an argument, so the same calls at the same
//! instants are paced the same way on a virtual clock and on the wall clock.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};

/// Slack for float comparisons of token counts (a billionth of a token).
const EPSILON: f64 = 1e-9;

/// One budget as declared: `{"capacity": 10, "refillPerSecond": 10}`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BudgetSpec {
    capacity: u64,
    refill_per_second: f64,
}

/// Why a budget's declaration is refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum BudgetSpecError {
    /// The capacity is 0: no call could ever take from it.
    #[error("capacity is 0: no call could ever take from the budget")]
    ZeroCapacity,
    /// The refill rate is negative, infinite or not a number.
    #[error("refillPerSecond {0} is not a finite number of at least 0")]
    BadRefill(f64),
}

impl BudgetSpec {
    /// A bucket of `capacity` tokens gaining `refill_per_second` each second.
    pub fn new(capacity: u64, refill_per_second: f64) -> Result<Self, BudgetSpecError> {
        if capacity == 0 {
            return Err(BudgetSpecError::ZeroCapacity);
        }
        if !refill_per_second.is_finite() || refill_per_second < 0.0 {
            return Err(BudgetSpecError::BadRefill(refill_per_second));
        }
        Ok(Self {
            capacity,
            refill_per_second,
        })
    }

    /// The most tokens the bucket holds.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Tokens gained per second.
    pub fn refill_per_second(&self) -> f64 {
        self.refill_per_second
    }
}

/// A token bucket's state: its tokens as of an instant.
#[derive(Debug, Clone, PartialEq)]
pub struct Bucket {
    spec: BudgetSpec,
    tokens: f64,
    at: DateTime<Utc>,
}

impl Bucket {
    /// A full bucket at `now`.
    pub fn full(spec: BudgetSpec, now: DateTime<Utc>) -> Self {
        Self {
            spec,
            tokens: spec.capacity as f64,
            at: now,
        }
    }

    /// The bucket's declaration.
    pub fn spec(&self) -> BudgetSpec {
        self.spec
    }

    /// The tokens held at `now` (an instant before the last update counts as it).
    pub fn available(&self, now: DateTime<Utc>) -> f64 {
        let elapsed_ms = (now - self.at).num_milliseconds().max(0) as f64;
        let gained = elapsed_ms * self.spec.refill_per_second / 1000.0;
        (self.tokens + gained).min(self.spec.capacity as f64)
    }

    /// Brings the bucket to `now` (never backwards).
    fn refill(&mut self, now: DateTime<Utc>) {
        if now > self.at {
            self.tokens = self.available(now);
            self.at = now;
        }
    }

    /// The earliest instant, at or after `now`, the bucket will have given `amount`
    /// tokens beyond `reserved` (tokens promised to calls ahead, taken as they come);
    /// `None` when it never will (`amount` is over the capacity, or the bucket does not
    /// refill and is short).
    pub fn ready_at(
        &self,
        amount: u64,
        reserved: u64,
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        if amount > self.spec.capacity {
            return None;
        }
        let wanted = amount.saturating_add(reserved);
        let short = wanted as f64 - self.available(now);
        if short <= EPSILON {
            return Some(now.max(self.at));
        }
        if self.spec.refill_per_second <= 0.0 {
            return None;
        }
        let ms = (short * 1000.0 / self.spec.refill_per_second - EPSILON).ceil();
        // At most capacity / rate seconds: bounded, but a tiny rate could overflow time.
        let ms = i64::try_from(ms as u128).ok()?;
        now.checked_add_signed(chrono::TimeDelta::try_milliseconds(ms)?)
    }

    /// Takes `amount` tokens at `now` if the bucket holds them; `false` (nothing taken)
    /// otherwise.
    pub fn take(&mut self, amount: u64, now: DateTime<Utc>) -> bool {
        self.refill(now);
        if self.tokens + EPSILON < amount as f64 {
            return false;
        }
        self.tokens = (self.tokens - amount as f64).max(0.0);
        true
    }

    /// Gives back `amount` tokens at `now` (never beyond the capacity): a call used less
    /// than it reserved.
    pub fn refund(&mut self, amount: u64, now: DateTime<Utc>) {
        self.refill(now);
        self.tokens = (self.tokens + amount as f64).min(self.spec.capacity as f64);
    }

    /// Takes `amount` more tokens at `now`, even into debt (a call used more than it
    /// reserved): later calls wait for the debt to refill.
    pub fn charge(&mut self, amount: u64, now: DateTime<Utc>) {
        self.refill(now);
        self.tokens -= amount as f64;
    }
}

/// The amounts one call takes, budget name → tokens.
pub type Amounts = BTreeMap<String, u64>;

/// A call's place in a [`Ledger`]'s line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ticket {
    priority: i32,
    seq: u64,
}

/// Why a call can take nothing from a [`Ledger`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BudgetError {
    /// The call names a budget the ledger does not have.
    #[error("unknown budget `{0}`")]
    Unknown(String),
    /// The call wants more of a budget than it can ever hold.
    #[error("budget `{name}`: {amount} is more than its capacity {capacity}")]
    OverCapacity {
        /// The budget.
        name: String,
        /// The amount the call wants.
        amount: u64,
        /// The budget's capacity.
        capacity: u64,
    },
    /// The call is not in line (it was served, or left).
    #[error("call {0} is not waiting for a budget")]
    NotInLine(Ticket),
    /// The budget does not refill and will not hold the amount again.
    #[error("budget `{0}` does not refill and is spent")]
    Spent(String),
}

/// What a call in line learns when it asks: taken, or when to ask again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Turn {
    /// The amounts are taken; the call has left the line.
    Taken,
    /// Not yet: ask again at this instant (the earliest the calls ahead and this one
    /// could all be served).
    WaitUntil(DateTime<Utc>),
}

/// Named buckets and the calls waiting for them, served in priority then arrival order.
#[derive(Debug, Clone, Default)]
pub struct Ledger {
    buckets: BTreeMap<String, Bucket>,
    line: BTreeMap<Ticket, Amounts>,
    next: u64,
}

impl Ledger {
    /// Full buckets for `specs` at `now`.
    pub fn new<'a>(
        specs: impl IntoIterator<Item = (&'a str, BudgetSpec)>,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            buckets: specs
                .into_iter()
                .map(|(name, spec)| (name.to_owned(), Bucket::full(spec, now)))
                .collect(),
            line: BTreeMap::new(),
            next: 0,
        }
    }

    /// Adds a full bucket named `name` at `now`, unless the ledger has one by that name.
    pub fn add(&mut self, name: &str, spec: BudgetSpec, now: DateTime<Utc>) {
        if !self.buckets.contains_key(name) {
            self.buckets
                .insert(name.to_owned(), Bucket::full(spec, now));
        }
    }

    /// The bucket named `name`.
    pub fn bucket(&self, name: &str) -> Option<&Bucket> {
        self.buckets.get(name)
    }

    /// Whether the ledger has a budget named `name`.
    pub fn has(&self, name: &str) -> bool {
        self.buckets.contains_key(name)
    }

    /// Puts a call wanting `amounts` in line (lower `priority` first, then arrival);
    /// refused when it names an unknown budget or wants more than one can hold.
    pub fn join(&mut self, priority: i32, amounts: Amounts) -> Result<Ticket, BudgetError> {
        for (name, &amount) in &amounts {
            let bucket = self
                .buckets
                .get(name)
                .ok_or_else(|| BudgetError::Unknown(name.clone()))?;
            if amount > bucket.spec.capacity {
                return Err(BudgetError::OverCapacity {
                    name: name.clone(),
                    amount,
                    capacity: bucket.spec.capacity,
                });
            }
        }
        let ticket = Ticket {
            priority,
            seq: self.next,
        };
        self.next = self.next.wrapping_add(1);
        self.line.insert(ticket, amounts);
        Ok(ticket)
    }

    /// Takes the call's amounts at `now` when it is first in line and every bucket holds
    /// them; otherwise says when to ask again (the earliest the buckets will have given
    /// the calls ahead and this one what they want). A call behind others when the
    /// buckets already hold enough for all of them is told to ask again 1 ms later, by
    /// when the calls ahead, woken at the same instant, have taken theirs.
    pub fn poll(&mut self, ticket: Ticket, now: DateTime<Utc>) -> Result<Turn, BudgetError> {
        let Some(amounts) = self.line.get(&ticket) else {
            return Err(BudgetError::NotInLine(ticket));
        };
        let mut ready = now;
        for (name, &amount) in amounts {
            let Some(bucket) = self.buckets.get(name) else {
                return Err(BudgetError::Unknown(name.clone()));
            };
            // Tokens promised to the calls ahead of this one.
            let reserved = self
                .line
                .range(..ticket)
                .filter_map(|(_, ahead)| ahead.get(name))
                .fold(0u64, |sum, &more| sum.saturating_add(more));
            let at = bucket
                .ready_at(amount, reserved, now)
                .ok_or_else(|| BudgetError::Spent(name.clone()))?;
            ready = ready.max(at);
        }
        let first = self.line.keys().next() == Some(&ticket);
        if ready > now || !first {
            // Behind others with enough at hand: ask again as soon as time moves on.
            let at = if ready > now {
                ready
            } else {
                now + chrono::TimeDelta::milliseconds(1)
            };
            return Ok(Turn::WaitUntil(at));
        }
        let amounts = self.line.remove(&ticket).unwrap_or_default();
        for (name, amount) in &amounts {
            if let Some(bucket) = self.buckets.get_mut(name) {
                bucket.take(*amount, now);
            }
        }
        Ok(Turn::Taken)
    }

    /// Takes the call out of line without taking anything (it gave up or was cut off).
    pub fn leave(&mut self, ticket: Ticket) {
        self.line.remove(&ticket);
    }

    /// Settles a call that reserved `reserved` and used `used` of budget `name`: refunds
    /// the difference or charges it.
    pub fn settle(&mut self, name: &str, reserved: u64, used: u64, now: DateTime<Utc>) {
        if let Some(bucket) = self.buckets.get_mut(name) {
            if used < reserved {
                bucket.refund(reserved - used, now);
            } else {
                bucket.charge(used - reserved, now);
            }
        }
    }
}

impl fmt::Display for Ticket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{} (priority {})", self.seq, self.priority)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-01-05T09:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn ms(n: i64) -> DateTime<Utc> {
        t0() + chrono::TimeDelta::milliseconds(n)
    }

    fn amounts(pairs: &[(&str, u64)]) -> Amounts {
        pairs.iter().map(|(n, a)| ((*n).to_owned(), *a)).collect()
    }

    #[test]
    fn specs_refuse_zero_capacity_and_bad_rates() {
        assert_eq!(BudgetSpec::new(0, 1.0), Err(BudgetSpecError::ZeroCapacity));
        assert!(BudgetSpec::new(1, -1.0).is_err());
        assert!(BudgetSpec::new(1, f64::NAN).is_err());
        assert!(BudgetSpec::new(1, 0.0).is_ok());
    }

    #[test]
    fn a_bucket_refills_continuously_up_to_its_capacity() {
        let mut bucket = Bucket::full(BudgetSpec::new(4, 1.0).unwrap(), t0());
        assert!(bucket.take(4, t0()));
        assert!(!bucket.take(1, ms(999)));
        assert!((bucket.available(ms(1500)) - 1.5).abs() < 1e-9);
        assert!((bucket.available(ms(60_000)) - 4.0).abs() < 1e-9);
        assert!(bucket.take(1, ms(1000)));
    }

    #[test]
    fn ready_at_is_the_first_instant_enough_is_held() {
        let mut bucket = Bucket::full(BudgetSpec::new(10, 10.0).unwrap(), t0());
        assert_eq!(bucket.ready_at(10, 0, t0()), Some(t0()));
        assert!(bucket.take(10, t0()));
        assert_eq!(bucket.ready_at(1, 0, t0()), Some(ms(100)));
        assert_eq!(bucket.ready_at(5, 3, t0()), Some(ms(800)));
        assert_eq!(bucket.ready_at(11, 0, t0()), None);
        assert_eq!(bucket.ready_at(10, 10, t0()), Some(ms(2000)));
        let mut still = Bucket::full(BudgetSpec::new(2, 0.0).unwrap(), t0());
        assert!(still.take(2, t0()));
        assert_eq!(still.ready_at(1, 0, ms(5000)), None);
    }

    #[test]
    fn refunds_cap_at_capacity_and_charges_go_into_debt() {
        let mut bucket = Bucket::full(BudgetSpec::new(5, 1.0).unwrap(), t0());
        bucket.refund(3, t0());
        assert!((bucket.available(t0()) - 5.0).abs() < 1e-9);
        bucket.charge(7, t0());
        assert!((bucket.available(t0()) + 2.0).abs() < 1e-9);
        assert_eq!(bucket.ready_at(1, 0, t0()), Some(ms(3000)));
    }

    #[test]
    fn a_ledger_serves_ten_calls_of_one_at_four_then_one_per_second() {
        let spec = BudgetSpec::new(4, 1.0).unwrap();
        let mut ledger = Ledger::new([("orders", spec)], t0());
        let tickets: Vec<_> = (0..10)
            .map(|_| ledger.join(0, amounts(&[("orders", 1)])).unwrap())
            .collect();
        let mut served = Vec::new();
        let mut now = t0();
        let mut pending = tickets.clone();
        // Ask in line order at each instant someone asked to be woken.
        while !pending.is_empty() {
            let mut next = None::<DateTime<Utc>>;
            pending.retain(|ticket| match ledger.poll(*ticket, now).unwrap() {
                Turn::Taken => {
                    served.push(now);
                    false
                }
                Turn::WaitUntil(at) => {
                    next = Some(next.map_or(at, |n| n.min(at)));
                    true
                }
            });
            if let Some(at) = next {
                now = at;
            }
        }
        let expected: Vec<_> = [0, 0, 0, 0, 1000, 2000, 3000, 4000, 5000, 6000]
            .into_iter()
            .map(ms)
            .collect();
        assert_eq!(served, expected);
    }

    #[test]
    fn a_ledger_serves_lower_priority_first_then_arrival() {
        let spec = BudgetSpec::new(1, 1.0).unwrap();
        let mut ledger = Ledger::new([("orders", spec)], t0());
        let first = ledger.join(0, amounts(&[("orders", 1)])).unwrap();
        assert_eq!(ledger.poll(first, t0()).unwrap(), Turn::Taken);
        let late = ledger.join(5, amounts(&[("orders", 1)])).unwrap();
        let urgent = ledger.join(1, amounts(&[("orders", 1)])).unwrap();
        assert!(matches!(
            ledger.poll(late, ms(1000)).unwrap(),
            Turn::WaitUntil(_)
        ));
        assert_eq!(ledger.poll(urgent, ms(1000)).unwrap(), Turn::Taken);
        assert_eq!(ledger.poll(late, ms(2000)).unwrap(), Turn::Taken);
    }

    #[test]
    fn a_call_takes_all_its_budgets_or_none() {
        let mut ledger = Ledger::new(
            [
                ("orders", BudgetSpec::new(2, 1.0).unwrap()),
                ("weight", BudgetSpec::new(10, 10.0).unwrap()),
            ],
            t0(),
        );
        let big = ledger
            .join(0, amounts(&[("orders", 1), ("weight", 10)]))
            .unwrap();
        assert_eq!(ledger.poll(big, t0()).unwrap(), Turn::Taken);
        let next = ledger
            .join(0, amounts(&[("orders", 1), ("weight", 5)]))
            .unwrap();
        assert_eq!(ledger.poll(next, t0()).unwrap(), Turn::WaitUntil(ms(500)));
        assert!((ledger.bucket("orders").unwrap().available(t0()) - 1.0).abs() < 1e-9);
        assert_eq!(ledger.poll(next, ms(500)).unwrap(), Turn::Taken);
    }

    #[test]
    fn a_ledger_refuses_unknown_names_and_amounts_over_capacity() {
        let mut ledger = Ledger::new([("orders", BudgetSpec::new(2, 1.0).unwrap())], t0());
        assert_eq!(
            ledger.join(0, amounts(&[("weight", 1)])),
            Err(BudgetError::Unknown("weight".to_owned()))
        );
        let error = ledger.join(0, amounts(&[("orders", 3)])).unwrap_err();
        assert_eq!(
            error.to_string(),
            "budget `orders`: 3 is more than its capacity 2"
        );
    }

    #[test]
    fn settling_refunds_what_was_not_used() {
        let mut ledger = Ledger::new([("weight", BudgetSpec::new(10, 0.0).unwrap())], t0());
        let call = ledger.join(0, amounts(&[("weight", 10)])).unwrap();
        assert_eq!(ledger.poll(call, t0()).unwrap(), Turn::Taken);
        ledger.settle("weight", 10, 4, t0());
        assert!((ledger.bucket("weight").unwrap().available(t0()) - 6.0).abs() < 1e-9);
    }
}
