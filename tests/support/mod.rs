//! End-to-end test harness: a real moto server on loopback, SDK clients for
//! the test, and builders for the AWS scenarios reflex remediates.
//!
//! Use it from an integration test with `mod support;`:
//!
//! ```ignore
//! let moto = MotoServer::start();
//! let aws = moto.aws().await;
//! let pipeline = aws.create_pipeline("e2e").await;
//! let fleet = aws.create_fleet("web", 4, &[("team", "web")]).await;
//! let alarm = AlarmDef::elb_unhealthy_hosts("web-unhealthy", "web").notifying(&pipeline.topic_arn);
//! aws.put_metric_alarm(&alarm, "ALARM").await;
//! aws.publish_alarm(&pipeline.topic_arn, &alarm.notification("ALARM", "OK")).await;
//! let reflex = Reflex::builder(&moto.endpoint(), &pipeline).rule("elb.toml", RULE).spawn();
//! let (aws, url) = (&aws, &pipeline.queue_url);
//! reflex.wait_until(WAIT, "the queue is empty", || async move { aws.queue_depth(url).await == 0 }).await;
//! ```
//!
//! What is where:
//!
//! - [`Reflex`] (`reflex.rs`): the real `reflex run` binary as a child
//!   process, killed on drop, its JSON log captured and printed when a test
//!   fails.
//! - `cli.rs`: the binary run once to completion ([`run_reflex`],
//!   [`run_reflex_on`] for moto), and readers of its output ([`code`],
//!   [`stdout`], [`stderr`], [`describe`], [`one_json`]); offline tests
//!   (`cli_offline.rs`, `audit.rs`) use only these.
//! - [`MotoServer`] (`moto.rs`), [`Aws`] with [`Pipeline`] and [`Fleet`]
//!   (`aws.rs`), [`AlarmDef`] (`alarm.rs`), the child's environment
//!   (`env.rs`).
//! - [`World`] (`world.rs`): one test's moto, clients and pipeline, with
//!   fleets, ELB alarms, publishing and draining; and the shared readers
//!   ([`attribute`], [`envelope`], [`action_events`], [`count_state`]) and
//!   rule ([`terminate_rule`]). New e2e tests start from `World::new`.
//! - Worker-level fakes and builders are not here: they are the library's
//!   `reflex::testing` (feature `test-support`).
//! - [`FaultProxy`]: cut and restore the daemon's way to moto without
//!   losing moto's state.
//! - [`MotoServer::start_recording`]: prove a call was made when moto's
//!   state cannot show it.
//!
//! Moto facts the helpers rely on (each checked by `tests/moto_harness.rs`):
//! - classic-ELB health is derived from EC2 state alone: `running` is
//!   `InService`, anything else (`stopped`, `terminated`) is `OutOfService`,
//!   and a terminated instance stays registered;
//! - CloudWatch never publishes to SNS, so tests publish the notification;
//! - redrive works: the receive after the `maxReceiveCount`-th moves the
//!   message to the DLQ, with its message id and attributes;
//! - every resource is in account 123456789012; keep queues shallow, moto
//!   slows down badly with thousands of messages.
#![allow(dead_code, unused_imports)]

mod alarm;
mod aws;
mod cli;
mod env;
mod moto;
mod proxy;
mod reflex;
mod world;

use std::future::Future;
use std::time::Duration;

pub use alarm::{
    alarm_notification, alarm_subject, cloudwatch_time, AlarmDef, ACCOUNT_ID, REGION,
    REGION_DISPLAY,
};
pub use aws::{Aws, Fleet, Pipeline, PipelineOptions, AMI_ID, MANAGED_TAG};
pub use cli::{
    code, describe, one_json, reflex_command, repo, run_reflex, run_reflex_on, stderr, stdout,
    REFLEX_BIN,
};
pub use env::{aws_env, MotoEnv, AWS_ENV_REMOVE};
pub use moto::{MotoServer, RecordedRequest};
pub use proxy::{FaultProxy, Faults};
pub use reflex::{http_get, sample, Reflex, ReflexBuilder};
pub use world::{action_events, attribute, count_state, envelope, terminate_rule, World, WAIT};

/// How often the wait helpers re-check.
const POLL_EVERY: Duration = Duration::from_millis(100);

/// Polls `check` until it returns true; panics naming `what` after `timeout`.
///
/// The closure is called once per poll, so its future must own what it
/// uses: bind references first (`let aws = &aws;`) and use `async move`.
///
/// ```ignore
/// let (aws, url) = (&aws, &pipeline.dlq_url);
/// wait_until(Duration::from_secs(10), "message dead-lettered", || async move {
///     aws.queue_depth(url).await == 1
/// })
/// .await;
/// ```
pub async fn wait_until<F, Fut>(timeout: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    wait_for(timeout, what, || {
        let done = check();
        async move { done.await.then_some(()) }
    })
    .await
}

/// Polls `check` until it returns `Some`, and returns the value; panics
/// naming `what` after `timeout`.
pub async fn wait_for<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let started = tokio::time::Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if started.elapsed() >= timeout {
            panic!("timed out after {timeout:?} waiting until {what}");
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}
