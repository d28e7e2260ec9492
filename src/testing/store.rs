//! A state store that can be taken down: [`OutageStore`] answers like the
//! in-memory store until [`down`](OutageStore::down) is called, then fails
//! every call with [`StoreError::Unavailable`] (a DynamoDB endpoint gone,
//! a timeout) until [`up`](OutageStore::up). For the fail-closed tests of
//! the worker and `/readyz`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::state::memory::MemoryStore;
use crate::state::{
    ClaimRequest, Claimed, Completion, CooldownStart, Lease, RateLimited, RateTake, Snapshot,
    StateStore, StoreError, TargetLease,
};

/// The in-memory store behind a switch.
#[derive(Default)]
pub struct OutageStore {
    pub inner: Arc<MemoryStore>,
    down: AtomicBool,
}

impl OutageStore {
    pub fn new(inner: Arc<MemoryStore>) -> OutageStore {
        OutageStore {
            inner,
            down: AtomicBool::new(false),
        }
    }

    /// From now on every call fails, as if the store were unreachable.
    pub fn down(&self) {
        self.down.store(true, Ordering::SeqCst);
    }

    /// The store answers again, with everything it held.
    pub fn up(&self) {
        self.down.store(false, Ordering::SeqCst);
    }

    fn check(&self) -> Result<(), StoreError> {
        if self.down.load(Ordering::SeqCst) {
            Err(StoreError::Unavailable(
                "connection refused (test outage)".to_string(),
            ))
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl StateStore for OutageStore {
    fn describe(&self) -> String {
        "memory (test outage switch)".to_string()
    }

    async fn claim(&self, req: &ClaimRequest, now: DateTime<Utc>) -> Result<Claimed, StoreError> {
        self.check()?;
        self.inner.claim(req, now).await
    }

    async fn heartbeat(
        &self,
        lease: &Lease,
        extend: Duration,
        now: DateTime<Utc>,
    ) -> Result<Lease, StoreError> {
        self.check()?;
        self.inner.heartbeat(lease, extend, now).await
    }

    async fn complete(
        &self,
        lease: &Lease,
        completion: &Completion,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.check()?;
        self.inner.complete(lease, completion, now).await
    }

    async fn release(&self, lease: &Lease) -> Result<(), StoreError> {
        self.check()?;
        self.inner.release(lease).await
    }

    async fn cooldown(
        &self,
        rule: &str,
        target: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Duration>, StoreError> {
        self.check()?;
        self.inner.cooldown(rule, target, now).await
    }

    async fn start_cooldown(
        &self,
        start: &CooldownStart,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.check()?;
        self.inner.start_cooldown(start, now).await
    }

    async fn forget_cooldown(&self, rule: &str, target: &str) -> Result<bool, StoreError> {
        self.check()?;
        self.inner.forget_cooldown(rule, target).await
    }

    async fn take(
        &self,
        takes: &[RateTake],
        fence: Option<&Lease>,
        now: DateTime<Utc>,
    ) -> Result<Result<(), RateLimited>, StoreError> {
        self.check()?;
        self.inner.take(takes, fence, now).await
    }

    async fn spend_budget(
        &self,
        target: &str,
        budget: crate::rules::Rate,
        now: DateTime<Utc>,
    ) -> Result<Result<u32, crate::state::BudgetExhausted>, StoreError> {
        self.check()?;
        self.inner.spend_budget(target, budget, now).await
    }

    async fn lease_target(
        &self,
        target: &str,
        owner: &str,
        lease: Duration,
        now: DateTime<Utc>,
    ) -> Result<TargetLease, StoreError> {
        self.check()?;
        self.inner.lease_target(target, owner, lease, now).await
    }

    async fn snapshot(&self) -> Result<Snapshot, StoreError> {
        self.check()?;
        self.inner.snapshot().await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.check()?;
        self.inner.ping().await
    }
}
