//! Worker tests with in-memory fakes behind the effect traits: every guard is
//! shown stopping an action, and every disposition is shown being carried out.
//! (End-to-end tests against a real AWS-protocol server are in e2e_run.rs.)

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use reflex::aws::AwsError;
use reflex::disposition::{Disposition, MessageOutcome};
use reflex::event::AlarmState;
use reflex::outcome::Outcome;
use reflex::rules::Rate;
use reflex::safety::Guard;
use reflex::testing::worker::{at, START};
use reflex::testing::{AlarmBody, FakeAws, TestWorker};
use reflex::trust::TrustPolicy;
use reflex::worker::Settings;
use tokio_util::sync::CancellationToken;

const TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:alarms";

fn now() -> DateTime<Utc> {
    at(START)
}

fn settings() -> Settings {
    Settings {
        trust: TrustPolicy::topics(&[TOPIC]),
        ..Settings::default()
    }
}

const OOS_RULE: &str = r#"
[[rule]]
name = "terminate-oos"
[rule.match]
alarm_name = "web-unhealthy"
new_state = "ALARM"
dimensions.LoadBalancerName = { exists = true }
[[rule.actions]]
type = "terminate_out_of_service"
max_instances = MAX_INSTANCES
max_percent = MAX_PERCENT
min_in_service = MIN_IN_SERVICE
min_instance_age = "10m"
require_tag = { key = "reflex:managed", value = "true" }
escalate_topic_arn = "arn:aws:sns:us-east-1:123456789012:oncall"
EXTRA
"#;

fn oos_rule(max_instances: u32, max_percent: u32, min_in_service: u32, extra: &str) -> String {
    OOS_RULE
        .replace("MAX_INSTANCES", &max_instances.to_string())
        .replace("MAX_PERCENT", &max_percent.to_string())
        .replace("MIN_IN_SERVICE", &min_in_service.to_string())
        .replace("EXTRA", extra)
}

fn harness(rules: &str, settings: Settings) -> TestWorker {
    TestWorker::builder(rules).settings(settings).build()
}

fn web_alarm(id: &str) -> String {
    AlarmBody::new("web-unhealthy").sns(TOPIC, id)
}

/// A later transition of the same alarm (8 s after [`web_alarm`]'s), signed.
fn web_alarm_later(id: &str) -> String {
    AlarmBody::new("web-unhealthy")
        .changed_at("2026-01-12T16:30:50.000+0000")
        .sns(TOPIC, id)
}

fn suppressed_by(h: &MessageOutcome) -> Option<Guard> {
    h.reports.iter().find_map(|r| match &r.outcome {
        Outcome::Suppressed { guard, .. } => Some(*guard),
        _ => None,
    })
}

#[tokio::test]
async fn terminates_the_out_of_service_instance_and_deletes_the_message() {
    let h = harness(&oos_rule(1, 50, 1, ""), settings());
    let ids = h.fleet(4, 1);
    let handled = h.deliver(&web_alarm("m1"), "sqs-1").await;
    assert_eq!(handled.disposition, Disposition::Ack);
    assert_eq!(h.terminated(), vec![ids[0].clone()]);
    assert_eq!(handled.reports[0].outcome, Outcome::Done);
    assert_eq!(h.aws.state().deleted, vec!["rh-sqs-1".to_string()]);
    assert!(h.aws.state().queue.is_empty());
}

#[tokio::test]
async fn dry_run_reads_and_computes_but_changes_nothing() {
    let h = harness(
        &oos_rule(1, 50, 1, "").replace(
            "name = \"terminate-oos\"",
            "name = \"terminate-oos\"\ndry_run = true",
        ),
        settings(),
    );
    let ids = h.fleet(4, 1);
    let handled = h.deliver(&web_alarm("m1"), "sqs-1").await;
    assert_eq!(handled.reports[0].outcome, Outcome::DryRun);
    assert_eq!(
        handled.reports[0].targets,
        vec![ids[0].clone()],
        "targets are computed"
    );
    assert!(h.terminated().is_empty(), "nothing is terminated");
    let changes = h.aws.state().changes.clone();
    assert_eq!(
        changes,
        vec![("TerminateInstances".to_string(), vec![ids[0].clone()], true)],
        "EC2 is asked with DryRun=true"
    );
    assert_eq!(handled.disposition, Disposition::Ack);
}

#[tokio::test]
async fn global_dry_run_switch_changes_nothing() {
    let mut s = settings();
    s.dry_run = true;
    let h = harness(&oos_rule(1, 50, 1, ""), s);
    h.fleet(4, 1);
    let handled = h.deliver(&web_alarm("m1"), "sqs-1").await;
    assert_eq!(handled.reports[0].outcome, Outcome::DryRun);
    assert!(h.terminated().is_empty());
}

#[tokio::test]
async fn min_in_service_stops_the_action_and_escalates() {
    let h = harness(&oos_rule(4, 100, 2, ""), settings());
    h.fleet(4, 3);
    let handled = h.deliver(&web_alarm("m1"), "sqs-1").await;
    assert_eq!(suppressed_by(&handled), Some(Guard::MinInService));
    assert!(h.terminated().is_empty());
    assert_eq!(
        handled.disposition,
        Disposition::Ack,
        "a guard is an outcome, not an error"
    );
    let published = h.aws.state().published.clone();
    assert_eq!(published.len(), 1, "escalation notify fires");
    assert!(
        published[0].2.contains("min_in_service"),
        "{}",
        published[0].2
    );
}

#[tokio::test]
async fn max_instances_caps_the_targets() {
    let h = harness(&oos_rule(1, 100, 1, ""), settings());
    h.fleet(6, 2);
    let handled = h.deliver(&web_alarm("m1"), "sqs-1").await;
    assert_eq!(h.terminated().len(), 1);
    assert_eq!(handled.reports[0].capped[0].guard, Guard::MaxInstances);
}

#[tokio::test]
async fn max_percent_caps_and_can_forbid() {
    let h = harness(&oos_rule(10, 25, 1, ""), settings());
    h.fleet(8, 4);
    h.deliver(&web_alarm("m1"), "sqs-1").await;
    assert_eq!(h.terminated().len(), 2, "25% of 8");
    let h = harness(&oos_rule(10, 20, 1, ""), settings());
    h.fleet(4, 1);
    let handled = h.deliver(&web_alarm("m1"), "sqs-1").await;
    assert_eq!(
        suppressed_by(&handled),
        Some(Guard::MaxPercent),
        "20% of 4 is no instance"
    );
    assert!(h.terminated().is_empty());
}

#[tokio::test]
async fn young_untagged_and_dying_instances_are_left_alone() {
    for (guard, tweak) in [
        (Guard::MinInstanceAge, "young"),
        (Guard::RequireTag, "untagged"),
        (Guard::InstanceState, "shutting-down"),
    ] {
        let h = harness(&oos_rule(1, 50, 1, ""), settings());
        let ids = h.fleet(4, 1);
        {
            let mut s = h.aws.state();
            let i = s.instances.get_mut(&ids[0]).unwrap();
            match tweak {
                "young" => i.launch_time = Some(now() - chrono::Duration::minutes(3)),
                "untagged" => i.tags.clear(),
                _ => i.state = "shutting-down".into(),
            }
        }
        let handled = h.deliver(&web_alarm("m1"), "sqs-1").await;
        assert_eq!(suppressed_by(&handled), Some(guard), "{tweak}");
        assert!(h.terminated().is_empty(), "{tweak}");
    }
}

#[tokio::test]
async fn a_recovered_or_unknown_alarm_stops_the_action() {
    let h = harness(&oos_rule(1, 50, 1, ""), settings());
    h.fleet(4, 1);
    h.aws
        .state()
        .alarms
        .insert("web-unhealthy".into(), AlarmState::Ok);
    let handled = h.deliver(&web_alarm("m1"), "sqs-1").await;
    assert_eq!(suppressed_by(&handled), Some(Guard::AlarmRecovered));
    assert!(h.terminated().is_empty());
    h.aws.state().alarms.clear();
    // A new transition (a redelivery of the first would be a duplicate).
    let handled = h.deliver(&web_alarm_later("m2"), "sqs-2").await;
    assert_eq!(suppressed_by(&handled), Some(Guard::AlarmNotFound));
    assert!(h.terminated().is_empty());
}

#[tokio::test]
async fn cooldown_stops_a_second_transition() {
    let h = harness(
        &oos_rule(1, 50, 1, "[rule.limits]\ncooldown = \"10m\""),
        settings(),
    );
    h.fleet(6, 2);
    h.deliver(&web_alarm("m1"), "sqs-1").await;
    let second = web_alarm_later("m2");
    let handled = h.deliver(&second, "sqs-2").await;
    assert_eq!(suppressed_by(&handled), Some(Guard::Cooldown));
    assert_eq!(h.terminated().len(), 1);
}

#[tokio::test]
async fn rule_rate_and_global_rate_stop_actions() {
    let rules = oos_rule(1, 50, 1, "[rule.limits]\nrate = \"1/hour\"");
    let h = harness(&rules, settings());
    h.fleet(8, 3);
    h.deliver(&web_alarm("m1"), "sqs-1").await;
    let second = web_alarm_later("m2");
    let handled = h.deliver(&second, "sqs-2").await;
    assert_eq!(suppressed_by(&handled), Some(Guard::RuleRate));
    assert_eq!(h.terminated().len(), 1);

    let mut s = settings();
    s.instance_changes = Rate::parse("1/hour").unwrap();
    let h = harness(&oos_rule(1, 50, 1, ""), s);
    h.fleet(8, 3);
    h.deliver(&web_alarm("m1"), "sqs-1").await;
    let handled = h.deliver(&web_alarm_later("m2"), "sqs-2").await;
    assert_eq!(suppressed_by(&handled), Some(Guard::GlobalRate));
    assert_eq!(h.terminated().len(), 1);
}

#[tokio::test]
async fn the_same_transition_twice_acts_once() {
    let h = harness(&oos_rule(1, 50, 1, ""), settings());
    h.fleet(6, 2);
    h.deliver(&web_alarm("sns-a"), "sqs-1").await;
    // SNS redelivered the notification under a new SQS message id.
    let handled = h.deliver(&web_alarm("sns-a"), "sqs-2").await;
    assert_eq!(handled.reports[0].outcome, Outcome::Duplicate);
    assert_eq!(handled.disposition, Disposition::Ack);
    assert_eq!(h.terminated().len(), 1);
}

#[tokio::test]
async fn stale_events_are_skipped_with_a_reason() {
    let h = harness(
        &oos_rule(1, 50, 1, "[rule.limits]\nmax_event_age = \"10s\""),
        settings(),
    );
    h.fleet(4, 1);
    let handled = h.deliver(&web_alarm("m1"), "sqs-1").await;
    assert!(handled.reports.is_empty());
    assert!(h.terminated().is_empty());
    assert_eq!(handled.disposition, Disposition::Ack);
}

#[tokio::test]
async fn poison_goes_to_the_dlq_with_reason_attributes() {
    let h = harness(&oos_rule(1, 50, 1, ""), settings());
    for (body, code) in [
        ("not json", "not_json"),
        ("{\"hello\": 1}", "unrecognised_shape"),
        (
            &*web_alarm("m").replace(TOPIC, "arn:aws:sns:us-east-1:123456789012:evil"),
            "untrusted_topic",
        ),
    ] {
        let handled = h.deliver(body, code).await;
        assert!(
            matches!(&handled.disposition, Disposition::DeadLetter { code: c, .. } if c == code),
            "{code}: {:?}",
            handled.disposition
        );
    }
    let sent = h.dlq.state().sent.clone();
    assert_eq!(sent.len(), 3);
    assert_eq!(sent[0].0, "not json", "the original body is kept");
    assert_eq!(sent[0].1["ReasonCode"], "not_json");
    assert_eq!(sent[0].1["OriginalMessageId"], "not_json");
    assert_eq!(sent[0].1["ReceiveCount"], "1");
    assert!(!sent[0].1["ReasonText"].is_empty());
    assert!(h.aws.state().queue.is_empty(), "deleted after the DLQ send");
}

#[tokio::test]
async fn a_failed_dlq_send_keeps_the_message() {
    let h = harness(&oos_rule(1, 50, 1, ""), settings());
    h.dlq.fail_next(
        "sqs:SendMessage",
        AwsError::transient("sqs", "SendMessage", "503"),
    );
    let handled = h.deliver("not json", "m1").await;
    assert!(matches!(
        handled.disposition,
        Disposition::DeadLetter { .. }
    ));
    let s = h.aws.state();
    assert!(s.deleted.is_empty(), "never deleted without the DLQ copy");
    assert_eq!(s.queue.len(), 1);
    assert_eq!(
        s.visibility_changes,
        vec![("rh-m1".to_string(), 10)],
        "backed off for a retry"
    );
}

#[tokio::test]
async fn a_transient_failure_retries_with_backoff_and_does_not_delete() {
    let h = harness(&oos_rule(1, 50, 1, ""), settings());
    let ids = h.fleet(4, 1);
    // A change is sent up to five times within the action (re-reading
    // the target in between); all five fail here.
    for _ in 0..5 {
        h.aws.fail_next(
            "ec2:TerminateInstances",
            AwsError::transient("ec2", "TerminateInstances", "Throttling"),
        );
    }
    let msg = h.enqueue(&web_alarm("m1"), "sqs-1", 3);
    let handled = h
        .worker
        .process(msg.clone(), &CancellationToken::new())
        .await;
    assert_eq!(
        handled.disposition,
        Disposition::Retry {
            after: Duration::from_secs(40)
        }
    );
    assert!(h.aws.state().deleted.is_empty());
    assert!(h.terminated().is_empty());
    // The pauses between the sends (0.2 + 0.4 + 0.6 + 0.8 s) are waits,
    // not reflex's own processing.
    let waited = Duration::from_micros(handled.reports[0].waited_us);
    assert!(waited >= Duration::from_secs(2), "waited {waited:?}");
    // The retry acts: the failed attempt released its claim.
    let handled = h.worker.process(msg, &CancellationToken::new()).await;
    assert_eq!(handled.disposition, Disposition::Ack);
    assert_eq!(h.terminated(), vec![ids[0].clone()]);
}

#[tokio::test]
async fn a_permanent_failure_goes_to_the_dlq_as_action_failed() {
    let h = harness(&oos_rule(1, 50, 1, ""), settings());
    h.fleet(4, 1);
    h.aws.fail_next(
        "ec2:TerminateInstances",
        AwsError::permanent("ec2", "TerminateInstances", "UnauthorizedOperation"),
    );
    let handled = h.deliver(&web_alarm("m1"), "sqs-1").await;
    assert!(
        matches!(&handled.disposition, Disposition::DeadLetter { code, .. } if code == "action_failed")
    );
    assert_eq!(h.dlq.state().sent[0].1["ReasonCode"], "action_failed");
}

#[tokio::test(start_paused = true)]
async fn confirm_after_only_keeps_instances_out_of_service_twice() {
    let h = harness(&oos_rule(5, 100, 1, "confirm_after = \"30s\""), settings());
    let ids = h.fleet(6, 2);
    let aws = h.aws.clone();
    let recover = ids[0].clone();
    // During the wait, the first instance recovers.
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(10)).await;
        for i in aws.state().elb_health.get_mut("web").unwrap() {
            if i.instance_id == recover {
                i.state = "InService".into();
            }
        }
    });
    let handled = h.deliver(&web_alarm("m1"), "sqs-1").await;
    assert_eq!(h.terminated(), vec![ids[1].clone()]);
    assert_eq!(handled.disposition, Disposition::Ack);
}

#[tokio::test(start_paused = true)]
async fn shutdown_during_confirm_after_releases_the_message_untouched() {
    let h = harness(&oos_rule(5, 100, 1, "confirm_after = \"30s\""), settings());
    h.fleet(4, 1);
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(5)).await;
        stop.cancel();
    });
    let msg = h.enqueue(&web_alarm("m1"), "sqs-1", 1);
    let handled = h.worker.process(msg, &shutdown).await;
    assert_eq!(handled.disposition, Disposition::Release);
    assert!(h.terminated().is_empty());
    let s = h.aws.state();
    assert!(s.deleted.is_empty());
    assert_eq!(
        s.visibility_changes.last(),
        Some(&("rh-sqs-1".to_string(), 0)),
        "visible again at once"
    );
}

#[tokio::test]
async fn instance_actions_check_state_and_tag() {
    let rules = r#"
[[rule]]
name = "reboot-on-system-check"
[rule.match]
metric_name = "StatusCheckFailed_System"
dimensions.InstanceId = { exists = true }
[[rule.actions]]
type = "reboot_instance"
require_tag = { key = "reflex:managed" }
"#;
    let h = harness(rules, settings());
    let ids = h.fleet(2, 1);
    for alarm in ["sys-check", "sys-check-2"] {
        h.aws.state().alarms.insert(alarm.into(), AlarmState::Alarm);
    }
    let body = AlarmBody::new("sys-check")
        .dimensions(&[("InstanceId", &ids[1])])
        .metric("AWS/ELB", "StatusCheckFailed_System")
        .sns(TOPIC, "m1");
    let handled = h.deliver(&body, "sqs-1").await;
    assert_eq!(handled.reports[0].outcome, Outcome::Done);
    assert_eq!(
        h.aws.state().changes,
        vec![("RebootInstances".to_string(), vec![ids[1].clone()], false)]
    );
    // A stopped instance is not rebooted.
    let body = AlarmBody::new("sys-check-2")
        .dimensions(&[("InstanceId", &ids[0])])
        .metric("AWS/ELB", "StatusCheckFailed_System")
        .sns(TOPIC, "m2");
    let handled = h.deliver(&body, "sqs-2").await;
    assert_eq!(suppressed_by(&handled), Some(Guard::InstanceState));
    assert_eq!(h.aws.state().changes.len(), 1);
    // The instance comes from the message, so CloudWatch must agree: an
    // alarm that is OK again, or that does not exist, moves nothing.
    for (alarm, state, guard) in [
        ("sys-check-3", Some(AlarmState::Ok), Guard::AlarmRecovered),
        ("sys-check-4", None, Guard::AlarmNotFound),
    ] {
        if let Some(state) = state {
            h.aws.state().alarms.insert(alarm.into(), state);
        }
        let body = AlarmBody::new(alarm)
            .dimensions(&[("InstanceId", &ids[1])])
            .metric("AWS/ELB", "StatusCheckFailed_System")
            .sns(TOPIC, alarm);
        let handled = h.deliver(&body, alarm).await;
        assert_eq!(suppressed_by(&handled), Some(guard), "{alarm}");
        assert_eq!(h.aws.state().changes.len(), 1, "{alarm}: nothing rebooted");
    }
}

/// The CloudWatch heartbeat says "reflex is receiving": while every
/// ReceiveMessage fails (denied, throttled, endpoint down), the poll loop
/// keeps trying and the per-interval counts are still put, but no
/// Heartbeat, so the "not running" alarm fires.
#[tokio::test(start_paused = true)]
async fn no_heartbeat_is_put_while_receive_message_fails() {
    let h = harness(&web_rule_for_heartbeat(), settings());
    for _ in 0..1000 {
        h.aws.fail_next(
            "sqs:ReceiveMessage",
            AwsError::transient("sqs", "ReceiveMessage", "access denied by an SCP, say"),
        );
    }
    let worker = Arc::new(h.worker);
    let cloudwatch = FakeAws::new();
    let shutdown = CancellationToken::new();
    let tracker = tokio_util::task::TaskTracker::new();
    let publisher = tokio::spawn(reflex::telemetry::cloudwatch::publish(
        Arc::new(cloudwatch.clone()),
        "fake".to_string(),
        Duration::from_secs(60),
        Arc::clone(&worker.receives),
        shutdown.clone(),
    ));
    let pollers = tokio::spawn(Arc::clone(&worker).run(shutdown.clone(), tracker.clone()));

    tokio::time::sleep(Duration::from_secs(300)).await;

    let receives = h.aws.calls_to("sqs:ReceiveMessage");
    assert!(
        receives >= 10,
        "the poll loop must keep trying (with backoff); it called ReceiveMessage {receives} times"
    );
    let (puts, heartbeats) = {
        let state = cloudwatch.state();
        let puts = state
            .calls
            .iter()
            .filter(|c| *c == "cloudwatch:PutMetricData")
            .count();
        let heartbeats: Vec<_> = state
            .metrics
            .iter()
            .filter(|(_, d)| d.metric_name == "Heartbeat")
            .cloned()
            .collect();
        (puts, heartbeats)
    };
    assert!(
        puts >= 4,
        "the counts are still put every interval; {puts} puts"
    );
    assert!(
        heartbeats.is_empty(),
        "no Heartbeat may be put while ReceiveMessage fails: {heartbeats:?}"
    );
    assert_eq!(worker.receives.count(), 0);

    shutdown.cancel();
    pollers.await.expect("the pollers stop on shutdown");
    publisher.await.expect("the publisher stops on shutdown");
}

fn web_rule_for_heartbeat() -> String {
    oos_rule(1, 100, 0, "")
}

/// A store outage fails closed: while the store cannot be reached nothing
/// acts (no claim, no action) and the message is retried with backoff;
/// once it answers again the retry acts, once. Every failed call is
/// counted in `reflex_state_errors_total`.
#[tokio::test]
async fn a_store_outage_fails_closed_and_the_retry_acts_once() {
    use reflex::telemetry::store::CountedStore;
    use reflex::testing::OutageStore;
    let outage = Arc::new(OutageStore::default());
    let h = TestWorker::builder(&oos_rule(1, 50, 1, ""))
        .settings(settings())
        .store(Arc::new(CountedStore::new(outage.clone())))
        .build();
    let ids = h.fleet(4, 1);
    let errors = || {
        reflex::telemetry::metrics()
            .state_errors
            .get_or_create(&reflex::telemetry::StoreLabels {
                operation: "claim".into(),
                kind: "unavailable".into(),
            })
            .get()
    };
    let before = errors();

    outage.down();
    let handled = h.deliver(&web_alarm("m1"), "sqs-1").await;
    assert!(
        matches!(handled.disposition, Disposition::Retry { .. }),
        "{:?}",
        handled.disposition
    );
    assert!(
        matches!(&handled.reports[0].outcome, Outcome::Failed { transient: true, error } if error.contains("state store")),
        "{:?}",
        handled.reports
    );
    assert!(h.terminated().is_empty(), "nothing acts without a claim");
    assert!(h.aws.state().deleted.is_empty(), "the message stays");
    assert!(errors() > before, "the failed claim is counted");

    outage.up();
    let handled = h.deliver_with(&web_alarm("m1"), "sqs-1-retry", 2).await;
    assert_eq!(handled.disposition, Disposition::Ack);
    assert_eq!(h.terminated(), vec![ids[0].clone()]);
    // And a redelivery after that finds the claim done.
    let again = h.deliver_with(&web_alarm("m1"), "sqs-1-again", 3).await;
    assert_eq!(again.reports[0].outcome, Outcome::Duplicate);
    assert_eq!(h.terminated().len(), 1);
}

/// The transition of `web-unhealthy` at 16:30:`second`, signed.
fn web_alarm_at(second: u32, id: &str) -> String {
    AlarmBody::new("web-unhealthy")
        .changed_at(&format!("2026-01-12T16:30:{second:02}.000+0000"))
        .sns(TOPIC, id)
}

#[tokio::test]
async fn the_remediation_budget_stops_a_loop_on_one_target_and_escalates() {
    let mut s = settings();
    s.remediation_budget = Some(Rate::parse("2/24h").unwrap());
    let dir = tempfile::tempdir().expect("tempdir");
    let trail = dir.path().join("audit.jsonl");
    let sink = reflex::audit::FileSink::open(&trail).expect("audit file");
    let h = TestWorker::builder(&oos_rule(1, 50, 1, ""))
        .settings(s)
        .audit(Arc::new(sink))
        .build();
    h.fleet(8, 3);
    for (i, second) in [40, 45].into_iter().enumerate() {
        let handled = h
            .deliver(&web_alarm_at(second, &format!("m{i}")), "sqs")
            .await;
        let r = &handled.reports[0];
        assert_eq!(r.outcome, Outcome::Done, "attempt {i}: {r:?}");
        let budget = r.budget.expect("the budget is reported");
        assert_eq!((budget.used, budget.limit), (i as u32 + 1, 2));
        assert_eq!(budget.window_s, 86_400);
    }
    assert_eq!(h.terminated().len(), 2);
    let published_before = h.aws.state().published.len();

    // The third transition on the same ELB: the budget is spent.
    let handled = h.deliver(&web_alarm_at(50, "m3"), "sqs-3").await;
    assert_eq!(suppressed_by(&handled), Some(Guard::Budget));
    let r = &handled.reports[0];
    let Outcome::Suppressed {
        numbers, detail, ..
    } = &r.outcome
    else {
        panic!("{r:?}")
    };
    assert_eq!(numbers.get("used"), Some(&2));
    assert_eq!(numbers.get("budget_count"), Some(&2));
    assert!(detail.contains("elb:web"), "{detail}");
    assert_eq!(h.terminated().len(), 2, "nothing more was terminated");
    assert_eq!(handled.disposition, Disposition::Ack);
    // The escalation says the budget is spent and a person is needed.
    let published = h.aws.state().published.clone();
    assert_eq!(published.len(), published_before + 1, "{published:?}");
    let (topic, _, message) = published.last().expect("the escalation");
    assert_eq!(topic, "arn:aws:sns:us-east-1:123456789012:oncall");
    assert!(message.contains("budget"), "{message}");
    assert!(message.contains("a person must look at it"), "{message}");
    // The audit trail has the budget on every attempt and on the refusal.
    let text = std::fs::read_to_string(&trail).expect("audit trail");
    let budgets: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|r| r["kind"] == "terminate_out_of_service")
        .map(|r| r["budget"].clone())
        .collect();
    assert_eq!(budgets.len(), 3, "{text}");
    let used: Vec<i64> = budgets.iter().filter_map(|b| b["used"].as_i64()).collect();
    assert_eq!(used, vec![1, 2, 2], "{text}");
    assert!(text.contains("\"guard\":\"budget\""), "{text}");
}

#[tokio::test]
async fn the_remediation_budget_is_shared_by_every_rule_on_a_target() {
    let rules = r#"
[[rule]]
name = "first"
[rule.match]
alarm_name = "web-unhealthy"
dimensions.LoadBalancerName = { exists = true }
[[rule.actions]]
type = "terminate_out_of_service"
max_percent = 50
min_in_service = 1
require_tag = { key = "reflex:managed", value = "true" }

[[rule]]
name = "second"
[rule.match]
alarm_name = "web-unhealthy"
dimensions.LoadBalancerName = { exists = true }
[[rule.actions]]
type = "deregister_out_of_service"
max_percent = 50
min_in_service = 1
require_tag = { key = "reflex:managed", value = "true" }
"#;
    let mut s = settings();
    s.remediation_budget = Some(Rate::parse("1/24h").unwrap());
    let h = harness(rules, s);
    h.fleet(8, 3);
    let handled = h.deliver(&web_alarm("m1"), "sqs-1").await;
    let outcomes: Vec<&Outcome> = handled.reports.iter().map(|r| &r.outcome).collect();
    assert_eq!(outcomes[0], &Outcome::Done, "{outcomes:?}");
    assert_eq!(suppressed_by(&handled), Some(Guard::Budget), "{outcomes:?}");
    assert!(
        !h.aws
            .state()
            .calls
            .iter()
            .any(|c| c.ends_with("DeregisterInstancesFromLoadBalancer")),
        "the second rule did not act"
    );
}

#[tokio::test]
async fn dry_runs_do_not_spend_the_remediation_budget() {
    let mut s = settings();
    s.remediation_budget = Some(Rate::parse("1/24h").unwrap());
    s.dry_run = true;
    let h = harness(&oos_rule(1, 50, 1, ""), s);
    h.fleet(8, 3);
    for (i, second) in [40, 45].into_iter().enumerate() {
        let handled = h
            .deliver(&web_alarm_at(second, &format!("m{i}")), "sqs")
            .await;
        assert_eq!(handled.reports[0].outcome, Outcome::DryRun, "{i}");
        assert_eq!(handled.reports[0].budget, None);
    }
}

/// Keeps every audit record written, in order.
#[derive(Default)]
struct Recorded(std::sync::Mutex<Vec<reflex::audit::AuditRecord>>);

impl reflex::audit::AuditSink for Recorded {
    fn record(&self, rec: &reflex::audit::AuditRecord) {
        self.0.lock().expect("recorded lock").push(rec.clone());
    }
}

impl Recorded {
    /// The message record written, if any.
    fn message(&self) -> Option<reflex::audit::MessageRecord> {
        self.0
            .lock()
            .expect("recorded lock")
            .iter()
            .find_map(|r| match r {
                reflex::audit::AuditRecord::Message(m) => Some((**m).clone()),
                _ => None,
            })
    }
}

/// A terminate that waits `confirm_after`, then a notify: two actions of
/// one message, the second started only after the first's wait.
fn slow_then_notify(confirm_after: &str) -> String {
    let mut rules = oos_rule(5, 100, 1, &format!("confirm_after = \"{confirm_after}\""));
    rules.push_str(
        r#"
[[rule.actions]]
type = "notify"
topic_arn = "arn:aws:sns:us-east-1:123456789012:oncall"
subject = "terminated"
message = "terminated"
"#,
    );
    rules
}

const CHANGE_VISIBILITY: &str = "sqs:ChangeMessageVisibility";

fn heartbeats(h: &TestWorker) -> usize {
    h.aws.calls_to(CHANGE_VISIBILITY)
}

/// A receive asks for room for the first heartbeat (twice its call
/// timeout), not for the visibility timeout: a receive whose reply is lost
/// hides its messages that long. Never more than one heartbeat interval.
#[test]
fn a_receive_asks_for_room_for_the_first_heartbeat_only() {
    let defaults = Settings::default();
    assert_eq!(defaults.heartbeat_timeout(), Duration::from_secs(6));
    assert_eq!(defaults.receive_visibility(), Duration::from_secs(12));
    // The lossy test's: 10 s visibility, 3 s heartbeat (1 s calls).
    let lossy = Settings {
        visibility_timeout: Duration::from_secs(10),
        heartbeat: Duration::from_secs(3),
        ..Settings::default()
    };
    assert_eq!(lossy.receive_visibility(), Duration::from_secs(2));
    // A long queue call is capped by the interval.
    let slow_queue = Settings {
        queue_timeout: Duration::from_secs(30),
        heartbeat: Duration::from_secs(9),
        visibility_timeout: Duration::from_secs(60),
        ..Settings::default()
    };
    assert_eq!(slow_queue.heartbeat_timeout(), Duration::from_secs(3));
    assert_eq!(slow_queue.receive_visibility(), Duration::from_secs(6));
}

/// Visibility 60 s, heartbeat 20 s: each heartbeat may take 6 s, the
/// receive asks for twice that (12 s), and the first heartbeat goes out at
/// once. The first one hangs; it is given up at 6 s and retried, which gets
/// through: the message finishes normally, its visibility never lost.
#[tokio::test(start_paused = true)]
async fn one_stalled_heartbeat_is_retried_and_does_not_stall_the_message() {
    let recorded = Arc::new(Recorded::default());
    let h = TestWorker::builder(&slow_then_notify("40s"))
        .settings(settings())
        .audit(recorded.clone())
        .build();
    assert_eq!(
        h.worker.settings.heartbeat_timeout(),
        Duration::from_secs(6)
    );
    let ids = h.fleet(6, 2);
    h.aws.stall_next(CHANGE_VISIBILITY, 1);
    let started = tokio::time::Instant::now();
    let handled = h.deliver(&web_alarm("m1"), "sqs-1").await;
    let took = started.elapsed();
    assert_eq!(handled.disposition, Disposition::Ack);
    assert!(!handled.visibility_lost);
    assert_eq!(handled.reports.len(), 2, "{:?}", handled.reports);
    assert_eq!(h.terminated(), ids[..2].to_vec());
    assert_eq!(h.aws.state().published.len(), 1, "the notify ran");
    // The stalled first heartbeat (0 s), its retry (6.25 s), the next
    // (26.25 s); the one after would be at 46.25 s, after the message
    // finished (~40 s).
    assert!(took < Duration::from_secs(46), "took {took:?}");
    assert_eq!(heartbeats(&h), 3);
    let s = h.aws.state();
    assert_eq!(
        s.visibility_changes,
        [("rh-sqs-1".to_string(), 60), ("rh-sqs-1".to_string(), 60)],
        "the retry extended the visibility, and the next heartbeat"
    );
    assert_eq!(s.deleted, ["rh-sqs-1"]);
    drop(s);
    let m = recorded.message().expect("a message record");
    assert!(!m.visibility_lost);
}

/// Every heartbeat hangs: the visibility (12 s from receipt, what the
/// receive asked for) is given up when it runs out. The action then
/// running (a 70 s wait) finishes; the notify after it is not started,
/// the message is released, and the audit record and the counter say the
/// visibility was lost.
#[tokio::test(start_paused = true)]
async fn heartbeats_stalled_until_the_visibility_runs_out_start_no_further_action() {
    let recorded = Arc::new(Recorded::default());
    let h = TestWorker::builder(&slow_then_notify("70s"))
        .settings(settings())
        .audit(recorded.clone())
        .build();
    let ids = h.fleet(6, 2);
    // Attempts at 0 s (given up after 6 s) and 6.25 s (cut short at 12 s,
    // when the visibility runs out): lost. (The release after it is
    // answered.)
    h.aws.stall_next(CHANGE_VISIBILITY, 2);
    let lost_before = reflex::telemetry::metrics().visibility_lost.get();
    let handled = h.deliver(&web_alarm("m1"), "sqs-1").await;
    assert!(handled.visibility_lost);
    assert_eq!(handled.reports.len(), 1, "only the running action finished");
    assert_eq!(
        handled.reports[0].outcome,
        Outcome::Done,
        "never cancelled half-way"
    );
    assert_eq!(h.terminated(), ids[..2].to_vec());
    assert!(
        h.aws.state().published.is_empty(),
        "the notify was not started"
    );
    assert_eq!(handled.disposition, Disposition::Release);
    {
        let s = h.aws.state();
        assert!(s.deleted.is_empty());
        assert_eq!(
            s.visibility_changes,
            [("rh-sqs-1".to_string(), 0)],
            "only the release got through: visible again at once"
        );
    }
    assert_eq!(
        heartbeats(&h),
        2 + 1,
        "two heartbeat attempts, then the release"
    );
    let m = recorded.message().expect("a message record");
    assert!(m.visibility_lost);
    assert_eq!(m.disposition, reflex::audit::DispositionRecord::Release);
    let line = String::from_utf8(reflex::audit::AuditRecord::Message(Box::new(m)).to_line())
        .expect("utf-8");
    assert!(line.contains("\"visibility_lost\":true"), "{line}");
    assert!(reflex::telemetry::metrics().visibility_lost.get() > lost_before);
    // The redelivery runs the rest, and does not terminate again.
    let again = h.deliver_with(&web_alarm("m1"), "sqs-1b", 2).await;
    assert_eq!(again.disposition, Disposition::Ack);
    assert_eq!(again.reports[0].outcome, Outcome::Duplicate);
    assert_eq!(h.terminated(), ids[..2].to_vec());
    assert_eq!(h.aws.state().published.len(), 1);
}

/// Issue 13: a write whose reply is lost is an unknown outcome, not a
/// failure. TerminateInstances went through but its reply timed out:
/// re-reading shows the instance terminated, so the action is done, the
/// message deleted, and nothing is terminated twice.
#[tokio::test]
async fn a_terminate_whose_reply_is_lost_is_done_after_a_re_read() {
    let h = harness(&oos_rule(1, 50, 1, ""), settings());
    let ids = h.fleet(4, 1);
    h.aws.lose_reply_next(
        "ec2:TerminateInstances",
        AwsError::timeout("ec2", "TerminateInstances", Duration::from_secs(5)),
    );
    let handled = h.deliver(&web_alarm("m1"), "sqs-1").await;
    let r = &handled.reports[0];
    assert_eq!(r.outcome, Outcome::Done, "{r:?}");
    assert!(
        r.unknown_outcome
            .as_deref()
            .is_some_and(|e| e.contains("ec2:TerminateInstances") && e.contains("no reply within")),
        "{r:?}"
    );
    assert_eq!(h.terminated(), vec![ids[0].clone()], "terminated once");
    assert_eq!(handled.disposition, Disposition::Ack);
}

/// Issue 13: a terminate whose reply stalls (the instance is terminated,
/// the answer never comes) is not waited out: after `settle_after` (1 s)
/// the target is re-read beside it, shows the instance terminated, and
/// the action is done then, not at the write's timeout, with the unknown
/// outcome in its report. A terminate that is only slow (its change not
/// yet made when the re-read looks) is still awaited, and done once.
#[tokio::test(start_paused = true)]
async fn a_terminate_whose_reply_stalls_is_done_once_a_re_read_shows_it() {
    assert_eq!(settings().settle_after, Some(Duration::from_secs(1)));
    let h = harness(&oos_rule(1, 50, 1, ""), settings());
    let ids = h.fleet(4, 1);
    h.aws.stall_reply_next("ec2:TerminateInstances", 1);
    let started = tokio::time::Instant::now();
    let handled = h.deliver(&web_alarm("m1"), "sqs-1").await;
    let took = started.elapsed();
    let r = &handled.reports[0];
    assert_eq!(r.outcome, Outcome::Done, "{r:?}");
    assert!(
        r.unknown_outcome.as_deref().is_some_and(|e| e
            .starts_with("ec2:TerminateInstances: no reply within 1s")
            && e.contains("shows the change made")),
        "{r:?}"
    );
    assert!(
        took < Duration::from_secs(2),
        "done after the re-read, took {took:?}"
    );
    assert_eq!(h.terminated(), vec![ids[0].clone()], "terminated once");
    assert_eq!(handled.disposition, Disposition::Ack);

    // Slow, not stalled: the re-read at 1 s does not show the change
    // (made at 3 s), so the write's own answer is awaited.
    let h = harness(&oos_rule(1, 50, 1, ""), settings());
    let ids = h.fleet(4, 1);
    h.aws
        .slow_next("ec2:TerminateInstances", Duration::from_secs(3));
    let started = tokio::time::Instant::now();
    let handled = h.deliver(&web_alarm("m2"), "sqs-2").await;
    let r = &handled.reports[0];
    assert_eq!(r.outcome, Outcome::Done, "{r:?}");
    assert_eq!(r.unknown_outcome, None, "answered: {r:?}");
    assert!(started.elapsed() >= Duration::from_secs(3));
    assert_eq!(h.terminated(), vec![ids[0].clone()], "terminated once");
    let describes = |h: &TestWorker| h.aws.calls_to("ec2:DescribeInstances");
    let prompt = harness(&oos_rule(1, 50, 1, ""), settings());
    prompt.fleet(4, 1);
    prompt.deliver(&web_alarm("m3"), "sqs-3").await;
    assert_eq!(
        describes(&h),
        describes(&prompt) + 1,
        "one re-read while the slow write was pending, none for a prompt one"
    );
}

/// The same for an instance action, and the cases where re-reading cannot
/// help: a write that keeps failing *before* changing anything is sent
/// again after each re-read, five times in all, then stays a (transient)
/// failure and the message is retried, and the retry acts once; a reboot leaves nothing to read, so its lost reply stays a
/// failure too.
#[tokio::test]
async fn a_failed_write_that_changed_nothing_is_retried_and_acts_once() {
    let rules = r#"
[[rule]]
name = "terminate-instance"
[rule.match]
metric_name = "StatusCheckFailed_System"
dimensions.InstanceId = { exists = true }
[[rule.actions]]
type = "terminate_instance"
require_tag = { key = "reflex:managed" }
"#;
    let h = harness(rules, settings());
    let ids = h.fleet(2, 0);
    h.aws
        .state()
        .alarms
        .insert("sys-check".into(), AlarmState::Alarm);
    let body = AlarmBody::new("sys-check")
        .dimensions(&[("InstanceId", &ids[1])])
        .metric("AWS/EC2", "StatusCheckFailed_System")
        .sns(TOPIC, "m1");
    // Refused before it reached EC2, five times: re-reading shows nothing
    // changed after each, so the failure stands.
    for _ in 0..5 {
        h.aws.fail_next(
            "ec2:TerminateInstances",
            AwsError::timeout("ec2", "TerminateInstances", Duration::from_secs(5)),
        );
    }
    let first = h.deliver(&body, "sqs-1").await;
    let calls = h.aws.state().calls.clone();
    assert_eq!(
        calls
            .iter()
            .filter(|c| *c == "ec2:TerminateInstances")
            .count(),
        5,
        "sent five times"
    );
    assert!(
        calls
            .iter()
            .filter(|c| *c == "ec2:DescribeInstances")
            .count()
            >= 6,
        "the instance re-read after each failure: {calls:?}"
    );
    assert!(
        matches!(
            first.reports[0].outcome,
            Outcome::Failed {
                transient: true,
                ..
            }
        ),
        "{:?}",
        first.reports[0]
    );
    assert!(first.reports[0].unknown_outcome.is_none());
    assert!(matches!(first.disposition, Disposition::Retry { .. }));
    assert!(h.terminated().is_empty());
    // The retry terminates it, once.
    let second = h.deliver_with(&body, "sqs-1", 2).await;
    assert_eq!(
        second.reports[0].outcome,
        Outcome::Done,
        "{:?}",
        second.reports[0]
    );
    assert_eq!(h.terminated(), vec![ids[1].clone()]);

    // A reboot whose reply is lost: nothing to re-read.
    let rules = rules.replace("terminate_instance", "reboot_instance");
    let h = harness(&rules, settings());
    let ids = h.fleet(2, 0);
    h.aws
        .state()
        .alarms
        .insert("sys-check".into(), AlarmState::Alarm);
    h.aws.lose_reply_next(
        "ec2:RebootInstances",
        AwsError::timeout("ec2", "RebootInstances", Duration::from_secs(5)),
    );
    let body = AlarmBody::new("sys-check")
        .dimensions(&[("InstanceId", &ids[1])])
        .metric("AWS/EC2", "StatusCheckFailed_System")
        .sns(TOPIC, "m1");
    let handled = h.deliver(&body, "sqs-1").await;
    assert!(
        matches!(
            handled.reports[0].outcome,
            Outcome::Failed {
                transient: true,
                ..
            }
        ),
        "{:?}",
        handled.reports[0]
    );
}

/// SIGTERM while a long poll is out: the receive is let finish, and the
/// message it brings is made visible again at once, not processed and not
/// left invisible for the visibility timeout.
#[tokio::test(start_paused = true)]
async fn shutdown_lets_the_outstanding_receive_finish_and_releases_what_it_brings() {
    let h = harness(
        &oos_rule(5, 100, 1, ""),
        Settings {
            wait: Duration::from_secs(5),
            ..settings()
        },
    );
    h.fleet(4, 1);
    // The first long poll is out for 4 s and sees the queue as it is then.
    h.aws
        .slow_next("sqs:ReceiveMessage", Duration::from_secs(4));
    let worker = Arc::new(h.worker);
    let shutdown = CancellationToken::new();
    let tracker = tokio_util::task::TaskTracker::new();
    let started = tokio::time::Instant::now();
    let pollers = tokio::spawn(Arc::clone(&worker).run(shutdown.clone(), tracker.clone()));
    tokio::time::sleep(Duration::from_secs(1)).await;
    shutdown.cancel();
    // The alarm arrives after SIGTERM, while the old poll is still out.
    h.aws.enqueue("m1", &web_alarm("m1"), 1);
    pollers.await.expect("the pollers stop");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(4) && took < Duration::from_secs(5 + 2),
        "the receive was let finish, bounded by its wait: {took:?}"
    );
    tracker.close();
    tracker.wait().await;
    let s = h.aws.state();
    assert_eq!(
        s.visibility_changes,
        [("rh-m1".to_string(), 0)],
        "released at once"
    );
    assert!(s.queue.iter().all(|(_, visible)| *visible), "visible again");
    assert!(s.deleted.is_empty());
    assert!(s.changes.is_empty(), "not processed");
    drop(s);
    assert_eq!(
        h.aws.calls_to("sqs:ReceiveMessage"),
        1,
        "no new receive after shutdown"
    );
}

/// A shutdown while a poller waits for the slots of messages still in
/// flight (its last receive came back full): it sends no new long poll,
/// which would hold the shutdown up for its whole wait.
#[tokio::test(start_paused = true)]
async fn a_shutdown_while_slots_are_gathered_sends_no_new_receive() {
    let h = harness(
        &slow_then_notify("10s"),
        Settings {
            max_in_flight: 2,
            ..settings()
        },
    );
    h.fleet(4, 1);
    // One receive takes both (full: a backlog). m1 then waits 10 s to
    // confirm, holding its slot; m2 matches no rule and is done at once.
    h.aws.enqueue("m1", &web_alarm("m1"), 1);
    h.aws
        .enqueue("m2", &AlarmBody::new("db-unhealthy").sns(TOPIC, "m2"), 1);
    let worker = Arc::new(h.worker);
    let shutdown = CancellationToken::new();
    let tracker = tokio_util::task::TaskTracker::new();
    let pollers = tokio::spawn(Arc::clone(&worker).run(shutdown.clone(), tracker.clone()));
    // m2 is deleted after the batch's 5 ms linger; the poller takes its
    // slot and waits up to 25 ms for m1's. The shutdown comes meanwhile.
    tokio::time::sleep(Duration::from_millis(15)).await;
    assert_eq!(h.aws.state().deleted, ["rh-m2".to_string()]);
    shutdown.cancel();
    pollers.await.expect("the pollers stop");
    tracker.close();
    tracker.wait().await;
    let receives = h.aws.calls_to("sqs:ReceiveMessage");
    assert_eq!(receives, 1, "no receive after the shutdown");
}

/// Issue 12's batched heartbeats: the first heartbeats of three messages
/// in flight together go out as one `ChangeMessageVisibilityBatch`. The
/// entry that fails is a failed heartbeat for its message alone: retried
/// 250 ms later on its own, and nothing else changes.
#[tokio::test(start_paused = true)]
async fn heartbeats_of_messages_in_flight_together_share_one_batch_call() {
    let h = harness(&slow_then_notify("10s"), settings());
    h.fleet(6, 3);
    let messages: Vec<_> = [("a", 40), ("b", 45), ("c", 50)]
        .into_iter()
        .map(|(id, second)| h.enqueue(&web_alarm_at(second, id), id, 1))
        .collect();
    // The batch's first entry fails, as a single call would.
    h.aws.fail_next(
        CHANGE_VISIBILITY,
        AwsError::transient("sqs", "ChangeMessageVisibility", "InternalError"),
    );
    let shutdown = CancellationToken::new();
    let (a, b, c) = tokio::join!(
        h.worker.process(messages[0].clone(), &shutdown),
        h.worker.process(messages[1].clone(), &shutdown),
        h.worker.process(messages[2].clone(), &shutdown),
    );
    for handled in [&a, &b, &c] {
        assert_eq!(handled.disposition, Disposition::Ack, "{handled:?}");
        assert!(!handled.visibility_lost);
    }
    let s = h.aws.state();
    let visibility_calls: Vec<&str> = s
        .calls
        .iter()
        .map(String::as_str)
        .filter(|c| c.starts_with("sqs:ChangeMessageVisibility"))
        .collect();
    assert_eq!(
        visibility_calls[..2],
        ["sqs:ChangeMessageVisibilityBatch", CHANGE_VISIBILITY],
        "one batch for the three, then the failed entry's retry alone"
    );
    // Later rounds (the pool's actions take turns on its lease) batch
    // the messages still in flight the same way.
    let first_round: Vec<_> = s.visibility_changes.iter().take(3).cloned().collect();
    let mut extended: Vec<_> = first_round.clone();
    extended.sort();
    assert_eq!(
        extended,
        [("a", 60), ("b", 60), ("c", 60)].map(|(id, t)| (format!("rh-{id}"), t)),
        "each message extended at once, to the visibility timeout"
    );
    assert_eq!(
        first_round[2],
        (messages[0].receipt_handle.clone(), 60),
        "the failed entry's retry came last"
    );
    assert!(
        visibility_calls.len() < s.visibility_changes.len(),
        "fewer calls than extensions: {visibility_calls:?}"
    );
    assert_eq!(s.deleted.len(), 3);
}
