//! `run_command` (SSM Run Command) with in-memory fakes behind the effect
//! traits: the happy path with its parameters, instances SSM does not
//! manage refused, a failed command, a command that never finishes, a
//! status read that fails and is asked again, the pool method, dry run,
//! the remediation budget, and the rule checks with their locations.
//! (moto answers `SendCommand` and `GetCommandInvocation`; those calls are
//! exercised over the wire in `e2e_pools.rs`.)

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use reflex::aws::{AwsError, InvocationStatus};
use reflex::dead_letter::DeadLetterCode;
use reflex::disposition::{Disposition, MessageOutcome};
use reflex::event::AlarmState;
use reflex::fleet::{InstanceInfo, TargetType};
use reflex::outcome::Outcome;
use reflex::rules::Rate;
use reflex::safety::Guard;
use reflex::testing::worker::{at, START};
use reflex::testing::{AlarmBody, TestWorker};
use reflex::trust::TrustPolicy;
use reflex::worker::Settings;

const TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:alarms";
const ALARM: &str = "app-health";
const ID: &str = "i-0aa";

fn now() -> DateTime<Utc> {
    at(START)
}

/// A rule restarting `app` on the alarm's instance; `extra` adds action
/// parameters.
fn rule(extra: &str) -> String {
    format!(
        r#"
[[rule]]
name = "restart-app"
[rule.match]
alarm_name = "{ALARM}"
dimensions.InstanceId = {{ exists = true }}
[[rule.actions]]
type = "run_command"
commands = ["systemctl restart app", "echo {{{{ alarm.name }}}} >> /var/log/reflex"]
require_tag = {{ key = "reflex:managed", value = "true" }}
{extra}
"#
    )
}

fn harness_with(rules: &str, settings: Settings) -> TestWorker {
    TestWorker::builder(rules)
        .settings(Settings {
            trust: TrustPolicy::topics(&[TOPIC]),
            ..settings
        })
        .build()
}

fn harness(rules: &str) -> TestWorker {
    harness_with(rules, Settings::default())
}

fn info(id: &str, state: &str) -> InstanceInfo {
    InstanceInfo {
        instance_id: id.to_string(),
        state: state.into(),
        launch_time: Some(now() - chrono::Duration::hours(2)),
        tags: BTreeMap::from([("reflex:managed".to_string(), "true".to_string())]),
    }
}

/// A running, tagged instance `ID` with an SSM agent of `ping`, and the
/// alarm in ALARM.
fn instance(h: &TestWorker, ping: Option<&str>) {
    h.aws
        .state()
        .instances
        .insert(ID.into(), info(ID, "running"));
    if let Some(ping) = ping {
        h.aws.add_ssm_agent(ID, ping);
    }
    h.aws.state().alarms.insert(ALARM.into(), AlarmState::Alarm);
}

fn alarm(message_id: &str) -> String {
    AlarmBody::new(ALARM)
        .metric("AWS/EC2", "StatusCheckFailed")
        .dimensions(&[("InstanceId", ID)])
        .sns(TOPIC, message_id)
}

fn suppressed_by(h: &MessageOutcome) -> Option<Guard> {
    h.reports.iter().find_map(|r| match &r.outcome {
        Outcome::Suppressed { guard, .. } => Some(*guard),
        _ => None,
    })
}

fn sent(h: &TestWorker) -> usize {
    h.aws.state().commands.len()
}

#[tokio::test(start_paused = true)]
async fn runs_the_commands_on_the_alarm_instance_and_waits_for_success() {
    let h = harness(&rule("max_errors = 1\ntimeout = \"2m\""));
    instance(&h, Some("Online"));
    h.aws.plan_invocations(
        ID,
        &[
            (InvocationStatus::Pending, -1),
            (InvocationStatus::InProgress, -1),
            (InvocationStatus::Success, 0),
        ],
    );
    let handled = h.deliver(&alarm("m1"), "sqs-1").await;
    let r = &handled.reports[0];
    assert_eq!(r.outcome, Outcome::Done, "{r:?}");
    assert_eq!(r.target, format!("instance:{ID}"));
    assert_eq!(r.targets, vec![ID.to_string()]);
    assert_eq!(
        r.command_status,
        BTreeMap::from([(ID.to_string(), "Success (exit 0)".to_string())])
    );
    assert_eq!(r.request_ids, vec!["cmd-1".to_string()], "the command id");
    assert_eq!(handled.disposition, Disposition::Ack);
    let s = h.aws.state();
    let (_, request) = &s.commands[0];
    assert_eq!(request.instance_ids, vec![ID.to_string()]);
    assert_eq!(
        request.commands,
        vec![
            "systemctl restart app".to_string(),
            format!("echo {ALARM} >> /var/log/reflex")
        ],
        "templates rendered"
    );
    assert_eq!(request.max_concurrency, "1", "the default");
    assert_eq!(request.max_errors, "1");
    assert_eq!(request.execution_timeout, Duration::from_secs(120));
    assert!(
        request.comment.contains("restart-app"),
        "{}",
        request.comment
    );
    let polls = s
        .calls
        .iter()
        .filter(|c| *c == "ssm:GetCommandInvocation")
        .count();
    assert_eq!(polls, 3, "polled until the status was terminal");
    assert!(
        s.calls.iter().any(|c| c == "cloudwatch:DescribeAlarms"),
        "the alarm is re-checked before acting: {:?}",
        s.calls
    );
}

#[tokio::test(start_paused = true)]
async fn refuses_instances_ssm_does_not_manage_or_cannot_reach() {
    for (ping, detail) in [
        (None, "does not manage"),
        (Some("ConnectionLost"), "ConnectionLost"),
    ] {
        let h = harness(&rule(""));
        instance(&h, ping);
        let handled = h.deliver(&alarm("m1"), "sqs-1").await;
        assert_eq!(suppressed_by(&handled), Some(Guard::NotManaged), "{ping:?}");
        let r = &handled.reports[0];
        assert!(
            r.excluded
                .iter()
                .any(|e| e.instance_id == ID && e.reason.contains(detail)),
            "{ping:?}: {:?}",
            r.excluded
        );
        assert_eq!(sent(&h), 0, "{ping:?}: nothing sent");
        assert_eq!(
            handled.disposition,
            Disposition::Ack,
            "a guard's decision is final"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_failed_command_fails_the_action_and_dead_letters_the_message() {
    let h = harness(&rule(""));
    instance(&h, Some("Online"));
    h.aws.plan_invocations(
        ID,
        &[
            (InvocationStatus::InProgress, -1),
            (InvocationStatus::Failed, 3),
        ],
    );
    let handled = h.deliver(&alarm("m1"), "sqs-1").await;
    let r = &handled.reports[0];
    match &r.outcome {
        Outcome::Failed { transient, error } => {
            assert!(!transient, "running it again would not help");
            assert!(error.contains("i-0aa Failed (exit 3)"), "{error}");
        }
        other => panic!("expected a failure, got {other:?}"),
    }
    assert_eq!(
        r.command_status,
        BTreeMap::from([(ID.to_string(), "Failed (exit 3)".to_string())])
    );
    assert!(
        matches!(
            &handled.disposition,
            Disposition::DeadLetter {
                code: DeadLetterCode::ActionFailed,
                ..
            }
        ),
        "{:?}",
        handled.disposition
    );
    assert_eq!(sent(&h), 1);
}

#[tokio::test(start_paused = true)]
async fn a_command_that_never_finishes_fails_after_its_timeout() {
    let h = harness(&rule("timeout = \"30s\""));
    instance(&h, Some("Online"));
    h.aws
        .plan_invocations(ID, &[(InvocationStatus::InProgress, -1)]);
    let started = tokio::time::Instant::now();
    let handled = h.deliver(&alarm("m1"), "sqs-1").await;
    let waited = started.elapsed();
    match &handled.reports[0].outcome {
        Outcome::Failed { transient, error } => {
            assert!(!transient);
            assert!(error.contains("did not finish within 30s"), "{error}");
            assert!(error.contains("i-0aa unfinished"), "{error}");
        }
        other => panic!("expected a timeout failure, got {other:?}"),
    }
    assert!(
        waited >= Duration::from_secs(60) && waited < Duration::from_secs(70),
        "the timeout plus 30 s for SSM to report, not forever: {waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_status_read_that_fails_is_asked_again() {
    let h = harness(&rule(""));
    instance(&h, Some("Online"));
    for _ in 0..2 {
        h.aws.fail_next(
            "ssm:GetCommandInvocation",
            AwsError::transient("ssm", "GetCommandInvocation", "throttled"),
        );
    }
    let handled = h.deliver(&alarm("m1"), "sqs-1").await;
    assert_eq!(handled.reports[0].outcome, Outcome::Done);
    assert_eq!(sent(&h), 1, "sent once, not again");
}

#[tokio::test(start_paused = true)]
async fn the_managed_check_failing_sends_nothing_and_retries_the_message() {
    let h = harness(&rule(""));
    instance(&h, Some("Online"));
    h.aws.fail_next(
        "ssm:DescribeInstanceInformation",
        AwsError::transient("ssm", "DescribeInstanceInformation", "500"),
    );
    let handled = h.deliver(&alarm("m1"), "sqs-1").await;
    assert!(
        matches!(
            handled.reports[0].outcome,
            Outcome::Failed {
                transient: true,
                ..
            }
        ),
        "{:?}",
        handled.reports[0].outcome
    );
    assert!(matches!(handled.disposition, Disposition::Retry { .. }));
    assert_eq!(sent(&h), 0);
}

#[tokio::test(start_paused = true)]
async fn dry_run_reads_but_sends_nothing() {
    let h = harness(&rule("").replace(
        "name = \"restart-app\"",
        "name = \"restart-app\"\ndry_run = true",
    ));
    instance(&h, Some("Online"));
    let handled = h.deliver(&alarm("m1"), "sqs-1").await;
    assert_eq!(handled.reports[0].outcome, Outcome::DryRun);
    assert_eq!(sent(&h), 0);
    assert!(h
        .aws
        .state()
        .calls
        .iter()
        .any(|c| c == "ssm:DescribeInstanceInformation"));
}

#[tokio::test(start_paused = true)]
async fn the_remediation_budget_stops_a_third_restart() {
    let settings = Settings {
        remediation_budget: Some(Rate::parse("2/24h").unwrap_or_else(|e| panic!("{e}"))),
        ..Settings::default()
    };
    let h = harness_with(&rule(""), settings);
    instance(&h, Some("Online"));
    let mut outcomes = Vec::new();
    for i in 0..3 {
        // Each delivery is a new transition of the alarm.
        let body = AlarmBody::new(ALARM)
            .metric("AWS/EC2", "StatusCheckFailed")
            .dimensions(&[("InstanceId", ID)])
            .changed_at(&format!("2026-01-12T16:2{i}:00.000+0000"))
            .sns(TOPIC, &format!("m{i}"));
        outcomes.push(h.deliver(&body, &format!("sqs-{i}")).await);
    }
    assert_eq!(outcomes[0].reports[0].outcome, Outcome::Done);
    assert_eq!(outcomes[1].reports[0].outcome, Outcome::Done);
    assert_eq!(suppressed_by(&outcomes[2]), Some(Guard::Budget));
    assert_eq!(sent(&h), 2, "the third restart was not sent");
}

const TG_DIM: &str = "targetgroup/web/0123abcd";
const TG: &str = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/0123abcd";

#[tokio::test(start_paused = true)]
async fn the_pool_method_runs_on_the_bad_managed_targets_only() {
    let rules = r#"
[[rule]]
name = "tg-restart"
[rule.match]
alarm_name = "web-unhealthy"
namespace = "AWS/ApplicationELB"
dimensions.TargetGroup = { exists = true }
[[rule.actions]]
type = "remediate_pool"
method = "run_command"
commands = ["systemctl restart app"]
max_concurrency = "50%"
max_instances = 3
max_unhealthy = "60%"
min_in_service = 1
"#;
    let h = harness(rules);
    h.aws.add_target_group(TG, TargetType::Instance);
    let mut ids = Vec::new();
    for (i, state) in ["unhealthy", "unhealthy", "healthy", "healthy"]
        .iter()
        .enumerate()
    {
        let id = format!("i-{i:02}");
        let reason = (*state == "unhealthy").then_some("Target.FailedHealthChecks");
        h.aws
            .add_target(TG, &id, *state, reason, Some(info(&id, "running")));
        ids.push(id);
    }
    // i-00 has an agent; i-01 is not managed by SSM.
    h.aws.add_ssm_agent(&ids[0], "Online");
    h.aws
        .state()
        .alarms
        .insert("web-unhealthy".into(), AlarmState::Alarm);
    let body = AlarmBody::new("web-unhealthy")
        .metric("AWS/ApplicationELB", "UnHealthyHostCount")
        .dimensions(&[
            ("TargetGroup", TG_DIM),
            ("LoadBalancer", "app/web/50dc6c495c0c9188"),
        ])
        .sns(TOPIC, "m1");
    let handled = h.deliver(&body, "sqs-1").await;
    let r = &handled.reports[0];
    assert_eq!(r.outcome, Outcome::Done, "{r:?}");
    assert_eq!(r.targets, vec![ids[0].clone()]);
    assert!(
        r.excluded
            .iter()
            .any(|e| e.instance_id == ids[1] && e.guard == Guard::NotManaged),
        "{:?}",
        r.excluded
    );
    let s = h.aws.state();
    assert_eq!(s.commands.len(), 1);
    assert_eq!(s.commands[0].1.instance_ids, vec![ids[0].clone()]);
    assert_eq!(s.commands[0].1.max_concurrency, "50%");
}

/// Loads one rule file and returns its errors as text (empty when valid).
fn load_errors(text: &str) -> String {
    match reflex::rules::load_sources(vec![(PathBuf::from("r.toml"), text.to_string())]) {
        Ok(_) => String::new(),
        Err(errors) => errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n"),
    }
}

#[test]
fn rule_checks_name_the_line_and_column() {
    let base = rule("");
    assert_eq!(load_errors(&base), "", "the example rule is valid");
    let cases = [
        (
            base.replace(
                "commands = [\"systemctl restart app\", \"echo {{ alarm.name }} >> /var/log/reflex\"]\n",
                "",
            ),
            "needs `commands`",
        ),
        (rule("max_concurrency = 0"), "`max_concurrency` must be a count from 1"),
        (rule("max_errors = \"150%\""), "`max_errors` must be a count from 0"),
        (rule("timeout = \"10s\""), "`timeout` must be between 30s and 48h"),
        (rule("confirm_after = \"1m\""), "`confirm_after` is not a parameter of `run_command`"),
    ];
    for (text, want) in cases {
        let errors = load_errors(&text);
        assert!(errors.contains(want), "want {want:?} in:\n{errors}");
        assert!(errors.contains("r.toml:"), "located: {errors}");
    }
    let pool = r#"
[[rule]]
name = "p"
[rule.match]
alarm_name = "a"
dimensions.TargetGroup = { exists = true }
[[rule.actions]]
type = "remediate_pool"
method = "terminate"
commands = ["x"]
"#;
    let errors = load_errors(pool);
    assert!(
        errors.contains("`commands` applies only to method = \"run_command\""),
        "{errors}"
    );
    let errors = load_errors(&pool.replace(
        "method = \"terminate\"\ncommands = [\"x\"]\n",
        "method = \"run_command\"\n",
    ));
    assert!(errors.contains("needs `commands`"), "{errors}");
}
