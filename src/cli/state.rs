//! `reflex state`: "why didn't it act?" without reading logs. Lists the
//! transitions handled recently with their outcome, running cooldowns with
//! the time left, rate buckets with the capacity left, and target leases
//! with their holder; filters by rule and target. `reflex state
//! forget-cooldown RULE TARGET --yes` clears one cooldown after a manual fix
//! and leaves an audit record.
//!
//! It reads the store `[state]` names: a DynamoDB table at any time; a
//! local file only while no reflex holds it (the file is locked by the
//! running daemon).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use serde::Serialize;

use super::exit;
use crate::config::ConfigSpec;
use crate::rules::limits::format_duration;
use crate::rules::source::{parse_toml, SourceFile};
use crate::state::config::{StateConfig, StateOverrides};
use crate::state::{decide, Snapshot, StateStore};

#[derive(Debug, Args)]
pub struct StateArgs {
    #[command(subcommand)]
    pub command: Option<StateCommand>,
    /// reflex's configuration file: its `[state]` section is used
    /// (`REFLEX_STATE_*` override it).
    #[arg(long, value_name = "FILE", env = "REFLEX_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Only this rule.
    #[arg(long)]
    pub rule: Option<String>,
    /// Only this target (`elb:web`, `instance:i-0abc`), or a part of it.
    #[arg(long)]
    pub target: Option<String>,
    /// One JSON document instead of tables.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum StateCommand {
    /// Clear the cooldown of RULE on TARGET, e.g. after a manual fix.
    ForgetCooldown(ForgetArgs),
}

#[derive(Debug, Args)]
pub struct ForgetArgs {
    pub rule: String,
    pub target: String,
    /// Really clear it.
    #[arg(long)]
    pub yes: bool,
}

/// Reads `[state]` only: the queues are not needed to look at state.
pub fn load_state_config(path: Option<&Path>) -> Result<StateConfig, Vec<String>> {
    let file = match path {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .map_err(|e| vec![format!("{}:1:1: cannot read config: {e}", p.display())])?;
            SourceFile::new(p, text)
        }
        None => SourceFile::new(Path::new("<flags>"), String::new()),
    };
    let spec: ConfigSpec = parse_toml(&file).map_err(|e| vec![e.to_string()])?;
    let mut errors = Vec::new();
    let state = spec
        .state
        .check(&file, &StateOverrides::from_env(), &mut errors);
    if errors.is_empty() {
        Ok(state)
    } else {
        Err(errors.iter().map(ToString::to_string).collect())
    }
}

pub async fn run(args: StateArgs) -> u8 {
    let config = match load_state_config(args.config.as_deref()) {
        Ok(c) => c,
        Err(errors) => {
            for e in errors {
                eprintln!("{e}");
            }
            return exit::USAGE;
        }
    };
    let store = match crate::daemon::open_state_store(&config).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::USAGE;
        }
    };
    match &args.command {
        Some(StateCommand::ForgetCooldown(f)) => forget(&*store, f).await,
        None => list(&*store, &args).await,
    }
}

async fn forget(store: &dyn StateStore, f: &ForgetArgs) -> u8 {
    let now = Utc::now();
    let left = match store.cooldown(&f.rule, &f.target, now).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::USAGE;
        }
    };
    let Some(left) = left else {
        println!(
            "No cooldown of {} on {} is running; nothing to do.",
            f.rule, f.target
        );
        return exit::OK;
    };
    if !f.yes {
        eprintln!(
            "The cooldown of {} on {} has {} left. Add --yes to clear it.",
            f.rule,
            f.target,
            format_duration(whole_seconds(left))
        );
        return exit::USAGE;
    }
    match store.forget_cooldown(&f.rule, &f.target).await {
        Ok(_) => {
            // The audit record, in the trail's own format, on stdout (the
            // default audit sink; `reflex audit` reads it back).
            let record = crate::audit::AuditRecord::Operator(Box::new(
                crate::audit::records::OperatorRecord {
                    time: now,
                    command: "forget-cooldown".to_string(),
                    rule: f.rule.clone(),
                    target: f.target.clone(),
                    detail: format!("cleared a cooldown with {}s left", left.as_secs()),
                    user: std::env::var("USER").ok(),
                    store: store.describe(),
                },
            ));
            println!("{}", serde_json::to_string(&record).unwrap_or_default());
            tracing::info!(rule = %f.rule, target = %f.target, remaining_s = left.as_secs(), "Cooldown cleared by an operator.");
            exit::OK
        }
        Err(e) => {
            eprintln!("error: {e}");
            exit::USAGE
        }
    }
}

fn whole_seconds(d: Duration) -> Duration {
    Duration::from_secs(d.as_secs().max(1))
}

#[derive(Serialize)]
struct Listing {
    store: String,
    now: String,
    transitions: Vec<serde_json::Value>,
    cooldowns: Vec<serde_json::Value>,
    rates: Vec<serde_json::Value>,
    targets: Vec<serde_json::Value>,
}

fn ago(now: i64, t: i64) -> String {
    if t > now {
        format!(
            "in {}",
            format_duration(Duration::from_secs(((t - now) / 1000).max(0) as u64))
        )
    } else {
        format!(
            "{} ago",
            format_duration(Duration::from_secs(((now - t) / 1000) as u64))
        )
    }
}

fn listing(
    snap: &Snapshot,
    store: String,
    now: DateTime<Utc>,
    rule: Option<&str>,
    target: Option<&str>,
) -> Listing {
    let now_ms = decide::millis(now);
    let rule_ok = |r: &str| rule.is_none_or(|x| x == r);
    let target_ok = |t: &str| target.is_none_or(|x| t.contains(x));
    let mut claims: Vec<_> = snap
        .claims
        .iter()
        .filter(|c| rule_ok(&c.rule) && target_ok(&c.target))
        .collect();
    claims.sort_by_key(|c| std::cmp::Reverse(c.done_at.unwrap_or(c.claimed_at)));
    let transitions = claims
        .iter()
        .map(|c| {
            serde_json::json!({
                "key": c.key, "rule": c.rule, "target": c.target,
                "status": c.status.as_str(),
                "outcome": c.outcome, "owner": c.owner,
                "at": crate::event::format_millis(&decide::time(c.done_at.unwrap_or(c.claimed_at))),
                "lease_until": (c.status == crate::state::ClaimStatus::InProgress).then(|| crate::event::format_millis(&decide::time(c.lease_until))),
                "taken_over_from": c.previous_owner, "takeovers": c.takeovers,
            })
        })
        .collect();
    let cooldowns = snap
        .cooldowns
        .iter()
        .filter(|c| c.until > now_ms && rule_ok(&c.rule) && target_ok(&c.target))
        .map(|c| {
            serde_json::json!({
                "rule": c.rule, "target": c.target,
                "remaining_s": (c.until - now_ms) / 1000,
                "until": crate::event::format_millis(&decide::time(c.until)),
            })
        })
        .collect();
    let rates = snap
        .rates
        .iter()
        .filter(|r| {
            rule.is_none_or(|x| r.bucket == format!("rule {x}") || !r.bucket.starts_with("rule "))
        })
        .map(|r| {
            let capacity = crate::rules::Rate::parse(&r.rate).ok().map(|rate| {
                decide::capacity(
                    Some(r.tat),
                    &crate::state::RateTake {
                        bucket: r.bucket.clone(),
                        rate,
                        n: 1,
                    },
                    now_ms,
                )
            });
            serde_json::json!({
                "bucket": r.bucket, "rate": r.rate, "capacity_left": capacity,
                "full_at": crate::event::format_millis(&decide::time(r.tat.max(now_ms))),
            })
        })
        .collect();
    let targets = snap
        .targets
        .iter()
        .filter(|t| t.lease_until > now_ms && target_ok(&t.target))
        .map(|t| {
            serde_json::json!({
                "target": t.target, "holder": t.owner,
                "remaining_s": (t.lease_until - now_ms) / 1000,
                "since": crate::event::format_millis(&decide::time(t.acquired_at)),
            })
        })
        .collect();
    Listing {
        store,
        now: crate::event::format_millis(&now),
        transitions,
        cooldowns,
        rates,
        targets,
    }
}

async fn list(store: &dyn StateStore, args: &StateArgs) -> u8 {
    let snap = match store.snapshot().await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::USAGE;
        }
    };
    let now = Utc::now();
    let l = listing(
        &snap,
        store.describe(),
        now,
        args.rule.as_deref(),
        args.target.as_deref(),
    );
    if args.json {
        println!("{}", serde_json::to_string_pretty(&l).unwrap_or_default());
        return exit::OK;
    }
    let now_ms = decide::millis(now);
    let mut out = std::io::stdout().lock();
    let _ = print_text(&mut out, &l, now_ms);
    exit::OK
}

fn print_text(out: &mut impl Write, l: &Listing, now_ms: i64) -> std::io::Result<()> {
    let s = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "-".to_string(),
        other => other.to_string(),
    };
    writeln!(out, "store: {}", l.store)?;
    writeln!(out, "\nTransitions handled ({}):", l.transitions.len())?;
    for t in &l.transitions {
        let when = chrono::DateTime::parse_from_rfc3339(&s(&t["at"]))
            .map(|d| ago(now_ms, d.timestamp_millis()))
            .unwrap_or_else(|_| s(&t["at"]));
        let takeover = match &t["taken_over_from"] {
            serde_json::Value::String(p) => format!(" (taken over from {p} after a crash)"),
            _ => String::new(),
        };
        writeln!(
            out,
            "  {:<11} {:<24} {:<24} {:<28} {when}, by {}{takeover}",
            s(&t["status"]),
            s(&t["rule"]),
            s(&t["target"]),
            s(&t["outcome"]),
            s(&t["owner"]),
        )?;
    }
    writeln!(out, "\nCooldowns running ({}):", l.cooldowns.len())?;
    for c in &l.cooldowns {
        let left = c["remaining_s"].as_i64().unwrap_or(0).max(0) as u64;
        writeln!(
            out,
            "  {:<24} {:<28} {} left",
            s(&c["rule"]),
            s(&c["target"]),
            format_duration(Duration::from_secs(left.max(1)))
        )?;
    }
    writeln!(out, "\nRate buckets ({}):", l.rates.len())?;
    for r in &l.rates {
        writeln!(
            out,
            "  {:<32} {:<10} {} left",
            s(&r["bucket"]),
            s(&r["rate"]),
            s(&r["capacity_left"])
        )?;
    }
    writeln!(out, "\nTarget leases ({}):", l.targets.len())?;
    for t in &l.targets {
        writeln!(
            out,
            "  {:<32} held by {} ({}s left)",
            s(&t["target"]),
            s(&t["holder"]),
            s(&t["remaining_s"])
        )?;
    }
    Ok(())
}

/// For tests: the listing as JSON.
pub fn listing_json(
    snap: &Snapshot,
    now: DateTime<Utc>,
    rule: Option<&str>,
    target: Option<&str>,
) -> serde_json::Value {
    serde_json::to_value(listing(snap, "test".into(), now, rule, target)).unwrap_or_default()
}

/// Keeps the store type nameable for callers that build one.
pub type Store = Arc<dyn StateStore>;
