//! The manager's admin HTTP: `/` (the cell view page, every asset embedded),
//! `/healthz`, `/metrics`, `/api/cluster` (JSON: every app, its role,
//! addresses, load and client count), `/api/spaces` (the spaces),
//! `/api/spaces/1/layout` (a [`SpaceView`]: the cells with their latest
//! numbers, and the cut lines), and `POST /api/spaces/1/lines/{line}` with
//! `{"pos": metres}` to move a line by hand, `POST /api/apps/{app}/retire`
//! to have a cellapp hand its cell to the others and go, and
//! `POST /api/balance` with `{"policy": name}` to switch the balancing policy
//! while the world runs (`static` holds the lines where they are). Every
//! `POST` takes the bearer token of the data directory, and every request
//! an allowed host ([`guard`]). The driver publishes a fresh
//! [`ClusterView`] whenever membership, load or the layout changes; moves go
//! to the driver as [`Command`]s.

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use tessera::layout::{LineId, Rect, SpaceView};
use tessera::metrics::Registry;
use tokio::sync::{mpsc, oneshot};

use crate::cluster::AppInfo;

pub mod guard;
pub use guard::Guard;

/// What the admin API asks the manager to do.
#[derive(Debug)]
pub enum Command {
    /// Move a cut line; the answer is where it went, or why not.
    MoveLine {
        /// The line.
        line: LineId,
        /// Where to.
        pos: f32,
        /// The answer.
        reply: oneshot::Sender<Result<SpaceView, String>>,
    },
    /// Switch the balancing policy; the answer is `Ok` once it is in force.
    SetPolicy {
        /// A policy the manager has (see `driver::Options::policies`).
        name: String,
        /// The answer.
        reply: oneshot::Sender<Result<(), String>>,
    },
    /// Retire a cellapp; the answer is `Ok` once the retirement has begun.
    Retire {
        /// The cellapp.
        app: tessera::AppId,
        /// The answer.
        reply: oneshot::Sender<Result<(), String>>,
    },
}

/// The body of a policy switch.
#[derive(Debug, Deserialize)]
pub struct PolicyBody {
    /// A policy the manager has (see `driver::Options::policies`).
    pub policy: String,
}

/// The body of a line move.
#[derive(Debug, Deserialize)]
pub struct MoveBody {
    /// Where the line should go, in metres.
    pub pos: f32,
}

#[derive(Clone)]
struct AdminState {
    view: Shared,
    commands: mpsc::UnboundedSender<Command>,
}

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
    /// The layout of the space with each cell's numbers, once a cellapp
    /// has registered (served at `/api/spaces/1/layout`, not here).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layout: Option<SpaceView>,
}

/// One space, as `/api/spaces` lists it.
#[derive(Clone, Debug, Serialize)]
pub struct SpaceSummary {
    /// Its id.
    pub id: u32,
    /// Its bounds.
    pub bounds: Rect,
    /// Its layout epoch.
    pub epoch: u64,
    /// How many cells it has.
    pub cells: usize,
}

/// The cell view page; its script and style are inline, so it needs
/// nothing but this server.
const VIEW_PAGE: &str = include_str!("view/index.html");

/// The shared, latest view.
pub type Shared = Arc<RwLock<ClusterView>>;

async fn page() -> Html<&'static str> {
    Html(VIEW_PAGE)
}

async fn spaces(State(s): State<AdminState>) -> Json<Vec<SpaceSummary>> {
    let layout = s.view.read().ok().and_then(|v| v.layout.clone());
    Json(
        layout
            .map(|l| SpaceSummary {
                id: l.space,
                bounds: l.bounds,
                epoch: l.epoch,
                cells: l.cells.len(),
            })
            .into_iter()
            .collect(),
    )
}

async fn cluster(State(s): State<AdminState>) -> Json<ClusterView> {
    let mut v = s.view.read().map(|v| v.clone()).unwrap_or_default();
    v.layout = None;
    Json(v)
}

async fn layout(
    State(s): State<AdminState>,
    Path(space): Path<u32>,
) -> Result<impl IntoResponse, (StatusCode, String)> {
    let layout = s.view.read().ok().and_then(|v| v.layout.clone());
    match layout {
        Some(l) if l.space == space => Ok(([(header::CACHE_CONTROL, "no-store")], Json(l))),
        _ => Err((StatusCode::NOT_FOUND, format!("no space {space}\n"))),
    }
}

async fn move_line(
    State(s): State<AdminState>,
    Path((space, line)): Path<(u32, u32)>,
    Json(body): Json<MoveBody>,
) -> Result<Json<SpaceView>, (StatusCode, String)> {
    if space != 1 {
        return Err((StatusCode::NOT_FOUND, format!("no space {space}\n")));
    }
    let pos = body.pos;
    let view = ask(&s, |reply| Command::MoveLine {
        line: LineId(line),
        pos,
        reply,
    })
    .await?;
    Ok(Json(view))
}

async fn set_policy(
    State(s): State<AdminState>,
    Json(body): Json<PolicyBody>,
) -> Result<String, (StatusCode, String)> {
    let name = body.policy;
    ask(&s, |reply| Command::SetPolicy {
        name: name.clone(),
        reply,
    })
    .await?;
    Ok(format!("balancing with {name}\n"))
}

/// Sends a command and waits for its answer: 503 if the manager is stopping,
/// 400 with the reason if the command was refused.
async fn ask<T>(
    s: &AdminState,
    cmd: impl FnOnce(oneshot::Sender<Result<T, String>>) -> Command,
) -> Result<T, (StatusCode, String)> {
    let (reply, answer) = oneshot::channel();
    let gone = || {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "manager stopping\n".to_string(),
        )
    };
    s.commands.send(cmd(reply)).map_err(|_| gone())?;
    answer
        .await
        .map_err(|_| gone())?
        .map_err(|e| (StatusCode::BAD_REQUEST, format!("{e}\n")))
}

async fn retire(
    State(s): State<AdminState>,
    Path(app): Path<u32>,
) -> Result<String, (StatusCode, String)> {
    ask(&s, |reply| Command::Retire {
        app: tessera::AppId(app),
        reply,
    })
    .await?;
    Ok(format!("cellapp {app} retiring\n"))
}

/// The admin router: the manager's own routes and, from
/// [`tessera::admin::router`], `/metrics` and `/healthz`, all behind
/// `guard`.
pub fn router(
    view: Shared,
    commands: mpsc::UnboundedSender<Command>,
    registry: Registry,
    guard: Arc<Guard>,
) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/api/cluster", get(cluster))
        .route("/api/spaces", get(spaces))
        .route("/api/spaces/{space}/layout", get(layout))
        .route("/api/spaces/{space}/lines/{line}", post(move_line))
        .route("/api/apps/{app}/retire", post(retire))
        .route("/api/balance", post(set_policy))
        .with_state(AdminState { view, commands })
        .merge(tessera::admin::router(registry))
        .layer(axum::middleware::from_fn_with_state(guard, guard::guard))
}

/// Serves the admin API on a bound listener until the task is dropped.
pub async fn serve(
    listener: tokio::net::TcpListener,
    view: Shared,
    commands: mpsc::UnboundedSender<Command>,
    registry: Registry,
    guard: Arc<Guard>,
) {
    if let Err(e) = axum::serve(listener, router(view, commands, registry, guard)).await {
        tracing::error!(error = %e, "admin HTTP stopped");
    }
}
