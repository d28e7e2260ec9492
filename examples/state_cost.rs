//! What the state store costs per message: store calls made, time spent in
//! them, and the message's whole processing time, for the `memory`
//! (baseline), `local` (redb file) and `dynamodb` backends.
//!
//! Not a test: a benchmark run by `scripts/bench-state` (which starts moto
//! for DynamoDB). Each message is a new alarm transition through the real
//! worker (`reflex::testing::TestWorker`) with the fake AWS behind it, so
//! AWS calls cost nothing and what remains is reflex plus its store. The
//! rule is the common shape: one `notify` action under a rule rate, so a
//! message makes the calls every action makes (claim, target lease,
//! cooldown check, rate take, complete, lease release).
//!
//! ```text
//! cargo run --example state_cost -- local 500
//! AWS_ENDPOINT_URL_DYNAMODB=http://127.0.0.1:PORT cargo run --example state_cost -- dynamodb 500
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use reflex::rules::Rate;
use reflex::state::{
    BudgetExhausted, ClaimRequest, Claimed, Completion, CooldownStart, Lease, RateLimited,
    RateTake, Snapshot, StateStore, StoreError, TargetLease,
};
use reflex::testing::worker::{at, START};
use reflex::testing::{AlarmBody, TestWorker};
use tokio_util::sync::CancellationToken;

const RULE: &str = r#"
[[rule]]
name = "page"
[rule.match]
alarm_name = "web-unhealthy"
[[rule.actions]]
type = "notify"
topic_arn = "arn:aws:sns:us-east-1:123456789012:oncall"
subject = "{{ alarm.name }}"
message = "{{ alarm.name }} is {{ alarm.new_state }}"
[rule.limits]
rate = "100000/hour"
"#;

/// Counts and times every call to the store under it.
struct Timed {
    inner: Arc<dyn StateStore>,
    calls: AtomicU64,
    nanos: AtomicU64,
}

impl Timed {
    fn record(&self, started: Instant) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.nanos
            .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
    }

    fn read(&self) -> (u64, u64) {
        (
            self.calls.load(Ordering::Relaxed),
            self.nanos.load(Ordering::Relaxed),
        )
    }
}

macro_rules! timed {
    ($self:ident, $call:expr) => {{
        let started = Instant::now();
        let out = $call.await;
        $self.record(started);
        out
    }};
}

#[async_trait]
impl StateStore for Timed {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    async fn claim(&self, req: &ClaimRequest, now: DateTime<Utc>) -> Result<Claimed, StoreError> {
        timed!(self, self.inner.claim(req, now))
    }
    async fn heartbeat(
        &self,
        lease: &Lease,
        extend: Duration,
        now: DateTime<Utc>,
    ) -> Result<Lease, StoreError> {
        timed!(self, self.inner.heartbeat(lease, extend, now))
    }
    async fn complete(
        &self,
        lease: &Lease,
        completion: &Completion,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        timed!(self, self.inner.complete(lease, completion, now))
    }
    async fn release(&self, lease: &Lease) -> Result<(), StoreError> {
        timed!(self, self.inner.release(lease))
    }
    async fn cooldown(
        &self,
        rule: &str,
        target: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Duration>, StoreError> {
        timed!(self, self.inner.cooldown(rule, target, now))
    }
    async fn start_cooldown(
        &self,
        start: &CooldownStart,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        timed!(self, self.inner.start_cooldown(start, now))
    }
    async fn forget_cooldown(&self, rule: &str, target: &str) -> Result<bool, StoreError> {
        timed!(self, self.inner.forget_cooldown(rule, target))
    }
    async fn take(
        &self,
        takes: &[RateTake],
        fence: Option<&Lease>,
        now: DateTime<Utc>,
    ) -> Result<Result<(), RateLimited>, StoreError> {
        timed!(self, self.inner.take(takes, fence, now))
    }
    async fn spend_budget(
        &self,
        target: &str,
        budget: Rate,
        now: DateTime<Utc>,
    ) -> Result<Result<u32, BudgetExhausted>, StoreError> {
        timed!(self, self.inner.spend_budget(target, budget, now))
    }
    async fn lease_target(
        &self,
        target: &str,
        owner: &str,
        lease: Duration,
        now: DateTime<Utc>,
    ) -> Result<TargetLease, StoreError> {
        timed!(self, self.inner.lease_target(target, owner, lease, now))
    }
    async fn snapshot(&self) -> Result<Snapshot, StoreError> {
        timed!(self, self.inner.snapshot())
    }
    async fn ping(&self) -> Result<(), StoreError> {
        timed!(self, self.inner.ping())
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let backend = args.next().unwrap_or_else(|| "local".to_string());
    let messages: usize = args.next().map(|n| n.parse()).transpose()?.unwrap_or(500);
    let dir = tempfile::tempdir()?;
    let inner: Arc<dyn StateStore> = match backend.as_str() {
        "memory" => Arc::new(reflex::state::memory::MemoryStore::new()),
        "local" => Arc::new(reflex::state::local::LocalStore::open(
            &dir.path().join("state.redb"),
        )?),
        "dynamodb" => {
            let table =
                std::env::var("REFLEX_STATE_TABLE").unwrap_or_else(|_| "reflex-bench".into());
            Arc::new(reflex::aws::dynamodb_state::DynamoDbStore::from_env(table).await)
        }
        other => return Err(format!("unknown backend {other}: memory, local or dynamodb").into()),
    };
    let store = Arc::new(Timed {
        inner,
        calls: AtomicU64::new(0),
        nanos: AtomicU64::new(0),
    });
    let h = TestWorker::builder(RULE).store(store.clone()).build();
    let first = at(START) - chrono::Duration::minutes(10);
    let mut store_time = Vec::with_capacity(messages);
    let mut total_time = Vec::with_capacity(messages);
    let mut calls = Vec::with_capacity(messages);
    // A few messages first, untimed: connections, file growth, lazy set-up.
    let warm_up = 20;
    for i in 0..messages + warm_up {
        let changed = first + chrono::Duration::milliseconds(i as i64 * 10);
        let body = AlarmBody::default()
            .changed_at(&changed.format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string())
            .raw();
        let msg = h.enqueue(&body, &format!("sqs-{i}"), 1);
        let (c0, n0) = store.read();
        let started = Instant::now();
        let handled = h.worker.process(msg, &CancellationToken::new()).await;
        let elapsed = started.elapsed();
        let (c1, n1) = store.read();
        if handled.reports.first().map(|r| r.outcome.label()) != Some("done") {
            return Err(format!("message {i} was not acted on: {:?}", handled.reports).into());
        }
        if i >= warm_up {
            calls.push(c1 - c0);
            store_time.push(Duration::from_nanos(n1 - n0));
            total_time.push(elapsed);
        }
    }
    store_time.sort();
    total_time.sort();
    calls.sort();
    let mean_calls = calls.iter().sum::<u64>() as f64 / calls.len() as f64;
    println!(
        "{backend} ({}): {messages} messages, store calls per message {mean_calls:.1} (min {}, max {}); \
         store time per message p50 {} p99 {}; whole message p50 {} p99 {}",
        store.describe(),
        calls[0],
        calls[calls.len() - 1],
        ms(percentile(&store_time, 0.5)),
        ms(percentile(&store_time, 0.99)),
        ms(percentile(&total_time, 0.5)),
        ms(percentile(&total_time, 0.99)),
    );
    Ok(())
}
