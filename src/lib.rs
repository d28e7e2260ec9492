//! reflex turns CloudWatch alarms, delivered through SNS to SQS, into guarded,
//! audited remediation actions on AWS.
//!
//! # Layout
//!
//! One direction of flow, a module per stage:
//!
//! ```text
//! SQS body ──decode──▶ AlarmEvent ──evaluate──▶ Plan ──guards──▶ effects ──▶ Disposition
//!          (event)                  (rules, plan)      (safety)    (aws)     (disposition)
//! ```
//!
//! and one direction of dependency: a module imports only from the layers
//! below it (inside a layer, only the pairs `tests/architecture.rs` lists;
//! that test enforces the whole table).
//!
//! ```text
//! event, rules, trust → plan → safety, outcome, disposition → aws → audit, telemetry → worker → config → daemon → cli → main
//! ```
//!
//! The pure core — no I/O, no clock (callers pass `now`), no tokio:
//!
//! - [`event`]: SNS envelopes, raw CloudWatch alarm notifications and
//!   EventBridge alarm events → one [`event::AlarmEvent`], or
//!   [`event::Poison`] with a stable reason code.
//! - [`trust`]: whether a message provably came from a trusted SNS topic —
//!   the string SNS signs, accepted certificate URLs, the RSA signature
//!   check, and which unsigned formats are refused.
//! - [`rules`]: the TOML rule format, loading with file:line:col errors,
//!   compiled matchers and the rule index.
//! - [`plan`]: [`plan::evaluate`], rules × event × now → [`plan::Plan`].
//! - [`fleet`]: what the guards decide on — instance health, instance info
//!   and state (enums), instance operations. Pure data, returned by [`aws`].
//! - [`dead_letter`]: the dead-letter wire contract — [`dead_letter::DeadLetterCode`]
//!   and [`dead_letter::DeadLetterAttributes`], written by the worker and
//!   read back by `reflex dlq`.
//! - [`iam`], [`schema`]: the least-privilege IAM policy a rule set needs,
//!   and the JSON Schema of the rule format, both derived from `rules`.
//! - [`safety`]: the guards — blast radius (pure) and the dedup, cooldown
//!   and rate-limit state behind one trait.
//! - [`outcome`]: what happened to each action.
//! - [`disposition`]: what happens to a message (ack, retry, dead-letter,
//!   release), decided by a pure function of its actions' outcomes, and
//!   [`disposition::MessageOutcome`], the record of a handled message.
//!
//! Effects and records:
//!
//! - [`aws`]: one trait per AWS capability, the SDK implementation (every
//!   call through one wrapper that times it, classifies its error and
//!   reports it to an observer: `aws/observe.rs`) and dry-run wrappers.
//! - [`audit`]: the audit trail — one JSON line per action and per message
//!   decision, to stdout or a file (`records`, `sinks`) — and the review
//!   `reflex audit` runs over it (`review`).
//! - [`state`]: what outlives a message and a process — dedup claims,
//!   cooldowns, GCRA rate buckets, target leases — behind one async,
//!   fallible trait; the pure decisions (`decide.rs`, `now` passed in), the
//!   memory and local (redb) backends and `[state]`. The DynamoDB backend
//!   is `aws/dynamodb_state.rs`.
//! - [`telemetry`]: metrics — `/metrics`, `/healthz`, `/readyz`, and a few
//!   put to CloudWatch — and the telemetry events (`events.rs`), one type
//!   per thing that happens, each of which logs and counts.
//!
//! The shell:
//!
//! - [`worker`]: the queue consumer — the only place that sequences
//!   effects — and its settings, whose defaults are constants
//!   ([`worker::defaults`]); [`worker::actions`] runs one planned action,
//!   one module per action family (with the checklist for a new kind).
//! - [`reload`]: live rule reload (file watch and SIGHUP), atomic.
//! - [`dlq`]: `reflex dlq`: walking the dead-letter queue without consuming
//!   it (`walk`), grouping it by reason (`inspect`), and moving messages
//!   back to the alarm queue after a fix (`redrive`).
//! - [`config`]: the daemon's `reflex.toml`, with its defaults, checked into
//!   the worker's settings and the audit target (plain data).
//! - [`daemon`]: `reflex run` wiring: clients, rules, the audit sink,
//!   signals, shutdown; every start-up failure is one
//!   [`daemon::StartupError`].
//! - [`cli`]: every command's arguments (`run`'s in [`cli::run`]), the exit
//!   codes, and the offline subcommands (`check`, `explain`, `replay`,
//!   `test`, `schema`, `iam-policy`, `audit`, and `health`, which asks a
//!   running daemon's `/readyz` for container health checks).
//! - [`testing`] (tests and the `test-support` feature only): fake AWS
//!   effects, a worker builder and the alarm-body builder; above `worker`,
//!   imported only by test code. End-to-end helpers are in `tests/support/`.
//! - `main.rs`: parses the command line, sets up logging, hands over, and
//!   reports a start-up failure once, with its exit code.

pub mod audit;
pub mod aws;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod dead_letter;
pub mod disposition;
pub mod dlq;
pub mod event;
pub mod fleet;
pub mod iam;
pub mod outcome;
pub mod plan;
pub mod reload;
pub mod rules;
pub mod safety;
pub mod schema;
pub mod state;
pub mod telemetry;
#[cfg(any(test, feature = "test-support"))]
pub mod testing;
pub mod trust;
pub mod worker;
