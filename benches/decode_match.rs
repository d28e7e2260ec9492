//! Decode + match: the per-message cost of the pure core, as the rule count
//! grows.
//!
//! One SNS-wrapped CloudWatch alarm notification (the ELB fixture) is decoded
//! and evaluated against generated rule sets of 10, 1,000 and 10,000 rules.
//! The rule sets look like a large deployment's: mostly one rule per alarm
//! name, some rules on name prefixes and globs (per team or service), some on
//! a namespace and metric (per load balancer or queue), and one catch-all
//! notification rule. Whatever the size, the event matches the same two
//! rules, so the difference between sizes is the cost of finding them.
//!
//! Cases: `decode_only` (the body to an `AlarmEvent`), `evaluate_only/N`
//! (a decoded event against N rules) and `decode_evaluate/N` (both, what a
//! worker does per message).
//!
//! Targets: ≤ 2 µs per message with 1,000 rules (500,000 messages/s on one
//! core), and 10,000 rules ≤ 1.2 × the cost of 10.
//!
//! Run: `cargo bench --bench decode_match`. For instruction counts, which do
//! not depend on what else the machine runs, a plain loop without criterion:
//! `REFLEX_BENCH_LOOP=decode_evaluate:1000:3000 valgrind --tool=callgrind
//! target/release/deps/decode_match-*` (case, rules, iterations; cases
//! `decode_only`, `reference_only`, `evaluate_only`, `decode_evaluate`), and
//! the same with fewer iterations, to subtract the set-up.

use std::hint::black_box;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};
use reflex::event::decode;
use reflex::plan::evaluate;
use reflex::rules::{load_sources, RuleSet};

const BODY: &[u8] = include_bytes!("../tests/fixtures/sns/elb-unhealthy-hosts.json");

/// (namespace, metric, dimension) triples that per-resource rules pin.
const METRICS: &[(&str, &str, &str)] = &[
    ("AWS/ELB", "UnHealthyHostCount", "LoadBalancerName"),
    ("AWS/ELB", "HTTPCode_Backend_5XX", "LoadBalancerName"),
    ("AWS/ELB", "Latency", "LoadBalancerName"),
    ("AWS/EC2", "StatusCheckFailed_System", "InstanceId"),
    ("AWS/EC2", "StatusCheckFailed_Instance", "InstanceId"),
    ("AWS/EC2", "CPUUtilization", "InstanceId"),
    ("AWS/ApplicationELB", "UnHealthyHostCount", "TargetGroup"),
    (
        "AWS/ApplicationELB",
        "HTTPCode_Target_5XX_Count",
        "LoadBalancer",
    ),
    ("AWS/SQS", "ApproximateAgeOfOldestMessage", "QueueName"),
    ("AWS/RDS", "FreeStorageSpace", "DBInstanceIdentifier"),
    ("AWS/Lambda", "Errors", "FunctionName"),
    ("AWS/DynamoDB", "ThrottledRequests", "TableName"),
];

/// A rule set of `n` rules shaped like a large deployment's.
fn rules(n: usize) -> RuleSet {
    let mut text = String::with_capacity(n * 300);
    // The two rules the benchmark event matches, whatever `n`.
    text.push_str(
        r#"
[[rule]]
name = "terminate-web"
[rule.match]
alarm_name = "web-unhealthy-hosts"
new_state = "ALARM"
old_state = { anything_but = "ALARM" }
dimensions.LoadBalancerName = { exists = true }
[[rule.actions]]
type = "terminate_out_of_service"
max_percent = 25
min_in_service = 2
require_tag = { key = "reflex:managed", value = "true" }
confirm_after = "30s"
[rule.limits]
cooldown = "10m"
rate = "5/hour"
max_event_age = "15m"

[[rule]]
name = "notify-all"
[rule.match]
account = "123456789012"
new_state = "ALARM"
[[rule.actions]]
type = "notify"
topic_arn = "arn:aws:sns:us-east-1:123456789012:oncall"
"#,
    );
    for i in 0..n.saturating_sub(2) {
        let rule = match i % 20 {
            // 75%: one rule per alarm, by exact name.
            0..=14 => match i % 3 {
                0 => format!(
                    r#"
[[rule]]
name = "r{i}"
[rule.match]
alarm_name = "svc-{i}-unhealthy-hosts"
new_state = "ALARM"
dimensions.LoadBalancerName = {{ exists = true }}
[[rule.actions]]
type = "terminate_out_of_service"
[rule.limits]
cooldown = "10m"
"#
                ),
                1 => format!(
                    r#"
[[rule]]
name = "r{i}"
[rule.match]
alarm_name = ["status-i-{i:017x}", "status-i-{j:017x}"]
metric_name = "StatusCheckFailed_System"
dimensions.InstanceId = {{ exists = true }}
[[rule.actions]]
type = "reboot_instance"
"#,
                    j = i + 1_000_000
                ),
                _ => format!(
                    r#"
[[rule]]
name = "r{i}"
[rule.match]
alarm_name = "queue-{i}-backlog"
new_state = ["ALARM", "OK"]
[[rule.actions]]
type = "notify"
topic_arn = "arn:aws:sns:eu-west-1:123456789012:team-{i}"
subject = "{{{{ alarm.name }}}} is {{{{ alarm.new_state }}}}"
"#
                ),
            },
            // 5%: every alarm of a team, by name prefix.
            15 => format!(
                r#"
[[rule]]
name = "r{i}"
[rule.match]
alarm_name = {{ prefix = "team{i}-" }}
new_state = "ALARM"
[[rule.actions]]
type = "notify"
topic_arn = "arn:aws:sns:eu-west-1:123456789012:team-{i}"
"#
            ),
            // 5%: a service's alarms, by glob.
            16 => format!(
                r#"
[[rule]]
name = "r{i}"
[rule.match]
alarm_name = {{ glob = "svc{i}-*-unhealthy-*" }}
[[rule.actions]]
type = "notify"
topic_arn = "arn:aws:sns:eu-west-1:123456789012:svc-{i}"
"#
            ),
            // 15%: one resource's metric, by namespace, metric and dimension.
            _ => {
                let (ns, metric, dim) = METRICS[i % METRICS.len()];
                format!(
                    r#"
[[rule]]
name = "r{i}"
[rule.match]
namespace = "{ns}"
metric_name = "{metric}"
dimensions.{dim} = "res-{i}"
new_state = "ALARM"
[[rule.actions]]
type = "put_metric"
namespace = "Reflex/Bench"
metric_name = "Matched"
"#
                )
            }
        };
        text.push_str(&rule);
    }
    let set = load_sources(vec![(PathBuf::from("bench.toml"), text)])
        .unwrap_or_else(|e| panic!("generated rules do not load: {:?}", &e[..e.len().min(5)]));
    assert_eq!(set.rules().len(), n.max(2));
    set
}

fn bench(c: &mut Criterion) {
    let event = decode(BODY).expect("the fixture decodes");
    let now: DateTime<Utc> = event.state_change_time + chrono::Duration::seconds(30);

    // Every set is loaded before anything is measured, so that every case
    // runs on the same heap: loading 10,000 rules leaves the allocator in
    // another state, and the per-message allocations feel it (measured
    // after a clean start, 10 rules looked 1.5 times cheaper than 10,000 for
    // that reason alone, with the same instruction count).
    let sets: Vec<(usize, RuleSet)> = [10, 1_000, 10_000].map(|n| (n, rules(n))).into();

    let mut group = c.benchmark_group("decode_match");
    group.throughput(Throughput::Elements(1));
    group.bench_function("decode_only", |b| {
        b.iter(|| decode(black_box(BODY)).expect("decodes"))
    });
    for (n, set) in &sets {
        // The same two matches whatever the size: the sizes are comparable.
        let plan = evaluate(set, &event, now);
        let matched: Vec<&str> = plan.matches.iter().map(|m| m.rule.name.as_str()).collect();
        assert_eq!(matched, ["terminate-web", "notify-all"], "{n} rules");
        group.bench_with_input(BenchmarkId::new("evaluate_only", n), set, |b, set| {
            b.iter(|| evaluate(set, black_box(&event), now))
        });
        group.bench_with_input(BenchmarkId::new("decode_evaluate", n), set, |b, set| {
            b.iter(|| {
                let event = decode(black_box(BODY)).expect("decodes");
                evaluate(set, &event, now)
            })
        });
    }
    group.finish();
}

/// `REFLEX_BENCH_LOOP=CASE:RULES:ITERATIONS`: one case in a plain loop.
fn plain_loop(spec: &str) {
    let mut parts = spec.split(':');
    let case = parts.next().unwrap_or("decode_evaluate");
    let n: usize = parts.next().and_then(|s| s.parse().ok()).unwrap_or(1_000);
    let iterations: u64 = parts.next().and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let set = rules(n);
    let event = decode(BODY).expect("the fixture decodes");
    let now: DateTime<Utc> = event.state_change_time + chrono::Duration::seconds(30);
    let started = std::time::Instant::now();
    for _ in 0..iterations {
        match case {
            "decode_only" => drop(black_box(decode(black_box(BODY)))),
            "reference_only" => drop(black_box(reflex::event::reference::decode(black_box(BODY)))),
            "evaluate_only" => drop(black_box(evaluate(&set, black_box(&event), now))),
            _ => {
                let event = decode(black_box(BODY)).expect("decodes");
                drop(black_box(evaluate(&set, &event, now)));
            }
        }
    }
    let ns = started.elapsed().as_nanos() as f64 / iterations.max(1) as f64;
    eprintln!("{case} with {n} rules: {ns:.0} ns per message");
}

criterion_group!(benches, bench);

fn main() {
    if let Ok(spec) = std::env::var("REFLEX_BENCH_LOOP") {
        plain_loop(&spec);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
