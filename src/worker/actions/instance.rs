//! One instance named by the event: reboot, stop or terminate it, or run
//! a command on it, if its state, tag and age allow.

use super::settle::{self, Write};
use super::{command, failed, Findings, Run};
use crate::fleet::InstanceOp;
use crate::outcome::Outcome;
use crate::rules::action::{OnInstance, RunCommand};
use crate::safety::blast_radius::{check_instance, BlastRadius};
use crate::safety::{Guard, GuardTrip};

/// What to do to the instance.
pub(super) enum Change<'a> {
    /// An EC2 call: reboot, stop, terminate.
    Ec2(InstanceOp),
    /// A command through SSM, on a running instance SSM manages.
    Command(&'a RunCommand<String>),
}

/// Applies `change` to `o.instance_id`.
pub(super) async fn on_instance(
    run: &Run<'_>,
    o: &OnInstance<String>,
    change: Change<'_>,
    findings: &mut Findings,
) -> Outcome {
    // A command needs a running instance, as a reboot does.
    let op = match change {
        Change::Ec2(op) => op,
        Change::Command(_) => InstanceOp::Reboot,
    };
    let ec2 = &run.effects.ec2;
    let id = o.instance_id.clone();
    let infos = match findings.aws(ec2.describe(std::slice::from_ref(&id))).await {
        Ok(i) => i,
        Err(e) => return failed(&e),
    };
    let Some(info) = infos.iter().find(|i| i.instance_id == id) else {
        return Outcome::suppressed(GuardTrip::new(
            Guard::InstanceState,
            format!("EC2 does not know instance {id}"),
        ));
    };
    if run.taken_over && matches!(change, Change::Ec2(_)) && op.shows_in(&info.state) {
        // The holder that died got this far: the change is made.
        findings.targets = vec![id.clone()];
        return run.done();
    }
    let radius = BlastRadius {
        max_instances: 1,
        max_percent: 100,
        min_in_service: 0,
        max_unhealthy: crate::rules::limits::MaxUnhealthy::Count(1),
        min_instance_age: o.min_instance_age,
        require_tag: o.require_tag.clone(),
    };
    // The instance comes from the message: CloudWatch must agree the alarm
    // is in the state the message says.
    if let Err(outcome) = run.confirm_alarm(run.ctx.event.new_state, findings).await {
        return outcome;
    }
    if let Err(excluded) = check_instance(info, op, &radius, run.now()) {
        let trip = GuardTrip::new(excluded.guard, excluded.reason.clone());
        findings.excluded.push(excluded);
        return Outcome::suppressed(trip);
    }
    if let Change::Command(_) = change {
        match command::refusals(run, std::slice::from_ref(&id), findings).await {
            Ok(mut refused) => {
                if let Some(excluded) = refused.pop() {
                    let trip = GuardTrip::new(excluded.guard, excluded.reason.clone());
                    findings.excluded.push(excluded);
                    return Outcome::suppressed(trip);
                }
            }
            Err(e) => return failed(&e),
        }
    }
    findings.targets = vec![id.clone()];
    if let Err(outcome) = run.spend_budget(findings).await {
        return outcome;
    }
    if let Err(outcome) = run.take_global(1).await {
        return outcome;
    }
    match change {
        Change::Ec2(op) => {
            let ids = [id];
            let dry = run.dry_run();
            let result = settle::change(run, Write::Ec2(op, &ids), findings, || {
                ec2.change(op, &ids, dry)
            })
            .await;
            findings.changed(run, result)
        }
        Change::Command(c) => command::send_and_wait(run, &[id], c, findings).await,
    }
}
