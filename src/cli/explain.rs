//! `reflex explain`: decode one message body and show what the rules would do.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use clap::Args;
use serde_json::json;

use super::{exit, read_input, RulesArg};
use crate::event::{decode, format_millis, parse_aws_time, AlarmEvent};
use crate::plan::{evaluate, Plan};

#[derive(Debug, Args)]
pub struct ExplainArgs {
    #[command(flatten)]
    pub rules: RulesArg,
    /// Print exactly one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
    /// Evaluate as if it were this time (RFC 3339), or `event` for the
    /// alarm's own state-change time. Default: now.
    #[arg(long, value_name = "TIME")]
    pub now: Option<String>,
    /// A `reflex.toml`: its `[limits] remediation_budget` is shown with the
    /// targets of the matched actions it would count against.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The message body: a file, or `-` for stdin.
    #[arg(default_value = "-")]
    pub input: PathBuf,
}

/// Resolves `--now`: a time, `event`, or the clock.
pub fn resolve_now(now: Option<&str>, event: &AlarmEvent) -> Result<DateTime<Utc>, String> {
    match now {
        None => Ok(Utc::now()),
        Some("event") => Ok(event.state_change_time),
        Some(t) => parse_aws_time(t)
            .ok_or_else(|| format!("--now {t:?} is not an RFC 3339 time or `event`")),
    }
}

pub fn run(args: &ExplainArgs) -> u8 {
    let rules = match args.rules.load() {
        Ok(r) => r,
        Err(code) => return code,
    };
    let body = match read_input(&args.input) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", args.input.display());
            return exit::USAGE;
        }
    };
    let event = match decode(&body) {
        Ok(e) => e,
        Err(poison) => {
            if args.json {
                println!(
                    "{}",
                    json!({"outcome": "poison", "code": poison.code.as_str(), "reason": poison.reason})
                );
            } else {
                println!("poison: {} ({})", poison.code, poison.reason);
            }
            return exit::POISON;
        }
    };
    let now = match resolve_now(args.now.as_deref(), &event) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::USAGE;
        }
    };
    let budget = match &args.config {
        None => None,
        Some(path) => match crate::config::Config::load(Some(path), Default::default()) {
            Ok(c) => Some(c.remediation_budget),
            Err(errors) => {
                for e in &errors {
                    eprintln!("{e}");
                }
                return exit::USAGE;
            }
        },
    };
    let plan = evaluate(&rules, &event, now);
    if args.json {
        let mut out = explain_json(&event, &plan);
        if let Some(budget) = budget {
            out["remediation_budget"] = budget_json(budget, &plan);
        }
        println!("{out}");
    } else {
        print_human(&event, &plan, rules.version());
        if let Some(budget) = budget {
            print_budget(budget, &plan);
        }
    }
    exit::OK
}

/// The `explain --json` object.
pub fn explain_json(event: &AlarmEvent, plan: &Plan) -> serde_json::Value {
    json!({
        "outcome": "decoded",
        "event": event_json(event),
        "matches": plan.matches,
        "skipped": plan.skipped,
    })
}

/// The targets of the plan's destructive actions: what the remediation
/// budget counts attempts against.
fn budget_targets(plan: &Plan) -> Vec<String> {
    let mut targets: Vec<String> = plan
        .matches
        .iter()
        .flat_map(|m| m.actions.iter())
        .filter(|a| a.kind().is_destructive())
        .map(|a| a.target())
        .collect();
    targets.sort();
    targets.dedup();
    targets
}

/// `explain --json --config`: the budget (null when the config sets none)
/// and the targets it would count against. The counts themselves live in
/// the daemon's state store.
fn budget_json(budget: Option<crate::rules::Rate>, plan: &Plan) -> serde_json::Value {
    json!({
        "budget": budget.map(|b| b.to_string()),
        "targets": budget.map(|_| budget_targets(plan)).unwrap_or_default(),
    })
}

fn print_budget(budget: Option<crate::rules::Rate>, plan: &Plan) {
    match budget {
        None => println!("remediation budget: none ([limits] remediation_budget is not set)"),
        Some(b) => {
            println!("remediation budget: {b} per target, across all rules");
            for t in budget_targets(plan) {
                println!("  counts against {t}");
            }
        }
    }
}

/// An event as `explain --json` and audit records show it.
pub fn event_json(e: &AlarmEvent) -> serde_json::Value {
    json!({
        "alarm_name": e.alarm_name,
        "alarm_arn": e.alarm_arn,
        "account_id": e.account_id,
        "region": e.region,
        "new_state": e.new_state,
        "old_state": e.old_state,
        "state_change_time": format_millis(&e.state_change_time),
        "kind": e.kind,
        "namespace": e.namespace,
        "metric_name": e.metric_name,
        "dimensions": e.dimensions,
        "threshold": e.threshold,
        "description": e.description,
        "format": e.format,
        "sns_message_id": e.sns_message_id,
        "topic_arn": e.topic_arn,
    })
}

fn print_human(e: &AlarmEvent, plan: &Plan, version: &str) {
    let or_dash = |s: &Option<String>| s.clone().unwrap_or_else(|| "-".to_string());
    println!("event ({:?}):", e.format);
    println!("  alarm        {}", e.alarm_name);
    println!("  arn          {}", or_dash(&e.alarm_arn));
    println!(
        "  state        {} -> {} at {}",
        e.old_state.map_or("-".to_string(), |s| s.to_string()),
        e.new_state,
        format_millis(&e.state_change_time)
    );
    println!(
        "  metric       {} / {}",
        or_dash(&e.namespace),
        or_dash(&e.metric_name)
    );
    for (k, v) in &e.dimensions {
        println!("  dimension    {k} = {v}");
    }
    if let Some(id) = &e.sns_message_id {
        println!("  sns message  {id} via {}", or_dash(&e.topic_arn));
    }
    println!("rules (version {version}):");
    if plan.matches.is_empty() && plan.skipped.is_empty() {
        println!("  no rule matches");
    }
    for m in &plan.matches {
        println!(
            "  match {}{}",
            m.rule.name,
            if m.dry_run { " (dry-run)" } else { "" }
        );
        for a in &m.actions {
            println!("    {}", serde_json::to_string(a).unwrap_or_default());
        }
    }
    for s in &plan.skipped {
        println!("  skipped {}: {}", s.rule, s.reason);
    }
}
