//! The audit trail: one JSON line per action and one per message decision,
//! written to a configurable sink, for incident reviews (`reflex audit`).
//!
//! An action record is written the moment its action finishes, so a crash
//! later in the same message cannot lose it; the message record is written
//! after every action and *before* the message is deleted, dead-lettered or
//! released. Both carry the SQS and SNS message ids, so they join.
//!
//! The files follow the jobs: [`records`] (the line format, written and read
//! by the same types), [`sinks`] (where lines go), [`review`] (the selection
//! and sums behind `reflex audit`; its arguments and rendering live in
//! [`crate::cli::audit`]).

pub mod records;
pub mod review;
pub mod sinks;

#[cfg(test)]
pub(crate) mod fixtures;

pub use records::{
    ActionRecord, AlarmRecord, AuditRecord, DispositionRecord, ExcludedRecord, GuardRecord,
    MessageRecord, OutcomeRecord, SkippedRecord,
};
pub use sinks::{AuditSink, FileSink, NoAudit, StdoutSink};
