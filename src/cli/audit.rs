//! `reflex audit`: the incident review's questions, answered from the audit
//! trail `reflex run` writes (see [`crate::audit`]) — what was terminated
//! between two times, which rules fired, what was suppressed and why.
//!
//! Streams its input: a table line (or a JSON record) per selected action as
//! it is read, then a summary. A malformed line is reported with its number
//! and skipped, so one torn write never hides the rest of a trail.

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use clap::builder::PossibleValuesParser;
use clap::Args;
use serde::{Deserialize, Serialize};

use super::exit;
use crate::event::{format_millis, parse_aws_time};
use crate::rules::limits::parse_duration;
use crate::rules::ActionKind;

/// Every action outcome label (`Outcome::label`).
pub const OUTCOMES: [&str; 8] = [
    "done",
    "dry_run",
    "nothing_to_do",
    "suppressed",
    "duplicate",
    "busy",
    "failed",
    "aborted",
];

/// The kinds that terminate instances.
const TERMINATING: [&str; 2] = [
    ActionKind::TerminateOutOfService.as_str(),
    ActionKind::TerminateInstance.as_str(),
];

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only records at or after TIME: RFC 3339 (`2026-01-12T16:00:00Z`), or
    /// a duration before now (`2h`, `30m`).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub since: Option<DateTime<Utc>>,
    /// Only records before TIME (same forms as --since).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub until: Option<DateTime<Utc>>,
    /// Only this rule's actions, and the messages it matched (repeatable).
    #[arg(long = "rule", value_name = "NAME")]
    pub rules: Vec<String>,
    /// Only this alarm's records (repeatable).
    #[arg(long = "alarm", value_name = "NAME")]
    pub alarms: Vec<String>,
    /// Only actions with this outcome (repeatable).
    #[arg(long = "outcome", value_name = "OUTCOME", value_parser = PossibleValuesParser::new(OUTCOMES))]
    pub outcomes: Vec<String>,
    /// Only actions of this kind (repeatable).
    #[arg(long = "kind", value_name = "KIND", value_parser = PossibleValuesParser::new(ActionKind::ALL.map(ActionKind::as_str)))]
    pub kinds: Vec<String>,
    /// Only actions stopped by this guard, e.g. `min_in_service` (repeatable).
    #[arg(long = "guard", value_name = "GUARD")]
    pub guards: Vec<String>,
    /// Only actions that terminated instances (`terminate_*`, outcome `done`).
    #[arg(long)]
    pub terminated: bool,
    /// Only actions a guard suppressed (same as `--outcome suppressed`).
    #[arg(long)]
    pub suppressed: bool,
    /// Print one JSON object: `{"records":[...],"summary":{...}}`.
    #[arg(long)]
    pub json: bool,
    /// Audit trail files, JSON lines (`-` for stdin).
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

/// An RFC 3339 time, or a duration before now.
fn parse_time(s: &str) -> Result<DateTime<Utc>, String> {
    if let Some(t) = parse_aws_time(s) {
        return Ok(t);
    }
    let ago = parse_duration(s).map_err(|_| {
        format!("{s:?} is neither a time (2026-01-12T16:00:00Z) nor a duration ago (2h)")
    })?;
    let ago = chrono::Duration::from_std(ago).map_err(|e| e.to_string())?;
    Ok(Utc::now() - ago)
}

/// One line of the trail, as read back. Lenient: fields a future version
/// adds are ignored, fields an older one lacked default.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Line {
    Action(Box<ActionLine>),
    Message(MessageLine),
    /// Other records (`operator`, from `reflex state forget-cooldown`): not
    /// about actions or messages, so not listed, and not malformed.
    #[serde(other)]
    Other,
}

#[derive(Debug, Deserialize)]
pub struct ActionLine {
    pub time: DateTime<Utc>,
    pub sqs_message_id: String,
    #[serde(default)]
    pub sns_message_id: Option<String>,
    #[serde(default)]
    pub alarm_name: String,
    pub rule: String,
    pub kind: String,
    #[serde(default)]
    pub target: String,
    #[serde(default)]
    pub targets: Vec<String>,
    pub outcome: String,
    #[serde(default)]
    pub guard: Option<String>,
    #[serde(default)]
    pub detail: Option<String>,
    #[serde(default)]
    pub numbers: BTreeMap<String, i64>,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub transient: Option<bool>,
    #[serde(default)]
    pub request_ids: Vec<String>,
    #[serde(default)]
    pub dry_run: bool,
    /// Caps that shrank the target list.
    #[serde(default)]
    pub capped: Vec<GuardLine>,
    /// Instances left out, and by which guard.
    #[serde(default)]
    pub excluded: Vec<ExcludedLine>,
}

#[derive(Debug, Deserialize)]
pub struct GuardLine {
    pub guard: String,
}

#[derive(Debug, Deserialize)]
pub struct ExcludedLine {
    pub instance_id: String,
    pub guard: String,
}

#[derive(Debug, Deserialize)]
pub struct MessageLine {
    pub time: DateTime<Utc>,
    pub sqs_message_id: String,
    #[serde(default)]
    pub alarm: Option<AlarmLine>,
    #[serde(default)]
    pub matched: Vec<String>,
    #[serde(default)]
    pub skipped: Vec<SkippedLine>,
    pub disposition: DispositionLine,
}

#[derive(Debug, Deserialize)]
pub struct AlarmLine {
    pub name: String,
}

#[derive(Debug, Deserialize)]
pub struct SkippedLine {
    pub rule: String,
}

#[derive(Debug, Deserialize)]
pub struct DispositionLine {
    pub kind: String,
    #[serde(default)]
    pub code: Option<String>,
}

impl ActionLine {
    pub fn terminated(&self) -> bool {
        self.outcome == "done" && TERMINATING.contains(&self.kind.as_str())
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

impl From<&AuditArgs> for Filter {
    fn from(a: &AuditArgs) -> Self {
        Filter {
            since: a.since,
            until: a.until,
            rules: a.rules.clone(),
            alarms: a.alarms.clone(),
            outcomes: a.outcomes.clone(),
            kinds: a.kinds.clone(),
            guards: a.guards.clone(),
            terminated: a.terminated,
            suppressed: a.suppressed,
        }
    }
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

    pub fn action(&self, a: &ActionLine) -> bool {
        self.in_window(&a.time)
            && any_or(&self.rules, &a.rule)
            && any_or(&self.alarms, &a.alarm_name)
            && any_or(&self.outcomes, &a.outcome)
            && any_or(&self.kinds, &a.kind)
            && (self.guards.is_empty() || a.guard.as_ref().is_some_and(|g| self.guards.contains(g)))
            && (!self.terminated || a.terminated())
            && (!self.suppressed || a.outcome == "suppressed")
    }

    /// Whether a message is shown, before joining it to its actions.
    pub fn message(&self, m: &MessageLine) -> bool {
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

/// What the selected records add up to.
#[derive(Debug, Default, PartialEq, Serialize)]
pub struct Summary {
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

impl Summary {
    fn saw(&mut self, t: &DateTime<Utc>) {
        let t = format_millis(t);
        if self.first.as_ref().is_none_or(|f| t < *f) {
            self.first = Some(t.clone());
        }
        if self.last.as_ref().is_none_or(|l| t > *l) {
            self.last = Some(t);
        }
    }

    pub fn add_action(&mut self, a: &ActionLine) {
        self.actions += 1;
        self.saw(&a.time);
        *self.actions_by_rule.entry(a.rule.clone()).or_default() += 1;
        *self.actions_by_kind.entry(a.kind.clone()).or_default() += 1;
        *self
            .actions_by_outcome
            .entry(a.outcome.clone())
            .or_default() += 1;
        if a.outcome == "suppressed" {
            let guard = a.guard.clone().unwrap_or_else(|| "unknown".to_string());
            *self.suppressed_by_guard.entry(guard).or_default() += 1;
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

    pub fn add_message(&mut self, m: &MessageLine) {
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
            .entry(m.disposition.kind.clone())
            .or_default() += 1;
        if let Some(code) = &m.disposition.code {
            *self.dead_letter_codes.entry(code.clone()).or_default() += 1;
        }
    }
}

/// One input: its name for messages, and its lines.
pub struct Input {
    pub name: String,
    pub reader: Box<dyn BufRead>,
}

/// Reads every input, writing the selected records to `out` (a table line
/// per action, or JSON) as they come and the summary at the end; problems
/// with the input go to `err`.
pub fn review(
    inputs: Vec<Input>,
    filter: &Filter,
    json: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> std::io::Result<Summary> {
    let mut summary = Summary::default();
    // Actions come before their message's record; a message is joined to
    // its shown actions by SQS message id.
    let mut joined: HashSet<String> = HashSet::new();
    let mut first_record = true;
    if json {
        out.write_all(b"{\"records\":[")?;
    } else {
        writeln!(
            out,
            "{:<24}  {:<28} {:<25} {:<24} {:<13} DETAIL",
            "TIME", "RULE", "KIND", "TARGET", "OUTCOME"
        )?;
    }
    let mut line = Vec::with_capacity(4096);
    for mut input in inputs {
        let mut number = 0u64;
        loop {
            line.clear();
            match input.reader.read_until(b'\n', &mut line) {
                Ok(0) => break,
                Ok(_) => number += 1,
                Err(e) => {
                    writeln!(err, "error: reading {}: {e}", input.name)?;
                    break;
                }
            }
            let text = line.trim_ascii();
            if text.is_empty() {
                continue;
            }
            let record = match serde_json::from_slice::<Line>(text) {
                Ok(r) => r,
                Err(e) => {
                    summary.malformed_lines += 1;
                    writeln!(
                        err,
                        "{}:{number}: skipped a malformed record: {e}",
                        input.name
                    )?;
                    continue;
                }
            };
            let shown = match &record {
                Line::Action(a) => {
                    let shown = filter.action(a);
                    if shown {
                        summary.add_action(a);
                        if filter.about_actions() {
                            joined.insert(a.sqs_message_id.clone());
                        }
                        if !json {
                            writeln!(out, "{}", table_line(a))?;
                        }
                    }
                    shown
                }
                Line::Message(m) => {
                    let shown = filter.message(m)
                        && (!filter.about_actions() || joined.remove(&m.sqs_message_id));
                    if shown {
                        summary.add_message(m);
                    }
                    shown
                }
                Line::Other => false,
            };
            if shown && json {
                if !first_record {
                    out.write_all(b",")?;
                }
                first_record = false;
                out.write_all(text)?;
            }
        }
    }
    if json {
        out.write_all(b"],\"summary\":")?;
        serde_json::to_writer(&mut *out, &summary)?;
        out.write_all(b"}\n")?;
    } else {
        print_summary(out, &summary)?;
    }
    out.flush()?;
    Ok(summary)
}

/// One action as a table line.
pub fn table_line(a: &ActionLine) -> String {
    let mut detail: Vec<String> = Vec::new();
    if !a.targets.is_empty() {
        detail.push(a.targets.join(","));
    }
    match a.outcome.as_str() {
        "suppressed" => {
            let numbers: Vec<String> = a.numbers.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let mut s = format!(
                "{}: {}",
                a.guard.as_deref().unwrap_or("?"),
                a.detail.as_deref().unwrap_or("")
            );
            if !numbers.is_empty() {
                s.push_str(&format!(" ({})", numbers.join(" ")));
            }
            detail.push(s);
        }
        "nothing_to_do" => detail.push(a.reason.clone().unwrap_or_default()),
        "failed" => detail.push(format!(
            "{}{}",
            a.error.as_deref().unwrap_or(""),
            if a.transient == Some(true) {
                " (transient)"
            } else {
                ""
            }
        )),
        _ => {}
    }
    if !a.capped.is_empty() {
        let caps: Vec<&str> = a.capped.iter().map(|c| c.guard.as_str()).collect();
        detail.push(format!("capped: {}", caps.join(",")));
    }
    if !a.excluded.is_empty() {
        let left: Vec<String> = a
            .excluded
            .iter()
            .map(|e| format!("{} ({})", e.instance_id, e.guard))
            .collect();
        detail.push(format!("excluded: {}", left.join(", ")));
    }
    if !a.request_ids.is_empty() {
        detail.push(format!("req: {}", a.request_ids.join(",")));
    }
    format!(
        "{:<24}  {:<28} {:<25} {:<24} {:<13} {}",
        format_millis(&a.time),
        a.rule,
        a.kind,
        a.target,
        a.outcome,
        detail.join("  ")
    )
    .trim_end()
    .to_string()
}

fn counts(out: &mut dyn Write, title: &str, map: &BTreeMap<String, u64>) -> std::io::Result<()> {
    if map.is_empty() {
        return Ok(());
    }
    writeln!(out, "{title}:")?;
    for (k, n) in map {
        writeln!(out, "  {k:<40} {n}")?;
    }
    Ok(())
}

fn print_summary(out: &mut dyn Write, s: &Summary) -> std::io::Result<()> {
    writeln!(out)?;
    write!(out, "{} action(s), {} message(s)", s.actions, s.messages)?;
    if let (Some(first), Some(last)) = (&s.first, &s.last) {
        write!(out, ", {first} .. {last}")?;
    }
    writeln!(out)?;
    counts(out, "rules fired (messages matched)", &s.rules_fired)?;
    counts(out, "actions by rule", &s.actions_by_rule)?;
    counts(out, "actions by outcome", &s.actions_by_outcome)?;
    if s.terminated.is_empty() {
        writeln!(out, "terminated: none")?;
    } else {
        writeln!(out, "terminated ({}):", s.terminated.len())?;
        for t in &s.terminated {
            writeln!(
                out,
                "  {}  {}  rule {}  {}  alarm {}  req {}",
                t.instance_id,
                t.time,
                t.rule,
                t.target,
                t.alarm_name,
                t.request_ids.join(",")
            )?;
        }
    }
    counts(out, "suppressed, by guard", &s.suppressed_by_guard)?;
    counts(out, "messages by disposition", &s.dispositions)?;
    counts(out, "dead-lettered, by code", &s.dead_letter_codes)?;
    counts(out, "rules matched but skipped", &s.skipped_rules)?;
    if s.malformed_lines > 0 {
        writeln!(out, "malformed lines skipped: {}", s.malformed_lines)?;
    }
    Ok(())
}

pub fn run(args: &AuditArgs) -> u8 {
    let mut inputs = Vec::new();
    for path in &args.files {
        if path.as_os_str() == "-" {
            inputs.push(Input {
                name: "<stdin>".to_string(),
                reader: Box::new(BufReader::new(std::io::stdin())),
            });
            continue;
        }
        match std::fs::File::open(path) {
            Ok(f) => inputs.push(Input {
                name: path.display().to_string(),
                reader: Box::new(BufReader::with_capacity(1 << 16, f)),
            }),
            Err(e) => eprintln!("error: cannot read {}: {e}", path.display()),
        }
    }
    if inputs.is_empty() {
        return exit::USAGE;
    }
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut err = std::io::stderr();
    match review(inputs, &Filter::from(args), args.json, &mut out, &mut err) {
        Ok(_) => exit::OK,
        // `reflex audit ... | head` is not an error.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => exit::OK,
        Err(e) => {
            eprintln!("error: writing the output: {e}");
            exit::USAGE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::Outcome;
    use crate::safety::{Guard, GuardTrip};

    const TRAIL: &str = r#"{"type":"action","time":"2026-01-12T16:31:00.000Z","sqs_message_id":"s1","sns_message_id":"n1","alarm_name":"web-unhealthy","rules_version":"v1","dry_run":false,"rule":"oos","action_index":0,"kind":"terminate_out_of_service","target":"elb:web","targets":["i-1"],"outcome":"done","capped":[{"guard":"max_instances","detail":"2 eligible","numbers":{"allowed":1}}],"excluded":[{"instance_id":"i-2","guard":"require_tag","reason":"untagged"}],"request_ids":["req-9"],"duration_ms":5,"aws_us":1,"waited_us":0}
{"type":"message","time":"2026-01-12T16:31:00.100Z","sqs_message_id":"s1","sns_message_id":"n1","receive_count":1,"alarm":{"name":"web-unhealthy"},"matched":["oos"],"skipped":[{"rule":"off","reason":"disabled"}],"actions":1,"outcomes":{"done":1},"disposition":{"kind":"ack"},"duration_ms":9}
not json at all
{"type":"action","time":"2026-01-12T17:00:00.000Z","sqs_message_id":"s2","alarm_name":"web-unhealthy","rule":"oos","kind":"terminate_out_of_service","target":"elb:web","targets":[],"outcome":"suppressed","guard":"min_in_service","detail":"too few in service","numbers":{"in_service":1,"min_in_service":2},"request_ids":[]}
{"type":"message","time":"2026-01-12T17:00:00.100Z","sqs_message_id":"s2","alarm":{"name":"web-unhealthy"},"matched":["oos"],"disposition":{"kind":"ack"}}
{"type":"message","time":"2026-01-12T17:05:00.000Z","sqs_message_id":"s3","alarm":null,"disposition":{"kind":"dead_letter","code":"not_json","reason":"x"}}
"#;

    fn run_review(filter: Filter, json: bool) -> (Summary, String, String) {
        let mut out = Vec::new();
        let mut err = Vec::new();
        let s = review(
            vec![Input {
                name: "trail.jsonl".into(),
                reader: Box::new(std::io::Cursor::new(TRAIL.as_bytes().to_vec())),
            }],
            &filter,
            json,
            &mut out,
            &mut err,
        )
        .expect("writes");
        (
            s,
            String::from_utf8(out).expect("utf8"),
            String::from_utf8(err).expect("utf8"),
        )
    }

    fn t(s: &str) -> Option<DateTime<Utc>> {
        parse_aws_time(s)
    }

    #[test]
    fn every_outcome_label_is_a_filter_value() {
        let trip = GuardTrip::new(Guard::Cooldown, "x");
        for o in [
            Outcome::Done,
            Outcome::DryRun,
            Outcome::NothingToDo { reason: "x".into() },
            Outcome::suppressed(trip),
            Outcome::Duplicate,
            Outcome::Busy,
            Outcome::Failed {
                transient: true,
                error: "x".into(),
            },
            Outcome::Aborted,
        ] {
            assert!(OUTCOMES.contains(&o.label()), "{}", o.label());
        }
    }

    #[test]
    fn everything_is_summed_and_a_malformed_line_is_reported() {
        let (s, out, err) = run_review(Filter::default(), false);
        assert_eq!(s.actions, 2);
        assert_eq!(s.messages, 3);
        assert_eq!(s.malformed_lines, 1);
        assert!(
            err.starts_with("trail.jsonl:3: skipped a malformed record"),
            "{err}"
        );
        assert_eq!(s.rules_fired.get("oos"), Some(&2));
        assert_eq!(s.skipped_rules.get("off"), Some(&1));
        assert_eq!(s.suppressed_by_guard.get("min_in_service"), Some(&1));
        assert_eq!(s.dead_letter_codes.get("not_json"), Some(&1));
        assert_eq!(s.dispositions.get("ack"), Some(&2));
        assert_eq!(s.terminated.len(), 1);
        assert_eq!(s.terminated[0].instance_id, "i-1");
        assert_eq!(s.terminated[0].request_ids, vec!["req-9".to_string()]);
        assert_eq!(s.first.as_deref(), Some("2026-01-12T16:31:00.000Z"));
        assert_eq!(s.last.as_deref(), Some("2026-01-12T17:05:00.000Z"));
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[0].starts_with("TIME"), "{out}");
        assert!(
            lines[1].contains(" done ")
                && lines[1].ends_with(
                    "i-1  capped: max_instances  excluded: i-2 (require_tag)  req: req-9"
                ),
            "{out}"
        );
        assert!(
            lines[2].contains("min_in_service: too few in service (in_service=1 min_in_service=2)"),
            "{out}"
        );
        assert!(
            out.contains("terminated (1):\n  i-1  2026-01-12T16:31:00.000Z"),
            "{out}"
        );
    }

    #[test]
    fn a_time_window_selects_actions_and_messages() {
        let filter = Filter {
            since: t("2026-01-12T16:45:00Z"),
            until: t("2026-01-12T17:01:00Z"),
            ..Filter::default()
        };
        let (s, _, _) = run_review(filter, false);
        assert_eq!((s.actions, s.messages), (1, 1));
        assert!(s.terminated.is_empty());
        let filter = Filter {
            until: t("2026-01-12T16:31:00.000Z"),
            ..Filter::default()
        };
        assert_eq!(run_review(filter, false).0.actions, 0, "until is exclusive");
    }

    #[test]
    fn action_filters_keep_only_the_messages_of_shown_actions() {
        let (s, _, _) = run_review(
            Filter {
                terminated: true,
                ..Filter::default()
            },
            false,
        );
        assert_eq!((s.actions, s.messages), (1, 1));
        assert_eq!(s.dispositions.get("ack"), Some(&1));
        let (s, _, _) = run_review(
            Filter {
                suppressed: true,
                ..Filter::default()
            },
            false,
        );
        assert_eq!((s.actions, s.messages), (1, 1));
        assert_eq!(s.actions_by_outcome.get("suppressed"), Some(&1));
        let (s, _, _) = run_review(
            Filter {
                guards: vec!["cooldown".into()],
                ..Filter::default()
            },
            false,
        );
        assert_eq!((s.actions, s.messages), (0, 0));
    }

    #[test]
    fn rule_and_alarm_filters_apply_to_messages_too() {
        let (s, _, _) = run_review(
            Filter {
                rules: vec!["off".into()],
                ..Filter::default()
            },
            false,
        );
        assert_eq!((s.actions, s.messages), (0, 1), "a skipped rule's message");
        let (s, _, _) = run_review(
            Filter {
                alarms: vec!["web-unhealthy".into()],
                ..Filter::default()
            },
            false,
        );
        assert_eq!((s.actions, s.messages), (2, 2), "poison has no alarm");
    }

    #[test]
    fn json_is_one_object_with_the_records_verbatim() {
        let (_, out, _) = run_review(
            Filter {
                terminated: true,
                ..Filter::default()
            },
            true,
        );
        assert_eq!(out.lines().count(), 1);
        let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
        let records = v["records"].as_array().expect("records");
        assert_eq!(records.len(), 2);
        assert_eq!(records[0]["type"], "action");
        assert_eq!(records[0]["request_ids"][0], "req-9");
        assert_eq!(records[1]["type"], "message");
        assert_eq!(v["summary"]["terminated"][0]["instance_id"], "i-1");
    }

    #[test]
    fn times_are_absolute_or_ago() {
        assert_eq!(
            parse_time("2026-01-12T16:00:00Z").map(|t| format_millis(&t)),
            Ok("2026-01-12T16:00:00.000Z".to_string())
        );
        let ago = parse_time("2h").expect("duration");
        let expected = Utc::now() - chrono::Duration::hours(2);
        assert!((ago - expected).num_seconds().abs() < 5);
        assert!(parse_time("last tuesday").is_err());
    }
}
