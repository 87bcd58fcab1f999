//! The cellapp driver: binds the endpoint, then pumps the [`Cellapp`] core.
//! Connection events and the wall clock go in; what the core leaves goes
//! out through the QUIC [`Transport`]. It decides nothing: every timer and
//! rule is the core's.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tessera::link::quic::Transport;
use tessera::net;
use tessera::proto::app::{Registration, Role};
use tessera::{AppId, Definitions, Time};
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

use crate::behavior::Behaviors;
use crate::cell::{CellStats, EntitySnapshot};
use crate::cellapp::{self, Cellapp, CellappConfig, Output};
use crate::index::IndexKind;
use crate::metrics::Metrics;
use crate::witness::Budget;

/// How to run a cellapp.
#[derive(Clone)]
pub struct Options {
    /// The manager's internal address.
    pub manager: SocketAddr,
    /// Where to listen for other apps.
    pub bind: SocketAddr,
    /// The address other apps are told to reach it at, if not the bound
    /// one (port 0: the bound port); see [`net::advertise`].
    pub advertise: Option<SocketAddr>,
    /// Data directory (holds the cluster certificate).
    pub data_dir: PathBuf,
    /// Entity definitions.
    pub defs: Arc<Definitions>,
    /// The game's cell behaviours.
    pub behaviors: Behaviors,
    /// Server-driven entities to create at start: how many of each type.
    pub spawns: Vec<(String, usize)>,
    /// Spatial index.
    pub index: IndexKind,
    /// What each client may be sent.
    pub budget: Budget,
    /// How late or bunched client moves may arrive (see [`crate::pace`]).
    pub move_window: std::time::Duration,
    /// How often each real is backed up to its base.
    pub backup_period: std::time::Duration,
    /// Random seed.
    pub seed: u64,
    /// Where to serve `/metrics` and `/healthz`, if anywhere.
    pub admin: Option<SocketAddr>,
}

/// Why the cellapp could not run.
#[derive(Debug, thiserror::Error)]
pub enum CellappError {
    /// QUIC setup failed.
    #[error(transparent)]
    Net(#[from] net::NetError),
    /// The manager did not take the cellapp.
    #[error("the manager did not take this cellapp: {0}")]
    Refused(String),
    /// The admin port could not be bound.
    #[error(transparent)]
    Admin(#[from] tessera::admin::AdminError),
}

enum Control {
    Snapshot(oneshot::Sender<Vec<EntitySnapshot>>),
    Ghosts(oneshot::Sender<Vec<(EntitySnapshot, AppId)>>),
    Links(oneshot::Sender<Vec<(AppId, bool, usize)>>),
    Handoffs(oneshot::Sender<Vec<u32>>),
    Stats(oneshot::Sender<CellStats>),
    Freeze(bool),
    Stop,
    Retire,
}

/// A running cellapp.
pub struct CellappHandle {
    /// Its id in the cluster.
    pub app: AppId,
    /// Its internal address.
    pub addr: SocketAddr,
    /// Where it serves `/metrics` and `/healthz`, if it does.
    pub admin_addr: Option<SocketAddr>,
    /// Its metrics.
    pub metrics: Metrics,
    control: mpsc::UnboundedSender<Control>,
    task: Option<tokio::task::JoinHandle<Ended>>,
}

/// Why a cellapp stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ended {
    /// It was asked to stop or to retire, or it retired when the operator
    /// asked the manager.
    Left,
    /// The manager would not take it back after their link dropped: it had
    /// been declared dead, and its entities are restored elsewhere.
    DeclaredDead(String),
    /// Its task failed (a bug): what it held is lost with it.
    Failed(String),
}

impl CellappHandle {
    async fn ask<T: Default>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Control) -> T {
        let (tx, rx) = oneshot::channel();
        let _ = self.control.send(make(tx));
        rx.await.unwrap_or_default()
    }

    /// Every real entity, as the cell has it now.
    pub async fn snapshot(&self) -> Vec<EntitySnapshot> {
        self.ask(Control::Snapshot).await
    }

    /// Every ghost the cell holds, with the cellapp its real is on.
    pub async fn ghosts(&self) -> Vec<(EntitySnapshot, AppId)> {
        self.ask(Control::Ghosts).await
    }

    /// Every peer with a link session: whether its connection is up, and
    /// the bytes held for it until it acknowledges them.
    pub async fn links(&self) -> Vec<(AppId, bool, usize)> {
        self.ask(Control::Links).await
    }

    /// Counts of the cell.
    pub async fn stats(&self) -> CellStats {
        self.ask(Control::Stats).await
    }

    /// Takes the handoff latencies measured so far, in microseconds.
    pub async fn take_handoffs(&self) -> Vec<u32> {
        self.ask(Control::Handoffs).await
    }

    /// Stops or restarts server-driven behaviour.
    pub fn freeze(&self, frozen: bool) {
        let _ = self.control.send(Control::Freeze(frozen));
    }

    /// Asks the manager to take this cellapp's cell away, waits until every
    /// real has migrated to the other cells, then leaves the cluster and
    /// stops. What SIGTERM does to `tessera cellapp`.
    pub async fn retire(mut self) {
        let _ = self.control.send(Control::Retire);
        self.wait().await;
    }

    /// Leaves the cluster and stops at once: its reals are not handed off.
    pub async fn stop(mut self) {
        let _ = self.control.send(Control::Stop);
        self.wait().await;
    }

    /// Waits until the cellapp stops on its own: it retired, the manager
    /// declared it dead, or its task failed. Returns at once if it has
    /// stopped already. Cancel-safe: dropped unfinished, the cellapp can
    /// still be stopped.
    pub async fn wait(&mut self) -> Ended {
        let Some(task) = self.task.as_mut() else {
            return Ended::Left;
        };
        let ended = task
            .await
            .unwrap_or_else(|e| Ended::Failed(format!("the cellapp task failed: {e}")));
        self.task = None;
        ended
    }
}

/// Starts a cellapp: binds, registers with the manager, and runs until stopped.
pub async fn start(opts: Options) -> Result<CellappHandle, CellappError> {
    let cluster = net::ca::load_identity(&opts.data_dir)?;
    let endpoint = net::endpoint(opts.bind, Some(net::internal_server_config(&cluster)?))?;
    let addr = endpoint
        .local_addr()
        .map_err(|source| net::NetError::Bind {
            addr: opts.bind,
            source,
        })?;
    let addr = net::advertise::advertised(addr, opts.advertise, opts.manager)
        .map_err(net::NetError::from)?;
    let metrics = Metrics::new();
    let admin_addr = tessera::admin::serve_metrics(opts.admin, &metrics.registry).await?;
    let registration = Registration {
        role: Role::Cellapp,
        protocol: tessera::proto::PROTOCOL_MAJOR,
        defs_digest: opts.defs.digest,
        internal_addr: addr,
        public_addr: None,
        admin_addr,
    };
    let mut cfg = CellappConfig::new(
        opts.manager,
        registration,
        opts.defs.clone(),
        opts.behaviors.clone(),
    );
    cfg.cell.index = opts.index;
    cfg.cell.budget = opts.budget;
    cfg.cell.move_window = opts.move_window;
    cfg.backup_period = opts.backup_period;
    cfg.cell.seed = opts.seed;
    cfg.spawns = opts.spawns.clone();
    let core = Cellapp::new(Time::now(), cfg);
    let transport = Transport::new(endpoint, &cluster, metrics.link.clone())?;
    transport.listen(net::gate::Gate::new(net::gate::GateConfig::internal()));
    let (control, control_rx) = mpsc::unbounded_channel();
    let (joined_tx, joined) = oneshot::channel();
    let driver = Driver {
        core,
        transport,
        metrics: metrics.clone(),
        joined: Some(joined_tx),
        ticks: 0,
    };
    let span = tracing::info_span!("cellapp", %addr);
    let task = tokio::spawn(driver.run(control_rx).instrument(span));
    let app = match joined.await {
        Ok(Ok(app)) => app,
        Ok(Err(reason)) => return Err(CellappError::Refused(reason)),
        Err(_) => {
            let why = match task.await {
                Ok(ended) => format!("{ended:?}"),
                Err(e) => e.to_string(),
            };
            return Err(CellappError::Refused(why));
        }
    };
    metrics.registry.set_label("app", &app.0.to_string());
    tracing::info!(%app, %addr, admin = ?admin_addr, spawns = ?opts.spawns, "cellapp joined the cluster");
    Ok(CellappHandle {
        app,
        addr,
        admin_addr,
        metrics,
        control,
        task: Some(task),
    })
}

struct Driver {
    core: Cellapp,
    transport: Transport,
    metrics: Metrics,
    joined: Option<oneshot::Sender<Result<AppId, String>>>,
    /// Ticks as of the last look, to time each one.
    ticks: u64,
}

impl Driver {
    async fn run(mut self, mut control: mpsc::UnboundedReceiver<Control>) -> Ended {
        loop {
            let wake = self.core.poll_timeout();
            tokio::select! {
                (conn, ev) = self.transport.next() => {
                    let started = Instant::now();
                    self.core.handle(Time::now(), conn, ev);
                    self.core.note_work(started.elapsed());
                }
                _ = tessera::time::sleep_until(wake) => {
                    let started = Instant::now();
                    self.core.handle_timeout(Time::now());
                    let took = started.elapsed();
                    self.core.note_work(took);
                    self.observe(took);
                }
                Some(c) = control.recv() => self.control(c),
            }
            for out in self.core.drain().collect::<Vec<_>>() {
                match out {
                    Output::Transmit(t) => self.transport.apply(t),
                    Output::Joined(app) => {
                        if let Some(tx) = self.joined.take() {
                            let _ = tx.send(Ok(app));
                        }
                    }
                    Output::Ended(why) => {
                        let ended = match why {
                            cellapp::Ended::Left => Ended::Left,
                            cellapp::Ended::Refused(reason) => {
                                if let Some(tx) = self.joined.take() {
                                    let _ = tx.send(Err(reason.clone()));
                                }
                                Ended::DeclaredDead(reason)
                            }
                        };
                        self.transport
                            .shutdown(tessera::proto::close::SHUTDOWN, "cellapp stopping")
                            .await;
                        return ended;
                    }
                }
            }
        }
    }

    fn control(&mut self, c: Control) {
        let now = Time::now();
        match c {
            Control::Snapshot(tx) => {
                let _ = tx.send(self.core.cell().map(|c| c.snapshot()).unwrap_or_default());
            }
            Control::Ghosts(tx) => {
                let _ = tx.send(self.core.cell().map(|c| c.ghosts()).unwrap_or_default());
            }
            Control::Links(tx) => {
                let links = self
                    .core
                    .links()
                    .map(|l| l.peers().map(|p| (p, l.is_up(p), l.backlog(p))).collect());
                let _ = tx.send(links.unwrap_or_default());
            }
            Control::Stats(tx) => {
                let _ = tx.send(self.core.cell().map(|c| c.stats()).unwrap_or_default());
            }
            Control::Handoffs(tx) => {
                let taken = self.core.cell_mut().map(|c| c.take_handoffs());
                let _ = tx.send(taken.unwrap_or_default());
            }
            Control::Freeze(f) => {
                if let Some(c) = self.core.cell_mut() {
                    c.set_frozen(f);
                }
            }
            Control::Retire => self.core.retire(now),
            Control::Stop => self.core.stop(now),
        }
    }

    /// Times a tick, and once a second copies the cell's counts into the
    /// metrics.
    fn observe(&mut self, took: Duration) {
        let Some(cell) = self.core.cell() else { return };
        let ticks = cell.ticks();
        if ticks == self.ticks {
            return;
        }
        self.ticks = ticks;
        let hz = cell.config().tick_hz.max(1);
        self.metrics
            .tick
            .record(took, Duration::from_secs(1) / u32::from(hz));
        if ticks % u64::from(hz) == 0 {
            self.metrics
                .observe(cell, &cell.stats(), &self.core.traffic());
            if let Some(links) = self.core.links() {
                self.metrics.sessions.observe(&links.stats());
            }
        }
    }
}
