//! The engine: which rules an event matches and what they would do.
//!
//! [`evaluate`] is pure and deterministic: the same rules, event and `now`
//! always give the same [`Plan`], with matches in rule load order. A rule that
//! matches but may not act (disabled, or the event is too old) is recorded in
//! [`Plan::skipped`] with a reason, never dropped silently.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::event::AlarmEvent;
use crate::rules::limits::format_duration;
use crate::rules::{PlannedAction, Rule, RuleSet};

/// Everything the rules say about one event.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub matches: Vec<RuleMatch>,
    pub skipped: Vec<Skipped>,
}

/// A rule that matched and will act.
#[derive(Debug, Clone, Serialize)]
pub struct RuleMatch {
    #[serde(rename = "rule", serialize_with = "serialize_rule_name")]
    pub rule: Arc<Rule>,
    pub dry_run: bool,
    pub actions: Vec<PlannedAction>,
}

/// A rule that matched but will not act, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    pub rule: String,
    pub reason: String,
}

fn serialize_rule_name<S: serde::Serializer>(r: &Arc<Rule>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&r.name)
}

/// Options for evaluation that come from the daemon's configuration.
#[derive(Debug, Clone, Copy, Default)]
pub struct EvalOptions {
    /// Ignore alarms older than this, unless a rule sets its own limit.
    pub max_event_age: Option<Duration>,
    /// The global dry-run switch: every match is dry-run.
    pub dry_run: bool,
}

/// Decides which rules fire for `event` at `now`, and what they would do.
pub fn evaluate(rules: &RuleSet, event: &AlarmEvent, now: DateTime<Utc>) -> Plan {
    evaluate_with(rules, event, now, EvalOptions::default())
}

/// [`evaluate`] with the daemon's options.
pub fn evaluate_with(
    rules: &RuleSet,
    event: &AlarmEvent,
    now: DateTime<Utc>,
    options: EvalOptions,
) -> Plan {
    let mut plan = Plan {
        matches: Vec::new(),
        skipped: Vec::new(),
    };
    let age = now.signed_duration_since(event.state_change_time);
    for rule in rules.candidates(event) {
        if !rule.matcher.matches(event) {
            continue;
        }
        if !rule.enabled {
            plan.skipped.push(Skipped {
                rule: rule.name.clone(),
                reason: "disabled".to_string(),
            });
            continue;
        }
        if let Some(max) = rule.limits.max_event_age.or(options.max_event_age) {
            let max_ms = i64::try_from(max.as_millis()).unwrap_or(i64::MAX);
            if age.num_milliseconds() > max_ms {
                let age = Duration::from_millis(u64::try_from(age.num_milliseconds()).unwrap_or(0));
                plan.skipped.push(Skipped {
                    rule: rule.name.clone(),
                    reason: format!(
                        "stale: the alarm changed state {} ago, max_event_age is {}",
                        format_duration(Duration::from_secs(age.as_secs())),
                        format_duration(max)
                    ),
                });
                continue;
            }
        }
        plan.matches.push(RuleMatch {
            rule: Arc::clone(rule),
            dry_run: rule.dry_run || options.dry_run,
            actions: rule
                .actions
                .iter()
                .map(|a| a.plan(event, &rule.name))
                .collect(),
        });
    }
    plan
}
