//! The one outcome of a message, decided by a pure function of what happened,
//! and the record of everything handling that message produced.

use std::time::Duration;

use crate::dead_letter::DeadLetterCode;
use crate::event::{AlarmEvent, Poison};
use crate::outcome::{ActionReport, Outcome};
use crate::plan::Skipped;

/// What handling one message produced: the event it announced, each action's
/// report, and the disposition decided from them. The worker returns it; the
/// audit trail and the metrics are written from it.
#[derive(Debug)]
pub struct MessageOutcome {
    /// `None` if the message did not decode (poison) or was released unread.
    pub event: Option<AlarmEvent>,
    pub reports: Vec<ActionReport>,
    pub disposition: Disposition,
    /// The version of the rules it was evaluated under (none if it was
    /// not decoded).
    pub rules_version: Option<String>,
    /// Where that version came from, when not the local directory (an
    /// `s3://` prefix).
    pub rules_source: Option<String>,
    /// The rules that matched and acted, and those that matched but were
    /// skipped.
    pub matched: Vec<String>,
    pub skipped: Vec<Skipped>,
    /// The heartbeat could not keep the message invisible: its visibility
    /// ran out while it was being handled.
    pub visibility_lost: bool,
    /// Time spent fetching the SNS signing certificate: an AWS call, not
    /// reflex's own processing (zero when it was cached).
    pub certificate_fetch: std::time::Duration,
}

impl MessageOutcome {
    /// A message that was not evaluated (poison, or released on shutdown):
    /// no event, no actions, just the disposition.
    pub fn unevaluated(disposition: Disposition) -> MessageOutcome {
        MessageOutcome {
            event: None,
            reports: vec![],
            disposition,
            rules_version: None,
            rules_source: None,
            matched: vec![],
            skipped: vec![],
            visibility_lost: false,
            certificate_fetch: std::time::Duration::ZERO,
        }
    }
}

/// What to do with a message once it has been handled.
#[derive(Debug, Clone, PartialEq)]
pub enum Disposition {
    /// Delete it: every action is done, suppressed, or nothing matched.
    Ack,
    /// Leave it on the queue, invisible for `after`: a retry can help. The
    /// queue's redrive policy moves it to the DLQ after its last receive.
    Retry { after: Duration },
    /// Send it to the DLQ with this reason, then delete it.
    DeadLetter {
        code: DeadLetterCode,
        reason: String,
    },
    /// Make it visible again at once, untouched (shutdown).
    Release,
}

impl Disposition {
    pub fn label(&self) -> &'static str {
        match self {
            Disposition::Ack => "ack",
            Disposition::Retry { .. } => "retry",
            Disposition::DeadLetter { .. } => "dead_letter",
            Disposition::Release => "release",
        }
    }
}

/// Exponential backoff by receive count: `base × 2^(count-1)`, at most `max`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

impl Backoff {
    pub fn after(&self, receive_count: u32) -> Duration {
        let exp = receive_count.saturating_sub(1).min(20);
        self.base.saturating_mul(1u32 << exp).min(self.max)
    }
}

/// Decides a poison message.
pub fn decide_poison(poison: &Poison) -> Disposition {
    Disposition::DeadLetter {
        code: DeadLetterCode::Poison(poison.code),
        reason: poison.reason.clone(),
    }
}

/// Decides a decoded message from its action reports.
///
/// Precedence: shutdown (release) before retry before dead-letter: a message
/// with any transient failure is retried whole (finished actions are not
/// repeated: their claims are kept), one with only permanent failures goes
/// to the DLQ as `action_failed` so an operator can redrive it after a fix.
pub fn decide(reports: &[ActionReport], receive_count: u32, backoff: Backoff) -> Disposition {
    if reports.iter().any(|r| r.outcome == Outcome::Aborted) {
        return Disposition::Release;
    }
    if reports.iter().any(|r| {
        matches!(
            r.outcome,
            Outcome::Busy
                | Outcome::Failed {
                    transient: true,
                    ..
                }
        )
    }) {
        return Disposition::Retry {
            after: backoff.after(receive_count),
        };
    }
    let permanent: Vec<String> = reports
        .iter()
        .filter_map(|r| match &r.outcome {
            Outcome::Failed {
                transient: false,
                error,
            } => Some(format!("{} {}: {error}", r.rule, r.kind)),
            _ => None,
        })
        .collect();
    if !permanent.is_empty() {
        return Disposition::DeadLetter {
            code: DeadLetterCode::ActionFailed,
            reason: permanent.join("; "),
        };
    }
    Disposition::Ack
}

/// Decides a message whose visibility was lost before all its actions
/// were started: the rest must run on a redelivery, so it is never acked.
/// A retry (with its backoff) stands; anything else is released, to come
/// back at once — the finished actions' claims stop them running twice.
pub fn decide_unfinished(
    reports: &[ActionReport],
    receive_count: u32,
    backoff: Backoff,
) -> Disposition {
    match decide(reports, receive_count, backoff) {
        retry @ Disposition::Retry { .. } => retry,
        _ => Disposition::Release,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::ActionKind;

    fn report(outcome: Outcome) -> ActionReport {
        ActionReport {
            rule: "r".into(),
            action_index: 0,
            kind: ActionKind::TerminateOutOfService,
            target: "elb:web".into(),
            targets: vec![],
            outcome,
            capped: vec![],
            excluded: vec![],
            health_reasons: Default::default(),
            request_ids: vec![],
            duration_ms: 0,
            aws_us: 0,
            waited_us: 0,
            escalation_message_id: None,
            taken_over_from: None,
            budget: None,
            command_status: Default::default(),
            unknown_outcome: None,
        }
    }

    const B: Backoff = Backoff {
        base: Duration::from_secs(10),
        max: Duration::from_secs(900),
    };

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(B.after(1), Duration::from_secs(10));
        assert_eq!(B.after(3), Duration::from_secs(40));
        assert_eq!(B.after(50), Duration::from_secs(900));
    }

    #[test]
    fn done_suppressed_and_nothing_are_acked() {
        assert_eq!(decide(&[], 1, B), Disposition::Ack);
        let trip = crate::safety::GuardTrip::new(crate::safety::Guard::MinInService, "x");
        assert_eq!(
            decide(
                &[report(Outcome::Done), report(Outcome::suppressed(trip))],
                1,
                B
            ),
            Disposition::Ack
        );
    }

    #[test]
    fn transient_retries_permanent_dead_letters_abort_releases() {
        let t = report(Outcome::Failed {
            transient: true,
            error: "throttled".into(),
        });
        let p = report(Outcome::Failed {
            transient: false,
            error: "denied".into(),
        });
        assert_eq!(
            decide(&[t.clone(), p.clone()], 2, B),
            Disposition::Retry {
                after: Duration::from_secs(20)
            }
        );
        assert!(
            matches!(decide(std::slice::from_ref(&p), 1, B), Disposition::DeadLetter { code, .. } if code == "action_failed")
        );
        assert_eq!(
            decide(&[t, p, report(Outcome::Aborted)], 1, B),
            Disposition::Release
        );
        assert_eq!(
            decide(&[report(Outcome::Busy)], 1, B),
            Disposition::Retry {
                after: Duration::from_secs(10)
            }
        );
    }

    #[test]
    fn an_unfinished_message_is_released_or_retried_never_acked() {
        assert_eq!(decide_unfinished(&[], 1, B), Disposition::Release);
        assert_eq!(
            decide_unfinished(&[report(Outcome::Done)], 1, B),
            Disposition::Release
        );
        let p = report(Outcome::Failed {
            transient: false,
            error: "denied".into(),
        });
        assert_eq!(decide_unfinished(&[p], 1, B), Disposition::Release);
        assert_eq!(
            decide_unfinished(&[report(Outcome::Busy)], 2, B),
            Disposition::Retry {
                after: Duration::from_secs(20)
            }
        );
    }
}
