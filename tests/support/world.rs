//! One end-to-end test's world: its own moto server, SDK clients, and an
//! alarm pipeline (topic → queue, with a DLQ and a redrive policy, plus a
//! notify topic → queue); fleets behind classic ELBs and alarms on demand;
//! and the readers e2e tests share (message attributes, SNS envelopes,
//! action log events, the standard terminate rule).

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_sqs::types::Message;
use serde_json::Value;

use super::{AlarmDef, Aws, Fleet, MotoServer, Pipeline, PipelineOptions, Reflex, ReflexBuilder};

/// Long enough for a loaded two-core CI box running several moto servers.
pub const WAIT: Duration = Duration::from_secs(40);

/// One test's world: its own moto, clients, and alarm pipeline.
pub struct World {
    pub moto: MotoServer,
    pub aws: Aws,
    pub pipeline: Pipeline,
}

impl World {
    /// A fresh moto and the default pipeline named after `name`.
    pub async fn new(name: &str) -> World {
        World::with_options(name, PipelineOptions::default()).await
    }

    /// [`World::new`] with a non-default pipeline (e.g. a lower
    /// `max_receive_count`).
    pub async fn with_options(name: &str, options: PipelineOptions) -> World {
        let moto = MotoServer::start();
        let aws = moto.aws().await;
        let pipeline = aws.create_pipeline_with(name, options).await;
        World {
            moto,
            aws,
            pipeline,
        }
    }

    /// A daemon on this world's pipeline, trusting its alarm topic.
    pub fn reflex(&self) -> ReflexBuilder {
        Reflex::builder(&self.moto.endpoint(), &self.pipeline)
    }

    /// The `<elb>-unhealthy-hosts` alarm, created in moto and set to ALARM so
    /// reflex's DescribeAlarms re-check agrees with the notification.
    pub async fn elb_alarm(&self, elb: &str) -> AlarmDef {
        let alarm = AlarmDef::elb_unhealthy_hosts(&format!("{elb}-unhealthy-hosts"), elb)
            .notifying(&self.pipeline.topic_arn);
        self.aws.put_metric_alarm(&alarm, "ALARM").await;
        alarm
    }

    /// A fleet of `n` behind `elb`, with the instances at `stopped` stopped
    /// (moto then reports them OutOfService).
    pub async fn fleet(&self, elb: &str, n: usize, stopped: &[usize]) -> Fleet {
        let fleet = self.aws.create_fleet(elb, n, &[]).await;
        let ids: Vec<String> = stopped
            .iter()
            .map(|&i| fleet.instance_ids[i].clone())
            .collect();
        if !ids.is_empty() {
            self.aws.stop_instances(&ids).await;
        }
        let health = self.aws.elb_health(elb).await;
        for id in &ids {
            assert_eq!(health[id], "OutOfService", "set-up: {health:?}");
        }
        fleet
    }

    /// The `<id>-system-check` alarm (`AWS/EC2` `StatusCheckFailed_System`
    /// on instance `id`), created in moto in `state`.
    pub async fn system_check_alarm(&self, id: &str, state: &str) -> AlarmDef {
        let alarm = AlarmDef::new(
            &format!("{id}-system-check"),
            "AWS/EC2",
            "StatusCheckFailed_System",
            &[("InstanceId", id)],
        )
        .notifying(&self.pipeline.topic_arn);
        self.aws.put_metric_alarm(&alarm, state).await;
        alarm
    }

    /// Waits until instance `id` is terminated.
    pub async fn wait_terminated(&self, reflex: &Reflex, id: &str) {
        let aws = &self.aws;
        reflex
            .wait_until(WAIT, &format!("{id} is terminated"), || async move {
                aws.instance_states(&[id.to_owned()]).await[id] == "terminated"
            })
            .await;
    }

    pub async fn publish(&self, notification: &Value) -> String {
        self.aws
            .publish_alarm(&self.pipeline.topic_arn, notification)
            .await
    }

    pub async fn states(&self, fleet: &Fleet) -> HashMap<String, String> {
        self.aws.instance_states(&fleet.instance_ids).await
    }

    /// Waits until the alarm queue is empty: every message handled and
    /// deleted (a message waiting for a retry still counts, invisible).
    pub async fn drained(&self, reflex: &Reflex) {
        let (aws, url) = (&self.aws, &self.pipeline.queue_url);
        reflex
            .wait_until(WAIT, "the alarm queue is empty", || async move {
                aws.queue_depth(url).await == 0
            })
            .await;
    }

    pub async fn assert_dlq_empty(&self) {
        let dead = self.aws.receive_all(&self.pipeline.dlq_url).await;
        assert!(dead.is_empty(), "unexpected dead letters: {dead:#?}");
    }
}

/// A `terminate_out_of_service` rule for `*-unhealthy-hosts` ELB alarms.
/// `head` goes before `[rule.match]` (e.g. `dry_run = true`), `params` into
/// the action, `tail` after it (more actions, `[rule.limits]`).
pub fn terminate_rule(head: &str, params: &str, tail: &str) -> String {
    format!(
        r#"
[[rule]]
name = "elb-terminate-out-of-service"
{head}

[rule.match]
alarm_name = {{ suffix = "-unhealthy-hosts" }}
namespace = "AWS/ELB"
metric_name = "UnHealthyHostCount"
new_state = "ALARM"
dimensions.LoadBalancerName = {{ exists = true }}

[[rule.actions]]
type = "terminate_out_of_service"
load_balancer = "{{{{ dimension.LoadBalancerName }}}}"
# moto's instances are seconds old; the default would protect them all.
min_instance_age = "0s"
{params}

{tail}
"#
    )
}

pub fn count_state(states: &HashMap<String, String>, ids: &[String], state: &str) -> usize {
    ids.iter().filter(|id| states[*id] == state).count()
}

/// The "Action finished." / "Action suppressed by a guard." events of `kind`.
pub fn action_events(reflex: &Reflex, kind: &str) -> Vec<Value> {
    reflex
        .events()
        .into_iter()
        .filter(|e| {
            (e["message"] == "Action finished." || e["message"] == "Action suppressed by a guard.")
                && e["kind"] == kind
        })
        .collect()
}

pub fn attribute(message: &Message, name: &str) -> Option<String> {
    message
        .message_attributes()
        .and_then(|a| a.get(name))
        .and_then(|v| v.string_value())
        .map(str::to_owned)
}

/// The body of an SNS envelope delivered to a queue.
pub fn envelope(message: &Message) -> Value {
    serde_json::from_str(message.body().expect("a body")).expect("an SNS envelope")
}
