//! Costs of the task scheduler (`TaskQueue`) at a million pending tasks.
//!
//! The tasks are `Task<u64>` named `"tick"`, due at random instants (nanosecond
//! resolution, a seeded RNG) within one day, with priorities in -2..=2, so the B-tree
//! sees random inserts, not appends. Time per operation includes building the `Task` (one
//! `String` for the name) and the queue's lock.
//!
//! - `schedule_1m`: schedule 1,000,000 tasks into an empty queue (the queue is dropped
//!   outside the timing). Per operation: the time shown, in µs instead of s.
//! - `pop_1m`: pop the 1,000,000 tasks of a full queue one `pop_due` at a time (the queue
//!   is filled outside the timing). Per operation: as above.
//! - `hold_1m`: the steady state of a busy queue: at 1,000,000 pending tasks, pop the
//!   earliest and schedule a new one a random time after it. Two operations per
//!   iteration.
//! - `get_schedule_day_1m`: list the whole day of the 1,000,000-task queue (k = 1M).
//! - `get_schedule_hour_1m`: list one hour of it (k ≈ 41,700): O(log n + k), so about
//!   1/24 of the day.
//!
//! Before timing, the heap the full queue holds is printed, per task (a counting
//! allocator, switched on only for that measurement).
//!
//! Run with `cargo bench --bench scheduler -- --noplot` (about a minute).

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use tradeflow::clock::VirtualClock;
use tradeflow::scheduler::{SchedulePolicy, Task, TaskQueue, TaskScheduler, TimeRange};

/// The system allocator, counting the bytes allocated while `COUNTING` is on.
struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static CURRENT: AtomicUsize = AtomicUsize::new(0);

impl Counting {
    fn grew(by: usize) {
        if COUNTING.load(Ordering::Relaxed) {
            CURRENT.fetch_add(by, Ordering::Relaxed);
        }
    }

    fn shrank(by: usize) {
        if COUNTING.load(Ordering::Relaxed) {
            CURRENT.fetch_sub(by, Ordering::Relaxed);
        }
    }
}

// SAFETY: every call is forwarded to `System` unchanged; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which is System's.
        let pointer = unsafe { System.alloc(layout) };
        if !pointer.is_null() {
            Self::grew(layout.size());
        }
        pointer
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let pointer = unsafe { System.alloc_zeroed(layout) };
        if !pointer.is_null() {
            Self::grew(layout.size());
        }
        pointer
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        // SAFETY: `pointer` was allocated by `System` (through us) with `layout`.
        unsafe { System.dealloc(pointer, layout) };
        Self::shrank(layout.size());
    }

    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as for `dealloc`; `new_size` is checked by the caller.
        let moved = unsafe { System.realloc(pointer, layout, new_size) };
        if !moved.is_null() {
            if new_size >= layout.size() {
                Self::grew(new_size - layout.size());
            } else {
                Self::shrank(layout.size() - new_size);
            }
        }
        moved
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Pending tasks.
const TASKS: usize = 1_000_000;
/// Nanoseconds in the day the tasks are due in.
const DAY_NANOS: i64 = 86_400_000_000_000;

fn day_start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 5, 0, 0, 0)
        .single()
        .expect("a valid date")
}

/// Due times and priorities of `TASKS` tasks, from a fixed seed.
fn plan() -> Vec<(DateTime<Utc>, i32)> {
    let mut rng = StdRng::seed_from_u64(5);
    (0..TASKS)
        .map(|_| {
            let due = day_start() + TimeDelta::nanoseconds(rng.random_range(0..DAY_NANOS));
            (due, rng.random_range(-2..=2))
        })
        .collect()
}

fn empty_queue() -> TaskQueue<u64> {
    TaskQueue::new(VirtualClock::starting_at(day_start()))
}

fn fill(queue: &TaskQueue<u64>, plan: &[(DateTime<Utc>, i32)]) {
    for (n, &(due, priority)) in (0_u64..).zip(plan) {
        queue
            .schedule_task(
                Task::new("tick", n),
                SchedulePolicy::at(due).priority(priority),
            )
            .expect("a valid policy");
    }
}

fn full_queue(plan: &[(DateTime<Utc>, i32)]) -> TaskQueue<u64> {
    let queue = empty_queue();
    fill(&queue, plan);
    queue
}

/// Prints the heap a full queue holds, per task.
fn report_memory(plan: &[(DateTime<Utc>, i32)]) {
    CURRENT.store(0, Ordering::Relaxed);
    COUNTING.store(true, Ordering::Relaxed);
    let queue = full_queue(plan);
    let bytes = CURRENT.load(Ordering::Relaxed);
    COUNTING.store(false, Ordering::Relaxed);
    drop(queue);
    println!(
        "scheduler: a queue of {TASKS} tasks holds {:.1} MiB, {} B per task",
        bytes as f64 / (1024.0 * 1024.0),
        bytes / TASKS
    );
}

fn scheduler(c: &mut Criterion) {
    let plan = plan();
    report_memory(&plan);
    let end_of_day = day_start() + TimeDelta::nanoseconds(DAY_NANOS);

    let mut group = c.benchmark_group("scheduler");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(10));
    group.throughput(Throughput::Elements(TASKS as u64));

    group.bench_function("schedule_1m", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let queue = empty_queue();
                let started = Instant::now();
                fill(&queue, &plan);
                total += started.elapsed();
                drop(black_box(queue));
            }
            total
        });
    });

    group.bench_function("pop_1m", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let queue = full_queue(&plan);
                let started = Instant::now();
                while let Some(due) = queue.pop_due(end_of_day) {
                    black_box(due);
                }
                total += started.elapsed();
                assert!(queue.is_empty());
            }
            total
        });
    });

    let queue = full_queue(&plan);

    group.bench_function("get_schedule_day_1m", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let started = Instant::now();
                let listed = queue.get_schedule(black_box((day_start()..end_of_day).into()));
                total += started.elapsed();
                // Dropping the listing (1M `Arc` decrements) is the caller's cost.
                assert_eq!(listed.len(), TASKS);
            }
            total
        });
    });

    let hour =
        TimeRange::from(day_start() + TimeDelta::hours(9)..day_start() + TimeDelta::hours(10));
    group.throughput(Throughput::Elements(queue.get_schedule(hour).len() as u64));
    group.sampling_mode(SamplingMode::Auto);
    group.measurement_time(Duration::from_secs(3));
    group.bench_function("get_schedule_hour_1m", |b| {
        b.iter(|| queue.get_schedule(black_box(hour)));
    });

    group.throughput(Throughput::Elements(2));
    group.bench_function("hold_1m", |b| {
        let mut rng = StdRng::seed_from_u64(7);
        let mut n = TASKS as u64;
        // Beyond every due time, however far the hold moves them.
        let far = day_start() + TimeDelta::days(365 * 1000);
        b.iter(|| {
            let popped = queue.pop_due(far).expect("1M pending");
            let due = popped.due() + TimeDelta::nanoseconds(rng.random_range(0..DAY_NANOS));
            n += 1;
            queue
                .schedule_task(
                    Task::new("tick", n),
                    SchedulePolicy::at(due).priority(rng.random_range(-2..=2)),
                )
                .expect("a valid policy")
        });
    });
    assert_eq!(queue.len(), TASKS);
    group.finish();
}

criterion_group!(benches, scheduler);
criterion_main!(benches);
