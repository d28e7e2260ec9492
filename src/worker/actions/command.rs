//! SSM Run Command: shell lines run with `AWS-RunShellScript` on the
//! instance the event names (`run_command`) or on a pool's bad instances
//! (method `run_command`), and the wait for their outcome. The action's
//! outcome is the invocations' status: done only when every one succeeded.
//!
//! Instances SSM does not manage (or whose agent is not `Online`) are
//! refused before anything is sent: the command could not run there, and
//! `SendCommand` would fail for all of them.

use std::collections::BTreeMap;
use std::time::Duration;

use tracing::{info, warn};

use super::{failed, Findings, Run};
use crate::aws::{AwsError, CommandRequest, Invocation, InvocationStatus};
use crate::outcome::Outcome;
use crate::rules::action::RunCommand;
use crate::rules::limits::format_duration;
use crate::safety::blast_radius::{self, Excluded};

/// The first pause before asking for the invocations' status; it doubles
/// up to [`POLL_MAX`].
const POLL_FIRST: Duration = Duration::from_secs(1);
const POLL_MAX: Duration = Duration::from_secs(5);
/// How long past the command's own `timeout` reflex waits for SSM to
/// report the invocations finished (the agent's delivery and reporting).
const REPORT_SLACK: Duration = Duration::from_secs(30);
/// SSM's limit on `Comment`.
const COMMENT_MAX: usize = 100;

/// The instances of `ids` a command must not be sent to, with the reason.
pub(super) async fn refusals(
    run: &Run<'_>,
    ids: &[String],
    findings: &mut Findings,
) -> Result<Vec<Excluded>, AwsError> {
    let managed = findings.aws(run.effects.ssm.managed(ids)).await?;
    Ok(blast_radius::ssm_refusals(ids, &managed))
}

/// Sends `command` to `targets` and waits until every invocation has
/// finished, or the command's timeout (plus a margin for SSM to report)
/// has passed. Nothing here is cancelled by shutdown: the command runs on
/// the instances whatever reflex does, so reflex waits for its outcome.
pub(super) async fn send_and_wait(
    run: &Run<'_>,
    targets: &[String],
    command: &RunCommand<String>,
    findings: &mut Findings,
) -> Outcome {
    let ssm = &run.effects.ssm;
    let request = CommandRequest {
        instance_ids: targets.to_vec(),
        commands: command.commands.clone(),
        max_concurrency: command.max_concurrency.clone(),
        max_errors: command.max_errors.clone(),
        execution_timeout: command.timeout,
        comment: comment(&run.ctx.matched.rule.name, &run.ctx.event.alarm_name),
    };
    let command_id = match findings.aws(ssm.send_command(&request)).await {
        Ok(id) => id,
        Err(e) => return failed(&e),
    };
    findings.request(Some(command_id.clone()));
    if run.dry_run() {
        return Outcome::DryRun;
    }
    info!(command_id = %command_id, instances = ?targets, "Command sent; waiting for its invocations.");
    let deadline = tokio::time::Instant::now() + command.timeout + REPORT_SLACK;
    let mut finished: BTreeMap<String, Invocation> = BTreeMap::new();
    let mut pause = POLL_FIRST;
    loop {
        findings.wait(tokio::time::sleep(pause)).await;
        pause = (pause * 2).min(POLL_MAX);
        for id in targets {
            if finished.contains_key(id) {
                continue;
            }
            match findings.aws(ssm.invocation(&command_id, id)).await {
                Ok(Some(inv)) if inv.status.is_terminal() => {
                    finished.insert(id.clone(), inv);
                }
                // Not known yet, or still running.
                Ok(_) => {}
                // A read that failed is asked again at the next poll: the
                // command is running either way.
                Err(e) if e.transient => {
                    warn!(error = %e, command_id = %command_id, instance_id = %id, "GetCommandInvocation failed; asking again.");
                }
                Err(e) => {
                    findings.command_status = statuses(targets, &finished);
                    return failed(&e);
                }
            }
        }
        if finished.len() == targets.len() {
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            findings.command_status = statuses(targets, &finished);
            return Outcome::Failed {
                transient: false,
                error: format!(
                    "command {command_id} did not finish within {} (plus {} for SSM to report): {}",
                    format_duration(command.timeout),
                    format_duration(REPORT_SLACK),
                    summary(targets, &finished)
                ),
            };
        }
    }
    findings.command_status = statuses(targets, &finished);
    if finished
        .values()
        .all(|i| i.status == InvocationStatus::Success)
    {
        run.done()
    } else {
        Outcome::Failed {
            transient: false,
            error: format!(
                "command {command_id} did not succeed everywhere: {}",
                summary(targets, &finished)
            ),
        }
    }
}

/// `Comment` of the command: the rule and the alarm, cut to SSM's limit.
fn comment(rule: &str, alarm: &str) -> String {
    let full = format!("reflex rule {rule} on alarm {alarm}");
    match full.char_indices().nth(COMMENT_MAX) {
        Some((at, _)) => full[..at].to_string(),
        None => full,
    }
}

/// Each target's status with its exit code, or `unfinished` while SSM
/// reports none that is terminal.
fn statuses(
    targets: &[String],
    finished: &BTreeMap<String, Invocation>,
) -> BTreeMap<String, String> {
    targets
        .iter()
        .map(|id| {
            let status = match finished.get(id) {
                Some(inv) => match inv.response_code {
                    Some(code) if code >= 0 => format!("{} (exit {code})", inv.status),
                    _ => inv.status.to_string(),
                },
                None => "unfinished".to_string(),
            };
            (id.clone(), status)
        })
        .collect()
}

fn summary(targets: &[String], finished: &BTreeMap<String, Invocation>) -> String {
    statuses(targets, finished)
        .iter()
        .map(|(id, s)| format!("{id} {s}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_comment_fits_ssm_limit() {
        let long = "a".repeat(300);
        assert_eq!(comment(&long, "x").chars().count(), COMMENT_MAX);
        assert_eq!(comment("r", "web"), "reflex rule r on alarm web");
    }

    #[test]
    fn statuses_show_exit_codes_and_what_is_unfinished() {
        let mut finished = BTreeMap::new();
        finished.insert(
            "i-1".to_string(),
            Invocation {
                instance_id: "i-1".to_string(),
                status: InvocationStatus::Failed,
                response_code: Some(3),
            },
        );
        let targets = ["i-1".to_string(), "i-2".to_string()];
        assert_eq!(
            summary(&targets, &finished),
            "i-1 Failed (exit 3), i-2 unfinished"
        );
    }
}
