//! The baseapp core: a sans-IO state machine that owns the bases (the
//! location-free, persistent half of entities), the proxies' protocol state
//! (one per connected client), login tickets, and when entities are saved.
//!
//! It checks everything a client sends before anything else sees it: the
//! hello (protocol, definitions digest, ticket), each method call (exists,
//! exposed, arguments of the declared types) and each move (finite numbers).
//! A client that breaks a rule costs only its own connection, with a reason.
//!
//! Storage is I/O, so the core asks for it with [`StoreOp`] outputs and hears
//! back through [`Bases::store_done`].

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tessera::defs::{ArgsError, Definitions, MethodDef, Side, TypeDef};
use tessera::frame::encode_body;
use tessera::layout::Layout;
use tessera::proto::app::{AppMsg, CellInfo, CellState, Delivery, EntityMsg, Load, SpaceInfo};
use tessera::proto::client::{ClientDatagram, ClientMsg, ServerMsg};
use tessera::proto::{finite, Pos, Ticket, TokenHash, PROTOCOL_MAJOR};
use tessera::storage::StoredEntity;
use tessera::{AppId, EntityId, IdBlock, IdPool, Time, Value, MANAGER};

use crate::behavior::{
    self, BaseAsk, BaseBehavior, BaseBehaviors, BaseCalled, BaseCaller, BaseCtx,
};
use crate::persist;
use base::{Base, Client, Half};
pub use rules::{Closing, Refusal, Violation};
use tessera::channel::Frames;
use tessera::timers::{TimerId, Timers};

/// A connection's id on this baseapp.
pub type ClientId = u64;

/// Settings of a baseapp.
#[derive(Clone, Debug)]
pub struct BaseConfig {
    /// How often dirty persistent entities are written.
    pub save_period: Duration,
    /// How long a login ticket stays valid.
    pub ticket_ttl: Duration,
    /// The entity type players get (the game chooses it).
    pub player_type: String,
    /// The game's base behaviours.
    pub behaviors: BaseBehaviors,
    /// Where new players appear: min x, min z, max x, max z (the whole space if `None`).
    pub spawn_area: Option<[f32; 4]>,
    /// How often each base is copied to another baseapp (spread over the
    /// period, not all at once).
    pub backup_period: Duration,
    /// How long an entity whose client's connection was lost (or whose
    /// baseapp died) waits for the client to resume before it logs out.
    pub resume_grace: Duration,
    /// How often the bases' periodic work runs: tickets expire, a share of
    /// the bases is copied, stuck streams and waiting entities are looked
    /// at, and saves fall due.
    pub tick: Duration,
    /// How long a client's stream may wait for a missing frame before it
    /// is started over. Links between live apps lose nothing, so a frame
    /// missing this long was lost with a cellapp that died.
    pub stream_patience: Duration,
}

impl Default for BaseConfig {
    fn default() -> Self {
        BaseConfig {
            save_period: Duration::from_secs(10),
            ticket_ttl: Duration::from_secs(30),
            player_type: String::new(),
            behaviors: BaseBehaviors::default(),
            spawn_area: None,
            backup_period: Duration::from_secs(2),
            resume_grace: Duration::from_secs(30),
            stream_patience: Duration::from_secs(3),
            tick: Duration::from_millis(100),
        }
    }
}

/// Where new players appear: the configured area within the space's
/// bounds, or the whole space if none is configured or it lies outside.
fn spawn_area(area: Option<[f32; 4]>, bounds: [f32; 4]) -> [f32; 4] {
    let [bx0, bz0, bx1, bz1] = bounds;
    match area {
        Some([x0, z0, x1, z1]) => {
            let clipped = [x0.max(bx0), z0.max(bz0), x1.min(bx1), z1.min(bz1)];
            if clipped[0] <= clipped[2] && clipped[1] <= clipped[3] {
                clipped
            } else {
                bounds
            }
        }
        None => bounds,
    }
}

/// What a client sent, decoded by the driver.
#[derive(Debug)]
pub enum ClientInput {
    /// A stream message.
    Msg(ClientMsg),
    /// A datagram.
    Datagram(ClientDatagram),
    /// The connection is gone.
    Gone(String),
}

/// What to do with a client connection.
#[derive(Debug, PartialEq)]
pub enum ClientOut {
    /// Send an encoded `ServerMsg` as a frame.
    Reliable(Vec<u8>),
    /// Send an encoded `ServerDatagram`.
    Datagram(Vec<u8>),
    /// Close the connection: why (which gives the close code, and the
    /// reason the client reads and the driver logs).
    Close(Closing),
}

/// A storage request.
#[derive(Debug)]
pub enum StoreOp {
    /// Load (or create) the player entity of an account.
    LoadPlayer {
        /// For which client.
        client: ClientId,
        /// The account.
        account: i64,
        /// Type of a new player entity.
        type_name: String,
        /// Encoded state of a new player entity.
        fresh: Vec<u8>,
    },
    /// Write entities in one transaction.
    Save(Vec<StoredEntity>),
    /// Load (or make) a named entity.
    LoadNamed {
        /// Its type.
        type_name: String,
        /// Its unique name.
        name: String,
        /// Encoded state of a new one.
        fresh: Vec<u8>,
    },
}

/// A storage answer.
#[derive(Debug)]
pub enum StoreDone {
    /// The player entity of a client.
    Player {
        /// For which client.
        client: ClientId,
        /// Its row, or why it could not be had.
        result: Result<StoredEntity, String>,
    },
    /// A named entity, for this baseapp to hold.
    Named {
        /// Its type.
        type_name: String,
        /// Its name.
        name: String,
        /// Its row, or why it could not be had.
        result: Result<StoredEntity, String>,
    },
    /// A save finished.
    Saved {
        /// How many entities.
        count: usize,
        /// Whether it worked.
        result: Result<(), String>,
    },
}

/// Everything the core asks its driver to do.
#[derive(Debug)]
pub enum Output {
    /// Send to another app.
    App(AppId, AppMsg),
    /// Act on a client connection.
    Client(ClientId, ClientOut),
    /// Use storage.
    Store(StoreOp),
}

enum Phase {
    Loading,
    Playing(EntityId),
}

struct Proxy {
    account: i64,
    phase: Phase,
}

/// The baseapp core.
pub struct Bases {
    app: AppId,
    defs: Arc<Definitions>,
    cfg: BaseConfig,
    space: SpaceInfo,
    ids: IdPool,
    rng: ChaCha20Rng,
    tickets: HashMap<Ticket, (session::Admit, Time)>,
    proxies: HashMap<ClientId, Proxy>,
    bases: BTreeMap<EntityId, Base>,
    online: HashMap<i64, EntityId>,
    cells: Vec<CellInfo>,
    layout: Option<Layout>,
    linked: BTreeSet<AppId>,
    /// Apps the manager declared dead: nothing from them is taken.
    dead: BTreeSet<AppId>,
    /// Every cellapp the manager ever announced.
    cellapps: BTreeSet<AppId>,
    /// Cellapp deaths being recovered from, by the dead app.
    recovering: BTreeMap<AppId, recovery::Recovery>,
    /// Entities restored from their backups since the start.
    restored: u64,
    /// The other live baseapps and their internal addresses (copies of
    /// bases go among them).
    peers: BTreeMap<AppId, std::net::SocketAddr>,
    /// Copies of other baseapps' bases, with their owner.
    copies: BTreeMap<EntityId, (AppId, tessera::proto::app::BaseCopy)>,
    /// Ticks so far (backups are spread over them).
    ticks: u64,
    last_save: Option<Time>,
    stopping: bool,
    /// Where a retirement by hand-over stands ([`Bases::hand_over`]).
    handing: handover::Handing,
    /// Baseapps that have not yet taken this retiring baseapp's bases.
    awaiting: BTreeSet<AppId>,
    /// Named entities: where each is, and those held here.
    named: named::Named,
    /// Timers set by the game's base behaviours, by entity (players' bases
    /// and named entities).
    timers: BTreeMap<EntityId, Timers>,
    /// The time of the last input or tick: what base hooks see.
    now: Time,
    out: Vec<Output>,
}

impl Bases {
    /// A baseapp core. `seed` makes tickets unpredictable; drivers pass OS entropy.
    pub fn new(
        app: AppId,
        defs: Arc<Definitions>,
        cfg: BaseConfig,
        space: SpaceInfo,
        ids: IdBlock,
        seed: [u8; 32],
    ) -> Bases {
        Bases {
            app,
            defs,
            cfg,
            space,
            ids: IdPool::new(ids),
            rng: ChaCha20Rng::from_seed(seed),
            tickets: HashMap::new(),
            proxies: HashMap::new(),
            bases: BTreeMap::new(),
            online: HashMap::new(),
            cells: Vec::new(),
            layout: None,
            linked: BTreeSet::new(),
            dead: BTreeSet::new(),
            cellapps: BTreeSet::new(),
            recovering: BTreeMap::new(),
            restored: 0,
            peers: BTreeMap::new(),
            copies: BTreeMap::new(),
            ticks: 0,
            last_save: None,
            stopping: false,
            handing: Default::default(),
            awaiting: BTreeSet::new(),
            named: Default::default(),
            timers: BTreeMap::new(),
            now: Time(0),
            out: Vec::new(),
        }
    }

    /// Takes what the core has to do.
    pub fn drain(&mut self) -> Vec<Output> {
        std::mem::take(&mut self.out)
    }

    /// The entities whose bases this baseapp holds.
    pub fn entities(&self) -> impl Iterator<Item = EntityId> + '_ {
        self.bases.keys().copied()
    }

    /// Load figures for the heartbeat.
    pub fn load(&self) -> Load {
        Load {
            busy: 0.0,
            entities: self.bases.len() as u32,
            clients: self.proxies.len() as u32,
        }
    }

    /// The newest layout the manager sent.
    pub fn layout(&self) -> Option<&Layout> {
        self.layout.as_ref()
    }

    /// The cellapps the manager announced.
    pub fn cells(&self) -> &[CellInfo] {
        &self.cells
    }

    /// True once a stop has saved every entity.
    pub fn drained(&self) -> bool {
        self.stopping && self.bases.is_empty() && self.awaiting.is_empty()
    }

    fn ty(&self, i: usize) -> Option<&TypeDef> {
        self.defs.types.get(i)
    }

    fn close(&mut self, client: ClientId, why: impl Into<Closing>) {
        self.out
            .push(Output::Client(client, ClientOut::Close(why.into())));
    }

    fn send(&mut self, client: ClientId, msg: &ServerMsg) {
        self.out.push(Output::Client(
            client,
            ClientOut::Reliable(encode_body(msg)),
        ));
    }

    /// The cellapp whose cell covers a position (by the newest layout), or
    /// any linked cellapp while that one is not linked yet.
    fn cell_for(&self, pos: Pos) -> Option<AppId> {
        let by_layout = self
            .layout
            .as_ref()
            .map(|l| l.app_at(pos[0], pos[2]))
            .filter(|a| self.linked.contains(a));
        by_layout.or_else(|| {
            self.cells
                .iter()
                .map(|c| c.app)
                .find(|a| self.linked.contains(a))
        })
    }

    /// A client connected and said hello.
    pub fn hello(
        &mut self,
        client: ClientId,
        protocol: u16,
        digest: [u8; 32],
        ticket: Ticket,
        now: Time,
    ) {
        // A ticket is spent by any attempt to use it.
        let ticket = self.tickets.remove(&ticket);
        if protocol != PROTOCOL_MAJOR {
            return self.refuse(
                client,
                Refusal::ProtocolVersion {
                    theirs: protocol,
                    ours: PROTOCOL_MAJOR,
                },
            );
        }
        if digest != self.defs.digest {
            return self.refuse(
                client,
                Refusal::DefinitionsMismatch {
                    theirs: Definitions::hex(&digest),
                    ours: self.defs.digest_hex(),
                },
            );
        }
        let account = match ticket {
            Some((session::Admit::Entity(e), expires)) if expires >= now => {
                return self.attach(client, e, now)
            }
            Some((session::Admit::Account(account), expires)) if expires >= now => account,
            _ => return self.refuse(client, Refusal::BadTicket),
        };
        if let Some(e) = self.online.get(&account).copied() {
            // Back with the password while the entity is in the world: the
            // same as resuming (an old connection gives way).
            if self
                .bases
                .get(&e)
                .is_some_and(|b| !b.leaving() && !b.claiming())
            {
                return self.attach(client, e, now);
            }
        }
        if self.online.contains_key(&account) || self.proxies.values().any(|p| p.account == account)
        {
            return self.refuse(client, Refusal::AlreadyInWorld);
        }
        let Some(ty) = self.defs.by_name(&self.cfg.player_type) else {
            return self.refuse(client, Refusal::NoPlayerType);
        };
        let [x0, z0, x1, z1] = spawn_area(self.cfg.spawn_area, self.space.bounds);
        let u = (self.rng.next_u32() as f32) / (u32::MAX as f32);
        let v = (self.rng.next_u32() as f32) / (u32::MAX as f32);
        let spawn = [x0 + (x1 - x0) * u, 0.0, z0 + (z1 - z0) * v];
        let fresh = persist::encode(ty, spawn, 0.0, &ty.defaults());
        let type_name = ty.name.clone();
        self.proxies.insert(
            client,
            Proxy {
                account,
                phase: Phase::Loading,
            },
        );
        self.out.push(Output::Store(StoreOp::LoadPlayer {
            client,
            account,
            type_name,
            fresh,
        }));
    }

    fn refuse(&mut self, client: ClientId, why: Refusal) {
        self.send(
            client,
            &ServerMsg::Refused {
                reason: why.to_string(),
            },
        );
        self.close(client, why);
    }

    /// Something from a client that already said hello.
    pub fn client_input(&mut self, now: Time, client: ClientId, input: ClientInput) {
        self.now = now;
        let entity = match self.proxies.get(&client).map(|p| &p.phase) {
            Some(Phase::Playing(e)) => Some(*e),
            Some(Phase::Loading) => None,
            None => return,
        };
        if !matches!(input, ClientInput::Gone(_)) {
            // It has the welcome, and the token that came with it.
            if let Some(b) = entity.and_then(|e| self.bases.get_mut(&e)) {
                b.prev_token = None;
            }
        }
        match input {
            ClientInput::Gone(_) => {
                self.proxies.remove(&client);
                // The entity waits for its client to resume.
                if let Some(b) = entity.and_then(|e| self.bases.get_mut(&e)) {
                    if b.client == Client::Connected(client) {
                        b.client = Client::Away { since: now };
                    }
                }
            }
            ClientInput::Msg(ClientMsg::Logout) => {
                self.proxies.remove(&client);
                match entity {
                    Some(e) => self.leave(e),
                    None => self.close(client, Closing::LoggedOut),
                }
            }
            ClientInput::Msg(ClientMsg::Hello { .. }) => {
                self.violation(client, Violation::SecondHello);
            }
            ClientInput::Msg(ClientMsg::Call { method, args }) => {
                let Some(e) = entity else {
                    return self.violation(client, Violation::CallBeforeWelcome);
                };
                if let Err(reason) = self.client_call(e, method, args) {
                    self.violation(client, reason);
                }
            }
            ClientInput::Datagram(ClientDatagram::Move { seq, pos, yaw }) => {
                let Some(e) = entity else { return };
                if !finite(&pos) || !yaw.is_finite() {
                    return self.violation(client, Violation::NonFiniteMove);
                }
                if let Some(b) = self.bases.get_mut(&e) {
                    b.last_move = Some((pos, yaw, now));
                }
                self.send_on_channel(e, EntityMsg::Move { seq, pos, yaw });
            }
        }
    }

    /// A client broke the protocol: it loses its connection, nothing else.
    pub fn violation(&mut self, client: ClientId, why: Violation) {
        let Some(proxy) = self.proxies.remove(&client) else {
            return;
        };
        self.close(client, why);
        if let Phase::Playing(e) = proxy.phase {
            self.detach(e);
            self.leave(e);
        }
    }

    fn client_call(&mut self, e: EntityId, method: u16, args: Vec<Value>) -> Result<(), Violation> {
        let base = self.bases.get(&e).ok_or(Violation::EntityGone)?;
        let ty = self.ty(base.ty).ok_or(Violation::EntityGone)?;
        let m = ty
            .methods
            .get(method as usize)
            .ok_or_else(|| Violation::NoSuchMethod {
                ty: ty.name.clone(),
                method,
            })?;
        let named = || (ty.name.clone(), m.name.clone());
        if !m.exposed {
            let (ty, method) = named();
            return Err(Violation::NotExposed { ty, method });
        }
        if let Err(e) = m.check_args(&args) {
            let (ty, method) = named();
            return Err(match e {
                ArgsError::Count { wanted, got } => Violation::ArgumentCount {
                    ty,
                    method,
                    wanted,
                    got,
                },
                ArgsError::Arg { index, problem } => Violation::BadArgument {
                    ty,
                    method,
                    index,
                    problem: problem.to_string(),
                },
            });
        }
        match m.side {
            Side::Cell => self.send_on_channel(e, EntityMsg::Call { method, args }),
            Side::Base => {
                let m = m.clone();
                self.run_base_method(e, &m, &args, BaseCaller::Client);
            }
            Side::Client => {
                let (ty, method) = named();
                return Err(Violation::ClientMethod { ty, method });
            }
        }
        Ok(())
    }

    /// Runs a base hook of `e`'s type, if the game registered one: what it
    /// changed is saved with the base, and what the own client sees is
    /// sent to it.
    fn base_hook(
        &mut self,
        e: EntityId,
        hook: &'static str,
        f: impl FnOnce(&dyn BaseBehavior, &mut BaseCtx<'_>),
    ) {
        let defs = self.defs.clone();
        let Some(base) = self.bases.get_mut(&e) else {
            return;
        };
        let Some(def) = defs.types.get(base.ty) else {
            return;
        };
        let account = base.account;
        let mut props = std::mem::take(&mut base.props);
        let changed = self.hook(e, def, &mut props, hook, account, f);
        let Some(base) = self.bases.get_mut(&e) else {
            return;
        };
        base.props = props;
        let changed = changed.unwrap_or_default();
        if changed.is_empty() {
            return;
        }
        base.dirty = true;
        let seen: Vec<_> = changed
            .iter()
            .filter(|&&i| {
                def.properties
                    .get(i as usize)
                    .is_some_and(|p| p.flags.own_client())
            })
            .filter_map(|&i| Some((i, base.props.get(i as usize)?.clone())))
            .collect();
        if let (Some(client), false) = (base.client.id(), seen.is_empty()) {
            self.send(
                client,
                &ServerMsg::Props {
                    entity: e,
                    props: seen,
                },
            );
        }
    }

    /// Runs a hook of the game's base behaviour for `def` on the properties
    /// of `e` (a player's base or a named entity), and does what it asked
    /// for. Returns the properties it changed, or `None` if it has no
    /// behaviour or panicked.
    pub(crate) fn hook(
        &mut self,
        e: EntityId,
        def: &TypeDef,
        props: &mut Vec<Value>,
        hook: &'static str,
        account: Option<i64>,
        f: impl FnOnce(&dyn BaseBehavior, &mut BaseCtx<'_>),
    ) -> Option<Vec<u16>> {
        let b = self.cfg.behaviors.get(&def.name)?.clone();
        let defs = self.defs.clone();
        let timers = self
            .timers
            .get(&e)
            .map_or((TimerId(0), 0), |t| (t.id_after(0), t.len()));
        let at = behavior::At {
            entity: e,
            account,
            now: self.now,
            timers,
        };
        let outcome = behavior::run(b.as_ref(), &defs, def, props, at, hook, f)?;
        for ask in outcome.asks {
            self.carry_out(e, ask);
        }
        Some(outcome.changed)
    }

    /// The cell of `e` found its client naming an entity it has not seen:
    /// the client is dropped with the reason.
    fn unseen_entity(&mut self, e: EntityId, method: u16, named: EntityId) {
        let Some(base) = self.bases.get(&e) else {
            return;
        };
        let Some(client) = base.client.id() else {
            return;
        };
        let (ty, method) = self
            .defs
            .types
            .get(base.ty)
            .map(|t| {
                let m = t.methods.get(method as usize).map(|m| m.name.clone());
                (t.name.clone(), m.unwrap_or_else(|| format!("#{method}")))
            })
            .unwrap_or_default();
        self.violation(
            client,
            Violation::UnseenEntity {
                ty,
                method,
                entity: named,
            },
        );
    }

    /// Fires the base timers that are due, in the order they fell due.
    fn fire_timers(&mut self, now: Time) {
        let mut due = Vec::new();
        self.timers.retain(|e, t| {
            due.extend(
                t.due(now)
                    .into_iter()
                    .map(|(id, tag, at)| (at, *e, id, tag)),
            );
            !t.is_empty()
        });
        due.sort_by_key(|&(at, e, id, _)| (at, e, id));
        for (at, e, id, tag) in due {
            if let Some(t) = self.timers.get_mut(&e) {
                t.fired(id, at);
            }
            if self.bases.contains_key(&e) {
                self.base_hook(e, "timer", |b, ctx| b.timer(ctx, id, tag));
            } else if self.is_named(e) {
                self.named_hook(e, "timer", |b, ctx| b.timer(ctx, id, tag));
            } else {
                // Its base is gone from here.
                self.timers.remove(&e);
            }
        }
    }

    /// Does what a base hook of `e` asked for.
    fn carry_out(&mut self, e: EntityId, ask: BaseAsk) {
        match ask {
            BaseAsk::Cell { method, args } => {
                self.send_on_channel(e, EntityMsg::BaseCall { method, args })
            }
            BaseAsk::AddTimer(t) => self.timers.entry(e).or_default().add(t),
            BaseAsk::CancelTimer(id) => {
                if let Some(t) = self.timers.get_mut(&e) {
                    t.cancel(id);
                }
            }
            BaseAsk::Named {
                type_id,
                name,
                method,
                args,
            } => self.call_named(
                (type_id, name),
                named::Waiting {
                    method,
                    args,
                    from: e,
                },
            ),
        }
    }

    /// Game code on an entity's cell called one of its base methods.
    fn cell_calls_base(&mut self, e: EntityId, method: u16, args: Vec<Value>) {
        let Some(m) = self
            .bases
            .get(&e)
            .and_then(|b| self.defs.types.get(b.ty))
            .and_then(|t| t.methods.get(method as usize))
            .cloned()
        else {
            tracing::debug!(entity = %e, method, "a base call for a base not here dropped");
            return;
        };
        if m.side != Side::Base || m.check_args(&args).is_err() {
            tracing::warn!(entity = %e, method = %m.name, "a cell's base call that does not fit the definitions dropped");
            return;
        }
        self.run_base_method(e, &m, &args, BaseCaller::Cell);
    }

    /// Runs a base method of `e` (checked against the definitions).
    fn run_base_method(&mut self, e: EntityId, m: &MethodDef, args: &[Value], caller: BaseCaller) {
        let called = BaseCalled {
            method: m,
            args,
            caller,
        };
        self.base_hook(e, "call", |b, ctx| b.call(ctx, &called));
    }

    /// Forgets an entity's client (already closed by the caller).
    fn detach(&mut self, e: EntityId) {
        if let Some(b) = self.bases.get_mut(&e) {
            b.client = Client::Gone;
        }
    }

    /// Starts the end of an entity's session: the cell half is destroyed and
    /// sends its final state; then the base is saved and dropped.
    fn leave(&mut self, e: EntityId) {
        // Once per logout: not again while it is on its way out, and not
        // for a base whose real has not taken it.
        if self
            .bases
            .get(&e)
            .is_some_and(|b| matches!(b.half, Half::Placed { .. } | Half::Unplaced))
        {
            self.base_hook(e, "logout", |b, ctx| b.logout(ctx));
        }
        let Some(base) = self.bases.get_mut(&e) else {
            return;
        };
        if let Client::Connected(client) = std::mem::replace(&mut base.client, Client::Gone) {
            self.out
                .push(Output::Client(client, ClientOut::Close(Closing::LoggedOut)));
        }
        match base.half {
            Half::Placed { cell } => {
                base.half = Half::Leaving { cell };
                self.send_on_channel(e, EntityMsg::Destroy);
            }
            // Already on its way out.
            Half::Leaving { .. } => {}
            // Not this baseapp's to destroy or save: its real has not
            // taken it.
            Half::Claiming { .. } => self.not_rebased(e),
            Half::Unplaced => self.finish(e),
        }
    }

    /// Sends a message on an entity's channel to its real, numbered so the
    /// real applies it exactly once and in order wherever it has moved.
    fn send_on_channel(&mut self, e: EntityId, msg: EntityMsg) {
        let Some(base) = self.bases.get_mut(&e) else {
            return;
        };
        let Some(cell) = base.half.cell() else {
            // Sent once the cell half is placed.
            if !base.hold(msg) {
                if let Some(client) = base.client.id() {
                    self.violation(client, Violation::AheadOfEntity);
                }
            }
            return;
        };
        let (seq, msg) = base.channel.send(msg);
        self.out.push(Output::App(
            cell,
            AppMsg::ToEntity {
                entity: e,
                seq,
                msg,
            },
        ));
    }

    /// Starts the client's stream over: its frames number past anything
    /// sent so far, and the real sends it everything anew
    /// ([`EntityMsg::Attach`], as for a resumed client). For a stream stuck
    /// behind frames that will never come (they were on their way from a
    /// cellapp that died).
    fn resync(&mut self, e: EntityId) {
        let Some(b) = self.bases.get_mut(&e) else {
            return;
        };
        if b.client.id().is_none() {
            return;
        }
        let out_seq = b.channel.attach();
        self.send_on_channel(e, EntityMsg::Attach { out_seq });
    }

    fn finish(&mut self, e: EntityId) {
        self.timers.remove(&e);
        let Some(base) = self.bases.remove(&e) else {
            return;
        };
        if let Some(account) = base.account {
            self.online.remove(&account);
        }
        if let Some(holder) = base.holder {
            self.out
                .push(Output::App(holder, AppMsg::BaseGone { entity: e }));
        }
        if let Some(row) = self.row(&base) {
            self.out.push(Output::Store(StoreOp::Save(vec![row])));
        }
    }

    fn row(&self, base: &Base) -> Option<StoredEntity> {
        let ty = self.ty(base.ty)?;
        Some(StoredEntity {
            db_id: base.db_id?,
            type_name: ty.name.clone(),
            format_version: persist::FORMAT_VERSION,
            data: persist::encode(ty, base.pos, base.yaw, &base.props),
            fence: base.fence,
        })
    }

    /// Storage answered.
    pub fn store_done(&mut self, now: Time, done: StoreDone) {
        self.now = now;
        match done {
            StoreDone::Player { client, result } => self.player_loaded(now, client, result),
            StoreDone::Named {
                type_name,
                name,
                result,
            } => self.named_loaded(&type_name, name, result),
            StoreDone::Saved { count, result } => match result {
                Ok(()) => tracing::debug!(count, "entities saved"),
                Err(e) => tracing::error!(count, error = %e, "saving entities failed"),
            },
        }
    }

    fn player_loaded(&mut self, now: Time, client: ClientId, result: Result<StoredEntity, String>) {
        let Some(proxy) = self.proxies.get(&client) else {
            return;
        };
        let account = proxy.account;
        if self.stopping {
            self.proxies.remove(&client);
            return self.refuse(client, Refusal::ShuttingDown);
        }
        let row = match result {
            Ok(row) => row,
            Err(e) => {
                self.proxies.remove(&client);
                return self.refuse(client, Refusal::LoadFailed(e));
            }
        };
        let Some(ty) = self.defs.by_name(&row.type_name) else {
            self.proxies.remove(&client);
            return self.refuse(client, Refusal::StoredTypeUnknown(row.type_name));
        };
        let mut loaded = match persist::decode(ty, row.format_version, &row.data) {
            Ok(l) => l,
            Err(e) => {
                self.proxies.remove(&client);
                return self.refuse(client, Refusal::Unreadable(e.to_string()));
            }
        };
        let Some(entity) = self.ids.take() else {
            self.proxies.remove(&client);
            return self.refuse(client, Refusal::OutOfIds);
        };
        if self.ids.should_ask() {
            self.out.push(Output::App(MANAGER, AppMsg::NeedIds));
        }
        // The game's login hook, before the client is told anything; what
        // it asks of the cell waits on the channel until the real is made.
        let mut login = None;
        if let Some(b) = self.cfg.behaviors.get(&ty.name) {
            let hook = |b: &dyn BaseBehavior, ctx: &mut BaseCtx<'_>| b.login(ctx);
            let props = &mut loaded.props;
            let at = behavior::At {
                entity,
                account: Some(account),
                now,
                timers: (TimerId(0), 0),
            };
            login = behavior::run(b.as_ref(), &self.defs, ty, props, at, "login", hook);
        }
        let dirty = login.as_ref().is_some_and(|o| !o.changed.is_empty());
        let welcome = self.welcome(entity, ty, loaded.pos, loaded.yaw, &loaded.props);
        let ty_index = ty.id.0 as usize;
        if let Some(p) = self.proxies.get_mut(&client) {
            p.phase = Phase::Playing(entity);
        }
        let token = self.new_ticket();
        self.online.insert(account, entity);
        self.bases.insert(
            entity,
            Base {
                db_id: Some(row.db_id),
                account: Some(account),
                ty: ty_index,
                pos: loaded.pos,
                yaw: loaded.yaw,
                props: loaded.props,
                client: Client::Connected(client),
                half: Half::Unplaced,
                version: 0,
                channel: Default::default(),
                dirty,
                token: TokenHash::of(&token),
                prev_token: None,
                holder: None,
                fence: row.fence,
                last_move: None,
                held: Vec::new(),
                resend: false,
                // Where it stands is known as of now.
                backed_up: Some(now),
            },
        );
        self.send(client, &welcome);
        self.send(client, &ServerMsg::Session { token });
        for ask in login.map(|o| o.asks).unwrap_or_default() {
            self.carry_out(entity, ask);
        }
        self.place_in_cell(entity);
    }

    /// The welcome of a client to its entity: what its own client may see.
    fn welcome(
        &self,
        entity: EntityId,
        ty: &TypeDef,
        pos: Pos,
        yaw: f32,
        props: &[Value],
    ) -> ServerMsg {
        ServerMsg::Welcome {
            entity,
            type_id: ty.id,
            pos,
            yaw,
            props: persist::pick(
                props,
                ty.properties
                    .iter()
                    .filter(|p| p.flags.own_client())
                    .map(|p| p.index),
            ),
            tick_hz: self.space.tick_hz,
            bounds: self.space.bounds,
        }
    }

    fn place_in_cell(&mut self, e: EntityId) {
        let Some(base) = self.bases.get(&e) else {
            return;
        };
        if base.half != Half::Unplaced {
            return;
        }
        let Some(cell) = self.cell_for(base.pos) else {
            return;
        };
        let Some(ty) = self.ty(base.ty) else { return };
        let state = CellState {
            pos: base.pos,
            yaw: base.yaw,
            props: persist::pick(
                &base.props,
                ty.properties
                    .iter()
                    .filter(|p| p.flags.on_cell())
                    .map(|p| p.index),
            ),
        };
        let type_id = ty.id;
        let mut version = 0;
        if let Some(b) = self.bases.get_mut(&e) {
            b.half = Half::Placed { cell };
            version = b.version;
            b.channel.reset();
        }
        self.out.push(Output::App(
            cell,
            AppMsg::CreateEntity {
                entity: e,
                type_id,
                state,
                version,
            },
        ));
        let held = self
            .bases
            .get_mut(&e)
            .map(|b| std::mem::take(&mut b.held))
            .unwrap_or_default();
        for msg in held {
            self.send_on_channel(e, msg);
        }
        self.back_up(e);
    }

    /// Sends again what the real has not confirmed applied, to where the
    /// base believes it is; the real drops what it already has.
    fn resend_unconfirmed(&mut self, e: EntityId) {
        let Some(b) = self.bases.get(&e) else { return };
        let Some(cell) = b.half.cell() else { return };
        for (seq, msg) in b.channel.unconfirmed() {
            self.out.push(Output::App(
                cell,
                AppMsg::ToEntity {
                    entity: e,
                    seq: *seq,
                    msg: msg.clone(),
                },
            ));
        }
    }

    /// Cellapps on the previous list that are not on `now_listed` and
    /// were not declared dead left the cluster: a message on its way
    /// through one of them when it went is lost (a departed app's links
    /// are forgotten). Every base sends again what its real has not
    /// confirmed: at once where the base knows the real is elsewhere,
    /// else once the real's new cell reports.
    fn cellapps_left(&mut self, now_listed: &[CellInfo]) {
        let left: Vec<AppId> = self
            .cells
            .iter()
            .map(|c| c.app)
            .filter(|a| !now_listed.iter().any(|c| c.app == *a) && !self.dead.contains(a))
            .collect();
        if left.is_empty() {
            return;
        }
        let mut now = Vec::new();
        for (e, b) in self.bases.iter_mut() {
            if !b.channel.has_unconfirmed() {
                continue;
            }
            match b.half.cell() {
                Some(cell) if left.contains(&cell) => b.resend = true,
                Some(_) => now.push(*e),
                None => {}
            }
        }
        tracing::info!(
            ?left,
            resent = now.len(),
            "cellapps left; unconfirmed channel messages sent again"
        );
        for e in now {
            self.resend_unconfirmed(e);
        }
    }

    /// A link to another app came up.
    pub fn link_up(&mut self, app: AppId) {
        self.linked.insert(app);
        let waiting: Vec<EntityId> = self
            .bases
            .iter()
            .filter(|(_, b)| b.half == Half::Unplaced)
            .map(|(e, _)| *e)
            .collect();
        for e in waiting {
            self.place_in_cell(e);
        }
    }

    /// The connection to another app dropped. Nothing is lost with it
    /// (the link sends again what did not arrive once it is back), so only
    /// placement notices: no new cell half goes to a cellapp that is not
    /// linked.
    pub fn link_down(&mut self, app: AppId) {
        self.linked.remove(&app);
    }

    /// A message from another app.
    pub fn handle(&mut self, now: Time, from: AppId, msg: AppMsg) {
        self.now = now;
        if self.dead.contains(&from) {
            // Still in flight from a process declared dead: void.
            return;
        }
        match msg {
            AppMsg::IssueTicket { req, account, .. } => {
                self.issue(now, req, session::Admit::Account(account))
            }
            AppMsg::FindSession { req, entity, token } => {
                self.find_session(now, req, entity, token)
            }
            AppMsg::FindPlayer { req, account } => self.find_player(now, req, account),
            AppMsg::Baseapps(list) => self.baseapps(list),
            AppMsg::BaseBackup(copy) => self.hold(from, *copy),
            AppMsg::BaseGone { entity } => {
                if self
                    .copies
                    .get(&entity)
                    .is_some_and(|(owner, _)| *owner == from)
                {
                    self.copies.remove(&entity);
                }
            }
            AppMsg::Rebased {
                entity,
                version,
                state,
            } => self.rebased(from, entity, version, state),
            AppMsg::NotRebased { entity } => self.not_rebased(entity),
            AppMsg::Cells(cells) => {
                self.cellapps.extend(cells.iter().map(|c| c.app));
                self.cellapps_left(&cells);
                self.cells = cells;
            }
            AppMsg::Layout { layout, cells } => {
                self.cellapps.extend(cells.iter().map(|c| c.app));
                if self.layout.as_ref().is_none_or(|l| layout.epoch > l.epoch) {
                    self.layout = Some(layout);
                    self.cellapps_left(&cells);
                    self.cells = cells;
                }
            }
            AppMsg::Ids(block) => self.ids.grant(block),
            AppMsg::ToBase {
                entity,
                method,
                args,
            } => self.cell_calls_base(entity, method, args),
            AppMsg::Summoned { type_id, name, app } if from == MANAGER => {
                self.summoned((type_id, name), app)
            }
            AppMsg::NamedCall {
                type_id,
                name,
                method,
                args,
                from: caller,
            } => self.named_call_arrived(
                (type_id, name),
                named::Waiting {
                    method,
                    args,
                    from: caller,
                },
            ),
            AppMsg::UnseenEntity {
                entity,
                method,
                named,
            } => self.unseen_entity(entity, method, named),
            AppMsg::ToClients(packets) | AppMsg::ClientDatagrams(packets) => {
                for p in packets {
                    let Some(base) = self.bases.get_mut(&p.entity) else {
                        continue;
                    };
                    let Some(client) = base.client.id() else {
                        continue;
                    };
                    match p.delivery {
                        Delivery::Datagram => self
                            .out
                            .push(Output::Client(client, ClientOut::Datagram(p.bytes))),
                        // Stream frames keep their order even when the
                        // entity's cell changed between them.
                        Delivery::Reliable => match base.channel.frame(now, p.seq, p.bytes) {
                            Frames::Ready(frames) => {
                                for bytes in frames {
                                    self.out
                                        .push(Output::Client(client, ClientOut::Reliable(bytes)));
                                }
                            }
                            Frames::Stuck { expected } => {
                                tracing::warn!(entity = %p.entity, expected, "client stream stuck behind a lost frame; starting it over");
                                self.resync(p.entity);
                            }
                        },
                    }
                }
            }
            AppMsg::Backup {
                entity,
                state,
                applied,
            } => {
                // Only from where the real is: a backup still on its way from
                // a cell the real has left is older than what follows.
                if let Some(b) = self
                    .bases
                    .get_mut(&entity)
                    .filter(|b| b.half.cell() == Some(from))
                {
                    b.channel.confirm(applied);
                    b.backed_up = Some(now);
                    self.absorb(entity, state);
                }
            }
            AppMsg::AppDown { app } if from == MANAGER => {
                self.hand_over_seen(app);
                self.app_down(now, app)
            }
            AppMsg::HandOver => self.take_over(now, from),
            AppMsg::HandOverSeen => self.hand_over_seen(from),
            AppMsg::DownSeen { app, lost } => self.down_seen(from, app, lost),
            AppMsg::RealMoved {
                entity,
                cell,
                version,
            } => {
                if let Some(b) = self.bases.get_mut(&entity) {
                    // Older news (from a cell the real has left again) is ignored.
                    if version > b.version {
                        match &mut b.half {
                            Half::Placed { cell: at }
                            | Half::Claiming { cell: at, .. }
                            | Half::Leaving { cell: at } => {
                                b.version = version;
                                *at = cell;
                            }
                            Half::Unplaced => {}
                        }
                        if std::mem::take(&mut b.resend) {
                            self.resend_unconfirmed(entity);
                        }
                    }
                }
            }
            AppMsg::EntityDestroyed { entity, state } => {
                self.absorb(entity, state);
                if let Some(b) = self.bases.get_mut(&entity) {
                    let leaving = b.leaving();
                    b.half = Half::Unplaced;
                    if leaving {
                        self.finish(entity);
                    }
                }
            }
            other => {
                tracing::debug!(%from, msg = ?std::mem::discriminant(&other), "baseapp ignores message");
            }
        }
    }

    /// Takes a cell half's state into the base.
    fn absorb(&mut self, e: EntityId, state: CellState) {
        let Some(base) = self.bases.get_mut(&e) else {
            return;
        };
        let Some(ty) = self.defs.types.get(base.ty) else {
            return;
        };
        if finite(&state.pos) {
            base.pos = state.pos;
        }
        if state.yaw.is_finite() {
            base.yaw = state.yaw;
        }
        for (i, v) in state.props {
            if let (Some(p), Some(slot)) = (
                ty.properties.get(i as usize),
                base.props.get_mut(i as usize),
            ) {
                if p.flags.on_cell() && v.check(&p.ty).is_ok() {
                    *slot = v;
                }
            }
        }
        base.dirty = true;
    }

    /// Periodic work: expire tickets, copy a share of the bases to their
    /// holders, log out entities whose client did not resume in time, save
    /// dirty entities.
    pub fn tick(&mut self, now: Time) {
        self.now = now;
        self.try_hand_over(now);
        self.tickets.retain(|_, (_, expires)| *expires >= now);
        self.ticks += 1;
        self.back_up_share();
        self.expire_detached(now);
        self.fire_timers(now);
        let patience = self.cfg.stream_patience;
        let stuck: Vec<EntityId> = self
            .bases
            .iter()
            .filter(|(_, b)| b.channel.stuck(now, patience))
            .map(|(e, _)| *e)
            .collect();
        for e in stuck {
            tracing::warn!(entity = %e, "client stream waited too long for a frame; starting it over");
            self.resync(e);
        }
        let due = match self.last_save {
            None => {
                self.last_save = Some(now);
                false
            }
            Some(t) => now.since(t) >= self.cfg.save_period,
        };
        if due {
            self.last_save = Some(now);
            self.save_dirty();
        }
    }

    fn save_dirty(&mut self) {
        let dirty: Vec<EntityId> = self
            .bases
            .iter()
            .filter(|(_, b)| b.dirty && b.db_id.is_some())
            .map(|(e, _)| *e)
            .collect();
        let mut batch = Vec::new();
        for e in dirty {
            if let Some(row) = self.bases.get(&e).and_then(|b| self.row(b)) {
                batch.push(row);
            }
            if let Some(b) = self.bases.get_mut(&e) {
                b.dirty = false;
            }
        }
        batch.extend(self.named_rows(false));
        if !batch.is_empty() {
            self.out.push(Output::Store(StoreOp::Save(batch)));
        }
    }

    /// Begins a clean stop: every entity leaves (cell halves send their final
    /// state) and is saved. [`Bases::drained`] says when it is done.
    pub fn stop(&mut self) {
        self.stopping = true;
        let named = self.named_rows(true);
        if !named.is_empty() {
            self.out.push(Output::Store(StoreOp::Save(named)));
        }
        let all: Vec<EntityId> = self.bases.keys().copied().collect();
        for e in all {
            self.end_here(e);
        }
    }

    /// Ends an entity's session on this stopping baseapp: its client is
    /// told the server is going away, and the entity leaves and is saved.
    fn end_here(&mut self, e: EntityId) {
        if let Some(client) = self.bases.get(&e).and_then(|b| b.client.id()) {
            self.proxies.remove(&client);
            self.out
                .push(Output::Client(client, ClientOut::Close(Closing::Shutdown)));
            self.detach(e);
        }
        self.leave(e);
    }

    /// Gives up on cell halves that did not answer a stop, saving what the
    /// bases have (their last backups).
    pub fn force_drain(&mut self) {
        // A baseapp that did not answer a hand-over has the copies it got,
        // or nothing to take; bases still here are saved.
        self.awaiting.clear();
        let all: Vec<EntityId> = self.bases.keys().copied().collect();
        for e in all {
            self.finish(e);
        }
    }

    /// Ticks run so far.
    pub fn ticks(&self) -> u64 {
        self.ticks
    }

    /// This baseapp's id.
    pub fn app(&self) -> AppId {
        self.app
    }
}

mod backup;
mod base;
mod handover;
mod named;
mod recovery;
mod rejoin;
pub mod rules;
mod session;

#[cfg(test)]
mod tests;
