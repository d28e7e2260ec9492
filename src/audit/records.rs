//! The audit trail's records: the one JSON-lines format `reflex run`
//! writes and `reflex audit` reads back. Every type derives both
//! `Serialize` and `Deserialize`, so a renamed or retyped field breaks the
//! round-trip test instead of being read back as a default.
//!
//! The records are their own types, copied out of the worker's values when
//! written: the trail is a contract with the files already on disk, and must
//! not change shape because an internal type did. Fields written only when
//! they have something to say (`capped`, `excluded`, `escalation_message_id`,
//! `visibility_lost`)
//! default when absent; every other field is required, and a line without it
//! is reported as malformed.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::aws::QueueMessage;
use crate::dead_letter::DeadLetterCode;
use crate::disposition::{Disposition, MessageOutcome};
use crate::event::{AlarmEvent, AlarmState};
use crate::outcome::{ActionReport, Outcome};
use crate::plan::Skipped;
use crate::rules::ActionKind;
use crate::safety::blast_radius::Excluded;
use crate::safety::GuardTrip;

/// One line of the audit trail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AuditRecord {
    /// One action of one matched rule, and what became of it.
    Action(Box<ActionRecord>),
    /// What was decided about one received message.
    Message(Box<MessageRecord>),
    /// Something an operator did by hand (`reflex state forget-cooldown`).
    Operator(Box<OperatorRecord>),
}

/// `{"type":"operator", ...}`: a change an operator made by hand.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OperatorRecord {
    #[serde(with = "millis")]
    pub time: DateTime<Utc>,
    /// The command, e.g. `forget-cooldown`.
    pub command: String,
    pub rule: String,
    pub target: String,
    /// What was undone, e.g. the seconds the cooldown had left.
    pub detail: String,
    /// `$USER` of whoever ran it, if set.
    pub user: Option<String>,
    /// Which store it changed (`local <path>`, `dynamodb <table>`).
    pub store: String,
}

/// `{"type":"action", ...}`: the message's ids, then the action's report
/// (rule, kind, target, targets, outcome, guard and numbers, request ids,
/// duration).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionRecord {
    /// When the action finished.
    #[serde(with = "millis")]
    pub time: DateTime<Utc>,
    pub sqs_message_id: String,
    pub sns_message_id: Option<String>,
    pub alarm_name: String,
    pub rules_version: String,
    /// The rule ran in dry run (its own switch or the global one).
    pub dry_run: bool,
    pub rule: String,
    pub action_index: usize,
    pub kind: ActionKind,
    /// What the action is about: `elb:web`, `instance:i-0abc`, `topic:arn:...`.
    pub target: String,
    /// The instances acted on (or that would have been, in a dry run).
    pub targets: Vec<String>,
    #[serde(flatten)]
    pub outcome: OutcomeRecord,
    /// Caps that shrank the target list, with their numbers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capped: Vec<GuardRecord>,
    /// Instances left out, and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excluded: Vec<ExcludedRecord>,
    /// The load balancer's reason code for each bad member of a pool.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub health_reasons: BTreeMap<String, String>,
    pub request_ids: Vec<String>,
    pub duration_ms: u64,
    /// Of which waiting for AWS calls, in microseconds.
    pub aws_us: u64,
    /// Of which in `confirm_after` waits, in microseconds.
    pub waited_us: u64,
    /// The SNS message id of the escalation sent when a guard stopped it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalation_message_id: Option<String>,
    /// Set when this action's claim was taken over after its holder
    /// crashed: the record says so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub taken_over_from: Option<String>,
    /// The target's remediation budget after this action's attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<crate::outcome::BudgetUse>,
    /// `run_command`: each instance's invocation status and exit code.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub command_status: BTreeMap<String, String>,
    /// The write failed (its reply lost, say) and re-reading the target
    /// showed the change made: the write's error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unknown_outcome: Option<String>,
}

/// What became of an action: [`Outcome`] as written, under `"outcome"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum OutcomeRecord {
    Done,
    DryRun,
    NothingToDo {
        reason: String,
    },
    Suppressed {
        guard: String,
        detail: String,
        numbers: BTreeMap<String, i64>,
    },
    Duplicate,
    Busy,
    Failed {
        transient: bool,
        error: String,
    },
    Aborted,
}

impl OutcomeRecord {
    /// The label, as [`Outcome::label`].
    pub fn label(&self) -> &'static str {
        match self {
            OutcomeRecord::Done => "done",
            OutcomeRecord::DryRun => "dry_run",
            OutcomeRecord::NothingToDo { .. } => "nothing_to_do",
            OutcomeRecord::Suppressed { .. } => "suppressed",
            OutcomeRecord::Duplicate => "duplicate",
            OutcomeRecord::Busy => "busy",
            OutcomeRecord::Failed { .. } => "failed",
            OutcomeRecord::Aborted => "aborted",
        }
    }

    /// The guard that suppressed the action, if one did.
    pub fn guard(&self) -> Option<&str> {
        match self {
            OutcomeRecord::Suppressed { guard, .. } => Some(guard),
            _ => None,
        }
    }
}

impl From<&Outcome> for OutcomeRecord {
    fn from(o: &Outcome) -> Self {
        match o {
            Outcome::Done => OutcomeRecord::Done,
            Outcome::DryRun => OutcomeRecord::DryRun,
            Outcome::NothingToDo { reason } => OutcomeRecord::NothingToDo {
                reason: reason.clone(),
            },
            Outcome::Suppressed {
                guard,
                detail,
                numbers,
            } => OutcomeRecord::Suppressed {
                guard: guard.as_str().to_string(),
                detail: detail.clone(),
                numbers: owned_numbers(numbers),
            },
            Outcome::Duplicate => OutcomeRecord::Duplicate,
            Outcome::Busy => OutcomeRecord::Busy,
            Outcome::Failed { transient, error } => OutcomeRecord::Failed {
                transient: *transient,
                error: error.clone(),
            },
            Outcome::Aborted => OutcomeRecord::Aborted,
        }
    }
}

fn owned_numbers(numbers: &BTreeMap<&'static str, i64>) -> BTreeMap<String, i64> {
    numbers.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

/// A guard that shrank the target list, with its numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GuardRecord {
    pub guard: String,
    pub detail: String,
    pub numbers: BTreeMap<String, i64>,
}

impl From<&GuardTrip> for GuardRecord {
    fn from(t: &GuardTrip) -> Self {
        GuardRecord {
            guard: t.guard.as_str().to_string(),
            detail: t.detail.clone(),
            numbers: owned_numbers(&t.numbers),
        }
    }
}

/// An instance left out, and by which guard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExcludedRecord {
    pub instance_id: String,
    pub guard: String,
    pub reason: String,
}

impl From<&Excluded> for ExcludedRecord {
    fn from(e: &Excluded) -> Self {
        ExcludedRecord {
            instance_id: e.instance_id.clone(),
            guard: e.guard.as_str().to_string(),
            reason: e.reason.clone(),
        }
    }
}

/// `{"type":"message", ...}`: the decision about one received message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageRecord {
    /// When the decision was made (after every action, before the message
    /// was deleted, dead-lettered or released).
    #[serde(with = "millis")]
    pub time: DateTime<Utc>,
    pub sqs_message_id: String,
    pub sns_message_id: Option<String>,
    pub receive_count: u32,
    /// `null` for a message that did not decode (poison) or was released
    /// unread on shutdown.
    pub alarm: Option<AlarmRecord>,
    pub topic_arn: Option<String>,
    pub rules_version: Option<String>,
    /// Where that version came from, for rules read from S3 (the `s3://`
    /// prefix); absent for a local directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules_source: Option<String>,
    /// The rules that matched and acted, in rule order.
    pub matched: Vec<String>,
    /// The rules that matched but did not act, with the reason.
    pub skipped: Vec<SkippedRecord>,
    /// How many action records this message produced.
    pub actions: usize,
    /// Those actions by outcome.
    pub outcomes: BTreeMap<String, usize>,
    pub disposition: DispositionRecord,
    /// From receipt to the decision.
    pub duration_ms: u64,
    /// The heartbeat could not keep the message invisible: its visibility
    /// ran out while it was handled, and the actions not yet started were
    /// not started. Written only when true.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub visibility_lost: bool,
}

/// A rule that matched but did not act, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SkippedRecord {
    pub rule: String,
    pub reason: String,
}

impl From<&Skipped> for SkippedRecord {
    fn from(s: &Skipped) -> Self {
        SkippedRecord {
            rule: s.rule.clone(),
            reason: s.reason.clone(),
        }
    }
}

/// The alarm transition a message announced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlarmRecord {
    pub name: String,
    pub arn: Option<String>,
    pub account: Option<String>,
    pub region: Option<String>,
    #[serde(with = "alarm_state")]
    pub new_state: AlarmState,
    #[serde(with = "alarm_state::option")]
    pub old_state: Option<AlarmState>,
    #[serde(with = "millis")]
    pub state_change_time: DateTime<Utc>,
    pub reason: Option<String>,
}

/// What happens to the message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DispositionRecord {
    /// Deleted.
    Ack,
    /// Left on the queue, invisible for `retry_after_s`.
    Retry { retry_after_s: u64 },
    /// Sent to the dead-letter queue with this reason code, then deleted.
    DeadLetter {
        code: DeadLetterCode,
        reason: String,
    },
    /// Made visible again at once (shutdown, or the visibility was lost
    /// before every action was started).
    Release,
}

impl DispositionRecord {
    /// `ack`, `retry`, `dead_letter` or `release`, as [`Disposition::label`].
    pub fn label(&self) -> &'static str {
        match self {
            DispositionRecord::Ack => "ack",
            DispositionRecord::Retry { .. } => "retry",
            DispositionRecord::DeadLetter { .. } => "dead_letter",
            DispositionRecord::Release => "release",
        }
    }
}

impl From<&Disposition> for DispositionRecord {
    fn from(d: &Disposition) -> Self {
        match d {
            Disposition::Ack => DispositionRecord::Ack,
            Disposition::Retry { after } => DispositionRecord::Retry {
                retry_after_s: after.as_secs(),
            },
            Disposition::DeadLetter { code, reason } => DispositionRecord::DeadLetter {
                code: *code,
                reason: reason.clone(),
            },
            Disposition::Release => DispositionRecord::Release,
        }
    }
}

impl AlarmRecord {
    pub fn new(e: &AlarmEvent) -> Self {
        AlarmRecord {
            name: e.alarm_name.clone(),
            arn: e.alarm_arn.clone(),
            account: e.account_id.clone(),
            region: e.region.clone(),
            new_state: e.new_state,
            old_state: e.old_state,
            state_change_time: e.state_change_time,
            reason: e.state_reason.clone(),
        }
    }
}

impl AuditRecord {
    /// The record of one finished action.
    pub fn action(
        time: DateTime<Utc>,
        sqs_message_id: &str,
        event: &AlarmEvent,
        rules_version: &str,
        dry_run: bool,
        report: &ActionReport,
    ) -> Self {
        AuditRecord::Action(Box::new(ActionRecord {
            time,
            sqs_message_id: sqs_message_id.to_string(),
            sns_message_id: event.sns_message_id.clone(),
            alarm_name: event.alarm_name.clone(),
            rules_version: rules_version.to_string(),
            dry_run,
            rule: report.rule.clone(),
            action_index: report.action_index,
            kind: report.kind,
            target: report.target.clone(),
            targets: report.targets.clone(),
            outcome: (&report.outcome).into(),
            capped: report.capped.iter().map(GuardRecord::from).collect(),
            excluded: report.excluded.iter().map(ExcludedRecord::from).collect(),
            health_reasons: report.health_reasons.clone(),
            request_ids: report.request_ids.clone(),
            duration_ms: report.duration_ms,
            aws_us: report.aws_us,
            waited_us: report.waited_us,
            escalation_message_id: report.escalation_message_id.clone(),
            taken_over_from: report.taken_over_from.clone(),
            budget: report.budget,
            command_status: report.command_status.clone(),
            unknown_outcome: report.unknown_outcome.clone(),
        }))
    }

    /// The record of the decision about one message; `elapsed` is the time
    /// since it was received.
    pub fn message(
        time: DateTime<Utc>,
        msg: &QueueMessage,
        handled: &MessageOutcome,
        elapsed: Duration,
    ) -> Self {
        let event = handled.event.as_ref();
        let mut outcomes = BTreeMap::new();
        for r in &handled.reports {
            *outcomes.entry(r.outcome.label().to_string()).or_insert(0) += 1;
        }
        AuditRecord::Message(Box::new(MessageRecord {
            time,
            sqs_message_id: msg.message_id.clone(),
            sns_message_id: event.and_then(|e| e.sns_message_id.clone()),
            receive_count: msg.receive_count,
            alarm: event.map(AlarmRecord::new),
            topic_arn: event.and_then(|e| e.topic_arn.clone()),
            rules_version: handled.rules_version.clone(),
            rules_source: handled.rules_source.clone(),
            matched: handled.matched.clone(),
            skipped: handled.skipped.iter().map(SkippedRecord::from).collect(),
            actions: handled.reports.len(),
            outcomes,
            disposition: (&handled.disposition).into(),
            duration_ms: elapsed.as_millis() as u64,
            visibility_lost: handled.visibility_lost,
        }))
    }

    /// The record as one JSON line, newline included.
    pub fn to_line(&self) -> Vec<u8> {
        // Every field serializes infallibly (strings, numbers, string-keyed
        // maps); the fallback only keeps the signature honest.
        let mut line = serde_json::to_vec(self).unwrap_or_else(|e| {
            serde_json::to_vec(&serde_json::json!({
                "type": "unserializable",
                "error": e.to_string(),
            }))
            .unwrap_or_default()
        });
        line.push(b'\n');
        line
    }

    /// Reads one line of a trail back (surrounding white space allowed).
    pub fn from_line(line: &[u8]) -> Result<AuditRecord, serde_json::Error> {
        serde_json::from_slice(line.trim_ascii())
    }
}

/// Times as `2026-01-12T16:31:00.000Z`: milliseconds, always.
mod millis {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::event::format_millis;

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_millis(t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        DateTime::<Utc>::deserialize(d)
    }
}

/// Alarm states as CloudWatch writes them (`OK`, `ALARM`,
/// `INSUFFICIENT_DATA`).
mod alarm_state {
    use std::borrow::Cow;

    use serde::de::Error;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use crate::event::AlarmState;

    pub fn serialize<S: Serializer>(state: &AlarmState, s: S) -> Result<S::Ok, S::Error> {
        state.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<AlarmState, D::Error> {
        let s = Cow::<'de, str>::deserialize(d)?;
        AlarmState::parse(&s).ok_or_else(|| D::Error::custom(format!("unknown alarm state {s:?}")))
    }

    pub mod option {
        use super::*;

        pub fn serialize<S: Serializer>(
            state: &Option<AlarmState>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            state.serialize(s)
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<AlarmState>, D::Error> {
            Option::<Cow<'de, str>>::deserialize(d)?
                .map(|s| {
                    AlarmState::parse(&s)
                        .ok_or_else(|| D::Error::custom(format!("unknown alarm state {s:?}")))
                })
                .transpose()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;
    use crate::safety::{Guard, GuardTrip};
    use serde_json::Value;

    fn json(rec: &AuditRecord) -> Value {
        let line = rec.to_line();
        assert_eq!(line.last(), Some(&b'\n'));
        assert_eq!(
            line.iter().filter(|b| **b == b'\n').count(),
            1,
            "one line per record"
        );
        serde_json::from_slice(&line).expect("valid JSON")
    }

    #[test]
    fn an_action_record_carries_the_ids_and_the_report() {
        let e = event();
        let r = report(Outcome::Done);
        let v = json(&AuditRecord::action(time(), "sqs-1", &e, "v1", false, &r));
        assert_eq!(v["type"], "action");
        assert_eq!(v["time"], "2026-01-12T16:31:00.000Z");
        assert_eq!(v["sqs_message_id"], "sqs-1");
        assert_eq!(v["alarm_name"], "web-unhealthy");
        assert_eq!(v["rules_version"], "v1");
        assert_eq!(v["rule"], "terminate-oos");
        assert_eq!(v["kind"], "terminate_out_of_service");
        assert_eq!(v["targets"], serde_json::json!(["i-0001"]));
        assert_eq!(v["outcome"], "done");
        assert_eq!(v["request_ids"], serde_json::json!(["req-1"]));
        assert_eq!(v["duration_ms"], 12);
        assert_eq!(v["dry_run"], false);
    }

    #[test]
    fn a_suppressed_action_record_names_the_guard_and_its_numbers() {
        let e = event();
        let trip = GuardTrip::new(Guard::MinInService, "1 in service, fewer than 2")
            .with("in_service", 1)
            .with("min_in_service", 2);
        let r = report(Outcome::suppressed(trip));
        let v = json(&AuditRecord::action(time(), "sqs-1", &e, "v1", true, &r));
        assert_eq!(v["outcome"], "suppressed");
        assert_eq!(v["guard"], "min_in_service");
        assert_eq!(v["detail"], "1 in service, fewer than 2");
        assert_eq!(v["numbers"]["in_service"], 1);
        assert_eq!(v["numbers"]["min_in_service"], 2);
        assert_eq!(v["dry_run"], true);
    }

    #[test]
    fn a_message_record_holds_the_alarm_rules_and_disposition() {
        let handled = MessageOutcome {
            event: Some(event()),
            reports: vec![
                report(Outcome::Done),
                report(Outcome::Done),
                report(Outcome::Duplicate),
            ],
            disposition: Disposition::Retry {
                after: Duration::from_secs(20),
            },
            rules_version: Some("v1".into()),
            rules_source: None,
            matched: vec!["terminate-oos".into()],
            skipped: vec![Skipped {
                rule: "old".into(),
                reason: "disabled".into(),
            }],
            visibility_lost: false,
            certificate_fetch: Duration::ZERO,
        };
        let msg = queue_message("sqs-9");
        let v = json(&AuditRecord::message(
            time(),
            &msg,
            &handled,
            Duration::from_millis(1500),
        ));
        assert_eq!(v["type"], "message");
        assert_eq!(v["sqs_message_id"], "sqs-9");
        assert_eq!(v["receive_count"], 2);
        assert_eq!(v["alarm"]["name"], "web-unhealthy");
        assert_eq!(
            v["alarm"]["arn"],
            "arn:aws:cloudwatch:us-east-1:123456789012:alarm:web-unhealthy"
        );
        assert_eq!(v["alarm"]["new_state"], "ALARM");
        assert_eq!(v["alarm"]["old_state"], "OK");
        assert_eq!(v["alarm"]["state_change_time"], "2026-01-12T16:30:42.236Z");
        assert_eq!(v["rules_version"], "v1");
        assert_eq!(v["matched"], serde_json::json!(["terminate-oos"]));
        assert_eq!(v["skipped"][0]["rule"], "old");
        assert_eq!(v["skipped"][0]["reason"], "disabled");
        assert_eq!(v["actions"], 3);
        assert_eq!(
            v["outcomes"],
            serde_json::json!({"done": 2, "duplicate": 1})
        );
        assert_eq!(
            v["disposition"],
            serde_json::json!({"kind": "retry", "retry_after_s": 20})
        );
        assert_eq!(v["duration_ms"], 1500);
        // Written only when true: older readers see the same shape.
        assert!(v.get("visibility_lost").is_none(), "{v}");
    }

    #[test]
    fn a_poison_message_record_has_no_alarm_and_says_why() {
        let handled = MessageOutcome {
            event: None,
            reports: vec![],
            disposition: Disposition::DeadLetter {
                code: DeadLetterCode::Poison(crate::event::PoisonCode::NotJson),
                reason: "expected value at line 1".into(),
            },
            rules_version: None,
            rules_source: None,
            matched: vec![],
            skipped: vec![],
            visibility_lost: false,
            certificate_fetch: Duration::ZERO,
        };
        let msg = queue_message("sqs-p");
        let v = json(&AuditRecord::message(
            time(),
            &msg,
            &handled,
            Duration::ZERO,
        ));
        assert_eq!(v["alarm"], Value::Null);
        assert_eq!(v["sns_message_id"], Value::Null);
        assert_eq!(v["actions"], 0);
        assert_eq!(
            v["disposition"],
            serde_json::json!({"kind": "dead_letter", "code": "not_json", "reason": "expected value at line 1"})
        );
    }

    /// Writes `record`, reads the line back, and checks it is the same
    /// record and serializes to the same bytes.
    fn round_trip(record: &AuditRecord) -> AuditRecord {
        let line = record.to_line();
        let read = AuditRecord::from_line(&line).expect("reads back");
        assert_eq!(&read, record);
        assert_eq!(read.to_line(), line, "rewritten byte for byte");
        read
    }

    fn every_outcome() -> Vec<Outcome> {
        let trip = GuardTrip::new(Guard::MinInService, "1 in service, fewer than 2")
            .with("in_service", 1)
            .with("min_in_service", 2);
        vec![
            Outcome::Done,
            Outcome::DryRun,
            Outcome::NothingToDo {
                reason: "no instance is OutOfService".into(),
            },
            Outcome::suppressed(trip),
            Outcome::Duplicate,
            Outcome::Busy,
            Outcome::Failed {
                transient: true,
                error: "throttled".into(),
            },
            Outcome::Aborted,
        ]
    }

    #[test]
    fn every_action_record_reads_back_field_for_field() {
        let e = event();
        for outcome in every_outcome() {
            let mut r = report(outcome.clone());
            r.capped = vec![GuardTrip::new(Guard::MaxInstances, "2 eligible").with("allowed", 1)];
            r.excluded = vec![crate::safety::blast_radius::Excluded {
                instance_id: "i-0002".into(),
                guard: Guard::RequireTag,
                reason: "untagged".into(),
            }];
            r.escalation_message_id = Some("sns-esc".into());
            r.aws_us = 100;
            r.waited_us = 7;
            let written = AuditRecord::action(time(), "sqs-1", &e, "v1", true, &r);
            let AuditRecord::Action(a) = round_trip(&written) else {
                panic!("not an action: {written:?}");
            };
            assert_eq!(a.time, time());
            assert_eq!(a.sqs_message_id, "sqs-1");
            assert_eq!(a.sns_message_id, e.sns_message_id);
            assert_eq!(a.alarm_name, "web-unhealthy");
            assert_eq!(a.rules_version, "v1");
            assert!(a.dry_run);
            assert_eq!(a.rule, r.rule);
            assert_eq!(a.action_index, r.action_index);
            assert_eq!(a.kind, r.kind);
            assert_eq!(a.target, r.target);
            assert_eq!(a.targets, r.targets);
            assert_eq!(a.outcome, OutcomeRecord::from(&outcome));
            assert_eq!(a.outcome.label(), outcome.label());
            assert_eq!(
                a.capped,
                [GuardRecord {
                    guard: "max_instances".into(),
                    detail: "2 eligible".into(),
                    numbers: BTreeMap::from([("allowed".to_string(), 1)]),
                }]
            );
            assert_eq!(
                a.excluded,
                [ExcludedRecord {
                    instance_id: "i-0002".into(),
                    guard: "require_tag".into(),
                    reason: "untagged".into(),
                }]
            );
            assert_eq!(a.request_ids, r.request_ids);
            assert_eq!(
                (a.duration_ms, a.aws_us, a.waited_us),
                (r.duration_ms, 100, 7)
            );
            assert_eq!(a.escalation_message_id.as_deref(), Some("sns-esc"));
        }
        // The fields written only when set read back empty when absent.
        let bare = AuditRecord::action(time(), "sqs-2", &e, "v1", false, &report(Outcome::Done));
        let AuditRecord::Action(a) = round_trip(&bare) else {
            panic!("not an action");
        };
        assert!(a.capped.is_empty() && a.excluded.is_empty());
        assert_eq!(a.escalation_message_id, None);
        let suppressed = AuditRecord::action(
            time(),
            "sqs-3",
            &e,
            "v1",
            false,
            &report(every_outcome()[3].clone()),
        );
        let AuditRecord::Action(a) = round_trip(&suppressed) else {
            panic!("not an action");
        };
        assert_eq!(a.outcome.guard(), Some("min_in_service"));
        assert_eq!(
            a.outcome,
            OutcomeRecord::Suppressed {
                guard: "min_in_service".into(),
                detail: "1 in service, fewer than 2".into(),
                numbers: BTreeMap::from([
                    ("in_service".to_string(), 1),
                    ("min_in_service".to_string(), 2)
                ]),
            }
        );
    }

    #[test]
    fn every_message_record_reads_back_field_for_field() {
        let dispositions = [
            Disposition::Ack,
            Disposition::Retry {
                after: Duration::from_secs(20),
            },
            Disposition::DeadLetter {
                code: DeadLetterCode::ActionFailed,
                reason: "terminate-oos terminate_out_of_service: denied".into(),
            },
            Disposition::Release,
        ];
        for (decoded, disposition) in [true, false]
            .into_iter()
            .flat_map(|d| dispositions.iter().map(move |x| (d, x)))
        {
            let handled = MessageOutcome {
                event: decoded.then(event),
                reports: vec![report(Outcome::Done), report(Outcome::Duplicate)],
                disposition: disposition.clone(),
                rules_version: decoded.then(|| "v1".to_string()),
                rules_source: decoded.then(|| "s3://bkt/rules/".to_string()),
                matched: vec!["terminate-oos".into()],
                skipped: vec![Skipped {
                    rule: "old".into(),
                    reason: "disabled".into(),
                }],
                visibility_lost: decoded,
                certificate_fetch: Duration::ZERO,
            };
            let msg = queue_message("sqs-9");
            let written = AuditRecord::message(time(), &msg, &handled, Duration::from_millis(15));
            let AuditRecord::Message(m) = round_trip(&written) else {
                panic!("not a message: {written:?}");
            };
            assert_eq!(m.time, time());
            assert_eq!(m.sqs_message_id, "sqs-9");
            assert_eq!(m.receive_count, 2);
            assert_eq!(m.rules_version, handled.rules_version);
            assert_eq!(m.rules_source, handled.rules_source);
            assert_eq!(m.matched, ["terminate-oos"]);
            assert_eq!(
                m.skipped,
                [SkippedRecord {
                    rule: "old".into(),
                    reason: "disabled".into()
                }]
            );
            assert_eq!(m.actions, 2);
            assert_eq!(
                m.outcomes,
                BTreeMap::from([("done".to_string(), 1), ("duplicate".to_string(), 1)])
            );
            assert_eq!(m.disposition, DispositionRecord::from(disposition));
            assert_eq!(m.disposition.label(), disposition.label());
            assert_eq!(m.duration_ms, 15);
            assert_eq!(m.visibility_lost, decoded);
            match (&m.alarm, &handled.event) {
                (Some(a), Some(e)) => {
                    assert_eq!(a.name, e.alarm_name);
                    assert_eq!(a.arn, e.alarm_arn);
                    assert_eq!(a.account, e.account_id);
                    assert_eq!(a.region, e.region);
                    assert_eq!(a.new_state, AlarmState::Alarm);
                    assert_eq!(a.old_state, Some(AlarmState::Ok));
                    assert_eq!(a.state_change_time, e.state_change_time);
                    assert_eq!(a.reason, e.state_reason);
                    assert_eq!(m.sns_message_id, e.sns_message_id);
                    assert_eq!(m.topic_arn, e.topic_arn);
                }
                (None, None) => {
                    assert_eq!((m.sns_message_id, m.topic_arn), (None, None));
                }
                other => panic!("alarm not carried over: {other:?}"),
            }
        }
    }

    #[test]
    fn a_renamed_or_missing_field_is_not_read_as_a_default() {
        let e = event();
        let line =
            AuditRecord::action(time(), "sqs-1", &e, "v1", false, &report(Outcome::Done)).to_line();
        let text = String::from_utf8(line).expect("UTF-8");
        assert!(AuditRecord::from_line(text.as_bytes()).is_ok());
        for (from, to) in [
            ("\"sqs_message_id\"", "\"sqs_id\""),
            ("\"rules_version\"", "\"rules\""),
            ("\"outcome\":\"done\"", "\"outcome\":\"exploded\""),
            (
                "\"kind\":\"terminate_out_of_service\"",
                "\"kind\":\"explode\"",
            ),
            ("\"type\":\"action\"", "\"type\":\"acton\""),
        ] {
            assert!(text.contains(from), "{from} in {text}");
            let broken = text.replace(from, to);
            assert!(
                AuditRecord::from_line(broken.as_bytes()).is_err(),
                "{from} -> {to} still reads"
            );
        }
        let poison = r#"{"type":"message","time":"2026-01-12T17:05:00.000Z","sqs_message_id":"s3","sns_message_id":null,"receive_count":1,"alarm":null,"topic_arn":null,"rules_version":null,"matched":[],"skipped":[],"actions":0,"outcomes":{},"disposition":{"kind":"dead_letter","code":"not_json","reason":"x"},"duration_ms":0}"#;
        let AuditRecord::Message(m) = AuditRecord::from_line(poison.as_bytes()).expect("reads")
        else {
            panic!("not a message");
        };
        assert_eq!(
            m.disposition,
            DispositionRecord::DeadLetter {
                code: DeadLetterCode::Poison(crate::event::PoisonCode::NotJson),
                reason: "x".into()
            }
        );
        assert!(AuditRecord::from_line(poison.replace("not_json", "exploded").as_bytes()).is_err());
        assert!(AuditRecord::from_line(b"{\"type\":\"action\", torn").is_err());
    }
}
