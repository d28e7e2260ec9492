//! What happened to each action: the values the worker decides a message's
//! disposition from, and that logs and audit records show.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::rules::ActionKind;
use crate::safety::blast_radius::Excluded;
use crate::safety::{Guard, GuardTrip};

/// The outcome of one planned action.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// The change was made.
    Done,
    /// Dry run: every read was made and the targets computed; nothing changed.
    DryRun,
    /// Nothing needed doing (e.g. no instance is OutOfService).
    NothingToDo { reason: String },
    /// A guard stopped the action. Not an error: the decision is final.
    Suppressed {
        guard: Guard,
        detail: String,
        numbers: BTreeMap<&'static str, i64>,
    },
    /// This action already ran for this alarm transition.
    Duplicate,
    /// Another message about the same transition is being handled now.
    Busy,
    /// An AWS call failed.
    Failed { transient: bool, error: String },
    /// Shutdown came before the action changed anything.
    Aborted,
}

impl Outcome {
    pub fn suppressed(trip: GuardTrip) -> Outcome {
        Outcome::Suppressed {
            guard: trip.guard,
            detail: trip.detail,
            numbers: trip.numbers,
        }
    }

    /// A short, low-cardinality label for logs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Done => "done",
            Outcome::DryRun => "dry_run",
            Outcome::NothingToDo { .. } => "nothing_to_do",
            Outcome::Suppressed { .. } => "suppressed",
            Outcome::Duplicate => "duplicate",
            Outcome::Busy => "busy",
            Outcome::Failed { .. } => "failed",
            Outcome::Aborted => "aborted",
        }
    }

    /// Whether the decision is final for this transition (so a redelivery
    /// must not decide again).
    pub fn is_final(&self) -> bool {
        !matches!(
            self,
            Outcome::Failed { .. } | Outcome::Aborted | Outcome::Busy
        )
    }
}

/// One action's report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ActionReport {
    pub rule: String,
    pub action_index: usize,
    pub kind: ActionKind,
    /// What the action is about: `elb:web`, `instance:i-0abc`, `topic:arn:...`.
    pub target: String,
    /// The instances acted on (or that would have been, in a dry run).
    pub targets: Vec<String>,
    #[serde(flatten)]
    pub outcome: Outcome,
    /// Caps that shrank the target list, with their numbers.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub capped: Vec<GuardTrip>,
    /// Instances left out, and why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub excluded: Vec<Excluded>,
    /// The load balancer's reason code for each bad member of a pool, e.g.
    /// `Target.FailedHealthChecks`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub health_reasons: BTreeMap<String, String>,
    pub request_ids: Vec<String>,
    pub duration_ms: u64,
    /// Of which waiting for AWS calls, in microseconds.
    pub aws_us: u64,
    /// Of which in `confirm_after` waits, in microseconds.
    pub waited_us: u64,
    /// The SNS message id of the escalation sent when a guard stopped it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub escalation_message_id: Option<String>,
    /// The replica whose claim on this action was taken over after it died
    /// mid-action (the action re-read its target before acting again).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub taken_over_from: Option<String>,
    /// The target's remediation budget after this action spent an attempt
    /// of it (`[limits] remediation_budget`; none when unset, or nothing
    /// was attempted).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget: Option<BudgetUse>,
    /// `run_command`: each instance's invocation status, with the
    /// script's exit code, e.g. `Success (exit 0)`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub command_status: BTreeMap<String, String>,
    /// The write failed — a timeout whose request may have gone through —
    /// and re-reading the target showed the change made: the write's
    /// error. The action is done, and was not repeated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unknown_outcome: Option<String>,
}

/// How much of a target's remediation budget is spent: `used` attempts
/// of `limit` within `window_s` seconds, this one included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct BudgetUse {
    pub used: u32,
    pub limit: u32,
    pub window_s: u64,
}

impl ActionReport {
    /// A one-line summary for notifications.
    pub fn summary(&self) -> String {
        let targets = if self.targets.is_empty() {
            String::new()
        } else {
            format!(" [{}]", self.targets.join(", "))
        };
        let what = match &self.outcome {
            Outcome::Suppressed { guard, detail, .. } => format!("suppressed by {guard}: {detail}"),
            Outcome::NothingToDo { reason } => format!("nothing to do: {reason}"),
            Outcome::Failed { error, .. } => format!("failed: {error}"),
            other => other.label().to_string(),
        };
        format!(
            "{} {} on {}{targets}: {what}",
            self.rule, self.kind, self.target
        )
    }
}
