//! A lossy network, end to end: the real `reflex run` talks to moto through
//! a TCP proxy that refuses a share of its connections and black-holes the
//! replies of another (the request reaches moto, the reply never comes
//! back, the connection stays open). 30 alarm transitions, each one
//! terminating one instance, must all be handled — none lost, none acted
//! on twice — and the time it takes is printed beside the same run on a
//! clean network (the issue's target is 3×; a timing is a measurement,
//! not an assertion: see the README's Benchmarks); and a terminate whose
//! reply was black-holed is not repeated.

mod support;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use support::{FaultProxy, Faults, Reflex, World};

const TRANSITIONS: usize = 30;
/// Long enough for the lossy run; the clean one takes seconds.
const DRAIN_WAIT: Duration = Duration::from_secs(240);

const RULE: &str = r#"
[[rule]]
name = "terminate-on-system-check"
[rule.match]
metric_name = "StatusCheckFailed_System"
new_state = "ALARM"
dimensions.InstanceId = { exists = true }

[[rule.actions]]
type = "terminate_instance"
require_tag = { key = "reflex:managed", value = "true" }

[rule.limits]
cooldown = "10m"
rate = "100/hour"
max_event_age = "15m"
"#;

/// What one run measured.
struct Run {
    drained_in: Duration,
    /// `done` action records per instance.
    done: BTreeMap<String, usize>,
    terminated: usize,
    dead_letters: usize,
}

/// Builds a fleet of [`TRANSITIONS`] instances with a system-check alarm
/// each, starts reflex through a proxy with `faults`, publishes every
/// alarm and waits until each instance is terminated and the queue empty.
async fn run(name: &str, faults: Faults) -> (Run, Reflex, FaultProxy, World) {
    let world = World::new(name).await;
    let fleet = world.fleet("web", TRANSITIONS, &[]).await;
    let mut alarms = Vec::new();
    for id in &fleet.instance_ids {
        alarms.push(world.system_check_alarm(id, "ALARM").await);
    }
    let proxy = FaultProxy::start(world.moto.port()).await;
    let mut builder = Reflex::builder(&proxy.endpoint(), &world.pipeline);
    if std::env::var_os("LOSSY_KEEP_LOGS").is_some() {
        builder = builder.env(
            "REFLEX_LOG",
            "info,reflex::telemetry::events=debug,aws_smithy_runtime::client::retries=debug,aws_smithy_runtime::client::orchestrator=debug",
        );
    }
    let reflex = builder
        .set("limits.instance_changes", "100/hour")
        // Tuned as for a network known to drop replies: every message in
        // flight at once, so stalls overlap, and attempt timeouts sized
        // for loopback replies (milliseconds), not an AWS region's.
        .set("receive.max_in_flight", 30)
        .set("receive.pollers", 3)
        .set("aws.queue_attempt_timeout", "1s")
        .set("aws.read_attempt_timeout", "1s")
        .set("aws.write_attempt_timeout", "2s")
        // A read not answered in 500 ms (replies here take 50-500 ms)
        // gets a second request.
        .set("aws.hedge_after", "500ms")
        // A stalled long poll (1 s wait) is given up after 2 s, not 6 s.
        .set("aws.receive_margin", "1s")
        // A message whose calls all failed comes back soon.
        .set("retry.base", "1s")
        .rule("terminate.toml", RULE)
        .spawn();
    reflex
        .wait_for_event(Duration::from_secs(30), "polling", |e| {
            e["message"] == "Sending the first ReceiveMessage."
        })
        .await;
    // Faults only from here: the set-up above went through cleanly.
    proxy.set_faults(faults);
    let started = Instant::now();
    for alarm in &alarms {
        world.publish(&alarm.notification("ALARM", "OK")).await;
    }
    let (aws, ids) = (&world.aws, &fleet.instance_ids);
    reflex
        .wait_until(DRAIN_WAIT, "every instance terminated", || async move {
            let states = aws.instance_states(ids).await;
            states.values().all(|s| s == "terminated")
        })
        .await;
    let url = &world.pipeline.queue_url;
    reflex
        .wait_until(DRAIN_WAIT, "the alarm queue is empty", || async move {
            aws.queue_depth(url).await == 0
        })
        .await;
    let drained_in = started.elapsed();
    if let Some(dir) = std::env::var_os("LOSSY_KEEP_LOGS") {
        let to = std::path::Path::new(&dir).join(format!("{name}.log"));
        std::fs::copy(reflex.log_path(), &to).expect("keep the log");
        eprintln!("kept {}", to.display());
    }
    let mut done: BTreeMap<String, usize> = BTreeMap::new();
    for record in reflex.audit_records() {
        if record["type"] == "action" && record["outcome"] == "done" {
            for t in record["targets"].as_array().into_iter().flatten() {
                *done
                    .entry(t.as_str().unwrap_or_default().to_string())
                    .or_default() += 1;
            }
        }
    }
    let states = world.aws.instance_states(&fleet.instance_ids).await;
    let terminated = states.values().filter(|s| *s == "terminated").count();
    let dead_letters = world.aws.receive_all(&world.pipeline.dlq_url).await.len();
    (
        Run {
            drained_in,
            done,
            terminated,
            dead_letters,
        },
        reflex,
        proxy,
        world,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_transitions_drain_on_a_lossy_network_none_lost_none_twice() {
    let (clean, reflex, _proxy, _world) = run("lossyclean", Faults::default()).await;
    reflex.shutdown_cleanly().await;
    let (lossy, reflex, proxy, _world) = run(
        "lossy",
        Faults {
            refuse_percent: 20,
            stall_percent: 10,
            stall_needle: None,
        },
    )
    .await;
    let counts = &proxy.counts;
    let mut why: BTreeMap<String, usize> = BTreeMap::new();
    for e in reflex.events() {
        let key = match e["message"].as_str() {
            Some("Message handled.") => format!("handled:{}", e["disposition"]),
            Some("Action failed.") => format!(
                "failed:{}",
                e["error"]
                    .as_str()
                    .unwrap_or("")
                    .split(" failed")
                    .next()
                    .unwrap_or("")
            ),
            Some(m) if m.contains("eartbeat") || m.contains("ReceiveMessage failed") => {
                m.to_string()
            }
            _ => continue,
        };
        *why.entry(key).or_default() += 1;
    }
    eprintln!("lossy run events: {why:?}");
    eprintln!(
        "lossy network: clean drain {:.1} s, lossy drain {:.1} s (ratio {:.2}); \
         proxy connections {}, refused {}, stalled {}",
        clean.drained_in.as_secs_f64(),
        lossy.drained_in.as_secs_f64(),
        lossy.drained_in.as_secs_f64() / clean.drained_in.as_secs_f64(),
        counts.connections.load(Ordering::Relaxed),
        counts.refused.load(Ordering::Relaxed),
        counts.stalled.load(Ordering::Relaxed),
    );
    for run in [&clean, &lossy] {
        assert_eq!(run.terminated, TRANSITIONS, "none lost");
        assert_eq!(run.dead_letters, 0, "nothing dead-lettered");
        assert_eq!(
            run.done.len(),
            TRANSITIONS,
            "every instance acted on: {:?}",
            run.done
        );
        assert!(
            run.done.values().all(|n| *n == 1),
            "none acted on twice: {:?}",
            run.done
        );
    }
    assert!(
        counts.refused.load(Ordering::Relaxed) > 0 && counts.stalled.load(Ordering::Relaxed) > 0,
        "the faults happened"
    );
    // Not `shutdown_cleanly`: on this network a lost DeleteMessage reply is
    // logged as an error (the message comes back and is a duplicate).
    reflex.sigterm();
    let status = reflex.wait_exit(Duration::from_secs(25)).await;
    assert!(status.success(), "reflex exited with {status}");
}

/// A terminate whose reply is black-holed: the instance is terminated on
/// moto, reflex's call gets no answer, and re-reading the instance beside
/// it after `aws.hedge_after` (1 s) shows it shutting down or terminated —
/// done then, not at the write's timeout, and not repeated.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_terminate_whose_reply_stalled_is_not_repeated() {
    let world = World::new("stalledterm").await;
    let fleet = world.fleet("web", 2, &[]).await;
    let id = fleet.instance_ids[0].clone();
    let alarm = world.system_check_alarm(&id, "ALARM").await;
    let proxy = FaultProxy::start(world.moto.port()).await;
    proxy.set_faults(Faults {
        stall_needle: Some(b"Action=TerminateInstances".to_vec()),
        ..Faults::default()
    });
    let reflex = Reflex::builder(&proxy.endpoint(), &world.pipeline)
        .rule("terminate.toml", RULE)
        .spawn();
    world.publish(&alarm.notification("ALARM", "OK")).await;
    let done = reflex
        .wait_for_event(Duration::from_secs(60), "the terminate is done", |e| {
            e["message"] == "Action finished." && e["kind"] == "terminate_instance"
        })
        .await;
    assert_eq!(done["outcome"], "done", "{done}");
    assert_eq!(
        proxy.counts.stalled_by_needle.load(Ordering::Relaxed),
        1,
        "the TerminateInstances reply was black-holed"
    );
    let resolved = reflex
        .audit_records()
        .into_iter()
        .find(|r| r["type"] == "action" && r["kind"] == "terminate_instance")
        .unwrap_or_else(|| panic!("no action record"));
    assert!(
        resolved["unknown_outcome"]
            .as_str()
            .is_some_and(|e| e.contains("TerminateInstances")),
        "{resolved}"
    );
    let terminate_calls = reflex
        .events()
        .into_iter()
        .filter(|e| e["message"] == "Action failed.")
        .count();
    assert_eq!(
        terminate_calls, 0,
        "not reported as a failure, so not retried"
    );
    world.drained(&reflex).await;
    world.assert_dlq_empty().await;
    assert_eq!(
        world.aws.instance_states(std::slice::from_ref(&id)).await[&id],
        "terminated"
    );
    reflex.shutdown_cleanly().await;
}
