//! The learned model: option statistics by workflow, step, context and option, and each
//! step's reward range.
//!
//! Layout: workflow id → step id → context → options sorted by id, in nested B-trees
//! keyed by `Box<str>` and looked up with borrowed `&str`, so deciding and learning
//! allocate nothing once a key exists. Options are few per context: a sorted vector
//! searched by bisection beats a map, and two sorted vectors merge in linear time.

use std::collections::BTreeMap;

use super::{OptionKey, OptionStats};
use crate::definition::{DecisionOption, StepId};

/// The most bytes a workflow id, step id, context or option id may have in the model.
pub const MAX_KEY_BYTES: usize = 256;

/// Why a key longer than [`MAX_KEY_BYTES`] is refused.
pub(super) const KEY_TOO_LONG: &str =
    "a workflow id, step id, context or option id is longer than 256 bytes";
const _: () = assert!(MAX_KEY_BYTES == 256, "`KEY_TOO_LONG` names the bound");

/// The largest reward, in absolute value, the model learns (`10^15`): beyond it the
/// squared deviations would lose all precision.
pub const MAX_ABS_REWARD: f64 = 1e15;

/// Option statistics by workflow, step, context and option.
#[derive(Debug, Default)]
pub(super) struct Model {
    workflows: BTreeMap<Box<str>, BTreeMap<Box<str>, StepModel>>,
    /// How many option statistics the model holds.
    size: usize,
}

/// One step's contexts, and the range of the rewards it learned.
#[derive(Debug, Default)]
pub(super) struct StepModel {
    contexts: BTreeMap<Box<str>, Options>,
    /// The smallest and largest reward learned (or mean imported) for the step.
    range: Option<(f64, f64)>,
}

/// One context's option statistics, sorted by option id.
#[derive(Debug, Default)]
pub(super) struct Options {
    options: Vec<(Box<str>, OptionStats)>,
    /// How many rewards were learned in the context (UCB1's `N`).
    learned: u64,
}

/// Why the model cannot take a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refusal {
    /// A part of the key is not acceptable: why.
    Key(&'static str),
    /// The model holds its limit of option statistics.
    Full,
}

impl Model {
    /// How many option statistics the model holds.
    pub(super) fn size(&self) -> usize {
        self.size
    }

    /// What was learned about each of `options` in the context, in option order (an
    /// option never learned: zeros), into `into`; returns the context's reward count.
    pub(super) fn gather(
        &self,
        workflow_id: &str,
        step_id: &str,
        context: &str,
        options: &[DecisionOption],
        into: &mut Vec<OptionStats>,
    ) -> u64 {
        into.clear();
        let found = self
            .workflows
            .get(workflow_id)
            .and_then(|steps| steps.get(step_id))
            .and_then(|step| step.contexts.get(context));
        match found {
            Some(learned) => {
                into.extend(options.iter().map(|option| learned.stats(&option.id)));
                learned.learned
            }
            None => {
                into.resize(options.len(), OptionStats::default());
                0
            }
        }
    }

    /// Learns `reward` (finite, checked by the caller) for `key`, and returns it
    /// normalised over the step's reward range. A key not yet in the model is added
    /// when the model holds fewer than `limit` statistics and every part is acceptable.
    pub(super) fn learn(
        &mut self,
        key: OptionKey<'_>,
        reward: f64,
        limit: usize,
    ) -> Result<f64, Refusal> {
        let existing = self
            .workflows
            .get_mut(key.workflow_id)
            .and_then(|steps| steps.get_mut(key.step_id))
            .and_then(|step| {
                let StepModel { contexts, range } = step;
                let options = contexts.get_mut(key.context)?;
                let index = options.position(key.option_id).ok()?;
                Some(options.learn(index, reward, range))
            });
        match existing {
            Some(normalised) => Ok(normalised),
            None => self.add(key, reward, limit),
        }
    }

    /// Adds `key` with its first reward (the slow path of `learn`).
    fn add(&mut self, key: OptionKey<'_>, reward: f64, limit: usize) -> Result<f64, Refusal> {
        check(key).map_err(Refusal::Key)?;
        if self.size >= limit {
            return Err(Refusal::Full);
        }
        let step = self
            .workflows
            .entry(key.workflow_id.into())
            .or_default()
            .entry(key.step_id.into())
            .or_default();
        let StepModel { contexts, range } = step;
        let options = contexts.entry(key.context.into()).or_default();
        let index = match options.position(key.option_id) {
            Ok(index) => index,
            Err(index) => {
                let entry = (key.option_id.into(), OptionStats::default());
                options.options.insert(index, entry);
                self.size += 1;
                index
            }
        };
        Ok(options.learn(index, reward, range))
    }

    /// Adds a step's statistics as parsed from an export, unless the model has the step
    /// already. Used to build a model being imported, whose keys were checked.
    pub(super) fn insert_step(&mut self, workflow_id: &str, step_id: &str, step: StepModel) {
        let steps = self.workflows.entry(workflow_id.into()).or_default();
        if !steps.contains_key(step_id) {
            self.size += step.size();
            steps.insert(step_id.into(), step);
        }
    }

    /// Whether the model has the step.
    pub(super) fn has_step(&self, workflow_id: &str, step_id: &str) -> bool {
        self.workflows
            .get(workflow_id)
            .is_some_and(|steps| steps.contains_key(step_id))
    }

    /// How many of `other`'s option statistics this model does not have yet.
    pub(super) fn new_in(&self, other: &Model) -> usize {
        let mut new = 0;
        for (workflow_id, steps) in &other.workflows {
            for (step_id, step) in steps {
                let mine = self
                    .workflows
                    .get(workflow_id)
                    .and_then(|steps| steps.get(step_id));
                for (context, options) in &step.contexts {
                    new += match mine.and_then(|mine| mine.contexts.get(context)) {
                        Some(mine) => options.new_in_merge(mine),
                        None => options.options.len(),
                    };
                }
            }
        }
        new
    }

    /// Merges `other` in (Chan's parallel merge per option; ranges joined). Callers
    /// check the size limit first with [`Model::new_in`].
    pub(super) fn merge(&mut self, other: Model) {
        for (workflow_id, steps) in other.workflows {
            let mine = self.workflows.entry(workflow_id).or_default();
            for (step_id, step) in steps {
                let into = mine.entry(step_id).or_default();
                if let Some((low, high)) = step.range {
                    widen(&mut into.range, low);
                    widen(&mut into.range, high);
                }
                for (context, options) in step.contexts {
                    let before = into.contexts.get(&context).map_or(0, Options::len);
                    let target = into.contexts.entry(context).or_default();
                    target.merge(options);
                    self.size += target.len().saturating_sub(before);
                }
            }
        }
    }

    /// A step's statistics: context → option id → statistics.
    pub(super) fn step_stats(
        &self,
        workflow_id: &str,
        step_id: &str,
    ) -> BTreeMap<String, BTreeMap<String, OptionStats>> {
        let Some(step) = self
            .workflows
            .get(workflow_id)
            .and_then(|steps| steps.get(step_id))
        else {
            return BTreeMap::new();
        };
        step.contexts
            .iter()
            .map(|(context, options)| (context.to_string(), options.by_id()))
            .collect()
    }

    /// The model as JSON: `{"<workflowId>/<stepId>": {context: {optionId: {"n", "mean",
    /// "m2"}}}}`, keys sorted.
    pub(super) fn export(&self) -> String {
        type Exported<'a> = BTreeMap<String, BTreeMap<&'a str, BTreeMap<&'a str, OptionStats>>>;
        let mut exported = Exported::new();
        for (workflow_id, steps) in &self.workflows {
            for (step_id, step) in steps {
                let contexts = step
                    .contexts
                    .iter()
                    .map(|(context, options)| {
                        let by_id = options.options.iter();
                        (
                            &**context,
                            by_id.map(|(id, stats)| (&**id, *stats)).collect(),
                        )
                    })
                    .collect();
                exported.insert(format!("{workflow_id}/{step_id}"), contexts);
            }
        }
        // Maps of strings to plain numbers always serialize.
        serde_json::to_string(&exported).unwrap_or_default()
    }
}

impl StepModel {
    /// Adds a context parsed from an export, unless the step has it already. The
    /// step's reward range widens to the options' means (each lies within the range of
    /// the rewards it averages).
    pub(super) fn insert_context(&mut self, context: String, options: Options) {
        if self.contexts.contains_key(context.as_str()) {
            return;
        }
        for (_, stats) in options.options.iter().filter(|(_, stats)| stats.n > 0) {
            widen(&mut self.range, stats.mean);
        }
        self.contexts.insert(context.into(), options);
    }

    /// Whether the step has the context.
    pub(super) fn has_context(&self, context: &str) -> bool {
        self.contexts.contains_key(context)
    }

    /// How many option statistics the step holds.
    fn size(&self) -> usize {
        self.contexts.values().map(Options::len).sum()
    }
}

impl Options {
    /// A context's options from statistics sorted by id, each id once.
    pub(super) fn from_sorted(options: Vec<(Box<str>, OptionStats)>) -> Self {
        debug_assert!(options.windows(2).all(|pair| pair[0].0 < pair[1].0));
        let learned = options
            .iter()
            .fold(0u64, |sum, (_, stats)| sum.saturating_add(stats.n));
        Self { options, learned }
    }

    fn len(&self) -> usize {
        self.options.len()
    }

    /// Where option `id` is, or where it would go.
    fn position(&self, id: &str) -> Result<usize, usize> {
        self.options
            .binary_search_by(|(other, _)| (**other).cmp(id))
    }

    /// What was learned about option `id` (zeros when nothing).
    fn stats(&self, id: &str) -> OptionStats {
        self.position(id)
            .ok()
            .and_then(|index| self.options.get(index))
            .map(|(_, stats)| *stats)
            .unwrap_or_default()
    }

    /// Learns `reward` for the option at `index`, widening the step's `range`; returns
    /// the reward normalised over the range (0.5 when it is one value).
    fn learn(&mut self, index: usize, reward: f64, range: &mut Option<(f64, f64)>) -> f64 {
        if let Some((_, stats)) = self.options.get_mut(index) {
            stats.push(reward);
            self.learned = self.learned.saturating_add(1);
        }
        let (low, high) = widen(range, reward);
        if high > low {
            ((reward - low) / (high - low)).clamp(0.0, 1.0)
        } else {
            0.5
        }
    }

    /// How many of these options `into` does not have.
    fn new_in_merge(&self, into: &Options) -> usize {
        self.options
            .iter()
            .filter(|(id, _)| into.position(id).is_err())
            .count()
    }

    /// Merges `other` in: both sorted, so one linear pass.
    fn merge(&mut self, other: Options) {
        self.learned = self.learned.saturating_add(other.learned);
        let mine = std::mem::take(&mut self.options);
        let mut merged = Vec::with_capacity(mine.len() + other.options.len());
        let (mut mine, mut theirs) = (
            mine.into_iter().peekable(),
            other.options.into_iter().peekable(),
        );
        loop {
            let next = match (mine.peek(), theirs.peek()) {
                (Some((a, _)), Some((b, _))) => a.cmp(b),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => break,
            };
            match next {
                std::cmp::Ordering::Less => merged.extend(mine.next()),
                std::cmp::Ordering::Greater => merged.extend(theirs.next()),
                std::cmp::Ordering::Equal => {
                    if let (Some((id, mut stats)), Some((_, other))) = (mine.next(), theirs.next())
                    {
                        stats.merge(&other);
                        merged.push((id, stats));
                    }
                }
            }
        }
        self.options = merged;
    }

    /// The statistics by option id.
    fn by_id(&self) -> BTreeMap<String, OptionStats> {
        self.options
            .iter()
            .map(|(id, stats)| (id.to_string(), *stats))
            .collect()
    }
}

/// Widens `range` to hold `value`; returns the new range.
fn widen(range: &mut Option<(f64, f64)>, value: f64) -> (f64, f64) {
    let widened = match *range {
        Some((low, high)) => (low.min(value), high.max(value)),
        None => (value, value),
    };
    *range = Some(widened);
    widened
}

/// Why a key cannot be in the model, if it cannot: a part longer than
/// [`MAX_KEY_BYTES`], or a step id that is not one (it must not hold `/`, which
/// separates workflow and step in the exported model).
pub(super) fn check(key: OptionKey<'_>) -> Result<(), &'static str> {
    let parts = [key.workflow_id, key.step_id, key.context, key.option_id];
    if parts.iter().any(|part| part.len() > MAX_KEY_BYTES) {
        return Err(KEY_TOO_LONG);
    }
    match StepId::problem(key.step_id) {
        Some(problem) => Err(problem),
        None => Ok(()),
    }
}
