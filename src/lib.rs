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
//! - [`iam`]: the least-privilege IAM policy a rule set needs.
//! - [`schema`]: the JSON Schema of the rule format.
//! - [`cli`]: the offline subcommands (`check`, `explain`, `replay`, `test`,
//!   `schema`, `iam-policy`).

pub mod cli;
pub mod event;
pub mod iam;
pub mod plan;
pub mod rules;
pub mod schema;
