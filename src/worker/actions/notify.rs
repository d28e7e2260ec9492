//! Publish to SNS: the `notify` action, and the escalation sent when a
//! guard holds an action back. Both end with the same [`footer`].

use tracing::warn;

use super::{Findings, Run};
use crate::event::{format_millis, AlarmEvent};
use crate::outcome::{ActionReport, Outcome};
use crate::rules::action::Notify;

/// Publishes `n`'s message, with the footer of what ran before it.
pub(super) async fn notify(run: &Run<'_>, n: &Notify<String>, findings: &mut Findings) -> Outcome {
    let ctx = run.ctx;
    let message = format!(
        "{}\n\n{}",
        n.message,
        footer(
            ctx.event,
            &ctx.matched.rule.name,
            run.dry_run(),
            ctx.earlier,
            &run.rules_version()
        )
    );
    let result = findings
        .aws(run.effects.sns.publish(&n.topic_arn, &n.subject, &message))
        .await;
    findings.changed(run, result)
}

/// Tells the escalation topic that a guard stopped an action; returns the
/// SNS message id. A failure is logged here and changes nothing else.
pub(super) async fn escalate(run: &Run<'_>, report: &ActionReport, topic: &str) -> Option<String> {
    let ctx = run.ctx;
    let subject = format!("reflex held back: {} on {}", report.kind, report.target);
    let message = format!(
        "reflex did NOT act.\n\n{}\n\n{}",
        report.summary(),
        footer(
            ctx.event,
            &ctx.matched.rule.name,
            run.dry_run(),
            std::slice::from_ref(report),
            &run.rules_version()
        )
    );
    match run.effects.sns.publish(topic, &subject, &message).await {
        Ok(id) => id,
        Err(error) => {
            warn!(%error, topic, "Escalation could not be published.");
            None
        }
    }
}

/// What a notification says about the alarm, what reflex did, and the ids
/// that tie it to logs and audit records. Pure formatting.
pub fn footer(
    event: &AlarmEvent,
    rule: &str,
    dry_run: bool,
    reports: &[ActionReport],
    rules_version: &str,
) -> String {
    let mut s = String::from("--\n");
    for r in reports {
        s.push_str(&r.summary());
        s.push('\n');
    }
    s.push_str(&format!(
        "rule: {rule}{}\nalarm: {} ({} -> {} at {})\nsns message id: {}\nrules version: {rules_version}\n",
        if dry_run { " (dry run)" } else { "" },
        event.alarm_name,
        event.old_state.map_or("-".to_string(), |s| s.to_string()),
        event.new_state,
        format_millis(&event.state_change_time),
        event.sns_message_id.as_deref().unwrap_or("-"),
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::ActionKind;
    use crate::safety::{Guard, GuardTrip};

    fn body() -> String {
        crate::testing::AlarmBody::default().reason("r").raw()
    }

    fn report(outcome: Outcome, targets: &[&str]) -> ActionReport {
        ActionReport {
            rule: "replace-oos".into(),
            action_index: 0,
            kind: ActionKind::TerminateOutOfService,
            target: "elb:web".into(),
            targets: targets.iter().map(|t| t.to_string()).collect(),
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

    #[test]
    fn footer_lists_reports_then_the_alarm_and_its_ids() {
        let event = crate::event::decode_str(&body()).unwrap_or_else(|p| panic!("{p:?}"));
        let reports = [
            report(Outcome::Done, &["i-1", "i-2"]),
            report(
                Outcome::suppressed(GuardTrip::new(Guard::Cooldown, "cooling down")),
                &[],
            ),
        ];
        assert_eq!(
            footer(&event, "replace-oos", false, &reports, "v123"),
            "--\n\
             replace-oos terminate_out_of_service on elb:web [i-1, i-2]: done\n\
             replace-oos terminate_out_of_service on elb:web: suppressed by cooldown: cooling down\n\
             rule: replace-oos\n\
             alarm: web-unhealthy (OK -> ALARM at 2026-01-12T16:30:42.236Z)\n\
             sns message id: -\n\
             rules version: v123\n"
        );
    }

    #[test]
    fn footer_marks_dry_runs_and_needs_no_reports() {
        let event = crate::event::decode_str(&body()).unwrap_or_else(|p| panic!("{p:?}"));
        let text = footer(&event, "tell", true, &[], "v9");
        assert!(text.starts_with("--\nrule: tell (dry run)\n"), "{text}");
        assert!(text.ends_with("rules version: v9\n"), "{text}");
    }
}
