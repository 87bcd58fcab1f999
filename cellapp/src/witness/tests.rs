//! Tests of the witness. The contract: for random worlds and random moves,
//! the messages a witness produces, decoded and applied in order to an
//! empty client [`View`], reproduce the AoI truth. With an unlimited budget
//! that holds after every tick: every entity within the radius is seen,
//! none beyond radius plus hysteresis is, the band only keeps what was
//! already seen, and what is seen has the true type, its band's properties
//! and (for a band updated every tick) its position within a quantization
//! step. With a budget: the bytes of any second never exceed the budget by
//! more than one message; movers of the nearest band are never passed over
//! for a farther one, and are left out only when the tick's budget is
//! spent; and once the world is still the view converges to the exact
//! truth. Levels of detail send exactly the properties their band names.
//! Every tick also runs a twin witness through [`Witness::update_briefs`]
//! (the cell's path), whose bytes must equal those of [`Witness::update`].
//! Unit tests pin single messages.
#![allow(clippy::unwrap_used)]

use super::*;
use proptest::collection::vec;
use proptest::prelude::*;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet};
use std::f32::consts::TAU;
use tessera::client::View;
use tessera::defs::DetailLevel;
use tessera::frame::decode;
use tessera::proto::client::ServerDatagram;

/// The witness entity.
const ME: EntityId = EntityId(1_000_000);
/// An id no entity has.
const NOBODY: EntityId = EntityId(9_999_999);
/// Ticks per second.
const HZ: u16 = 10;

/// Squared distance on x/z, computed as the witness computes it.
fn dist2(pos: Vec3, center: Vec3) -> f32 {
    (pos.x - center.x).powi(2) + (pos.z - center.z).powi(2)
}

/// A value of the same type as `like`, chosen by `k`.
fn value_like(like: &Value, k: i64) -> Value {
    match like {
        Value::Bool(_) => Value::Bool(k % 2 == 0),
        Value::Int(_) => Value::Int(k),
        Value::Float(_) => Value::Float(k as f32),
        Value::String(_) => Value::String(format!("s{k}")),
        Value::Vec3(_) => Value::Vec3([k as f32, 0.0, 0.0]),
        Value::Bytes(_) => Value::Bytes(k.to_le_bytes().to_vec()),
        Value::Entity(_) => Value::Entity(EntityId(k.unsigned_abs())),
        Value::List(_) => Value::List(vec![Value::Int(k)]),
        Value::Map(v) => Value::Map(v.iter().map(|x| value_like(x, k)).collect()),
    }
}

/// The demo types: property defaults and levels of detail.
struct Types {
    defaults: Vec<Vec<Value>>,
    detail: Vec<Detail>,
}

impl Types {
    fn demo() -> Types {
        let defs = tessera_demo::definitions();
        Types {
            defaults: defs.types.iter().map(|t| t.defaults()).collect(),
            detail: defs.types.iter().map(Detail::of).collect(),
        }
    }

    /// The demo types with one level each: every tick, every property.
    fn plain() -> Types {
        let mut t = Types::demo();
        t.detail = t
            .detail
            .iter()
            .map(|d| Detail::new(d.public().to_vec(), &[]))
            .collect();
        t
    }

    /// The demo types with three bands each: within 20 m every tick and
    /// every public property, within 45 m every second tick and the first
    /// public property only, beyond that every fourth tick and none.
    fn banded() -> Types {
        let mut t = Types::demo();
        t.detail = t
            .detail
            .iter()
            .map(|d| {
                let public = d.public().to_vec();
                let first: Vec<u16> = public.iter().copied().take(1).collect();
                Detail::new(
                    public.clone(),
                    &[
                        DetailLevel {
                            within: 20.0,
                            every: 1,
                            props: public,
                        },
                        DetailLevel {
                            within: 45.0,
                            every: 2,
                            props: first,
                        },
                        DetailLevel {
                            within: f32::INFINITY,
                            every: 4,
                            props: Vec::new(),
                        },
                    ],
                )
            })
            .collect();
        t
    }
}

fn type_named(name: &str) -> TypeId {
    tessera_demo::definitions().by_name(name).unwrap().id
}

fn prop_index(ty: &str, prop: &str) -> u16 {
    tessera_demo::definitions()
        .by_name(ty)
        .unwrap()
        .prop(prop)
        .unwrap()
        .index
}

/// One entity of the test world.
#[derive(Clone, Debug)]
struct Ent {
    type_id: TypeId,
    pos: Vec3,
    yaw: f32,
    props: Vec<Value>,
    dirty: Vec<u16>,
    moved_tick: u64,
}

/// The truth: every entity, including the witness's own.
struct World {
    types: Types,
    ents: BTreeMap<EntityId, Ent>,
}

impl World {
    fn new(center: Vec3) -> World {
        World::with(center, Types::plain())
    }

    fn with(center: Vec3, types: Types) -> World {
        let mut w = World {
            types,
            ents: BTreeMap::new(),
        };
        w.spawn(ME, TypeId(0), center, 0.0, 0, 0);
        w
    }

    fn center(&self) -> Vec3 {
        self.ents[&ME].pos
    }

    /// A new entity whose properties are all set from `k`.
    fn spawn(&mut self, id: EntityId, type_id: TypeId, pos: Vec3, yaw: f32, k: i64, tick: u64) {
        let props = self.types.defaults[type_id.0 as usize]
            .iter()
            .enumerate()
            .map(|(i, v)| value_like(v, k + i as i64))
            .collect();
        self.ents.insert(
            id,
            Ent {
                type_id,
                pos,
                yaw,
                props,
                dirty: Vec::new(),
                moved_tick: tick,
            },
        );
    }

    fn move_to(&mut self, id: EntityId, pos: Vec3, yaw: f32, tick: u64) {
        let e = self.ents.get_mut(&id).unwrap();
        if e.pos != pos || e.yaw != yaw {
            e.pos = pos;
            e.yaw = yaw;
            e.moved_tick = tick;
        }
    }

    fn set_prop(&mut self, id: EntityId, index: u16, value: Value) {
        let e = self.ents.get_mut(&id).unwrap();
        if e.props[index as usize] != value {
            e.props[index as usize] = value;
            if !e.dirty.contains(&index) {
                e.dirty.push(index);
            }
        }
    }

    fn end_tick(&mut self) {
        for e in self.ents.values_mut() {
            e.dirty.clear();
        }
    }

    fn detail(&self, id: EntityId) -> &Detail {
        &self.types.detail[self.ents[&id].type_id.0 as usize]
    }

    fn visible(&self, id: EntityId) -> Option<Visible<'_>> {
        let e = self.ents.get(&id)?;
        Some(Visible {
            type_id: e.type_id,
            pos: e.pos,
            yaw: e.yaw,
            props: &e.props,
            dirty: &e.dirty,
            moved_tick: e.moved_tick,
            detail: &self.types.detail[e.type_id.0 as usize],
        })
    }

    /// The entity's band at its distance from the witness: its place and
    /// the properties it names.
    fn band(&self, id: EntityId) -> (u8, BTreeSet<u16>, u16) {
        let d = dist2(self.ents[&id].pos, self.center()).sqrt();
        let detail = self.detail(id);
        let (i, level) = detail.level(d);
        (i, detail.props_of(level.mask).collect(), level.every)
    }

    /// The true values of the properties the entity's band names.
    fn band_props(&self, id: EntityId) -> BTreeMap<u16, Value> {
        let e = &self.ents[&id];
        self.band(id)
            .1
            .into_iter()
            .map(|i| (i, e.props[i as usize].clone()))
            .collect()
    }

    /// Every entity but the witness's own, in id order.
    fn others(&self) -> impl Iterator<Item = (&EntityId, &Ent)> {
        self.ents.iter().filter(|(id, _)| **id != ME)
    }

    fn other_ids(&self) -> Vec<EntityId> {
        self.others().map(|(id, _)| *id).collect()
    }
}

/// What one witness update sent, decoded.
#[derive(Debug, Default)]
struct Sent {
    reliable: Vec<ServerMsg>,
    datagrams: Vec<ServerDatagram>,
    /// Encoded length of each datagram.
    sizes: Vec<usize>,
    /// Each position update: the entity it names, where and facing.
    updates: Vec<(EntityId, Vec3, f32)>,
    /// Entities a `Rest` or `Rests` placed.
    rested: Vec<EntityId>,
    /// Bytes as the budget counts them.
    bytes: usize,
    /// The largest single message.
    largest: usize,
}

impl Sent {
    fn updated(&self) -> BTreeSet<EntityId> {
        self.updates.iter().map(|u| u.0).collect()
    }

    fn is_empty(&self) -> bool {
        self.reliable.is_empty() && self.datagrams.is_empty()
    }
}

/// A quantized position is within half a step of the truth on each axis.
fn close(a: Vec3, b: Vec3, scale: f32) -> bool {
    (a - b).abs().max_element() <= scale * 0.5 + 1e-3
}

/// A facing within one 65,536th of a turn.
fn close_yaw(a: f32, b: f32) -> bool {
    let d = (a - b).rem_euclid(TAU);
    d.min(TAU - d) <= TAU / 65536.0 + 1e-4
}

/// A witness and the view of its client.
struct Client {
    witness: Witness,
    /// Fed the same ticks through [`Witness::update_briefs`] (the cell's
    /// path); its output must be byte for byte the same.
    twin: Option<Witness>,
    view: View,
    budget: Budget,
    tick: u64,
    /// What each tick sent, as the budget counts it, and the largest message.
    spent: Vec<(usize, usize)>,
}

impl Client {
    fn new(radius: f32, budget: Budget) -> Client {
        Client {
            witness: Witness::new(radius),
            twin: Some(Witness::new(radius)),
            view: View::new(ME, TypeId(0), [0.0; 3], &[], [0.0, 0.0, 400.0, 400.0]),
            budget,
            tick: 0,
            spent: Vec::new(),
        }
    }

    fn next_tick(&self) -> u64 {
        self.tick + 1
    }

    /// The server time of the last tick run.
    fn now_us(&self) -> u64 {
        1_700_000_000_000_000 + self.tick * 100_000
    }

    fn clock(&self) -> Clock {
        Clock {
            tick: self.tick,
            now_us: self.now_us(),
            hz: HZ,
        }
    }

    /// Every other entity within the query radius, by brute force.
    fn candidates(&self, world: &World) -> Vec<EntityId> {
        let q = self.witness.query_radius(&self.budget);
        let c = world.center();
        world
            .others()
            .filter(|(_, e)| dist2(e.pos, c) <= q * q)
            .map(|(id, _)| *id)
            .collect()
    }

    fn in_view(&self) -> BTreeSet<EntityId> {
        self.view.others.keys().copied().collect()
    }

    /// One tick with the brute-force candidates.
    fn step(&mut self, world: &World) -> Sent {
        let cands = self.candidates(world);
        self.step_with(world, cands)
    }

    /// One tick with the given candidates: updates the witness, checks and
    /// applies every message in order.
    fn step_with(&mut self, world: &World, cands: Vec<EntityId>) -> Sent {
        self.tick += 1;
        let clock = self.clock();
        let mut out = WitnessOut::default();
        self.witness.update(
            ME,
            world.center(),
            clock,
            &cands,
            |id| world.visible(id),
            &self.budget,
            &mut out,
        );
        if let Some(twin) = &mut self.twin {
            let briefs: Vec<Brief> = cands
                .iter()
                .filter_map(|id| {
                    let e = world.ents.get(id)?;
                    Some(Brief {
                        id: *id,
                        type_id: e.type_id,
                        pos: e.pos,
                        yaw: e.yaw,
                        moved_tick: e.moved_tick,
                        dirty: !e.dirty.is_empty(),
                    })
                })
                .collect();
            let mut twin_out = WitnessOut::default();
            twin.update_briefs(
                ME,
                world.center(),
                clock,
                Candidates::all(&briefs),
                |id| world.visible(id),
                &self.budget,
                &mut twin_out,
            );
            assert_eq!(twin_out.reliable, out.reliable, "update_briefs differs");
            assert_eq!(twin_out.datagrams, out.datagrams, "update_briefs differs");
        }
        let mut sent = Sent::default();
        let mut touched = BTreeSet::new();
        for bytes in &out.reliable {
            let msg: ServerMsg = decode(bytes).expect("reliable message decodes");
            self.check_reliable(world, &msg, &mut touched);
            if let ServerMsg::Rests {
                origin,
                scale,
                updates,
                ..
            } = &msg
            {
                let frame = Frame {
                    origin: *origin,
                    scale: *scale,
                };
                for (entity, ..) in self.check_updates(world, &frame, updates) {
                    let e = &world.ents[&entity];
                    assert!(
                        e.moved_tick + 1 < self.tick,
                        "rest of {entity}, which moved last tick"
                    );
                    assert!(!sent.rested.contains(&entity), "{entity} rested twice");
                    sent.rested.push(entity);
                }
            }
            if let ServerMsg::Rest { entity, .. } = &msg {
                sent.rested.push(*entity);
            }
            self.view.apply(&msg);
            sent.reliable.push(msg);
            sent.bytes += bytes.len() + 4;
            sent.largest = sent.largest.max(bytes.len() + 4);
        }
        for bytes in &out.datagrams {
            assert!(
                bytes.len() <= self.budget.datagram,
                "datagram of {} bytes over the limit of {}",
                bytes.len(),
                self.budget.datagram
            );
            let d: ServerDatagram = decode(bytes).expect("datagram decodes");
            let ServerDatagram::Positions {
                sent_us, updates, ..
            } = &d;
            assert_eq!(*sent_us, self.now_us());
            assert!(!updates.is_empty(), "empty datagram");
            for u in self.check_updates(world, &d.frame(), updates) {
                assert!(!sent.updated().contains(&u.0), "{} updated twice", u.0);
                sent.updates.push(u);
            }
            self.view.apply_datagram(&d);
            sent.sizes.push(bytes.len());
            sent.bytes += bytes.len();
            sent.largest = sent.largest.max(bytes.len());
            sent.datagrams.push(d);
        }
        self.spent.push((sent.bytes, sent.largest));
        sent
    }

    /// Position updates name entities the client holds, place them within a
    /// step of the truth and take at most 10 bytes each.
    fn check_updates(
        &self,
        world: &World,
        frame: &Frame,
        updates: &[PosUpdate],
    ) -> Vec<(EntityId, Vec3, f32)> {
        assert!(!updates.is_empty(), "no updates");
        updates
            .iter()
            .map(|u| {
                let entity = self
                    .view
                    .holder(u.index)
                    .unwrap_or_else(|| panic!("update of index {} nobody holds", u.index));
                let (pos, yaw) = frame.decode(u);
                let e = &world.ents[&entity];
                assert!(
                    close(Vec3::from_array(pos), e.pos, frame.scale),
                    "{entity} sent at {pos:?}, truth {}",
                    e.pos
                );
                assert!(
                    close_yaw(yaw, e.yaw),
                    "{entity} faces {yaw}, truth {}",
                    e.yaw
                );
                assert!(
                    u.encoded_len() <= 10,
                    "an update of {} bytes",
                    u.encoded_len()
                );
                (entity, Vec3::from_array(pos), yaw)
            })
            .collect()
    }

    /// Each stream message must make sense for the view it is applied to.
    fn check_reliable(&self, world: &World, msg: &ServerMsg, touched: &mut BTreeSet<EntityId>) {
        let c = world.center();
        let r = self.witness.radius;
        let outer = r + self.budget.hysteresis;
        let now = self.now_us();
        match msg {
            ServerMsg::Enter {
                entity,
                index,
                type_id,
                pos,
                yaw,
                props,
                sent_us,
            } => {
                assert_ne!(*entity, ME, "the witness entered itself");
                assert!(
                    !self.view.others.contains_key(entity),
                    "{entity} entered twice"
                );
                assert!(
                    self.view.holder(*index).is_none(),
                    "index {index} given to {entity} while held"
                );
                assert!(
                    touched.insert(*entity),
                    "{entity} entered and left in one tick"
                );
                let e = world.ents.get(entity).expect("enter of a live entity");
                assert!(
                    dist2(e.pos, c) <= r * r,
                    "{entity} entered from outside the radius"
                );
                assert_eq!(
                    (*type_id, *pos, *yaw, *sent_us),
                    (e.type_id, e.pos.to_array(), e.yaw, now)
                );
                let map: BTreeMap<u16, Value> = props.iter().cloned().collect();
                assert_eq!(map.len(), props.len(), "repeated property in enter");
                assert_eq!(map, world.band_props(*entity), "enter of {entity}");
            }
            ServerMsg::Leave { entity } => {
                assert!(
                    self.view.others.contains_key(entity),
                    "{entity} left unseen"
                );
                assert!(
                    touched.insert(*entity),
                    "{entity} entered and left in one tick"
                );
                if let Some(e) = world.ents.get(entity) {
                    assert!(
                        dist2(e.pos, c) > outer * outer,
                        "{entity} left from within the band"
                    );
                }
            }
            ServerMsg::Props { entity, props } => {
                assert!(
                    self.view.others.contains_key(entity),
                    "props of unseen {entity}"
                );
                assert!(!props.is_empty(), "empty props");
                let e = &world.ents[entity];
                let band = world.band(*entity).1;
                for (i, v) in props {
                    assert!(
                        band.contains(i),
                        "property {i} of {entity} outside its band {band:?}"
                    );
                    assert_eq!(Some(v), e.props.get(*i as usize));
                }
            }
            // Only for an entity out of a datagram's reach.
            ServerMsg::Rest {
                entity,
                pos,
                yaw,
                sent_us,
            } => {
                assert!(
                    self.view.others.contains_key(entity),
                    "rest of unseen {entity}"
                );
                let e = &world.ents[entity];
                assert_eq!((*pos, *yaw, *sent_us), (e.pos.to_array(), e.yaw, now));
                let reach = position_reach(self.witness.radius, self.budget.hysteresis);
                assert!(
                    Frame::around(c.to_array(), reach)
                        .encode(0, *pos, *yaw)
                        .is_none(),
                    "an exact rest of {entity} within reach"
                );
            }
            ServerMsg::Rests { sent_us, .. } => assert_eq!(*sent_us, now),
            other => panic!("a witness sent {other:?}"),
        }
    }

    /// The view holds exactly what the AoI allows.
    fn check_membership(&self, world: &World, before: &BTreeSet<EntityId>) {
        let c = world.center();
        let r = self.witness.radius;
        let outer = r + self.budget.hysteresis;
        for (id, e) in world.others() {
            let d2 = dist2(e.pos, c);
            let seen = self.view.others.contains_key(id);
            if d2 <= r * r {
                assert!(seen, "{id} at {} within radius {r} is not seen", d2.sqrt());
            } else if d2 > outer * outer {
                assert!(!seen, "{id} at {} beyond {outer} is seen", d2.sqrt());
            } else if seen {
                assert!(before.contains(id), "{id} in the band was added");
            }
        }
        self.check_known(world);
    }

    /// What the witness thinks the client holds is what it holds.
    fn check_known(&self, world: &World) {
        for id in self.view.others.keys() {
            assert!(
                *id != ME && world.ents.contains_key(id),
                "{id} seen but gone"
            );
            assert!(self.witness.knows(*id));
        }
        assert!(!self.witness.knows(ME));
        assert_eq!(self.witness.known_len(), self.view.others.len());
    }

    /// Types and the band's properties always; positions within a step of
    /// the truth when `settled`, and for bands updated every tick.
    fn check_state(&self, world: &World, settled: bool) {
        for (id, s) in &self.view.others {
            let e = &world.ents[id];
            assert_eq!(s.type_id, e.type_id);
            let have: BTreeMap<u16, Value> = world
                .band(*id)
                .1
                .into_iter()
                .filter_map(|i| s.props.get(&i).map(|v| (i, v.clone())))
                .collect();
            assert_eq!(have, world.band_props(*id), "band props of {id}");
            let reach = position_reach(self.witness.radius, self.budget.hysteresis);
            let scale = Frame::around([0.0; 3], reach).scale;
            if settled || world.band(*id).2 == 1 {
                assert!(
                    close(Vec3::from_array(s.pos), e.pos, scale) && close_yaw(s.yaw, e.yaw),
                    "{id} seen at {:?} facing {}, truth {} facing {}",
                    s.pos,
                    s.yaw,
                    e.pos,
                    e.yaw
                );
            }
        }
    }

    /// The budget over every second: what went out in any `HZ` consecutive
    /// ticks is at most the budget plus the largest message among them.
    fn check_budget(&self) {
        let limit = self.budget.bytes_per_sec as usize;
        for w in self.spent.windows(usize::from(HZ)) {
            let total: usize = w.iter().map(|s| s.0).sum();
            let largest = w.iter().map(|s| s.1).max().unwrap_or(0);
            assert!(
                total <= limit + largest,
                "{total} bytes in a second of budget {limit} (largest message {largest}): {:?}",
                self.spent
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Random worlds.

/// Where a new entity goes: anywhere, or near the witness (so that many
/// entities sit around the radius).
#[derive(Clone, Debug)]
struct Spec {
    near: bool,
    x: f32,
    z: f32,
    /// Distance from the witness as a fraction of its radius, and bearing.
    frac: f32,
    bearing: f32,
    y: f32,
    yaw: f32,
    ty: u16,
    k: i64,
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        any::<bool>(),
        0.0f32..400.0,
        0.0f32..400.0,
        0.0f32..1.6,
        0.0f32..TAU,
        -5.0f32..5.0,
        -3.0f32..3.0,
        0u16..2,
        0i64..4,
    )
        .prop_map(|(near, x, z, frac, bearing, y, yaw, ty, k)| Spec {
            near,
            x,
            z,
            frac,
            bearing,
            y,
            yaw,
            ty,
            k,
        })
}

impl Spec {
    fn pos(&self, center: Vec3, radius: f32) -> Vec3 {
        if self.near {
            let d = self.frac * radius;
            Vec3::new(
                center.x + d * self.bearing.cos(),
                self.y,
                center.z + d * self.bearing.sin(),
            )
        } else {
            Vec3::new(self.x, self.y, self.z)
        }
    }
}

#[derive(Clone, Debug)]
enum Move {
    Step(f32, f32, f32),
    Jump(f32, f32),
    Turn(f32),
    Lift(f32),
}

fn a_move() -> impl Strategy<Value = Move> {
    prop_oneof![
        8 => (-6.0f32..6.0, -6.0f32..6.0, -0.3f32..0.3).prop_map(|(x, z, yaw)| Move::Step(x, z, yaw)),
        1 => (0.0f32..400.0, 0.0f32..400.0).prop_map(|(x, z)| Move::Jump(x, z)),
        1 => (-3.0f32..3.0).prop_map(Move::Turn),
        1 => (-2.0f32..2.0).prop_map(Move::Lift),
    ]
}

impl Move {
    fn apply(&self, pos: Vec3, yaw: f32) -> (Vec3, f32) {
        match *self {
            Move::Step(dx, dz, dyaw) => (pos + Vec3::new(dx, 0.0, dz), yaw + dyaw),
            Move::Jump(x, z) => (Vec3::new(x, pos.y, z), yaw),
            Move::Turn(dyaw) => (pos, yaw + dyaw),
            Move::Lift(dy) => (pos + Vec3::new(0.0, dy, 0.0), yaw),
        }
    }
}

/// What happens in one tick. Entities are picked by index (modulo the number
/// alive) in id order.
#[derive(Clone, Debug)]
struct TickOps {
    moves: Vec<(usize, Move)>,
    me: Option<Move>,
    spawn: Vec<Spec>,
    despawn: Vec<usize>,
    /// Entity, property (modulo its count), value seed.
    props: Vec<(usize, usize, i64)>,
    /// Entities to add to the candidates if they are not there already.
    extra: Vec<usize>,
    /// Add the witness's own id, an unknown id and a repeated id to the
    /// candidates.
    noise: bool,
    /// Everything takes a small step (a crowd moving at once).
    crowd: bool,
    /// Seeds the crowd's steps and the order of the candidates.
    shuffle: u64,
}

fn tick_ops() -> impl Strategy<Value = TickOps> {
    (
        vec((any::<usize>(), a_move()), 0..20),
        prop::option::weighted(0.5, a_move()),
        vec(spec(), 0..2),
        vec(any::<usize>(), 0..2),
        vec((any::<usize>(), any::<usize>(), 0i64..4), 0..6),
        vec(any::<usize>(), 0..4),
        any::<bool>(),
        prop::bool::weighted(0.2),
        any::<u64>(),
    )
        .prop_map(
            |(moves, me, spawn, despawn, props, extra, noise, crowd, shuffle)| TickOps {
                moves,
                me,
                spawn,
                despawn,
                props,
                extra,
                noise,
                crowd,
                shuffle,
            },
        )
}

#[derive(Clone, Debug)]
struct Case {
    radius: f32,
    hysteresis: f32,
    center: Vec3,
    specs: Vec<Spec>,
    ticks: Vec<TickOps>,
    /// 0: one level per type; 1: the demo's levels; 2: three bands each.
    levels: u8,
}

fn a_case() -> impl Strategy<Value = Case> {
    (
        30.0f32..120.0,
        0.0f32..12.0,
        0.0f32..400.0,
        0.0f32..400.0,
        vec(spec(), 20..60),
        vec(tick_ops(), 1..25),
        0u8..3,
    )
        .prop_map(|(radius, hysteresis, cx, cz, specs, ticks, levels)| Case {
            radius,
            hysteresis,
            center: Vec3::new(cx, 0.0, cz),
            specs,
            ticks,
            levels,
        })
}

/// Runs a case's world: the initial tick, then each of its ticks; `check`
/// runs after every one.
fn run_case(
    case: &Case,
    budget: Budget,
    check: impl Fn(&Client, &World, &Sent, &BTreeSet<EntityId>),
) -> (World, Client) {
    let types = match case.levels {
        0 => Types::plain(),
        1 => Types::demo(),
        _ => Types::banded(),
    };
    let mut world = World::with(case.center, types);
    let mut next_id = 1u64;
    for s in &case.specs {
        let pos = s.pos(case.center, case.radius);
        world.spawn(EntityId(next_id), TypeId(s.ty), pos, s.yaw, s.k, 0);
        next_id += 1;
    }
    let mut client = Client::new(case.radius, budget);
    let sent = client.step(&world);
    check(&client, &world, &sent, &BTreeSet::new());
    let mut before = client.in_view();
    for ops in &case.ticks {
        let tick = client.next_tick();
        let ids = world.other_ids();
        let mut rng = ChaCha8Rng::seed_from_u64(ops.shuffle);
        if ops.crowd {
            for id in &ids {
                let e = &world.ents[id];
                let step = Vec3::new(
                    rng.random_range(-2.0..2.0),
                    0.0,
                    rng.random_range(-2.0..2.0),
                );
                let (pos, yaw) = (e.pos + step, e.yaw + rng.random_range(-0.2..0.2));
                world.move_to(*id, pos, yaw, tick);
            }
        }
        if !ids.is_empty() {
            for (pick, m) in &ops.moves {
                let id = ids[pick % ids.len()];
                let e = &world.ents[&id];
                let (pos, yaw) = m.apply(e.pos, e.yaw);
                world.move_to(id, pos, yaw, tick);
            }
            for &(pick, prop, k) in &ops.props {
                let id = ids[pick % ids.len()];
                let e = &world.ents[&id];
                let index = prop % e.props.len();
                let value = value_like(&e.props[index], k);
                world.set_prop(id, index as u16, value);
            }
            for pick in &ops.despawn {
                world.ents.remove(&ids[pick % ids.len()]);
            }
        }
        if let Some(m) = &ops.me {
            let e = &world.ents[&ME];
            let (pos, yaw) = m.apply(e.pos, e.yaw);
            world.move_to(ME, pos, yaw, tick);
        }
        for s in &ops.spawn {
            let pos = s.pos(world.center(), case.radius);
            world.spawn(EntityId(next_id), TypeId(s.ty), pos, s.yaw, s.k, tick);
            next_id += 1;
        }
        let mut cands = client.candidates(&world);
        let all = world.other_ids();
        if !all.is_empty() {
            for pick in &ops.extra {
                let id = all[pick % all.len()];
                if !cands.contains(&id) {
                    cands.push(id);
                }
            }
        }
        if ops.noise {
            cands.push(ME);
            cands.push(NOBODY);
            if let Some(&first) = cands.first() {
                cands.push(first);
            }
        }
        cands.shuffle(&mut rng);
        let sent = client.step_with(&world, cands);
        check(&client, &world, &sent, &before);
        before = client.in_view();
        world.end_tick();
    }
    (world, client)
}

/// Lets a still world run until the witness has nothing left to say,
/// checking each tick, then checks that the view is the truth and
/// that one more tick sends nothing.
fn settle(world: &World, client: &mut Client, ticks: usize) {
    let mut rested = BTreeSet::new();
    // A rest goes two ticks after the last move at the earliest.
    let mut quiet = 0;
    for _ in 0..ticks {
        let sent = client.step(world);
        client.check_known(world);
        for entity in &sent.rested {
            assert!(rested.insert(*entity), "{entity} rested twice");
        }
        quiet = if sent.is_empty() { quiet + 1 } else { 0 };
        if quiet == 3 {
            break;
        }
    }
    client.check_membership(world, &client.in_view());
    client.check_state(world, true);
    let sent = client.step(world);
    assert!(sent.is_empty(), "a settled witness sent {sent:?}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// With an unlimited budget the view equals the AoI truth after every
    /// tick, and the exact truth once the world is still.
    #[test]
    fn unlimited_budget_view_reproduces_the_aoi(case in a_case()) {
        let (world, mut client) = run_case(&case, Budget::unlimited(case.hysteresis), |c, w, _, before| {
            c.check_membership(w, before);
            c.check_state(w, false);
        });
        settle(&world, &mut client, 8);
    }

    /// With a small budget: never more than the budget (plus one message)
    /// in any second, what is seen is what exists, and the view converges
    /// to the exact truth once the world is still.
    #[test]
    fn small_budget_holds_its_bytes_and_converges(case in a_case(), per_sec in 1000u32..6000) {
        let budget = Budget {
            bytes_per_sec: per_sec,
            ..Budget::unlimited(case.hysteresis)
        };
        let (world, mut client) = run_case(&case, budget, |c, w, _, _| c.check_known(w));
        client.check_budget();
        settle(&world, &mut client, 400);
        client.check_budget();
    }

    /// A crowd in three bands, all moving every tick, with a budget too
    /// small for all of them: a mover of the nearest band is never passed
    /// over for one farther out, and is left out only when the tick's
    /// budget is spent; far movers still get their turn.
    #[test]
    fn near_movers_go_first_and_far_ones_are_not_starved(
        placed in vec((0.0f32..1.0, 0.0f32..TAU), 20..120),
        per_sec in 1500u32..8000,
        ticks in 10usize..30,
        seed in any::<u64>(),
    ) {
        let center = Vec3::new(200.0, 0.0, 200.0);
        let radius = 80.0;
        let mut world = World::with(center, Types::banded());
        for (i, (frac, bearing)) in placed.iter().enumerate() {
            let d = frac * radius;
            let pos = center + Vec3::new(d * bearing.cos(), 0.0, d * bearing.sin());
            world.spawn(EntityId(i as u64 + 1), TypeId(i as u16 % 2), pos, 0.0, 0, 0);
        }
        let budget = Budget { bytes_per_sec: per_sec, ..Budget::unlimited(5.0) };
        let mut client = Client::new(radius, budget);
        // Everybody in view first.
        for _ in 0..200 {
            if client.step(&world).is_empty() {
                break;
            }
        }
        prop_assert_eq!(client.view.others.len(), placed.len());
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut deficit = 0i64;
        let per_tick = budget.per_tick(HZ);
        let mut far_updates = 0;
        for _ in 0..ticks {
            let tick = client.next_tick();
            for id in world.other_ids() {
                let e = &world.ents[&id];
                // Small steps: nobody changes band on the way.
                let step = Vec3::new(rng.random_range(-0.05..0.05), 0.0, rng.random_range(-0.05..0.05));
                world.move_to(id, e.pos + step, e.yaw + 0.01, tick);
            }
            let credit = per_tick - deficit;
            let sent = client.step(&world);
            deficit = (sent.bytes as i64 - credit).max(0);
            let updated = sent.updated();
            let near: Vec<EntityId> = world.other_ids().into_iter().filter(|id| world.band(*id).0 == 0).collect();
            let missed: Vec<&EntityId> = near.iter().filter(|id| !updated.contains(id)).collect();
            let farther = updated.iter().filter(|id| world.band(**id).0 > 0).count();
            far_updates += farther;
            if !missed.is_empty() {
                prop_assert_eq!(farther, 0, "far movers updated while near ones {:?} waited", missed);
                // The next update would not have fitted.
                prop_assert!(sent.bytes as i64 + 10 + POSITIONS_HEADER as i64 > credit,
                    "near movers {:?} left out with {} of {} bytes spent", missed, sent.bytes, credit);
            }
        }
        client.check_budget();
        // When the nearest band leaves room, farther bands are updated too.
        let near_cost = world.other_ids().into_iter().filter(|id| world.band(*id).0 == 0).count() * 10
            + 2 * POSITIONS_HEADER;
        if (near_cost as i64) * 2 < per_tick {
            prop_assert!(far_updates > 0, "no far mover updated in {} ticks", ticks);
        }
        settle(&world, &mut client, 400);
    }

    /// However many movers, ids and clock values, every datagram fits its
    /// limit, every update is at most 10 bytes, and every mover is updated
    /// exactly once.
    #[test]
    fn datagrams_fit_their_limit(
        ids in prop::collection::btree_set(0u64..u64::MAX, 1..300),
        datagram in 60usize..1500,
    ) {
        let center = Vec3::new(0.0, 0.0, 0.0);
        let mut world = World::new(center);
        let ids: Vec<EntityId> = ids.into_iter().map(EntityId).filter(|id| *id != ME).collect();
        for (i, id) in ids.iter().enumerate() {
            let a = i as f32 * 0.1;
            world.spawn(*id, TypeId(0), Vec3::new(50.0 * a.cos(), 0.0, 50.0 * a.sin()), 0.0, 0, 0);
        }
        let budget = Budget { datagram, ..Budget::unlimited(5.0) };
        let mut client = Client::new(100.0, budget);
        client.step(&world);
        for id in &ids {
            let e = &world.ents[id];
            let (pos, yaw) = (e.pos + Vec3::new(1.0, 0.5, -1.0), e.yaw + 1.0);
            world.move_to(*id, pos, yaw, 2);
        }
        let sent = client.step(&world);
        prop_assert_eq!(sent.updated().len(), ids.len());
        prop_assert!(sent.sizes.iter().all(|&s| s <= datagram));
        client.check_state(&world, false);
    }
}

// ---------------------------------------------------------------------------
// Single messages.

/// A still world with one entity of `ty` at `pos`, seen by a witness at the
/// origin with radius 50 and hysteresis 5.
fn one_entity(ty: &str, pos: Vec3) -> (World, Client) {
    let mut world = World::new(Vec3::ZERO);
    world.spawn(EntityId(7), type_named(ty), pos, 0.25, 3, 0);
    (world, Client::new(50.0, Budget::unlimited(5.0)))
}

#[test]
fn entity_inside_the_radius_enters_once_with_public_props_only() {
    for ty in ["Avatar", "Npc"] {
        let (world, mut client) = one_entity(ty, Vec3::new(30.0, 1.0, -20.0));
        let sent = client.step(&world);
        assert!(sent.datagrams.is_empty());
        let [ServerMsg::Enter {
            entity,
            index,
            type_id,
            pos,
            props,
            ..
        }] = sent.reliable.as_slice()
        else {
            panic!("want one enter, got {:?}", sent.reliable);
        };
        assert_eq!(
            (*entity, *index, *type_id, *pos),
            (EntityId(7), 0, type_named(ty), [30.0, 1.0, -20.0])
        );
        let idx: Vec<u16> = props.iter().map(|(i, _)| *i).collect();
        assert_eq!(idx, world.detail(EntityId(7)).public());
        if ty == "Avatar" {
            for private in ["health", "pings", "gold", "last_login"] {
                assert!(
                    !idx.contains(&prop_index("Avatar", private)),
                    "{private} was sent"
                );
            }
        }
        assert!(
            client.step(&world).is_empty(),
            "a known still entity sends nothing"
        );
    }
}

#[test]
fn witness_and_unknown_ids_are_ignored() {
    let (world, mut client) = one_entity("Npc", Vec3::new(500.0, 0.0, 0.0));
    let sent = client.step_with(&world, vec![ME, NOBODY, EntityId(7)]);
    assert!(sent.is_empty(), "{sent:?}");
    assert_eq!(client.witness.known_len(), 0);
}

#[test]
fn hysteresis_band_keeps_but_never_adds() {
    // The entity stays at x = 40; the witness walks so the distance is exact.
    let (mut world, mut client) = one_entity("Npc", Vec3::new(40.0, 0.0, 0.0));
    let walk = |world: &mut World, client: &Client, x: f32| {
        let tick = client.next_tick();
        world.move_to(ME, Vec3::new(x, 0.0, 0.0), 0.0, tick);
    };
    assert_eq!(client.step(&world).reliable.len(), 1);
    for x in [-13.0, -13.0, -15.0, -15.0] {
        walk(&mut world, &client, x);
        let sent = client.step(&world);
        assert!(sent.is_empty(), "in the band: {sent:?}");
        assert!(client.witness.knows(EntityId(7)));
    }
    walk(&mut world, &client, -15.5);
    let sent = client.step(&world);
    assert!(sent.datagrams.is_empty());
    assert_eq!(
        sent.reliable,
        vec![ServerMsg::Leave {
            entity: EntityId(7)
        }]
    );
    assert!(client.step(&world).is_empty());
    walk(&mut world, &client, -12.0);
    assert!(client.step(&world).is_empty());
    assert!(client.view.others.is_empty());
    walk(&mut world, &client, -10.0);
    let sent = client.step(&world);
    assert!(matches!(
        sent.reliable.as_slice(),
        [ServerMsg::Enter {
            entity: EntityId(7),
            ..
        }]
    ));
}

#[test]
fn vanished_entity_leaves_once_and_its_index_rests() {
    let (mut world, mut client) = one_entity("Npc", Vec3::new(10.0, 0.0, 0.0));
    client.step(&world);
    world.ents.remove(&EntityId(7));
    // Even if a stale index still names it.
    let sent = client.step_with(&world, vec![EntityId(7)]);
    assert_eq!(
        sent.reliable,
        vec![ServerMsg::Leave {
            entity: EntityId(7)
        }]
    );
    assert!(client.step(&world).is_empty());
    // The next entity gets another index until the quarantine is over.
    let index_of_next = |world: &mut World, client: &mut Client, id: u64| {
        world.spawn(EntityId(id), TypeId(1), Vec3::new(5.0, 0.0, 0.0), 0.0, 0, 0);
        let sent = client.step(world);
        world.ents.remove(&EntityId(id));
        client.step(world);
        match sent.reliable.as_slice() {
            [ServerMsg::Enter { index, .. }] => *index,
            other => panic!("want one enter, got {other:?}"),
        }
    };
    assert_eq!(index_of_next(&mut world, &mut client, 8), 1);
    while client.tick < 2 + u64::from(INDEX_QUARANTINE_S) * u64::from(HZ) {
        client.step(&world);
    }
    assert_eq!(index_of_next(&mut world, &mut client, 9), 0);
}

#[test]
fn three_hundred_movers_fill_few_datagrams_nearest_first() {
    let mut world = World::new(Vec3::ZERO);
    for i in 0..300u64 {
        let a = i as f32 * 0.02;
        let d = 5.0 + i as f32 * 0.3;
        world.spawn(
            EntityId(1 + i),
            TypeId(1),
            Vec3::new(d * a.cos(), 0.0, d * a.sin()),
            0.0,
            0,
            0,
        );
    }
    let budget = Budget::unlimited(5.0);
    let mut client = Client::new(100.0, budget);
    client.step(&world);
    assert_eq!(client.view.others.len(), 300);
    for i in 0..300u64 {
        let id = EntityId(1 + i);
        let e = &world.ents[&id];
        world.move_to(id, e.pos + Vec3::X, 0.1, 2);
    }
    let sent = client.step(&world);
    assert_eq!(sent.updated().len(), 300);
    // Full datagrams, not one update each.
    let (last, full) = sent.sizes.split_last().unwrap();
    assert!(*last <= budget.datagram);
    assert!(
        full.iter()
            .all(|&s| s <= budget.datagram && s > budget.datagram * 9 / 10),
        "{:?}",
        sent.sizes
    );
    // Nearest first across the datagrams (the entities are by distance in
    // id order), at most 10 bytes each before QUIC.
    let order: Vec<u64> = sent.updates.iter().map(|u| u.0 .0 - 1).collect();
    assert_eq!(order, (0..300).collect::<Vec<_>>());
    let payload: usize = sent.sizes.iter().sum();
    assert!(
        payload <= 300 * 10 + sent.sizes.len() * POSITIONS_HEADER,
        "{payload} bytes"
    );
    client.check_state(&world, false);
}

#[test]
fn entity_stopping_after_a_datagram_rests_once_two_ticks_later() {
    let (mut world, mut client) = one_entity("Npc", Vec3::new(10.0, 0.0, 0.0));
    assert_eq!(client.step(&world).reliable.len(), 1); // tick 1: enter
    world.move_to(EntityId(7), Vec3::new(11.0, 0.0, 0.0), 0.5, 2);
    let sent = client.step(&world); // tick 2: a datagram, which may be lost
    assert!(sent.reliable.is_empty());
    assert_eq!(sent.updated(), BTreeSet::from([EntityId(7)]));
    assert!(client.step(&world).is_empty()); // tick 3: still moving, as far as anyone knows
    let sent = client.step(&world); // tick 4: one reliable rest
    assert!(sent.datagrams.is_empty());
    assert!(matches!(
        sent.reliable.as_slice(),
        [ServerMsg::Rests { .. }]
    ));
    assert_eq!(sent.rested, vec![EntityId(7)]);
    client.check_state(&world, true);
    for _ in 0..5 {
        assert!(client.step(&world).is_empty());
    }
}

#[test]
fn an_entity_that_stops_before_its_update_goes_rests_instead() {
    // Its band updates every fourth tick: it moves and stops in between.
    let mut world = World::with(Vec3::ZERO, Types::banded());
    world.spawn(EntityId(7), TypeId(1), Vec3::new(60.0, 0.0, 0.0), 0.0, 0, 0);
    let mut client = Client::new(100.0, Budget::unlimited(5.0));
    client.step(&world);
    world.move_to(EntityId(7), Vec3::new(61.0, 0.0, 0.0), 0.0, 2);
    assert!(client.step(&world).is_empty(), "not due yet");
    assert!(client.step(&world).is_empty(), "not due yet");
    let sent = client.step(&world);
    assert!(sent.datagrams.is_empty());
    assert_eq!(sent.rested, vec![EntityId(7)]);
    client.check_state(&world, true);
    assert!(client.step(&world).is_empty());
}

#[test]
fn an_entity_out_of_a_datagrams_reach_moves_by_exact_rests() {
    // Within the radius on x and z, but a kilometre up.
    let (mut world, mut client) = one_entity("Npc", Vec3::new(10.0, 1000.0, 0.0));
    client.step(&world);
    world.move_to(EntityId(7), Vec3::new(11.0, 1000.0, 0.0), 0.5, 2);
    let sent = client.step(&world);
    assert!(sent.datagrams.is_empty());
    assert!(matches!(sent.reliable.as_slice(), [ServerMsg::Rest { .. }]));
    client.check_state(&world, true);
    for _ in 0..3 {
        assert!(client.step(&world).is_empty());
    }
}

#[test]
fn entity_that_keeps_moving_gets_no_rest() {
    let (mut world, mut client) = one_entity("Npc", Vec3::new(10.0, 0.0, 0.0));
    client.step(&world);
    for i in 0..6 {
        let tick = client.next_tick();
        world.move_to(EntityId(7), Vec3::new(10.0 + i as f32, 0.0, 0.0), 0.0, tick);
        let sent = client.step(&world);
        assert!(sent.reliable.is_empty(), "{:?}", sent.reliable);
        assert_eq!(sent.updated().len(), 1);
    }
}

#[test]
fn changed_public_props_of_a_known_entity_are_sent_alone() {
    let (mut world, mut client) = one_entity("Avatar", Vec3::new(10.0, 0.0, 0.0));
    client.step(&world);
    let id = EntityId(7);
    let emote = prop_index("Avatar", "emote");
    let title = prop_index("Avatar", "title");
    world.set_prop(id, prop_index("Avatar", "health"), Value::Int(1));
    world.set_prop(id, emote, Value::Int(42));
    world.set_prop(id, prop_index("Avatar", "pings"), Value::Int(9));
    let sent = client.step(&world);
    assert!(sent.datagrams.is_empty());
    assert_eq!(
        sent.reliable,
        vec![ServerMsg::Props {
            entity: id,
            props: vec![(emote, Value::Int(42))],
        }]
    );
    world.end_tick();
    world.set_prop(id, prop_index("Avatar", "gold"), Value::Int(5));
    world.set_prop(id, prop_index("Avatar", "pings"), Value::Int(10));
    assert!(client.step(&world).is_empty());
    world.end_tick();
    world.set_prop(id, title, Value::String("hero".into()));
    world.set_prop(id, emote, Value::Int(43));
    let sent = client.step(&world);
    let [ServerMsg::Props { entity, props }] = sent.reliable.as_slice() else {
        panic!("want one props, got {:?}", sent.reliable);
    };
    assert_eq!(*entity, id);
    let got: BTreeMap<u16, Value> = props.iter().cloned().collect();
    assert_eq!(
        got,
        BTreeMap::from([
            (title, Value::String("hero".into())),
            (emote, Value::Int(43))
        ])
    );
    world.end_tick();
    client.check_state(&world, true);
    assert!(client.step(&world).is_empty());
}

/// The indices of every property a tick's `Props` messages carried.
fn props_sent(sent: &Sent) -> Vec<u16> {
    sent.reliable
        .iter()
        .flat_map(|m| match m {
            ServerMsg::Props { props, .. } => props.iter().map(|p| p.0).collect(),
            _ => Vec::new(),
        })
        .collect()
}

#[test]
fn bands_send_their_properties_and_crossing_inward_sends_what_is_missing() {
    let mut world = World::with(Vec3::ZERO, Types::banded());
    let id = EntityId(7);
    let avatar = type_named("Avatar");
    world.spawn(id, avatar, Vec3::new(60.0, 0.0, 0.0), 0.0, 1, 0);
    let mut client = Client::new(100.0, Budget::unlimited(5.0));
    // The far band names no property: the enter carries none.
    let sent = client.step(&world);
    assert!(
        matches!(sent.reliable.as_slice(), [ServerMsg::Enter { props, .. }] if props.is_empty()),
        "{:?}",
        sent.reliable
    );
    // A change out there is not sent.
    let public = world.detail(id).public().to_vec();
    world.set_prop(
        id,
        public[0],
        value_like(&world.ents[&id].props[public[0] as usize], 9),
    );
    assert!(client.step(&world).is_empty());
    world.end_tick();
    // Into the middle band: its one property, at its current value.
    world.move_to(id, Vec3::new(30.0, 0.0, 0.0), 0.0, client.next_tick());
    let sent = client.step(&world);
    let props = props_sent(&sent);
    assert_eq!(props, vec![public[0]]);
    // Into the near band: the rest of them, not the one it has.
    world.move_to(id, Vec3::new(10.0, 0.0, 0.0), 0.0, client.next_tick());
    let sent = client.step(&world);
    let props = props_sent(&sent);
    assert_eq!(props, public[1..].to_vec());
    client.check_state(&world, false);
}

#[test]
fn a_big_message_goes_and_the_next_ticks_pay_for_it() {
    let (mut world, mut client) = one_entity("Npc", Vec3::new(10.0, 0.0, 0.0));
    client.budget = Budget {
        bytes_per_sec: 1000,
        ..client.budget
    };
    let name = prop_index("Npc", "name");
    world.ents.get_mut(&EntityId(7)).unwrap().props[name as usize] = Value::String("x".repeat(450));
    // 100 bytes a tick, and an enter of some 470: it goes alone...
    let sent = client.step(&world);
    assert_eq!(sent.reliable.len(), 1);
    assert!(sent.bytes > 400);
    // ...and nothing more for the four ticks it overspent.
    world.spawn(EntityId(8), TypeId(1), Vec3::new(5.0, 0.0, 0.0), 0.0, 0, 0);
    let mut quiet = 0;
    while client.step(&world).is_empty() {
        quiet += 1;
    }
    assert_eq!(quiet, (sent.bytes - 100) / 100);
    client.check_budget();
}

#[test]
fn own_traffic_counts_first() {
    let (world, mut client) = one_entity("Npc", Vec3::new(10.0, 0.0, 0.0));
    client.twin = None;
    client.budget = Budget {
        bytes_per_sec: 1000,
        ..client.budget
    };
    client.tick += 1;
    let mut out = WitnessOut::default();
    // The own client's message of the tick fills the tick's share.
    out.reliable.push(vec![0; 150]);
    client.witness.update(
        ME,
        world.center(),
        client.clock(),
        &[EntityId(7)],
        |id| world.visible(id),
        &client.budget,
        &mut out,
    );
    assert_eq!(out.reliable.len(), 1, "the enter went beyond the budget");
    assert!(!client.witness.knows(EntityId(7)));
}

#[test]
fn props_of_unseen_entities_are_not_sent() {
    let (mut world, mut client) = one_entity("Npc", Vec3::new(200.0, 0.0, 0.0));
    client.step(&world);
    world.set_prop(EntityId(7), prop_index("Npc", "mood"), Value::Int(3));
    assert!(client.step_with(&world, vec![EntityId(7)]).is_empty());
    world.end_tick();
    world.move_to(
        EntityId(7),
        Vec3::new(20.0, 0.0, 0.0),
        0.25,
        client.next_tick(),
    );
    let sent = client.step(&world);
    assert_eq!(sent.reliable.len(), 1);
    client.check_state(&world, true);
    assert_eq!(
        client.view.others[&EntityId(7)].props[&prop_index("Npc", "mood")],
        Value::Int(3)
    );
}

#[test]
fn far_mover_is_not_starved_by_a_near_one() {
    // Room for one update a tick (and a header), and both move every tick:
    // waiting brings the far one to the front within a few ticks.
    let mut world = World::new(Vec3::ZERO);
    let (near, far) = (EntityId(1), EntityId(2));
    world.spawn(near, TypeId(1), Vec3::new(10.0, 0.0, 0.0), 0.0, 0, 0);
    world.spawn(far, TypeId(1), Vec3::new(0.0, 0.0, 40.0), 0.0, 0, 0);
    let mut client = Client::new(50.0, Budget::unlimited(5.0));
    client.step(&world);
    client.budget.bytes_per_sec = (POSITIONS_HEADER as u32 + 10) * u32::from(HZ);
    let mut far_sent_at = None;
    for _ in 0..12 {
        let tick = client.next_tick();
        for id in [near, far] {
            let e = &world.ents[&id];
            world.move_to(id, e.pos, e.yaw + 0.1, tick);
        }
        let sent = client.step(&world);
        assert_eq!(sent.updated().len(), 1);
        if sent.updated().contains(&far) {
            far_sent_at = Some(tick);
            break;
        }
    }
    let at = far_sent_at.expect("the far mover was never sent");
    assert!(at > 2, "the far mover went first at tick {at}");
}

#[test]
fn a_moved_witness_resends_only_the_props_that_changed_while_it_travelled() {
    let mut world = World::new(Vec3::ZERO);
    let (a, b) = (EntityId(7), EntityId(8));
    world.spawn(
        a,
        type_named("Avatar"),
        Vec3::new(10.0, 0.0, 0.0),
        0.0,
        1,
        0,
    );
    world.spawn(
        b,
        type_named("Avatar"),
        Vec3::new(-10.0, 0.0, 0.0),
        0.0,
        2,
        0,
    );
    world.end_tick();
    let mut client = Client::new(50.0, Budget::unlimited(5.0));
    client.step(&world);
    assert_eq!(client.in_view(), BTreeSet::from([a, b]));
    // The witness moves cell; while it travels, `a` changes a public
    // property, and the change is no longer marked when the witness lands.
    let state = client.witness.export(client.tick, |id| {
        let e = world.ents.get(&id)?;
        Some((e.props.as_slice(), e.dirty.as_slice(), world.detail(id)))
    });
    let emote = prop_index("Avatar", "emote");
    world.set_prop(a, emote, Value::Int(77));
    world.end_tick();
    client.witness = Witness::import(&state, client.tick);
    client.twin = None;
    let sent = client.step(&world);
    let [ServerMsg::Props { entity, props }] = sent.reliable.as_slice() else {
        panic!(
            "want the props of the one entity that changed, got {:?}",
            sent.reliable
        );
    };
    assert_eq!(*entity, a);
    let got: BTreeMap<u16, Value> = props.iter().cloned().collect();
    assert_eq!(got, world.band_props(a), "resent whole");
    assert!(client.step(&world).is_empty());
    // Its indices travelled with it: a newcomer gets a fresh one.
    world.spawn(EntityId(9), TypeId(1), Vec3::new(1.0, 0.0, 1.0), 0.0, 0, 0);
    let sent = client.step(&world);
    assert!(matches!(
        sent.reliable.as_slice(),
        [ServerMsg::Enter { index: 2, .. }]
    ));
}

#[test]
fn a_witness_that_moves_on_before_it_compared_keeps_what_its_client_has() {
    let mut world = World::new(Vec3::ZERO);
    let a = EntityId(7);
    world.spawn(
        a,
        type_named("Avatar"),
        Vec3::new(10.0, 0.0, 0.0),
        0.0,
        1,
        0,
    );
    world.end_tick();
    let mut client = Client::new(50.0, Budget::unlimited(5.0));
    client.twin = None;
    client.step(&world);
    let export = |client: &Client, world: &World| {
        client.witness.export(client.tick, |id| {
            let e = world.ents.get(&id)?;
            Some((e.props.as_slice(), e.dirty.as_slice(), world.detail(id)))
        })
    };
    // It lands on a cell whose copy of `a` is already newer and moves on
    // before `a` is ever a candidate there.
    let state = export(&client, &world);
    let emote = prop_index("Avatar", "emote");
    world.set_prop(a, emote, Value::Int(77));
    world.end_tick();
    client.witness = Witness::import(&state, client.tick);
    let state = export(&client, &world);
    client.witness = Witness::import(&state, client.tick);
    // The third cell's copy equals the second's: the client still has
    // the first's, and hears the change.
    let sent = client.step(&world);
    assert!(
        matches!(sent.reliable.as_slice(), [ServerMsg::Props { entity, .. }] if *entity == a),
        "{:?}",
        sent.reliable
    );
    client.check_state(&world, true);
}

#[test]
fn a_moved_witness_keeps_an_unghosted_neighbour_for_its_grace_only() {
    let mut world = World::new(Vec3::ZERO);
    let (near, far) = (EntityId(7), EntityId(8));
    world.spawn(
        near,
        type_named("Avatar"),
        Vec3::new(10.0, 0.0, 0.0),
        0.0,
        1,
        0,
    );
    world.spawn(
        far,
        type_named("Avatar"),
        Vec3::new(52.0, 0.0, 0.0),
        0.0,
        2,
        0,
    );
    world.end_tick();
    let mut client = Client::new(50.0, Budget::unlimited(5.0));
    // `far` enters at 48 m, then stands in the hysteresis band.
    world.move_to(far, Vec3::new(48.0, 0.0, 0.0), 0.0, 1);
    client.step(&world);
    world.end_tick();
    world.move_to(far, Vec3::new(52.0, 0.0, 0.0), 0.0, 2);
    client.step(&world);
    world.end_tick();
    client.step(&world);
    assert_eq!(client.in_view(), BTreeSet::from([near, far]));
    // The witness lands on a cell that holds neither yet.
    let state = client.witness.export(client.tick, |id| {
        let e = world.ents.get(&id)?;
        Some((e.props.as_slice(), e.dirty.as_slice(), world.detail(id)))
    });
    client.witness = Witness::import(&state, client.tick);
    client.twin = None;
    let mut leaves = Vec::new();
    for t in 1..=u64::from(ARRIVAL_GRACE) + 1 {
        // Straight to the witness: the entities are in the band but not
        // candidates, which the client's checks would take for a bug.
        client.tick += 1;
        let mut out = WitnessOut::default();
        let clock = client.clock();
        client.witness.update(
            ME,
            world.center(),
            clock,
            &[],
            |id| world.visible(id),
            &client.budget,
            &mut out,
        );
        for b in &out.reliable {
            if let ServerMsg::Leave { entity } = decode(b).expect("decodes") {
                leaves.push((t, entity));
            }
        }
    }
    // The one last seen beyond the radius leaves at once; the one within it
    // is kept through the grace and leaves after it.
    assert_eq!(leaves, vec![(1, far), (u64::from(ARRIVAL_GRACE) + 1, near)]);
}
