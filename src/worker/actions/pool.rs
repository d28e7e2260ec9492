//! The bad members of a pool — a classic ELB's OutOfService instances, or
//! an ELBv2 target group's unhealthy targets — and what to do with them
//! (the rule's method). The reads come first — the target group, health,
//! EC2, the alarm's current state, the optional second look — then the
//! pool guards (fail-open, `min_in_service`, `max_unhealthy`) and the
//! blast-radius guards, then the one change.

use std::collections::BTreeMap;
use std::time::Instant;

use tracing::info;

use super::settle::{self, Write};
use super::{command, failed, Findings, Run};
use crate::aws::AwsError;
use crate::event::AlarmState;
use crate::fleet::{InstanceOp, PoolMember, Target, TargetType};
use crate::outcome::Outcome;
use crate::rules::action::{OutOfService, Pool, PoolSource};
use crate::rules::limits::format_duration;
use crate::rules::spec::Method;
use crate::safety::blast_radius::{self, BlastRadius, Candidates, Excluded, TargetSelection};
use crate::safety::{Guard, GuardTrip};

/// Terminates (or, with `deregister`, deregisters) the OutOfService
/// instances of `o.load_balancer` that the guards allow: the classic
/// kinds, run as a pool action on a classic ELB.
pub(super) async fn out_of_service(
    run: &Run<'_>,
    o: &OutOfService<String>,
    deregister: bool,
    findings: &mut Findings,
) -> Outcome {
    let method = if deregister {
        Method::Deregister
    } else {
        Method::Terminate
    };
    remediate(run, &o.to_pool(method), findings).await
}

/// Whether `arn` looks like a target group's ARN (the derived default
/// renders empty when the alarm lacks what it needs).
fn is_target_group_arn(arn: &str) -> bool {
    arn.starts_with("arn:") && arn.split(':').nth(2) == Some("elasticloadbalancing") && {
        arn.split(':')
            .nth(5)
            .is_some_and(|r| r.starts_with("targetgroup/"))
    }
}

/// Reads every member of the pool and its health.
async fn read_members(
    run: &Run<'_>,
    p: &Pool<String>,
    findings: &mut Findings,
) -> Result<Vec<PoolMember>, AwsError> {
    let effects = run.effects;
    match &p.source {
        PoolSource::ClassicElb { load_balancer } => Ok(findings
            .aws(effects.elb.instance_health(load_balancer))
            .await?
            .iter()
            .map(|h| h.member())
            .collect()),
        PoolSource::TargetGroup { target_group_arn } => Ok(findings
            .aws(effects.target_groups.target_health(target_group_arn))
            .await?
            .iter()
            .map(|t| t.member(p.include_stopped))
            .collect()),
    }
}

fn bad_ids(members: &[PoolMember]) -> Vec<String> {
    members
        .iter()
        .filter(|m| m.is_bad())
        .map(|m| m.id.clone())
        .collect()
}

/// Acts on the bad members of `p`'s pool that the guards allow.
pub(super) async fn remediate(run: &Run<'_>, p: &Pool<String>, findings: &mut Findings) -> Outcome {
    let effects = run.effects;
    let name = p.source.name();
    // A target group is confirmed first: a wrong ARN (a template, or an
    // alarm without the dimension) must not read as "nothing to do".
    let target_type = match &p.source {
        PoolSource::ClassicElb { .. } => TargetType::Instance,
        PoolSource::TargetGroup { target_group_arn } => {
            if !is_target_group_arn(target_group_arn) {
                return Outcome::Failed {
                    transient: false,
                    error: format!(
                        "{target_group_arn:?} is not a target group ARN (the default needs an alarm ARN \
                         and a TargetGroup dimension `targetgroup/NAME/ID`)"
                    ),
                };
            }
            match findings
                .aws(
                    effects
                        .target_groups
                        .describe_target_group(target_group_arn),
                )
                .await
            {
                Ok(Some(g)) => g.target_type,
                Ok(None) => {
                    return Outcome::Failed {
                        transient: false,
                        error: format!(
                            "DescribeTargetGroups does not know target group {target_group_arn}"
                        ),
                    }
                }
                Err(e) => return failed(&e),
            }
        }
    };
    let mut members = match read_members(run, p, findings).await {
        Ok(m) => m,
        Err(e) => return failed(&e),
    };
    let mut bad = bad_ids(&members);
    findings.health_reasons = reasons(&members, &bad);
    if bad.is_empty() && run.taken_over {
        // The holder that died deregistered them, or they were replaced.
        return run.done();
    }
    if bad.is_empty() {
        return Outcome::NothingToDo {
            reason: match &p.source {
                PoolSource::ClassicElb { .. } => format!(
                    "no instance of {name} is OutOfService ({} registered)",
                    members.len()
                ),
                PoolSource::TargetGroup { .. } => {
                    format!("no target of {name} is bad ({} registered)", members.len())
                }
            },
        };
    }
    // Only instance targets can be terminated or replaced; ip targets can
    // only be deregistered; lambda and alb targets are out of scope.
    let ip = match (&target_type, p.method) {
        (TargetType::Instance, _) => false,
        (TargetType::Ip, Method::Deregister) => true,
        (other, method) => {
            let reason = format!("{other} targets cannot be acted on by method {method}");
            findings.excluded = bad
                .iter()
                .map(|id| Excluded {
                    instance_id: id.clone(),
                    guard: Guard::TargetType,
                    reason: reason.clone(),
                })
                .collect();
            return Outcome::suppressed(
                GuardTrip::new(Guard::TargetType, format!("{name}: {reason}"))
                    .with("bad", bad.len()),
            );
        }
    };
    if let Some(want) = p.target_type {
        if want.as_str() != target_type.as_str() {
            return Outcome::suppressed(GuardTrip::new(
                Guard::TargetType,
                format!(
                    "the rule expects {} targets, but {name} has {target_type} targets",
                    want.as_str()
                ),
            ));
        }
    }
    let mut infos = Vec::new();
    if !ip {
        infos = match findings.aws(effects.ec2.describe(&bad)).await {
            Ok(i) => i,
            Err(e) => return failed(&e),
        };
        if run.taken_over
            && matches!(p.method, Method::Terminate | Method::AsgTerminate)
            && bad.iter().all(|id| {
                infos
                    .iter()
                    .any(|i| &i.instance_id == id && InstanceOp::Terminate.shows_in(&i.state))
            })
        {
            // The holder that died terminated them already: record it, do
            // not act again.
            findings.targets = bad;
            return run.done();
        }
    }
    // The pool is read only for an alarm in ALARM (the rule matched one);
    // it must still be in ALARM now.
    if let Err(outcome) = run.confirm_alarm(AlarmState::Alarm, findings).await {
        return outcome;
    }
    if let Some(wait) = p.confirm_after {
        info!(pool = %name, wait_s = wait.as_secs(), bad = ?bad, "Waiting to confirm instances are still OutOfService.");
        let started = Instant::now();
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            // Nothing has been changed yet, so stopping here is whole.
            () = run.ctx.shutdown.cancelled() => return Outcome::Aborted,
        }
        findings.waited += started.elapsed();
        members = match read_members(run, p, findings).await {
            Ok(m) => m,
            Err(e) => return failed(&e),
        };
        let before = bad.len();
        bad.retain(|id| members.iter().any(|m| &m.id == id && m.is_bad()));
        findings.health_reasons = reasons(&members, &bad);
        if bad.is_empty() {
            return Outcome::suppressed(
                GuardTrip::new(
                    Guard::NotConfirmed,
                    format!(
                        "no instance was still OutOfService after {}",
                        format_duration(wait)
                    ),
                )
                .with("first_check", before)
                .with("second_check", 0),
            );
        }
    }
    let radius = BlastRadius {
        max_instances: p.max_instances,
        max_percent: p.max_percent,
        min_in_service: p.min_in_service,
        max_unhealthy: p.max_unhealthy,
        min_instance_age: p.min_instance_age,
        require_tag: p.require_tag.clone(),
    };
    // Eligibility follows TerminateInstances' rules (running or stopped)
    // for every method: none acts on pending or dying instances.
    // The Auto Scaling methods ask the groups first: an instance in no
    // group, not InService, or in a group that would not replace it is
    // refused (the call would be a no-op that looks like success).
    // The pool guards come before the Auto Scaling reads: a pool that
    // may not be acted on at all needs no group looked up.
    // `run_command` likewise asks SSM which instances it manages.
    let asks_first = p.method.through_auto_scaling() || p.method == Method::RunCommand;
    if asks_first {
        if let Some(trip) = blast_radius::pool_trip(&members, &radius) {
            return Outcome::suppressed(trip);
        }
    }
    let refused = if p.method.through_auto_scaling() {
        auto_scaling_refusals(run, &bad, findings).await
    } else if p.method == Method::RunCommand {
        command::refusals(run, &bad, findings).await
    } else {
        Ok(Vec::new())
    };
    let refused = match refused {
        Ok(r) => r,
        Err(e) => return failed(&e),
    };
    // A command runs on a running instance, as a reboot does; the other
    // methods follow TerminateInstances' rules.
    let op = if p.method == Method::RunCommand {
        InstanceOp::Reboot
    } else {
        InstanceOp::Terminate
    };
    let candidates = if ip {
        Candidates::IpAddresses
    } else {
        Candidates::Instances {
            infos: &infos,
            op,
            refused: &refused,
        }
    };
    let targets = match blast_radius::select_in_pool(&members, &bad, candidates, &radius, run.now())
    {
        TargetSelection::Suppressed { trip, excluded } => {
            findings.excluded = excluded;
            return Outcome::suppressed(trip);
        }
        TargetSelection::Act {
            targets,
            excluded,
            capped,
        } => {
            findings.excluded = excluded;
            findings.capped = capped;
            targets
        }
    };
    findings.targets = targets.clone();
    if let Err(outcome) = run.spend_budget(findings).await {
        return outcome;
    }
    if let Err(outcome) = run.take_global(targets.len()).await {
        return outcome;
    }
    let dry = run.dry_run();
    let result = match (p.method, &p.source) {
        (Method::Terminate, _) => {
            let write = Write::Ec2(InstanceOp::Terminate, &targets);
            settle::change(run, write, findings, || {
                effects.ec2.change(InstanceOp::Terminate, &targets, dry)
            })
            .await
        }
        (Method::Deregister, PoolSource::ClassicElb { load_balancer }) => {
            let write = Write::Deregister(&p.source, &targets);
            settle::change(run, write, findings, || {
                effects.elb.deregister(load_balancer, &targets)
            })
            .await
        }
        (Method::AsgSetUnhealthy | Method::AsgTerminate, _) => {
            return through_auto_scaling(run, p, &targets, findings).await;
        }
        (Method::RunCommand, _) => {
            let Some(c) = &p.command else {
                return Outcome::Failed {
                    transient: false,
                    error: "method run_command without commands".to_string(),
                };
            };
            return command::send_and_wait(run, &targets, c, findings).await;
        }
        (Method::Deregister, PoolSource::TargetGroup { target_group_arn }) => {
            let members_out: Vec<Target> = targets
                .iter()
                .map(|id| Target {
                    id: id.clone(),
                    port: members.iter().find(|m| &m.id == id).and_then(|m| m.port),
                })
                .collect();
            let write = Write::Deregister(&p.source, &targets);
            settle::change(run, write, findings, || {
                effects
                    .target_groups
                    .deregister_targets(target_group_arn, &members_out)
            })
            .await
        }
    };
    findings.changed(run, result)
}

/// Reads the Auto Scaling membership of `ids` and their groups, and
/// returns the instances the Auto Scaling methods must refuse.
async fn auto_scaling_refusals(
    run: &Run<'_>,
    ids: &[String],
    findings: &mut Findings,
) -> Result<Vec<Excluded>, AwsError> {
    let asg = &run.effects.auto_scaling;
    let members = findings.aws(asg.group_instances(ids)).await?;
    let mut names: Vec<String> = members.iter().map(|m| m.group.clone()).collect();
    names.sort();
    names.dedup();
    let groups = if names.is_empty() {
        Vec::new()
    } else {
        findings.aws(asg.groups(&names)).await?
    };
    Ok(blast_radius::auto_scaling_refusals(ids, &members, &groups))
}

/// `SetInstanceHealth` (Unhealthy) or `TerminateInstanceInAutoScalingGroup`
/// (desired capacity kept) on each target, one call per instance as the
/// API takes; the first failure stops the rest.
async fn through_auto_scaling(
    run: &Run<'_>,
    p: &Pool<String>,
    targets: &[String],
    findings: &mut Findings,
) -> Outcome {
    let asg = &run.effects.auto_scaling;
    for id in targets {
        let result = match p.method {
            Method::AsgSetUnhealthy => {
                let grace = p.respect_grace_period;
                settle::change(run, Write::SetUnhealthy(id), findings, || {
                    asg.set_unhealthy(id, grace)
                })
                .await
            }
            _ => {
                settle::change(run, Write::TerminateInGroup(id), findings, || {
                    asg.terminate_in_group(id)
                })
                .await
            }
        };
        match result {
            Ok(request) => findings.request(request),
            Err(e) => return failed(&e),
        }
    }
    run.done()
}

/// The reason code of each of `ids`, where the load balancer gave one.
fn reasons(members: &[PoolMember], ids: &[String]) -> BTreeMap<String, String> {
    members
        .iter()
        .filter(|m| ids.contains(&m.id))
        .filter_map(|m| Some((m.id.clone(), m.reason.clone()?)))
        .collect()
}
