//! One instance named by the event: reboot, stop or terminate it, if its
//! state, tag and age allow.

use super::{failed, Findings, Run};
use crate::fleet::InstanceOp;
use crate::outcome::Outcome;
use crate::rules::action::OnInstance;
use crate::safety::blast_radius::{check_instance, BlastRadius};
use crate::safety::{Guard, GuardTrip};

/// Applies `op` to `o.instance_id`.
pub(super) async fn on_instance(
    run: &Run<'_>,
    o: &OnInstance<String>,
    op: InstanceOp,
    findings: &mut Findings,
) -> Outcome {
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
    let radius = BlastRadius {
        max_instances: 1,
        max_percent: 100,
        min_in_service: 0,
        min_instance_age: o.min_instance_age,
        require_tag: o.require_tag.clone(),
    };
    if let Err(excluded) = check_instance(info, op, &radius, run.now()) {
        let trip = GuardTrip::new(excluded.guard, excluded.reason.clone());
        findings.excluded.push(excluded);
        return Outcome::suppressed(trip);
    }
    findings.targets = vec![id.clone()];
    if let Err(trip) = run.take_global(1) {
        return Outcome::suppressed(trip);
    }
    let result = findings.aws(ec2.change(op, &[id], run.dry_run())).await;
    findings.changed(run, result)
}
