//! Ghosts, migration and the entity channel, as design §8 lays them out.
//!
//! - **Ghosts.** Each tick a real makes sure every other cellapp whose cell
//!   meets the square of side 2 × ghost distance around it holds its ghost,
//!   keeps them current, and drops them (with hysteresis) when it moves
//!   away. Ghost messages carry a stamp (the real's version, then a counter)
//!   because messages from an old and a new real travel on different links;
//!   a ghost applies only what is newer than what it has, and a deletion
//!   leaves a tombstone so a late create cannot resurrect it.
//! - **Offload.** A real farther than the hysteresis outside its cellapp's
//!   cell moves whole (properties, witness, channel state) to the cellapp
//!   that covers it, which first gets a ghost on the same ordered link. The
//!   old entry becomes a ghost that knows where the real went, and a
//!   forwarding entry outlives it until the entity becomes real here again
//!   or is destroyed.
//! - **The channel.** Every message from the base carries a sequence number;
//!   the real applies them exactly once and in order, buffering early ones.
//!   Wherever a message lands, a ghost or a forwarding entry sends it on
//!   towards the real; every hop moves to a higher version, so it arrives.

use glam::Vec3;
use std::collections::BTreeMap;
use tessera::layout::Rect;
use tessera::proto::app::{
    AppMsg, EntityMsg, GhostMove, GhostState, Onload, Stamp, MAX_GHOST_MOVES,
};
use tessera::proto::client::PropValue;
use tessera::{AppId, EntityId, Time};

use super::{Cell, EntitySnapshot};
use crate::real::Real;
use crate::witness::Witness;

/// Extra distance before a ghost is dropped.
const GHOST_HYSTERESIS: f32 = 20.0;
/// How far outside its cell a real may go before it moves. Below the
/// 10 m the ghost distance adds to the largest AoI radius, so a witness this
/// far out still sees everything within its radius; wide enough that a line
/// following a crowd a few metres a round moves nobody.
pub const OFFLOAD_HYSTERESIS: f32 = 8.0;
/// The stamp of a forgotten entity: newer than anything.
const FORGOTTEN: Stamp = (u32::MAX, u32::MAX);
/// Handoff latencies kept until someone takes them.
const MAX_HANDOFF_SAMPLES: usize = 100_000;

impl Cell {
    /// Takes the handoff latencies measured so far (offload sent at the
    /// source to real live here, microseconds).
    pub fn take_handoffs(&mut self) -> Vec<u32> {
        std::mem::take(&mut self.handoffs_us)
    }

    /// The ids of every real here (cheap: no copies of state).
    pub fn real_ids(&self) -> impl Iterator<Item = EntityId> + '_ {
        self.reals.iter().filter(|r| !r.is_ghost()).map(|r| r.id)
    }

    /// Every ghost held here, with the cellapp its real is on.
    pub fn ghosts(&self) -> Vec<(EntitySnapshot, AppId)> {
        let mut all: Vec<_> = self
            .reals
            .iter()
            .filter_map(|r| {
                let (real, _) = r.ghost?;
                Some((
                    EntitySnapshot {
                        id: r.id,
                        type_id: r.type_id,
                        pos: r.pos,
                        yaw: r.yaw,
                        aoi: None,
                        props: r.props.clone(),
                    },
                    real,
                ))
            })
            .collect();
        all.sort_by_key(|(s, _)| s.id);
        all
    }

    fn ghosted(&self, r: &Real, only: Option<&[u16]>) -> Vec<PropValue> {
        let Some(info) = self.types.get(r.type_id.0 as usize) else {
            return Vec::new();
        };
        info.ghosted
            .iter()
            .filter(|i| only.is_none_or(|d| d.contains(i)))
            .filter_map(|&i| r.props.get(i as usize).map(|v| (i, v.clone())))
            .collect()
    }

    fn ghost_state(&self, i: usize, stamp: Stamp) -> GhostState {
        let r = &self.reals[i];
        GhostState {
            entity: r.id,
            stamp,
            type_id: r.type_id,
            real: self.cfg.app,
            pos: r.pos.to_array(),
            yaw: r.yaw,
            props: self.ghosted(r, None),
        }
    }

    /// A message on an entity's channel from its base, directly or forwarded.
    pub(super) fn on_channel(&mut self, entity: EntityId, seq: u64, msg: EntityMsg) {
        let here = self.slot.get(&entity).copied();
        let real_here = here.filter(|&i| !self.reals[i].is_ghost());
        let Some(i) = real_here else {
            // Send it on towards the real: the ghost's pointer is the newest
            // news, then the forwarding entry.
            let next = here
                .and_then(|i| self.reals[i].ghost.map(|(a, _)| a))
                .or_else(|| self.forward.get(&entity).map(|f| f.to));
            match next {
                Some(_) if self.faulty(|f| f.drop_forwarding) => {}
                // Its real went to a dead cellapp: the base restores it.
                Some(app) if self.dead.contains(&app) => {}
                Some(app) if app != self.cfg.app => self
                    .outbox
                    .push((app, AppMsg::ToEntity { entity, seq, msg })),
                _ => {
                    tracing::warn!(%entity, seq, "channel message for an entity unknown here dropped")
                }
            }
            return;
        };
        let r = &mut self.reals[i];
        if seq < r.next_seq {
            return; // Already applied.
        }
        r.pending.insert(seq, msg);
        loop {
            let Some(&i) = self.slot.get(&entity) else {
                return;
            };
            let r = &mut self.reals[i];
            if r.is_ghost() {
                return;
            }
            let next = r.next_seq;
            let Some(msg) = r.pending.remove(&next) else {
                return;
            };
            r.next_seq += 1;
            if self.faulty(|f| f.apply_twice) {
                self.apply(entity, msg.clone());
            }
            self.apply(entity, msg);
        }
    }

    fn apply(&mut self, entity: EntityId, msg: EntityMsg) {
        match msg {
            EntityMsg::Move { seq, pos, yaw } => {
                self.client_move(entity, seq, Vec3::from_array(pos), yaw)
            }
            EntityMsg::Call { method, args } => self.call(entity, method, &args),
            EntityMsg::Destroy => self.destroy(entity),
            EntityMsg::Attach { out_seq } => self.attach(entity, out_seq),
        }
    }

    /// Destroys a real: its final state to the base, its ghosts dropped,
    /// every other cellapp told to forget it.
    pub(super) fn destroy(&mut self, entity: EntityId) {
        let Some(mut real) = self.remove_real(entity) else {
            return;
        };
        let state = self.cell_state(&real);
        if let Some(base) = real.base {
            self.outbox
                .push((base, AppMsg::EntityDestroyed { entity, state }));
        }
        for app in std::mem::take(&mut real.haunts) {
            let stamp = real.next_stamp();
            self.outbox
                .push((app, AppMsg::GhostDelete { entity, stamp }));
        }
        let mut others: Vec<AppId> = self
            .cells
            .iter()
            .map(|c| c.app)
            .filter(|a| *a != self.cfg.app)
            .collect();
        others.sort();
        others.dedup();
        for app in others {
            self.outbox.push((app, AppMsg::Forget { entity }));
        }
        self.forward.remove(&entity);
        // A ghost message still on its way from an earlier real must not
        // bring it back here.
        self.tombs.insert(entity, FORGOTTEN);
    }

    pub(super) fn forget(&mut self, entity: EntityId) {
        self.forward.remove(&entity);
        self.tombs.insert(entity, FORGOTTEN);
        if let Some(&i) = self.slot.get(&entity) {
            if self.reals[i].is_ghost() {
                self.remove_real(entity);
            }
        }
    }

    pub(super) fn ghost_create(&mut self, g: GhostState) {
        if self.tombs.get(&g.entity).is_some_and(|t| *t >= g.stamp) {
            return;
        }
        let tick = self.tick;
        let Some(info) = self.types.get(g.type_id.0 as usize) else {
            return;
        };
        let mut props = info.def.defaults();
        for (i, v) in &g.props {
            if let (Some(slot), Some(def)) = (
                props.get_mut(*i as usize),
                info.def.properties.get(*i as usize),
            ) {
                if def.flags.on_ghosts() && v.check(def.ty).is_ok() {
                    *slot = v.clone();
                }
            }
        }
        match self.slot.get(&g.entity).copied() {
            Some(i) => {
                let r = &mut self.reals[i];
                let Some((_, stamp)) = r.ghost else {
                    return; // The real is here: a stale ghost message.
                };
                if g.stamp <= stamp {
                    return;
                }
                r.ghost = Some((g.real, g.stamp));
                for (idx, (old, new)) in r.props.iter_mut().zip(props).enumerate() {
                    if *old != new {
                        *old = new;
                        r.dirty.push(idx as u16);
                    }
                }
                r.move_to(Vec3::from_array(g.pos), g.yaw, tick);
            }
            None => {
                let mut r = Real::new(
                    g.entity,
                    g.type_id,
                    Vec3::from_array(g.pos),
                    g.yaw,
                    props,
                    tick,
                );
                r.ghost = Some((g.real, g.stamp));
                self.add_real(r);
            }
        }
    }

    pub(super) fn ghost_update(
        &mut self,
        entity: EntityId,
        stamp: Stamp,
        pos: Vec3,
        yaw: f32,
        props: Vec<PropValue>,
    ) {
        let tick = self.tick;
        let Some(&i) = self.slot.get(&entity) else {
            return;
        };
        let r = &mut self.reals[i];
        let Some(info) = self.types.get(r.type_id.0 as usize) else {
            return;
        };
        let Some((real, old)) = r.ghost else { return };
        if stamp <= old {
            return;
        }
        r.ghost = Some((real, stamp));
        if pos.is_finite() && yaw.is_finite() {
            r.move_to(pos, yaw, tick);
        }
        for (idx, v) in props {
            if info.ghosted.contains(&idx) {
                r.set_prop(idx, v);
            }
        }
    }

    pub(super) fn ghost_delete(&mut self, entity: EntityId, stamp: Stamp) {
        let tomb = self.tombs.entry(entity).or_insert(stamp);
        *tomb = (*tomb).max(stamp);
        if let Some(&i) = self.slot.get(&entity) {
            if self.reals[i].ghost.is_some_and(|(_, s)| s < stamp) {
                self.remove_real(entity);
            }
        }
    }

    /// A real arrives from another cell.
    pub(super) fn onload(&mut self, now: Time, o: Onload) {
        let tick = self.tick;
        self.stats.onloads += 1;
        if o.sent_us > 0 && self.handoffs_us.len() < MAX_HANDOFF_SAMPLES {
            let us = now.0.saturating_sub(o.sent_us).min(u64::from(u32::MAX)) as u32;
            self.handoffs_us.push(us);
        }
        // Changes the ghost took this tick, and any it missed, must still
        // reach the witnesses here.
        let mut dirty = Vec::new();
        if let Some(&i) = self.slot.get(&o.entity) {
            if !self.reals[i].is_ghost() {
                tracing::error!(entity = %o.entity, "onload for an entity that is already real here");
                return;
            }
            if let Some(ghost) = self.remove_real(o.entity) {
                dirty = ghost.dirty;
                for (idx, (old, new)) in ghost.props.iter().zip(&o.props).enumerate() {
                    if old != new && !dirty.contains(&(idx as u16)) {
                        dirty.push(idx as u16);
                    }
                }
            }
        }
        self.forward.remove(&o.entity);
        self.tombs.remove(&o.entity);
        let mut r = Real::new(
            o.entity,
            o.type_id,
            Vec3::from_array(o.pos),
            o.yaw,
            o.props,
            tick.saturating_sub(u64::from(o.moved_ago)),
        );
        r.base = o.base;
        let skip_refresh = self.faulty(|f| f.no_witness_refresh);
        r.witness = o.witness.map(|(radius, known)| {
            let mut w = Witness::import(radius, &known, tick);
            if skip_refresh {
                w.skip_refresh();
            }
            Box::new(w)
        });
        r.move_seq = o.move_seq;
        r.allowance = o.allowance;
        r.goal = o.goal.map(Vec3::from_array);
        r.version = o.version;
        r.next_seq = o.next_seq;
        r.pending = o.pending.into_iter().collect();
        r.out_seq = o.out_seq;
        r.dirty = dirty;
        r.haunts = o
            .haunts
            .into_iter()
            .filter(|a| *a != self.cfg.app)
            .collect();
        r.haunts.sort();
        r.haunts.dedup();
        let entity = r.id;
        let (version, base, haunts) = (r.version, r.base, r.haunts.clone());
        self.add_real(r);
        let Some(&i) = self.slot.get(&entity) else {
            return;
        };
        // Every ghost learns the new real, whole, with a stamp newer than
        // anything the old real sent.
        for app in haunts {
            let stamp = self.reals[i].next_stamp();
            let g = self.ghost_state(i, stamp);
            self.outbox.push((app, AppMsg::GhostCreate(Box::new(g))));
        }
        if let Some(base) = base {
            self.outbox.push((
                base,
                AppMsg::RealMoved {
                    entity,
                    cell: self.cfg.app,
                    version,
                },
            ));
        }
        // Messages that were waiting for their turn.
        let next = self.reals[i].next_seq;
        if let Some(msg) = self.reals[i].pending.remove(&next) {
            self.on_channel(entity, next, msg);
        }
    }

    /// The other apps whose cells meet the square of half-side `d` around
    /// `pos` (closed: touching counts), sorted, from `others` (each other
    /// app's cell rectangles).
    fn apps_near(others: &[(Rect, AppId)], pos: Vec3, d: f32, apps: &mut Vec<AppId>) {
        let square = Rect::new(pos.x - d, pos.z - d, pos.x + d, pos.z + d);
        apps.clear();
        apps.extend(
            others
                .iter()
                .filter(|(r, _)| r.meets(&square))
                .map(|(_, a)| *a),
        );
        apps.sort();
        apps.dedup();
    }

    /// Creates, refreshes and drops ghosts of every real.
    pub(super) fn run_ghosting(&mut self) {
        if self.layout.is_none() {
            return;
        }
        let tick = self.tick;
        let d = self.cfg.ghost_distance;
        // A real whose keep-square lies strictly inside one of this app's
        // cells meets no other cell: with no ghosts out, nothing to do.
        let reach = d + GHOST_HYSTERESIS;
        let cells = &self.cells;
        let interior: Vec<Rect> = cells
            .iter()
            .filter(|c| c.app == self.cfg.app)
            .map(|c| c.rect)
            .collect();
        let others: Vec<(Rect, AppId)> = cells
            .iter()
            .filter(|c| c.app != self.cfg.app && !self.dead.contains(&c.app))
            .map(|c| (c.rect, c.app))
            .collect();
        let (mut needed, mut keep, mut now) = (Vec::new(), Vec::new(), Vec::new());
        let mut moves: BTreeMap<AppId, Vec<GhostMove>> = BTreeMap::new();
        for i in 0..self.reals.len() {
            if self.reals[i].is_ghost() {
                continue;
            }
            let pos = self.reals[i].pos;
            if self.reals[i].haunts.is_empty()
                && interior.iter().any(|r| {
                    pos.x - reach > r.x0
                        && pos.x + reach < r.x1
                        && pos.z - reach > r.z0
                        && pos.z + reach < r.z1
                })
            {
                continue;
            }
            Self::apps_near(&others, pos, reach, &mut keep);
            if keep.is_empty() && self.reals[i].haunts.is_empty() {
                continue;
            }
            Self::apps_near(&others, pos, d, &mut needed);
            let moved = self.reals[i].moved_tick + 1 >= tick;
            let dirty = self.ghosted(&self.reals[i], Some(&self.reals[i].dirty));
            let entity = self.reals[i].id;
            let mut haunts = std::mem::take(&mut self.reals[i].haunts);
            now.clear();
            for &app in &haunts {
                if keep.contains(&app) {
                    if (moved || !dirty.is_empty()) && !self.faulty(|f| f.no_ghost_updates) {
                        let r = &mut self.reals[i];
                        let stamp = r.next_stamp();
                        if dirty.is_empty() {
                            // Plain moves travel together, one message per
                            // neighbour per tick.
                            moves.entry(app).or_default().push(GhostMove {
                                entity,
                                stamp,
                                pos: r.pos.to_array(),
                                yaw: r.yaw,
                            });
                        } else {
                            let msg = AppMsg::GhostUpdate {
                                entity,
                                stamp,
                                pos: r.pos.to_array(),
                                yaw: r.yaw,
                                props: dirty.clone(),
                            };
                            self.outbox.push((app, msg));
                        }
                    }
                    now.push(app);
                } else {
                    let stamp = self.reals[i].next_stamp();
                    self.outbox
                        .push((app, AppMsg::GhostDelete { entity, stamp }));
                }
            }
            for &app in &needed {
                if !now.contains(&app) {
                    let stamp = self.reals[i].next_stamp();
                    let g = self.ghost_state(i, stamp);
                    self.outbox.push((app, AppMsg::GhostCreate(Box::new(g))));
                    now.push(app);
                }
            }
            now.sort();
            haunts.clear();
            haunts.extend_from_slice(&now);
            self.reals[i].haunts = haunts;
        }
        for (app, list) in moves {
            for chunk in list.chunks(MAX_GHOST_MOVES) {
                self.outbox.push((app, AppMsg::GhostMoves(chunk.to_vec())));
            }
        }
    }

    /// Moves every real that is more than the hysteresis outside its cell
    /// (or outside a cell shrunk to nothing) to the cellapp that covers it.
    pub(super) fn run_offload(&mut self, tick: u64) {
        if self.faulty(|f| f.no_offload) {
            return;
        }
        let Some(layout) = &self.layout else { return };
        let own: Vec<Rect> = self
            .cells
            .iter()
            .filter(|c| c.app == self.cfg.app && c.rect.area() > 0.0)
            .map(|c| c.rect.grow(OFFLOAD_HYSTERESIS))
            .collect();
        let mut leaving = Vec::new();
        for r in &self.reals {
            if r.is_ghost() || own.iter().any(|rect| rect.holds(r.pos.x, r.pos.z)) {
                continue;
            }
            let dest = layout.app_at(r.pos.x, r.pos.z);
            if dest != self.cfg.app && dest.0 != 0 && !self.dead.contains(&dest) {
                leaving.push((r.id, dest));
            }
        }
        for (entity, dest) in leaving {
            self.offload(entity, dest, tick);
        }
    }

    fn offload(&mut self, entity: EntityId, dest: AppId, tick: u64) {
        let Some(&i) = self.slot.get(&entity) else {
            return;
        };
        // The destination gets a ghost first, on the same ordered link.
        if !self.reals[i].haunts.contains(&dest) {
            let stamp = self.reals[i].next_stamp();
            let g = self.ghost_state(i, stamp);
            self.outbox.push((dest, AppMsg::GhostCreate(Box::new(g))));
        }
        // What its client has not been sent yet goes now, in its order.
        if let Some(base) = self.reals[i].base {
            for bytes in std::mem::take(&mut self.reals[i].to_own_client) {
                self.queue_for_client(base, entity, tessera::proto::app::Delivery::Reliable, bytes);
            }
        }
        let Some(&i) = self.slot.get(&entity) else {
            return;
        };
        let me = self.cfg.app;
        let keep_real = self.faulty(|f| f.keep_real_on_offload);
        let r = &mut self.reals[i];
        r.version += 1;
        r.ghost_n = 0;
        let mut haunts: Vec<AppId> = r.haunts.iter().copied().filter(|a| *a != dest).collect();
        haunts.push(me);
        let onload = Onload {
            entity,
            type_id: r.type_id,
            pos: r.pos.to_array(),
            yaw: r.yaw,
            props: r.props.clone(),
            base: r.base.take(),
            witness: r.witness.take().map(|w| (w.radius, w.export(tick))),
            move_seq: r.move_seq,
            allowance: r.allowance,
            goal: r.goal.take().map(|g| g.to_array()),
            moved_ago: tick.saturating_sub(r.moved_tick).min(u64::from(u32::MAX)) as u32,
            haunts,
            version: r.version,
            next_seq: r.next_seq,
            pending: std::mem::take(&mut r.pending).into_iter().collect(),
            out_seq: r.out_seq,
            sent_us: self.last_tick.map_or(0, |t| t.0),
        };
        // What stays here is a ghost that knows where the real went.
        if keep_real {
            r.base = onload.base;
            self.outbox.push((dest, AppMsg::Onload(Box::new(onload))));
            return;
        }
        r.ghost = Some((dest, (r.version, 0)));
        r.haunts.clear();
        r.to_own_client.clear();
        self.forward.insert(
            entity,
            super::recovery::Forward {
                to: dest,
                base: onload.base,
                version: onload.version,
            },
        );
        self.outbox.push((dest, AppMsg::Onload(Box::new(onload))));
        self.stats.offloads += 1;
        *self.flows.entry(dest).or_default() += 1;
    }
}
