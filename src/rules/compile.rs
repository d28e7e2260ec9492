//! From a rule as written ([`RuleSpec`]) to a checked [`Rule`], collecting
//! every problem with its line and column rather than stopping at the first.

use std::ops::Range;
use std::time::Duration;

use serde_spanned::Spanned;

use super::action::{
    Action, InstanceCommand, Notify, OnInstance, OutOfService, Pool, PoolSource, PutMetric,
    RunCommand,
};
use super::limits::{parse_duration, MaxUnhealthy, Rate};
use super::matcher::{StringMatcher, StringMatcherSpec};
use super::source::{SourceError, SourceFile};
use super::spec::{
    ActionKind, ActionSpec, CountOrPercentSpec, LimitsSpec, MatchSpec, MaxUnhealthySpec, Method,
    PoolKind, RuleSpec, TargetTypeSpec,
};
use super::template::Template;
use super::{Limits, Rule, RuleMatcher};
use crate::event::AlarmState;

/// Defaults for the safety parameters of destructive actions. Conservative on
/// purpose: a rule that says nothing acts on one instance at a time.
pub const DEFAULT_MAX_INSTANCES: u32 = 1;
pub const DEFAULT_MAX_PERCENT: u32 = 50;
pub const DEFAULT_MIN_IN_SERVICE: u32 = 1;
pub const DEFAULT_MIN_INSTANCE_AGE: Duration = Duration::from_secs(600);
/// `run_command`: one instance at a time, stop at the first failure, and
/// five minutes for the script.
pub const DEFAULT_MAX_CONCURRENCY: &str = "1";
pub const DEFAULT_MAX_ERRORS: &str = "0";
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(300);
/// The bounds of `timeout`: SSM's `executionTimeout` allows 1 s to 48 h;
/// under 30 s leaves no time for the agent to pick the command up.
const COMMAND_TIMEOUT_RANGE: (Duration, Duration) =
    (Duration::from_secs(30), Duration::from_secs(48 * 3600));

/// CloudWatch's metric units, for checking `put_metric`.
const UNITS: &[&str] = &[
    "Seconds",
    "Microseconds",
    "Milliseconds",
    "Bytes",
    "Kilobytes",
    "Megabytes",
    "Gigabytes",
    "Terabytes",
    "Bits",
    "Kilobits",
    "Megabits",
    "Gigabits",
    "Terabits",
    "Percent",
    "Count",
    "Bytes/Second",
    "Kilobytes/Second",
    "Megabytes/Second",
    "Gigabytes/Second",
    "Terabytes/Second",
    "Bits/Second",
    "Kilobits/Second",
    "Megabits/Second",
    "Gigabits/Second",
    "Terabits/Second",
    "Count/Second",
    "None",
];

struct Ctx<'a> {
    file: &'a SourceFile,
    errors: &'a mut Vec<SourceError>,
}

impl Ctx<'_> {
    fn err(&mut self, span: Range<usize>, message: impl Into<String>) {
        self.errors.push(self.file.error(Some(span), message));
    }
}

/// Compiles one rule, pushing every problem found into `errors`.
/// Returns `None` if there was any.
pub fn compile_rule(
    spec: RuleSpec,
    file: &SourceFile,
    errors: &mut Vec<SourceError>,
) -> Option<Rule> {
    let before = errors.len();
    let mut cx = Ctx { file, errors };
    let name = spec.name.get_ref().clone();
    let name_ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'));
    if !name_ok {
        cx.err(
            spec.name.span(),
            format!("rule name {name:?} must be non-empty and use only letters, digits, '-', '_', '.', ':'"),
        );
    }
    let matcher = compile_match(spec.match_, spec.name.span(), &mut cx);
    if spec.actions.is_empty() {
        cx.err(spec.name.span(), format!("rule `{name}` has no actions"));
    }
    let actions: Vec<_> = spec
        .actions
        .iter()
        .filter_map(|a| compile_action(a, &matcher, &mut cx))
        .collect();
    let limits = compile_limits(&spec.limits, &mut cx);
    let (line, _) = file.line_col(spec.name.span().start);
    if cx.errors.len() > before {
        return None;
    }
    Some(Rule {
        name,
        description: spec.description,
        enabled: spec.enabled,
        dry_run: spec.dry_run,
        matcher,
        actions,
        limits,
        file: file.path.clone(),
        line,
    })
}

fn compile_match(spec: MatchSpec, span: Range<usize>, cx: &mut Ctx) -> RuleMatcher {
    let one = |field: Option<Spanned<StringMatcherSpec>>, states: bool, cx: &mut Ctx| {
        let field = field?;
        match StringMatcher::compile(field.get_ref()) {
            Ok(m) => {
                if states {
                    for v in m.literal_values() {
                        if AlarmState::parse(v).is_none() {
                            cx.err(
                                field.span(),
                                format!("{v:?} is not an alarm state; use OK, ALARM or INSUFFICIENT_DATA"),
                            );
                        }
                    }
                }
                Some(m)
            }
            Err(e) => {
                cx.err(field.span(), e);
                None
            }
        }
    };
    let matcher = RuleMatcher {
        alarm_name: one(spec.alarm_name, false, cx),
        alarm_arn: one(spec.alarm_arn, false, cx),
        account: one(spec.account, false, cx),
        region: one(spec.region, false, cx),
        new_state: one(spec.new_state, true, cx),
        old_state: one(spec.old_state, true, cx),
        namespace: one(spec.namespace, false, cx),
        metric_name: one(spec.metric_name, false, cx),
        topic_arn: one(spec.topic_arn, false, cx),
        description: one(spec.description, false, cx),
        dimensions: spec
            .dimensions
            .into_iter()
            .filter_map(|(k, v)| Some((k, one(Some(v), false, cx)?)))
            .collect(),
        threshold: spec.threshold.and_then(|t| {
            if t.get_ref().is_empty() {
                cx.err(
                    t.span(),
                    "empty threshold table: give gt, gte, lt, lte or eq",
                );
                None
            } else {
                Some(t.into_inner())
            }
        }),
    };
    if matcher.is_empty() {
        cx.err(
            span,
            "the rule's match block is empty, so it would match every alarm; \
             say so explicitly with `alarm_name = { exists = true }`",
        );
    }
    matcher
}

fn compile_action(
    spec: &ActionSpec,
    matcher: &RuleMatcher,
    cx: &mut Ctx,
) -> Option<Action<Template>> {
    // Errors about the action as a whole point at its `type`.
    let here = spec.kind.span();
    let kind = *spec.kind.get_ref();
    let before = cx.errors.len();

    // Parameters given that this kind does not take.
    let given: [(&str, Option<Range<usize>>); 28] = [
        ("commands", spec.commands.as_ref().map(|_| here.clone())),
        (
            "max_concurrency",
            spec.max_concurrency.as_ref().map(Spanned::span),
        ),
        ("max_errors", spec.max_errors.as_ref().map(Spanned::span)),
        ("timeout", spec.timeout.as_ref().map(Spanned::span)),
        (
            "respect_grace_period",
            spec.respect_grace_period.as_ref().map(Spanned::span),
        ),
        ("pool", spec.pool.as_ref().map(Spanned::span)),
        (
            "target_group_arn",
            spec.target_group_arn.as_ref().map(Spanned::span),
        ),
        ("method", spec.method.as_ref().map(Spanned::span)),
        ("target_type", spec.target_type.as_ref().map(Spanned::span)),
        (
            "include_stopped",
            spec.include_stopped.as_ref().map(Spanned::span),
        ),
        (
            "max_unhealthy",
            spec.max_unhealthy.as_ref().map(Spanned::span),
        ),
        (
            "load_balancer",
            spec.load_balancer.as_ref().map(Spanned::span),
        ),
        ("instance_id", spec.instance_id.as_ref().map(Spanned::span)),
        (
            "max_instances",
            spec.max_instances.as_ref().map(Spanned::span),
        ),
        ("max_percent", spec.max_percent.as_ref().map(Spanned::span)),
        (
            "min_in_service",
            spec.min_in_service.as_ref().map(Spanned::span),
        ),
        (
            "min_instance_age",
            spec.min_instance_age.as_ref().map(Spanned::span),
        ),
        (
            "require_tag",
            spec.require_tag.as_ref().map(|_| here.clone()),
        ),
        (
            "confirm_after",
            spec.confirm_after.as_ref().map(Spanned::span),
        ),
        (
            "escalate_topic_arn",
            spec.escalate_topic_arn.as_ref().map(Spanned::span),
        ),
        ("topic_arn", spec.topic_arn.as_ref().map(Spanned::span)),
        ("subject", spec.subject.as_ref().map(Spanned::span)),
        ("message", spec.message.as_ref().map(Spanned::span)),
        ("namespace", spec.namespace.as_ref().map(Spanned::span)),
        ("metric_name", spec.metric_name.as_ref().map(Spanned::span)),
        ("value", spec.value.as_ref().map(Spanned::span)),
        ("unit", spec.unit.as_ref().map(Spanned::span)),
        ("dimensions", spec.dimensions.as_ref().map(|_| here.clone())),
    ];
    for (param, span) in given {
        if let Some(span) = span {
            if !kind.params().contains(&param) {
                cx.err(
                    span,
                    format!(
                        "`{param}` is not a parameter of `{kind}`; it takes: {}",
                        kind.params().join(", ")
                    ),
                );
            }
        }
    }

    let template = |value: Option<&Spanned<String>>,
                    default: Option<&str>,
                    what: &str,
                    cx: &mut Ctx|
     -> Option<Template> {
        let (text, span) = match (value, default) {
            (Some(v), _) => (v.get_ref().as_str(), v.span()),
            (None, Some(d)) => (d, here.clone()),
            (None, None) => {
                cx.err(here.clone(), format!("`{kind}` needs `{what}`"));
                return None;
            }
        };
        let t = match Template::parse(text) {
            Ok(t) => t,
            Err(e) => {
                // +1 skips the opening quote of a TOML string.
                let at = if value.is_some() {
                    span.start + 1 + e.offset
                } else {
                    span.start
                };
                cx.err(at..at, e.message);
                return None;
            }
        };
        for field in t.fields() {
            if let Some(d) = field.dimension() {
                if !matcher.guarantees_dimension(d) {
                    cx.err(
                        span.clone(),
                        format!(
                            "`{what}` of `{kind}` uses dimension `{d}`, but the match does not require it; \
                             add `dimensions.{d} = {{ exists = true }}` (or a value) to the match block"
                        ),
                    );
                }
            }
        }
        if value.is_some() && text.trim().is_empty() {
            cx.err(span, format!("`{what}` is empty"));
        }
        Some(t)
    };

    let whole = |v: Option<&Spanned<i64>>,
                 default: u32,
                 min: i64,
                 max: i64,
                 what: &str,
                 cx: &mut Ctx|
     -> u32 {
        match v {
            None => default,
            Some(v) => {
                let n = *v.get_ref();
                if n < min || n > max {
                    cx.err(
                        v.span(),
                        format!("`{what}` must be between {min} and {max}, not {n}"),
                    );
                    default
                } else {
                    u32::try_from(n).unwrap_or(default)
                }
            }
        }
    };
    let duration = |v: Option<&Spanned<String>>, cx: &mut Ctx| -> Option<Duration> {
        let v = v?;
        match parse_duration(v.get_ref()) {
            Ok(d) => Some(d),
            Err(e) => {
                cx.err(v.span(), e);
                None
            }
        }
    };
    let max_unhealthy = |cx: &mut Ctx| -> MaxUnhealthy {
        let Some(v) = spec.max_unhealthy.as_ref() else {
            return MaxUnhealthy::DEFAULT;
        };
        let parsed = match v.get_ref() {
            MaxUnhealthySpec::Count(n) => {
                u32::try_from(*n).map(MaxUnhealthy::Count).map_err(|_| {
                    format!(
                        "`max_unhealthy` must be a count of at least 0 or a percentage, not {n}"
                    )
                })
            }
            MaxUnhealthySpec::Text(t) => MaxUnhealthy::parse(t),
        };
        parsed.unwrap_or_else(|e| {
            cx.err(v.span(), e);
            MaxUnhealthy::DEFAULT
        })
    };
    let escalate = spec
        .escalate_topic_arn
        .as_ref()
        .and_then(|t| template(Some(t), None, "escalate_topic_arn", cx));

    // `commands`, `max_concurrency`, `max_errors` and `timeout`, for
    // `run_command` and method `run_command`.
    let command = |cx: &mut Ctx| -> Option<RunCommand<Template>> {
        let lines = match spec.commands.as_deref() {
            None | Some([]) => {
                cx.err(
                    here.clone(),
                    format!("`{kind}` needs `commands`: the shell lines to run"),
                );
                return None;
            }
            Some(lines) => lines,
        };
        let mut commands = Vec::with_capacity(lines.len());
        for line in lines {
            commands.push(template(Some(line), None, "commands", cx)?);
        }
        let count_or_percent = |v: Option<&Spanned<CountOrPercentSpec>>,
                                default: &str,
                                min: u32,
                                what: &str,
                                cx: &mut Ctx|
         -> String {
            let Some(v) = v else {
                return default.to_string();
            };
            match v.get_ref() {
                CountOrPercentSpec::Count(n) if *n >= i64::from(min) && *n <= 10_000 => {
                    n.to_string()
                }
                CountOrPercentSpec::Text(t)
                    if t.strip_suffix('%')
                        .and_then(|n| n.parse::<u32>().ok())
                        .is_some_and(|n| n >= min.max(1) && n <= 100) =>
                {
                    t.clone()
                }
                CountOrPercentSpec::Text(t)
                    if t.parse::<u32>().is_ok_and(|n| n >= min && n <= 10_000) =>
                {
                    t.clone()
                }
                other => {
                    let shown = match other {
                        CountOrPercentSpec::Count(n) => n.to_string(),
                        CountOrPercentSpec::Text(t) => format!("{t:?}"),
                    };
                    cx.err(
                        v.span(),
                        format!("`{what}` must be a count from {min} to 10000 or a percentage like \"25%\", not {shown}"),
                    );
                    default.to_string()
                }
            }
        };
        let timeout = duration(spec.timeout.as_ref(), cx).unwrap_or(DEFAULT_COMMAND_TIMEOUT);
        if let Some(t) = &spec.timeout {
            let (lo, hi) = COMMAND_TIMEOUT_RANGE;
            if timeout < lo || timeout > hi {
                cx.err(t.span(), "`timeout` must be between 30s and 48h");
            }
        }
        Some(RunCommand {
            commands,
            max_concurrency: count_or_percent(
                spec.max_concurrency.as_ref(),
                DEFAULT_MAX_CONCURRENCY,
                1,
                "max_concurrency",
                cx,
            ),
            max_errors: count_or_percent(
                spec.max_errors.as_ref(),
                DEFAULT_MAX_ERRORS,
                0,
                "max_errors",
                cx,
            ),
            timeout,
        })
    };

    let action = match kind {
        ActionKind::TerminateOutOfService | ActionKind::DeregisterOutOfService => {
            let o = OutOfService {
                load_balancer: template(
                    spec.load_balancer.as_ref(),
                    Some("{{ dimension.LoadBalancerName }}"),
                    "load_balancer",
                    cx,
                )?,
                max_instances: whole(spec.max_instances.as_ref(), DEFAULT_MAX_INSTANCES, 1, 10_000, "max_instances", cx),
                max_percent: whole(spec.max_percent.as_ref(), DEFAULT_MAX_PERCENT, 1, 100, "max_percent", cx),
                min_in_service: whole(spec.min_in_service.as_ref(), DEFAULT_MIN_IN_SERVICE, 0, 10_000, "min_in_service", cx),
                max_unhealthy: max_unhealthy(cx),
                min_instance_age: duration(spec.min_instance_age.as_ref(), cx).unwrap_or(DEFAULT_MIN_INSTANCE_AGE),
                require_tag: spec.require_tag.clone(),
                confirm_after: duration(spec.confirm_after.as_ref(), cx),
                escalate_topic_arn: escalate,
            };
            if kind == ActionKind::TerminateOutOfService {
                Action::TerminateOutOfService(o)
            } else {
                Action::DeregisterOutOfService(o)
            }
        }
        ActionKind::RemediatePool => {
            let pool = spec.pool.as_ref().map_or(PoolKind::TargetGroup, |p| *p.get_ref());
            let method = spec.method.as_ref().map_or(Method::Terminate, |m| *m.get_ref());
            // Parameters that belong to the other kind of pool.
            let wrong_pool = match pool {
                PoolKind::ClassicElb => [
                    ("target_group_arn", spec.target_group_arn.as_ref().map(Spanned::span)),
                    ("target_type", spec.target_type.as_ref().map(Spanned::span)),
                    ("include_stopped", spec.include_stopped.as_ref().map(Spanned::span)),
                ],
                PoolKind::TargetGroup => [
                    ("load_balancer", spec.load_balancer.as_ref().map(Spanned::span)),
                    ("target_type", None),
                    ("include_stopped", None),
                ],
            };
            for (param, span) in wrong_pool {
                if let Some(span) = span {
                    let kind_name = match pool {
                        PoolKind::ClassicElb => "classic_elb",
                        PoolKind::TargetGroup => "target_group",
                    };
                    cx.err(span, format!("`{param}` does not apply to pool = \"{kind_name}\""));
                }
            }
            if let Some(r) = &spec.respect_grace_period {
                if method != Method::AsgSetUnhealthy {
                    cx.err(
                        r.span(),
                        format!("`respect_grace_period` applies only to method = \"asg_set_unhealthy\", not `{method}`"),
                    );
                }
            }
            if let Some(t) = &spec.target_type {
                match (*t.get_ref(), method) {
                    (TargetTypeSpec::Lambda | TargetTypeSpec::Alb, _) => cx.err(
                        t.span(),
                        format!(
                            "target_type `{}` is out of scope: reflex acts only on instance and ip targets",
                            t.get_ref().as_str()
                        ),
                    ),
                    (TargetTypeSpec::Ip, m) if m != Method::Deregister => cx.err(
                        t.span(),
                        format!("ip targets can only be deregistered, not `{m}`; use method = \"deregister\""),
                    ),
                    _ => {}
                }
            }
            let command = if method == Method::RunCommand {
                Some(command(cx)?)
            } else {
                for (param, given) in [
                    ("commands", spec.commands.is_some().then(|| here.clone())),
                    ("max_concurrency", spec.max_concurrency.as_ref().map(Spanned::span)),
                    ("max_errors", spec.max_errors.as_ref().map(Spanned::span)),
                    ("timeout", spec.timeout.as_ref().map(Spanned::span)),
                ] {
                    if let Some(span) = given {
                        cx.err(span, format!("`{param}` applies only to method = \"run_command\", not `{method}`"));
                    }
                }
                None
            };
            let source = match pool {
                PoolKind::ClassicElb => PoolSource::ClassicElb {
                    load_balancer: template(
                        spec.load_balancer.as_ref(),
                        Some("{{ dimension.LoadBalancerName }}"),
                        "load_balancer",
                        cx,
                    )?,
                },
                PoolKind::TargetGroup => PoolSource::TargetGroup {
                    target_group_arn: template(
                        spec.target_group_arn.as_ref(),
                        Some("{{ target_group_arn }}"),
                        "target_group_arn",
                        cx,
                    )?,
                },
            };
            Action::RemediatePool(Pool {
                source,
                method,
                target_type: spec.target_type.as_ref().map(|t| *t.get_ref()),
                include_stopped: spec.include_stopped.as_ref().is_some_and(|b| *b.get_ref()),
                respect_grace_period: spec.respect_grace_period.as_ref().is_none_or(|b| *b.get_ref()),
                max_instances: whole(spec.max_instances.as_ref(), DEFAULT_MAX_INSTANCES, 1, 10_000, "max_instances", cx),
                max_percent: whole(spec.max_percent.as_ref(), DEFAULT_MAX_PERCENT, 1, 100, "max_percent", cx),
                min_in_service: whole(spec.min_in_service.as_ref(), DEFAULT_MIN_IN_SERVICE, 0, 10_000, "min_in_service", cx),
                max_unhealthy: max_unhealthy(cx),
                min_instance_age: duration(spec.min_instance_age.as_ref(), cx).unwrap_or(DEFAULT_MIN_INSTANCE_AGE),
                require_tag: spec.require_tag.clone(),
                confirm_after: duration(spec.confirm_after.as_ref(), cx),
                escalate_topic_arn: escalate,
                command,
            })
        }
        ActionKind::RunCommand => Action::RunCommand(InstanceCommand {
            command: command(cx)?,
            instance: OnInstance {
                instance_id: template(spec.instance_id.as_ref(), Some("{{ instance_id }}"), "instance_id", cx)?,
                min_instance_age: duration(spec.min_instance_age.as_ref(), cx).unwrap_or(Duration::ZERO),
                require_tag: spec.require_tag.clone(),
                escalate_topic_arn: escalate,
            },
        }),
        ActionKind::RebootInstance | ActionKind::StopInstance | ActionKind::TerminateInstance => {
            let o = OnInstance {
                instance_id: template(spec.instance_id.as_ref(), Some("{{ instance_id }}"), "instance_id", cx)?,
                min_instance_age: duration(spec.min_instance_age.as_ref(), cx).unwrap_or(Duration::ZERO),
                require_tag: spec.require_tag.clone(),
                escalate_topic_arn: escalate,
            };
            match kind {
                ActionKind::RebootInstance => Action::RebootInstance(o),
                ActionKind::StopInstance => Action::StopInstance(o),
                _ => Action::TerminateInstance(o),
            }
        }
        ActionKind::Notify => Action::Notify(Notify {
            topic_arn: template(spec.topic_arn.as_ref(), None, "topic_arn", cx)?,
            subject: template(
                spec.subject.as_ref(),
                Some("reflex: {{ rule.name }} on {{ alarm.name }} ({{ alarm.new_state }})"),
                "subject",
                cx,
            )?,
            message: template(
                spec.message.as_ref(),
                Some("Alarm {{ alarm.name }} went from {{ alarm.old_state }} to {{ alarm.new_state }} at {{ alarm.state_change_time }}: {{ alarm.reason }}"),
                "message",
                cx,
            )?,
        }),
        ActionKind::PutMetric => {
            if let Some(u) = &spec.unit {
                if !UNITS.contains(&u.get_ref().as_str()) {
                    cx.err(u.span(), format!("unknown CloudWatch unit {:?}; one of: {}", u.get_ref(), UNITS.join(", ")));
                }
            }
            if let Some(ns) = &spec.namespace {
                if ns.get_ref().starts_with("AWS/") {
                    cx.err(ns.span(), "namespaces starting with `AWS/` are reserved for AWS");
                }
            }
            let mut dimensions = Vec::new();
            for (k, v) in spec.dimensions.iter().flatten() {
                if let Some(t) = template(Some(v), None, "dimensions", cx) {
                    dimensions.push((k.clone(), t));
                }
            }
            Action::PutMetric(PutMetric {
                namespace: template(spec.namespace.as_ref(), Some("reflex"), "namespace", cx)?,
                metric_name: template(spec.metric_name.as_ref(), None, "metric_name", cx)?,
                value: spec.value.as_ref().map_or(1.0, |v| *v.get_ref()),
                unit: spec.unit.as_ref().map(|u| u.get_ref().clone()),
                dimensions,
            })
        }
    };
    (cx.errors.len() == before).then_some(action)
}

fn compile_limits(spec: &LimitsSpec, cx: &mut Ctx) -> Limits {
    let duration = |v: &Option<Spanned<String>>, cx: &mut Ctx| {
        let v = v.as_ref()?;
        parse_duration(v.get_ref())
            .map_err(|e| cx.err(v.span(), e))
            .ok()
    };
    Limits {
        cooldown: duration(&spec.cooldown, cx),
        rate: spec.rate.as_ref().and_then(|r| {
            Rate::parse(r.get_ref())
                .map_err(|e| cx.err(r.span(), e))
                .ok()
        }),
        max_event_age: duration(&spec.max_event_age, cx),
    }
}
