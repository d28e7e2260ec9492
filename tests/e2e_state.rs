//! Durable and shared state, end to end with the real binary against moto:
//!
//! - a DynamoDB outage mid-run: nothing acts, messages are retried, and
//!   when the endpoint returns the queue drains, none lost, none twice;
//! - kill -9 at random moments with the local store, restarted each time:
//!   no transition lost, no instance acted on twice;
//! - three replicas on one queue sharing DynamoDB: duplicate deliveries,
//!   bursts over the rule and global limits, overlapping targets.
//!
//! Everything is judged through AWS: the notifications in an inbox queue
//! subscribed to the notify topic, the instances' states, and moto's record
//! of TerminateInstances calls. DynamoDB is served by a single-threaded
//! moto on its own port (`AWS_ENDPOINT_URL_DYNAMODB`): moto's threaded
//! DynamoDB is not atomic under concurrent conditional writes.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use serde_json::Value;

use support::{
    envelope, http_get, sample, AlarmDef, MotoServer, PipelineOptions, Reflex, World, WAIT,
};

const TABLE: &str = "reflex-state";

/// `notify` on every ALARM of alarms named `<prefix>…`, the subject being
/// the alarm's name, with `limits` (a `[rule.limits]` table or nothing).
fn notify_rule(name: &str, prefix: &str, topic: &str, limits: &str) -> String {
    format!(
        r#"
[[rule]]
name = "{name}"
[rule.match]
alarm_name = {{ prefix = "{prefix}" }}
new_state = "ALARM"
[[rule.actions]]
type = "notify"
topic_arn = "{topic}"
subject = "SUBJECT"
message = "{{{{ alarm.name }}}} is {{{{ alarm.new_state }}}}"
{limits}
"#
    )
    .replace("SUBJECT", "{{ alarm.name }}")
}

/// `terminate_instance` on the instance of a `StatusCheckFailed_System`
/// alarm, then `notify` with the alarm's name as the subject.
fn replace_rule(topic: &str) -> String {
    format!(
        r#"
[[rule]]
name = "replace-failed-instance"
[rule.match]
namespace = "AWS/EC2"
metric_name = "StatusCheckFailed_System"
new_state = "ALARM"
dimensions.InstanceId = {{ exists = true }}
[[rule.actions]]
type = "terminate_instance"
min_instance_age = "0s"
[[rule.actions]]
type = "notify"
topic_arn = "{topic}"
subject = "SUBJECT"
message = "replaced {{{{ instance_id }}}}"
"#
    )
    .replace("SUBJECT", "{{ alarm.name }}")
}

/// A `StatusCheckFailed_System` alarm on `id`, in ALARM in moto (reflex
/// asks DescribeAlarms before it touches an instance).
async fn instance_alarm(world: &World, prefix: &str, id: &str) -> AlarmDef {
    let alarm = AlarmDef::new(
        &format!("{prefix}-{id}"),
        "AWS/EC2",
        "StatusCheckFailed_System",
        &[("InstanceId", id)],
    )
    .notifying(&world.pipeline.topic_arn);
    world.aws.put_metric_alarm(&alarm, "ALARM").await;
    alarm
}

/// Every notification in the inbox, by subject (each is received once and
/// then stays invisible).
async fn inbox(world: &World) -> BTreeMap<String, usize> {
    let mut by_subject = BTreeMap::new();
    for m in world
        .aws
        .receive_all(&world.pipeline.notify_queue_url)
        .await
    {
        let subject = envelope(&m)["Subject"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        *by_subject.entry(subject).or_insert(0) += 1;
    }
    by_subject
}

/// Waits until the inbox has received `n` notifications, then a little
/// longer, and returns them all by subject: more than `n` is an error the
/// caller sees.
async fn inbox_after(world: &World, n: usize) -> BTreeMap<String, usize> {
    let got = world
        .aws
        .wait_for_messages(&world.pipeline.notify_queue_url, n, WAIT)
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut by_subject = inbox(world).await;
    for m in got {
        let subject = envelope(&m)["Subject"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        *by_subject.entry(subject).or_insert(0) += 1;
    }
    by_subject
}

/// The instance ids of every TerminateInstances call moto served for real
/// (not `DryRun`), one entry per call and id.
fn terminated_by_calls(moto: &MotoServer) -> BTreeMap<String, usize> {
    let mut ids = BTreeMap::new();
    for call in moto.recorded_actions("TerminateInstances") {
        if call.param("DryRun").as_deref() == Some("true") {
            continue;
        }
        for id in call.list_param("InstanceId") {
            *ids.entry(id).or_insert(0) += 1;
        }
    }
    ids
}

/// The daemon's `reflex_*` sample whose line starts with `prefix`.
fn metric(reflex: &Reflex, addr: &str, prefix: &str) -> f64 {
    let (code, text) = http_get(addr, "/metrics");
    assert_eq!(code, 200, "{text}");
    reflex.assert_running();
    sample(&text, prefix).unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_outage_acts_on_nothing_and_the_queue_drains_when_it_returns() {
    let world = World::with_options(
        "outage",
        PipelineOptions {
            // The outage must not push anything to the DLQ: retries are
            // what is being tested.
            max_receive_count: 100,
            ..PipelineOptions::default()
        },
    )
    .await;
    let mut dynamodb = MotoServer::start_single_threaded();
    dynamodb.create_state_table(TABLE).await;
    let topic = world.pipeline.notify_topic_arn.clone();
    let reflex = world
        .reflex()
        .rule("page.toml", &notify_rule("page", "t-", &topic, ""))
        .set("state.backend", "dynamodb")
        .set("state.table", TABLE)
        .env("AWS_ENDPOINT_URL_DYNAMODB", dynamodb.endpoint())
        .spawn();
    let addr = reflex.listen_address().await;
    let alarm = |name: &str| AlarmDef::new(name, "Custom", "Errors", &[("Service", "api")]);

    // Before: the store answers, each transition pages once.
    for i in 0..2 {
        world
            .publish(&alarm(&format!("t-before-{i}")).notification("ALARM", "OK"))
            .await;
    }
    world.drained(&reflex).await;
    let (code, ready) = http_get(&addr, "/readyz");
    assert_eq!(code, 200, "{ready}");
    assert!(ready.contains("state dynamodb reflex-state"), "{ready}");

    // The DynamoDB endpoint goes away mid-run.
    dynamodb.stop();
    let during: Vec<String> = (0..3).map(|i| format!("t-during-{i}")).collect();
    for name in &during {
        world
            .publish(&alarm(name).notification("ALARM", "OK"))
            .await;
    }
    // Every one of them is tried, fails closed and is left for a retry,
    // some of them more than once.
    reflex
        .wait_until(WAIT, "every message was retried at least once", || async {
            reflex
                .events_with_message("Leaving the message on the queue for a retry.")
                .len()
                > during.len()
        })
        .await;
    let (code, ready) = http_get(&addr, "/readyz");
    assert_eq!(code, 503, "{ready}");
    assert!(
        ready.contains("state store (dynamodb reflex-state) unreachable"),
        "{ready}"
    );
    assert!(
        metric(
            &reflex,
            &addr,
            "reflex_state_errors_total{operation=\"claim\",kind=\"unavailable\"}"
        ) >= during.len() as f64,
        "every failed claim is counted"
    );
    let (aws, url) = (&world.aws, &world.pipeline.queue_url);
    assert_eq!(
        aws.queue_depth(url).await,
        during.len() as u64,
        "the messages stay on the queue"
    );
    let paged = inbox_after(&world, 2).await;
    assert_eq!(
        paged,
        BTreeMap::from([("t-before-0".to_string(), 1), ("t-before-1".to_string(), 1)]),
        "nothing acted during the outage"
    );

    // The endpoint returns (an empty moto: the earlier claims were
    // completed and their messages deleted, so nothing needs them).
    dynamodb.restart();
    dynamodb.create_state_table(TABLE).await;
    world.drained(&reflex).await;
    let paged = inbox_after(&world, during.len()).await;
    let expected: BTreeMap<String, usize> = during.iter().map(|n| (n.clone(), 1)).collect();
    assert_eq!(
        paged, expected,
        "each transition paged once: 0 lost, 0 twice"
    );
    world.assert_dlq_empty().await;
    let (code, ready) = http_get(&addr, "/readyz");
    assert_eq!(code, 200, "{ready}");
    eprintln!(
        "outage: {} retries logged; claims failed: {}",
        reflex
            .events_with_message("Leaving the message on the queue for a retry.")
            .len(),
        metric(
            &reflex,
            &addr,
            "reflex_state_errors_total{operation=\"claim\",kind=\"unavailable\"}"
        )
    );
    reflex.shutdown_cleanly().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_random_moments_loses_nothing_and_repeats_nothing() {
    let world = World::with_options(
        "crash",
        PipelineOptions {
            max_receive_count: 100,
            ..PipelineOptions::default()
        },
    )
    .await;
    const INSTANCES: usize = 12;
    const KILLS: usize = 8;
    let fleet = world.aws.create_fleet("crash", INSTANCES, &[]).await;
    let mut alarms = Vec::new();
    for id in &fleet.instance_ids {
        alarms.push(instance_alarm(&world, "crash", id).await);
    }
    let seed: u64 = std::env::var("REFLEX_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("kill -9 test: seed {seed} (set REFLEX_KILL_SEED to replay the kill times)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let state_dir = tempfile::tempdir().expect("a state dir");
    let state_path = state_dir.path().join("reflex-state.redb");
    let daemon = || {
        world
            .reflex()
            .rule(
                "replace.toml",
                &replace_rule(&world.pipeline.notify_topic_arn),
            )
            // One state file for every incarnation.
            .env("REFLEX_STATE_PATH", state_path.display().to_string())
            // A killed daemon's messages come back soon.
            .set("receive.visibility_timeout", "3s")
            .set("receive.heartbeat", "1s")
            // A heartbeat must get through within the 2 s left of the
            // visibility ([aws] checks the queue timeout fits).
            .set("aws.queue_attempt_timeout", "1s")
            .set("aws.queue_timeout", "1500ms")
            .set("retry.base", "1s")
            .set("retry.max", "2s")
            .env("REFLEX_LOG", "info,reflex::worker::actions=debug")
            .spawn()
    };
    world.moto.start_recording();

    // The stream: one transition every 400 ms, while reflex is killed and
    // restarted.
    let publisher = {
        let (aws, topic) = (world.aws.clone(), world.pipeline.topic_arn.clone());
        let notes: Vec<Value> = alarms
            .iter()
            .map(|a| a.notification("ALARM", "OK"))
            .collect();
        tokio::spawn(async move {
            for note in notes {
                aws.publish_alarm(&topic, &note).await;
                tokio::time::sleep(Duration::from_millis(400)).await;
            }
        })
    };
    // Half the kills at a random moment of a daemon's life, half a random
    // 0-25 ms after it took a target's lease (so they land mid-action, with
    // a claim in progress).
    let mut lives = Vec::new();
    for k in 0..KILLS {
        let reflex = daemon();
        if k % 2 == 0 {
            tokio::time::sleep(Duration::from_millis(rng.gen_range(300..2_500))).await;
        } else {
            let started = tokio::time::Instant::now();
            while reflex
                .events_with_message("Target lease acquired.")
                .is_empty()
                && started.elapsed() < Duration::from_secs(10)
            {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            tokio::time::sleep(Duration::from_millis(rng.gen_range(0..25))).await;
        }
        reflex.assert_running();
        reflex.kill9();
        lives.push(reflex);
    }
    publisher.await.expect("the publisher finishes");
    let last = daemon();
    world.drained(&last).await;
    lives.push(last);

    // None lost: every instance was terminated, and every transition paged.
    let states = world.states(&fleet).await;
    for id in &fleet.instance_ids {
        assert_eq!(states[id], "terminated", "{id}: {states:?}");
    }
    // None acted on twice: one TerminateInstances per instance, ever.
    let calls = terminated_by_calls(&world.moto);
    let expected: BTreeMap<String, usize> = fleet
        .instance_ids
        .iter()
        .map(|id| (id.clone(), 1))
        .collect();
    assert_eq!(calls, expected, "TerminateInstances per instance");
    let paged = inbox_after(&world, INSTANCES).await;
    // notify is at-least-once by design: a page may repeat only when its
    // claim was taken over from a killed holder, and the audit says so.
    let records: Vec<Value> = lives.iter().flat_map(|r| r.audit_records()).collect();
    let taken_over: BTreeSet<String> = records
        .iter()
        .filter(|r| r["type"] == "action" && r["taken_over_from"].is_string())
        .map(|r| format!("{}/{}", r["alarm_name"], r["kind"]))
        .collect();
    for alarm in &alarms {
        let n = paged.get(&alarm.name).copied().unwrap_or(0);
        assert!(n >= 1, "{} was never paged: {paged:?}", alarm.name);
        if n > 1 {
            assert!(
                taken_over.contains(&format!("\"{}\"/\"notify\"", alarm.name)),
                "{} paged {n} times without a takeover on record: {taken_over:?}",
                alarm.name
            );
        }
    }
    assert_eq!(paged.len(), INSTANCES, "{paged:?}");
    world.assert_dlq_empty().await;
    let takeover_logs: usize = lives
        .iter()
        .map(|r| {
            r.events()
                .iter()
                .filter(|e| {
                    e["message"]
                        .as_str()
                        .is_some_and(|m| m.starts_with("Claim taken over"))
                })
                .count()
        })
        .sum();
    assert!(
        takeover_logs >= 1,
        "no kill landed mid-action, so no claim was taken over: the test proved nothing"
    );
    eprintln!(
        "kill -9 test: {KILLS} kills, {takeover_logs} claims taken over ({} recorded finished), {} duplicate pages, {} TerminateInstances calls",
        taken_over.len(),
        paged.values().map(|n| n - 1).sum::<usize>(),
        calls.values().sum::<usize>()
    );
    lives
        .last()
        .expect("the last daemon")
        .shutdown_cleanly()
        .await;
}

/// The intervals in which a daemon held each target's lease, from its
/// debug log: target → [(acquired, released)] in RFC 3339 timestamps.
fn lease_spans(reflex: &Reflex) -> BTreeMap<String, Vec<(String, String)>> {
    let mut open: BTreeMap<String, String> = BTreeMap::new();
    let mut spans: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for e in reflex.events() {
        let (Some(target), Some(at)) = (e["target_lease"].as_str(), e["timestamp"].as_str()) else {
            continue;
        };
        if e["message"] == "Target lease acquired." {
            assert!(
                open.insert(target.to_string(), at.to_string()).is_none(),
                "one daemon holds {target} twice at once"
            );
        } else if e["message"] == "Target lease released." {
            let from = open
                .remove(target)
                .unwrap_or_else(|| panic!("{target} released but never acquired"));
            spans
                .entry(target.to_string())
                .or_default()
                .push((from, at.to_string()));
        }
    }
    spans
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_on_dynamodb_act_once_and_hold_the_limits_together() {
    let world = World::with_options(
        "replicas",
        PipelineOptions {
            max_receive_count: 100,
            ..PipelineOptions::default()
        },
    )
    .await;
    let dynamodb = MotoServer::start_single_threaded();
    dynamodb.create_state_table(TABLE).await;
    let topic = world.pipeline.notify_topic_arn.clone();
    let fleet = world.aws.create_fleet("shared", 4, &[]).await;
    let mut instance_alarms = Vec::new();
    for id in &fleet.instance_ids {
        instance_alarms.push(instance_alarm(&world, "replicas", id).await);
    }
    world.moto.start_recording();
    let replicas: Vec<Reflex> = (0..3)
        .map(|_| {
            world
                .reflex()
                .rule("page.toml", &notify_rule("page", "page-", &topic, ""))
                .rule(
                    "burst.toml",
                    &notify_rule(
                        "burst",
                        "burst-",
                        &topic,
                        "[rule.limits]\nrate = \"2/hour\"",
                    ),
                )
                .rule("replace.toml", &replace_rule(&topic))
                .set("state.backend", "dynamodb")
                .set("state.table", TABLE)
                .set("limits.instance_changes", "2/hour")
                .set("receive.pollers", 2)
                .env("AWS_ENDPOINT_URL_DYNAMODB", dynamodb.endpoint())
                .env("REFLEX_LOG", "info,reflex::worker::actions=debug")
                .spawn()
        })
        .collect();
    for r in &replicas {
        r.listen_address().await;
    }

    // Every transition is delivered three times (SNS retries, or three
    // subscriptions), all at once.
    let alarm = |name: &str| AlarmDef::new(name, "Custom", "Errors", &[("Service", "api")]);
    let mut notes: Vec<Value> = Vec::new();
    notes.extend((0..5).map(|i| alarm(&format!("page-{i}")).notification("ALARM", "OK")));
    notes.extend((0..5).map(|i| alarm(&format!("burst-{i}")).notification("ALARM", "OK")));
    notes.extend(
        instance_alarms
            .iter()
            .map(|a| a.notification("ALARM", "OK")),
    );
    for _ in 0..3 {
        for note in &notes {
            world.publish(note).await;
        }
    }
    world.drained(&replicas[0]).await;
    for r in &replicas {
        r.assert_running();
    }

    // Each transition acted on once: every page-* once; burst-* only as the
    // rule's rate allows (2 of 5), across the three replicas together; and
    // instances only as the global limit allows (2 of 4), each once.
    // (The replace rule's notify runs whether or not its terminate was
    // held back by the limit, so each of the 4 instance alarms pages once.)
    let paged = inbox_after(&world, 5 + 2 + 4).await;
    for i in 0..5 {
        assert_eq!(paged.get(&format!("page-{i}")), Some(&1), "{paged:?}");
    }
    let bursts: Vec<_> = paged
        .iter()
        .filter(|(s, _)| s.starts_with("burst-"))
        .collect();
    assert_eq!(
        bursts.len(),
        2,
        "the rule rate (2/hour) holds across replicas: {paged:?}"
    );
    assert!(bursts.iter().all(|(_, n)| **n == 1), "{paged:?}");
    let calls = terminated_by_calls(&world.moto);
    assert_eq!(
        calls.len(),
        2,
        "the global limit (2/hour) holds across replicas: {calls:?}"
    );
    assert!(calls.values().all(|n| *n == 1), "{calls:?}");
    let states = world.states(&fleet).await;
    assert_eq!(
        support::count_state(&states, &fleet.instance_ids, "terminated"),
        2,
        "{states:?}"
    );
    let replaced: Vec<_> = paged
        .iter()
        .filter(|(s, _)| s.starts_with("replicas-"))
        .collect();
    assert_eq!(replaced.len(), 4, "{paged:?}");
    assert!(replaced.iter().all(|(_, n)| **n == 1), "{paged:?}");
    world.assert_dlq_empty().await;

    // The guards that said no, over all replicas' audit trails.
    let records: Vec<Value> = replicas.iter().flat_map(|r| r.audit_records()).collect();
    let count = |rule: &str, outcome: &str, guard: Option<&str>| {
        records
            .iter()
            .filter(|r| r["type"] == "action" && r["rule"] == rule && r["outcome"] == outcome)
            .filter(|r| guard.is_none_or(|g| r["guard"] == g))
            .count()
    };
    assert_eq!(count("burst", "done", None), 2);
    assert_eq!(count("burst", "suppressed", Some("rule_rate")), 3);
    assert_eq!(
        count("replace-failed-instance", "done", None),
        2 + 4,
        "2 terminations, 4 pages"
    );
    assert_eq!(
        count("replace-failed-instance", "suppressed", Some("global_rate")),
        2
    );
    assert_eq!(count("page", "done", None), 5);
    // The duplicates were seen and did nothing: found done, or busy while
    // another replica held the claim (and then found done on the retry).
    let duplicates = records
        .iter()
        .filter(|r| r["type"] == "action" && r["outcome"] == "duplicate")
        .count();
    assert!(duplicates >= 1, "no duplicate delivery was recognised");
    let acted: Vec<usize> = replicas
        .iter()
        .map(|r| {
            r.audit_records()
                .iter()
                .filter(|x| x["type"] == "action" && x["outcome"] == "done")
                .count()
        })
        .collect();
    assert!(
        acted.iter().filter(|n| **n > 0).count() >= 2,
        "the work was shared: {acted:?}"
    );

    // No two replicas on one target at once: every notify shares the
    // topic's target, so their lease spans, across replicas, never overlap.
    let mut all: BTreeMap<String, Vec<(String, String, usize)>> = BTreeMap::new();
    for (i, r) in replicas.iter().enumerate() {
        for (target, spans) in lease_spans(r) {
            all.entry(target)
                .or_default()
                .extend(spans.into_iter().map(|(a, b)| (a, b, i)));
        }
    }
    let topic_target = format!("topic:{topic}");
    let shared = all.get(&topic_target).map_or(0, Vec::len);
    assert!(shared >= 11, "every page held the topic's lease: {shared}");
    for (target, spans) in &mut all {
        spans.sort();
        for pair in spans.windows(2) {
            assert!(
                pair[0].1 <= pair[1].0,
                "two holders of {target} at once: {pair:?}"
            );
        }
    }
    eprintln!(
        "replicas: done actions per replica {acted:?}; {duplicates} duplicates recognised; {} lease spans on the topic",
        shared
    );
    for r in &replicas {
        r.shutdown_cleanly().await;
    }
}
