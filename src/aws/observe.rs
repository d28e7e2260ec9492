//! What every finished AWS call reports, and who hears it.
//!
//! Every SDK call in [`super::sdk`] goes through one wrapper that times it,
//! classifies its error as transient or permanent, and reports an
//! [`AwsCallFinished`] here. Counting those calls is telemetry's job, but
//! `telemetry` sits *above* `aws` in the layering (it reads queues and puts
//! metrics through `aws`'s traits), so `aws` cannot call it. Instead `aws`
//! defines the [`CallObserver`] interface and telemetry implements it; the
//! daemon installs telemetry's observer once at start-up
//! ([`set_call_observer`]). Dependency inversion keeps every arrow pointing
//! down, and a process that installs nothing (the offline CLI, unit tests)
//! simply reports to no one.
//!
//! The observer is process-wide, like `tracing`'s global dispatcher, rather
//! than a field of every client: the SDK clients are built in several
//! places, and a call that is not counted because one constructor forgot an
//! argument is the drift this module exists to prevent.

use std::sync::OnceLock;
use std::time::Duration;

/// How an AWS call ended, as counted in `reflex_aws_calls_total{outcome}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallOutcome {
    Ok,
    /// Failed; a retry later may succeed.
    TransientError,
    /// Failed; retrying will not help.
    PermanentError,
    /// No reply in time (transient; for a write, an unknown outcome).
    Timeout,
}

impl CallOutcome {
    /// The metric label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            CallOutcome::Ok => "ok",
            CallOutcome::TransientError => "transient_error",
            CallOutcome::PermanentError => "permanent_error",
            CallOutcome::Timeout => "timeout",
        }
    }

    pub const fn of_error(error: &super::AwsError) -> CallOutcome {
        if error.timed_out {
            CallOutcome::Timeout
        } else if error.transient {
            CallOutcome::TransientError
        } else {
            CallOutcome::PermanentError
        }
    }
}

/// One AWS call, finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsCallFinished {
    /// The service's IAM prefix: `sqs`, `ec2`, `elasticloadbalancing`...
    pub service: &'static str,
    /// The API operation: `ReceiveMessage`, `TerminateInstances`...
    pub operation: &'static str,
    pub outcome: CallOutcome,
    /// The AWS error code, when it failed with one.
    pub code: Option<String>,
    pub elapsed: Duration,
    /// Whether a hedge was sent (reads only), and whose answer was used.
    pub hedge: super::hedge::Hedge,
}

/// Hears every finished AWS call.
pub trait CallObserver: Send + Sync {
    fn call_finished(&self, call: &AwsCallFinished);
}

static OBSERVER: OnceLock<&'static dyn CallObserver> = OnceLock::new();

/// Installs the process's call observer. The first one wins; returns
/// whether this one was installed (installing the same observer twice is
/// harmless).
pub fn set_call_observer(observer: &'static dyn CallObserver) -> bool {
    OBSERVER.set(observer).is_ok()
}

/// Reports a finished call to the installed observer, if any.
pub fn report(call: &AwsCallFinished) {
    if let Some(observer) = OBSERVER.get() {
        observer.call_finished(call);
    }
}
