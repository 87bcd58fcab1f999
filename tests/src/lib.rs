//! The end-to-end harness: a whole cluster (manager, cellapps, baseapps) in
//! one process, talking real QUIC over loopback and storing to a real SQLite
//! file, plus helpers to log clients in and to read what the servers log.
//!
//! The tests themselves live in `tests/`; [`browser`] drives headless
//! Chromium for the cell view's test.

pub mod browser;

pub mod intruder;
pub mod sources;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use tessera::client::{Client, ClientError, Setup};
use tessera::proto::app::SpaceInfo;
use tessera::storage::HashCost;
use tessera::{AppId, EntityId};
use tessera_baseapp::driver::BaseappHandle;
use tessera_cellapp::driver::CellappHandle as Cellapp;
use tessera_game::Game;
use tessera_manager::cluster::throttle::LoginLimits;
use tessera_manager::driver::ManagerHandle;

/// Client endpoints a cluster spreads its logins over.
const CLIENT_ENDPOINTS: usize = 8;

/// How long a process of a test cluster may go unheard before its link
/// closes or the manager drops it. A whole cluster and up to a thousand
/// clients share this process's two worker threads, and a cellapp taking
/// a share of a crowd can go unpolled for seconds; no test here kills a
/// process (the real-process tests do), so the cluster may be patient.
const PATIENCE: std::time::Duration = std::time::Duration::from_secs(20);

/// How to build a test cluster.
#[derive(Clone, Debug)]
pub struct ClusterSpec {
    /// NPCs per cellapp.
    pub npcs: usize,
    /// Space size in metres.
    pub size: f32,
    /// Cellapps.
    pub cellapps: usize,
    /// Baseapps.
    pub baseapps: usize,
    /// The balancing policy.
    pub policy: &'static str,
    /// The load at least one cellapp must report before lines move.
    pub balance_floor: f32,
    /// Login limits: by default none to speak of, since every client of a
    /// test connects from the loopback address.
    pub login_limits: LoginLimits,
    /// Password hashing cost: by default cheap, since these tests are about
    /// the world, not about argon2's cost.
    pub hash_cost: HashCost,
    /// New login connections one address may open a second (0: no limit,
    /// the default: every client of a test has the same address).
    pub conn_rate_per_addr: f64,
    /// The game the cluster runs: the demo world unless a test says.
    pub game: Game,
    /// The database: `world.db` in the data directory unless a test says.
    pub database: Option<tessera::storage::Location>,
    /// The public ports' certificate: the generated one unless a test says.
    pub public_cert: tessera::net::PublicCert,
}

impl Default for ClusterSpec {
    fn default() -> Self {
        ClusterSpec {
            npcs: 0,
            size: 400.0,
            cellapps: 1,
            baseapps: 1,
            policy: "tessera",
            balance_floor: tessera_manager::cluster::DEFAULT_BALANCE_FLOOR,
            login_limits: LoginLimits::one_address(),
            hash_cost: HashCost {
                memory_kib: 256,
                iterations: 1,
                parallelism: 1,
            },
            conn_rate_per_addr: 0.0,
            game: tessera_demo::game(),
            database: None,
            public_cert: tessera::net::PublicCert::Generated,
        }
    }
}

/// A cellapp's options for `game`: its definitions, behaviours and NPCs.
pub fn cellapp_options(
    game: &Game,
    manager: std::net::SocketAddr,
    data: &Path,
    npcs: usize,
    seed: u64,
) -> tessera_cellapp::driver::Options {
    tessera_cellapp::driver::Options {
        manager,
        bind: loopback(),
        advertise: None,
        data_dir: data.to_path_buf(),
        defs: game.definitions().clone(),
        behaviors: game.cell_behaviors().clone(),
        spawns: game.spawns(npcs),
        index: tessera_cellapp::index::IndexKind::RTree,
        budget: Default::default(),
        move_window: std::time::Duration::from_millis(
            tessera_cellapp::pace::DEFAULT_MOVE_WINDOW_MS,
        ),
        backup_period: tessera_cellapp::cellapp::DEFAULT_BACKUP_PERIOD,
        seed,
        admin: Some(loopback()),
    }
}

/// A baseapp's settings for `game`: its player type and base behaviours.
pub fn base_config(game: &Game) -> tessera_baseapp::BaseConfig {
    tessera_baseapp::BaseConfig {
        player_type: game.player_type().to_string(),
        behaviors: game.base_behaviors().clone(),
        ..Default::default()
    }
}

/// A running cluster.
pub struct Cluster {
    /// The manager.
    pub manager: ManagerHandle,
    /// Its cellapps.
    pub cellapps: Vec<Cellapp>,
    /// Its baseapps.
    pub baseapps: Vec<BaseappHandle>,
    /// What clients need to connect.
    pub setup: Setup,
    /// A client endpoint.
    pub endpoint: quinn::Endpoint,
    /// Endpoints [`Cluster::login`] spreads clients over, so a thousand of
    /// them are not all behind one socket buffer and one driver task.
    spread: Vec<quinn::Endpoint>,
    /// Logins so far, to pick the next endpoint.
    logins: std::sync::atomic::AtomicUsize,
    /// The data directory.
    pub data: PathBuf,
    /// The game it runs.
    pub game: Game,
}

async fn start_cellapp(
    manager: &ManagerHandle,
    data: &Path,
    game: &Game,
    npcs: usize,
    seed: u64,
) -> Cellapp {
    let opts = cellapp_options(game, manager.internal_addr, data, npcs, seed);
    tessera_cellapp::driver::start(opts)
        .await
        .expect("cellapp starts")
}

fn loopback() -> std::net::SocketAddr {
    std::net::SocketAddr::from(([127, 0, 0, 1], 0))
}

impl Cluster {
    /// Starts a cluster storing into `data`.
    pub async fn start(data: &Path, spec: ClusterSpec) -> Cluster {
        // Far longer than the 750 ms (links) or 2 s (clients) of
        // production: see PATIENCE.
        tessera::net::set_link_idle_timeout(PATIENCE);
        tessera::net::set_client_idle_timeout(std::time::Duration::from_secs(10));
        tessera::net::ca::init(data).expect("cluster CA");
        let defs = spec.game.definitions().clone();
        let manager = tessera_manager::driver::start(tessera_manager::driver::Options {
            bind_internal: loopback(),
            bind_login: loopback(),
            bind_admin: loopback(),
            data_dir: data.to_path_buf(),
            database: spec
                .database
                .clone()
                .unwrap_or_else(|| tessera::storage::Location::in_data_dir(data)),
            public_cert: spec.public_cert.clone(),
            defs: defs.clone(),
            space: SpaceInfo {
                bounds: [0.0, 0.0, spec.size, spec.size],
                tick_hz: 10,
            },
            hash_cost: spec.hash_cost,
            policy: spec.policy.to_string(),
            policies: tessera_manager::balance::with(spec.game.policies()),
            // The manager of this harness never restarts.
            rejoin_window: std::time::Duration::ZERO,
            // Every client of these tests connects from one address.
            logins_per_addr: 100_000,
            conn_rate_per_addr: spec.conn_rate_per_addr,
            login_limits: spec.login_limits,
            admin_hosts: Vec::new(),
            heartbeat_timeout: PATIENCE,
            balance_floor: spec.balance_floor,
            record: None,
        })
        .await
        .expect("manager starts");
        let mut cellapps = Vec::new();
        for i in 0..spec.cellapps {
            cellapps.push(start_cellapp(&manager, data, &spec.game, spec.npcs, 7 + i as u64).await);
        }
        let mut baseapps = Vec::new();
        for _ in 0..spec.baseapps {
            baseapps.push(
                tessera_baseapp::driver::start(tessera_baseapp::driver::Options {
                    manager: manager.internal_addr,
                    bind_internal: loopback(),
                    bind_public: loopback(),
                    advertise_internal: None,
                    advertise_public: None,
                    data_dir: data.to_path_buf(),
                    database: spec
                        .database
                        .clone()
                        .unwrap_or_else(|| tessera::storage::Location::in_data_dir(data)),
                    public_cert: spec.public_cert.clone(),
                    defs: defs.clone(),
                    config: base_config(&spec.game),
                    admin: Some(loopback()),
                    clients_per_addr: 100_000,
                    conn_rate_per_addr: 0.0,
                })
                .await
                .expect("baseapp starts"),
            );
        }
        // With a certificate of its own, the test sets what clients trust.
        let trust = match &spec.public_cert {
            tessera::net::PublicCert::Generated => {
                tessera::net::load_trusted_cert(&tessera::net::cert_path(data))
                    .expect("certificate exists")
            }
            tessera::net::PublicCert::Pem { cert, .. } => {
                tessera::net::load_trusted_cert(cert).expect("certificate exists")
            }
        };
        Cluster {
            manager,
            cellapps,
            baseapps,
            setup: Setup {
                defs,
                trust,
                server_name: tessera::net::SERVER_NAME.into(),
                max_frame: tessera::frame::DEFAULT_MAX_FRAME,
            },
            endpoint: tessera::client::endpoint().expect("client endpoint"),
            spread: (0..CLIENT_ENDPOINTS)
                .map(|_| tessera::client::endpoint().expect("client endpoint"))
                .collect(),
            logins: Default::default(),
            data: data.to_path_buf(),
            game: spec.game.clone(),
        }
    }

    /// Starts one more cellapp while the world runs (it brings no NPCs).
    pub async fn add_cellapp(&mut self) -> AppId {
        let seed = 100 + self.cellapps.len() as u64;
        let c = start_cellapp(&self.manager, &self.data, &self.game, 0, seed).await;
        let app = c.app;
        self.cellapps.push(c);
        app
    }

    /// Every real on every cellapp by id; fails the test if an entity is
    /// real twice or the count is not `expected`. The cellapps are read one
    /// after another: call it only while nothing migrates (entities still
    /// and lines held), or a real in flight between two reads is counted
    /// on neither.
    pub async fn reals_once(
        &self,
        expected: usize,
    ) -> BTreeMap<EntityId, tessera_cellapp::cell::EntitySnapshot> {
        let mut truth = Vec::new();
        for c in &self.cellapps {
            truth.extend(c.snapshot().await);
        }
        let n = truth.len();
        let by_id: BTreeMap<_, _> = truth.into_iter().map(|s| (s.id, s)).collect();
        assert_eq!(by_id.len(), n, "an entity is real twice");
        assert_eq!(n, expected, "every entity is real once");
        by_id
    }

    /// Logs a client in (creating the account if asked).
    pub async fn login(
        &self,
        name: &str,
        password: &str,
        create: bool,
    ) -> Result<Client, ClientError> {
        let mut last = None;
        let n = self
            .logins
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let endpoint = &self.spread[n % self.spread.len()];
        // The baseapp links to the cellapp just after it registers; retry while the world comes up.
        for _ in 0..50 {
            match Client::login_and_connect(
                endpoint,
                &self.setup,
                self.manager.login_addr,
                name,
                password,
                create,
            )
            .await
            {
                Err(ClientError::LoginRefused {
                    reason: tessera::proto::login::RefuseReason::Unavailable,
                    message,
                }) => {
                    last = Some(message);
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                other => return other,
            }
        }
        Err(ClientError::Protocol(format!(
            "world never came up: {last:?}"
        )))
    }

    /// Switches the manager's balancing policy through its admin API.
    pub async fn set_policy(&self, name: &str) -> Answer {
        let body = serde_json::json!({ "policy": name }).to_string();
        admin(
            &self.data,
            self.manager.admin_addr,
            "POST",
            "/api/balance",
            &body,
        )
        .await
    }

    /// Stops everything in order: baseapps (saving every entity), cellapps, manager.
    pub async fn stop(self) {
        for b in self.baseapps {
            b.stop().await;
        }
        for c in self.cellapps {
            c.stop().await;
        }
        self.manager.stop().await;
    }
}

pub use tessera_tools::http::{request, request_with, Answer};

/// One request to an admin API at `addr` (`GET`, or `POST` with a JSON
/// `body`), through [`request`] on a blocking thread; returns the answer
/// whatever its status, and panics if there is none.
pub async fn http(addr: std::net::SocketAddr, method: &str, path: &str, body: &str) -> Answer {
    http_as(addr, method, path, body, None).await
}

/// Like [`http`], with the admin token of the data directory `data`.
pub async fn admin(
    data: &Path,
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    body: &str,
) -> Answer {
    let token = std::fs::read_to_string(tessera_manager::admin::guard::token_path(data))
        .expect("the admin token");
    http_as(addr, method, path, body, Some(token.trim())).await
}

async fn http_as(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    body: &str,
    token: Option<&str>,
) -> Answer {
    let (method, url, body, token) = (
        method.to_string(),
        format!("http://{addr}{path}"),
        body.to_string(),
        token.map(str::to_string),
    );
    tokio::task::spawn_blocking(move || {
        request_with(&method, &url, &body, token.as_deref())
            .unwrap_or_else(|e| panic!("{method} {url}: {e}"))
    })
    .await
    .expect("the request's thread")
}

/// The manager's `/api/spaces/1/layout`, once it has one (it is published
/// twice a second, so right after the cluster starts it may not yet be).
pub async fn space_layout(admin: std::net::SocketAddr) -> serde_json::Value {
    for _ in 0..100 {
        let answer = http(admin, "GET", "/api/spaces/1/layout", "").await;
        if answer.status == 200 {
            return serde_json::from_str(&answer.body).expect("layout JSON");
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the manager never published a layout");
}

#[derive(Clone)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut b) = self.0.lock() {
            b.extend_from_slice(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();

/// Starts capturing this process's logs (warnings and above) and returns
/// everything captured so far as text on each call.
pub fn logs() -> String {
    let buf = LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let writer = Capture(buf.clone());
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("warn"))
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .try_init();
        buf
    });
    buf.lock()
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}
