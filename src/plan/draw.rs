//! Drawing a plan: Graphviz DOT and Mermaid flowcharts.
//!
//! Edges that carry data (bindings) are solid; order-only edges (explicit dependencies
//! without a binding) are dashed; edges that come only from listed order are dotted.
//! Node shapes follow the step type.

use std::fmt::Write as _;
use std::str::FromStr;

use super::{Edge, ExecutionPlan, PlanStep, StepKind};
use crate::definition::{Quoted, StepType};

/// The output formats of [`ExecutionPlan::draw`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DrawFormat {
    /// Graphviz DOT (`dot -Tsvg`).
    Dot,
    /// A Mermaid flowchart (renders in GitHub Markdown).
    Mermaid,
}

impl FromStr for DrawFormat {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "dot" => Ok(Self::Dot),
            "mermaid" => Ok(Self::Mermaid),
            other => Err(format!(
                "unknown format `{}`, expected `dot` or `mermaid`",
                Quoted(other)
            )),
        }
    }
}

pub(super) fn draw(plan: &ExecutionPlan, format: DrawFormat) -> String {
    match format {
        DrawFormat::Dot => dot(plan),
        DrawFormat::Mermaid => mermaid(plan),
    }
}

/// What a node's label says under the step id.
fn detail(step: &PlanStep) -> String {
    let kind = step.step_type().as_str();
    match step.kind() {
        StepKind::Task(task) | StepKind::Decision(task) | StepKind::Loop { task, .. } => {
            format!("{kind} · {}", task.task_type)
        }
        StepKind::Parallel { task, over, .. } => format!("{kind} · {} per {over}", task.task_type),
        StepKind::Condition { branches, default } => {
            let names: Vec<&str> = branches.iter().map(|branch| branch.name.as_str()).collect();
            format!("{kind} · {} | {default}", names.join(" | "))
        }
        StepKind::HumanApproval { .. } => kind.to_owned(),
    }
}

fn gated(step: &PlanStep) -> bool {
    step.condition().is_some() || step.skip_condition().is_some()
}

fn dot(plan: &ExecutionPlan) -> String {
    let escape = |text: &str| text.replace('\\', "\\\\").replace('"', "\\\"");
    let mut out = String::new();
    let _ = writeln!(out, "digraph \"{}\" {{", escape(plan.workflow_id()));
    out.push_str("  rankdir=LR;\n  node [shape=box, style=rounded, fontname=\"Helvetica\"];\n");
    for step in plan.steps() {
        let shape = match step.step_type() {
            StepType::Task => "box",
            StepType::Decision => "diamond",
            StepType::Parallel => "box3d",
            StepType::Loop => "cds",
            StepType::Condition => "hexagon",
            StepType::HumanApproval => "house",
        };
        let gate = if gated(step) { "\\n[conditional]" } else { "" };
        let _ = writeln!(
            out,
            "  \"{}\" [shape={shape}, label=\"{}\\n{}{gate}\"];",
            escape(step.id().as_str()),
            escape(step.id().as_str()),
            escape(&detail(step)),
        );
    }
    for edge in plan.graph().edge_indices() {
        let (Some((from, to)), Some(weight)) = (
            plan.graph().edge_endpoints(edge),
            plan.graph().edge_weight(edge),
        ) else {
            continue;
        };
        let style = match style(*weight) {
            Style::Data => "",
            Style::OrderOnly => " [style=dashed]",
            Style::ListedOrder => " [style=dotted]",
        };
        let _ = writeln!(
            out,
            "  \"{}\" -> \"{}\"{style};",
            escape(plan.graph()[from].as_str()),
            escape(plan.graph()[to].as_str()),
        );
    }
    out.push_str("}\n");
    out
}

fn mermaid(plan: &ExecutionPlan) -> String {
    let escape = |text: &str| text.replace('"', "#quot;");
    let mut out = String::from("flowchart LR\n");
    for step in plan.steps() {
        let label = format!(
            "{}<br/>{}{}",
            escape(step.id().as_str()),
            escape(&detail(step)),
            if gated(step) {
                "<br/>[conditional]"
            } else {
                ""
            }
        );
        let (open, close) = match step.step_type() {
            StepType::Task => ("[", "]"),
            StepType::Decision => ("{", "}"),
            StepType::Parallel => ("[[", "]]"),
            StepType::Loop => ("([", "])"),
            StepType::Condition => ("{{", "}}"),
            StepType::HumanApproval => ("[/", "/]"),
        };
        let _ = writeln!(out, "  s{}{open}\"{label}\"{close}", step.index());
    }
    for edge in plan.graph().edge_indices() {
        let (Some((from, to)), Some(weight)) = (
            plan.graph().edge_endpoints(edge),
            plan.graph().edge_weight(edge),
        ) else {
            continue;
        };
        let arrow = match style(*weight) {
            Style::Data => "-->",
            Style::OrderOnly | Style::ListedOrder => "-.->",
        };
        let _ = writeln!(out, "  s{} {arrow} s{}", from.index(), to.index());
    }
    out
}

enum Style {
    Data,
    OrderOnly,
    ListedOrder,
}

fn style(edge: Edge) -> Style {
    if edge.is_data() {
        Style::Data
    } else if edge.is_dependency() {
        Style::OrderOnly
    } else {
        Style::ListedOrder
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_and_mermaid_show_every_step_and_edge() {
        let plan =
            ExecutionPlan::from_json(include_str!("../../examples/workflows/algo-trading.json"))
                .unwrap();
        let dot = plan.draw(DrawFormat::Dot);
        assert!(dot.starts_with("digraph \"algo-trading-strategy\" {"));
        assert!(dot.contains("\"market-analysis\" -> \"risk-assessment\";"));
        assert!(
            dot.contains("order-execution\\nparallel · ORDER_EXECUTION per orders\\n[conditional]")
        );
        let mermaid = plan.draw(DrawFormat::Mermaid);
        assert!(mermaid.starts_with("flowchart LR\n"));
        assert!(mermaid.contains("  s3[[\"order-execution<br/>parallel · ORDER_EXECUTION per orders<br/>[conditional]\"]]"));
        assert_eq!(
            mermaid.matches("-->").count() + mermaid.matches("-.->").count(),
            plan.graph().edge_count()
        );
        assert_eq!("mermaid".parse::<DrawFormat>(), Ok(DrawFormat::Mermaid));
        assert!("svg".parse::<DrawFormat>().is_err());
    }
}
