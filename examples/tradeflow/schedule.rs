//! `schedule`: the cron firings of a workflow's `SCHEDULED` triggers in a range.

use std::io::{BufWriter, Write as _};

use chrono::{DateTime, SecondsFormat, Utc};
use tradeflow::definition::Location;
use tradeflow::plan::TriggerKind;
use tradeflow::scheduler::scheduled_firings;

use crate::{Problems, cli, files};

/// The line of `schedule` in the usage.
pub(crate) const USAGE: &str = "tradeflow schedule WORKFLOW.json --from RFC3339 --to RFC3339";

/// The arguments of `schedule` as clap reads them (its help is in [`crate::cli::Verb`]).
#[derive(Debug, clap::Args)]
#[command(override_usage = USAGE)]
pub(crate) struct Args {
    #[command(flatten)]
    workflow: cli::WorkflowFile,
    /// The start of the range, included (required).
    #[arg(long, value_name = "RFC3339", allow_hyphen_values = true)]
    from: Option<String>,
    /// The end of the range, excluded (required).
    #[arg(long, value_name = "RFC3339", allow_hyphen_values = true)]
    to: Option<String>,
}

/// The arguments of `schedule`, checked.
#[derive(Debug)]
struct Schedule {
    workflow: String,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
}

impl Args {
    fn check(self) -> Result<Schedule, Problems> {
        let workflow = self.workflow.one("schedule")?;
        let time = |option: &str, value: Option<String>| {
            let value = cli::required(value, "schedule", &format!("{option} RFC3339"))?;
            cli::time(option, &value)
        };
        let (from, to) = (time("--from", self.from)?, time("--to", self.to)?);
        if to <= from {
            return Err(cli::usage(&format!(
                "--to `{}` must be after --from `{}`",
                to.to_rfc3339_opts(SecondsFormat::AutoSi, true),
                from.to_rfc3339_opts(SecondsFormat::AutoSi, true)
            )));
        }
        Ok(Schedule { workflow, from, to })
    }
}

/// `schedule`: prints every cron firing of the workflow's `SCHEDULED` triggers in
/// `[from, to)`, one RFC 3339 UTC time a line, and a summary on stderr.
pub(crate) fn schedule(args: Args) -> Result<u8, Problems> {
    let args = args.check()?;
    let plan = files::load(&args.workflow)?;
    let scheduled: Vec<String> = plan
        .triggers()
        .iter()
        .filter_map(|trigger| match trigger.kind() {
            TriggerKind::Scheduled(schedule) => Some(format!(
                "{} `{}` in {}",
                Location::trigger(trigger.index(), Some(trigger.trigger_type())),
                schedule.pattern(),
                schedule.timezone()
            )),
            _ => None,
        })
        .collect();
    if scheduled.is_empty() {
        eprintln!("{}: no SCHEDULED trigger: nothing fires", args.workflow);
        return Ok(0);
    }
    let mut out = BufWriter::new(std::io::stdout().lock());
    let mut count = 0usize;
    for (_, at) in scheduled_firings(plan.triggers(), args.from, args.to) {
        // A closed stdout (`| head`) ends the listing; it is not an error.
        if writeln!(out, "{}", at.to_rfc3339_opts(SecondsFormat::Secs, true)).is_err() {
            return Ok(0);
        }
        count += 1;
    }
    if out.flush().is_err() {
        return Ok(0);
    }
    eprintln!(
        "{}: {count} cron firing(s) of {} in [{}, {}); conditions not evaluated",
        args.workflow,
        scheduled.join(", "),
        args.from.to_rfc3339_opts(SecondsFormat::AutoSi, true),
        args.to.to_rfc3339_opts(SecondsFormat::AutoSi, true),
    );
    Ok(0)
}
