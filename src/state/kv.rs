//! The store's operations written once over a transactional key/value map,
//! for the embedded backends ([`memory`](super::memory) and
//! [`local`](super::local)). Each operation runs inside one transaction
//! that the backend commits only if the operation returns `Ok`; the
//! decisions come from [`decide`](super::decide).

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::decide::{self, ClaimDecision};
use super::{
    BudgetExhausted, BudgetRecord, ClaimRecord, ClaimRequest, Claimed, Completion, CooldownRecord,
    CooldownStart, Lease, LeaseKind, RateLimited, RateRecord, RateTake, Snapshot, StoreError,
    TargetLease, TargetRecord,
};

/// The four kinds of record, one table each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Table {
    Claims,
    Cooldowns,
    Rates,
    Targets,
    /// Remediation attempts per target.
    Budgets,
}

impl Table {
    pub const ALL: [Table; 5] = [
        Table::Claims,
        Table::Cooldowns,
        Table::Rates,
        Table::Targets,
        Table::Budgets,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Table::Claims => "claims",
            Table::Cooldowns => "cooldowns",
            Table::Rates => "rates",
            Table::Targets => "targets",
            Table::Budgets => "budgets",
        }
    }
}

/// One open write transaction.
pub trait Txn {
    fn get(&mut self, table: Table, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    fn put(&mut self, table: Table, key: &str, value: &[u8]) -> Result<(), StoreError>;
    fn delete(&mut self, table: Table, key: &str) -> Result<bool, StoreError>;
    fn scan(&mut self, table: Table) -> Result<Vec<(String, Vec<u8>)>, StoreError>;
}

fn read<T: DeserializeOwned>(
    tx: &mut impl Txn,
    table: Table,
    key: &str,
) -> Result<Option<T>, StoreError> {
    match tx.get(table, key)? {
        None => Ok(None),
        Some(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            StoreError::Permanent(format!(
                "corrupt record {key:?} in table {}: {e}",
                table.name()
            ))
        }),
    }
}

fn write<T: Serialize>(
    tx: &mut impl Txn,
    table: Table,
    key: &str,
    value: &T,
) -> Result<(), StoreError> {
    let bytes = serde_json::to_vec(value)
        .map_err(|e| StoreError::Permanent(format!("cannot encode record {key:?}: {e}")))?;
    tx.put(table, key, &bytes)
}

/// The key of a cooldown record. Rule names and targets cannot hold a
/// newline, so the pair stays unambiguous.
pub fn cooldown_key(rule: &str, target: &str) -> String {
    format!("{rule}\n{target}")
}

pub fn claim(
    tx: &mut impl Txn,
    req: &ClaimRequest,
    token: &str,
    now: DateTime<Utc>,
) -> Result<Claimed, StoreError> {
    let now = decide::millis(now);
    let existing: Option<ClaimRecord> = read(tx, Table::Claims, &req.key)?;
    let decision = decide::claim(existing.as_ref(), now);
    match decision {
        ClaimDecision::Busy { holder, until } => Ok(Claimed::Busy {
            holder,
            until: decide::time(until),
        }),
        ClaimDecision::Done { outcome, at } => Ok(Claimed::Done {
            outcome,
            at: decide::time(at),
        }),
        ClaimDecision::Take | ClaimDecision::TakeOver { .. } => {
            let record = decide::claimed(req, token, existing.as_ref(), now);
            write(tx, Table::Claims, &req.key, &record)?;
            let lease = decide::claim_lease(&record);
            Ok(match decision {
                ClaimDecision::TakeOver { previous_owner } => Claimed::TakenOver {
                    lease,
                    previous_owner,
                },
                _ => Claimed::New(lease),
            })
        }
    }
}

fn lost(lease: &Lease, holder: Option<String>) -> StoreError {
    let what = match lease.kind {
        LeaseKind::Claim => format!("claim {}", lease.key),
        LeaseKind::Target => format!("target lease {}", lease.key),
    };
    StoreError::Lost { what, holder }
}

pub fn heartbeat(
    tx: &mut impl Txn,
    lease: &Lease,
    extend: Duration,
    now: DateTime<Utc>,
) -> Result<Lease, StoreError> {
    let until = decide::renewed(decide::millis(now), extend);
    match lease.kind {
        LeaseKind::Claim => {
            let r: Option<ClaimRecord> = read(tx, Table::Claims, &lease.key)?;
            if !decide::holds_claim(r.as_ref(), lease) {
                return Err(lost(lease, r.map(|r| r.owner)));
            }
            let Some(mut r) = r else {
                return Err(lost(lease, None));
            };
            r.lease_until = until;
            write(tx, Table::Claims, &lease.key, &r)?;
        }
        LeaseKind::Target => {
            let r: Option<TargetRecord> = read(tx, Table::Targets, &lease.key)?;
            match r {
                Some(mut r) if decide::holds_target(&r.owner, &r.token, lease) => {
                    r.lease_until = until;
                    write(tx, Table::Targets, &lease.key, &r)?;
                }
                other => return Err(lost(lease, other.map(|r| r.owner))),
            }
        }
    }
    Ok(Lease {
        until: decide::time(until),
        ..lease.clone()
    })
}

pub fn complete(
    tx: &mut impl Txn,
    lease: &Lease,
    completion: &Completion,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let r: Option<ClaimRecord> = read(tx, Table::Claims, &lease.key)?;
    if lease.kind != LeaseKind::Claim || !decide::holds_claim(r.as_ref(), lease) {
        return Err(lost(lease, r.map(|r| r.owner)));
    }
    let Some(r) = r else {
        return Err(lost(lease, None));
    };
    let done = decide::completed(
        &r,
        &completion.outcome,
        completion.remember,
        decide::millis(now),
    );
    write(tx, Table::Claims, &lease.key, &done)?;
    if let Some(c) = &completion.cooldown {
        start_cooldown(tx, c, now)?;
    }
    Ok(())
}

pub fn release(tx: &mut impl Txn, lease: &Lease) -> Result<(), StoreError> {
    match lease.kind {
        LeaseKind::Claim => {
            let r: Option<ClaimRecord> = read(tx, Table::Claims, &lease.key)?;
            if !decide::holds_claim(r.as_ref(), lease) {
                return Err(lost(lease, r.map(|r| r.owner)));
            }
            tx.delete(Table::Claims, &lease.key)?;
        }
        LeaseKind::Target => {
            let r: Option<TargetRecord> = read(tx, Table::Targets, &lease.key)?;
            match r {
                Some(r) if decide::holds_target(&r.owner, &r.token, lease) => {
                    tx.delete(Table::Targets, &lease.key)?;
                }
                other => return Err(lost(lease, other.map(|r| r.owner))),
            }
        }
    }
    Ok(())
}

pub fn cooldown(
    tx: &mut impl Txn,
    rule: &str,
    target: &str,
    now: DateTime<Utc>,
) -> Result<Option<Duration>, StoreError> {
    let r: Option<CooldownRecord> = read(tx, Table::Cooldowns, &cooldown_key(rule, target))?;
    Ok(decide::cooldown_remaining(
        r.map(|r| r.until),
        decide::millis(now),
    ))
}

pub fn start_cooldown(
    tx: &mut impl Txn,
    c: &CooldownStart,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let key = cooldown_key(&c.rule, &c.target);
    let now = decide::millis(now);
    let existing: Option<CooldownRecord> = read(tx, Table::Cooldowns, &key)?;
    let until = decide::cooldown_until(
        existing.as_ref().filter(|e| e.until > now).map(|e| e.until),
        c.period,
        now,
    );
    let record = CooldownRecord {
        rule: c.rule.clone(),
        target: c.target.clone(),
        started_at: now,
        until,
    };
    write(tx, Table::Cooldowns, &key, &record)
}

pub fn forget_cooldown(tx: &mut impl Txn, rule: &str, target: &str) -> Result<bool, StoreError> {
    tx.delete(Table::Cooldowns, &cooldown_key(rule, target))
}

pub fn take(
    tx: &mut impl Txn,
    takes: &[RateTake],
    fence: Option<&Lease>,
    now: DateTime<Utc>,
) -> Result<Result<(), RateLimited>, StoreError> {
    if let Some(lease) = fence {
        let held = match lease.kind {
            LeaseKind::Claim => {
                let r: Option<ClaimRecord> = read(tx, Table::Claims, &lease.key)?;
                decide::holds_claim(r.as_ref(), lease)
            }
            LeaseKind::Target => {
                let r: Option<TargetRecord> = read(tx, Table::Targets, &lease.key)?;
                r.is_some_and(|r| decide::holds_target(&r.owner, &r.token, lease))
            }
        };
        if !held {
            return Err(lost(lease, None));
        }
    }
    let now = decide::millis(now);
    let mut updated = Vec::with_capacity(takes.len());
    for t in takes {
        // A bucket named twice in one call counts both takes.
        let earlier = updated
            .iter()
            .rev()
            .find(|r: &&RateRecord| r.bucket == t.bucket)
            .map(|r| r.tat);
        let tat = match earlier {
            Some(tat) => Some(tat),
            None => read::<RateRecord>(tx, Table::Rates, &t.bucket)?.map(|r| r.tat),
        };
        match decide::gcra(tat, t, now) {
            Ok(tat) => updated.push(RateRecord {
                bucket: t.bucket.clone(),
                rate: t.rate.to_string(),
                tat,
            }),
            Err(limited) => return Ok(Err(limited)),
        }
    }
    for r in &updated {
        write(tx, Table::Rates, &r.bucket, r)?;
    }
    Ok(Ok(()))
}

pub fn spend_budget(
    tx: &mut impl Txn,
    target: &str,
    budget: crate::rules::Rate,
    now: DateTime<Utc>,
) -> Result<Result<u32, BudgetExhausted>, StoreError> {
    let now = decide::millis(now);
    let existing: Option<BudgetRecord> = read(tx, Table::Budgets, target)?;
    let attempts = existing.map(|r| r.attempts).unwrap_or_default();
    match decide::spend_budget(&attempts, budget, now) {
        Ok(attempts) => {
            let used = u32::try_from(attempts.len()).unwrap_or(u32::MAX);
            let record = BudgetRecord {
                target: target.to_string(),
                attempts,
            };
            write(tx, Table::Budgets, target, &record)?;
            Ok(Ok(used))
        }
        Err((used, retry_ms)) => Ok(Err(BudgetExhausted {
            target: target.to_string(),
            budget,
            used,
            retry_after: Duration::from_millis(u64::try_from(retry_ms).unwrap_or(1)),
        })),
    }
}

pub fn lease_target(
    tx: &mut impl Txn,
    target: &str,
    owner: &str,
    token: &str,
    lease: Duration,
    now: DateTime<Utc>,
) -> Result<TargetLease, StoreError> {
    let now = decide::millis(now);
    let existing: Option<TargetRecord> = read(tx, Table::Targets, target)?;
    if let Some(e) = &existing {
        if !decide::target_free(Some(e.lease_until), now) {
            return Ok(TargetLease::Held {
                holder: e.owner.clone(),
                until: decide::time(e.lease_until),
            });
        }
    }
    let record = TargetRecord {
        target: target.to_string(),
        owner: owner.to_string(),
        token: token.to_string(),
        acquired_at: now,
        lease_until: decide::renewed(now, lease),
    };
    write(tx, Table::Targets, target, &record)?;
    Ok(TargetLease::Acquired(Lease {
        kind: LeaseKind::Target,
        key: target.to_string(),
        owner: owner.to_string(),
        token: token.to_string(),
        until: decide::time(record.lease_until),
    }))
}

pub fn snapshot(tx: &mut impl Txn) -> Result<Snapshot, StoreError> {
    fn all<T: DeserializeOwned>(tx: &mut impl Txn, table: Table) -> Result<Vec<T>, StoreError> {
        tx.scan(table)?
            .into_iter()
            .map(|(key, bytes)| {
                serde_json::from_slice(&bytes).map_err(|e| {
                    StoreError::Permanent(format!(
                        "corrupt record {key:?} in table {}: {e}",
                        table.name()
                    ))
                })
            })
            .collect()
    }
    Ok(Snapshot {
        claims: all(tx, Table::Claims)?,
        cooldowns: all(tx, Table::Cooldowns)?,
        rates: all(tx, Table::Rates)?,
        targets: all(tx, Table::Targets)?,
    })
}

/// Expires every lease in the file at once. Only for a process that holds
/// the file exclusively: whoever wrote them is dead, so their claims are
/// taken over by the next delivery instead of waiting out the lease.
/// Returns how many in-progress claims were found.
pub fn expire_orphans(tx: &mut impl Txn) -> Result<usize, StoreError> {
    let mut orphans = 0;
    for (key, bytes) in tx.scan(Table::Claims)? {
        let Ok(mut r) = serde_json::from_slice::<ClaimRecord>(&bytes) else {
            continue;
        };
        if r.status == super::ClaimStatus::InProgress {
            orphans += 1;
            r.lease_until = r.lease_until.min(0);
            write(tx, Table::Claims, &key, &r)?;
        }
    }
    for (key, _) in tx.scan(Table::Targets)? {
        tx.delete(Table::Targets, &key)?;
    }
    Ok(orphans)
}
