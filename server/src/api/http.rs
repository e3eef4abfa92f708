//! The HTTP front: WebSocket sessions, health and readiness probes, and
//! Prometheus metrics, on one axum router served by the `http_listen`
//! listener.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::state::ServerState;

/// Path of the WebSocket endpoint; `{name}` is the workspace.
pub const LSP_PATH: &str = "/v1/workspaces/{name}/lsp";

/// Builds the router of the HTTP listener.
pub fn router(state: Arc<ServerState>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route(LSP_PATH, get(super::ws::upgrade))
        .fallback(not_found)
        .with_state(state)
}

/// Liveness: the process runs and serves HTTP.
async fn healthz() -> &'static str {
    "ok\n"
}

/// Readiness: both listeners accept, the gopls binary exists, and the
/// server is not shutting down.
async fn readyz(State(state): State<Arc<ServerState>>) -> Response {
    match state.readiness() {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {reason}\n"),
        )
            .into_response(),
    }
}

async fn metrics(State(state): State<Arc<ServerState>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        )],
        state.metrics.encode(),
    )
        .into_response()
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        "not found; this server serves /healthz, /readyz, /metrics and /v1/workspaces/{name}/lsp\n",
    )
        .into_response()
}
