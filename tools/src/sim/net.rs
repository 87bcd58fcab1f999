//! The in-memory network: a queue of deliveries ordered by virtual time.
//! Each (sender, receiver) link delivers in the order things were sent; the
//! delay of each send is drawn from the seeded random source, so different
//! links interleave differently for different seeds. Unreliable sends may be
//! lost.

use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, HashMap};
use tessera::proto::app::AppMsg;
use tessera::proto::client::{ClientDatagram, ClientMsg};
use tessera::proto::login::{LoginReply, LoginRequest};
use tessera::proto::Ticket;
use tessera::storage::{Account, StorageError};
use tessera::AppId;
use tessera_baseapp::bases::{ClientOut, StoreDone, StoreOp};

/// A participant of the simulation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Node {
    /// The manager.
    Manager,
    /// A cellapp or baseapp.
    App(AppId),
    /// A client.
    Client(u64),
    /// The database.
    Store,
}

/// What travels.
#[derive(Debug)]
pub enum Payload {
    /// Between apps and the manager.
    App(AppMsg),
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
    Check {
        /// The login.
        login: u64,
        /// Name.
        name: String,
        /// Password.
        password: String,
        /// Create if free.
        create: bool,
    },
    /// Database → manager.
    Checked(u64, Result<Account, StorageError>),
    /// A node's timer fired.
    Timer,
    /// An app without a manager link dials the manager again.
    Redial,
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
}

impl Default for Conditions {
    fn default() -> Self {
        Conditions {
            min_delay_us: 200,
            max_delay_us: 20_000,
            loss: 0.01,
        }
    }
}

/// The queue.
pub struct Net {
    /// Boxed: a delivery is large, and the tree moves its values around.
    queue: BTreeMap<(u64, u64), Box<Delivery>>,
    last: HashMap<(Node, Node), u64>,
    seq: u64,
    cond: Conditions,
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
            lost: 0,
        }
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

    /// Sends reliably and in order on the (from, to) link.
    pub fn send(&mut self, rng: &mut ChaCha8Rng, now: u64, from: Node, to: Node, payload: Payload) {
        let delay = rng.random_range(
            self.cond.min_delay_us..=self.cond.max_delay_us.max(self.cond.min_delay_us),
        );
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
        let delay = rng.random_range(
            self.cond.min_delay_us..=self.cond.max_delay_us.max(self.cond.min_delay_us),
        );
        self.push(now + delay, from, to, payload);
    }

    /// Schedules a node's own timer.
    pub fn timer(&mut self, at: u64, node: Node) {
        self.push(at, node, node, Payload::Timer);
    }

    /// Drops every delivery still under way that `lost` picks (the links
    /// of a process that died).
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
