//! Pool actions end to end: the real `reflex run` against a real moto
//! server. moto's `DescribeTargetHealth` never reports `unhealthy`; a
//! stopped instance is `unused` with `Target.InvalidState`, which a rule
//! counts as bad with `include_stopped = true`. That is the path tested
//! here; reason codes, the fail-open guard and `max_unhealthy` are shown
//! with fakes in `tests/pools.rs`.
//!
//! The Auto Scaling methods run on an Auto Scaling group attached to the
//! target group: `asg_set_unhealthy` (moto only flips `HealthStatus`; it
//! does not replace the instance) and `asg_terminate` (moto terminates the
//! instance and launches the replacement at once). Refusals (no group, not
//! InService, suspended processes) are shown with fakes.

mod support;

use support::{action_events, AlarmDef, World, WAIT};

/// A target group's UnHealthyHostCount alarm, in ALARM on moto, notifying
/// the world's topic.
async fn tg_alarm(world: &World, name: &str, tg_arn: &str) -> AlarmDef {
    let dimension = tg_arn
        .split_once(":targetgroup/")
        .map(|(_, rest)| format!("targetgroup/{rest}"))
        .expect("a target group ARN");
    let alarm = AlarmDef::new(
        name,
        "AWS/ApplicationELB",
        "UnHealthyHostCount",
        &[
            ("TargetGroup", dimension.as_str()),
            ("LoadBalancer", "app/web/50dc6c495c0c9188"),
        ],
    )
    .notifying(&world.pipeline.topic_arn);
    world.aws.put_metric_alarm(&alarm, "ALARM").await;
    alarm
}

/// A rule replacing a target group's stopped instances by `method`.
fn asg_rule(method: &str) -> String {
    format!(
        r#"
[[rule]]
name = "tg-asg"
[rule.match]
alarm_name = {{ suffix = "-unhealthy-hosts" }}
namespace = "AWS/ApplicationELB"
new_state = "ALARM"
dimensions.TargetGroup = {{ exists = true }}

[[rule.actions]]
type = "remediate_pool"
method = "{method}"
include_stopped = true
max_instances = 1
max_percent = 25
min_in_service = 2
require_tag = {{ key = "reflex:managed", value = "true" }}
min_instance_age = "0s"
"#
    )
}

#[tokio::test]
async fn asg_set_unhealthy_marks_the_stopped_instance_unhealthy_in_its_group() {
    let world = World::new("asgunhealthy").await;
    let (tg_arn, ids) = world.aws.create_auto_scaling_fleet("web-asg", 4).await;
    assert_eq!(ids.len(), 4, "set-up: the group launched its instances");
    let victim = ids[1].clone();
    world
        .aws
        .stop_instances(std::slice::from_ref(&victim))
        .await;
    let health = world.aws.target_health(&tg_arn).await;
    assert_eq!(
        health.get(&victim).map(|h| h.0.as_str()),
        Some("unused"),
        "set-up: {health:?}"
    );
    let alarm = tg_alarm(&world, "web-asg-unhealthy-hosts", &tg_arn).await;
    let reflex = world
        .reflex()
        .rule("asg.toml", &asg_rule("asg_set_unhealthy"))
        .spawn();
    world.publish(&alarm.notification("ALARM", "OK")).await;

    let (aws, id) = (&world.aws, &victim);
    reflex
        .wait_until(
            WAIT,
            "the stopped instance is Unhealthy in its group",
            || async move {
                aws.group_instances("web-asg")
                    .await
                    .get(id)
                    .is_some_and(|(_, health)| health == "Unhealthy")
            },
        )
        .await;
    world.drained(&reflex).await;
    let members = world.aws.group_instances("web-asg").await;
    for id in &ids {
        let expected = if *id == victim {
            "Unhealthy"
        } else {
            "Healthy"
        };
        assert_eq!(members[id].1, expected, "{id}: {members:?}");
    }
    // SetInstanceHealth changes no EC2 state: nothing was terminated.
    let states = world.aws.instance_states(&ids).await;
    assert!(states.values().all(|s| s != "terminated"), "{states:?}");
    world.assert_dlq_empty().await;
    let done = action_events(&reflex, "remediate_pool");
    assert_eq!(done.len(), 1, "{done:#?}");
    assert_eq!(done[0]["outcome"], "done");
    assert!(
        done[0]["targets"]
            .as_str()
            .is_some_and(|t| t.contains(&victim)),
        "{done:#?}"
    );
    reflex.shutdown_cleanly().await;
}

#[tokio::test]
async fn asg_terminate_replaces_the_stopped_instance_keeping_capacity() {
    let world = World::new("asgterminate").await;
    let (tg_arn, ids) = world.aws.create_auto_scaling_fleet("api-asg", 4).await;
    assert_eq!(ids.len(), 4, "set-up: the group launched its instances");
    let victim = ids[0].clone();
    world
        .aws
        .stop_instances(std::slice::from_ref(&victim))
        .await;
    let alarm = tg_alarm(&world, "api-asg-unhealthy-hosts", &tg_arn).await;
    let reflex = world
        .reflex()
        .rule("asg.toml", &asg_rule("asg_terminate"))
        .spawn();
    world.publish(&alarm.notification("ALARM", "OK")).await;

    let (aws, id) = (&world.aws, &victim);
    reflex
        .wait_until(
            WAIT,
            "the stopped instance leaves its group",
            || async move { !aws.group_instances("api-asg").await.contains_key(id) },
        )
        .await;
    world.drained(&reflex).await;
    let members = world.aws.group_instances("api-asg").await;
    assert_eq!(members.len(), 4, "desired capacity kept: {members:?}");
    let survivors: Vec<&String> = ids.iter().filter(|i| **i != victim).collect();
    for id in &survivors {
        assert!(members.contains_key(*id), "{id} stays: {members:?}");
    }
    let states = world
        .aws
        .instance_states(std::slice::from_ref(&victim))
        .await;
    assert_eq!(states[&victim], "terminated", "{states:?}");
    // The replacement is registered with the target group.
    let health = world.aws.target_health(&tg_arn).await;
    let replacement: Vec<&String> = members.keys().filter(|i| !ids.contains(i)).collect();
    assert_eq!(replacement.len(), 1, "{members:?}");
    assert!(health.contains_key(replacement[0]), "{health:?}");
    world.assert_dlq_empty().await;
    let done = action_events(&reflex, "remediate_pool");
    assert_eq!(done.len(), 1, "{done:#?}");
    assert_eq!(done[0]["outcome"], "done");
    reflex.shutdown_cleanly().await;
}

#[tokio::test]
async fn terminates_the_stopped_instance_of_a_target_group_and_only_it() {
    let world = World::new("tg").await;
    let (tg_arn, ids) = world.aws.create_target_group_fleet("web", 4).await;
    let victim = ids[2].clone();
    world
        .aws
        .stop_instances(std::slice::from_ref(&victim))
        .await;
    let health = world.aws.target_health(&tg_arn).await;
    assert_eq!(
        health[&victim],
        ("unused".to_string(), "Target.InvalidState".to_string()),
        "set-up: {health:?}"
    );
    // The alarm's TargetGroup dimension is the ARN's last part; reflex
    // derives the ARN from it and the alarm's ARN.
    let dimension = tg_arn
        .split_once(":targetgroup/")
        .map(|(_, rest)| format!("targetgroup/{rest}"))
        .expect("a target group ARN");
    let alarm = AlarmDef::new(
        "web-tg-unhealthy-hosts",
        "AWS/ApplicationELB",
        "UnHealthyHostCount",
        &[
            ("TargetGroup", dimension.as_str()),
            ("LoadBalancer", "app/web/50dc6c495c0c9188"),
        ],
    )
    .notifying(&world.pipeline.topic_arn);
    world.aws.put_metric_alarm(&alarm, "ALARM").await;
    let rule = r#"
[[rule]]
name = "tg-replace-stopped"
[rule.match]
alarm_name = { suffix = "-unhealthy-hosts" }
namespace = "AWS/ApplicationELB"
new_state = "ALARM"
dimensions.TargetGroup = { exists = true }

[[rule.actions]]
type = "remediate_pool"
pool = "target_group"
method = "terminate"
include_stopped = true
max_instances = 1
max_percent = 25
min_in_service = 2
require_tag = { key = "reflex:managed", value = "true" }
# moto's instances are seconds old; the default would protect them all.
min_instance_age = "0s"

[rule.limits]
cooldown = "10m"
rate = "5/hour"
max_event_age = "15m"
"#;
    let reflex = world.reflex().rule("tg.toml", rule).spawn();
    world.publish(&alarm.notification("ALARM", "OK")).await;

    let (aws, id) = (&world.aws, &victim);
    reflex
        .wait_until(WAIT, "the stopped target is terminated", || async move {
            aws.instance_states(std::slice::from_ref(id)).await[id] == "terminated"
        })
        .await;
    world.drained(&reflex).await;
    let states = world.aws.instance_states(&ids).await;
    for id in &ids {
        let expected = if *id == victim {
            "terminated"
        } else {
            "running"
        };
        assert_eq!(states[id], expected, "{id}: {states:?}");
    }
    world.assert_dlq_empty().await;
    let done = action_events(&reflex, "remediate_pool");
    assert_eq!(done.len(), 1, "{done:#?}");
    assert_eq!(done[0]["outcome"], "done");
    assert!(
        done[0]["targets"]
            .as_str()
            .is_some_and(|t| t.contains(&victim)),
        "{done:#?}"
    );
    reflex.shutdown_cleanly().await;
}

/// `run_command`'s calls over the wire to moto: `SendCommand` with
/// `AWS-RunShellScript`, the rule's parameters and the script timeout, and
/// `GetCommandInvocation` reading the invocation's status (moto reports
/// every invocation `Success` at once).
#[tokio::test]
async fn ssm_send_command_and_get_command_invocation_over_the_wire() {
    use ::reflex::aws::sdk::Ssm;
    use ::reflex::aws::timeouts::AwsTimeouts;
    use ::reflex::aws::{CommandRequest, Commands, InvocationStatus};

    let world = World::new("ssmwire").await;
    let fleet = world.fleet("ssmwire", 2, &[]).await;
    let id = fleet.instance_ids[0].clone();
    let ssm = Ssm::new(world.aws.ssm.clone(), AwsTimeouts::default());
    let request = CommandRequest {
        instance_ids: vec![id.clone()],
        commands: vec!["systemctl restart app".to_string()],
        max_concurrency: "1".to_string(),
        max_errors: "0".to_string(),
        execution_timeout: std::time::Duration::from_secs(120),
        comment: "reflex rule restart-app on alarm app-health".to_string(),
    };
    let command_id = ssm
        .send_command(&request)
        .await
        .unwrap_or_else(|e| panic!("SendCommand: {e}"));
    assert!(!command_id.is_empty());
    // moto echoes every instance of the region in the command's
    // InstanceIds; the parameters and the document are what reflex sent.
    let sent = world.aws.ssm_commands().await;
    assert_eq!(sent.len(), 1, "one command: {sent:?}");
    let (instances, commands, document) = &sent[0];
    assert!(instances.contains(&id), "{sent:?}");
    assert_eq!(commands, &vec!["systemctl restart app".to_string()]);
    assert_eq!(document, "AWS-RunShellScript");
    let invocation = ssm
        .invocation(&command_id, &id)
        .await
        .unwrap_or_else(|e| panic!("GetCommandInvocation: {e}"))
        .unwrap_or_else(|| panic!("moto knows the invocation"));
    assert_eq!(invocation.status, InvocationStatus::Success);
    assert_eq!(invocation.response_code, Some(0));
}

/// The real binary with a `run_command` rule on moto. moto 5.2.5 does not
/// implement `DescribeInstanceInformation` (it answers 500), so reflex
/// cannot confirm SSM manages the instance: it fails closed — no command
/// is sent, and the message is retried rather than deleted.
#[tokio::test]
async fn run_command_sends_nothing_when_ssm_management_cannot_be_confirmed() {
    let world = World::new("ssmclosed").await;
    let fleet = world.fleet("ssmclosed", 2, &[]).await;
    let id = fleet.instance_ids[0].clone();
    let alarm = world.system_check_alarm(&id, "ALARM").await;
    let rule = r#"
[[rule]]
name = "restart-app"
[rule.match]
metric_name = "StatusCheckFailed_System"
dimensions.InstanceId = { exists = true }
[[rule.actions]]
type = "run_command"
commands = ["systemctl restart app"]
require_tag = { key = "reflex:managed", value = "true" }
"#;
    let reflex = world.reflex().rule("ssm.toml", rule).spawn();
    world.publish(&alarm.notification("ALARM", "OK")).await;
    let failed = reflex
        .wait_for_event(WAIT, "the run_command action failed (transient)", |e| {
            e["kind"] == "run_command" && e["outcome"] == "failed"
        })
        .await;
    assert!(
        failed.to_string().contains("DescribeInstanceInformation"),
        "{failed}"
    );
    assert!(world.aws.ssm_commands().await.is_empty(), "nothing sent");
    // Not deleted: the message waits for its retry on the queue.
    reflex
        .wait_for_event(WAIT, "the message is retried", |e| {
            e["message"] == "Message handled." && e["disposition"] == "retry"
        })
        .await;
    reflex.shutdown_cleanly().await;
}
