//! The incident review behind `reflex audit`: which records a question
//! selects ([`Filter`]), and what they add up to ([`ReviewTotals`]), read from
//! trails as a stream ([`review`]). Rendering is the caller's
//! ([`ReviewOutput`]; `reflex audit`'s table and JSON are in
//! [`crate::cli::audit`]).
//!
//! A line that is not a record (torn, or from an incompatible version) is
//! reported with its number and skipped, so one bad write never hides the
//! rest of a trail.

use std::collections::{BTreeMap, HashSet};
use std::io::BufRead;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{ActionRecord, AuditRecord, MessageRecord, OutcomeRecord};
use crate::event::format_millis;
use crate::rules::ActionKind;

/// The kinds that terminate instances.
const TERMINATING: [ActionKind; 2] = [
    ActionKind::TerminateOutOfService,
    ActionKind::TerminateInstance,
];

impl ActionRecord {
    /// The action terminated instances (a `terminate_*` kind, done).
    pub fn terminated(&self) -> bool {
        self.outcome == OutcomeRecord::Done && TERMINATING.contains(&self.kind)
    }
}

/// Which records to show.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub rules: Vec<String>,
    pub alarms: Vec<String>,
    pub outcomes: Vec<String>,
    pub kinds: Vec<String>,
    pub guards: Vec<String>,
    pub terminated: bool,
    pub suppressed: bool,
}

fn any_or(wanted: &[String], value: &str) -> bool {
    wanted.is_empty() || wanted.iter().any(|w| w == value)
}

impl Filter {
    fn in_window(&self, t: &DateTime<Utc>) -> bool {
        self.since.is_none_or(|s| *t >= s) && self.until.is_none_or(|u| *t < u)
    }

    /// Whether a filter about actions alone is set; then a message is shown
    /// only with a shown action.
    fn about_actions(&self) -> bool {
        self.terminated
            || self.suppressed
            || !self.outcomes.is_empty()
            || !self.kinds.is_empty()
            || !self.guards.is_empty()
    }

    pub fn action(&self, a: &ActionRecord) -> bool {
        let outcome = a.outcome.label();
        self.in_window(&a.time)
            && any_or(&self.rules, &a.rule)
            && any_or(&self.alarms, &a.alarm_name)
            && any_or(&self.outcomes, outcome)
            && any_or(&self.kinds, a.kind.as_str())
            && (self.guards.is_empty()
                || a.outcome
                    .guard()
                    .is_some_and(|g| self.guards.iter().any(|w| w == g)))
            && (!self.terminated || a.terminated())
            && (!self.suppressed || outcome == "suppressed")
    }

    /// Whether a message is shown, before joining it to its actions.
    pub fn message(&self, m: &MessageRecord) -> bool {
        self.in_window(&m.time)
            && (self.alarms.is_empty()
                || m.alarm
                    .as_ref()
                    .is_some_and(|a| self.alarms.contains(&a.name)))
            && (self.rules.is_empty()
                || m.matched
                    .iter()
                    .chain(m.skipped.iter().map(|s| &s.rule))
                    .any(|r| self.rules.contains(r)))
    }
}

/// One instance terminated.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Terminated {
    pub time: String,
    pub instance_id: String,
    pub rule: String,
    pub alarm_name: String,
    pub target: String,
    pub request_ids: Vec<String>,
    pub sqs_message_id: String,
}

/// What the selected records add up to: counts by rule, kind, outcome,
/// guard, disposition and code, the instances terminated, and the lines
/// that could not be read.
#[derive(Debug, Default, PartialEq, Serialize)]
pub struct ReviewTotals {
    pub actions: u64,
    pub messages: u64,
    /// The first and last selected record's time.
    pub first: Option<String>,
    pub last: Option<String>,
    /// Messages each rule matched and acted on.
    pub rules_fired: BTreeMap<String, u64>,
    pub actions_by_rule: BTreeMap<String, u64>,
    pub actions_by_kind: BTreeMap<String, u64>,
    pub actions_by_outcome: BTreeMap<String, u64>,
    pub suppressed_by_guard: BTreeMap<String, u64>,
    pub terminated: Vec<Terminated>,
    pub dispositions: BTreeMap<String, u64>,
    pub dead_letter_codes: BTreeMap<String, u64>,
    /// Rules that matched but were skipped (disabled, stale).
    pub skipped_rules: BTreeMap<String, u64>,
    pub malformed_lines: u64,
}

impl ReviewTotals {
    fn saw(&mut self, t: &DateTime<Utc>) {
        let t = format_millis(t);
        if self.first.as_ref().is_none_or(|f| t < *f) {
            self.first = Some(t.clone());
        }
        if self.last.as_ref().is_none_or(|l| t > *l) {
            self.last = Some(t);
        }
    }

    pub fn add_action(&mut self, a: &ActionRecord) {
        self.actions += 1;
        self.saw(&a.time);
        *self.actions_by_rule.entry(a.rule.clone()).or_default() += 1;
        *self
            .actions_by_kind
            .entry(a.kind.as_str().to_string())
            .or_default() += 1;
        *self
            .actions_by_outcome
            .entry(a.outcome.label().to_string())
            .or_default() += 1;
        if let Some(guard) = a.outcome.guard() {
            *self
                .suppressed_by_guard
                .entry(guard.to_string())
                .or_default() += 1;
        }
        if a.terminated() {
            for id in &a.targets {
                self.terminated.push(Terminated {
                    time: format_millis(&a.time),
                    instance_id: id.clone(),
                    rule: a.rule.clone(),
                    alarm_name: a.alarm_name.clone(),
                    target: a.target.clone(),
                    request_ids: a.request_ids.clone(),
                    sqs_message_id: a.sqs_message_id.clone(),
                });
            }
        }
    }

    pub fn add_message(&mut self, m: &MessageRecord) {
        self.messages += 1;
        self.saw(&m.time);
        for r in &m.matched {
            *self.rules_fired.entry(r.clone()).or_default() += 1;
        }
        for s in &m.skipped {
            *self.skipped_rules.entry(s.rule.clone()).or_default() += 1;
        }
        *self
            .dispositions
            .entry(m.disposition.label().to_string())
            .or_default() += 1;
        if let super::DispositionRecord::DeadLetter { code, .. } = &m.disposition {
            *self
                .dead_letter_codes
                .entry(code.as_str().to_string())
                .or_default() += 1;
        }
    }
}

/// One input: its name for messages, and its lines.
pub struct Input {
    pub name: String,
    pub reader: Box<dyn BufRead>,
}

/// Where a review's findings go, as they are found.
pub trait ReviewOutput {
    /// A selected record, with its line as read (trimmed), for verbatim
    /// output.
    fn record(&mut self, record: &AuditRecord, line: &[u8]) -> std::io::Result<()>;
    /// Line `number` of `input` is not a record; it is skipped (and counted
    /// in [`ReviewTotals::malformed_lines`]).
    fn malformed(
        &mut self,
        input: &str,
        number: u64,
        error: &serde_json::Error,
    ) -> std::io::Result<()>;
    /// `input` could not be read to its end; the review goes on with the next.
    fn unreadable(&mut self, input: &str, error: &std::io::Error) -> std::io::Result<()>;
}

/// Reads every input, handing each selected record to `output` as it comes,
/// and returns what they add up to. Fails only when `output` does.
pub fn review(
    inputs: Vec<Input>,
    filter: &Filter,
    output: &mut dyn ReviewOutput,
) -> std::io::Result<ReviewTotals> {
    let mut totals = ReviewTotals::default();
    // Actions come before their message's record; a message is joined to
    // its shown actions by SQS message id.
    let mut joined: HashSet<String> = HashSet::new();
    let mut line = Vec::with_capacity(4096);
    for mut input in inputs {
        let mut number = 0u64;
        loop {
            line.clear();
            match input.reader.read_until(b'\n', &mut line) {
                Ok(0) => break,
                Ok(_) => number += 1,
                Err(e) => {
                    output.unreadable(&input.name, &e)?;
                    break;
                }
            }
            let text = line.trim_ascii();
            if text.is_empty() {
                continue;
            }
            let record = match AuditRecord::from_line(text) {
                Ok(r) => r,
                Err(e) => {
                    totals.malformed_lines += 1;
                    output.malformed(&input.name, number, &e)?;
                    continue;
                }
            };
            let shown = match &record {
                AuditRecord::Action(a) => {
                    let shown = filter.action(a);
                    if shown {
                        totals.add_action(a);
                        if filter.about_actions() {
                            joined.insert(a.sqs_message_id.clone());
                        }
                    }
                    shown
                }
                AuditRecord::Message(m) => {
                    let shown = filter.message(m)
                        && (!filter.about_actions() || joined.remove(&m.sqs_message_id));
                    if shown {
                        totals.add_message(m);
                    }
                    shown
                }
                AuditRecord::Operator(_) => false,
            };
            if shown {
                output.record(&record, text)?;
            }
        }
    }
    Ok(totals)
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::TRAIL;
    use super::*;
    use crate::event::parse_aws_time;

    /// Collects what a review shows.
    #[derive(Default)]
    struct Shown {
        records: Vec<AuditRecord>,
        malformed: Vec<(String, u64)>,
    }

    impl ReviewOutput for Shown {
        fn record(&mut self, record: &AuditRecord, _: &[u8]) -> std::io::Result<()> {
            self.records.push(record.clone());
            Ok(())
        }
        fn malformed(
            &mut self,
            input: &str,
            number: u64,
            _: &serde_json::Error,
        ) -> std::io::Result<()> {
            self.malformed.push((input.to_string(), number));
            Ok(())
        }
        fn unreadable(&mut self, _: &str, error: &std::io::Error) -> std::io::Result<()> {
            Err(std::io::Error::other(error.to_string()))
        }
    }

    fn run_review(filter: Filter) -> (ReviewTotals, Shown, ()) {
        let mut shown = Shown::default();
        let totals = review(
            vec![Input {
                name: "trail.jsonl".into(),
                reader: Box::new(std::io::Cursor::new(TRAIL.as_bytes().to_vec())),
            }],
            &filter,
            &mut shown,
        )
        .expect("reads");
        (totals, shown, ())
    }

    fn t(s: &str) -> Option<DateTime<Utc>> {
        parse_aws_time(s)
    }

    #[test]
    fn every_record_is_shown_once_and_the_malformed_line_named() {
        let (s, shown, ()) = run_review(Filter::default());
        assert_eq!(shown.records.len(), 5);
        assert_eq!(shown.malformed, [("trail.jsonl".to_string(), 3)]);
        assert_eq!((s.actions, s.messages, s.malformed_lines), (2, 3, 1));
        let kinds: Vec<&str> = shown
            .records
            .iter()
            .map(|r| match r {
                AuditRecord::Action(a) => a.outcome.label(),
                AuditRecord::Message(m) => m.disposition.label(),
                AuditRecord::Operator(_) => "operator",
            })
            .collect();
        assert_eq!(kinds, ["done", "ack", "suppressed", "ack", "dead_letter"]);
    }

    #[test]
    fn a_time_window_selects_actions_and_messages() {
        let filter = Filter {
            since: t("2026-01-12T16:45:00Z"),
            until: t("2026-01-12T17:01:00Z"),
            ..Filter::default()
        };
        let (s, _, _) = run_review(filter);
        assert_eq!((s.actions, s.messages), (1, 1));
        assert!(s.terminated.is_empty());
        let filter = Filter {
            until: t("2026-01-12T16:31:00.000Z"),
            ..Filter::default()
        };
        assert_eq!(run_review(filter).0.actions, 0, "until is exclusive");
    }

    #[test]
    fn action_filters_keep_only_the_messages_of_shown_actions() {
        let (s, _, _) = run_review(Filter {
            terminated: true,
            ..Filter::default()
        });
        assert_eq!((s.actions, s.messages), (1, 1));
        assert_eq!(s.dispositions.get("ack"), Some(&1));
        let (s, _, _) = run_review(Filter {
            suppressed: true,
            ..Filter::default()
        });
        assert_eq!((s.actions, s.messages), (1, 1));
        assert_eq!(s.actions_by_outcome.get("suppressed"), Some(&1));
        let (s, _, _) = run_review(Filter {
            guards: vec!["cooldown".into()],
            ..Filter::default()
        });
        assert_eq!((s.actions, s.messages), (0, 0));
    }

    #[test]
    fn rule_and_alarm_filters_apply_to_messages_too() {
        let (s, _, _) = run_review(Filter {
            rules: vec!["off".into()],
            ..Filter::default()
        });
        assert_eq!((s.actions, s.messages), (0, 1), "a skipped rule's message");
        let (s, _, _) = run_review(Filter {
            alarms: vec!["web-unhealthy".into()],
            ..Filter::default()
        });
        assert_eq!((s.actions, s.messages), (2, 2), "poison has no alarm");
    }
}
