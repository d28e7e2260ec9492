//! Rules served from S3, end to end: the real `reflex run` reads its rules
//! from moto's S3 (through a fault proxy, so the test can take S3 away
//! while SQS, SNS and CloudWatch stay up), follows edits within its poll
//! interval, keeps the live set when a broken one is uploaded or S3 is
//! unreachable, restarts from its cache while S3 is down (and refuses to
//! start without one), and two replicas converge on the same version.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::Value;
use support::{http_get, AlarmDef, FaultProxy, MotoEnv, Reflex, ReflexBuilder, World, WAIT};

const BUCKET: &str = "reflex-rules";
const SOURCE: &str = "s3://reflex-rules/rules/";
/// The poll interval the daemons run with.
const POLL: &str = "1s";
/// Long enough for a poll (1 s) on a loaded two-core CI box.
const FOLLOW: Duration = Duration::from_secs(20);

/// A rule that notifies on the alarm, named after `version` so the audit
/// trail says which version acted.
fn page_rule(version: &str, alarm: &str, topic: &str) -> String {
    format!(
        r#"[[rule]]
name = "page-{version}"
[rule.match]
alarm_name = "{alarm}"
new_state = "ALARM"

[[rule.actions]]
type = "notify"
topic_arn = "{topic}"
subject = "{version}"
message = "{{{{ alarm.name }}}} is {{{{ alarm.new_state }}}}"
"#
    )
}

/// The `reflex_rules_info{version="..."}` version on a daemon's /metrics.
async fn live_version(reflex: &Reflex) -> String {
    let (status, body) = http_get(&reflex.metrics_address().await, "/metrics");
    assert_eq!(status, 200, "{body}");
    body.lines()
        .find_map(|l| l.strip_prefix("reflex_rules_info{version=\""))
        .and_then(|rest| rest.split('"').next())
        .map(str::to_string)
        .unwrap_or_else(|| panic!("no reflex_rules_info on /metrics:\n{body}"))
}

/// Waits until the daemon's live version is not `old`; returns the new
/// one and how long it took.
async fn wait_for_new_version(reflex: &Reflex, old: &str) -> (String, Duration) {
    let started = Instant::now();
    reflex
        .wait_until(FOLLOW, "the new rules version is live", || async {
            live_version(reflex).await != old
        })
        .await;
    (live_version(reflex).await, started.elapsed())
}

/// Publishes a fresh transition of `alarm` (a new state-change time, so
/// it is not a duplicate) and waits for the audit record of the rule that
/// acted on it; returns the message record.
async fn alarm_acts(world: &World, reflex: &Reflex, alarm: &AlarmDef, rule: &str) -> Value {
    let at = Utc::now();
    let sns_id = world
        .publish(&alarm.notification_at("ALARM", "OK", at))
        .await;
    let record = |records: Vec<Value>, kind: &str| {
        records
            .into_iter()
            .find(|r| r["type"] == kind && r["sns_message_id"] == sns_id.as_str())
    };
    reflex
        .wait_until(WAIT, &format!("rule {rule} acts on the alarm"), || async {
            record(reflex.audit_records(), "message").is_some()
        })
        .await;
    let action = record(reflex.audit_records(), "action")
        .unwrap_or_else(|| panic!("no action record for {sns_id}:\n{}", reflex.stdout()));
    assert_eq!(action["rule"], rule, "{action}");
    assert_eq!(action["outcome"], "done", "{action}");
    record(reflex.audit_records(), "message").expect("the message record")
}

/// A daemon reading the rules from [`SOURCE`] with S3 behind `s3_endpoint`.
fn daemon(world: &World, s3_endpoint: &str, cache: Option<&Path>) -> ReflexBuilder {
    let builder = world
        .reflex()
        .rules_source(SOURCE)
        .set("rules.poll_interval", POLL)
        .env("AWS_ENDPOINT_URL_S3", s3_endpoint);
    match cache {
        Some(path) => builder.env("REFLEX_RULES_CACHE", path.display().to_string()),
        None => builder,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_from_s3_follow_edits_keep_the_last_good_set_and_survive_an_outage() {
    let world = World::new("s3-rules").await;
    let alarm = world.elb_alarm("web").await;
    let topic = world.pipeline.notify_topic_arn.clone();
    world.aws.create_bucket(BUCKET).await;
    world
        .aws
        .put_object(
            BUCKET,
            "rules/page.toml",
            &page_rule("v1", &alarm.name, &topic),
        )
        .await;
    // Not a rule file: never read.
    world
        .aws
        .put_object(BUCKET, "rules/README.md", "# the team's rules\n")
        .await;
    let proxy = FaultProxy::start(world.moto.port()).await;
    let cache_dir = tempfile::tempdir().expect("a temp dir for the cache");
    let cache = cache_dir.path().join("rules-cache.json");

    // Version 1.
    let reflex = daemon(&world, &proxy.endpoint(), Some(&cache)).spawn();
    let v1 = live_version(&reflex).await;
    let message = alarm_acts(&world, &reflex, &alarm, "page-v1").await;
    assert_eq!(message["rules_version"], v1.as_str(), "{message}");
    assert_eq!(message["rules_source"], SOURCE, "{message}");

    // Version 2: an edit, picked up within the poll interval.
    world
        .aws
        .put_object(
            BUCKET,
            "rules/page.toml",
            &page_rule("v2", &alarm.name, &topic),
        )
        .await;
    let (v2, took) = wait_for_new_version(&reflex, &v1).await;
    println!("version 2 live {took:?} after the upload (poll interval {POLL})");
    alarm_acts(&world, &reflex, &alarm, "page-v2").await;

    // A broken rule: version 2 stays, the rejection names the S3 key with
    // line and column, and it is counted.
    world
        .aws
        .put_object(
            BUCKET,
            "rules/broken.toml",
            "[[rule]]\nname = \"broken\"\nmatch.alarm_name = \"x\"\nbogus = 1\n",
        )
        .await;
    let rejected = reflex
        .wait_for_event(FOLLOW, "the broken set is rejected", |e| {
            e["message"] == "Invalid rule."
        })
        .await;
    let problem = rejected["problem"].as_str().unwrap_or_default().to_string();
    assert!(
        problem.starts_with("s3://reflex-rules/rules/broken.toml:4:1: "),
        "the problem names the S3 key, line and column: {problem}"
    );
    assert_eq!(
        reflex.metric("reflex_rule_reload_failures_total").await,
        Some(1.0)
    );
    assert_eq!(live_version(&reflex).await, v2, "version 2 stays live");
    // Still rejected on the next polls, but reported once.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(reflex.events_with_message("Invalid rule.").len(), 1);
    assert_eq!(
        reflex.metric("reflex_rule_reload_failures_total").await,
        Some(1.0)
    );
    alarm_acts(&world, &reflex, &alarm, "page-v2").await;

    // Fixed: version 3 takes over.
    world
        .aws
        .put_object(
            BUCKET,
            "rules/broken.toml",
            &page_rule("other", "other-alarm", &topic),
        )
        .await;
    world
        .aws
        .put_object(
            BUCKET,
            "rules/page.toml",
            &page_rule("v3", &alarm.name, &topic),
        )
        .await;
    let (v3, _) = wait_for_new_version(&reflex, &v2).await;
    alarm_acts(&world, &reflex, &alarm, "page-v3").await;

    // S3 unreachable: polls fail and are counted; reflex keeps acting on
    // version 3, and stays ready.
    proxy.cut().await;
    reflex
        .wait_until(FOLLOW, "a failed poll is counted", || async {
            reflex
                .metric("reflex_rules_source_poll_failures_total")
                .await
                .is_some_and(|n| n >= 1.0)
        })
        .await;
    let (status, body) = http_get(&reflex.metrics_address().await, "/readyz");
    assert_eq!(status, 200, "ready while S3 is down: {body}");
    let message = alarm_acts(&world, &reflex, &alarm, "page-v3").await;
    assert_eq!(message["rules_version"], v3.as_str());
    reflex.shutdown_cleanly().await;

    // Restarted while S3 is still unreachable: from the cache, version 3.
    let restarted = daemon(&world, &proxy.endpoint(), Some(&cache)).spawn();
    restarted
        .wait_for_event(WAIT, "started from the cache", |e| {
            e["message"] == "Starting from the cached rule set: the rules source gave no valid set."
        })
        .await;
    assert_eq!(live_version(&restarted).await, v3);
    alarm_acts(&world, &restarted, &alarm, "page-v3").await;
    restarted.shutdown_cleanly().await;

    // ... and without a cache it refuses to start, saying why.
    let bare = daemon(&world, &proxy.endpoint(), None).spawn();
    let status = bare.wait_exit(WAIT).await;
    assert_eq!(status.code(), Some(1), "{}", bare.logs());
    let logs = bare.logs();
    assert!(
        logs.contains("cannot read the rules from s3://reflex-rules/rules/")
            && logs.contains("no cache is configured"),
        "a clear start-up error: {logs}"
    );
    proxy.restore().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_converge_on_the_same_version_within_one_interval() {
    let world = World::new("s3-replicas").await;
    let topic = world.pipeline.notify_topic_arn.clone();
    world.aws.create_bucket(BUCKET).await;
    world
        .aws
        .put_object(
            BUCKET,
            "rules/page.toml",
            &page_rule("v1", "web-alarm", &topic),
        )
        .await;
    let endpoint = world.moto.endpoint();
    let a = daemon(&world, &endpoint, None).spawn();
    let b = daemon(&world, &endpoint, None).spawn();
    let v1 = live_version(&a).await;
    assert_eq!(
        live_version(&b).await,
        v1,
        "the same files, the same version"
    );

    world
        .aws
        .put_object(
            BUCKET,
            "rules/page.toml",
            &page_rule("v2", "web-alarm", &topic),
        )
        .await;
    world
        .aws
        .put_object(
            BUCKET,
            "rules/team/db.toml",
            &page_rule("db", "db-alarm", &topic),
        )
        .await;
    let (va, took_a) = wait_for_new_version(&a, &v1).await;
    let (vb, took_b) = wait_for_new_version(&b, &v1).await;
    println!("replica a on the new version after {took_a:?}, replica b after {took_b:?}");
    assert_eq!(va, vb, "both replicas report the same version");

    a.shutdown_cleanly().await;
    b.shutdown_cleanly().await;
}

#[tokio::test]
async fn an_invalid_set_at_start_up_and_no_cache_is_refused_with_located_errors() {
    let world = World::new("s3-invalid").await;
    world.aws.create_bucket(BUCKET).await;
    world
        .aws
        .put_object(
            BUCKET,
            "rules/web.toml",
            "[[rule]]\nname = \"x\"\n\nbogus = 1\n",
        )
        .await;
    let reflex = daemon(&world, &world.moto.endpoint(), None).spawn();
    let status = reflex.wait_exit(WAIT).await;
    assert_eq!(status.code(), Some(2), "{}", reflex.logs());
    let logs = reflex.logs();
    assert!(
        logs.contains("s3://reflex-rules/rules/web.toml:4:1"),
        "located in the S3 key: {logs}"
    );
    // A bucket that is not there: S3 answers, but with an error, so there
    // is nothing to load and (without a cache) no start.
    let missing = Command::new(env!("CARGO_BIN_EXE_reflex"))
        .moto_env(&world.moto.endpoint())
        .args(["--log-format", "json", "run", "--queue-url"])
        .arg(&world.pipeline.queue_url)
        .args(["--dlq-url", &world.pipeline.dlq_url])
        .args(["--rules", "s3://no-such-bucket/rules/"])
        .env("REFLEX_METRICS_LISTEN", "off")
        .output()
        .expect("run reflex");
    assert_eq!(missing.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(
        stderr.contains("cannot read the rules from s3://no-such-bucket/rules/"),
        "{stderr}"
    );
}
