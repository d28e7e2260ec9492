//! The OutOfService instances of a classic ELB: terminate them (so their
//! Auto Scaling group replaces them) or deregister them. The reads come
//! first — health, EC2, the alarm's current state, the optional second
//! look — then the blast-radius guards, then the one change.

use std::time::Instant;

use tracing::info;

use super::{failed, Findings, Run};
use crate::event::AlarmState;
use crate::fleet::InstanceOp;
use crate::outcome::Outcome;
use crate::rules::action::OutOfService;
use crate::rules::limits::format_duration;
use crate::safety::blast_radius::{self, BlastRadius, TargetSelection};
use crate::safety::{Guard, GuardTrip};

/// Terminates (or, with `deregister`, deregisters) the OutOfService
/// instances of `o.load_balancer` that the guards allow.
pub(super) async fn out_of_service(
    run: &Run<'_>,
    o: &OutOfService<String>,
    deregister: bool,
    findings: &mut Findings,
) -> Outcome {
    let effects = run.effects;
    let event = run.ctx.event;
    let lb = &o.load_balancer;
    let health = match findings.aws(effects.elb.instance_health(lb)).await {
        Ok(h) => h,
        Err(e) => return failed(&e),
    };
    let mut oos: Vec<String> = health
        .iter()
        .filter(|h| h.out_of_service())
        .map(|h| h.instance_id.clone())
        .collect();
    if oos.is_empty() && run.taken_over {
        // The holder that died deregistered them, or they were replaced.
        return run.done();
    }
    if oos.is_empty() {
        return Outcome::NothingToDo {
            reason: format!(
                "no instance of {lb} is OutOfService ({} registered)",
                health.len()
            ),
        };
    }
    let infos = match findings.aws(effects.ec2.describe(&oos)).await {
        Ok(i) => i,
        Err(e) => return failed(&e),
    };
    if run.taken_over
        && !deregister
        && oos.iter().all(|id| {
            infos.iter().any(|i| {
                &i.instance_id == id
                    && super::instance::already_applied(&i.state, InstanceOp::Terminate)
            })
        })
    {
        // The holder that died terminated them already: record it, do not
        // act again.
        findings.targets = oos;
        return run.done();
    }
    match findings
        .aws(effects.alarms.alarm_state(&event.alarm_name))
        .await
    {
        Ok(Some(AlarmState::Alarm)) => {}
        Ok(Some(state)) => {
            return Outcome::suppressed(GuardTrip::new(
                Guard::AlarmRecovered,
                format!(
                    "alarm {} is {state} now, no longer ALARM; acting on nothing",
                    event.alarm_name
                ),
            ))
        }
        Ok(None) => {
            return Outcome::suppressed(GuardTrip::new(
                Guard::AlarmNotFound,
                format!(
                    "DescribeAlarms does not know alarm {}; acting on nothing",
                    event.alarm_name
                ),
            ))
        }
        Err(e) => return failed(&e),
    }
    let mut health = health;
    if let Some(wait) = o.confirm_after {
        info!(load_balancer = %lb, wait_s = wait.as_secs(), out_of_service = ?oos, "Waiting to confirm instances are still OutOfService.");
        let started = Instant::now();
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            // Nothing has been changed yet, so stopping here is whole.
            () = run.ctx.shutdown.cancelled() => return Outcome::Aborted,
        }
        findings.waited += started.elapsed();
        health = match findings.aws(effects.elb.instance_health(lb)).await {
            Ok(h) => h,
            Err(e) => return failed(&e),
        };
        let before = oos.len();
        oos.retain(|id| {
            health
                .iter()
                .any(|h| &h.instance_id == id && h.out_of_service())
        });
        if oos.is_empty() {
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
        max_instances: o.max_instances,
        max_percent: o.max_percent,
        min_in_service: o.min_in_service,
        min_instance_age: o.min_instance_age,
        require_tag: o.require_tag.clone(),
    };
    // Eligibility follows TerminateInstances' rules (running or stopped)
    // for deregistering too: neither acts on pending or dying instances.
    let targets = match blast_radius::select(
        &health,
        &oos,
        &infos,
        InstanceOp::Terminate,
        &radius,
        run.now(),
    ) {
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
    if let Err(outcome) = run.take_global(targets.len()).await {
        return outcome;
    }
    let result = if deregister {
        findings.aws(effects.elb.deregister(lb, &targets)).await
    } else {
        findings
            .aws(
                effects
                    .ec2
                    .change(InstanceOp::Terminate, &targets, run.dry_run()),
            )
            .await
    };
    findings.changed(run, result)
}
