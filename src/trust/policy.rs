//! Which messages need what proof before reflex may act on them.

use crate::event::{AlarmEvent, EventFormat, Poison, PoisonCode};

/// The trust settings (`trusted_topic_arns` and the `[trust]` table).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustPolicy {
    /// SNS topics whose notifications are acted on. Empty: any message that
    /// reaches the queue is trusted (said once at start-up).
    pub trusted_topic_arns: Vec<String>,
    /// Accept raw message delivery (unsigned) while topics are trusted.
    pub accept_raw: bool,
    /// Accept EventBridge events (unsigned) while topics are trusted.
    pub accept_eventbridge: bool,
    /// Accounts an accepted unsigned alarm may come from. Required for
    /// EventBridge; optional for raw delivery.
    pub trusted_accounts: Vec<String>,
}

/// What a decoded message still needs before it may be acted on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proof {
    /// Nothing more: an accepted unsigned format, or no trusted topics.
    None,
    /// Its SNS signature must verify.
    Signature,
}

impl TrustPolicy {
    /// Trusts `topics`, and no unsigned format.
    pub fn topics(topics: &[&str]) -> Self {
        TrustPolicy {
            trusted_topic_arns: topics.iter().map(|t| (*t).to_owned()).collect(),
            ..TrustPolicy::default()
        }
    }

    /// Whether only trusted topics are acted on.
    pub fn enforcing(&self) -> bool {
        !self.trusted_topic_arns.is_empty()
    }

    /// Decides, from the decoded event and whether its envelope carries a
    /// signature, whether it is refused outright or what proof it needs.
    /// A signed envelope is always verified, trusted topics or not.
    pub fn admit(&self, event: &AlarmEvent, signed: bool) -> Result<Proof, Poison> {
        match event.format {
            EventFormat::Sns => {
                if self.enforcing() {
                    let topic = event.topic_arn.as_deref().unwrap_or("");
                    if !self.trusted_topic_arns.iter().any(|t| t == topic) {
                        return Err(Poison::new(
                            PoisonCode::UntrustedTopic,
                            format!("notification from topic {topic:?}, which is not in trusted_topic_arns"),
                        ));
                    }
                }
                match (signed, self.enforcing()) {
                    (true, _) => Ok(Proof::Signature),
                    (false, false) => Ok(Proof::None),
                    (false, true) => Err(Poison::new(
                        PoisonCode::UnsignedRefused,
                        "SNS envelope carries no Signature; SNS signs every notification it delivers",
                    )),
                }
            }
            EventFormat::Raw => {
                if self.enforcing() && !self.accept_raw {
                    return Err(unsigned(
                        "a raw CloudWatch alarm (raw message delivery)",
                        "trust.accept_raw",
                    ));
                }
                self.check_account(event)
            }
            EventFormat::EventBridge => {
                if self.enforcing() && !self.accept_eventbridge {
                    return Err(unsigned("an EventBridge event", "trust.accept_eventbridge"));
                }
                self.check_account(event)
            }
        }
    }

    /// An unsigned alarm's account, when accounts are configured.
    fn check_account(&self, event: &AlarmEvent) -> Result<Proof, Poison> {
        if self.trusted_accounts.is_empty() {
            return Ok(Proof::None);
        }
        let account = event.account_id.as_deref().unwrap_or("");
        if self.trusted_accounts.iter().any(|a| a == account) {
            Ok(Proof::None)
        } else {
            Err(Poison::new(
                PoisonCode::UntrustedSource,
                format!("alarm from account {account:?}, which is not in trust.trusted_accounts"),
            ))
        }
    }

    /// The start-up warnings these settings deserve, one sentence each.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !self.enforcing() {
            out.push(
                "trusted_topic_arns is empty: reflex trusts whatever reaches the queue, \
                 including raw alarms and unsigned envelopes anyone with sqs:SendMessage can write."
                    .to_owned(),
            );
            return out;
        }
        if self.accept_raw {
            out.push(format!(
                "trust.accept_raw is on: raw alarms carry no signature, so anyone who can send to the \
                 queue can make reflex act{}.",
                if self.trusted_accounts.is_empty() {
                    ""
                } else {
                    " (for an alarm ARN of a trusted account)"
                }
            ));
        }
        if self.accept_eventbridge {
            out.push(
                "trust.accept_eventbridge is on: EventBridge events carry no signature, so anyone who \
                 can send to the queue can make reflex act for an alarm of a trusted account; \
                 keep the queue policy's Deny on other senders."
                    .to_owned(),
            );
        }
        out
    }
}

fn unsigned(what: &str, setting: &str) -> Poison {
    Poison::new(
        PoisonCode::UnsignedRefused,
        format!(
            "{what} carries no signature and trusted_topic_arns is set; set {setting} = true to accept it"
        ),
    )
}
