//! The in-memory network: a queue of deliveries ordered by virtual time.
//! Each (sender, receiver) pair delivers in the order things were sent, as
//! a QUIC stream does; the delay of each send is drawn from the seeded
//! random source, so different pairs interleave differently for different
//! seeds. Unreliable sends may be lost.
//!
//! App links are connections as the QUIC transport has them: dialled to an
//! address, carrying whole frames (encoded by the cores, and decoded on
//! arrival with the same bound as the driver), closed by either side, or
//! cut by a crash or a planted fault, which loses whatever was in flight
//! on them.

use bytes::Bytes;
use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, HashMap};
use tessera::link::{ConnEvent, ConnId};
use tessera::proto::app::CertId;
use tessera::proto::client::{ClientDatagram, ClientMsg};
use tessera::proto::login::{LoginReply, LoginRequest};
use tessera::proto::Ticket;
use tessera::storage::{Account, StorageError};
use tessera_baseapp::bases::{ClientOut, StoreDone, StoreOp};

/// A participant of the simulation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Node {
    /// The manager.
    Manager,
    /// A cellapp or baseapp process, by the order it was started in.
    Proc(u32),
    /// A client.
    Client(u64),
    /// The database.
    Store,
}

/// The certificate a node presents on its app links: one per process, as
/// each real process makes its own from the cluster CA.
pub fn cert_of(node: Node) -> CertId {
    let (kind, n) = match node {
        Node::Manager => (0, 0),
        Node::Proc(n) => (1, n as u64),
        Node::Client(n) => (2, n),
        Node::Store => (3, 0),
    };
    let mut id = [0u8; 32];
    id[0] = kind;
    id[1..9].copy_from_slice(&n.to_le_bytes());
    CertId(id)
}

/// What travels.
#[derive(Debug)]
pub enum Payload {
    /// Something happened to an app-link connection of the receiver.
    Conn(ConnId, ConnEvent, u64),
    /// A frame arriving on an app-link connection of the receiver, decoded
    /// when it arrives (as the transport's driver does), not when it is
    /// sent: what is in flight stays in the compact form a core made.
    Frame(ConnId, Bytes, u64),
    /// Client → manager.
    Login(LoginRequest),
    /// Client → manager: get back into a session.
    Resume(tessera::proto::login::ResumeRequest),
    /// The client's connection to its baseapp timed out (the baseapp died).
    Lost,
    /// Manager → client.
    LoginReply(LoginReply),
    /// Client → baseapp: the first message of a connection.
    Hello {
        /// Protocol version.
        protocol: u16,
        /// Definitions digest.
        digest: [u8; 32],
        /// Ticket.
        ticket: Ticket,
    },
    /// Client → baseapp: a stream message.
    ClientMsg(ClientMsg),
    /// Client → baseapp: a datagram.
    ClientDatagram(ClientDatagram),
    /// Baseapp → client.
    ToClient(ClientOut),
    /// Baseapp → database.
    Store(StoreOp),
    /// Database → baseapp.
    Stored(StoreDone),
    /// Manager → database: check an account.
    Check(tessera_manager::cluster::AccountCheck),
    /// Database → manager.
    Checked(u64, Result<Account, StorageError>),
    /// A node's timer fired.
    Timer,
}

/// One delivery.
#[derive(Debug)]
pub struct Delivery {
    /// Virtual time of delivery, microseconds.
    pub at: u64,
    /// Sender.
    pub from: Node,
    /// Receiver.
    pub to: Node,
    /// What.
    pub payload: Payload,
}

/// Delay and loss settings.
#[derive(Clone, Copy, Debug)]
pub struct Conditions {
    /// Shortest one-way delay, microseconds.
    pub min_delay_us: u64,
    /// Longest one-way delay, microseconds.
    pub max_delay_us: u64,
    /// Chance that an unreliable send is lost.
    pub loss: f64,
    /// How long a connection whose peer went silent (a crash, a cut) takes
    /// to be noticed: the transport's idle timeout.
    pub link_timeout_us: u64,
    /// How long a client's connection to a dead baseapp takes to time out.
    pub client_timeout_us: u64,
}

impl Default for Conditions {
    fn default() -> Self {
        Conditions {
            min_delay_us: 200,
            max_delay_us: 20_000,
            loss: 0.01,
            link_timeout_us: 750_000,
            client_timeout_us: 2_000_000,
        }
    }
}

/// One app-link connection: its two ends and whether it still carries
/// anything.
#[derive(Debug)]
struct Conn {
    ends: [(Node, ConnId); 2],
    /// Cut (a crash or a fault): nothing more arrives either way.
    cut: bool,
    /// Closed by this end: it hears nothing more; what it sent before
    /// still arrives.
    closed_by: Option<Node>,
}

/// The queue.
pub struct Net {
    /// Boxed: a delivery is large, and the tree moves its values around.
    queue: BTreeMap<(u64, u64), Box<Delivery>>,
    last: HashMap<(Node, Node), u64>,
    seq: u64,
    cond: Conditions,
    conns: BTreeMap<u64, Conn>,
    /// Each end's connection, by the id its node knows it by.
    ends: HashMap<(Node, ConnId), u64>,
    next_conn: u64,
    accepted: HashMap<Node, u64>,
    /// Unreliable sends lost so far.
    pub lost: u64,
}

impl Net {
    /// An empty network.
    pub fn new(cond: Conditions) -> Net {
        Net {
            queue: BTreeMap::new(),
            last: HashMap::new(),
            seq: 0,
            cond,
            conns: BTreeMap::new(),
            ends: HashMap::new(),
            next_conn: 0,
            accepted: HashMap::new(),
            lost: 0,
        }
    }

    /// The conditions.
    pub fn conditions(&self) -> &Conditions {
        &self.cond
    }

    fn push(&mut self, at: u64, from: Node, to: Node, payload: Payload) {
        self.seq += 1;
        self.queue.insert(
            (at, self.seq),
            Box::new(Delivery {
                at,
                from,
                to,
                payload,
            }),
        );
    }

    fn delay(&self, rng: &mut ChaCha8Rng) -> u64 {
        rng.random_range(
            self.cond.min_delay_us..=self.cond.max_delay_us.max(self.cond.min_delay_us),
        )
    }

    /// Sends reliably and in order on the (from, to) pair.
    pub fn send(&mut self, rng: &mut ChaCha8Rng, now: u64, from: Node, to: Node, payload: Payload) {
        let delay = self.delay(rng);
        let link = self.last.entry((from, to)).or_insert(0);
        let at = (now + delay).max(*link);
        *link = at;
        self.push(at, from, to, payload);
    }

    /// Sends unreliably: may be lost, may overtake earlier sends.
    pub fn send_unreliable(
        &mut self,
        rng: &mut ChaCha8Rng,
        now: u64,
        from: Node,
        to: Node,
        payload: Payload,
    ) {
        if rng.random_bool(self.cond.loss.clamp(0.0, 1.0)) {
            self.lost += 1;
            return;
        }
        let delay = self.delay(rng);
        self.push(now + delay, from, to, payload);
    }

    /// Delivers something at an exact time (a timeout noticed, a timer).
    pub fn at(&mut self, at: u64, from: Node, to: Node, payload: Payload) {
        self.push(at, from, to, payload);
    }

    /// Schedules a node's own timer.
    pub fn timer(&mut self, at: u64, node: Node) {
        self.push(at, node, node, Payload::Timer);
    }

    /// `from` dials `to` (a node that listens, or `None` if nothing does at
    /// that address): the connection opens after a round trip, or the dial
    /// fails after the transport's timeout.
    pub fn dial(
        &mut self,
        rng: &mut ChaCha8Rng,
        now: u64,
        from: (Node, ConnId),
        to: Option<Node>,
        hello: tessera::proto::app::AppMsg,
    ) {
        let Some(to) = to else {
            let at = now + self.cond.link_timeout_us;
            self.at(
                at,
                from.0,
                from.0,
                Payload::Conn(from.1, ConnEvent::Closed("unreachable".into()), 0),
            );
            return;
        };
        self.next_conn += 1;
        let key = self.next_conn;
        let n = self.accepted.entry(to).or_insert(0);
        *n += 1;
        let theirs = ConnId::accepted(*n);
        self.conns.insert(
            key,
            Conn {
                ends: [from, (to, theirs)],
                cut: false,
                closed_by: None,
            },
        );
        self.ends.insert(from, key);
        self.ends.insert((to, theirs), key);
        self.send(
            rng,
            now,
            from.0,
            to,
            Payload::Conn(theirs, ConnEvent::Accepted(hello, cert_of(from.0)), key),
        );
        let back = now + 2 * self.delay(rng);
        self.at(
            back,
            to,
            from.0,
            Payload::Conn(from.1, ConnEvent::Opened(cert_of(to)), key),
        );
    }

    /// The other end of `conn` at `node`, if the connection is live.
    fn peer(&self, node: Node, conn: ConnId) -> Option<(u64, (Node, ConnId))> {
        let key = *self.ends.get(&(node, conn))?;
        let c = self.conns.get(&key)?;
        if c.cut || c.closed_by.is_some() {
            return None;
        }
        let other = if c.ends[0] == (node, conn) {
            c.ends[1]
        } else {
            c.ends[0]
        };
        Some((key, other))
    }

    /// `node` sends a frame on its connection `conn`.
    pub fn send_on(
        &mut self,
        rng: &mut ChaCha8Rng,
        now: u64,
        node: Node,
        conn: ConnId,
        frame: Bytes,
    ) {
        if let Some((key, (to, theirs))) = self.peer(node, conn) {
            self.send(rng, now, node, to, Payload::Frame(theirs, frame, key));
        }
    }

    /// `node` closes its connection `conn`: what it sent before arrives,
    /// then the peer hears it closed.
    pub fn close(
        &mut self,
        rng: &mut ChaCha8Rng,
        now: u64,
        node: Node,
        conn: ConnId,
        reason: String,
    ) {
        let Some((key, (to, theirs))) = self.peer(node, conn) else {
            return;
        };
        if let Some(c) = self.conns.get_mut(&key) {
            c.closed_by = Some(node);
        }
        self.send(
            rng,
            now,
            node,
            to,
            Payload::Conn(theirs, ConnEvent::Closed(reason), key),
        );
    }

    /// `node` closes every connection it has (its process stopped).
    pub fn close_all(&mut self, rng: &mut ChaCha8Rng, now: u64, node: Node, reason: &str) {
        let mine: Vec<ConnId> = self
            .conns
            .values()
            .filter(|c| !c.cut && c.closed_by.is_none())
            .flat_map(|c| c.ends)
            .filter(|(n, _)| *n == node)
            .map(|(_, conn)| conn)
            .collect();
        for conn in mine {
            self.close(rng, now, node, conn, reason.to_string());
        }
    }

    /// Cuts every live connection `pick` chooses: what was in flight on them
    /// is lost, and each end still listening notices after the link
    /// timeout. Returns how many were cut.
    pub fn cut(
        &mut self,
        now: u64,
        pick: impl Fn(&[(Node, ConnId); 2]) -> bool,
        why: &str,
    ) -> usize {
        let timeout = self.cond.link_timeout_us;
        let mut notices = Vec::new();
        for (key, c) in self.conns.iter_mut() {
            if c.cut || !pick(&c.ends) {
                continue;
            }
            c.cut = true;
            for (node, conn) in c.ends {
                if c.closed_by != Some(node) {
                    notices.push((node, conn, *key));
                }
            }
        }
        let n = notices.len();
        for (node, conn, key) in notices {
            self.at(
                now + timeout,
                node,
                node,
                Payload::Conn(conn, ConnEvent::Closed(why.into()), key),
            );
        }
        n
    }

    /// The live connections between two nodes (either way round).
    pub fn conns_between(&self, a: Node, b: Node) -> usize {
        self.conns
            .values()
            .filter(|c| !c.cut && c.closed_by.is_none())
            .filter(|c| {
                let (x, y) = (c.ends[0].0, c.ends[1].0);
                (x == a && y == b) || (x == b && y == a)
            })
            .count()
    }

    /// Whether a delivery on connection `key` still gets through: not cut,
    /// and not to an end that closed it.
    pub fn carries(&self, key: u64, to: Node) -> bool {
        self.conns
            .get(&key)
            .is_some_and(|c| !c.cut && c.closed_by != Some(to))
    }

    /// Drops every delivery still under way that `lost` picks.
    pub fn purge(&mut self, lost: impl Fn(&Delivery) -> bool) {
        self.queue.retain(|_, d| !lost(d));
    }

    /// When the next delivery is due.
    pub fn next_at(&self) -> Option<u64> {
        self.queue.keys().next().map(|(at, _)| *at)
    }

    /// The next delivery, if any.
    pub fn pop(&mut self) -> Option<Delivery> {
        self.queue.pop_first().map(|(_, d)| *d)
    }
}
