//! State that outlives one message, and one process: dedup claims on alarm
//! transitions, cooldowns, rate buckets and per-target leases, behind one
//! async, fallible [`StateStore`] trait whose operations say what they mean.
//!
//! - [`decide`]: the pure predicates and the GCRA arithmetic, with `now`
//!   passed in. Every backend renders these decisions; none re-invents them.
//! - [`kv`]: the operations written once over a transactional key/value map,
//!   shared by the two embedded backends.
//! - [`memory`]: state in process memory (tests, `backend = "memory"`).
//! - [`local`]: the default, an embedded redb file, durable on every commit
//!   and held by one live process at a time.
//! - [`config`]: the `[state]` section of `reflex.toml`.
//! - The DynamoDB backend lives in `aws::dynamodb_state` (SDK types stay in
//!   `aws/`).
//!
//! Times are wall-clock `DateTime<Utc>` passed by the caller. Across
//! replicas, correctness never depends on clocks agreeing beyond the lease
//! margin: a lease is taken over only once it has run out by the taker's
//! clock, and leases are renewed well before they run out.

pub mod config;
pub mod decide;
pub mod kv;
pub mod local;
pub mod memory;

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::rules::Rate;

/// A store call that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The store could not be reached or answered "try later" (network,
    /// throttling, 5xx, a busy file). A retry may succeed.
    #[error("state store unavailable: {0}")]
    Unavailable(String),
    /// The lease or claim is no longer ours: it ran out and another owner
    /// took it over, or it was released.
    #[error("{what} is no longer held by this owner{}", holder.as_ref().map(|h| format!(" (now held by {h})")).unwrap_or_default())]
    Lost {
        what: String,
        holder: Option<String>,
    },
    /// The local state file is held by another live process.
    #[error("state file {path} is held by another running reflex (only one process may use a local state file; use the dynamodb backend for several replicas)")]
    Locked { path: String },
    /// Retrying cannot help: access denied, no such table, a corrupt record.
    #[error("state store error: {0}")]
    Permanent(String),
}

impl StoreError {
    /// A retry later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }

    /// A short, low-cardinality label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            StoreError::Unavailable(_) => "unavailable",
            StoreError::Lost { .. } => "lost",
            StoreError::Locked { .. } => "locked",
            StoreError::Permanent(_) => "permanent",
        }
    }
}

/// What a lease is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaseKind {
    /// A claim on one action of one alarm transition.
    Claim,
    /// The right to act on one target (a load balancer, an instance).
    Target,
}

/// A lease this owner holds: proof for heartbeat, complete and release.
///
/// `token` is fresh for every acquisition, so two deliveries handled by the
/// same replica never mistake each other's claim for their own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub kind: LeaseKind,
    pub key: String,
    pub owner: String,
    pub token: String,
    /// When it runs out unless renewed.
    pub until: DateTime<Utc>,
}

/// Asks for a claim on one action of one alarm transition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimRequest {
    /// `<transition key>#<rule>#<action index>`.
    pub key: String,
    /// For listings and filters only.
    pub rule: String,
    pub target: String,
    /// The replica asking.
    pub owner: String,
    /// How long the claim holds without a heartbeat.
    pub lease: Duration,
}

/// What a claim found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claimed {
    /// Nobody handled this action: it is ours.
    New(Lease),
    /// A previous holder's lease ran out (or, with the local backend, its
    /// process died) before it completed: it is ours now, and the action
    /// may or may not have been carried out. Observable actions re-read
    /// their target before acting again.
    TakenOver {
        lease: Lease,
        previous_owner: String,
    },
    /// Another owner holds it and its lease is still running.
    Busy {
        holder: String,
        until: DateTime<Utc>,
    },
    /// It was completed within its dedup window.
    Done { outcome: String, at: DateTime<Utc> },
}

/// How a claim ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    /// The outcome label and summary, for `reflex state`.
    pub outcome: String,
    /// How long redeliveries of this transition are recognised as done.
    pub remember: Duration,
    /// A cooldown to start in the same write: the record of the outcome and
    /// the cooldown hold together.
    pub cooldown: Option<CooldownStart>,
}

/// A cooldown on (rule, target).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CooldownStart {
    pub rule: String,
    pub target: String,
    pub period: Duration,
}

/// Cells to take from one rate bucket.
#[derive(Debug, Clone, PartialEq)]
pub struct RateTake {
    pub bucket: String,
    pub rate: Rate,
    pub n: u32,
}

/// A rate limit that said no.
#[derive(Debug, Clone, PartialEq)]
pub struct RateLimited {
    pub bucket: String,
    pub rate: Rate,
    pub requested: u32,
    /// When the request could next succeed, if ever (`None`: it asks for
    /// more than the whole burst).
    pub retry_after: Option<Duration>,
}

/// A target's remediation budget that said no: `used` attempts within
/// the budget's window already.
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetExhausted {
    pub target: String,
    pub budget: Rate,
    pub used: u32,
    /// When the oldest attempt in the window leaves it.
    pub retry_after: Duration,
}

/// A target's remediation attempts, as stored: epoch milliseconds, oldest
/// first, only those still inside the last window they were spent under.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BudgetRecord {
    pub target: String,
    pub attempts: Vec<i64>,
}

/// What asking for a target lease found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetLease {
    Acquired(Lease),
    Held {
        holder: String,
        until: DateTime<Utc>,
    },
}

/// The state of one claim, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimRecord {
    pub key: String,
    pub rule: String,
    pub target: String,
    pub status: ClaimStatus,
    pub owner: String,
    pub token: String,
    /// Epoch milliseconds.
    pub claimed_at: i64,
    pub lease_until: i64,
    /// How many times a dead holder's claim was taken over.
    #[serde(default)]
    pub takeovers: u32,
    #[serde(default)]
    pub previous_owner: Option<String>,
    #[serde(default)]
    pub outcome: Option<String>,
    #[serde(default)]
    pub done_at: Option<i64>,
    /// Until when a redelivery is recognised as done.
    #[serde(default)]
    pub done_until: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ClaimStatus {
    InProgress,
    Completed,
}

impl ClaimStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            ClaimStatus::InProgress => "IN_PROGRESS",
            ClaimStatus::Completed => "COMPLETED",
        }
    }

    pub fn parse(s: &str) -> Option<ClaimStatus> {
        match s {
            "IN_PROGRESS" => Some(ClaimStatus::InProgress),
            "COMPLETED" => Some(ClaimStatus::Completed),
            _ => None,
        }
    }
}

/// A running cooldown, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CooldownRecord {
    pub rule: String,
    pub target: String,
    /// Epoch milliseconds.
    pub started_at: i64,
    pub until: i64,
}

/// A GCRA bucket, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateRecord {
    pub bucket: String,
    /// The rate it was last taken under, for listings.
    pub rate: String,
    /// Theoretical arrival time, epoch milliseconds.
    pub tat: i64,
}

/// A target lease, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetRecord {
    pub target: String,
    pub owner: String,
    pub token: String,
    /// Epoch milliseconds.
    pub acquired_at: i64,
    pub lease_until: i64,
}

/// Everything a store holds, for `reflex state` and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub claims: Vec<ClaimRecord>,
    pub cooldowns: Vec<CooldownRecord>,
    pub rates: Vec<RateRecord>,
    pub targets: Vec<TargetRecord>,
}

/// Dedup claims, cooldowns, rate buckets and target leases.
///
/// Every operation is atomic on its own; [`complete`](Self::complete) with
/// a cooldown and [`take`](Self::take) of several buckets are atomic as a
/// whole. `now` is the caller's wall clock.
#[async_trait]
pub trait StateStore: Send + Sync {
    /// `memory`, `local <path>`, `dynamodb <table>`: for logs and `/readyz`.
    fn describe(&self) -> String;

    /// Claims one action of an alarm transition.
    async fn claim(&self, req: &ClaimRequest, now: DateTime<Utc>) -> Result<Claimed, StoreError>;

    /// Extends a claim or target lease to `now + lease`. `Lost` if it is no
    /// longer ours.
    async fn heartbeat(
        &self,
        lease: &Lease,
        extend: Duration,
        now: DateTime<Utc>,
    ) -> Result<Lease, StoreError>;

    /// Completes a claim we hold, recording the outcome and, in the same
    /// write, starting a cooldown. `Lost` if the claim is no longer ours
    /// (nothing is written then).
    async fn complete(
        &self,
        lease: &Lease,
        completion: &Completion,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// Gives a claim or target lease back, so a retry can take it at once.
    /// For claims: only when nothing was changed (a transient failure before
    /// any effect). `Lost` if it is no longer ours.
    async fn release(&self, lease: &Lease) -> Result<(), StoreError>;

    /// Time left on the cooldown of (rule, target), if any.
    async fn cooldown(
        &self,
        rule: &str,
        target: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Duration>, StoreError>;

    /// Starts (or extends; never shortens) the cooldown of (rule, target).
    async fn start_cooldown(
        &self,
        start: &CooldownStart,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// Clears the cooldown of (rule, target); true if there was one.
    async fn forget_cooldown(&self, rule: &str, target: &str) -> Result<bool, StoreError>;

    /// Takes cells from every bucket in `takes`, all or none (GCRA: burst =
    /// count, one cell back every period/count). With `fence`, only while
    /// that lease is still ours (`Lost` otherwise, nothing taken).
    async fn take(
        &self,
        takes: &[RateTake],
        fence: Option<&Lease>,
        now: DateTime<Utc>,
    ) -> Result<Result<(), RateLimited>, StoreError>;

    /// Spends one attempt of `target`'s remediation budget (at most
    /// `budget.count` attempts within any `budget.per`, across all rules).
    /// `Ok(Ok(used))`: the attempt is recorded, `used` counting it;
    /// `Ok(Err(_))`: the budget is spent, nothing recorded.
    async fn spend_budget(
        &self,
        target: &str,
        budget: Rate,
        now: DateTime<Utc>,
    ) -> Result<Result<u32, BudgetExhausted>, StoreError>;

    /// Asks for the exclusive right to act on `target`.
    async fn lease_target(
        &self,
        target: &str,
        owner: &str,
        lease: Duration,
        now: DateTime<Utc>,
    ) -> Result<TargetLease, StoreError>;

    /// Everything stored, for `reflex state`.
    async fn snapshot(&self) -> Result<Snapshot, StoreError>;

    /// Checks the store answers (for `/readyz`).
    async fn ping(&self) -> Result<(), StoreError>;
}

/// A fresh random token (128 bits, hex).
pub fn new_token() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}
