//! `help`: the usage, every verb, the options and the exit codes.

use crate::{plan, replay, resume, run, runs, schedule, show, simulate, stats, validate};

/// The usage: one line per verb.
pub(crate) fn usage() -> String {
    let verbs = [
        validate::USAGE,
        plan::USAGE,
        simulate::USAGE,
        run::USAGE,
        resume::USAGE,
        runs::USAGE,
        show::USAGE,
        schedule::USAGE,
        replay::USAGE,
        "tradeflow audit verify|list --store sqlite:PATH",
        stats::USAGE,
        "tradeflow help",
    ];
    format!("usage:\n  {}", verbs.join("\n  "))
}

/// What `help` (and `tradeflow --help`) prints: the usage, then [`DETAILS`].
pub(crate) fn text() -> String {
    format!("{}\n\n{DETAILS}", usage())
}

/// What `help` prints after the usage.
const DETAILS: &str = r#"verbs:
  validate  checks a workflow file; prints a one-line summary.
  plan      prints the workflow's execution DAG (Graphviz dot by default).
  simulate  runs the workflow against the scripted agents of AGENTS.json on a virtual
            clock starting at --start (default 2026-01-05T09:00:00Z): delays take no
            time. The input defaults to {}, the seed to 0, the host context that
            conditions read to empty (--context CONTEXT.json: a JSON object of values by
            name, as a timeline's context). Prints the run report (pretty JSON) on
            stdout, progress on stderr. --runs N (default 1) makes N runs on one engine
            and one virtual clock: run i starts when run i - C ends (--concurrency C,
            default 1), is seeded --seed + i - 1, and takes line i mod lines of
            --inputs FILE.jsonl (one JSON object a line; else --input). With N > 1 it
            prints {"runs": [report, ...], "decisions": {stepId: {contextKey: {optionId:
            {"chosen": n, "meanReward": x}}}}, "scaling": [{"at", "agentType",
            "from", "to", "reason"}]}: what the decision steps chose, and the mean of
            the rewards learned (null for none); what the auto-scaler did to the
            agents file's pools, evaluated after each run. --metrics FILE writes the
            runs' metrics to FILE after them, in the Prometheus text format (histograms
            with their buckets, _sum and _count; counters; gauges).
  run       the same run on the real clock: scripted delays and approval afterMs are
            real milliseconds. Every step is journaled to the SQLite file PATH (created
            if missing) before it counts as done, with the workflow's definition. The run
            id is new, so that it never collides with runs already in PATH:
            run-<UTC start time>-<process id>, e.g. run-20260105T090000.123Z-4242.
            Prints the run report (pretty JSON) on stdout, progress on stderr.
  resume    finishes every unfinished run in the existing store PATH (after a crash or a
            kill -9), each from its journal, with the definition kept in the store: steps
            journaled as done are not run again; calls cut off are made again with the
            same idempotency key (a parallel or loop step cut off runs again from its
            first item or iteration, same keys); approvals that waited wait again and
            are answered as AGENTS.json says. Prints one compact JSON report per line on
            stdout, in the order the runs end; progress on stderr. With nothing to
            resume, prints nothing on stdout (stderr says so) and exits 0. --agents is
            required as soon as there is a run to finish (exit 2 without it).
  runs      lists the runs of the existing store PATH, newest first (the reverse of the
            order they started in), one a line under a header: RUN, WORKFLOW, STATUS,
            STARTED (RFC 3339, UTC, milliseconds) and DURATION (2.350s; - until the run
            ends). --status STATUS keeps the runs with that status (COMPLETED, FAILED,
            RUNNING, WAITING, ...; any case), --workflow ID those of that workflow,
            --limit N the newest N of those. A run whose journal cannot be read is named
            on stderr. Exit 0.
  show      shows the run RUN_ID of the existing store PATH: its status, start, end and
            error, then every step of its workflow in the definition's order: status,
            agent(s), calls, when it began and ended, why it was skipped, who approved,
            its error, the recoveries, the decision, the adaptations and the calls in
            flight. --format json prints it as one JSON object ({"runId", "workflowId",
            "version", "status", "startedAt", "endedAt", "durationMs", "error", "steps":
            [{"stepId", "status", "agentId", "attempts", "startedAt", "endedAt", ...}]});
            --format mermaid prints a Mermaid gantt chart of the steps on the run's
            clock (done, crit for failed and cancelled, active while running, a
            milestone for skipped). Exit 2 for a run the store does not have.
  schedule  lists every time a SCHEDULED trigger of the workflow fires in [--from, --to),
            one RFC 3339 UTC time a line (2026-11-23T09:00:00Z), in time order (one line
            per trigger when several fire at once). Only the cron patterns are read, each
            in its trigger's timezone: trigger conditions are NOT evaluated (they read a
            host context, which only a running host or a replay's timeline supplies), so
            these are the cron firings, some of which a condition may hold back.
  replay    plays TIMELINE.json (a context, its changes, events and metric reports from
            start to end) through the workflow's triggers on a virtual clock that starts
            at the timeline's start: at each instant, context changes first, then the
            triggers (events and metrics in file order, cron occurrences), each condition
            evaluated against the context of that instant. Every trigger that fires starts
            a run with the timeline's input against the scripted agents of AGENTS.json
            (approvals answered as the file says); every run is run to its end. Prints
            {"runs": [{"trigger", "firedAt", "report"}]} (pretty JSON) on stdout, ordered
            by firedAt (ties: trigger index, then timeline order); on stderr, one line per
            trigger considered (fired, or why not). The seed defaults to 0; the same
            files and seed print the same bytes.
  audit     verify: recomputes the audit log's hash chain in the store PATH from its
            first entry; prints "N entries, head HASH" when every entry matches (keep
            the head elsewhere: a chain rewritten whole or cut short shows only against
            it), else names the first entry that does not on stderr ("PATH: audit entry
            17: its hash is not the SHA-256 of its body") and exits 1. list: prints
            every entry, one line each: {"hash": HASH, "entry": BODY}, BODY the bytes
            hashed.
  stats     prints the performance report of the runs in the existing store PATH (of
            --workflow ID alone, with it) as pretty JSON: per workflow, the runs that
            ended, their success rate and mean/p50/p95/p99 duration; per agent, the calls
            journaled. Exits 2 when PATH is missing or not a tradeflow store.

options:
  --user NAME  (simulate, run) the user the run is started for (journaled).
  --policy POLICY.json  (simulate, run) who may do what: {"roles": {ROLE: {ACTION:
            [PATTERN, ...], "resources": {"cpu": N, ...}}}, "users": {USER: [ROLE, ...]}},
            deny by default. The run is checked for --user (execute, the steps'
            resourceRequirements against the caps), and so are the scripted approvers'
            answers (approve; four eyes: not the run's user). A refused run exits 3.
  --effects FILE  (run, resume) before each agent call, appends one JSON line to FILE and
            syncs it: {"runId","stepId","item","attempt","agentId","idempotencyKey",
            "taskType"} (item: null outside parallel steps). A call made again by resume
            carries the idempotencyKey of the interrupted one. A call that reconciles a
            sideEffects step has its line too: the reconcile task type in taskType, the
            attempt and idempotencyKey of the call it asks about.

exit codes:
  0  success (simulate: every run COMPLETED; run: the run COMPLETED; resume: every resumed run COMPLETED, or
     nothing to resume; schedule; replay, however its runs ended; runs; show; stats;
     audit verify: the chain is intact)
  1  a run ended otherwise, or is stuck (a step waits for an approval with no scripted
     answer and no timeout; after run and resume it stays unfinished in the store);
     audit verify: an entry does not match (the first one is named)
  2  invalid files or arguments, every problem on stderr, one a line (PATH: problem);
     for runs and show, also a store that is missing or not a tradeflow store, and
     (show) a run the store does not have
  3  the run was refused (--policy): the reason on stderr"#;
