//! `reflex run` end to end: the real binary against a real moto server, one
//! server per test. Every test builds the AWS side (queues, topic, fleet
//! behind a classic ELB, the alarm in ALARM), publishes what CloudWatch would
//! publish, and judges the daemon by the AWS state it leaves behind, read
//! back through the API. Logs are checked only where the decision itself is
//! the thing to see (a dry run), or to show *why* the state is what it is.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use chrono::Utc;
use serde_json::{json, Value};

use support::{
    action_events, attribute, count_state, envelope, terminate_rule, AlarmDef, FaultProxy, Reflex,
    World, ACCOUNT_ID, REGION, WAIT,
};

// 1. The happy path, with flags only (no reflex.toml): the one stopped
//    instance of four is terminated, the rest keep running.
#[tokio::test]
async fn terminates_the_out_of_service_instance_and_only_it() {
    let world = World::new("happy").await;
    let fleet = world.fleet("web", 4, &[1]).await;
    let victim = fleet.instance_ids[1].clone();
    let alarm = world.elb_alarm("web").await;
    let rule = terminate_rule(
        "",
        r#"max_instances = 1
max_percent = 25
min_in_service = 2
require_tag = { key = "reflex:managed", value = "true" }
confirm_after = "1s""#,
        "[rule.limits]\ncooldown = \"10m\"\nrate = \"5/hour\"\nmax_event_age = \"15m\"",
    );
    let reflex = world
        .reflex()
        .without_config_file()
        .rule("elb.toml", &rule)
        .spawn();

    world.publish(&alarm.notification("ALARM", "OK")).await;

    let (aws, id) = (&world.aws, &victim);
    reflex
        .wait_until(WAIT, "the OutOfService instance is terminated", || async move {
            aws.instance_states(std::slice::from_ref(id)).await[id] == "terminated"
        })
        .await;
    world.drained(&reflex).await;
    let states = world.states(&fleet).await;
    for id in &fleet.instance_ids {
        let expected = if *id == victim {
            "terminated"
        } else {
            "running"
        };
        assert_eq!(states[id], expected, "{id}: {states:?}");
    }
    world.assert_dlq_empty().await;
    // What the state already shows, as the daemon reported it.
    let done = action_events(&reflex, "terminate_out_of_service");
    assert_eq!(done.len(), 1, "{done:#?}");
    assert_eq!(done[0]["outcome"], "done");
    assert!(done[0]["targets"].as_str().unwrap().contains(&victim));
    reflex.shutdown_cleanly().await;
}

// 2. A dry-run rule reads everything, sends TerminateInstances only with
//    DryRun=true, changes nothing, and says what it would have done.
#[tokio::test]
async fn dry_run_rule_changes_nothing_and_logs_the_decision() {
    let world = World::new("dry").await;
    let fleet = world.fleet("web", 4, &[2]).await;
    let victim = fleet.instance_ids[2].clone();
    let alarm = world.elb_alarm("web").await;
    world.moto.start_recording();
    let reflex = world
        .reflex()
        .rule(
            "elb.toml",
            &terminate_rule("dry_run = true", "max_instances = 1", ""),
        )
        .spawn();

    world.publish(&alarm.notification("ALARM", "OK")).await;
    world.drained(&reflex).await;

    let states = world.states(&fleet).await;
    assert_eq!(states[&victim], "stopped", "{states:?}");
    assert_eq!(
        count_state(&states, &fleet.instance_ids, "running"),
        3,
        "{states:?}"
    );
    world.assert_dlq_empty().await;
    // The permission check went out, marked as a dry run, naming the victim.
    let terminates = world.moto.recorded_actions("TerminateInstances");
    assert_eq!(terminates.len(), 1, "{terminates:#?}");
    assert_eq!(terminates[0].param("DryRun").as_deref(), Some("true"));
    assert_eq!(
        terminates[0].list_param("InstanceId"),
        std::slice::from_ref(&victim)
    );
    // The decision is logged: outcome dry_run, with the instance it chose.
    let decided = action_events(&reflex, "terminate_out_of_service");
    assert_eq!(decided.len(), 1, "{decided:#?}");
    assert_eq!(decided[0]["outcome"], "dry_run", "{decided:#?}");
    assert_eq!(decided[0]["dry_run"], true, "{decided:#?}");
    assert!(
        decided[0]["targets"].as_str().unwrap().contains(&victim),
        "{decided:#?}"
    );
    reflex.shutdown_cleanly().await;
}

// 3. Three of four OutOfService with min_in_service = 2: the guard holds,
//    and a guard is an outcome, not an error: the message is deleted.
#[tokio::test]
async fn min_in_service_guard_terminates_nothing_and_acks() {
    let world = World::new("minsvc").await;
    let fleet = world.fleet("web", 4, &[0, 1, 2]).await;
    let alarm = world.elb_alarm("web").await;
    let reflex = world
        .reflex()
        .rule(
            "elb.toml",
            &terminate_rule(
                "",
                "max_instances = 3\nmax_percent = 100\nmin_in_service = 2",
                "",
            ),
        )
        .spawn();

    world.publish(&alarm.notification("ALARM", "OK")).await;
    world.drained(&reflex).await;

    let states = world.states(&fleet).await;
    assert_eq!(
        count_state(&states, &fleet.instance_ids, "stopped"),
        3,
        "{states:?}"
    );
    assert_eq!(states[&fleet.instance_ids[3]], "running", "{states:?}");
    world.assert_dlq_empty().await;
    let held = action_events(&reflex, "terminate_out_of_service");
    assert_eq!(held.len(), 1, "{held:#?}");
    assert_eq!(held[0]["guard"], "min_in_service", "{held:#?}");
    reflex.shutdown_cleanly().await;
}

// 4. max_instances = 1 with two OutOfService instances: exactly one goes.
#[tokio::test]
async fn max_instances_caps_the_terminations() {
    let world = World::new("maxinst").await;
    let fleet = world.fleet("web", 4, &[0, 3]).await;
    let stopped = vec![fleet.instance_ids[0].clone(), fleet.instance_ids[3].clone()];
    let alarm = world.elb_alarm("web").await;
    let reflex = world
        .reflex()
        .rule(
            "elb.toml",
            &terminate_rule("", "max_instances = 1\nmax_percent = 50", ""),
        )
        .spawn();

    world.publish(&alarm.notification("ALARM", "OK")).await;
    world.drained(&reflex).await;

    let states = world.states(&fleet).await;
    assert_eq!(
        count_state(&states, &stopped, "terminated"),
        1,
        "{states:?}"
    );
    assert_eq!(count_state(&states, &stopped, "stopped"), 1, "{states:?}");
    assert_eq!(
        count_state(&states, &fleet.instance_ids, "running"),
        2,
        "{states:?}"
    );
    world.assert_dlq_empty().await;
    let done = action_events(&reflex, "terminate_out_of_service");
    assert_eq!(done.len(), 1, "{done:#?}");
    assert!(
        done[0]["capped"]
            .as_str()
            .unwrap()
            .contains("max_instances"),
        "{done:#?}"
    );
    reflex.shutdown_cleanly().await;
}

// 5. Poison goes to the DLQ, with the reason attributes, and off the queue.
#[tokio::test]
async fn poison_messages_are_dead_lettered_with_their_reason() {
    let world = World::new("poison").await;
    let alarm = AlarmDef::elb_unhealthy_hosts("web-unhealthy-hosts", "web");
    let untrusted_topic = format!("arn:aws:sns:{REGION}:{ACCOUNT_ID}:someone-elses-topic");
    let forged = json!({
        "Type": "Notification",
        "MessageId": "3f1ee3d0-5f7a-4c6b-9d51-0c6cd0f0a2b1",
        "TopicArn": untrusted_topic,
        "Subject": "ALARM: \"web-unhealthy-hosts\" in US East (N. Virginia)",
        "Message": alarm.notification("ALARM", "OK").to_string(),
        "Timestamp": Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        "SignatureVersion": "1",
        "Signature": "AAAA",
        "SigningCertURL": "https://sns.us-east-1.amazonaws.com/cert.pem",
        "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe",
    })
    .to_string();
    let bodies = [
        ("not_json", "this is {not JSON".to_owned()),
        ("unrecognised_shape", r#"{"hello":"world"}"#.to_owned()),
        ("untrusted_topic", forged),
    ];
    // message id → (expected code, body)
    let mut sent: HashMap<String, (&str, String)> = HashMap::new();
    for (code, body) in &bodies {
        let out = world
            .aws
            .sqs
            .send_message()
            .queue_url(&world.pipeline.queue_url)
            .message_body(body)
            .send()
            .await
            .expect("SendMessage");
        sent.insert(out.message_id().unwrap().to_owned(), (*code, body.clone()));
    }
    let reflex = world
        .reflex()
        .rule("elb.toml", &terminate_rule("", "", ""))
        .spawn();

    world.drained(&reflex).await;
    let (aws, dlq) = (&world.aws, &world.pipeline.dlq_url);
    reflex
        .wait_until(WAIT, "three messages are in the DLQ", || async move {
            aws.queue_depth(dlq).await == 3
        })
        .await;

    let dead = world.aws.receive_all(&world.pipeline.dlq_url).await;
    assert_eq!(dead.len(), 3, "{dead:#?}");
    let mut seen = Vec::new();
    for message in &dead {
        let original = attribute(message, "OriginalMessageId").expect("OriginalMessageId");
        let (code, body) = sent
            .get(&original)
            .unwrap_or_else(|| panic!("DLQ message for unknown {original}: {message:#?}"));
        assert_eq!(
            message.body(),
            Some(body.as_str()),
            "body kept byte for byte"
        );
        assert_eq!(attribute(message, "ReasonCode").as_deref(), Some(*code));
        let reason = attribute(message, "ReasonText").expect("ReasonText");
        assert!(!reason.trim().is_empty(), "{code}: empty ReasonText");
        assert_eq!(attribute(message, "ReceiveCount").as_deref(), Some("1"));
        assert_eq!(
            attribute(message, "SourceQueueUrl").as_deref(),
            Some(world.pipeline.queue_url.as_str())
        );
        if let Some(first) = attribute(message, "FirstReceivedAt") {
            assert!(
                chrono::DateTime::parse_from_rfc3339(&first).is_ok(),
                "FirstReceivedAt {first:?} is not a timestamp"
            );
        }
        if *code == "untrusted_topic" {
            assert!(reason.contains(&untrusted_topic), "{reason}");
        }
        seen.push(*code);
    }
    seen.sort_unstable();
    assert_eq!(seen, ["not_json", "unrecognised_shape", "untrusted_topic"]);
    assert_eq!(world.aws.queue_depth(&world.pipeline.queue_url).await, 0);
    reflex.shutdown_cleanly().await;
}

// 6. The same transition delivered twice acts once (no cooldown to hide
//    behind); a distinct transition acts again.
#[tokio::test]
async fn a_redelivered_transition_acts_once() {
    let world = World::new("dedup").await;
    let fleet = world.fleet("web", 4, &[1, 2]).await;
    let stopped = vec![fleet.instance_ids[1].clone(), fleet.instance_ids[2].clone()];
    let alarm = world.elb_alarm("web").await;
    let notify = format!(
        r#"[[rule.actions]]
type = "notify"
topic_arn = "{}"
subject = "reflex acted on {{{{ dimension.LoadBalancerName }}}}"
message = "{{{{ alarm.name }}}} is {{{{ alarm.new_state }}}}"
"#,
        world.pipeline.notify_topic_arn
    );
    let reflex = world
        .reflex()
        .rule(
            "elb.toml",
            &terminate_rule("", "max_instances = 1\nmax_percent = 50", &notify),
        )
        .spawn();

    let first = alarm.notification_at("ALARM", "OK", Utc::now() - chrono::Duration::seconds(5));
    world.publish(&first).await;
    world.publish(&first).await;
    world.drained(&reflex).await;

    let states = world.states(&fleet).await;
    assert_eq!(
        count_state(&states, &stopped, "terminated"),
        1,
        "{states:?}"
    );
    assert_eq!(count_state(&states, &stopped, "stopped"), 1, "{states:?}");
    // SNS delivers to SQS inside Publish, so the notification, published
    // before the message was deleted, is there by now.
    assert_eq!(
        world
            .aws
            .queue_depth(&world.pipeline.notify_queue_url)
            .await,
        1,
        "one notification for one transition"
    );
    let handled = reflex.events_with_message("Message handled.");
    assert_eq!(
        handled.iter().filter(|e| e["disposition"] == "ack").count(),
        2,
        "{handled:#?}"
    );
    // Why: one delivery did each action, the other found it done
    // (`duplicate`), possibly after waiting for it (`busy`, then a retry).
    for kind in ["terminate_out_of_service", "notify"] {
        let outcomes: Vec<String> = action_events(&reflex, kind)
            .iter()
            .map(|e| e["outcome"].as_str().unwrap_or_default().to_owned())
            .collect();
        let count = |o: &str| outcomes.iter().filter(|x| *x == o).count();
        assert_eq!(count("done"), 1, "{kind}: {outcomes:?}");
        assert!(count("duplicate") >= 1, "{kind}: {outcomes:?}");
        assert_eq!(
            count("done") + count("duplicate") + count("busy"),
            outcomes.len(),
            "{kind}: {outcomes:?}"
        );
    }

    // A new transition (a later StateChangeTime) is a new failure.
    world.publish(&alarm.notification("ALARM", "OK")).await;
    world.drained(&reflex).await;
    let states = world.states(&fleet).await;
    assert_eq!(
        count_state(&states, &stopped, "terminated"),
        2,
        "{states:?}"
    );
    assert_eq!(
        count_state(&states, &fleet.instance_ids, "running"),
        2,
        "{states:?}"
    );
    let notes = world
        .aws
        .receive_all(&world.pipeline.notify_queue_url)
        .await;
    assert_eq!(notes.len(), 2, "{notes:#?}");
    for note in &notes {
        let body = envelope(note);
        assert_eq!(body["Subject"], "reflex acted on web");
        assert!(
            body["Message"]
                .as_str()
                .unwrap()
                .starts_with("web-unhealthy-hosts is ALARM"),
            "{body:#}"
        );
    }
    world.assert_dlq_empty().await;
    reflex.shutdown_cleanly().await;
}

// 7a. The emulator becomes unreachable while a message is in flight (its
//     connections reset, then refused) and comes back: the action fails
//     transiently, the message is retried, and the instance is terminated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_emulator_mid_message_is_retried_not_lost() {
    let world = World::new("outage").await;
    let fleet = world.fleet("web", 4, &[0]).await;
    let victim = fleet.instance_ids[0].clone();
    let alarm = world.elb_alarm("web").await;
    let proxy = FaultProxy::start(world.moto.port()).await;
    let reflex = Reflex::builder(&proxy.endpoint(), &world.pipeline)
        .set("receive.visibility_timeout", "6s")
        .set("receive.heartbeat", "2s")
        // A heartbeat must get through within the 4 s left of the last
        // extension, retries included.
        .set("aws.queue_attempt_timeout", "1s")
        .set("aws.queue_timeout", "3s")
        .rule(
            "elb.toml",
            &terminate_rule("", "max_instances = 1\nconfirm_after = \"3s\"", ""),
        )
        .spawn();

    world.publish(&alarm.notification("ALARM", "OK")).await;
    // Cut while the daemon holds the message and waits to confirm: its next
    // DescribeInstanceHealth is the call that fails.
    reflex
        .wait_for_event(WAIT, "waiting to confirm", |e| {
            e["message"] == "Waiting to confirm instances are still OutOfService."
        })
        .await;
    proxy.cut().await;
    reflex
        .wait_for_event(WAIT, "the action failed transiently", |e| {
            e["message"] == "Action failed." && e["transient"] == true
        })
        .await;
    assert_eq!(
        world.states(&fleet).await[&victim],
        "stopped",
        "nothing may change while the action fails"
    );
    proxy.restore().await;

    let (aws, id) = (&world.aws, &victim);
    reflex
        .wait_until(WAIT, "the instance is terminated after the outage", || async move {
            aws.instance_states(std::slice::from_ref(id)).await[id] == "terminated"
        })
        .await;
    world.drained(&reflex).await;
    world.assert_dlq_empty().await;
    let states = world.states(&fleet).await;
    assert_eq!(
        count_state(&states, &fleet.instance_ids, "running"),
        3,
        "{states:?}"
    );
    // The same SQS message, handled twice: failed, then done.
    let handled = reflex.events_with_message("Message handled.");
    let ids: Vec<&Value> = handled
        .iter()
        .map(|e| &e["span"]["sqs_message_id"])
        .collect();
    assert!(
        ids.len() >= 2 && ids.iter().all(|i| *i == ids[0]),
        "{handled:#?}"
    );
    assert_eq!(
        handled.last().unwrap()["disposition"],
        "ack",
        "{handled:#?}"
    );
    // Failures during the outage are warnings (retried), not errors.
    let warned = reflex
        .events()
        .iter()
        .filter(|e| e["level"] == "WARN")
        .count();
    assert!(warned > 0, "the outage went unnoticed");
    reflex.shutdown_cleanly().await;
}

// 7b. The emulator freezes (SIGSTOP: connections accepted, never answered)
//     while a message is in flight, then thaws: the calls that waited are
//     answered, and the message is finished, not lost.
#[tokio::test]
async fn frozen_emulator_mid_message_is_waited_out() {
    let mut world = World::new("frozen").await;
    let fleet = world.fleet("web", 4, &[3]).await;
    let victim = fleet.instance_ids[3].clone();
    let alarm = world.elb_alarm("web").await;
    let reflex = world
        .reflex()
        .rule(
            "elb.toml",
            &terminate_rule("", "max_instances = 1\nconfirm_after = \"2s\"", ""),
        )
        .spawn();

    world.publish(&alarm.notification("ALARM", "OK")).await;
    reflex
        .wait_for_event(WAIT, "waiting to confirm", |e| {
            e["message"] == "Waiting to confirm instances are still OutOfService."
        })
        .await;
    world.moto.pause();
    // The outage itself: long enough that the confirm re-check, a heartbeat
    // and a poll all hit the frozen server, shorter than reflex's 30 s
    // attempt timeout.
    tokio::time::sleep(Duration::from_secs(5)).await;
    reflex.assert_running();
    world.moto.resume();

    let (aws, id) = (&world.aws, &victim);
    reflex
        .wait_until(WAIT, "the instance is terminated after the thaw", || async move {
            aws.instance_states(std::slice::from_ref(id)).await[id] == "terminated"
        })
        .await;
    world.drained(&reflex).await;
    world.assert_dlq_empty().await;
    let states = world.states(&fleet).await;
    assert_eq!(
        count_state(&states, &fleet.instance_ids, "running"),
        3,
        "{states:?}"
    );
    reflex.shutdown_cleanly().await;
}

// 8. SIGTERM while an action waits to confirm: reflex exits 0 at once,
//    nothing is terminated, and the message is back on the queue, whole.
#[tokio::test]
async fn sigterm_during_confirm_wait_releases_the_message_untouched() {
    let world = World::new("sigterm").await;
    let fleet = world.fleet("web", 4, &[2]).await;
    let victim = fleet.instance_ids[2].clone();
    let alarm = world.elb_alarm("web").await;
    let reflex = world
        .reflex()
        .rule(
            "elb.toml",
            &terminate_rule("", "max_instances = 1\nconfirm_after = \"20s\"", ""),
        )
        .spawn();

    let notification = alarm.notification("ALARM", "OK");
    world.publish(&notification).await;
    reflex
        .wait_for_event(WAIT, "waiting to confirm", |e| {
            e["message"] == "Waiting to confirm instances are still OutOfService."
        })
        .await;
    let asked = tokio::time::Instant::now();
    reflex.sigterm();
    let status = reflex.wait_exit(Duration::from_secs(10)).await;
    assert!(status.success(), "reflex exited with {status}");
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "took {:?} to stop",
        asked.elapsed()
    );

    assert_eq!(world.states(&fleet).await[&victim], "stopped");
    assert_eq!(world.aws.queue_depth(&world.pipeline.queue_url).await, 1);
    // Released, not left to time out: receivable right away, unchanged.
    let back = world.aws.receive_all(&world.pipeline.queue_url).await;
    assert_eq!(back.len(), 1, "{back:#?}");
    assert_eq!(
        envelope(&back[0])["Message"],
        notification.to_string().as_str()
    );
    world.assert_dlq_empty().await;
    let aborted = action_events(&reflex, "terminate_out_of_service");
    assert_eq!(aborted.len(), 1, "{aborted:#?}");
    assert_eq!(aborted[0]["outcome"], "aborted", "{aborted:#?}");
}

// 9. reboot_instance on an InstanceId alarm, and a notify action whose
//    message reaches a queue subscribed to the notification topic.
#[tokio::test]
async fn reboots_the_instance_and_notifies() {
    let world = World::new("reboot").await;
    let fleet = world.aws.create_fleet("solo", 1, &[]).await;
    let id = fleet.instance_ids[0].clone();
    let alarm = world.system_check_alarm(&id, "ALARM").await;
    let rule = format!(
        r#"
[[rule]]
name = "ec2-reboot-on-system-check"

[rule.match]
namespace = "AWS/EC2"
metric_name = "StatusCheckFailed_System"
new_state = "ALARM"
dimensions.InstanceId = {{ exists = true }}

[[rule.actions]]
type = "reboot_instance"
require_tag = {{ key = "reflex:managed", value = "true" }}
min_instance_age = "0s"

[[rule.actions]]
type = "notify"
topic_arn = "{}"
subject = "reflex rebooted {{{{ instance_id }}}}"
message = "Rebooted {{{{ instance_id }}}} because {{{{ alarm.name }}}} is {{{{ alarm.new_state }}}}."

[rule.limits]
cooldown = "30m"
"#,
        world.pipeline.notify_topic_arn
    );
    world.moto.start_recording();
    let reflex = world.reflex().rule("reboot.toml", &rule).spawn();

    let sns_id = world.publish(&alarm.notification("ALARM", "OK")).await;
    world.drained(&reflex).await;

    // moto's reboot leaves a running instance as it was; its recorder shows
    // the call was made, for real (no DryRun) and on the right instance.
    let reboots = world.moto.recorded_actions("RebootInstances");
    assert_eq!(reboots.len(), 1, "{reboots:#?}");
    assert_eq!(
        reboots[0].list_param("InstanceId"),
        std::slice::from_ref(&id)
    );
    assert_ne!(reboots[0].param("DryRun").as_deref(), Some("true"));
    assert_eq!(
        world.aws.instance_states(std::slice::from_ref(&id)).await[&id],
        "running"
    );

    let notes = world
        .aws
        .wait_for_messages(&world.pipeline.notify_queue_url, 1, WAIT)
        .await;
    assert_eq!(notes.len(), 1, "{notes:#?}");
    let body = envelope(&notes[0]);
    assert_eq!(body["TopicArn"], world.pipeline.notify_topic_arn.as_str());
    assert_eq!(body["Subject"], format!("reflex rebooted {id}"));
    let message = body["Message"].as_str().unwrap();
    assert!(
        message.starts_with(&format!(
            "Rebooted {id} because {id}-system-check is ALARM."
        )),
        "{message}"
    );
    // The footer ties the notification to what was done and to the alarm.
    assert!(
        message.contains(&format!(
            "ec2-reboot-on-system-check reboot_instance on instance:{id} [{id}]: done"
        )),
        "{message}"
    );
    assert!(
        message.contains(&format!("sns message id: {sns_id}")),
        "{message}"
    );
    world.assert_dlq_empty().await;
    assert!(world
        .aws
        .receive_all(&world.pipeline.notify_queue_url)
        .await
        .is_empty());
    reflex.shutdown_cleanly().await;
}

// Guard: require_tag. Of two OutOfService instances, the one without the
// tag is left alone even though the caps would allow both.
#[tokio::test]
async fn require_tag_spares_the_untagged_instance() {
    let world = World::new("tag").await;
    let fleet = world.fleet("web", 5, &[0, 4]).await;
    let (tagged, untagged) = (fleet.instance_ids[0].clone(), fleet.instance_ids[4].clone());
    world
        .aws
        .ec2
        .delete_tags()
        .resources(&untagged)
        .tags(
            aws_sdk_ec2::types::Tag::builder()
                .key(support::MANAGED_TAG.0)
                .build(),
        )
        .send()
        .await
        .expect("DeleteTags");
    let alarm = world.elb_alarm("web").await;
    let reflex = world
        .reflex()
        .rule(
            "elb.toml",
            &terminate_rule(
                "",
                r#"max_instances = 2
max_percent = 50
require_tag = { key = "reflex:managed", value = "true" }"#,
                "",
            ),
        )
        .spawn();

    world.publish(&alarm.notification("ALARM", "OK")).await;
    world.drained(&reflex).await;

    let states = world.states(&fleet).await;
    assert_eq!(states[&tagged], "terminated", "{states:?}");
    assert_eq!(states[&untagged], "stopped", "{states:?}");
    assert_eq!(
        count_state(&states, &fleet.instance_ids, "running"),
        3,
        "{states:?}"
    );
    world.assert_dlq_empty().await;
    reflex.shutdown_cleanly().await;
}

// Guard: the global instance-change budget. Two load balancers alarm at
// once; `[limits] instance_changes = "1/hour"` lets one instance go in all.
#[tokio::test]
async fn global_instance_change_limit_spans_rules_and_load_balancers() {
    let world = World::new("global").await;
    let web = world.fleet("web", 4, &[1]).await;
    let api = world.fleet("api", 4, &[2]).await;
    let stopped = vec![web.instance_ids[1].clone(), api.instance_ids[2].clone()];
    let web_alarm = world.elb_alarm("web").await;
    let api_alarm = world.elb_alarm("api").await;
    let reflex = world
        .reflex()
        .set("limits.instance_changes", "1/hour")
        .rule("elb.toml", &terminate_rule("", "max_instances = 1", ""))
        .spawn();

    world.publish(&web_alarm.notification("ALARM", "OK")).await;
    world.publish(&api_alarm.notification("ALARM", "OK")).await;
    world.drained(&reflex).await;

    let mut states = world.states(&web).await;
    states.extend(world.states(&api).await);
    assert_eq!(
        count_state(&states, &stopped, "terminated"),
        1,
        "{states:?}"
    );
    assert_eq!(count_state(&states, &stopped, "stopped"), 1, "{states:?}");
    world.assert_dlq_empty().await;
    let guards: Vec<Value> = action_events(&reflex, "terminate_out_of_service")
        .into_iter()
        .filter(|e| e["guard"] == "global_rate")
        .collect();
    assert_eq!(guards.len(), 1, "{:#?}", reflex.events());
    reflex.shutdown_cleanly().await;
}

// Draining (issue 12): a queue of 30 is received ten at a time, and the
// messages of one receive, finishing together, are deleted with one
// DeleteMessageBatch, not one DeleteMessage each; none is lost. With the
// default 10 messages in flight, a poller that asked only for the slots
// free when it woke asked for one or two at a time: about 2.2 receives and
// 2.2 delete calls per ten messages on a draining queue.
#[tokio::test]
async fn a_draining_queue_is_received_and_deleted_ten_at_a_time() {
    let world = World::new("batch").await;
    let alarm = AlarmDef::elb_unhealthy_hosts("web-unhealthy-hosts", "web")
        .notifying(&world.pipeline.topic_arn);
    // Thirty distinct transitions that no rule matches (OK), queued before
    // reflex starts.
    let start = Utc::now() - chrono::Duration::minutes(5);
    for n in 0..30 {
        world
            .publish(&alarm.notification_at("OK", "ALARM", start + chrono::Duration::seconds(n)))
            .await;
    }
    let (aws, url) = (&world.aws, &world.pipeline.queue_url);
    support::wait_until(WAIT, "thirty messages are queued", || async move {
        aws.queue_depth(url).await == 30
    })
    .await;
    world.moto.start_recording();
    let reflex = world
        .reflex()
        .rule("elb.toml", &terminate_rule("", "", ""))
        // "Messages received." (with its count) is a debug event.
        .env("REFLEX_LOG", "info,reflex::telemetry::events=debug")
        .spawn();
    world.drained(&reflex).await;
    world.assert_dlq_empty().await;
    let handled = reflex.events_with_message("Message handled.").len();
    assert_eq!(handled, 30, "every message handled once");
    let received: Vec<u64> = reflex
        .events_with_message("Messages received.")
        .iter()
        .filter_map(|e| e["count"].as_u64())
        .filter(|&n| n > 0)
        .collect();
    println!("30 messages: received in {received:?}");
    assert_eq!(received.iter().sum::<u64>(), 30, "{received:?}");
    assert!(
        received.len() <= 4,
        "30 messages took {} receives: {received:?}",
        received.len()
    );
    // reflex's own count of its SQS calls, by operation.
    let (status, metrics) = support::http_get(&reflex.metrics_address().await, "/metrics");
    assert_eq!(status, 200);
    let calls = |operation: &str| -> f64 {
        metrics
            .lines()
            .filter(|l| l.starts_with("reflex_aws_calls_total{"))
            .filter(|l| l.contains(&format!("operation=\"{operation}\"")))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>()
            + 0.0
    };
    let (batches, singles) = (calls("DeleteMessageBatch"), calls("DeleteMessage"));
    println!("30 messages: {batches} DeleteMessageBatch, {singles} DeleteMessage");
    assert!(
        batches >= 3.0,
        "too few DeleteMessageBatch: {batches} batches, {singles} singles"
    );
    // A debug build takes longer than the batch's 5 ms linger over ten
    // messages, so some of them go in a second batch; a release build
    // deletes 1,000 drained messages with 100 DeleteMessageBatch calls
    // (scripts/bench-daemon).
    assert!(
        batches + singles <= 15.0,
        "{batches} batches and {singles} single deletes for 30 messages"
    );
    // moto saw the batches too (SQS speaks JSON: the batch carries Entries).
    let seen = world
        .moto
        .recorded_requests()
        .into_iter()
        .filter(|r| r.body.contains("\"Entries\"") && r.body.contains("ReceiptHandle"))
        // Not the heartbeats' ChangeMessageVisibilityBatch.
        .filter(|r| !r.body.contains("VisibilityTimeout"))
        .count();
    assert_eq!(
        seen as f64, batches,
        "moto's recorder and reflex's count agree"
    );
    reflex.shutdown_cleanly().await;
}

// SIGTERM mid long poll (issue 13): the outstanding ReceiveMessage is let
// finish and what it brings is released at once, so an alarm published
// just after SIGTERM is handled by the next reflex within seconds, not
// after the 60 s visibility timeout; the old process exits within
// shutdown_grace.
#[tokio::test]
async fn sigterm_mid_poll_releases_what_the_last_poll_brings() {
    let world = World::new("sigterm-poll").await;
    let fleet = world.fleet("web", 4, &[1]).await;
    let victim = fleet.instance_ids[1].clone();
    let alarm = world.elb_alarm("web").await;
    let rule = terminate_rule("", "max_instances = 1", "");
    let daemon = || {
        world
            .reflex()
            .rule("elb.toml", &rule)
            .set("receive.wait", "5s")
            .set("receive.visibility_timeout", "60s")
            .set("receive.heartbeat", "20s")
            .spawn()
    };
    let old = daemon();
    old.wait_for_event(WAIT, "the first long poll", |e| {
        e["message"] == "Sending the first ReceiveMessage."
    })
    .await;
    // The poll is out (5 s); SIGTERM, then the alarm arrives.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let asked = tokio::time::Instant::now();
    old.sigterm();
    world.publish(&alarm.notification("ALARM", "OK")).await;
    let status = old.wait_exit(Duration::from_secs(10)).await;
    assert!(status.success(), "reflex exited with {status}");
    let stopped_in = asked.elapsed();
    assert!(
        stopped_in < Duration::from_secs(10),
        "stopped in {stopped_in:?}, over shutdown_grace (10 s)"
    );
    assert!(
        !old.events_with_message("Shutting down: letting the outstanding ReceiveMessage finish.")
            .is_empty(),
        "the outstanding poll was let finish"
    );
    let released = old.events_with_message("Releasing the message: it is visible again at once.");
    assert_eq!(released.len(), 1, "the alarm it brought was released");

    let new = daemon();
    let started = tokio::time::Instant::now();
    let (aws, id) = (&world.aws, &victim);
    new.wait_until(
        Duration::from_secs(20),
        "the alarm is handled by the next reflex",
        || async move { aws.instance_states(std::slice::from_ref(id)).await[id] == "terminated" },
    )
    .await;
    let handled_in = started.elapsed();
    assert!(
        handled_in < Duration::from_secs(20),
        "handled in {handled_in:?}: well under the 60 s visibility timeout"
    );
    eprintln!("sigterm mid poll: old reflex stopped in {stopped_in:?}; the next handled the alarm in {handled_in:?}");
    new.shutdown_cleanly().await;
}
