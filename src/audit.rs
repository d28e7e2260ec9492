//! The audit trail: one JSON line per action and one per message decision,
//! written to a configurable sink, for incident reviews (`reflex audit`).
//!
//! An action record is written the moment its action finishes, so a crash
//! later in the same message cannot lose it; the message record is written
//! after every action and *before* the message is deleted, dead-lettered or
//! released. Both carry the SQS and SNS message ids, so they join.
//!
//! Writing is synchronous and unbuffered: a record is on disk (the file sink
//! syncs each line) before the worker carries on. A failed write is logged
//! once per run of failures and never changes what happens to the message —
//! the logs still say everything the record would have.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tracing::{error, info};

use crate::aws::QueueMessage;
use crate::disposition::{Disposition, MessageOutcome};
use crate::event::{format_millis, AlarmEvent, AlarmState};
use crate::outcome::ActionReport;
use crate::plan::Skipped;

/// One line of the audit trail.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AuditRecord<'a> {
    /// One action of one matched rule, and what became of it.
    Action(ActionRecord<'a>),
    /// What was decided about one received message.
    Message(MessageRecord<'a>),
}

/// `{"type":"action", ...}`: the message's ids, then the [`ActionReport`]
/// (rule, kind, target, targets, outcome, guard and numbers, request ids,
/// duration) flattened in.
#[derive(Debug, Serialize)]
pub struct ActionRecord<'a> {
    /// When the action finished.
    #[serde(serialize_with = "millis")]
    pub time: DateTime<Utc>,
    pub sqs_message_id: &'a str,
    pub sns_message_id: Option<&'a str>,
    pub alarm_name: &'a str,
    pub rules_version: &'a str,
    /// The rule ran in dry run (its own switch or the global one).
    pub dry_run: bool,
    #[serde(flatten)]
    pub report: &'a ActionReport,
}

/// `{"type":"message", ...}`: the decision about one received message.
#[derive(Debug, Serialize)]
pub struct MessageRecord<'a> {
    /// When the decision was made (after every action, before the message
    /// was deleted, dead-lettered or released).
    #[serde(serialize_with = "millis")]
    pub time: DateTime<Utc>,
    pub sqs_message_id: &'a str,
    pub sns_message_id: Option<&'a str>,
    pub receive_count: u32,
    /// `null` for a message that did not decode (poison) or was released
    /// unread on shutdown.
    pub alarm: Option<AlarmRecord<'a>>,
    pub topic_arn: Option<&'a str>,
    pub rules_version: Option<&'a str>,
    /// The rules that matched and acted, in rule order.
    pub matched: &'a [String],
    /// The rules that matched but did not act, with the reason.
    pub skipped: &'a [Skipped],
    /// How many action records this message produced.
    pub actions: usize,
    /// Those actions by outcome.
    pub outcomes: BTreeMap<&'static str, usize>,
    pub disposition: DispositionRecord<'a>,
    /// From receipt to the decision.
    pub duration_ms: u64,
}

/// The alarm transition a message announced.
#[derive(Debug, Serialize)]
pub struct AlarmRecord<'a> {
    pub name: &'a str,
    pub arn: Option<&'a str>,
    pub account: Option<&'a str>,
    pub region: Option<&'a str>,
    pub new_state: AlarmState,
    pub old_state: Option<AlarmState>,
    #[serde(serialize_with = "millis")]
    pub state_change_time: DateTime<Utc>,
    pub reason: Option<&'a str>,
}

/// What happens to the message.
#[derive(Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DispositionRecord<'a> {
    /// Deleted.
    Ack,
    /// Left on the queue, invisible for `retry_after_s`.
    Retry { retry_after_s: u64 },
    /// Sent to the dead-letter queue with this reason code, then deleted.
    DeadLetter { code: &'a str, reason: &'a str },
    /// Made visible again untouched (shutdown).
    Release,
}

impl<'a> From<&'a Disposition> for DispositionRecord<'a> {
    fn from(d: &'a Disposition) -> Self {
        match d {
            Disposition::Ack => DispositionRecord::Ack,
            Disposition::Retry { after } => DispositionRecord::Retry {
                retry_after_s: after.as_secs(),
            },
            Disposition::DeadLetter { code, reason } => DispositionRecord::DeadLetter {
                code: code.as_str(),
                reason: reason.as_str(),
            },
            Disposition::Release => DispositionRecord::Release,
        }
    }
}

impl<'a> AlarmRecord<'a> {
    pub fn new(e: &'a AlarmEvent) -> Self {
        AlarmRecord {
            name: &e.alarm_name,
            arn: e.alarm_arn.as_deref(),
            account: e.account_id.as_deref(),
            region: e.region.as_deref(),
            new_state: e.new_state,
            old_state: e.old_state,
            state_change_time: e.state_change_time,
            reason: e.state_reason.as_deref(),
        }
    }
}

impl<'a> AuditRecord<'a> {
    /// The record of one finished action.
    pub fn action(
        time: DateTime<Utc>,
        sqs_message_id: &'a str,
        event: &'a AlarmEvent,
        rules_version: &'a str,
        dry_run: bool,
        report: &'a ActionReport,
    ) -> Self {
        AuditRecord::Action(ActionRecord {
            time,
            sqs_message_id,
            sns_message_id: event.sns_message_id.as_deref(),
            alarm_name: &event.alarm_name,
            rules_version,
            dry_run,
            report,
        })
    }

    /// The record of the decision about one message; `elapsed` is the time
    /// since it was received.
    pub fn message(
        time: DateTime<Utc>,
        msg: &'a QueueMessage,
        handled: &'a MessageOutcome,
        elapsed: Duration,
    ) -> Self {
        let event = handled.event.as_ref();
        let mut outcomes = BTreeMap::new();
        for r in &handled.reports {
            *outcomes.entry(r.outcome.label()).or_insert(0) += 1;
        }
        AuditRecord::Message(MessageRecord {
            time,
            sqs_message_id: &msg.message_id,
            sns_message_id: event.and_then(|e| e.sns_message_id.as_deref()),
            receive_count: msg.receive_count,
            alarm: event.map(AlarmRecord::new),
            topic_arn: event.and_then(|e| e.topic_arn.as_deref()),
            rules_version: handled.rules_version.as_deref(),
            matched: &handled.matched,
            skipped: &handled.skipped,
            actions: handled.reports.len(),
            outcomes,
            disposition: (&handled.disposition).into(),
            duration_ms: elapsed.as_millis() as u64,
        })
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
}

fn millis<S: serde::Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_millis(t))
}

/// Where audit records go.
pub trait AuditSink: Send + Sync {
    /// Writes one record. Never fails the caller: a sink reports its own
    /// write errors.
    fn record(&self, rec: &AuditRecord<'_>);
}

/// Drops every record (`[audit] sink = "off"`, and the worker's default).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoAudit;

impl AuditSink for NoAudit {
    fn record(&self, _: &AuditRecord<'_>) {}
}

/// Reports write failures once per run of failures, and the recovery with
/// the number of records lost.
#[derive(Debug, Default)]
struct Failures {
    failing: AtomicBool,
    lost: AtomicU64,
}

impl Failures {
    fn note(&self, sink: &str, result: std::io::Result<()>) {
        match result {
            Ok(()) => {
                if self.failing.swap(false, Ordering::Relaxed) {
                    let lost = self.lost.swap(0, Ordering::Relaxed);
                    info!(sink, lost, "Audit records are being written again.");
                }
            }
            Err(error) => {
                self.lost.fetch_add(1, Ordering::Relaxed);
                if !self.failing.swap(true, Ordering::Relaxed) {
                    error!(%error, sink, "Cannot write an audit record; messages are still handled, and further failures are not logged until writing recovers.");
                }
            }
        }
    }
}

/// JSON lines on stdout (logs go to stderr, so stdout is the trail's own).
#[derive(Debug, Default)]
pub struct StdoutSink {
    failures: Failures,
}

impl AuditSink for StdoutSink {
    fn record(&self, rec: &AuditRecord<'_>) {
        let line = rec.to_line();
        let mut out = std::io::stdout().lock();
        let result = out.write_all(&line).and_then(|()| out.flush());
        self.failures.note("stdout", result);
    }
}

/// An append-only JSON-lines file. Each record is one `write` of a whole
/// line (so concurrent messages never interleave within a line), synced
/// to disk before the worker goes on.
#[derive(Debug)]
pub struct FileSink {
    path: PathBuf,
    file: Mutex<File>,
    failures: Failures,
}

impl FileSink {
    /// Opens (creating if needed) `path` for appending. The directory must
    /// exist: a missing one is a configuration error, found at start-up.
    pub fn open(path: &Path) -> std::io::Result<FileSink> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(FileSink {
            path: path.to_path_buf(),
            file: Mutex::new(file),
            failures: Failures::default(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl AuditSink for FileSink {
    fn record(&self, rec: &AuditRecord<'_>) {
        let line = rec.to_line();
        let result = {
            let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
            file.write_all(&line).and_then(|()| file.sync_data())
        };
        self.failures.note("file", result);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::Outcome;
    use crate::rules::ActionKind;
    use crate::safety::{Guard, GuardTrip};
    use serde_json::Value;

    fn event() -> AlarmEvent {
        let body = r#"{"AlarmName":"web-unhealthy","AlarmArn":"arn:aws:cloudwatch:us-east-1:123456789012:alarm:web-unhealthy","AWSAccountId":"123456789012","NewStateValue":"ALARM","OldStateValue":"OK","NewStateReason":"Threshold Crossed","StateChangeTime":"2026-01-12T16:30:42.236+0000","Region":"US East (N. Virginia)","Trigger":{"MetricName":"UnHealthyHostCount","Namespace":"AWS/ELB","Dimensions":[{"name":"LoadBalancerName","value":"web"}],"Threshold":1.0}}"#;
        crate::event::decode_str(body).expect("decodes")
    }

    fn time() -> DateTime<Utc> {
        crate::event::parse_aws_time("2026-01-12T16:31:00Z").expect("time")
    }

    fn report(outcome: Outcome) -> ActionReport {
        ActionReport {
            rule: "terminate-oos".into(),
            action_index: 0,
            kind: ActionKind::TerminateOutOfService,
            target: "elb:web".into(),
            targets: vec!["i-0001".into()],
            outcome,
            capped: vec![],
            excluded: vec![],
            request_ids: vec!["req-1".into()],
            duration_ms: 12,
            aws_us: 100,
            waited_us: 0,
            escalation_message_id: None,
        }
    }

    fn json(rec: &AuditRecord<'_>) -> Value {
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

    fn queue_message(id: &str) -> QueueMessage {
        QueueMessage {
            message_id: id.into(),
            receipt_handle: format!("rh-{id}"),
            body: String::new(),
            receive_count: 2,
            sent_at: None,
            first_received_at: None,
            attributes: BTreeMap::new(),
        }
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
            matched: vec!["terminate-oos".into()],
            skipped: vec![Skipped {
                rule: "old".into(),
                reason: "disabled".into(),
            }],
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
    }

    #[test]
    fn a_poison_message_record_has_no_alarm_and_says_why() {
        let handled = MessageOutcome {
            event: None,
            reports: vec![],
            disposition: Disposition::DeadLetter {
                code: "not_json".into(),
                reason: "expected value at line 1".into(),
            },
            rules_version: None,
            matched: vec![],
            skipped: vec![],
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

    #[test]
    fn the_file_sink_appends_whole_lines_and_survives_reopening() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit.jsonl");
        let e = event();
        let r = report(Outcome::Done);
        for id in ["a", "b"] {
            let sink = FileSink::open(&path).expect("opens");
            sink.record(&AuditRecord::action(time(), id, &e, "v1", false, &r));
        }
        let text = std::fs::read_to_string(&path).expect("read");
        let ids: Vec<String> = text
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).expect("JSON")["sqs_message_id"].to_string())
            .collect();
        assert_eq!(ids, vec!["\"a\"", "\"b\""], "appended, not truncated");
    }

    #[test]
    fn an_unopenable_file_is_an_error_at_start_up() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("no-such-dir").join("audit.jsonl");
        assert!(FileSink::open(&missing).is_err());
    }

    #[test]
    fn write_failures_are_reported_once_per_burst() {
        let f = Failures::default();
        let err = || Err(std::io::Error::other("disk full"));
        f.note("file", err());
        f.note("file", err());
        assert!(f.failing.load(Ordering::Relaxed));
        assert_eq!(f.lost.load(Ordering::Relaxed), 2);
        f.note("file", Ok(()));
        assert!(!f.failing.load(Ordering::Relaxed));
        assert_eq!(f.lost.load(Ordering::Relaxed), 0, "reset on recovery");
    }
}
