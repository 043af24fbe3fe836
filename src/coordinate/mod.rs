//! Coordination: the same task sent to several agents at once, and how their answers
//! make one output (`ALL`, `FIRST`, `QUORUM`, `BEST`).
//!
//! This module is the pure part: the compiled settings ([`Coordination`], [`Mode`],
//! [`ValuePath`]) and the [`Tally`], which takes the agents' answers in the order they
//! arrive and says, after each, whether the coordination is decided. The engine drives
//! the calls (a `task` or `decision` step with a `coordination` block, or
//! `Engine::coordinate_agents`) and cancels the calls still running as soon as the tally
//! is decided.
//!
//! The contract, for `n` agents asked (lanes `0..n`, in selection order):
//!
//! | mode | decided when | output |
//! |---|---|---|
//! | `ALL` | every agent has answered or failed | `{"results": [...], "agentIds": [...]}`: the successful answers and their agents, in selection order |
//! | `FIRST` | the first success | that answer |
//! | `QUORUM` | `quorum` successful answers agree on the value at `agreeOn` (the whole answer without it) | the first of them to arrive |
//! | `BEST` | every agent has answered or failed | the answer with the highest (`MAX`) or lowest (`MIN`) number at `rankBy`; ties to the earlier lane; a missing or non-numeric value ranks last |
//!
//! It fails ([`Verdict::AllFailed`]) when every agent failed, and
//! ([`Verdict::NoQuorum`]) as soon as `ALL`'s `quorum` successes (default: all `n`) or
//! `QUORUM`'s `quorum` agreeing answers (default: a majority, `n / 2 + 1`) are out of
//! reach while some agent answered or is still running: then the answers still to come
//! could not change the outcome, so they are not waited for. A quorum larger than `n`
//! (fewer agents were eligible than asked for) is out of reach from the start. Answers
//! that lack the `agreeOn` value agree with no other answer.
//!
//! # Complexity
//! Each answer costs O(g) comparisons of the agreed values for the g groups of agreeing
//! answers so far (g ≤ n), so a coordination costs O(n²) comparisons at most; n is the
//! number of agents asked, a handful.

use std::fmt;
use std::num::NonZeroU32;

use serde_json::Value;

use crate::definition::Goal;

/// How a coordination combines its answers, with its settings compiled.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Mode {
    /// Every agent answers; at least `quorum` (default: every agent asked) must succeed.
    All {
        /// The successes needed; `None`: every agent asked.
        quorum: Option<NonZeroU32>,
    },
    /// The first success wins; the other calls are cancelled.
    First,
    /// The first answer that `quorum` successful answers agree with wins.
    Quorum {
        /// The agreeing answers needed; `None`: a majority of the agents asked.
        quorum: Option<NonZeroU32>,
        /// The value answers agree on; `None`: the whole answer.
        agree_on: Option<ValuePath>,
    },
    /// Every agent answers; the best-ranked answer wins.
    Best {
        /// Where the number an answer is ranked by is.
        rank_by: ValuePath,
        /// Whether the highest (`MAX`) or the lowest (`MIN`) wins.
        goal: Goal,
    },
}

impl Mode {
    /// The mode's name as written (`QUORUM`).
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::All { .. } => "ALL",
            Self::First => "FIRST",
            Self::Quorum { .. } => "QUORUM",
            Self::Best { .. } => "BEST",
        }
    }

    /// The successful (`ALL`) or agreeing (`QUORUM`) answers needed when `asked` agents
    /// are asked; 1 for `FIRST` and `BEST`.
    pub fn needed(&self, asked: usize) -> usize {
        match self {
            Self::All { quorum } => quorum.map_or(asked, |quorum| quorum.get() as usize),
            Self::Quorum { quorum, .. } => {
                quorum.map_or(asked / 2 + 1, |quorum| quorum.get() as usize)
            }
            Self::First | Self::Best { .. } => 1,
        }
    }
}

/// A coordination: how many agents, and how their answers combine.
///
/// # Examples
/// ```
/// use std::num::NonZeroU32;
/// use tradeflow::coordinate::{Coordination, Mode, ValuePath};
///
/// let vote = Coordination::new(Mode::Quorum {
///     quorum: NonZeroU32::new(2),
///     agree_on: Some(ValuePath::parse("decision.approved")?),
/// })
/// .agents(NonZeroU32::new(3).expect("not zero"));
/// assert_eq!(vote.mode().needed(3), 2);
/// assert_eq!(vote.agent_count().map(NonZeroU32::get), Some(3));
/// # Ok::<(), tradeflow::coordinate::PathError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Coordination {
    mode: Mode,
    agents: Option<NonZeroU32>,
}

impl Coordination {
    /// A coordination in `mode`, asking every eligible agent.
    pub fn new(mode: Mode) -> Self {
        Self { mode, agents: None }
    }

    /// Asks at most `agents` agents (fewer when fewer are eligible). Defaults to every
    /// eligible agent.
    #[must_use]
    pub fn agents(mut self, agents: NonZeroU32) -> Self {
        self.agents = Some(agents);
        self
    }

    /// How the answers combine.
    pub fn mode(&self) -> &Mode {
        &self.mode
    }

    /// How many agents to ask; `None`: every eligible agent.
    pub fn agent_count(&self) -> Option<NonZeroU32> {
        self.agents
    }
}

/// A dotted path into an answer (`decision.approved`, `legs.0.price`): object keys, or
/// array indices where the value is an array. Parsed once, when a definition compiles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValuePath {
    text: Box<str>,
    segments: Box<[Box<str>]>,
}

/// Why a [`ValuePath`] does not parse: it is empty, or has an empty segment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("path `{}` has an empty segment", crate::definition::Quoted(.path))]
pub struct PathError {
    /// The text as given.
    pub path: String,
}

impl ValuePath {
    /// Parses `text`: one or more non-empty segments separated by `.`.
    ///
    /// # Errors
    /// [`PathError`] when `text` is empty or a segment is (`a..b`, `.a`, `a.`).
    pub fn parse(text: &str) -> Result<Self, PathError> {
        let segments: Box<[Box<str>]> = text.split('.').map(Box::from).collect();
        if segments.iter().any(|segment| segment.is_empty()) {
            return Err(PathError {
                path: text.to_owned(),
            });
        }
        Ok(Self {
            text: text.into(),
            segments,
        })
    }

    /// The value at this path in `value`, if there is one.
    pub fn get<'v>(&self, value: &'v Value) -> Option<&'v Value> {
        self.segments
            .iter()
            .try_fold(value, |current, segment| match current {
                Value::Object(fields) => fields.get(&**segment),
                Value::Array(items) => segment
                    .parse::<usize>()
                    .ok()
                    .and_then(|index| items.get(index)),
                _ => None,
            })
    }

    /// The path as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for ValuePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Where a coordination stands after an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Verdict {
    /// Not decided: wait for more answers.
    Pending,
    /// The answer of this lane is the output (`FIRST`, `QUORUM`, `BEST`).
    Winner(usize),
    /// `ALL` succeeded: the lanes that answered, in selection order.
    All(Vec<usize>),
    /// The quorum is out of reach: `agreeing` answers agree (`ALL`: succeeded) where
    /// `needed` must.
    NoQuorum {
        /// The most answers that agree (`ALL`: the successes).
        agreeing: usize,
        /// The answers needed.
        needed: usize,
    },
    /// Every agent failed.
    AllFailed,
}

impl Verdict {
    /// Whether the coordination is decided (anything but [`Verdict::Pending`]).
    pub fn is_decided(&self) -> bool {
        !matches!(self, Self::Pending)
    }
}

/// What became of one lane.
#[derive(Debug, Clone)]
enum Lane {
    Running,
    Failed,
    /// Answered; for `BEST`, the rank value (`None`: missing or not a number).
    Answered(Option<f64>),
}

/// Agreeing answers of a `QUORUM`: the value agreed on and the lanes, in arrival order.
#[derive(Debug)]
struct Group {
    value: Value,
    lanes: Vec<usize>,
}

/// The answers of a coordination so far, and what they decide.
///
/// # Examples
/// ```
/// use std::num::NonZeroU32;
/// use serde_json::json;
/// use tradeflow::coordinate::{Mode, Tally, ValuePath, Verdict};
///
/// let mode = Mode::Quorum { quorum: NonZeroU32::new(2), agree_on: Some(ValuePath::parse("side")?) };
/// let mut tally = Tally::new(&mode, 3);
/// assert_eq!(tally.answered(2, &json!({"side": "BUY", "px": 1})), Verdict::Pending);
/// assert_eq!(tally.failed(0), Verdict::Pending);
/// assert_eq!(tally.answered(1, &json!({"side": "BUY", "px": 2})), Verdict::Winner(2));
/// # Ok::<(), tradeflow::coordinate::PathError>(())
/// ```
#[derive(Debug)]
pub struct Tally<'m> {
    mode: &'m Mode,
    lanes: Vec<Lane>,
    groups: Vec<Group>,
    /// Lanes that succeeded, in arrival order.
    arrivals: Vec<usize>,
    needed: usize,
}

impl<'m> Tally<'m> {
    /// A tally of `asked` lanes under `mode`, none answered yet.
    pub fn new(mode: &'m Mode, asked: usize) -> Self {
        Self {
            mode,
            lanes: vec![Lane::Running; asked],
            groups: Vec::new(),
            arrivals: Vec::new(),
            needed: mode.needed(asked),
        }
    }

    /// Lane `lane` answered `output`; the verdict now.
    pub fn answered(&mut self, lane: usize, output: &Value) -> Verdict {
        let rank = match self.mode {
            Mode::Best { rank_by, .. } => rank_by
                .get(output)
                .and_then(Value::as_f64)
                .filter(|rank| rank.is_finite()),
            _ => None,
        };
        if let Some(slot) = self.lanes.get_mut(lane) {
            *slot = Lane::Answered(rank);
            self.arrivals.push(lane);
        }
        if let Mode::Quorum { agree_on, .. } = self.mode {
            let value = match agree_on {
                None => Some(output),
                Some(path) => path.get(output),
            };
            if let Some(value) = value {
                match self.groups.iter_mut().find(|group| group.value == *value) {
                    Some(group) => group.lanes.push(lane),
                    None => self.groups.push(Group {
                        value: value.clone(),
                        lanes: vec![lane],
                    }),
                }
            }
        }
        self.verdict()
    }

    /// Lane `lane` failed for good; the verdict now.
    pub fn failed(&mut self, lane: usize) -> Verdict {
        if let Some(slot) = self.lanes.get_mut(lane) {
            *slot = Lane::Failed;
        }
        self.verdict()
    }

    /// The verdict on the answers so far.
    pub fn verdict(&self) -> Verdict {
        let running = self
            .lanes
            .iter()
            .filter(|lane| matches!(lane, Lane::Running))
            .count();
        let succeeded = self.arrivals.len();
        if succeeded == 0 && running == 0 {
            return Verdict::AllFailed;
        }
        match self.mode {
            Mode::First => match self.arrivals.first() {
                Some(&lane) => Verdict::Winner(lane),
                None => Verdict::Pending,
            },
            Mode::All { .. } => {
                if succeeded + running < self.needed {
                    Verdict::NoQuorum {
                        agreeing: succeeded,
                        needed: self.needed,
                    }
                } else if running > 0 {
                    Verdict::Pending
                } else {
                    Verdict::All(self.answered_lanes().collect())
                }
            }
            Mode::Quorum { .. } => {
                if let Some(group) = self
                    .groups
                    .iter()
                    .find(|group| group.lanes.len() >= self.needed)
                {
                    return group
                        .lanes
                        .first()
                        .map_or(Verdict::Pending, |&lane| Verdict::Winner(lane));
                }
                let agreeing = self
                    .groups
                    .iter()
                    .map(|group| group.lanes.len())
                    .max()
                    .unwrap_or(0);
                if agreeing + running < self.needed {
                    Verdict::NoQuorum {
                        agreeing,
                        needed: self.needed,
                    }
                } else {
                    Verdict::Pending
                }
            }
            Mode::Best { goal, .. } => {
                if running > 0 {
                    return Verdict::Pending;
                }
                self.best(*goal).map_or(Verdict::AllFailed, Verdict::Winner)
            }
        }
    }

    /// The lanes that answered, in selection order.
    fn answered_lanes(&self) -> impl Iterator<Item = usize> + '_ {
        self.lanes
            .iter()
            .enumerate()
            .filter(|(_, lane)| matches!(lane, Lane::Answered(_)))
            .map(|(index, _)| index)
    }

    /// The best-ranked answered lane: ties to the earlier lane, unranked ones last.
    fn best(&self, goal: Goal) -> Option<usize> {
        let mut best: Option<(usize, Option<f64>)> = None;
        for (index, lane) in self.lanes.iter().enumerate() {
            let Lane::Answered(rank) = lane else {
                continue;
            };
            let better = match (best, rank) {
                (None, _) => true,
                (Some((_, None)), Some(_)) => true,
                (Some((_, Some(current))), Some(rank)) => match goal {
                    Goal::Max => *rank > current,
                    Goal::Min => *rank < current,
                },
                (Some(_), None) => false,
            };
            if better {
                best = Some((index, *rank));
            }
        }
        best.map(|(index, _)| index)
    }
}

#[cfg(test)]
mod tests;
