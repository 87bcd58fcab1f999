//! Links between the processes of a cluster, as a state machine with no I/O
//! (after quinn-proto): the link table every cellapp and baseapp keeps, and
//! the connection vocabulary its driver or the simulator speaks.
//!
//! A *link* is a session between two apps that outlives the connections
//! carrying it ([`session`]). The table decides who dials whom, dials again
//! when a connection drops, keeps every message until the peer
//! acknowledges it, and on each new connection sends again what the peer
//! had not received; a message is taken exactly once, in order, however
//! often the connection between two live apps drops. Only when a peer is
//! declared dead or leaves ([`Links::forget`]) is what it had not received
//! given up.
//!
//! The table never touches a socket or a clock. It takes what happened to
//! connections ([`Links::handle`]) and the time, and leaves what to do
//! ([`Transmit`]) for its caller; it says when it next needs the time
//! ([`Links::poll_timeout`]).
//!
//! The backlog for one peer (sent and not yet acknowledged, or waiting for
//! a connection) is bounded in bytes ([`LinkConfig::max_backlog`]). A
//! message that would pass the bound is dropped, counted and logged, and
//! the peer's connection is closed with the reason: a peer that far behind
//! is stuck or cut off, and the redial shows whether it is still there.

pub mod session;

#[cfg(feature = "transport")]
pub mod quic;

use bytes::Bytes;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use crate::frame;
use crate::proto::app::{AppMsg, CellInfo, CertId, Role};
use crate::proto::close;
use crate::{AppId, Time};
use session::{Incoming, Outgoing, Queued, Received};

/// Bytes queued for writing on a connection past which a driver drops
/// frames sent outside the session ([`Transmit::SendLossy`]): positions a
/// peer would get late are worth nothing.
pub const LOSSY_QUEUE: usize = 1 << 20;

/// The largest frame accepted on an app link.
pub const MAX_APP_FRAME: usize = 16 << 20;

/// A connection, named by whoever made it: the core for the ones it dials
/// (see [`ConnIds`]), the driver or simulator for the ones it accepts
/// ([`ConnId::accepted`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(pub u64);

impl ConnId {
    const ACCEPTED: u64 = 1 << 63;

    /// The id of the `n`th connection another process opened to this one.
    pub fn accepted(n: u64) -> ConnId {
        ConnId(n | Self::ACCEPTED)
    }

    /// Whether another process opened it.
    pub fn is_accepted(self) -> bool {
        self.0 & Self::ACCEPTED != 0
    }
}

impl std::fmt::Display for ConnId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_accepted() {
            write!(f, "in#{}", self.0 & !Self::ACCEPTED)
        } else {
            write!(f, "out#{}", self.0)
        }
    }
}

/// Hands out the ids of the connections one table dials. Tables of one
/// process take different tags, so their ids never meet.
#[derive(Debug, Default)]
pub struct ConnIds {
    tag: u64,
    next: u64,
}

impl ConnIds {
    /// Ids for the app links ([`Links`]).
    pub const LINKS: u64 = 0;
    /// Ids for the manager link ([`crate::membership::Membership`]).
    pub const MEMBERSHIP: u64 = 1 << 62;

    /// Ids carrying `tag` (one of the constants).
    pub fn tagged(tag: u64) -> ConnIds {
        ConnIds { tag, next: 0 }
    }

    /// A fresh id.
    pub fn fresh(&mut self) -> ConnId {
        self.next += 1;
        ConnId(self.tag | self.next)
    }

    /// Whether `conn` is one of these.
    pub fn owns(&self, conn: ConnId) -> bool {
        !conn.is_accepted() && conn.0 & Self::MEMBERSHIP == self.tag
    }
}

/// What happened to a connection, as its driver reports it.
#[derive(Debug)]
pub enum ConnEvent {
    /// A connection this process asked to dial is up and its first message
    /// is on its way; the certificate the peer presented.
    Opened(CertId),
    /// Another process opened a connection to this one: its first message
    /// and the certificate it presented.
    Accepted(AppMsg, CertId),
    /// A message arrived.
    Msg(AppMsg),
    /// The connection is gone (or a dial never got through), and why.
    Closed(String),
}

/// What a core asks its driver to do with connections.
#[derive(Debug)]
pub enum Transmit {
    /// Open a connection to `addr` and send `hello` (a whole frame) first.
    Dial {
        /// Its id from now on.
        conn: ConnId,
        /// Where.
        addr: SocketAddr,
        /// The first frame.
        hello: Bytes,
    },
    /// Send a frame outside the link's session (client datagrams): the
    /// driver drops it instead if the connection is already behind (see
    /// [`LOSSY_QUEUE`]); nothing sends it again.
    SendLossy {
        /// Which.
        conn: ConnId,
        /// The frame.
        frame: Bytes,
    },
    /// Send a frame (length prefix and body) on a connection.
    Send {
        /// Which.
        conn: ConnId,
        /// The frame.
        frame: Bytes,
    },
    /// Close a connection once what was sent on it has gone out.
    Close {
        /// Which.
        conn: ConnId,
        /// One of [`crate::net::close`].
        code: u32,
        /// Why, for the peer and the log.
        reason: String,
    },
}

impl Transmit {
    /// Refuses a connection another process opened before this one has
    /// registered with its manager: nobody can know it yet.
    pub fn refuse_unregistered(conn: ConnId) -> Transmit {
        Transmit::Close {
            conn,
            code: close::REFUSED,
            reason: "not registered yet".into(),
        }
    }
}

/// Encodes a message as a frame to transmit.
pub fn encode(msg: &AppMsg) -> Bytes {
    Bytes::from(frame::encode_sized(msg, msg.frame_size_hint()))
}

/// Timing and bounds of a link table.
#[derive(Clone, Copy, Debug)]
pub struct LinkConfig {
    /// How long after a connection drops, or a dial fails, the dialling
    /// side dials again.
    pub redial: Duration,
    /// How long a dial may take, handshake included, before it is given up
    /// and made again.
    pub dial_timeout: Duration,
    /// How long a received message may wait to be acknowledged.
    pub ack_delay: Duration,
    /// Received messages that are acknowledged at once, without waiting
    /// for [`LinkConfig::ack_delay`].
    pub ack_every: u64,
    /// Bytes kept for one peer: sent and not yet acknowledged, or waiting
    /// for a connection.
    pub max_backlog: usize,
}

impl Default for LinkConfig {
    fn default() -> Self {
        LinkConfig {
            redial: Duration::from_millis(250),
            dial_timeout: Duration::from_secs(2),
            ack_delay: Duration::from_millis(50),
            ack_every: 512,
            max_backlog: 256 << 20,
        }
    }
}

/// What the link table tells its core.
#[derive(Debug)]
pub enum LinkEvent {
    /// A connection to the peer is up (its handshake done).
    Up(AppId),
    /// The peer's connection dropped; the session lives on, and the
    /// dialling side dials again.
    Down(AppId),
    /// The peer's next message, in order, exactly once.
    Msg(AppId, AppMsg),
}

/// Why a message was not kept for its peer.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The peer was declared dead or left the cluster.
    #[error("app {0} is gone")]
    Gone(AppId),
    /// The peer's backlog is full.
    #[error("backlog for app {peer} is full ({held} of {max} bytes)")]
    Full {
        /// The peer.
        peer: AppId,
        /// Bytes held for it.
        held: usize,
        /// The bound.
        max: usize,
    },
}

/// Where a peer's connection stands.
#[derive(Debug)]
enum State {
    /// No connection. The dialling side dials at `retry`.
    Down { retry: Time },
    /// Dialled; waiting for the peer's [`AppMsg::LinkAccept`].
    Dialing { conn: ConnId, deadline: Time },
    /// Handshake done.
    Up { conn: ConnId },
}

/// One peer: its session and its connection.
#[derive(Debug)]
struct Peer {
    /// Where to dial it, once known.
    addr: Option<SocketAddr>,
    /// Its certificate and role, as the manager lists it; until then no
    /// connection to or from it is taken.
    known: Option<(CertId, Role)>,
    /// Whether this side dials (otherwise it waits to be dialled).
    dials: bool,
    state: State,
    tx: Outgoing,
    rx: Incoming,
    /// When the acknowledgement owed to it is due.
    ack_due: Option<Time>,
    /// Messages dropped because the backlog was full.
    dropped: u64,
}

impl Peer {
    fn new(now: Time) -> Peer {
        Peer {
            addr: None,
            known: None,
            dials: false,
            state: State::Down { retry: now },
            tx: Outgoing::default(),
            rx: Incoming::default(),
            ack_due: None,
            dropped: 0,
        }
    }

    fn conn(&self) -> Option<ConnId> {
        match self.state {
            State::Up { conn } | State::Dialing { conn, .. } => Some(conn),
            State::Down { .. } => None,
        }
    }
}

/// Deliberate defects that tests plant to show that the simulator's checks
/// catch them. Off by default; only the `faults` feature has them.
#[cfg(feature = "faults")]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkFaults {
    /// A new connection does not carry what the old one lost: messages not
    /// yet acknowledged are never sent again.
    pub no_resend: bool,
}

/// Counts the link table keeps, for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Connections that came up (handshakes completed).
    pub connected: u64,
    /// Connections that dropped while the session lived on.
    pub dropped: u64,
    /// Messages sent again on a new connection.
    pub resent: u64,
    /// Duplicates received and dropped.
    pub duplicates: u64,
    /// Messages dropped because a backlog was full.
    pub overflowed: u64,
    /// Connections closed because the peer's certificate was not the one
    /// listed for the app it claimed (or was dialled as).
    pub impostors: u64,
    /// Messages dropped because their sender's role may not send them.
    pub refused: u64,
    /// Messages outside the session ([`Links::send_lossy`]) not sent for
    /// want of a connection.
    pub lossy_dropped: u64,
}

/// A process's links to the other apps of its cluster.
#[derive(Debug)]
pub struct Links {
    me: AppId,
    digest: [u8; 32],
    cfg: LinkConfig,
    ids: ConnIds,
    peers: BTreeMap<AppId, Peer>,
    wire: Wire,
    /// Peers declared dead or gone: nothing more to or from them.
    gone: BTreeSet<AppId>,
    /// The apps of each role on the manager's last list.
    lists: BTreeMap<Role, BTreeSet<AppId>>,
    stats: LinkStats,
    #[cfg(feature = "faults")]
    faults: LinkFaults,
}

impl Links {
    /// The links of app `me`, whose definitions have this digest (a peer
    /// with other definitions is refused).
    pub fn new(me: AppId, digest: [u8; 32], cfg: LinkConfig) -> Links {
        Links {
            me,
            digest,
            cfg,
            ids: ConnIds::default(),
            peers: BTreeMap::new(),
            wire: Wire::default(),
            gone: BTreeSet::new(),
            lists: BTreeMap::new(),
            stats: LinkStats::default(),
            #[cfg(feature = "faults")]
            faults: LinkFaults::default(),
        }
    }

    /// Plants deliberate defects (tests of the simulator's checks).
    #[cfg(feature = "faults")]
    pub fn plant(&mut self, faults: LinkFaults) {
        self.faults = faults;
    }

    /// The settings.
    pub fn config(&self) -> &LinkConfig {
        &self.cfg
    }

    /// Counts so far.
    pub fn stats(&self) -> LinkStats {
        self.stats
    }

    /// A member of the cluster, of `role`, as the manager lists it. If
    /// `dial`, this side keeps a connection to it; otherwise it waits for
    /// the peer to dial. A connection from or to it must present the
    /// certificate listed.
    pub fn learn(&mut self, now: Time, member: &CellInfo, role: Role, dial: bool) {
        let peer = member.app;
        if self.gone.contains(&peer) || peer == self.me {
            return;
        }
        let p = self.peers.entry(peer).or_insert_with(|| Peer::new(now));
        let moved = p.addr.is_some_and(|a| a != member.addr)
            || p.known.is_some_and(|(cert, _)| cert != member.cert);
        p.addr = Some(member.addr);
        p.known = Some((member.cert, role));
        p.dials = dial;
        if moved {
            // Another process under that id: whatever connection there is
            // was not to it.
            if let Some(conn) = p.conn() {
                self.wire.close(conn, close::SHUTDOWN, "the peer moved");
            }
            p.state = State::Down { retry: now };
        }
    }

    /// The manager's newest list of the apps of `role`: learns each
    /// ([`Links::learn`]; this side dials those `dial` picks), and forgets
    /// the apps of that role on the previous list that are not on this one:
    /// they left.
    pub fn listed(
        &mut self,
        now: Time,
        role: Role,
        list: &[CellInfo],
        dial: impl Fn(AppId) -> bool,
    ) {
        for member in list {
            self.learn(now, member, role, dial(member.app));
        }
        let now_listed: BTreeSet<AppId> = list.iter().map(|c| c.app).collect();
        let before = std::mem::replace(self.lists.entry(role).or_default(), now_listed.clone());
        for app in before.difference(&now_listed) {
            let lost = self.forget(*app, "left the cluster");
            if !lost.is_empty() {
                tracing::info!(peer = %app, messages = lost.len(), "app left; messages it never acknowledged are dropped");
            }
        }
    }

    /// The role the manager lists a peer in, once listed.
    pub fn role(&self, peer: AppId) -> Option<Role> {
        self.peers.get(&peer)?.known.map(|(_, role)| role)
    }

    /// Whether a connection to the peer is up.
    pub fn is_up(&self, peer: AppId) -> bool {
        self.peers
            .get(&peer)
            .is_some_and(|p| matches!(p.state, State::Up { .. }))
    }

    /// Every peer with a session.
    pub fn peers(&self) -> impl Iterator<Item = AppId> + '_ {
        self.peers.keys().copied()
    }

    /// Bytes kept for a peer until it acknowledges them.
    pub fn backlog(&self, peer: AppId) -> usize {
        self.peers.get(&peer).map_or(0, |p| p.tx.held())
    }

    /// Whether every message sent to every peer has been acknowledged.
    pub fn all_acknowledged(&self) -> bool {
        self.peers.values().all(|p| p.tx.is_empty())
    }

    /// Sends a message to a peer: at once if its connection is up, else
    /// when it comes up. Kept until the peer acknowledges it.
    pub fn send(&mut self, now: Time, peer: AppId, msg: &AppMsg) -> Result<(), SendError> {
        if self.gone.contains(&peer) {
            return Err(SendError::Gone(peer));
        }
        let frame = encode(msg);
        let max = self.cfg.max_backlog;
        let p = self.peers.entry(peer).or_insert_with(|| Peer::new(now));
        match p.tx.push(frame, max) {
            Queued::Kept => {
                if let State::Up { conn } = p.state {
                    for frame in p.tx.unsent() {
                        self.wire.out.push(Transmit::Send { conn, frame });
                    }
                }
                Ok(())
            }
            Queued::Full { held, max } => {
                p.dropped += 1;
                self.stats.overflowed += 1;
                if p.dropped == 1 || p.dropped.is_power_of_two() {
                    tracing::error!(%peer, held, max, dropped = p.dropped, "link backlog full; message dropped");
                }
                if let State::Up { conn } = p.state {
                    // A peer this far behind is stuck or cut off; the
                    // redial tells which.
                    p.state = State::Down { retry: now };
                    let reason = format!("backlog full: {held} of {max} bytes unacknowledged");
                    self.wire.close(conn, close::SLOW, reason);
                }
                Err(SendError::Full { peer, held, max })
            }
        }
    }

    /// Sends a message outside the peer's session (see
    /// [`AppMsg::is_numbered`]): now if its connection is up, else never;
    /// the driver may still drop it if the connection is behind. Nothing is
    /// kept or sent again. Returns whether it went to the driver.
    pub fn send_lossy(&mut self, peer: AppId, msg: &AppMsg) -> bool {
        let up = self.peers.get(&peer).and_then(|p| match p.state {
            State::Up { conn } => Some(conn),
            _ => None,
        });
        match up {
            Some(conn) => {
                self.wire.out.push(Transmit::SendLossy {
                    conn,
                    frame: encode(msg),
                });
                true
            }
            None => {
                self.stats.lossy_dropped += 1;
                false
            }
        }
    }

    /// The peer was declared dead or has left: its session ends and its
    /// connection closes. Returns the messages it never acknowledged (it
    /// may or may not have taken them).
    pub fn forget(&mut self, peer: AppId, why: &str) -> Vec<Bytes> {
        self.gone.insert(peer);
        let Some(mut p) = self.peers.remove(&peer) else {
            return Vec::new();
        };
        if let Some(conn) = p.conn() {
            self.wire.close(conn, close::SHUTDOWN, why.to_string());
        }
        p.tx.take()
    }

    /// What happened to a connection of this table. Returns what the core
    /// needs to know, if anything.
    pub fn handle(&mut self, now: Time, conn: ConnId, ev: ConnEvent) -> Option<LinkEvent> {
        match ev {
            ConnEvent::Accepted(first, cert) => self.accepted(conn, first, cert),
            ConnEvent::Opened(cert) => self.opened(now, conn, cert),
            ConnEvent::Closed(reason) => self.closed(now, conn, &reason),
            ConnEvent::Msg(msg) => self.received(now, conn, msg),
        }
    }

    /// A dialled connection is up: the peer must be who the manager listed.
    fn opened(&mut self, now: Time, conn: ConnId, cert: CertId) -> Option<LinkEvent> {
        let app = *self.wire.conns.get(&conn)?;
        let p = self.peers.get_mut(&app)?;
        if p.known.is_some_and(|(listed, _)| listed == cert) {
            return None;
        }
        self.stats.impostors += 1;
        tracing::warn!(peer = %app, %conn, %cert, "the process dialled is not the app listed; closing");
        p.state = State::Down {
            retry: now.plus(self.cfg.redial),
        };
        self.wire.close(
            conn,
            close::REFUSED,
            format!("not the certificate of app {app}"),
        );
        None
    }

    fn accepted(&mut self, conn: ConnId, first: AppMsg, cert: CertId) -> Option<LinkEvent> {
        let resend = self.resends();
        let refuse = |wire: &mut Wire, code, reason: &str| {
            tracing::warn!(%conn, reason, "app link refused");
            wire.close(conn, code, reason);
            None
        };
        let AppMsg::LinkOpen {
            app,
            defs_digest,
            recv_next,
        } = first
        else {
            return refuse(&mut self.wire, close::PROTOCOL, "expected LinkOpen");
        };
        if defs_digest != self.digest {
            return refuse(
                &mut self.wire,
                close::REFUSED,
                "definitions digest mismatch",
            );
        }
        if self.gone.contains(&app) || app == self.me {
            return refuse(&mut self.wire, close::REFUSED, "not a member");
        }
        let Some(p) = self.peers.get_mut(&app).filter(|p| p.known.is_some()) else {
            // Not listed (yet): the dialler tries again after its redial,
            // by when the manager's list may have it.
            return refuse(&mut self.wire, close::REFUSED, "not a listed member");
        };
        if p.known.is_none_or(|(listed, _)| listed != cert) {
            self.stats.impostors += 1;
            tracing::warn!(claimed = %app, %conn, %cert, "a link claims an app id its certificate is not listed for");
            return refuse(
                &mut self.wire,
                close::REFUSED,
                "the certificate is not the claimed app's",
            );
        }
        if !p.tx.restart(recv_next) {
            return refuse(&mut self.wire, close::PROTOCOL, "session out of step");
        }
        if let Some(old) = p.conn() {
            // The peer dialled again before this side saw its old
            // connection drop (or both dialled): the new one wins.
            self.wire
                .close(old, close::SHUTDOWN, "replaced by a newer link");
        }
        p.rx.restart();
        let accept = AppMsg::LinkAccept {
            app: self.me,
            recv_next: p.rx.next(),
        };
        self.wire.out.push(Transmit::Send {
            conn,
            frame: encode(&accept),
        });
        p.state = State::Up { conn };
        p.ack_due = None;
        self.wire.conns.insert(conn, app);
        Self::came_up(&mut self.stats, &mut self.wire.out, conn, p, resend);
        Some(LinkEvent::Up(app))
    }

    /// Whether a new connection carries what the peer has not received
    /// (always, unless a test planted the fault).
    fn resends(&self) -> bool {
        #[cfg(feature = "faults")]
        if self.faults.no_resend {
            return false;
        }
        true
    }

    /// A connection's handshake is done: what the peer has not received
    /// goes again, then whatever waited.
    fn came_up(
        stats: &mut LinkStats,
        out: &mut Vec<Transmit>,
        conn: ConnId,
        p: &mut Peer,
        resend: bool,
    ) {
        stats.connected += 1;
        let before = out.len();
        for frame in p.tx.unsent() {
            if resend {
                out.push(Transmit::Send { conn, frame });
            }
        }
        stats.resent += (out.len() - before) as u64;
    }

    fn closed(&mut self, now: Time, conn: ConnId, reason: &str) -> Option<LinkEvent> {
        let app = self.wire.conns.remove(&conn)?;
        let p = self.peers.get_mut(&app)?;
        let was_up = matches!(p.state, State::Up { .. });
        p.state = State::Down {
            retry: now.plus(self.cfg.redial),
        };
        if was_up {
            self.stats.dropped += 1;
            tracing::info!(peer = %app, %conn, reason, "app link dropped; the session lives on");
            Some(LinkEvent::Down(app))
        } else {
            tracing::debug!(peer = %app, %conn, reason, "dial failed");
            None
        }
    }

    fn received(&mut self, now: Time, conn: ConnId, msg: AppMsg) -> Option<LinkEvent> {
        let resend = self.resends();
        let app = *self.wire.conns.get(&conn)?;
        let p = self.peers.get_mut(&app)?;
        match msg {
            AppMsg::LinkAck { next } => {
                p.tx.ack(next);
                None
            }
            AppMsg::LinkAccept {
                app: who,
                recv_next,
            } => {
                let State::Dialing { conn: dialled, .. } = p.state else {
                    return None;
                };
                if dialled != conn || who != app || !p.tx.restart(recv_next) {
                    tracing::warn!(peer = %app, %conn, "bad link handshake; closing");
                    p.state = State::Down {
                        retry: now.plus(self.cfg.redial),
                    };
                    self.wire.close(conn, close::PROTOCOL, "bad LinkAccept");
                    return None;
                }
                p.state = State::Up { conn };
                Self::came_up(&mut self.stats, &mut self.wire.out, conn, p, resend);
                Some(LinkEvent::Up(app))
            }
            AppMsg::LinkOpen { .. } => None,
            msg if !msg.is_numbered() => {
                if !matches!(p.state, State::Up { conn: c } if c == conn) {
                    return None;
                }
                if !p.known.is_some_and(|(_, role)| msg.may_come_from(role)) {
                    self.stats.refused += 1;
                    return None;
                }
                Some(LinkEvent::Msg(app, msg))
            }
            msg => {
                if !matches!(p.state, State::Up { conn: c } if c == conn) {
                    return None;
                }
                let role = p.known.map(|(_, role)| role);
                match p.rx.receive() {
                    Received::Next => {}
                    Received::Duplicate => {
                        self.stats.duplicates += 1;
                        return None;
                    }
                    Received::Gap { seq, expected } => {
                        tracing::error!(peer = %app, seq, expected, "app link skipped messages; closing");
                        p.state = State::Down {
                            retry: now.plus(self.cfg.redial),
                        };
                        let reason = format!("message {seq} came where {expected} was due");
                        self.wire.close(conn, close::PROTOCOL, reason);
                        return None;
                    }
                }
                if p.rx.unacknowledged() >= self.cfg.ack_every {
                    if let Some(next) = p.rx.ack() {
                        self.wire.out.push(Transmit::Send {
                            conn,
                            frame: encode(&AppMsg::LinkAck { next }),
                        });
                    }
                    p.ack_due = None;
                } else if p.ack_due.is_none() {
                    p.ack_due = Some(now.plus(self.cfg.ack_delay));
                }
                if !role.is_some_and(|r| msg.may_come_from(r)) {
                    // Numbered and acknowledged like any other, so the
                    // session stays in step; never delivered.
                    self.stats.refused += 1;
                    if self.stats.refused.is_power_of_two() {
                        tracing::warn!(peer = %app, ?role, msg = %msg.kind_name(), refused = self.stats.refused, "message its sender may not send; dropped");
                    }
                    return None;
                }
                Some(LinkEvent::Msg(app, msg))
            }
        }
    }

    /// When the table next needs [`Links::handle_timeout`].
    pub fn poll_timeout(&self) -> Option<Time> {
        self.peers
            .values()
            .flat_map(|p| {
                let state = match p.state {
                    State::Down { retry } if p.dials && p.addr.is_some() => Some(retry),
                    State::Dialing { deadline, .. } => Some(deadline),
                    _ => None,
                };
                state.into_iter().chain(p.ack_due)
            })
            .min()
    }

    /// Dials what is due, gives up dials that took too long, and sends the
    /// acknowledgements owed.
    pub fn handle_timeout(&mut self, now: Time) {
        for (&app, p) in self.peers.iter_mut() {
            if p.ack_due.is_some_and(|t| t <= now) {
                p.ack_due = None;
                if let (State::Up { conn }, Some(next)) = (&p.state, p.rx.ack()) {
                    self.wire.out.push(Transmit::Send {
                        conn: *conn,
                        frame: encode(&AppMsg::LinkAck { next }),
                    });
                }
            }
            match p.state {
                State::Dialing { conn, deadline } if deadline <= now => {
                    tracing::debug!(peer = %app, %conn, "link dial timed out");
                    self.wire.close(conn, close::SHUTDOWN, "dial timed out");
                    p.state = State::Down { retry: now };
                }
                _ => {}
            }
            let (State::Down { retry }, true, Some(addr)) = (&p.state, p.dials, p.addr) else {
                continue;
            };
            if *retry > now {
                continue;
            }
            let conn = self.ids.fresh();
            let hello = AppMsg::LinkOpen {
                app: self.me,
                defs_digest: self.digest,
                recv_next: p.rx.next(),
            };
            // Nothing more is taken from an older connection: the peer
            // numbers from what this hello says.
            p.rx.restart();
            self.wire.out.push(Transmit::Dial {
                conn,
                addr,
                hello: encode(&hello),
            });
            self.wire.conns.insert(conn, app);
            p.state = State::Dialing {
                conn,
                deadline: now.plus(self.cfg.dial_timeout),
            };
        }
    }

    /// Takes what the table asks of the driver, in order.
    pub fn drain(&mut self) -> std::vec::Drain<'_, Transmit> {
        self.wire.out.drain(..)
    }
}

/// The table's connections and what it asks of them.
#[derive(Debug, Default)]
struct Wire {
    /// Which peer each live connection belongs to.
    conns: BTreeMap<ConnId, AppId>,
    out: Vec<Transmit>,
}

impl Wire {
    /// Forgets a connection and asks the driver to close it.
    fn close(&mut self, conn: ConnId, code: u32, reason: impl Into<String>) {
        self.conns.remove(&conn);
        self.out.push(Transmit::Close {
            conn,
            code,
            reason: reason.into(),
        });
    }
}

#[cfg(test)]
mod tests;
