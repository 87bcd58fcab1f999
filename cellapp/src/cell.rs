//! The cell core: a sans-IO state machine that owns the real entities of one
//! cell, applies inputs in arrival order, runs behaviours, keeps the spatial
//! index current, runs every witness, and backs reals up to their bases.
//!
//! It takes `handle(now, from, msg)` and `tick(now)` and leaves what it has to
//! send in an outbox; it owns no socket, task or clock, so tests and the
//! simulator drive it directly.

use glam::{Vec2, Vec3};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rustc_hash::FxHashMap;
use std::collections::BTreeMap;
use tessera::defs::{Definitions, Side, TypeDef, TypeId};
use tessera::frame::encode_body;
use tessera::layout::{CellView, Layout};
use tessera::proto::app::{AppMsg, CellState, ClientPacket, Delivery};
use tessera::proto::client::{PropValue, ServerMsg};
use tessera::{AppId, EntityId, IdBlock, IdPool, Time, Value, MANAGER};

use crate::behavior::{Asked, Behaviors, Caller, CellBehavior};
use crate::entry::Entry;
use crate::index::{morton, new_index, IndexKind, SpatialIndex};
use crate::load::{CostModel, LoadSource, Meter};
use crate::pace::{Limit, Pace};
use crate::witness::{
    Brief, Budget, Candidates, Clock, Detail, PropsView, Scene, Witness, WitnessOut,
};
use std::sync::Arc;

/// Settings of a cell.
#[derive(Clone, Debug)]
pub struct CellConfig {
    /// The space's bounds: min x, min z, max x, max z.
    pub bounds: [f32; 4],
    /// Ticks per second.
    pub tick_hz: u16,
    /// Which spatial index to use.
    pub index: IndexKind,
    /// What each client may be sent.
    pub budget: Budget,
    /// Ticks between two backups of the same real to its base.
    pub backup_ticks: u32,
    /// Seed of the cell's random source (NPC behaviour).
    pub seed: u64,
    /// How far from an entity a neighbouring cell needs its ghost: the
    /// largest AoI radius plus a margin.
    pub ghost_distance: f32,
    /// The cellapp's own id (which cells of the layout are its own).
    pub app: AppId,
    /// Where the load it reports comes from.
    pub load: LoadSource,
    /// How late or bunched a client's moves may arrive before the pace
    /// check corrects them (see [`crate::pace`]).
    pub move_window: std::time::Duration,
}

/// Deliberate defects that tests plant to show that the simulator's checks
/// catch them. Only a build with the `faults` feature can plant them
/// ([`Cell::plant`]), and no command does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    /// A cell that no longer holds an entity's real drops its channel
    /// messages instead of forwarding them.
    pub drop_forwarding: bool,
    /// The real applies every channel message twice.
    pub apply_twice: bool,
    /// An offloaded real also stays real where it was.
    pub keep_real_on_offload: bool,
    /// Ghosts are created but never updated.
    pub no_ghost_updates: bool,
    /// Reals never move to the cell that covers them.
    pub no_offload: bool,
    /// A witness that moved cell does not resend properties that changed
    /// while it travelled.
    pub no_witness_refresh: bool,
    /// A real that arrives from another cell fires its repeating timers'
    /// last period again.
    pub refire_timers: bool,
}

impl Default for CellConfig {
    fn default() -> Self {
        CellConfig {
            bounds: [0.0, 0.0, 1000.0, 1000.0],
            tick_hz: 10,
            index: IndexKind::RTree,
            budget: Budget::default(),
            backup_ticks: 50,
            seed: 1,
            ghost_distance: 110.0,
            app: AppId(1),
            load: LoadSource::Measured,
            move_window: std::time::Duration::from_millis(crate::pace::DEFAULT_MOVE_WINDOW_MS),
        }
    }
}

/// Counts a cell reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CellStats {
    /// Real entities.
    pub reals: usize,
    /// Ghosts of entities real elsewhere.
    pub ghosts: usize,
    /// Reals with a witness.
    pub witnesses: usize,
    /// Ticks run.
    pub ticks: u64,
    /// Client moves refused.
    pub moves_refused: u64,
    /// Reals moved to another cell.
    pub offloads: u64,
    /// Reals arrived from another cell.
    pub onloads: u64,
    /// Hooks of game code that panicked (each failed alone; see
    /// [`crate::behavior::CellBehavior`]).
    pub game_panics: u64,
}

/// One entity as the cell sees it, for tests and tools.
#[derive(Clone, Debug, PartialEq)]
pub struct EntitySnapshot {
    /// Id.
    pub id: EntityId,
    /// Type.
    pub type_id: TypeId,
    /// Position.
    pub pos: Vec3,
    /// Facing.
    pub yaw: f32,
    /// AoI radius if it has a witness.
    pub aoi: Option<f32>,
    /// Properties.
    pub props: Vec<Value>,
}

mod channel;
mod game;
mod ghosts;
mod migration;
mod rebase;
mod recovery;
mod rejoin;
#[cfg(test)]
mod tests;
pub use channel::Refusals;
pub use migration::OFFLOAD_HYSTERESIS;

/// The spatial index is keyed by slot in `entries`, not by entity id, so a
/// query leads straight to the compact per-tick copy of each candidate.
fn key(slot: usize) -> EntityId {
    EntityId(slot as u64)
}

fn xz(p: Vec3) -> Vec2 {
    Vec2::new(p.x, p.z)
}

/// How often reals are put back in spatial order in memory.
const REORDER_TICKS: u64 = 64;
/// The grid step of that order, in metres.
const REORDER_CELL: f32 = 16.0;

impl TypeInfo {
    /// Its levels of detail.
    pub(crate) fn detail(&self) -> &Detail {
        &self.detail
    }
}

/// Per-type data computed once from the definitions.
pub(crate) struct TypeInfo {
    pub(crate) def: TypeDef,
    /// Properties other clients see.
    public: Vec<u16>,
    /// Cell-side properties the own client sees.
    own: Vec<u16>,
    /// Cell-side properties.
    cell: Vec<u16>,
    /// Properties ghosts carry.
    pub(crate) ghosted: Vec<u16>,
    /// The game's behaviour for the type, if it registered one.
    pub(crate) behavior: Option<Arc<dyn CellBehavior>>,
    /// Its levels of detail, as witnesses read them.
    detail: Detail,
}

/// How far the spatial index has followed the entries. Positions are
/// brought up to date only before a query: a cell where nobody asks never
/// pays for keeping them.
#[derive(Debug, Default)]
pub(crate) struct IndexSync {
    /// Entries that moved at or after this tick have stale positions in
    /// the index.
    indexed_tick: u64,
    /// Slots were reordered since the index was last brought up to date:
    /// it is rebuilt whole before the next query, and entries coming and
    /// going are not written to it until then (in a cell where nobody
    /// asks, ghosts come and go every tick).
    stale: bool,
}

impl IndexSync {
    /// Whether the index has not followed the entries this tick: a query
    /// between two syncs of one tick reads positions at most a tick old.
    pub(crate) fn behind(&self, tick: u64) -> bool {
        self.stale || self.indexed_tick < tick
    }

    /// Brings the index's positions up to date: every entry that moved
    /// since the last time, or all of them after a reorder.
    pub(crate) fn sync(&mut self, index: &mut dyn SpatialIndex, entries: &[Entry], tick: u64) {
        if self.stale {
            index.replace_all(&mut entries.iter().enumerate().map(|(i, r)| (key(i), xz(r.pos))));
        } else {
            for (i, r) in entries.iter().enumerate() {
                if r.moved_tick >= self.indexed_tick {
                    index.update(key(i), xz(r.pos));
                }
            }
        }
        self.stale = false;
        self.indexed_tick = tick;
    }
}

/// What a cell holds, counted in the tick's last pass.
#[derive(Clone, Copy, Debug, Default)]
struct Census {
    reals: u32,
    ghosts: u32,
    witnesses: u32,
}

/// The witnesses' view of the cell's entries: hot fields from a compact copy
/// made once per tick, properties from the entries themselves.
#[derive(Clone, Copy)]
struct CellScene<'a> {
    entries: &'a [Entry],
    briefs: &'a [Brief],
    slot: &'a FxHashMap<EntityId, usize>,
    types: &'a [TypeInfo],
}

impl<'a> Scene<'a> for CellScene<'a> {
    fn brief(&self, id: EntityId) -> Option<Brief> {
        self.briefs.get(*self.slot.get(&id)?).copied()
    }

    fn props(&self, id: EntityId) -> Option<PropsView<'a>> {
        let r = self.entries.get(*self.slot.get(&id)?)?;
        Some(PropsView {
            props: &r.props,
            dirty: r.dirty(),
        })
    }

    fn detail(&self, _: EntityId, type_id: TypeId) -> Option<&'a Detail> {
        self.types.get(type_id.0 as usize).map(|t| &t.detail)
    }
}

/// The cell core.
pub struct Cell {
    cfg: CellConfig,
    types: Vec<TypeInfo>,
    /// Every entity the cell holds: its reals and the ghosts of reals on
    /// other cellapps.
    entries: Vec<Entry>,
    slot: FxHashMap<EntityId, usize>,
    /// Keys are slots in `entries`, always exactly `0..entries.len()`. The
    /// positions are brought up to date only before a query
    /// ([`IndexSync`]).
    index: Box<dyn SpatialIndex>,
    index_sync: IndexSync,
    /// Some type has a behaviour.
    has_behaviors: bool,
    /// A real here may have a witness: set where one is attached, and
    /// recounted at the end of every tick (so a cell of NPCs alone skips
    /// its witnesses' passes without looking at every entry).
    witnessed: bool,
    /// Calls between entities waiting to run on their callee here.
    inbox: std::collections::VecDeque<tessera::proto::app::Mail>,
    /// Entities made this round whose `created` hook has not run.
    fresh: Vec<EntityId>,
    /// What behaviours asked for, waiting to be applied (kept to reuse).
    fx: Vec<Asked>,
    /// The round's own writes, for each entity to read back.
    overlay: crate::behavior::Overlay,
    /// This tick's changes to what clients see, for the AoI hooks: the
    /// witness's entity, who entered, who left.
    aoi_changes: Vec<(EntityId, Vec<EntityId>, Vec<EntityId>)>,
    /// The largest AoI radius of any type: how far a client may be from an
    /// entity it sees.
    max_aoi: f32,
    ids: IdPool,
    rng: ChaCha8Rng,
    tick: u64,
    last_tick: Option<Time>,
    /// The latest time the driver has given (a tick's or a message's).
    clock: Time,
    frozen: bool,
    layout: Option<Layout>,
    /// The layout's cells, flattened once per layout (every tick reads them).
    cells: Vec<CellView>,
    later: Vec<(String, usize)>,
    forward: migration::Forwarding,
    /// Cellapps known dead: nothing from them is taken any more.
    dead: std::collections::BTreeSet<AppId>,
    tombs: ghosts::Tombs,
    /// The cells as the last ghosting pass read them (the reals' leeway
    /// holds while they stay so).
    ghost_geometry: ghosts::Geometry,
    handoffs_us: Vec<u32>,
    /// Messages refused for who sent them.
    refusals: channel::Refusals,
    outbox: Vec<(AppId, AppMsg)>,
    to_clients: BTreeMap<AppId, Vec<ClientPacket>>,
    scratch_ids: Vec<EntityId>,
    /// Where a message's ghost moves found their ghosts.
    scratch_slots: Vec<Option<usize>>,
    scratch_out: WitnessOut,
    briefs: Vec<Brief>,
    scratch_places: Vec<u32>,
    /// Slots of the entries with a witness, gathered each tick.
    scratch_watchers: Vec<usize>,
    stats: CellStats,
    meter: Meter,
    /// Migrations counted into the load so far.
    migrations_seen: u64,
    /// Offloads and onloads as of the last load report.
    migrations_reported: (u64, u64),
    /// Whether the manager records the world: every real's position goes
    /// with each load report.
    recording: bool,
    /// Offloads since the last load report, by destination.
    flows: BTreeMap<AppId, u32>,
    retired: bool,
    #[cfg(feature = "faults")]
    faults: Faults,
}

impl Cell {
    /// A cell with no entities.
    pub fn new(defs: &Definitions, behaviors: Behaviors, cfg: CellConfig, ids: IdBlock) -> Cell {
        let types: Vec<TypeInfo> = defs
            .types
            .iter()
            .map(|t| {
                let pick = |f: &dyn Fn(&tessera::defs::PropDef) -> bool| -> Vec<u16> {
                    t.properties
                        .iter()
                        .filter(|p| f(p))
                        .map(|p| p.index)
                        .collect()
                };
                TypeInfo {
                    behavior: behaviors.get(&t.name).cloned(),
                    public: pick(&|p| p.flags.other_clients()),
                    own: pick(&|p| p.flags.own_client() && p.flags.on_cell()),
                    cell: pick(&|p| p.flags.on_cell()),
                    ghosted: pick(&|p| p.flags.on_ghosts()),
                    detail: Detail::of(t),
                    def: t.clone(),
                }
            })
            .collect();
        let [x0, z0, x1, z1] = cfg.bounds;
        // Grid buckets of a quarter AoI: a query scans few entities outside its circle.
        let hint = (defs.max_aoi_radius() / 4.0).max(8.0);
        Cell {
            index: new_index(cfg.index, (Vec2::new(x0, z0), Vec2::new(x1, z1)), hint),
            rng: ChaCha8Rng::seed_from_u64(cfg.seed),
            cfg,
            has_behaviors: types.iter().any(|t: &TypeInfo| t.behavior.is_some()),
            witnessed: false,
            types,
            entries: Vec::new(),
            slot: FxHashMap::default(),
            index_sync: IndexSync::default(),
            inbox: Default::default(),
            fresh: Vec::new(),
            fx: Vec::new(),
            overlay: Default::default(),
            aoi_changes: Vec::new(),
            max_aoi: defs.max_aoi_radius(),
            ids: IdPool::new(ids),
            tick: 0,
            last_tick: None,
            clock: Time(0),
            frozen: false,
            layout: None,
            cells: Vec::new(),
            later: Vec::new(),
            forward: Default::default(),
            dead: Default::default(),
            tombs: Default::default(),
            ghost_geometry: Default::default(),
            handoffs_us: Vec::new(),
            refusals: Default::default(),
            outbox: Vec::new(),
            to_clients: BTreeMap::new(),
            scratch_ids: Vec::new(),
            scratch_slots: Vec::new(),
            scratch_out: WitnessOut::default(),
            briefs: Vec::new(),
            scratch_places: Vec::new(),
            scratch_watchers: Vec::new(),
            stats: CellStats::default(),
            meter: Meter::default(),
            migrations_seen: 0,
            migrations_reported: (0, 0),
            recording: false,
            flows: BTreeMap::new(),
            retired: false,
            #[cfg(feature = "faults")]
            faults: Faults::default(),
        }
    }

    /// Plants deliberate defects (tests of the simulator's checks).
    #[cfg(feature = "faults")]
    pub fn plant(&mut self, faults: Faults) {
        self.faults = faults;
    }

    /// Whether a planted defect is on (never, without the `faults` feature).
    #[allow(unused_variables)]
    fn faulty(&self, which: fn(&Faults) -> bool) -> bool {
        #[cfg(feature = "faults")]
        return which(&self.faults);
        #[cfg(not(feature = "faults"))]
        false
    }

    /// The settings.
    pub fn config(&self) -> &CellConfig {
        &self.cfg
    }

    /// Counts for load reports.
    pub fn stats(&self) -> CellStats {
        let mut stats = CellStats {
            reals: 0,
            ghosts: 0,
            witnesses: 0,
            ..self.stats
        };
        for r in &self.entries {
            if r.is_ghost() {
                stats.ghosts += 1;
            } else {
                stats.reals += 1;
            }
            stats.witnesses += usize::from(r.witness.is_some());
        }
        stats
    }

    /// Every real's id, place on the ground (x, z) and whether a client
    /// plays it, in no particular order: what a recording samples and a
    /// density map counts.
    pub fn spots(&self) -> impl Iterator<Item = (EntityId, [f32; 2], bool)> + '_ {
        self.entries
            .iter()
            .filter(|r| !r.is_ghost())
            .map(|r| (r.id, [r.pos.x, r.pos.z], r.witness.is_some()))
    }

    /// Ticks run so far.
    pub fn ticks(&self) -> u64 {
        self.tick
    }

    /// Stops (or restarts) server-driven behaviour; client input still applies.
    pub fn set_frozen(&mut self, frozen: bool) {
        self.frozen = frozen;
    }

    /// Gives the cell more entity ids.
    pub fn add_ids(&mut self, ids: IdBlock) {
        self.ids.grant(ids);
    }

    /// Every real, as it is now.
    pub fn snapshot(&self) -> Vec<EntitySnapshot> {
        let mut all: Vec<_> = self
            .entries
            .iter()
            .filter(|r| !r.is_ghost())
            .map(|r| EntitySnapshot {
                id: r.id,
                type_id: r.type_id,
                pos: r.pos,
                yaw: r.yaw,
                aoi: r.witness.as_ref().map(|w| w.radius),
                props: r.props.clone(),
            })
            .collect();
        all.sort_by_key(|s| s.id);
        all
    }

    /// Takes what the cell has to send.
    pub fn drain(&mut self) -> Vec<(AppId, AppMsg)> {
        std::mem::take(&mut self.outbox)
    }

    fn clamp(&self, mut pos: Vec3) -> Vec3 {
        let [x0, z0, x1, z1] = self.cfg.bounds;
        if !pos.is_finite() {
            pos = Vec3::new((x0 + x1) / 2.0, 0.0, (z0 + z1) / 2.0);
        }
        Vec3::new(pos.x.clamp(x0, x1), pos.y, pos.z.clamp(z0, z1))
    }

    fn add_real(&mut self, mut real: Entry) {
        real.pos = self.clamp(real.pos);
        let i = self.entries.len();
        if !self.index_sync.stale {
            self.index.insert(key(i), xz(real.pos));
        }
        self.slot.insert(real.id, i);
        self.entries.push(real);
    }

    fn remove_real(&mut self, id: EntityId) -> Option<Entry> {
        let i = self.slot.remove(&id)?;
        let last = self.entries.len() - 1;
        let real = self.entries.swap_remove(i);
        let indexed = !self.index_sync.stale;
        if indexed {
            self.index.remove(key(last));
        }
        if let Some(moved) = self.entries.get(i) {
            // The last real took slot i: re-key it in the index.
            self.slot.insert(moved.id, i);
            if indexed {
                self.index.remove(key(i));
                self.index.insert(key(i), xz(moved.pos));
            }
        }
        Some(real)
    }

    /// The layout this cell acts on, once the manager has sent one.
    pub fn layout(&self) -> Option<&Layout> {
        self.layout.as_ref()
    }

    /// Where this cellapp's own area is: its first cell's rectangle in the
    /// layout, or the whole space before a layout arrives.
    pub fn home(&self) -> [f32; 4] {
        self.cells
            .iter()
            .find(|c| c.app == self.cfg.app)
            .map_or(self.cfg.bounds, |c| {
                [c.rect.x0, c.rect.z0, c.rect.x1, c.rect.z1]
            })
    }

    /// Creates `n` server-driven entities once the layout says where this
    /// cellapp's area is.
    pub fn spawn_when_placed(&mut self, type_name: &str, n: usize) {
        if self.layout.is_some() {
            self.spawn(type_name, n);
        } else {
            self.later.push((type_name.to_string(), n));
        }
    }

    /// Creates `n` server-driven entities of type `type_name` at random places
    /// in this cellapp's area, and runs their `created` hooks. Returns how
    /// many were made (fewer if ids ran out).
    pub fn spawn(&mut self, type_name: &str, n: usize) -> usize {
        let [x0, z0, x1, z1] = self.home();
        let mut made = 0;
        for _ in 0..n {
            let pos = Vec3::new(
                self.rng.random_range(x0..=x1),
                0.0,
                self.rng.random_range(z0..=z1),
            );
            if self.make(type_name, pos).is_none() {
                break;
            }
            made += 1;
        }
        self.settle(self.now());
        made
    }

    /// Creates one server-driven entity of type `type_name` at `pos` (which
    /// should lie in this cellapp's area: the simulator's replays place
    /// recorded entities where they were) and runs its `created` hook.
    /// `None` if there is no such type or ids ran out.
    pub fn spawn_at(&mut self, type_name: &str, pos: Vec3) -> Option<EntityId> {
        let id = self.make(type_name, pos)?;
        self.settle(self.now());
        Some(id)
    }

    /// Adds a new real of `type_name` at `pos` with the type's defaults.
    fn make(&mut self, type_name: &str, pos: Vec3) -> Option<EntityId> {
        let info = self.types.iter().find(|t| t.def.name == type_name)?;
        let (type_id, props) = (info.def.id, info.def.defaults());
        let id = self.ids.take()?;
        self.add_real(Entry::new(id, type_id, pos, 0.0, props, self.tick));
        self.fresh.push(id);
        Some(id)
    }

    /// Puts entries that are near each other in space near each other in
    /// memory (Z-order of their position), so a witness's candidates are read
    /// from a few cache lines instead of all over the cell. Entities move
    /// slowly, so doing it every [`REORDER_TICKS`] ticks keeps the order good.
    /// The reals come first, then the ghosts: the passes that skip ghosts
    /// meet them in one run, not at random (2-5 % of moving-hotspot).
    fn reorder(&mut self) {
        let [x0, z0, ..] = self.cfg.bounds;
        self.entries.sort_by_cached_key(|r| {
            let gx = ((r.pos.x - x0) / REORDER_CELL).clamp(0.0, 65535.0) as u32;
            let gz = ((r.pos.z - z0) / REORDER_CELL).clamp(0.0, 65535.0) as u32;
            (r.is_ghost(), morton(gx, gz), r.id)
        });
        for (i, r) in self.entries.iter().enumerate() {
            self.slot.insert(r.id, i);
        }
        self.index_sync.stale = true;
    }

    /// Brings the index's positions up to date before a query.
    fn sync_index(&mut self) {
        self.index_sync
            .sync(self.index.as_mut(), &self.entries, self.tick);
    }

    fn cell_state(&self, real: &Entry) -> CellState {
        let cell = self
            .types
            .get(real.type_id.0 as usize)
            .map(|t| t.cell.as_slice())
            .unwrap_or(&[]);
        CellState {
            pos: real.pos.to_array(),
            yaw: real.yaw,
            props: cell
                .iter()
                .filter_map(|&i| real.props.get(i as usize).map(|v| (i, v.clone())))
                .collect(),
        }
    }

    fn queue_for_client(
        &mut self,
        base: AppId,
        entity: EntityId,
        delivery: Delivery,
        bytes: Vec<u8>,
    ) {
        let seq = match delivery {
            Delivery::Reliable => self
                .slot
                .get(&entity)
                .and_then(|&i| self.entries.get_mut(i))
                .map_or(0, |r| r.channel.number_frame()),
            Delivery::Datagram => 0,
        };
        self.to_clients.entry(base).or_default().push(ClientPacket {
            entity,
            delivery,
            seq,
            bytes,
        });
    }

    /// Applies one message from another app.
    pub fn handle(&mut self, now: Time, from: AppId, msg: AppMsg) {
        self.clock = self.clock.max(now);
        if self.dead.contains(&from) {
            // Still in flight from a process now declared dead: whatever it
            // says is void (its entities are being restored elsewhere).
            return;
        }
        match msg {
            AppMsg::CreateEntity {
                entity,
                type_id,
                state,
                version,
            } => {
                self.create_from_base(from, entity, type_id, state, version);
                self.settle(now);
            }
            AppMsg::Ids(block) => self.add_ids(block),
            AppMsg::ToEntity { entity, seq, msg } => self.on_channel(entity, seq, msg),
            AppMsg::Rebase {
                entity,
                base,
                dead,
                seq,
            } => self.rebase(entity, base, dead, seq),
            AppMsg::GhostCreate(g) => self.ghost_create(*g),
            AppMsg::GhostChecks(checks) => self.ghost_checks(from, &checks),
            AppMsg::GhostsStale(entities) => self.ghosts_stale(from, &entities),
            AppMsg::GhostCreates(states) => {
                for g in states {
                    self.ghost_create(g);
                }
            }
            AppMsg::GhostUpdate {
                entity,
                stamp,
                pos,
                yaw,
                props,
            } => self.ghost_update(entity, stamp, Vec3::from_array(pos), yaw, props),
            AppMsg::GhostDelete { entity, stamp } => self.ghost_delete(entity, stamp),
            AppMsg::GhostMoves(moves) => self.ghost_moves(&moves),
            AppMsg::Onload(o) => self.onload(now, *o),
            AppMsg::Forget { entity } => self.forget(entity),
            AppMsg::Record(on) if from == MANAGER => self.recording = on,
            AppMsg::Layout { layout, .. } => {
                if self.layout.as_ref().is_none_or(|l| layout.epoch > l.epoch) {
                    self.cells = layout.cells();
                    self.layout = Some(layout);
                    for (ty, n) in std::mem::take(&mut self.later) {
                        self.spawn(&ty, n);
                    }
                }
            }
            AppMsg::Retired if from == MANAGER => self.retired = true,
            AppMsg::AppDown { app } => self.app_down(from, app),
            AppMsg::Mail(mail) => self.mail_arrived(now, *mail),
            AppMsg::Broadcast {
                entity,
                method,
                args,
            } => self.broadcast_arrived(entity, method, args),
            other => {
                tracing::debug!(?from, msg = ?std::mem::discriminant(&other), "cell ignores message");
            }
        }
    }

    fn create_from_base(
        &mut self,
        base: AppId,
        entity: EntityId,
        type_id: TypeId,
        state: CellState,
        version: u32,
    ) {
        if self.types.get(type_id.0 as usize).is_none() {
            tracing::warn!(%entity, ?type_id, "create for an unknown type refused");
            return;
        }
        if let Some(&i) = self.slot.get(&entity) {
            if !self.entries[i].is_ghost() {
                tracing::warn!(%entity, "create for an entity that is already real here refused");
                return;
            }
            // The base re-creates an entity whose real is gone: a ghost
            // left here must not block it.
            self.remove_real(entity);
        }
        self.forward.clear(entity);
        self.tombs.lift(entity);
        let Some(info) = self.types.get(type_id.0 as usize) else {
            tracing::warn!(%entity, ?type_id, "create for an unknown type refused");
            return;
        };
        let mut props = info.def.defaults();
        for (i, v) in state.props {
            if let (Some(slot), Some(def)) = (
                props.get_mut(i as usize),
                info.def.properties.get(i as usize),
            ) {
                if def.flags.on_cell() && v.check(&def.ty).is_ok() {
                    *slot = v;
                }
            }
        }
        let witness = info
            .def
            .has_client
            .then(|| Box::new(Witness::new(info.def.aoi_radius)));
        let own = info.own.clone();
        // Clients here may know the entity from before (restored from its
        // backup after its cellapp died): they hear its properties again.
        let renewed = info.public.clone();
        let mut real = Entry::new(
            entity,
            type_id,
            Vec3::from_array(state.pos),
            if state.yaw.is_finite() {
                state.yaw
            } else {
                0.0
            },
            props,
            self.tick,
        );
        real.base = Some(base);
        real.version = version;
        self.witnessed |= witness.is_some();
        real.witness = witness;
        real.set_dirty(renewed);
        real.pace = Pace::full(self.limit(type_id), self.clock);
        // The own client learns its cell-side properties.
        let own_props: Vec<PropValue> = own
            .iter()
            .filter_map(|&i| real.props.get(i as usize).map(|v| (i, v.clone())))
            .collect();
        let placed = self.clamp(real.pos);
        let (has_witness, yaw, at) = (real.witness.is_some(), real.yaw, real.pos);
        self.add_real(real);
        self.fresh.push(entity);
        if has_witness {
            self.queue_for_client(
                base,
                entity,
                Delivery::Reliable,
                encode_body(&ServerMsg::Props {
                    entity,
                    props: own_props,
                }),
            );
            if placed != at {
                self.queue_for_client(
                    base,
                    entity,
                    Delivery::Reliable,
                    encode_body(&ServerMsg::Corrected {
                        pos: placed.to_array(),
                        yaw,
                        reason: "saved position is outside the space".into(),
                    }),
                );
            }
        }
    }

    fn client_move(&mut self, entity: EntityId, seq: u32, pos: Vec3, yaw: f32) {
        let (bounds, tick, now) = (self.cfg.bounds, self.tick, self.clock);
        let Some(&i) = self.slot.get(&entity) else {
            return;
        };
        let limit = self.limit(self.entries[i].type_id);
        let real = &mut self.entries[i];
        if real.witness.is_none() {
            return;
        }
        if let Err(e) = real.client_move(now, limit, seq, pos, yaw, bounds, tick) {
            let (at, yaw, base) = (real.pos, real.yaw, real.base);
            self.stats.moves_refused += 1;
            tracing::debug!(%entity, reason = %e, "client move refused");
            if let Some(base) = base {
                self.queue_for_client(
                    base,
                    entity,
                    Delivery::Reliable,
                    encode_body(&ServerMsg::Corrected {
                        pos: at.to_array(),
                        yaw,
                        reason: e.to_string(),
                    }),
                );
            }
        }
    }

    /// A cell method called on the channel: by the entity's client (which
    /// may call only exposed methods), or by game code on its base.
    fn call(&mut self, entity: EntityId, method: u16, args: &[Value], caller: Caller) {
        let Some(&i) = self.slot.get(&entity) else {
            return;
        };
        let real = &self.entries[i];
        if real.is_ghost() {
            return;
        }
        let Some(info) = self.types.get(real.type_id.0 as usize) else {
            return;
        };
        let Some(m) = info.def.methods.get(method as usize) else {
            return;
        };
        if caller == Caller::Client && !m.exposed {
            // The base checked this too, but the cell does not take its
            // word for it.
            self.refusals.not_exposed += 1;
            tracing::warn!(%entity, method = %m.name, "a client's call of a method not exposed refused");
            return;
        }
        if m.side != Side::Cell || m.check_args(args).is_err() {
            tracing::warn!(%entity, method = %m.name, "cell call with bad arguments dropped");
            return;
        }
        if caller == Caller::Client {
            // A client may name only entities it has been shown (or its own).
            let mut named = Vec::new();
            args.iter().for_each(|a| a.entities(&mut named));
            let seen =
                |e: &EntityId| *e == entity || real.witness.as_ref().is_some_and(|w| w.knows(*e));
            if let Some(&unseen) = named.iter().find(|e| !seen(e)) {
                self.refusals.unseen_entity += 1;
                tracing::warn!(%entity, method = %m.name, named = %unseen, "a client's call naming an entity it has not seen refused");
                if let Some(base) = real.base {
                    self.outbox.push((
                        base,
                        AppMsg::UnseenEntity {
                            entity,
                            method,
                            named: unseen,
                        },
                    ));
                }
                return;
            }
        }
        self.run_call(entity, method, args, caller);
    }

    /// The pace limit of a type's client moves.
    pub(crate) fn limit(&self, type_id: TypeId) -> Limit {
        Limit {
            max_speed: self
                .types
                .get(type_id.0 as usize)
                .map_or(0.0, |t| t.def.max_speed),
            window_s: self.cfg.move_window.as_secs_f32(),
        }
    }

    /// Runs one tick: behaviours, index, witnesses, backups.
    pub fn tick(&mut self, now: Time) {
        self.tick += 1;
        let tick = self.tick;
        self.last_tick = Some(now);
        self.clock = self.clock.max(now);
        self.run_behaviors(now);
        if tick % REORDER_TICKS == 1 {
            self.reorder();
        }
        let outside = self.run_ghosting();
        self.run_offload(tick, &outside);
        if self.witnessed {
            self.run_witnesses(tick, now);
            self.run_aoi_hooks(now);
        }
        let census = self.close_tick(tick);
        self.witnessed = census.witnesses > 0;
        for (base, packets) in std::mem::take(&mut self.to_clients) {
            // Stream frames go on the link's session; datagrams beside it
            // (a lost one is superseded by the next tick's).
            let (reliable, datagrams): (Vec<_>, Vec<_>) = packets
                .into_iter()
                .partition(|p| p.delivery == Delivery::Reliable);
            if !reliable.is_empty() {
                self.outbox.push((base, AppMsg::ToClients(reliable)));
            }
            if !datagrams.is_empty() {
                self.outbox.push((base, AppMsg::ClientDatagrams(datagrams)));
            }
        }
        if self.ids.should_ask() {
            self.outbox.push((MANAGER, AppMsg::NeedIds));
        }
        self.stats.ticks = tick;
        self.measure(tick, census);
    }

    /// The model's costs: the configured ones, or the defaults as relative
    /// weights when the load is measured.
    fn costs(&self) -> CostModel {
        match self.cfg.load {
            LoadSource::Model(m) => m,
            LoadSource::Measured => CostModel::default(),
        }
    }

    /// Closes the tick's load, and once a second reports it.
    fn measure(&mut self, tick: u64, census: Census) {
        let m = self.costs();
        let Census {
            reals,
            ghosts,
            witnesses,
        } = census;
        let migrations = self.stats.offloads + self.stats.onloads;
        let new = migrations - self.migrations_seen;
        self.migrations_seen = migrations;
        let units = reals as f32 * m.real_us
            + witnesses as f32 * m.witness_us
            + ghosts as f32 * m.ghost_us
            + new as f32 * m.migration_us;
        let period_us = 1e6 / f32::from(self.cfg.tick_hz.max(1));
        self.meter.tick(self.cfg.load, units, period_us);
        if !tick.is_multiple_of(u64::from(self.cfg.tick_hz.max(1))) {
            return;
        }
        let Some(layout) = &self.layout else { return };
        let Some(own) = self.cells.iter().find(|c| c.app == self.cfg.app) else {
            return;
        };
        let points: Vec<(f32, f32, f32)> = self
            .entries
            .iter()
            .filter(|r| !r.is_ghost())
            .map(|r| {
                let cost = m.real_us
                    + if r.witness.is_some() {
                        m.witness_us
                    } else {
                        0.0
                    };
                (r.pos.x, r.pos.z, cost)
            })
            .collect();
        let held =
            reals as f32 * m.real_us + witnesses as f32 * m.witness_us + ghosts as f32 * m.ghost_us;
        let mut report = self
            .meter
            .report(own.cell, layout.epoch, &own.rect, &points, held);
        report.reals = reals;
        report.ghosts = ghosts;
        report.witnesses = witnesses;
        let (out, into) = self.migrations_reported;
        report.migrations_out = (self.stats.offloads - out).min(u64::from(u32::MAX)) as u32;
        report.migrations_in = (self.stats.onloads - into).min(u64::from(u32::MAX)) as u32;
        self.migrations_reported = (self.stats.offloads, self.stats.onloads);
        report.flows = std::mem::take(&mut self.flows)
            .into_iter()
            .take(tessera::balance::MAX_FLOWS)
            .collect();
        self.outbox
            .push((MANAGER, AppMsg::CellLoad(Box::new(report))));
        if self.recording {
            let spots = self.spots().collect();
            self.outbox.push((MANAGER, AppMsg::Positions(spots)));
        }
    }

    /// Notes time the driver measured the cell working (ticks and messages).
    pub fn note_work(&mut self, work: std::time::Duration) {
        self.meter.add_work(work.as_secs_f64() * 1e6);
    }

    /// The smoothed load: share of the tick period spent working.
    pub fn load(&self) -> f32 {
        self.meter.load()
    }

    /// Ticks whose load was over the tick period.
    pub fn ticks_over_budget(&self) -> u64 {
        self.meter.over_budget()
    }

    /// Whether the manager has taken this cellapp's cell away after it
    /// asked to retire.
    pub fn is_retired(&self) -> bool {
        self.retired
    }

    fn run_witnesses(&mut self, tick: u64, now: Time) {
        self.sync_index();
        let budget = self.cfg.budget;
        let mut out = std::mem::take(&mut self.scratch_out);
        let mut ids = std::mem::take(&mut self.scratch_ids);
        let mut places = std::mem::take(&mut self.scratch_places);
        self.briefs.clear();
        let mut watchers = std::mem::take(&mut self.scratch_watchers);
        watchers.clear();
        for (i, r) in self.entries.iter().enumerate() {
            self.briefs.push(Brief {
                id: r.id,
                type_id: r.type_id,
                pos: r.pos,
                yaw: r.yaw,
                moved_tick: r.moved_tick,
                dirty: r.changed(),
            });
            if r.witness.is_some() {
                watchers.push(i);
            }
        }
        for &i in &watchers {
            let (id, center, base) = {
                let r = &self.entries[i];
                (r.id, r.pos, r.base)
            };
            let Some(mut witness) = self.entries[i].witness.take() else {
                continue;
            };
            out.clear();
            // Own-client messages first: they were queued during the tick.
            out.reliable.append(&mut self.entries[i].to_own_client);
            let own_dirty: Vec<PropValue> = {
                let r = &self.entries[i];
                let own = self
                    .types
                    .get(r.type_id.0 as usize)
                    .map(|t| t.own.as_slice())
                    .unwrap_or(&[]);
                r.dirty()
                    .iter()
                    .filter(|d| own.contains(d))
                    .filter_map(|&d| r.props.get(d as usize).map(|v| (d, v.clone())))
                    .collect()
            };
            if !own_dirty.is_empty() {
                out.reliable.push(encode_body(&ServerMsg::Props {
                    entity: id,
                    props: own_dirty,
                }));
            }
            ids.clear();
            self.index
                .within(xz(center), witness.query_radius(&budget), &mut ids);
            // The index's keys are slots, the briefs' places.
            places.clear();
            places.extend(ids.iter().filter_map(|k| u32::try_from(k.0).ok()));
            let scene = CellScene {
                entries: &self.entries,
                briefs: &self.briefs,
                slot: &self.slot,
                types: &self.types,
            };
            let clock = Clock {
                tick,
                now_us: now.0,
                hz: self.cfg.tick_hz,
            };
            let candidates = Candidates {
                table: &self.briefs,
                places: Some(&places),
            };
            witness.update_briefs(id, center, clock, candidates, scene, &budget, &mut out);
            self.entries[i].witness = Some(witness);
            if !(out.entered.is_empty() && out.left.is_empty()) && self.has_behaviors {
                self.aoi_changes.push((
                    id,
                    std::mem::take(&mut out.entered),
                    std::mem::take(&mut out.left),
                ));
            }
            if let Some(base) = base {
                let packets = self.to_clients.entry(base).or_default();
                let r = &mut self.entries[i];
                for bytes in out.reliable.drain(..) {
                    packets.push(ClientPacket {
                        entity: id,
                        delivery: Delivery::Reliable,
                        seq: r.channel.number_frame(),
                        bytes,
                    });
                }
                for bytes in out.datagrams.drain(..) {
                    packets.push(ClientPacket {
                        entity: id,
                        delivery: Delivery::Datagram,
                        seq: 0,
                        bytes,
                    });
                }
            }
        }
        self.scratch_out = out;
        self.scratch_ids = ids;
        self.scratch_places = places;
        self.scratch_watchers = watchers;
    }

    /// The tick's last pass over the entries: backs up the reals whose
    /// turn it is, forgets the tick's property changes and counts what the
    /// cell holds (one pass: each costs a read of every entry).
    fn close_tick(&mut self, tick: u64) -> Census {
        let period = u64::from(self.cfg.backup_ticks.max(1));
        let mut census = Census::default();
        for i in 0..self.entries.len() {
            let r = &self.entries[i];
            if r.is_ghost() {
                census.ghosts += 1;
                // A ghost has nothing to back up: its second line is not
                // read.
                self.entries[i].clear_dirty();
                continue;
            }
            census.reals += 1;
            census.witnesses += u32::from(r.witness.is_some());
            // Spread over the period: each real has its own phase. (The
            // division is not made for the many without a base.)
            let due = |r: &Entry| r.id.0.wrapping_add(tick).is_multiple_of(period);
            if let Some(base) = r.base.filter(|_| due(r)) {
                let state = self.cell_state(r);
                self.outbox.push((
                    base,
                    AppMsg::Backup {
                        entity: r.id,
                        state,
                        applied: r.channel.applied(),
                    },
                ));
            }
            // Only a changed entry is written to.
            self.entries[i].clear_dirty();
        }
        census
    }
}
