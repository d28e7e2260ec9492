//! The HTTP listener: `/metrics` (Prometheus text), `/healthz` (liveness),
//! `/readyz` (rules loaded, the queue and the state store reachable).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::aws::Queue;
use crate::rules::RuleSet;
use crate::state::StateStore;

/// How long `/readyz` waits for the queue, and for the store.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// What `/readyz` checks.
#[derive(Clone)]
pub struct Ready {
    pub rules: watch::Receiver<Arc<RuleSet>>,
    pub queue: Arc<dyn Queue>,
    pub store: Arc<dyn StateStore>,
}

/// Binds the listener (so an address in use fails start-up) and serves it
/// until `shutdown`.
pub async fn serve(
    addr: SocketAddr,
    ready: Ready,
    shutdown: CancellationToken,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    info!(address = %bound, "Serving /metrics, /healthz and /readyz.");
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(ready);
    Ok(tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(error) = served {
            warn!(%error, "The metrics listener stopped.");
        }
    }))
}

async fn metrics() -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        super::metrics().encode(),
    )
}

async fn readyz(State(ready): State<Ready>) -> impl IntoResponse {
    readiness(&ready).await
}

/// `/readyz`'s answer: 200 when rules are loaded, the queue answers
/// `GetQueueAttributes` and the state store answers; 503 with every reason
/// it is not ready otherwise. Without the store nothing can act (no action
/// runs without a claim), so a replica that cannot reach it is not ready.
pub async fn readiness(ready: &Ready) -> (StatusCode, String) {
    let rules = ready.rules.borrow().clone();
    let (queue, store) = tokio::join!(
        tokio::time::timeout(PROBE_TIMEOUT, ready.queue.ping()),
        tokio::time::timeout(PROBE_TIMEOUT, ready.store.ping()),
    );
    let mut problems = Vec::new();
    if rules.rules().is_empty() {
        problems.push("no rules loaded".to_string());
    }
    match queue {
        Ok(Ok(())) => {}
        Ok(Err(e)) => problems.push(format!("queue unreachable: {e}")),
        Err(_) => problems.push("queue unreachable: GetQueueAttributes timed out".to_string()),
    }
    let described = ready.store.describe();
    match store {
        Ok(Ok(())) => {}
        Ok(Err(e)) => problems.push(format!("state store ({described}) unreachable: {e}")),
        Err(_) => problems.push(format!(
            "state store ({described}) unreachable: no answer within {}s",
            PROBE_TIMEOUT.as_secs()
        )),
    }
    if problems.is_empty() {
        (
            StatusCode::OK,
            format!(
                "ready: {} rules, version {}; state {described}\n",
                rules.rules().len(),
                rules.version()
            ),
        )
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{}\n", problems.join("; ")),
        )
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::testing::{FakeAws, OutageStore};

    fn ready(store: Arc<dyn StateStore>) -> (Ready, watch::Sender<Arc<RuleSet>>) {
        let rules = crate::rules::load_sources(vec![(
            PathBuf::from("t.toml"),
            "[[rule]]\nname = \"r\"\n[rule.match]\nalarm_name = \"a\"\n[[rule.actions]]\ntype = \"put_metric\"\nmetric_name = \"m\"\n".to_string(),
        )])
        .unwrap_or_else(|e| panic!("rules: {e:?}"));
        let (tx, rx) = watch::channel(Arc::new(rules));
        (
            Ready {
                rules: rx,
                queue: Arc::new(FakeAws::new()),
                store,
            },
            tx,
        )
    }

    #[tokio::test]
    async fn readyz_reports_the_state_store() {
        let store = Arc::new(OutageStore::default());
        let (ready, _rules) = ready(store.clone());
        let (code, body) = readiness(&ready).await;
        assert_eq!(code, StatusCode::OK, "{body}");
        assert!(body.starts_with("ready: 1 rules"), "{body}");
        assert!(body.contains("state memory"), "{body}");

        // The store goes away: not ready, and the answer says why.
        store.down();
        let (code, body) = readiness(&ready).await;
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert!(
            body.contains("state store (memory (test outage switch)) unreachable")
                && body.contains("connection refused"),
            "{body}"
        );

        // It comes back: ready again.
        store.up();
        let (code, body) = readiness(&ready).await;
        assert_eq!(code, StatusCode::OK, "{body}");
    }

    #[tokio::test]
    async fn readyz_lists_every_reason_at_once() {
        let store = Arc::new(OutageStore::default());
        let (ready, _rules) = ready(store.clone());
        store.down();
        let queue = FakeAws::new();
        queue.fail_next(
            "sqs:GetQueueAttributes",
            crate::aws::AwsError::transient("sqs", "GetQueueAttributes", "connection reset"),
        );
        let ready = Ready {
            queue: Arc::new(queue),
            ..ready
        };
        let (code, body) = readiness(&ready).await;
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            body.contains("queue unreachable") && body.contains("state store"),
            "{body}"
        );
    }
}
