//! A write that failed is an unknown outcome, not a failure. Its reply
//! may have been lost after AWS carried it out (a timeout on a lossy
//! network), or the SDK's retry of a timed-out attempt may have been
//! refused because the first attempt had already made the change. So
//! before a failed write is reported — and so before the message is
//! retried and the write repeated — reflex re-reads the target: a change
//! that shows (an instance already `shutting-down`, a member no longer
//! registered, an instance already `Unhealthy` in its group) was made.
//!
//! A reboot and a command leave nothing to read, and a publish is
//! at-least-once by design: those keep their error.

use std::future::Future;
use std::time::Duration;

use tracing::warn;

use super::{Findings, Run};
use crate::aws::AwsError;
use crate::fleet::{InstanceOp, TargetState};
use crate::rules::action::PoolSource;

/// How many times a change is sent (one SDK attempt each) before its
/// failure stands; between two, the target is re-read.
const CHANGE_ATTEMPTS: u32 = 3;
/// The pause before sending a change again, times the attempt number.
const CHANGE_PAUSE: Duration = Duration::from_millis(200);

/// Sends a change (one SDK attempt: `CallKind::Change`) and, when it
/// fails, re-reads the target before sending it again: a change that
/// shows was made, and is not repeated. A transient failure that left the
/// target unchanged is sent again, up to [`CHANGE_ATTEMPTS`] in all; a
/// permanent one, or the last, stands.
pub(super) async fn change<F, Fut>(
    run: &Run<'_>,
    write: Write<'_>,
    findings: &mut Findings,
    send: F,
) -> Result<Option<String>, AwsError>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<Option<String>, AwsError>>,
{
    let mut attempt = 1;
    loop {
        let error = match findings.aws(send()).await {
            Ok(request) => return Ok(request),
            Err(e) => e,
        };
        if made_anyway(run, &write, &error, findings).await {
            return Ok(None);
        }
        // A reboot leaves nothing to read: after a timeout it may have
        // happened, so it is not sent again blindly.
        let invisible = matches!(write, Write::Ec2(InstanceOp::Reboot, _));
        if !error.transient || attempt >= CHANGE_ATTEMPTS || (invisible && error.timed_out) {
            return Err(error);
        }
        warn!(%error, attempt, "A change failed and re-reading shows it not made; sending it again.");
        tokio::time::sleep(CHANGE_PAUSE * attempt).await;
        attempt += 1;
    }
}

/// What a failed write was meant to change.
pub(super) enum Write<'a> {
    /// `TerminateInstances` / `StopInstances` (a reboot is not visible).
    Ec2(InstanceOp, &'a [String]),
    /// `DeregisterInstancesFromLoadBalancer` / `DeregisterTargets`.
    Deregister(&'a PoolSource<String>, &'a [String]),
    /// `SetInstanceHealth` (Unhealthy).
    SetUnhealthy(&'a str),
    /// `TerminateInstanceInAutoScalingGroup`.
    TerminateInGroup(&'a str),
}

/// Whether re-reading the target shows the failed write's change made.
/// When it does, the error is recorded as the resolved unknown outcome.
async fn made_anyway(
    run: &Run<'_>,
    write: &Write<'_>,
    error: &AwsError,
    findings: &mut Findings,
) -> bool {
    if run.dry_run() {
        return false;
    }
    let effects = run.effects;
    let made = match write {
        Write::Ec2(InstanceOp::Reboot, _) => false,
        Write::Ec2(op, ids) => match findings.aws(effects.ec2.describe(ids)).await {
            Ok(infos) => ids.iter().all(|id| {
                infos
                    .iter()
                    .any(|i| &i.instance_id == id && op.shows_in(&i.state))
            }),
            Err(_) => false,
        },
        Write::Deregister(PoolSource::ClassicElb { load_balancer }, ids) => {
            match findings
                .aws(effects.elb.instance_health(load_balancer))
                .await
            {
                Ok(health) => ids
                    .iter()
                    .all(|id| !health.iter().any(|h| &h.instance_id == id)),
                Err(_) => false,
            }
        }
        Write::Deregister(PoolSource::TargetGroup { target_group_arn }, ids) => {
            match findings
                .aws(effects.target_groups.target_health(target_group_arn))
                .await
            {
                Ok(health) => ids.iter().all(|id| {
                    health.iter().filter(|t| &t.id == id).all(|t| {
                        matches!(
                            t.state,
                            TargetState::Draining | TargetState::UnhealthyDraining
                        )
                    })
                }),
                Err(_) => false,
            }
        }
        Write::SetUnhealthy(id) => {
            match findings
                .aws(effects.auto_scaling.group_instances(&[id.to_string()]))
                .await
            {
                Ok(members) => members
                    .iter()
                    .any(|m| m.instance_id == **id && m.health_status == "Unhealthy"),
                Err(_) => false,
            }
        }
        Write::TerminateInGroup(id) => {
            let ids = [id.to_string()];
            let in_group = findings
                .aws(effects.auto_scaling.group_instances(&ids))
                .await
                .map(|members| {
                    members.iter().any(|m| {
                        m.instance_id == **id && m.lifecycle_state.starts_with("Terminating")
                    })
                })
                .unwrap_or(false);
            in_group
                || findings
                    .aws(effects.ec2.describe(&ids))
                    .await
                    .map(|infos| {
                        infos.iter().any(|i| {
                            i.instance_id == **id && InstanceOp::Terminate.shows_in(&i.state)
                        })
                    })
                    .unwrap_or(false)
        }
    };
    if made {
        warn!(
            %error,
            timed_out = error.timed_out,
            "A write failed, but re-reading its target shows the change made: done, not repeated."
        );
        findings.unknown_outcome = Some(error.to_string());
    }
    made
}
