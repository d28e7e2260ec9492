//! How long each AWS call may take: a limit per attempt and a deadline for
//! the whole operation (retries included), by what the call needs.
//!
//! A lossy network is when reflex must stay fast: alarms fire *because* a
//! NAT gateway or an endpoint drops packets. A reply that never comes back
//! must cost a few seconds, not the SDK's half minute, or a stalled
//! heartbeat lets a message reappear while it is still being worked on.
//!
//! The SDK enforces both limits (a timed-out attempt is a `TimeoutError`,
//! which its standard retry treats as transient and retries through its
//! token bucket); [`super::sdk`]'s single call wrapper also bounds the
//! whole call with the operation deadline plus [`DEADLINE_SLACK`], so a
//! hang outside the SDK's attempt loop (credentials, a stalled resolver)
//! is bounded too.

use std::time::Duration;

/// Extra time the call wrapper allows past the SDK's own operation
/// deadline before giving up itself.
pub const DEADLINE_SLACK: Duration = Duration::from_secs(1);

/// The limits of one kind of call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallLimits {
    /// One HTTP attempt, from sending the request to the end of the reply.
    pub attempt: Duration,
    /// The whole operation, retries included.
    pub operation: Duration,
    /// How many attempts the SDK's standard retry makes.
    pub attempts: u32,
    /// A call not answered after this gets a second, identical request
    /// beside it ([`super::hedge`]): reads and queue calls, which are safe
    /// to send twice; `None` for every other kind.
    pub hedge_after: Option<Duration>,
}

impl CallLimits {
    pub const fn new(attempt: Duration, operation: Duration) -> CallLimits {
        CallLimits {
            attempt,
            operation,
            attempts: STANDARD_ATTEMPTS,
            hedge_after: None,
        }
    }
}

/// The SDK's standard retry: three attempts.
pub const STANDARD_ATTEMPTS: u32 = 3;

/// Reads and queue calls do the same when sent twice, so a lost reply
/// costs only time: they get more attempts, all within the same
/// operation deadline. On a network that loses three replies in a row now
/// and then, a describe whose three attempts all failed sent its whole
/// message back for `retry.base`, and a delete whose three attempts all
/// failed let a handled message come back after its visibility timeout.
pub const IDEMPOTENT_ATTEMPTS: u32 = 5;

/// What the SDK is told for one call: its timeouts and its retries.
#[derive(Debug, Clone)]
pub struct SdkCallConfig {
    pub timeout: aws_smithy_types::timeout::TimeoutConfig,
    pub retry: aws_smithy_types::retry::RetryConfig,
}

/// What a call is, for its timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallKind {
    /// `ReceiveMessage`: the long-poll wait plus a margin.
    Receive,
    /// `ChangeMessageVisibility` (the heartbeat), `DeleteMessage`,
    /// `GetQueueAttributes`: the same request twice does what one does,
    /// so they are hedged.
    Queue,
    /// `SendMessage` to the dead-letter queue: the queue limits, never
    /// hedged (a second request would dead-letter the message twice).
    QueueSend,
    /// Describes: EC2, ELB, CloudWatch alarms, Auto Scaling, target groups.
    Read,
    /// Publish, put metric data, send an SSM command.
    Write,
    /// A change reflex can see afterwards — terminate, stop, reboot,
    /// deregister, the Auto Scaling writes — with the write limits but
    /// **one attempt**: after a failure (a lost reply above all) reflex
    /// re-reads the target before it repeats the change, which the SDK's
    /// blind retry would not.
    Change,
}

/// Every kind's limits: `[aws]` in `reflex.toml`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AwsTimeouts {
    /// Connecting (TCP and TLS) to an endpoint.
    pub connect: Duration,
    /// Added to the long-poll wait for one `ReceiveMessage` attempt.
    pub receive_margin: Duration,
    /// The SDK standard retry's first backoff: a failed attempt is retried
    /// after a random pause of up to this, doubled for each further
    /// attempt.
    pub retry_backoff: Duration,
    /// A read or queue call with no answer after this gets a hedge: a
    /// second, identical request, whose answer is used if it comes first.
    /// `None`: never.
    pub hedge_after: Option<Duration>,
    pub queue: CallLimits,
    pub read: CallLimits,
    pub write: CallLimits,
}

/// The defaults, from what each call needs.
pub mod defaults {
    use super::CallLimits;
    use std::time::Duration;

    pub const CONNECT: Duration = Duration::from_secs(2);
    pub const RECEIVE_MARGIN: Duration = Duration::from_secs(5);
    /// The SDK's own default is 1 s, paid (half of it on average) on each
    /// refused connection or timed-out attempt before the retry: on a
    /// lossy network, where alarms fire, that is most of a call's delay.
    /// The token bucket still stops retry storms.
    pub const RETRY_BACKOFF: Duration = Duration::from_millis(200);
    /// Well above a describe's or a heartbeat's usual reply time in a
    /// region (tens to a few hundred milliseconds), under the queue and
    /// read attempt timeouts: a stalled call costs about this plus one
    /// round trip, not the attempt timeout, and a healthy network sends
    /// almost no hedges.
    pub const HEDGE_AFTER: Duration = Duration::from_secs(1);
    /// Well under the default heartbeat interval (20 s), so a stalled
    /// heartbeat is retried long before the visibility runs out.
    pub const QUEUE: CallLimits = CallLimits::new(Duration::from_secs(2), Duration::from_secs(6));
    pub const READ: CallLimits = CallLimits::new(Duration::from_secs(3), Duration::from_secs(10));
    pub const WRITE: CallLimits = CallLimits::new(Duration::from_secs(5), Duration::from_secs(15));
}

impl Default for AwsTimeouts {
    fn default() -> Self {
        AwsTimeouts {
            connect: defaults::CONNECT,
            receive_margin: defaults::RECEIVE_MARGIN,
            retry_backoff: defaults::RETRY_BACKOFF,
            hedge_after: Some(defaults::HEDGE_AFTER),
            queue: defaults::QUEUE,
            read: defaults::READ,
            write: defaults::WRITE,
        }
    }
}

impl AwsTimeouts {
    /// The SDK timeout configuration of a call of this kind: its limits
    /// and the connect timeout (a per-call override replaces the client's
    /// whole timeout configuration, so it carries every field).
    pub fn sdk(&self, limits: CallLimits) -> SdkCallConfig {
        SdkCallConfig {
            timeout: aws_smithy_types::timeout::TimeoutConfig::builder()
                .connect_timeout(self.connect)
                .operation_attempt_timeout(limits.attempt)
                .operation_timeout(limits.operation)
                .build(),
            retry: aws_smithy_types::retry::RetryConfig::standard()
                .with_max_attempts(limits.attempts)
                .with_initial_backoff(self.retry_backoff),
        }
    }

    /// The limits of a call of this kind; `wait` is the long-poll wait of
    /// a receive (ignored for the others).
    pub fn limits(&self, kind: CallKind, wait: Duration) -> CallLimits {
        match kind {
            // One stalled long poll is retried once within the deadline.
            CallKind::Receive => {
                let attempt = wait + self.receive_margin;
                CallLimits::new(attempt, attempt * 2)
            }
            CallKind::Queue => CallLimits {
                attempts: IDEMPOTENT_ATTEMPTS,
                hedge_after: self.hedge_after,
                ..self.queue
            },
            CallKind::Read => CallLimits {
                attempts: IDEMPOTENT_ATTEMPTS,
                hedge_after: self.hedge_after,
                ..self.read
            },
            CallKind::QueueSend => self.queue,
            CallKind::Write => self.write,
            CallKind::Change => CallLimits {
                attempts: 1,
                ..self.write
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_receive_waits_its_long_poll_plus_the_margin() {
        let t = AwsTimeouts::default();
        let l = t.limits(CallKind::Receive, Duration::from_secs(20));
        assert_eq!(l.attempt, Duration::from_secs(25));
        assert_eq!(l.operation, Duration::from_secs(50));
        assert_eq!(
            t.limits(CallKind::QueueSend, Duration::from_secs(20)),
            defaults::QUEUE
        );
        let sdk = t.sdk(t.write).timeout;
        assert_eq!(sdk.connect_timeout(), Some(Duration::from_secs(2)));
        assert_eq!(
            sdk.operation_attempt_timeout(),
            Some(Duration::from_secs(5))
        );
        assert_eq!(sdk.operation_timeout(), Some(Duration::from_secs(15)));
        assert_eq!(t.sdk(t.write).retry.max_attempts(), STANDARD_ATTEMPTS);
        let read = t.limits(CallKind::Read, Duration::ZERO);
        assert_eq!(read.attempts, IDEMPOTENT_ATTEMPTS);
        let queue = t.limits(CallKind::Queue, Duration::ZERO);
        assert_eq!(queue.attempts, IDEMPOTENT_ATTEMPTS);
        assert_eq!(queue.operation, defaults::QUEUE.operation);
        assert_eq!(
            read.operation,
            defaults::READ.operation,
            "the same deadline"
        );
        assert_eq!(
            t.sdk(t.write).retry.initial_backoff(),
            defaults::RETRY_BACKOFF
        );
    }

    /// A change the SDK must not repeat blindly: one attempt, with the
    /// write limits; reflex re-reads the target before sending it again.
    #[test]
    fn a_change_gets_one_attempt() {
        let t = AwsTimeouts::default();
        let change = t.limits(CallKind::Change, Duration::ZERO);
        assert_eq!(change.attempts, 1);
        assert_eq!(change.attempt, t.write.attempt);
        assert_eq!(t.sdk(change).retry.max_attempts(), 1);
        assert_eq!(change.hedge_after, None, "a change is never sent twice");
    }

    /// Only reads and queue calls are hedged: a second request of anything
    /// else could act twice (a write, a dead-letter send), or take more
    /// messages (a receive).
    #[test]
    fn only_calls_safe_to_send_twice_are_hedged() {
        let t = AwsTimeouts::default();
        for kind in [CallKind::Read, CallKind::Queue] {
            assert_eq!(
                t.limits(kind, Duration::ZERO).hedge_after,
                Some(defaults::HEDGE_AFTER)
            );
        }
        for kind in [
            CallKind::Receive,
            CallKind::QueueSend,
            CallKind::Write,
            CallKind::Change,
        ] {
            assert_eq!(t.limits(kind, Duration::from_secs(1)).hedge_after, None);
        }
        let off = AwsTimeouts {
            hedge_after: None,
            ..t
        };
        assert_eq!(off.limits(CallKind::Read, Duration::ZERO).hedge_after, None);
    }

    #[test]
    fn the_defaults_are_ordered_by_what_the_calls_need() {
        let t = AwsTimeouts::default();
        for l in [t.queue, t.read, t.write] {
            assert!(l.attempt < l.operation, "{l:?}");
        }
        assert!(t.queue.operation < Duration::from_secs(20) / 2);
        assert!(t.queue.attempt <= t.read.attempt && t.read.attempt < t.write.attempt);
    }
}
