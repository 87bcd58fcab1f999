//! The client library: log in, connect to a baseapp, move, call methods, and
//! keep a [`View`] of the world from the server's AoI events. Bots and
//! end-to-end tests use it; a game client would too.
//!
//! A client that logged in through [`Client::login_and_connect`] resumes by
//! itself when its connection is lost (its baseapp died, or the network
//! went away for a while): [`Client::next_event`] presents the session
//! token to the manager's resume endpoint, connects to whichever baseapp
//! holds the entity now, and reports [`Event::Resumed`]. Only a session
//! the server ended on purpose (logout, shutdown, a refused connection)
//! is not resumed.
//!
//! ```no_run
//! # async fn run(setup: tessera::client::Setup, login: std::net::SocketAddr) -> Result<(), tessera::client::ClientError> {
//! let endpoint = tessera::client::endpoint()?;
//! let mut client = tessera::client::Client::login_and_connect(&endpoint, &setup, login, "ann", "secret", true).await?;
//! client.send_move([10.0, 0.0, 12.0], 0.0)?;
//! client.call("set_title", vec![tessera::Value::String("explorer".into())]).await?;
//! while let Ok(event) = client.next_event().await {
//!     println!("{event:?}; I see {} entities", client.view.others.len());
//! }
//! # Ok(()) }
//! ```

pub use crate::view::{Seen, View};

use crate::defs::Definitions;
use crate::frame::{self, FrameError};
use crate::ids::EntityId;
use crate::net::{self, NetError};
use crate::proto::client::{ClientDatagram, ClientMsg, ServerDatagram, ServerMsg};
use crate::proto::login::{LoginReply, LoginRequest, RefuseReason, ResumeRequest};
use crate::proto::{Pos, Ticket, ALPN_CLIENT, ALPN_LOGIN, ALPN_RESUME, PROTOCOL_MAJOR};
use crate::time::Time;
use crate::value::Value;
use rustls::pki_types::CertificateDer;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::mpsc;

/// What a client needs to connect.
#[derive(Clone)]
pub struct Setup {
    /// The world's entity definitions (their digest must match the server's).
    pub defs: Arc<Definitions>,
    /// The server certificate to trust: the world's own, or the root of
    /// its chain.
    pub trust: CertificateDer<'static>,
    /// The name the server's certificate must carry ([`net::SERVER_NAME`]
    /// for the certificate `tessera up` makes).
    pub server_name: String,
    /// The largest frame accepted from the server.
    pub max_frame: usize,
}

/// Why a client operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// QUIC setup or connect failed.
    #[error(transparent)]
    Net(#[from] NetError),
    /// The login was refused.
    #[error("login refused ({reason:?}): {message}")]
    LoginRefused {
        /// Machine-readable reason.
        reason: RefuseReason,
        /// The server's message.
        message: String,
    },
    /// The baseapp refused the connection.
    #[error("connection refused: {0}")]
    Refused(String),
    /// The server sent something we cannot read.
    #[error("bad message from server: {0}")]
    Frame(#[from] FrameError),
    /// The connection is gone.
    #[error("connection lost: {0}")]
    Lost(String),
    /// Writing failed.
    #[error("send failed: {0}")]
    Send(String),
    /// A method name or its arguments do not fit the definitions.
    #[error("{0}")]
    BadCall(String),
    /// The server broke the protocol (for example, no welcome).
    #[error("protocol: {0}")]
    Protocol(String),
}

/// Something that happened, returned by [`Client::next_event`] after it was
/// applied to the view.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// An entity entered the AoI.
    Entered {
        /// Which.
        entity: EntityId,
        /// Server send to client receive, microseconds.
        latency_us: u64,
    },
    /// An entity left the AoI.
    Left(EntityId),
    /// A datagram of positions arrived.
    Positions {
        /// How many updates it held.
        count: usize,
        /// Server send to client receive, microseconds.
        latency_us: u64,
    },
    /// Reliable resting positions arrived, of this many entities.
    Rested {
        /// How many.
        count: usize,
    },
    /// Properties changed.
    Props(EntityId),
    /// The server called a client method.
    Called {
        /// On which entity.
        entity: EntityId,
        /// Method name.
        method: String,
        /// Arguments.
        args: Vec<Value>,
    },
    /// The server refused a move and put the entity back.
    Corrected {
        /// Why.
        reason: String,
    },
    /// The entity's cellapp died and the entity was brought back from its
    /// last backup; the view was cleared and fills again.
    Restored,
    /// The connection was lost and the client got back into its entity on
    /// a new one (perhaps on another baseapp); the view was cleared and
    /// fills again.
    Resumed,
}

/// How long a client keeps trying to resume a lost session.
pub const RESUME_FOR: std::time::Duration = std::time::Duration::from_secs(20);
/// Pause between two resume attempts.
const RESUME_RETRY: std::time::Duration = std::time::Duration::from_millis(200);

/// Byte counters of one client.
#[derive(Clone, Copy, Debug, Default)]
pub struct Traffic {
    /// Bytes received (frames and datagrams, payload only).
    pub bytes_in: u64,
    /// Bytes sent.
    pub bytes_out: u64,
}

enum Inbound {
    /// Whole frames, each with its length prefix.
    Frames(Vec<u8>),
    Datagram(bytes::Bytes),
    Closed(String),
}

/// Handshakes a client tries before it gives up on a server that does not
/// answer. A server taking a burst of logins may drop a handshake's
/// packets, and within the idle timeout QUIC sends a lost handshake again
/// only once.
const CONNECT_TRIES: u32 = 3;

/// Connects to a public port, trying a handshake that went unanswered
/// again, up to `tries` handshakes in all.
async fn connect_patiently(
    endpoint: &quinn::Endpoint,
    cfg: quinn::ClientConfig,
    addr: SocketAddr,
    name: &str,
    tries: u32,
) -> Result<quinn::Connection, NetError> {
    let mut tried = 1;
    loop {
        match net::connect_as(endpoint, cfg.clone(), addr, name).await {
            Err(NetError::TimedOut { .. }) if tried < tries => tried += 1,
            done => return done,
        }
    }
}

/// A client endpoint on an ephemeral loopback-or-any port.
pub fn endpoint() -> Result<quinn::Endpoint, NetError> {
    net::endpoint(SocketAddr::from(([0, 0, 0, 0], 0)), None)
}

/// Logs in at the manager and returns the baseapp to connect to and the ticket.
pub async fn login(
    endpoint: &quinn::Endpoint,
    setup: &Setup,
    login_addr: SocketAddr,
    name: &str,
    password: &str,
    create: bool,
) -> Result<(SocketAddr, Ticket), ClientError> {
    let req = LoginRequest {
        protocol: PROTOCOL_MAJOR,
        defs_digest: setup.defs.digest,
        name: name.to_string(),
        password: password.to_string(),
        create,
    };
    ask_manager(
        endpoint,
        setup,
        login_addr,
        ALPN_LOGIN,
        &frame::encode(&req),
        CONNECT_TRIES,
    )
    .await
}

/// Asks the manager's resume endpoint for a ticket into the entity a
/// session token belongs to.
pub async fn resume(
    endpoint: &quinn::Endpoint,
    setup: &Setup,
    login_addr: SocketAddr,
    entity: EntityId,
    token: Ticket,
) -> Result<(SocketAddr, Ticket), ClientError> {
    let req = ResumeRequest {
        protocol: PROTOCOL_MAJOR,
        defs_digest: setup.defs.digest,
        entity,
        token,
    };
    ask_manager(
        endpoint,
        setup,
        login_addr,
        ALPN_RESUME,
        &frame::encode(&req),
        1,
    )
    .await
}

/// One request frame to the manager's login port, one reply back.
async fn ask_manager(
    endpoint: &quinn::Endpoint,
    setup: &Setup,
    login_addr: SocketAddr,
    alpn: &[u8],
    req: &[u8],
    tries: u32,
) -> Result<(SocketAddr, Ticket), ClientError> {
    let cfg = net::client_config(&setup.trust, alpn)?;
    let conn = connect_patiently(endpoint, cfg, login_addr, &setup.server_name, tries).await?;
    let lost = |e: &dyn std::fmt::Display| ClientError::Lost(e.to_string());
    let (mut send, mut recv) = conn.open_bi().await.map_err(|e| lost(&e))?;
    send.write_all(req).await.map_err(|e| lost(&e))?;
    let _ = send.finish();
    let mut buf = Vec::new();
    let reply: Option<LoginReply> = frame::read_msg(&mut recv, setup.max_frame, &mut buf).await?;
    conn.close(net::close::DONE.into(), b"done");
    match reply {
        Some(LoginReply::Granted { baseapp, ticket }) => Ok((baseapp, ticket)),
        Some(LoginReply::Refused { reason, message }) => {
            Err(ClientError::LoginRefused { reason, message })
        }
        None => Err(ClientError::Protocol("login endpoint sent no reply".into())),
    }
}

/// Asks for a ticket into `me` and connects with it, retrying while the
/// world restores the entity, for at most [`RESUME_FOR`].
async fn resume_loop(
    endpoint: &quinn::Endpoint,
    setup: &Setup,
    login_addr: SocketAddr,
    me: EntityId,
    token: Ticket,
    why: String,
) -> Result<Client, ClientError> {
    let deadline = tokio::time::Instant::now() + RESUME_FOR;
    let mut last = why;
    while tokio::time::Instant::now() < deadline {
        let attempt = async {
            let (baseapp, ticket) = resume(endpoint, setup, login_addr, me, token).await?;
            Client::connect(endpoint, setup, baseapp, ticket).await
        };
        match tokio::time::timeout(std::time::Duration::from_secs(5), attempt).await {
            Ok(Ok(fresh)) => return Ok(fresh),
            Ok(Err(
                e @ ClientError::LoginRefused {
                    reason: RefuseReason::ProtocolVersion | RefuseReason::DefinitionsMismatch,
                    ..
                },
            )) => return Err(e),
            Ok(Err(e)) => last = e.to_string(),
            Err(_) => last = "resume timed out".into(),
        }
        tokio::time::sleep(RESUME_RETRY).await;
    }
    Err(ClientError::Lost(format!(
        "could not resume the session: {last}"
    )))
}

/// A connected client.
pub struct Client {
    conn: quinn::Connection,
    send: quinn::SendStream,
    inbound: mpsc::Receiver<Inbound>,
    /// Whole frames received and not all applied yet, and how far they are.
    pending: Vec<u8>,
    pending_at: usize,
    /// Whether the connection may still bring datagrams.
    datagrams: bool,
    setup: Setup,
    seq: u32,
    /// Where to resume a lost session, and with what, once known.
    resume: Option<(quinn::Endpoint, SocketAddr)>,
    token: Option<Ticket>,
    /// Sessions resumed so far.
    pub resumed: u32,
    /// A resume under way: the new connection and the endpoint it uses.
    resuming: Option<tokio::task::JoinHandle<Result<(Client, quinn::Endpoint), ClientError>>>,
    /// What the client sees.
    pub view: View,
    /// Bytes in and out.
    pub traffic: Traffic,
}

impl Client {
    /// Logs in and connects in one step.
    pub async fn login_and_connect(
        endpoint: &quinn::Endpoint,
        setup: &Setup,
        login_addr: SocketAddr,
        name: &str,
        password: &str,
        create: bool,
    ) -> Result<Client, ClientError> {
        let (baseapp, ticket) = login(endpoint, setup, login_addr, name, password, create).await?;
        let digest = setup.defs.digest;
        let mut client =
            Client::connect_tries(endpoint, setup, baseapp, ticket, digest, CONNECT_TRIES).await?;
        client.resume = Some((endpoint.clone(), login_addr));
        Ok(client)
    }

    /// Connects to a baseapp with a ticket and waits for the welcome.
    pub async fn connect(
        endpoint: &quinn::Endpoint,
        setup: &Setup,
        baseapp: SocketAddr,
        ticket: Ticket,
    ) -> Result<Client, ClientError> {
        Client::connect_with_digest(endpoint, setup, baseapp, ticket, setup.defs.digest).await
    }

    /// Like [`Client::connect`], presenting the given definitions digest.
    pub async fn connect_with_digest(
        endpoint: &quinn::Endpoint,
        setup: &Setup,
        baseapp: SocketAddr,
        ticket: Ticket,
        defs_digest: [u8; 32],
    ) -> Result<Client, ClientError> {
        Client::connect_tries(endpoint, setup, baseapp, ticket, defs_digest, 1).await
    }

    /// Connects, with up to `tries` handshakes (the ticket is presented
    /// only once a handshake succeeds, so a handshake that went unanswered
    /// may be tried again with it).
    async fn connect_tries(
        endpoint: &quinn::Endpoint,
        setup: &Setup,
        baseapp: SocketAddr,
        ticket: Ticket,
        defs_digest: [u8; 32],
        tries: u32,
    ) -> Result<Client, ClientError> {
        let cfg = net::client_config(&setup.trust, ALPN_CLIENT)?;
        let conn = connect_patiently(endpoint, cfg, baseapp, &setup.server_name, tries).await?;
        let lost = |e: &dyn std::fmt::Display| ClientError::Lost(e.to_string());
        let (mut send, mut recv) = conn.open_bi().await.map_err(|e| lost(&e))?;
        let hello = frame::encode(&ClientMsg::Hello {
            protocol: PROTOCOL_MAJOR,
            defs_digest,
            ticket,
        });
        send.write_all(&hello).await.map_err(|e| lost(&e))?;
        let mut buf = Vec::new();
        let first: Option<ServerMsg> =
            match frame::read_msg(&mut recv, setup.max_frame, &mut buf).await {
                Ok(m) => m,
                Err(e) => {
                    return Err(match conn.close_reason() {
                        Some(reason) => ClientError::Refused(reason.to_string()),
                        None => e.into(),
                    })
                }
            };
        let view = match first {
            Some(ServerMsg::Welcome {
                entity,
                type_id,
                pos,
                props,
                bounds,
                ..
            }) => View::new(entity, type_id, pos, &props, bounds),
            Some(ServerMsg::Refused { reason }) => return Err(ClientError::Refused(reason)),
            Some(other) => {
                return Err(ClientError::Protocol(format!(
                    "expected a welcome, got {other:?}"
                )))
            }
            None => return Err(ClientError::Protocol("stream closed before welcome".into())),
        };
        let (tx, inbound) = mpsc::channel(4096);
        tokio::spawn(pump(conn.clone(), recv, tx, setup.max_frame));
        Ok(Client {
            conn,
            send,
            inbound,
            pending: Vec::new(),
            pending_at: 0,
            datagrams: true,
            setup: setup.clone(),
            seq: 0,
            resume: None,
            token: None,
            resumed: 0,
            resuming: None,
            view,
            traffic: Traffic::default(),
        })
    }

    /// Whether a lost connection may be resumed: the client knows where and
    /// how, and the server did not end the session on purpose.
    fn resumable(&self) -> bool {
        if self.resume.is_none() || self.token.is_none() {
            return false;
        }
        match self.conn.close_reason() {
            Some(quinn::ConnectionError::ApplicationClosed(c)) => {
                let code = u32::try_from(c.error_code.into_inner()).unwrap_or(u32::MAX);
                code == net::close::SLOW || code == net::close::MOVED
            }
            Some(quinn::ConnectionError::LocallyClosed) => false,
            _ => true,
        }
    }

    /// Starts getting back into the entity on a new connection, in a task
    /// of its own, so that a caller that stops waiting for the next event
    /// (a `select!` whose other branch won) does not cancel it.
    fn start_resume(&mut self, why: String) -> Result<(), ClientError> {
        let (Some((old, login_addr)), Some(token)) = (self.resume.clone(), self.token) else {
            return Err(ClientError::Lost(why));
        };
        // A fresh socket, as after a change of network: the old endpoint
        // may be what failed (quinn stops an endpoint on a socket error).
        let endpoint = endpoint().unwrap_or(old);
        let (setup, me) = (self.setup.clone(), self.view.me);
        self.resuming = Some(tokio::spawn(async move {
            let fresh = resume_loop(&endpoint, &setup, login_addr, me, token, why).await?;
            Ok((fresh, endpoint))
        }));
        Ok(())
    }

    /// Waits for the resume under way; on success the new connection takes
    /// the old one's place.
    async fn finish_resume(&mut self) -> Result<Event, ClientError> {
        let Some(task) = self.resuming.as_mut() else {
            return Err(ClientError::Lost("no resume under way".into()));
        };
        let result = task.await;
        self.resuming = None;
        let (fresh, endpoint) = result.map_err(|e| ClientError::Lost(e.to_string()))??;
        let login_addr = self.resume.as_ref().map(|(_, a)| *a);
        let (traffic, resumed, seq) = (self.traffic, self.resumed + 1, self.seq);
        *self = fresh;
        self.traffic = traffic;
        self.resumed = resumed;
        self.seq = seq;
        self.resume = login_addr.map(|a| (endpoint, a));
        Ok(Event::Resumed)
    }

    /// Sends a movement of the client's own entity (a datagram; latest
    /// wins). While a lost session is waiting to be resumed, moves are
    /// dropped, as a lost datagram would be.
    pub fn send_move(&mut self, pos: Pos, yaw: f32) -> Result<(), ClientError> {
        self.seq = self.seq.wrapping_add(1);
        self.view.my_pos = pos;
        let bytes = frame::encode_body(&ClientDatagram::Move {
            seq: self.seq,
            pos,
            yaw,
        });
        self.traffic.bytes_out += bytes.len() as u64;
        match self.conn.send_datagram(bytes.into()) {
            Err(quinn::SendDatagramError::ConnectionLost(_)) if self.resumable() => Ok(()),
            other => other.map_err(|e| ClientError::Send(e.to_string())),
        }
    }

    /// Calls an exposed method of the client's own entity, by name.
    pub async fn call(&mut self, method: &str, args: Vec<Value>) -> Result<(), ClientError> {
        let ty = self
            .setup
            .defs
            .get(self.view.my_type)
            .ok_or_else(|| ClientError::BadCall("own type unknown".into()))?;
        let m = ty
            .method(method)
            .ok_or_else(|| ClientError::BadCall(format!("{} has no method {method}", ty.name)))?;
        let index = m.index;
        self.send_msg(&ClientMsg::Call {
            method: index,
            args,
        })
        .await
    }

    /// Sends any stream message (tests use it to send what a well-behaved client would not).
    pub async fn send_msg(&mut self, msg: &ClientMsg) -> Result<(), ClientError> {
        self.send_raw(&frame::encode(msg)).await
    }

    /// Writes raw bytes on the stream, framing included.
    pub async fn send_raw(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        self.traffic.bytes_out += bytes.len() as u64;
        self.send
            .write_all(bytes)
            .await
            .map_err(|e| ClientError::Send(e.to_string()))
    }

    /// Sends a raw datagram.
    pub fn send_raw_datagram(&mut self, bytes: Vec<u8>) -> Result<(), ClientError> {
        self.conn
            .send_datagram(bytes.into())
            .map_err(|e| ClientError::Send(e.to_string()))
    }

    /// Waits for the next event and applies it to the view. A lost
    /// connection is resumed here when it may be (see the module doc).
    pub async fn next_event(&mut self) -> Result<Event, ClientError> {
        if self.resuming.is_some() {
            return self.finish_resume().await;
        }
        loop {
            if let Some(event) = self.take_pending()? {
                return Ok(event);
            }
            // Datagrams are read here, not through the connection task:
            // one wake-up a datagram instead of two. Both reads may be
            // cancelled by a caller's `select!` without losing anything.
            let inbound = tokio::select! {
                d = self.conn.read_datagram(), if self.datagrams => match d {
                    Ok(bytes) => Inbound::Datagram(bytes),
                    // The connection task says why the connection ended.
                    Err(_) => {
                        self.datagrams = false;
                        continue;
                    }
                },
                i = self.inbound.recv() => {
                    i.unwrap_or_else(|| Inbound::Closed("connection task ended".into()))
                }
            };
            match inbound {
                Inbound::Closed(reason) => {
                    if !self.resumable() {
                        return Err(ClientError::Lost(reason));
                    }
                    self.start_resume(reason)?;
                    return self.finish_resume().await;
                }
                Inbound::Datagram(bytes) => return self.take_datagram(&bytes),
                Inbound::Frames(batch) => {
                    self.pending = batch;
                    self.pending_at = 0;
                }
            }
        }
    }

    /// Applies a datagram.
    fn take_datagram(&mut self, bytes: &[u8]) -> Result<Event, ClientError> {
        let now = Time::now().0;
        self.traffic.bytes_in += bytes.len() as u64;
        let d: ServerDatagram = frame::decode(bytes)?;
        self.view.apply_datagram(&d);
        let ServerDatagram::Positions {
            sent_us, updates, ..
        } = &d;
        Ok(Event::Positions {
            count: updates.len(),
            latency_us: now.saturating_sub(*sent_us),
        })
    }

    /// Applies the frames of the last batch not yet applied, up to the
    /// first that makes an event.
    fn take_pending(&mut self) -> Result<Option<Event>, ClientError> {
        let batch = std::mem::take(&mut self.pending);
        let mut at = self.pending_at;
        let mut taken = Ok(None);
        for body in frame::bodies(&batch[at.min(batch.len())..]) {
            at += frame::HEADER_LEN + body.len();
            taken = self.take_frame(body);
            if !matches!(taken, Ok(None)) {
                break;
            }
        }
        self.pending = batch;
        self.pending_at = at;
        taken
    }

    /// Applies one stream message; `None` for one that is not an event.
    fn take_frame(&mut self, bytes: &[u8]) -> Result<Option<Event>, ClientError> {
        let now = Time::now().0;
        self.traffic.bytes_in += bytes.len() as u64 + 4;
        let msg: ServerMsg = frame::decode(bytes)?;
        self.view.apply(&msg);
        let event = match msg {
            ServerMsg::Enter {
                entity, sent_us, ..
            } => Event::Entered {
                entity,
                latency_us: now.saturating_sub(sent_us),
            },
            ServerMsg::Leave { entity } => Event::Left(entity),
            ServerMsg::Props { entity, .. } => Event::Props(entity),
            ServerMsg::Rest { .. } => Event::Rested { count: 1 },
            ServerMsg::Rests { updates, .. } => Event::Rested {
                count: updates.len(),
            },
            ServerMsg::Corrected { reason, .. } => Event::Corrected { reason },
            ServerMsg::Restored { .. } => Event::Restored,
            ServerMsg::Call {
                entity,
                method,
                args,
            } => {
                let name = self
                    .setup
                    .defs
                    .get(self.view.my_type)
                    .and_then(|t| t.methods.get(method as usize))
                    .map(|m| m.name.clone())
                    .unwrap_or_else(|| format!("#{method}"));
                Event::Called {
                    entity,
                    method: name,
                    args,
                }
            }
            ServerMsg::Refused { reason } => return Err(ClientError::Refused(reason)),
            ServerMsg::Welcome { .. } => {
                return Err(ClientError::Protocol("second welcome".into()))
            }
            ServerMsg::Session { token } => {
                self.token = Some(token);
                return Ok(None);
            }
        };
        Ok(Some(event))
    }

    /// Why the connection closed, if it has.
    pub fn close_reason(&self) -> Option<String> {
        self.conn.close_reason().map(|r| r.to_string())
    }

    /// Logs out: the server saves the entity. Waits until the server closes
    /// the connection (or a few seconds pass).
    pub async fn logout(mut self) -> Result<(), ClientError> {
        self.send_msg(&ClientMsg::Logout).await?;
        let _ = self.send.finish();
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), self.conn.closed()).await;
        Ok(())
    }

    /// The underlying connection.
    pub fn connection(&self) -> &quinn::Connection {
        &self.conn
    }
}

/// The connection's task: reads the stream's frames and hands them to the
/// client in batches, then says why the connection ended.
async fn pump(
    conn: quinn::Connection,
    mut recv: quinn::RecvStream,
    tx: mpsc::Sender<Inbound>,
    max_frame: usize,
) {
    let mut reader = frame::Reader::new(max_frame);
    let reason = loop {
        match reader.next_batch(&mut recv).await {
            Ok(Some(batch)) => {
                if tx.send(Inbound::Frames(batch.to_vec())).await.is_err() {
                    break String::from("client dropped");
                }
            }
            Ok(None) => break String::from("server closed the stream"),
            Err(e) => break e.to_string(),
        }
    };
    // A server that closes the connection ends the stream first; wait briefly
    // for the close itself, which carries the reason.
    if conn.close_reason().is_none() {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), conn.closed()).await;
    }
    let reason = conn.close_reason().map(|r| r.to_string()).unwrap_or(reason);
    let _ = tx.send(Inbound::Closed(reason)).await;
}
