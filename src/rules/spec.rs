//! The rule-file format, as serde types: what a user writes in `rules/*.toml`.
//!
//! The `///` docs on these types are user documentation: they end up in the
//! JSON Schema (`reflex schema`) that editors show. Everything here is data as
//! written; [`compile`](super::compile) turns it into checked, ready-to-match
//! [`Rule`](super::Rule)s. Scalar fields whose value is checked after parsing
//! are [`Spanned`] so an error can name the line and column. (Tables cannot
//! be: each rule is deserialized on its own, and its sub-tables lose their
//! spans on the way, so errors about a whole table point at a scalar in it.)

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_spanned::Spanned;

use super::matcher::{NumberMatcherSpec, StringMatcherSpec};

/// A rule file: any number of `[[rule]]` tables.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "reflex rule file")]
pub struct RuleFileSpec {
    /// The reaction rules in this file.
    #[serde(default)]
    pub rule: Vec<RuleSpec>,
}

/// One reaction rule: when an alarm event matches `match`, run `actions`
/// in order, within `limits`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// Unique name across every rule file; used in logs, metrics, cooldowns.
    #[schemars(with = "String")]
    pub name: Spanned<String>,
    /// What the rule is for, in a sentence.
    #[serde(default)]
    pub description: Option<String>,
    /// A disabled rule never acts; `explain` reports it as skipped.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Perform every read and compute every target, but change nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// Conditions on the alarm event; all of them must hold.
    #[serde(rename = "match")]
    pub match_: MatchSpec,
    /// What to do, in order.
    #[serde(default)]
    pub actions: Vec<ActionSpec>,
    /// How often and how late the rule may act.
    #[serde(default)]
    pub limits: LimitsSpec,
}

const fn default_true() -> bool {
    true
}

/// Conditions on the alarm event. Every condition given must hold (AND).
///
/// Each string condition is a value (exact match), a list (any of), or a
/// table of operators: `equals`, `any_of`, `glob`, `prefix`, `suffix`,
/// `regex`, `anything_but`, `exists`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MatchSpec {
    /// The alarm's name.
    #[schemars(with = "Option<StringMatcherSpec>")]
    pub alarm_name: Option<Spanned<StringMatcherSpec>>,
    /// The alarm's ARN.
    #[schemars(with = "Option<StringMatcherSpec>")]
    pub alarm_arn: Option<Spanned<StringMatcherSpec>>,
    /// The AWS account id of the alarm.
    #[schemars(with = "Option<StringMatcherSpec>")]
    pub account: Option<Spanned<StringMatcherSpec>>,
    /// The region code of the alarm, e.g. `eu-west-1`.
    #[schemars(with = "Option<StringMatcherSpec>")]
    pub region: Option<Spanned<StringMatcherSpec>>,
    /// The state the alarm moved into: `OK`, `ALARM` or `INSUFFICIENT_DATA`.
    #[schemars(with = "Option<StringMatcherSpec>")]
    pub new_state: Option<Spanned<StringMatcherSpec>>,
    /// The state the alarm moved out of.
    #[schemars(with = "Option<StringMatcherSpec>")]
    pub old_state: Option<Spanned<StringMatcherSpec>>,
    /// The metric namespace, e.g. `AWS/ELB`.
    #[schemars(with = "Option<StringMatcherSpec>")]
    pub namespace: Option<Spanned<StringMatcherSpec>>,
    /// The metric name, e.g. `UnHealthyHostCount`.
    #[schemars(with = "Option<StringMatcherSpec>")]
    pub metric_name: Option<Spanned<StringMatcherSpec>>,
    /// Conditions on the metric's dimensions, by dimension name.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, StringMatcherSpec>")]
    pub dimensions: BTreeMap<String, Spanned<StringMatcherSpec>>,
    /// The ARN of the SNS topic the notification came through.
    #[schemars(with = "Option<StringMatcherSpec>")]
    pub topic_arn: Option<Spanned<StringMatcherSpec>>,
    /// The alarm's description.
    #[schemars(with = "Option<StringMatcherSpec>")]
    pub description: Option<Spanned<StringMatcherSpec>>,
    /// Comparisons on the alarm's threshold: `gt`, `gte`, `lt`, `lte`, `eq`.
    #[schemars(with = "Option<NumberMatcherSpec>")]
    pub threshold: Option<Spanned<NumberMatcherSpec>>,
}

/// The kinds of action a rule can take.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Deserialize,
    serde::Serialize,
    JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    /// Terminate the instances a classic ELB reports OutOfService, so their
    /// Auto Scaling group replaces them.
    TerminateOutOfService,
    /// Deregister the instances a classic ELB reports OutOfService.
    DeregisterOutOfService,
    /// Reboot the instance named by the event.
    RebootInstance,
    /// Stop the instance named by the event.
    StopInstance,
    /// Terminate the instance named by the event.
    TerminateInstance,
    /// Act on the bad members of a pool — a target group's unhealthy
    /// targets or a classic ELB's OutOfService instances — by `method`.
    /// (`terminate_out_of_service` and `deregister_out_of_service` are this
    /// with `pool = "classic_elb"` and method `terminate` or `deregister`.)
    RemediatePool,
    /// Run shell commands on the instance named by the event with SSM Run
    /// Command (`AWS-RunShellScript`), and wait for their outcome: a
    /// restart, not a replacement.
    RunCommand,
    /// Publish a message to an SNS topic.
    Notify,
    /// Put one CloudWatch metric data point.
    PutMetric,
}

impl ActionKind {
    pub const ALL: [ActionKind; 9] = [
        ActionKind::TerminateOutOfService,
        ActionKind::DeregisterOutOfService,
        ActionKind::RebootInstance,
        ActionKind::StopInstance,
        ActionKind::TerminateInstance,
        ActionKind::RemediatePool,
        ActionKind::RunCommand,
        ActionKind::Notify,
        ActionKind::PutMetric,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            ActionKind::TerminateOutOfService => "terminate_out_of_service",
            ActionKind::DeregisterOutOfService => "deregister_out_of_service",
            ActionKind::RebootInstance => "reboot_instance",
            ActionKind::StopInstance => "stop_instance",
            ActionKind::TerminateInstance => "terminate_instance",
            ActionKind::RemediatePool => "remediate_pool",
            ActionKind::RunCommand => "run_command",
            ActionKind::Notify => "notify",
            ActionKind::PutMetric => "put_metric",
        }
    }

    /// The parameters (besides `type`) an action of this kind accepts.
    pub const fn params(self) -> &'static [&'static str] {
        match self {
            ActionKind::TerminateOutOfService | ActionKind::DeregisterOutOfService => &[
                "load_balancer",
                "max_instances",
                "max_percent",
                "min_in_service",
                "max_unhealthy",
                "min_instance_age",
                "require_tag",
                "confirm_after",
                "escalate_topic_arn",
            ],
            ActionKind::RemediatePool => &[
                "pool",
                "load_balancer",
                "target_group_arn",
                "method",
                "target_type",
                "include_stopped",
                "respect_grace_period",
                "max_instances",
                "max_percent",
                "min_in_service",
                "max_unhealthy",
                "min_instance_age",
                "require_tag",
                "confirm_after",
                "escalate_topic_arn",
                "commands",
                "max_concurrency",
                "max_errors",
                "timeout",
            ],
            ActionKind::RunCommand => &[
                "instance_id",
                "commands",
                "max_concurrency",
                "max_errors",
                "timeout",
                "min_instance_age",
                "require_tag",
                "escalate_topic_arn",
            ],
            ActionKind::RebootInstance
            | ActionKind::StopInstance
            | ActionKind::TerminateInstance => &[
                "instance_id",
                "min_instance_age",
                "require_tag",
                "escalate_topic_arn",
            ],
            ActionKind::Notify => &["topic_arn", "subject", "message"],
            ActionKind::PutMetric => &["namespace", "metric_name", "value", "unit", "dimensions"],
        }
    }

    /// Whether the action changes infrastructure (and so is guarded).
    pub const fn is_destructive(self) -> bool {
        !matches!(self, ActionKind::Notify | ActionKind::PutMetric)
    }
}

impl std::fmt::Display for ActionKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One action. `type` picks the kind; which other keys are allowed depends on
/// it (see the README). String parameters are templates: `{{ alarm.name }}`,
/// `{{ dimension.LoadBalancerName }}`, `{{ instance_id }}`, ...
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ActionSpec {
    /// The kind of action.
    #[serde(rename = "type")]
    #[schemars(with = "ActionKind")]
    pub kind: Spanned<ActionKind>,
    /// Which kind of pool `remediate_pool` acts on. Default `target_group`.
    #[schemars(with = "Option<PoolKind>")]
    pub pool: Option<Spanned<PoolKind>>,
    /// Classic ELB name (template). Default `{{ dimension.LoadBalancerName }}`.
    #[schemars(with = "Option<String>")]
    pub load_balancer: Option<Spanned<String>>,
    /// Target group ARN (template). Default `{{ target_group_arn }}`: the
    /// alarm's `TargetGroup` dimension in the alarm ARN's partition, region
    /// and account.
    #[schemars(with = "Option<String>")]
    pub target_group_arn: Option<Spanned<String>>,
    /// What to do with each bad instance. Default `terminate`.
    #[schemars(with = "Option<Method>")]
    pub method: Option<Spanned<Method>>,
    /// The target type the rule expects; a target group of another type is
    /// left alone. `ip` targets can only be deregistered; `lambda` and
    /// `alb` targets are out of scope.
    #[schemars(with = "Option<TargetTypeSpec>")]
    pub target_type: Option<Spanned<TargetTypeSpec>>,
    /// Also count `unused` targets with reason `Target.InvalidState` (a
    /// stopped instance) as bad. Default false.
    #[schemars(with = "Option<bool>")]
    pub include_stopped: Option<Spanned<bool>>,
    /// With method `asg_set_unhealthy`: `ShouldRespectGracePeriod`, so an
    /// instance still in its group's health-check grace period is left
    /// alone by Auto Scaling. Default true.
    #[schemars(with = "Option<bool>")]
    pub respect_grace_period: Option<Spanned<bool>>,
    /// Instance id (template). Default `{{ dimension.InstanceId }}`.
    #[schemars(with = "Option<String>")]
    pub instance_id: Option<Spanned<String>>,
    /// At most this many instances per execution. Default 1.
    #[schemars(with = "Option<u32>", range(min = 1))]
    pub max_instances: Option<Spanned<i64>>,
    /// At most this share (1-100) of the registered instances per execution.
    /// Default 50.
    #[schemars(with = "Option<u32>", range(min = 1, max = 100))]
    pub max_percent: Option<Spanned<i64>>,
    /// Do nothing unless at least this many instances are InService.
    /// Default 1.
    #[schemars(with = "Option<u32>")]
    pub min_in_service: Option<Spanned<i64>>,
    /// Do nothing when more of the pool than this is bad: a count (`3`) or
    /// a percentage of the registered members (`"40%"`). Default `"50%"`.
    #[schemars(with = "Option<MaxUnhealthySpec>")]
    pub max_unhealthy: Option<Spanned<MaxUnhealthySpec>>,
    /// Leave alone instances launched less than this long ago, e.g. `"10m"`.
    /// Default `"10m"`.
    #[schemars(with = "Option<String>")]
    pub min_instance_age: Option<Spanned<String>>,
    /// Only act on instances carrying this tag.
    pub require_tag: Option<TagSpec>,
    /// Re-check ELB health after this delay, e.g. `"30s"`; only instances
    /// OutOfService both times are targets.
    #[schemars(with = "Option<String>")]
    pub confirm_after: Option<Spanned<String>>,
    /// SNS topic to tell when a guard stops this action.
    #[schemars(with = "Option<String>")]
    pub escalate_topic_arn: Option<Spanned<String>>,
    /// Shell lines for `run_command` and method `run_command` (templates),
    /// run in order by `AWS-RunShellScript`.
    #[schemars(with = "Option<Vec<String>>")]
    pub commands: Option<Vec<Spanned<String>>>,
    /// `MaxConcurrency` of the command: how many instances run it at
    /// once, a count (`1`) or a percentage (`"25%"`). Default 1.
    #[schemars(with = "Option<CountOrPercentSpec>")]
    pub max_concurrency: Option<Spanned<CountOrPercentSpec>>,
    /// `MaxErrors` of the command: after this many failed invocations, a
    /// count or a percentage, SSM sends it to no more instances.
    /// Default 0: stop at the first failure.
    #[schemars(with = "Option<CountOrPercentSpec>")]
    pub max_errors: Option<Spanned<CountOrPercentSpec>>,
    /// How long the command may run, e.g. `"2m"` (30s to 48h): SSM stops
    /// the script after this (`executionTimeout`), and reflex stops
    /// waiting for it. Default `"5m"`.
    #[schemars(with = "Option<String>")]
    pub timeout: Option<Spanned<String>>,
    /// SNS topic ARN to publish to (template).
    #[schemars(with = "Option<String>")]
    pub topic_arn: Option<Spanned<String>>,
    /// Message subject (template).
    #[schemars(with = "Option<String>")]
    pub subject: Option<Spanned<String>>,
    /// Message body (template).
    #[schemars(with = "Option<String>")]
    pub message: Option<Spanned<String>>,
    /// CloudWatch namespace for `put_metric` (template).
    #[schemars(with = "Option<String>")]
    pub namespace: Option<Spanned<String>>,
    /// Metric name for `put_metric` (template).
    #[schemars(with = "Option<String>")]
    pub metric_name: Option<Spanned<String>>,
    /// The data point's value. Default 1.
    #[schemars(with = "Option<f64>")]
    pub value: Option<Spanned<f64>>,
    /// The data point's unit, e.g. `Count`.
    #[schemars(with = "Option<String>")]
    pub unit: Option<Spanned<String>>,
    /// Metric dimensions (values are templates).
    #[schemars(with = "Option<BTreeMap<String, String>>")]
    pub dimensions: Option<BTreeMap<String, Spanned<String>>>,
}

/// A count (`3`) or a percentage (`"40%"`), as written.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum CountOrPercentSpec {
    Count(i64),
    Text(String),
}

/// `max_unhealthy` as written.
pub type MaxUnhealthySpec = CountOrPercentSpec;

/// The kinds of pool `remediate_pool` acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PoolKind {
    /// An ELBv2 (ALB/NLB) target group: health from `DescribeTargetHealth`.
    TargetGroup,
    /// A classic ELB: health from `DescribeInstanceHealth`.
    ClassicElb,
}

/// What to do with a pool's bad instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// `TerminateInstances`: the Auto Scaling group, if any, replaces it.
    Terminate,
    /// Take it out of the pool (`DeregisterTargets`,
    /// `DeregisterInstancesFromLoadBalancer`).
    Deregister,
    /// Mark it `Unhealthy` in its Auto Scaling group (`SetInstanceHealth`):
    /// the group drains it (lifecycle hooks, deregistration delay) and
    /// replaces it.
    AsgSetUnhealthy,
    /// `TerminateInstanceInAutoScalingGroup` without decrementing the
    /// desired capacity: the group terminates it through its lifecycle
    /// hooks and launches a replacement.
    AsgTerminate,
    /// Run `commands` on it with SSM Run Command (`AWS-RunShellScript`):
    /// restart what died, leave the instance in place.
    RunCommand,
}

impl Method {
    pub const fn as_str(self) -> &'static str {
        match self {
            Method::Terminate => "terminate",
            Method::Deregister => "deregister",
            Method::AsgSetUnhealthy => "asg_set_unhealthy",
            Method::AsgTerminate => "asg_terminate",
            Method::RunCommand => "run_command",
        }
    }

    /// Whether the method acts through the instance's Auto Scaling group.
    pub const fn through_auto_scaling(self) -> bool {
        matches!(self, Method::AsgSetUnhealthy | Method::AsgTerminate)
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Target types a rule may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TargetTypeSpec {
    Instance,
    Ip,
    /// Out of scope: refused at rule load.
    Lambda,
    /// Out of scope: refused at rule load.
    Alb,
}

impl TargetTypeSpec {
    pub const fn as_str(self) -> &'static str {
        match self {
            TargetTypeSpec::Instance => "instance",
            TargetTypeSpec::Ip => "ip",
            TargetTypeSpec::Lambda => "lambda",
            TargetTypeSpec::Alb => "alb",
        }
    }
}

/// A tag an instance must carry: `{ key = "reflex:managed", value = "true" }`.
/// Without `value`, any value will do.
#[derive(Debug, Clone, Deserialize, serde::Serialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TagSpec {
    pub key: String,
    #[serde(default)]
    pub value: Option<String>,
}

/// How often and how late a rule may act.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitsSpec {
    /// After acting on a target, leave that target alone this long, e.g. `"10m"`.
    #[schemars(with = "Option<String>")]
    pub cooldown: Option<Spanned<String>>,
    /// At most this many executions, e.g. `"5/hour"` (per second, minute,
    /// hour or day).
    #[schemars(with = "Option<String>")]
    pub rate: Option<Spanned<String>>,
    /// Ignore alarms whose state changed longer ago than this, e.g. `"15m"`.
    /// Default: the daemon's `max_event_age`.
    #[schemars(with = "Option<String>")]
    pub max_event_age: Option<Spanned<String>>,
}
