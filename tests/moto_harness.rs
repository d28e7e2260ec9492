//! Proves the end-to-end harness in `tests/support` and pins the moto
//! behaviours reflex's end-to-end tests rely on. If one of these fails after
//! a moto upgrade, the E2E tests built on it are no longer telling the truth.

mod support;

use std::time::Duration;

use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use serde_json::Value;

use support::{AlarmDef, MotoEnv, MotoServer, PipelineOptions, ACCOUNT_ID, AMI_ID, MANAGED_TAG};

const WAIT: Duration = Duration::from_secs(10);

fn ids(fleet: &support::Fleet) -> Vec<String> {
    fleet.instance_ids.clone()
}

#[tokio::test]
async fn elb_reports_only_the_stopped_instance_out_of_service() {
    let moto = MotoServer::start();
    let aws = moto.aws().await;

    let images = aws
        .ec2
        .describe_images()
        .image_ids(AMI_ID)
        .send()
        .await
        .expect("DescribeImages");
    assert_eq!(
        images.images().len(),
        1,
        "{AMI_ID} is no longer one of moto's default AMIs"
    );

    let fleet = aws.create_fleet("web", 4, &[("team", "web")]).await;
    assert_eq!(fleet.instance_ids.len(), 4);
    assert_eq!(aws.elb_instances("web").await.len(), 4);
    for (id, tags) in aws.instance_tags(&ids(&fleet)).await {
        assert_eq!(
            tags.get(MANAGED_TAG.0).map(String::as_str),
            Some(MANAGED_TAG.1),
            "{id}: {tags:?}"
        );
        assert_eq!(
            tags.get("team").map(String::as_str),
            Some("web"),
            "{id}: {tags:?}"
        );
    }
    let health = aws.elb_health("web").await;
    assert_eq!(health.len(), 4);
    assert!(health.values().all(|s| s == "InService"), "{health:?}");

    let victim = fleet.instance_ids[2].clone();
    aws.stop_instances(std::slice::from_ref(&victim)).await;

    // moto stops at once: no "stopping" phase to wait through.
    assert_eq!(
        aws.instance_states(std::slice::from_ref(&victim)).await[&victim],
        "stopped"
    );
    let health = aws.elb_health("web").await;
    assert_eq!(health.len(), 4, "{health:?}");
    for id in &fleet.instance_ids {
        let expected = if *id == victim {
            "OutOfService"
        } else {
            "InService"
        };
        assert_eq!(health[id], expected, "{id} in {health:?}");
    }
    let tagged = aws.instances_with_tag("team", "web", "running").await;
    assert_eq!(tagged.len(), 3, "{tagged:?}");
    assert!(!tagged.contains(&victim));
}

#[tokio::test]
async fn topic_delivers_an_sns_envelope_carrying_the_alarm_json() {
    let moto = MotoServer::start();
    let aws = moto.aws().await;
    let pipeline = aws.create_pipeline("envelope").await;
    let alarm =
        AlarmDef::elb_unhealthy_hosts("web-unhealthy", "web").notifying(&pipeline.topic_arn);
    let notification = alarm.notification("ALARM", "OK");

    let sns_message_id = aws.publish_alarm(&pipeline.topic_arn, &notification).await;

    let messages = aws.wait_for_messages(&pipeline.queue_url, 1, WAIT).await;
    assert_eq!(messages.len(), 1);
    let body: Value =
        serde_json::from_str(messages[0].body().expect("body")).expect("body is JSON");
    assert_eq!(body["Type"], "Notification");
    assert_eq!(body["MessageId"], sns_message_id.as_str());
    assert_eq!(body["TopicArn"], pipeline.topic_arn.as_str());
    assert_eq!(
        body["Subject"],
        "ALARM: \"web-unhealthy\" in US East (N. Virginia)"
    );
    // The Message is the published string, byte for byte, not re-encoded.
    assert_eq!(body["Message"], notification.to_string().as_str());
    let inner: Value = serde_json::from_str(body["Message"].as_str().unwrap()).unwrap();
    assert_eq!(inner, notification);
    assert_eq!(inner["AWSAccountId"], ACCOUNT_ID);
    assert_eq!(
        inner["AlarmArn"],
        format!("arn:aws:cloudwatch:us-east-1:{ACCOUNT_ID}:alarm:web-unhealthy")
    );
    assert_eq!(
        inner["Trigger"]["Dimensions"][0]["name"],
        "LoadBalancerName"
    );
    assert_eq!(inner["Trigger"]["Dimensions"][0]["value"], "web");
    assert_eq!(inner["Trigger"]["Statistic"], "MAXIMUM");
    assert!(inner["Trigger"]["Unit"].is_null());
    let stamp = inner["StateChangeTime"].as_str().unwrap();
    assert!(
        chrono::DateTime::parse_from_str(stamp, "%Y-%m-%dT%H:%M:%S%.3f%z").is_ok()
            && stamp.ends_with("+0000"),
        "{stamp}"
    );
    assert_eq!(
        aws.queue_depth(&pipeline.notify_queue_url).await,
        0,
        "alarm topic leaked into notify queue"
    );

    // reflex's own decoder accepts what the harness produces.
    let event = reflex::event::decode(messages[0].body().unwrap().as_bytes())
        .expect("reflex decodes the envelope");
    assert_eq!(event.alarm_name, "web-unhealthy");
    assert_eq!(event.new_state, reflex::event::AlarmState::Alarm);
    assert_eq!(event.dimension("LoadBalancerName"), Some("web"));
    assert_eq!(
        event.sns_message_id.as_deref(),
        Some(sns_message_id.as_str())
    );
    assert_eq!(event.region.as_deref(), Some("us-east-1"));

    // The notify topic has its own subscribed queue.
    aws.sns
        .publish()
        .topic_arn(&pipeline.notify_topic_arn)
        .message("remediated")
        .send()
        .await
        .expect("publish to notify topic");
    let notified = aws
        .wait_for_messages(&pipeline.notify_queue_url, 1, WAIT)
        .await;
    let body: Value = serde_json::from_str(notified[0].body().unwrap()).unwrap();
    assert_eq!(body["Message"], "remediated");
    assert_eq!(body["TopicArn"], pipeline.notify_topic_arn.as_str());
}

#[tokio::test]
async fn redrive_moves_a_message_to_the_dlq_after_max_receive_count() {
    let moto = MotoServer::start();
    let aws = moto.aws().await;
    let options = PipelineOptions {
        max_receive_count: 3,
        ..PipelineOptions::default()
    };
    let pipeline = aws.create_pipeline_with("redrive", options).await;
    let policy = aws
        .queue_attribute(&pipeline.queue_url, QueueAttributeName::RedrivePolicy)
        .await
        .unwrap();
    let policy: Value = serde_json::from_str(&policy).unwrap();
    assert_eq!(policy["deadLetterTargetArn"], pipeline.dlq_arn.as_str());
    assert_eq!(policy["maxReceiveCount"].to_string().trim_matches('"'), "3");

    let notification = AlarmDef::elb_unhealthy_hosts("poison", "web").notification("ALARM", "OK");
    aws.publish_alarm(&pipeline.topic_arn, &notification).await;
    let (aws_ref, queue_url) = (&aws, &pipeline.queue_url);
    support::wait_until(WAIT, "the alarm reaches the queue", || async move {
        aws_ref.queue_depth(queue_url).await == 1
    })
    .await;

    // Receive and "fail" (visibility 0, no delete) as a crashing consumer would.
    let receive = || {
        aws.sqs
            .receive_message()
            .queue_url(&pipeline.queue_url)
            .visibility_timeout(0)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
    };
    let mut first_id = None;
    for attempt in 1..=3 {
        let out = receive().await.expect("ReceiveMessage");
        let message = &out.messages()[0];
        let count = message.attributes().unwrap()
            [&MessageSystemAttributeName::ApproximateReceiveCount]
            .clone();
        assert_eq!(count, attempt.to_string());
        first_id.get_or_insert_with(|| message.message_id().unwrap().to_owned());
    }
    assert_eq!(
        aws.queue_depth(&pipeline.dlq_url).await,
        0,
        "moved before the limit was exceeded"
    );

    // moto moves the message during the receive that would exceed the limit,
    // and that receive returns nothing.
    let out = receive().await.expect("ReceiveMessage");
    assert!(out.messages().is_empty(), "{out:?}");
    assert_eq!(aws.queue_depth(&pipeline.queue_url).await, 0);
    assert_eq!(aws.queue_depth(&pipeline.dlq_url).await, 1);

    let dead = aws.receive_all(&pipeline.dlq_url).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(
        dead[0].message_id(),
        first_id.as_deref(),
        "the DLQ keeps the message id"
    );
    let body: Value = serde_json::from_str(dead[0].body().unwrap()).unwrap();
    assert_eq!(body["Type"], "Notification");
    assert_eq!(body["Message"], notification.to_string().as_str());
    // The count includes the receive that triggered the move; moto adds no
    // DeadLetterQueueSourceArn attribute.
    let attributes = dead[0].attributes().unwrap();
    assert_eq!(
        attributes[&MessageSystemAttributeName::ApproximateReceiveCount],
        "4"
    );
    assert!(
        !attributes.contains_key(&MessageSystemAttributeName::DeadLetterQueueSourceArn),
        "{attributes:?}"
    );
}

#[tokio::test]
async fn server_restarts_on_the_same_port_with_empty_state() {
    let mut moto = MotoServer::start();
    let endpoint = moto.endpoint();
    let aws = moto.aws().await;
    let (url, _) = aws.create_queue("survivor", &[]).await;

    moto.stop();
    assert!(!moto.is_running());
    assert!(
        aws.sqs.list_queues().send().await.is_err(),
        "a stopped server still answered"
    );

    moto.restart();
    assert_eq!(moto.endpoint(), endpoint);
    assert!(moto.is_running());
    // The same clients work again, but moto forgot everything.
    let queues = aws
        .sqs
        .list_queues()
        .send()
        .await
        .expect("ListQueues after restart");
    assert!(
        queues.queue_urls().is_empty(),
        "state survived a restart: {queues:?}"
    );
    let (again, _) = aws.create_queue("survivor", &[]).await;
    assert_eq!(again, url, "recreated queue has the same URL");

    // Pausing keeps state: a request sent while paused waits, then succeeds.
    moto.pause();
    let sqs = aws.sqs.clone();
    let pending = tokio::spawn(async move { sqs.list_queues().send().await });
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!pending.is_finished(), "a paused server answered");
    moto.resume();
    let queues = pending.await.unwrap().expect("ListQueues after resume");
    assert_eq!(queues.queue_urls(), std::slice::from_ref(&url));

    let logs = moto.logs();
    assert_eq!(
        logs.matches("reflex harness: starting moto").count(),
        2,
        "{logs}"
    );
}

#[tokio::test]
async fn describe_alarms_reflects_set_alarm_state() {
    let moto = MotoServer::start();
    let aws = moto.aws().await;
    let alarm = AlarmDef::elb_unhealthy_hosts("web-unhealthy", "web");

    assert_eq!(aws.alarm_state("web-unhealthy").await, None);
    aws.put_metric_alarm(&alarm, "OK").await;
    assert_eq!(
        aws.alarm_state("web-unhealthy").await.as_deref(),
        Some("OK")
    );
    aws.set_alarm_state("web-unhealthy", "ALARM").await;
    assert_eq!(
        aws.alarm_state("web-unhealthy").await.as_deref(),
        Some("ALARM")
    );

    let described = aws
        .cloudwatch
        .describe_alarms()
        .alarm_names("web-unhealthy")
        .send()
        .await
        .unwrap();
    let described = &described.metric_alarms()[0];
    assert_eq!(described.alarm_arn(), Some(alarm.arn().as_str()));
    assert_eq!(described.namespace(), Some("AWS/ELB"));
    assert_eq!(described.metric_name(), Some("UnHealthyHostCount"));
    let dimension = &described.dimensions()[0];
    assert_eq!(
        (dimension.name(), dimension.value()),
        (Some("LoadBalancerName"), Some("web"))
    );

    let in_alarm = aws
        .cloudwatch
        .describe_alarms()
        .state_value(aws_sdk_cloudwatch::types::StateValue::Alarm)
        .send()
        .await
        .unwrap();
    assert_eq!(in_alarm.metric_alarms().len(), 1);

    aws.set_alarm_state("web-unhealthy", "OK").await;
    assert_eq!(
        aws.alarm_state("web-unhealthy").await.as_deref(),
        Some("OK")
    );
}

#[tokio::test]
async fn terminated_instance_stays_registered_and_out_of_service() {
    let moto = MotoServer::start();
    let aws = moto.aws().await;
    let fleet = aws.create_fleet("api", 3, &[]).await;
    let victim = fleet.instance_ids[0].clone();

    aws.terminate_instances(std::slice::from_ref(&victim)).await;

    // moto skips "shutting-down": the instance is terminated at once.
    let states = aws.instance_states(&ids(&fleet)).await;
    assert_eq!(states[&victim], "terminated");
    assert_eq!(
        states.values().filter(|s| *s == "running").count(),
        2,
        "{states:?}"
    );
    // Real AWS deregisters terminated instances from a classic ELB; moto
    // keeps them registered and reports them OutOfService for good, so a
    // rule counting OutOfService instances keeps seeing them.
    assert!(aws.elb_instances("api").await.contains(&victim));
    let health = aws.elb_health("api").await;
    assert_eq!(health.len(), 3, "{health:?}");
    assert_eq!(health[&victim], "OutOfService");
    assert_eq!(
        health.values().filter(|s| *s == "InService").count(),
        2,
        "{health:?}"
    );
}

#[test]
fn env_points_a_child_at_moto_only() {
    let mut command = std::process::Command::new("env");
    command
        .env("AWS_PROFILE", "production")
        .env("AWS_SESSION_TOKEN", "real")
        .moto_env("http://127.0.0.1:1");
    let output = command.output().expect("run env(1)");
    let printed = String::from_utf8(output.stdout).unwrap();
    for line in [
        "AWS_ENDPOINT_URL=http://127.0.0.1:1",
        "AWS_REGION=us-east-1",
        "AWS_ACCESS_KEY_ID=testing",
        "AWS_SECRET_ACCESS_KEY=testing",
        "AWS_EC2_METADATA_DISABLED=true",
    ] {
        assert!(
            printed.lines().any(|l| l == line),
            "missing {line} in:\n{printed}"
        );
    }
    assert!(!printed.contains("AWS_PROFILE="), "{printed}");
    assert!(!printed.contains("AWS_SESSION_TOKEN="), "{printed}");
}
