//! Trust end to end, on moto: what SNS really delivered is verified and
//! acted on; what anyone else sent straight to the queue — a forged or
//! altered envelope, an unsigned one, a raw alarm — goes to the DLQ with its
//! code and moves nothing; an explicit opt-in accepts raw delivery; and an
//! instance action whose alarm is OK again in CloudWatch does not act.

mod support;

use std::collections::BTreeMap;

use chrono::Utc;
use serde_json::{json, Value};

use support::{action_events, attribute, envelope, terminate_rule, World, ACCOUNT_ID, WAIT};

/// A genuine delivery: published through moto's SNS, which signs it
/// (version 2, leaving Subject out — the logged emulator leniency).
#[tokio::test]
async fn a_genuine_delivery_is_verified_and_acted_on() {
    let world = World::new("trust-genuine").await;
    let fleet = world.fleet("web", 3, &[1]).await;
    let victim = fleet.instance_ids[1].clone();
    let alarm = world.elb_alarm("web").await;
    let reflex = world
        .reflex()
        .rule("elb.toml", &terminate_rule("", "", ""))
        .spawn();

    world.publish(&alarm.notification("ALARM", "OK")).await;
    world.wait_terminated(&reflex, &victim).await;
    world.drained(&reflex).await;
    world.assert_dlq_empty().await;
    let lenient = logged(&reflex, "Accepted an SNS signature that leaves Subject out");
    assert_eq!(
        lenient.len(),
        1,
        "the leniency is logged once: {lenient:#?}"
    );
    reflex.shutdown_cleanly().await;
}

/// The log events whose message contains `needle`.
fn logged(reflex: &support::Reflex, needle: &str) -> Vec<Value> {
    reflex
        .events()
        .into_iter()
        .filter(|e| e["message"].as_str().is_some_and(|m| m.contains(needle)))
        .collect()
}

/// Sends `body` straight to the alarm queue, as anyone with
/// `sqs:SendMessage` can; returns its message id.
async fn send(world: &World, body: &str) -> String {
    world
        .aws
        .sqs
        .send_message()
        .queue_url(&world.pipeline.queue_url)
        .message_body(body)
        .send()
        .await
        .expect("SendMessage")
        .message_id()
        .expect("message id")
        .to_owned()
}

#[tokio::test]
async fn forged_altered_and_unsigned_messages_are_dead_lettered_and_move_nothing() {
    let world = World::new("trust-forged").await;
    let fleet = world.fleet("web", 3, &[1]).await;
    let victim = fleet.instance_ids[1].clone();
    let alarm = world.elb_alarm("web").await;
    let topic = world.pipeline.topic_arn.clone();
    let notification = alarm.notification("ALARM", "OK");
    let now = Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();

    // A genuine signed envelope (an OK notification, delivered by moto to
    // a side queue): its certificate is real, and so is its signature.
    let side_topic = world.aws.create_topic("trust-side").await;
    let (side_queue, side_arn) = world.aws.create_queue("trust-side", &[]).await;
    world
        .aws
        .subscribe_queue(&side_topic, &side_queue, &side_arn)
        .await;
    world
        .aws
        .publish_alarm(&side_topic, &alarm.notification("OK", "ALARM"))
        .await;
    let genuine = world.aws.wait_for_messages(&side_queue, 1, WAIT).await;
    let genuine = envelope(&genuine[0]);
    assert!(genuine["Signature"].is_string(), "moto signs: {genuine:#}");
    let cert_url = genuine["SigningCertURL"].as_str().expect("SigningCertURL");

    // 1. A hand-made envelope naming the trusted topic, with a made-up
    //    signature and a real SNS certificate.
    let forged = json!({
        "Type": "Notification",
        "MessageId": "3f1ee3d0-5f7a-4c6b-9d51-0c6cd0f0a2b1",
        "TopicArn": topic,
        "Subject": "ALARM: \"web-unhealthy-hosts\" in US East (N. Virginia)",
        "Message": notification.to_string(),
        "Timestamp": now,
        "SignatureVersion": "2",
        "Signature": "bm90IGEgc2lnbmF0dXJl",
        "SigningCertURL": cert_url,
    });
    // 2. The genuine envelope, altered: it names the trusted topic and its
    //    Message says ALARM.
    let mut altered = genuine.clone();
    altered["TopicArn"] = topic.clone().into();
    altered["Message"] = notification.to_string().into();
    // 2b. The forged envelope with its certificate on a lookalike host.
    let mut lookalike = forged.clone();
    lookalike["SigningCertURL"] = cert_url
        .replace(".amazonaws.com/", ".amazonaws.com.evil.example/")
        .into();
    // 3. The same envelope with its signature fields removed.
    let mut unsigned = forged.clone();
    for field in ["SignatureVersion", "Signature", "SigningCertURL"] {
        unsigned.as_object_mut().expect("object").remove(field);
    }
    // 4. A raw alarm, as raw message delivery would carry it.
    let raw = notification.to_string();

    let mut sent = BTreeMap::new();
    for (code, body) in [
        ("bad_signature", forged.to_string()),
        ("bad_signature", altered.to_string()),
        ("bad_signature", lookalike.to_string()),
        ("unsigned_refused", unsigned.to_string()),
        ("unsigned_refused", raw),
    ] {
        sent.insert(send(&world, &body).await, code);
    }
    world.moto.start_recording();
    let reflex = world
        .reflex()
        .rule("elb.toml", &terminate_rule("", "", ""))
        .spawn();

    world.drained(&reflex).await;
    let (aws, dlq) = (&world.aws, &world.pipeline.dlq_url);
    reflex
        .wait_until(WAIT, "five messages are in the DLQ", || async move {
            aws.queue_depth(dlq).await == 5
        })
        .await;
    let dead = world.aws.receive_all(&world.pipeline.dlq_url).await;
    let mut got = BTreeMap::new();
    for message in &dead {
        let original = attribute(message, "OriginalMessageId").expect("OriginalMessageId");
        let code = attribute(message, "ReasonCode").expect("ReasonCode");
        let reason = attribute(message, "ReasonText").expect("ReasonText");
        assert!(!reason.trim().is_empty(), "{code}: no reason");
        got.insert(original, code);
    }
    let want: BTreeMap<String, String> = sent
        .iter()
        .map(|(k, v)| (k.clone(), (*v).to_owned()))
        .collect();
    assert_eq!(got, want);
    // Nothing acted: the stopped instance is still there, and no pool was
    // even read.
    assert_eq!(
        world
            .aws
            .instance_states(std::slice::from_ref(&victim))
            .await[&victim],
        "stopped"
    );
    assert!(world.moto.recorded_actions("TerminateInstances").is_empty());
    assert!(world
        .moto
        .recorded_actions("DescribeInstanceHealth")
        .is_empty());
    assert!(action_events(&reflex, "terminate_out_of_service").is_empty());
    // Counted by code, and on the audit trail.
    for (code, n) in [("bad_signature", 3.0), ("unsigned_refused", 2.0)] {
        let series = format!("reflex_messages_dead_lettered_total{{code=\"{code}\"}}");
        assert_eq!(reflex.metric(&series).await, Some(n), "{series}");
        let audited = reflex
            .stdout()
            .lines()
            .filter(|l| l.contains(&format!("\"{code}\"")))
            .count();
        assert_eq!(
            audited as f64,
            n,
            "audit records with {code}:\n{}",
            reflex.stdout()
        );
    }
    reflex.shutdown_cleanly().await;
}

#[tokio::test]
async fn raw_delivery_is_accepted_only_with_the_opt_in() {
    let world = World::new("trust-raw").await;
    let fleet = world.fleet("web", 3, &[1]).await;
    let victim = fleet.instance_ids[1].clone();
    let alarm = world.elb_alarm("web").await;
    let reflex = world
        .reflex()
        .set("trust.accept_raw", true)
        .set("trust.trusted_accounts", vec![ACCOUNT_ID.to_owned()])
        .rule("elb.toml", &terminate_rule("", "", ""))
        .spawn();

    send(&world, &alarm.notification("ALARM", "OK").to_string()).await;
    world.wait_terminated(&reflex, &victim).await;
    world.drained(&reflex).await;
    world.assert_dlq_empty().await;
    let warned = logged(&reflex, "trust.accept_raw is on");
    assert_eq!(warned.len(), 1, "a start-up warning names the risk");
    reflex.shutdown_cleanly().await;
}

#[tokio::test]
async fn a_reboot_whose_alarm_is_ok_again_does_not_reboot() {
    let world = World::new("trust-reboot").await;
    let fleet = world.aws.create_fleet("solo", 1, &[]).await;
    let id = fleet.instance_ids[0].clone();
    // By the time the message arrives, CloudWatch says OK.
    let alarm = world.system_check_alarm(&id, "OK").await;
    let rule = r#"
[[rule]]
name = "ec2-reboot-on-system-check"

[rule.match]
namespace = "AWS/EC2"
metric_name = "StatusCheckFailed_System"
new_state = "ALARM"
dimensions.InstanceId = { exists = true }

[[rule.actions]]
type = "reboot_instance"
min_instance_age = "0s"
"#;
    world.moto.start_recording();
    let reflex = world.reflex().rule("reboot.toml", rule).spawn();

    world.publish(&alarm.notification("ALARM", "OK")).await;
    world.drained(&reflex).await;

    assert!(world.moto.recorded_actions("RebootInstances").is_empty());
    assert_eq!(world.moto.recorded_actions("DescribeAlarms").len(), 1);
    let events = action_events(&reflex, "reboot_instance");
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0]["outcome"], "suppressed", "{events:#?}");
    let text: Value = events[0].clone();
    assert!(text.to_string().contains("alarm_recovered"), "{text:#}");
    world.assert_dlq_empty().await;
    reflex.shutdown_cleanly().await;
}
