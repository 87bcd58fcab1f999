//! A whole world in one thread: the manager, cellapp and baseapp cores, a
//! memory database and simulated clients, driven by the in-memory network and
//! a virtual clock. Everything that happens is decided by the seed.

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use tessera::proto::app::{AppMsg, Registration, Role, SpaceInfo};
use tessera::proto::login::LoginReply;
use tessera::proto::PROTOCOL_MAJOR;
use tessera::storage::{MemStorage, Storage};
use tessera::{AppId, Definitions, EntityId, Time, MANAGER};
use tessera_baseapp::bases::{BaseConfig, Baseapp, ClientInput, ClientOut, Output as BaseOut};
use tessera_cellapp::behavior::Behaviors;
use tessera_cellapp::cell::{Cell, CellConfig, EntitySnapshot, Faults};
use tessera_cellapp::index::IndexKind;
use tessera_cellapp::load::{CostModel, LoadSource};
use tessera_manager::cluster::{Admission, Manager, Output as ManagerOut};

use super::client::SimClient;
use super::crowd::Crowd;
use super::net::{Conditions, Delivery, Net, Node, Payload};

mod checks;
mod crash;

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
    /// Deliberate defects planted in every cell (tests of the checks).
    pub faults: Faults,
    /// What ticks cost (the cells' load comes from this model).
    pub cost: CostModel,
    /// The manager's balancing policy.
    pub policy: &'static str,
    /// NPCs over all cellapps, shared out evenly (instead of `npcs` each).
    pub npcs_total: Option<usize>,
    /// How NPCs move, if not as the demo's wanderers.
    pub crowd: Option<Crowd>,
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
            faults: Faults::default(),
            cost: CostModel::default(),
            policy: "tessera",
            npcs_total: None,
            crowd: None,
        }
    }
}

const TICK_US: u64 = 100_000;

/// The simulated world.
pub struct SimWorld {
    /// Virtual time, microseconds.
    pub now: u64,
    rng: ChaCha8Rng,
    net: Net,
    defs: Arc<Definitions>,
    manager: Manager,
    cells: BTreeMap<AppId, Cell>,
    bases: BTreeMap<AppId, Baseapp>,
    public: BTreeMap<SocketAddr, AppId>,
    store: MemStorage,
    /// The clients.
    pub clients: BTreeMap<u64, SimClient>,
    home: BTreeMap<u64, AppId>,
    ticks: BTreeMap<Node, u64>,
    trace: u64,
    /// Deliveries made.
    pub delivered: u64,
    check_every_step: bool,
    dead: std::collections::BTreeSet<AppId>,
    /// The first invariant broken during a run, if any.
    pub broken: Option<String>,
    cfg: SimConfig,
    /// Cellapps told they are retired, and since when they are empty.
    leaving: BTreeMap<AppId, Option<u64>>,
    /// Ticks over budget of cellapps that have left.
    over_budget_gone: u64,
    /// Migrations of cellapps that have left.
    offloads_gone: u64,
    registered: u16,
    /// NPCs each first cellapp makes once every first cellapp is in.
    spawn: BTreeMap<AppId, usize>,
    /// What each app told the manager when it registered.
    regs: BTreeMap<AppId, Registration>,
    /// The manager is down (killed) until this time.
    manager_up_at: u64,
    /// Apps the manager refused back (they stopped).
    refused: Vec<AppId>,
}

/// How long an app's link to a dead manager takes to time out.
const LINK_TIMEOUT_US: u64 = 750_000;
/// How often an app without a manager dials it again.
const REDIAL_US: u64 = 250_000;
/// How long a restarted manager waits for the apps to come back.
pub const REJOIN_WINDOW_US: u64 = 3_000_000;

/// How long a client's connection to a dead baseapp takes to time out.
const CLIENT_TIMEOUT_US: u64 = 2_000_000;
/// How long a client waits before asking again to resume.
const RESUME_RETRY_US: u64 = 200_000;

/// How long a retired, empty cellapp lingers (forwarding) before it exits.
const LINGER_US: u64 = 2_000_000;

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Where a message addressed to an app id goes (app 0 is the manager).
fn node_of(app: AppId) -> Node {
    if app == MANAGER {
        Node::Manager
    } else {
        Node::App(app)
    }
}

fn mix(h: u64, v: u64) -> u64 {
    (h ^ v).wrapping_mul(0x0100_0000_01b3)
}

fn code(n: Node) -> u64 {
    match n {
        Node::Manager => 1,
        Node::Store => 2,
        Node::App(a) => 1_000 + u64::from(a.0),
        Node::Client(c) => 1_000_000 + c,
    }
}

impl SimWorld {
    /// Builds the world: registers one cellapp and the baseapps with the
    /// manager, spawns NPCs, and schedules every client's login.
    pub fn new(cfg: &SimConfig) -> SimWorld {
        let defs = Arc::new(tessera::demo::definitions());
        let space = SpaceInfo {
            bounds: [0.0, 0.0, cfg.size, cfg.size],
            tick_hz: 10,
        };
        let mut w = SimWorld {
            now: 0,
            rng: ChaCha8Rng::seed_from_u64(cfg.seed),
            net: Net::new(cfg.net),
            manager: Manager::new(&defs, space.clone()),
            defs,
            cells: BTreeMap::new(),
            bases: BTreeMap::new(),
            public: BTreeMap::new(),
            store: MemStorage::new(),
            clients: BTreeMap::new(),
            home: BTreeMap::new(),
            ticks: BTreeMap::new(),
            trace: 0xcbf2_9ce4_8422_2325,
            delivered: 0,
            check_every_step: cfg.check_every_step,
            dead: Default::default(),
            broken: None,
            cfg: cfg.clone(),
            leaving: BTreeMap::new(),
            over_budget_gone: 0,
            offloads_gone: 0,
            registered: 0,
            spawn: BTreeMap::new(),
            regs: BTreeMap::new(),
            manager_up_at: 0,
            refused: Vec::new(),
        };
        match tessera_manager::balance::policy(cfg.policy) {
            Some(p) => w.manager.set_policy(p),
            None => w.broken = Some(format!("no policy {:?}", cfg.policy)),
        }
        let n = cfg.cellapps.max(1);
        for i in 0..n {
            let npcs = match cfg.npcs_total {
                Some(total) => total / n + usize::from(i < total % n),
                None => cfg.npcs,
            };
            w.join(Role::Cellapp, npcs);
        }
        for _ in 0..cfg.baseapps.max(1) {
            w.join(Role::Baseapp, 0);
        }
        // Every cellapp makes its NPCs in its own cell of the full layout,
        // not of the first one it hears of.
        if let Some(layout) = w.manager.layout().cloned() {
            for (app, cell) in w.cells.iter_mut() {
                cell.handle(
                    Time(0),
                    MANAGER,
                    AppMsg::Layout {
                        layout: layout.clone(),
                        cells: Vec::new(),
                    },
                );
                if let Some(n) = w.spawn.remove(app) {
                    cell.spawn("Npc", n);
                }
            }
        }
        w.net.timer(0, Node::Manager);
        w.add_clients(cfg.clients);
        w
    }

    /// `n` more clients, each logging in within the next half second.
    pub fn add_clients(&mut self, n: usize) {
        let first = self.clients.keys().next_back().map_or(0, |c| c + 1);
        for c in first..first + n as u64 {
            let heading = self.rng.random_range(0.0..std::f32::consts::TAU);
            self.clients
                .insert(c, SimClient::new(c, heading, &self.defs));
            let req = self.clients[&c].login_request(&self.defs);
            let at = self.now + self.rng.random_range(0..500_000);
            self.net.send(
                &mut self.rng,
                at,
                Node::Client(c),
                Node::Manager,
                Payload::Login(req),
            );
        }
    }

    /// Registers one more app with the manager and starts its core; a
    /// cellapp creates `npcs` NPCs in its cell.
    fn join(&mut self, role: Role, npcs: usize) -> Option<AppId> {
        let i = self.registered;
        self.registered += 1;
        let public = (role == Role::Baseapp).then(|| addr(20_000 + i));
        let reg = Registration {
            role,
            protocol: PROTOCOL_MAJOR,
            defs_digest: self.defs.digest,
            internal_addr: addr(10_000 + i),
            public_addr: public,
            admin_addr: None,
        };
        // Refused, or told to wait while a restarted manager takes its
        // apps back: no app.
        let app = match self
            .manager
            .admit(Time(self.now), &AppMsg::Register(reg.clone()))
        {
            Admission::Member(app) => app,
            Admission::Wait | Admission::Refused(_) => return None,
        };
        self.regs.insert(app, reg);
        if let Some(p) = public {
            self.public.insert(p, app);
        }
        for out in self.manager.drain() {
            match out {
                ManagerOut::App(to, AppMsg::Registered { ids, space, .. }) if to == app => {
                    self.build(app, role, ids, space, npcs);
                }
                other => self.manager_output(other),
            }
        }
        let first = self.now + self.rng.random_range(0..TICK_US);
        self.net.timer(first, Node::App(app));
        Some(app)
    }

    /// A cellapp started by hand while the world runs (it brings no NPCs).
    pub fn add_cellapp(&mut self) -> Option<AppId> {
        self.join(Role::Cellapp, 0)
    }

    /// Asks the manager to retire a cellapp, as SIGTERM does. The cellapp
    /// leaves once its cell is gone and its reals have migrated.
    pub fn retire(&mut self, app: AppId) -> bool {
        let ok = self.manager.retire(Time(self.now), app).is_ok();
        for out in self.manager.drain() {
            self.manager_output(out);
        }
        ok
    }

    /// The manager core (its layout, reports and policy).
    pub fn manager(&self) -> &Manager {
        &self.manager
    }

    /// Switches the manager's balancing policy.
    pub fn set_policy(&mut self, policy: Box<dyn tessera_manager::balance::Policy>) {
        self.manager.set_policy(policy);
    }

    /// Every running cellapp's cell core.
    pub fn cells(&self) -> &BTreeMap<AppId, Cell> {
        &self.cells
    }

    /// Ticks over budget, over every cellapp that ever ran.
    pub fn ticks_over_budget(&self) -> u64 {
        self.over_budget_gone
            + self
                .cells
                .values()
                .map(|c| c.ticks_over_budget())
                .sum::<u64>()
    }

    fn build(
        &mut self,
        app: AppId,
        role: Role,
        ids: tessera::IdBlock,
        space: SpaceInfo,
        npcs: usize,
    ) {
        let cfg = self.cfg.clone();
        let cfg = &cfg;
        match role {
            Role::Cellapp => {
                let cell_cfg = CellConfig {
                    bounds: space.bounds,
                    tick_hz: space.tick_hz,
                    index: IndexKind::Grid,
                    budget: Default::default(),
                    backup_ticks: 50,
                    seed: cfg.seed,
                    ghost_distance: self.defs.max_aoi_radius() + 10.0,
                    app,
                    faults: cfg.faults,
                    load: LoadSource::Model(cfg.cost),
                };
                let mut behaviors = Behaviors::demo();
                if let Some(crowd) = &cfg.crowd {
                    behaviors.register("Npc", Box::new(crowd.clone()));
                }
                let mut cell = Cell::new(&self.defs, behaviors, cell_cfg, ids);
                if self.now > 0 {
                    cell.spawn_when_placed("Npc", npcs);
                } else {
                    self.spawn.insert(app, npcs);
                }
                self.cells.insert(app, cell);
            }
            Role::Baseapp => {
                let mut seed = [0u8; 32];
                self.rng.fill(&mut seed);
                let base = Baseapp::new(
                    app,
                    self.defs.clone(),
                    BaseConfig::default(),
                    space,
                    ids,
                    seed,
                );
                self.bases.insert(app, base);
            }
        }
    }

    /// Stops every NPC and every client's walking, and the balancer's line
    /// moves, so the world settles.
    pub fn freeze(&mut self) {
        self.manager
            .set_policy(Box::new(tessera_manager::balance::Static));
        for c in self.cells.values_mut() {
            c.set_frozen(true);
        }
        for c in self.clients.values_mut() {
            c.walking = false;
        }
    }

    /// Runs until virtual time reaches `until` (microseconds).
    pub fn run_until(&mut self, until: u64) {
        while self.net.next_at().is_some_and(|at| at <= until) {
            let Some(d) = self.net.pop() else { break };
            self.now = d.at;
            self.delivered += 1;
            self.trace = mix(mix(mix(self.trace, d.at), code(d.from)), code(d.to));
            // Only a cell's step can change which reals exist.
            let at_cell = matches!(d.to, Node::App(a) if self.cells.contains_key(&a));
            self.deliver(d);
            if at_cell && self.check_every_step && self.broken.is_none() {
                if let Err(e) = self.check_single_real() {
                    self.broken = Some(format!("at {} µs: {e}", self.now));
                }
            }
        }
        self.now = until;
    }

    /// A fingerprint of everything delivered so far and of the cells' state.
    pub fn fingerprint(&self) -> u64 {
        let mut h = self.trace;
        for cell in self.cells.values() {
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
        let layout = self.manager.layout()?;
        let line = layout.lines().get(index).cloned()?;
        let (a, b) = line.range;
        let at = self.manager.move_line(line.line, a + (b - a) * frac).ok();
        for out in self.manager.drain() {
            self.manager_output(out);
        }
        at
    }

    /// Reals moved between cells so far.
    pub fn offloads(&self) -> u64 {
        self.offloads_gone + self.cells.values().map(|c| c.stats().offloads).sum::<u64>()
    }

    /// Every real on every cell.
    pub fn reals(&self) -> Vec<EntitySnapshot> {
        self.cells.values().flat_map(|c| c.snapshot()).collect()
    }

    /// The ids of the baseapps still running.
    pub fn baseapps(&self) -> Vec<AppId> {
        self.bases.keys().copied().collect()
    }

    /// Sessions resumed by clients so far.
    pub fn resumed(&self) -> u32 {
        self.clients.values().map(|c| c.resumed).sum()
    }

    /// Every base's copy of its entity's cell half: position and
    /// properties, by entity.
    pub fn backed_up(&self) -> BTreeMap<EntityId, (tessera::proto::Pos, Vec<tessera::Value>)> {
        let mut all = BTreeMap::new();
        for base in self.bases.values() {
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
        self.bases.values().map(|b| b.restored()).sum()
    }

    /// The memory database.
    pub fn store(&self) -> &MemStorage {
        &self.store
    }

    /// The definitions the world runs.
    pub fn defs(&self) -> &Definitions {
        &self.defs
    }

    /// The ids of the cellapps still running.
    pub fn cellapps(&self) -> Vec<AppId> {
        self.cells.keys().copied().collect()
    }

    fn deliver(&mut self, d: Delivery) {
        let now = Time(d.at);
        if matches!(d.to, Node::App(a) if self.dead.contains(&a)) {
            return;
        }
        let from_app = match d.from {
            Node::App(a) => a,
            _ => MANAGER,
        };
        match d.to {
            Node::Manager if d.at < self.manager_up_at => {
                // Down: nothing is heard, and the timer waits for the restart.
                if let Payload::Timer = d.payload {
                    self.net.timer(self.manager_up_at, Node::Manager);
                }
            }
            Node::Manager => {
                match d.payload {
                    Payload::App(msg @ (AppMsg::Register(_) | AppMsg::Rejoin(_))) => {
                        match self.manager.admit(now, &msg) {
                            Admission::Member(_) => {}
                            Admission::Wait => {}
                            Admission::Refused(reason) => self.manager_output(ManagerOut::App(
                                from_app,
                                AppMsg::RegisterRefused { reason },
                            )),
                        }
                    }
                    Payload::App(msg) => self.manager.handle(now, from_app, msg),
                    Payload::Login(req) => {
                        if let Node::Client(c) = d.from {
                            self.manager.login(now, c, req);
                        }
                    }
                    Payload::Resume(req) => {
                        if let Node::Client(c) = d.from {
                            self.manager.resume(now, c, req);
                        }
                    }
                    Payload::Checked(login, result) => {
                        self.manager.account_checked(now, login, result)
                    }
                    Payload::Timer => {
                        self.manager.tick(now);
                        self.net.timer(d.at + 500_000, Node::Manager);
                    }
                    _ => {}
                }
                for out in self.manager.drain() {
                    self.manager_output(out);
                }
            }
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
                Payload::Check {
                    login,
                    name,
                    password,
                    create,
                } => {
                    let result = self.store.login(&name, &password, create);
                    self.net.send(
                        &mut self.rng,
                        d.at,
                        Node::Store,
                        Node::Manager,
                        Payload::Checked(login, result),
                    );
                }
                _ => {}
            },
            Node::App(app) => {
                let Some(d) = self.membership(app, d) else {
                    return;
                };
                if self.cells.contains_key(&app) {
                    self.deliver_cell(app, d, now, from_app)
                } else {
                    self.deliver_base(app, d, now, from_app)
                }
            }
            Node::Client(c) => self.deliver_client(c, d),
        }
    }

    fn manager_output(&mut self, out: ManagerOut) {
        let now = self.now;
        match out {
            ManagerOut::App(to, msg) => self.net.send(
                &mut self.rng,
                now,
                Node::Manager,
                Node::App(to),
                Payload::App(msg),
            ),
            ManagerOut::Login(id, reply) => self.net.send(
                &mut self.rng,
                now,
                Node::Manager,
                Node::Client(id),
                Payload::LoginReply(reply),
            ),
            ManagerOut::CheckAccount {
                login,
                name,
                password,
                create,
            } => self.net.send(
                &mut self.rng,
                now,
                Node::Manager,
                Node::Store,
                Payload::Check {
                    login,
                    name,
                    password,
                    create,
                },
            ),
            ManagerOut::Drop(_) => {}
        }
    }

    fn heartbeat_due(&mut self, node: Node) -> bool {
        let t = self.ticks.entry(node).or_insert(0);
        *t += 1;
        (*t).is_multiple_of(10)
    }

    fn deliver_cell(&mut self, app: AppId, d: Delivery, now: Time, from: AppId) {
        let beat = matches!(d.payload, Payload::Timer) && self.heartbeat_due(d.to);
        let Some(cell) = self.cells.get_mut(&app) else {
            return;
        };
        match d.payload {
            Payload::App(msg) => cell.handle(now, from, msg),
            Payload::Timer => {
                cell.tick(now);
                self.net.timer(d.at + TICK_US, d.to);
            }
            _ => {}
        }
        let mut outs = cell.drain();
        let leave = self.leave_when_empty(app, d.at);
        let Some(cell) = self.cells.get_mut(&app) else {
            return;
        };
        if leave {
            outs.push((MANAGER, AppMsg::Goodbye));
            self.over_budget_gone += cell.ticks_over_budget();
            self.offloads_gone += cell.stats().offloads;
            self.cells.remove(&app);
            self.dead.insert(app);
        } else if beat {
            let stats = cell.stats();
            outs.push((
                MANAGER,
                AppMsg::Heartbeat(tessera::proto::app::Load {
                    busy: cell.load().min(1.0),
                    entities: stats.reals as u32,
                    clients: stats.witnesses as u32,
                }),
            ));
        }
        for (to, msg) in outs {
            let to = node_of(to);
            self.net
                .send(&mut self.rng, d.at, d.to, to, Payload::App(msg));
        }
    }

    /// Whether a retired cellapp has been empty long enough to exit.
    fn leave_when_empty(&mut self, app: AppId, at: u64) -> bool {
        let Some(cell) = self.cells.get(&app) else {
            return false;
        };
        if !cell.is_retired() {
            return false;
        }
        let empty = cell.real_ids().next().is_none();
        let since = self.leaving.entry(app).or_insert(None);
        *since = if empty {
            Some(since.unwrap_or(at))
        } else {
            None
        };
        since.is_some_and(|t| at >= t + LINGER_US)
    }

    fn deliver_base(&mut self, app: AppId, d: Delivery, now: Time, from: AppId) {
        let beat = matches!(d.payload, Payload::Timer) && self.heartbeat_due(d.to);
        let Some(base) = self.bases.get_mut(&app) else {
            return;
        };
        let client = match d.from {
            Node::Client(c) => c,
            _ => 0,
        };
        match d.payload {
            Payload::App(msg) => {
                let cells = match &msg {
                    AppMsg::Cells(cells) => cells.iter().map(|c| c.app).collect(),
                    _ => Vec::new(),
                };
                base.handle(now, from, msg);
                // The driver dials every announced cellapp; here the link is instant.
                for c in cells {
                    base.link_up(c);
                }
            }
            Payload::Hello {
                protocol,
                digest,
                ticket,
            } => base.hello(client, protocol, digest, ticket, now),
            Payload::ClientMsg(m) => base.client_input(now, client, ClientInput::Msg(m)),
            Payload::ClientDatagram(m) => base.client_input(now, client, ClientInput::Datagram(m)),
            Payload::Stored(done) => base.store_done(now, done),
            Payload::Timer => {
                base.tick(now);
                self.net.timer(d.at + TICK_US, d.to);
            }
            _ => {}
        }
        let mut outs = base.drain();
        if beat {
            outs.push(BaseOut::App(MANAGER, AppMsg::Heartbeat(base.load())));
        }
        for out in outs {
            match out {
                BaseOut::App(to, msg) => {
                    let to = node_of(to);
                    self.net
                        .send(&mut self.rng, d.at, d.to, to, Payload::App(msg));
                }
                BaseOut::Client(c, ClientOut::Datagram(bytes)) => self.net.send_unreliable(
                    &mut self.rng,
                    d.at,
                    d.to,
                    Node::Client(c),
                    Payload::ToClient(ClientOut::Datagram(bytes)),
                ),
                BaseOut::Client(c, out) => self.net.send(
                    &mut self.rng,
                    d.at,
                    d.to,
                    Node::Client(c),
                    Payload::ToClient(out),
                ),
                BaseOut::Store(op) => {
                    self.net
                        .send(&mut self.rng, d.at, d.to, Node::Store, Payload::Store(op))
                }
            }
        }
    }

    fn deliver_client(&mut self, c: u64, d: Delivery) {
        let speed = self
            .defs
            .by_name("Avatar")
            .map_or(1.0, |t| t.max_speed * 0.7);
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
                            .send(&mut self.rng, d.at, d.to, Node::App(b), hello);
                        if !resuming {
                            // The client's tick runs from its first login on.
                            self.net.timer(d.at + TICK_US, d.to);
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
            Payload::ToClient(out) => client.receive(out),
            Payload::Timer => {
                if let (Some(m), Some(b)) = (client.step(&mut self.rng, speed), self.home.get(&c)) {
                    self.net.send_unreliable(
                        &mut self.rng,
                        d.at,
                        d.to,
                        Node::App(*b),
                        Payload::ClientDatagram(m),
                    );
                }
                if let (Some(m), Some(b)) = (client.ping(&self.defs), self.home.get(&c)) {
                    self.net.send(
                        &mut self.rng,
                        d.at,
                        d.to,
                        Node::App(*b),
                        Payload::ClientMsg(m),
                    );
                }
                self.net.timer(d.at + TICK_US, d.to);
            }
            _ => {}
        }
    }
}
