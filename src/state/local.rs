//! The default backend: one embedded redb file, durable on every commit
//! (redb fsyncs before a write transaction returns) and held by one live
//! process at a time (redb takes an exclusive `flock` on open; the kernel
//! drops it when the process dies, even on SIGKILL).
//!
//! Because the file is ours alone, every in-progress claim found in it at
//! open was left by a dead predecessor: [`LocalStore::open`] expires those
//! leases at once, so the next delivery takes the claim over (and re-reads
//! its target) instead of waiting out the lease.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use redb::{Database, DatabaseError, ReadableTable, TableDefinition, WriteTransaction};
use tracing::info;

use super::kv::{self, Table, Txn};
use super::{
    new_token, ClaimRequest, Claimed, Completion, CooldownStart, Lease, RateLimited, RateTake,
    Snapshot, StateStore, StoreError, TargetLease,
};

const CLAIMS: TableDefinition<&str, &[u8]> = TableDefinition::new("claims");
const COOLDOWNS: TableDefinition<&str, &[u8]> = TableDefinition::new("cooldowns");
const RATES: TableDefinition<&str, &[u8]> = TableDefinition::new("rates");
const TARGETS: TableDefinition<&str, &[u8]> = TableDefinition::new("targets");
const BUDGETS: TableDefinition<&str, &[u8]> = TableDefinition::new("budgets");

fn definition(table: Table) -> TableDefinition<'static, &'static str, &'static [u8]> {
    match table {
        Table::Claims => CLAIMS,
        Table::Cooldowns => COOLDOWNS,
        Table::Rates => RATES,
        Table::Targets => TARGETS,
        Table::Budgets => BUDGETS,
    }
}

fn failed(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("local state file: {e}"))
}

/// The local file store.
pub struct LocalStore {
    db: Arc<Database>,
    path: PathBuf,
}

struct RedbTxn<'a>(&'a WriteTransaction);

impl Txn for RedbTxn<'_> {
    fn get(&mut self, table: Table, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let t = self.0.open_table(definition(table)).map_err(failed)?;
        let v = t.get(key).map_err(failed)?;
        Ok(v.map(|v| v.value().to_vec()))
    }

    fn put(&mut self, table: Table, key: &str, value: &[u8]) -> Result<(), StoreError> {
        let mut t = self.0.open_table(definition(table)).map_err(failed)?;
        t.insert(key, value).map_err(failed)?;
        Ok(())
    }

    fn delete(&mut self, table: Table, key: &str) -> Result<bool, StoreError> {
        let mut t = self.0.open_table(definition(table)).map_err(failed)?;
        let existed = t.remove(key).map_err(failed)?.is_some();
        Ok(existed)
    }

    fn scan(&mut self, table: Table) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let t = self.0.open_table(definition(table)).map_err(failed)?;
        let mut out = Vec::new();
        for entry in t.iter().map_err(failed)? {
            let (k, v) = entry.map_err(failed)?;
            out.push((k.value().to_string(), v.value().to_vec()));
        }
        Ok(out)
    }
}

impl LocalStore {
    /// Opens (or creates) the state file. Refuses a file another live
    /// process holds. Claims a dead predecessor left in progress are
    /// expired, so the next delivery takes them over.
    pub fn open(path: &Path) -> Result<LocalStore, StoreError> {
        let db = Database::create(path).map_err(|e| match e {
            DatabaseError::DatabaseAlreadyOpen => StoreError::Locked {
                path: path.display().to_string(),
            },
            other => StoreError::Permanent(format!(
                "cannot open the state file {}: {other}",
                path.display()
            )),
        })?;
        let store = LocalStore {
            db: Arc::new(db),
            path: path.to_path_buf(),
        };
        let orphans = store.run_sync(|tx| kv::expire_orphans(tx))?;
        if orphans > 0 {
            info!(
                path = %path.display(),
                orphans,
                "The state file holds claims a previous reflex left in progress; they will be taken over."
            );
        }
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn run_sync<T>(
        &self,
        op: impl FnOnce(&mut RedbTxn<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        run(&self.db, op)
    }

    /// Runs `op` in one write transaction on the blocking pool (a commit
    /// waits for fsync); commits only if it returns `Ok`.
    async fn run<T, F>(&self, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut RedbTxn<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        let db = Arc::clone(&self.db);
        tokio::task::spawn_blocking(move || run(&db, op))
            .await
            .map_err(|e| StoreError::Unavailable(format!("local state task failed: {e}")))?
    }
}

fn run<T>(
    db: &Database,
    op: impl FnOnce(&mut RedbTxn<'_>) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let tx = db.begin_write().map_err(failed)?;
    let out = op(&mut RedbTxn(&tx));
    match out {
        Ok(v) => {
            tx.commit().map_err(failed)?;
            Ok(v)
        }
        Err(e) => {
            let _ = tx.abort();
            Err(e)
        }
    }
}

#[async_trait]
impl StateStore for LocalStore {
    fn describe(&self) -> String {
        format!("local {}", self.path.display())
    }

    async fn claim(&self, req: &ClaimRequest, now: DateTime<Utc>) -> Result<Claimed, StoreError> {
        let req = req.clone();
        let token = new_token();
        self.run(move |tx| kv::claim(tx, &req, &token, now)).await
    }

    async fn heartbeat(
        &self,
        lease: &Lease,
        extend: Duration,
        now: DateTime<Utc>,
    ) -> Result<Lease, StoreError> {
        let lease = lease.clone();
        self.run(move |tx| kv::heartbeat(tx, &lease, extend, now))
            .await
    }

    async fn complete(
        &self,
        lease: &Lease,
        completion: &Completion,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let (lease, completion) = (lease.clone(), completion.clone());
        self.run(move |tx| kv::complete(tx, &lease, &completion, now))
            .await
    }

    async fn release(&self, lease: &Lease) -> Result<(), StoreError> {
        let lease = lease.clone();
        self.run(move |tx| kv::release(tx, &lease)).await
    }

    async fn cooldown(
        &self,
        rule: &str,
        target: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Duration>, StoreError> {
        let (rule, target) = (rule.to_string(), target.to_string());
        self.run(move |tx| kv::cooldown(tx, &rule, &target, now))
            .await
    }

    async fn start_cooldown(
        &self,
        start: &CooldownStart,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let start = start.clone();
        self.run(move |tx| kv::start_cooldown(tx, &start, now))
            .await
    }

    async fn forget_cooldown(&self, rule: &str, target: &str) -> Result<bool, StoreError> {
        let (rule, target) = (rule.to_string(), target.to_string());
        self.run(move |tx| kv::forget_cooldown(tx, &rule, &target))
            .await
    }

    async fn take(
        &self,
        takes: &[RateTake],
        fence: Option<&Lease>,
        now: DateTime<Utc>,
    ) -> Result<Result<(), RateLimited>, StoreError> {
        let (takes, fence) = (takes.to_vec(), fence.cloned());
        self.run(move |tx| kv::take(tx, &takes, fence.as_ref(), now))
            .await
    }

    async fn spend_budget(
        &self,
        target: &str,
        budget: crate::rules::Rate,
        now: DateTime<Utc>,
    ) -> Result<Result<u32, crate::state::BudgetExhausted>, StoreError> {
        let target = target.to_string();
        self.run(move |tx| kv::spend_budget(tx, &target, budget, now))
            .await
    }

    async fn lease_target(
        &self,
        target: &str,
        owner: &str,
        lease: Duration,
        now: DateTime<Utc>,
    ) -> Result<TargetLease, StoreError> {
        let (target, owner, token) = (target.to_string(), owner.to_string(), new_token());
        self.run(move |tx| kv::lease_target(tx, &target, &owner, &token, lease, now))
            .await
    }

    async fn snapshot(&self) -> Result<Snapshot, StoreError> {
        self.run(|tx| kv::snapshot(tx)).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let db = Arc::clone(&self.db);
        tokio::task::spawn_blocking(move || db.begin_read().map(drop).map_err(failed))
            .await
            .map_err(|e| StoreError::Unavailable(format!("local state task failed: {e}")))?
    }
}
