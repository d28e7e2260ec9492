//! The state store, observed: [`CountedStore`] wraps any
//! [`StateStore`] and reports every call as a [`StoreCallFinished`] — its
//! time, and whether it succeeded, lost a race (a *conflict*: a claim
//! someone else holds or finished, a target lease held, a lease no longer
//! ours) or failed (an *error*: unreachable, locked, permanent).
//!
//! The daemon wraps the store it opens, so every backend is counted the
//! same way and no backend has to know about metrics.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::events::{StoreCallFinished, StoreCallResult};
use crate::state::{
    ClaimRequest, Claimed, Completion, CooldownStart, Lease, RateLimited, RateTake, Snapshot,
    StateStore, StoreError, TargetLease,
};

impl StoreCallResult {
    fn of_error(e: &StoreError) -> StoreCallResult {
        match e {
            StoreError::Lost { .. } => StoreCallResult::Conflict("lost"),
            other => StoreCallResult::Error(other.label()),
        }
    }

    fn of<T>(result: &Result<T, StoreError>) -> StoreCallResult {
        match result {
            Ok(_) => StoreCallResult::Ok,
            Err(e) => StoreCallResult::of_error(e),
        }
    }
}

/// A store whose every call is timed and counted.
pub struct CountedStore {
    inner: Arc<dyn StateStore>,
}

impl CountedStore {
    pub fn new(inner: Arc<dyn StateStore>) -> CountedStore {
        CountedStore { inner }
    }
}

fn report(operation: &'static str, started: Instant, result: StoreCallResult) {
    StoreCallFinished {
        operation,
        result,
        elapsed: started.elapsed(),
    }
    .emit();
}

#[async_trait]
impl StateStore for CountedStore {
    fn describe(&self) -> String {
        self.inner.describe()
    }

    async fn claim(&self, req: &ClaimRequest, now: DateTime<Utc>) -> Result<Claimed, StoreError> {
        let started = Instant::now();
        let out = self.inner.claim(req, now).await;
        let result = match &out {
            Ok(Claimed::New(_)) => StoreCallResult::Ok,
            Ok(Claimed::TakenOver { .. }) => StoreCallResult::Conflict("taken_over"),
            Ok(Claimed::Busy { .. }) => StoreCallResult::Conflict("busy"),
            Ok(Claimed::Done { .. }) => StoreCallResult::Conflict("done"),
            Err(e) => StoreCallResult::of_error(e),
        };
        report("claim", started, result);
        out
    }

    async fn heartbeat(
        &self,
        lease: &Lease,
        extend: Duration,
        now: DateTime<Utc>,
    ) -> Result<Lease, StoreError> {
        let started = Instant::now();
        let out = self.inner.heartbeat(lease, extend, now).await;
        report("heartbeat", started, StoreCallResult::of(&out));
        out
    }

    async fn complete(
        &self,
        lease: &Lease,
        completion: &Completion,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let started = Instant::now();
        let out = self.inner.complete(lease, completion, now).await;
        report("complete", started, StoreCallResult::of(&out));
        out
    }

    async fn release(&self, lease: &Lease) -> Result<(), StoreError> {
        let started = Instant::now();
        let out = self.inner.release(lease).await;
        report("release", started, StoreCallResult::of(&out));
        out
    }

    async fn cooldown(
        &self,
        rule: &str,
        target: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Duration>, StoreError> {
        let started = Instant::now();
        let out = self.inner.cooldown(rule, target, now).await;
        report("cooldown", started, StoreCallResult::of(&out));
        out
    }

    async fn start_cooldown(
        &self,
        start: &CooldownStart,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let started = Instant::now();
        let out = self.inner.start_cooldown(start, now).await;
        report("start_cooldown", started, StoreCallResult::of(&out));
        out
    }

    async fn forget_cooldown(&self, rule: &str, target: &str) -> Result<bool, StoreError> {
        let started = Instant::now();
        let out = self.inner.forget_cooldown(rule, target).await;
        report("forget_cooldown", started, StoreCallResult::of(&out));
        out
    }

    async fn take(
        &self,
        takes: &[RateTake],
        fence: Option<&Lease>,
        now: DateTime<Utc>,
    ) -> Result<Result<(), RateLimited>, StoreError> {
        let started = Instant::now();
        let out = self.inner.take(takes, fence, now).await;
        // A rate limit saying no is a guard, counted with the actions.
        report("take", started, StoreCallResult::of(&out));
        out
    }

    async fn spend_budget(
        &self,
        target: &str,
        budget: crate::rules::Rate,
        now: DateTime<Utc>,
    ) -> Result<Result<u32, crate::state::BudgetExhausted>, StoreError> {
        let started = Instant::now();
        let out = self.inner.spend_budget(target, budget, now).await;
        // An exhausted budget is a guard, counted with the actions.
        report("spend_budget", started, StoreCallResult::of(&out));
        out
    }

    async fn lease_target(
        &self,
        target: &str,
        owner: &str,
        lease: Duration,
        now: DateTime<Utc>,
    ) -> Result<TargetLease, StoreError> {
        let started = Instant::now();
        let out = self.inner.lease_target(target, owner, lease, now).await;
        let result = match &out {
            Ok(TargetLease::Acquired(_)) => StoreCallResult::Ok,
            Ok(TargetLease::Held { .. }) => StoreCallResult::Conflict("held"),
            Err(e) => StoreCallResult::of_error(e),
        };
        report("lease_target", started, result);
        out
    }

    async fn snapshot(&self) -> Result<Snapshot, StoreError> {
        let started = Instant::now();
        let out = self.inner.snapshot().await;
        report("snapshot", started, StoreCallResult::of(&out));
        out
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let started = Instant::now();
        let out = self.inner.ping().await;
        report("ping", started, StoreCallResult::of(&out));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::{metrics, StoreLabels};
    use crate::testing::OutageStore;

    fn conflicts(operation: &str, kind: &str) -> u64 {
        metrics()
            .state_conflicts
            .get_or_create(&StoreLabels {
                operation: operation.into(),
                kind: kind.into(),
            })
            .get()
    }

    fn errors(operation: &str, kind: &str) -> u64 {
        metrics()
            .state_errors
            .get_or_create(&StoreLabels {
                operation: operation.into(),
                kind: kind.into(),
            })
            .get()
    }

    fn request(owner: &str) -> ClaimRequest {
        ClaimRequest {
            key: format!("telemetry-store-test#{owner}"),
            rule: "r".into(),
            target: "elb:web".into(),
            owner: "first".into(),
            lease: Duration::from_secs(60),
        }
    }

    #[tokio::test]
    async fn conflicts_and_errors_are_counted_by_operation_and_kind() {
        let outage = Arc::new(OutageStore::default());
        let store = CountedStore::new(outage.clone());
        let now = Utc::now();
        let req = request("a");
        let (busy, done, held, lost) = (
            conflicts("claim", "busy"),
            conflicts("claim", "done"),
            conflicts("lease_target", "held"),
            conflicts("heartbeat", "lost"),
        );
        let unavailable = errors("claim", "unavailable");

        let Ok(Claimed::New(lease)) = store.claim(&req, now).await else {
            panic!("a fresh claim is ours");
        };
        // Another replica asks for the same claim while ours runs.
        let other = ClaimRequest {
            owner: "second".into(),
            ..req.clone()
        };
        assert!(matches!(
            store.claim(&other, now).await,
            Ok(Claimed::Busy { .. })
        ));
        assert_eq!(conflicts("claim", "busy"), busy + 1);

        store
            .complete(
                &lease,
                &Completion {
                    outcome: "done".into(),
                    remember: Duration::from_secs(3600),
                    cooldown: None,
                },
                now,
            )
            .await
            .expect("complete");
        assert!(matches!(
            store.claim(&other, now).await,
            Ok(Claimed::Done { .. })
        ));
        assert_eq!(conflicts("claim", "done"), done + 1);

        let Ok(TargetLease::Acquired(target)) = store
            .lease_target(
                "telemetry-store-test:t",
                "first",
                Duration::from_secs(60),
                now,
            )
            .await
        else {
            panic!("a free target is ours");
        };
        assert!(matches!(
            store
                .lease_target(
                    "telemetry-store-test:t",
                    "second",
                    Duration::from_secs(60),
                    now
                )
                .await,
            Ok(TargetLease::Held { .. })
        ));
        assert_eq!(conflicts("lease_target", "held"), held + 1);

        // Released, then heartbeated: no longer ours.
        store.release(&target).await.expect("release");
        assert!(matches!(
            store.heartbeat(&target, Duration::from_secs(60), now).await,
            Err(StoreError::Lost { .. })
        ));
        assert_eq!(conflicts("heartbeat", "lost"), lost + 1);

        outage.down();
        assert!(store.claim(&request("b"), now).await.is_err());
        assert_eq!(errors("claim", "unavailable"), unavailable + 1);
        let text = metrics().encode();
        assert!(
            text.contains("reflex_state_call_seconds_count{operation=\"claim\"}"),
            "{text}"
        );
    }
}
