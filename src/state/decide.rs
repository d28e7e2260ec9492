//! The decisions every backend renders: is this claim free, ours, busy or
//! done; is this lease still held; does this bucket have room (GCRA); how
//! long a cooldown has left; when a record may be garbage-collected. Pure:
//! `now` is a value (epoch milliseconds), nothing here reads a clock.
//!
//! The DynamoDB backend writes the same predicates as condition expressions
//! and uses these functions to interpret what a failed condition returned;
//! the embedded backends call them inside one write transaction.

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};

use super::{ClaimRecord, ClaimRequest, ClaimStatus, Lease, LeaseKind, RateLimited, RateTake};
use crate::rules::Rate;

/// How long after its expiry an in-progress claim may be garbage-collected.
/// Longer than SQS keeps a message (14 days), so a redelivery always finds
/// its dead holder's claim and treats it as taken over, never as new.
pub const IN_PROGRESS_RETENTION: Duration = Duration::from_secs(15 * 86_400);

/// How long other records are kept past their end, for `reflex state`.
pub const ENDED_RETENTION: Duration = Duration::from_secs(86_400);

/// Epoch milliseconds.
pub fn millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// Epoch milliseconds back to a time (clamped to the representable range).
pub fn time(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// A duration in whole milliseconds, saturating.
pub fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn after(now: i64, d: Duration) -> i64 {
    now.saturating_add(ms(d))
}

/// What a claim request finds in the record it would replace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimDecision {
    /// Free: no record, a completion whose dedup window has passed.
    Take,
    /// In progress, but its holder's lease ran out: take it over.
    TakeOver { previous_owner: String },
    /// In progress under a running lease.
    Busy { holder: String, until: i64 },
    /// Completed within its dedup window.
    Done { outcome: String, at: i64 },
}

/// Decides a claim on `existing` at `now`. The lease must have run out by
/// the taker's clock: a dead holder is only ever presumed dead after that.
pub fn claim(existing: Option<&ClaimRecord>, now: i64) -> ClaimDecision {
    let Some(r) = existing else {
        return ClaimDecision::Take;
    };
    match r.status {
        ClaimStatus::Completed => match r.done_until {
            Some(until) if until > now => ClaimDecision::Done {
                outcome: r.outcome.clone().unwrap_or_default(),
                at: r.done_at.unwrap_or(r.claimed_at),
            },
            _ => ClaimDecision::Take,
        },
        ClaimStatus::InProgress if r.lease_until > now => ClaimDecision::Busy {
            holder: r.owner.clone(),
            until: r.lease_until,
        },
        ClaimStatus::InProgress => ClaimDecision::TakeOver {
            previous_owner: r.owner.clone(),
        },
    }
}

/// The record a successful claim writes.
pub fn claimed(
    req: &ClaimRequest,
    token: &str,
    previous: Option<&ClaimRecord>,
    now: i64,
) -> ClaimRecord {
    let taken_over = previous.filter(|p| p.status == ClaimStatus::InProgress);
    ClaimRecord {
        key: req.key.clone(),
        rule: req.rule.clone(),
        target: req.target.clone(),
        status: ClaimStatus::InProgress,
        owner: req.owner.clone(),
        token: token.to_string(),
        claimed_at: now,
        lease_until: after(now, req.lease),
        takeovers: taken_over.map_or(0, |p| p.takeovers.saturating_add(1)),
        previous_owner: taken_over.map(|p| p.owner.clone()),
        outcome: None,
        done_at: None,
        done_until: None,
    }
}

/// The lease a successful claim hands out.
pub fn claim_lease(record: &ClaimRecord) -> Lease {
    Lease {
        kind: LeaseKind::Claim,
        key: record.key.clone(),
        owner: record.owner.clone(),
        token: record.token.clone(),
        until: time(record.lease_until),
    }
}

/// True if `record` is the in-progress claim `lease` stands for. Expiry does
/// not matter here: until someone else takes it over, a late holder may
/// still heartbeat, complete or release it.
pub fn holds_claim(record: Option<&ClaimRecord>, lease: &Lease) -> bool {
    record.is_some_and(|r| {
        r.status == ClaimStatus::InProgress && r.owner == lease.owner && r.token == lease.token
    })
}

/// True if a target lease record (owner, token) is `lease`'s.
pub fn holds_target(owner: &str, token: &str, lease: &Lease) -> bool {
    owner == lease.owner && token == lease.token
}

/// A claim completed: the outcome recorded, remembered for `remember`.
pub fn completed(record: &ClaimRecord, outcome: &str, remember: Duration, now: i64) -> ClaimRecord {
    ClaimRecord {
        status: ClaimStatus::Completed,
        outcome: Some(outcome.to_string()),
        done_at: Some(now),
        done_until: Some(after(now, remember)),
        ..record.clone()
    }
}

/// Whether a target lease may be acquired: none, or its holder's lease ran
/// out.
pub fn target_free(lease_until: Option<i64>, now: i64) -> bool {
    lease_until.is_none_or(|until| until <= now)
}

/// The new end of a lease renewed at `now`.
pub fn renewed(now: i64, extend: Duration) -> i64 {
    after(now, extend)
}

/// Time left on a cooldown ending at `until`.
pub fn cooldown_remaining(until: Option<i64>, now: i64) -> Option<Duration> {
    let until = until?;
    (until > now).then(|| Duration::from_millis(u64::try_from(until - now).unwrap_or(0)))
}

/// The end of a cooldown started at `now`, never shorter than one running.
pub fn cooldown_until(existing: Option<i64>, period: Duration, now: i64) -> i64 {
    after(now, period).max(existing.unwrap_or(i64::MIN))
}

/// GCRA's emission interval: one cell comes back every `period / count`
/// (at least 1 ms).
pub fn emission_interval(take: &RateTake) -> i64 {
    (ms(take.rate.per) / i64::from(take.rate.count.get())).max(1)
}

/// GCRA, as `governor` does it: burst = count, a cell back every
/// period/count. `tat` is the bucket's theoretical arrival time (none for a
/// fresh bucket). Returns the new `tat`, or why not.
///
/// The request fits if, after it, the bucket would be at most a whole burst
/// ahead of `now`: `max(tat, now) + n·T ≤ now + count·T`.
pub fn gcra(tat: Option<i64>, take: &RateTake, now: i64) -> Result<i64, RateLimited> {
    let limited = |retry_after| RateLimited {
        bucket: take.bucket.clone(),
        rate: take.rate,
        requested: take.n,
        retry_after,
    };
    if take.n == 0 {
        return Ok(tat.unwrap_or(now));
    }
    let t = emission_interval(take);
    let burst = i64::from(take.rate.count.get());
    let n = i64::from(take.n);
    if n > burst {
        return Err(limited(None));
    }
    let base = tat.unwrap_or(now).max(now);
    let new_tat = base.saturating_add(t.saturating_mul(n));
    let allowed_until = now.saturating_add(t.saturating_mul(burst));
    if new_tat <= allowed_until {
        Ok(new_tat)
    } else {
        let wait = new_tat - allowed_until;
        Err(limited(Some(Duration::from_millis(
            u64::try_from(wait).unwrap_or(u64::MAX),
        ))))
    }
}

/// Capacity left in a bucket at `now`, in whole cells.
pub fn capacity(tat: Option<i64>, take: &RateTake, now: i64) -> u32 {
    let t = emission_interval(take);
    let burst = i64::from(take.rate.count.get());
    let used = (tat.unwrap_or(now).max(now) - now + t - 1) / t;
    u32::try_from((burst - used).max(0)).unwrap_or(0)
}

/// When DynamoDB may garbage-collect a claim (epoch seconds). Never used
/// for a decision: DynamoDB deletes expired items up to days late.
/// A remediation budget: the attempts of `attempts` (epoch ms) still
/// inside the window ending at `now`, plus this one, if fewer than
/// `budget.count` are; otherwise (attempts used, ms until the oldest
/// leaves the window).
pub fn spend_budget(attempts: &[i64], budget: Rate, now: i64) -> Result<Vec<i64>, (u32, i64)> {
    let window = ms(budget.per);
    let mut kept: Vec<i64> = attempts
        .iter()
        .copied()
        .filter(|t| *t > now.saturating_sub(window))
        .collect();
    kept.sort_unstable();
    let used = u32::try_from(kept.len()).unwrap_or(u32::MAX);
    if used >= budget.count.get() {
        let oldest = kept.first().copied().unwrap_or(now);
        return Err((used, (oldest.saturating_add(window) - now).max(1)));
    }
    kept.push(now);
    Ok(kept)
}

pub fn claim_expires_at(record: &ClaimRecord) -> i64 {
    let end = match record.status {
        ClaimStatus::InProgress => after(record.lease_until, IN_PROGRESS_RETENTION),
        ClaimStatus::Completed => after(
            record.done_until.unwrap_or(record.lease_until),
            ENDED_RETENTION,
        ),
    };
    end / 1000
}

/// When any other record ending at `end` (ms) may be garbage-collected
/// (epoch seconds).
pub fn expires_at(end: i64) -> i64 {
    after(end, ENDED_RETENTION) / 1000
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::Rate;

    fn take(rate: &str, n: u32) -> RateTake {
        RateTake {
            bucket: "b".into(),
            rate: Rate::parse(rate).unwrap(),
            n,
        }
    }

    fn record(status: ClaimStatus, lease_until: i64, done_until: Option<i64>) -> ClaimRecord {
        ClaimRecord {
            key: "k".into(),
            rule: "r".into(),
            target: "t".into(),
            status,
            owner: "a".into(),
            token: "x".into(),
            claimed_at: 0,
            lease_until,
            takeovers: 0,
            previous_owner: None,
            outcome: Some("done".into()),
            done_at: Some(5),
            done_until,
        }
    }

    #[test]
    fn claims_follow_lease_and_dedup_window() {
        assert_eq!(claim(None, 10), ClaimDecision::Take);
        let busy = record(ClaimStatus::InProgress, 100, None);
        assert_eq!(
            claim(Some(&busy), 99),
            ClaimDecision::Busy {
                holder: "a".into(),
                until: 100
            }
        );
        assert_eq!(
            claim(Some(&busy), 100),
            ClaimDecision::TakeOver {
                previous_owner: "a".into()
            },
            "a lease that has run out is taken over"
        );
        let done = record(ClaimStatus::Completed, 100, Some(1000));
        assert_eq!(
            claim(Some(&done), 999),
            ClaimDecision::Done {
                outcome: "done".into(),
                at: 5
            }
        );
        assert_eq!(claim(Some(&done), 1000), ClaimDecision::Take);
    }

    #[test]
    fn a_takeover_is_counted_and_names_the_previous_owner() {
        let req = ClaimRequest {
            key: "k".into(),
            rule: "r".into(),
            target: "t".into(),
            owner: "b".into(),
            lease: Duration::from_secs(30),
        };
        let old = record(ClaimStatus::InProgress, 100, None);
        let new = claimed(&req, "y", Some(&old), 200);
        assert_eq!(new.takeovers, 1);
        assert_eq!(new.previous_owner.as_deref(), Some("a"));
        assert_eq!(new.lease_until, 30_200);
        let lease = claim_lease(&new);
        assert!(holds_claim(Some(&new), &lease));
        assert!(!holds_claim(Some(&old), &lease));
        let fresh = claimed(
            &req,
            "y",
            Some(&record(ClaimStatus::Completed, 0, Some(1))),
            2,
        );
        assert_eq!((fresh.takeovers, fresh.previous_owner), (0, None));
    }

    #[test]
    fn gcra_allows_the_burst_then_one_per_interval() {
        let t = take("5/hour", 1);
        let mut tat = None;
        for i in 0..5 {
            tat = Some(gcra(tat, &t, 0).unwrap_or_else(|e| panic!("call {i}: {e:?}")));
        }
        assert_eq!(capacity(tat, &t, 0), 0);
        let err = gcra(tat, &t, 0).unwrap_err();
        assert_eq!(err.retry_after, Some(Duration::from_secs(720)));
        assert_eq!(
            gcra(tat, &t, 719_999).unwrap_err().retry_after,
            Some(Duration::from_millis(1))
        );
        assert!(gcra(tat, &t, 720_000).is_ok(), "a cell came back");
        assert_eq!(capacity(tat, &t, 720_000), 1);
        assert_eq!(
            gcra(None, &take("5/hour", 6), 0).unwrap_err().retry_after,
            None
        );
        assert_eq!(gcra(None, &take("5/hour", 5), 0), Ok(3_600_000));
        assert_eq!(
            gcra(Some(7), &take("5/hour", 0), 0),
            Ok(7),
            "taking nothing changes nothing"
        );
        // Idle for long: the bucket is full again, never more than full.
        assert_eq!(capacity(tat, &t, 10 * 3_600_000), 5);
    }

    #[test]
    fn a_budget_counts_attempts_in_a_sliding_window() {
        let budget = Rate::parse("3/24h").unwrap();
        let day = ms(budget.per);
        let mut attempts = Vec::new();
        for t in [0, 1_000, 2_000] {
            attempts = spend_budget(&attempts, budget, t).expect("within the budget");
        }
        assert_eq!(attempts, vec![0, 1_000, 2_000]);
        // The fourth within the day is refused until the first leaves it.
        assert_eq!(
            spend_budget(&attempts, budget, 3_000),
            Err((3, day - 3_000))
        );
        assert_eq!(spend_budget(&attempts, budget, day - 1), Err((3, 1)));
        let later = spend_budget(&attempts, budget, day).expect("the first left the window");
        assert_eq!(later, vec![1_000, 2_000, day], "old attempts are dropped");
    }

    #[test]
    fn cooldowns_never_shorten() {
        assert_eq!(cooldown_remaining(None, 0), None);
        assert_eq!(cooldown_remaining(Some(10), 10), None);
        assert_eq!(
            cooldown_remaining(Some(1010), 10),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            cooldown_until(Some(50_000), Duration::from_secs(10), 0),
            50_000
        );
        assert_eq!(cooldown_until(Some(5), Duration::from_secs(10), 0), 10_000);
    }

    #[test]
    fn garbage_collection_outlives_sqs_retention_for_in_progress_claims() {
        let r = record(ClaimStatus::InProgress, 1_000, None);
        assert!(claim_expires_at(&r) > 14 * 86_400);
        let d = record(ClaimStatus::Completed, 1_000, Some(2_000_000));
        assert_eq!(claim_expires_at(&d), (2_000_000 + 86_400_000) / 1000);
        assert!(target_free(None, 0));
        assert!(target_free(Some(5), 5));
        assert!(!target_free(Some(6), 5));
    }
}
