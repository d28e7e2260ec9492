//! State in process memory: for tests and `backend = "memory"`. Forgotten
//! on exit, shared by nothing else; the operations are the same as the
//! local file's ([`kv`](super::kv)).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::kv::{self, Table, Txn};
use super::{
    new_token, ClaimRequest, Claimed, Completion, CooldownStart, Lease, RateLimited, RateTake,
    Snapshot, StateStore, StoreError, TargetLease,
};

type Map = BTreeMap<(Table, String), Vec<u8>>;

/// The in-memory store.
#[derive(Default)]
pub struct MemoryStore {
    map: Mutex<Map>,
}

/// Writes go to a copy of the changed entries and are applied on commit,
/// so an operation that fails half-way changes nothing.
struct MemTxn<'a> {
    base: &'a Map,
    writes: BTreeMap<(Table, String), Option<Vec<u8>>>,
}

impl Txn for MemTxn<'_> {
    fn get(&mut self, table: Table, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let k = (table, key.to_string());
        Ok(match self.writes.get(&k) {
            Some(v) => v.clone(),
            None => self.base.get(&k).cloned(),
        })
    }

    fn put(&mut self, table: Table, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.writes
            .insert((table, key.to_string()), Some(value.to_vec()));
        Ok(())
    }

    fn delete(&mut self, table: Table, key: &str) -> Result<bool, StoreError> {
        let existed = self.get(table, key)?.is_some();
        self.writes.insert((table, key.to_string()), None);
        Ok(existed)
    }

    fn scan(&mut self, table: Table) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let mut all: BTreeMap<String, Vec<u8>> = self
            .base
            .iter()
            .filter(|((t, _), _)| *t == table)
            .map(|((_, k), v)| (k.clone(), v.clone()))
            .collect();
        for ((t, k), v) in &self.writes {
            if *t == table {
                match v {
                    Some(v) => all.insert(k.clone(), v.clone()),
                    None => all.remove(k),
                };
            }
        }
        Ok(all.into_iter().collect())
    }
}

impl MemoryStore {
    pub fn new() -> Self {
        MemoryStore::default()
    }

    /// Runs `op` in one transaction; commits only if it returns `Ok`.
    fn run<T>(
        &self,
        op: impl FnOnce(&mut MemTxn<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let mut tx = MemTxn {
            base: &map,
            writes: BTreeMap::new(),
        };
        let out = op(&mut tx)?;
        let writes = tx.writes;
        for (k, v) in writes {
            match v {
                Some(v) => map.insert(k, v),
                None => map.remove(&k),
            };
        }
        Ok(out)
    }
}

#[async_trait]
impl StateStore for MemoryStore {
    fn describe(&self) -> String {
        "memory".to_string()
    }

    async fn claim(&self, req: &ClaimRequest, now: DateTime<Utc>) -> Result<Claimed, StoreError> {
        let token = new_token();
        self.run(|tx| kv::claim(tx, req, &token, now))
    }

    async fn heartbeat(
        &self,
        lease: &Lease,
        extend: Duration,
        now: DateTime<Utc>,
    ) -> Result<Lease, StoreError> {
        self.run(|tx| kv::heartbeat(tx, lease, extend, now))
    }

    async fn complete(
        &self,
        lease: &Lease,
        completion: &Completion,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.run(|tx| kv::complete(tx, lease, completion, now))
    }

    async fn release(&self, lease: &Lease) -> Result<(), StoreError> {
        self.run(|tx| kv::release(tx, lease))
    }

    async fn cooldown(
        &self,
        rule: &str,
        target: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Duration>, StoreError> {
        self.run(|tx| kv::cooldown(tx, rule, target, now))
    }

    async fn start_cooldown(
        &self,
        start: &CooldownStart,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.run(|tx| kv::start_cooldown(tx, start, now))
    }

    async fn forget_cooldown(&self, rule: &str, target: &str) -> Result<bool, StoreError> {
        self.run(|tx| kv::forget_cooldown(tx, rule, target))
    }

    async fn take(
        &self,
        takes: &[RateTake],
        fence: Option<&Lease>,
        now: DateTime<Utc>,
    ) -> Result<Result<(), RateLimited>, StoreError> {
        self.run(|tx| kv::take(tx, takes, fence, now))
    }

    async fn spend_budget(
        &self,
        target: &str,
        budget: crate::rules::Rate,
        now: DateTime<Utc>,
    ) -> Result<Result<u32, crate::state::BudgetExhausted>, StoreError> {
        self.run(|tx| kv::spend_budget(tx, target, budget, now))
    }

    async fn lease_target(
        &self,
        target: &str,
        owner: &str,
        lease: Duration,
        now: DateTime<Utc>,
    ) -> Result<TargetLease, StoreError> {
        let token = new_token();
        self.run(|tx| kv::lease_target(tx, target, owner, &token, lease, now))
    }

    async fn snapshot(&self) -> Result<Snapshot, StoreError> {
        self.run(|tx| kv::snapshot(tx))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
