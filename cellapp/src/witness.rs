//! The witness: the area of interest of one client-controlled real, and the
//! one downstream byte budget of its client.
//!
//! Each tick the witness compares what its client knows with what is within
//! its radius and decides what closes the gap: *enter* (reliable, with the
//! entity's index for position updates), *leave* (reliable, with a
//! hysteresis band on the radius), properties (reliable), positions
//! (datagrams, a few bytes each: quantized from the packet's origin) and
//! *rests* (the same few bytes, reliably, for entities that stopped; an
//! entity out of a datagram's reach gets an exact `Rest` instead).
//!
//! Everything the client is sent counts against its budget, bytes per
//! second: first what the cell queued for the client's own entity (its
//! properties, calls, corrections), which always goes; then the witness's
//! work in order of urgency — leaves first, then by level of detail (the
//! nearest band before any farther one, so a crowd slows far entities and
//! never near ones), within a band by distance over staleness (an entity
//! that waited moves up), and last the rests that only confirm a position
//! sent by datagram. What does not fit waits for the next tick: an enter
//! or a property is never dropped, only later; a position is simply sent
//! fresh when its turn comes. A tick that overspends (one message bigger
//! than what was left) pays it back from the next tick's share, so over any
//! stretch the client is sent at most its budget plus one message.
//!
//! Levels of detail ([`Detail`]) come from the definitions: per band, how
//! many ticks between position updates and which properties are sent. An
//! entity that crosses into a band is sent the band's properties its client
//! lacks.

mod detail;
mod indices;

pub use detail::{Detail, Level};

use glam::Vec3;
use indices::Indices;
use tessera::defs::TypeId;
use tessera::frame::encode_body;
use tessera::proto::app::{KnownState, WitnessState};
use tessera::proto::client::{
    write_positions, Frame, PosUpdate, PropValue, ServerMsg, INDEX_QUARANTINE_S,
};
use tessera::{EntityId, Value};

/// The budget a client gets unless configured: 8,000 bytes a second
/// (64 kbit/s, three times BigWorld's default). At ten ticks a second that
/// is 800 bytes a tick: about ninety position updates, so the nearest
/// ninety movers of a crowd are updated every tick; and a baseapp relaying
/// a thousand clients carries at most 8 MB/s.
pub const DEFAULT_CLIENT_BUDGET: u32 = 8_000;

/// What one client may be sent.
#[derive(Clone, Copy, Debug)]
pub struct Budget {
    /// Bytes a second, everything counted: each stream message's body and
    /// its 4-byte length, each datagram's payload (QUIC's own overhead is
    /// not counted).
    pub bytes_per_sec: u32,
    /// Largest datagram payload.
    pub datagram: usize,
    /// Extra distance beyond the radius before an entity leaves.
    pub hysteresis: f32,
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            bytes_per_sec: DEFAULT_CLIENT_BUDGET,
            datagram: 1100,
            hysteresis: 5.0,
        }
    }
}

impl Budget {
    /// No limit but the datagram size.
    pub fn unlimited(hysteresis: f32) -> Budget {
        Budget {
            bytes_per_sec: u32::MAX,
            datagram: 1100,
            hysteresis,
        }
    }

    /// Bytes per tick at `hz` ticks a second.
    pub fn per_tick(&self, hz: u16) -> i64 {
        i64::from(self.bytes_per_sec) / i64::from(hz.max(1))
    }
}

/// When a witness update happens.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    /// The cell's tick.
    pub tick: u64,
    /// Server time, microseconds since the Unix epoch.
    pub now_us: u64,
    /// Ticks per second.
    pub hz: u16,
}

/// What the witness needs to know of an entity it may see.
#[derive(Clone, Copy, Debug)]
pub struct Visible<'a> {
    /// Its type.
    pub type_id: TypeId,
    /// Position.
    pub pos: Vec3,
    /// Facing.
    pub yaw: f32,
    /// All its properties, by index.
    pub props: &'a [Value],
    /// Indices of properties changed this tick.
    pub dirty: &'a [u16],
    /// The tick it last moved.
    pub moved_tick: u64,
    /// Its type's levels of detail.
    pub detail: &'a Detail,
}

/// The hot part of an entity's state: what the witness reads for every
/// candidate every tick. Kept small so a tick's reads stay in cache.
#[derive(Clone, Copy, Debug)]
pub struct Brief {
    /// Its id.
    pub id: EntityId,
    /// Its type.
    pub type_id: TypeId,
    /// Position.
    pub pos: Vec3,
    /// Facing.
    pub yaw: f32,
    /// The tick it last moved.
    pub moved_tick: u64,
    /// Whether any property changed this tick.
    pub dirty: bool,
}

/// The candidates of one update: places in a table of hot state. A cell
/// passes the tick's table of all its entries and the places its index
/// found, so no state is copied for each witness.
#[derive(Clone, Copy, Debug)]
pub struct Candidates<'c> {
    /// Hot state, by place.
    pub table: &'c [Brief],
    /// The candidates' places in `table`; `None` for every place.
    pub places: Option<&'c [u32]>,
}

impl<'c> Candidates<'c> {
    /// Every entity of `table`.
    pub fn all(table: &'c [Brief]) -> Candidates<'c> {
        Candidates {
            table,
            places: None,
        }
    }

    /// Each candidate with its place.
    fn each(&self) -> impl Iterator<Item = (u32, &'c Brief)> + '_ {
        let table = self.table;
        let listed = self
            .places
            .into_iter()
            .flatten()
            .filter_map(move |&p| table.get(p as usize).map(|b| (p, b)));
        let every = self
            .places
            .is_none()
            .then(|| table.iter().enumerate().map(|(p, b)| (p as u32, b)))
            .into_iter()
            .flatten();
        listed.chain(every)
    }
}

/// Property data of an entity, read only when the witness has to send it.
#[derive(Clone, Copy, Debug)]
pub struct PropsView<'a> {
    /// All its properties, by index.
    pub props: &'a [Value],
    /// Indices of properties changed this tick.
    pub dirty: &'a [u16],
}

/// Where a witness looks entities up.
pub trait Scene<'a> {
    /// The hot fields of an entity, if it exists.
    fn brief(&self, id: EntityId) -> Option<Brief>;
    /// Its properties, if it exists.
    fn props(&self, id: EntityId) -> Option<PropsView<'a>>;
    /// The levels of detail of an entity's type.
    fn detail(&self, id: EntityId, type_id: TypeId) -> Option<&'a Detail>;
}

/// Any function from id to [`Visible`] is a scene (handy in tests).
impl<'a, F: Fn(EntityId) -> Option<Visible<'a>>> Scene<'a> for F {
    fn brief(&self, id: EntityId) -> Option<Brief> {
        self(id).map(|v| Brief {
            id,
            type_id: v.type_id,
            pos: v.pos,
            yaw: v.yaw,
            moved_tick: v.moved_tick,
            dirty: !v.dirty.is_empty(),
        })
    }
    fn props(&self, id: EntityId) -> Option<PropsView<'a>> {
        self(id).map(|v| PropsView {
            props: v.props,
            dirty: v.dirty,
        })
    }
    fn detail(&self, id: EntityId, _: TypeId) -> Option<&'a Detail> {
        self(id).map(|v| v.detail)
    }
}

/// Where the client stands with an entity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sight {
    /// Within the radius, its enter not sent yet.
    Waiting,
    /// The client has it.
    Shown,
    /// The client has it, its leave not sent yet.
    Leaving,
    /// Its leave went this tick.
    Gone,
}

#[derive(Clone, Copy, Debug)]
struct Known {
    state: Sight,
    index: u32,
    /// The position last sent (exact; a datagram carries it quantized).
    sent: Vec3,
    sent_yaw: f32,
    /// When the client was last current on it (or, while waiting, since
    /// when it waits).
    sent_tick: u64,
    /// The last position went by datagram.
    unconfirmed: bool,
    /// Which public properties the client holds current values of (a bit
    /// per place in the type's [`Detail::public`] list).
    has: u64,
    /// For a known entity of an arriving witness: the digest of those
    /// properties as its client has them (in `Witness::digests`) is still
    /// to be compared with the cell's, the first time the entity is a
    /// candidate here.
    compare: bool,
}

impl Known {
    fn waiting(tick: u64) -> Known {
        Known {
            state: Sight::Waiting,
            index: 0,
            sent: Vec3::ZERO,
            sent_yaw: 0.0,
            sent_tick: tick,
            unconfirmed: false,
            has: 0,
            compare: false,
        }
    }
}

/// Updates after arriving from another cell in which missing entities are
/// kept (see `Witness::grace`): half a second at 10 Hz.
pub const ARRIVAL_GRACE: u8 = 5;

/// Work for one entity in a tick.
const ENTER: u8 = 1;
const PROPS: u8 = 2;
const MOVE: u8 = 4;
const REST: u8 = 8;
const LEAVE: u8 = 16;
/// The band of rests that only confirm a datagram: after every level.
const CONFIRM_TIER: u64 = 0xff;
/// A `Positions` header at most: variant, time, origin, scale, count.
const POSITIONS_HEADER: usize = 1 + 10 + 12 + 4 + 2;
/// Bytes a stream message costs beyond its body: its length.
const FRAME_HEADER: usize = 4;
/// The fewest bytes any item costs: a `Leave` of a small id (variant, id,
/// length) or a position update.
const SMALLEST_ITEM: usize = 6;

/// One entity's work: (tier << 32 | priority bits, slot in `next`,
/// place in the candidates' table, what).
type Item = (u64, u32, u32, u8);

/// A digest of the public properties in `has` (FNV-1a over their
/// encoding): equal digests mean the client has what the cell has. Fixed,
/// not seeded, so every cell computes the same one.
fn props_digest(props: &[Value], detail: &Detail, has: u64) -> u64 {
    let mut h = Fnv(0xcbf2_9ce4_8422_2325);
    for i in detail.props_of(has) {
        if let Some(value) = props.get(i as usize) {
            // Writing into the hasher cannot fail.
            let _ = postcard::to_io(&(i, value), &mut h);
        }
    }
    h.0
}

/// FNV-1a, fed by postcard without an intermediate buffer.
struct Fnv(u64);

impl std::io::Write for Fnv {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Client-ready bytes from one witness update.
#[derive(Debug, Default)]
pub struct WitnessOut {
    /// Encoded `ServerMsg`s, in order, for the client's stream.
    pub reliable: Vec<Vec<u8>>,
    /// Encoded `ServerDatagram`s.
    pub datagrams: Vec<Vec<u8>>,
    /// Entities the client was sent an `Enter` for, in order.
    pub entered: Vec<EntityId>,
    /// Entities the client was sent a `Leave` for, in order.
    pub left: Vec<EntityId>,
    /// Working lists of an update, kept from one to the next: a cell
    /// passes one `WitnessOut` to all its witnesses, so these stay in cache
    /// instead of each witness carrying its own.
    scratch: Scratch,
}

/// The working lists of one witness update.
#[derive(Debug, Default)]
struct Scratch {
    /// What the client will know after this update, by id.
    next: Vec<(EntityId, Known)>,
    /// The candidates as (id, place), sorted by id.
    order: Vec<(EntityId, u32)>,
    /// For sorting `order`, then for ranking `items`.
    keys: Vec<u64>,
    /// The tick's work, one item per entity.
    items: Vec<Item>,
    /// The updates of the datagram and the rests being filled.
    batch: Vec<PosUpdate>,
    batch_rests: Vec<PosUpdate>,
}

impl WitnessOut {
    /// Empties every list.
    pub fn clear(&mut self) {
        self.reliable.clear();
        self.datagrams.clear();
        self.entered.clear();
        self.left.clear();
    }

    /// Bytes already queued, as the budget counts them.
    fn cost(&self) -> i64 {
        let r: usize = self.reliable.iter().map(|b| b.len() + FRAME_HEADER).sum();
        let d: usize = self.datagrams.iter().map(Vec::len).sum();
        (r + d) as i64
    }
}

/// The AoI state of one client-controlled entity.
///
/// What the client knows is a list sorted by entity id; each tick it is
/// merged with the sorted candidates, so the work is two sequential passes
/// rather than a hash probe per visible entity.
#[derive(Debug)]
pub struct Witness {
    /// AoI radius in metres.
    pub radius: f32,
    known: Vec<(EntityId, Known)>,
    /// The digests an arriving witness's known entities owe a comparison
    /// with, by id (see `Known::compare`).
    digests: Vec<(EntityId, u64)>,
    indices: Indices,
    /// Bytes sent beyond the budget, paid back from the next ticks.
    deficit: u32,
    /// Updates left in which a known entity missing from the candidates,
    /// last seen within the radius, is kept rather than sent a `Leave`. Set
    /// when the witness arrives from another cell: that cell's ghosts of
    /// entities across other lines may still be on their way (a line that
    /// moves far at once widens the area the cell must ghost), and a leave
    /// then an enter of each would resend whole entities to the client for
    /// nothing.
    grace: u8,
}

impl Witness {
    /// A witness that knows nothing yet.
    pub fn new(radius: f32) -> Witness {
        Witness {
            radius,
            known: Vec::new(),
            digests: Vec::new(),
            indices: Indices::default(),
            deficit: 0,
            grace: 0,
        }
    }

    /// What the client knows, for a witness moving to another cell; ticks
    /// become ages because cells count ticks independently. `props` gives
    /// an entity's properties, those changed this tick (which the client
    /// has not been sent yet) and its levels of detail, for the digests.
    pub fn export<'a>(
        &self,
        tick: u64,
        props: impl Fn(EntityId) -> Option<(&'a [Value], &'a [u16], &'a Detail)>,
    ) -> WitnessState {
        let known = self
            .known
            .iter()
            .filter(|(_, k)| matches!(k.state, Sight::Shown | Sight::Leaving))
            .map(|(id, k)| {
                let owed = k.compare.then(|| self.digest_of(*id)).flatten();
                let (has, digest) = match (owed, props(*id)) {
                    // Not compared here yet: what the client has is what
                    // the cell it came from said.
                    (Some(digest), _) => (k.has, digest),
                    (None, Some((values, dirty, detail))) => {
                        let stale = dirty
                            .iter()
                            .filter_map(|&i| detail.bit(i))
                            .fold(0, |m, b| m | b);
                        let has = k.has & !stale;
                        (has, props_digest(values, detail, has))
                    }
                    (None, None) => (k.has, 0),
                };
                KnownState {
                    entity: *id,
                    index: k.index,
                    sent: k.sent.to_array(),
                    sent_yaw: k.sent_yaw,
                    age: tick.saturating_sub(k.sent_tick).min(u64::from(u32::MAX)) as u32,
                    unconfirmed: k.unconfirmed,
                    has,
                    props: digest,
                }
            })
            .collect();
        WitnessState {
            radius: self.radius,
            known,
            retired: self.indices.export(tick),
            deficit: self.deficit,
        }
    }

    /// A witness arriving from another cell.
    pub fn import(state: &WitnessState, tick: u64) -> Witness {
        let mut w = Witness::new(state.radius);
        w.known = state
            .known
            .iter()
            .map(|k| {
                (
                    k.entity,
                    Known {
                        state: Sight::Shown,
                        index: k.index,
                        sent: Vec3::from_array(k.sent),
                        sent_yaw: k.sent_yaw,
                        sent_tick: tick.saturating_sub(u64::from(k.age)),
                        unconfirmed: k.unconfirmed,
                        has: k.has,
                        compare: true,
                    },
                )
            })
            .collect();
        w.known.sort_by_key(|(id, _)| *id);
        w.known.dedup_by_key(|(id, _)| *id);
        w.digests = state.known.iter().map(|k| (k.entity, k.props)).collect();
        w.digests.sort_by_key(|(id, _)| *id);
        w.digests.dedup_by_key(|(id, _)| *id);
        w.indices = Indices::import(w.known.iter().map(|(_, k)| k.index), &state.retired, tick);
        w.deficit = state.deficit;
        w.grace = ARRIVAL_GRACE;
        w
    }

    /// Forgets the property comparison an imported witness owes its client
    /// (a planted fault for tests; see `Faults::no_witness_refresh`).
    pub fn skip_refresh(&mut self) {
        for (_, k) in &mut self.known {
            k.compare = false;
        }
        self.digests.clear();
    }

    /// The digest the client's copy of `id` came with.
    fn digest_of(&self, id: EntityId) -> Option<u64> {
        let i = self.digests.binary_search_by_key(&id, |(d, _)| *d).ok()?;
        self.digests.get(i).map(|(_, d)| *d)
    }

    /// How many entities the client holds.
    pub fn known_len(&self) -> usize {
        self.known
            .iter()
            .filter(|(_, k)| matches!(k.state, Sight::Shown | Sight::Leaving))
            .count()
    }

    /// Whether the client holds an entity.
    pub fn knows(&self, id: EntityId) -> bool {
        self.known
            .binary_search_by_key(&id, |(k, _)| *k)
            .is_ok_and(|i| matches!(self.known[i].1.state, Sight::Shown | Sight::Leaving))
    }

    /// The radius to query the index with: the AoI plus the leave hysteresis.
    pub fn query_radius(&self, budget: &Budget) -> f32 {
        self.radius + budget.hysteresis
    }

    /// One tick. `candidates` holds every entity within
    /// [`Witness::query_radius`] of `center` (it may hold `me` and more);
    /// `scene` finds an entity's state. What `out` already holds is the
    /// own entity's traffic of the tick, counted first.
    #[allow(clippy::too_many_arguments)]
    pub fn update<'a>(
        &mut self,
        me: EntityId,
        center: Vec3,
        clock: Clock,
        candidates: &[EntityId],
        scene: impl Scene<'a>,
        budget: &Budget,
        out: &mut WitnessOut,
    ) {
        let briefs: Vec<Brief> = candidates
            .iter()
            .filter_map(|&id| scene.brief(id))
            .collect();
        let candidates = Candidates::all(&briefs);
        self.update_briefs(me, center, clock, candidates, scene, budget, out);
    }

    /// One tick, with the candidates' hot state already at hand (the cell's
    /// fast path: no lookup per candidate). `scene` is asked for properties
    /// when an entity enters or changes them, and for levels of detail.
    #[allow(clippy::too_many_arguments)]
    pub fn update_briefs<'a>(
        &mut self,
        me: EntityId,
        center: Vec3,
        clock: Clock,
        candidates: Candidates<'_>,
        scene: impl Scene<'a>,
        budget: &Budget,
        out: &mut WitnessOut,
    ) {
        let mut scratch = std::mem::take(&mut out.scratch);
        self.plan(
            me,
            center,
            clock.tick,
            candidates,
            &scene,
            budget,
            &mut scratch,
        );
        let table = candidates.table;
        self.send(center, clock, table, &scene, budget, &mut scratch, out);
        // The list just written (still in cache) becomes the known one; the
        // old one is the next update's to write.
        std::mem::swap(&mut self.known, &mut scratch.next);
        self.known.retain(|(_, k)| k.state != Sight::Gone);
        out.scratch = scratch;
        self.grace = self.grace.saturating_sub(1);
    }

    /// Merges what the client knows with the candidates into `next`, and
    /// lists each entity's work in `items`.
    #[allow(clippy::too_many_arguments)]
    fn plan<'a>(
        &mut self,
        me: EntityId,
        center: Vec3,
        tick: u64,
        candidates: Candidates<'_>,
        scene: &impl Scene<'a>,
        budget: &Budget,
        work: &mut Scratch,
    ) {
        let r2 = self.radius * self.radius;
        let outer = self.radius + budget.hysteresis;
        let outer2 = outer * outer;
        work.items.clear();
        work.next.clear();
        // Sort small (id, position) pairs, not whole briefs.
        work.order.clear();
        work.order.extend(
            candidates
                .each()
                .filter(|(_, b)| b.id != me)
                .map(|(p, b)| (b.id, p)),
        );
        sort_by_id(&mut work.order, &mut work.keys);
        work.order.dedup_by_key(|(id, _)| *id);
        let (mut i, mut j) = (0, 0);
        loop {
            let k = self.known.get(i).map(|(id, _)| *id);
            let c = work.order.get(j).map(|(id, _)| *id);
            let (id, old, cand) = match (k, c) {
                (None, None) => break,
                (Some(k), Some(c)) if k == c => {
                    i += 1;
                    j += 1;
                    (k, Some(self.known[i - 1].1), Some(work.order[j - 1].1))
                }
                (Some(k), Some(c)) if k < c => {
                    i += 1;
                    (k, Some(self.known[i - 1].1), None)
                }
                (Some(k), None) => {
                    i += 1;
                    (k, Some(self.known[i - 1].1), None)
                }
                (_, Some(c)) => {
                    j += 1;
                    (c, None, Some(work.order[j - 1].1))
                }
            };
            let slot = work.next.len() as u32;
            let brief = cand.and_then(|c| candidates.table.get(c as usize).map(|v| (c, v)));
            let detail = brief.and_then(|(_, v)| scene.detail(id, v.type_id));
            // Not a candidate (or of no known type): it left the outer
            // radius, or, just after arriving, may not be ghosted here yet.
            let (Some((cand, v)), Some(detail)) = (brief, detail) else {
                let Some(mut k) = old else { continue };
                // Kept only if last seen within the radius, so one that
                // really walks off is gone a few metres past the band.
                let near = (k.sent.x - center.x).powi(2) + (k.sent.z - center.z).powi(2) <= r2;
                match k.state {
                    Sight::Waiting | Sight::Gone => {}
                    Sight::Shown if self.grace > 0 && near => work.next.push((id, k)),
                    Sight::Shown | Sight::Leaving => {
                        k.state = Sight::Leaving;
                        work.next.push((id, k));
                        work.items.push((0, slot, u32::MAX, LEAVE));
                    }
                }
                continue;
            };
            let d2 = (v.pos.x - center.x).powi(2) + (v.pos.z - center.z).powi(2);
            let (tier, level) = detail.level_squared(d2);
            let order = |age: u64| {
                // Distance over one plus the wait, squared (which orders
                // alike, without a square root); a non-negative float's
                // bits order like the float.
                let wait = 1.0 + age as f32;
                let key = (d2 / (wait * wait)).to_bits();
                (u64::from(tier) << 32) | u64::from(key)
            };
            let mut k = match old {
                None
                | Some(Known {
                    state: Sight::Waiting,
                    ..
                }) => {
                    if d2 <= r2 {
                        let k = old.unwrap_or(Known::waiting(tick));
                        work.next.push((id, k));
                        work.items.push((
                            order(tick.saturating_sub(k.sent_tick)),
                            slot,
                            cand,
                            ENTER,
                        ));
                    }
                    continue;
                }
                Some(k) if d2 > outer2 => {
                    work.next.push((
                        id,
                        Known {
                            state: Sight::Leaving,
                            ..k
                        },
                    ));
                    work.items.push((0, slot, u32::MAX, LEAVE));
                    continue;
                }
                // Its leave did not go, and it is back: changes it made
                // while out of sight were not seen, so its band's
                // properties go again.
                Some(k) if k.state == Sight::Leaving => Known { has: 0, ..k },
                Some(k) => k,
            };
            k.state = Sight::Shown;
            // After the witness moved cell, property changes made while it
            // travelled were not seen here: the first time a known entity
            // is a candidate, its digest is compared with the one its
            // client has, and on a difference its band's properties go
            // again (BigWorld compares event numbers instead).
            if v.dirty || k.compare {
                if let Some(p) = scene.props(id) {
                    let owed = k.compare.then(|| self.digest_of(id)).flatten();
                    k.compare = false;
                    if owed.is_some_and(|d| props_digest(p.props, detail, k.has) != d) {
                        k.has = 0;
                    }
                    for &i in p.dirty {
                        if let Some(bit) = detail.bit(i) {
                            k.has &= !bit;
                        }
                    }
                }
            }
            let mut what = 0;
            if level.mask & !k.has != 0 {
                what |= PROPS;
            }
            let at_rest = v.moved_tick + 1 < tick;
            if k.sent != v.pos || k.sent_yaw != v.yaw {
                if at_rest {
                    what |= REST;
                } else if tick.saturating_sub(k.sent_tick) >= u64::from(level.every) {
                    what |= MOVE;
                }
            } else {
                // The client is current: an update it needs later waits
                // from now.
                k.sent_tick = tick;
                if k.unconfirmed && at_rest {
                    let key = u64::from(d2.to_bits());
                    work.items
                        .push(((CONFIRM_TIER << 32) | key, slot, cand, REST));
                }
            }
            if what != 0 {
                work.items
                    .push((order(tick.saturating_sub(k.sent_tick)), slot, cand, what));
            }
            work.next.push((id, k));
        }
    }

    /// Sends the planned work, most urgent first, until the budget is spent.
    #[allow(clippy::too_many_arguments)]
    fn send<'a>(
        &mut self,
        center: Vec3,
        clock: Clock,
        table: &[Brief],
        scene: &impl Scene<'a>,
        budget: &Budget,
        work: &mut Scratch,
        out: &mut WitnessOut,
    ) {
        let tick = clock.tick;
        let quarantine = u64::from(INDEX_QUARANTINE_S) * u64::from(clock.hz.max(1));
        let credit = budget.per_tick(clock.hz) - i64::from(self.deficit);
        let mut spent = out.cost();
        let mut any = false;
        // Only as many items as the budget could carry need sorting: every
        // one costs at least `SMALLEST_ITEM` bytes (and one may overshoot).
        let room = usize::try_from(credit - spent).unwrap_or(0);
        let most = room / SMALLEST_ITEM + 2;
        let bits = rank(&work.items, most, &mut work.keys);
        let frame = Frame::around(
            center.to_array(),
            position_reach(self.radius, budget.hysteresis),
        );
        let mut moves = Batch::new(Carrier::Datagram, budget.datagram, &mut work.batch);
        let mut rests = Batch::new(Carrier::Stream, budget.datagram, &mut work.batch_rests);
        for n in 0..work.keys.len() {
            let place = work.keys[n] & ((1 << bits) - 1);
            let Some(&(order, slot, cand, what)) = work.items.get(place as usize) else {
                continue;
            };
            let Some((id, k)) = work.next.get(slot as usize).copied() else {
                continue;
            };
            let v = table.get(cand as usize);
            let mut reliable: Vec<Vec<u8>> = Vec::new();
            let mut index = None;
            let (mut moved, mut rested) = (None, None);
            let mut lacking = 0;
            match v {
                _ if what & LEAVE != 0 => {
                    reliable.push(encode_body(&ServerMsg::Leave { entity: id }))
                }
                None => continue,
                Some(v) => {
                    let Some(detail) = scene.detail(id, v.type_id) else {
                        continue;
                    };
                    // The band the plan found (an item's tier): its
                    // properties, for an enter or a props. Confirming
                    // rests sort after every band and need none.
                    let mask = detail
                        .levels()
                        .get((order >> 32) as usize)
                        .map_or(0, |l| l.mask);
                    let props = |mask: u64| -> Vec<PropValue> {
                        let p = scene.props(id);
                        detail
                            .props_of(mask)
                            .filter_map(|i| {
                                p.and_then(|p| p.props.get(i as usize))
                                    .map(|v| (i, v.clone()))
                            })
                            .collect()
                    };
                    if what & ENTER != 0 {
                        let i = self.indices.take(tick, quarantine);
                        index = Some(i);
                        lacking = mask;
                        reliable.push(encode_body(&ServerMsg::Enter {
                            entity: id,
                            index: i,
                            type_id: v.type_id,
                            pos: v.pos.to_array(),
                            yaw: v.yaw,
                            props: props(mask),
                            sent_us: clock.now_us,
                        }));
                    }
                    if what & PROPS != 0 {
                        lacking = mask & !k.has;
                        reliable.push(encode_body(&ServerMsg::Props {
                            entity: id,
                            props: props(lacking),
                        }));
                    }
                    if what & (MOVE | REST) != 0 {
                        match frame.encode(k.index, v.pos.to_array(), v.yaw) {
                            Some(u) if what & MOVE != 0 => moved = Some(u),
                            Some(u) => rested = Some(u),
                            // Out of the frame's reach (far above or
                            // below): the exact position goes reliably.
                            None => reliable.push(encode_body(&ServerMsg::Rest {
                                entity: id,
                                pos: v.pos.to_array(),
                                yaw: v.yaw,
                                sent_us: clock.now_us,
                            })),
                        }
                    }
                }
            }
            let cost = reliable
                .iter()
                .map(|b| b.len() + FRAME_HEADER)
                .sum::<usize>()
                + moved.map_or(0, |u| moves.cost(&u))
                + rested.map_or(0, |u| rests.cost(&u));
            if spent + cost as i64 > credit && (any || spent >= credit) {
                // It waits; an index taken for it goes back.
                if let Some(i) = index {
                    self.indices.give_back(i);
                }
                break;
            }
            spent += cost as i64;
            any = true;
            out.reliable.append(&mut reliable);
            if let Some(u) = moved {
                moves.push(u, clock.now_us, &frame, out);
            }
            if let Some(u) = rested {
                rests.push(u, clock.now_us, &frame, out);
            }
            let Some((_, k)) = work.next.get_mut(slot as usize) else {
                continue;
            };
            if what & LEAVE != 0 {
                k.state = Sight::Gone;
                self.indices.retire(k.index, tick);
                out.left.push(id);
                continue;
            }
            let Some(v) = v else { continue };
            if let Some(i) = index {
                *k = Known {
                    state: Sight::Shown,
                    index: i,
                    sent: v.pos,
                    sent_yaw: v.yaw,
                    sent_tick: tick,
                    unconfirmed: false,
                    has: 0,
                    compare: false,
                };
                out.entered.push(id);
            }
            k.has |= lacking;
            if what & (MOVE | REST) != 0 {
                k.sent = v.pos;
                k.sent_yaw = v.yaw;
                k.sent_tick = tick;
                k.unconfirmed = moved.is_some();
            }
        }
        moves.flush(clock.now_us, &frame, out);
        rests.flush(clock.now_us, &frame, out);
        // Own traffic beyond the budget is paid back for at most a second,
        // so a game that floods its own client slows the rest, never stops it.
        let most = budget
            .per_tick(clock.hz)
            .saturating_mul(i64::from(clock.hz.max(1)));
        self.deficit = (spent - credit).clamp(0, most.min(i64::from(u32::MAX))) as u32;
    }
}

/// Puts in `keys` the `most + 1` most urgent items (all, if fewer), most
/// urgent first, each as its order's bits above its place in `items`: one
/// integer sort instead of one of tuples. Ties keep the plan's order.
/// Returns how many low bits of a key name the place.
fn rank(items: &[Item], most: usize, keys: &mut Vec<u64>) -> u32 {
    keys.clear();
    let bits = usize::BITS - items.len().leading_zeros();
    // An order is a tier (8 bits) above a non-negative float's bits (31):
    // 39 bits, of which the float's lowest go if the place needs more
    // than the 25 left (thirty million items; never in practice).
    let drop = bits.saturating_sub(25);
    keys.extend(items.iter().enumerate().map(|(i, &(order, ..))| {
        let packed = (((order >> 32) & 0xff) << 31) | (order & 0x7fff_ffff);
        ((packed >> drop) << bits) | i as u64
    }));
    if most < keys.len() {
        keys.select_nth_unstable(most);
        keys.truncate(most + 1);
    }
    keys.sort_unstable();
    bits
}

/// Sorts (id, candidate) pairs by id, then candidate: as single integers
/// when every id and index fits in one (ids of a running world do).
fn sort_by_id(order: &mut Vec<(EntityId, u32)>, keys: &mut Vec<u64>) {
    const INDEX_BITS: u32 = 20;
    let fits = order.len() < (1 << INDEX_BITS)
        && order.iter().all(|(id, _)| id.0 < 1 << (64 - INDEX_BITS));
    if !fits {
        order.sort_unstable();
        return;
    }
    keys.clear();
    keys.extend(
        order
            .iter()
            .map(|(id, i)| (id.0 << INDEX_BITS) | u64::from(*i)),
    );
    keys.sort_unstable();
    order.clear();
    order.extend(keys.iter().map(|k| {
        (
            EntityId(k >> INDEX_BITS),
            (k & ((1 << INDEX_BITS) - 1)) as u32,
        )
    }));
}

/// How far from the watcher a position update reaches: the AoI, the leave
/// hysteresis, and as much again for entities that move on before they
/// leave.
pub fn position_reach(radius: f32, hysteresis: f32) -> f32 {
    radius + hysteresis + hysteresis.max(1.0)
}

/// What carries a [`Batch`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Carrier {
    /// `Positions` datagrams.
    Datagram,
    /// `Rests` messages on the stream.
    Stream,
}

/// Position updates gathered into messages of at most `limit` bytes.
struct Batch<'w> {
    carrier: Carrier,
    limit: usize,
    /// A list from the cell's working lists, kept between updates so it
    /// is not regrown.
    updates: &'w mut Vec<PosUpdate>,
    bytes: usize,
}

impl<'w> Batch<'w> {
    fn new(carrier: Carrier, limit: usize, updates: &'w mut Vec<PosUpdate>) -> Batch<'w> {
        updates.clear();
        Batch {
            carrier,
            limit,
            updates,
            bytes: 0,
        }
    }

    /// Whether `u` starts a new message.
    fn starts_new(&self, u: &PosUpdate) -> bool {
        self.updates.is_empty() || self.bytes + u.encoded_len() > self.limit
    }

    /// What adding `u` costs the budget, a new message's header included.
    fn cost(&self, u: &PosUpdate) -> usize {
        let header = match self.carrier {
            Carrier::Datagram => POSITIONS_HEADER,
            Carrier::Stream => POSITIONS_HEADER + FRAME_HEADER,
        };
        u.encoded_len() + if self.starts_new(u) { header } else { 0 }
    }

    fn push(&mut self, u: PosUpdate, now_us: u64, frame: &Frame, out: &mut WitnessOut) {
        if self.starts_new(&u) {
            self.flush(now_us, frame, out);
            self.bytes = POSITIONS_HEADER;
        }
        self.bytes += u.encoded_len();
        self.updates.push(u);
    }

    fn flush(&mut self, now_us: u64, frame: &Frame, out: &mut WitnessOut) {
        if self.updates.is_empty() {
            return;
        }
        let mut bytes = Vec::with_capacity(self.bytes);
        let rests = self.carrier == Carrier::Stream;
        write_positions(&mut bytes, rests, now_us, frame, self.updates);
        self.updates.clear();
        match self.carrier {
            Carrier::Datagram => out.datagrams.push(bytes),
            Carrier::Stream => out.reliable.push(bytes),
        }
    }
}

#[cfg(test)]
mod tests;
