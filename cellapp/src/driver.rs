//! The cellapp driver: a tokio task that registers with the manager, accepts
//! links from baseapps, feeds the [`Cell`] core with messages and ticks, and
//! writes what it returns. It holds no game logic. When the manager link
//! drops the cell simulates on and the driver dials the manager again
//! ([`tessera::membership`]); it stops only if the manager refuses it back.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tessera::link::{self, LinkEvent, LinkSender};
use tessera::membership::{Dials, Membership, Rejoined};
use tessera::net;
use tessera::proto::app::{AppMsg, Load, Registration, Role};
use tessera::{AppId, Definitions, Time, MANAGER};
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

use crate::behavior::Behaviors;
use crate::cell::{Cell, CellConfig, CellStats, EntitySnapshot};
use crate::index::IndexKind;
use crate::metrics::Metrics;
use crate::witness::Budget;
use tessera::metrics::LinkMeter;

/// How to run a cellapp.
#[derive(Clone)]
pub struct Options {
    /// The manager's internal address.
    pub manager: SocketAddr,
    /// Where to listen for other apps.
    pub bind: SocketAddr,
    /// Data directory (holds the cluster certificate).
    pub data_dir: PathBuf,
    /// Entity definitions.
    pub defs: Arc<Definitions>,
    /// Server-driven entities to create at start.
    pub npcs: usize,
    /// Spatial index.
    pub index: IndexKind,
    /// Witness limits.
    pub budget: Budget,
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
    /// Joining the cluster failed.
    #[error(transparent)]
    Link(#[from] link::LinkError),
    /// The admin port could not be bound.
    #[error(transparent)]
    Admin(#[from] tessera::admin::AdminError),
}

enum Control {
    Snapshot(oneshot::Sender<Vec<EntitySnapshot>>),
    Handoffs(oneshot::Sender<Vec<u32>>),
    Stats(oneshot::Sender<CellStats>),
    Freeze(bool),
    Stop(oneshot::Sender<()>),
    Retire(oneshot::Sender<()>),
}

/// A running cellapp.
pub struct Cellapp {
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

impl Cellapp {
    /// Every real entity, as the cell has it now.
    pub async fn snapshot(&self) -> Vec<EntitySnapshot> {
        let (tx, rx) = oneshot::channel();
        let _ = self.control.send(Control::Snapshot(tx));
        rx.await.unwrap_or_default()
    }

    /// Counts of the cell.
    pub async fn stats(&self) -> CellStats {
        let (tx, rx) = oneshot::channel();
        let _ = self.control.send(Control::Stats(tx));
        rx.await.unwrap_or_default()
    }

    /// Takes the handoff latencies measured so far, in microseconds.
    pub async fn take_handoffs(&self) -> Vec<u32> {
        let (tx, rx) = oneshot::channel();
        let _ = self.control.send(Control::Handoffs(tx));
        rx.await.unwrap_or_default()
    }

    /// Stops or restarts server-driven behaviour.
    pub fn freeze(&self, frozen: bool) {
        let _ = self.control.send(Control::Freeze(frozen));
    }

    /// Asks the manager to take this cellapp's cell away, waits until every
    /// real has migrated to the other cells (at most [`RETIRE_WAIT`]), then
    /// leaves the cluster and stops. What SIGTERM does to `tessera cellapp`.
    pub async fn retire(self) {
        let (tx, rx) = oneshot::channel();
        if self.control.send(Control::Retire(tx)).is_ok() {
            let _ = rx.await;
        }
        self.join().await;
    }

    async fn join(mut self) {
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// Leaves the cluster and stops at once: its reals are not handed off.
    pub async fn stop(self) {
        let (tx, rx) = oneshot::channel();
        if self.control.send(Control::Stop(tx)).is_ok() {
            let _ = rx.await;
        }
        self.join().await;
    }

    /// Waits until the cellapp stops on its own: it retired, the manager
    /// declared it dead, or its task failed. Returns at once if it has stopped already.
    /// Cancel-safe: dropped unfinished, the cellapp can still be stopped.
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
pub async fn start(opts: Options) -> Result<Cellapp, CellappError> {
    let identity = net::load_or_create_identity(&opts.data_dir)?;
    let endpoint = net::endpoint(
        opts.bind,
        Some(net::server_config(&identity, &[tessera::proto::ALPN_APP])?),
    )?;
    let addr = endpoint
        .local_addr()
        .map_err(|source| net::NetError::Bind {
            addr: opts.bind,
            source,
        })?;
    let metrics = Metrics::new();
    let admin_addr = tessera::admin::serve_metrics(opts.admin, &metrics.registry).await?;
    let (events_tx, events) = mpsc::unbounded_channel();
    let registration = Registration {
        role: Role::Cellapp,
        protocol: tessera::proto::PROTOCOL_MAJOR,
        defs_digest: opts.defs.digest,
        internal_addr: addr,
        public_addr: None,
        admin_addr,
    };
    let (joined, membership, dials) = Membership::join(
        endpoint.clone(),
        identity.cert.clone(),
        opts.manager,
        &registration,
        events_tx.clone(),
        metrics.link.clone(),
    )
    .await?;
    let app = joined.app;
    metrics.registry.set_label("app", &app.0.to_string());
    let cfg = CellConfig {
        bounds: joined.space.bounds,
        tick_hz: joined.space.tick_hz,
        index: opts.index,
        budget: opts.budget,
        backup_ticks: u32::from(joined.space.tick_hz) * 5,
        seed: opts.seed ^ u64::from(app.0),
        ghost_distance: opts.defs.max_aoi_radius() + 10.0,
        app,
        faults: Default::default(),
        load: crate::load::LoadSource::Measured,
    };
    let mut cell = Cell::new(&opts.defs, Behaviors::demo(), cfg, joined.ids);
    cell.spawn_when_placed("Npc", opts.npcs);
    tokio::spawn(link::accept(
        endpoint.clone(),
        opts.defs.digest,
        events_tx.clone(),
        metrics.link.clone(),
    ));
    let dialer = Dialer {
        me: app,
        digest: opts.defs.digest,
        trust: identity.cert.clone(),
        events: events_tx,
        meter: metrics.link.clone(),
        dialing: Default::default(),
        cells: Vec::new(),
    };
    let (control, control_rx) = mpsc::unbounded_channel();
    let span = tracing::info_span!("cellapp", %app);
    tracing::info!(parent: &span, %addr, admin = ?admin_addr, npcs = opts.npcs, "cellapp joined the cluster");
    let task = tokio::spawn(
        run(
            cell,
            Manager {
                membership,
                dials,
                registration,
            },
            events,
            control_rx,
            endpoint,
            dialer,
            metrics.clone(),
        )
        .instrument(span),
    );
    Ok(Cellapp {
        app,
        addr,
        admin_addr,
        metrics,
        control,
        task: Some(task),
    })
}

/// Messages kept for one app while its link comes up.
const MAX_BACKLOG: usize = 100_000;

/// The longest a retiring cellapp waits for its reals to leave.
pub const RETIRE_WAIT: Duration = Duration::from_secs(60);
/// How long a retired, empty cellapp keeps forwarding messages that were
/// already on their way to it before it exits.
const RETIRE_LINGER: Duration = Duration::from_secs(2);

/// A retirement under way.
struct Retiring {
    /// Who waits for it (nobody if the operator asked the manager).
    done: Option<oneshot::Sender<()>>,
    asked: Instant,
    /// Since when the cell has been retired and empty.
    empty_since: Option<Instant>,
}

/// Links this cellapp to the others: the one with the higher id dials.
struct Dialer {
    me: AppId,
    digest: [u8; 32],
    trust: rustls::pki_types::CertificateDer<'static>,
    events: mpsc::UnboundedSender<(AppId, LinkEvent)>,
    meter: LinkMeter,
    dialing: std::collections::HashSet<AppId>,
    /// The cellapps of the newest layout, for redialling.
    cells: Vec<tessera::proto::app::CellInfo>,
}

impl Dialer {
    /// Dials every cellapp of the newest layout that this one should dial
    /// and has no link to (called on each layout and once a second).
    fn redial(&mut self, endpoint: &quinn::Endpoint, peers: &HashMap<AppId, LinkSender>) {
        for c in &self.cells {
            if c.app >= self.me || peers.contains_key(&c.app) || !self.dialing.insert(c.app) {
                continue;
            }
            let (endpoint, trust, events, peer, meter) = (
                endpoint.clone(),
                self.trust.clone(),
                self.events.clone(),
                c.clone(),
                self.meter.clone(),
            );
            let hello = AppMsg::LinkHello {
                app: self.me,
                defs_digest: self.digest,
            };
            tokio::spawn(async move {
                match link::dial(&endpoint, &trust, peer.addr, &hello).await {
                    Ok((send, recv)) => {
                        link::spawn(peer.app, send, recv, events, &meter);
                    }
                    Err(e) => {
                        tracing::warn!(peer = %peer.app, error = %e, "cannot link to cellapp; will retry");
                        // Reported as a closed link, so the next round dials again.
                        let _ = events.send((
                            peer.app,
                            LinkEvent::Closed {
                                reason: e.to_string(),
                                link: None,
                            },
                        ));
                    }
                }
            });
        }
    }
}

/// The cellapp's side of its membership.
struct Manager {
    membership: Membership,
    dials: Dials,
    registration: Registration,
}

async fn run(
    mut cell: Cell,
    manager: Manager,
    mut events: mpsc::UnboundedReceiver<(AppId, LinkEvent)>,
    mut control: mpsc::UnboundedReceiver<Control>,
    endpoint: quinn::Endpoint,
    mut dialer: Dialer,
    metrics: Metrics,
) -> Ended {
    let hz = cell.config().tick_hz.max(1);
    let period = Duration::from_secs(1) / u32::from(hz);
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut heartbeat = tokio::time::interval(Duration::from_secs(1));
    let mut peers: HashMap<AppId, LinkSender> = HashMap::new();
    let mut retiring: Option<Retiring> = None;
    // Messages for an app whose link is still coming up wait here, in order.
    let mut backlog: HashMap<AppId, Vec<AppMsg>> = HashMap::new();
    let Manager {
        membership: mut manager,
        mut dials,
        registration,
    } = manager;
    let flush = |cell: &mut Cell,
                 manager: &Membership,
                 peers: &HashMap<AppId, LinkSender>,
                 backlog: &mut HashMap<AppId, Vec<AppMsg>>| {
        for (to, msg) in cell.drain() {
            if cell.is_dead(to) {
                // Nothing more goes to a dead app.
                backlog.remove(&to);
                continue;
            }
            if to == MANAGER {
                // Without a manager link reports go nowhere; the next ones
                // go to the manager that comes back.
                if manager.send(&msg) {
                    metrics.sent(&msg);
                }
                continue;
            }
            match peers.get(&to) {
                Some(l) => {
                    if l.send(&msg) {
                        metrics.sent(&msg);
                    }
                }
                None => {
                    let waiting = backlog.entry(to).or_default();
                    if waiting.len() < MAX_BACKLOG {
                        // Counted now: it goes out when the link comes up.
                        metrics.sent(&msg);
                        waiting.push(msg);
                    } else {
                        tracing::warn!(%to, "no link and the backlog is full; message dropped");
                    }
                }
            }
        }
    };
    loop {
        tokio::select! {
            Some(c) = control.recv() => match c {
                Control::Snapshot(tx) => { let _ = tx.send(cell.snapshot()); }
                Control::Stats(tx) => { let _ = tx.send(cell.stats()); }
                Control::Handoffs(tx) => { let _ = tx.send(cell.take_handoffs()); }
                Control::Freeze(f) => cell.set_frozen(f),
                Control::Retire(done) => {
                    tracing::info!("retiring: asking the manager to take the cell away");
                    manager.send(&AppMsg::Retire);
                    retiring = Some(Retiring { done: Some(done), asked: Instant::now(), empty_since: None });
                }
                Control::Stop(done) => {
                    manager.send(&AppMsg::Goodbye);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    endpoint.close(net::close::SHUTDOWN.into(), b"cellapp stopping");
                    let _ = done.send(());
                    return Ended::Left;
                }
            },
            _ = ticker.tick() => {
                let t0 = Instant::now();
                cell.tick(Time::now());
                flush(&mut cell, &manager, &peers, &mut backlog);
                if !manager.is_up() {
                    let retiring = retiring.is_some();
                    manager.redial(|| AppMsg::Rejoin(Box::new(cell.rejoin(registration.clone(), retiring))));
                }
                let took = t0.elapsed();
                cell.note_work(took);
                metrics.tick.record(took, period);
            }
            Some((from, ev)) = events.recv() => match ev {
                LinkEvent::Msg(msg) => {
                    if let AppMsg::Layout { cells, .. } = &msg {
                        dialer.cells = cells.clone();
                        dialer.redial(&endpoint, &peers);
                    }
                    let t0 = Instant::now();
                    metrics.received(&msg);
                    cell.handle(Time::now(), from, msg);
                    flush(&mut cell, &manager, &peers, &mut backlog);
                    cell.note_work(t0.elapsed());
                }
                LinkEvent::Opened(sender) => {
                    if from != MANAGER {
                        tracing::info!(peer = %from, "app linked");
                        for msg in backlog.remove(&from).unwrap_or_default() {
                            sender.send(&msg);
                        }
                        peers.insert(from, sender);
                    }
                }
                LinkEvent::Closed { reason, link } if from == MANAGER => {
                    if manager.closed(link) {
                        tracing::warn!(%reason, "manager link closed; the cell simulates on and dials the manager again");
                    }
                }
                LinkEvent::Closed { reason, link } => {
                    // A late close of a link already replaced changes nothing.
                    if peers.get(&from).map(LinkSender::id) == link {
                        tracing::info!(peer = %from, %reason, "app link closed");
                        peers.remove(&from);
                        dialer.dialing.remove(&from);
                    }
                }
            },
            Some(dial) = dials.recv() => match manager.dialled(dial) {
                Rejoined::Back => {
                    tracing::info!("back in the cluster with the manager");
                    cell.rejoined();
                }
                Rejoined::Refused(reason) => {
                    // Declared dead: its entities are restored elsewhere.
                    tracing::error!(%reason, "the manager will not take this cellapp back; stopping");
                    endpoint.close(net::close::SHUTDOWN.into(), b"declared dead");
                    if let Some(done) = retiring.take().and_then(|r| r.done) {
                        let _ = done.send(());
                    }
                    return Ended::DeclaredDead(reason);
                }
                Rejoined::Unreachable => {}
            },
            _ = heartbeat.tick() => {
                dialer.redial(&endpoint, &peers);
                let stats = cell.stats();
                metrics.observe(&cell, &stats);
                manager.send(&AppMsg::Heartbeat(Load {
                    busy: cell.load().min(1.0),
                    entities: stats.reals as u32,
                    clients: stats.witnesses as u32,
                }));
                if cell.is_retired() && retiring.is_none() {
                    // The operator asked the manager directly.
                    tracing::info!("the manager retired this cellapp; leaving once empty");
                    retiring = Some(Retiring { done: None, asked: Instant::now(), empty_since: None });
                }
                if let Some(r) = &mut retiring {
                    let empty = cell.is_retired() && stats.reals == 0;
                    r.empty_since = if empty { r.empty_since.or(Some(Instant::now())) } else { None };
                    let lingered = r.empty_since.is_some_and(|t| t.elapsed() >= RETIRE_LINGER);
                    let late = r.asked.elapsed() >= RETIRE_WAIT;
                    if lingered || late {
                        if late && !lingered {
                            tracing::warn!(reals = stats.reals, "retirement took too long; stopping with reals left");
                        } else {
                            tracing::info!("retired: every real has left; stopping");
                        }
                        manager.send(&AppMsg::Goodbye);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        endpoint.close(net::close::SHUTDOWN.into(), b"cellapp retired");
                        if let Some(done) = retiring.take().and_then(|r| r.done) {
                            let _ = done.send(());
                        }
                        return Ended::Left;
                    }
                }
            }
        }
    }
}
