//! A whole world in one thread: the manager, cellapp and baseapp cores —
//! the very [`Manager`], [`Cellapp`] and [`Baseapp`] their drivers pump —
//! a memory database and simulated clients, driven by the in-memory network
//! and a virtual clock. Every timer is the cores' own: each says when it
//! next needs waking and the world wakes it then. Everything that happens
//! is decided by the seed.

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use tessera::frame;
use tessera::link::{ConnEvent, Transmit, MAX_APP_FRAME};
use tessera::proto::app::{AppMsg, Registration, Role, SpaceInfo};
use tessera::proto::login::LoginReply;
use tessera::proto::PROTOCOL_MAJOR;
use tessera::storage::{MemStorage, Storage};
use tessera::{AppId, Definitions, EntityId, Time};
use tessera_baseapp::baseapp::{self, Baseapp, BaseappConfig};
use tessera_baseapp::bases::{Bases, ClientInput, ClientOut};
use tessera_cellapp::cell::{Cell, EntitySnapshot};
use tessera_cellapp::cellapp::{self, Cellapp, CellappConfig};
use tessera_cellapp::index::IndexKind;
use tessera_cellapp::load::{CostModel, LoadSource};
use tessera_manager::cluster::Cluster;

/// The address every simulated client logs in from.
const CLIENT_ADDR: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
use tessera_manager::manager::{self, Manager, ManagerConfig};

use super::client::SimClient;
use super::crowd::{Crowds, Way};
use super::net::{Conditions, Delivery, Net, Node, Payload};
use super::replay::Follow;

mod checks;
mod crash;

/// Deliberate defects planted in every core (tests of the checks).
#[cfg(feature = "faults")]
#[derive(Clone, Copy, Debug, Default)]
pub struct Faults {
    /// In every cell.
    pub cell: tessera_cellapp::cell::Faults,
    /// In every app's link table.
    pub links: tessera::link::LinkFaults,
}

/// What to simulate.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Drives everything.
    pub seed: u64,
    /// Cellapps (one cell each).
    pub cellapps: usize,
    /// Baseapps.
    pub baseapps: usize,
    /// NPCs on the cell.
    pub npcs: usize,
    /// Simulated clients.
    pub clients: usize,
    /// Space size in metres.
    pub size: f32,
    /// Network delays and loss.
    pub net: Conditions,
    /// Check after every delivery that no entity has two reals.
    pub check_every_step: bool,
    /// Deliberate defects planted in every core.
    #[cfg(feature = "faults")]
    pub faults: Faults,
    /// What ticks cost (the cells' load comes from this model).
    pub cost: CostModel,
    /// The manager's balancing policy: a built-in one or the game's.
    pub policy: &'static str,
    /// Tuning parameters for policies: (policy, key, value), applied to
    /// the policy of that name when it is made.
    pub policy_params: Vec<(String, String, f64)>,
    /// NPCs over all cellapps, shared out evenly (instead of `npcs` each).
    pub npcs_total: Option<usize>,
    /// How NPCs move, if not as the game's NPC behaviour has them.
    pub crowd: Option<Crowds>,
    /// How clients move, if not as the game's bot (or wandering) has them.
    pub client_crowd: Option<Crowds>,
    /// A replay's tracks: the NPC type follows them, and so do the clients
    /// that have one.
    pub follow: Option<Follow>,
    /// The manager's settings (its rejoin window applies to a restart; the
    /// first manager opens none).
    pub manager: ManagerConfig,
    /// The apps' manager-link timing.
    pub membership: tessera::membership::MembershipConfig,
    /// The apps' link timing and bounds.
    pub links: tessera::link::LinkConfig,
    /// The game the world runs (its definitions, behaviours and bots).
    pub game: tessera_game::Game,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: 1,
            cellapps: 1,
            baseapps: 1,
            npcs: 30,
            clients: 12,
            size: 200.0,
            net: Conditions::default(),
            check_every_step: true,
            #[cfg(feature = "faults")]
            faults: Faults::default(),
            cost: CostModel::default(),
            policy: "tessera",
            policy_params: Vec::new(),
            npcs_total: None,
            crowd: None,
            client_crowd: None,
            follow: None,
            // The simulated clients are all at one address
            // ([`CLIENT_ADDR`]); the throttle has its own tests.
            // The balancer runs at any load: the simulator's worlds are
            // small, their modelled loads a few percent, and what it
            // compares is where policies put lines.
            manager: ManagerConfig {
                logins: tessera_manager::cluster::throttle::LoginLimits::one_address(),
                balance_floor: 0.0,
                ..ManagerConfig::default()
            },
            membership: Default::default(),
            links: Default::default(),
            game: tessera_demo::game(),
        }
    }
}

/// How often a simulated client acts.
const CLIENT_TICK_US: u64 = 100_000;
/// How long a client waits before asking again to resume.
const RESUME_RETRY_US: u64 = 200_000;

/// One cellapp or baseapp process.
enum Proc {
    Cell(Box<Cellapp>),
    Base(Box<Baseapp>),
}

/// Counts of what went on, for tests.
#[derive(Clone, Debug, Default)]
pub struct SimStats {
    /// Heartbeats the manager received.
    pub heartbeats: u64,
    /// Every dial of the manager's address: which process, and when
    /// (microseconds).
    pub manager_dials: Vec<(u32, u64)>,
    /// App links cut by a planted fault.
    pub links_cut: u64,
}

/// The simulated world.
pub struct SimWorld {
    /// Virtual time, microseconds.
    pub now: u64,
    rng: ChaCha8Rng,
    net: Net,
    defs: Arc<Definitions>,
    /// The game the simulated world runs.
    game: tessera_game::Game,
    space: SpaceInfo,
    manager: Manager,
    procs: BTreeMap<u32, Proc>,
    /// Registered apps and their processes.
    apps: BTreeMap<AppId, u32>,
    /// Where each live process listens for apps.
    addrs: BTreeMap<SocketAddr, Node>,
    /// Each baseapp's client address.
    public: BTreeMap<SocketAddr, u32>,
    next_pid: u32,
    store: MemStorage,
    /// The clients.
    pub clients: BTreeMap<u64, SimClient>,
    home: BTreeMap<u64, u32>,
    /// When each node's timer is set for.
    wake: BTreeMap<Node, u64>,
    trace: u64,
    /// Deliveries made.
    pub delivered: u64,
    /// The first invariant broken during a run, if any.
    pub broken: Option<String>,
    cfg: SimConfig,
    /// Ticks over budget of cellapps that have left.
    over_budget_gone: u64,
    /// Migrations of cellapps that have left.
    offloads_gone: u64,
    /// The manager is down (killed) until this time.
    manager_up_at: u64,
    /// Apps the manager refused back (they stopped).
    refused: Vec<AppId>,
    /// Counts for tests.
    pub stats: SimStats,
    /// The samples of the manager's recording, if it records.
    pub recorded: Vec<tessera::recording::Sample>,
}

/// The manager's internal address.
fn manager_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7000))
}

fn addr(port: u32) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], (port % 65_536) as u16))
}

fn mix(h: u64, v: u64) -> u64 {
    (h ^ v).wrapping_mul(0x0100_0000_01b3)
}

fn code(n: Node) -> u64 {
    match n {
        Node::Manager => 1,
        Node::Store => 2,
        Node::Proc(p) => 1_000 + u64::from(p),
        Node::Client(c) => 1_000_000 + c,
    }
}

/// Decodes a frame a core made (a core that makes an undecodable one is
/// broken).
fn decode(frame: &[u8]) -> Result<AppMsg, String> {
    if frame.len() > MAX_APP_FRAME + frame::HEADER_LEN {
        return Err(format!("a {} byte frame", frame.len()));
    }
    frame::decode(&frame[frame::HEADER_LEN.min(frame.len())..]).map_err(|e| e.to_string())
}

impl SimWorld {
    /// Builds the world: the manager, the cellapps and baseapps (which
    /// register over the network), NPCs on every cell once the layout is
    /// whole, and every client's login within half a second after.
    pub fn new(cfg: &SimConfig) -> SimWorld {
        let game = cfg.game.clone();
        let defs = game.definitions().clone();
        let space = SpaceInfo {
            bounds: [0.0, 0.0, cfg.size, cfg.size],
            tick_hz: 10,
        };
        // The first manager of a world waits for nobody.
        let first = ManagerConfig {
            rejoin_window: std::time::Duration::ZERO,
            ..cfg.manager
        };
        let mut w = SimWorld {
            now: 0,
            rng: ChaCha8Rng::seed_from_u64(cfg.seed),
            net: Net::new(cfg.net),
            manager: Manager::new(Time(0), &defs, space.clone(), first),
            space,
            defs,
            game,
            procs: BTreeMap::new(),
            apps: BTreeMap::new(),
            addrs: BTreeMap::new(),
            public: BTreeMap::new(),
            next_pid: 0,
            store: MemStorage::new(),
            clients: BTreeMap::new(),
            home: BTreeMap::new(),
            wake: BTreeMap::new(),
            trace: 0xcbf2_9ce4_8422_2325,
            delivered: 0,
            broken: None,
            cfg: cfg.clone(),
            over_budget_gone: 0,
            offloads_gone: 0,
            manager_up_at: 0,
            refused: Vec::new(),
            stats: SimStats::default(),
            recorded: Vec::new(),
        };
        w.addrs.insert(manager_addr(), Node::Manager);
        match w.make_policy() {
            Ok(p) => w.manager.set_policy(p),
            Err(e) => w.broken = Some(e),
        }
        w.reschedule(Node::Manager);
        let n = cfg.cellapps.max(1);
        let mut cells = Vec::new();
        for _ in 0..n {
            cells.push(w.start(Role::Cellapp));
        }
        for _ in 0..cfg.baseapps.max(1) {
            w.start(Role::Baseapp);
        }
        // Every app registers, and every cellapp holds the whole layout.
        let whole = |w: &SimWorld| {
            let epoch = w.manager.cluster().layout().map(|l| l.epoch);
            w.apps.len() == n + cfg.baseapps.max(1)
                && w.procs.values().all(|p| match p {
                    Proc::Cell(c) => c.cell().and_then(|c| c.layout()).map(|l| l.epoch) == epoch,
                    Proc::Base(b) => b.app().is_some(),
                })
        };
        while !whole(&w) && w.broken.is_none() {
            if !w.step() {
                w.broken = Some("the world never came up".into());
            }
            if w.now > 10_000_000 {
                w.broken = Some("the world did not come up in 10 s".into());
            }
        }
        // Every cellapp makes its NPCs in its own cell of the whole layout.
        for (i, pid) in cells.into_iter().enumerate() {
            let npcs = match cfg.npcs_total {
                Some(total) => total / n + usize::from(i < total % n),
                None => cfg.npcs,
            };
            if let Some(Proc::Cell(c)) = w.procs.get_mut(&pid) {
                if let Some(cell) = c.cell_mut() {
                    for (ty, n) in w.game.spawns(npcs) {
                        cell.spawn(&ty, n);
                    }
                }
            }
        }
        w.add_clients(cfg.clients);
        w
    }

    /// A client playing the game's player type, with the game's bot.
    fn new_client(&self, c: u64, heading: f32) -> SimClient {
        let player = self.game.player_type();
        let bot = self.game.bot_behaviors().make(player, c);
        SimClient::new(c, heading, &self.defs, player, bot)
    }

    /// `n` more clients, each logging in within the next half second.
    pub fn add_clients(&mut self, n: usize) {
        for _ in 0..n {
            let at = self.now + self.rng.random_range(0..500_000);
            self.log_in_at(at);
        }
    }

    /// One more client, which sends its login at the world's time `at`
    /// (microseconds; now, if that has passed). Returns its number.
    pub fn log_in_at(&mut self, at: u64) -> u64 {
        let c = self.next_client();
        let heading = self.rng.random_range(0.0..std::f32::consts::TAU);
        let client = self.new_client(c, heading);
        let req = client.login_request(&self.defs);
        self.clients.insert(c, client);
        self.net.send(
            &mut self.rng,
            at.max(self.now),
            Node::Client(c),
            Node::Manager,
            Payload::Login(req),
        );
        c
    }

    /// Starts a cellapp or baseapp process, which dials the manager.
    fn start(&mut self, role: Role) -> u32 {
        let pid = self.next_pid;
        self.next_pid += 1;
        let internal = addr(10_000 + pid);
        let public = (role == Role::Baseapp).then(|| addr(30_000 + pid));
        let registration = Registration {
            role,
            protocol: PROTOCOL_MAJOR,
            defs_digest: self.defs.digest,
            internal_addr: internal,
            public_addr: public,
            admin_addr: None,
        };
        let now = Time(self.now);
        let proc = match role {
            Role::Cellapp => {
                let mut behaviors = self.game.cell_behaviors().clone();
                if let (Some(crowd), Some(npc)) = (&self.cfg.crowd, self.game.npc_type()) {
                    behaviors.register(npc, crowd.clone());
                }
                if let (Some(follow), Some(npc)) = (&self.cfg.follow, self.game.npc_type()) {
                    behaviors.register(npc, follow.clone());
                }
                let mut cfg =
                    CellappConfig::new(manager_addr(), registration, self.defs.clone(), behaviors);
                cfg.cell.index = IndexKind::Grid;
                cfg.cell.seed = self.cfg.seed;
                cfg.cell.load = LoadSource::Model(self.cfg.cost);
                cfg.membership = self.cfg.membership;
                cfg.links = self.cfg.links;
                Proc::Cell(Box::new(Cellapp::new(now, cfg)))
            }
            Role::Baseapp => {
                let mut seed = [0u8; 32];
                self.rng.fill(&mut seed);
                let mut cfg =
                    BaseappConfig::new(manager_addr(), registration, self.defs.clone(), seed);
                cfg.membership = self.cfg.membership;
                cfg.links = self.cfg.links;
                cfg.bases.player_type = self.game.player_type().to_string();
                cfg.bases.behaviors = self.game.base_behaviors().clone();
                Proc::Base(Box::new(Baseapp::new(now, cfg)))
            }
        };
        self.procs.insert(pid, proc);
        self.addrs.insert(internal, Node::Proc(pid));
        if let Some(p) = public {
            self.public.insert(p, pid);
        }
        self.pump(Node::Proc(pid));
        pid
    }

    /// A cellapp started by hand while the world runs (it brings no NPCs).
    /// Runs the world until it has registered.
    pub fn add_cellapp(&mut self) -> Option<AppId> {
        let pid = self.start(Role::Cellapp);
        let deadline = self.now + 5_000_000;
        loop {
            match self.procs.get(&pid) {
                Some(Proc::Cell(c)) if c.app().is_some() => return c.app(),
                Some(_) => {}
                None => return None,
            }
            if self.now > deadline || !self.step() {
                return None;
            }
        }
    }

    /// Asks the manager to retire a cellapp, as SIGTERM does. The cellapp
    /// leaves once its cell is gone and its reals have migrated.
    pub fn retire(&mut self, app: AppId) -> bool {
        let ok = self
            .manager
            .cluster_mut()
            .retire(Time(self.now), app)
            .is_ok();
        self.pump(Node::Manager);
        ok
    }

    /// The manager's cluster (its layout, reports and policy).
    pub fn manager(&self) -> &Cluster {
        self.manager.cluster()
    }

    /// Switches the manager's balancing policy.
    pub fn set_policy(&mut self, policy: Box<dyn tessera_manager::balance::Policy>) {
        self.manager.set_policy(policy);
    }

    /// Every running cellapp's cell, by app.
    pub fn cells(&self) -> BTreeMap<AppId, &Cell> {
        self.procs
            .values()
            .filter_map(|p| match p {
                Proc::Cell(c) => Some((c.app()?, c.cell()?)),
                Proc::Base(_) => None,
            })
            .collect()
    }

    /// Every running baseapp's bases, by app.
    pub fn bases(&self) -> BTreeMap<AppId, &Bases> {
        self.procs
            .values()
            .filter_map(|p| match p {
                Proc::Base(b) => Some((b.app()?, b.bases()?)),
                Proc::Cell(_) => None,
            })
            .collect()
    }

    fn cells_mut(&mut self) -> impl Iterator<Item = &mut Cell> {
        self.procs.values_mut().filter_map(|p| match p {
            Proc::Cell(c) => c.cell_mut(),
            Proc::Base(_) => None,
        })
    }

    /// Ticks over budget, over every cellapp that ever ran.
    pub fn ticks_over_budget(&self) -> u64 {
        self.over_budget_gone
            + self
                .cells()
                .values()
                .map(|c| c.ticks_over_budget())
                .sum::<u64>()
    }

    /// Stops every NPC and every client's walking, and the balancer's line
    /// moves, so the world settles.
    pub fn freeze(&mut self) {
        self.hold_lines();
        self.still();
    }

    /// Stops every NPC and every client's walking; the balancer goes on.
    pub fn still(&mut self) {
        for c in self.cells_mut() {
            c.set_frozen(true);
        }
        for c in self.clients.values_mut() {
            c.walking = false;
        }
    }

    /// Stops the balancer moving lines (the `static` policy).
    pub fn hold_lines(&mut self) {
        self.manager
            .set_policy(Box::new(tessera_manager::balance::Static));
    }

    /// Every real, read the way a harness outside the world reads it: one
    /// cellapp after another (in id order), the world running on for
    /// `gap_us` between two. Whatever migrates meanwhile may be read twice
    /// or not at all.
    pub fn reals_one_by_one(&mut self, gap_us: u64) -> Vec<EntitySnapshot> {
        let mut all = Vec::new();
        for app in self.cellapps() {
            if let Some(cell) = self.cells().get(&app) {
                all.extend(cell.snapshot());
            }
            let until = self.now + gap_us;
            self.run_until(until);
        }
        all
    }

    /// Makes one delivery. Returns false if nothing is left to deliver.
    fn step(&mut self) -> bool {
        let Some(d) = self.net.pop() else {
            return false;
        };
        self.now = self.now.max(d.at);
        self.delivered += 1;
        self.trace = mix(mix(mix(self.trace, d.at), code(d.from)), code(d.to));
        // Only a cell's step can change which reals exist.
        let at_cell =
            matches!(d.to, Node::Proc(p) if matches!(self.procs.get(&p), Some(Proc::Cell(_))));
        self.deliver(d);
        if at_cell && self.cfg.check_every_step && self.broken.is_none() {
            if let Err(e) = self.check_single_real() {
                self.broken = Some(format!("at {} µs: {e}", self.now));
            }
        }
        true
    }

    /// Runs until virtual time reaches `until` (microseconds).
    pub fn run_until(&mut self, until: u64) {
        while self.net.next_at().is_some_and(|at| at <= until) {
            self.step();
        }
        self.now = self.now.max(until);
    }

    /// A fingerprint of everything delivered so far and of the cells' state.
    pub fn fingerprint(&self) -> u64 {
        let mut h = self.trace;
        for cell in self.cells().values() {
            for e in cell.snapshot() {
                h = mix(h, e.id.0);
                h = mix(
                    h,
                    u64::from(e.pos.x.to_bits()) << 32 | u64::from(e.pos.z.to_bits()),
                );
            }
        }
        h
    }

    /// Moves a cut line of the manager's layout, as the admin API does, to
    /// `frac` of its range. Returns where it went.
    pub fn move_line(&mut self, index: usize, frac: f32) -> Option<f32> {
        let layout = self.manager.cluster().layout()?;
        let (a, b) = layout.lines().get(index)?.range;
        self.move_line_to(index, a + (b - a) * frac)
    }

    /// Moves the `index`th line of the layout to `pos` metres, as an
    /// operator would; returns where it went.
    pub fn move_line_to(&mut self, index: usize, pos: f32) -> Option<f32> {
        let layout = self.manager.cluster().layout()?;
        let line = layout.lines().get(index)?.line;
        let at = self.manager.cluster_mut().move_line(line, pos).ok();
        self.pump(Node::Manager);
        at
    }

    /// Makes an NPC of the game's NPC type at `pos`, on the cellapp whose
    /// cell holds it.
    pub fn spawn_npc_at(&mut self, pos: glam::Vec3) -> Option<EntityId> {
        let npc = self.game.npc_type()?.to_string();
        let layout = self.manager.cluster().layout()?;
        let app = layout.app_at(pos.x, pos.z);
        let pid = *self.apps.get(&app)?;
        let Some(Proc::Cell(c)) = self.procs.get_mut(&pid) else {
            return None;
        };
        let id = c.cell_mut()?.spawn_at(&npc, pos);
        self.pump(Node::Proc(pid));
        id
    }

    /// A fresh policy of the configured name, with its parameters set.
    pub(crate) fn make_policy(&self) -> Result<Box<dyn tessera_manager::balance::Policy>, String> {
        let name = self.cfg.policy;
        let mut p = tessera_manager::balance::with(self.game.policies())
            .make(name)
            .ok_or_else(|| format!("no policy {name:?}"))?;
        for (policy, key, value) in &self.cfg.policy_params {
            if policy == name {
                p.set(key, *value)?;
            }
        }
        Ok(p)
    }

    /// A replay's tracks, if the world replays one.
    pub fn follow(&self) -> Option<&Follow> {
        self.cfg.follow.as_ref()
    }

    /// The number the next client added gets.
    pub fn next_client(&self) -> u64 {
        self.clients.keys().next_back().map_or(0, |c| c + 1)
    }

    /// Stores client `c`'s account with its player at `pos`, so that it
    /// comes into the world there when it logs in.
    pub fn store_player(&mut self, c: u64, pos: tessera::proto::Pos) {
        let Some(def) = self.defs.by_name(self.game.player_type()) else {
            return;
        };
        let (name, password) = SimClient::credentials(c);
        let data = tessera_baseapp::persist::encode(def, pos, 0.0, &def.defaults());
        let store = &mut self.store;
        let stored = store.login(&name, &password, true).and_then(|account| {
            let entity =
                store.create_entity(&def.name, tessera_baseapp::persist::FORMAT_VERSION, &data)?;
            store.set_account_entity(account.id, entity)
        });
        if let Err(e) = stored {
            self.broken
                .get_or_insert_with(|| format!("cannot store client {c}'s player: {e}"));
        }
    }

    /// Reals moved between cells so far.
    pub fn offloads(&self) -> u64 {
        self.offloads_gone
            + self
                .cells()
                .values()
                .map(|c| c.stats().offloads)
                .sum::<u64>()
    }

    /// Every real on every cell.
    pub fn reals(&self) -> Vec<EntitySnapshot> {
        self.cells().values().flat_map(|c| c.snapshot()).collect()
    }

    /// The ids of the baseapps still running.
    pub fn baseapps(&self) -> Vec<AppId> {
        self.bases().keys().copied().collect()
    }

    /// The ids of the cellapps still running.
    pub fn cellapps(&self) -> Vec<AppId> {
        self.cells().keys().copied().collect()
    }

    /// Sessions resumed by clients so far.
    pub fn resumed(&self) -> u32 {
        self.clients.values().map(|c| c.resumed).sum()
    }

    /// Moves clients were told to undo, over every client.
    pub fn corrected(&self) -> u32 {
        self.clients.values().map(|c| c.corrected).sum()
    }

    /// Every base's copy of its entity's cell half: position and
    /// properties, by entity.
    pub fn backed_up(&self) -> BTreeMap<EntityId, (tessera::proto::Pos, Vec<tessera::Value>)> {
        let mut all = BTreeMap::new();
        for base in self.bases().values() {
            for c in self.clients.values() {
                if let Some(view) = c.view() {
                    if let Some((pos, props)) = base.backed_up(view.me) {
                        all.insert(view.me, (pos, props.to_vec()));
                    }
                }
            }
        }
        all
    }

    /// Entities restored from backups, over every baseapp.
    pub fn restored(&self) -> u64 {
        self.bases().values().map(|b| b.restored()).sum()
    }

    /// The memory database.
    pub fn store(&self) -> &MemStorage {
        &self.store
    }

    /// The definitions the world runs.
    pub fn defs(&self) -> &Definitions {
        &self.defs
    }

    /// Sets a node's timer for when its core asked to be woken, unless one
    /// is set for earlier already.
    fn reschedule(&mut self, node: Node) {
        let want = match node {
            Node::Manager if self.now < self.manager_up_at => Some(Time(self.manager_up_at)),
            Node::Manager => self.manager.poll_timeout(),
            Node::Proc(p) => match self.procs.get(&p) {
                Some(Proc::Cell(c)) => c.poll_timeout(),
                Some(Proc::Base(b)) => b.poll_timeout(),
                None => None,
            },
            _ => None,
        };
        let Some(at) = want.map(|t| t.0.max(self.now)) else {
            return;
        };
        if self.wake.get(&node).is_some_and(|set| *set <= at) {
            return;
        }
        self.wake.insert(node, at);
        self.net.timer(at, node);
    }

    fn deliver(&mut self, mut d: Delivery) {
        let now = Time(d.at);
        if let Payload::Frame(conn, frame, key) = d.payload {
            match decode(&frame) {
                Ok(msg) => d.payload = Payload::Conn(conn, ConnEvent::Msg(msg), key),
                Err(e) => {
                    self.broken = Some(format!("{:?} sent {e}", d.from));
                    return;
                }
            }
        }
        match d.to {
            Node::Manager => self.deliver_manager(d, now),
            Node::Store => match d.payload {
                Payload::Store(op) => {
                    let done = tessera_baseapp::store::execute(&mut self.store, op);
                    self.net.send(
                        &mut self.rng,
                        d.at,
                        Node::Store,
                        d.from,
                        Payload::Stored(done),
                    );
                }
                Payload::Check(c) => {
                    let result = self.store.login(&c.name, &c.password, c.create);
                    self.net.send(
                        &mut self.rng,
                        d.at,
                        Node::Store,
                        Node::Manager,
                        Payload::Checked(c.login, result),
                    );
                }
                _ => {}
            },
            Node::Proc(pid) => self.deliver_proc(pid, d, now),
            Node::Client(c) => self.deliver_client(c, d),
        }
    }

    /// Whether a connection event still gets through to `to`.
    fn carried(&self, ev: &ConnEvent, key: u64, to: Node) -> bool {
        matches!(ev, ConnEvent::Closed(_)) || key == 0 || self.net.carries(key, to)
    }

    fn deliver_manager(&mut self, d: Delivery, now: Time) {
        if d.at < self.manager_up_at {
            // Down: nothing is heard.
            if let Payload::Timer = d.payload {
                self.wake.remove(&Node::Manager);
                self.reschedule(Node::Manager);
            }
            return;
        }
        match d.payload {
            Payload::Conn(conn, ev, key) => {
                if !self.carried(&ev, key, Node::Manager) {
                    return;
                }
                if let ConnEvent::Msg(AppMsg::Heartbeat(_)) = &ev {
                    self.stats.heartbeats += 1;
                }
                self.manager.handle(now, conn, ev);
            }
            Payload::Login(req) => {
                if let Node::Client(c) = d.from {
                    self.manager.login(now, c, CLIENT_ADDR, req);
                }
            }
            Payload::Resume(req) => {
                if let Node::Client(c) = d.from {
                    self.manager.resume(now, c, CLIENT_ADDR, req);
                }
            }
            Payload::Checked(login, result) => self.manager.account_checked(now, login, result),
            Payload::Timer => {
                if self.wake.get(&Node::Manager) != Some(&d.at) {
                    return;
                }
                self.wake.remove(&Node::Manager);
                self.manager.handle_timeout(now);
            }
            _ => {}
        }
        self.pump(Node::Manager);
    }

    fn deliver_proc(&mut self, pid: u32, d: Delivery, now: Time) {
        let node = Node::Proc(pid);
        if let Payload::Timer = d.payload {
            if self.wake.get(&node) != Some(&d.at) {
                return;
            }
            self.wake.remove(&node);
        }
        if let Payload::Conn(_, ev, key) = &d.payload {
            if !self.carried(ev, *key, node) {
                return;
            }
        }
        let client = match d.from {
            Node::Client(c) => c,
            _ => 0,
        };
        match self.procs.get_mut(&pid) {
            Some(Proc::Cell(c)) => match d.payload {
                Payload::Conn(conn, ev, _) => c.handle(now, conn, ev),
                Payload::Timer => c.handle_timeout(now),
                _ => {}
            },
            Some(Proc::Base(b)) => match d.payload {
                Payload::Conn(conn, ev, _) => b.handle(now, conn, ev),
                Payload::Timer => b.handle_timeout(now),
                Payload::Hello {
                    protocol,
                    digest,
                    ticket,
                } => b.hello(now, client, protocol, digest, ticket),
                Payload::ClientMsg(m) => b.client_input(now, client, ClientInput::Msg(m)),
                Payload::ClientDatagram(m) => b.client_input(now, client, ClientInput::Datagram(m)),
                Payload::Stored(done) => b.store_done(now, done),
                _ => {}
            },
            None => return,
        }
        self.pump(node);
    }

    /// Carries out what a core left, and sets its timer.
    fn pump(&mut self, node: Node) {
        let now = self.now;
        match node {
            Node::Manager => {
                for out in self.manager.drain() {
                    match out {
                        manager::Output::Transmit(t) => self.transmit(node, t),
                        manager::Output::Login(id, reply) => self.net.send(
                            &mut self.rng,
                            now,
                            Node::Manager,
                            Node::Client(id),
                            Payload::LoginReply(reply),
                        ),
                        manager::Output::CheckAccount(c) => self.net.send(
                            &mut self.rng,
                            now,
                            Node::Manager,
                            Node::Store,
                            Payload::Check(c),
                        ),
                        manager::Output::Sample(s) => self.recorded.push(s),
                    }
                }
            }
            Node::Proc(pid) => {
                let outs = match self.procs.get_mut(&pid) {
                    Some(Proc::Cell(c)) => c.drain().map(ProcOut::Cell).collect::<Vec<_>>(),
                    Some(Proc::Base(b)) => b.drain().map(ProcOut::Base).collect(),
                    None => Vec::new(),
                };
                for out in outs {
                    match out {
                        ProcOut::Cell(cellapp::Output::Transmit(t))
                        | ProcOut::Base(baseapp::Output::Transmit(t)) => self.transmit(node, t),
                        ProcOut::Cell(cellapp::Output::Joined(app))
                        | ProcOut::Base(baseapp::Output::Joined(app)) => self.joined(pid, app),
                        ProcOut::Cell(cellapp::Output::Ended(why)) => {
                            let refused = matches!(why, cellapp::Ended::Refused(_));
                            self.ended(pid, refused);
                        }
                        ProcOut::Base(baseapp::Output::Ended(why)) => {
                            let refused = matches!(why, baseapp::Ended::Refused(_));
                            self.ended(pid, refused);
                        }
                        ProcOut::Base(baseapp::Output::Client(c, ClientOut::Datagram(bytes))) => {
                            self.net.send_unreliable(
                                &mut self.rng,
                                now,
                                node,
                                Node::Client(c),
                                Payload::ToClient(ClientOut::Datagram(bytes)),
                            )
                        }
                        ProcOut::Base(baseapp::Output::Client(c, out)) => self.net.send(
                            &mut self.rng,
                            now,
                            node,
                            Node::Client(c),
                            Payload::ToClient(out),
                        ),
                        ProcOut::Base(baseapp::Output::Store(op)) => {
                            self.net
                                .send(&mut self.rng, now, node, Node::Store, Payload::Store(op))
                        }
                    }
                }
            }
            _ => return,
        }
        self.reschedule(node);
    }

    /// An app registered: planted link faults go into its fresh table.
    fn joined(&mut self, pid: u32, app: AppId) {
        self.apps.insert(app, pid);
        #[cfg(feature = "faults")]
        {
            let faults = self.cfg.faults;
            match self.procs.get_mut(&pid) {
                Some(Proc::Cell(c)) => {
                    if let Some(cell) = c.cell_mut() {
                        cell.plant(faults.cell);
                    }
                    c.plant(faults.links);
                }
                Some(Proc::Base(b)) => b.plant(faults.links),
                None => {}
            }
        }
    }

    /// A process stopped on its own (it left, or the manager refused it):
    /// its connections close.
    fn ended(&mut self, pid: u32, refused: bool) {
        let app = self.apps.iter().find(|(_, p)| **p == pid).map(|(a, _)| *a);
        if let (true, Some(app)) = (refused, app) {
            self.refused.push(app);
        }
        self.remove(pid);
        // Its transport closes every connection once what it sent is out.
        let now = self.now;
        self.net
            .close_all(&mut self.rng, now, Node::Proc(pid), "the app stopped");
    }

    /// Forgets a process that is gone (stopped or killed).
    fn remove(&mut self, pid: u32) {
        if let Some(Proc::Cell(c)) = self.procs.get(&pid) {
            if let Some(cell) = c.cell() {
                self.over_budget_gone += cell.ticks_over_budget();
                self.offloads_gone += cell.stats().offloads;
            }
        }
        self.procs.remove(&pid);
        self.addrs.retain(|_, n| *n != Node::Proc(pid));
        self.public.retain(|_, p| *p != pid);
        self.wake.remove(&Node::Proc(pid));
    }

    /// Does what a core asked of its connections.
    fn transmit(&mut self, node: Node, t: Transmit) {
        let now = self.now;
        match t {
            Transmit::Dial { conn, addr, hello } => {
                if let (Node::Proc(pid), true) = (node, addr == manager_addr()) {
                    self.stats.manager_dials.push((pid, now));
                }
                let to = self
                    .addrs
                    .get(&addr)
                    .copied()
                    .filter(|n| *n != Node::Manager || now >= self.manager_up_at);
                match decode(&hello) {
                    Ok(hello) => self.net.dial(&mut self.rng, now, (node, conn), to, hello),
                    Err(e) => self.broken = Some(format!("{node:?} dialled with {e}")),
                }
            }
            Transmit::Send { conn, frame } | Transmit::SendLossy { conn, frame } => {
                self.net.send_on(&mut self.rng, now, node, conn, frame)
            }
            Transmit::Close { conn, reason, .. } => {
                self.net.close(&mut self.rng, now, node, conn, reason)
            }
        }
    }

    fn deliver_client(&mut self, c: u64, d: Delivery) {
        let max_speed = self
            .defs
            .by_name(self.game.player_type())
            .map_or(1.0, |t| t.max_speed);
        let speed = max_speed * 0.7;
        let Some(client) = self.clients.get_mut(&c) else {
            return;
        };
        match d.payload {
            Payload::Lost => {
                if let Some(req) = client.lost(&self.defs) {
                    self.net.send(
                        &mut self.rng,
                        d.at,
                        d.to,
                        Node::Manager,
                        Payload::Resume(req),
                    );
                }
            }
            Payload::LoginReply(reply) => {
                let baseapp = match &reply {
                    LoginReply::Granted { baseapp, .. } => self.public.get(baseapp).copied(),
                    LoginReply::Refused { .. } => None,
                };
                let resuming = client.resuming();
                match (client.login_reply(reply), baseapp) {
                    (Some(ticket), Some(b)) => {
                        self.home.insert(c, b);
                        let hello = Payload::Hello {
                            protocol: PROTOCOL_MAJOR,
                            digest: self.defs.digest,
                            ticket,
                        };
                        self.net
                            .send(&mut self.rng, d.at, d.to, Node::Proc(b), hello);
                        if !resuming {
                            // The client's tick runs from its first login on.
                            self.net.timer(d.at + CLIENT_TICK_US, d.to);
                        }
                    }
                    // Not restored yet: ask again shortly.
                    _ if client.resuming() => {
                        if let Some(req) = client.lost(&self.defs) {
                            let at = d.at + RESUME_RETRY_US;
                            self.net.send(
                                &mut self.rng,
                                at,
                                d.to,
                                Node::Manager,
                                Payload::Resume(req),
                            );
                        }
                    }
                    _ => {}
                }
            }
            Payload::ToClient(out) => client.receive(out, &self.defs),
            Payload::Timer => {
                let (bot, calls) = client.play(&self.defs);
                let t = d.at as f32 / 1e6;
                let track = self
                    .cfg
                    .follow
                    .as_ref()
                    .and_then(|f| f.client_goal(c, d.at));
                let (goal, speed) = match (&self.cfg.client_crowd, client.view()) {
                    // Following a recorded track: as fast as the server
                    // allows, to keep up with it.
                    _ if track.is_some() => (track, max_speed * 0.95),
                    (Some(crowds), Some(v)) => match crowds.way(t, c, (v.my_pos[0], v.my_pos[2])) {
                        Way::To(x, z, s) => (Some([x, z]), s.unwrap_or(speed)),
                        Way::Wander(s) => (bot, s.unwrap_or(speed)),
                    },
                    _ => (bot, speed),
                };
                if let (Some(m), Some(b)) =
                    (client.step(&mut self.rng, speed, goal), self.home.get(&c))
                {
                    self.net.send_unreliable(
                        &mut self.rng,
                        d.at,
                        d.to,
                        Node::Proc(*b),
                        Payload::ClientDatagram(m),
                    );
                }
                let ping = client.ping();
                if let Some(b) = self.home.get(&c) {
                    for m in ping.into_iter().chain(calls) {
                        self.net.send(
                            &mut self.rng,
                            d.at,
                            d.to,
                            Node::Proc(*b),
                            Payload::ClientMsg(m),
                        );
                    }
                }
                self.net.timer(d.at + CLIENT_TICK_US, d.to);
            }
            _ => {}
        }
    }
}

/// What a process left, whichever kind it is.
enum ProcOut {
    Cell(cellapp::Output),
    Base(baseapp::Output),
}
