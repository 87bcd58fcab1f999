//! The baseapp driver: tokio tasks that accept client connections (one QUIC
//! connection per client: a stream for the handshake, calls and events,
//! datagrams for movement), carry the app links through the QUIC
//! [`Transport`], run the storage thread, and pump the [`Baseapp`] core.
//! Decoding is bounded here; every rule about what a client may do, and
//! every timer, is in the core.

use rand::Rng;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tessera::frame::{self, frame_bytes};
use tessera::link::quic::Transport;
use tessera::net::gate::{self, Gate, GateConfig, Pass};
use tessera::net::{self, close};
use tessera::proto::app::{Registration, Role};
use tessera::proto::client::{ClientDatagram, ClientMsg};
use tessera::proto::{ALPN_CLIENT, PROTOCOL_MAJOR};
use tessera::{AppId, Definitions, Time};
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

use crate::baseapp::{self, Baseapp, BaseappConfig, Output};
use crate::bases::{BaseConfig, ClientId, ClientInput, ClientOut, Closing, Violation};
use crate::metrics::Metrics;
use crate::store::Store;
use tessera::metrics::LinkMeter;

/// The largest frame a client may send.
pub const MAX_CLIENT_FRAME: usize = 8 * 1024;
/// Bytes queued for one client (stream frames, and positions behind them)
/// before it counts as too slow and is disconnected. Counted in bytes, not
/// frames: a crowd means many small frames, and what matters is how far
/// behind the client is.
const CLIENT_QUEUE_BYTES: usize = 1 << 20;

/// The queue of stream frames and datagrams for one client, bounded in
/// bytes (both count, so a connection that stops taking either stops its
/// queue from growing).
#[derive(Clone)]
struct Writer {
    tx: mpsc::UnboundedSender<Outgoing>,
    queued: Arc<AtomicUsize>,
}

/// What a client's writer task sends.
enum Outgoing {
    /// Bytes for the stream.
    Frame(Vec<u8>),
    /// A datagram.
    Datagram(Vec<u8>),
}

impl Writer {
    /// Queues a frame; `false` if the client is already too far behind (or gone).
    fn send(&self, frame: Vec<u8>) -> bool {
        let len = frame.len();
        if self.queued.load(Ordering::Relaxed) + len > CLIENT_QUEUE_BYTES {
            return false;
        }
        self.queued.fetch_add(len, Ordering::Relaxed);
        self.tx.send(Outgoing::Frame(frame)).is_ok()
    }

    /// Queues a datagram behind the frames queued before it, so that one
    /// turn of the writer hands the connection a tick's stream bytes and
    /// positions together (QUIC then packs them into as few packets, and
    /// system calls, as fit). A client whose stream is behind gets none.
    fn datagram(&self, bytes: Vec<u8>) -> bool {
        let len = bytes.len();
        if self.queued.load(Ordering::Relaxed) + len > CLIENT_DATAGRAM_LAG_BYTES {
            return false;
        }
        self.queued.fetch_add(len, Ordering::Relaxed);
        self.tx.send(Outgoing::Datagram(bytes)).is_ok()
    }
}

/// Bytes a client's writer may be behind and still be sent positions:
/// beyond this its connection is congested, and positions queued behind
/// it would only arrive stale.
const CLIENT_DATAGRAM_LAG_BYTES: usize = 64 * 1024;

/// How to run a baseapp.
#[derive(Clone)]
pub struct Options {
    /// The manager's internal address.
    pub manager: SocketAddr,
    /// Where to listen for other apps.
    pub bind_internal: SocketAddr,
    /// Where to listen for clients.
    pub bind_public: SocketAddr,
    /// The address other apps are told to reach it at, if not the bound
    /// one (port 0: the bound port); see [`net::advertise`].
    pub advertise_internal: Option<SocketAddr>,
    /// The address clients are told to reach it at, if not the bound one.
    pub advertise_public: Option<SocketAddr>,
    /// Data directory (certificates).
    pub data_dir: PathBuf,
    /// The database of accounts and entities.
    pub database: tessera::storage::Location,
    /// The certificate the public ports present.
    pub public_cert: net::PublicCert,
    /// Entity definitions.
    pub defs: Arc<Definitions>,
    /// Core settings.
    pub config: BaseConfig,
    /// Where to serve `/metrics` and `/healthz`, if anywhere.
    pub admin: Option<SocketAddr>,
    /// Client connections one IP address may hold at once.
    pub clients_per_addr: usize,
    /// New client connections one IP address may open a second (after a
    /// burst of twice as many); 0 for no limit.
    pub conn_rate_per_addr: f64,
}

/// Why the baseapp could not run.
#[derive(Debug, thiserror::Error)]
pub enum BaseappError {
    /// QUIC setup failed.
    #[error(transparent)]
    Net(#[from] net::NetError),
    /// The manager did not take the baseapp.
    #[error("the manager did not take this baseapp: {0}")]
    Refused(String),
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
    stop: Option<oneshot::Sender<(Leaving, oneshot::Sender<()>)>>,
    task: Option<tokio::task::JoinHandle<Option<String>>>,
}

/// How a baseapp is asked to go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Leaving {
    /// Every entity is saved, and its client disconnected.
    Stop,
    /// Every entity goes to another baseapp, and its client follows.
    Retire,
}

impl BaseappHandle {
    /// Stops cleanly: every entity is saved first, and its client
    /// disconnected (the whole world is stopping).
    pub async fn stop(self) {
        self.leave(Leaving::Stop).await
    }

    /// Retires: every entity goes to another baseapp and its client
    /// follows, disconnected from nothing (a rolling restart). With no
    /// other baseapp, a clean stop.
    pub async fn retire(self) {
        self.leave(Leaving::Retire).await
    }

    async fn leave(mut self, how: Leaving) {
        if let Some(stop) = self.stop.take() {
            let (tx, rx) = oneshot::channel();
            if stop.send((how, tx)).is_ok() {
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
    let cluster = net::ca::load_identity(&opts.data_dir)?;
    let identity = opts.public_cert.load(&opts.data_dir)?;
    let internal = net::endpoint(
        opts.bind_internal,
        Some(net::internal_server_config(&cluster)?),
    )?;
    let public = net::endpoint(
        opts.bind_public,
        Some(net::server_config(&identity, &[ALPN_CLIENT])?),
    )?;
    let local = |ep: &quinn::Endpoint, addr: SocketAddr| {
        ep.local_addr()
            .map_err(|source| net::NetError::Bind { addr, source })
    };
    let internal_addr = net::advertise::advertised(
        local(&internal, opts.bind_internal)?,
        opts.advertise_internal,
        opts.manager,
    )
    .map_err(net::NetError::from)?;
    let bound_public = local(&public, opts.bind_public)?;
    let public_addr = net::advertise::advertised(bound_public, opts.advertise_public, bound_public)
        .map_err(net::NetError::from)?;
    let metrics = Metrics::new();
    let admin_addr = tessera::admin::serve_metrics(opts.admin, &metrics.registry).await?;
    let registration = Registration {
        role: Role::Baseapp,
        protocol: PROTOCOL_MAJOR,
        defs_digest: opts.defs.digest,
        internal_addr,
        public_addr: Some(public_addr),
        admin_addr,
    };
    let (store_tx, store_rx) = mpsc::unbounded_channel();
    let db = opts
        .database
        .open(tessera::storage::HashCost::default())
        .await?;
    let store = Store::open(&db, store_tx, metrics.clone())?;
    let mut seed = [0u8; 32];
    rand::rand_core::UnwrapErr(rand::rngs::SysRng).fill_bytes(&mut seed);
    let mut cfg = BaseappConfig::new(opts.manager, registration, opts.defs.clone(), seed);
    cfg.bases = opts.config.clone();
    let core = Baseapp::new(Time::now(), cfg);
    let transport = Transport::new(internal, &cluster, metrics.app_link.clone())?;
    // Baseapps with a higher id dial this one: copies of bases come that way.
    transport.listen(net::gate::Gate::new(net::gate::GateConfig::internal()));
    let (clients_tx, clients) = mpsc::unbounded_channel();
    tokio::spawn(accept_clients(
        public.clone(),
        Gate::new(GateConfig::clients(
            opts.clients_per_addr,
            opts.conn_rate_per_addr,
        )),
        clients_tx,
        metrics.client_link.clone(),
    ));
    let (stop_tx, stop_rx) = oneshot::channel();
    let (joined_tx, joined) = oneshot::channel();
    let span = tracing::info_span!("baseapp", %public_addr);
    let driver = Driver {
        core,
        transport,
        conns: HashMap::new(),
        store,
        public,
        metrics: metrics.clone(),
        joined: Some(joined_tx),
        ticks: 0,
    };
    let task = tokio::spawn(driver.run(clients, store_rx, stop_rx).instrument(span));
    let app = match joined.await {
        Ok(Ok(app)) => app,
        Ok(Err(reason)) => return Err(BaseappError::Refused(reason)),
        Err(_) => {
            let why = match task.await {
                Ok(why) => why.unwrap_or_default(),
                Err(e) => e.to_string(),
            };
            return Err(BaseappError::Refused(why));
        }
    };
    metrics.registry.set_label("app", &app.0.to_string());
    tracing::info!(%app, %public_addr, %internal_addr, "baseapp joined the cluster");
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
    gate: Gate,
    events: mpsc::UnboundedSender<(ClientId, ClientEvent)>,
    meter: LinkMeter,
) {
    let mut next: ClientId = 1;
    while let Some(incoming) = endpoint.accept().await {
        let peer = incoming.remote_address();
        let Some((connecting, pass)) = gate::admit(&gate, incoming) else {
            continue;
        };
        let id = next;
        next += 1;
        let events = events.clone();
        let meter = meter.clone();
        let wait = gate.config().first_wait;
        tokio::spawn(async move {
            let span = tracing::info_span!("client", id, %peer);
            client_conn(connecting, pass, wait, id, events, meter)
                .instrument(span)
                .await;
        });
    }
}

/// Runs one client's connection: the hello within `wait`, then frames and
/// datagrams until it ends. The pass holds the connection's place at the
/// port until then.
async fn client_conn(
    connecting: quinn::Connecting,
    mut pass: Pass,
    wait: Duration,
    id: ClientId,
    events: mpsc::UnboundedSender<(ClientId, ClientEvent)>,
    meter: LinkMeter,
) {
    let Ok(conn) = connecting.await else { return };
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
        match tokio::time::timeout(wait, handshake).await {
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
    pass.arrived();
    let (tx, mut queue) = mpsc::unbounded_channel::<Outgoing>();
    let writer = Writer {
        tx,
        queued: Arc::new(AtomicUsize::new(0)),
    };
    let queued = writer.queued.clone();
    let datagrams = conn.clone();
    let out_meter = meter.clone();
    tokio::spawn(async move {
        let mut buf = Vec::new();
        let mut grams = Vec::new();
        while let Some(first) = queue.recv().await {
            // Everything queued now, in one write and a run of datagrams.
            let mut next = Some(first);
            while let Some(out) = next.take() {
                match out {
                    Outgoing::Frame(f) if buf.is_empty() => buf = f,
                    Outgoing::Frame(f) => buf.extend_from_slice(&f),
                    Outgoing::Datagram(d) => grams.push(d),
                }
                if buf.len() < 64 * 1024 {
                    next = queue.try_recv().ok();
                }
            }
            if !buf.is_empty() {
                if send.write_all(&buf).await.is_err() {
                    break;
                }
                queued.fetch_sub(buf.len(), Ordering::Relaxed);
                buf.clear();
            }
            for d in grams.drain(..) {
                // Latest wins: a datagram that does not fit is dropped.
                let len = d.len();
                queued.fetch_sub(len, Ordering::Relaxed);
                if datagrams.send_datagram(d.into()).is_ok() {
                    out_meter.sent(len);
                }
            }
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
        let mut reader = frame::Reader::new(MAX_CLIENT_FRAME);
        loop {
            match reader.next_batch(&mut recv).await {
                Ok(Some(batch)) => {
                    for body in frame::bodies(batch) {
                        let msg = match frame::decode::<ClientMsg>(body) {
                            Ok(msg) => msg,
                            Err(e) => {
                                return Some(ClientEvent::Bad(format!("undecodable frame: {e}")))
                            }
                        };
                        meter.received(body.len() + frame::HEADER_LEN);
                        if events
                            .send((id, ClientEvent::Input(ClientInput::Msg(msg))))
                            .is_err()
                        {
                            return None;
                        }
                    }
                }
                Ok(None) => {
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
        if let ClientEvent::Input(ClientInput::Gone(reason)) = &e {
            // The client finished or reset its stream: nothing more can
            // come from it, and keep-alives must not hold the connection.
            conn.close(close::DONE.into(), reason.as_bytes());
        }
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
    transport: Transport,
    conns: HashMap<ClientId, Conn>,
    store: Store,
    public: quinn::Endpoint,
    metrics: Metrics,
    joined: Option<oneshot::Sender<Result<AppId, String>>>,
    /// The bases' ticks as of the last look, to time each one.
    ticks: u64,
}

impl Driver {
    async fn run(
        mut self,
        mut clients: mpsc::UnboundedReceiver<(ClientId, ClientEvent)>,
        mut stored: mpsc::UnboundedReceiver<crate::bases::StoreDone>,
        mut stop: oneshot::Receiver<(Leaving, oneshot::Sender<()>)>,
    ) -> Option<String> {
        let mut stopping = false;
        let mut stopped_by: Option<oneshot::Sender<()>> = None;
        loop {
            let wake = self.core.poll_timeout();
            tokio::select! {
                (conn, ev) = self.transport.next() => self.core.handle(Time::now(), conn, ev),
                Some((id, ev)) = clients.recv() => self.client_event(id, ev),
                Some(done) = stored.recv() => self.core.store_done(Time::now(), done),
                _ = tessera::time::sleep_until(wake) => {
                    let started = std::time::Instant::now();
                    self.core.handle_timeout(Time::now());
                    self.observe(started.elapsed());
                }
                asked = &mut stop, if !stopping => {
                    // Asked to stop or retire, or the handle was dropped.
                    stopping = true;
                    match asked {
                        Ok((Leaving::Retire, reply)) => {
                            stopped_by = Some(reply);
                            self.core.retire(Time::now());
                        }
                        Ok((Leaving::Stop, reply)) => {
                            stopped_by = Some(reply);
                            self.core.stop(Time::now());
                        }
                        Err(_) => self.core.stop(Time::now()),
                    }
                }
            }
            if let Some(ended) = self.flush().await {
                if let Some(reply) = stopped_by {
                    let _ = reply.send(());
                }
                return ended;
            }
        }
    }

    /// Once a second, copies the core's counts into the metrics.
    /// Times each tick of the bases, and once a second copies the core's
    /// counts into the metrics.
    fn observe(&mut self, took: std::time::Duration) {
        let Some(bases) = self.core.bases() else {
            return;
        };
        let ticks = bases.ticks();
        if ticks == self.ticks {
            return;
        }
        self.ticks = ticks;
        let period = self.core.config().bases.tick;
        self.metrics.tick.record(took, period);
        let per_second = (1_000_000 / period.as_micros().max(1)) as u64;
        if ticks % per_second.max(1) != 0 {
            return;
        }
        self.metrics.bases.set(f64::from(bases.load().entities));
        self.metrics.entities_restored.advance_to(bases.restored());
        self.metrics.clients.set(self.conns.len() as f64);
        if let Some(links) = self.core.links() {
            self.metrics.sessions.observe(&links.stats());
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
                self.core.hello(now, id, protocol, digest, ticket);
            }
            ClientEvent::Input(input) => {
                if let ClientInput::Gone(_) = &input {
                    self.conns.remove(&id);
                }
                self.core.client_input(now, id, input);
            }
            ClientEvent::Bad(reason) => self.core.violation(now, id, Violation::Malformed(reason)),
        }
    }

    /// Carries out what the core asked. Returns why it stopped, once it has.
    async fn flush(&mut self) -> Option<Option<String>> {
        let outs: Vec<Output> = self.core.drain().collect();
        for out in outs {
            match out {
                Output::Transmit(t) => self.transport.apply(t),
                Output::Store(op) => self.store.submit(op),
                Output::Client(id, out) => self.deliver(id, out),
                Output::Joined(app) => {
                    if let Some(tx) = self.joined.take() {
                        let _ = tx.send(Ok(app));
                    }
                }
                Output::Ended(why) => return Some(self.end(why).await),
            }
        }
        None
    }

    async fn end(&mut self, why: baseapp::Ended) -> Option<String> {
        let reason = match why {
            baseapp::Ended::Left => {
                self.store.close();
                None
            }
            baseapp::Ended::Refused(reason) => {
                if let Some(tx) = self.joined.take() {
                    let _ = tx.send(Err(reason.clone()));
                }
                // What it still had queued would overwrite the restored
                // bases' rows.
                self.store.abandon();
                Some(reason)
            }
        };
        // Clients whose entities moved resume elsewhere; others are done.
        if self.core.handed_over() {
            self.public
                .close(close::MOVED.into(), b"moved to another baseapp");
        } else {
            self.public
                .close(close::SHUTDOWN.into(), b"server shutting down");
        }
        self.transport
            .shutdown(close::SHUTDOWN, "baseapp stopping")
            .await;
        tracing::info!("baseapp stopped");
        reason
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
            // Counted by the writer, if the connection takes it.
            ClientOut::Datagram(bytes) => {
                c.writer.datagram(bytes);
            }
            ClientOut::Close(why) => {
                let (code, reason) = (why.code(), why.to_string());
                if let Closing::Refused(_) | Closing::Violation(_) = why {
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
