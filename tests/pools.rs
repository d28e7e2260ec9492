//! Pool actions (`remediate_pool`) with in-memory fakes behind the effect
//! traits: target-group health and reason codes, target types, and every
//! pool guard — fail-open, `max_unhealthy`, `min_in_service` counting
//! healthy targets — shown stopping an action, for target groups and
//! classic ELBs alike. (The moto end-to-end test is in e2e_pools.rs.)

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use reflex::disposition::{Disposition, MessageOutcome};
use reflex::event::AlarmState;
use reflex::fleet::{InstanceInfo, TargetType};
use reflex::outcome::Outcome;
use reflex::safety::Guard;
use reflex::testing::worker::{at, START};
use reflex::testing::{AlarmBody, TestWorker};
use reflex::trust::TrustPolicy;
use reflex::worker::Settings;

const TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:alarms";
const TG_DIM: &str = "targetgroup/web/0123abcd";
/// The ARN reflex derives from the dimension and the alarm's ARN.
const TG: &str = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/0123abcd";

fn now() -> DateTime<Utc> {
    at(START)
}

/// A target-group rule with tight guards; `extra` adds action parameters
/// (and replaces the default `min_in_service = 1`).
fn tg_rule(extra: &str) -> String {
    let rule = format!(
        r#"
[[rule]]
name = "tg-replace"
[rule.match]
alarm_name = "web-unhealthy"
namespace = "AWS/ApplicationELB"
dimensions.TargetGroup = {{ exists = true }}
[[rule.actions]]
type = "remediate_pool"
max_instances = 2
max_percent = 50
min_in_service = 1
require_tag = {{ key = "reflex:managed", value = "true" }}
escalate_topic_arn = "arn:aws:sns:us-east-1:123456789012:oncall"
{extra}
"#
    );
    if extra.contains("min_in_service") {
        rule.replacen("min_in_service = 1\n", "", 1)
    } else {
        rule
    }
}

fn harness(rules: &str) -> TestWorker {
    TestWorker::builder(rules)
        .settings(Settings {
            trust: TrustPolicy::topics(&[TOPIC]),
            ..Settings::default()
        })
        .build()
}

fn tg_alarm(id: &str) -> String {
    AlarmBody::new("web-unhealthy")
        .metric("AWS/ApplicationELB", "UnHealthyHostCount")
        .dimensions(&[
            ("TargetGroup", TG_DIM),
            ("LoadBalancer", "app/web/50dc6c495c0c9188"),
        ])
        .sns(TOPIC, id)
}

fn info(id: &str, state: &str) -> InstanceInfo {
    InstanceInfo {
        instance_id: id.to_string(),
        state: state.into(),
        launch_time: Some(now() - chrono::Duration::hours(2)),
        tags: BTreeMap::from([("reflex:managed".to_string(), "true".to_string())]),
    }
}

/// Registers targets `i-00`… in the target group: `(state, reason)` each,
/// instances running unless `unused`; the alarm is in ALARM.
fn targets(h: &TestWorker, members: &[(&str, Option<&str>)]) -> Vec<String> {
    let mut ids = Vec::new();
    for (i, (state, reason)) in members.iter().enumerate() {
        let id = format!("i-{i:02}");
        let ec2 = if *state == "unused" {
            "stopped"
        } else {
            "running"
        };
        h.aws
            .add_target(TG, &id, *state, *reason, Some(info(&id, ec2)));
        ids.push(id);
    }
    h.aws
        .state()
        .alarms
        .insert("web-unhealthy".into(), AlarmState::Alarm);
    ids
}

const HEALTHY: (&str, Option<&str>) = ("healthy", None);
const UNHEALTHY: (&str, Option<&str>) = ("unhealthy", Some("Target.FailedHealthChecks"));
const STOPPED: (&str, Option<&str>) = ("unused", Some("Target.InvalidState"));

fn suppressed_by(h: &MessageOutcome) -> Option<Guard> {
    h.reports.iter().find_map(|r| match &r.outcome {
        Outcome::Suppressed { guard, .. } => Some(*guard),
        _ => None,
    })
}

fn number(h: &MessageOutcome, name: &str) -> Option<i64> {
    h.reports.iter().find_map(|r| match &r.outcome {
        Outcome::Suppressed { numbers, .. } => numbers.get(name).copied(),
        _ => None,
    })
}

#[tokio::test]
async fn terminates_the_unhealthy_target_and_records_its_reason_code() {
    let h = harness(&tg_rule(""));
    let ids = targets(&h, &[UNHEALTHY, HEALTHY, HEALTHY, HEALTHY]);
    let handled = h.deliver(&tg_alarm("m1"), "sqs-1").await;
    let r = &handled.reports[0];
    assert_eq!(r.outcome, Outcome::Done, "{r:?}");
    assert_eq!(r.target, format!("target_group:{TG}"), "the derived ARN");
    assert_eq!(h.terminated(), vec![ids[0].clone()]);
    assert_eq!(
        r.health_reasons,
        BTreeMap::from([(ids[0].clone(), "Target.FailedHealthChecks".to_string())])
    );
    assert_eq!(handled.disposition, Disposition::Ack);
    let calls = h.aws.state().calls.clone();
    assert!(
        calls.contains(&"elasticloadbalancing:DescribeTargetGroups".to_string()),
        "the ARN is confirmed: {calls:?}"
    );
}

#[tokio::test]
async fn stopped_targets_are_bad_only_when_the_rule_opts_in() {
    let h = harness(&tg_rule(""));
    targets(&h, &[STOPPED, HEALTHY, HEALTHY, HEALTHY]);
    let handled = h.deliver(&tg_alarm("m1"), "sqs-1").await;
    assert!(
        matches!(&handled.reports[0].outcome, Outcome::NothingToDo { reason } if reason.contains("no target")),
        "{:?}",
        handled.reports[0].outcome
    );
    assert!(h.terminated().is_empty());

    let h = harness(&tg_rule("include_stopped = true"));
    let ids = targets(&h, &[STOPPED, HEALTHY, HEALTHY, HEALTHY]);
    let handled = h.deliver(&tg_alarm("m1"), "sqs-1").await;
    assert_eq!(handled.reports[0].outcome, Outcome::Done);
    assert_eq!(h.terminated(), vec![ids[0].clone()]);
    assert_eq!(
        handled.reports[0].health_reasons[&ids[0]],
        "Target.InvalidState"
    );
}

#[tokio::test]
async fn initial_draining_and_unavailable_targets_are_never_bad() {
    let h = harness(&tg_rule("include_stopped = true"));
    targets(
        &h,
        &[
            ("initial", Some("Elb.RegistrationInProgress")),
            ("draining", Some("Target.DeregistrationInProgress")),
            ("unavailable", Some("Target.HealthCheckDisabled")),
            HEALTHY,
        ],
    );
    let handled = h.deliver(&tg_alarm("m1"), "sqs-1").await;
    assert!(
        matches!(handled.reports[0].outcome, Outcome::NothingToDo { .. }),
        "{:?}",
        handled.reports[0].outcome
    );
}

/// A load balancer whose every target is unhealthy routes to all of them:
/// taking any out makes things worse.
#[tokio::test]
async fn fail_open_guard_stops_when_every_target_is_bad_and_escalates() {
    let h = harness(&tg_rule("min_in_service = 0\nmax_unhealthy = \"100%\""));
    targets(&h, &[UNHEALTHY, UNHEALTHY, UNHEALTHY]);
    let handled = h.deliver(&tg_alarm("m1"), "sqs-1").await;
    assert_eq!(suppressed_by(&handled), Some(Guard::FailOpen));
    assert_eq!(number(&handled, "registered"), Some(3));
    assert_eq!(number(&handled, "bad"), Some(3));
    assert!(h.terminated().is_empty());
    assert_eq!(handled.disposition, Disposition::Ack);
    let published = h.aws.state().published.clone();
    assert_eq!(published.len(), 1, "escalation notify fires");
    assert!(published[0].2.contains("fail_open"), "{}", published[0].2);
}

#[tokio::test]
async fn max_unhealthy_short_circuits_a_shared_cause() {
    // Default 50%: 3 of 5 bad is more than 2.
    let h = harness(&tg_rule("min_in_service = 1"));
    targets(&h, &[UNHEALTHY, UNHEALTHY, UNHEALTHY, HEALTHY, HEALTHY]);
    let handled = h.deliver(&tg_alarm("m1"), "sqs-1").await;
    assert_eq!(suppressed_by(&handled), Some(Guard::MaxUnhealthy));
    assert_eq!(number(&handled, "bad"), Some(3));
    assert_eq!(number(&handled, "allowed"), Some(2));
    assert!(h.terminated().is_empty());

    // A count: 2 bad of 6 is more than 1.
    let h = harness(&tg_rule("max_unhealthy = 1"));
    targets(
        &h,
        &[UNHEALTHY, UNHEALTHY, HEALTHY, HEALTHY, HEALTHY, HEALTHY],
    );
    let handled = h.deliver(&tg_alarm("m1"), "sqs-1").await;
    assert_eq!(suppressed_by(&handled), Some(Guard::MaxUnhealthy));
    assert!(h.terminated().is_empty());

    // Within it, the action runs (capped by max_instances = 2).
    let h = harness(&tg_rule("max_unhealthy = 2"));
    let ids = targets(
        &h,
        &[UNHEALTHY, UNHEALTHY, HEALTHY, HEALTHY, HEALTHY, HEALTHY],
    );
    let handled = h.deliver(&tg_alarm("m1"), "sqs-1").await;
    assert_eq!(handled.reports[0].outcome, Outcome::Done);
    assert_eq!(h.terminated(), ids[..2].to_vec());
}

/// `min_in_service` counts healthy targets: initial and draining ones do
/// not serve.
#[tokio::test]
async fn min_in_service_counts_only_healthy_targets() {
    let h = harness(&tg_rule("min_in_service = 2"));
    targets(
        &h,
        &[
            UNHEALTHY,
            HEALTHY,
            ("initial", Some("Elb.RegistrationInProgress")),
            ("draining", None),
        ],
    );
    let handled = h.deliver(&tg_alarm("m1"), "sqs-1").await;
    assert_eq!(suppressed_by(&handled), Some(Guard::MinInService));
    assert_eq!(number(&handled, "in_service"), Some(1));
    assert!(h.terminated().is_empty());
}

#[tokio::test]
async fn require_tag_and_age_guard_target_group_instances() {
    let h = harness(&tg_rule(""));
    let ids = targets(&h, &[UNHEALTHY, HEALTHY, HEALTHY, HEALTHY]);
    if let Some(i) = h.aws.state().instances.get_mut(&ids[0]) {
        i.tags.clear();
    }
    let handled = h.deliver(&tg_alarm("m1"), "sqs-1").await;
    assert_eq!(suppressed_by(&handled), Some(Guard::RequireTag));
    assert!(h.terminated().is_empty());

    let h = harness(&tg_rule(""));
    let ids = targets(&h, &[UNHEALTHY, HEALTHY, HEALTHY, HEALTHY]);
    if let Some(i) = h.aws.state().instances.get_mut(&ids[0]) {
        i.launch_time = Some(now() - chrono::Duration::minutes(2));
    }
    let handled = h.deliver(&tg_alarm("m1"), "sqs-1").await;
    assert_eq!(suppressed_by(&handled), Some(Guard::MinInstanceAge));
    assert!(h.terminated().is_empty());
}

#[tokio::test]
async fn ip_targets_can_only_be_deregistered() {
    let h = harness(&tg_rule("").replace(
        "require_tag = { key = \"reflex:managed\", value = \"true\" }\n",
        "",
    ));
    h.aws.add_target_group(TG, TargetType::Ip);
    for (ip, state) in [
        ("10.0.0.1", UNHEALTHY),
        ("10.0.0.2", HEALTHY),
        ("10.0.0.3", HEALTHY),
    ] {
        h.aws.add_target(TG, ip, state.0, state.1, None);
    }
    h.aws
        .state()
        .alarms
        .insert("web-unhealthy".into(), AlarmState::Alarm);
    let handled = h.deliver(&tg_alarm("m1"), "sqs-1").await;
    assert_eq!(suppressed_by(&handled), Some(Guard::TargetType));
    assert_eq!(handled.reports[0].excluded.len(), 1);
    assert!(h.aws.state().changes.is_empty());

    // An ip target carries no tags: with require_tag, it is left alone.
    let h = harness(&tg_rule("method = \"deregister\""));
    h.aws.add_target_group(TG, TargetType::Ip);
    for (ip, state) in [
        ("10.0.0.1", UNHEALTHY),
        ("10.0.0.2", HEALTHY),
        ("10.0.0.3", HEALTHY),
    ] {
        h.aws.add_target(TG, ip, state.0, state.1, None);
    }
    h.aws
        .state()
        .alarms
        .insert("web-unhealthy".into(), AlarmState::Alarm);
    let handled = h.deliver(&tg_alarm("m1"), "sqs-1").await;
    assert_eq!(suppressed_by(&handled), Some(Guard::RequireTag));

    let h = harness(
        &tg_rule("method = \"deregister\"\ntarget_type = \"ip\"").replace(
            "require_tag = { key = \"reflex:managed\", value = \"true\" }\n",
            "",
        ),
    );
    h.aws.add_target_group(TG, TargetType::Ip);
    for (ip, state) in [
        ("10.0.0.1", UNHEALTHY),
        ("10.0.0.2", HEALTHY),
        ("10.0.0.3", HEALTHY),
    ] {
        h.aws.add_target(TG, ip, state.0, state.1, None);
    }
    h.aws
        .state()
        .alarms
        .insert("web-unhealthy".into(), AlarmState::Alarm);
    let handled = h.deliver(&tg_alarm("m1"), "sqs-1").await;
    assert_eq!(handled.reports[0].outcome, Outcome::Done);
    let changes = h.aws.state().changes.clone();
    assert_eq!(
        changes,
        vec![(
            "DeregisterTargets".to_string(),
            vec!["10.0.0.1".to_string()],
            false
        )]
    );
    let calls = h.aws.state().calls.clone();
    assert!(
        !calls.contains(&"ec2:DescribeInstances".to_string()),
        "ip targets are not EC2 instances: {calls:?}"
    );
}

#[tokio::test]
async fn lambda_target_groups_are_recorded_as_excluded() {
    let h = harness(&tg_rule(""));
    h.aws.add_target_group(TG, TargetType::Lambda);
    h.aws.add_target(
        TG,
        "arn:aws:lambda:us-east-1:123456789012:function:f",
        "unhealthy",
        Some("Target.FailedHealthChecks"),
        None,
    );
    h.aws.add_target(
        TG,
        "arn:aws:lambda:us-east-1:123456789012:function:g",
        "healthy",
        None,
        None,
    );
    h.aws
        .state()
        .alarms
        .insert("web-unhealthy".into(), AlarmState::Alarm);
    let handled = h.deliver(&tg_alarm("m1"), "sqs-1").await;
    assert_eq!(suppressed_by(&handled), Some(Guard::TargetType));
    assert_eq!(handled.reports[0].excluded[0].guard, Guard::TargetType);
    assert!(h.aws.state().changes.is_empty());
}

#[tokio::test]
async fn dry_run_deregistration_is_log_only() {
    let h = harness(&tg_rule("method = \"deregister\"").replace(
        "name = \"tg-replace\"",
        "name = \"tg-replace\"\ndry_run = true",
    ));
    let ids = targets(&h, &[UNHEALTHY, HEALTHY, HEALTHY, HEALTHY]);
    let handled = h.deliver(&tg_alarm("m1"), "sqs-1").await;
    assert_eq!(handled.reports[0].outcome, Outcome::DryRun);
    assert_eq!(handled.reports[0].targets, vec![ids[0].clone()]);
    let state = h.aws.state();
    assert!(state.changes.is_empty(), "{:?}", state.changes);
    assert!(!state
        .calls
        .contains(&"elasticloadbalancing:DeregisterTargets".to_string()));
}

#[tokio::test]
async fn an_unknown_target_group_is_a_permanent_failure() {
    let h = harness(&tg_rule(""));
    h.aws
        .state()
        .alarms
        .insert("web-unhealthy".into(), AlarmState::Alarm);
    let handled = h.deliver(&tg_alarm("m1"), "sqs-1").await;
    assert!(
        matches!(&handled.reports[0].outcome, Outcome::Failed { transient: false, error } if error.contains(TG)),
        "{:?}",
        handled.reports[0].outcome
    );
    assert!(matches!(
        handled.disposition,
        Disposition::DeadLetter { .. }
    ));
}

#[tokio::test]
async fn cooldown_holds_the_second_alarm_on_the_same_target_group() {
    let h = harness(&format!(
        "{}\n[rule.limits]\ncooldown = \"10m\"\n",
        tg_rule("")
    ));
    let ids = targets(&h, &[UNHEALTHY, HEALTHY, HEALTHY, HEALTHY]);
    let first = h.deliver(&tg_alarm("m1"), "sqs-1").await;
    assert_eq!(first.reports[0].outcome, Outcome::Done);
    let second = h
        .deliver(
            &AlarmBody::new("web-unhealthy")
                .metric("AWS/ApplicationELB", "UnHealthyHostCount")
                .dimensions(&[("TargetGroup", TG_DIM)])
                .changed_at("2026-01-12T16:30:50.000+0000")
                .sns(TOPIC, "m2"),
            "sqs-2",
        )
        .await;
    assert_eq!(suppressed_by(&second), Some(Guard::Cooldown));
    assert_eq!(h.terminated(), vec![ids[0].clone()]);
}

// The classic ELB pool gets the same pool guards.

const CLASSIC: &str = r#"
[[rule]]
name = "terminate-oos"
[rule.match]
alarm_name = "web-unhealthy"
dimensions.LoadBalancerName = { exists = true }
[[rule.actions]]
type = "terminate_out_of_service"
max_instances = 4
max_percent = 100
min_in_service = 0
EXTRA
"#;

fn elb_alarm(id: &str) -> String {
    AlarmBody::new("web-unhealthy").sns(TOPIC, id)
}

#[tokio::test]
async fn classic_elb_fail_open_and_max_unhealthy() {
    let h = harness(&CLASSIC.replace("EXTRA", "max_unhealthy = \"100%\""));
    h.fleet(3, 3);
    let handled = h.deliver(&elb_alarm("m1"), "sqs-1").await;
    assert_eq!(suppressed_by(&handled), Some(Guard::FailOpen));
    assert!(h.terminated().is_empty());

    let h = harness(&CLASSIC.replace("EXTRA", ""));
    h.fleet(5, 3);
    let handled = h.deliver(&elb_alarm("m1"), "sqs-1").await;
    assert_eq!(suppressed_by(&handled), Some(Guard::MaxUnhealthy));
    assert!(h.terminated().is_empty());

    let h = harness(&CLASSIC.replace("EXTRA", "max_unhealthy = 3"));
    let ids = h.fleet(5, 3);
    let handled = h.deliver(&elb_alarm("m1"), "sqs-1").await;
    assert_eq!(handled.reports[0].outcome, Outcome::Done);
    assert_eq!(h.terminated().len(), 3, "{ids:?}");
}

#[tokio::test]
async fn remediate_pool_on_a_classic_elb_shares_the_target_with_the_old_kind() {
    let h = harness(
        r#"
[[rule]]
name = "pool-classic"
[rule.match]
alarm_name = "web-unhealthy"
dimensions.LoadBalancerName = { exists = true }
[[rule.actions]]
type = "remediate_pool"
pool = "classic_elb"
method = "deregister"
"#,
    );
    let ids = h.fleet(4, 1);
    let handled = h.deliver(&elb_alarm("m1"), "sqs-1").await;
    assert_eq!(handled.reports[0].outcome, Outcome::Done);
    assert_eq!(handled.reports[0].target, "elb:web");
    let changes = h.aws.state().changes.clone();
    assert_eq!(
        changes,
        vec![(
            "DeregisterInstancesFromLoadBalancer".to_string(),
            vec![ids[0].clone()],
            false
        )]
    );
}

// ---------------------------------------------------------------------------
// The Auto Scaling methods: asg_set_unhealthy and asg_terminate.

/// The changes the fake recorded: (operation, ids).
fn changes(h: &TestWorker) -> Vec<(String, Vec<String>)> {
    h.aws
        .state()
        .changes
        .iter()
        .map(|(op, ids, _)| (op.clone(), ids.clone()))
        .collect()
}

fn called(h: &TestWorker, op: &str) -> bool {
    h.aws.state().calls.iter().any(|c| c == op)
}

/// One unhealthy target `i-00` and three healthy ones, all InService in
/// group `web-asg`.
fn asg_pool(h: &TestWorker) -> Vec<String> {
    let ids = targets(h, &[UNHEALTHY, HEALTHY, HEALTHY, HEALTHY]);
    for id in &ids {
        h.aws.add_to_group("web-asg", id, "InService");
    }
    ids
}

#[tokio::test]
async fn asg_set_unhealthy_marks_the_bad_target_unhealthy_in_its_group() {
    let h = harness(&tg_rule("method = \"asg_set_unhealthy\""));
    let ids = asg_pool(&h);
    let handled = h.deliver(&tg_alarm("m1"), "sqs-1").await;
    let r = &handled.reports[0];
    assert_eq!(r.outcome, Outcome::Done, "{r:?}");
    assert_eq!(r.targets, vec![ids[0].clone()]);
    assert_eq!(
        changes(&h),
        vec![("SetInstanceHealth".to_string(), vec![ids[0].clone()])],
        "ShouldRespectGracePeriod defaults to true"
    );
    assert_eq!(
        h.aws.state().group_instances[&ids[0]].health_status,
        "Unhealthy"
    );
    assert!(h.terminated().is_empty(), "never TerminateInstances");
    assert!(called(&h, "autoscaling:DescribeAutoScalingInstances"));
    assert!(called(&h, "autoscaling:DescribeAutoScalingGroups"));
    assert_eq!(r.request_ids.len(), 1, "{r:?}");
}

#[tokio::test]
async fn asg_set_unhealthy_can_ignore_the_grace_period() {
    let h = harness(&tg_rule(
        "method = \"asg_set_unhealthy\"\nrespect_grace_period = false",
    ));
    let ids = asg_pool(&h);
    let handled = h.deliver(&tg_alarm("m1"), "sqs-1").await;
    assert_eq!(handled.reports[0].outcome, Outcome::Done);
    assert_eq!(
        changes(&h),
        vec![(
            "SetInstanceHealth(ignoring grace period)".to_string(),
            vec![ids[0].clone()]
        )]
    );
}

#[tokio::test]
async fn respect_grace_period_belongs_to_asg_set_unhealthy_only() {
    let rules = tg_rule("method = \"asg_terminate\"\nrespect_grace_period = false");
    let errors = reflex::rules::load_sources(vec![("t.toml".into(), rules)])
        .expect_err("respect_grace_period with asg_terminate must not load");
    let text = format!("{errors:?}");
    assert!(
        text.contains("respect_grace_period") && text.contains("asg_set_unhealthy"),
        "{text}"
    );
}

#[tokio::test]
async fn asg_terminate_terminates_through_the_group_keeping_capacity() {
    let h = harness(&tg_rule("method = \"asg_terminate\""));
    let ids = asg_pool(&h);
    let handled = h.deliver(&tg_alarm("m1"), "sqs-1").await;
    assert_eq!(handled.reports[0].outcome, Outcome::Done);
    assert_eq!(
        changes(&h),
        vec![(
            "TerminateInstanceInAutoScalingGroup".to_string(),
            vec![ids[0].clone()]
        )]
    );
    assert!(h.terminated().is_empty(), "not TerminateInstances");
    assert!(!called(&h, "ec2:TerminateInstances"));
}

#[tokio::test]
async fn asg_methods_refuse_an_instance_in_no_group_and_escalate() {
    for method in ["asg_set_unhealthy", "asg_terminate"] {
        let h = harness(&tg_rule(&format!("method = \"{method}\"")));
        let ids = targets(&h, &[UNHEALTHY, HEALTHY, HEALTHY, HEALTHY]);
        let handled = h.deliver(&tg_alarm("m1"), "sqs-1").await;
        assert_eq!(suppressed_by(&handled), Some(Guard::NotInGroup), "{method}");
        let r = &handled.reports[0];
        assert_eq!(r.excluded.len(), 1, "{r:?}");
        assert_eq!(r.excluded[0].instance_id, ids[0]);
        assert_eq!(r.excluded[0].guard, Guard::NotInGroup);
        assert!(changes(&h).is_empty(), "{method}: {:?}", changes(&h));
        assert_eq!(handled.disposition, Disposition::Ack);
        let published = h.aws.state().published.clone();
        assert_eq!(published.len(), 1, "{method}: the escalation");
        assert!(
            published[0].2.contains("not_in_group"),
            "{}",
            published[0].2
        );
    }
}

#[tokio::test]
async fn asg_methods_refuse_an_instance_that_is_not_in_service() {
    for lifecycle in ["Standby", "Pending", "Terminating:Wait"] {
        let h = harness(&tg_rule("method = \"asg_set_unhealthy\""));
        let ids = asg_pool(&h);
        h.aws.add_to_group("web-asg", &ids[0], lifecycle);
        let handled = h.deliver(&tg_alarm("m1"), "sqs-1").await;
        assert_eq!(
            suppressed_by(&handled),
            Some(Guard::NotInService),
            "{lifecycle}"
        );
        let r = &handled.reports[0];
        assert!(r.excluded[0].reason.contains(lifecycle), "{r:?}");
        assert!(changes(&h).is_empty());
    }
}

#[tokio::test]
async fn asg_methods_refuse_a_group_with_replacement_suspended() {
    for (method, process) in [
        ("asg_set_unhealthy", "ReplaceUnhealthy"),
        ("asg_set_unhealthy", "Terminate"),
        ("asg_terminate", "ReplaceUnhealthy"),
        ("asg_terminate", "Terminate"),
        // With Launch suspended the group would take the instance away
        // and launch nothing in its place.
        ("asg_set_unhealthy", "Launch"),
        ("asg_terminate", "Launch"),
    ] {
        let h = harness(&tg_rule(&format!("method = \"{method}\"")));
        asg_pool(&h);
        h.aws.suspend("web-asg", process);
        let handled = h.deliver(&tg_alarm("m1"), "sqs-1").await;
        assert_eq!(
            suppressed_by(&handled),
            Some(Guard::ProcessSuspended),
            "{method} with {process} suspended"
        );
        let r = &handled.reports[0];
        assert!(r.excluded[0].reason.contains(process), "{r:?}");
        assert!(changes(&h).is_empty(), "{method}/{process}");
    }
    // Another suspended process (AZRebalance) does not stop it.
    let h = harness(&tg_rule("method = \"asg_set_unhealthy\""));
    asg_pool(&h);
    h.aws.suspend("web-asg", "AZRebalance");
    let handled = h.deliver(&tg_alarm("m1"), "sqs-1").await;
    assert_eq!(handled.reports[0].outcome, Outcome::Done);
}

#[tokio::test]
async fn a_refused_instance_leaves_the_others_to_act_on() {
    let h = harness(&tg_rule("method = \"asg_terminate\"\nmax_unhealthy = 2"));
    let ids = targets(&h, &[UNHEALTHY, UNHEALTHY, HEALTHY, HEALTHY]);
    h.aws.add_to_group("web-asg", &ids[1], "InService");
    for id in &ids[2..] {
        h.aws.add_to_group("web-asg", id, "InService");
    }
    let handled = h.deliver(&tg_alarm("m1"), "sqs-1").await;
    let r = &handled.reports[0];
    assert_eq!(r.outcome, Outcome::Done, "{r:?}");
    assert_eq!(r.targets, vec![ids[1].clone()]);
    assert_eq!(r.excluded.len(), 1);
    assert_eq!(r.excluded[0].instance_id, ids[0]);
    assert_eq!(r.excluded[0].guard, Guard::NotInGroup);
}

#[tokio::test]
async fn pool_guards_stop_asg_methods_before_auto_scaling_is_asked() {
    let h = harness(&tg_rule(
        "method = \"asg_set_unhealthy\"\nmin_in_service = 0\nmax_unhealthy = \"100%\"",
    ));
    let ids = targets(&h, &[UNHEALTHY, UNHEALTHY]);
    for id in &ids {
        h.aws.add_to_group("web-asg", id, "InService");
    }
    let handled = h.deliver(&tg_alarm("m1"), "sqs-1").await;
    assert_eq!(suppressed_by(&handled), Some(Guard::FailOpen));
    assert!(changes(&h).is_empty());
    assert!(!called(&h, "autoscaling:DescribeAutoScalingInstances"));
}

#[tokio::test]
async fn require_tag_still_guards_asg_methods() {
    let h = harness(&tg_rule("method = \"asg_terminate\""));
    let ids = asg_pool(&h);
    h.aws
        .state()
        .instances
        .get_mut(&ids[0])
        .expect("instance")
        .tags
        .clear();
    let handled = h.deliver(&tg_alarm("m1"), "sqs-1").await;
    assert_eq!(suppressed_by(&handled), Some(Guard::RequireTag));
    assert!(changes(&h).is_empty());
}

#[tokio::test]
async fn dry_run_asg_methods_are_log_only() {
    for method in ["asg_set_unhealthy", "asg_terminate"] {
        let h = harness(&tg_rule(&format!("method = \"{method}\"")).replace(
            "name = \"tg-replace\"",
            "name = \"tg-replace\"\ndry_run = true",
        ));
        let ids = asg_pool(&h);
        let handled = h.deliver(&tg_alarm("m1"), "sqs-1").await;
        assert_eq!(handled.reports[0].outcome, Outcome::DryRun, "{method}");
        assert_eq!(handled.reports[0].targets, vec![ids[0].clone()]);
        assert!(changes(&h).is_empty(), "{method}: {:?}", changes(&h));
        assert!(!called(&h, "autoscaling:SetInstanceHealth"));
        assert!(!called(
            &h,
            "autoscaling:TerminateInstanceInAutoScalingGroup"
        ));
        assert!(
            called(&h, "autoscaling:DescribeAutoScalingInstances"),
            "reads still run in a dry run"
        );
    }
}

#[tokio::test]
async fn global_rate_stops_an_asg_method() {
    let h = TestWorker::builder(&tg_rule("method = \"asg_terminate\"\nmax_unhealthy = 2"))
        .settings(Settings {
            trust: TrustPolicy::topics(&[TOPIC]),
            instance_changes: reflex::rules::Rate::parse("1/hour").expect("rate"),
            ..Settings::default()
        })
        .build();
    let ids = targets(&h, &[UNHEALTHY, UNHEALTHY, HEALTHY, HEALTHY]);
    for id in &ids {
        h.aws.add_to_group("web-asg", id, "InService");
    }
    // Two instances (max_instances = 2) against a global limit of one.
    let handled = h.deliver(&tg_alarm("m1"), "sqs-1").await;
    assert_eq!(suppressed_by(&handled), Some(Guard::GlobalRate));
    assert!(changes(&h).is_empty(), "{:?}", changes(&h));
}

#[tokio::test]
async fn asg_methods_work_on_a_classic_elb_pool() {
    let rules = r#"
[[rule]]
name = "elb-asg"
[rule.match]
alarm_name = "web-unhealthy"
dimensions.LoadBalancerName = { exists = true }
[[rule.actions]]
type = "remediate_pool"
pool = "classic_elb"
method = "asg_terminate"
max_percent = 100
min_in_service = 0
"#;
    let h = harness(rules);
    let ids = h.fleet(4, 1);
    for id in &ids {
        h.aws.add_to_group("web-asg", id, "InService");
    }
    let handled = h.deliver(&elb_alarm("m1"), "sqs-1").await;
    assert_eq!(handled.reports[0].outcome, Outcome::Done);
    assert_eq!(
        changes(&h),
        vec![(
            "TerminateInstanceInAutoScalingGroup".to_string(),
            vec![ids[0].clone()]
        )]
    );
}

/// Issue 13: a write whose reply is lost is an unknown outcome. The group
/// already has the instance Unhealthy / Terminating, so re-reading shows
/// the change made: done, not repeated, and the lost reply on record.
#[tokio::test]
async fn asg_writes_whose_reply_is_lost_are_done_after_a_re_read() {
    for (method, op) in [
        ("asg_set_unhealthy", "autoscaling:SetInstanceHealth"),
        (
            "asg_terminate",
            "autoscaling:TerminateInstanceInAutoScalingGroup",
        ),
    ] {
        let h = harness(&tg_rule(&format!("method = \"{method}\"")));
        let ids = asg_pool(&h);
        h.aws.lose_reply_next(
            op,
            reflex::aws::AwsError::timeout(
                "autoscaling",
                "write",
                std::time::Duration::from_secs(5),
            ),
        );
        let handled = h.deliver(&tg_alarm("m1"), "sqs-1").await;
        let r = &handled.reports[0];
        assert_eq!(r.outcome, Outcome::Done, "{method}: {r:?}");
        assert!(
            r.unknown_outcome
                .as_deref()
                .is_some_and(|e| e.contains("no reply within")),
            "{method}: {r:?}"
        );
        assert_eq!(
            changes(&h).len(),
            1,
            "{method}: made once: {:?}",
            changes(&h)
        );
        assert_eq!(r.targets, vec![ids[0].clone()]);
        assert_eq!(handled.disposition, Disposition::Ack, "{method}");
    }
}
