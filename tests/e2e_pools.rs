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
