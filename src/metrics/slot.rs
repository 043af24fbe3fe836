//! One metric the engine records often: its label set, built once, and the handle the
//! recorder gave for it, kept while that handle may be trusted.
//!
//! Asking a recorder for a metric by its key (`register_counter` and its kin) costs the
//! recorder a lookup in its registry: a hash, a comparison of every label, often a copy
//! of the key. For a metric updated once per step that is most of what recording costs.
//! A [`Slot`] asks once and keeps the handle the recorder gave, bound to
//!
//! - **the recorder**, by the address of the object the facade hands out
//!   (`metrics::with_recorder`): when a different recorder is in effect on the thread
//!   that records (a global one installed later, a test's local one), the slot asks
//!   that one and keeps its handle instead. A recorder of no size (the facade's no-op
//!   recorder when none is installed) has no address of its own, so its handles are
//!   never kept: each update asks it, which costs it nothing.
//! - **the second of the engine's clock** it was asked in: a recorder may drop a metric
//!   that was not updated for a while (`metrics-exporter-prometheus`'s `idle_timeout`),
//!   after which a handle kept from before updates nothing the recorder still shows. A
//!   slot asks again the first time it is updated in a new second, so a metric that went
//!   idle is registered anew with its first update after.
//!
//! What a slot cannot tell apart is a recorder dropped and another created at the same
//! address, within the same second: a host that installs local recorders one after the
//! other gives each its own engine (as tests do).
//!
//! A gauge slot also keeps the value it last set, and sets it again only when it changes
//! (or when the handle is asked anew).

use std::sync::{Mutex, MutexGuard, PoisonError};

use ::metrics::{Counter, Gauge, Histogram, Key, Level, Metadata, Recorder};
use chrono::{DateTime, Utc};

static METADATA: Metadata<'static> =
    Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update leaves a whole binding or none.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The recorder a handle came from, and the second of the engine's clock it came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Binding {
    recorder: usize,
    second: i64,
}

impl Binding {
    /// `recorder`'s binding at `now`; none for a recorder of no size (no address of its
    /// own: nothing it hands out is kept).
    fn of(recorder: &dyn Recorder, now: DateTime<Utc>) -> Option<Self> {
        (std::mem::size_of_val(recorder) > 0).then(|| Self {
            recorder: std::ptr::from_ref(recorder).cast::<()>() as usize,
            second: now.timestamp(),
        })
    }
}

/// A kind of handle a slot keeps: how it is asked for, and how it is updated.
pub(super) trait Handle: Sized {
    /// The value an update gives it.
    type Value: Copy + PartialEq;
    /// Whether an update that repeats the last value may be left out (gauges).
    const SKIP_REPEATS: bool;
    /// Asks `recorder` for the handle of `key`.
    fn register(recorder: &dyn Recorder, key: &Key) -> Self;
    /// Updates it with `value`.
    fn update(&self, value: Self::Value);
}

impl Handle for Counter {
    type Value = u64;
    const SKIP_REPEATS: bool = false;
    fn register(recorder: &dyn Recorder, key: &Key) -> Self {
        recorder.register_counter(key, &METADATA)
    }
    fn update(&self, value: u64) {
        self.increment(value);
    }
}

impl Handle for Histogram {
    type Value = f64;
    const SKIP_REPEATS: bool = false;
    fn register(recorder: &dyn Recorder, key: &Key) -> Self {
        recorder.register_histogram(key, &METADATA)
    }
    fn update(&self, value: f64) {
        self.record(value);
    }
}

impl Handle for Gauge {
    type Value = f64;
    const SKIP_REPEATS: bool = true;
    fn register(recorder: &dyn Recorder, key: &Key) -> Self {
        recorder.register_gauge(key, &METADATA)
    }
    fn update(&self, value: f64) {
        self.set(value);
    }
}

/// A handle kept, what it is bound to, and the value it was last given.
struct Kept<H: Handle> {
    binding: Binding,
    handle: H,
    last: H::Value,
}

/// One metric: its key, and the handle kept for it (see the module docs).
pub(super) struct Slot<H: Handle> {
    key: Key,
    kept: Mutex<Option<Kept<H>>>,
}

impl<H: Handle> Slot<H> {
    /// A slot for `key`, asking no recorder yet.
    pub(super) fn new(key: Key) -> Self {
        Self {
            key,
            kept: Mutex::new(None),
        }
    }

    /// Updates the metric with `value` at `now` on the engine's clock, through the
    /// recorder in effect on this thread.
    pub(super) fn update(&self, value: H::Value, now: DateTime<Utc>) {
        ::metrics::with_recorder(|recorder| {
            let Some(binding) = Binding::of(recorder, now) else {
                H::register(recorder, &self.key).update(value);
                return;
            };
            let mut kept = lock(&self.kept);
            match kept.as_mut() {
                Some(kept) if kept.binding == binding => {
                    if !(H::SKIP_REPEATS && kept.last == value) {
                        kept.handle.update(value);
                        kept.last = value;
                    }
                }
                _ => {
                    let handle = H::register(recorder, &self.key);
                    handle.update(value);
                    *kept = Some(Kept {
                        binding,
                        handle,
                        last: value,
                    });
                }
            }
        });
    }
}

/// Records one update of `key` with `value` through the recorder in effect, keeping
/// nothing (for metrics recorded rarely, or by label sets not kept).
pub(super) fn update_once<H: Handle>(key: &Key, value: H::Value) {
    ::metrics::with_recorder(|recorder| H::register(recorder, key).update(value));
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use ::metrics::{
        CounterFn, GaugeFn, HistogramFn, KeyName, Metadata, Recorder, SharedString, Unit,
    };
    use chrono::TimeZone;

    use super::*;

    /// Counts the handles it hands out and the updates they get.
    #[derive(Default)]
    struct Counting {
        registered: AtomicUsize,
        updates: Arc<AtomicUsize>,
    }

    struct Updates(Arc<AtomicUsize>);

    impl CounterFn for Updates {
        fn increment(&self, _: u64) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
        fn absolute(&self, _: u64) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    impl GaugeFn for Updates {
        fn increment(&self, _: f64) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
        fn decrement(&self, _: f64) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
        fn set(&self, _: f64) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    impl HistogramFn for Updates {
        fn record(&self, _: f64) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    impl Recorder for Counting {
        fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn register_counter(&self, _: &Key, _: &Metadata<'_>) -> Counter {
            self.registered.fetch_add(1, Ordering::Relaxed);
            Counter::from_arc(Arc::new(Updates(Arc::clone(&self.updates))))
        }
        fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
            self.registered.fetch_add(1, Ordering::Relaxed);
            Gauge::from_arc(Arc::new(Updates(Arc::clone(&self.updates))))
        }
        fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
            self.registered.fetch_add(1, Ordering::Relaxed);
            Histogram::from_arc(Arc::new(Updates(Arc::clone(&self.updates))))
        }
    }

    impl Counting {
        fn seen(&self) -> (usize, usize) {
            let registered = self.registered.load(Ordering::Relaxed);
            (registered, self.updates.load(Ordering::Relaxed))
        }
    }

    fn at(seconds: i64, millis: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(seconds, 0).unwrap() + chrono::Duration::milliseconds(millis)
    }

    #[test]
    fn a_handle_is_asked_for_once_per_second_of_the_engines_clock() {
        let recorder = Counting::default();
        let slot: Slot<Counter> = Slot::new(Key::from_name("c"));
        ::metrics::with_local_recorder(&recorder, || {
            for millis in [0, 10, 500, 999] {
                slot.update(1, at(100, millis));
            }
            assert_eq!(recorder.seen(), (1, 4));
            slot.update(1, at(101, 0));
            assert_eq!(recorder.seen(), (2, 5));
        });
    }

    #[test]
    fn another_recorder_in_effect_is_asked_for_its_own_handle() {
        let (first, second) = (Counting::default(), Counting::default());
        let slot: Slot<Histogram> = Slot::new(Key::from_name("h"));
        ::metrics::with_local_recorder(&first, || slot.update(1.0, at(5, 0)));
        ::metrics::with_local_recorder(&second, || slot.update(2.0, at(5, 1)));
        ::metrics::with_local_recorder(&first, || slot.update(3.0, at(5, 2)));
        assert_eq!(first.seen(), (2, 2));
        assert_eq!(second.seen(), (1, 1));
    }

    #[test]
    fn a_gauge_is_set_again_only_when_its_value_changes() {
        let recorder = Counting::default();
        let slot: Slot<Gauge> = Slot::new(Key::from_name("g"));
        ::metrics::with_local_recorder(&recorder, || {
            for value in [0.0, 0.0, 0.5, 0.5, 0.0] {
                slot.update(value, at(7, 0));
            }
            assert_eq!(recorder.seen(), (1, 3));
            // A new second asks again, and sets the value even if it did not change.
            slot.update(0.0, at(8, 0));
            assert_eq!(recorder.seen(), (2, 4));
        });
    }

    #[test]
    fn a_recorder_of_no_size_is_asked_at_every_update() {
        struct NoSize;
        static UPDATES: AtomicUsize = AtomicUsize::new(0);
        static REGISTERED: AtomicUsize = AtomicUsize::new(0);
        struct Static;
        impl CounterFn for Static {
            fn increment(&self, _: u64) {
                UPDATES.fetch_add(1, Ordering::Relaxed);
            }
            fn absolute(&self, _: u64) {}
        }
        impl Recorder for NoSize {
            fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
            fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
            fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
            fn register_counter(&self, _: &Key, _: &Metadata<'_>) -> Counter {
                REGISTERED.fetch_add(1, Ordering::Relaxed);
                Counter::from_arc(Arc::new(Static))
            }
            fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
                Gauge::noop()
            }
            fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
                Histogram::noop()
            }
        }
        let slot: Slot<Counter> = Slot::new(Key::from_name("z"));
        ::metrics::with_local_recorder(&NoSize, || {
            for _ in 0..3 {
                slot.update(1, at(9, 0));
            }
        });
        assert_eq!(REGISTERED.load(Ordering::Relaxed), 3);
        assert_eq!(UPDATES.load(Ordering::Relaxed), 3);
    }
}
