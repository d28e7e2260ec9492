//! `reflex dlq inspect` and `reflex dlq redrive`: the operator's view of the
//! dead-letter queue, and the way back to the alarm queue after a fix. The
//! logic is in [`crate::dlq`]; this is arguments, AWS wiring and printing.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};

use super::exit;
use crate::aws::sdk::{Clients, SqsQueue};
use crate::aws::timeouts::AwsTimeouts;
use crate::config::{Config, Overrides};
use crate::dlq::{self, InspectOptions, Inspection, RedriveOptions, RedriveReport, RedriveScope};
use crate::rules::limits::parse_duration;

#[derive(Debug, Args)]
pub struct DlqArgs {
    #[command(subcommand)]
    pub command: DlqCommand,
}

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// List the DLQ's messages grouped by reason code, with samples. Consumes
    /// nothing: every message is made visible again at the end.
    Inspect(InspectArgs),
    /// Move DLQ messages back to the alarm queue, bodies unchanged, once the
    /// cause is fixed. Each is deleted from the DLQ only after the send
    /// succeeded. Exit 1 if any message failed to move.
    Redrive(RedriveArgs),
}

/// Where the queues are: the same resolution as `reflex run`.
#[derive(Debug, Clone, Args)]
pub struct QueueArgs {
    /// reflex's configuration file: its `queue_url` and
    /// `dead_letter_queue_url` are used (flags override them). It is checked
    /// as strictly as by `reflex run`.
    #[arg(long, value_name = "FILE", env = "REFLEX_CONFIG")]
    pub config: Option<PathBuf>,
    /// The dead-letter queue's URL.
    #[arg(long = "dlq-url", value_name = "URL", env = "REFLEX_DLQ_URL")]
    pub dlq_url: Option<String>,
    /// The alarm queue's URL: where `redrive` sends messages.
    #[arg(long = "queue-url", value_name = "URL", env = "REFLEX_QUEUE_URL")]
    pub queue_url: Option<String>,
    /// How long messages stay hidden from other consumers while the DLQ is
    /// walked; those not moved are made visible again at the end. Must
    /// outlast the walk: a message whose visibility runs out mid-walk may be
    /// seen again, which ends the walk early.
    #[arg(long, value_name = "DURATION", default_value = "2m", value_parser = parse_duration)]
    pub visibility: Duration,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    #[command(flatten)]
    pub queues: QueueArgs,
    /// Most messages to look at.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub max: usize,
    /// Sample messages shown per reason code.
    #[arg(long, value_name = "K", default_value_t = 2)]
    pub samples: usize,
    /// Longest body shown in a sample, in characters.
    #[arg(long, value_name = "CHARS", default_value_t = 300)]
    pub body_chars: usize,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RedriveArgs {
    #[command(flatten)]
    pub queues: QueueArgs,
    /// Move only messages with this reason code (repeatable; default: all).
    /// Messages SQS moved after maxReceiveCount have the code
    /// `max_receive_count`.
    #[arg(long = "code", value_name = "CODE")]
    pub codes: Vec<String>,
    /// Most messages to move.
    #[arg(long, value_name = "N")]
    pub max: Option<usize>,
    /// Send to this queue instead of the alarm queue, whatever each message's
    /// `SourceQueueUrl` says. Without it, messages from another queue than
    /// the alarm queue are refused (left in the DLQ). A message with no
    /// `SourceQueueUrl` (reflex did not dead-letter it) is always refused.
    #[arg(long, value_name = "URL")]
    pub to: Option<String>,
    /// Report what would move; move nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// The resolved queue URLs.
struct Urls {
    dlq: String,
    queue: Option<String>,
}

impl QueueArgs {
    fn urls(&self) -> Result<Urls, u8> {
        if let Some(path) = &self.config {
            let overrides = Overrides {
                queue_url: self.queue_url.clone(),
                dead_letter_queue_url: self.dlq_url.clone(),
                ..Overrides::default()
            };
            return match Config::load(Some(path), overrides) {
                Ok(c) => Ok(Urls {
                    dlq: c.dead_letter_queue_url,
                    queue: Some(c.queue_url),
                }),
                Err(errors) => {
                    for e in &errors {
                        eprintln!("{e}");
                    }
                    Err(exit::USAGE)
                }
            };
        }
        match &self.dlq_url {
            Some(dlq) => Ok(Urls {
                dlq: dlq.clone(),
                queue: self.queue_url.clone(),
            }),
            None => {
                eprintln!(
                    "error: no dead-letter queue URL: set --dlq-url, REFLEX_DLQ_URL or --config"
                );
                Err(exit::USAGE)
            }
        }
    }
}

/// Runs `reflex dlq ...` and returns the exit code.
pub async fn run(args: DlqArgs) -> u8 {
    match args.command {
        DlqCommand::Inspect(a) => inspect(a).await,
        DlqCommand::Redrive(a) => redrive(a).await,
    }
}

async fn inspect(args: InspectArgs) -> u8 {
    let urls = match args.queues.urls() {
        Ok(u) => u,
        Err(code) => return code,
    };
    let clients = Clients::from_env(&AwsTimeouts::default()).await;
    let dlq = SqsQueue::new(clients.sqs, urls.dlq, AwsTimeouts::default());
    let options = InspectOptions {
        max: args.max,
        samples: args.samples,
        body_chars: args.body_chars,
        visibility: args.queues.visibility,
    };
    match dlq::inspect(&dlq, &options).await {
        Ok(found) => {
            if args.json {
                println!("{}", serde_json::to_string(&found).unwrap_or_default());
            } else {
                print!("{}", render_inspection(&found));
            }
            exit::OK
        }
        Err(e) => {
            eprintln!("error: cannot read the DLQ: {e}");
            exit::FAILED
        }
    }
}

async fn redrive(args: RedriveArgs) -> u8 {
    let urls = match args.queues.urls() {
        Ok(u) => u,
        Err(code) => return code,
    };
    let Some(target) = args.to.clone().or(urls.queue) else {
        eprintln!(
            "error: nowhere to send messages: set --queue-url, REFLEX_QUEUE_URL, --config or --to"
        );
        return exit::USAGE;
    };
    if target.trim_end_matches('/') == urls.dlq.trim_end_matches('/') {
        eprintln!("error: the target queue is the DLQ itself");
        return exit::USAGE;
    }
    let clients = Clients::from_env(&AwsTimeouts::default()).await;
    let dlq = SqsQueue::new(clients.sqs.clone(), urls.dlq, AwsTimeouts::default());
    let queue = SqsQueue::new(clients.sqs, target.clone(), AwsTimeouts::default());
    let options = RedriveOptions {
        scope: RedriveScope {
            codes: args.codes,
            target_url: target,
            any_source: args.to.is_some(),
        },
        max: args.max,
        dry_run: args.dry_run,
        visibility: args.queues.visibility,
    };
    let report = dlq::redrive(&dlq, &queue, &options).await;
    if args.json {
        println!("{}", serde_json::to_string(&report).unwrap_or_default());
    } else {
        print!("{}", render_redrive(&report));
    }
    if report.ok() {
        exit::OK
    } else {
        exit::FAILED
    }
}

/// The human-readable inspection.
pub fn render_inspection(found: &Inspection) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let groups = found.groups.len();
    let _ = writeln!(
        out,
        "DLQ {}: {} message(s) in {groups} group(s){}; none consumed{}.",
        found.dlq_url,
        found.scanned,
        if found.complete {
            ""
        } else {
            " (stopped at --max; there may be more)"
        },
        match found.release_failures {
            0 => String::new(),
            n => format!(
                ", but {n} could not be released and stay hidden until their visibility times out"
            ),
        },
    );
    for g in &found.groups {
        let _ = write!(out, "\n{}: {} message(s)", g.code, g.count);
        match (&g.earliest, &g.latest) {
            (Some(first), Some(last)) if first == last => {
                let _ = write!(out, ", received {first}");
            }
            (Some(first), Some(last)) => {
                let _ = write!(out, ", first received {first}, last {last}");
            }
            _ => {}
        }
        out.push('\n');
        if let Some(note) = g.note {
            let _ = writeln!(out, "  ({note})");
        }
        for s in &g.samples {
            let _ = write!(out, "  - {}", s.message_id);
            if let Some(original) = &s.original_message_id {
                let _ = write!(out, " (was {original}");
                if let Some(n) = s.receive_count {
                    let _ = write!(out, ", received {n} time(s)");
                }
                out.push(')');
            }
            out.push('\n');
            if let Some(reason) = &s.reason {
                let _ = writeln!(out, "    reason: {reason}");
            }
            // One line per body: pretty-printed JSON (as SNS delivers it)
            // is folded; `--json` has the body as it is.
            let body: Vec<&str> = s.body.split_whitespace().collect();
            let _ = writeln!(
                out,
                "    body:   {}{}",
                body.join(" "),
                if s.body_truncated { "…" } else { "" }
            );
        }
    }
    out
}

/// The human-readable redrive report.
pub fn render_redrive(r: &RedriveReport) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} {} to {}",
        if r.dry_run {
            "Dry run: redrive from"
        } else {
            "Redrive from"
        },
        r.dlq_url,
        r.target_url
    );
    for m in &r.moves {
        let _ = write!(
            out,
            "  {} {} ({})",
            if r.dry_run { "would move" } else { "moved" },
            m.message_id,
            m.code
        );
        if let Some(new) = &m.new_message_id {
            let _ = write!(out, " -> {new}");
        }
        out.push('\n');
    }
    for p in &r.problems {
        let _ = writeln!(out, "  {} failed for {}: {}", p.step, p.message_id, p.error);
    }
    let _ = writeln!(
        out,
        "received {}, {} {}, skipped {} (other codes), refused {} (other or no source queue), failed {}{}",
        r.received,
        if r.dry_run { "would move" } else { "moved" },
        if r.dry_run { r.selected } else { r.moved },
        r.skipped,
        r.refused,
        r.failed,
        match r.not_deleted {
            0 => String::new(),
            n => format!(", not deleted from the DLQ after the send {n} (now in both queues)"),
        },
    );
    if let Some(e) = &r.error {
        let _ = writeln!(out, "stopped early: {e}");
    } else if !r.complete {
        let _ = writeln!(out, "stopped at --max; more may be left");
    }
    if r.release_failures > 0 {
        let _ = writeln!(
            out,
            "{} message(s) could not be released; they stay hidden until their visibility times out",
            r.release_failures
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dlq::{Group, Moved, Problem, Sample};
    use clap::Parser;

    #[test]
    fn renders_an_inspection() {
        let found = Inspection {
            dlq_url: "https://q/dlq".into(),
            scanned: 2,
            complete: true,
            release_failures: 0,
            groups: vec![Group {
                code: "untrusted_topic".into(),
                count: 2,
                note: None,
                earliest: Some("2024-05-01T10:00:00.000Z".into()),
                latest: Some("2024-05-01T10:05:00.000Z".into()),
                samples: vec![Sample {
                    message_id: "d1".into(),
                    original_message_id: Some("o1".into()),
                    reason: Some("topic not trusted".into()),
                    receive_count: Some(1),
                    source_queue_url: Some("https://q/alarms".into()),
                    first_received_at: None,
                    body: "{\"Type\"".into(),
                    body_truncated: true,
                }],
            }],
        };
        assert_eq!(
            render_inspection(&found),
            "DLQ https://q/dlq: 2 message(s) in 1 group(s); none consumed.\n\
             \n\
             untrusted_topic: 2 message(s), first received 2024-05-01T10:00:00.000Z, last 2024-05-01T10:05:00.000Z\n  \
             - d1 (was o1, received 1 time(s))\n    \
             reason: topic not trusted\n    \
             body:   {\"Type\"…\n"
        );
    }

    #[test]
    fn renders_a_redrive() {
        let r = RedriveReport {
            dlq_url: "https://q/dlq".into(),
            target_url: "https://q/alarms".into(),
            received: 3,
            selected: 2,
            moved: 1,
            skipped: 1,
            failed: 1,
            complete: true,
            moves: vec![Moved {
                message_id: "d1".into(),
                code: "not_json".into(),
                original_message_id: None,
                new_message_id: Some("n1".into()),
            }],
            problems: vec![Problem {
                message_id: "d2".into(),
                step: "send",
                error: "throttled".into(),
            }],
            ..RedriveReport::default()
        };
        assert_eq!(
            render_redrive(&r),
            "Redrive from https://q/dlq to https://q/alarms\n  \
             moved d1 (not_json) -> n1\n  \
             send failed for d2: throttled\n\
             received 3, moved 1, skipped 1 (other codes), refused 0 (other or no source queue), failed 1\n"
        );
    }

    #[test]
    fn parses_the_redrive_flags() {
        let cli = crate::cli::Cli::try_parse_from([
            "reflex",
            "dlq",
            "redrive",
            "--dlq-url",
            "https://q/dlq",
            "--code",
            "a",
            "--code",
            "b",
            "--max",
            "3",
            "--dry-run",
            "--visibility",
            "30s",
        ])
        .expect("parses");
        let crate::cli::Command::Dlq(DlqArgs {
            command: DlqCommand::Redrive(a),
        }) = cli.command
        else {
            panic!("not dlq redrive: {cli:?}");
        };
        assert_eq!(a.codes, ["a", "b"]);
        assert_eq!(a.max, Some(3));
        assert!(a.dry_run);
        assert_eq!(a.queues.visibility, Duration::from_secs(30));
    }
}
