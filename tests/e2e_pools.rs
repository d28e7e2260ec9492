//! Pool actions end to end: the real `reflex run` against a real moto
//! server. moto's `DescribeTargetHealth` never reports `unhealthy`; a
//! stopped instance is `unused` with `Target.InvalidState`, which a rule
//! counts as bad with `include_stopped = true`. That is the path tested
//! here; reason codes, the fail-open guard and `max_unhealthy` are shown
//! with fakes in `tests/pools.rs`.

mod support;

use support::{action_events, AlarmDef, World, WAIT};

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
