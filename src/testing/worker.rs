//! A worker wired to in-memory fakes, for worker, audit and action tests.
//!
//! ```ignore
//! let h = TestWorker::builder(RULES).settings(settings).build();
//! let ids = h.fleet(4, 1);
//! let handled = h.deliver(&AlarmBody::default().sns(TOPIC, "m1"), "sqs-1").await;
//! assert_eq!(h.terminated(), vec![ids[0].clone()]);
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::fake::FakeAws;
use crate::audit::AuditSink;
use crate::aws::QueueMessage;
use crate::disposition::MessageOutcome;
use crate::event::AlarmState;
use crate::fleet::InstanceInfo;
use crate::state::memory::MemoryStore;
use crate::state::StateStore;
use crate::worker::{Effects, Settings, Worker};

/// The DLQ's URL in the fake account.
pub const DLQ_URL: &str = "https://sqs.us-east-1.amazonaws.com/123456789012/dlq";

/// Where the clock of a [`TestWorker`] starts: 18 s after the default
/// alarm's transition.
pub const START: &str = "2026-01-12T16:31:00Z";

/// A settable clock shared with the worker.
#[derive(Debug, Clone)]
pub struct TestClock(Arc<Mutex<DateTime<Utc>>>);

impl TestClock {
    pub fn new(now: DateTime<Utc>) -> Self {
        TestClock(Arc::new(Mutex::new(now)))
    }

    pub fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn set(&self, now: DateTime<Utc>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = now;
    }
}

/// A test time from RFC 3339; panics on a typo in the test.
pub fn at(rfc3339: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(rfc3339)
        .unwrap_or_else(|e| panic!("test time {rfc3339:?}: {e}"))
        .with_timezone(&Utc)
}

/// What to build a [`TestWorker`] with.
pub struct WorkerBuilder {
    rules: String,
    settings: Settings,
    now: DateTime<Utc>,
    aws: FakeAws,
    dlq: FakeAws,
    state: Arc<MemoryStore>,
    /// A store to use instead of `state` (e.g. an [`OutageStore`](super::OutageStore) over it).
    store: Option<Arc<dyn StateStore>>,
    audit: Option<Arc<dyn AuditSink>>,
}

impl WorkerBuilder {
    /// Runs the worker on `store` instead of the plain in-memory one
    /// (which [`state`](Self::state) still returns, for wrapping).
    pub fn store(mut self, store: Arc<dyn StateStore>) -> Self {
        self.store = Some(store);
        self
    }

    pub fn settings(mut self, settings: Settings) -> Self {
        self.settings = settings;
        self
    }

    /// Where the clock starts (default [`START`]).
    pub fn now(mut self, now: DateTime<Utc>) -> Self {
        self.now = now;
        self
    }

    pub fn audit(mut self, sink: Arc<dyn AuditSink>) -> Self {
        self.audit = Some(sink);
        self
    }

    /// The fake account (queue and effects) the worker will use, e.g. for
    /// an audit sink that looks at it.
    pub fn aws(&self) -> &FakeAws {
        &self.aws
    }

    /// The fake DLQ the worker will use.
    pub fn dlq(&self) -> &FakeAws {
        &self.dlq
    }

    /// The guard state the worker will use (memory, 1 h claims).
    pub fn state(&self) -> &Arc<MemoryStore> {
        &self.state
    }

    /// Loads the rules (panicking with every problem if they are invalid)
    /// and wires the worker.
    pub fn build(self) -> TestWorker {
        let set = crate::rules::load_sources(vec![(PathBuf::from("t.toml"), self.rules)])
            .unwrap_or_else(|e| panic!("rules: {e:?}"));
        let (_tx, rx) = watch::channel(Arc::new(set));
        let a = Arc::new(self.aws.clone());
        let a_certs: Arc<dyn crate::aws::SigningCerts> = a.clone();
        let effects = Effects {
            elb: a.clone(),
            target_groups: a.clone(),
            auto_scaling: a.clone(),
            ec2: a.clone(),
            ssm: a.clone(),
            alarms: a.clone(),
            sns: a.clone(),
            metrics: a.clone(),
        };
        let clock = TestClock::new(self.now);
        let ticking = clock.clone();
        let mut worker = Worker::new(
            a,
            Arc::new(self.dlq.clone()),
            effects,
            rx,
            self.store
                .unwrap_or_else(|| self.state.clone() as Arc<dyn StateStore>),
            self.settings,
        )
        .with_signing_certs(a_certs);
        worker.clock = Arc::new(move || ticking.now());
        if let Some(sink) = self.audit {
            worker.audit = sink;
        }
        TestWorker {
            aws: self.aws,
            dlq: self.dlq,
            state: self.state,
            clock,
            worker,
        }
    }
}

/// A worker on fakes: `aws` is its queue and every effect, `dlq` its
/// dead-letter queue.
pub struct TestWorker {
    pub aws: FakeAws,
    pub dlq: FakeAws,
    pub state: Arc<MemoryStore>,
    pub clock: TestClock,
    pub worker: Worker,
}

impl TestWorker {
    /// A worker for `rules` (TOML text), default settings, the clock at
    /// [`START`], no audit sink.
    pub fn builder(rules: &str) -> WorkerBuilder {
        let aws = FakeAws::new();
        let dlq = aws.other_queue(DLQ_URL);
        WorkerBuilder {
            rules: rules.to_string(),
            settings: Settings::default(),
            now: at(START),
            aws,
            dlq,
            state: Arc::new(MemoryStore::new()),
            store: None,
            audit: None,
        }
    }

    /// Puts `body` on the queue as `sqs_id` (first receive) and processes
    /// it start to finish.
    pub async fn deliver(&self, body: &str, sqs_id: &str) -> MessageOutcome {
        self.deliver_with(body, sqs_id, 1).await
    }

    /// [`deliver`](Self::deliver) with the receive count SQS reports.
    pub async fn deliver_with(
        &self,
        body: &str,
        sqs_id: &str,
        receive_count: u32,
    ) -> MessageOutcome {
        let msg = self.enqueue(body, sqs_id, receive_count);
        self.worker.process(msg, &CancellationToken::new()).await
    }

    /// Puts `body` on the queue and returns the message as received.
    pub fn enqueue(&self, body: &str, sqs_id: &str, receive_count: u32) -> QueueMessage {
        self.aws.enqueue(sqs_id, body, receive_count);
        self.aws
            .state()
            .queue
            .iter()
            .find(|(m, _)| m.message_id == sqs_id)
            .map(|(m, _)| m.clone())
            .unwrap_or_else(|| panic!("{sqs_id} was not enqueued"))
    }

    /// Instances terminated for real (not dry runs), in call order.
    pub fn terminated(&self) -> Vec<String> {
        self.aws
            .state()
            .changes
            .iter()
            .filter(|(op, _, dry)| op == "TerminateInstances" && !dry)
            .flat_map(|(_, ids, _)| ids.clone())
            .collect()
    }

    /// A fleet behind ELB `web`: `n` instances `i-0000`…, the first `oos`
    /// stopped and OutOfService, all tagged `reflex:managed=true` and about
    /// two hours old (one minute apart, oldest first); the alarm
    /// `web-unhealthy` is in ALARM.
    pub fn fleet(&self, n: usize, oos: usize) -> Vec<String> {
        let born = self.clock.now() - chrono::Duration::hours(2);
        let mut ids = Vec::new();
        for i in 0..n {
            let id = format!("i-{i:04}");
            let stopped = i < oos;
            self.aws.add_instance(
                "web",
                InstanceInfo {
                    instance_id: id.clone(),
                    state: if stopped { "stopped" } else { "running" }.into(),
                    launch_time: Some(born + chrono::Duration::minutes(i as i64)),
                    tags: BTreeMap::from([("reflex:managed".to_string(), "true".to_string())]),
                },
                if stopped { "OutOfService" } else { "InService" },
            );
            ids.push(id);
        }
        self.aws
            .state()
            .alarms
            .insert("web-unhealthy".into(), AlarmState::Alarm);
        ids
    }
}
