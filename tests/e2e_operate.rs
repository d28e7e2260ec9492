//! Operating `reflex run`, end to end against moto: live rule reload (a good
//! edit takes over, a broken edit keeps the old rules, a fix takes over
//! again, SIGHUP reloads), and metrics scraped over HTTP from the running
//! daemon.

mod support;

use chrono::{Duration as ChronoDuration, Utc};
use serde_json::Value;

use support::{http_get, sample, AlarmDef, Reflex, World, WAIT};

fn notify_rule(subject: &str) -> String {
    format!(
        r#"
[[rule]]
name = "tell-oncall"
[rule.match]
alarm_name = "api-latency"
new_state = "ALARM"
[[rule.actions]]
type = "notify"
topic_arn = "NOTIFY_TOPIC"
subject = "{subject}"
message = "{{{{ alarm.name }}}} is {{{{ alarm.new_state }}}}"
"#
    )
}

/// Publishes an alarm notification and returns the Subject of the one
/// notification reflex sends for it (deleted once read).
async fn fire(aws: &support::Aws, topic_arn: &str, notify_url: &str, note: Value) -> String {
    aws.publish_alarm(topic_arn, &note).await;
    let got = aws.wait_for_messages(notify_url, 1, WAIT).await;
    let envelope: Value =
        serde_json::from_str(got[0].body().expect("a body")).expect("an SNS envelope");
    aws.sqs
        .delete_message()
        .queue_url(notify_url)
        .receipt_handle(got[0].receipt_handle().expect("a receipt handle"))
        .send()
        .await
        .expect("delete the notification");
    envelope["Subject"].as_str().expect("a subject").to_string()
}

#[tokio::test]
async fn rule_edits_reload_live_and_metrics_are_served() {
    let world = World::new("operate").await;
    let (moto, aws, pipeline) = (&world.moto, &world.aws, &world.pipeline);
    let alarm = AlarmDef::new(
        "api-latency",
        "AWS/ApplicationELB",
        "TargetResponseTime",
        &[("LoadBalancer", "app/api/1")],
    );
    let rule =
        |subject: &str| notify_rule(subject).replace("NOTIFY_TOPIC", &pipeline.notify_topic_arn);
    let reflex = Reflex::builder(&moto.endpoint(), pipeline)
        .rule("oncall.toml", &rule("v1"))
        .spawn();
    let rule_file = reflex.rules_dir().join("oncall.toml");

    let addr = reflex.metrics_address().await;

    // Each alarm is a new transition, a minute apart; one notification each.
    let start = Utc::now() - ChronoDuration::minutes(10);
    let sent = 4;
    let fire_and_read_subject = |n: i64| {
        fire(
            aws,
            &pipeline.topic_arn,
            &pipeline.notify_queue_url,
            alarm.notification_at("ALARM", "OK", start + ChronoDuration::minutes(n)),
        )
    };

    assert_eq!(fire_and_read_subject(1).await, "v1");

    // A good edit: the next alarm uses the new rule.
    std::fs::write(&rule_file, rule("v2")).expect("edit the rule");
    let reloaded = reflex
        .wait_for_event(WAIT, "the edited rules are live", |e| {
            e["message"] == "Rules reloaded."
        })
        .await;
    assert_eq!(fire_and_read_subject(2).await, "v2");

    // A broken edit: rejected with file:line:col, and the old rule keeps acting.
    std::fs::write(
        &rule_file,
        rule("v3").replace("new_state = \"ALARM\"", "new_state = \"ALRAM\""),
    )
    .expect("break the rule");
    let rejected = reflex
        .wait_for_event(WAIT, "the broken edit is rejected", |e| {
            e["message"] == "Rule reload rejected; the previous rules stay in force."
        })
        .await;
    let problem = reflex
        .events()
        .into_iter()
        .find(|e| e["message"] == "Invalid rule.")
        .expect("each problem is logged");
    let problem = problem["problem"]
        .as_str()
        .expect("the problem text")
        .to_string();
    assert!(
        problem.contains("oncall.toml:") && problem.contains("ALRAM"),
        "{problem}"
    );
    assert_eq!(
        rejected["rules_version"], reloaded["rules_version"],
        "the v2 rules stay live"
    );
    assert_eq!(
        fire_and_read_subject(3).await,
        "v2",
        "the old rule keeps acting"
    );

    // The fix takes over.
    std::fs::write(&rule_file, rule("v4")).expect("fix the rule");
    reflex
        .wait_until(WAIT, "the fixed rules are live", || async {
            reflex.events_with_message("Rules reloaded.").len() == 2
        })
        .await;
    assert_eq!(fire_and_read_subject(4).await, "v4");

    // SIGHUP reloads too, and does not kill the daemon.
    let status = std::process::Command::new("kill")
        .args(["-HUP", &reflex.pid().to_string()])
        .status()
        .expect("run kill(1)");
    assert!(status.success());
    reflex
        .wait_for_event(WAIT, "SIGHUP is handled", |e| {
            e["message"] == "SIGHUP: reloading the rules."
        })
        .await;
    reflex.assert_running();

    // The metrics, scraped from the running daemon.
    let (code, health) = http_get(&addr, "/healthz");
    assert_eq!((code, health.trim()), (200, "ok"));
    let (code, ready) = http_get(&addr, "/readyz");
    assert_eq!(code, 200, "{ready}");
    // The container health check: the binary asks /readyz itself.
    let health = std::process::Command::new(env!("CARGO_BIN_EXE_reflex"))
        .args(["health", "--listen", &addr])
        .output()
        .expect("run reflex health");
    assert!(
        health.status.success() && String::from_utf8_lossy(&health.stdout).starts_with("ready"),
        "`reflex health --listen {addr}` against the running daemon: {:?} {} {}",
        health.status,
        String::from_utf8_lossy(&health.stdout),
        String::from_utf8_lossy(&health.stderr)
    );
    let (code, metrics) = http_get(&addr, "/metrics");
    assert_eq!(code, 200);
    let live_version = reflex.events_with_message("Rules reloaded.")[1]["rules_version"].clone();
    let live_version = live_version.as_str().expect("a version");
    assert!(
        metrics.contains(&format!(
            "reflex_rules_info{{version=\"{live_version}\"}} 1"
        )),
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, "reflex_rule_reloads_total"),
        Some(2.0),
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, "reflex_rule_reload_failures_total"),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, "reflex_messages_received_total"),
        Some(sent as f64),
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, "reflex_messages_deleted_total"),
        Some(sent as f64),
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            "reflex_actions_total{kind=\"notify\",outcome=\"done\",guard=\"\"}"
        ),
        Some(sent as f64),
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, "reflex_rule_matches_total{rule=\"tell-oncall\"}"),
        Some(sent as f64),
        "{metrics}"
    );
    assert!(
        sample(
            &metrics,
            "reflex_aws_calls_total{service=\"sns\",operation=\"Publish\",outcome=\"ok\"}"
        )
        .is_some_and(|n| n >= sent as f64),
        "{metrics}"
    );
    assert!(
        sample(&metrics, "reflex_processing_seconds_count").is_some_and(|n| n >= sent as f64),
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, "reflex_messages_in_flight"),
        Some(0.0),
        "{metrics}"
    );

    // The audit trail (stdout by default): one decision per message, each
    // under the rule-set version that was live when it was handled.
    let records: Vec<Value> = reflex
        .stdout()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let decisions: Vec<&Value> = records.iter().filter(|r| r["type"] == "message").collect();
    assert_eq!(decisions.len(), sent, "{records:#?}");
    assert!(decisions
        .iter()
        .all(|d| d["disposition"]["kind"] == "ack" && d["matched"][0] == "tell-oncall"));
    let versions: Vec<&str> = decisions
        .iter()
        .map(|d| d["rules_version"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        versions[1], versions[2],
        "the broken edit did not change the live rules"
    );
    assert_ne!(versions[0], versions[1]);
    assert_eq!(versions[3], live_version);
    let actions = records
        .iter()
        .filter(|r| r["type"] == "action" && r["outcome"] == "done")
        .count();
    assert_eq!(actions, sent);
    reflex.shutdown_cleanly().await;
}
