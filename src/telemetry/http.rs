//! The HTTP listener: `/metrics` (Prometheus text), `/healthz` (liveness),
//! `/readyz` (rules loaded and the queue reachable).

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

#[derive(Clone)]
struct Ready {
    rules: watch::Receiver<Arc<RuleSet>>,
    queue: Arc<dyn Queue>,
}

/// Binds the listener (so an address in use fails start-up) and serves it
/// until `shutdown`.
pub async fn serve(
    addr: SocketAddr,
    rules: watch::Receiver<Arc<RuleSet>>,
    queue: Arc<dyn Queue>,
    shutdown: CancellationToken,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    info!(address = %bound, "Serving /metrics, /healthz and /readyz.");
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .with_state(Ready { rules, queue });
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

async fn ready(State(ready): State<Ready>) -> impl IntoResponse {
    let rules = ready.rules.borrow().clone();
    if rules.rules().is_empty() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "no rules loaded\n".to_string(),
        );
    }
    match tokio::time::timeout(Duration::from_secs(3), ready.queue.ping()).await {
        Ok(Ok(())) => (
            StatusCode::OK,
            format!(
                "ready: {} rules, version {}\n",
                rules.rules().len(),
                rules.version()
            ),
        ),
        Ok(Err(e)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("queue unreachable: {e}\n"),
        ),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "queue unreachable: GetQueueAttributes timed out\n".to_string(),
        ),
    }
}
