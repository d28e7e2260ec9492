//! Actions, generic over their string parameters: `Action<Template>` in a
//! loaded rule, `Action<String>` (a [`PlannedAction`]) once the templates are
//! filled in from an event. One set of types serves both, so the plan can
//! never drift from what a rule can say.

use std::time::Duration;

use serde::Serialize;

use super::limits::MaxUnhealthy;
use super::limits::{serialize_duration, serialize_opt_duration};
use super::spec::{ActionKind, Method, TagSpec, TargetTypeSpec};
use super::template::Template;
use crate::event::AlarmEvent;

/// An action with its string parameters of type `S`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Action<S> {
    TerminateOutOfService(OutOfService<S>),
    DeregisterOutOfService(OutOfService<S>),
    RebootInstance(OnInstance<S>),
    StopInstance(OnInstance<S>),
    TerminateInstance(OnInstance<S>),
    RemediatePool(Pool<S>),
    RunCommand(InstanceCommand<S>),
    Notify(Notify<S>),
    PutMetric(PutMetric<S>),
}

/// An action ready to run: every template filled in.
pub type PlannedAction = Action<String>;

/// The OutOfService instances of a classic ELB, and the guards on acting on them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutOfService<S> {
    pub load_balancer: S,
    pub max_instances: u32,
    pub max_percent: u32,
    pub min_in_service: u32,
    pub max_unhealthy: MaxUnhealthy,
    #[serde(serialize_with = "serialize_duration")]
    pub min_instance_age: Duration,
    pub require_tag: Option<TagSpec>,
    #[serde(serialize_with = "serialize_opt_duration")]
    pub confirm_after: Option<Duration>,
    pub escalate_topic_arn: Option<S>,
}

impl<S: Clone> OutOfService<S> {
    /// The same action as a general pool action on a classic ELB.
    pub fn to_pool(&self, method: Method) -> Pool<S> {
        Pool {
            source: PoolSource::ClassicElb {
                load_balancer: self.load_balancer.clone(),
            },
            method,
            target_type: None,
            include_stopped: false,
            respect_grace_period: true,
            max_instances: self.max_instances,
            max_percent: self.max_percent,
            min_in_service: self.min_in_service,
            max_unhealthy: self.max_unhealthy,
            min_instance_age: self.min_instance_age,
            require_tag: self.require_tag.clone(),
            confirm_after: self.confirm_after,
            escalate_topic_arn: self.escalate_topic_arn.clone(),
            command: None,
        }
    }
}

/// Where a pool's members and their health come from.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "pool", rename_all = "snake_case")]
pub enum PoolSource<S> {
    ClassicElb { load_balancer: S },
    TargetGroup { target_group_arn: S },
}

/// The bad members of a pool, what to do with them, and the guards.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Pool<S> {
    #[serde(flatten)]
    pub source: PoolSource<S>,
    pub method: Method,
    pub target_type: Option<TargetTypeSpec>,
    pub include_stopped: bool,
    /// `ShouldRespectGracePeriod` of `asg_set_unhealthy`.
    pub respect_grace_period: bool,
    pub max_instances: u32,
    pub max_percent: u32,
    pub min_in_service: u32,
    pub max_unhealthy: MaxUnhealthy,
    #[serde(serialize_with = "serialize_duration")]
    pub min_instance_age: Duration,
    pub require_tag: Option<TagSpec>,
    #[serde(serialize_with = "serialize_opt_duration")]
    pub confirm_after: Option<Duration>,
    pub escalate_topic_arn: Option<S>,
    /// With method `run_command`: what to run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<RunCommand<S>>,
}

/// The one SSM document `run_command` runs (and the IAM policy allows).
pub const RUN_SHELL_SCRIPT: &str = "AWS-RunShellScript";

/// Shell commands run with SSM Run Command (`AWS-RunShellScript`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunCommand<S> {
    pub commands: Vec<S>,
    /// `MaxConcurrency`: `"1"` or `"25%"`.
    pub max_concurrency: String,
    /// `MaxErrors`: `"0"` or `"10%"`.
    pub max_errors: String,
    /// The script's `executionTimeout`, and how long reflex waits for it.
    #[serde(serialize_with = "serialize_duration")]
    pub timeout: Duration,
}

impl<S> RunCommand<S> {
    fn map<T>(&self, f: &mut dyn FnMut(&S) -> T) -> RunCommand<T> {
        RunCommand {
            commands: self.commands.iter().map(f).collect(),
            max_concurrency: self.max_concurrency.clone(),
            max_errors: self.max_errors.clone(),
            timeout: self.timeout,
        }
    }
}

/// `run_command` on the instance named by the event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InstanceCommand<S> {
    #[serde(flatten)]
    pub instance: OnInstance<S>,
    #[serde(flatten)]
    pub command: RunCommand<S>,
}

/// One instance named by the event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OnInstance<S> {
    pub instance_id: S,
    #[serde(serialize_with = "serialize_duration")]
    pub min_instance_age: Duration,
    pub require_tag: Option<TagSpec>,
    pub escalate_topic_arn: Option<S>,
}

/// A message to an SNS topic.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Notify<S> {
    pub topic_arn: S,
    pub subject: S,
    pub message: S,
}

/// One CloudWatch data point.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PutMetric<S> {
    pub namespace: S,
    pub metric_name: S,
    pub value: f64,
    pub unit: Option<String>,
    pub dimensions: Vec<(String, S)>,
}

impl<S> Action<S> {
    pub fn kind(&self) -> ActionKind {
        match self {
            Action::TerminateOutOfService(_) => ActionKind::TerminateOutOfService,
            Action::DeregisterOutOfService(_) => ActionKind::DeregisterOutOfService,
            Action::RebootInstance(_) => ActionKind::RebootInstance,
            Action::StopInstance(_) => ActionKind::StopInstance,
            Action::TerminateInstance(_) => ActionKind::TerminateInstance,
            Action::RemediatePool(_) => ActionKind::RemediatePool,
            Action::RunCommand(_) => ActionKind::RunCommand,
            Action::Notify(_) => ActionKind::Notify,
            Action::PutMetric(_) => ActionKind::PutMetric,
        }
    }

    /// Applies `f` to every string parameter.
    pub fn map<T>(&self, f: &mut impl FnMut(&S) -> T) -> Action<T> {
        let oos = |o: &OutOfService<S>, f: &mut dyn FnMut(&S) -> T| OutOfService {
            load_balancer: f(&o.load_balancer),
            max_instances: o.max_instances,
            max_percent: o.max_percent,
            min_in_service: o.min_in_service,
            max_unhealthy: o.max_unhealthy,
            min_instance_age: o.min_instance_age,
            require_tag: o.require_tag.clone(),
            confirm_after: o.confirm_after,
            escalate_topic_arn: o.escalate_topic_arn.as_ref().map(&mut *f),
        };
        let inst = |o: &OnInstance<S>, f: &mut dyn FnMut(&S) -> T| OnInstance {
            instance_id: f(&o.instance_id),
            min_instance_age: o.min_instance_age,
            require_tag: o.require_tag.clone(),
            escalate_topic_arn: o.escalate_topic_arn.as_ref().map(&mut *f),
        };
        match self {
            Action::TerminateOutOfService(o) => Action::TerminateOutOfService(oos(o, f)),
            Action::DeregisterOutOfService(o) => Action::DeregisterOutOfService(oos(o, f)),
            Action::RebootInstance(o) => Action::RebootInstance(inst(o, f)),
            Action::StopInstance(o) => Action::StopInstance(inst(o, f)),
            Action::TerminateInstance(o) => Action::TerminateInstance(inst(o, f)),
            Action::RemediatePool(p) => Action::RemediatePool(Pool {
                source: match &p.source {
                    PoolSource::ClassicElb { load_balancer } => PoolSource::ClassicElb {
                        load_balancer: f(load_balancer),
                    },
                    PoolSource::TargetGroup { target_group_arn } => PoolSource::TargetGroup {
                        target_group_arn: f(target_group_arn),
                    },
                },
                method: p.method,
                target_type: p.target_type,
                include_stopped: p.include_stopped,
                respect_grace_period: p.respect_grace_period,
                max_instances: p.max_instances,
                max_percent: p.max_percent,
                min_in_service: p.min_in_service,
                max_unhealthy: p.max_unhealthy,
                min_instance_age: p.min_instance_age,
                require_tag: p.require_tag.clone(),
                confirm_after: p.confirm_after,
                escalate_topic_arn: p.escalate_topic_arn.as_ref().map(&mut *f),
                command: p.command.as_ref().map(|c| c.map(&mut *f)),
            }),
            Action::RunCommand(c) => Action::RunCommand(InstanceCommand {
                instance: inst(&c.instance, f),
                command: c.command.map(f),
            }),
            Action::Notify(n) => Action::Notify(Notify {
                topic_arn: f(&n.topic_arn),
                subject: f(&n.subject),
                message: f(&n.message),
            }),
            Action::PutMetric(p) => Action::PutMetric(PutMetric {
                namespace: f(&p.namespace),
                metric_name: f(&p.metric_name),
                value: p.value,
                unit: p.unit.clone(),
                dimensions: p
                    .dimensions
                    .iter()
                    .map(|(k, v)| (k.clone(), f(v)))
                    .collect(),
            }),
        }
    }

    /// Every string parameter, in a fixed order.
    pub fn strings(&self) -> Vec<&S> {
        let mut refs = Vec::new();
        match self {
            Action::TerminateOutOfService(o) | Action::DeregisterOutOfService(o) => {
                refs.push(&o.load_balancer);
                refs.extend(o.escalate_topic_arn.as_ref());
            }
            Action::RebootInstance(o) | Action::StopInstance(o) | Action::TerminateInstance(o) => {
                refs.push(&o.instance_id);
                refs.extend(o.escalate_topic_arn.as_ref());
            }
            Action::RemediatePool(p) => {
                refs.push(p.source.name());
                refs.extend(p.escalate_topic_arn.as_ref());
                refs.extend(p.command.iter().flat_map(|c| &c.commands));
            }
            Action::RunCommand(c) => {
                refs.push(&c.instance.instance_id);
                refs.extend(c.instance.escalate_topic_arn.as_ref());
                refs.extend(&c.command.commands);
            }
            Action::Notify(n) => refs.extend([&n.topic_arn, &n.subject, &n.message]),
            Action::PutMetric(p) => {
                refs.extend([&p.namespace, &p.metric_name]);
                refs.extend(p.dimensions.iter().map(|(_, v)| v));
            }
        }
        refs
    }
}

impl Action<Template> {
    /// Fills the templates in from an event.
    pub fn plan(&self, event: &AlarmEvent, rule_name: &str) -> PlannedAction {
        self.map(&mut |t: &Template| t.render(event, rule_name))
    }
}

impl PlannedAction {
    /// The thing this action changes or reads, for serialising actions on the
    /// same target and keying cooldowns: `elb:web`, `instance:i-123`, ...
    pub fn target(&self) -> String {
        match self {
            Action::TerminateOutOfService(o) | Action::DeregisterOutOfService(o) => {
                format!("elb:{}", o.load_balancer)
            }
            Action::RebootInstance(o) | Action::StopInstance(o) | Action::TerminateInstance(o) => {
                format!("instance:{}", o.instance_id)
            }
            Action::RunCommand(c) => format!("instance:{}", c.instance.instance_id),
            Action::RemediatePool(p) => p.source.target(),
            Action::Notify(n) => format!("topic:{}", n.topic_arn),
            Action::PutMetric(p) => format!("metric:{}/{}", p.namespace, p.metric_name),
        }
    }
}

impl<S> PoolSource<S> {
    /// The load balancer's name or the target group's ARN.
    pub fn name(&self) -> &S {
        match self {
            PoolSource::ClassicElb { load_balancer } => load_balancer,
            PoolSource::TargetGroup { target_group_arn } => target_group_arn,
        }
    }
}

impl PoolSource<String> {
    /// The pool as an action target: `elb:NAME` (shared with the classic
    /// kinds, so they serialize on the same load balancer) or
    /// `target_group:ARN`.
    pub fn target(&self) -> String {
        match self {
            PoolSource::ClassicElb { load_balancer } => format!("elb:{load_balancer}"),
            PoolSource::TargetGroup { target_group_arn } => {
                format!("target_group:{target_group_arn}")
            }
        }
    }
}
