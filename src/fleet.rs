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
}
