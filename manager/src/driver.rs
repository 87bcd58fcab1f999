//! The manager driver: carries app links through the QUIC [`Transport`],
//! accepts login connections, serves admin HTTP, runs account checks on a
//! thread pool, and pumps the [`Manager`] core. Every timer and rule is the
//! core's.

use std::collections::HashMap;
use std::io::Write;
use std::net::IpAddr;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tessera::frame;
use tessera::link::quic::Transport;
use tessera::net::gate::{self, Gate, GateConfig, Pass};
use tessera::net::{self, close};
use tessera::proto::app::{Role, SpaceInfo};
use tessera::proto::login::{LoginReply, LoginRequest, ResumeRequest};
use tessera::proto::{ALPN_LOGIN, ALPN_RESUME};
use tessera::storage::{HashCost, StorageError};
use tessera::{Definitions, Time};
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

use crate::accounts::Accounts;
use crate::admin::{self, ClusterView};
use crate::cluster::throttle::LoginLimits;
use crate::cluster::LoginId;
use crate::manager::{Manager, ManagerConfig, Output};
use crate::metrics::Metrics;
use tessera::metrics::LinkMeter;

/// The largest login frame.
const MAX_LOGIN_FRAME: usize = 1024;
/// How long a login waits for the manager's answer.
const LOGIN_ANSWER_WAIT: Duration = Duration::from_secs(30);

/// How to run a manager.
#[derive(Clone)]
pub struct Options {
    /// Where apps connect.
    pub bind_internal: SocketAddr,
    /// Where clients log in.
    pub bind_login: SocketAddr,
    /// Admin HTTP.
    pub bind_admin: SocketAddr,
    /// Data directory (certificates, admin token).
    pub data_dir: PathBuf,
    /// The database of accounts and entities.
    pub database: tessera::storage::Location,
    /// The certificate the public ports present.
    pub public_cert: net::PublicCert,
    /// Entity definitions.
    pub defs: Arc<Definitions>,
    /// The space.
    pub space: SpaceInfo,
    /// Password hashing cost.
    pub hash_cost: HashCost,
    /// The balancing policy to start with, by name: one of `policies`.
    pub policy: String,
    /// Every policy the manager may run or be switched to: the built-in
    /// ones and the game's ([`crate::balance::with`]).
    pub policies: crate::balance::Policies,
    /// How long after starting the manager waits for apps of a previous
    /// run (it may be a restart) to come back before it takes new ones.
    /// Longer than the apps' link timeout; zero for a manager that is
    /// certainly the first.
    pub rejoin_window: Duration,
    /// Login connections one IP address may hold at once.
    pub logins_per_addr: usize,
    /// New login connections one IP address may open a second (after a
    /// burst of twice as many); 0 for no limit.
    pub conn_rate_per_addr: f64,
    /// Login rate limits and the bound on account checks in flight.
    pub login_limits: LoginLimits,
    /// Host names the admin HTTP answers to besides IP literals and
    /// `localhost` (a request naming another host is refused).
    pub admin_hosts: Vec<String>,
    /// How long an app may be silent before it is dropped.
    pub heartbeat_timeout: Duration,
    /// The load at least one cell must report before lines move.
    pub balance_floor: f32,
    /// Record the world's load into this file from the start, for
    /// `tessera sim --replay` (see `tessera::recording`).
    pub record: Option<PathBuf>,
}

/// Why the manager could not run.
#[derive(Debug, thiserror::Error)]
pub enum ManagerError {
    /// QUIC setup failed.
    #[error(transparent)]
    Net(#[from] net::NetError),
    /// The database could not be opened.
    #[error("database: {0}")]
    Storage(#[from] StorageError),
    /// The admin port could not be bound.
    #[error("admin HTTP on {addr}: {source}")]
    Admin {
        /// The address.
        addr: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
    /// The recording file could not be written.
    #[error("cannot write the recording {path}: {source}")]
    Record {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// No balancing policy by that name.
    #[error("unknown balancing policy {name:?}; choose one of {known}")]
    UnknownPolicy {
        /// The name asked for.
        name: String,
        /// The policies there are, comma-separated.
        known: String,
    },
}

/// A running manager.
pub struct ManagerHandle {
    /// Where apps connect.
    pub internal_addr: SocketAddr,
    /// Where clients log in.
    pub login_addr: SocketAddr,
    /// Admin HTTP.
    pub admin_addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl ManagerHandle {
    /// Stops the manager.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = self.task.await;
    }
}

/// What a client on the login port asks.
enum Request {
    Login(LoginRequest),
    Resume(ResumeRequest),
}

struct LoginAsk {
    id: LoginId,
    from: IpAddr,
    req: Request,
    reply: oneshot::Sender<LoginReply>,
    /// Set once the client has left.
    left: Arc<AtomicBool>,
}

/// The ALPN a connection agreed on.
fn alpn(conn: &quinn::Connection) -> Option<Vec<u8>> {
    conn.handshake_data()?
        .downcast::<quinn::crypto::rustls::HandshakeData>()
        .ok()?
        .protocol
}

/// Reads the one request of a login-port connection: a login or, on the
/// resume ALPN, a resume.
async fn read_request(
    conn: &quinn::Connection,
    recv: &mut quinn::RecvStream,
    buf: &mut Vec<u8>,
) -> Result<Request, String> {
    let bad = |e: frame::FrameError| e.to_string();
    Ok(if alpn(conn).as_deref() == Some(ALPN_RESUME) {
        Request::Resume(
            frame::read_msg::<ResumeRequest>(recv, MAX_LOGIN_FRAME, buf)
                .await
                .map_err(bad)?
                .ok_or("no resume request")?,
        )
    } else {
        Request::Login(
            frame::read_msg::<LoginRequest>(recv, MAX_LOGIN_FRAME, buf)
                .await
                .map_err(bad)?
                .ok_or("no login request")?,
        )
    })
}

/// Starts a manager.
pub async fn start(opts: Options) -> Result<ManagerHandle, ManagerError> {
    let policy = policy(&opts.policies, &opts.policy)?;
    let cluster = net::ca::load_identity(&opts.data_dir)?;
    let identity = opts.public_cert.load(&opts.data_dir)?;
    let internal = net::endpoint(
        opts.bind_internal,
        Some(net::internal_server_config(&cluster)?),
    )?;
    let login = net::endpoint(
        opts.bind_login,
        Some(net::server_config(&identity, &[ALPN_LOGIN, ALPN_RESUME])?),
    )?;
    let local = |ep: &quinn::Endpoint, addr: SocketAddr| {
        ep.local_addr()
            .map_err(|source| net::NetError::Bind { addr, source })
    };
    let internal_addr = local(&internal, opts.bind_internal)?;
    let login_addr = local(&login, opts.bind_login)?;
    let listener = tokio::net::TcpListener::bind(opts.bind_admin)
        .await
        .map_err(|source| ManagerError::Admin {
            addr: opts.bind_admin,
            source,
        })?;
    let admin_addr = listener
        .local_addr()
        .map_err(|source| ManagerError::Admin {
            addr: opts.bind_admin,
            source,
        })?;
    let view = Arc::new(RwLock::new(ClusterView {
        login_addr: Some(login_addr),
        ..ClusterView::default()
    }));
    let (commands_tx, commands) = mpsc::unbounded_channel();
    let metrics = Metrics::new();
    let token = admin::guard::load_or_create_token(&opts.data_dir).map_err(|source| {
        ManagerError::Admin {
            addr: opts.bind_admin,
            source,
        }
    })?;
    tokio::spawn(admin::serve(
        listener,
        view.clone(),
        commands_tx,
        metrics.registry.clone(),
        Arc::new(admin::Guard::new(token, opts.admin_hosts.clone())),
    ));
    let (checked_tx, checked) = mpsc::unbounded_channel();
    // Two hashing threads: password checks are deliberately slow, and a
    // login storm must not take every core from the running world.
    let db = opts.database.open(opts.hash_cost).await?;
    let accounts = Accounts::open(&db, 2, checked_tx)?;
    let transport = Transport::new(internal, &cluster, metrics.app_link.clone())?;
    transport.listen(net::gate::Gate::new(net::gate::GateConfig::internal()));
    let (logins_tx, logins) = mpsc::unbounded_channel();
    tokio::spawn(accept_logins(
        login.clone(),
        Gate::new(GateConfig::clients(
            opts.logins_per_addr,
            opts.conn_rate_per_addr,
        )),
        logins_tx,
        metrics.login_link.clone(),
    ));
    let (stop_tx, stop_rx) = oneshot::channel();
    let cfg = ManagerConfig {
        rejoin_window: opts.rejoin_window,
        logins: opts.login_limits,
        heartbeat_timeout: opts.heartbeat_timeout,
        balance_floor: opts.balance_floor,
        ..ManagerConfig::default()
    };
    let mut core = Manager::new(Time::now(), &opts.defs, opts.space.clone(), cfg);
    core.set_policy(policy);
    let recording = match &opts.record {
        Some(path) => {
            let header = core.cluster_mut().start_recording(Time::now());
            let failed = |source| ManagerError::Record {
                path: path.clone(),
                source,
            };
            let mut file = std::io::BufWriter::new(std::fs::File::create(path).map_err(failed)?);
            file.write_all(&tessera::recording::header_bytes(&header))
                .and_then(|()| file.flush())
                .map_err(failed)?;
            tracing::info!(path = %path.display(), "recording the world's load");
            Some(record_writer(file))
        }
        None => None,
    };
    let span = tracing::info_span!("manager");
    tracing::info!(parent: &span, %internal_addr, %login_addr, %admin_addr, "manager up");
    let task = tokio::spawn(
        run(
            core,
            accounts,
            view,
            transport,
            logins,
            checked,
            commands,
            stop_rx,
            login,
            metrics,
            opts.policies.clone(),
            recording,
        )
        .instrument(span),
    );
    Ok(ManagerHandle {
        internal_addr,
        login_addr,
        admin_addr,
        stop: Some(stop_tx),
        task,
    })
}

async fn accept_logins(
    endpoint: quinn::Endpoint,
    gate: Gate,
    asks: mpsc::UnboundedSender<LoginAsk>,
    meter: LinkMeter,
) {
    let mut next: LoginId = 1;
    while let Some(incoming) = endpoint.accept().await {
        let Some((connecting, pass)) = gate::admit(&gate, incoming) else {
            continue;
        };
        let id = next;
        next += 1;
        let asks = asks.clone();
        let meter = meter.clone();
        let wait = gate.config().first_wait;
        tokio::spawn(async move {
            let Ok(conn) = connecting.await else { return };
            login_conn(conn, pass, wait, id, asks, meter).await;
        });
    }
}

/// One login connection: its request within `wait`, the manager's answer
/// within [`LOGIN_ANSWER_WAIT`], then the client closes.
async fn login_conn(
    conn: quinn::Connection,
    mut pass: Pass,
    wait: Duration,
    id: LoginId,
    asks: mpsc::UnboundedSender<LoginAsk>,
    meter: LinkMeter,
) {
    let request = async {
        let (send, mut recv) = conn.accept_bi().await.map_err(|e| e.to_string())?;
        let mut buf = Vec::new();
        let req = read_request(&conn, &mut recv, &mut buf).await?;
        meter.received(buf.len() + frame::HEADER_LEN);
        Ok::<_, String>((send, req))
    };
    let (mut send, req) = match tokio::time::timeout(wait, request).await {
        Ok(Ok(r)) => r,
        Ok(Err(reason)) => {
            tracing::warn!(peer = %conn.remote_address(), %reason, "login failed");
            conn.close(close::PROTOCOL.into(), reason.as_bytes());
            return;
        }
        Err(_) => {
            conn.close(close::PROTOCOL.into(), b"no login request in time");
            return;
        }
    };
    pass.arrived();
    let answer = async {
        let (tx, rx) = oneshot::channel();
        let left = Arc::new(AtomicBool::new(false));
        asks.send(LoginAsk {
            id,
            from: conn.remote_address().ip(),
            req,
            reply: tx,
            left: left.clone(),
        })
        .map_err(|_| "manager stopping".to_string())?;
        // A client that leaves gives up its place: its check, if still
        // queued, is skipped.
        let reply = tokio::select! {
            reply = rx => reply.map_err(|_| "manager stopping".to_string())?,
            _ = conn.closed() => {
                left.store(true, Ordering::Relaxed);
                return Err("the client left".to_string());
            }
        };
        let bytes = frame::encode(&reply);
        meter.sent(bytes.len());
        send.write_all(&bytes).await.map_err(|e| e.to_string())?;
        let _ = send.finish();
        Ok::<(), String>(())
    };
    match tokio::time::timeout(LOGIN_ANSWER_WAIT, answer).await {
        Ok(Ok(())) => {
            // The client closes once it has read the reply.
            let _ = tokio::time::timeout(Duration::from_secs(5), conn.closed()).await;
        }
        Ok(Err(reason)) => {
            tracing::warn!(peer = %conn.remote_address(), %reason, "login failed");
            conn.close(close::PROTOCOL.into(), reason.as_bytes());
        }
        Err(_) => conn.close(close::SHUTDOWN.into(), b"login timed out"),
    }
}

#[allow(clippy::too_many_arguments)]
async fn run(
    mut core: Manager,
    accounts: Accounts,
    view: admin::Shared,
    mut transport: Transport,
    mut logins: mpsc::UnboundedReceiver<LoginAsk>,
    mut checked: mpsc::UnboundedReceiver<(
        LoginId,
        Option<Result<tessera::storage::Account, StorageError>>,
    )>,
    mut commands: mpsc::UnboundedReceiver<admin::Command>,
    mut stop: oneshot::Receiver<()>,
    login: quinn::Endpoint,
    metrics: Metrics,
    policies: crate::balance::Policies,
    mut recording: Option<std::sync::mpsc::SyncSender<tessera::recording::Sample>>,
) {
    let mut replies: HashMap<LoginId, (oneshot::Sender<LoginReply>, Arc<AtomicBool>)> =
        HashMap::new();
    loop {
        let wake = core.poll_timeout();
        tokio::select! {
            (conn, ev) = transport.next() => core.handle(Time::now(), conn, ev),
            Some(ask) = logins.recv() => {
                replies.insert(ask.id, (ask.reply, ask.left));
                match ask.req {
                    Request::Login(req) => core.login(Time::now(), ask.id, ask.from, req),
                    Request::Resume(req) => core.resume(Time::now(), ask.id, ask.from, req),
                }
            }
            Some((id, result)) = checked.recv() => match result {
                Some(result) => core.account_checked(Time::now(), id, result),
                None => core.account_dropped(id),
            },
            Some(cmd) = commands.recv() => {
                command(&mut core, &policies, cmd);
                publish(&core, &view, &metrics);
            }
            _ = tessera::time::sleep_until(wake) => {
                let started = std::time::Instant::now();
                core.handle_timeout(Time::now());
                publish(&core, &view, &metrics);
                metrics.tick.record(started.elapsed(), core.config().tick);
            }
            _ = &mut stop => break,
        }
        for out in core.drain() {
            match out {
                Output::Transmit(t) => transport.apply(t),
                Output::Sample(sample) => {
                    let Some(writer) = recording.as_ref() else {
                        continue;
                    };
                    match writer.try_send(sample) {
                        Ok(()) => {}
                        Err(std::sync::mpsc::TrySendError::Full(_)) => {
                            tracing::warn!("the recording's disk is behind; a sample is skipped");
                        }
                        // The writer met an error (it said which) and ended.
                        Err(std::sync::mpsc::TrySendError::Disconnected(_)) => {
                            recording = None;
                            core.cluster_mut().stop_recording();
                        }
                    }
                }
                Output::Login(id, reply) => {
                    match &reply {
                        LoginReply::Granted { .. } => metrics.logins_ok.inc(),
                        LoginReply::Refused { .. } => metrics.logins_failed.inc(),
                    }
                    if let Some((tx, _)) = replies.remove(&id) {
                        let _ = tx.send(reply);
                    }
                }
                Output::CheckAccount(check) => {
                    // Skipped if the client has left by the time a
                    // hashing thread takes it.
                    let left = replies
                        .get(&check.login)
                        .map(|(_, left)| left.clone())
                        .unwrap_or_default();
                    accounts.check(check, left);
                }
            }
        }
    }
    login.close(close::SHUTDOWN.into(), b"manager stopping");
    transport
        .shutdown(close::SHUTDOWN, "manager stopping")
        .await;
}

/// A fresh policy `name` of `policies`.
fn policy(
    policies: &crate::balance::Policies,
    name: &str,
) -> Result<Box<dyn crate::balance::Policy>, ManagerError> {
    policies
        .make(name)
        .ok_or_else(|| ManagerError::UnknownPolicy {
            name: name.to_string(),
            known: policies.names().join(", "),
        })
}

/// Carries out an operator's command from the admin API.
fn command(core: &mut Manager, policies: &crate::balance::Policies, cmd: admin::Command) {
    match cmd {
        admin::Command::MoveLine { line, pos, reply } => {
            let cluster = core.cluster_mut();
            let result = cluster
                .move_line(line, pos)
                .map(|_| cluster.space_view())
                .map_err(|e| e.to_string())
                .and_then(|v| v.ok_or_else(|| "no layout yet".to_string()));
            if result.is_ok() {
                tracing::info!(line = line.0, pos, "line moved by hand");
            }
            let _ = reply.send(result);
        }
        admin::Command::SetPolicy { name, reply } => {
            let result = match policy(policies, &name) {
                Ok(p) => {
                    core.set_policy(p);
                    tracing::info!(policy = %name, "balancing policy switched");
                    Ok(())
                }
                Err(e) => Err(e.to_string()),
            };
            let _ = reply.send(result);
        }
        admin::Command::Retire { app, reply } => {
            let result = core
                .cluster_mut()
                .retire(Time::now(), app)
                .map_err(|e| e.to_string());
            let _ = reply.send(result);
        }
    }
}

fn publish(core: &Manager, view: &admin::Shared, metrics: &Metrics) {
    let core = core.cluster();
    let apps = core.apps();
    let clients = apps
        .iter()
        .filter(|a| a.role == Role::Baseapp.to_string())
        .map(|a| a.clients)
        .sum();
    let entities = apps
        .iter()
        .filter(|a| a.role == Role::Cellapp.to_string())
        .map(|a| a.entities)
        .sum();
    let count = |role: Role| apps.iter().filter(|a| a.role == role.to_string()).count() as f64;
    metrics.cellapps.set(count(Role::Cellapp));
    metrics.baseapps.set(count(Role::Baseapp));
    metrics.clients.set(f64::from(clients));
    metrics.entities.set(f64::from(entities));
    if let Some(l) = core.layout() {
        metrics.epoch.set(l.epoch as f64);
    }
    if let Ok(mut v) = view.write() {
        v.apps = apps;
        v.clients = clients;
        v.entities = entities;
        v.layout = core.space_view();
    }
}

/// A thread appending recording samples to `file`, so a slow disk never
/// holds up the manager's loop: it takes a few samples ahead and ends
/// (saying why) at the first write that fails.
fn record_writer(
    mut file: std::io::BufWriter<std::fs::File>,
) -> std::sync::mpsc::SyncSender<tessera::recording::Sample> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<tessera::recording::Sample>(4);
    std::thread::spawn(move || {
        for sample in rx {
            let bytes = tessera::recording::sample_bytes(&sample);
            if let Err(e) = file.write_all(&bytes).and_then(|()| file.flush()) {
                tracing::warn!(error = %e, "cannot write the recording; it stops");
                return;
            }
        }
    });
    tx
}
