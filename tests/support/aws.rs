//! SDK clients for the test itself and the scenario builders end-to-end
//! tests share: a queue pipeline, a fleet behind a classic ELB, alarms.
//!
//! Every helper panics with the operation and the full SDK error chain on
//! failure; a test has nothing sensible to do with an AWS error but stop.

use std::collections::HashMap;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_cloudwatch::types::{ComparisonOperator, Dimension, StateValue, Statistic};
use aws_sdk_ec2::types::{Filter, InstanceType, ResourceType, Tag, TagSpecification};
use aws_sdk_elasticloadbalancing::types::{Instance as ElbInstance, Listener};
use aws_sdk_sqs::types::{Message, MessageSystemAttributeName, QueueAttributeName};
use aws_smithy_types::error::display::DisplayErrorContext;
use serde_json::{json, Value};

use super::alarm::{alarm_subject, AlarmDef, REGION};

/// An AMI that moto 5.2.5 lists in DescribeImages. moto does not check the
/// image of RunInstances, but a real id keeps the fleet honest; looking one
/// up costs over a second (moto lists ~1300 images), so it is fixed here and
/// checked by `tests/moto_harness.rs`.
pub const AMI_ID: &str = "ami-12c6146b";

/// Tag every fleet instance carries, so rules can require it.
pub const MANAGED_TAG: (&str, &str) = ("reflex:managed", "true");

/// One SDK client per service reflex touches, all pointed at one endpoint
/// with static test credentials.
#[derive(Clone, Debug)]
pub struct Aws {
    pub sqs: aws_sdk_sqs::Client,
    pub sns: aws_sdk_sns::Client,
    pub ec2: aws_sdk_ec2::Client,
    pub elb: aws_sdk_elasticloadbalancing::Client,
    pub elbv2: aws_sdk_elasticloadbalancingv2::Client,
    pub autoscaling: aws_sdk_autoscaling::Client,
    pub cloudwatch: aws_sdk_cloudwatch::Client,
    pub ssm: aws_sdk_ssm::Client,
    pub s3: aws_sdk_s3::Client,
}

/// What [`Aws::create_pipeline`] built.
#[derive(Clone, Debug)]
pub struct Pipeline {
    /// The topic alarms publish to.
    pub topic_arn: String,
    /// The queue reflex drains (SNS envelopes, not raw delivery).
    pub queue_url: String,
    pub queue_arn: String,
    pub dlq_url: String,
    pub dlq_arn: String,
    /// The topic reflex's `notify` actions publish to.
    pub notify_topic_arn: String,
    /// A queue subscribed to `notify_topic_arn`, for assertions.
    pub notify_queue_url: String,
}

/// Knobs of [`Aws::create_pipeline_with`].
#[derive(Clone, Debug)]
pub struct PipelineOptions {
    /// Receives after which SQS moves a message to the DLQ.
    pub max_receive_count: u32,
    /// Visibility timeout of the main queue.
    pub visibility_timeout_seconds: u32,
}

impl Default for PipelineOptions {
    fn default() -> Self {
        PipelineOptions {
            max_receive_count: 5,
            visibility_timeout_seconds: 30,
        }
    }
}

/// What [`Aws::create_fleet`] built.
#[derive(Clone, Debug)]
pub struct Fleet {
    pub elb_name: String,
    pub instance_ids: Vec<String>,
}

impl Aws {
    /// Clients for `endpoint` (normally [`MotoServer::endpoint`](super::MotoServer::endpoint)).
    ///
    /// Explicit region and credentials mean nothing is looked up in the
    /// environment, profile files or IMDS. Timeouts are short so a test
    /// against a paused or stopped server fails instead of hanging.
    pub async fn connect(endpoint: &str) -> Aws {
        let credentials =
            aws_sdk_sqs::config::Credentials::new("testing", "testing", None, None, "reflex-tests");
        let config = aws_config::defaults(BehaviorVersion::latest())
            .endpoint_url(endpoint)
            .region(Region::new(REGION))
            .credentials_provider(credentials)
            .retry_config(RetryConfig::standard().with_max_attempts(2))
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(2))
                    .operation_attempt_timeout(Duration::from_secs(20))
                    .build(),
            )
            .load()
            .await;
        Aws {
            sqs: aws_sdk_sqs::Client::new(&config),
            sns: aws_sdk_sns::Client::new(&config),
            ec2: aws_sdk_ec2::Client::new(&config),
            elb: aws_sdk_elasticloadbalancing::Client::new(&config),
            elbv2: aws_sdk_elasticloadbalancingv2::Client::new(&config),
            autoscaling: aws_sdk_autoscaling::Client::new(&config),
            cloudwatch: aws_sdk_cloudwatch::Client::new(&config),
            ssm: aws_sdk_ssm::Client::new(&config),
            // One host name for every bucket: the bucket goes in the path.
            s3: aws_sdk_s3::Client::from_conf(
                aws_sdk_s3::config::Builder::from(&config)
                    .force_path_style(true)
                    .build(),
            ),
        }
    }

    // --- S3 ---

    /// Creates `bucket`.
    pub async fn create_bucket(&self, bucket: &str) {
        self.s3
            .create_bucket()
            .bucket(bucket)
            .send()
            .await
            .unwrap_or_else(|e| panic!("create bucket {bucket}: {e:?}"));
    }

    /// Writes `text` at `key`.
    pub async fn put_object(&self, bucket: &str, key: &str, text: &str) {
        self.s3
            .put_object()
            .bucket(bucket)
            .key(key)
            .body(text.as_bytes().to_vec().into())
            .send()
            .await
            .unwrap_or_else(|e| panic!("put s3://{bucket}/{key}: {e:?}"));
    }

    // --- queues and topics ---

    /// The default pipeline: redrive after 5 receives, 30 s visibility.
    pub async fn create_pipeline(&self, name: &str) -> Pipeline {
        self.create_pipeline_with(name, PipelineOptions::default())
            .await
    }

    /// Alarm topic → queue (with DLQ and redrive policy), plus a notify topic
    /// → queue, named after `name` so several pipelines can share a server.
    pub async fn create_pipeline_with(&self, name: &str, options: PipelineOptions) -> Pipeline {
        let (dlq_url, dlq_arn) = self.create_queue(&format!("{name}-alarms-dlq"), &[]).await;
        let redrive = json!({
            "deadLetterTargetArn": dlq_arn,
            "maxReceiveCount": options.max_receive_count.to_string(),
        });
        let visibility = options.visibility_timeout_seconds.to_string();
        let (queue_url, queue_arn) = self
            .create_queue(
                &format!("{name}-alarms"),
                &[
                    (QueueAttributeName::RedrivePolicy, redrive.to_string()),
                    (QueueAttributeName::VisibilityTimeout, visibility),
                ],
            )
            .await;
        let topic_arn = self.create_topic(&format!("{name}-alarms")).await;
        self.subscribe_queue(&topic_arn, &queue_url, &queue_arn)
            .await;

        let notify_topic_arn = self.create_topic(&format!("{name}-notify")).await;
        let (notify_queue_url, notify_queue_arn) =
            self.create_queue(&format!("{name}-notify"), &[]).await;
        self.subscribe_queue(&notify_topic_arn, &notify_queue_url, &notify_queue_arn)
            .await;

        Pipeline {
            topic_arn,
            queue_url,
            queue_arn,
            dlq_url,
            dlq_arn,
            notify_topic_arn,
            notify_queue_url,
        }
    }

    /// Creates a standard queue; returns its URL and ARN.
    pub async fn create_queue(
        &self,
        name: &str,
        attributes: &[(QueueAttributeName, String)],
    ) -> (String, String) {
        let mut request = self.sqs.create_queue().queue_name(name);
        for (key, value) in attributes {
            request = request.attributes(key.clone(), value);
        }
        let url = ok("sqs:CreateQueue", request.send().await)
            .queue_url
            .expect("CreateQueue returns a URL");
        let arn = self
            .queue_attribute(&url, QueueAttributeName::QueueArn)
            .await
            .expect("queue has an ARN");
        (url, arn)
    }

    pub async fn create_topic(&self, name: &str) -> String {
        ok(
            "sns:CreateTopic",
            self.sns.create_topic().name(name).send().await,
        )
        .topic_arn
        .expect("CreateTopic returns an ARN")
    }

    /// Subscribes a queue to a topic with the queue policy real AWS needs
    /// (moto does not enforce it), without raw delivery: bodies arrive as SNS
    /// envelopes. Returns the subscription ARN.
    pub async fn subscribe_queue(
        &self,
        topic_arn: &str,
        queue_url: &str,
        queue_arn: &str,
    ) -> String {
        let policy = json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Effect": "Allow",
                "Principal": { "Service": "sns.amazonaws.com" },
                "Action": "sqs:SendMessage",
                "Resource": queue_arn,
                "Condition": { "ArnEquals": { "aws:SourceArn": topic_arn } },
            }],
        });
        ok(
            "sqs:SetQueueAttributes",
            self.sqs
                .set_queue_attributes()
                .queue_url(queue_url)
                .attributes(QueueAttributeName::Policy, policy.to_string())
                .send()
                .await,
        );
        ok(
            "sns:Subscribe",
            self.sns
                .subscribe()
                .topic_arn(topic_arn)
                .protocol("sqs")
                .endpoint(queue_arn)
                .return_subscription_arn(true)
                .send()
                .await,
        )
        .subscription_arn
        .expect("Subscribe returns an ARN")
    }

    /// Publishes an alarm notification as CloudWatch would: the JSON as the
    /// message, `<STATE>: "<name>" in <region>` as the subject. Returns the
    /// SNS message id.
    pub async fn publish_alarm(&self, topic_arn: &str, notification: &Value) -> String {
        ok(
            "sns:Publish",
            self.sns
                .publish()
                .topic_arn(topic_arn)
                .subject(alarm_subject(notification))
                .message(notification.to_string())
                .send()
                .await,
        )
        .message_id
        .expect("Publish returns a message id")
    }

    /// Receives until the queue has no visible message left, with all
    /// system and message attributes. Messages are not deleted; they stay
    /// invisible for 60 s, so a second call does not see them again, and
    /// each call counts as a receive towards the redrive limit.
    pub async fn receive_all(&self, queue_url: &str) -> Vec<Message> {
        let mut all = Vec::new();
        loop {
            let batch = self.receive_batch(queue_url, 0).await;
            if batch.is_empty() {
                return all;
            }
            all.extend(batch);
        }
    }

    /// Receives (long-polling) until `count` messages have arrived or
    /// `timeout` passes; panics on timeout. Same visibility caveat as
    /// [`receive_all`](Self::receive_all).
    pub async fn wait_for_messages(
        &self,
        queue_url: &str,
        count: usize,
        timeout: Duration,
    ) -> Vec<Message> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut all = Vec::new();
        while all.len() < count {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                panic!(
                    "expected {count} messages in {queue_url} within {timeout:?}, got {}: {all:#?}",
                    all.len()
                );
            }
            let wait = left.as_secs().clamp(1, 5) as i32;
            all.extend(self.receive_batch(queue_url, wait).await);
        }
        all
    }

    async fn receive_batch(&self, queue_url: &str, wait_seconds: i32) -> Vec<Message> {
        ok(
            "sqs:ReceiveMessage",
            self.sqs
                .receive_message()
                .queue_url(queue_url)
                .max_number_of_messages(10)
                .wait_time_seconds(wait_seconds)
                .visibility_timeout(60)
                .message_system_attribute_names(MessageSystemAttributeName::All)
                .message_attribute_names("All")
                .send()
                .await,
        )
        .messages
        .unwrap_or_default()
    }

    /// Messages in the queue, visible or in flight
    /// (`ApproximateNumberOfMessages` + `ApproximateNumberOfMessagesNotVisible`).
    pub async fn queue_depth(&self, queue_url: &str) -> u64 {
        let attributes = ok(
            "sqs:GetQueueAttributes",
            self.sqs
                .get_queue_attributes()
                .queue_url(queue_url)
                .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
                .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
                .send()
                .await,
        )
        .attributes
        .unwrap_or_default();
        let count = |name: QueueAttributeName| -> u64 {
            attributes
                .get(&name)
                .map_or(0, |v| v.parse().expect("queue counts are integers"))
        };
        count(QueueAttributeName::ApproximateNumberOfMessages)
            + count(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
    }

    pub async fn queue_attribute(
        &self,
        queue_url: &str,
        name: QueueAttributeName,
    ) -> Option<String> {
        ok(
            "sqs:GetQueueAttributes",
            self.sqs
                .get_queue_attributes()
                .queue_url(queue_url)
                .attribute_names(name.clone())
                .send()
                .await,
        )
        .attributes
        .and_then(|mut attributes| attributes.remove(&name))
    }

    // --- fleet ---

    /// Runs `n` instances tagged `reflex:managed=true` plus `tags`, puts them
    /// behind a new classic ELB (HTTP 80 → 80) and registers them.
    pub async fn create_fleet(&self, elb_name: &str, n: usize, tags: &[(&str, &str)]) -> Fleet {
        let count = i32::try_from(n).expect("fleet size fits an i32");
        let mut tag_spec = TagSpecification::builder()
            .resource_type(ResourceType::Instance)
            .tags(Tag::builder().key("Name").value(elb_name).build());
        for (key, value) in std::iter::once(&MANAGED_TAG).chain(tags) {
            tag_spec = tag_spec.tags(Tag::builder().key(*key).value(*value).build());
        }
        let reservation = ok(
            "ec2:RunInstances",
            self.ec2
                .run_instances()
                .image_id(AMI_ID)
                .instance_type(InstanceType::T3Micro)
                .min_count(count)
                .max_count(count)
                .tag_specifications(tag_spec.build())
                .send()
                .await,
        );
        let instance_ids: Vec<String> = reservation
            .instances()
            .iter()
            .filter_map(|i| i.instance_id().map(str::to_owned))
            .collect();
        assert_eq!(
            instance_ids.len(),
            n,
            "RunInstances started {} of {n} instances",
            instance_ids.len()
        );

        let listener = Listener::builder()
            .protocol("HTTP")
            .load_balancer_port(80)
            .instance_protocol("HTTP")
            .instance_port(80)
            .build()
            .expect("listener has every required field");
        ok(
            "elb:CreateLoadBalancer",
            self.elb
                .create_load_balancer()
                .load_balancer_name(elb_name)
                .listeners(listener)
                .availability_zones(format!("{REGION}a"))
                .send()
                .await,
        );
        let mut register = self
            .elb
            .register_instances_with_load_balancer()
            .load_balancer_name(elb_name);
        for id in &instance_ids {
            register = register.instances(ElbInstance::builder().instance_id(id).build());
        }
        ok(
            "elb:RegisterInstancesWithLoadBalancer",
            register.send().await,
        );
        Fleet {
            elb_name: elb_name.to_owned(),
            instance_ids,
        }
    }

    /// Runs `n` instances tagged `reflex:managed=true`, creates an instance
    /// target group (HTTP 80, in the default VPC) and registers them while
    /// they run (moto refuses to register a stopped instance). Returns the
    /// target group's ARN and the instance ids.
    pub async fn create_target_group_fleet(&self, name: &str, n: usize) -> (String, Vec<String>) {
        let count = i32::try_from(n).expect("fleet size fits an i32");
        let tags = TagSpecification::builder()
            .resource_type(ResourceType::Instance)
            .tags(Tag::builder().key("Name").value(name).build())
            .tags(
                Tag::builder()
                    .key(MANAGED_TAG.0)
                    .value(MANAGED_TAG.1)
                    .build(),
            )
            .build();
        let reservation = ok(
            "ec2:RunInstances",
            self.ec2
                .run_instances()
                .image_id(AMI_ID)
                .instance_type(InstanceType::T3Micro)
                .min_count(count)
                .max_count(count)
                .tag_specifications(tags)
                .send()
                .await,
        );
        let ids: Vec<String> = reservation
            .instances()
            .iter()
            .filter_map(|i| i.instance_id().map(str::to_owned))
            .collect();
        let vpcs = ok(
            "ec2:DescribeVpcs",
            self.ec2
                .describe_vpcs()
                .filters(Filter::builder().name("is-default").values("true").build())
                .send()
                .await,
        );
        let vpc = vpcs
            .vpcs()
            .first()
            .and_then(|v| v.vpc_id())
            .expect("moto has a default VPC")
            .to_owned();
        let created = ok(
            "elbv2:CreateTargetGroup",
            self.elbv2
                .create_target_group()
                .name(name)
                .protocol(aws_sdk_elasticloadbalancingv2::types::ProtocolEnum::Http)
                .port(80)
                .vpc_id(vpc)
                .target_type(aws_sdk_elasticloadbalancingv2::types::TargetTypeEnum::Instance)
                .send()
                .await,
        );
        let arn = created
            .target_groups()
            .first()
            .and_then(|g| g.target_group_arn())
            .expect("CreateTargetGroup returns the group")
            .to_owned();
        let mut register = self.elbv2.register_targets().target_group_arn(&arn);
        for id in &ids {
            register = register.targets(
                aws_sdk_elasticloadbalancingv2::types::TargetDescription::builder()
                    .id(id)
                    .port(80)
                    .build(),
            );
        }
        ok("elbv2:RegisterTargets", register.send().await);
        (arn, ids)
    }

    /// An empty instance target group (HTTP 80, default VPC); its ARN.
    pub async fn create_target_group(&self, name: &str) -> String {
        let vpcs = ok(
            "ec2:DescribeVpcs",
            self.ec2
                .describe_vpcs()
                .filters(Filter::builder().name("is-default").values("true").build())
                .send()
                .await,
        );
        let vpc = vpcs
            .vpcs()
            .first()
            .and_then(|v| v.vpc_id())
            .expect("moto has a default VPC")
            .to_owned();
        let created = ok(
            "elbv2:CreateTargetGroup",
            self.elbv2
                .create_target_group()
                .name(name)
                .protocol(aws_sdk_elasticloadbalancingv2::types::ProtocolEnum::Http)
                .port(80)
                .vpc_id(vpc)
                .target_type(aws_sdk_elasticloadbalancingv2::types::TargetTypeEnum::Instance)
                .send()
                .await,
        );
        created
            .target_groups()
            .first()
            .and_then(|g| g.target_group_arn())
            .expect("CreateTargetGroup returns the group")
            .to_owned()
    }

    /// An Auto Scaling group `name` of `n` instances (a launch
    /// configuration on [`AMI_ID`]) attached to a new target group of the
    /// same name; the group's tags `Name` and `reflex:managed=true`
    /// propagate to its instances. Returns the target group's ARN and the
    /// group's instance ids (moto launches them at once and registers
    /// them with the target group).
    pub async fn create_auto_scaling_fleet(&self, name: &str, n: usize) -> (String, Vec<String>) {
        use aws_sdk_autoscaling::types::Tag as AsgTag;
        let count = i32::try_from(n).expect("fleet size fits an i32");
        let tg = self.create_target_group(name).await;
        ok(
            "autoscaling:CreateLaunchConfiguration",
            self.autoscaling
                .create_launch_configuration()
                .launch_configuration_name(name)
                .image_id(AMI_ID)
                .instance_type("t3.micro")
                .send()
                .await,
        );
        let tag = |key: &str, value: &str| {
            AsgTag::builder()
                .resource_id(name)
                .resource_type("auto-scaling-group")
                .key(key)
                .value(value)
                .propagate_at_launch(true)
                .build()
        };
        ok(
            "autoscaling:CreateAutoScalingGroup",
            self.autoscaling
                .create_auto_scaling_group()
                .auto_scaling_group_name(name)
                .launch_configuration_name(name)
                .min_size(count)
                .max_size(count + 1)
                .desired_capacity(count)
                .availability_zones(format!("{REGION}a"))
                .target_group_arns(&tg)
                .tags(tag("Name", name))
                .tags(tag(MANAGED_TAG.0, MANAGED_TAG.1))
                .send()
                .await,
        );
        let ids = self.group_instances(name).await.into_keys().collect();
        (tg, ids)
    }

    /// The group's instances: id → (lifecycle state, health status).
    pub async fn group_instances(&self, group: &str) -> HashMap<String, (String, String)> {
        let out = ok(
            "autoscaling:DescribeAutoScalingGroups",
            self.autoscaling
                .describe_auto_scaling_groups()
                .auto_scaling_group_names(group)
                .send()
                .await,
        );
        out.auto_scaling_groups()
            .iter()
            .flat_map(|g| g.instances())
            .filter_map(|i| {
                Some((
                    i.instance_id()?.to_owned(),
                    (
                        i.lifecycle_state()
                            .map(|s| s.as_str().to_owned())
                            .unwrap_or_default(),
                        i.health_status()?.to_owned(),
                    ),
                ))
            })
            .collect()
    }

    /// Target id → (state, reason code) from DescribeTargetHealth.
    pub async fn target_health(&self, arn: &str) -> HashMap<String, (String, String)> {
        let out = ok(
            "elbv2:DescribeTargetHealth",
            self.elbv2
                .describe_target_health()
                .target_group_arn(arn)
                .send()
                .await,
        );
        out.target_health_descriptions()
            .iter()
            .filter_map(|d| {
                let id = d.target()?.id()?.to_owned();
                let h = d.target_health()?;
                Some((
                    id,
                    (
                        h.state().map(|s| s.as_str().to_owned()).unwrap_or_default(),
                        h.reason()
                            .map(|r| r.as_str().to_owned())
                            .unwrap_or_default(),
                    ),
                ))
            })
            .collect()
    }

    /// Stops instances; moto switches them to `stopped` at once, and a
    /// stopped instance is what moto's classic ELB reports `OutOfService`.
    pub async fn stop_instances(&self, ids: &[String]) {
        ok(
            "ec2:StopInstances",
            self.ec2
                .stop_instances()
                .set_instance_ids(Some(ids.to_vec()))
                .send()
                .await,
        );
    }

    pub async fn terminate_instances(&self, ids: &[String]) {
        ok(
            "ec2:TerminateInstances",
            self.ec2
                .terminate_instances()
                .set_instance_ids(Some(ids.to_vec()))
                .send()
                .await,
        );
    }

    /// Instance id → state name (`running`, `stopped`, `terminated`, ...).
    pub async fn instance_states(&self, ids: &[String]) -> HashMap<String, String> {
        self.describe_instances(ids)
            .await
            .into_iter()
            .map(|i| {
                let state = i
                    .state()
                    .and_then(|s| s.name())
                    .map_or("unknown", |n| n.as_str())
                    .to_owned();
                (i.instance_id().unwrap_or_default().to_owned(), state)
            })
            .collect()
    }

    /// Instance id → its tags.
    pub async fn instance_tags(&self, ids: &[String]) -> HashMap<String, HashMap<String, String>> {
        self.describe_instances(ids)
            .await
            .into_iter()
            .map(|i| {
                let tags = i
                    .tags()
                    .iter()
                    .map(|t| {
                        (
                            t.key().unwrap_or_default().to_owned(),
                            t.value().unwrap_or_default().to_owned(),
                        )
                    })
                    .collect();
                (i.instance_id().unwrap_or_default().to_owned(), tags)
            })
            .collect()
    }

    /// Ids of instances in `state` carrying tag `key = value`; finds what an
    /// ASG (or a test playing one) launched after the fleet was built.
    pub async fn instances_with_tag(&self, key: &str, value: &str, state: &str) -> Vec<String> {
        let output = ok(
            "ec2:DescribeInstances",
            self.ec2
                .describe_instances()
                .filters(
                    Filter::builder()
                        .name(format!("tag:{key}"))
                        .values(value)
                        .build(),
                )
                .filters(
                    Filter::builder()
                        .name("instance-state-name")
                        .values(state)
                        .build(),
                )
                .send()
                .await,
        );
        output
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .filter_map(|i| i.instance_id().map(str::to_owned))
            .collect()
    }

    async fn describe_instances(&self, ids: &[String]) -> Vec<aws_sdk_ec2::types::Instance> {
        let output = ok(
            "ec2:DescribeInstances",
            self.ec2
                .describe_instances()
                .set_instance_ids(Some(ids.to_vec()))
                .send()
                .await,
        );
        output
            .reservations()
            .iter()
            .flat_map(|r| r.instances().iter().cloned())
            .collect()
    }

    /// Instance id → `InService` / `OutOfService`, as DescribeInstanceHealth
    /// reports every instance registered with the load balancer.
    pub async fn elb_health(&self, elb_name: &str) -> HashMap<String, String> {
        let output = ok(
            "elb:DescribeInstanceHealth",
            self.elb
                .describe_instance_health()
                .load_balancer_name(elb_name)
                .send()
                .await,
        );
        output
            .instance_states()
            .iter()
            .map(|s| {
                (
                    s.instance_id().unwrap_or_default().to_owned(),
                    s.state().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    }

    /// Instance ids registered with the load balancer.
    pub async fn elb_instances(&self, elb_name: &str) -> Vec<String> {
        let output = ok(
            "elb:DescribeLoadBalancers",
            self.elb
                .describe_load_balancers()
                .load_balancer_names(elb_name)
                .send()
                .await,
        );
        output
            .load_balancer_descriptions()
            .iter()
            .flat_map(|d| d.instances())
            .filter_map(|i| i.instance_id().map(str::to_owned))
            .collect()
    }

    // --- alarms ---

    /// Creates (or replaces) the alarm in moto and forces it into `state`
    /// (`OK`, `ALARM`, `INSUFFICIENT_DATA`), so reflex's DescribeAlarms
    /// re-check sees what the notification claims.
    pub async fn put_metric_alarm(&self, def: &AlarmDef, state: &str) {
        let mut request = self
            .cloudwatch
            .put_metric_alarm()
            .alarm_name(&def.name)
            .namespace(&def.namespace)
            .metric_name(&def.metric_name)
            .statistic(Statistic::from(def.statistic.as_str()))
            .period(def.period_seconds)
            .evaluation_periods(def.evaluation_periods)
            .datapoints_to_alarm(def.datapoints_to_alarm)
            .comparison_operator(ComparisonOperator::from(def.comparison_operator.as_str()))
            .threshold(def.threshold)
            .treat_missing_data(&def.treat_missing_data)
            .set_alarm_description(def.description.clone())
            .set_alarm_actions(Some(def.alarm_actions.clone()))
            .set_ok_actions(Some(def.ok_actions.clone()))
            .set_insufficient_data_actions(Some(def.insufficient_data_actions.clone()));
        for (name, value) in &def.dimensions {
            request = request.dimensions(Dimension::builder().name(name).value(value).build());
        }
        ok_cw("cloudwatch:PutMetricAlarm", request.send().await);
        self.set_alarm_state(&def.name, state).await;
    }

    /// SetAlarmState. moto, like AWS, keeps the state until the next call:
    /// it evaluates no metrics.
    pub async fn set_alarm_state(&self, name: &str, state: &str) {
        ok_cw(
            "cloudwatch:SetAlarmState",
            self.cloudwatch
                .set_alarm_state()
                .alarm_name(name)
                .state_value(StateValue::from(state))
                .state_reason(format!("Set by the reflex test harness to {state}."))
                .send()
                .await,
        );
    }

    /// The alarm's state as DescribeAlarms reports it, `None` if there is no
    /// such alarm.
    /// Every command SSM was sent: (instance ids, the `commands`
    /// parameter, document name).
    pub async fn ssm_commands(&self) -> Vec<(Vec<String>, Vec<String>, String)> {
        let out = self
            .ssm
            .list_commands()
            .send()
            .await
            .unwrap_or_else(|e| panic!("ssm:ListCommands: {e:?}"));
        out.commands()
            .iter()
            .map(|c| {
                (
                    c.instance_ids().to_vec(),
                    c.parameters()
                        .and_then(|p| p.get("commands"))
                        .cloned()
                        .unwrap_or_default(),
                    c.document_name().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }

    pub async fn alarm_state(&self, name: &str) -> Option<String> {
        let output = ok_cw(
            "cloudwatch:DescribeAlarms",
            self.cloudwatch
                .describe_alarms()
                .alarm_names(name)
                .send()
                .await,
        );
        output
            .metric_alarms()
            .first()
            .and_then(|a| a.state_value())
            .map(|s| s.as_str().to_owned())
    }
}

fn ok<T, E>(operation: &str, result: Result<T, E>) -> T
where
    E: std::error::Error,
{
    result.unwrap_or_else(|error| panic!("{operation} failed: {}", DisplayErrorContext(&error)))
}

/// CloudWatch through moto fails for a reason worth naming: from 1.100.0 on,
/// aws-sdk-cloudwatch speaks only Smithy RPC v2 CBOR
/// (`POST /service/GraniteServiceVersion20100801/operation/...`), and moto
/// 5.2.5 implements only the Query and JSON protocols (getmoto/moto#9195), so
/// it answers 404.
fn ok_cw<T, E>(operation: &str, result: Result<T, E>) -> T
where
    E: std::error::Error,
{
    result.unwrap_or_else(|error| {
        panic!(
            "{operation} failed: {}\n(if moto logged a 404 for /service/GraniteServiceVersion20100801/..., \
             aws-sdk-cloudwatch is >= 1.100 and speaks CBOR, which moto does not; pin it to =1.99.0)",
            DisplayErrorContext(&error)
        )
    })
}
