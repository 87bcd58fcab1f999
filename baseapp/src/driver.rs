//! The baseapp driver: tokio tasks that accept client connections (one QUIC
//! connection per client: a stream for the handshake, calls and events,
//! datagrams for movement), link to the manager and the cellapps, run the
//! storage thread, and feed the [`Baseapp`] core. Decoding is bounded here;
//! every rule about what a client may do is in the core.

use rand::Rng;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tessera::frame::{self, frame_bytes};
use tessera::link::{self, LinkEvent, LinkSender};
use tessera::membership::{Dials, Membership, Rejoined};
use tessera::net::{self, close};
use tessera::proto::app::{AppMsg, Registration, Role};
use tessera::proto::client::{ClientDatagram, ClientMsg};
use tessera::proto::{ALPN_APP, ALPN_CLIENT, PROTOCOL_MAJOR};
use tessera::{AppId, Definitions, Time, MANAGER};
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

use crate::bases::{BaseConfig, Baseapp, ClientId, ClientInput, ClientOut, Output};
use crate::metrics::Metrics;
use crate::store::Store;
use tessera::metrics::LinkMeter;

/// The period of the baseapp's own loop (periodic saves, timeouts).
use crate::bases::TICK;

/// The largest frame a client may send.
pub const MAX_CLIENT_FRAME: usize = 8 * 1024;
/// Bytes of stream frames queued for one client before it counts as too
/// slow and is disconnected. Counted in bytes, not frames: a crowd means many
/// small frames, and what matters is how far behind the client is.
const CLIENT_QUEUE_BYTES: usize = 1 << 20;

/// The queue of stream frames for one client, bounded in bytes.
#[derive(Clone)]
struct Writer {
    tx: mpsc::UnboundedSender<Vec<u8>>,
    queued: Arc<AtomicUsize>,
}

impl Writer {
    /// Queues a frame; `false` if the client is already too far behind (or gone).
    fn send(&self, frame: Vec<u8>) -> bool {
        let len = frame.len();
        if self.queued.load(Ordering::Relaxed) + len > CLIENT_QUEUE_BYTES {
            return false;
        }
        self.queued.fetch_add(len, Ordering::Relaxed);
        self.tx.send(frame).is_ok()
    }
}

/// How to run a baseapp.
#[derive(Clone)]
pub struct Options {
    /// The manager's internal address.
    pub manager: SocketAddr,
    /// Where to listen for other apps.
    pub bind_internal: SocketAddr,
    /// Where to listen for clients.
    pub bind_public: SocketAddr,
    /// Data directory (certificate, database).
    pub data_dir: PathBuf,
    /// Entity definitions.
    pub defs: Arc<Definitions>,
    /// Core settings.
    pub config: BaseConfig,
    /// Where to serve `/metrics` and `/healthz`, if anywhere.
    pub admin: Option<SocketAddr>,
}

/// Why the baseapp could not run.
#[derive(Debug, thiserror::Error)]
pub enum BaseappError {
    /// QUIC setup failed.
    #[error(transparent)]
    Net(#[from] net::NetError),
    /// Joining the cluster failed.
    #[error(transparent)]
    Link(#[from] link::LinkError),
    /// The database could not be opened.
    #[error("database: {0}")]
    Storage(#[from] tessera::storage::StorageError),
    /// The admin port could not be bound.
    #[error(transparent)]
    Admin(#[from] tessera::admin::AdminError),
}

/// A running baseapp.
pub struct BaseappHandle {
    /// Its id in the cluster.
    pub app: AppId,
    /// Where clients connect.
    pub public_addr: SocketAddr,
    /// Where it serves `/metrics` and `/healthz`, if it does.
    pub admin_addr: Option<SocketAddr>,
    /// Its metrics.
    pub metrics: Metrics,
    stop: Option<oneshot::Sender<oneshot::Sender<()>>>,
    task: Option<tokio::task::JoinHandle<Option<String>>>,
}

impl BaseappHandle {
    /// Stops cleanly: every entity is saved first.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let (tx, rx) = oneshot::channel();
            if stop.send(tx).is_ok() {
                let _ = rx.await;
            }
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// Waits until the baseapp stops on its own: when the manager will not
    /// take it back after their link dropped (it was declared dead; its
    /// bases are restored elsewhere), or its task failed. Returns why.
    /// Cancel-safe.
    pub async fn stopped(&mut self) -> String {
        let Some(task) = self.task.as_mut() else {
            return std::future::pending().await;
        };
        let why = match task.await {
            Ok(why) => why,
            Err(e) => Some(format!("the baseapp task failed: {e}")),
        };
        self.task = None;
        match why {
            Some(why) => why,
            None => std::future::pending().await,
        }
    }
}

enum ClientEvent {
    Hello {
        conn: quinn::Connection,
        writer: Writer,
        protocol: u16,
        digest: [u8; 32],
        ticket: tessera::proto::Ticket,
    },
    Input(ClientInput),
    Bad(String),
}

struct Conn {
    conn: quinn::Connection,
    writer: Writer,
}

/// Starts a baseapp.
pub async fn start(opts: Options) -> Result<BaseappHandle, BaseappError> {
    let identity = net::load_or_create_identity(&opts.data_dir)?;
    let internal = net::endpoint(
        opts.bind_internal,
        Some(net::server_config(&identity, &[ALPN_APP])?),
    )?;
    let public = net::endpoint(
        opts.bind_public,
        Some(net::server_config(&identity, &[ALPN_CLIENT])?),
    )?;
    let local = |ep: &quinn::Endpoint, addr: SocketAddr| {
        ep.local_addr()
            .map_err(|source| net::NetError::Bind { addr, source })
    };
    let internal_addr = local(&internal, opts.bind_internal)?;
    let public_addr = local(&public, opts.bind_public)?;
    let metrics = Metrics::new();
    let admin_addr = tessera::admin::serve_metrics(opts.admin, &metrics.registry).await?;
    let (links_tx, links) = mpsc::unbounded_channel();
    let registration = Registration {
        role: Role::Baseapp,
        protocol: PROTOCOL_MAJOR,
        defs_digest: opts.defs.digest,
        internal_addr,
        public_addr: Some(public_addr),
        admin_addr,
    };
    let (joined, manager, dials) = Membership::join(
        internal.clone(),
        identity.cert.clone(),
        opts.manager,
        &registration,
        links_tx.clone(),
        metrics.app_link.clone(),
    )
    .await?;
    metrics.registry.set_label("app", &joined.app.0.to_string());
    let (store_tx, store_rx) = mpsc::unbounded_channel();
    let store = Store::open(&opts.data_dir.join("world.db"), store_tx, metrics.clone())?;
    let mut seed = [0u8; 32];
    rand::rand_core::UnwrapErr(rand::rngs::SysRng).fill_bytes(&mut seed);
    let app = joined.app;
    let core = Baseapp::new(
        app,
        opts.defs.clone(),
        opts.config.clone(),
        joined.space,
        joined.ids,
        seed,
    );
    // Baseapps with a higher id dial this one: copies of bases come that way.
    tokio::spawn(link::accept(
        internal.clone(),
        opts.defs.digest,
        links_tx.clone(),
        metrics.app_link.clone(),
    ));
    let (clients_tx, clients) = mpsc::unbounded_channel();
    tokio::spawn(accept_clients(
        public.clone(),
        clients_tx,
        metrics.client_link.clone(),
    ));
    let (stop_tx, stop_rx) = oneshot::channel();
    let span = tracing::info_span!("baseapp", %app);
    tracing::info!(parent: &span, %public_addr, %internal_addr, "baseapp joined the cluster");
    let driver = Driver {
        core,
        manager,
        registration,
        links: HashMap::new(),
        backlog: HashMap::new(),
        restored_counted: 0,
        dialing: HashSet::new(),
        conns: HashMap::new(),
        store,
        internal,
        public,
        trust: identity.cert,
        links_tx,
        digest: opts.defs.digest,
        metrics: metrics.clone(),
    };
    let task = tokio::spawn(
        driver
            .run(links, clients, store_rx, dials, stop_rx)
            .instrument(span),
    );
    Ok(BaseappHandle {
        app,
        public_addr,
        admin_addr,
        metrics,
        stop: Some(stop_tx),
        task: Some(task),
    })
}

async fn accept_clients(
    endpoint: quinn::Endpoint,
    events: mpsc::UnboundedSender<(ClientId, ClientEvent)>,
    meter: LinkMeter,
) {
    let mut next: ClientId = 1;
    while let Some(incoming) = endpoint.accept().await {
        let id = next;
        next += 1;
        let events = events.clone();
        let meter = meter.clone();
        tokio::spawn(async move {
            let peer = incoming.remote_address();
            let span = tracing::info_span!("client", id, %peer);
            client_conn(incoming, id, events, meter)
                .instrument(span)
                .await;
        });
    }
}

async fn client_conn(
    incoming: quinn::Incoming,
    id: ClientId,
    events: mpsc::UnboundedSender<(ClientId, ClientEvent)>,
    meter: LinkMeter,
) {
    let Ok(conn) = incoming.await else { return };
    let handshake = async {
        let (send, mut recv) = conn.accept_bi().await.map_err(|e| e.to_string())?;
        let mut buf = Vec::new();
        match frame::read_msg::<ClientMsg>(&mut recv, MAX_CLIENT_FRAME, &mut buf).await {
            Ok(Some(ClientMsg::Hello {
                protocol,
                defs_digest,
                ticket,
            })) => Ok((send, recv, protocol, defs_digest, ticket)),
            Ok(Some(_)) => Err("first message is not a hello".to_string()),
            Ok(None) => Err("stream closed before the hello".to_string()),
            Err(e) => Err(e.to_string()),
        }
    };
    let (mut send, mut recv, protocol, digest, ticket) =
        match tokio::time::timeout(Duration::from_secs(10), handshake).await {
            Ok(Ok(h)) => h,
            Ok(Err(reason)) => {
                tracing::warn!(%reason, "client refused at handshake");
                conn.close(close::PROTOCOL.into(), reason.as_bytes());
                return;
            }
            Err(_) => {
                tracing::warn!("client sent no hello in time");
                conn.close(close::PROTOCOL.into(), b"no hello in time");
                return;
            }
        };
    let (tx, mut queue) = mpsc::unbounded_channel::<Vec<u8>>();
    let writer = Writer {
        tx,
        queued: Arc::new(AtomicUsize::new(0)),
    };
    let queued = writer.queued.clone();
    tokio::spawn(async move {
        while let Some(first) = queue.recv().await {
            let mut buf = first;
            while buf.len() < 64 * 1024 {
                match queue.try_recv() {
                    Ok(more) => buf.extend_from_slice(&more),
                    Err(_) => break,
                }
            }
            if send.write_all(&buf).await.is_err() {
                break;
            }
            queued.fetch_sub(buf.len(), Ordering::Relaxed);
        }
    });
    let hello = ClientEvent::Hello {
        conn: conn.clone(),
        writer,
        protocol,
        digest,
        ticket,
    };
    if events.send((id, hello)).is_err() {
        return;
    }
    let frames = async {
        let mut buf = Vec::new();
        loop {
            match frame::read_frame(&mut recv, MAX_CLIENT_FRAME, &mut buf).await {
                Ok(true) => match frame::decode::<ClientMsg>(&buf) {
                    Ok(msg) => {
                        meter.received(buf.len() + frame::HEADER_LEN);
                        if events
                            .send((id, ClientEvent::Input(ClientInput::Msg(msg))))
                            .is_err()
                        {
                            return None;
                        }
                    }
                    Err(e) => return Some(ClientEvent::Bad(format!("undecodable frame: {e}"))),
                },
                Ok(false) => {
                    return Some(ClientEvent::Input(ClientInput::Gone(
                        "stream finished".into(),
                    )))
                }
                Err(tessera::frame::FrameError::Read(e)) => {
                    return Some(ClientEvent::Input(ClientInput::Gone(e.to_string())))
                }
                Err(e) => return Some(ClientEvent::Bad(e.to_string())),
            }
        }
    };
    let datagrams = async {
        loop {
            match conn.read_datagram().await {
                Ok(bytes) => match frame::decode::<ClientDatagram>(&bytes) {
                    Ok(d) => {
                        meter.received(bytes.len());
                        if events
                            .send((id, ClientEvent::Input(ClientInput::Datagram(d))))
                            .is_err()
                        {
                            return None;
                        }
                    }
                    Err(e) => return Some(ClientEvent::Bad(format!("undecodable datagram: {e}"))),
                },
                Err(e) => return Some(ClientEvent::Input(ClientInput::Gone(e.to_string()))),
            }
        }
    };
    let last = tokio::select! {
        e = frames => e,
        e = datagrams => e,
    };
    if let Some(e) = last {
        let _ = events.send((id, e));
    }
    // After a violation the core closes the connection; wait for that so a
    // final message gets through before the task ends.
    let _ = conn.closed().await;
    let _ = events.send((
        id,
        ClientEvent::Input(ClientInput::Gone("connection closed".into())),
    ));
}

struct Driver {
    core: Baseapp,
    manager: Membership,
    registration: Registration,
    links: HashMap<AppId, LinkSender>,
    backlog: HashMap<AppId, Vec<AppMsg>>,
    /// Restored entities already added to the metric.
    restored_counted: u64,
    dialing: HashSet<AppId>,
    conns: HashMap<ClientId, Conn>,
    store: Store,
    internal: quinn::Endpoint,
    public: quinn::Endpoint,
    trust: rustls::pki_types::CertificateDer<'static>,
    links_tx: mpsc::UnboundedSender<(AppId, LinkEvent)>,
    digest: [u8; 32],
    metrics: Metrics,
}

impl Driver {
    async fn run(
        mut self,
        mut links: mpsc::UnboundedReceiver<(AppId, LinkEvent)>,
        mut clients: mpsc::UnboundedReceiver<(ClientId, ClientEvent)>,
        mut stored: mpsc::UnboundedReceiver<crate::bases::StoreDone>,
        mut dials: Dials,
        mut stop: oneshot::Receiver<oneshot::Sender<()>>,
    ) -> Option<String> {
        let mut ticker = tokio::time::interval(TICK);
        let mut heartbeat = tokio::time::interval(Duration::from_secs(1));
        let done = loop {
            tokio::select! {
                Some((from, ev)) = links.recv() => self.link_event(from, ev),
                Some((id, ev)) = clients.recv() => self.client_event(id, ev),
                Some(done) = stored.recv() => self.core.store_done(Time::now(), done),
                _ = ticker.tick() => {
                    let started = std::time::Instant::now();
                    self.core.tick(Time::now());
                    self.metrics.tick.record(started.elapsed(), TICK);
                    if !self.manager.is_up() {
                        let report = || AppMsg::Rejoin(Box::new(self.core.rejoin(self.registration.clone())));
                        self.manager.redial(report);
                    }
                }
                Some(dial) = dials.recv() => match self.manager.dialled(dial) {
                    Rejoined::Back => {
                        tracing::info!("back in the cluster with the manager");
                        self.core.rejoined();
                    }
                    Rejoined::Refused(reason) => {
                        // Declared dead: its bases are restored from their
                        // copies elsewhere, and its clients resume there.
                        tracing::error!(%reason, "the manager will not take this baseapp back; stopping");
                        self.public.close(close::SHUTDOWN.into(), b"server declared dead");
                        self.internal.close(close::SHUTDOWN.into(), b"declared dead");
                        // What it still had queued would overwrite the
                        // restored bases' rows.
                        self.store.abandon();
                        return Some(reason);
                    }
                    Rejoined::Unreachable => {}
                },
                _ = heartbeat.tick() => {
                    let load = self.core.load();
                    self.metrics.bases.set(f64::from(load.entities));
                    let restored = self.core.restored();
                    self.metrics.entities_restored.add(restored.saturating_sub(self.restored_counted));
                    self.restored_counted = restored;
                    self.metrics.clients.set(self.conns.len() as f64);
                    self.manager.send(&AppMsg::Heartbeat(load));
                    // Links that failed or dropped are dialled again.
                    self.dial_links();
                }
                reply = &mut stop => break reply.ok(),
            }
            self.flush();
        };
        // A clean stop: every entity leaves its cell and is saved.
        tracing::info!("baseapp stopping: saving every entity");
        self.core.stop();
        self.flush();
        let deadline = tokio::time::sleep(Duration::from_secs(5));
        tokio::pin!(deadline);
        while !self.core.drained() {
            tokio::select! {
                Some((from, ev)) = links.recv() => self.link_event(from, ev),
                Some(done) = stored.recv() => self.core.store_done(Time::now(), done),
                _ = &mut deadline => {
                    tracing::warn!("cells did not answer in time; saving the last backups");
                    self.core.force_drain();
                }
            }
            self.flush();
        }
        self.manager.send(&AppMsg::Goodbye);
        self.store.close();
        self.public
            .close(close::SHUTDOWN.into(), b"server shutting down");
        self.internal
            .close(close::SHUTDOWN.into(), b"baseapp stopping");
        tracing::info!("baseapp stopped; everything saved");
        if let Some(reply) = done {
            let _ = reply.send(());
        }
        None
    }

    fn link_event(&mut self, from: AppId, ev: LinkEvent) {
        match ev {
            LinkEvent::Opened(sender) => {
                if from != MANAGER {
                    tracing::info!(peer = %from, "linked to app");
                    self.dialing.remove(&from);
                    for msg in self.backlog.remove(&from).unwrap_or_default() {
                        sender.send(&msg);
                    }
                    self.links.insert(from, sender);
                    self.core.link_up(from);
                }
            }
            LinkEvent::Msg(msg) => {
                let is_cells = matches!(
                    msg,
                    AppMsg::Cells(_) | AppMsg::Layout { .. } | AppMsg::Baseapps(_)
                );
                self.core.handle(Time::now(), from, msg);
                if is_cells {
                    self.dial_links();
                }
            }
            LinkEvent::Closed { reason, link } => {
                if from == MANAGER {
                    if self.manager.closed(link) {
                        tracing::warn!(%reason, "manager link closed; clients play on while the manager is dialled again");
                    }
                } else if self.links.get(&from).map(LinkSender::id) != link {
                    // A late close of a link already replaced changes nothing.
                } else {
                    tracing::warn!(peer = %from, %reason, "app link closed");
                    self.links.remove(&from);
                    self.dialing.remove(&from);
                    self.core.link_down(from);
                }
            }
        }
    }

    fn dial_links(&mut self) {
        let hello = AppMsg::LinkHello {
            app: self.core.app(),
            defs_digest: self.digest,
        };
        // Every cellapp; of the other baseapps, those with a lower id (the
        // higher id dials).
        let me = self.core.app();
        let peers = self.core.peers().into_iter().filter(|p| p.app < me);
        for cell in self.core.cells().to_vec().into_iter().chain(peers) {
            if self.links.contains_key(&cell.app) || !self.dialing.insert(cell.app) {
                continue;
            }
            let (endpoint, trust, events, hello, meter) = (
                self.internal.clone(),
                self.trust.clone(),
                self.links_tx.clone(),
                hello.clone(),
                self.metrics.app_link.clone(),
            );
            tokio::spawn(async move {
                match link::dial(&endpoint, &trust, cell.addr, &hello).await {
                    Ok((send, recv)) => {
                        link::spawn(cell.app, send, recv, events, &meter);
                    }
                    Err(e) => {
                        tracing::warn!(peer = %cell.app, error = %e, "cannot link to app");
                        let _ = events.send((
                            cell.app,
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

    fn client_event(&mut self, id: ClientId, ev: ClientEvent) {
        let now = Time::now();
        match ev {
            ClientEvent::Hello {
                conn,
                writer,
                protocol,
                digest,
                ticket,
            } => {
                self.conns.insert(id, Conn { conn, writer });
                self.core.hello(id, protocol, digest, ticket, now);
            }
            ClientEvent::Input(input) => {
                if let ClientInput::Gone(_) = &input {
                    self.conns.remove(&id);
                }
                self.core.client_input(now, id, input);
            }
            ClientEvent::Bad(reason) => self.core.violation(id, reason),
        }
    }

    fn flush(&mut self) {
        for out in self.core.drain() {
            match out {
                Output::App(to, _) if self.core.is_dead(to) => {
                    // Nothing more goes to a dead app.
                    self.backlog.remove(&to);
                }
                Output::App(to, msg) if to == MANAGER => {
                    // Without a manager link this is lost, like the
                    // requests it answers.
                    self.manager.send(&msg);
                }
                Output::App(to, msg) => {
                    match self.links.get(&to) {
                        Some(l) => {
                            l.send(&msg);
                        }
                        // The link is coming up: keep the message, in order.
                        None => self.backlog.entry(to).or_default().push(msg),
                    }
                }
                Output::Store(op) => self.store.submit(op),
                Output::Client(id, out) => self.deliver(id, out),
            }
        }
    }

    fn deliver(&mut self, id: ClientId, out: ClientOut) {
        let Some(c) = self.conns.get(&id) else { return };
        match out {
            ClientOut::Reliable(bytes) => {
                let frame = frame_bytes(&bytes);
                let len = frame.len();
                if c.writer.send(frame) {
                    self.metrics.client_link.sent(len);
                } else {
                    self.metrics.slow_clients.inc();
                    tracing::warn!(client = id, "client cannot keep up; disconnecting");
                    c.conn.close(close::SLOW.into(), b"client cannot keep up");
                    self.conns.remove(&id);
                    self.core
                        .client_input(Time::now(), id, ClientInput::Gone("too slow".into()));
                }
            }
            ClientOut::Datagram(bytes) => {
                // Latest wins: a datagram that does not fit is dropped.
                let len = bytes.len();
                if c.conn.send_datagram(bytes.into()).is_ok() {
                    self.metrics.client_link.sent(len);
                }
            }
            ClientOut::Close { code, reason } => {
                if code == close::PROTOCOL || code == close::REFUSED {
                    tracing::warn!(client = id, %reason, "client disconnected");
                }
                let conn = c.conn.clone();
                // Give the writer a moment to deliver a final refusal message.
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    conn.close(code.into(), reason.as_bytes());
                });
                self.conns.remove(&id);
            }
        }
    }
}
