//! Effects: one small trait per AWS capability, taking and returning domain
//! types, with errors that say whether a retry can help. SDK types never leak
//! past this module.
//!
//! - [`sdk`]: the real implementations, over the AWS SDK.
//! - [`dry_run`]: wrappers that perform reads and log writes instead of
//!   making them (EC2 writes are sent with `DryRun=true`, which checks
//!   permissions and changes nothing).
//! - [`observe`]: what every finished AWS call reports, and the observer
//!   it reports to (installed by the daemon; telemetry counts the calls).
//! - [`timeouts`]: how long each call may take (per attempt and in all),
//!   by what it needs; `[aws]` in `reflex.toml`.
//! - [`signing_certs`]: fetching SNS signing certificates over HTTPS (or
//!   from an overridden SNS endpoint, SigV4-signed, as moto wants).
//!
//! The traits take and return the domain types of [`crate::fleet`], which
//! are re-exported here for convenience.

pub mod dry_run;
pub mod dynamodb_state;
pub mod hedge;
pub mod observe;
pub mod sdk;
pub mod signing_certs;
pub mod timeouts;

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::event::AlarmState;
pub use crate::fleet::{
    AutoScalingGroup, CommandRequest, GroupInstance, HealthState, InstanceHealth, InstanceInfo,
    InstanceOp, InstanceState, Invocation, InvocationStatus, ManagedInstance, Target,
    TargetGroupInfo, TargetHealth, TargetState, TargetType,
};

/// An AWS call that failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{service}:{operation} failed ({}): {message}", if *.transient { "transient" } else { "permanent" })]
pub struct AwsError {
    pub service: &'static str,
    pub operation: &'static str,
    /// A retry later may succeed (throttling, 5xx, timeouts, network).
    pub transient: bool,
    /// The AWS error code, e.g. `Throttling`, `AccessDenied`.
    pub code: Option<String>,
    pub message: String,
    pub request_id: Option<String>,
    /// No reply came in time (an attempt or the whole operation timed
    /// out). For a write this is an unknown outcome: the request may have
    /// reached AWS and been carried out. Always transient.
    pub timed_out: bool,
}

impl AwsError {
    pub fn transient(
        service: &'static str,
        operation: &'static str,
        message: impl Into<String>,
    ) -> Self {
        AwsError {
            service,
            operation,
            transient: true,
            code: None,
            message: message.into(),
            request_id: None,
            timed_out: false,
        }
    }

    /// No reply within `after`.
    pub fn timeout(service: &'static str, operation: &'static str, after: Duration) -> Self {
        AwsError {
            timed_out: true,
            ..AwsError::transient(
                service,
                operation,
                format!("no reply within {}", humantime::format_duration(after)),
            )
        }
    }

    pub fn permanent(
        service: &'static str,
        operation: &'static str,
        message: impl Into<String>,
    ) -> Self {
        AwsError {
            transient: false,
            ..AwsError::transient(service, operation, message)
        }
    }
}

/// One message received from a queue.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueMessage {
    pub message_id: String,
    pub receipt_handle: String,
    pub body: String,
    /// How many times SQS has handed this message out, this time included.
    pub receive_count: u32,
    pub sent_at: Option<DateTime<Utc>>,
    pub first_received_at: Option<DateTime<Utc>>,
    /// String message attributes (set on dead-lettered messages).
    pub attributes: BTreeMap<String, String>,
}

/// An SQS queue (the alarm queue or the dead-letter queue).
/// Where SNS signing certificates come from.
#[async_trait]
pub trait SigningCerts: Send + Sync {
    /// The overridden SNS endpoint (`scheme://host[:port]`) certificates
    /// are fetched from instead of SNS's own host, if any.
    fn endpoint(&self) -> Option<&str>;

    /// The certificate's PEM bytes. A network error, a timeout or a 5xx is
    /// transient; any other answer but 200 is permanent.
    async fn fetch(&self, location: &crate::trust::CertLocation) -> Result<Vec<u8>, AwsError>;
}

#[async_trait]
pub trait Queue: Send + Sync {
    /// Long-polls for up to `max` messages (1-10).
    async fn receive(
        &self,
        max: u8,
        wait: Duration,
        visibility: Duration,
    ) -> Result<Vec<QueueMessage>, AwsError>;
    async fn delete(&self, receipt_handle: &str) -> Result<(), AwsError>;
    /// Deletes up to 10 messages in one call: one result per receipt, in
    /// order (`Err` for the whole call when it failed as a whole). The
    /// default deletes them one by one.
    async fn delete_batch(&self, receipt_handles: &[String]) -> Vec<Result<(), AwsError>> {
        let mut out = Vec::with_capacity(receipt_handles.len());
        for r in receipt_handles {
            out.push(self.delete(r).await);
        }
        out
    }
    /// Makes the message invisible for `timeout` from now (0: visible at once).
    async fn change_visibility(
        &self,
        receipt_handle: &str,
        timeout: Duration,
    ) -> Result<(), AwsError>;
    /// Changes the visibility of up to 10 messages in one call
    /// (`ChangeMessageVisibilityBatch`): one result per `(receipt handle,
    /// timeout)` entry, in order (`Err` for each when the call failed as a
    /// whole). The default changes them one by one.
    async fn change_visibility_batch(
        &self,
        entries: &[(String, Duration)],
    ) -> Vec<Result<(), AwsError>> {
        let mut out = Vec::with_capacity(entries.len());
        for (receipt, timeout) in entries {
            out.push(self.change_visibility(receipt, *timeout).await);
        }
        out
    }
    /// Sends a message with string attributes; returns its message id.
    async fn send(
        &self,
        body: &str,
        attributes: &BTreeMap<String, String>,
    ) -> Result<String, AwsError>;
    /// Checks the queue is reachable (for readiness).
    async fn ping(&self) -> Result<(), AwsError>;
    /// The queue's URL.
    fn url(&self) -> &str;
}

/// Classic load balancers.
#[async_trait]
pub trait LoadBalancers: Send + Sync {
    async fn instance_health(&self, load_balancer: &str) -> Result<Vec<InstanceHealth>, AwsError>;
    /// Returns the request id.
    async fn deregister(
        &self,
        load_balancer: &str,
        instance_ids: &[String],
    ) -> Result<Option<String>, AwsError>;
}

/// ELBv2 (ALB/NLB) target groups.
#[async_trait]
pub trait TargetGroups: Send + Sync {
    /// `DescribeTargetGroups` for one ARN; `None` if there is no such group.
    async fn describe_target_group(&self, arn: &str) -> Result<Option<TargetGroupInfo>, AwsError>;
    /// `DescribeTargetHealth`: every registered target.
    async fn target_health(&self, arn: &str) -> Result<Vec<TargetHealth>, AwsError>;
    /// `DeregisterTargets`; returns the request id.
    async fn deregister_targets(
        &self,
        arn: &str,
        targets: &[Target],
    ) -> Result<Option<String>, AwsError>;
}

/// Auto Scaling: which group an instance is in, what the group has
/// suspended, and the two ways of having the group replace an instance.
#[async_trait]
pub trait AutoScaling: Send + Sync {
    /// `DescribeAutoScalingInstances`: the instances of `instance_ids`
    /// that are in a group (the others are simply absent).
    async fn group_instances(
        &self,
        instance_ids: &[String],
    ) -> Result<Vec<GroupInstance>, AwsError>;
    /// `DescribeAutoScalingGroups` for these names (unknown ones absent).
    async fn groups(&self, names: &[String]) -> Result<Vec<AutoScalingGroup>, AwsError>;
    /// `SetInstanceHealth` with `Unhealthy`; returns the request id.
    async fn set_unhealthy(
        &self,
        instance_id: &str,
        respect_grace_period: bool,
    ) -> Result<Option<String>, AwsError>;
    /// `TerminateInstanceInAutoScalingGroup` with
    /// `ShouldDecrementDesiredCapacity = false`, so the group launches a
    /// replacement; returns the request id.
    async fn terminate_in_group(&self, instance_id: &str) -> Result<Option<String>, AwsError>;
}

/// Systems Manager Run Command: which instances it manages, sending
/// `AWS-RunShellScript`, and reading each invocation's status.
#[async_trait]
pub trait Commands: Send + Sync {
    /// `DescribeInstanceInformation` for `instance_ids`: the ones SSM
    /// manages (the others are simply absent).
    async fn managed(&self, instance_ids: &[String]) -> Result<Vec<ManagedInstance>, AwsError>;
    /// `SendCommand`; returns the command id.
    async fn send_command(&self, request: &CommandRequest) -> Result<String, AwsError>;
    /// `GetCommandInvocation`; `None` while SSM does not know the
    /// invocation yet (`InvocationDoesNotExist` just after the send).
    async fn invocation(
        &self,
        command_id: &str,
        instance_id: &str,
    ) -> Result<Option<Invocation>, AwsError>;
}

/// EC2 instances.
#[async_trait]
pub trait Instances: Send + Sync {
    async fn describe(&self, instance_ids: &[String]) -> Result<Vec<InstanceInfo>, AwsError>;
    /// Changes instances. With `dry_run`, asks EC2 to check permissions only
    /// (`DryRun=true`): success means "would have been allowed".
    async fn change(
        &self,
        op: InstanceOp,
        instance_ids: &[String],
        dry_run: bool,
    ) -> Result<Option<String>, AwsError>;
}

/// CloudWatch alarms.
#[async_trait]
pub trait Alarms: Send + Sync {
    /// The alarm's current state, or `None` if there is no such alarm.
    async fn alarm_state(&self, alarm_name: &str) -> Result<Option<AlarmState>, AwsError>;
}

/// One object of a listing: its key, ETag and size.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ObjectEntry {
    pub key: String,
    /// As S3 gives it (quoted); compared, never interpreted.
    pub etag: String,
    pub size: u64,
}

/// One object's content, with the ETag of the version read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectBody {
    pub bytes: Vec<u8>,
    pub etag: String,
}

/// S3, read only: where a fleet's rule files are kept.
#[async_trait]
pub trait ObjectStore: Send + Sync {
    /// `ListObjectsV2` of every object under `prefix` (all pages).
    async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<ObjectEntry>, AwsError>;
    /// `GetObject`: the whole body.
    async fn get(&self, bucket: &str, key: &str) -> Result<ObjectBody, AwsError>;
}

/// SNS.
#[async_trait]
pub trait Notifier: Send + Sync {
    /// Returns the SNS message id.
    async fn publish(
        &self,
        topic_arn: &str,
        subject: &str,
        message: &str,
    ) -> Result<Option<String>, AwsError>;
}

/// One CloudWatch data point.
#[derive(Debug, Clone, PartialEq)]
pub struct Datum {
    pub metric_name: String,
    pub value: f64,
    pub unit: Option<String>,
    pub dimensions: Vec<(String, String)>,
}

/// CloudWatch metrics: publishing data points (`PutMetricData`).
#[async_trait]
pub trait MetricPublisher: Send + Sync {
    /// Puts up to 1000 data points in one namespace; returns the request id.
    async fn put(&self, namespace: &str, data: &[Datum]) -> Result<Option<String>, AwsError>;
}
