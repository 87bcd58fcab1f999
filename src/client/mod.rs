//! The client library: log in, connect to a baseapp, move, call methods, and
//! keep a [`View`] of the world from the server's AoI events. Bots and
//! end-to-end tests use it; a game client would too.
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

mod view;

pub use view::{Seen, View};

use crate::defs::Definitions;
use crate::frame::{self, FrameError};
use crate::ids::EntityId;
use crate::net::{self, NetError};
use crate::proto::client::{ClientDatagram, ClientMsg, ServerDatagram, ServerMsg};
use crate::proto::login::{LoginReply, LoginRequest, RefuseReason};
use crate::proto::{Pos, Ticket, ALPN_CLIENT, ALPN_LOGIN, PROTOCOL_MAJOR};
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
    /// The server certificate to trust.
    pub trust: CertificateDer<'static>,
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
    /// A reliable resting position arrived.
    Rested(EntityId),
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
}

/// Byte counters of one client.
#[derive(Clone, Copy, Debug, Default)]
pub struct Traffic {
    /// Bytes received (frames and datagrams, payload only).
    pub bytes_in: u64,
    /// Bytes sent.
    pub bytes_out: u64,
}

enum Inbound {
    Frame(Vec<u8>),
    Datagram(bytes::Bytes),
    Closed(String),
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
    let cfg = net::client_config(&setup.trust, ALPN_LOGIN)?;
    let conn = net::connect(endpoint, cfg, login_addr).await?;
    let lost = |e: &dyn std::fmt::Display| ClientError::Lost(e.to_string());
    let (mut send, mut recv) = conn.open_bi().await.map_err(|e| lost(&e))?;
    let req = LoginRequest {
        protocol: PROTOCOL_MAJOR,
        defs_digest: setup.defs.digest,
        name: name.to_string(),
        password: password.to_string(),
        create,
    };
    send.write_all(&frame::encode(&req))
        .await
        .map_err(|e| lost(&e))?;
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

/// A connected client.
pub struct Client {
    conn: quinn::Connection,
    send: quinn::SendStream,
    inbound: mpsc::Receiver<Inbound>,
    setup: Setup,
    seq: u32,
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
        Client::connect(endpoint, setup, baseapp, ticket).await
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
        let cfg = net::client_config(&setup.trust, ALPN_CLIENT)?;
        let conn = net::connect(endpoint, cfg, baseapp).await?;
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
            setup: setup.clone(),
            seq: 0,
            view,
            traffic: Traffic::default(),
        })
    }

    /// Sends a movement of the client's own entity (a datagram; latest wins).
    pub fn send_move(&mut self, pos: Pos, yaw: f32) -> Result<(), ClientError> {
        self.seq = self.seq.wrapping_add(1);
        self.view.my_pos = pos;
        let bytes = frame::encode_body(&ClientDatagram::Move {
            seq: self.seq,
            pos,
            yaw,
        });
        self.traffic.bytes_out += bytes.len() as u64;
        self.conn
            .send_datagram(bytes.into())
            .map_err(|e| ClientError::Send(e.to_string()))
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

    /// Waits for the next event and applies it to the view.
    pub async fn next_event(&mut self) -> Result<Event, ClientError> {
        let inbound = self
            .inbound
            .recv()
            .await
            .ok_or_else(|| ClientError::Lost("connection task ended".into()))?;
        let now = Time::now().0;
        match inbound {
            Inbound::Closed(reason) => Err(ClientError::Lost(reason)),
            Inbound::Datagram(bytes) => {
                self.traffic.bytes_in += bytes.len() as u64;
                let d: ServerDatagram = frame::decode(&bytes)?;
                self.view.apply_datagram(&d);
                let ServerDatagram::Positions { sent_us, updates } = &d;
                Ok(Event::Positions {
                    count: updates.len(),
                    latency_us: now.saturating_sub(*sent_us),
                })
            }
            Inbound::Frame(bytes) => {
                self.traffic.bytes_in += bytes.len() as u64 + 4;
                let msg: ServerMsg = frame::decode(&bytes)?;
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
                    ServerMsg::Rest { entity, .. } => Event::Rested(entity),
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
                };
                Ok(event)
            }
        }
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

async fn pump(
    conn: quinn::Connection,
    mut recv: quinn::RecvStream,
    tx: mpsc::Sender<Inbound>,
    max_frame: usize,
) {
    let frames = {
        let tx = tx.clone();
        async move {
            let mut buf = Vec::new();
            loop {
                match frame::read_frame(&mut recv, max_frame, &mut buf).await {
                    Ok(true) => {
                        if tx
                            .send(Inbound::Frame(std::mem::take(&mut buf)))
                            .await
                            .is_err()
                        {
                            return String::from("client dropped");
                        }
                    }
                    Ok(false) => return String::from("server closed the stream"),
                    Err(e) => return e.to_string(),
                }
            }
        }
    };
    let datagrams = {
        let conn = conn.clone();
        let tx = tx.clone();
        async move {
            loop {
                match conn.read_datagram().await {
                    Ok(d) => {
                        // Positions are latest-wins: drop rather than block when the app lags.
                        let _ = tx.try_send(Inbound::Datagram(d));
                    }
                    Err(e) => return e.to_string(),
                }
            }
        }
    };
    let reason = tokio::select! {
        r = frames => r,
        r = datagrams => r,
    };
    // A server that closes the connection ends the stream first; wait briefly
    // for the close itself, which carries the reason.
    if conn.close_reason().is_none() {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), conn.closed()).await;
    }
    let reason = conn.close_reason().map(|r| r.to_string()).unwrap_or(reason);
    let _ = tx.send(Inbound::Closed(reason)).await;
}
