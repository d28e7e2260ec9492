//! In-memory fakes of every effect trait, with failure injection, for worker
//! tests. Not an AWS emulator: end-to-end tests use moto's server.
//! (Moved here from `aws/fake.rs` so the release binary does not carry it.)

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;

use crate::aws::{
    Alarms, AutoScaling, AutoScalingGroup, AwsError, CommandRequest, Commands, Datum,
    GroupInstance, HealthState, InstanceHealth, InstanceInfo, InstanceOp, InstanceState, Instances,
    Invocation, InvocationStatus, LoadBalancers, ManagedInstance, MetricPublisher, Notifier, Queue,
    QueueMessage, SigningCerts, Target, TargetGroupInfo, TargetGroups, TargetHealth, TargetState,
    TargetType,
};
use crate::event::AlarmState;

/// Everything the fake AWS knows, shared by all its trait objects.
#[derive(Debug, Default)]
pub struct FakeState {
    /// Messages on the alarm queue: (message, visible).
    pub queue: Vec<(QueueMessage, bool)>,
    /// Messages sent to the queue with `send` (the DLQ, when used as one).
    pub sent: Vec<(String, BTreeMap<String, String>)>,
    pub deleted: Vec<String>,
    /// (receipt handle, visibility seconds) in call order.
    pub visibility_changes: Vec<(String, u64)>,
    pub elb_health: HashMap<String, Vec<InstanceHealth>>,
    /// Target groups by ARN, with their targets' health.
    pub target_groups: HashMap<String, (TargetGroupInfo, Vec<TargetHealth>)>,
    pub instances: HashMap<String, InstanceInfo>,
    /// Auto Scaling membership by instance id, and groups by name.
    pub group_instances: HashMap<String, GroupInstance>,
    pub groups: HashMap<String, AutoScalingGroup>,
    pub alarms: HashMap<String, AlarmState>,
    pub published: Vec<(String, String, String)>,
    pub metrics: Vec<(String, Datum)>,
    /// (operation, instance ids, dry_run) for every EC2/ELB/Auto Scaling
    /// change.
    pub changes: Vec<(String, Vec<String>, bool)>,
    /// Every call, as `service:Operation`.
    pub calls: Vec<String>,
    /// Errors to return from the next calls of an operation, in order.
    pub failures: HashMap<&'static str, VecDeque<AwsError>>,
    /// How many of the next calls of an operation hang without a reply
    /// (a black-holed reply on a lossy network). Queue operations only.
    pub stalls: HashMap<&'static str, usize>,
    /// How long each of the next calls of an operation waits before it
    /// is carried out (a long poll that is still out). Queue operations only.
    pub delays: HashMap<&'static str, VecDeque<std::time::Duration>>,
    /// Errors to return from the next calls of a write *after* making the
    /// change: the reply was lost (a timeout), the request went through.
    pub lost_replies: HashMap<&'static str, VecDeque<AwsError>>,
    /// How many of the next calls of a write make their change and then
    /// never answer: the reply stalled on the way back.
    pub stalled_replies: HashMap<&'static str, usize>,
    /// SSM agents by instance id: their ping status (`Online`...).
    pub ssm_agents: HashMap<String, String>,
    /// Commands sent, in order: (command id, request).
    pub commands: Vec<(String, CommandRequest)>,
    /// What successive `GetCommandInvocation`s report per instance, in
    /// order (the last one repeats); `Success` with exit 0 when unset.
    pub invocation_plan: HashMap<String, VecDeque<(InvocationStatus, i32)>>,
    /// SNS signing certificates (PEM) by URL, besides the tests' own
    /// signer's, which is always served.
    pub signing_certs: HashMap<String, String>,
}

/// A fake AWS account. Clone it freely: clones share state.
#[derive(Debug, Clone, Default)]
pub struct FakeAws {
    state: Arc<Mutex<FakeState>>,
    url: String,
}

impl FakeAws {
    pub fn new() -> Self {
        FakeAws {
            state: Arc::default(),
            url: "https://sqs.us-east-1.amazonaws.com/123456789012/fake".to_string(),
        }
    }

    /// Another queue in the same fake account (e.g. the DLQ).
    pub fn other_queue(&self, url: &str) -> FakeAws {
        FakeAws {
            state: Arc::new(Mutex::new(FakeState::default())),
            url: url.to_string(),
        }
    }

    pub fn state(&self) -> MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many calls of `operation` (`"sqs:ReceiveMessage"`) were made.
    pub fn calls_to(&self, operation: &str) -> usize {
        self.state()
            .calls
            .iter()
            .filter(|c| *c == operation)
            .count()
    }

    /// Makes the next call of `operation` fail with `error`.
    pub fn fail_next(&self, operation: &'static str, error: AwsError) {
        self.state()
            .failures
            .entry(operation)
            .or_default()
            .push_back(error);
    }

    /// Makes the next `n` calls of `operation` hang: they are recorded in
    /// `calls` and never answer (the caller's timeout must end them).
    /// Applies to the queue operations (`sqs:ReceiveMessage`,
    /// `sqs:ChangeMessageVisibility`, `sqs:DeleteMessage`, `sqs:SendMessage`).
    pub fn stall_next(&self, operation: &'static str, n: usize) {
        *self.state().stalls.entry(operation).or_default() += n;
    }

    /// Makes the next call of `operation` wait `after` (tokio time)
    /// before it is carried out: a receive sees the queue as it is then.
    pub fn slow_next(&self, operation: &'static str, after: Duration) {
        self.state()
            .delays
            .entry(operation)
            .or_default()
            .push_back(after);
    }

    /// Waits if a delay of `operation` is pending; hangs forever if a
    /// stall is (taking either).
    async fn stall(&self, operation: &'static str) {
        let stalled = {
            let mut s = self.state();
            match s.stalls.get_mut(operation) {
                Some(n) if *n > 0 => {
                    *n -= 1;
                    s.calls.push(operation.to_string());
                    true
                }
                _ => false,
            }
        };
        if stalled {
            std::future::pending::<()>().await;
        }
        let delay = self
            .state()
            .delays
            .get_mut(operation)
            .and_then(VecDeque::pop_front);
        if let Some(d) = delay {
            tokio::time::sleep(d).await;
        }
    }

    /// Makes the next call of the write `operation` make its change and
    /// then fail with `error`, as a request whose reply never came back.
    pub fn lose_reply_next(&self, operation: &'static str, error: AwsError) {
        self.state()
            .lost_replies
            .entry(operation)
            .or_default()
            .push_back(error);
    }

    /// Makes the next `n` calls of the write `operation` make their
    /// change and then never answer, as a request whose reply stalled.
    pub fn stall_reply_next(&self, operation: &'static str, n: usize) {
        *self.state().stalled_replies.entry(operation).or_default() += n;
    }

    fn call(&self, operation: &'static str) -> Result<MutexGuard<'_, FakeState>, AwsError> {
        let mut s = self.state();
        s.calls.push(operation.to_string());
        if let Some(e) = s.failures.get_mut(operation).and_then(VecDeque::pop_front) {
            return Err(e);
        }
        Ok(s)
    }

    /// Puts a message on the fake queue.
    pub fn enqueue(&self, message_id: &str, body: &str, receive_count: u32) {
        self.state().queue.push((
            QueueMessage {
                message_id: message_id.to_string(),
                receipt_handle: format!("rh-{message_id}"),
                body: body.to_string(),
                receive_count,
                sent_at: None,
                first_received_at: None,
                attributes: BTreeMap::new(),
            },
            true,
        ));
    }

    /// Registers an instance with an ELB, with the given health and EC2 state.
    pub fn add_instance(&self, elb: &str, info: InstanceInfo, elb_state: impl Into<HealthState>) {
        let mut s = self.state();
        s.elb_health
            .entry(elb.to_string())
            .or_default()
            .push(InstanceHealth {
                instance_id: info.instance_id.clone(),
                state: elb_state.into(),
                reason: None,
            });
        s.instances.insert(info.instance_id.clone(), info);
    }
}

impl FakeAws {
    /// Creates a target group of `target_type` (no targets yet).
    pub fn add_target_group(&self, arn: &str, target_type: TargetType) {
        let name = arn.rsplit('/').nth(1).unwrap_or(arn).to_string();
        self.state().target_groups.insert(
            arn.to_string(),
            (
                TargetGroupInfo {
                    arn: arn.to_string(),
                    name,
                    target_type,
                },
                Vec::new(),
            ),
        );
    }

    /// Registers a target with a target group (created as an instance
    /// group if needed), with its health and reason code; an instance
    /// target's EC2 description is `info`.
    pub fn add_target(
        &self,
        arn: &str,
        id: &str,
        state: impl Into<TargetState>,
        reason: Option<&str>,
        info: Option<InstanceInfo>,
    ) {
        if !self.state().target_groups.contains_key(arn) {
            self.add_target_group(arn, TargetType::Instance);
        }
        let mut s = self.state();
        if let Some((_, targets)) = s.target_groups.get_mut(arn) {
            targets.push(TargetHealth {
                id: id.to_string(),
                port: Some(80),
                state: state.into(),
                reason: reason.map(str::to_string),
                description: None,
            });
        }
        if let Some(info) = info {
            s.instances.insert(info.instance_id.clone(), info);
        }
    }
}

impl FakeAws {
    /// Puts an instance in an Auto Scaling group (created, nothing
    /// suspended, if needed), in lifecycle state `lifecycle` and Healthy.
    pub fn add_to_group(&self, group: &str, instance_id: &str, lifecycle: &str) {
        let mut s = self.state();
        s.groups
            .entry(group.to_string())
            .or_insert_with(|| AutoScalingGroup {
                name: group.to_string(),
                suspended_processes: Vec::new(),
            });
        s.group_instances.insert(
            instance_id.to_string(),
            GroupInstance {
                instance_id: instance_id.to_string(),
                group: group.to_string(),
                lifecycle_state: lifecycle.to_string(),
                health_status: "Healthy".to_string(),
            },
        );
    }

    /// Registers an SSM agent on an instance, with its ping status.
    pub fn add_ssm_agent(&self, instance_id: &str, ping_status: &str) {
        self.state()
            .ssm_agents
            .insert(instance_id.to_string(), ping_status.to_string());
    }

    /// Makes the invocations of commands on `instance_id` report these
    /// statuses, one per `GetCommandInvocation` (the last one repeats).
    pub fn plan_invocations(&self, instance_id: &str, plan: &[(InvocationStatus, i32)]) {
        self.state()
            .invocation_plan
            .insert(instance_id.to_string(), plan.iter().cloned().collect());
    }

    /// Suspends a process (`ReplaceUnhealthy`, `Terminate`...) of a group.
    pub fn suspend(&self, group: &str, process: &str) {
        if let Some(g) = self.state().groups.get_mut(group) {
            g.suspended_processes.push(process.to_string());
        }
    }
}

#[async_trait]
impl Commands for FakeAws {
    async fn managed(&self, instance_ids: &[String]) -> Result<Vec<ManagedInstance>, AwsError> {
        let s = self.call("ssm:DescribeInstanceInformation")?;
        Ok(instance_ids
            .iter()
            .filter_map(|id| {
                Some(ManagedInstance {
                    instance_id: id.clone(),
                    ping_status: s.ssm_agents.get(id)?.clone(),
                })
            })
            .collect())
    }

    async fn send_command(&self, request: &CommandRequest) -> Result<String, AwsError> {
        let mut s = self.call("ssm:SendCommand")?;
        let id = format!("cmd-{}", s.commands.len() + 1);
        s.commands.push((id.clone(), request.clone()));
        s.changes.push((
            "SendCommand".to_string(),
            request.instance_ids.clone(),
            false,
        ));
        Ok(id)
    }

    async fn invocation(
        &self,
        command_id: &str,
        instance_id: &str,
    ) -> Result<Option<Invocation>, AwsError> {
        let mut s = self.call("ssm:GetCommandInvocation")?;
        let sent = s
            .commands
            .iter()
            .any(|(id, r)| id == command_id && r.instance_ids.iter().any(|i| i == instance_id));
        if !sent {
            return Ok(None);
        }
        let (status, code) = match s.invocation_plan.get_mut(instance_id) {
            Some(plan) if plan.len() > 1 => plan.pop_front(),
            Some(plan) => plan.front().cloned(),
            None => None,
        }
        .unwrap_or((InvocationStatus::Success, 0));
        Ok(Some(Invocation {
            instance_id: instance_id.to_string(),
            status,
            response_code: Some(code),
        }))
    }
}

#[async_trait]
impl AutoScaling for FakeAws {
    async fn group_instances(
        &self,
        instance_ids: &[String],
    ) -> Result<Vec<GroupInstance>, AwsError> {
        let s = self.call("autoscaling:DescribeAutoScalingInstances")?;
        Ok(instance_ids
            .iter()
            .filter_map(|id| s.group_instances.get(id).cloned())
            .collect())
    }

    async fn groups(&self, names: &[String]) -> Result<Vec<AutoScalingGroup>, AwsError> {
        let s = self.call("autoscaling:DescribeAutoScalingGroups")?;
        Ok(names
            .iter()
            .filter_map(|n| s.groups.get(n).cloned())
            .collect())
    }

    async fn set_unhealthy(
        &self,
        instance_id: &str,
        respect_grace_period: bool,
    ) -> Result<Option<String>, AwsError> {
        let mut s = self.call("autoscaling:SetInstanceHealth")?;
        if let Some(i) = s.group_instances.get_mut(instance_id) {
            i.health_status = "Unhealthy".to_string();
        }
        let op = if respect_grace_period {
            "SetInstanceHealth"
        } else {
            "SetInstanceHealth(ignoring grace period)"
        };
        s.changes
            .push((op.to_string(), vec![instance_id.to_string()], false));
        if let Some(e) = s
            .lost_replies
            .get_mut("autoscaling:SetInstanceHealth")
            .and_then(VecDeque::pop_front)
        {
            return Err(e);
        }
        Ok(Some(format!("req-{}", s.changes.len())))
    }

    async fn terminate_in_group(&self, instance_id: &str) -> Result<Option<String>, AwsError> {
        let mut s = self.call("autoscaling:TerminateInstanceInAutoScalingGroup")?;
        if let Some(i) = s.group_instances.get_mut(instance_id) {
            i.lifecycle_state = "Terminating".to_string();
        }
        if let Some(i) = s.instances.get_mut(instance_id) {
            i.state = InstanceState::ShuttingDown;
        }
        s.changes.push((
            "TerminateInstanceInAutoScalingGroup".to_string(),
            vec![instance_id.to_string()],
            false,
        ));
        if let Some(e) = s
            .lost_replies
            .get_mut("autoscaling:TerminateInstanceInAutoScalingGroup")
            .and_then(VecDeque::pop_front)
        {
            return Err(e);
        }
        Ok(Some(format!("req-{}", s.changes.len())))
    }
}

#[async_trait]
impl Queue for FakeAws {
    async fn receive(
        &self,
        max: u8,
        _wait: Duration,
        _visibility: Duration,
    ) -> Result<Vec<QueueMessage>, AwsError> {
        self.stall("sqs:ReceiveMessage").await;
        let mut s = self.call("sqs:ReceiveMessage")?;
        let mut out = Vec::new();
        for (m, visible) in s.queue.iter_mut() {
            if *visible && out.len() < usize::from(max) {
                *visible = false;
                out.push(m.clone());
            }
        }
        Ok(out)
    }

    async fn delete(&self, receipt_handle: &str) -> Result<(), AwsError> {
        self.stall("sqs:DeleteMessage").await;
        let mut s = self.call("sqs:DeleteMessage")?;
        s.queue.retain(|(m, _)| m.receipt_handle != receipt_handle);
        s.deleted.push(receipt_handle.to_string());
        Ok(())
    }

    async fn change_visibility(
        &self,
        receipt_handle: &str,
        timeout: Duration,
    ) -> Result<(), AwsError> {
        self.stall("sqs:ChangeMessageVisibility").await;
        let mut s = self.call("sqs:ChangeMessageVisibility")?;
        s.visibility_changes
            .push((receipt_handle.to_string(), timeout.as_secs()));
        if timeout.is_zero() {
            for (m, visible) in s.queue.iter_mut() {
                if m.receipt_handle == receipt_handle {
                    *visible = true;
                }
            }
        }
        Ok(())
    }

    /// One entry is a `ChangeMessageVisibility` (as the SDK queue sends
    /// it); more are one `sqs:ChangeMessageVisibilityBatch` call, which
    /// `stall_next` and `fail_next` can hang or fail as a whole, and
    /// whose entries each take the next `sqs:ChangeMessageVisibility`
    /// failure, if any, as their own.
    async fn change_visibility_batch(
        &self,
        entries: &[(String, Duration)],
    ) -> Vec<Result<(), AwsError>> {
        if let [(receipt, timeout)] = entries {
            return vec![self.change_visibility(receipt, *timeout).await];
        }
        self.stall("sqs:ChangeMessageVisibilityBatch").await;
        let mut s = match self.call("sqs:ChangeMessageVisibilityBatch") {
            Ok(s) => s,
            Err(e) => return entries.iter().map(|_| Err(e.clone())).collect(),
        };
        let mut out = Vec::with_capacity(entries.len());
        for (receipt, timeout) in entries {
            if let Some(e) = s
                .failures
                .get_mut("sqs:ChangeMessageVisibility")
                .and_then(VecDeque::pop_front)
            {
                out.push(Err(AwsError {
                    operation: "ChangeMessageVisibilityBatch",
                    ..e
                }));
                continue;
            }
            s.visibility_changes
                .push((receipt.clone(), timeout.as_secs()));
            if timeout.is_zero() {
                for (m, visible) in s.queue.iter_mut() {
                    if m.receipt_handle == *receipt {
                        *visible = true;
                    }
                }
            }
            out.push(Ok(()));
        }
        out
    }

    async fn send(
        &self,
        body: &str,
        attributes: &BTreeMap<String, String>,
    ) -> Result<String, AwsError> {
        self.stall("sqs:SendMessage").await;
        let mut s = self.call("sqs:SendMessage")?;
        s.sent.push((body.to_string(), attributes.clone()));
        Ok(format!("sent-{}", s.sent.len()))
    }

    async fn ping(&self) -> Result<(), AwsError> {
        self.call("sqs:GetQueueAttributes").map(|_| ())
    }

    fn url(&self) -> &str {
        &self.url
    }
}

#[async_trait]
impl LoadBalancers for FakeAws {
    async fn instance_health(&self, load_balancer: &str) -> Result<Vec<InstanceHealth>, AwsError> {
        let s = self.call("elasticloadbalancing:DescribeInstanceHealth")?;
        s.elb_health
            .get(load_balancer)
            .cloned()
            .ok_or_else(|| AwsError {
                code: Some("LoadBalancerNotFound".into()),
                ..AwsError::permanent(
                    "elasticloadbalancing",
                    "DescribeInstanceHealth",
                    format!("no load balancer {load_balancer}"),
                )
            })
    }

    async fn deregister(
        &self,
        load_balancer: &str,
        instance_ids: &[String],
    ) -> Result<Option<String>, AwsError> {
        let mut s = self.call("elasticloadbalancing:DeregisterInstancesFromLoadBalancer")?;
        if let Some(h) = s.elb_health.get_mut(load_balancer) {
            h.retain(|i| !instance_ids.contains(&i.instance_id));
        }
        s.changes.push((
            "DeregisterInstancesFromLoadBalancer".into(),
            instance_ids.to_vec(),
            false,
        ));
        if let Some(e) = s
            .lost_replies
            .get_mut("elasticloadbalancing:DeregisterInstancesFromLoadBalancer")
            .and_then(VecDeque::pop_front)
        {
            return Err(e);
        }
        Ok(Some("req-deregister".into()))
    }
}

#[async_trait]
impl TargetGroups for FakeAws {
    async fn describe_target_group(&self, arn: &str) -> Result<Option<TargetGroupInfo>, AwsError> {
        let s = self.call("elasticloadbalancing:DescribeTargetGroups")?;
        Ok(s.target_groups.get(arn).map(|(g, _)| g.clone()))
    }

    async fn target_health(&self, arn: &str) -> Result<Vec<TargetHealth>, AwsError> {
        let s = self.call("elasticloadbalancing:DescribeTargetHealth")?;
        s.target_groups
            .get(arn)
            .map(|(_, t)| t.clone())
            .ok_or_else(|| AwsError {
                code: Some("TargetGroupNotFound".into()),
                ..AwsError::permanent(
                    "elasticloadbalancing",
                    "DescribeTargetHealth",
                    format!("no target group {arn}"),
                )
            })
    }

    async fn deregister_targets(
        &self,
        arn: &str,
        targets: &[Target],
    ) -> Result<Option<String>, AwsError> {
        let mut s = self.call("elasticloadbalancing:DeregisterTargets")?;
        let ids: Vec<String> = targets.iter().map(|t| t.id.clone()).collect();
        if let Some((_, registered)) = s.target_groups.get_mut(arn) {
            registered.retain(|t| !ids.contains(&t.id));
        }
        s.changes.push(("DeregisterTargets".into(), ids, false));
        if let Some(e) = s
            .lost_replies
            .get_mut("elasticloadbalancing:DeregisterTargets")
            .and_then(VecDeque::pop_front)
        {
            return Err(e);
        }
        Ok(Some("req-deregister-targets".into()))
    }
}

#[async_trait]
impl Instances for FakeAws {
    async fn describe(&self, instance_ids: &[String]) -> Result<Vec<InstanceInfo>, AwsError> {
        let s = self.call("ec2:DescribeInstances")?;
        Ok(instance_ids
            .iter()
            .filter_map(|id| s.instances.get(id).cloned())
            .collect())
    }

    async fn change(
        &self,
        op: InstanceOp,
        instance_ids: &[String],
        dry_run: bool,
    ) -> Result<Option<String>, AwsError> {
        let name = match op {
            InstanceOp::Terminate => "ec2:TerminateInstances",
            InstanceOp::Reboot => "ec2:RebootInstances",
            InstanceOp::Stop => "ec2:StopInstances",
        };
        self.stall(name).await;
        // The guard is dropped before a stalled reply waits.
        let (request, stalled) = {
            let mut s = self.call(name)?;
            s.changes
                .push((op.to_string(), instance_ids.to_vec(), dry_run));
            if !dry_run {
                let new_state = match op {
                    InstanceOp::Terminate => Some(InstanceState::Terminated),
                    InstanceOp::Stop => Some(InstanceState::Stopped),
                    InstanceOp::Reboot => None,
                };
                for id in instance_ids {
                    if let (Some(st), Some(i)) = (&new_state, s.instances.get_mut(id)) {
                        i.state = st.clone();
                    }
                }
            }
            if let Some(e) = s.lost_replies.get_mut(name).and_then(VecDeque::pop_front) {
                return Err(e);
            }
            let stalled = match s.stalled_replies.get_mut(name) {
                Some(n) if *n > 0 => {
                    *n -= 1;
                    true
                }
                _ => false,
            };
            let request = format!("req-{}", s.changes.len());
            (request, stalled)
        };
        if stalled {
            std::future::pending::<()>().await;
        }
        Ok(Some(request))
    }
}

/// Serves [`test_signer`](super::signing::test_signer)'s certificate at its
/// URL, and any added to [`FakeState::signing_certs`]; fails the
/// `sns:GetSigningCertificate` calls a test asks it to.
#[async_trait]
impl SigningCerts for FakeAws {
    fn endpoint(&self) -> Option<&str> {
        None
    }

    async fn fetch(&self, location: &crate::trust::CertLocation) -> Result<Vec<u8>, AwsError> {
        self.stall("sns:GetSigningCertificate").await;
        let s = self.call("sns:GetSigningCertificate")?;
        let own = super::signing::test_signer();
        if location.fetch_url == own.cert_url {
            return Ok(own.cert_pem.clone().into_bytes());
        }
        s.signing_certs
            .get(&location.fetch_url)
            .map(|pem| pem.clone().into_bytes())
            .ok_or_else(|| {
                AwsError::permanent(
                    "sns",
                    "GetSigningCertificate",
                    format!("{} answered 404 Not Found", location.fetch_url),
                )
            })
    }
}

#[async_trait]
impl Alarms for FakeAws {
    async fn alarm_state(&self, alarm_name: &str) -> Result<Option<AlarmState>, AwsError> {
        let s = self.call("cloudwatch:DescribeAlarms")?;
        Ok(s.alarms.get(alarm_name).copied())
    }
}

#[async_trait]
impl Notifier for FakeAws {
    async fn publish(
        &self,
        topic_arn: &str,
        subject: &str,
        message: &str,
    ) -> Result<Option<String>, AwsError> {
        let mut s = self.call("sns:Publish")?;
        s.published
            .push((topic_arn.into(), subject.into(), message.into()));
        Ok(Some(format!("sns-{}", s.published.len())))
    }
}

#[async_trait]
impl MetricPublisher for FakeAws {
    async fn put(&self, namespace: &str, data: &[Datum]) -> Result<Option<String>, AwsError> {
        let mut s = self.call("cloudwatch:PutMetricData")?;
        for d in data {
            s.metrics.push((namespace.to_string(), d.clone()));
        }
        Ok(None)
    }
}
