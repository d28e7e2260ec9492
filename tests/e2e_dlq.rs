//! `reflex dlq inspect` and `reflex dlq redrive` end to end: the real binary
//! against a real moto server, one server per test. Messages are poisoned by
//! a real `reflex run` (or by SQS's own redrive policy), and every claim is
//! checked on the queues themselves: what is visible, what is in flight,
//! which bodies arrived where.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use aws_sdk_sqs::types::QueueAttributeName;
use serde_json::Value;

use support::{
    attribute, terminate_rule, AlarmDef, Aws, MotoServer, Pipeline, PipelineOptions, Reflex, World,
    ACCOUNT_ID, REGION, WAIT,
};

/// What one `reflex dlq ...` run printed.
struct Output(std::process::Output);

impl Output {
    /// stdout as the one JSON object `--json` prints.
    fn json(&self) -> Value {
        support::one_json(&self.0)
    }

    fn expect_code(self, code: i32) -> Self {
        assert_eq!(
            support::code(&self.0),
            code,
            "{}",
            support::describe(&self.0)
        );
        self
    }

    fn stdout(&self) -> String {
        support::stdout(&self.0)
    }
}

/// Runs `reflex dlq <args>` against moto and waits for it.
async fn dlq(moto: &MotoServer, args: &[&str]) -> Output {
    let args: Vec<&str> = std::iter::once("dlq").chain(args.iter().copied()).collect();
    Output(support::run_reflex_on(&moto.endpoint(), &args).await)
}

/// A `reflex.toml` naming the pipeline's queues, as an operator's would.
fn write_config(dir: &Path, pipeline: &Pipeline) -> String {
    let path = dir.join("reflex.toml");
    std::fs::write(
        &path,
        format!(
            "queue_url = \"{}\"\ndead_letter_queue_url = \"{}\"\n",
            pipeline.queue_url, pipeline.dlq_url
        ),
    )
    .expect("write reflex.toml");
    path.to_str().expect("a UTF-8 temp path").to_owned()
}

/// Visible messages (`ApproximateNumberOfMessages`): what another consumer
/// could receive right now. Inspecting must leave this unchanged.
async fn visible(aws: &Aws, queue_url: &str) -> u64 {
    aws.queue_attribute(queue_url, QueueAttributeName::ApproximateNumberOfMessages)
        .await
        .map_or(0, |v| v.parse().expect("a count"))
}

/// `code → count` of an inspection.
fn group_counts(inspection: &Value) -> BTreeMap<String, u64> {
    inspection["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .map(|g| {
            (
                g["code"].as_str().expect("code").to_owned(),
                g["count"].as_u64().expect("count"),
            )
        })
        .collect()
}

/// The standard `terminate_out_of_service` rule, no extra guards.
fn terminate() -> String {
    terminate_rule("", "", "")
}

// The issue's scenario: a config mistake poisons an alarm; the operator
// inspects the DLQ (consuming nothing), fixes the config, redrives, and the
// alarm is acted on as if it had just arrived.
#[tokio::test]
async fn a_poisoned_alarm_is_inspected_fixed_and_redriven() {
    let world = World::new("fix").await;
    let (moto, aws, pipeline) = (&world.moto, &world.aws, &world.pipeline);
    let fleet = world.fleet("web", 3, &[0]).await;
    let victim = fleet.instance_ids[0].clone();
    let alarm = world.elb_alarm("web").await;

    // The mistake: trusted_topic_arns names another topic than the alarms'.
    let wrong_topic = format!("arn:aws:sns:{REGION}:{ACCOUNT_ID}:fix-alarms-typo");
    let misconfigured = Pipeline {
        topic_arn: wrong_topic,
        ..pipeline.clone()
    };
    let reflex = Reflex::builder(&moto.endpoint(), &misconfigured)
        .rule("elb.toml", &terminate())
        .spawn();
    aws.publish_alarm(&pipeline.topic_arn, &alarm.notification("ALARM", "OK"))
        .await;
    let (aws_ref, dlq_url, queue_url) = (&aws, &pipeline.dlq_url, &pipeline.queue_url);
    reflex
        .wait_until(WAIT, "the alarm is dead-lettered", || async move {
            aws_ref.queue_depth(dlq_url).await == 1 && aws_ref.queue_depth(queue_url).await == 0
        })
        .await;
    reflex.sigterm();
    reflex.wait_exit(Duration::from_secs(15)).await;
    assert_eq!(
        aws.instance_states(std::slice::from_ref(&victim)).await[&victim],
        "stopped",
        "nothing acted on the untrusted alarm"
    );

    // Inspect: one group, the reason names the topic, and the message is
    // still there and visible: not consumed, not left hidden.
    let found = dlq(moto, &["inspect", "--json", "--dlq-url", dlq_url])
        .await
        .expect_code(0)
        .json();
    assert_eq!(found["scanned"], 1, "{found:#}");
    assert_eq!(found["complete"], true, "{found:#}");
    assert_eq!(
        group_counts(&found),
        BTreeMap::from([("untrusted_topic".to_owned(), 1)])
    );
    let sample = &found["groups"][0]["samples"][0];
    assert!(
        sample["reason"]
            .as_str()
            .unwrap_or_default()
            .contains(&pipeline.topic_arn),
        "{sample:#}"
    );
    assert_eq!(sample["source_queue_url"], pipeline.queue_url.as_str());
    assert_eq!(aws.queue_depth(dlq_url).await, 1);
    assert_eq!(visible(aws, dlq_url).await, 1, "inspect released it");

    // The text form says the same to a person.
    let text = dlq(moto, &["inspect", "--dlq-url", dlq_url])
        .await
        .expect_code(0);
    assert!(
        text.stdout().contains("untrusted_topic: 1 message(s)"),
        "{}",
        text.stdout()
    );
    assert_eq!(visible(aws, dlq_url).await, 1);

    // The fix: trust the alarm topic, restart.
    let reflex = Reflex::builder(&moto.endpoint(), pipeline)
        .rule("elb.toml", &terminate())
        .spawn();
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(dir.path(), pipeline);

    // A dry run moves nothing.
    let dry = dlq(
        moto,
        &[
            "redrive",
            "--config",
            &config,
            "--code",
            "untrusted_topic",
            "--dry-run",
            "--json",
        ],
    )
    .await
    .expect_code(0)
    .json();
    assert_eq!((&dry["selected"], &dry["moved"]), (&1.into(), &0.into()));
    assert_eq!(visible(aws, dlq_url).await, 1, "dry run released it");
    assert_eq!(aws.queue_depth(queue_url).await, 0);

    let moved = dlq(
        moto,
        &[
            "redrive",
            "--config",
            &config,
            "--code",
            "untrusted_topic",
            "--json",
        ],
    )
    .await
    .expect_code(0)
    .json();
    assert_eq!(moved["moved"], 1, "{moved:#}");
    assert_eq!(moved["failed"], 0, "{moved:#}");

    let id = &victim;
    reflex
        .wait_until(
            WAIT,
            "the redriven alarm terminates the instance",
            || async move {
                aws_ref.instance_states(std::slice::from_ref(id)).await[id] == "terminated"
            },
        )
        .await;
    reflex
        .wait_until(WAIT, "both queues are empty", || async move {
            aws_ref.queue_depth(queue_url).await == 0 && aws_ref.queue_depth(dlq_url).await == 0
        })
        .await;
    let states = aws.instance_states(&fleet.instance_ids).await;
    for other in &fleet.instance_ids[1..] {
        assert_eq!(states[other], "running", "{states:?}");
    }
    reflex.shutdown_cleanly().await;
}

// `--code` moves only what it names, bodies byte for byte; a dry run changes
// nothing; messages SQS dead-lettered itself (maxReceiveCount) are the
// `max_receive_count` group, and are refused: they carry no SourceQueueUrl,
// and nothing without one is laundered into the alarm queue.
#[tokio::test]
async fn redrive_by_code_moves_only_that_code_with_the_body_intact() {
    let options = PipelineOptions {
        max_receive_count: 2,
        ..PipelineOptions::default()
    };
    let world = World::with_options("codes", options).await;
    let (moto, aws, pipeline) = (&world.moto, &world.aws, &world.pipeline);
    let (queue_url, dlq_url) = (&pipeline.queue_url, &pipeline.dlq_url);
    let not_json = "this is {not JSON";
    for body in [not_json, r#"{"hello":"world"}"#] {
        aws.sqs
            .send_message()
            .queue_url(queue_url)
            .message_body(body)
            .send()
            .await
            .expect("SendMessage");
    }
    let reflex = Reflex::builder(&moto.endpoint(), pipeline)
        .rule("elb.toml", &terminate())
        .spawn();
    let aws_ref = &aws;
    reflex
        .wait_until(WAIT, "both are dead-lettered", || async move {
            aws_ref.queue_depth(dlq_url).await == 2 && aws_ref.queue_depth(queue_url).await == 0
        })
        .await;
    reflex.shutdown_cleanly().await;

    // A consumer that keeps failing: SQS moves the alarm to the DLQ on the
    // receive after the second, with no reason attributes.
    let alarm = AlarmDef::elb_unhealthy_hosts("web-unhealthy-hosts", "web");
    aws.publish_alarm(&pipeline.topic_arn, &alarm.notification("ALARM", "OK"))
        .await;
    support::wait_until(WAIT, "the alarm reaches the queue", || async move {
        aws_ref.queue_depth(queue_url).await == 1
    })
    .await;
    // Receive until SQS gives up on it. (Not a fixed count: a long poll the
    // daemon sent just before it exited may still take the message once,
    // and that receive counts too.)
    let mut envelope = None;
    let deadline = tokio::time::Instant::now() + WAIT;
    while aws.queue_depth(dlq_url).await < 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "SQS never dead-lettered the alarm"
        );
        let out = aws
            .sqs
            .receive_message()
            .queue_url(queue_url)
            .visibility_timeout(0)
            .wait_time_seconds(1)
            .send()
            .await
            .expect("ReceiveMessage");
        if let Some(m) = out.messages().first() {
            envelope = m.body().map(str::to_owned);
        }
    }
    let envelope = envelope.expect("the alarm was received");
    assert_eq!(aws.queue_depth(dlq_url).await, 3);

    let found = dlq(moto, &["inspect", "--json", "--dlq-url", dlq_url])
        .await
        .expect_code(0)
        .json();
    assert_eq!(
        group_counts(&found),
        BTreeMap::from([
            ("max_receive_count".to_owned(), 1),
            ("not_json".to_owned(), 1),
            ("unrecognised_shape".to_owned(), 1),
        ]),
        "{found:#}"
    );
    assert_eq!(visible(aws, dlq_url).await, 3);

    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(dir.path(), pipeline);

    // Dry run of everything: reports the two reflex dead-lettered (the
    // third has no SourceQueueUrl: refused), moves none, hides none.
    let dry = dlq(
        moto,
        &["redrive", "--config", &config, "--dry-run", "--json"],
    )
    .await
    .expect_code(0)
    .json();
    assert_eq!(dry["selected"], 2, "{dry:#}");
    assert_eq!(dry["refused"], 1, "{dry:#}");
    assert_eq!(dry["moved"], 0, "{dry:#}");
    assert_eq!(visible(aws, dlq_url).await, 3);
    assert_eq!(aws.queue_depth(queue_url).await, 0);

    // One code: exactly that message moves, byte for byte.
    let moved = dlq(
        moto,
        &[
            "redrive", "--config", &config, "--code", "not_json", "--json",
        ],
    )
    .await
    .expect_code(0)
    .json();
    assert_eq!(
        (&moved["received"], &moved["moved"], &moved["skipped"]),
        (&3.into(), &1.into(), &2.into()),
        "{moved:#}"
    );
    assert_eq!(aws.queue_depth(dlq_url).await, 2);
    assert_eq!(visible(aws, dlq_url).await, 2, "the others were released");
    let arrived = aws.receive_all(queue_url).await;
    assert_eq!(arrived.len(), 1, "{arrived:#?}");
    assert_eq!(arrived[0].body(), Some(not_json));
    assert_eq!(
        attribute(&arrived[0], "RedrivenFrom").as_deref(),
        Some(dlq_url.as_str())
    );
    assert_eq!(attribute(&arrived[0], "ReasonCode"), None);

    // The SQS-dead-lettered alarm, by its group name, with flags only:
    // refused, and left where it is.
    let moved = dlq(
        moto,
        &[
            "redrive",
            "--dlq-url",
            dlq_url,
            "--queue-url",
            queue_url,
            "--code",
            "max_receive_count",
            "--json",
        ],
    )
    .await
    .expect_code(0)
    .json();
    assert_eq!(
        (&moved["moved"], &moved["refused"]),
        (&0.into(), &1.into()),
        "{moved:#}"
    );
    assert!(aws.receive_all(queue_url).await.is_empty());

    let left = aws.receive_all(dlq_url).await;
    let mut codes: Vec<Option<String>> = left.iter().map(|m| attribute(m, "ReasonCode")).collect();
    codes.sort();
    assert_eq!(codes, [None, Some("unrecognised_shape".to_owned())]);
    let sqs_moved = left.iter().find(|m| attribute(m, "ReasonCode").is_none());
    assert_eq!(sqs_moved.and_then(|m| m.body()), Some(envelope.as_str()));
}

// Without --to, a message reflex took from another queue is refused: left in
// the DLQ, visible, and the run still succeeds. With --to it moves.
#[tokio::test]
async fn messages_from_another_queue_need_to() {
    let world = World::new("source").await;
    let (moto, aws, pipeline) = (&world.moto, &world.aws, &world.pipeline);
    let (queue_url, dlq_url) = (&pipeline.queue_url, &pipeline.dlq_url);
    aws.sqs
        .send_message()
        .queue_url(queue_url)
        .message_body("not json at all")
        .send()
        .await
        .expect("SendMessage");
    let reflex = Reflex::builder(&moto.endpoint(), pipeline)
        .rule("elb.toml", &terminate())
        .spawn();
    let aws_ref = &aws;
    reflex
        .wait_until(WAIT, "it is dead-lettered", || async move {
            aws_ref.queue_depth(dlq_url).await == 1
        })
        .await;
    reflex.shutdown_cleanly().await;

    let other = &pipeline.notify_queue_url;
    let refused = dlq(
        moto,
        &[
            "redrive",
            "--dlq-url",
            dlq_url,
            "--queue-url",
            other,
            "--json",
        ],
    )
    .await
    .expect_code(0)
    .json();
    assert_eq!(
        (&refused["refused"], &refused["moved"]),
        (&1.into(), &0.into())
    );
    assert_eq!(visible(aws, dlq_url).await, 1);

    let text = dlq(moto, &["redrive", "--dlq-url", dlq_url, "--to", other])
        .await
        .expect_code(0);
    assert!(text.stdout().contains(", moved 1,"), "{}", text.stdout());
    assert_eq!(aws.queue_depth(dlq_url).await, 0);
    let arrived = aws.receive_all(other).await;
    assert_eq!(arrived.len(), 1);
    assert_eq!(arrived[0].body(), Some("not json at all"));
}
