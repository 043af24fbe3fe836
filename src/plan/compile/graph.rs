//! The graph: edges resolved and merged into a petgraph `DiGraph`, put in order, and
//! checked for cycles.
//!
//! Edges come from each entry of `dependencies` (both ends name steps, and not the same
//! one), from each compiled step's bindings and fallback (added by the steps pass) and,
//! when `dependencies` is absent, from listed order (each step after the one before it).
//! Node `i` is `steps[i]`. The edges are sorted by their ends, O(edges log edges), and
//! those between the same two steps merged into one, their dependency, data and
//! listed-order flags joined.
//!
//! The order is Kahn's algorithm with a min-heap on the step index, so listed order
//! breaks ties: O((steps + edges) log steps). If it cannot place every step, Tarjan's
//! algorithm finds the strongly connected components, O(steps + edges), and each is
//! reported once: the shortest cycle through its first-listed step (a breadth-first
//! search inside the component), every step on it named in order, and whether an edge
//! on it comes from listed order alone.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};

use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;

use super::Compiler;
use crate::definition::{DefinitionError, Location, StepId, WorkflowDefinition};
use crate::expr::StepLookup;
use crate::plan::Edge;

impl Compiler {
    /// Resolves `dependencies` to edges.
    pub(super) fn dependencies(&mut self, definition: &WorkflowDefinition, lookup: StepLookup<'_>) {
        for (index, dependency) in definition.dependencies.iter().flatten().enumerate() {
            let at = || Location::root().field("dependencies").index(index);
            let mut resolve = |field: &'static str, id: &StepId| {
                let found = lookup(id.as_str()).map(|(index, _)| index);
                if found.is_none() {
                    self.errors.push(DefinitionError::UnknownStep {
                        at: at().field(field),
                        step: id.to_string(),
                    });
                }
                found
            };
            let (from, to) = (
                resolve("from", &dependency.from),
                resolve("to", &dependency.to),
            );
            match (from, to) {
                (Some(from), Some(to)) if from == to => {
                    self.errors.push(DefinitionError::SelfReference {
                        at: at().field("to"),
                        binding: dependency.to.to_string(),
                    })
                }
                (Some(from), Some(to)) => self.edges.push((
                    from,
                    to,
                    Edge {
                        dependency: true,
                        ..Edge::default()
                    },
                )),
                _ => {}
            }
        }
    }

    /// Without `dependencies`, each step runs after the one listed before it.
    pub(super) fn listed_order(&mut self, definition: &WorkflowDefinition) {
        if definition.dependencies.is_none() {
            for index in 1..definition.steps.len() {
                self.edges.push((
                    index - 1,
                    index,
                    Edge {
                        order: true,
                        ..Edge::default()
                    },
                ));
            }
        }
    }

    /// One node per step, in listed order, and one edge per pair of steps.
    pub(super) fn graph(&mut self, definition: &WorkflowDefinition) -> DiGraph<StepId, Edge> {
        let mut graph = DiGraph::with_capacity(definition.steps.len(), self.edges.len());
        for step in &definition.steps {
            graph.add_node(step.id.clone());
        }
        self.edges.sort_unstable_by_key(|&(from, to, _)| (from, to));
        let mut pending: Option<(usize, usize, Edge)> = None;
        for &(from, to, edge) in &self.edges {
            match &mut pending {
                Some((f, t, merged)) if (*f, *t) == (from, to) => {
                    merged.dependency |= edge.dependency;
                    merged.data |= edge.data;
                    merged.order |= edge.order;
                }
                _ => {
                    if let Some((f, t, merged)) = pending.replace((from, to, edge)) {
                        graph.add_edge(NodeIndex::new(f), NodeIndex::new(t), merged);
                    }
                }
            }
        }
        if let Some((f, t, merged)) = pending {
            graph.add_edge(NodeIndex::new(f), NodeIndex::new(t), merged);
        }
        graph
    }

    /// Kahn's algorithm with the lowest index first; reports cycles if it cannot finish.
    pub(super) fn order(
        &mut self,
        graph: &DiGraph<StepId, Edge>,
        definition: &WorkflowDefinition,
    ) -> Vec<usize> {
        let count = graph.node_count();
        let mut incoming: Vec<usize> = (0..count)
            .map(|index| {
                graph
                    .edges_directed(NodeIndex::new(index), petgraph::Direction::Incoming)
                    .count()
            })
            .collect();
        let mut ready: BinaryHeap<Reverse<usize>> = (0..count)
            .filter(|&index| incoming[index] == 0)
            .map(Reverse)
            .collect();
        let mut order = Vec::with_capacity(count);
        while let Some(Reverse(index)) = ready.pop() {
            order.push(index);
            for edge in graph.edges(NodeIndex::new(index)) {
                let target = edge.target().index();
                incoming[target] -= 1;
                if incoming[target] == 0 {
                    ready.push(Reverse(target));
                }
            }
        }
        if order.len() < count {
            self.cycles(graph, definition);
        }
        order
    }

    /// One error per strongly connected component: the shortest cycle through its
    /// first-listed step, every step on it named in order.
    fn cycles(&mut self, graph: &DiGraph<StepId, Edge>, definition: &WorkflowDefinition) {
        let mut components: Vec<Vec<NodeIndex>> = petgraph::algo::tarjan_scc(graph)
            .into_iter()
            .filter(|component| component.len() > 1)
            .collect();
        for component in &mut components {
            component.sort_unstable();
        }
        components.sort_unstable_by_key(|component| component.first().copied());
        for component in components {
            let Some(&start) = component.first() else {
                continue;
            };
            let Some(path) = shortest_cycle(graph, &component, start) else {
                continue;
            };
            let through_listed_order = path.windows(2).any(|pair| {
                graph
                    .find_edge(pair[0], pair[1])
                    .and_then(|edge| graph.edge_weight(edge))
                    .is_some_and(|edge| edge.order && !edge.dependency && !edge.data)
            });
            let steps: Vec<StepId> = path
                .iter()
                .filter_map(|node| graph.node_weight(*node).cloned())
                .collect();
            let first = definition.steps.get(start.index()).map(|step| &step.id);
            self.errors.push(DefinitionError::Cycle {
                at: Location::step(start.index(), first),
                steps,
                through_listed_order,
            });
        }
    }
}

/// The shortest cycle from `start` back to itself inside `component` (sorted), found by
/// breadth-first search: `start`, the steps on the cycle in order, and `start` again.
fn shortest_cycle(
    graph: &DiGraph<StepId, Edge>,
    component: &[NodeIndex],
    start: NodeIndex,
) -> Option<Vec<NodeIndex>> {
    let mut parent: HashMap<NodeIndex, NodeIndex> = HashMap::new();
    let mut queue = VecDeque::from([start]);
    let mut closing = None;
    'search: while let Some(node) = queue.pop_front() {
        for edge in graph.edges(node) {
            let next = edge.target();
            if next == start {
                closing = Some(node);
                break 'search;
            }
            if component.binary_search(&next).is_ok() && !parent.contains_key(&next) {
                parent.insert(next, node);
                queue.push_back(next);
            }
        }
    }
    let mut node = closing?;
    let mut path = vec![start];
    while node != start {
        path.push(node);
        node = parent.get(&node).copied().unwrap_or(start);
    }
    // `path` is start, then the cycle backwards; put it forwards and close it.
    path[1..].reverse();
    path.push(start);
    Some(path)
}
