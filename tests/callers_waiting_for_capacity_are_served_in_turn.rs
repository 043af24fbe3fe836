//! Callers waiting for capacity (`AgentRegistry::acquire`) are served first come, first
//! served: a freed slot wakes one of them, the first in line that may use it; a wake-up
//! is never lost (a woken caller that is dropped, or that took another agent, passes it
//! on); an agent joining wakes them all; and under threads no agent is ever overloaded.

mod support;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll, Wake, Waker};

use futures::executor::block_on;
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::json;
use support::engine::{TestAgent, t0};
use tradeflow::agent::{
    AgentId, AgentRegistry, Health, LeastConnections, SelectError, Selection, balancer_for,
};
use tradeflow::clock::VirtualClock;
use tradeflow::definition::LoadBalancing;
use tradeflow::plan::{AgentTask, ExecutionPlan};

/// An agent of type `AGENT` with these capabilities, one slot.
fn exec(id: &str, capabilities: &[&str]) -> TestAgent {
    TestAgent::new(id, &VirtualClock::starting_at(t0())).capabilities(capabilities)
}

fn registry(agents: impl IntoIterator<Item = TestAgent>) -> AgentRegistry {
    let registry = AgentRegistry::new();
    for agent in agents {
        registry.register(Arc::new(agent)).unwrap();
    }
    registry
}

/// The agent call of a one-step workflow requiring these capabilities.
fn requiring(capabilities: &[&str]) -> AgentTask {
    let workflow = json!({"id": "w", "steps": [{"id": "trade", "type": "task",
        "agentCriteria": {"type": "AGENT", "requiredCapabilities": capabilities},
        "task": {"type": "ORDER_EXECUTION"}}]});
    let plan = ExecutionPlan::from_json(&workflow.to_string()).unwrap();
    plan.steps()[0].agent_task().unwrap().clone()
}

fn any() -> &'static AgentTask {
    static ANY: LazyLock<AgentTask> = LazyLock::new(|| requiring(&[]));
    &ANY
}

fn hold(registry: &AgentRegistry, agent: &str) -> Selection {
    registry
        .select_agent(any(), &AgentId::from(agent))
        .expect("a free slot")
}

/// A waker that counts its wake-ups.
#[derive(Default)]
struct Counted(AtomicUsize);

impl Wake for Counted {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

type Acquiring<'a> = Pin<Box<dyn Future<Output = Result<Selection, SelectError>> + Send + 'a>>;

/// A caller of `acquire`, polled by hand with a waker that counts.
struct Caller<'a> {
    future: Acquiring<'a>,
    woken: Arc<Counted>,
}

impl<'a> Caller<'a> {
    /// Starts acquiring `task` and polls once: the caller is then in line.
    fn waiting(registry: &'a AgentRegistry, task: &'a AgentTask, rng: &'a mut StdRng) -> Self {
        let mut caller = Self {
            future: Box::pin(registry.acquire(task, &LeastConnections, rng, &[])),
            woken: Arc::default(),
        };
        assert!(caller.poll().is_none(), "every agent is busy: it waits");
        caller
    }

    fn poll(&mut self) -> Option<Selection> {
        let waker = Waker::from(Arc::clone(&self.woken));
        match self.future.as_mut().poll(&mut Context::from_waker(&waker)) {
            Poll::Ready(selection) => Some(selection.expect("an agent")),
            Poll::Pending => None,
        }
    }

    fn wake_ups(&self) -> usize {
        self.woken.0.load(Ordering::SeqCst)
    }
}

fn rngs<const N: usize>() -> [StdRng; N] {
    std::array::from_fn(|n| StdRng::seed_from_u64(n as u64))
}

#[test]
fn a_freed_slot_wakes_only_the_first_caller_in_line() {
    let registry = registry([exec("exec-1", &[])]);
    let held = hold(&registry, "exec-1");
    let [mut r1, mut r2, mut r3] = rngs();
    let mut first = Caller::waiting(&registry, any(), &mut r1);
    let mut second = Caller::waiting(&registry, any(), &mut r2);
    let third = Caller::waiting(&registry, any(), &mut r3);

    drop(held);
    assert_eq!(
        [first.wake_ups(), second.wake_ups(), third.wake_ups()],
        [1, 0, 0]
    );
    let served = first.poll().expect("the first caller's turn");
    assert_eq!(served.candidate.agent, "exec-1");

    drop(served);
    assert_eq!([second.wake_ups(), third.wake_ups()], [1, 0]);
    assert!(second.poll().is_some());
    assert_eq!(registry.selection_counts().busy, 3, "one per caller");
}

#[test]
fn a_woken_caller_dropped_before_it_selects_passes_its_turn_on() {
    let registry = registry([exec("exec-1", &[])]);
    let held = hold(&registry, "exec-1");
    let [mut r1, mut r2] = rngs();
    let first = Caller::waiting(&registry, any(), &mut r1);
    let mut second = Caller::waiting(&registry, any(), &mut r2);

    drop(held);
    assert_eq!(first.wake_ups(), 1);
    drop(first);
    assert_eq!(second.wake_ups(), 1);
    assert!(second.poll().is_some());
}

#[test]
fn a_freed_slot_goes_to_the_first_caller_that_may_use_that_agent() {
    let registry = registry([exec("twap-1", &["twap"]), exec("vwap-1", &["vwap"])]);
    let (twap, vwap) = (requiring(&["twap"]), requiring(&["vwap"]));
    let held = [hold(&registry, "twap-1"), hold(&registry, "vwap-1")];
    let [mut r1, mut r2] = rngs();
    let wants_twap = Caller::waiting(&registry, &twap, &mut r1);
    let mut wants_vwap = Caller::waiting(&registry, &vwap, &mut r2);

    let [_on_twap, on_vwap] = held;
    drop(on_vwap);
    assert_eq!([wants_twap.wake_ups(), wants_vwap.wake_ups()], [0, 1]);
    assert_eq!(wants_vwap.poll().unwrap().candidate.agent, "vwap-1");
}

#[test]
fn a_woken_caller_that_takes_another_agent_passes_the_freed_slot_on() {
    // `a-lit` and `z-dark` score alike; on a tie the balancer takes the first by id.
    let registry = registry([exec("a-lit", &[]), exec("z-dark", &["dark"])]);
    let dark = requiring(&["dark"]);
    let held = [hold(&registry, "a-lit"), hold(&registry, "z-dark")];
    let [mut r1, mut r2] = rngs();
    let mut anyone = Caller::waiting(&registry, any(), &mut r1);
    let mut wants_dark = Caller::waiting(&registry, &dark, &mut r2);

    let [on_lit, on_dark] = held;
    // `z-dark` is freed first: the first caller in line may use it, and is woken for it.
    drop(on_dark);
    drop(on_lit);
    assert_eq!([anyone.wake_ups(), wants_dark.wake_ups()], [1, 0]);
    // It takes `a-lit` instead, so `z-dark`'s slot goes on to the next in line.
    assert_eq!(anyone.poll().unwrap().candidate.agent, "a-lit");
    assert_eq!(wants_dark.wake_ups(), 1);
    assert_eq!(wants_dark.poll().unwrap().candidate.agent, "z-dark");
}

#[test]
fn an_unhealthy_agent_serves_only_callers_with_nothing_else() {
    let registry = registry([exec("healthy", &[]), exec("sick", &["rare"])]);
    let rare = requiring(&["rare"]);
    let held = [hold(&registry, "healthy"), hold(&registry, "sick")];
    registry.set_health(&AgentId::from("sick"), Health::Unhealthy);
    let [mut r1, mut r2] = rngs();
    let anyone = Caller::waiting(&registry, any(), &mut r1);
    let mut wants_rare = Caller::waiting(&registry, &rare, &mut r2);

    let [_on_healthy, on_sick] = held;
    drop(on_sick);
    // The first caller waits for `healthy`; for the second, `sick` is all there is.
    assert_eq!([anyone.wake_ups(), wants_rare.wake_ups()], [0, 1]);
    assert_eq!(wants_rare.poll().unwrap().candidate.agent, "sick");
}

#[test]
fn an_agent_joining_wakes_every_caller_in_line() {
    let registry = registry([exec("exec-1", &[])]);
    let _held = hold(&registry, "exec-1");
    let [mut r1, mut r2] = rngs();
    let mut callers = [
        Caller::waiting(&registry, any(), &mut r1),
        Caller::waiting(&registry, any(), &mut r2),
    ];

    registry
        .register(Arc::new(exec("exec-2", &[]).capacity(2)))
        .unwrap();
    for caller in &mut callers {
        assert_eq!(caller.wake_ups(), 1);
        assert_eq!(caller.poll().unwrap().candidate.agent, "exec-2");
    }
}

/// Calls in flight on one agent, and the most at once.
#[derive(Default)]
struct Load {
    now: AtomicU32,
    peak: AtomicU32,
}

impl Load {
    /// One call for a moment.
    fn call(&self) {
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        std::thread::yield_now();
        self.now.fetch_sub(1, Ordering::SeqCst);
    }
}

#[test]
fn callers_waiting_on_many_threads_never_overload_an_agent_and_all_are_served() {
    const CALLS: usize = 2_000;
    let limits = [("a", 2), ("b", 3)];
    let registry = registry(limits.map(|(agent, max)| exec(agent, &[]).capacity(max)));
    let loads: [Load; 2] = Default::default();
    let kinds = [
        LoadBalancing::RoundRobin,
        LoadBalancing::Weighted,
        LoadBalancing::LeastConnections,
        LoadBalancing::PowerOfTwoChoices,
    ];

    std::thread::scope(|scope| {
        // Agents join and leave while callers wait: each change wakes every one of them.
        scope.spawn(|| {
            for _ in 0..200 {
                registry.register(Arc::new(exec("churn", &[]))).unwrap();
                assert!(registry.deregister(&AgentId::from("churn")));
            }
        });
        for (seed, kind) in kinds.into_iter().cycle().take(8).enumerate() {
            let (registry, loads) = (&registry, &loads);
            scope.spawn(move || {
                let (balancer, mut rng) = (balancer_for(kind), StdRng::seed_from_u64(seed as u64));
                for _ in 0..CALLS {
                    // A lost wake-up would leave this thread waiting forever.
                    let selection = block_on(registry.acquire(any(), &*balancer, &mut rng, &[]))
                        .expect("an agent");
                    let on = limits
                        .iter()
                        .position(|&(id, _)| selection.candidate.agent == id);
                    if let Some(load) = on.and_then(|index| loads.get(index)) {
                        load.call();
                    }
                    drop(selection);
                }
            });
        }
    });
    for ((agent, max), load) in limits.iter().zip(&loads) {
        let peak = load.peak.load(Ordering::SeqCst);
        assert!((1..=*max).contains(&peak), "{agent}: {peak} calls at once");
    }
    assert_eq!(registry.selection_counts().reserved, 8 * CALLS as u64);
}
