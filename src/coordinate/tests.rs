use std::num::NonZeroU32;

use serde_json::json;

use super::*;

fn path(text: &str) -> ValuePath {
    ValuePath::parse(text).expect("a valid path")
}

fn quorum(needed: u32, agree_on: Option<&str>) -> Mode {
    Mode::Quorum {
        quorum: NonZeroU32::new(needed),
        agree_on: agree_on.map(path),
    }
}

#[test]
fn paths_read_keys_and_array_indices_and_refuse_empty_segments() {
    let value = json!({"legs": [{"px": 1.5}, {"px": 2.5}], "ok": true});
    assert_eq!(path("legs.1.px").get(&value), Some(&json!(2.5)));
    assert_eq!(path("ok").get(&value), Some(&json!(true)));
    assert_eq!(path("legs.x").get(&value), None);
    assert_eq!(path("ok.deeper").get(&value), None);
    for bad in ["", "a..b", ".a", "a."] {
        assert_eq!(
            ValuePath::parse(bad),
            Err(PathError {
                path: bad.to_owned()
            })
        );
    }
    assert_eq!(path("a.b").to_string(), "a.b");
}

#[test]
fn first_takes_the_first_success_and_fails_only_when_all_fail() {
    let mode = Mode::First;
    let mut tally = Tally::new(&mode, 3);
    assert_eq!(tally.failed(1), Verdict::Pending);
    assert_eq!(tally.answered(2, &json!(1)), Verdict::Winner(2));

    let mut tally = Tally::new(&mode, 2);
    assert_eq!(tally.failed(0), Verdict::Pending);
    assert_eq!(tally.failed(1), Verdict::AllFailed);
}

#[test]
fn all_waits_for_every_answer_and_lists_successes_in_selection_order() {
    let mode = Mode::All { quorum: None };
    let mut tally = Tally::new(&mode, 2);
    assert_eq!(tally.answered(1, &json!("b")), Verdict::Pending);
    assert_eq!(tally.answered(0, &json!("a")), Verdict::All(vec![0, 1]));
}

#[test]
fn all_fails_as_soon_as_its_quorum_is_out_of_reach() {
    let every = Mode::All { quorum: None };
    let mut tally = Tally::new(&every, 3);
    assert_eq!(tally.answered(0, &json!(1)), Verdict::Pending);
    assert_eq!(
        tally.failed(2),
        Verdict::NoQuorum {
            agreeing: 1,
            needed: 3
        }
    );

    let two = Mode::All {
        quorum: NonZeroU32::new(2),
    };
    let mut tally = Tally::new(&two, 3);
    assert_eq!(tally.failed(0), Verdict::Pending);
    assert_eq!(tally.answered(1, &json!(1)), Verdict::Pending);
    assert_eq!(tally.answered(2, &json!(2)), Verdict::All(vec![1, 2]));
}

#[test]
fn quorum_takes_the_first_answer_of_the_group_that_reaches_it() {
    let mode = quorum(2, Some("approved"));
    let mut tally = Tally::new(&mode, 3);
    assert_eq!(
        tally.answered(0, &json!({"approved": false, "id": 0})),
        Verdict::Pending
    );
    assert_eq!(
        tally.answered(2, &json!({"approved": true, "id": 2})),
        Verdict::Pending
    );
    assert_eq!(
        tally.answered(1, &json!({"approved": true, "id": 1})),
        Verdict::Winner(2)
    );
}

#[test]
fn quorum_fails_as_soon_as_agreement_is_impossible() {
    let mode = quorum(3, None);
    let mut tally = Tally::new(&mode, 4);
    assert_eq!(tally.answered(0, &json!("a")), Verdict::Pending);
    assert_eq!(tally.answered(1, &json!("b")), Verdict::Pending);
    // After two different answers the two left could still join one of them; after a
    // third different one, no group can reach three.
    assert_eq!(
        tally.answered(2, &json!("c")),
        Verdict::NoQuorum {
            agreeing: 1,
            needed: 3
        }
    );
}

#[test]
fn quorum_defaults_to_a_majority_and_answers_without_the_value_agree_with_none() {
    let mode = quorum(0, Some("side"));
    assert_eq!(mode.needed(3), 2);
    assert_eq!(mode.needed(4), 3);
    let mut tally = Tally::new(&mode, 3);
    assert_eq!(tally.answered(0, &json!({})), Verdict::Pending);
    // One answer left cannot make two agree with anything.
    assert_eq!(
        tally.answered(1, &json!({})),
        Verdict::NoQuorum {
            agreeing: 0,
            needed: 2
        }
    );
}

#[test]
fn a_quorum_larger_than_the_agents_asked_is_out_of_reach_at_once() {
    let mode = quorum(3, None);
    let tally = Tally::new(&mode, 2);
    assert_eq!(
        tally.verdict(),
        Verdict::NoQuorum {
            agreeing: 0,
            needed: 3
        }
    );
}

#[test]
fn best_ranks_by_goal_ties_to_the_earlier_lane_and_unranked_answers_last() {
    let max = Mode::Best {
        rank_by: path("score"),
        goal: Goal::Max,
    };
    let mut tally = Tally::new(&max, 4);
    assert_eq!(tally.answered(3, &json!({"score": 9})), Verdict::Pending);
    assert_eq!(
        tally.answered(0, &json!({"score": "high"})),
        Verdict::Pending
    );
    assert_eq!(tally.answered(2, &json!({"score": 7})), Verdict::Pending);
    assert_eq!(tally.answered(1, &json!({"score": 9})), Verdict::Winner(1));

    let min = Mode::Best {
        rank_by: path("cost"),
        goal: Goal::Min,
    };
    let mut tally = Tally::new(&min, 3);
    assert_eq!(tally.answered(0, &json!({"cost": 3})), Verdict::Pending);
    assert_eq!(tally.failed(1), Verdict::Pending);
    assert_eq!(tally.answered(2, &json!({"cost": 2})), Verdict::Winner(2));

    let mut unranked = Tally::new(&max, 2);
    assert_eq!(unranked.answered(1, &json!({})), Verdict::Pending);
    assert_eq!(unranked.answered(0, &json!(null)), Verdict::Winner(0));

    let mut failed = Tally::new(&max, 1);
    assert_eq!(failed.failed(0), Verdict::AllFailed);
}
