//! Test support, compiled only for tests (`cfg(test)`) and with the cargo
//! feature `test-support` (which the crate's own integration tests turn on
//! through a dev-dependency on itself); never in the release binary.
//!
//! It sits above [`crate::worker`] in the layering, and only test code may
//! import it (`tests/architecture.rs` enforces both).
//!
//! - [`fake`]: in-memory fakes of every effect trait, with failure injection.
//! - [`worker`]: [`TestWorker`], a worker wired to those fakes (queue, DLQ,
//!   effects), with rules from TOML text, settings, a settable clock and an
//!   optional audit sink; and a fleet behind a fake classic ELB.
//! - [`alarm`]: [`AlarmBody`], the one builder of CloudWatch alarm
//!   notifications (raw or in an SNS envelope) for tests that need a body.
//! - [`store`]: [`OutageStore`], a state store that can be taken down
//!   and brought back, for the fail-closed tests.
//! - [`signing`]: an RSA key and certificate made at test time, and SNS
//!   envelopes signed with them; [`AlarmBody::sns`] signs with it.
//!
//! End-to-end helpers (moto, the `reflex` binary) are in `tests/support/`.

pub mod alarm;
pub mod fake;
pub mod signing;
pub mod store;
pub mod worker;

pub use alarm::AlarmBody;
pub use fake::{FakeAws, FakeState};
pub use store::OutageStore;
pub use worker::{TestClock, TestWorker, WorkerBuilder};
