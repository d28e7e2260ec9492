//! Which instances an action may touch: the blast-radius guards, as a pure
//! function of what the ELB and EC2 reported, the rule's guard parameters and
//! `now`.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{Guard, GuardTrip};
use crate::fleet::{
    AutoScalingGroup, GroupInstance, InstanceHealth, InstanceInfo, InstanceOp, ManagedInstance,
    PoolMember, IN_SERVICE, REPLACEMENT_PROCESSES, SSM_ONLINE,
};
use crate::rules::limits::MaxUnhealthy;
use crate::rules::spec::TagSpec;

/// An action's blast-radius parameters: how much of a fleet it may touch,
/// and which instances at all. (Not [`crate::rules::Limits`], a rule's
/// cooldown and rate.)
#[derive(Debug, Clone, PartialEq)]
pub struct BlastRadius {
    pub max_instances: u32,
    pub max_percent: u32,
    pub min_in_service: u32,
    /// The pool's short-circuit: more bad members than this, nothing is done.
    pub max_unhealthy: MaxUnhealthy,
    pub min_instance_age: std::time::Duration,
    pub require_tag: Option<TagSpec>,
}

/// An instance left out, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Excluded {
    pub instance_id: String,
    pub guard: Guard,
    pub reason: String,
}

/// Which targets the guards allow an action.
#[derive(Debug, Clone, PartialEq)]
pub enum TargetSelection {
    /// Act on these (sorted, oldest first); `capped` says which caps
    /// shrank the list.
    Act {
        targets: Vec<String>,
        excluded: Vec<Excluded>,
        capped: Vec<GuardTrip>,
    },
    /// A guard stops the action altogether.
    Suppressed {
        trip: GuardTrip,
        excluded: Vec<Excluded>,
    },
}

/// Whether one instance may be changed by `op`: its state, tag and age.
pub fn check_instance(
    info: &InstanceInfo,
    op: InstanceOp,
    limits: &BlastRadius,
    now: DateTime<Utc>,
) -> Result<(), Excluded> {
    let exclude = |guard, reason: String| Excluded {
        instance_id: info.instance_id.clone(),
        guard,
        reason,
    };
    let allowed = op.acts_on();
    if !allowed.contains(&info.state) {
        let names: Vec<&str> = allowed.iter().map(|s| s.as_str()).collect();
        return Err(exclude(
            Guard::InstanceState,
            format!(
                "instance is {}; {op} acts only on {}",
                info.state,
                names.join(" or ")
            ),
        ));
    }
    if let Some(tag) = &limits.require_tag {
        let ok = match (info.tags.get(&tag.key), &tag.value) {
            (Some(v), Some(want)) => v == want,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if !ok {
            return Err(exclude(
                Guard::RequireTag,
                format!(
                    "instance lacks tag {}{}",
                    tag.key,
                    tag.value
                        .as_ref()
                        .map(|v| format!("={v}"))
                        .unwrap_or_default()
                ),
            ));
        }
    }
    if !limits.min_instance_age.is_zero() {
        let Some(launched) = info.launch_time else {
            return Err(exclude(
                Guard::MinInstanceAge,
                "launch time unknown".to_string(),
            ));
        };
        let age = now.signed_duration_since(launched).num_seconds().max(0);
        let min = i64::try_from(limits.min_instance_age.as_secs()).unwrap_or(i64::MAX);
        if age < min {
            return Err(exclude(
                Guard::MinInstanceAge,
                format!("instance is {age}s old; min_instance_age is {min}s"),
            ));
        }
    }
    Ok(())
}

/// Chooses which OutOfService instances a classic ELB action may touch.
///
/// `health` is every instance registered with the ELB; `oos` are the
/// OutOfService ones (already confirmed, if the rule re-checks); `infos` is
/// what EC2 says about them.
pub fn select(
    health: &[InstanceHealth],
    oos: &[String],
    infos: &[InstanceInfo],
    op: InstanceOp,
    limits: &BlastRadius,
    now: DateTime<Utc>,
) -> TargetSelection {
    let members: Vec<PoolMember> = health.iter().map(InstanceHealth::member).collect();
    select_in_pool(
        &members,
        oos,
        Candidates::Instances {
            infos,
            op,
            refused: &[],
        },
        limits,
        now,
    )
}

/// The instances of `ids` an Auto Scaling method must refuse, with the
/// reason: in no group (`DescribeAutoScalingInstances` does not list it),
/// not `InService` in it, or its group has `ReplaceUnhealthy`,
/// `Terminate` or `Launch` suspended. In each case `SetInstanceHealth` or
/// `TerminateInstanceInAutoScalingGroup` would be a no-op that looks like
/// success (or take capacity away). A group `DescribeAutoScalingGroups`
/// did not return is refused too: nothing is known about its processes.
pub fn auto_scaling_refusals(
    ids: &[String],
    members: &[GroupInstance],
    groups: &[AutoScalingGroup],
) -> Vec<Excluded> {
    let mut out = Vec::new();
    for id in ids {
        let refuse = |guard, reason: String| Excluded {
            instance_id: id.clone(),
            guard,
            reason,
        };
        let Some(m) = members.iter().find(|m| &m.instance_id == id) else {
            out.push(refuse(
                Guard::NotInGroup,
                "instance is in no Auto Scaling group".to_string(),
            ));
            continue;
        };
        if m.lifecycle_state != IN_SERVICE {
            out.push(refuse(
                Guard::NotInService,
                format!(
                    "instance is {} in Auto Scaling group {}, not {IN_SERVICE}",
                    if m.lifecycle_state.is_empty() {
                        "in no known state"
                    } else {
                        m.lifecycle_state.as_str()
                    },
                    m.group
                ),
            ));
            continue;
        }
        let Some(group) = groups.iter().find(|g| g.name == m.group) else {
            out.push(refuse(
                Guard::NotInGroup,
                format!("DescribeAutoScalingGroups does not know group {}", m.group),
            ));
            continue;
        };
        let suspended: Vec<&str> = group
            .suspended_processes
            .iter()
            .map(String::as_str)
            .filter(|p| REPLACEMENT_PROCESSES.contains(p))
            .collect();
        if !suspended.is_empty() {
            out.push(refuse(
                Guard::ProcessSuspended,
                format!(
                    "Auto Scaling group {} has {} suspended, so it would not replace the instance",
                    m.group,
                    suspended.join(" and ")
                ),
            ));
        }
    }
    out
}

/// The instances of `ids` SSM cannot run a command on, with the reason:
/// not managed (`DescribeInstanceInformation` does not list it), or its
/// agent is not `Online` (`ConnectionLost`, `Inactive`).
pub fn ssm_refusals(ids: &[String], managed: &[ManagedInstance]) -> Vec<Excluded> {
    ids.iter()
        .filter_map(|id| {
            let reason = match managed.iter().find(|m| &m.instance_id == id) {
                None => "Systems Manager does not manage the instance".to_string(),
                Some(m) if m.ping_status == SSM_ONLINE => return None,
                Some(m) => format!(
                    "its SSM agent is {}, not {SSM_ONLINE}",
                    if m.ping_status.is_empty() {
                        "in no known state"
                    } else {
                        m.ping_status.as_str()
                    }
                ),
            };
            Some(Excluded {
                instance_id: id.clone(),
                guard: Guard::NotManaged,
                reason,
            })
        })
        .collect()
}

/// What the pool's bad members are, for the per-member checks.
#[derive(Debug, Clone, Copy)]
pub enum Candidates<'a> {
    /// EC2 instances, checked for state, tag and age.
    Instances {
        infos: &'a [InstanceInfo],
        op: InstanceOp,
        /// Instances the method refuses whatever the guards say (see
        /// [`auto_scaling_refusals`]), each with its reason.
        refused: &'a [Excluded],
    },
    /// IP targets: no instance, so no state or age to check, and no tags
    /// (a rule with `require_tag` leaves them all alone).
    IpAddresses,
}

/// The pool-wide guards, in order: fail-open (every registered member
/// bad), `min_in_service` (healthy members), `max_unhealthy` (bad
/// members). `None` if the pool may be acted on at all.
pub fn pool_trip(members: &[PoolMember], limits: &BlastRadius) -> Option<GuardTrip> {
    let registered = members.len();
    let healthy = members.iter().filter(|m| m.is_healthy()).count();
    let bad = members.iter().filter(|m| m.is_bad()).count();
    if registered > 0 && bad == registered {
        return Some(
            GuardTrip::new(
                Guard::FailOpen,
                format!(
                    "all {registered} registered members are bad: the load balancer fails open and \
                     still routes to every one of them, so removing any would make things worse"
                ),
            )
            .with("registered", registered)
            .with("bad", bad)
            .with("healthy", healthy),
        );
    }
    if (healthy as u64) < u64::from(limits.min_in_service) {
        return Some(
            GuardTrip::new(
                Guard::MinInService,
                format!(
                    "only {healthy} of {registered} instances are InService; min_in_service is {}: \
                     when this much of a fleet fails the cause is shared, and replacing nodes will not fix it",
                    limits.min_in_service
                ),
            )
            .with("in_service", healthy)
            .with("registered", registered)
            .with("out_of_service", bad)
            .with("min_in_service", limits.min_in_service),
        );
    }
    let allowed = limits.max_unhealthy.allowed(registered);
    if bad > allowed {
        return Some(
            GuardTrip::new(
                Guard::MaxUnhealthy,
                format!(
                    "{bad} of {registered} registered members are bad, more than max_unhealthy {} ({allowed}): \
                     the cause is shared (a deploy, a dependency), and replacing instances would only churn the fleet",
                    limits.max_unhealthy
                ),
            )
            .with("bad", bad)
            .with("registered", registered)
            .with("allowed", allowed)
            .with("healthy", healthy),
        );
    }
    None
}

/// Chooses which bad members of a pool an action may touch.
///
/// `members` is every registered member (classic ELB instances or target
/// group targets); `bad` are the ids to act on (already confirmed, if the
/// rule re-checks); `candidates` says how to check each one.
pub fn select_in_pool(
    members: &[PoolMember],
    bad: &[String],
    candidates: Candidates<'_>,
    limits: &BlastRadius,
    now: DateTime<Utc>,
) -> TargetSelection {
    let registered = members.len();
    let mut excluded = Vec::new();
    if let Some(trip) = pool_trip(members, limits) {
        return TargetSelection::Suppressed { trip, excluded };
    }
    let oos = bad;
    let (infos, op, refused) = match candidates {
        Candidates::Instances { infos, op, refused } => (infos, op, refused),
        Candidates::IpAddresses => return select_ips(registered, bad, limits),
    };
    let mut eligible: Vec<&InstanceInfo> = Vec::new();
    for id in oos {
        match infos.iter().find(|i| &i.instance_id == id) {
            None => excluded.push(Excluded {
                instance_id: id.clone(),
                guard: Guard::InstanceState,
                reason: "EC2 does not know the instance".to_string(),
            }),
            Some(info) => match check_instance(info, op, limits, now) {
                Ok(()) => match refused.iter().find(|r| &r.instance_id == id) {
                    Some(r) => excluded.push(r.clone()),
                    None => eligible.push(info),
                },
                Err(e) => excluded.push(e),
            },
        }
    }
    // Oldest first, then by id: deterministic, and the oldest node is the
    // likeliest to be a zombie.
    eligible.sort_by(|a, b| {
        a.launch_time
            .cmp(&b.launch_time)
            .then(a.instance_id.cmp(&b.instance_id))
    });
    if eligible.is_empty() {
        let guard = excluded.first().map_or(Guard::InstanceState, |e| e.guard);
        return TargetSelection::Suppressed {
            trip: GuardTrip::new(
                guard,
                format!(
                    "none of the {} OutOfService instances may be changed",
                    oos.len()
                ),
            )
            .with("out_of_service", oos.len())
            .with("excluded", excluded.len()),
            excluded,
        };
    }
    let ids = eligible
        .into_iter()
        .map(|i| i.instance_id.clone())
        .collect();
    cap(ids, registered, excluded, limits)
}

/// IP targets: eligible unless the rule requires a tag (they carry none).
fn select_ips(registered: usize, bad: &[String], limits: &BlastRadius) -> TargetSelection {
    let mut ids: Vec<String> = bad.to_vec();
    ids.sort();
    if let Some(tag) = &limits.require_tag {
        let excluded: Vec<Excluded> = ids
            .iter()
            .map(|id| Excluded {
                instance_id: id.clone(),
                guard: Guard::RequireTag,
                reason: format!(
                    "an ip target carries no tags, so it cannot have {}",
                    tag.key
                ),
            })
            .collect();
        return TargetSelection::Suppressed {
            trip: GuardTrip::new(
                Guard::RequireTag,
                format!(
                    "none of the {} bad ip targets can carry tag {}",
                    ids.len(),
                    tag.key
                ),
            )
            .with("bad", ids.len()),
            excluded,
        };
    }
    cap(ids, registered, Vec::new(), limits)
}

/// `max_percent` of the registered members, then `max_instances`.
fn cap(
    mut eligible: Vec<String>,
    registered: usize,
    excluded: Vec<Excluded>,
    limits: &BlastRadius,
) -> TargetSelection {
    let mut capped = Vec::new();
    let by_percent = (registered as u64 * u64::from(limits.max_percent) / 100) as usize;
    if by_percent == 0 {
        return TargetSelection::Suppressed {
            trip: GuardTrip::new(
                Guard::MaxPercent,
                format!(
                    "max_percent {}% of {registered} registered instances allows none",
                    limits.max_percent
                ),
            )
            .with("registered", registered)
            .with("max_percent", limits.max_percent)
            .with("eligible", eligible.len()),
            excluded,
        };
    }
    if eligible.len() > by_percent {
        capped.push(
            GuardTrip::new(
                Guard::MaxPercent,
                format!(
                    "{} eligible, max_percent {}% of {registered} allows {by_percent}",
                    eligible.len(),
                    limits.max_percent
                ),
            )
            .with("eligible", eligible.len())
            .with("allowed", by_percent)
            .with("registered", registered),
        );
        eligible.truncate(by_percent);
    }
    let max = limits.max_instances as usize;
    if eligible.len() > max {
        capped.push(
            GuardTrip::new(
                Guard::MaxInstances,
                format!("{} eligible, max_instances allows {max}", eligible.len()),
            )
            .with("eligible", eligible.len())
            .with("allowed", max),
        );
        eligible.truncate(max);
    }
    TargetSelection::Act {
        targets: eligible,
        excluded,
        capped,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::time::Duration;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-01-12T16:30:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn fleet(n: usize, oos: usize) -> (Vec<InstanceHealth>, Vec<String>, Vec<InstanceInfo>) {
        let ids: Vec<String> = (0..n).map(|i| format!("i-{i:03}")).collect();
        let health = ids
            .iter()
            .enumerate()
            .map(|(i, id)| InstanceHealth {
                instance_id: id.clone(),
                state: if i < oos { "OutOfService" } else { "InService" }.into(),
                reason: None,
            })
            .collect();
        let infos = ids
            .iter()
            .enumerate()
            .map(|(i, id)| InstanceInfo {
                instance_id: id.clone(),
                state: if i < oos { "stopped" } else { "running" }.into(),
                launch_time: Some(now() - chrono::Duration::hours(1 + i as i64)),
                tags: BTreeMap::from([("reflex:managed".to_string(), "true".to_string())]),
            })
            .collect();
        (health, ids[..oos].to_vec(), infos)
    }

    fn limits() -> BlastRadius {
        BlastRadius {
            max_instances: 10,
            max_percent: 100,
            min_in_service: 1,
            max_unhealthy: MaxUnhealthy::Percent(100),
            min_instance_age: Duration::from_secs(600),
            require_tag: Some(TagSpec {
                key: "reflex:managed".into(),
                value: Some("true".into()),
            }),
        }
    }

    fn targets(s: &TargetSelection) -> Vec<String> {
        match s {
            TargetSelection::Act { targets, .. } => targets.clone(),
            TargetSelection::Suppressed { .. } => vec![],
        }
    }

    fn suppressed_by(s: &TargetSelection) -> Option<Guard> {
        match s {
            TargetSelection::Suppressed { trip, .. } => Some(trip.guard),
            TargetSelection::Act { .. } => None,
        }
    }

    #[test]
    fn one_of_four_out_of_service_is_selected() {
        let (h, oos, infos) = fleet(4, 1);
        assert_eq!(
            targets(&select(
                &h,
                &oos,
                &infos,
                InstanceOp::Terminate,
                &limits(),
                now()
            )),
            vec!["i-000"]
        );
    }

    #[test]
    fn min_in_service_stops_everything() {
        let (h, oos, infos) = fleet(4, 3);
        let l = BlastRadius {
            min_in_service: 2,
            ..limits()
        };
        let s = select(&h, &oos, &infos, InstanceOp::Terminate, &l, now());
        assert_eq!(suppressed_by(&s), Some(Guard::MinInService));
        if let TargetSelection::Suppressed { trip, .. } = s {
            assert_eq!(trip.numbers["in_service"], 1);
            assert_eq!(trip.numbers["min_in_service"], 2);
        }
    }

    #[test]
    fn max_instances_and_max_percent_cap() {
        let (h, oos, infos) = fleet(10, 4);
        let l = BlastRadius {
            max_instances: 1,
            ..limits()
        };
        let s = select(&h, &oos, &infos, InstanceOp::Terminate, &l, now());
        // Oldest first: i-003 launched longest ago.
        assert_eq!(targets(&s), vec!["i-003"]);
        let l = BlastRadius {
            max_percent: 20,
            ..limits()
        };
        assert_eq!(
            targets(&select(&h, &oos, &infos, InstanceOp::Terminate, &l, now())).len(),
            2
        );
        let (h, oos, infos) = fleet(3, 1);
        let l = BlastRadius {
            max_percent: 25,
            ..limits()
        };
        assert_eq!(
            suppressed_by(&select(&h, &oos, &infos, InstanceOp::Terminate, &l, now())),
            Some(Guard::MaxPercent)
        );
    }

    #[test]
    fn tag_age_and_state_exclude() {
        let (h, oos, mut infos) = fleet(4, 1);
        infos[0].tags.clear();
        assert_eq!(
            suppressed_by(&select(
                &h,
                &oos,
                &infos,
                InstanceOp::Terminate,
                &limits(),
                now()
            )),
            Some(Guard::RequireTag)
        );
        let (h, oos, mut infos) = fleet(4, 1);
        infos[0].launch_time = Some(now() - chrono::Duration::minutes(2));
        assert_eq!(
            suppressed_by(&select(
                &h,
                &oos,
                &infos,
                InstanceOp::Terminate,
                &limits(),
                now()
            )),
            Some(Guard::MinInstanceAge)
        );
        let (h, oos, mut infos) = fleet(4, 1);
        infos[0].state = "shutting-down".into();
        assert_eq!(
            suppressed_by(&select(
                &h,
                &oos,
                &infos,
                InstanceOp::Terminate,
                &limits(),
                now()
            )),
            Some(Guard::InstanceState)
        );
        let (h, oos, mut infos) = fleet(4, 1);
        infos[0].state = "pending".into();
        assert_eq!(
            suppressed_by(&select(
                &h,
                &oos,
                &infos,
                InstanceOp::Terminate,
                &limits(),
                now()
            )),
            Some(Guard::InstanceState)
        );
    }
}
