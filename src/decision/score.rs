//! Prior scores: the options scored on their criteria before anything is learned.

use crate::definition::{Criterion, DecisionOption, Goal};

/// Each option's prior score in [0, 1], in option order: the weighted sum of its
/// min–max normalised criterion values.
///
/// For each criterion, the options' values are normalised across the options to
/// `(v − min) / (max − min)`, inverted (`1 − …`) when the goal is `MIN` (`MAX` is the
/// default); when every option has the same value, each scores 1 on it. An option
/// without a value for the criterion, or with a value that is not finite, scores 0 on
/// it (and does not count for `min` and `max`). Weights (default 1) are normalised to
/// sum to 1; a weight that is negative or not finite counts as 0. With no criteria, or
/// with every weight 0, every option's prior is 1.
///
/// The result is never NaN. Ties are not broken here: a decision takes the first listed
/// of the options with the best score.
///
/// # Complexity
/// O(options × criteria) lookups in the options' score maps; one allocation besides
/// the result.
///
/// # Examples
/// ```
/// use tradeflow::decision::evaluate_options;
/// use tradeflow::definition::DecisionSettings;
///
/// let settings: DecisionSettings = serde_json::from_str(r#"{
///     "options": [{"id": "twap", "scores": {"cost": 2.0}},
///                 {"id": "vwap", "scores": {"cost": 1.5}},
///                 {"id": "sweep", "scores": {"cost": 6.0}}],
///     "criteria": [{"name": "cost", "goal": "MIN"}]
/// }"#)?;
/// let priors = evaluate_options(&settings.options, settings.criteria.as_deref().unwrap_or_default());
/// assert_eq!(priors, [1.0 - 0.5 / 4.5, 1.0, 0.0]);
/// # Ok::<(), serde_json::Error>(())
/// ```
pub fn evaluate_options(options: &[DecisionOption], criteria: &[Criterion]) -> Vec<f64> {
    let largest = criteria.iter().map(weight).fold(0.0, f64::max);
    if largest <= 0.0 {
        return vec![1.0; options.len()];
    }
    // Dividing by the largest weight first keeps the sum finite whatever the weights.
    let total: f64 = criteria.iter().map(|c| weight(c) / largest).sum();
    let mut priors = vec![0.0; options.len()];
    let mut values = Vec::with_capacity(options.len());
    for criterion in criteria {
        let share = weight(criterion) / largest / total;
        if share <= 0.0 {
            continue;
        }
        values.clear();
        values.extend(options.iter().map(|option| value(option, &criterion.name)));
        let (min, max) = values
            .iter()
            .flatten()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
                (lo.min(v), hi.max(v))
            });
        let minimise = criterion.goal == Some(Goal::Min);
        for (prior, v) in priors.iter_mut().zip(&values) {
            let Some(v) = *v else { continue };
            let normalised = if max > min {
                let up = (v - min) / (max - min);
                if minimise { 1.0 - up } else { up }
            } else {
                1.0
            };
            *prior += share * normalised;
        }
    }
    // Rounding may overshoot the interval by an ulp.
    priors
        .iter_mut()
        .for_each(|prior| *prior = prior.clamp(0.0, 1.0));
    priors
}

/// A criterion's weight as it counts: 1 when absent, 0 when negative or not finite.
fn weight(criterion: &Criterion) -> f64 {
    match criterion.weight {
        None => 1.0,
        Some(weight) if weight.is_finite() && weight > 0.0 => weight,
        Some(_) => 0.0,
    }
}

/// The option's finite value on the criterion, if it has one.
fn value(option: &DecisionOption, criterion: &str) -> Option<f64> {
    let value = *option.scores.as_ref()?.get(criterion)?;
    value.is_finite().then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::definition::DecisionSettings;

    fn scored(json: &str) -> Vec<f64> {
        let settings: DecisionSettings = serde_json::from_str(json).expect("settings parse");
        evaluate_options(
            &settings.options,
            settings.criteria.as_deref().unwrap_or_default(),
        )
    }

    fn assert_close(actual: &[f64], expected: &[f64]) {
        assert_eq!(actual.len(), expected.len(), "{actual:?}");
        for (a, e) in actual.iter().zip(expected) {
            assert!((a - e).abs() < 1e-12, "{actual:?} != {expected:?}");
        }
    }

    #[test]
    fn weighted_min_and_max_criteria_score_as_computed_by_hand() {
        let priors = scored(
            r#"{"options": [
                {"id": "twap", "scores": {"cost": 2.0, "speed": 0.3}},
                {"id": "vwap", "scores": {"cost": 1.5, "speed": 0.5}},
                {"id": "sweep", "scores": {"cost": 6.0, "speed": 1.0}}],
              "criteria": [{"name": "cost", "weight": 0.7, "goal": "MIN"},
                           {"name": "speed", "weight": 0.3, "goal": "MAX"}]}"#,
        );
        // cost over [1.5, 6.0], inverted: twap 1 − 0.5/4.5 = 8/9, vwap 1, sweep 0;
        // speed over [0.3, 1.0]: twap 0, vwap 0.2/0.7 = 2/7, sweep 1.
        let twap = 0.7 * 8.0 / 9.0;
        let vwap = 0.7 + 0.3 * 2.0 / 7.0;
        let sweep = 0.3;
        assert_close(&priors, &[twap, vwap, sweep]);
        assert_close(&priors, &[28.0 / 45.0, 11.0 / 14.0, 3.0 / 10.0]);
    }

    #[test]
    fn weights_are_normalised_and_default_to_one() {
        let priors = scored(
            r#"{"options": [{"id": "a", "scores": {"x": 0, "y": 10}},
                            {"id": "b", "scores": {"x": 4, "y": 0}}],
              "criteria": [{"name": "x", "weight": 3}, {"name": "y"}]}"#,
        );
        assert_close(&priors, &[0.25, 0.75]);
    }

    #[test]
    fn a_criterion_all_options_share_scores_one_for_each() {
        let priors = scored(
            r#"{"options": [{"id": "a", "scores": {"x": 5, "y": 1}},
                            {"id": "b", "scores": {"x": 5, "y": 3}}],
              "criteria": [{"name": "x", "goal": "MIN"}, {"name": "y"}]}"#,
        );
        assert_close(&priors, &[0.5, 1.0]);
    }

    #[test]
    fn a_missing_score_counts_zero_and_does_not_stretch_the_range() {
        let priors = scored(
            r#"{"options": [{"id": "a", "scores": {"x": 2}}, {"id": "b"},
                            {"id": "c", "scores": {"x": 4}}, {"id": "d", "scores": {}}],
              "criteria": [{"name": "x", "goal": "MIN"}]}"#,
        );
        assert_close(&priors, &[1.0, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn no_criteria_or_only_zero_weights_give_every_option_one() {
        let options = r#"[{"id": "a", "scores": {"x": 2}}, {"id": "b", "scores": {"x": 3}}]"#;
        let none = scored(&format!(r#"{{"options": {options}}}"#));
        assert_eq!(none, [1.0, 1.0]);
        let zero = scored(&format!(
            r#"{{"options": {options}, "criteria": [{{"name": "x", "weight": 0}}]}}"#
        ));
        assert_eq!(zero, [1.0, 1.0]);
        assert!(evaluate_options(&[], &[]).is_empty());
    }

    #[test]
    fn scores_and_weights_that_are_not_finite_never_give_nan() {
        let settings: DecisionSettings = serde_json::from_str(
            r#"{"options": [{"id": "a", "scores": {"x": 1, "y": 1}},
                            {"id": "b", "scores": {"x": 3, "y": 2}}],
              "criteria": [{"name": "x", "weight": 1e308}, {"name": "y", "weight": 1e308}]}"#,
        )
        .expect("settings parse");
        let mut options = settings.options.clone();
        let mut criteria = settings.criteria.clone().unwrap_or_default();
        assert_close(&evaluate_options(&options, &criteria), &[0.0, 1.0]);
        for (option, bad) in options.iter_mut().zip([f64::NAN, f64::INFINITY]) {
            option
                .scores
                .get_or_insert_default()
                .insert("x".into(), bad);
        }
        criteria[1].weight = Some(f64::NAN);
        let priors = evaluate_options(&options, &criteria);
        assert_close(&priors, &[0.0, 0.0]);
        criteria[0].weight = Some(-1.0);
        assert_eq!(evaluate_options(&options, &criteria), [1.0, 1.0]);
    }
}
