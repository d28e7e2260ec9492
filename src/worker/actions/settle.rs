//! A write that failed is an unknown outcome, not a failure. Its reply
//! may have been lost after AWS carried it out (a timeout on a lossy
//! network), or the SDK's retry of a timed-out attempt may have been
//! refused because the first attempt had already made the change. So
//! before a failed write is reported — and so before the message is
//! retried and the write repeated — reflex re-reads the target: a change
//! that shows (an instance already `shutting-down`, a member no longer
//! registered, an instance already `Unhealthy` in its group) was made.
//!
//! A write whose reply is late is not waited out either: once it has not
//! answered within `aws.hedge_after` ([`Settings::settle_after`]), the
//! target is re-read beside it, and a change that shows is done then —
//! a stalled reply costs about the hedge delay plus one read, not the
//! write's attempt timeout. This is the writes' hedge: never a second
//! write, only a read.
//!
//! A reboot and a command leave nothing to read, and a publish is
//! at-least-once by design: those keep their error.
//!
//! [`Settings::settle_after`]: crate::worker::Settings::settle_after

use std::future::Future;
use std::time::Duration;

use tracing::warn;

use super::{Findings, Run};
use crate::aws::AwsError;
use crate::fleet::{InstanceOp, TargetState};
use crate::rules::action::PoolSource;

/// How many times a change is sent (one SDK attempt each) before its
/// failure stands; between two, the target is re-read, so a change is
/// never sent again once it shows. Five, like reads and queue calls: with
/// one connection in five refused or reset, three sends in a row failed
/// for about one action in 125, and its whole message waited for a retry.
const CHANGE_ATTEMPTS: u32 = 5;
/// The pause before sending a change again, times the attempt number.
const CHANGE_PAUSE: Duration = Duration::from_millis(200);

/// Sends a change (one SDK attempt: `CallKind::Change`) and, when it
/// fails, re-reads the target before sending it again: a change that
/// shows was made, and is not repeated. A transient failure that left the
/// target unchanged is sent again, up to [`CHANGE_ATTEMPTS`] in all; a
/// permanent one, or the last, stands. A change not answered within
/// `settle_after` has its target re-read while it is pending
/// ([`answer_or_shown`]).
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
        let error = match findings.aws(answer_or_shown(run, &write, send())).await {
            Pending::Answered(Ok(request)) => return Ok(request),
            Pending::Answered(Err(e)) => e,
            Pending::Shown { after } => {
                let late = format!(
                    "{}: no reply within {}, and re-reading its target shows the change made",
                    write.operation(),
                    humantime::format_duration(after)
                );
                warn!(reply = %late, "A write has not answered, but re-reading its target shows the change made: done, not repeated.");
                findings.unknown_outcome = Some(late);
                return Ok(None);
            }
        };
        if findings.aws(shows_made(run, &write)).await {
            warn!(
                %error,
                timed_out = error.timed_out,
                "A write failed, but re-reading its target shows the change made: done, not repeated."
            );
            findings.unknown_outcome = Some(error.to_string());
            return Ok(None);
        }
        // A reboot leaves nothing to read: after a timeout it may have
        // happened, so it is not sent again blindly.
        if !error.transient || attempt >= CHANGE_ATTEMPTS || (!write.visible() && error.timed_out) {
            return Err(error);
        }
        warn!(%error, attempt, "A change failed and re-reading shows it not made; sending it again.");
        findings
            .wait(tokio::time::sleep(CHANGE_PAUSE * attempt))
            .await;
        attempt += 1;
    }
}

/// How a pending write ended: its own answer, or a re-read that showed
/// its change made while it had not answered (after this long).
enum Pending {
    Answered(Result<Option<String>, AwsError>),
    Shown { after: Duration },
}

/// Awaits `pending`; when it has not answered within `settle_after`,
/// re-reads the target once beside it. A re-read that shows the change
/// made ends the wait (the write's own answer is not needed: the change
/// is there); one that does not, or fails, leaves the write to answer or
/// time out, as without the re-read. Never in a dry run, or for a change
/// that leaves nothing to read.
async fn answer_or_shown<Fut>(run: &Run<'_>, write: &Write<'_>, pending: Fut) -> Pending
where
    Fut: Future<Output = Result<Option<String>, AwsError>>,
{
    let after = match run.worker.settings.settle_after {
        Some(after) if !run.dry_run() && write.visible() => after,
        _ => return Pending::Answered(pending.await),
    };
    let started = tokio::time::Instant::now();
    tokio::pin!(pending);
    tokio::select! {
        biased;
        answer = &mut pending => return Pending::Answered(answer),
        () = tokio::time::sleep(after) => {}
    }
    let reread = async {
        if shows_made(run, write).await {
            started.elapsed()
        } else {
            // Not shown: only the write's answer ends the wait.
            std::future::pending().await
        }
    };
    tokio::select! {
        biased;
        answer = &mut pending => Pending::Answered(answer),
        after = reread => Pending::Shown { after },
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

impl Write<'_> {
    /// Whether the change shows when its target is read (a reboot does
    /// not).
    fn visible(&self) -> bool {
        !matches!(self, Write::Ec2(InstanceOp::Reboot, _))
    }

    /// The call that makes the change, as `service:Operation`.
    fn operation(&self) -> &'static str {
        match self {
            Write::Ec2(InstanceOp::Terminate, _) => "ec2:TerminateInstances",
            Write::Ec2(InstanceOp::Stop, _) => "ec2:StopInstances",
            Write::Ec2(InstanceOp::Reboot, _) => "ec2:RebootInstances",
            Write::Deregister(PoolSource::ClassicElb { .. }, _) => {
                "elasticloadbalancing:DeregisterInstancesFromLoadBalancer"
            }
            Write::Deregister(PoolSource::TargetGroup { .. }, _) => {
                "elasticloadbalancing:DeregisterTargets"
            }
            Write::SetUnhealthy(_) => "autoscaling:SetInstanceHealth",
            Write::TerminateInGroup(_) => "autoscaling:TerminateInstanceInAutoScalingGroup",
        }
    }
}

/// Whether re-reading the target shows the write's change made (`false`
/// when the read fails, or in a dry run).
async fn shows_made(run: &Run<'_>, write: &Write<'_>) -> bool {
    if run.dry_run() {
        return false;
    }
    let effects = run.effects;
    match write {
        Write::Ec2(InstanceOp::Reboot, _) => false,
        Write::Ec2(op, ids) => match effects.ec2.describe(ids).await {
            Ok(infos) => ids.iter().all(|id| {
                infos
                    .iter()
                    .any(|i| &i.instance_id == id && op.shows_in(&i.state))
            }),
            Err(_) => false,
        },
        Write::Deregister(PoolSource::ClassicElb { load_balancer }, ids) => {
            match effects.elb.instance_health(load_balancer).await {
                Ok(health) => ids
                    .iter()
                    .all(|id| !health.iter().any(|h| &h.instance_id == id)),
                Err(_) => false,
            }
        }
        Write::Deregister(PoolSource::TargetGroup { target_group_arn }, ids) => {
            match effects.target_groups.target_health(target_group_arn).await {
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
            match effects
                .auto_scaling
                .group_instances(&[id.to_string()])
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
            let in_group = effects
                .auto_scaling
                .group_instances(&ids)
                .await
                .map(|members| {
                    members.iter().any(|m| {
                        m.instance_id == **id && m.lifecycle_state.starts_with("Terminating")
                    })
                })
                .unwrap_or(false);
            in_group
                || effects
                    .ec2
                    .describe(&ids)
                    .await
                    .map(|infos| {
                        infos.iter().any(|i| {
                            i.instance_id == **id && InstanceOp::Terminate.shows_in(&i.state)
                        })
                    })
                    .unwrap_or(false)
        }
    }
}
