//! `reflex audit`: the incident review's questions, answered from the audit
//! trail `reflex run` writes (see [`crate::audit`]) — what was terminated
//! between two times, which rules fired, what was suppressed and why.
//!
//! This is the arguments and the rendering; selecting and summing records
//! is [`crate::audit::review`]. Streams its input: a table line (or a JSON
//! record) per selected action as it is read, then the totals. A malformed
//! line is reported with its number and skipped, so one torn write never
//! hides the rest of a trail.

use std::collections::BTreeMap;
use std::io::{BufReader, Write};
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use clap::builder::PossibleValuesParser;
use clap::Args;

use super::exit;
use crate::audit::review::{Filter, Input, ReviewOutput, ReviewTotals};
use crate::audit::{ActionRecord, AuditRecord, OutcomeRecord};
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

/// Renders a review as it goes: a table line per selected action, or the
/// selected records verbatim inside one JSON object; input problems to `err`.
struct Render<'a> {
    json: bool,
    first_record: bool,
    out: &'a mut dyn Write,
    err: &'a mut dyn Write,
}

impl ReviewOutput for Render<'_> {
    fn record(&mut self, record: &AuditRecord, line: &[u8]) -> std::io::Result<()> {
        if self.json {
            if !self.first_record {
                self.out.write_all(b",")?;
            }
            self.first_record = false;
            self.out.write_all(line)
        } else if let AuditRecord::Action(a) = record {
            writeln!(self.out, "{}", table_line(a))
        } else {
            Ok(())
        }
    }

    fn malformed(
        &mut self,
        input: &str,
        number: u64,
        error: &serde_json::Error,
    ) -> std::io::Result<()> {
        writeln!(
            self.err,
            "{input}:{number}: skipped a malformed record: {error}"
        )
    }

    fn unreadable(&mut self, input: &str, error: &std::io::Error) -> std::io::Result<()> {
        writeln!(self.err, "error: reading {input}: {error}")
    }
}

/// Reads every input, writing the selected records to `out` (a table line
/// per action, or JSON) as they come and the totals at the end; problems
/// with the input go to `err`.
pub fn review(
    inputs: Vec<Input>,
    filter: &Filter,
    json: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> std::io::Result<ReviewTotals> {
    if json {
        out.write_all(b"{\"records\":[")?;
    } else {
        writeln!(
            out,
            "{:<24}  {:<28} {:<25} {:<24} {:<13} DETAIL",
            "TIME", "RULE", "KIND", "TARGET", "OUTCOME"
        )?;
    }
    let mut render = Render {
        json,
        first_record: true,
        out: &mut *out,
        err,
    };
    let totals = crate::audit::review::review(inputs, filter, &mut render)?;
    if json {
        out.write_all(b"],\"summary\":")?;
        serde_json::to_writer(&mut *out, &totals)?;
        out.write_all(b"}\n")?;
    } else {
        print_summary(out, &totals)?;
    }
    out.flush()?;
    Ok(totals)
}

/// One action as a table line.
pub fn table_line(a: &ActionRecord) -> String {
    let mut detail: Vec<String> = Vec::new();
    if !a.targets.is_empty() {
        detail.push(a.targets.join(","));
    }
    match &a.outcome {
        OutcomeRecord::Suppressed {
            guard,
            detail: why,
            numbers,
        } => {
            let numbers: Vec<String> = numbers.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let mut s = format!("{guard}: {why}");
            if !numbers.is_empty() {
                s.push_str(&format!(" ({})", numbers.join(" ")));
            }
            detail.push(s);
        }
        OutcomeRecord::NothingToDo { reason } => detail.push(reason.clone()),
        OutcomeRecord::Failed { transient, error } => detail.push(format!(
            "{error}{}",
            if *transient { " (transient)" } else { "" }
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
        a.kind.as_str(),
        a.target,
        a.outcome.label(),
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

fn print_summary(out: &mut dyn Write, s: &ReviewTotals) -> std::io::Result<()> {
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
    use crate::audit::fixtures::TRAIL;
    use crate::outcome::Outcome;
    use crate::safety::{Guard, GuardTrip};

    fn run_review(filter: Filter, json: bool) -> (ReviewTotals, String, String) {
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
