//! The fixture corpus in `tests/fixtures/`, decoded and checked field by field.
//!
//! - `sns/`, `raw/`, `eventbridge/`: bodies that must decode. Each has an
//!   entry in [`expected`] naming every field of the [`AlarmEvent`] it must
//!   produce.
//! - `poison/CODE--what.json`: bodies that must be rejected with the
//!   [`PoisonCode`] spelled before the `--`.
//!
//! [`every_fixture_file_is_checked`] fails if a file is added without an
//! expectation, so the corpus cannot grow untested.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use reflex::event::{
    decode, format_millis, reference, AlarmEvent, AlarmKind, AlarmState, EventFormat, PoisonCode,
    MAX_BODY_BYTES,
};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn read(rel: &str) -> Vec<u8> {
    let path = fixtures().join(rel);
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

const ACCOUNT: &str = "123456789012";

/// Everything one fixture must decode to.
#[derive(Debug, Clone)]
struct Want {
    alarm_name: &'static str,
    alarm_arn: Option<String>,
    account_id: Option<&'static str>,
    region: Option<&'static str>,
    description: Option<&'static str>,
    new_state: AlarmState,
    old_state: Option<AlarmState>,
    /// How the reason starts (reasons are long sentences).
    state_reason_prefix: &'static str,
    /// As `format_millis` writes it.
    state_change_time: &'static str,
    kind: AlarmKind,
    namespace: Option<&'static str>,
    metric_name: Option<&'static str>,
    dimensions: &'static [(&'static str, &'static str)],
    threshold: Option<f64>,
    comparison_operator: Option<&'static str>,
    alarm_rule: Option<&'static str>,
    format: EventFormat,
    sns_message_id: Option<&'static str>,
    topic_arn: Option<&'static str>,
    subject: Option<&'static str>,
}

fn arn(region: &str, name: &str) -> Option<String> {
    Some(format!(
        "arn:aws:cloudwatch:{region}:{ACCOUNT}:alarm:{name}"
    ))
}

impl Want {
    /// A metric alarm in a raw notification; the fixture tables override
    /// what differs.
    fn metric(name: &'static str, region: &'static str) -> Want {
        Want {
            alarm_name: name,
            alarm_arn: arn(region, name),
            account_id: Some(ACCOUNT),
            region: Some(region),
            description: None,
            new_state: AlarmState::Alarm,
            old_state: Some(AlarmState::Ok),
            state_reason_prefix: "Threshold Crossed",
            state_change_time: "",
            kind: AlarmKind::Metric,
            namespace: None,
            metric_name: None,
            dimensions: &[],
            threshold: None,
            comparison_operator: None,
            alarm_rule: None,
            format: EventFormat::Raw,
            sns_message_id: None,
            topic_arn: None,
            subject: None,
        }
    }

    fn via_sns(
        mut self,
        message_id: &'static str,
        topic: &'static str,
        subject: Option<&'static str>,
    ) -> Want {
        self.format = EventFormat::Sns;
        self.sns_message_id = Some(message_id);
        self.topic_arn = Some(topic);
        self.subject = subject;
        self
    }

    /// Compares field by field and names every field that differs.
    fn check(&self, file: &str, e: &AlarmEvent) {
        let mut wrong: Vec<String> = Vec::new();
        macro_rules! field {
            ($name:literal, $got:expr, $want:expr) => {
                let (got, want) = ($got, $want);
                if got != want {
                    wrong.push(format!("  {}: got {:?}, want {:?}", $name, got, want));
                }
            };
        }
        let dims: BTreeMap<String, String> = self
            .dimensions
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        field!("alarm_name", e.alarm_name.as_str(), self.alarm_name);
        field!("alarm_arn", e.alarm_arn.clone(), self.alarm_arn.clone());
        field!("account_id", e.account_id.as_deref(), self.account_id);
        field!("region", e.region.as_deref(), self.region);
        field!("description", e.description.as_deref(), self.description);
        field!("new_state", e.new_state, self.new_state);
        field!("old_state", e.old_state, self.old_state);
        field!(
            "state_reason starts with",
            e.state_reason
                .as_deref()
                .is_some_and(|r| r.starts_with(self.state_reason_prefix)),
            true
        );
        field!(
            "state_change_time",
            format_millis(&e.state_change_time),
            self.state_change_time
        );
        field!("kind", e.kind, self.kind);
        field!("namespace", e.namespace.as_deref(), self.namespace);
        field!("metric_name", e.metric_name.as_deref(), self.metric_name);
        field!("dimensions", &e.dimensions, &dims);
        field!("threshold", e.threshold, self.threshold);
        field!(
            "comparison_operator",
            e.comparison_operator.as_deref(),
            self.comparison_operator
        );
        field!("alarm_rule", e.alarm_rule.as_deref(), self.alarm_rule);
        field!("format", e.format, self.format);
        field!(
            "sns_message_id",
            e.sns_message_id.as_deref(),
            self.sns_message_id
        );
        field!("topic_arn", e.topic_arn.as_deref(), self.topic_arn);
        field!("subject", e.subject.as_deref(), self.subject);
        assert!(
            wrong.is_empty(),
            "{file} decoded with wrong fields:\n{}",
            wrong.join("\n")
        );
    }
}

const ALARMS_EU_SOUTH_1: &str = "arn:aws:sns:eu-south-1:123456789012:reflex-alarms";

fn elb_web() -> Want {
    Want {
        state_change_time: "2026-01-12T16:30:42.236Z",
        namespace: Some("AWS/ELB"),
        metric_name: Some("UnHealthyHostCount"),
        dimensions: &[("LoadBalancerName", "web")],
        threshold: Some(1.0),
        comparison_operator: Some("GreaterThanOrEqualToThreshold"),
        ..Want::metric("web-unhealthy-hosts", "eu-south-1")
    }
}

fn elb_web_ok() -> Want {
    Want {
        new_state: AlarmState::Ok,
        old_state: Some(AlarmState::Alarm),
        state_change_time: "2026-01-12T16:42:42.871Z",
        ..elb_web()
    }
}

fn ec2_status_check() -> Want {
    Want {
        description: Some("System status check failed: the underlying host needs attention."),
        state_change_time: "2026-01-12T07:15:09.512Z",
        namespace: Some("AWS/EC2"),
        metric_name: Some("StatusCheckFailed_System"),
        dimensions: &[("InstanceId", "i-0a1b2c3d4e5f60718")],
        threshold: Some(1.0),
        comparison_operator: Some("GreaterThanOrEqualToThreshold"),
        ..Want::metric("status-check-system-i-0a1b2c3d4e5f60718", "us-east-1")
    }
}

fn metric_math() -> Want {
    Want {
        description: Some("More than 5% of API requests fail with a 5xx."),
        state_change_time: "2026-01-12T11:04:15.020Z",
        kind: AlarmKind::MetricMath,
        // No metric returns data (the expression does), so the primary
        // metric is the first one read: its namespace, name and dimensions
        // only, not `TargetGroup` from the second.
        namespace: Some("AWS/ApplicationELB"),
        metric_name: Some("HTTPCode_Target_5XX_Count"),
        dimensions: &[("LoadBalancer", "app/api/50dc6c495c0c9188")],
        threshold: Some(5.0),
        comparison_operator: Some("GreaterThanThreshold"),
        ..Want::metric("api-5xx-rate-high", "eu-west-1")
    }
}

/// An expression over two instances' metrics: the event names the first
/// instance, and nothing of the second (not its `AutoScalingGroupName`).
fn web_pair_cpu() -> Want {
    Want {
        description: Some("Average CPU of the two web instances is above 80%."),
        state_change_time: "2026-01-12T14:22:07.310Z",
        kind: AlarmKind::MetricMath,
        namespace: Some("AWS/EC2"),
        metric_name: Some("CPUUtilization"),
        dimensions: &[("InstanceId", "i-0aaaaaaaaaaaaaaa1")],
        threshold: Some(80.0),
        comparison_operator: Some("GreaterThanThreshold"),
        ..Want::metric("web-pair-cpu-high", "eu-central-1")
    }
}

fn anomaly() -> Want {
    Want {
        description: Some("Order API latency is outside its expected band."),
        state_reason_prefix: "Thresholds Crossed",
        state_change_time: "2026-01-12T13:21:03.447Z",
        kind: AlarmKind::AnomalyDetection,
        namespace: Some("AWS/ApiGateway"),
        metric_name: Some("Latency"),
        dimensions: &[("ApiName", "orders"), ("Stage", "prod")],
        comparison_operator: Some("LessThanLowerOrGreaterThanUpperThreshold"),
        ..Want::metric("orders-latency-anomaly", "us-west-2")
    }
}

fn composite() -> Want {
    Want {
        description: Some("Checkout is degraded: high latency and errors together."),
        state_reason_prefix: "arn:aws:cloudwatch:eu-south-1:123456789012:alarm:checkout-latency-high transitioned to ALARM",
        state_change_time: "2026-01-12T09:58:12.833Z",
        kind: AlarmKind::Composite,
        alarm_rule: Some(r#"ALARM("checkout-latency-high") AND ALARM("checkout-5xx-high")"#),
        ..Want::metric("checkout-degraded", "eu-south-1")
    }
}

fn insufficient() -> Want {
    Want {
        new_state: AlarmState::InsufficientData,
        state_reason_prefix: "Insufficient Data",
        state_change_time: "2026-01-12T03:00:05.000Z",
        namespace: Some("AWS/RDS"),
        metric_name: Some("FreeStorageSpace"),
        threshold: Some(10_737_418_240.0),
        comparison_operator: Some("LessThanThreshold"),
        ..Want::metric("db-free-storage-low", "ap-northeast-1")
    }
}

/// EventBridge events: the ARN comes from `resources`, and there is no
/// comparison operator in `configuration`.
fn eventbridge(name: &'static str, region: &'static str) -> Want {
    Want {
        format: EventFormat::EventBridge,
        ..Want::metric(name, region)
    }
}

fn eb_elb_web() -> Want {
    Want {
        comparison_operator: None,
        format: EventFormat::EventBridge,
        ..elb_web()
    }
}

fn eb_composite() -> Want {
    Want {
        state_reason_prefix:
            "arn:aws:cloudwatch:us-east-1:123456789012:alarm:ServerCpuTooHigh transitioned to ALARM",
        state_change_time: "2022-07-22T15:57:45.394Z",
        kind: AlarmKind::Composite,
        alarm_rule: Some("ALARM(ServerCpuTooHigh) OR ALARM(TotalNetworkTrafficTooHigh)"),
        ..eventbridge("ServiceAggregatedAlarm", "us-east-1")
    }
}

/// Every fixture that must decode, and what to.
fn expected() -> Vec<(&'static str, Want)> {
    vec![
        // --- raw message delivery: the body is the CloudWatch notification.
        ("raw/elb-unhealthy-hosts.json", elb_web()),
        ("raw/elb-recovered-ok.json", elb_web_ok()),
        ("raw/ec2-status-check-failed.json", ec2_status_check()),
        ("raw/metric-math.json", metric_math()),
        ("raw/metric-math-two-instances.json", web_pair_cpu()),
        ("raw/anomaly-detection.json", anomaly()),
        ("raw/composite.json", composite()),
        ("raw/insufficient-data.json", insufficient()),
        // --- SNS envelopes around CloudWatch notifications.
        (
            "sns/elb-unhealthy-hosts.json",
            elb_web().via_sns(
                "123af076-b1f0-42c0-89ee-ff89935c1296",
                ALARMS_EU_SOUTH_1,
                Some(r#"ALARM: "web-unhealthy-hosts" in EU (Milan)"#),
            ),
        ),
        (
            "sns/elb-recovered-ok.json",
            elb_web_ok().via_sns(
                "e7b5e40d-4f24-4518-94b4-19b0767af071",
                ALARMS_EU_SOUTH_1,
                Some(r#"OK: "web-unhealthy-hosts" in EU (Milan)"#),
            ),
        ),
        (
            "sns/ec2-status-check-failed.json",
            ec2_status_check().via_sns(
                "4b2a3b38-a656-4e74-a615-525b19a70a48",
                "arn:aws:sns:us-east-1:123456789012:reflex-alarms",
                Some(
                    r#"ALARM: "status-check-system-i-0a1b2c3d4e5f60718" in US East (N. Virginia)"#,
                ),
            ),
        ),
        (
            "sns/metric-math.json",
            metric_math().via_sns(
                "fe10daa3-8f39-4974-8bc6-1ca259e39104",
                "arn:aws:sns:eu-west-1:123456789012:reflex-alarms",
                Some(r#"ALARM: "api-5xx-rate-high" in EU (Ireland)"#),
            ),
        ),
        (
            // The alarm returns the data of its second metric: that one is
            // primary, though another comes first.
            "sns/metric-math-returned-metric.json",
            Want {
                state_change_time: "2026-01-12T06:11:30.004Z",
                kind: AlarmKind::MetricMath,
                namespace: Some("AWS/SQS"),
                metric_name: Some("ApproximateAgeOfOldestMessage"),
                dimensions: &[("QueueName", "orders")],
                threshold: Some(900.0),
                comparison_operator: Some("GreaterThanThreshold"),
                ..Want::metric("orders-queue-age-high", "us-west-2")
            }
            .via_sns(
                "0b6f4f3e-2d49-4c8e-9a0b-5f3e6c7d8e91",
                "arn:aws:sns:us-west-2:123456789012:reflex-alarms",
                Some(r#"ALARM: "orders-queue-age-high" in US West (Oregon)"#),
            ),
        ),
        (
            "sns/anomaly-detection.json",
            anomaly().via_sns(
                "c9732b88-2b60-4465-87a4-0a7cf1f8d59d",
                "arn:aws:sns:us-west-2:123456789012:reflex-alarms",
                Some(r#"ALARM: "orders-latency-anomaly" in US West (Oregon)"#),
            ),
        ),
        (
            "sns/composite.json",
            composite().via_sns(
                "9ef90afe-5568-4d57-a879-ecff1b0990a6",
                ALARMS_EU_SOUTH_1,
                Some(r#"ALARM: "checkout-degraded" in EU (Milan)"#),
            ),
        ),
        (
            "sns/insufficient-data.json",
            insufficient().via_sns(
                "21e610b5-e570-44c4-8e6c-e08bfa88fdaf",
                "arn:aws:sns:ap-northeast-1:123456789012:reflex-alarms",
                Some(r#"INSUFFICIENT_DATA: "db-free-storage-low" in Asia Pacific (Tokyo)"#),
            ),
        ),
        (
            // Escapes and non-ASCII inside the doubly encoded Message.
            "sns/escaped-name.json",
            Want {
                description: Some("Line one\nLine two\ttabbed"),
                old_state: Some(AlarmState::InsufficientData),
                state_change_time: "2026-01-12T20:00:00.000Z",
                namespace: Some("Caché/Service"),
                metric_name: Some("GetLatency"),
                dimensions: &[
                    ("AvailabilityZone", "eu-central-1a"),
                    ("Cluster", "primary"),
                ],
                threshold: Some(250.5),
                comparison_operator: Some("GreaterThanThreshold"),
                ..Want::metric("caché \"primary\" – p99", "eu-central-1")
            }
            .via_sns(
                "66af8cd8-c5cf-4d52-ac33-cdcdeab477c4",
                "arn:aws:sns:eu-central-1:123456789012:reflex-alarms",
                Some("ALARM: \"caché \"primary\" – p99\" in Europe (Frankfurt)"),
            ),
        ),
        (
            // No StateChangeTime: the SNS Timestamp stands in.
            "sns/no-state-change-time.json",
            Want {
                state_change_time: "2026-01-12T16:30:42.289Z",
                ..elb_web()
            }
            .via_sns(
                "dcf1d72d-bd42-41aa-b5e0-01ce8842ff2b",
                ALARMS_EU_SOUTH_1,
                Some(r#"ALARM: "web-unhealthy-hosts" in EU (Milan)"#),
            ),
        ),
        // --- SNS envelopes around EventBridge events (an SNS rule target).
        (
            "sns/eventbridge-single-metric.json",
            eb_elb_web().via_sns(
                "e1b1e73d-eed0-4127-8ff9-5fef201ae061",
                "arn:aws:sns:eu-south-1:123456789012:reflex-alarm-events",
                None,
            ),
        ),
        (
            "sns/eventbridge-composite.json",
            eb_composite().via_sns(
                "7a6f8a5c-127b-410d-89b5-128527203453",
                "arn:aws:sns:us-east-1:123456789012:reflex-alarm-events",
                None,
            ),
        ),
        // --- EventBridge events delivered straight to SQS.
        (
            "eventbridge/single-metric.json",
            Want {
                description: Some("Goes into alarm when server CPU utilization is too high!"),
                state_change_time: "2019-10-02T17:04:40.989Z",
                namespace: Some("AWS/EC2"),
                metric_name: Some("CPUUtilization"),
                dimensions: &[("InstanceId", "i-12345678901234567")],
                ..eventbridge("ServerCpuTooHigh", "us-east-1")
            },
        ),
        ("eventbridge/elb-unhealthy-hosts.json", eb_elb_web()),
        (
            "eventbridge/ec2-status-check-failed.json",
            Want {
                old_state: Some(AlarmState::InsufficientData),
                state_change_time: "2026-01-12T07:15:09.512Z",
                namespace: Some("AWS/EC2"),
                metric_name: Some("StatusCheckFailed_System"),
                dimensions: &[("InstanceId", "i-0fedcba9876543210")],
                ..eventbridge("status-check-system-i-0fedcba9876543210", "us-east-1")
            },
        ),
        (
            "eventbridge/metric-math.json",
            Want {
                description: Some("Goes into alarm if total network traffic exceeds 10Kb"),
                old_state: Some(AlarmState::InsufficientData),
                state_change_time: "2019-10-02T17:20:48.554Z",
                kind: AlarmKind::MetricMath,
                namespace: Some("AWS/EC2"),
                metric_name: Some("NetworkIn"),
                dimensions: &[("InstanceId", "i-12345678901234567")],
                ..eventbridge("TotalNetworkTrafficTooHigh", "us-east-1")
            },
        ),
        (
            // An expression over two instances: the first is primary.
            "eventbridge/metric-math-two-instances.json",
            Want {
                description: Some("Network in of the two web instances, together, is too high."),
                state_change_time: "2026-01-12T14:22:07.310Z",
                kind: AlarmKind::MetricMath,
                namespace: Some("AWS/EC2"),
                metric_name: Some("NetworkIn"),
                dimensions: &[("InstanceId", "i-0aaaaaaaaaaaaaaa1")],
                threshold: Some(50_000_000.0),
                ..eventbridge("web-pair-network-high", "eu-central-1")
            },
        ),
        (
            // An expression over one metric is metric math too.
            "eventbridge/metric-math-one-metric.json",
            Want {
                description: Some("Oldest message older than 15 minutes."),
                state_change_time: "2026-01-12T05:41:00.120Z",
                kind: AlarmKind::MetricMath,
                namespace: Some("AWS/SQS"),
                metric_name: Some("ApproximateAgeOfOldestMessage"),
                dimensions: &[("QueueName", "orders")],
                threshold: Some(15.0),
                ..eventbridge("queue-age-minutes-high", "eu-west-1")
            },
        ),
        (
            "eventbridge/anomaly-detection.json",
            Want {
                description: Some("Goes into alarm if CPU is out of its expected band"),
                old_state: Some(AlarmState::InsufficientData),
                state_reason_prefix: "Thresholds Crossed",
                state_change_time: "2019-10-03T16:01:03.479Z",
                kind: AlarmKind::AnomalyDetection,
                namespace: Some("AWS/EC2"),
                metric_name: Some("CPUUtilization"),
                dimensions: &[("InstanceId", "i-12345678901234567")],
                ..eventbridge("ServerCpuUnusual", "us-east-1")
            },
        ),
        ("eventbridge/composite.json", eb_composite()),
    ]
}

#[test]
fn every_valid_fixture_decodes_field_by_field() {
    let cases = expected();
    assert!(cases.len() >= 20, "only {} valid fixtures", cases.len());
    for (file, want) in &cases {
        let event = decode(&read(file)).unwrap_or_else(|p| panic!("{file} is poison: {p}"));
        want.check(file, &event);
    }
}

#[test]
fn every_format_and_kind_is_covered() {
    let mut seen = BTreeSet::new();
    for (file, want) in expected() {
        let dir = file.split('/').next().unwrap_or_default();
        seen.insert((dir, format!("{:?}", want.kind)));
    }
    for dir in ["sns", "raw", "eventbridge"] {
        for kind in ["Metric", "MetricMath", "AnomalyDetection", "Composite"] {
            assert!(
                seen.contains(&(dir, kind.to_string())),
                "no {kind} alarm in tests/fixtures/{dir}/"
            );
        }
    }
}

/// The same transition delivered four ways has one transition key, so the
/// daemon's de-duplication sees one event.
#[test]
fn one_transition_has_one_key_whatever_the_format() {
    let keys: BTreeSet<String> = [
        "raw/elb-unhealthy-hosts.json",
        "sns/elb-unhealthy-hosts.json",
        "eventbridge/elb-unhealthy-hosts.json",
        "sns/eventbridge-single-metric.json",
    ]
    .iter()
    .map(|f| decode(&read(f)).expect("decodes").transition_key())
    .collect();
    assert_eq!(
        keys.into_iter().collect::<Vec<_>>(),
        vec![
            "arn:aws:cloudwatch:eu-south-1:123456789012:alarm:web-unhealthy-hosts|ALARM|1768235442236"
                .to_string()
        ]
    );
}

/// The code a poison fixture is named after: `CODE--what.json`.
fn poison_code(file_name: &str) -> Option<PoisonCode> {
    let (code, rest) = file_name.split_once("--")?;
    rest.ends_with(".json").then_some(())?;
    PoisonCode::parse(code)
}

fn poison_files() -> Vec<(String, PoisonCode)> {
    let dir = fixtures().join("poison");
    let mut out: Vec<(String, PoisonCode)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|entry| {
            let name = entry.expect("dir entry").file_name();
            let name = name.to_string_lossy().into_owned();
            let code = poison_code(&name).unwrap_or_else(|| {
                panic!("poison/{name} is not named CODE--what.json with a known code")
            });
            (name, code)
        })
        .collect();
    out.sort();
    out
}

#[test]
fn every_poison_fixture_is_rejected_with_its_code() {
    let files = poison_files();
    assert!(files.len() >= 20, "only {} poison fixtures", files.len());
    let mut wrong = Vec::new();
    for (name, want) in &files {
        match decode(&read(&format!("poison/{name}"))) {
            Ok(e) => wrong.push(format!("  {name}: decoded as alarm {:?}", e.alarm_name)),
            Err(p) if p.code != *want => wrong.push(format!("  {name}: got {p}")),
            Err(p) => assert!(!p.reason.trim().is_empty(), "{name}: empty reason"),
        }
    }
    assert!(
        wrong.is_empty(),
        "poison fixtures not rejected as named:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn poison_fixtures_cover_every_decoder_code() {
    let mut covered: BTreeSet<PoisonCode> = poison_files().into_iter().map(|(_, c)| c).collect();
    // Too large is generated (below), not stored; the trust checks are the
    // worker's, not the decoder's.
    covered.insert(PoisonCode::TooLarge);
    let missing: Vec<_> = PoisonCode::ALL
        .into_iter()
        .filter(|c| !PoisonCode::TRUST.contains(c) && !covered.contains(c))
        .collect();
    assert!(missing.is_empty(), "no poison fixture for {missing:?}");
}

/// The fast decoder and the reference (plain serde) decoder agree on every
/// fixture: the same event, or poison with the same code.
#[test]
fn the_fast_and_reference_decoders_agree_on_every_fixture() {
    let mut files: Vec<String> = expected().iter().map(|(f, _)| f.to_string()).collect();
    files.extend(
        poison_files()
            .into_iter()
            .map(|(name, _)| format!("poison/{name}")),
    );
    assert!(files.len() >= 50, "only {} fixtures", files.len());
    let mut wrong = Vec::new();
    for file in &files {
        let body = read(file);
        let (fast, slow) = (decode(&body), reference::decode(&body));
        let agree = match (&fast, &slow) {
            (Err(a), Err(b)) => a.code == b.code,
            _ => fast == slow,
        };
        if !agree {
            wrong.push(format!("  {file}: fast {fast:?}\n    reference {slow:?}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "the decoders disagree:\n{}",
        wrong.join("\n")
    );
}

/// Pads a valid body with trailing white space to exactly `len` bytes.
fn padded(body: &[u8], len: usize) -> Vec<u8> {
    assert!(body.len() <= len);
    let mut out = body.to_vec();
    out.resize(len, b' ');
    out
}

#[test]
fn too_large_is_decided_on_size_alone() {
    let body = read("sns/elb-unhealthy-hosts.json");
    let at_limit = decode(&padded(&body, MAX_BODY_BYTES)).expect("256 KiB exactly is allowed");
    assert_eq!(at_limit.alarm_name, "web-unhealthy-hosts");
    let over = decode(&padded(&body, MAX_BODY_BYTES + 1)).expect_err("one byte over");
    assert_eq!(over.code, PoisonCode::TooLarge, "{over}");
    // Even garbage is too large before it is anything else.
    let garbage = vec![0xff_u8; MAX_BODY_BYTES + 1];
    assert_eq!(decode(&garbage).unwrap_err().code, PoisonCode::TooLarge);
}

/// Every file under `tests/fixtures` is checked by a test above: valid ones
/// by [`expected`], poison ones by their name.
#[test]
fn every_fixture_file_is_checked() {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("list fixtures") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else {
                out.push(path);
            }
        }
    }
    let root = fixtures();
    let mut files = Vec::new();
    walk(&root, &mut files);
    let listed: BTreeSet<&str> = expected().iter().map(|(f, _)| *f).collect();
    let mut unchecked = Vec::new();
    for path in &files {
        let rel = path
            .strip_prefix(&root)
            .expect("under the fixture dir")
            .to_string_lossy()
            .replace('\\', "/");
        let checked = match rel.split_once('/') {
            Some(("poison", name)) => poison_code(name).is_some(),
            Some(_) => listed.contains(rel.as_str()),
            None => rel == "README.md",
        };
        if !checked {
            unchecked.push(rel);
        }
    }
    assert!(
        unchecked.is_empty(),
        "fixture files no test checks (add them to expected() or name them CODE--what.json): {unchecked:?}"
    );
    for file in &listed {
        assert!(root.join(file).is_file(), "expected() names missing {file}");
    }
}
