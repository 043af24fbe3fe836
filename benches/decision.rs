//! Costs of the default decision engine, `LearningDecisions`, in memory:
//!
//! - `make_decision/10_options/<policy>`: one decision among 10 options with two
//!   criteria, in a context that has learned 1,000 rewards spread over the options
//!   (target: at most 2 µs each).
//! - `learn_from_outcome/1M_rewards`: 1,000,000 rewards learned one by one, spread over
//!   10 options in 4 contexts of one step (target: at most 1 s in all).
//!
//! Run with `cargo bench --bench decision`.

use std::hint::black_box;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use tradeflow::decision::{DecisionEngine, DecisionRequest, LearningDecisions, OptionKey};
use tradeflow::definition::DecisionSettings;
use tradeflow::plan::Policy;

const OPTIONS: usize = 10;
const CONTEXTS: [&str; 4] = ["calm", "volatile", "open", "close"];

/// Ten options, each with a cost (minimised) and a speed (maximised).
fn settings(policy: &str) -> DecisionSettings {
    let options: Vec<String> = (0..OPTIONS)
        .map(|i| {
            format!(
                r#"{{"id": "algo-{i}", "scores": {{"cost": {}, "speed": {}}}}}"#,
                1.0 + i as f64 * 0.5,
                0.1 * i as f64
            )
        })
        .collect();
    let json = format!(
        r#"{{"options": [{}], "criteria": [{{"name": "cost", "weight": 0.7, "goal": "MIN"}},
            {{"name": "speed", "weight": 0.3}}], "reward": "${{fill.output.quality}}",
            "policy": "{policy}"}}"#,
        options.join(", ")
    );
    match serde_json::from_str(&json) {
        Ok(settings) => settings,
        Err(error) => panic!("the benchmark's decision block is valid: {error}"),
    }
}

/// An engine that has learned `rewards` rewards in context `calm`, spread over the
/// options.
fn trained(settings: &DecisionSettings, rewards: usize) -> LearningDecisions {
    let engine = LearningDecisions::new();
    let mut rng = StdRng::seed_from_u64(7);
    for i in 0..rewards {
        let option = &settings.options[i % OPTIONS].id;
        let key = OptionKey::new("algo", "execution", "calm", option);
        let reward = rng.random::<f64>();
        if let Err(error) = engine.learn_from_outcome(key, reward) {
            panic!("learns: {error}");
        }
    }
    engine
}

fn make_decision(c: &mut Criterion) {
    let mut group = c.benchmark_group("make_decision/10_options");
    for (name, policy) in [
        ("STATIC", "STATIC"),
        ("THOMPSON", "THOMPSON"),
        ("UCB1", "UCB1"),
        ("EPSILON_GREEDY", "EPSILON_GREEDY"),
    ] {
        let settings = settings(policy);
        let criteria = settings.criteria.as_deref().unwrap_or_default();
        let engine = trained(&settings, 1_000);
        let request = DecisionRequest::new(
            "algo",
            "execution",
            &settings.options,
            Policy::of(&settings),
        )
        .with_criteria(criteria)
        .with_context("calm");
        let mut rng = StdRng::seed_from_u64(11);
        group.bench_function(name, |b| {
            b.iter(|| black_box(engine.make_decision(black_box(request), &mut rng)))
        });
    }
    group.finish();
}

fn learn_a_million(c: &mut Criterion) {
    let settings = settings("THOMPSON");
    let ids: Vec<&str> = settings.options.iter().map(|o| o.id.as_str()).collect();
    let mut group = c.benchmark_group("learn_from_outcome");
    group.sample_size(10);
    group.bench_function("1M_rewards", |b| {
        b.iter_batched(
            LearningDecisions::new,
            |engine| {
                let mut reward = 0.25_f64;
                for i in 0..1_000_000_usize {
                    let key =
                        OptionKey::new("algo", "execution", CONTEXTS[i % 4], ids[i % OPTIONS]);
                    reward = (reward * 1.618_033_988_75).fract();
                    let _ = black_box(engine.learn_from_outcome(key, reward));
                }
                engine
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, make_decision, learn_a_million);
criterion_main!(benches);
