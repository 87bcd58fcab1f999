//! The admin HTTP every app serves: `/metrics` (its [`Registry`] in the
//! Prometheus text format) and `/healthz`. The manager adds its own routes
//! (the cell view and the cluster API) to the same router.

use crate::metrics::Registry;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use std::net::SocketAddr;

/// The content type of the Prometheus text format.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

async fn healthz() -> &'static str {
    "ok\n"
}

/// `/metrics` and `/healthz` for one app.
pub fn router(registry: Registry) -> Router {
    Router::new().route("/healthz", get(healthz)).route(
        "/metrics",
        get(move || {
            let text = registry.render();
            async move { ([(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)], text).into_response() }
        }),
    )
}

/// Binds `bind` and serves `router` on it in a task; returns the bound
/// address. The task ends when the runtime does.
pub async fn serve(bind: SocketAddr, router: Router) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(bind).await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            tracing::error!(error = %e, %addr, "admin HTTP stopped");
        }
    });
    Ok(addr)
}

/// Why an app's admin HTTP could not start.
#[derive(Debug, thiserror::Error)]
#[error("admin HTTP on {addr}: {source}")]
pub struct AdminError {
    /// The address it was to listen on.
    pub addr: SocketAddr,
    /// Why it could not.
    #[source]
    pub source: std::io::Error,
}

/// Serves `registry`'s `/metrics` and `/healthz` on `bind`, if given;
/// returns the bound address.
pub async fn serve_metrics(
    bind: Option<SocketAddr>,
    registry: &Registry,
) -> Result<Option<SocketAddr>, AdminError> {
    let Some(addr) = bind else { return Ok(None) };
    serve(addr, router(registry.clone()))
        .await
        .map(Some)
        .map_err(|source| AdminError { addr, source })
}
