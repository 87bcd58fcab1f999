//! The manager's admin HTTP: `/healthz` and `/api/cluster` (JSON: every app,
//! its role, addresses, load and client count). The driver publishes a fresh
//! [`ClusterView`] whenever membership or load changes.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use crate::cluster::AppInfo;

/// What `/api/cluster` returns.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ClusterView {
    /// Where clients log in.
    pub login_addr: Option<SocketAddr>,
    /// Every app.
    pub apps: Vec<AppInfo>,
    /// Clients connected, over all baseapps.
    pub clients: u32,
    /// Entities, over all cellapps.
    pub entities: u32,
}

/// The shared, latest view.
pub type Shared = Arc<RwLock<ClusterView>>;

async fn healthz() -> &'static str {
    "ok\n"
}

async fn cluster(State(view): State<Shared>) -> Json<ClusterView> {
    let v = view.read().map(|v| v.clone()).unwrap_or_default();
    Json(v)
}

/// The admin router.
pub fn router(view: Shared) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/api/cluster", get(cluster))
        .with_state(view)
}

/// Serves the admin API on a bound listener until the task is dropped.
pub async fn serve(listener: tokio::net::TcpListener, view: Shared) {
    if let Err(e) = axum::serve(listener, router(view)).await {
        tracing::error!(error = %e, "admin HTTP stopped");
    }
}
