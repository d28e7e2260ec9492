//! Every AWS operation reflex calls is counted in `reflex_aws_calls_total`.
//!
//! Two halves: the source of `src/aws/sdk.rs` shows every SDK request
//! going through the one `call` wrapper (as many wrapped calls as
//! `.send()`s), and running every operation against a closed port on
//! loopback, with telemetry's observer installed, shows each one in the
//! served metrics with the labels dashboards read. The ok outcome goes
//! through the same wrapper (see `telemetry::events` for a direct test).

use std::collections::BTreeSet;
use std::time::Duration;

use reflex::aws::sdk::{
    AutoScalingGroups, ClassicElb, CloudWatch, Ec2, Elbv2, Sns, SqsQueue, Ssm, S3,
};
use reflex::aws::timeouts::AwsTimeouts;
use reflex::aws::{
    Alarms, AutoScaling, CommandRequest, Commands, Datum, InstanceOp, Instances, LoadBalancers,
    MetricPublisher, Notifier, ObjectStore, Queue, Target, TargetGroups,
};

const SDK_FILE: &str = include_str!("../src/aws/sdk.rs");

/// `src/aws/sdk.rs` without its unit tests.
fn sdk_source() -> &'static str {
    SDK_FILE.split("#[cfg(test)]").next().unwrap_or(SDK_FILE)
}

/// The `(service, operation)` of every `call("service", "Operation", ...)`
/// in `src/aws/sdk.rs`.
fn wrapped_operations() -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = sdk_source();
    while let Some(at) = rest.find("call(") {
        rest = &rest[at + "call(".len()..];
        let mut literals = Vec::new();
        let mut s = rest;
        for _ in 0..2 {
            let t = s.trim_start();
            let Some(t) = t.strip_prefix('"') else { break };
            let Some(end) = t.find('"') else { break };
            literals.push(t[..end].to_string());
            s = t[end + 1..].trim_start().strip_prefix(',').unwrap_or("");
        }
        if let [service, operation] = literals.as_slice() {
            out.push((service.clone(), operation.clone()));
        }
    }
    out
}

#[test]
fn every_sdk_request_goes_through_the_counting_wrapper() {
    let wrapped = wrapped_operations();
    // Every request is sent by `send_with!`, which sets the call's
    // timeouts; the macro's own `.send()` is the only one in the file.
    assert_eq!(
        sdk_source().matches(".send()").count(),
        1,
        "an SDK request in src/aws/sdk.rs is sent without send_with! (and its timeouts)"
    );
    let sends = sdk_source().matches("send_with!(").count();
    assert!(sends > 0, "no send_with!( found in src/aws/sdk.rs");
    assert_eq!(
        wrapped.len(),
        sends,
        "src/aws/sdk.rs has {sends} SDK requests (send_with!) but {} wrapped in call(..): {wrapped:?}",
        wrapped.len()
    );
}

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap_or_else(|e| panic!("cannot bind a loopback port: {e}"));
    let port = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("no local address: {e}"))
        .port();
    drop(listener);
    port
}

fn count(text: &str, service: &str, operation: &str, outcome: &str) -> u64 {
    let series = format!(
        "reflex_aws_calls_total{{service=\"{service}\",operation=\"{operation}\",outcome=\"{outcome}\"}}"
    );
    text.lines()
        .find_map(|l| l.strip_prefix(series.as_str())?.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn every_operation_reflex_calls_is_counted() {
    reflex::telemetry::events::install();
    let endpoint = format!("http://127.0.0.1:{}", closed_port());
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(&endpoint)
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            "AKIDTEST", "secret", None, None, "test",
        ))
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .operation_timeout(Duration::from_secs(10))
                .build(),
        )
        .load()
        .await;
    let queue = SqsQueue::new(
        aws_sdk_sqs::Client::new(&config),
        format!("{endpoint}/123456789012/alarms"),
        AwsTimeouts::default(),
    );
    let elb = ClassicElb::new(
        aws_sdk_elasticloadbalancing::Client::new(&config),
        AwsTimeouts::default(),
    );
    let elbv2 = Elbv2::new(
        aws_sdk_elasticloadbalancingv2::Client::new(&config),
        AwsTimeouts::default(),
    );
    let ec2 = Ec2::new(aws_sdk_ec2::Client::new(&config), AwsTimeouts::default());
    let asg = AutoScalingGroups::new(
        aws_sdk_autoscaling::Client::new(&config),
        AwsTimeouts::default(),
    );
    let cloudwatch = CloudWatch::new(
        aws_sdk_cloudwatch::Client::new(&config),
        AwsTimeouts::default(),
    );
    let sns = Sns::new(aws_sdk_sns::Client::new(&config), AwsTimeouts::default());
    let ssm = Ssm::new(aws_sdk_ssm::Client::new(&config), AwsTimeouts::default());
    let s3 = S3::new(
        aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&config)
                .force_path_style(true)
                .build(),
        ),
        AwsTimeouts::default(),
    );
    let ids = vec!["i-0123456789abcdef0".to_string()];
    let before = reflex::telemetry::metrics().encode();

    // Every trait method of every SDK implementation, each one call.
    let mut failed = Vec::new();
    let mut expect_err = |name: &str, failed_call: bool| {
        if !failed_call {
            panic!("{name} succeeded against a closed port");
        }
        failed.push(name.to_string());
    };
    let wait = Duration::from_secs(1);
    expect_err("receive", queue.receive(1, wait, wait).await.is_err());
    expect_err("delete", queue.delete("rh").await.is_err());
    expect_err(
        "delete_batch",
        queue
            .delete_batch(&["rh1".into(), "rh2".into()])
            .await
            .iter()
            .all(Result::is_err),
    );
    expect_err(
        "change_visibility",
        queue.change_visibility("rh", wait).await.is_err(),
    );
    expect_err(
        "change_visibility_batch",
        queue
            .change_visibility_batch(&[("rh1".into(), wait), ("rh2".into(), wait)])
            .await
            .iter()
            .all(Result::is_err),
    );
    expect_err(
        "send",
        queue.send("body", &Default::default()).await.is_err(),
    );
    expect_err("ping", queue.ping().await.is_err());
    expect_err("instance_health", elb.instance_health("web").await.is_err());
    expect_err("deregister", elb.deregister("web", &ids).await.is_err());
    let tg = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/0123abcd";
    expect_err(
        "describe_target_group",
        elbv2.describe_target_group(tg).await.is_err(),
    );
    expect_err("target_health", elbv2.target_health(tg).await.is_err());
    let target = Target {
        id: ids[0].clone(),
        port: Some(80),
    };
    expect_err(
        "deregister_targets",
        elbv2.deregister_targets(tg, &[target]).await.is_err(),
    );
    expect_err("group_instances", asg.group_instances(&ids).await.is_err());
    expect_err(
        "groups",
        asg.groups(&["web-asg".to_string()]).await.is_err(),
    );
    expect_err(
        "set_unhealthy",
        asg.set_unhealthy(&ids[0], true).await.is_err(),
    );
    expect_err(
        "terminate_in_group",
        asg.terminate_in_group(&ids[0]).await.is_err(),
    );
    expect_err("describe", ec2.describe(&ids).await.is_err());
    for op in [InstanceOp::Terminate, InstanceOp::Reboot, InstanceOp::Stop] {
        expect_err("change", ec2.change(op, &ids, false).await.is_err());
    }
    expect_err(
        "alarm_state",
        cloudwatch.alarm_state("web-unhealthy").await.is_err(),
    );
    let datum = Datum {
        metric_name: "Acted".into(),
        value: 1.0,
        unit: None,
        dimensions: vec![],
    };
    expect_err(
        "put",
        cloudwatch.put("reflex-test", &[datum]).await.is_err(),
    );
    expect_err(
        "publish",
        sns.publish("arn:aws:sns:us-east-1:123456789012:t", "s", "m")
            .await
            .is_err(),
    );
    expect_err("managed", ssm.managed(&ids).await.is_err());
    let request = CommandRequest {
        instance_ids: ids.clone(),
        commands: vec!["true".into()],
        max_concurrency: "1".into(),
        max_errors: "0".into(),
        execution_timeout: Duration::from_secs(60),
        comment: "test".into(),
    };
    expect_err("send_command", ssm.send_command(&request).await.is_err());
    expect_err("invocation", ssm.invocation("cmd", &ids[0]).await.is_err());
    expect_err("list", s3.list("rules-bucket", "rules/").await.is_err());
    expect_err(
        "get",
        s3.get("rules-bucket", "rules/web.toml").await.is_err(),
    );
    assert_eq!(failed.len(), 28, "{failed:?}");

    let after = reflex::telemetry::metrics().encode();
    let wrapped = wrapped_operations();
    let distinct: BTreeSet<&(String, String)> = wrapped.iter().collect();
    assert_eq!(
        distinct.len(),
        28,
        "src/aws/sdk.rs calls operations this test does not run; add them above: {distinct:?}"
    );
    for (service, operation) in distinct {
        let was = count(&before, service, operation, "transient_error");
        let now = count(&after, service, operation, "transient_error");
        assert_eq!(
            now,
            was + 1,
            "{service}:{operation} was not counted once in reflex_aws_calls_total:\n{after}"
        );
    }
}
