//! The virtual clock moves only when told to (or when the driven future can only be
//! waiting for time), fires timers in a fixed order, and never reads the wall clock: the
//! same program gives the same wake-ups and the same `now()` readings every time.

use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use futures::channel::oneshot;
use futures::future::{self, Either};
use futures::stream::{FuturesUnordered, StreamExt};
use tradeflow::clock::{Clock, SystemClock, VirtualClock};

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 5, 9, 0, 0).unwrap()
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Runs tasks that each sleep through `schedule` (seconds), recording
/// `(task, seconds since t0)` at every wake-up.
fn trace(schedule: &[&[u64]]) -> Vec<(usize, i64)> {
    let clock = VirtualClock::starting_at(t0());
    let log = Arc::new(Mutex::new(Vec::new()));
    let tasks: FuturesUnordered<_> = schedule
        .iter()
        .enumerate()
        .map(|(task, sleeps)| {
            let clock = clock.clone();
            let log = Arc::clone(&log);
            let sleeps = sleeps.to_vec();
            async move {
                for seconds in sleeps {
                    clock.sleep(secs(seconds)).await;
                    let at = (clock.now() - t0()).num_seconds();
                    log.lock().unwrap().push((task, at));
                }
            }
        })
        .collect();
    clock.block_on(tasks.collect::<Vec<()>>());
    log.lock().unwrap().clone()
}

#[test]
fn sleeps_fire_in_deadline_order_with_correct_readings() {
    let clock = VirtualClock::starting_at(t0());
    let readings = clock.block_on({
        let clock = clock.clone();
        async move {
            let mut readings = vec![clock.now()];
            for seconds in [5, 1, 30] {
                clock.sleep(secs(seconds)).await;
                readings.push(clock.now());
            }
            clock.sleep_until(t0() + secs(100)).await;
            readings.push(clock.now());
            readings
        }
    });
    assert_eq!(
        readings,
        [
            t0(),
            t0() + secs(5),
            t0() + secs(6),
            t0() + secs(36),
            t0() + secs(100)
        ]
    );
}

#[test]
fn concurrent_sleeps_interleave_by_deadline_then_registration() {
    // Task 0 wakes at 3, 4; task 1 at 1, 3, 6; task 2 at 3. At 3, tasks 0 and 2
    // registered at 0, before task 1 registered its second sleep at 1.
    let schedule: &[&[u64]] = &[&[3, 1], &[1, 2, 3], &[3]];
    let expected = [(1, 1), (0, 3), (2, 3), (1, 3), (0, 4), (1, 6)];
    assert_eq!(trace(schedule), expected);
    // Identical programs, identical sequences.
    assert_eq!(trace(schedule), trace(schedule));
}

#[test]
fn a_simulated_hour_of_one_second_sleeps_completes_in_virtual_time() {
    let clock = VirtualClock::starting_at(t0());
    let count = clock.block_on({
        let clock = clock.clone();
        async move {
            let mut count = 0;
            for _ in 0..3600 {
                clock.sleep(secs(1)).await;
                count += 1;
            }
            count
        }
    });
    assert_eq!(count, 3600);
    assert_eq!(clock.now(), t0() + secs(3600));
    assert_eq!(clock.pending_timers(), 0);
}

#[test]
fn ten_thousand_concurrent_sleeps_fire_in_order() {
    let clock = VirtualClock::starting_at(t0());
    let log = Arc::new(Mutex::new(Vec::with_capacity(10_000)));
    let tasks: FuturesUnordered<_> = (0..10_000u64)
        .map(|task| {
            let clock = clock.clone();
            let log = Arc::clone(&log);
            // Deadlines 0..100 s, many shared; shared deadlines keep registration order.
            let seconds = (task * 37) % 100 + 1;
            let sleep = clock.sleep(secs(seconds));
            async move {
                sleep.await;
                log.lock().unwrap().push((clock.now(), task));
            }
        })
        .collect();
    assert_eq!(clock.pending_timers(), 10_000);
    clock.block_on(tasks.collect::<Vec<()>>());
    let log = log.lock().unwrap();
    assert_eq!(log.len(), 10_000);
    assert!(
        log.windows(2).all(|pair| pair[0] < pair[1]),
        "fired out of order"
    );
    assert_eq!(clock.now(), t0() + secs(100));
}

#[test]
fn a_dropped_sleep_never_moves_the_clock() {
    let clock = VirtualClock::starting_at(t0());
    clock.block_on({
        let clock = clock.clone();
        async move {
            let long = clock.sleep(secs(3600));
            let short = clock.sleep(secs(1));
            match future::select(long, short).await {
                Either::Left(_) => panic!("the long sleep won"),
                Either::Right(((), long)) => {
                    assert_eq!(clock.pending_timers(), 1);
                    drop(long);
                }
            }
            assert_eq!(clock.now(), t0() + secs(1));
            assert_eq!(clock.pending_timers(), 0);
            assert_eq!(clock.next_deadline(), None);
            clock.sleep(secs(1)).await;
            assert_eq!(clock.now(), t0() + secs(2));
        }
    });
    assert_eq!(clock.now(), t0() + secs(2));
}

#[test]
fn run_until_stalled_reports_a_run_waiting_for_a_human() {
    let clock = VirtualClock::starting_at(t0());
    let (approve, approval) = oneshot::channel::<&str>();
    let mut run = Box::pin({
        let clock = clock.clone();
        async move {
            clock.sleep(secs(60)).await;
            let by = approval.await.expect("the approver answers");
            (by, clock.now())
        }
    });
    assert_eq!(clock.run_until_stalled(&mut run), Poll::Pending);
    // It slept through its delay, then stalled on the approval.
    assert_eq!(clock.now(), t0() + secs(60));
    assert_eq!(clock.pending_timers(), 0);
    assert_eq!(clock.run_until_stalled(&mut run), Poll::Pending);

    approve.send("pm@desk").unwrap();
    assert_eq!(
        clock.run_until_stalled(&mut run),
        Poll::Ready(("pm@desk", t0() + secs(60)))
    );
}

#[test]
fn another_thread_wakes_a_parked_block_on() {
    let clock = VirtualClock::starting_at(t0());
    let (approve, approval) = oneshot::channel::<u32>();
    let approver = std::thread::spawn(move || {
        // Give block_on time to run out of timers and park.
        std::thread::sleep(Duration::from_millis(20));
        approve.send(7).unwrap();
    });
    let answer = clock.block_on({
        let clock = clock.clone();
        async move {
            clock.sleep(secs(5)).await;
            approval.await.unwrap()
        }
    });
    approver.join().unwrap();
    assert_eq!(answer, 7);
    assert_eq!(clock.now(), t0() + secs(5));
}

#[test]
fn system_clock_sleeps_without_an_async_runtime() {
    let clock = SystemClock;
    let started = Instant::now();
    futures::executor::block_on(clock.sleep(Duration::from_millis(5)));
    assert!(started.elapsed() >= Duration::from_millis(5));

    let deadline = clock.now() + Duration::from_millis(5);
    futures::executor::block_on(clock.sleep_until(deadline));
    assert!(clock.now() >= deadline);

    // A deadline already passed completes at once.
    futures::executor::block_on(clock.sleep_until(clock.now() - Duration::from_secs(1)));
}
