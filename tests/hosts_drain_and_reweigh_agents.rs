//! Rebalancing: a drained agent takes no new call while its calls in flight finish, and
//! takes calls again once undrained; new weights change the `WEIGHTED` balancer's
//! picks; draining the last agent of a type is allowed and reported; unknown agents are
//! refused by name, with nothing changed.

mod support;

use std::sync::Arc;

use serde_json::{Value, json};
use support::engine::{Harness, Reply, assert_status};
use support::{task_with, with, workflow};
use tradeflow::agent::{AgentId, AgentRegistry, RebalanceCriteria, RebalanceError};
use tradeflow::definition::AgentType;
use tradeflow::engine::{EngineError, OrchestrationEngine, RunStatus};

fn fan_out(balancing: &str) -> Value {
    workflow([with(
        task_with("execute", json!({"orders": "${input.orders}"})),
        json!({"type": "parallel", "agentCriteria": {"type": "AGENT", "loadBalancing": balancing}}),
    )])
}

fn orders(n: usize) -> Value {
    json!({"orders": (1..=n).collect::<Vec<_>>()})
}

#[test]
fn a_drained_agent_finishes_its_call_in_flight_and_takes_no_new_one_until_undrained() {
    let h = Harness::new();
    let engine = h.engine.clone();
    // exec-1 drains itself as its first call begins: that call must still finish.
    let first = h.register(h.agent("exec-1").replies(move |_, n| {
        if n == 1 {
            let report = engine
                .rebalance_workload(&RebalanceCriteria::new().drain(["exec-1"]), "ops")
                .expect("exec-1 is registered");
            assert_eq!(report.drained, [AgentId::from("exec-1")]);
            assert!(
                report.last_agent_drained.is_empty(),
                "exec-2 still takes calls"
            );
        }
        Reply::ok(json!({"by": "exec-1"})).after_ms(100)
    }));
    let second = h.register(
        h.agent("exec-2")
            .replies(|_, _| Reply::ok(json!({"by": "exec-2"})).after_ms(100)),
    );

    let report = h.run(&fan_out("ROUND_ROBIN"), orders(6));

    assert_status(&report, RunStatus::Completed);
    assert_eq!(first.calls().len(), 1, "no new call after the drain");
    assert_eq!(second.calls().len(), 5);
    assert_eq!(h.engine.registry().is_drained(&"exec-1".into()), Some(true));

    let undrained = h
        .engine
        .rebalance_workload(&RebalanceCriteria::new().undrain(["exec-1"]), "ops")
        .expect("exec-1 is registered");
    assert_eq!(undrained.undrained, [AgentId::from("exec-1")]);
    let report = h.run(&fan_out("ROUND_ROBIN"), orders(4));

    assert_status(&report, RunStatus::Completed);
    assert_eq!(first.calls().len(), 3, "two of the four new calls");
    assert_eq!(second.calls().len(), 7);
}

#[test]
fn new_weights_change_the_weighted_balancers_picks() {
    let picks = |weights: Option<(f64, f64)>| {
        // A margin of 1: the balancer chooses among every agent with a free slot.
        let h = Harness::with(|builder| {
            builder
                .seed(11)
                .registry(Arc::new(AgentRegistry::with_margin(1.0)))
        });
        let heavy = h.register(h.agent("exec-1").capacity(100).weight(1.0));
        let light = h.register(h.agent("exec-2").capacity(100).weight(1.0));
        if let Some((a, b)) = weights {
            let report = h
                .engine
                .rebalance_workload(
                    &RebalanceCriteria::new()
                        .weight("exec-1", a)
                        .weight("exec-2", b),
                    "ops",
                )
                .expect("both are registered");
            // exec-2 keeps its weight: only exec-1's changed.
            assert_eq!(report.reweighted.len(), 1);
            assert_eq!(report.reweighted[0].agent, "exec-1");
            assert_eq!(report.reweighted[0].from, 1.0);
            assert_eq!(report.reweighted[0].to, a);
        }
        let report = h.run(&fan_out("WEIGHTED"), orders(200));
        assert_status(&report, RunStatus::Completed);
        (heavy.calls().len(), light.calls().len())
    };

    let (even_1, even_2) = picks(None);
    let (heavy, light) = picks(Some((99.0, 1.0)));

    assert_eq!(even_1 + even_2, 200);
    assert!(
        even_1.abs_diff(even_2) < 60,
        "1:1 splits about evenly: {even_1}/{even_2}"
    );
    assert_eq!(heavy + light, 200);
    assert!(
        light < 15,
        "99:1 sends almost every call to exec-1: {heavy}/{light}"
    );
}

#[test]
fn draining_the_last_agent_of_a_type_is_allowed_and_reported() {
    let h = Harness::new();
    h.register(h.agent("exec-1"));
    h.register(h.agent("exec-2"));
    h.register(h.agent("risk-1").of_type("RISK"));

    let report = h
        .engine
        .rebalance_workload(&RebalanceCriteria::new().drain(["exec-1", "exec-2"]), "ops")
        .expect("both are registered");

    assert_eq!(
        report.drained,
        [AgentId::from("exec-1"), AgentId::from("exec-2")]
    );
    assert_eq!(report.last_agent_drained, [AgentType::new("AGENT")]);
    assert_eq!(
        h.engine.registry().load(&AgentType::new("AGENT")).drained,
        2
    );
    // Draining again changes nothing, and says so.
    let again = h
        .engine
        .rebalance_workload(&RebalanceCriteria::new().drain(["exec-1"]), "ops")
        .expect("registered");
    assert!(again.is_empty(), "{again:?}");
}

#[test]
fn unknown_agents_and_bad_values_are_refused_by_name_and_change_nothing() {
    let h = Harness::new();
    h.register(h.agent("exec-1"));
    let engine: Arc<dyn OrchestrationEngine> = Arc::new(h.engine.clone());

    let unknown = engine
        .rebalance_workload(&RebalanceCriteria::new().drain(["exec-1", "ghost"]), "ops")
        .unwrap_err();
    assert_eq!(
        unknown,
        EngineError::Rebalance(RebalanceError::UnknownAgent {
            field: "drain",
            agent: "ghost".into()
        })
    );
    assert_eq!(
        unknown.to_string(),
        "drain: agent `ghost` is not registered"
    );
    assert_eq!(
        h.engine.registry().is_drained(&"exec-1".into()),
        Some(false)
    );

    let weight = h
        .engine
        .rebalance_workload(&RebalanceCriteria::new().weight("exec-1", f64::NAN), "ops")
        .unwrap_err();
    assert!(
        matches!(
            weight,
            EngineError::Rebalance(RebalanceError::InvalidWeight { .. })
        ),
        "{weight}"
    );
    let ceiling = h
        .engine
        .rebalance_workload(&RebalanceCriteria::new().max_utilization(0.0), "ops")
        .unwrap_err();
    assert_eq!(
        ceiling,
        EngineError::Rebalance(RebalanceError::InvalidUtilization { value: 0.0 })
    );
    let both = h
        .engine
        .rebalance_workload(
            &RebalanceCriteria::new()
                .drain(["exec-1"])
                .undrain(["exec-1"]),
            "ops",
        )
        .unwrap_err();
    assert_eq!(
        both,
        EngineError::Rebalance(RebalanceError::DrainAndUndrain {
            agent: "exec-1".into()
        })
    );
}

#[test]
fn a_utilization_ceiling_steers_new_calls_to_agents_below_it() {
    // A margin of 1 lets the balancer pick any agent with a free slot, and 99:1 weights
    // send about every call to exec-1: without a ceiling, it takes all four at once.
    let at_once = |ceiling: Option<f64>| {
        let h = Harness::with(|builder| {
            builder
                .seed(3)
                .registry(Arc::new(AgentRegistry::with_margin(1.0)))
        });
        let heavy = h.register(
            h.agent("exec-1")
                .capacity(4)
                .weight(99.0)
                .replies(|_, _| Reply::ok(json!({})).after_ms(100)),
        );
        let light = h.register(
            h.agent("exec-2")
                .capacity(4)
                .weight(1.0)
                .replies(|_, _| Reply::ok(json!({})).after_ms(100)),
        );
        if let Some(ceiling) = ceiling {
            let report = h
                .engine
                .rebalance_workload(&RebalanceCriteria::new().max_utilization(ceiling), "ops")
                .expect("a valid ceiling");
            let moved = report.utilization.expect("a ceiling was set");
            assert_eq!(moved.ceiling, ceiling);
            assert!(moved.above.is_empty(), "nothing runs yet");
            assert_eq!(moved.below.len(), 2);
            assert_eq!(moved.reselected, 0, "no call waits yet");
        }
        let run = h.run(&fan_out("WEIGHTED"), orders(4));
        assert_status(&run, RunStatus::Completed);
        (heavy.gauge().max(), light.gauge().max())
    };

    assert_eq!(at_once(None), (4, 0));
    // exec-1 at 2 of 4 slots is at the ceiling: the next calls go to exec-2.
    assert_eq!(at_once(Some(0.5)), (2, 2));
}
