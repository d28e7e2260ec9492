//! reflex turns CloudWatch alarms, delivered through SNS to SQS, into guarded,
//! audited remediation actions on AWS.
//!
//! # Layout
//!
//! One direction of flow, a module per stage:
//!
//! ```text
//! SQS body ──decode──▶ AlarmEvent ──evaluate──▶ Plan ──guards──▶ effects ──▶ Disposition
//!          (event)                  (rules, plan)      (safety)    (aws)     (worker)
//! ```
//!
//! - [`event`]: SNS envelopes, raw CloudWatch alarm notifications and
//!   EventBridge alarm events → one [`event::AlarmEvent`], or
//!   [`event::Poison`] with a stable reason code. Pure.
//! - [`rules`]: the TOML rule format, loading with file:line:col errors,
//!   compiled matchers and the rule index. Pure.
//! - [`plan`]: [`plan::evaluate`], rules × event × now → [`plan::Plan`]. Pure.
//! - [`safety`]: the guards — blast radius (pure) and the dedup, cooldown
//!   and rate-limit state behind one trait.
//! - [`state`]: state that outlives a message and a process — dedup claims,
//!   cooldowns, GCRA rate buckets, target leases — behind one async trait;
//!   the pure decisions, and the memory and local (redb) backends.
//! - [`aws`]: one trait per AWS capability, the SDK implementation, dry-run
//!   wrappers and in-memory fakes.
//! - [`outcome`]: what happened to each action.
//! - [`worker`]: the queue consumer — the only place that sequences effects —
//!   and the pure disposition of each message.
//! - [`audit`]: the audit trail — one JSON line per action and per message
//!   decision, to stdout or a file — read back by `reflex audit`.
//! - [`config`]: the daemon's `reflex.toml`.
//! - [`daemon`]: `reflex run` wiring: clients, rules, signals, shutdown.
//! - [`dlq`]: `reflex dlq`: inspecting the dead-letter queue without
//!   consuming it, and redriving messages to the alarm queue after a fix.
//! - [`reload`]: live rule reload (file watch and SIGHUP), atomic.
//! - [`telemetry`]: metrics — `/metrics`, `/healthz`, `/readyz`, and a few
//!   put to CloudWatch.
//! - [`iam`]: the least-privilege IAM policy a rule set needs.
//! - [`schema`]: the JSON Schema of the rule format.
//! - [`cli`]: the offline subcommands (`check`, `explain`, `replay`, `test`,
//!   `schema`, `iam-policy`, `audit`).

pub mod audit;
pub mod aws;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod dlq;
pub mod event;
pub mod iam;
pub mod outcome;
pub mod plan;
pub mod reload;
pub mod rules;
pub mod safety;
pub mod schema;
pub mod state;
pub mod telemetry;
pub mod worker;
