//! Records for the audit tests: one alarm, one action report, one message.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::aws::QueueMessage;
use crate::event::AlarmEvent;
use crate::outcome::{ActionReport, Outcome};
use crate::rules::ActionKind;

pub fn event() -> AlarmEvent {
    let body = crate::testing::AlarmBody::default().raw();
    crate::event::decode_str(&body).expect("decodes")
}

pub fn time() -> DateTime<Utc> {
    crate::event::parse_aws_time("2026-01-12T16:31:00Z").expect("time")
}

pub fn report(outcome: Outcome) -> ActionReport {
    ActionReport {
        rule: "terminate-oos".into(),
        action_index: 0,
        kind: ActionKind::TerminateOutOfService,
        target: "elb:web".into(),
        targets: vec!["i-0001".into()],
        outcome,
        capped: vec![],
        excluded: vec![],
        health_reasons: Default::default(),
        request_ids: vec!["req-1".into()],
        duration_ms: 12,
        aws_us: 100,
        waited_us: 0,
        escalation_message_id: None,
        taken_over_from: None,
        budget: None,
        command_status: Default::default(),
        unknown_outcome: None,
    }
}

pub fn queue_message(id: &str) -> QueueMessage {
    QueueMessage {
        message_id: id.into(),
        receipt_handle: format!("rh-{id}"),
        body: String::new(),
        receive_count: 2,
        sent_at: None,
        first_received_at: None,
        attributes: BTreeMap::new(),
    }
}

/// A trail of two alarms and a poison message, with one line that is not a
/// record (line 3): a termination, a suppression by `min_in_service`, and a
/// `not_json` dead letter.
pub const TRAIL: &str = r#"{"type":"action","time":"2026-01-12T16:31:00.000Z","sqs_message_id":"s1","sns_message_id":"n1","alarm_name":"web-unhealthy","rules_version":"v1","dry_run":false,"rule":"oos","action_index":0,"kind":"terminate_out_of_service","target":"elb:web","targets":["i-1"],"outcome":"done","capped":[{"guard":"max_instances","detail":"2 eligible","numbers":{"allowed":1}}],"excluded":[{"instance_id":"i-2","guard":"require_tag","reason":"untagged"}],"request_ids":["req-9"],"duration_ms":5,"aws_us":1,"waited_us":0}
{"type":"message","time":"2026-01-12T16:31:00.100Z","sqs_message_id":"s1","sns_message_id":"n1","receive_count":1,"alarm":{"name":"web-unhealthy","arn":null,"account":null,"region":null,"new_state":"ALARM","old_state":"OK","state_change_time":"2026-01-12T16:30:42.236Z","reason":null},"topic_arn":null,"rules_version":"v1","matched":["oos"],"skipped":[{"rule":"off","reason":"disabled"}],"actions":1,"outcomes":{"done":1},"disposition":{"kind":"ack"},"duration_ms":9}
not json at all
{"type":"action","time":"2026-01-12T17:00:00.000Z","sqs_message_id":"s2","sns_message_id":null,"alarm_name":"web-unhealthy","rules_version":"v1","dry_run":false,"rule":"oos","action_index":0,"kind":"terminate_out_of_service","target":"elb:web","targets":[],"outcome":"suppressed","guard":"min_in_service","detail":"too few in service","numbers":{"in_service":1,"min_in_service":2},"request_ids":[],"duration_ms":3,"aws_us":1,"waited_us":0}
{"type":"message","time":"2026-01-12T17:00:00.100Z","sqs_message_id":"s2","sns_message_id":null,"receive_count":1,"alarm":{"name":"web-unhealthy","arn":null,"account":null,"region":null,"new_state":"ALARM","old_state":"OK","state_change_time":"2026-01-12T16:30:42.236Z","reason":null},"topic_arn":null,"rules_version":"v1","matched":["oos"],"skipped":[],"actions":1,"outcomes":{"suppressed":1},"disposition":{"kind":"ack"},"duration_ms":4}
{"type":"message","time":"2026-01-12T17:05:00.000Z","sqs_message_id":"s3","sns_message_id":null,"receive_count":1,"alarm":null,"topic_arn":null,"rules_version":null,"matched":[],"skipped":[],"actions":0,"outcomes":{},"disposition":{"kind":"dead_letter","code":"not_json","reason":"x"},"duration_ms":0}
"#;
