//! The fleet as the guards see it: what a load balancer says about its
//! instances, what EC2 says about one instance, and the changes reflex can
//! make to instances. Plain data, no I/O.
//!
//! These types live below [`crate::safety`] and [`crate::aws`] on purpose:
//! the blast-radius guards decide on them, and the AWS implementations
//! return them, so neither has to import the other.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};

/// What a classic ELB says about one registered instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceHealth {
    pub instance_id: String,
    pub state: HealthState,
    pub reason: Option<String>,
}

impl InstanceHealth {
    pub fn in_service(&self) -> bool {
        self.state == HealthState::InService
    }

    pub fn out_of_service(&self) -> bool {
        self.state == HealthState::OutOfService
    }
}

/// A classic ELB's view of one instance (`DescribeInstanceHealth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HealthState {
    InService,
    OutOfService,
    /// `Unknown`, or a state this version of reflex does not know.
    Unknown,
}

impl HealthState {
    /// Reads the ELB's string; anything unexpected is [`HealthState::Unknown`].
    pub fn parse(s: &str) -> HealthState {
        match s {
            "InService" => HealthState::InService,
            "OutOfService" => HealthState::OutOfService,
            _ => HealthState::Unknown,
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            HealthState::InService => "InService",
            HealthState::OutOfService => "OutOfService",
            HealthState::Unknown => "Unknown",
        }
    }
}

impl From<&str> for HealthState {
    fn from(s: &str) -> Self {
        HealthState::parse(s)
    }
}

impl fmt::Display for HealthState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An ELBv2 target group, as `DescribeTargetGroups` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetGroupInfo {
    pub arn: String,
    pub name: String,
    pub target_type: TargetType,
}

/// What a target group's targets are (`TargetType`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TargetType {
    Instance,
    Ip,
    Lambda,
    Alb,
    /// A type this version of reflex does not know, kept verbatim.
    Other(String),
}

impl TargetType {
    pub fn parse(s: &str) -> TargetType {
        match s {
            "instance" => TargetType::Instance,
            "ip" => TargetType::Ip,
            "lambda" => TargetType::Lambda,
            "alb" => TargetType::Alb,
            other => TargetType::Other(other.to_string()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            TargetType::Instance => "instance",
            TargetType::Ip => "ip",
            TargetType::Lambda => "lambda",
            TargetType::Alb => "alb",
            TargetType::Other(s) => s,
        }
    }
}

impl fmt::Display for TargetType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An ELBv2 target's health state (`DescribeTargetHealth`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TargetState {
    Initial,
    Healthy,
    Unhealthy,
    /// `unhealthy.draining`: failing, and already being drained.
    UnhealthyDraining,
    Unused,
    Draining,
    Unavailable,
    /// A state this version of reflex does not know, kept verbatim.
    Other(String),
}

impl TargetState {
    pub fn parse(s: &str) -> TargetState {
        match s {
            "initial" => TargetState::Initial,
            "healthy" => TargetState::Healthy,
            "unhealthy" => TargetState::Unhealthy,
            "unhealthy.draining" => TargetState::UnhealthyDraining,
            "unused" => TargetState::Unused,
            "draining" => TargetState::Draining,
            "unavailable" => TargetState::Unavailable,
            other => TargetState::Other(other.to_string()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            TargetState::Initial => "initial",
            TargetState::Healthy => "healthy",
            TargetState::Unhealthy => "unhealthy",
            TargetState::UnhealthyDraining => "unhealthy.draining",
            TargetState::Unused => "unused",
            TargetState::Draining => "draining",
            TargetState::Unavailable => "unavailable",
            TargetState::Other(s) => s,
        }
    }
}

impl From<&str> for TargetState {
    fn from(s: &str) -> Self {
        TargetState::parse(s)
    }
}

impl fmt::Display for TargetState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The reason code a stopped instance has in a target group.
pub const TARGET_INVALID_STATE: &str = "Target.InvalidState";

/// What a target group says about one registered target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetHealth {
    /// The instance id or IP address.
    pub id: String,
    pub port: Option<i32>,
    pub state: TargetState,
    /// The reason code, e.g. `Target.FailedHealthChecks`.
    pub reason: Option<String>,
    pub description: Option<String>,
}

impl TargetHealth {
    /// This target as a pool member: `unhealthy` is bad; `unused` with
    /// `Target.InvalidState` (a stopped instance) is bad only when
    /// `include_stopped`; `initial`, `draining` and `unavailable` never are.
    pub fn member(&self, include_stopped: bool) -> PoolMember {
        let health = match &self.state {
            TargetState::Healthy => MemberHealth::Healthy,
            TargetState::Unhealthy => MemberHealth::Bad,
            TargetState::Unused
                if include_stopped && self.reason.as_deref() == Some(TARGET_INVALID_STATE) =>
            {
                MemberHealth::Bad
            }
            _ => MemberHealth::Neither,
        };
        PoolMember {
            id: self.id.clone(),
            port: self.port,
            health,
            state: self.state.as_str().to_string(),
            reason: self.reason.clone(),
        }
    }
}

/// A target to deregister from a target group: its id and, when the group
/// registered it with one, its port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub id: String,
    pub port: Option<i32>,
}

/// How a pool member counts for the guards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberHealth {
    /// InService (classic ELB) or `healthy` (target group).
    Healthy,
    /// A remediation candidate.
    Bad,
    /// Neither: starting, draining, unknown...
    Neither,
}

/// One member of a pool (a classic ELB's instances or a target group's
/// targets), as the pool guards see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolMember {
    pub id: String,
    pub port: Option<i32>,
    pub health: MemberHealth,
    /// The load balancer's own word for the state, for messages.
    pub state: String,
    /// The reason code the load balancer gave, if any.
    pub reason: Option<String>,
}

impl PoolMember {
    pub fn is_bad(&self) -> bool {
        self.health == MemberHealth::Bad
    }

    pub fn is_healthy(&self) -> bool {
        self.health == MemberHealth::Healthy
    }
}

impl InstanceHealth {
    /// This instance as a pool member: OutOfService is bad.
    pub fn member(&self) -> PoolMember {
        PoolMember {
            id: self.instance_id.clone(),
            port: None,
            health: match self.state {
                HealthState::InService => MemberHealth::Healthy,
                HealthState::OutOfService => MemberHealth::Bad,
                HealthState::Unknown => MemberHealth::Neither,
            },
            state: self.state.as_str().to_string(),
            reason: self.reason.clone(),
        }
    }
}

/// What EC2 says about one instance.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceInfo {
    pub instance_id: String,
    pub state: InstanceState,
    pub launch_time: Option<DateTime<Utc>>,
    pub tags: BTreeMap<String, String>,
}

/// An EC2 instance's lifecycle state.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum InstanceState {
    Pending,
    Running,
    Stopping,
    Stopped,
    ShuttingDown,
    Terminated,
    /// A state EC2 reported that this version of reflex does not know, kept
    /// verbatim for messages (`unknown` when EC2 reported none).
    Other(String),
}

impl InstanceState {
    /// Reads EC2's string (`running`, `shutting-down`...).
    pub fn parse(s: &str) -> InstanceState {
        match s {
            "pending" => InstanceState::Pending,
            "running" => InstanceState::Running,
            "stopping" => InstanceState::Stopping,
            "stopped" => InstanceState::Stopped,
            "shutting-down" => InstanceState::ShuttingDown,
            "terminated" => InstanceState::Terminated,
            other => InstanceState::Other(other.to_string()),
        }
    }

    /// EC2's name for the state.
    pub fn as_str(&self) -> &str {
        match self {
            InstanceState::Pending => "pending",
            InstanceState::Running => "running",
            InstanceState::Stopping => "stopping",
            InstanceState::Stopped => "stopped",
            InstanceState::ShuttingDown => "shutting-down",
            InstanceState::Terminated => "terminated",
            InstanceState::Other(s) => s,
        }
    }
}

impl From<&str> for InstanceState {
    fn from(s: &str) -> Self {
        InstanceState::parse(s)
    }
}

impl fmt::Display for InstanceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A change to instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstanceOp {
    Terminate,
    Reboot,
    Stop,
}

impl InstanceOp {
    /// Whether the instance's state shows this change made already (a
    /// reboot never shows): what a taken-over claim and a failed write
    /// re-read before acting again.
    pub fn shows_in(self, state: &InstanceState) -> bool {
        match self {
            InstanceOp::Terminate => {
                matches!(
                    state,
                    InstanceState::Terminated | InstanceState::ShuttingDown
                )
            }
            InstanceOp::Stop => matches!(
                state,
                InstanceState::Stopped
                    | InstanceState::Stopping
                    | InstanceState::Terminated
                    | InstanceState::ShuttingDown
            ),
            InstanceOp::Reboot => false,
        }
    }
}

impl InstanceOp {
    /// The states an instance must be in for this change: terminating acts
    /// on running or stopped instances, stopping and rebooting on running
    /// ones; none acts on an instance that is starting or already dying.
    pub const fn acts_on(self) -> &'static [InstanceState] {
        match self {
            InstanceOp::Terminate => &[InstanceState::Running, InstanceState::Stopped],
            InstanceOp::Stop | InstanceOp::Reboot => &[InstanceState::Running],
        }
    }

    /// The EC2 API operation.
    pub const fn operation(self) -> &'static str {
        match self {
            InstanceOp::Terminate => "TerminateInstances",
            InstanceOp::Reboot => "RebootInstances",
            InstanceOp::Stop => "StopInstances",
        }
    }
}

impl fmt::Display for InstanceOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.operation())
    }
}

/// What Auto Scaling says about one instance
/// (`DescribeAutoScalingInstances`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupInstance {
    pub instance_id: String,
    /// The Auto Scaling group the instance belongs to.
    pub group: String,
    /// `InService`, `Pending`, `Terminating`, `Standby`, `Detaching`...
    pub lifecycle_state: String,
    /// `Healthy` or `Unhealthy`.
    pub health_status: String,
}

/// The lifecycle state in which an Auto Scaling group replaces an instance
/// it is told about.
pub const IN_SERVICE: &str = "InService";

/// An Auto Scaling group, as `DescribeAutoScalingGroups` reports it: what
/// the Auto Scaling methods need to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutoScalingGroup {
    pub name: String,
    /// The names of the suspended processes (`ReplaceUnhealthy`,
    /// `Terminate`, `Launch`...).
    pub suspended_processes: Vec<String>,
}

/// Processes whose suspension turns an Auto Scaling method into a no-op
/// that looks like success: the group neither replaces an Unhealthy
/// instance nor terminates it.
///
/// `Launch` is among them: `ReplaceUnhealthy` terminates and then launches,
/// so with `Launch` suspended the group would take the instance away and
/// not replace it — capacity lost, not a replacement.
pub const REPLACEMENT_PROCESSES: &[&str] = &["ReplaceUnhealthy", "Terminate", "Launch"];

/// An instance as Systems Manager sees it (`DescribeInstanceInformation`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagedInstance {
    pub instance_id: String,
    /// `Online`, `ConnectionLost` or `Inactive`: only an `Online` agent
    /// runs commands.
    pub ping_status: String,
}

/// The SSM ping status of an agent that can run a command now.
pub const SSM_ONLINE: &str = "Online";

/// A command to run on instances with `AWS-RunShellScript`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandRequest {
    pub instance_ids: Vec<String>,
    /// Shell lines, run in order.
    pub commands: Vec<String>,
    /// `MaxConcurrency`: a count (`"1"`) or a percentage (`"25%"`).
    pub max_concurrency: String,
    /// `MaxErrors`: a count or a percentage.
    pub max_errors: String,
    /// The script's `executionTimeout`: SSM stops it after this.
    pub execution_timeout: std::time::Duration,
    /// `Comment` (at most 100 characters): the rule that sent it.
    pub comment: String,
}

pub use crate::rules::action::RUN_SHELL_SCRIPT;

/// The status of one instance's invocation of a command
/// (`GetCommandInvocation`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvocationStatus {
    Pending,
    InProgress,
    Delayed,
    Success,
    Cancelled,
    TimedOut,
    Failed,
    Cancelling,
    Other(String),
}

impl InvocationStatus {
    pub fn parse(s: &str) -> InvocationStatus {
        match s {
            "Pending" => InvocationStatus::Pending,
            "InProgress" => InvocationStatus::InProgress,
            "Delayed" => InvocationStatus::Delayed,
            "Success" => InvocationStatus::Success,
            "Cancelled" => InvocationStatus::Cancelled,
            "TimedOut" => InvocationStatus::TimedOut,
            "Failed" => InvocationStatus::Failed,
            "Cancelling" => InvocationStatus::Cancelling,
            other => InvocationStatus::Other(other.to_string()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            InvocationStatus::Pending => "Pending",
            InvocationStatus::InProgress => "InProgress",
            InvocationStatus::Delayed => "Delayed",
            InvocationStatus::Success => "Success",
            InvocationStatus::Cancelled => "Cancelled",
            InvocationStatus::TimedOut => "TimedOut",
            InvocationStatus::Failed => "Failed",
            InvocationStatus::Cancelling => "Cancelling",
            InvocationStatus::Other(s) => s,
        }
    }

    /// Whether the invocation has finished: it will not change again.
    /// An unknown status counts as finished (and not a success), so a
    /// new status can never keep reflex polling forever.
    pub fn is_terminal(&self) -> bool {
        !matches!(
            self,
            InvocationStatus::Pending
                | InvocationStatus::InProgress
                | InvocationStatus::Delayed
                | InvocationStatus::Cancelling
        )
    }
}

impl std::fmt::Display for InvocationStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One instance's invocation of a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    pub instance_id: String,
    pub status: InvocationStatus,
    /// The script's exit code, once it ran (`-1` while it has not).
    pub response_code: Option<i32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_states_round_trip_through_ec2_names() {
        for name in [
            "pending",
            "running",
            "stopping",
            "stopped",
            "shutting-down",
            "terminated",
        ] {
            let state = InstanceState::parse(name);
            assert!(!matches!(state, InstanceState::Other(_)), "{name}");
            assert_eq!(state.to_string(), name);
        }
        assert_eq!(
            InstanceState::parse("hibernating"),
            InstanceState::Other("hibernating".into())
        );
        assert_eq!(InstanceState::parse("hibernating").as_str(), "hibernating");
    }

    #[test]
    fn health_states_parse_and_unknowns_count_as_neither() {
        assert_eq!(HealthState::parse("InService"), HealthState::InService);
        assert_eq!(
            HealthState::parse("OutOfService"),
            HealthState::OutOfService
        );
        let h = InstanceHealth {
            instance_id: "i-1".into(),
            state: HealthState::parse("Draining"),
            reason: None,
        };
        assert!(!h.in_service() && !h.out_of_service());
    }

    #[test]
    fn ops_act_on_the_states_ec2_allows() {
        assert_eq!(
            InstanceOp::Terminate.acts_on(),
            [InstanceState::Running, InstanceState::Stopped]
        );
        assert_eq!(InstanceOp::Stop.acts_on(), [InstanceState::Running]);
        assert_eq!(InstanceOp::Reboot.to_string(), "RebootInstances");
    }

    #[test]
    fn target_states_classify_as_the_issue_says() {
        let t = |state: &str, reason: Option<&str>| TargetHealth {
            id: "i-1".into(),
            port: Some(80),
            state: state.into(),
            reason: reason.map(str::to_string),
            description: None,
        };
        let bad = |h: &TargetHealth, stopped: bool| h.member(stopped).is_bad();
        assert!(bad(
            &t("unhealthy", Some("Target.FailedHealthChecks")),
            false
        ));
        assert!(!bad(&t("unused", Some(TARGET_INVALID_STATE)), false));
        assert!(bad(&t("unused", Some(TARGET_INVALID_STATE)), true));
        assert!(!bad(&t("unused", Some("Target.NotRegistered")), true));
        for never in [
            "initial",
            "draining",
            "unavailable",
            "unhealthy.draining",
            "weird",
        ] {
            assert!(!bad(&t(never, None), true), "{never}");
            assert!(!t(never, None).member(true).is_healthy(), "{never}");
        }
        assert!(t("healthy", None).member(false).is_healthy());
        assert_eq!(
            t("unhealthy.draining", None).state.as_str(),
            "unhealthy.draining"
        );
        assert_eq!(TargetType::parse("ip"), TargetType::Ip);
        assert_eq!(TargetType::parse("x").to_string(), "x");
    }
}
