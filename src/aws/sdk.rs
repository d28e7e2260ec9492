//! The real effects, over the AWS SDK. Credentials, region and endpoint come
//! from the standard chain (`AWS_REGION`, `AWS_ENDPOINT_URL`, profiles, ECS
//! task roles...), so an emulator needs no special code path.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use aws_config::stalled_stream_protection::StalledStreamProtectionConfig;
use aws_sdk_sqs::config::http::HttpResponse;
use aws_sdk_sqs::error::ProvideErrorMetadata;
use aws_sdk_sqs::error::SdkError;
use aws_sdk_sqs::operation::RequestId;
use chrono::{DateTime, TimeZone, Utc};

use super::hedge::{hedged, Hedge};
use super::observe::{self, AwsCallFinished, CallOutcome};
use super::timeouts::{AwsTimeouts, CallKind, CallLimits, SdkCallConfig, DEADLINE_SLACK};
use super::{
    Alarms, AutoScaling, AutoScalingGroup, AwsError, CommandRequest, Commands, Datum,
    GroupInstance, HealthState, InstanceHealth, InstanceInfo, InstanceOp, InstanceState, Instances,
    Invocation, InvocationStatus, LoadBalancers, ManagedInstance, MetricPublisher, Notifier,
    ObjectBody, ObjectEntry, ObjectStore, Queue, QueueMessage, Target, TargetGroupInfo,
    TargetGroups, TargetHealth, TargetState, TargetType,
};
use crate::event::AlarmState;
use crate::fleet::RUN_SHELL_SCRIPT;

/// AWS error codes after which a retry can succeed.
const TRANSIENT_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottled",
    "RequestThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "SlowDown",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "InternalError",
    "InternalFailure",
    "InternalServiceError",
    "RequestTimeout",
    "RequestTimeoutException",
    "RequestExpired",
    "PriorRequestNotComplete",
    "IDPCommunicationError",
    "EC2ThrottledException",
    "KMS.ThrottlingException",
];

/// Turns an SDK error into an [`AwsError`] that says whether to retry.
pub fn classify<E>(
    service: &'static str,
    operation: &'static str,
    err: SdkError<E, HttpResponse>,
) -> AwsError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let status = err.raw_response().map(|r| r.status().as_u16());
    let code = err.code().map(str::to_string);
    let request_id = err
        .raw_response()
        .and_then(|r| {
            r.headers()
                .get("x-amzn-requestid")
                .or_else(|| r.headers().get("x-amz-request-id"))
        })
        .map(str::to_string);
    let timed_out = matches!(err, SdkError::TimeoutError(_));
    let transient = match &err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ConstructionFailure(_) => false,
        _ => {
            status.is_some_and(|s| s >= 500 || s == 429)
                || code
                    .as_deref()
                    .is_some_and(|c| TRANSIENT_CODES.contains(&c))
        }
    };
    let message = match err.message() {
        Some(m) => m.to_string(),
        None => aws_smithy_types::error::display::DisplayErrorContext(&err).to_string(),
    };
    AwsError {
        service,
        operation,
        transient,
        code,
        message,
        request_id,
        timed_out,
    }
}

/// The one way reflex calls AWS: sends the request `send` builds with this
/// call's timeouts in force (the SDK retries a timed-out attempt as
/// transient), hedges it when it is a read or queue call that has not
/// answered in time ([`super::hedge`]), bounds the whole call by the operation deadline,
/// times it, classifies its error, and reports an [`AwsCallFinished`] to
/// the installed observer — success or failure alike, so no operation can
/// go uncounted.
async fn call<T, E, F>(
    service: &'static str,
    operation: &'static str,
    timeouts: &AwsTimeouts,
    limits: CallLimits,
    send: impl Fn(SdkCallConfig) -> F,
) -> Result<T, AwsError>
where
    F: Future<Output = Result<T, SdkError<E, HttpResponse>>>,
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let started = tokio::time::Instant::now();
    let deadline = limits.operation + DEADLINE_SLACK;
    // A hedge gets what is left of the operation deadline, so the call
    // still ends within it.
    let requests = hedged(limits.hedge_after, || {
        let left = limits.operation.saturating_sub(started.elapsed());
        send(timeouts.sdk(CallLimits {
            operation: left.max(Duration::from_millis(1)),
            ..limits
        }))
    });
    let (result, hedge) = match tokio::time::timeout(deadline, requests).await {
        Ok((r, hedge)) => (r.map_err(|e| classify(service, operation, e)), hedge),
        Err(_) => (
            Err(AwsError::timeout(service, operation, deadline)),
            Hedge::NotSent,
        ),
    };
    let (outcome, code) = match &result {
        Ok(_) => (CallOutcome::Ok, None),
        Err(e) => (CallOutcome::of_error(e), e.code.clone()),
    };
    observe::report(&AwsCallFinished {
        service,
        operation,
        outcome,
        code,
        elapsed: started.elapsed(),
        hedge,
    });
    result
}

/// `send()` with `timeouts` (an SDK `TimeoutConfig`) overriding the
/// client's for this one call.
macro_rules! send_with {
    ($service:ident, $request:expr, $timeouts:expr) => {
        $request
            .customize()
            .config_override(
                $service::Config::builder()
                    .timeout_config($timeouts.timeout)
                    .retry_config($timeouts.retry),
            )
            .send()
    };
}

/// Every client reflex uses, built from one shared AWS configuration.
#[derive(Clone, Debug)]
pub struct Clients {
    pub sqs: aws_sdk_sqs::Client,
    pub sns: aws_sdk_sns::Client,
    pub cloudwatch: aws_sdk_cloudwatch::Client,
    pub ec2: aws_sdk_ec2::Client,
    pub elb: aws_sdk_elasticloadbalancing::Client,
    pub elbv2: aws_sdk_elasticloadbalancingv2::Client,
    pub autoscaling: aws_sdk_autoscaling::Client,
    pub ssm: aws_sdk_ssm::Client,
    pub s3: aws_sdk_s3::Client,
    /// The chain's credentials, for the few requests that are not SDK
    /// calls (a signing certificate from an overridden SNS endpoint).
    pub credentials: Option<aws_credential_types::provider::SharedCredentialsProvider>,
}

impl Clients {
    /// Loads the standard AWS configuration chain. Every call reflex makes
    /// through [`call`] sets its own timeouts; the clients' own (the
    /// writes') apply to anything else built on them.
    pub async fn from_env(timeouts: &AwsTimeouts) -> Clients {
        let timeouts = timeouts.sdk(timeouts.write).timeout;
        let config = sdk_defaults().timeout_config(timeouts).load().await;
        Clients {
            sqs: aws_sdk_sqs::Client::new(&config),
            sns: aws_sdk_sns::Client::new(&config),
            cloudwatch: aws_sdk_cloudwatch::Client::new(&config),
            ec2: aws_sdk_ec2::Client::new(&config),
            elb: aws_sdk_elasticloadbalancing::Client::new(&config),
            elbv2: aws_sdk_elasticloadbalancingv2::Client::new(&config),
            autoscaling: aws_sdk_autoscaling::Client::new(&config),
            ssm: aws_sdk_ssm::Client::new(&config),
            s3: aws_sdk_s3::Client::from_conf(
                aws_sdk_s3::config::Builder::from(&config)
                    // An emulator behind an overridden endpoint (moto) has
                    // one host name: the bucket goes in the path, not in it.
                    .force_path_style(endpoint_overridden("S3"))
                    .build(),
            ),
            credentials: config.credentials_provider(),
        }
    }
}

/// The standard configuration chain, for every SDK client reflex builds.
///
/// The SDK's stalled-upload protection is off: it re-checks a request's
/// upload rate every 100 ms for as long as the reply is outstanding, so a
/// 20-second long poll woke the process ten times a second while idle. It
/// guards large uploads; reflex's requests are small, and each call has its
/// own attempt and operation timeouts ([`call`]). Download protection (a
/// reply body that stops arriving) stays on.
pub fn sdk_defaults() -> aws_config::ConfigLoader {
    aws_config::defaults(aws_config::BehaviorVersion::latest()).stalled_stream_protection(
        StalledStreamProtectionConfig::enabled()
            .upload_enabled(false)
            .build(),
    )
}

/// Whether `AWS_ENDPOINT_URL` or `AWS_ENDPOINT_URL_<SERVICE>` is set.
fn endpoint_overridden(service: &str) -> bool {
    std::env::var_os("AWS_ENDPOINT_URL").is_some()
        || std::env::var_os(format!("AWS_ENDPOINT_URL_{service}")).is_some()
}

fn smithy_time(t: &aws_smithy_types::DateTime) -> Option<DateTime<Utc>> {
    Utc.timestamp_opt(t.secs(), t.subsec_nanos()).single()
}

fn millis_time(ms: &str) -> Option<DateTime<Utc>> {
    ms.parse::<i64>()
        .ok()
        .and_then(|ms| Utc.timestamp_millis_opt(ms).single())
}

/// One result per entry of an SQS batch call (entry ids are their
/// indexes). An entry neither reported ok nor failed is taken as failed:
/// the message comes back, nothing is lost.
fn batch_results<'a>(
    operation: &'static str,
    entries: usize,
    successful: impl Iterator<Item = &'a str>,
    failed: &[aws_sdk_sqs::types::BatchResultErrorEntry],
) -> Vec<Result<(), AwsError>> {
    let mut results: Vec<Result<(), AwsError>> = (0..entries)
        .map(|_| {
            Err(AwsError::transient(
                "sqs",
                operation,
                "entry missing from the response",
            ))
        })
        .collect();
    for id in successful {
        if let Some(r) = id.parse::<usize>().ok().and_then(|i| results.get_mut(i)) {
            *r = Ok(());
        }
    }
    for failed in failed {
        if let Some(r) = failed
            .id()
            .parse::<usize>()
            .ok()
            .and_then(|i| results.get_mut(i))
        {
            *r = Err(AwsError {
                service: "sqs",
                operation,
                // A sender fault (a stale receipt handle) will not get
                // better; anything else may.
                transient: !failed.sender_fault(),
                code: Some(failed.code().to_string()),
                message: failed.message().unwrap_or_default().to_string(),
                request_id: None,
                timed_out: false,
            });
        }
    }
    results
}

/// An SQS queue.
#[derive(Clone, Debug)]
pub struct SqsQueue {
    client: aws_sdk_sqs::Client,
    url: String,
    timeouts: AwsTimeouts,
}

impl SqsQueue {
    pub fn new(client: aws_sdk_sqs::Client, url: impl Into<String>, timeouts: AwsTimeouts) -> Self {
        SqsQueue {
            client,
            url: url.into(),
            timeouts,
        }
    }
}

fn secs_i32(d: Duration) -> i32 {
    i32::try_from(d.as_secs()).unwrap_or(i32::MAX)
}

#[async_trait]
impl Queue for SqsQueue {
    async fn receive(
        &self,
        max: u8,
        wait: Duration,
        visibility: Duration,
    ) -> Result<Vec<QueueMessage>, AwsError> {
        use aws_sdk_sqs::types::MessageSystemAttributeName as A;
        let out = call(
            "sqs",
            "ReceiveMessage",
            &self.timeouts,
            self.timeouts.limits(CallKind::Receive, wait),
            |t| {
                send_with!(
                    aws_sdk_sqs,
                    self.client
                        .receive_message()
                        .queue_url(&self.url)
                        .max_number_of_messages(i32::from(max.clamp(1, 10)))
                        .wait_time_seconds(secs_i32(wait).min(20))
                        .visibility_timeout(secs_i32(visibility))
                        .message_system_attribute_names(A::ApproximateReceiveCount)
                        .message_system_attribute_names(A::SentTimestamp)
                        .message_system_attribute_names(A::ApproximateFirstReceiveTimestamp)
                        .message_attribute_names("All"),
                    t
                )
            },
        )
        .await?;
        Ok(out
            .messages()
            .iter()
            .filter_map(|m| {
                let attrs = m.attributes();
                let get = |k: A| attrs.and_then(|a| a.get(&k)).map(String::as_str);
                Some(QueueMessage {
                    message_id: m.message_id()?.to_string(),
                    receipt_handle: m.receipt_handle()?.to_string(),
                    body: m.body().unwrap_or_default().to_string(),
                    receive_count: get(A::ApproximateReceiveCount)
                        .and_then(|c| c.parse().ok())
                        .unwrap_or(1),
                    sent_at: get(A::SentTimestamp).and_then(millis_time),
                    first_received_at: get(A::ApproximateFirstReceiveTimestamp)
                        .and_then(millis_time),
                    attributes: m
                        .message_attributes()
                        .map(|a| {
                            a.iter()
                                .filter_map(|(k, v)| {
                                    Some((k.clone(), v.string_value()?.to_string()))
                                })
                                .collect()
                        })
                        .unwrap_or_default(),
                })
            })
            .collect())
    }

    async fn delete(&self, receipt_handle: &str) -> Result<(), AwsError> {
        call(
            "sqs",
            "DeleteMessage",
            &self.timeouts,
            self.timeouts.limits(CallKind::Queue, Duration::ZERO),
            |t| {
                send_with!(
                    aws_sdk_sqs,
                    self.client
                        .delete_message()
                        .queue_url(&self.url)
                        .receipt_handle(receipt_handle),
                    t
                )
            },
        )
        .await
        .map(|_| ())
    }

    async fn delete_batch(&self, receipt_handles: &[String]) -> Vec<Result<(), AwsError>> {
        if receipt_handles.len() == 1 {
            return vec![self.delete(&receipt_handles[0]).await];
        }
        let entries: Result<Vec<_>, _> = receipt_handles
            .iter()
            .enumerate()
            .map(|(i, r)| {
                aws_sdk_sqs::types::DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(r)
                    .build()
            })
            .collect();
        let entries = match entries {
            Ok(e) => e,
            Err(e) => {
                let e = AwsError::permanent("sqs", "DeleteMessageBatch", e.to_string());
                return receipt_handles.iter().map(|_| Err(e.clone())).collect();
            }
        };
        let out = call(
            "sqs",
            "DeleteMessageBatch",
            &self.timeouts,
            self.timeouts.limits(CallKind::Queue, Duration::ZERO),
            |t| {
                send_with!(
                    aws_sdk_sqs,
                    self.client
                        .delete_message_batch()
                        .queue_url(&self.url)
                        .set_entries(Some(entries.clone())),
                    t
                )
            },
        )
        .await;
        let out = match out {
            Ok(o) => o,
            Err(e) => return receipt_handles.iter().map(|_| Err(e.clone())).collect(),
        };
        batch_results(
            "DeleteMessageBatch",
            receipt_handles.len(),
            out.successful().iter().map(|ok| ok.id()),
            out.failed(),
        )
    }

    async fn change_visibility_batch(
        &self,
        entries: &[(String, Duration)],
    ) -> Vec<Result<(), AwsError>> {
        const OPERATION: &str = "ChangeMessageVisibilityBatch";
        if let [(receipt, timeout)] = entries {
            return vec![self.change_visibility(receipt, *timeout).await];
        }
        let built: Result<Vec<_>, _> = entries
            .iter()
            .enumerate()
            .map(|(i, (receipt, timeout))| {
                aws_sdk_sqs::types::ChangeMessageVisibilityBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(receipt)
                    .visibility_timeout(secs_i32(*timeout).min(43_200))
                    .build()
            })
            .collect();
        let built = match built {
            Ok(e) => e,
            Err(e) => {
                let e = AwsError::permanent("sqs", OPERATION, e.to_string());
                return entries.iter().map(|_| Err(e.clone())).collect();
            }
        };
        // The operation is spelled out here (not OPERATION) so that
        // tests/aws_calls.rs finds it among the counted calls.
        let out = call(
            "sqs",
            "ChangeMessageVisibilityBatch",
            &self.timeouts,
            self.timeouts.limits(CallKind::Queue, Duration::ZERO),
            |t| {
                send_with!(
                    aws_sdk_sqs,
                    self.client
                        .change_message_visibility_batch()
                        .queue_url(&self.url)
                        .set_entries(Some(built.clone())),
                    t
                )
            },
        )
        .await;
        match out {
            Ok(out) => batch_results(
                OPERATION,
                entries.len(),
                out.successful().iter().map(|ok| ok.id()),
                out.failed(),
            ),
            Err(e) => entries.iter().map(|_| Err(e.clone())).collect(),
        }
    }

    async fn change_visibility(
        &self,
        receipt_handle: &str,
        timeout: Duration,
    ) -> Result<(), AwsError> {
        call(
            "sqs",
            "ChangeMessageVisibility",
            &self.timeouts,
            self.timeouts.limits(CallKind::Queue, Duration::ZERO),
            |t| {
                send_with!(
                    aws_sdk_sqs,
                    self.client
                        .change_message_visibility()
                        .queue_url(&self.url)
                        .receipt_handle(receipt_handle)
                        .visibility_timeout(secs_i32(timeout).min(43_200)),
                    t
                )
            },
        )
        .await
        .map(|_| ())
    }

    async fn send(
        &self,
        body: &str,
        attributes: &BTreeMap<String, String>,
    ) -> Result<String, AwsError> {
        let mut req = self
            .client
            .send_message()
            .queue_url(&self.url)
            .message_body(body);
        for (k, v) in attributes {
            let value = aws_sdk_sqs::types::MessageAttributeValue::builder()
                .data_type("String")
                .string_value(v)
                .build()
                .map_err(|e| AwsError::permanent("sqs", "SendMessage", e.to_string()))?;
            req = req.message_attributes(k, value);
        }
        let out = call(
            "sqs",
            "SendMessage",
            &self.timeouts,
            self.timeouts.limits(CallKind::QueueSend, Duration::ZERO),
            |t| send_with!(aws_sdk_sqs, req.clone(), t),
        )
        .await?;
        Ok(out.message_id().unwrap_or_default().to_string())
    }

    async fn ping(&self) -> Result<(), AwsError> {
        call(
            "sqs",
            "GetQueueAttributes",
            &self.timeouts,
            self.timeouts.limits(CallKind::Queue, Duration::ZERO),
            |t| {
                send_with!(
                    aws_sdk_sqs,
                    self.client
                        .get_queue_attributes()
                        .queue_url(&self.url)
                        .attribute_names(
                            aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages,
                        ),
                    t
                )
            },
        )
        .await
        .map(|_| ())
    }

    fn url(&self) -> &str {
        &self.url
    }
}

/// Classic ELB.
#[derive(Clone, Debug)]
pub struct ClassicElb {
    client: aws_sdk_elasticloadbalancing::Client,
    timeouts: AwsTimeouts,
}

impl ClassicElb {
    pub fn new(client: aws_sdk_elasticloadbalancing::Client, timeouts: AwsTimeouts) -> Self {
        ClassicElb { client, timeouts }
    }
}

#[async_trait]
impl LoadBalancers for ClassicElb {
    async fn instance_health(&self, load_balancer: &str) -> Result<Vec<InstanceHealth>, AwsError> {
        let out = call(
            "elasticloadbalancing",
            "DescribeInstanceHealth",
            &self.timeouts,
            self.timeouts.limits(CallKind::Read, Duration::ZERO),
            |t| {
                send_with!(
                    aws_sdk_elasticloadbalancing,
                    self.client
                        .describe_instance_health()
                        .load_balancer_name(load_balancer),
                    t
                )
            },
        )
        .await?;
        Ok(out
            .instance_states()
            .iter()
            .filter_map(|s| {
                Some(InstanceHealth {
                    instance_id: s.instance_id()?.to_string(),
                    state: HealthState::parse(s.state().unwrap_or("Unknown")),
                    reason: s.reason_code().map(str::to_string),
                })
            })
            .collect())
    }

    async fn deregister(
        &self,
        load_balancer: &str,
        instance_ids: &[String],
    ) -> Result<Option<String>, AwsError> {
        let instances = instance_ids.iter().map(|id| {
            aws_sdk_elasticloadbalancing::types::Instance::builder()
                .instance_id(id)
                .build()
        });
        let instances: Vec<_> = instances.collect();
        let out = call(
            "elasticloadbalancing",
            "DeregisterInstancesFromLoadBalancer",
            &self.timeouts,
            self.timeouts.limits(CallKind::Change, Duration::ZERO),
            |t| {
                send_with!(
                    aws_sdk_elasticloadbalancing,
                    self.client
                        .deregister_instances_from_load_balancer()
                        .load_balancer_name(load_balancer)
                        .set_instances(Some(instances.clone())),
                    t
                )
            },
        )
        .await?;
        Ok(out.request_id().map(str::to_string))
    }
}

/// ELBv2 target groups.
#[derive(Clone, Debug)]
pub struct Elbv2 {
    client: aws_sdk_elasticloadbalancingv2::Client,
    timeouts: AwsTimeouts,
}

impl Elbv2 {
    pub fn new(client: aws_sdk_elasticloadbalancingv2::Client, timeouts: AwsTimeouts) -> Self {
        Elbv2 { client, timeouts }
    }
}

#[async_trait]
impl TargetGroups for Elbv2 {
    async fn describe_target_group(&self, arn: &str) -> Result<Option<TargetGroupInfo>, AwsError> {
        let out = call(
            "elasticloadbalancing",
            "DescribeTargetGroups",
            &self.timeouts,
            self.timeouts.limits(CallKind::Read, Duration::ZERO),
            |t| {
                send_with!(
                    aws_sdk_elasticloadbalancingv2,
                    self.client.describe_target_groups().target_group_arns(arn),
                    t
                )
            },
        )
        .await;
        let out = match out {
            Ok(o) => o,
            Err(e) if e.code.as_deref() == Some("TargetGroupNotFound") => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(out
            .target_groups()
            .iter()
            .find(|g| g.target_group_arn() == Some(arn))
            .map(|g| TargetGroupInfo {
                arn: arn.to_string(),
                name: g.target_group_name().unwrap_or_default().to_string(),
                // The API's default target type is `instance`.
                target_type: TargetType::parse(g.target_type().map_or("instance", |t| t.as_str())),
            }))
    }

    async fn target_health(&self, arn: &str) -> Result<Vec<TargetHealth>, AwsError> {
        let out = call(
            "elasticloadbalancing",
            "DescribeTargetHealth",
            &self.timeouts,
            self.timeouts.limits(CallKind::Read, Duration::ZERO),
            |t| {
                send_with!(
                    aws_sdk_elasticloadbalancingv2,
                    self.client.describe_target_health().target_group_arn(arn),
                    t
                )
            },
        )
        .await?;
        Ok(out
            .target_health_descriptions()
            .iter()
            .filter_map(|d| {
                let target = d.target()?;
                let health = d.target_health();
                Some(TargetHealth {
                    id: target.id()?.to_string(),
                    port: target.port(),
                    state: TargetState::parse(
                        health.and_then(|h| h.state()).map_or("", |s| s.as_str()),
                    ),
                    reason: health
                        .and_then(|h| h.reason())
                        .map(|r| r.as_str().to_string()),
                    description: health.and_then(|h| h.description()).map(str::to_string),
                })
            })
            .collect())
    }

    async fn deregister_targets(
        &self,
        arn: &str,
        targets: &[Target],
    ) -> Result<Option<String>, AwsError> {
        let targets = targets.iter().map(|t| {
            aws_sdk_elasticloadbalancingv2::types::TargetDescription::builder()
                .id(&t.id)
                .set_port(t.port)
                .build()
        });
        let targets: Vec<_> = targets.collect();
        let out = call(
            "elasticloadbalancing",
            "DeregisterTargets",
            &self.timeouts,
            self.timeouts.limits(CallKind::Change, Duration::ZERO),
            |t| {
                send_with!(
                    aws_sdk_elasticloadbalancingv2,
                    self.client
                        .deregister_targets()
                        .target_group_arn(arn)
                        .set_targets(Some(targets.clone())),
                    t
                )
            },
        )
        .await?;
        Ok(out.request_id().map(str::to_string))
    }
}

/// Auto Scaling groups.
#[derive(Clone, Debug)]
pub struct AutoScalingGroups {
    client: aws_sdk_autoscaling::Client,
    timeouts: AwsTimeouts,
}

impl AutoScalingGroups {
    pub fn new(client: aws_sdk_autoscaling::Client, timeouts: AwsTimeouts) -> Self {
        AutoScalingGroups { client, timeouts }
    }
}

#[async_trait]
impl AutoScaling for AutoScalingGroups {
    async fn group_instances(
        &self,
        instance_ids: &[String],
    ) -> Result<Vec<GroupInstance>, AwsError> {
        let mut found = Vec::new();
        // The API takes at most 50 instance ids per call.
        for chunk in instance_ids.chunks(50) {
            let out = call(
                "autoscaling",
                "DescribeAutoScalingInstances",
                &self.timeouts,
                self.timeouts.limits(CallKind::Read, Duration::ZERO),
                |t| {
                    send_with!(
                        aws_sdk_autoscaling,
                        self.client
                            .describe_auto_scaling_instances()
                            .set_instance_ids(Some(chunk.to_vec()))
                            .max_records(50),
                        t
                    )
                },
            )
            .await?;
            found.extend(out.auto_scaling_instances().iter().filter_map(|i| {
                Some(GroupInstance {
                    instance_id: i.instance_id()?.to_string(),
                    group: i.auto_scaling_group_name()?.to_string(),
                    lifecycle_state: i.lifecycle_state().unwrap_or_default().to_string(),
                    health_status: i.health_status().unwrap_or_default().to_string(),
                })
            }));
        }
        Ok(found)
    }

    async fn groups(&self, names: &[String]) -> Result<Vec<AutoScalingGroup>, AwsError> {
        let mut found = Vec::new();
        for chunk in names.chunks(100) {
            let out = call(
                "autoscaling",
                "DescribeAutoScalingGroups",
                &self.timeouts,
                self.timeouts.limits(CallKind::Read, Duration::ZERO),
                |t| {
                    send_with!(
                        aws_sdk_autoscaling,
                        self.client
                            .describe_auto_scaling_groups()
                            .set_auto_scaling_group_names(Some(chunk.to_vec()))
                            .max_records(100),
                        t
                    )
                },
            )
            .await?;
            found.extend(out.auto_scaling_groups().iter().filter_map(|g| {
                Some(AutoScalingGroup {
                    name: g.auto_scaling_group_name()?.to_string(),
                    suspended_processes: g
                        .suspended_processes()
                        .iter()
                        .filter_map(|p| p.process_name().map(str::to_string))
                        .collect(),
                })
            }));
        }
        Ok(found)
    }

    async fn set_unhealthy(
        &self,
        instance_id: &str,
        respect_grace_period: bool,
    ) -> Result<Option<String>, AwsError> {
        let out = call(
            "autoscaling",
            "SetInstanceHealth",
            &self.timeouts,
            self.timeouts.limits(CallKind::Change, Duration::ZERO),
            |t| {
                send_with!(
                    aws_sdk_autoscaling,
                    self.client
                        .set_instance_health()
                        .instance_id(instance_id)
                        .health_status("Unhealthy")
                        .should_respect_grace_period(respect_grace_period),
                    t
                )
            },
        )
        .await?;
        Ok(out.request_id().map(str::to_string))
    }

    async fn terminate_in_group(&self, instance_id: &str) -> Result<Option<String>, AwsError> {
        let out = call(
            "autoscaling",
            "TerminateInstanceInAutoScalingGroup",
            &self.timeouts,
            self.timeouts.limits(CallKind::Change, Duration::ZERO),
            |t| {
                send_with!(
                    aws_sdk_autoscaling,
                    self.client
                        .terminate_instance_in_auto_scaling_group()
                        .instance_id(instance_id)
                        .should_decrement_desired_capacity(false),
                    t
                )
            },
        )
        .await?;
        Ok(out.request_id().map(str::to_string))
    }
}

/// Systems Manager Run Command.
#[derive(Clone, Debug)]
pub struct Ssm {
    client: aws_sdk_ssm::Client,
    timeouts: AwsTimeouts,
}

impl Ssm {
    pub fn new(client: aws_sdk_ssm::Client, timeouts: AwsTimeouts) -> Self {
        Ssm { client, timeouts }
    }
}

#[async_trait]
impl Commands for Ssm {
    async fn managed(&self, instance_ids: &[String]) -> Result<Vec<ManagedInstance>, AwsError> {
        let mut found = Vec::new();
        // The `InstanceIds` filter takes at most 50 values.
        for chunk in instance_ids.chunks(50) {
            let filter = aws_sdk_ssm::types::InstanceInformationStringFilter::builder()
                .key("InstanceIds")
                .set_values(Some(chunk.to_vec()))
                .build()
                .map_err(|e| {
                    AwsError::permanent("ssm", "DescribeInstanceInformation", e.to_string())
                })?;
            let out = call(
                "ssm",
                "DescribeInstanceInformation",
                &self.timeouts,
                self.timeouts.limits(CallKind::Read, Duration::ZERO),
                |t| {
                    send_with!(
                        aws_sdk_ssm,
                        self.client
                            .describe_instance_information()
                            .filters(filter.clone())
                            .max_results(50),
                        t
                    )
                },
            )
            .await?;
            found.extend(out.instance_information_list().iter().filter_map(|i| {
                Some(ManagedInstance {
                    instance_id: i.instance_id()?.to_string(),
                    ping_status: i
                        .ping_status()
                        .map(|p| p.as_str().to_string())
                        .unwrap_or_default(),
                })
            }));
        }
        Ok(found)
    }

    async fn send_command(&self, request: &CommandRequest) -> Result<String, AwsError> {
        let execution_timeout = request.execution_timeout.as_secs().max(1).to_string();
        let out = call(
            "ssm",
            "SendCommand",
            &self.timeouts,
            self.timeouts.limits(CallKind::Write, Duration::ZERO),
            |t| {
                send_with!(
                    aws_sdk_ssm,
                    self.client
                        .send_command()
                        .document_name(RUN_SHELL_SCRIPT)
                        .set_instance_ids(Some(request.instance_ids.clone()))
                        .parameters("commands", request.commands.clone())
                        .parameters("executionTimeout", vec![execution_timeout.clone()])
                        .max_concurrency(&request.max_concurrency)
                        .max_errors(&request.max_errors)
                        .comment(&request.comment),
                    t
                )
            },
        )
        .await?;
        out.command()
            .and_then(|c| c.command_id())
            .map(str::to_string)
            .ok_or_else(|| AwsError::permanent("ssm", "SendCommand", "the reply has no command id"))
    }

    async fn invocation(
        &self,
        command_id: &str,
        instance_id: &str,
    ) -> Result<Option<Invocation>, AwsError> {
        let out = match call(
            "ssm",
            "GetCommandInvocation",
            &self.timeouts,
            self.timeouts.limits(CallKind::Read, Duration::ZERO),
            |t| {
                send_with!(
                    aws_sdk_ssm,
                    self.client
                        .get_command_invocation()
                        .command_id(command_id)
                        .instance_id(instance_id),
                    t
                )
            },
        )
        .await
        {
            Ok(out) => out,
            Err(e) if e.code.as_deref() == Some("InvocationDoesNotExist") => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(Some(Invocation {
            instance_id: instance_id.to_string(),
            status: InvocationStatus::parse(out.status().map(|s| s.as_str()).unwrap_or("")),
            response_code: Some(out.response_code()),
        }))
    }
}

/// EC2.
#[derive(Clone, Debug)]
pub struct Ec2 {
    client: aws_sdk_ec2::Client,
    timeouts: AwsTimeouts,
}

impl Ec2 {
    pub fn new(client: aws_sdk_ec2::Client, timeouts: AwsTimeouts) -> Self {
        Ec2 { client, timeouts }
    }
}

#[async_trait]
impl Instances for Ec2 {
    async fn describe(&self, instance_ids: &[String]) -> Result<Vec<InstanceInfo>, AwsError> {
        if instance_ids.is_empty() {
            return Ok(Vec::new());
        }
        let out = call(
            "ec2",
            "DescribeInstances",
            &self.timeouts,
            self.timeouts.limits(CallKind::Read, Duration::ZERO),
            |t| {
                send_with!(
                    aws_sdk_ec2,
                    self.client
                        .describe_instances()
                        .set_instance_ids(Some(instance_ids.to_vec())),
                    t
                )
            },
        )
        .await?;
        Ok(out
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .filter_map(|i| {
                Some(InstanceInfo {
                    instance_id: i.instance_id()?.to_string(),
                    state: InstanceState::parse(
                        i.state()
                            .and_then(|s| s.name())
                            .map_or("unknown", |n| n.as_str()),
                    ),
                    launch_time: i.launch_time().and_then(smithy_time),
                    tags: i
                        .tags()
                        .iter()
                        .filter_map(|t| {
                            Some((
                                t.key()?.to_string(),
                                t.value().unwrap_or_default().to_string(),
                            ))
                        })
                        .collect(),
                })
            })
            .collect())
    }

    async fn change(
        &self,
        op: InstanceOp,
        instance_ids: &[String],
        dry_run: bool,
    ) -> Result<Option<String>, AwsError> {
        let ids = Some(instance_ids.to_vec());
        let result = match op {
            InstanceOp::Terminate => call(
                "ec2",
                "TerminateInstances",
                &self.timeouts,
                self.timeouts.limits(CallKind::Change, Duration::ZERO),
                |t| {
                    send_with!(
                        aws_sdk_ec2,
                        self.client
                            .terminate_instances()
                            .set_instance_ids(ids.clone())
                            .dry_run(dry_run),
                        t
                    )
                },
            )
            .await
            .map(|o| o.request_id().map(str::to_string)),
            InstanceOp::Reboot => call(
                "ec2",
                "RebootInstances",
                &self.timeouts,
                self.timeouts.limits(CallKind::Change, Duration::ZERO),
                |t| {
                    send_with!(
                        aws_sdk_ec2,
                        self.client
                            .reboot_instances()
                            .set_instance_ids(ids.clone())
                            .dry_run(dry_run),
                        t
                    )
                },
            )
            .await
            .map(|o| o.request_id().map(str::to_string)),
            InstanceOp::Stop => call(
                "ec2",
                "StopInstances",
                &self.timeouts,
                self.timeouts.limits(CallKind::Change, Duration::ZERO),
                |t| {
                    send_with!(
                        aws_sdk_ec2,
                        self.client
                            .stop_instances()
                            .set_instance_ids(ids.clone())
                            .dry_run(dry_run),
                        t
                    )
                },
            )
            .await
            .map(|o| o.request_id().map(str::to_string)),
        };
        match result {
            // With DryRun=true, EC2 answers "would have succeeded" as an error.
            Err(e) if dry_run && e.code.as_deref() == Some("DryRunOperation") => Ok(e.request_id),
            other => other,
        }
    }
}

/// CloudWatch (alarms and metrics).
#[derive(Clone, Debug)]
pub struct CloudWatch {
    client: aws_sdk_cloudwatch::Client,
    timeouts: AwsTimeouts,
}

impl CloudWatch {
    pub fn new(client: aws_sdk_cloudwatch::Client, timeouts: AwsTimeouts) -> Self {
        CloudWatch { client, timeouts }
    }
}

#[async_trait]
impl Alarms for CloudWatch {
    async fn alarm_state(&self, alarm_name: &str) -> Result<Option<AlarmState>, AwsError> {
        use aws_sdk_cloudwatch::types::AlarmType;
        let out = call(
            "cloudwatch",
            "DescribeAlarms",
            &self.timeouts,
            self.timeouts.limits(CallKind::Read, Duration::ZERO),
            |t| {
                send_with!(
                    aws_sdk_cloudwatch,
                    self.client
                        .describe_alarms()
                        .alarm_names(alarm_name)
                        .alarm_types(AlarmType::MetricAlarm)
                        .alarm_types(AlarmType::CompositeAlarm),
                    t
                )
            },
        )
        .await?;
        let state = out
            .metric_alarms()
            .iter()
            .find(|a| a.alarm_name() == Some(alarm_name))
            .and_then(|a| a.state_value())
            .or_else(|| {
                out.composite_alarms()
                    .iter()
                    .find(|a| a.alarm_name() == Some(alarm_name))
                    .and_then(|a| a.state_value())
            });
        Ok(state.and_then(|s| AlarmState::parse(s.as_str())))
    }
}

#[async_trait]
impl MetricPublisher for CloudWatch {
    async fn put(&self, namespace: &str, data: &[Datum]) -> Result<Option<String>, AwsError> {
        use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};
        let data = data.iter().map(|d| {
            MetricDatum::builder()
                .metric_name(&d.metric_name)
                .value(d.value)
                .set_unit(d.unit.as_deref().map(StandardUnit::from))
                .set_dimensions(Some(
                    d.dimensions
                        .iter()
                        .map(|(k, v)| Dimension::builder().name(k).value(v).build())
                        .collect(),
                ))
                .build()
        });
        let data: Vec<_> = data.collect();
        let out = call(
            "cloudwatch",
            "PutMetricData",
            &self.timeouts,
            self.timeouts.limits(CallKind::Write, Duration::ZERO),
            |t| {
                send_with!(
                    aws_sdk_cloudwatch,
                    self.client
                        .put_metric_data()
                        .namespace(namespace)
                        .set_metric_data(Some(data.clone())),
                    t
                )
            },
        )
        .await?;
        Ok(out.request_id().map(str::to_string))
    }
}

/// SNS.
#[derive(Clone, Debug)]
pub struct Sns {
    client: aws_sdk_sns::Client,
    timeouts: AwsTimeouts,
}

impl Sns {
    pub fn new(client: aws_sdk_sns::Client, timeouts: AwsTimeouts) -> Self {
        Sns { client, timeouts }
    }
}

/// SNS subjects: at most 100 printable ASCII characters, no line breaks.
pub fn sns_subject(subject: &str) -> String {
    let clean: String = subject
        .chars()
        .map(|c| {
            if c.is_ascii() && !c.is_ascii_control() {
                c
            } else {
                ' '
            }
        })
        .collect();
    let trimmed = clean.trim();
    if trimmed.len() > 100 {
        format!("{}...", &trimmed[..97])
    } else if trimmed.is_empty() {
        "reflex".to_string()
    } else {
        trimmed.to_string()
    }
}

#[async_trait]
impl Notifier for Sns {
    async fn publish(
        &self,
        topic_arn: &str,
        subject: &str,
        message: &str,
    ) -> Result<Option<String>, AwsError> {
        let out = call(
            "sns",
            "Publish",
            &self.timeouts,
            self.timeouts.limits(CallKind::Write, Duration::ZERO),
            |t| {
                send_with!(
                    aws_sdk_sns,
                    self.client
                        .publish()
                        .topic_arn(topic_arn)
                        .subject(sns_subject(subject))
                        .message(message),
                    t
                )
            },
        )
        .await?;
        Ok(out.message_id().map(str::to_string))
    }
}

/// S3, read only: the rule files of an `s3://` rules source.
#[derive(Clone, Debug)]
pub struct S3 {
    client: aws_sdk_s3::Client,
    timeouts: AwsTimeouts,
}

impl S3 {
    pub fn new(client: aws_sdk_s3::Client, timeouts: AwsTimeouts) -> Self {
        S3 { client, timeouts }
    }
}

#[async_trait]
impl ObjectStore for S3 {
    async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<ObjectEntry>, AwsError> {
        let mut found = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let out = call(
                "s3",
                "ListObjectsV2",
                &self.timeouts,
                self.timeouts.limits(CallKind::Read, Duration::ZERO),
                |t| {
                    send_with!(
                        aws_sdk_s3,
                        self.client
                            .list_objects_v2()
                            .bucket(bucket)
                            .prefix(prefix)
                            .set_continuation_token(token.clone()),
                        t
                    )
                },
            )
            .await?;
            for object in out.contents() {
                if let Some(key) = object.key() {
                    found.push(ObjectEntry {
                        key: key.to_string(),
                        etag: object.e_tag().unwrap_or_default().to_string(),
                        size: object
                            .size()
                            .and_then(|s| u64::try_from(s).ok())
                            .unwrap_or(0),
                    });
                }
            }
            match out.next_continuation_token() {
                Some(next) if out.is_truncated() == Some(true) => token = Some(next.to_string()),
                _ => break,
            }
        }
        Ok(found)
    }

    async fn get(&self, bucket: &str, key: &str) -> Result<ObjectBody, AwsError> {
        let limits = self.timeouts.limits(CallKind::Read, Duration::ZERO);
        let out = call("s3", "GetObject", &self.timeouts, limits, |t| {
            send_with!(
                aws_sdk_s3,
                self.client.get_object().bucket(bucket).key(key),
                t
            )
        })
        .await?;
        let etag = out.e_tag().unwrap_or_default().to_string();
        // The body streams after the headers: bounded like the call.
        let bytes = match tokio::time::timeout(limits.operation, out.body.collect()).await {
            Ok(Ok(body)) => body.into_bytes().to_vec(),
            Ok(Err(e)) => return Err(AwsError::transient("s3", "GetObject", e.to_string())),
            Err(_) => return Err(AwsError::timeout("s3", "GetObject", limits.operation)),
        };
        Ok(ObjectBody { bytes, etag })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    type SqsDeleteError = aws_sdk_sqs::operation::delete_message::DeleteMessageError;

    /// The clients carry no stalled-upload check (a 100 ms timer for as
    /// long as a long poll is out); a reply body that stops arriving is
    /// still caught.
    #[tokio::test]
    async fn the_sdk_clients_do_not_poll_upload_throughput() {
        let config = sdk_defaults()
            .region(aws_config::Region::new("us-east-1"))
            .load()
            .await;
        let stalled = config
            .stalled_stream_protection()
            .expect("stalled-stream protection is configured");
        assert!(!stalled.upload_enabled());
        assert!(stalled.download_enabled());
    }

    /// A hang outside the SDK's attempt loop still ends at the operation
    /// deadline (plus the slack), as a transient timeout.
    #[tokio::test(start_paused = true)]
    async fn a_call_that_never_answers_gives_up_at_its_deadline() {
        let timeouts = AwsTimeouts::default();
        for (kind, wait) in [
            (CallKind::Queue, Duration::ZERO),
            (CallKind::Read, Duration::ZERO),
            (CallKind::Write, Duration::ZERO),
            (CallKind::Receive, Duration::from_secs(20)),
        ] {
            let limits = timeouts.limits(kind, wait);
            let started = tokio::time::Instant::now();
            let result: Result<(), AwsError> =
                call("sqs", "DeleteMessage", &timeouts, limits, |_| {
                    std::future::pending::<Result<(), SdkError<SqsDeleteError, HttpResponse>>>()
                })
                .await;
            let e = result.expect_err("a call that never answers fails");
            assert!(e.timed_out && e.transient, "{kind:?}: {e:?}");
            assert_eq!(
                started.elapsed(),
                limits.operation + DEADLINE_SLACK,
                "{kind:?}"
            );
        }
    }

    /// Accepts connections and reads requests but never answers: the
    /// network that black-holes replies.
    async fn black_hole() -> (String, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&accepted);
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                held.push(socket);
            }
        });
        (format!("http://{addr}"), accepted)
    }

    fn sqs_client(endpoint: &str) -> aws_sdk_sqs::Client {
        let config = aws_sdk_sqs::Config::builder()
            .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
            .region(aws_sdk_sqs::config::Region::new("us-east-1"))
            .endpoint_url(endpoint)
            .credentials_provider(aws_sdk_sqs::config::Credentials::new(
                "AKIDTEST", "secret", None, None, "test",
            ))
            // What the daemon's clients carry: any call that did not set
            // its own timeouts would wait this long.
            .timeout_config(
                aws_smithy_types::timeout::TimeoutConfig::builder()
                    .operation_attempt_timeout(Duration::from_secs(30))
                    .build(),
            )
            .build();
        aws_sdk_sqs::Client::from_conf(config)
    }

    /// Over the real SDK: each attempt gives up at its own timeout, the
    /// SDK's standard retry tries again (a timed-out attempt is
    /// transient), and the whole operation ends at its deadline: the
    /// heartbeat's call costs seconds, not the client's 30 s per attempt.
    #[tokio::test(start_paused = true)]
    async fn each_queue_operation_gives_up_at_its_timeout_after_retrying() {
        let (endpoint, accepted) = black_hole().await;
        let timeouts = AwsTimeouts::default();
        let queue = SqsQueue::new(
            sqs_client(&endpoint),
            format!("{endpoint}/123456789012/alarms"),
            timeouts,
        );
        let started = tokio::time::Instant::now();
        let e = queue
            .change_visibility("receipt", Duration::from_secs(60))
            .await
            .expect_err("no reply");
        let elapsed = started.elapsed();
        assert!(e.timed_out && e.transient, "{e:?}");
        assert_eq!(e.operation, "ChangeMessageVisibility");
        assert!(
            elapsed >= timeouts.queue.attempt * 2 && elapsed <= timeouts.queue.operation,
            "gave up after {elapsed:?}"
        );
        assert!(
            accepted.load(Ordering::SeqCst) >= 2,
            "the timed-out attempt was retried: {} connections",
            accepted.load(Ordering::SeqCst)
        );

        let e = queue.delete("receipt").await.expect_err("no reply");
        assert!(e.timed_out && e.operation == "DeleteMessage", "{e:?}");
        let started = tokio::time::Instant::now();
        let e = queue
            .receive(10, Duration::from_secs(1), Duration::from_secs(60))
            .await
            .expect_err("no reply");
        let limits = timeouts.limits(CallKind::Receive, Duration::from_secs(1));
        assert!(e.timed_out);
        assert!(
            started.elapsed() >= limits.attempt && started.elapsed() <= limits.operation,
            "a receive waits its long poll plus the margin: {:?}",
            started.elapsed()
        );
    }

    /// Reads and writes have their own limits: a stalled describe costs its
    /// read deadline, a stalled terminate one write attempt.
    #[tokio::test(start_paused = true)]
    async fn reads_and_writes_give_up_at_their_own_timeouts() {
        let (endpoint, _) = black_hole().await;
        let config = aws_sdk_ec2::Config::builder()
            .behavior_version(aws_sdk_ec2::config::BehaviorVersion::latest())
            .region(aws_sdk_ec2::config::Region::new("us-east-1"))
            .endpoint_url(&endpoint)
            .credentials_provider(aws_sdk_ec2::config::Credentials::new(
                "AKIDTEST", "secret", None, None, "test",
            ))
            .build();
        let timeouts = AwsTimeouts::default();
        let ec2 = Ec2::new(aws_sdk_ec2::Client::from_conf(config), timeouts);
        let ids = ["i-1".to_string()];
        let started = tokio::time::Instant::now();
        let e = ec2.describe(&ids).await.expect_err("no reply");
        let read = started.elapsed();
        assert!(e.timed_out, "{e:?}");
        let started = tokio::time::Instant::now();
        let e = ec2
            .change(InstanceOp::Terminate, &ids, false)
            .await
            .expect_err("no reply");
        let write = started.elapsed();
        assert!(e.timed_out && e.transient, "{e:?}");
        assert!(
            read >= timeouts.read.attempt && read <= timeouts.read.operation,
            "{read:?}"
        );
        // A change gets one attempt: the SDK does not send it again after
        // a lost reply (the action re-reads the target first).
        assert!(
            write >= timeouts.write.attempt && write < timeouts.write.attempt * 2,
            "{write:?}"
        );
    }
}
