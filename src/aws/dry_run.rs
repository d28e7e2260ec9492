//! Dry-run effects: reads go through, writes are logged and not made.
//! EC2 writes are still sent, with `DryRun=true`, so a dry run also proves
//! the daemon has the permissions the real action would need.

use std::sync::Arc;

use async_trait::async_trait;
use tracing::info;

use super::{
    AutoScaling, AutoScalingGroup, AwsError, CommandRequest, Commands, Datum, GroupInstance,
    InstanceHealth, InstanceInfo, InstanceOp, Instances, Invocation, LoadBalancers,
    ManagedInstance, MetricPublisher, Notifier, Target, TargetGroupInfo, TargetGroups,
    TargetHealth,
};

/// Run Command: which instances SSM manages is read; the command is only
/// logged (`SendCommand` has no `DryRun` parameter), so there is no
/// invocation to read.
pub struct DryRunCommands(pub Arc<dyn Commands>);

#[async_trait]
impl Commands for DryRunCommands {
    async fn managed(&self, instance_ids: &[String]) -> Result<Vec<ManagedInstance>, AwsError> {
        self.0.managed(instance_ids).await
    }

    async fn send_command(&self, request: &CommandRequest) -> Result<String, AwsError> {
        info!(
            instance_ids = ?request.instance_ids,
            commands = ?request.commands,
            max_concurrency = %request.max_concurrency,
            max_errors = %request.max_errors,
            "Dry run: would call ssm:SendCommand (AWS-RunShellScript)."
        );
        Ok(DRY_RUN_COMMAND_ID.to_string())
    }

    async fn invocation(
        &self,
        _command_id: &str,
        _instance_id: &str,
    ) -> Result<Option<Invocation>, AwsError> {
        Ok(None)
    }
}

/// The command id a dry run's `SendCommand` returns: nothing was sent.
pub const DRY_RUN_COMMAND_ID: &str = "dry-run";

/// Classic ELB: health is read, deregistration is only logged.
pub struct DryRunLoadBalancers(pub Arc<dyn LoadBalancers>);

#[async_trait]
impl LoadBalancers for DryRunLoadBalancers {
    async fn instance_health(&self, load_balancer: &str) -> Result<Vec<InstanceHealth>, AwsError> {
        self.0.instance_health(load_balancer).await
    }

    async fn deregister(
        &self,
        load_balancer: &str,
        instance_ids: &[String],
    ) -> Result<Option<String>, AwsError> {
        info!(
            load_balancer,
            ?instance_ids,
            "Dry run: would call DeregisterInstancesFromLoadBalancer."
        );
        Ok(None)
    }
}

/// Target groups: read, and deregistration only logged (ELBv2 writes have
/// no `DryRun` parameter).
pub struct DryRunTargetGroups(pub Arc<dyn TargetGroups>);

#[async_trait]
impl TargetGroups for DryRunTargetGroups {
    async fn describe_target_group(&self, arn: &str) -> Result<Option<TargetGroupInfo>, AwsError> {
        self.0.describe_target_group(arn).await
    }

    async fn target_health(&self, arn: &str) -> Result<Vec<TargetHealth>, AwsError> {
        self.0.target_health(arn).await
    }

    async fn deregister_targets(
        &self,
        arn: &str,
        targets: &[Target],
    ) -> Result<Option<String>, AwsError> {
        let ids: Vec<&str> = targets.iter().map(|t| t.id.as_str()).collect();
        info!(
            target_group_arn = arn,
            targets = ?ids,
            "Dry run: would call elasticloadbalancing:DeregisterTargets."
        );
        Ok(None)
    }
}

/// Auto Scaling: reads go through; `SetInstanceHealth` and
/// `TerminateInstanceInAutoScalingGroup` have no `DryRun` parameter, so
/// they are only logged.
pub struct DryRunAutoScaling(pub Arc<dyn AutoScaling>);

#[async_trait]
impl AutoScaling for DryRunAutoScaling {
    async fn group_instances(
        &self,
        instance_ids: &[String],
    ) -> Result<Vec<GroupInstance>, AwsError> {
        self.0.group_instances(instance_ids).await
    }

    async fn groups(&self, names: &[String]) -> Result<Vec<AutoScalingGroup>, AwsError> {
        self.0.groups(names).await
    }

    async fn set_unhealthy(
        &self,
        instance_id: &str,
        respect_grace_period: bool,
    ) -> Result<Option<String>, AwsError> {
        info!(
            instance_id,
            respect_grace_period, "Dry run: would call autoscaling:SetInstanceHealth (Unhealthy)."
        );
        Ok(None)
    }

    async fn terminate_in_group(&self, instance_id: &str) -> Result<Option<String>, AwsError> {
        info!(
            instance_id,
            "Dry run: would call autoscaling:TerminateInstanceInAutoScalingGroup (desired capacity kept)."
        );
        Ok(None)
    }
}

/// EC2: instances are described, changes are sent with `DryRun=true`.
pub struct DryRunInstances(pub Arc<dyn Instances>);

#[async_trait]
impl Instances for DryRunInstances {
    async fn describe(&self, instance_ids: &[String]) -> Result<Vec<InstanceInfo>, AwsError> {
        self.0.describe(instance_ids).await
    }

    async fn change(
        &self,
        op: InstanceOp,
        instance_ids: &[String],
        _dry_run: bool,
    ) -> Result<Option<String>, AwsError> {
        info!(operation = %op, ?instance_ids, "Dry run: would call {op}; checking permissions with DryRun=true.");
        self.0.change(op, instance_ids, true).await
    }
}

/// SNS: messages are logged, not published.
pub struct DryRunNotifier;

#[async_trait]
impl Notifier for DryRunNotifier {
    async fn publish(
        &self,
        topic_arn: &str,
        subject: &str,
        message: &str,
    ) -> Result<Option<String>, AwsError> {
        info!(
            topic_arn,
            subject, message, "Dry run: would call sns:Publish."
        );
        Ok(None)
    }
}

/// CloudWatch metrics: data points are logged, not put.
pub struct DryRunMetrics;

#[async_trait]
impl MetricPublisher for DryRunMetrics {
    async fn put(&self, namespace: &str, data: &[Datum]) -> Result<Option<String>, AwsError> {
        info!(
            namespace,
            ?data,
            "Dry run: would call cloudwatch:PutMetricData."
        );
        Ok(None)
    }
}
