//! The audit trail matches what happened: the worker, driven with in-memory
//! fakes, writes its records to a file sink; each record is checked against
//! the effects the fakes saw. Then the real `reflex audit` binary answers
//! questions from that file.

mod support;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Arc, Mutex};

use reflex::audit::{AuditRecord, AuditSink, FileSink};
use reflex::aws::AwsError;
use reflex::disposition::{Disposition, MessageOutcome};
use reflex::outcome::Outcome;
use reflex::testing::worker::at;
use reflex::testing::{AlarmBody, FakeAws, TestWorker};
use reflex::trust::TrustPolicy;
use reflex::worker::Settings;
use serde_json::{json, Value};
use support::{one_json, run_reflex, stderr, stdout};

const TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:alarms";
const ALARM_ARN: &str = "arn:aws:cloudwatch:us-east-1:123456789012:alarm:web-unhealthy";

fn settings() -> Settings {
    Settings {
        trust: TrustPolicy::topics(&[TOPIC]),
        ..Settings::default()
    }
}

fn rule(min_in_service: u32) -> String {
    format!(
        r#"
[[rule]]
name = "terminate-oos"
[rule.match]
alarm_name = "web-unhealthy"
new_state = "ALARM"
dimensions.LoadBalancerName = {{ exists = true }}
[[rule.actions]]
type = "terminate_out_of_service"
max_instances = 1
max_percent = 50
min_in_service = {min_in_service}
min_instance_age = "10m"
require_tag = {{ key = "reflex:managed", value = "true" }}
escalate_topic_arn = "arn:aws:sns:us-east-1:123456789012:oncall"

[[rule]]
name = "old-rule"
enabled = false
[rule.match]
alarm_name = "web-unhealthy"
[[rule.actions]]
type = "notify"
topic_arn = "arn:aws:sns:us-east-1:123456789012:oncall"
"#
    )
}

/// An SNS notification of `web-unhealthy` going OK -> ALARM at `changed`
/// (CloudWatch's `+0000` form).
fn alarm_body(sns_message_id: &str, changed: &str) -> String {
    AlarmBody::new("web-unhealthy")
        .changed_at(changed)
        .sns(TOPIC, sns_message_id)
}

/// A sink that notes, for each record, how many messages had been deleted
/// and dead-lettered at that moment, then writes it to the file sink.
struct Probe {
    aws: FakeAws,
    dlq: FakeAws,
    file: FileSink,
    /// (record type, deletes so far, DLQ sends so far)
    seen: Mutex<Vec<(String, usize, usize)>>,
}

impl AuditSink for Probe {
    fn record(&self, rec: &AuditRecord) {
        let kind = match rec {
            AuditRecord::Action(_) => "action",
            AuditRecord::Message(_) => "message",
            AuditRecord::Operator(_) => "operator",
        };
        let deleted = self.aws.state().deleted.len();
        let sent = self.dlq.state().sent.len();
        self.seen
            .lock()
            .expect("probe lock")
            .push((kind.to_string(), deleted, sent));
        self.file.record(rec);
    }
}

struct Harness {
    h: TestWorker,
    probe: Arc<Probe>,
    trail: PathBuf,
    _dir: tempfile::TempDir,
}

fn harness(rules: &str) -> Harness {
    let dir = tempfile::tempdir().expect("tempdir");
    let trail = dir.path().join("audit.jsonl");
    let builder = TestWorker::builder(rules).settings(settings());
    let probe = Arc::new(Probe {
        aws: builder.aws().clone(),
        dlq: builder.dlq().clone(),
        file: FileSink::open(&trail).expect("open the trail"),
        seen: Mutex::new(Vec::new()),
    });
    let h = builder.audit(probe.clone()).build();
    Harness {
        h,
        probe,
        trail,
        _dir: dir,
    }
}

impl std::ops::Deref for Harness {
    type Target = TestWorker;
    fn deref(&self) -> &TestWorker {
        &self.h
    }
}

impl Harness {
    /// Takes instances out of service at the ELB.
    fn break_instances(&self, ids: &[&str]) {
        let mut s = self.aws.state();
        for h in s.elb_health.get_mut("web").expect("elb web") {
            if ids.contains(&h.instance_id.as_str()) {
                h.state = "OutOfService".into();
            }
        }
    }

    async fn deliver_at(
        &self,
        now: &str,
        body: &str,
        sqs_id: &str,
        receive_count: u32,
    ) -> MessageOutcome {
        self.clock.set(at(now));
        self.deliver_with(body, sqs_id, receive_count).await
    }

    fn records(&self) -> Vec<Value> {
        records(&self.trail)
    }

    fn rules_version(&self) -> String {
        self.worker.rules.borrow().version().to_string()
    }
}

fn records(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .expect("read the trail")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[tokio::test]
async fn a_termination_is_recorded_with_its_instance_and_request_id() {
    let h = harness(&rule(1));
    h.fleet(4, 1);
    let handled = h
        .deliver_at(
            "2026-01-12T16:31:00Z",
            &alarm_body("sns-1", "2026-01-12T16:30:42.236+0000"),
            "sqs-1",
            1,
        )
        .await;
    assert_eq!(handled.reports[0].outcome, Outcome::Done);
    assert_eq!(h.terminated(), vec!["i-0000".to_string()]);

    let recs = h.records();
    assert_eq!(recs.len(), 2, "one action, then one message: {recs:?}");
    let action = &recs[0];
    assert_eq!(action["type"], "action");
    assert_eq!(action["time"], "2026-01-12T16:31:00.000Z");
    assert_eq!(action["sqs_message_id"], "sqs-1");
    assert_eq!(action["sns_message_id"], "sns-1");
    assert_eq!(action["alarm_name"], "web-unhealthy");
    assert_eq!(action["rules_version"], h.rules_version());
    assert_eq!(action["rule"], "terminate-oos");
    assert_eq!(action["kind"], "terminate_out_of_service");
    assert_eq!(action["target"], "elb:web");
    assert_eq!(
        action["targets"],
        json!(h.terminated()),
        "what EC2 was asked to terminate"
    );
    assert_eq!(action["outcome"], "done");
    assert_eq!(action["dry_run"], false);
    let request_ids = &handled.reports[0].request_ids;
    assert!(
        request_ids.iter().any(|r| r.starts_with("req-")),
        "the TerminateInstances request id: {request_ids:?}"
    );
    assert_eq!(action["request_ids"], json!(request_ids));
    assert!(action["duration_ms"].is_u64());

    let message = &recs[1];
    assert_eq!(message["type"], "message");
    assert_eq!(message["sqs_message_id"], "sqs-1");
    assert_eq!(message["sns_message_id"], "sns-1");
    assert_eq!(message["receive_count"], 1);
    assert_eq!(
        message["alarm"],
        json!({
            "name": "web-unhealthy", "arn": ALARM_ARN, "account": "123456789012",
            "region": "us-east-1", "new_state": "ALARM", "old_state": "OK",
            "state_change_time": "2026-01-12T16:30:42.236Z", "reason": "Threshold Crossed"
        })
    );
    assert_eq!(message["topic_arn"], TOPIC);
    assert_eq!(message["rules_version"], h.rules_version());
    assert_eq!(message["matched"], json!(["terminate-oos"]));
    assert_eq!(
        message["skipped"],
        json!([{"rule": "old-rule", "reason": "disabled"}])
    );
    assert_eq!(message["actions"], 1);
    assert_eq!(message["outcomes"], json!({"done": 1}));
    assert_eq!(message["disposition"], json!({"kind": "ack"}));
}

#[tokio::test]
async fn a_suppressed_action_is_recorded_with_the_guard_and_its_numbers() {
    let h = harness(&rule(2));
    h.fleet(4, 3);
    let handled = h
        .deliver_at(
            "2026-01-12T16:31:00Z",
            &alarm_body("sns-1", "2026-01-12T16:30:42.236+0000"),
            "sqs-1",
            1,
        )
        .await;
    assert!(h.terminated().is_empty());
    let Outcome::Suppressed { guard, numbers, .. } = &handled.reports[0].outcome else {
        panic!("not suppressed: {:?}", handled.reports[0].outcome)
    };
    let recs = h.records();
    let action = &recs[0];
    assert_eq!(action["outcome"], "suppressed");
    assert_eq!(action["guard"], "min_in_service");
    assert_eq!(action["guard"], guard.as_str());
    assert_eq!(action["numbers"], json!(numbers));
    assert_eq!(action["numbers"]["in_service"], 1);
    assert_eq!(action["numbers"]["min_in_service"], 2);
    assert!(action["detail"].as_str().is_some_and(|d| !d.is_empty()));
    assert_eq!(action["targets"], json!([]), "nothing was acted on");
    assert_eq!(
        action["escalation_message_id"],
        json!(handled.reports[0].escalation_message_id),
        "the escalation sent is on record"
    );
    assert!(action["escalation_message_id"].is_string());
    assert_eq!(recs[1]["outcomes"], json!({"suppressed": 1}));
    assert_eq!(recs[1]["disposition"], json!({"kind": "ack"}));
}

#[tokio::test]
async fn poison_and_failures_get_a_message_record_with_their_disposition() {
    let h = harness(&rule(1));
    h.fleet(4, 1);
    let poison = h
        .deliver_at("2026-01-12T16:31:00Z", "not json", "sqs-p", 1)
        .await;
    assert!(matches!(poison.disposition, Disposition::DeadLetter { .. }));
    // A change is sent five times (re-reading between); all five fail.
    for _ in 0..5 {
        h.aws.fail_next(
            "ec2:TerminateInstances",
            AwsError::transient("ec2", "TerminateInstances", "Throttling"),
        );
    }
    let failed = h
        .deliver_at(
            "2026-01-12T16:32:00Z",
            &alarm_body("sns-2", "2026-01-12T16:31:50.000+0000"),
            "sqs-2",
            2,
        )
        .await;
    assert!(matches!(failed.disposition, Disposition::Retry { .. }));

    let recs = h.records();
    let types: Vec<&str> = recs
        .iter()
        .map(|r| r["type"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(types, ["message", "action", "message"]);
    let p = &recs[0];
    assert_eq!(p["sqs_message_id"], "sqs-p");
    assert_eq!(p["alarm"], Value::Null);
    assert_eq!(p["sns_message_id"], Value::Null);
    assert_eq!(p["rules_version"], Value::Null);
    assert_eq!(p["actions"], 0);
    assert_eq!(p["disposition"]["kind"], "dead_letter");
    assert_eq!(p["disposition"]["code"], "not_json");
    assert!(p["disposition"]["reason"]
        .as_str()
        .is_some_and(|r| !r.is_empty()));

    assert_eq!(recs[1]["outcome"], "failed");
    assert_eq!(recs[1]["transient"], true);
    assert!(recs[1]["error"]
        .as_str()
        .is_some_and(|e| e.contains("Throttling")));
    assert_eq!(recs[2]["receive_count"], 2);
    assert_eq!(
        recs[2]["disposition"],
        json!({"kind": "retry", "retry_after_s": 20}),
        "10s base, second receive"
    );
}

#[tokio::test]
async fn every_message_is_on_record_before_it_is_deleted_or_dead_lettered() {
    let h = harness(&rule(1));
    h.fleet(6, 2);
    let mut expected = Vec::new();
    for (i, (body, sqs_id)) in [
        (alarm_body("sns-1", "2026-01-12T16:30:42.236+0000"), "sqs-1"),
        ("{\"hello\": 1}".to_string(), "sqs-2"),
        // SNS delivering the first notification again: a duplicate.
        (alarm_body("sns-1", "2026-01-12T16:30:42.236+0000"), "sqs-3"),
        (alarm_body("sns-4", "2026-01-12T16:31:30.000+0000"), "sqs-4"),
    ]
    .into_iter()
    .enumerate()
    {
        let deleted = h.aws.state().deleted.len();
        let handled = h
            .deliver_at(&format!("2026-01-12T16:3{}:00Z", i + 1), &body, sqs_id, 1)
            .await;
        expected.push((
            sqs_id,
            handled.reports.len(),
            handled.disposition.label(),
            deleted,
        ));
    }
    assert_eq!(h.aws.state().deleted.len(), 4, "all four were deleted");

    let seen = h.probe.seen.lock().expect("probe").clone();
    let recs = h.records();
    assert_eq!(seen.len(), recs.len(), "the probe saw every record written");
    let messages: Vec<(usize, &Value)> = recs
        .iter()
        .enumerate()
        .filter(|(_, r)| r["type"] == "message")
        .collect();
    assert_eq!(
        messages.len(),
        expected.len(),
        "one message record per message"
    );
    for ((index, rec), (sqs_id, actions, disposition, deleted_before)) in
        messages.iter().zip(&expected)
    {
        assert_eq!(rec["sqs_message_id"], *sqs_id);
        assert_eq!(rec["actions"], *actions);
        assert_eq!(rec["disposition"]["kind"], *disposition);
        let (_, deleted_then, _) = &seen[*index];
        assert_eq!(
            deleted_then, deleted_before,
            "{sqs_id}: its record was written before its delete"
        );
        // Its action records come right before it and carry its ids.
        for a in &recs[index - actions..*index] {
            assert_eq!(a["type"], "action");
            assert_eq!(a["sqs_message_id"], *sqs_id);
            assert_eq!(a["sns_message_id"], rec["sns_message_id"]);
        }
    }
    assert_eq!(
        recs[3]["outcome"], "duplicate",
        "the redelivery is on record too"
    );
    let dlq_sends_at_poison_record = seen[messages[1].0].2;
    assert_eq!(
        dlq_sends_at_poison_record, 0,
        "recorded before the DLQ send"
    );
}

// ---- `reflex audit`, the real binary, on a trail the worker wrote ----

fn reflex_audit(args: &[&str], stdin: Option<&str>) -> Output {
    let args: Vec<&str> = std::iter::once("audit")
        .chain(args.iter().copied())
        .collect();
    run_reflex(&args, stdin.map(str::as_bytes))
}

/// A morning's trail: a termination at 16:31, a suppression at 16:40, a
/// poison message at 16:41.
async fn morning() -> (Harness, String, String) {
    let h = harness(&rule(4));
    h.fleet(6, 2);
    let first = h
        .deliver_at(
            "2026-01-12T16:31:00Z",
            &alarm_body("sns-1", "2026-01-12T16:30:42.236+0000"),
            "sqs-1",
            1,
        )
        .await;
    assert_eq!(first.reports[0].outcome, Outcome::Done);
    h.break_instances(&["i-0002", "i-0003"]);
    let second = h
        .deliver_at(
            "2026-01-12T16:40:00Z",
            &alarm_body("sns-2", "2026-01-12T16:39:00.000+0000"),
            "sqs-2",
            1,
        )
        .await;
    assert!(matches!(
        second.reports[0].outcome,
        Outcome::Suppressed { .. }
    ));
    h.deliver_at("2026-01-12T16:41:00Z", "not json", "sqs-3", 1)
        .await;
    let terminated = h.terminated();
    assert_eq!(terminated.len(), 1);
    let request_id = first.reports[0]
        .request_ids
        .last()
        .cloned()
        .expect("a request id");
    (h, terminated[0].clone(), request_id)
}

#[tokio::test]
async fn reflex_audit_tables_the_trail_and_sums_it_up() {
    let (h, instance, request_id) = morning().await;
    let path = h.trail.to_str().expect("UTF-8 path");
    let out = reflex_audit(&[path], None);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("TIME"), "{text}");
    assert!(
        lines[1].starts_with("2026-01-12T16:31:00.000Z")
            && lines[1].contains("terminate-oos")
            && lines[1].contains("terminate_out_of_service")
            && lines[1].contains(" done ")
            && lines[1].contains(&instance)
            && lines[1].contains(&format!("req: {request_id}")),
        "{text}"
    );
    assert!(
        lines[2].starts_with("2026-01-12T16:40:00.000Z")
            && lines[2].contains("suppressed")
            && lines[2].contains("min_in_service: ")
            && lines[2].contains("in_service=2")
            && lines[2].contains("min_in_service=4"),
        "{text}"
    );
    assert!(
        text.contains(
            "\n2 action(s), 3 message(s), 2026-01-12T16:31:00.000Z .. 2026-01-12T16:41:00.000Z\n"
        ),
        "{text}"
    );
    assert!(text.contains(&format!("terminated (1):\n  {instance}  2026-01-12T16:31:00.000Z  rule terminate-oos  elb:web  alarm web-unhealthy  req {request_id}\n")), "{text}");
    assert!(
        text.contains("suppressed, by guard:\n  min_in_service"),
        "{text}"
    );
    assert!(
        text.contains("dead-lettered, by code:\n  not_json"),
        "{text}"
    );
    assert!(
        text.contains("rules matched but skipped:\n  old-rule"),
        "{text}"
    );
}

#[tokio::test]
async fn reflex_audit_answers_what_was_terminated_as_json() {
    let (h, instance, request_id) = morning().await;
    let path = h.trail.to_str().expect("UTF-8 path");
    let out = reflex_audit(&["--terminated", "--json", path], None);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let v = one_json(&out);
    let records = v["records"].as_array().expect("records");
    assert_eq!(records.len(), 2, "the termination and its message: {v}");
    assert_eq!(records[0]["type"], "action");
    assert_eq!(records[0]["targets"], json!([instance]));
    assert_eq!(records[1]["type"], "message");
    assert_eq!(records[1]["sqs_message_id"], records[0]["sqs_message_id"]);
    let s = &v["summary"];
    assert_eq!(s["actions"], 1);
    assert_eq!(s["terminated"][0]["instance_id"], json!(instance));
    assert_eq!(s["terminated"][0]["request_ids"], json!([request_id]));
    assert_eq!(s["terminated"][0]["alarm_name"], "web-unhealthy");
    assert_eq!(s["rules_fired"], json!({"terminate-oos": 1}));
}

#[tokio::test]
async fn reflex_audit_filters_by_time_and_says_what_was_suppressed() {
    let (h, _, _) = morning().await;
    let path = h.trail.to_str().expect("UTF-8 path");
    let out = reflex_audit(
        &[
            "--since",
            "2026-01-12T16:35:00Z",
            "--until",
            "2026-01-12T16:45:00Z",
            "--json",
            path,
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let v = one_json(&out);
    let s = &v["summary"];
    assert_eq!(
        (s["actions"].clone(), s["messages"].clone()),
        (json!(1), json!(2))
    );
    assert_eq!(
        s["terminated"],
        json!([]),
        "the termination was before 16:35"
    );
    assert_eq!(s["actions_by_outcome"], json!({"suppressed": 1}));
    assert_eq!(s["dispositions"], json!({"ack": 1, "dead_letter": 1}));
    assert_eq!(s["dead_letter_codes"], json!({"not_json": 1}));

    let out = reflex_audit(&["--suppressed", path], None);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = stdout(&out);
    assert_eq!(
        text.lines().filter(|l| l.starts_with("2026-")).count(),
        1,
        "only the suppressed action: {text}"
    );
    assert!(
        text.contains("suppressed, by guard:\n  min_in_service"),
        "{text}"
    );
    assert!(text.contains("terminated: none"), "{text}");

    let out = reflex_audit(&["--until", "2026-01-12T16:00:00Z", "--json", path], None);
    assert_eq!(one_json(&out)["records"], json!([]), "nothing before 16:00");
}

#[tokio::test]
async fn reflex_audit_skips_malformed_lines_and_reads_stdin() {
    let (h, instance, _) = morning().await;
    let mut trail = std::fs::read_to_string(&h.trail).expect("read");
    trail.insert_str(0, "{\"type\":\"action\", torn\n");
    let out = reflex_audit(&["--terminated", "--json", "-"], Some(&trail));
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        stderr(&out).starts_with("<stdin>:1: skipped a malformed record"),
        "{}",
        stderr(&out)
    );
    let v = one_json(&out);
    assert_eq!(
        v["summary"]["terminated"][0]["instance_id"],
        json!(instance)
    );
    assert_eq!(v["summary"]["malformed_lines"], 1);

    let path = h.trail.to_str().expect("UTF-8 path");
    let out = reflex_audit(&["/no/such/audit.jsonl", path], None);
    assert_eq!(out.status.code(), Some(0), "one readable file is enough");
    assert!(
        stderr(&out).contains("cannot read /no/such/audit.jsonl"),
        "{out:?}"
    );
    let out = reflex_audit(&["/no/such/audit.jsonl"], None);
    assert_eq!(out.status.code(), Some(2), "nothing readable: {out:?}");
    let out = reflex_audit(&["--outcome", "exploded", path], None);
    assert_eq!(out.status.code(), Some(2), "unknown outcome: {out:?}");
}
