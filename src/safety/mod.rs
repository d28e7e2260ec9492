//! Guards: what stops an action. Pure blast-radius selection
//! ([`blast_radius`]); the limiter state — dedup, cooldowns, rates, target
//! leases — lives in `crate::state`.

pub mod blast_radius;

use std::collections::BTreeMap;

use serde::Serialize;

/// The guards that can stop or shrink an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Guard {
    MinInService,
    /// Every registered member of the pool is bad: the load balancer fails
    /// open and routes to all of them, so removing any makes things worse.
    FailOpen,
    /// More of the pool is bad than `max_unhealthy`: the cause is shared.
    MaxUnhealthy,
    /// The target group's targets are of a type the method cannot act on.
    TargetType,
    MaxPercent,
    MaxInstances,
    MinInstanceAge,
    RequireTag,
    InstanceState,
    NotConfirmed,
    /// An Auto Scaling method, and the instance is in no Auto Scaling group.
    NotInGroup,
    /// An Auto Scaling method, and the instance is not `InService` in its
    /// group (Pending, Terminating, Standby...).
    NotInService,
    /// An Auto Scaling method, and the group has `ReplaceUnhealthy`,
    /// `Terminate` or `Launch` suspended: the call would be a no-op that looks like
    /// success.
    ProcessSuspended,
    /// `run_command`, and Systems Manager does not manage the instance, or
    /// its agent is not `Online`: the command could not run.
    NotManaged,
    AlarmRecovered,
    AlarmNotFound,
    Cooldown,
    /// The target's remediation budget (`[limits] remediation_budget`) is
    /// spent: too many attempts on it within the window, across all rules.
    Budget,
    RuleRate,
    GlobalRate,
}

impl Guard {
    pub const fn as_str(self) -> &'static str {
        match self {
            Guard::MinInService => "min_in_service",
            Guard::FailOpen => "fail_open",
            Guard::MaxUnhealthy => "max_unhealthy",
            Guard::TargetType => "target_type",
            Guard::MaxPercent => "max_percent",
            Guard::MaxInstances => "max_instances",
            Guard::MinInstanceAge => "min_instance_age",
            Guard::RequireTag => "require_tag",
            Guard::InstanceState => "instance_state",
            Guard::NotConfirmed => "not_confirmed",
            Guard::NotInGroup => "not_in_group",
            Guard::NotInService => "not_in_service",
            Guard::ProcessSuspended => "process_suspended",
            Guard::NotManaged => "not_managed",
            Guard::AlarmRecovered => "alarm_recovered",
            Guard::AlarmNotFound => "alarm_not_found",
            Guard::Cooldown => "cooldown",
            Guard::Budget => "budget",
            Guard::RuleRate => "rule_rate",
            Guard::GlobalRate => "global_rate",
        }
    }
}

impl std::fmt::Display for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A guard that tripped, with the numbers that tripped it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GuardTrip {
    pub guard: Guard,
    pub detail: String,
    pub numbers: BTreeMap<&'static str, i64>,
}

impl GuardTrip {
    pub fn new(guard: Guard, detail: impl Into<String>) -> Self {
        GuardTrip {
            guard,
            detail: detail.into(),
            numbers: BTreeMap::new(),
        }
    }

    pub fn with(mut self, name: &'static str, value: impl TryInto<i64>) -> Self {
        self.numbers
            .insert(name, value.try_into().unwrap_or(i64::MAX));
        self
    }
}
