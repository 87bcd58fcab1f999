//! Tests of the witness. The contract: for random worlds and random moves, the
//! enter/leave/props/position messages a witness produces, decoded and applied
//! in order to an empty client [`View`], reproduce the AoI truth — every
//! entity within the radius is seen, none beyond radius plus hysteresis is,
//! the hysteresis band only keeps what was already seen, and what is seen has
//! the true type, public properties and (with an unlimited budget, or once the
//! world is still) the true position. With a small budget the nearest movers
//! go first (an update waits from when its entity moved, not from its last
//! send), far movers are not starved, and the view still converges. Every
//! tick also runs a twin witness through [`Witness::update_briefs`] (the
//! cell's path), whose bytes must equal those of [`Witness::update`]. Unit
//! tests pin the single messages: one `Enter` with public properties only,
//! one `Leave`, nothing for an entity resting in the band, datagrams within
//! their size limit, one `Rest` after a datagram-only move, and `Props` with
//! only the changed public properties.
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
use tessera::frame::decode;

/// The witness entity.
const ME: EntityId = EntityId(1_000_000);
/// An id no entity has.
const NOBODY: EntityId = EntityId(9_999_999);

fn unlimited(hysteresis: f32) -> Budget {
    Budget {
        bytes: usize::MAX,
        updates: usize::MAX,
        datagram: 1100,
        hysteresis,
    }
}

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

/// The demo types: property defaults and public (other-clients) indices.
struct Types {
    defaults: Vec<Vec<Value>>,
    public: Vec<Vec<u16>>,
}

impl Types {
    fn demo() -> Types {
        let defs = tessera_demo::definitions();
        Types {
            defaults: defs.types.iter().map(|t| t.defaults()).collect(),
            public: defs
                .types
                .iter()
                .map(|t| {
                    t.properties
                        .iter()
                        .filter(|p| p.flags.other_clients())
                        .map(|p| p.index)
                        .collect()
                })
                .collect(),
        }
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
        let mut w = World {
            types: Types::demo(),
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

    /// Moves an entity as a real does: `moved_tick` follows actual changes.
    fn move_to(&mut self, id: EntityId, pos: Vec3, yaw: f32, tick: u64) {
        if let Some(e) = self.ents.get_mut(&id) {
            if e.pos != pos || e.yaw != yaw {
                e.pos = pos;
                e.yaw = yaw;
                e.moved_tick = tick;
            }
        }
    }

    /// Sets a property as a real does: only a change marks it dirty.
    fn set_prop(&mut self, id: EntityId, index: u16, value: Value) {
        if let Some(e) = self.ents.get_mut(&id) {
            if let Some(slot) = e.props.get_mut(index as usize) {
                if *slot != value {
                    *slot = value;
                    if !e.dirty.contains(&index) {
                        e.dirty.push(index);
                    }
                }
            }
        }
    }

    fn end_tick(&mut self) {
        for e in self.ents.values_mut() {
            e.dirty.clear();
        }
    }

    fn visible(&self, id: EntityId) -> Option<Visible<'_>> {
        let e = self.ents.get(&id)?;
        Some(Visible {
            type_id: e.type_id,
            pos: e.pos,
            yaw: e.yaw,
            props: &e.props,
            public: &self.types.public[e.type_id.0 as usize],
            dirty: &e.dirty,
            moved_tick: e.moved_tick,
        })
    }

    fn public_props(&self, id: EntityId) -> BTreeMap<u16, Value> {
        let e = &self.ents[&id];
        self.types.public[e.type_id.0 as usize]
            .iter()
            .map(|&i| (i, e.props[i as usize].clone()))
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
    /// Entities whose position in the view was stale once the reliable
    /// messages were applied (what the datagrams had to fix).
    pending: BTreeSet<EntityId>,
}

impl Sent {
    fn updates(&self) -> Vec<PosUpdate> {
        self.datagrams
            .iter()
            .flat_map(|d| match d {
                ServerDatagram::Positions { updates, .. } => updates.iter().copied(),
            })
            .collect()
    }

    fn updated(&self) -> BTreeSet<EntityId> {
        self.updates().iter().map(|u| u.entity).collect()
    }

    fn is_empty(&self) -> bool {
        self.reliable.is_empty() && self.datagrams.is_empty()
    }
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
}

impl Client {
    fn new(radius: f32, budget: Budget) -> Client {
        Client {
            witness: Witness::new(radius),
            twin: Some(Witness::new(radius)),
            view: View::new(ME, TypeId(0), [0.0; 3], &[], [0.0, 0.0, 400.0, 400.0]),
            budget,
            tick: 0,
        }
    }

    fn next_tick(&self) -> u64 {
        self.tick + 1
    }

    /// The server time of the last tick run.
    fn now_us(&self) -> u64 {
        1_700_000_000_000_000 + self.tick * 50_000
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
    /// applies every message in order, and checks the budget.
    fn step_with(&mut self, world: &World, cands: Vec<EntityId>) -> Sent {
        let now = self.now_us() + 50_000;
        self.step_at(world, cands, now)
    }

    fn step_at(&mut self, world: &World, cands: Vec<EntityId>, now: u64) -> Sent {
        self.tick += 1;
        let mut out = WitnessOut::default();
        self.witness.update(
            ME,
            world.center(),
            self.tick,
            now,
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
                self.tick,
                now,
                &briefs,
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
            self.check_reliable(world, &msg, now, &mut touched);
            self.view.apply(&msg);
            sent.reliable.push(msg);
        }
        sent.pending = self
            .view
            .others
            .iter()
            .filter(|(id, s)| {
                let e = &world.ents[*id];
                s.pos != e.pos.to_array() || s.yaw != e.yaw
            })
            .map(|(id, _)| *id)
            .collect();
        let mut updated = BTreeSet::new();
        let mut bytes_spent = 0usize;
        for bytes in &out.datagrams {
            assert!(
                bytes.len() <= self.budget.datagram,
                "datagram of {} bytes over the limit of {}",
                bytes.len(),
                self.budget.datagram
            );
            let d: ServerDatagram = decode(bytes).expect("datagram decodes");
            let ServerDatagram::Positions { sent_us, updates } = &d;
            assert_eq!(*sent_us, now);
            assert!(!updates.is_empty(), "empty datagram");
            for u in updates {
                assert!(updated.insert(u.entity), "{} updated twice", u.entity);
                assert!(
                    self.view.others.contains_key(&u.entity),
                    "update of unseen {}",
                    u.entity
                );
                assert!(
                    sent.pending.contains(&u.entity),
                    "update of unchanged {}",
                    u.entity
                );
                let e = &world.ents[&u.entity];
                assert_eq!((u.pos, u.yaw), (e.pos.to_array(), e.yaw));
                bytes_spent += encode_body(u).len();
            }
            self.view.apply_datagram(&d);
            sent.sizes.push(bytes.len());
            sent.datagrams.push(d);
        }
        assert!(updated.len() <= self.budget.updates);
        assert!(
            bytes_spent <= self.budget.bytes,
            "{bytes_spent} bytes of updates"
        );
        sent
    }

    /// Each stream message must make sense for the view it is applied to.
    fn check_reliable(
        &self,
        world: &World,
        msg: &ServerMsg,
        now: u64,
        touched: &mut BTreeSet<EntityId>,
    ) {
        let c = world.center();
        let r = self.witness.radius;
        let outer = r + self.budget.hysteresis;
        match msg {
            ServerMsg::Enter {
                entity,
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
                assert_eq!(map, world.public_props(*entity));
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
                let public = &world.types.public[e.type_id.0 as usize];
                for (i, v) in props {
                    assert!(public.contains(i), "private property {i} of {entity} sent");
                    assert!(
                        e.dirty.contains(i),
                        "unchanged property {i} of {entity} sent"
                    );
                    assert_eq!(Some(v), e.props.get(*i as usize));
                }
            }
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
                assert!(
                    e.moved_tick + 1 < self.tick,
                    "rest of {entity}, which moved last tick"
                );
            }
            other => panic!("a witness sent {other:?}"),
        }
    }

    /// (a)–(c) and (e): the view holds exactly what the AoI allows.
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

    /// (d): types and public properties always; positions when `exact`.
    fn check_state(&self, world: &World, exact: bool) {
        for (id, s) in &self.view.others {
            let e = &world.ents[id];
            assert_eq!(s.type_id, e.type_id);
            assert_eq!(s.props, world.public_props(*id), "props of {id}");
            if exact {
                assert_eq!(
                    (s.pos, s.yaw),
                    (e.pos.to_array(), e.yaw),
                    "position of {id}"
                );
            }
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
}

fn a_case() -> impl Strategy<Value = Case> {
    (
        30.0f32..120.0,
        0.0f32..12.0,
        0.0f32..400.0,
        0.0f32..400.0,
        vec(spec(), 20..60),
        vec(tick_ops(), 1..25),
    )
        .prop_map(|(radius, hysteresis, cx, cz, specs, ticks)| Case {
            radius,
            hysteresis,
            center: Vec3::new(cx, 0.0, cz),
            specs,
            ticks,
        })
}

/// Runs a case's world: the initial tick, then each of its ticks, checking
/// membership and state after every one. With `exact`, positions must match
/// every tick and every stale position must be updated at once; otherwise
/// (a limited budget) `budget.updates` stale positions go per tick.
fn run_case(case: &Case, budget: Budget, exact: bool) -> (World, Client) {
    let mut world = World::new(case.center);
    let mut next_id = 1u64;
    for s in &case.specs {
        let pos = s.pos(case.center, case.radius);
        world.spawn(EntityId(next_id), TypeId(s.ty), pos, s.yaw, s.k, 0);
        next_id += 1;
    }
    let mut client = Client::new(case.radius, budget);
    let mut before = BTreeSet::new();
    let check = |client: &Client, world: &World, sent: &Sent, before: &BTreeSet<EntityId>| {
        client.check_membership(world, before);
        client.check_state(world, exact);
        let want = if exact {
            sent.pending.len()
        } else {
            sent.pending.len().min(budget.updates)
        };
        assert_eq!(sent.updated().len(), want, "stale positions left unsent");
    };
    let sent = client.step(&world);
    check(&client, &world, &sent, &before);
    before = client.in_view();
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

/// Lets a still world run until every position and rest has been sent,
/// checking each tick, then checks that positions are exact and that one
/// more tick sends nothing.
fn settle(world: &World, client: &mut Client, ticks: usize) {
    let mut rested = BTreeSet::new();
    for _ in 0..ticks {
        let before = client.in_view();
        let sent = client.step(world);
        client.check_membership(world, &before);
        client.check_state(world, false);
        assert_eq!(
            client.in_view(),
            before,
            "membership changed in a still world"
        );
        for m in &sent.reliable {
            match m {
                ServerMsg::Rest { entity, .. } => {
                    assert!(rested.insert(*entity), "{entity} rested twice");
                }
                other => panic!("{other:?} in a still world"),
            }
        }
    }
    client.check_state(world, true);
    let sent = client.step(world);
    assert!(sent.is_empty(), "a settled witness sent {sent:?}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// With an unlimited budget the view equals the AoI truth after every tick.
    #[test]
    fn unlimited_budget_view_reproduces_the_aoi(case in a_case()) {
        let (world, mut client) = run_case(&case, unlimited(case.hysteresis), true);
        settle(&world, &mut client, 3);
    }

    /// With a small budget membership and properties still hold every tick,
    /// and positions converge once the world is still.
    #[test]
    fn small_budget_keeps_membership_and_converges(case in a_case()) {
        let budget = Budget {
            bytes: 200,
            updates: 5,
            datagram: 1100,
            hysteresis: case.hysteresis,
        };
        let (world, mut client) = run_case(&case, budget, false);
        let drain = world.others().count() / budget.updates + 3;
        settle(&world, &mut client, drain);
    }

    /// Entities that all entered together and then all move at once have
    /// waited equally: the updates that fit go to the nearest movers (in order
    /// of distance where the byte budget cuts), tick after tick until the view
    /// is exact.
    #[test]
    fn small_budget_sends_the_nearest_movers_first(
        radius in 40.0f32..120.0,
        placed in vec((0.0f32..0.85, 0.0f32..TAU, -3.0f32..3.0, -3.0f32..3.0), 8..60),
        wait in 0usize..4,
        limit in 1usize..8,
        by_bytes in any::<bool>(),
    ) {
        let center = Vec3::new(200.0, 0.0, 200.0);
        let mut world = World::new(center);
        for (i, (frac, bearing, _, _)) in placed.iter().enumerate() {
            let d = frac * radius;
            let pos = center + Vec3::new(d * bearing.cos(), 0.0, d * bearing.sin());
            world.spawn(EntityId(i as u64 + 1), TypeId(i as u16 % 2), pos, 0.0, 0, 0);
        }
        // Ids below 128: every update is 17 bytes.
        let budget = if by_bytes {
            Budget { bytes: 17 * limit + 16, updates: usize::MAX, ..unlimited(5.0) }
        } else {
            Budget { updates: limit, ..unlimited(5.0) }
        };
        let mut client = Client::new(radius, budget);
        let sent = client.step(&world);
        prop_assert_eq!(client.view.others.len(), placed.len());
        prop_assert!(sent.datagrams.is_empty());
        for _ in 0..wait {
            prop_assert!(client.step(&world).is_empty());
        }
        let tick = client.next_tick();
        for (i, (_, _, dx, dz)) in placed.iter().enumerate() {
            let id = EntityId(i as u64 + 1);
            let e = &world.ents[&id];
            let (pos, yaw) = (e.pos + Vec3::new(*dx, 0.0, *dz), e.yaw + 0.5);
            world.move_to(id, pos, yaw, tick);
        }
        let mut left: BTreeSet<EntityId> = world.other_ids().into_iter().collect();
        while !left.is_empty() {
            let before = client.in_view();
            let sent = client.step(&world);
            client.check_membership(&world, &before);
            let updates = sent.updates();
            prop_assert_eq!(updates.len(), limit.min(left.len()));
            let dist = |id: &EntityId| dist2(world.ents[id].pos, center).sqrt();
            let ds: Vec<f32> = updates.iter().map(|u| dist(&u.entity)).collect();
            // Equal waits divide every distance alike; allow for the rounding.
            // Where bytes cut the list, order decides what fits, so it must be
            // nearest first; where only the count does, the set is what matters
            // (checked below) and the witness skips sorting.
            let tol = 1.0 + 1e-5;
            if by_bytes && left.len() > limit {
                prop_assert!(ds.windows(2).all(|w| w[0] <= w[1] * tol), "not nearest first: {:?}", ds);
            }
            for u in &updates {
                prop_assert!(left.remove(&u.entity));
            }
            let farthest_sent = ds.iter().copied().fold(0.0, f32::max);
            for id in &left {
                prop_assert!(dist(id) * tol >= farthest_sent, "{} at {} waits behind {}", id, dist(id), farthest_sent);
            }
        }
        client.check_state(&world, true);
    }

    /// However many movers, ids and clock values, every datagram fits its
    /// limit and every mover is updated exactly once.
    #[test]
    fn datagrams_fit_their_limit(
        ids in prop::collection::btree_set(0u64..u64::MAX, 1..300),
        datagram in 40usize..1500,
        now in any::<u64>(),
    ) {
        let center = Vec3::new(0.0, 0.0, 0.0);
        let mut world = World::new(center);
        let ids: Vec<EntityId> = ids.into_iter().map(EntityId).filter(|id| *id != ME).collect();
        for (i, id) in ids.iter().enumerate() {
            let a = i as f32 * 0.1;
            world.spawn(*id, TypeId(0), Vec3::new(50.0 * a.cos(), 0.0, 50.0 * a.sin()), 0.0, 0, 0);
        }
        let budget = Budget { datagram, ..unlimited(5.0) };
        let mut client = Client::new(100.0, budget);
        let cands = client.candidates(&world);
        client.step_at(&world, cands, now);
        for id in &ids {
            let e = &world.ents[id];
            let (pos, yaw) = (e.pos + Vec3::new(1.0, 0.5, -1.0), e.yaw + 1.0);
            world.move_to(*id, pos, yaw, 2);
        }
        let cands = client.candidates(&world);
        let sent = client.step_at(&world, cands, now);
        prop_assert_eq!(sent.updated().len(), ids.len());
        prop_assert!(sent.sizes.iter().all(|&s| s <= datagram));
        client.check_state(&world, true);
    }
}

// ---------------------------------------------------------------------------
// Single messages.

/// A still world with one entity of `ty` at `pos`, seen by a witness at the
/// origin with radius 50 and hysteresis 5.
fn one_entity(ty: &str, pos: Vec3) -> (World, Client) {
    let mut world = World::new(Vec3::ZERO);
    world.spawn(EntityId(7), type_named(ty), pos, 0.25, 3, 0);
    (world, Client::new(50.0, unlimited(5.0)))
}

#[test]
fn public_indices_follow_the_flags() {
    let types = Types::demo();
    let avatar = type_named("Avatar").0 as usize;
    let npc = type_named("Npc").0 as usize;
    let names = |ty: &str, idx: &[u16]| -> BTreeSet<String> {
        let defs = tessera_demo::definitions();
        let t = defs.by_name(ty).unwrap();
        idx.iter()
            .map(|&i| t.properties[i as usize].name.clone())
            .collect()
    };
    let want = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(
        names("Avatar", &types.public[avatar]),
        want(&["emote", "name", "title"])
    );
    assert_eq!(names("Npc", &types.public[npc]), want(&["mood", "name"]));
}

#[test]
fn entity_inside_the_radius_enters_once_with_public_props_only() {
    for ty in ["Avatar", "Npc"] {
        let (world, mut client) = one_entity(ty, Vec3::new(30.0, 1.0, -20.0));
        let sent = client.step(&world);
        assert!(sent.datagrams.is_empty());
        let [ServerMsg::Enter {
            entity,
            type_id,
            pos,
            props,
            ..
        }] = sent.reliable.as_slice()
        else {
            panic!("want one enter, got {:?}", sent.reliable);
        };
        assert_eq!(
            (*entity, *type_id, *pos),
            (EntityId(7), type_named(ty), [30.0, 1.0, -20.0])
        );
        let idx: Vec<u16> = props.iter().map(|(i, _)| *i).collect();
        let e = &world.ents[&EntityId(7)];
        assert_eq!(idx, world.types.public[e.type_id.0 as usize]);
        for (i, v) in props {
            assert_eq!(*v, e.props[*i as usize]);
        }
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
    // 53 m and then exactly 55 m: in the band, kept, nothing to say.
    for x in [-13.0, -13.0, -15.0, -15.0] {
        walk(&mut world, &client, x);
        let sent = client.step(&world);
        assert!(sent.is_empty(), "in the band: {sent:?}");
        assert!(client.witness.knows(EntityId(7)));
    }
    // 55.5 m: one leave, then silence.
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
    // Back into the band: not added.
    walk(&mut world, &client, -12.0);
    assert!(client.step(&world).is_empty());
    assert!(client.view.others.is_empty());
    // Exactly on the radius: enters.
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
fn entity_moving_past_the_band_leaves_once() {
    let (mut world, mut client) = one_entity("Avatar", Vec3::new(0.0, 0.0, 45.0));
    client.step(&world);
    world.move_to(
        EntityId(7),
        Vec3::new(0.0, 0.0, 54.0),
        0.25,
        client.next_tick(),
    );
    let sent = client.step(&world);
    assert!(sent.reliable.is_empty());
    assert_eq!(sent.updated(), BTreeSet::from([EntityId(7)]));
    world.move_to(
        EntityId(7),
        Vec3::new(0.0, 0.0, 56.0),
        0.25,
        client.next_tick(),
    );
    // The index may still report it: it is filtered all the same.
    let sent = client.step_with(&world, vec![EntityId(7)]);
    assert_eq!(
        sent.reliable,
        vec![ServerMsg::Leave {
            entity: EntityId(7)
        }]
    );
    assert!(sent.datagrams.is_empty());
    for _ in 0..3 {
        assert!(client.step(&world).is_empty());
    }
}

#[test]
fn vanished_entity_leaves_once() {
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
}

#[test]
fn three_hundred_movers_split_into_datagrams_within_the_limit() {
    for (base, now) in [(1u64, 1_700_000_000_000_000u64), (1 << 40, u64::MAX)] {
        let mut world = World::new(Vec3::ZERO);
        for i in 0..300u64 {
            let a = i as f32 * 0.02;
            let d = 5.0 + i as f32 * 0.3;
            world.spawn(
                EntityId(base + i),
                TypeId(1),
                Vec3::new(d * a.cos(), 0.0, d * a.sin()),
                0.0,
                0,
                0,
            );
        }
        let budget = Budget {
            bytes: usize::MAX,
            ..Budget::default()
        };
        let mut client = Client::new(100.0, budget);
        let cands = client.candidates(&world);
        client.step_at(&world, cands, now);
        assert_eq!(client.view.others.len(), 300);
        for i in 0..300u64 {
            let id = EntityId(base + i);
            let e = &world.ents[&id];
            world.move_to(id, e.pos + Vec3::X, 0.1, 2);
        }
        let cands = client.candidates(&world);
        let sent = client.step_at(&world, cands, now);
        assert_eq!(sent.updated().len(), 300);
        assert!(sent.datagrams.len() >= 2, "{:?}", sent.sizes);
        // Full datagrams, not one update each.
        let (last, full) = sent.sizes.split_last().unwrap();
        assert!(*last <= budget.datagram);
        assert!(
            full.iter()
                .all(|&s| s <= budget.datagram && s > budget.datagram * 9 / 10),
            "{:?}",
            sent.sizes
        );
        // Nearest first across the datagrams (the entities are by distance in id order).
        let order: Vec<u64> = sent.updates().iter().map(|u| u.entity.0 - base).collect();
        assert_eq!(order, (0..300).collect::<Vec<_>>());
        client.check_state(&world, true);
    }
}

#[test]
fn entity_stopping_after_a_datagram_rests_once_two_ticks_later() {
    let (mut world, mut client) = one_entity("Npc", Vec3::new(10.0, 0.0, 0.0));
    assert_eq!(client.step(&world).reliable.len(), 1); // tick 1: enter
                                                       // Tick 2: moves; the datagram may be lost.
    world.move_to(EntityId(7), Vec3::new(11.0, 0.0, 0.0), 0.5, 2);
    let sent = client.step(&world);
    assert!(sent.reliable.is_empty());
    assert_eq!(sent.updated(), BTreeSet::from([EntityId(7)]));
    // Tick 3: still, nothing yet.
    assert!(client.step(&world).is_empty());
    // Tick 4: one reliable rest at the true position.
    let sent = client.step(&world);
    assert!(sent.datagrams.is_empty());
    assert_eq!(
        sent.reliable,
        vec![ServerMsg::Rest {
            entity: EntityId(7),
            pos: [11.0, 0.0, 0.0],
            yaw: 0.5,
            sent_us: client.now_us(),
        }]
    );
    for _ in 0..5 {
        assert!(client.step(&world).is_empty());
    }
}

#[test]
fn rest_repairs_a_lost_datagram() {
    let (mut world, mut client) = one_entity("Avatar", Vec3::new(10.0, 0.0, 0.0));
    client.twin = None;
    client.step(&world);
    world.move_to(EntityId(7), Vec3::new(12.0, 0.0, 3.0), 1.0, 2);
    // The client never gets this tick's datagram.
    let mut out = WitnessOut::default();
    client.tick += 1;
    client.witness.update(
        ME,
        world.center(),
        client.tick,
        client.now_us(),
        &[EntityId(7)],
        |id| world.visible(id),
        &client.budget,
        &mut out,
    );
    assert_eq!(out.datagrams.len(), 1);
    assert!(out.reliable.is_empty());
    assert_eq!(client.view.others[&EntityId(7)].pos, [10.0, 0.0, 0.0]);
    client.step(&world);
    client.step(&world);
    client.check_state(&world, true);
}

#[test]
fn entity_that_never_went_by_datagram_gets_no_rest() {
    // Enters while moving, then stops: the enter was reliable already.
    let (mut world, mut client) = one_entity("Npc", Vec3::new(10.0, 0.0, 0.0));
    world.move_to(EntityId(7), Vec3::new(11.0, 0.0, 0.0), 0.5, 1);
    assert_eq!(client.step(&world).reliable.len(), 1);
    for _ in 0..5 {
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
    // One public change among private ones.
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
    // Private changes only: nothing.
    world.set_prop(id, prop_index("Avatar", "gold"), Value::Int(5));
    world.set_prop(id, prop_index("Avatar", "pings"), Value::Int(10));
    assert!(client.step(&world).is_empty());
    world.end_tick();
    // Two public changes: one message with both.
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
    assert_eq!(props.len(), 2);
    world.end_tick();
    client.check_state(&world, true);
    assert!(client.step(&world).is_empty());
}

#[test]
fn props_of_unseen_entities_are_not_sent() {
    let (mut world, mut client) = one_entity("Npc", Vec3::new(200.0, 0.0, 0.0));
    client.step(&world);
    world.set_prop(EntityId(7), prop_index("Npc", "mood"), Value::Int(3));
    assert!(client.step_with(&world, vec![EntityId(7)]).is_empty());
    world.end_tick();
    // It enters later with the current values.
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
    // Room for one update a tick, and both move every tick: waiting brings
    // the far one to the front within a few ticks.
    let mut world = World::new(Vec3::ZERO);
    let (near, far) = (EntityId(1), EntityId(2));
    world.spawn(near, TypeId(1), Vec3::new(10.0, 0.0, 0.0), 0.0, 0, 0);
    world.spawn(far, TypeId(1), Vec3::new(0.0, 0.0, 40.0), 0.0, 0, 0);
    let budget = Budget {
        updates: 1,
        ..unlimited(5.0)
    };
    let mut client = Client::new(50.0, budget);
    client.step(&world);
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

/// The priority of a position update is its distance divided by one plus the
/// ticks it waited, and an update waits from the tick its entity moved, not
/// from the last time its position was sent: time spent at rest is not
/// waiting. Here a near entity entered a tick ago and far ones twenty ticks
/// ago; all were still, then all move at once. Every update has waited
/// equally, so with room for one update the nearest mover goes first.
/// (Counting from the last send, as the witness once did, sends a far one:
/// 60/20 = 3 beats 10/2 = 5.)
#[test]
fn equal_wait_sends_the_nearest_mover_whatever_the_history() {
    let mut world = World::new(Vec3::ZERO);
    let near = EntityId(1);
    let far: Vec<EntityId> = (2..8).map(EntityId).collect();
    for (i, id) in far.iter().enumerate() {
        world.spawn(
            *id,
            TypeId(1),
            Vec3::new(60.0 + 5.0 * i as f32, 0.0, 0.0),
            0.0,
            0,
            0,
        );
    }
    // The near entity is out of range until tick 19.
    world.spawn(near, TypeId(1), Vec3::new(0.0, 0.0, 500.0), 0.0, 0, 0);
    let budget = Budget {
        updates: 1,
        ..unlimited(5.0)
    };
    let mut client = Client::new(100.0, budget);
    while client.next_tick() < 19 {
        client.step(&world);
    }
    world.move_to(near, Vec3::new(0.0, 0.0, 10.0), 0.0, 19);
    let sent = client.step(&world);
    assert!(
        matches!(sent.reliable.as_slice(), [ServerMsg::Enter { entity, .. }] if *entity == near)
    );
    // Tick 20: everything moves by a metre.
    for id in std::iter::once(near).chain(far.iter().copied()) {
        let e = &world.ents[&id];
        world.move_to(id, e.pos + Vec3::Y, 0.0, 20);
    }
    let sent = client.step(&world);
    assert_eq!(
        sent.updated(),
        BTreeSet::from([near]),
        "the nearest mover waits behind a far one"
    );
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
    let mut client = Client::new(50.0, unlimited(5.0));
    client.step(&world);
    assert_eq!(client.in_view(), BTreeSet::from([a, b]));
    // The witness moves cell; while it travels, `a` changes a public
    // property, and the change is no longer marked when the witness lands.
    let known = client.witness.export(client.tick);
    let emote = prop_index("Avatar", "emote");
    world.set_prop(a, emote, Value::Int(77));
    world.end_tick();
    let mut moved = Witness::import(50.0, &known, client.tick);
    let mut out = WitnessOut::default();
    let cands = client.candidates(&world);
    let step = |w: &mut Witness, ahead: u64, out: &mut WitnessOut| {
        w.update(
            ME,
            world.center(),
            client.tick + ahead,
            client.now_us() + 50_000 * ahead,
            &cands,
            |id| world.visible(id),
            &client.budget,
            out,
        )
    };
    step(&mut moved, 1, &mut out);
    let msgs: Vec<ServerMsg> = out
        .reliable
        .iter()
        .map(|b| decode(b).expect("reliable message decodes"))
        .collect();
    let [ServerMsg::Props { entity, props }] = msgs.as_slice() else {
        panic!("want the props of the one entity that changed, got {msgs:?}");
    };
    assert_eq!(*entity, a);
    let got: BTreeMap<u16, Value> = props.iter().cloned().collect();
    assert_eq!(got, world.public_props(a), "resent whole");
    // Once current, nothing more.
    out.clear();
    step(&mut moved, 2, &mut out);
    assert!(out.reliable.is_empty(), "{:?}", out.reliable);
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
    let mut client = Client::new(50.0, unlimited(5.0));
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
    let known = client.witness.export(client.tick);
    let mut moved = Witness::import(50.0, &known, client.tick);
    let mut leaves = Vec::new();
    for t in 1..=u64::from(ARRIVAL_GRACE) + 1 {
        let mut out = WitnessOut::default();
        moved.update(
            ME,
            world.center(),
            client.tick + t,
            client.now_us() + t * 50_000,
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
