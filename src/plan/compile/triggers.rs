//! The triggers pass: each of the workflow's `triggers` checked and compiled into a
//! [`Trigger`].
//!
//! A trigger may carry only its own type's fields (`schedule` and `timezone` for
//! `SCHEDULED`; `eventType` for `EVENT`; `metric`, `threshold` and `cooldownMs` for
//! `THRESHOLD`) and must carry those its type needs: a schedule, a non-empty event
//! type, a non-empty metric, a finite threshold and a cooldown of at most
//! [`MAX_DURATION_MS`](crate::plan::MAX_DURATION_MS). A schedule is parsed as a cron
//! pattern in its time zone ([`Schedule::parse`]); an unknown zone and a bad pattern are
//! reported as different problems. The optional `condition` is compiled against the
//! host context only (no bindings). A trigger with a problem yields no `Trigger`, but
//! all of its problems are reported.

use std::time::Duration;

use super::Compiler;
use crate::definition::{
    DefinitionError, Location, TriggerDefinition, TriggerType, WorkflowDefinition,
};
use crate::expr::{Locate, Scope};
use crate::plan::{CronError, Schedule, Trigger, TriggerKind};

impl Compiler {
    /// Compiles every trigger, in listed order; `None` for each that has a problem.
    pub(super) fn triggers(&mut self, definition: &WorkflowDefinition) -> Vec<Option<Trigger>> {
        definition
            .triggers
            .iter()
            .flatten()
            .enumerate()
            .map(|(index, trigger)| self.trigger(index, trigger))
            .collect()
    }

    /// Checks and compiles the trigger at `index`.
    fn trigger(&mut self, index: usize, trigger: &TriggerDefinition) -> Option<Trigger> {
        let kind = trigger.trigger_type;
        let at = || Location::trigger(index, Some(kind));
        let errors_before = self.errors.len();
        self.foreign_fields(trigger, &at);
        let required = format!("for {} triggers", kind.as_str());
        let compiled_kind = match kind {
            TriggerType::Scheduled => self.scheduled(trigger, &at, required),
            TriggerType::Event => match &trigger.event_type {
                Some(event_type) if !event_type.is_empty() => Some(TriggerKind::Event {
                    event_type: event_type.clone(),
                }),
                _ => {
                    self.required(&at, "eventType", required);
                    None
                }
            },
            TriggerType::Threshold => self.threshold(trigger, &at, required),
        };
        let condition =
            self.condition_block(trigger.condition.as_ref(), &Scope::trigger(), &|| {
                at().field("condition")
            });
        if self.errors.len() > errors_before {
            return None;
        }
        Some(Trigger {
            index,
            kind: compiled_kind?,
            condition,
        })
    }

    /// Refuses the fields that belong to another trigger type.
    fn foreign_fields(&mut self, trigger: &TriggerDefinition, at: Locate<'_>) {
        let fields: [(&'static str, bool, TriggerType); 6] = [
            (
                "schedule",
                trigger.schedule.is_some(),
                TriggerType::Scheduled,
            ),
            (
                "timezone",
                trigger.timezone.is_some(),
                TriggerType::Scheduled,
            ),
            (
                "eventType",
                trigger.event_type.is_some(),
                TriggerType::Event,
            ),
            ("metric", trigger.metric.is_some(), TriggerType::Threshold),
            (
                "threshold",
                trigger.threshold.is_some(),
                TriggerType::Threshold,
            ),
            (
                "cooldownMs",
                trigger.cooldown_ms.is_some(),
                TriggerType::Threshold,
            ),
        ];
        for (field, present, owner) in fields {
            if present && trigger.trigger_type != owner {
                self.not_allowed(
                    at,
                    field,
                    &format!("only {} triggers have it", owner.as_str()),
                );
            }
        }
    }

    /// A `SCHEDULED` trigger: its cron pattern, parsed in its time zone.
    fn scheduled(
        &mut self,
        trigger: &TriggerDefinition,
        at: Locate<'_>,
        required: String,
    ) -> Option<TriggerKind> {
        let Some(pattern) = &trigger.schedule else {
            self.required(at, "schedule", required);
            return None;
        };
        match Schedule::parse(pattern, trigger.timezone.as_deref()) {
            Ok(schedule) => Some(TriggerKind::Scheduled(Box::new(schedule))),
            Err(CronError::Timezone { .. }) => {
                self.errors.push(DefinitionError::UnknownTimezone {
                    at: at().field("timezone"),
                    timezone: trigger.timezone.clone().unwrap_or_default(),
                });
                None
            }
            Err(CronError::Pattern { reason, .. }) => {
                self.errors.push(DefinitionError::InvalidCron {
                    at: at().field("schedule"),
                    schedule: pattern.clone(),
                    reason,
                });
                None
            }
        }
    }

    /// A `THRESHOLD` trigger: its metric, threshold and cooldown.
    fn threshold(
        &mut self,
        trigger: &TriggerDefinition,
        at: Locate<'_>,
        required: String,
    ) -> Option<TriggerKind> {
        self.duration(trigger.cooldown_ms, &|| at().field("cooldownMs"));
        let metric = trigger.metric.clone().filter(|metric| !metric.is_empty());
        if metric.is_none() {
            self.required(at, "metric", required.clone());
        }
        let threshold = trigger.threshold;
        match threshold {
            None => self.required(at, "threshold", required),
            Some(value) if !value.is_finite() => {
                self.invalid(
                    at().field("threshold"),
                    &value.to_string(),
                    "must be a finite number",
                );
            }
            Some(_) => {}
        }
        match (metric, threshold) {
            (Some(metric), Some(threshold)) => Some(TriggerKind::Threshold {
                metric,
                threshold,
                cooldown: trigger.cooldown_ms.map(Duration::from_millis),
            }),
            _ => None,
        }
    }
}
