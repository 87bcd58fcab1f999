//! Ghosts (design §8): read-only copies of reals near a cell's edges, held
//! by the cellapps whose cells are near, so that a witness there sees the
//! entity. Each tick a real makes sure every other cellapp whose cell meets
//! the square of side 2 × ghost distance around it holds its ghost, keeps
//! them current, and drops them (with hysteresis) when it moves away.
//!
//! Ghost messages carry a stamp (the real's version, then a counter)
//! because messages from an old and a new real travel on different links;
//! a ghost applies only what is newer than what it has. A deletion leaves a
//! tombstone ([`Tombs`]) so that a late create cannot bring a ghost back.
//! Every few seconds ([`GHOST_REFRESH_TICKS`]) each real checks its ghosts:
//! its position and a digest of its ghosted properties; a ghost whose
//! properties differ, or that is missing, is sent the whole state again, so
//! no ghost stays wrong for longer.

use glam::Vec3;
use rustc_hash::FxHashMap;
use tessera::layout::Rect;
use tessera::proto::app::{
    AppMsg, GhostCheck, GhostMove, GhostState, Stamp, GHOST_STATES_BYTES, MAX_GHOST_MOVES,
    MAX_GHOST_STATES,
};
use tessera::proto::client::PropValue;
use tessera::{AppId, EntityId, Time};

use super::{Cell, EntitySnapshot};
use crate::entry::{Entry, Kind};
pub(super) use leeway::Geometry;
use leeway::Lines;

mod leeway;

/// Room a tick's moves to one neighbour start with (a crowd near an edge
/// sends hundreds; growing from nothing copies them seven times).
const MOVES_FIRST: usize = 64;

/// Extra distance before a ghost is dropped.
pub(super) const GHOST_HYSTERESIS: f32 = 20.0;

/// How far outside its app's cells the ghosting pass expects a real to
/// stand at most (it leaves beyond [`super::OFFLOAD_HYSTERESIS`]); one
/// farther out is checked against every other cell.
const NEAR_OWN: f32 = 2.0 * super::OFFLOAD_HYSTERESIS;

/// Every this many ticks (staggered by entity id) a real checks each of
/// its ghosts ([`AppMsg::GhostChecks`]), and sends the whole state to those
/// that turn out wrong or missing. Ghost messages travel exactly once on a
/// live link, but a cellapp that was declared dead, a full link backlog or
/// a purge on a stale pointer can still leave a ghost behind or take it
/// away, and a still real sends nothing else: the refresh bounds how long
/// any ghost can be wrong.
pub(super) const GHOST_REFRESH_TICKS: u64 = 50;

/// A ghost that has heard nothing newer from its real (no refresh, no
/// move) for this long is dropped: its real no longer counts this cellapp
/// among its ghosts' holders. Measured in time, not in this cellapp's
/// ticks, and several refresh periods long, so a real whose cellapp ticks
/// slowly under load keeps its ghosts.
pub(super) const GHOST_ORPHAN_AFTER: std::time::Duration = std::time::Duration::from_secs(30);

/// The newest stamp of every ghost deleted here, so that an older ghost
/// message still on its way does not bring it back; an entity destroyed
/// or forgotten is buried for good.
#[derive(Debug, Default)]
pub(super) struct Tombs(FxHashMap<EntityId, Stamp>);

impl Tombs {
    /// The stamp of a forgotten entity: newer than anything.
    const FOREVER: Stamp = (u32::MAX, u32::MAX);

    /// Whether a ghost message with `stamp` comes too late.
    pub(super) fn bars(&self, entity: EntityId, stamp: Stamp) -> bool {
        self.0.get(&entity).is_some_and(|t| *t >= stamp)
    }

    /// A ghost was deleted as of `stamp`.
    pub(super) fn bury(&mut self, entity: EntityId, stamp: Stamp) {
        let tomb = self.0.entry(entity).or_insert(stamp);
        *tomb = (*tomb).max(stamp);
    }

    /// The entity is gone for good: no ghost message brings it back.
    pub(super) fn bury_forever(&mut self, entity: EntityId) {
        self.0.insert(entity, Self::FOREVER);
    }

    /// The entity is real here again (or re-created): its old tomb goes.
    pub(super) fn lift(&mut self, entity: EntityId) {
        self.0.remove(&entity);
    }
}

/// What a real's ghosts hear in a tick.
struct News {
    entity: EntityId,
    /// Its turn to check its ghosts ([`GHOST_REFRESH_TICKS`]).
    refresh: bool,
    /// It moved in the last tick.
    moved: bool,
    /// Its ghosted properties that changed this tick, with their values.
    dirty: Vec<PropValue>,
}

/// What the ghosting pass sends each neighbour, by cellapp: a real near
/// an edge has two or three, so a short list searched in turn finds one
/// sooner than a map; the lists go out in cellapp order.
struct ByApp<T>(Vec<(AppId, Vec<T>)>);

impl<T> Default for ByApp<T> {
    fn default() -> Self {
        ByApp(Vec::new())
    }
}

impl<T> ByApp<T> {
    /// The list for `app`, made with room for `first` if it is new.
    fn to(&mut self, app: AppId, first: usize) -> &mut Vec<T> {
        let k = match self.0.iter().position(|(a, _)| *a == app) {
            Some(k) => k,
            None => {
                self.0.push((app, Vec::with_capacity(first)));
                self.0.len() - 1
            }
        };
        &mut self.0[k].1
    }

    /// Every list, in cellapp order.
    fn by_app(mut self) -> impl Iterator<Item = (AppId, Vec<T>)> {
        self.0.sort_unstable_by_key(|(a, _)| *a);
        self.0.into_iter()
    }
}

impl Cell {
    /// Every ghost held here, with the cellapp its real is on.
    pub fn ghosts(&self) -> Vec<(EntitySnapshot, AppId)> {
        let mut all: Vec<_> = self
            .entries
            .iter()
            .filter_map(|r| {
                let (real, _) = r.ghost()?;
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

    fn ghosted(&self, r: &Entry, only: Option<&[u16]>) -> Vec<PropValue> {
        let Some(info) = self.types.get(r.type_id.0 as usize) else {
            return Vec::new();
        };
        info.ghosted
            .iter()
            .filter(|i| only.is_none_or(|d| d.contains(i)))
            .filter_map(|&i| r.props.get(i as usize).map(|v| (i, v.clone())))
            .collect()
    }

    pub(super) fn ghost_state(&self, i: usize, stamp: Stamp) -> GhostState {
        let r = &self.entries[i];
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

    pub(super) fn forget(&mut self, entity: EntityId) {
        self.forward.clear(entity);
        self.tombs.bury_forever(entity);
        if let Some(&i) = self.slot.get(&entity) {
            if self.entries[i].is_ghost() {
                self.remove_real(entity);
            }
        }
    }

    pub(super) fn ghost_create(&mut self, g: GhostState) {
        if self.tombs.bars(g.entity, g.stamp) {
            return;
        }
        let tick = self.tick;
        let now = self.last_tick.unwrap_or(Time(0));
        let Some(info) = self.types.get(g.type_id.0 as usize) else {
            return;
        };
        // What the message gives each property: its value if that property
        // goes to ghosts and the value has its type (the last, if given
        // twice), or the property's default.
        let props = &info.def.properties;
        // (Kept inline for the few properties most types have: every new
        // ghost comes here.)
        let mut given: smallvec::SmallVec<[&tessera::Value; 16]> =
            props.iter().map(|p| &p.default).collect();
        for (i, v) in &g.props {
            if let Some(def) = props.get(*i as usize) {
                if def.flags.on_ghosts() && v.check(&def.ty).is_ok() {
                    given[*i as usize] = v;
                }
            }
        }
        match self.slot.get(&g.entity).copied() {
            Some(i) => {
                // The whole state for a ghost held here (asked for after a
                // check): the changed properties are written in place.
                let r = &mut self.entries[i];
                let Some((_, stamp)) = r.ghost() else {
                    return; // The real is here: a stale ghost message.
                };
                if g.stamp <= stamp {
                    return;
                }
                r.kind = Kind::Ghost {
                    real: g.real,
                    stamp: g.stamp,
                };
                r.refreshed = now;
                for (idx, new) in given.into_iter().enumerate() {
                    if r.props.get(idx).is_some_and(|old| old != new) {
                        r.set_prop(idx as u16, new.clone());
                    }
                }
                r.move_to(Vec3::from_array(g.pos), g.yaw, tick);
            }
            None => {
                let props = given.into_iter().cloned().collect();
                // A client here may still know the entity from before its
                // ghost went (its cellapp died, and it was restored with
                // older state): a new ghost's properties count as changed,
                // so it hears them again.
                let renewed = info.public.clone();
                let mut r = Entry::new(
                    g.entity,
                    g.type_id,
                    Vec3::from_array(g.pos),
                    g.yaw,
                    props,
                    tick,
                );
                r.kind = Kind::Ghost {
                    real: g.real,
                    stamp: g.stamp,
                };
                r.refreshed = now;
                r.set_dirty(renewed);
                self.add_real(r);
            }
        }
    }

    /// The slots of `entities` (`None` for one not here), with the first
    /// cache line of each entry read in a loop that does nothing else: a
    /// message's entries are scattered over the table, and their cache
    /// misses then wait together (a loop that also applied each message
    /// had few in flight at once). Give the slots back to
    /// `scratch_slots` when done.
    fn find_all(&mut self, entities: impl Iterator<Item = EntityId>) -> Vec<Option<usize>> {
        let mut slots = std::mem::take(&mut self.scratch_slots);
        slots.clear();
        slots.extend(entities.map(|e| self.slot.get(&e).copied()));
        let seen = slots
            .iter()
            .filter_map(|&i| self.entries.get(i?))
            .fold(0, |acc, e| acc ^ e.moved_tick);
        std::hint::black_box(seen);
        slots
    }

    /// A tick's plain moves of another cellapp's reals.
    pub(super) fn ghost_moves(&mut self, moves: &[GhostMove]) {
        let slots = self.find_all(moves.iter().map(|m| m.entity));
        for (m, &i) in moves.iter().zip(&slots) {
            if let Some(i) = i {
                self.ghost_move_at(i, m.stamp, Vec3::from_array(m.pos), m.yaw);
            }
        }
        self.scratch_slots = slots;
    }

    /// Moves the ghost in slot `i` if `stamp` is newer than its last.
    fn ghost_move_at(&mut self, i: usize, stamp: Stamp, pos: Vec3, yaw: f32) -> bool {
        let (tick, now) = (self.tick, self.last_tick.unwrap_or(Time(0)));
        let r = &mut self.entries[i];
        let Some((real, old)) = r.ghost() else {
            return false;
        };
        if self.types.get(r.type_id.0 as usize).is_none() {
            return false;
        }
        if stamp <= old {
            return false;
        }
        r.kind = Kind::Ghost { real, stamp };
        // Only the current real sends newer news, and only while it counts
        // this cellapp among its ghosts' holders.
        r.refreshed = now;
        if pos.is_finite() && yaw.is_finite() {
            r.move_to(pos, yaw, tick);
        }
        true
    }

    pub(super) fn ghost_update(
        &mut self,
        entity: EntityId,
        stamp: Stamp,
        pos: Vec3,
        yaw: f32,
        props: Vec<PropValue>,
    ) {
        let Some(&i) = self.slot.get(&entity) else {
            return;
        };
        if !self.ghost_move_at(i, stamp, pos, yaw) {
            return;
        }
        let r = &mut self.entries[i];
        let Some(info) = self.types.get(r.type_id.0 as usize) else {
            return;
        };
        for (idx, v) in props {
            if info.ghosted.contains(&idx) {
                r.set_prop(idx, v);
            }
        }
    }

    pub(super) fn ghost_delete(&mut self, entity: EntityId, stamp: Stamp) {
        self.tombs.bury(entity, stamp);
        if let Some(&i) = self.slot.get(&entity) {
            if self.entries[i].ghost().is_some_and(|(_, s)| s < stamp) {
                self.remove_real(entity);
            }
        }
    }

    /// The digest of entry `i`'s properties as its ghosts hold them
    /// ([`GhostCheck::digest`]: the ghosted values, the defaults of the
    /// rest), kept in the entry until one of them changes.
    fn view_digest(&mut self, i: usize) -> u64 {
        let Some(r) = self.entries.get(i) else {
            return 0;
        };
        if let Some(d) = r.props_digest() {
            return d;
        }
        let Some(info) = self.types.get(r.type_id.0 as usize) else {
            return 0;
        };
        let view: smallvec::SmallVec<[&tessera::Value; 16]> = info
            .def
            .properties
            .iter()
            .enumerate()
            .map(|(idx, p)| match r.props.get(idx) {
                Some(v) if p.flags.on_ghosts() && v.check(&p.ty).is_ok() => v,
                _ => &p.default,
            })
            .collect();
        let d = GhostCheck::digest(&view);
        drop(view);
        self.entries[i].set_props_digest(d);
        d
    }

    /// A tick's refreshes from `from`'s reals: each ghost moves, and one
    /// that is missing or holds other properties is asked for whole.
    pub(super) fn ghost_checks(&mut self, from: AppId, checks: &[GhostCheck]) {
        let mut stale = Vec::new();
        let slots = self.find_all(checks.iter().map(|c| c.entity));
        for (c, &i) in checks.iter().zip(&slots) {
            if self.tombs.bars(c.entity, c.stamp) {
                continue;
            }
            let Some(i) = i else {
                stale.push(c.entity);
                continue;
            };
            // Not a ghost (the real is here), or not newer: nothing to do.
            if !self.ghost_move_at(i, c.stamp, Vec3::from_array(c.pos), c.yaw) {
                continue;
            }
            self.entries[i].kind = Kind::Ghost {
                real: from,
                stamp: c.stamp,
            };
            if self.view_digest(i) != c.digest {
                stale.push(c.entity);
            }
        }
        self.scratch_slots = slots;
        if !stale.is_empty() {
            self.outbox.push((from, AppMsg::GhostsStale(stale)));
        }
    }

    /// `from` asks for the whole state of these reals' ghosts: those still
    /// real here and ghosted there get it, once each. More than one check
    /// message's worth is refused: `from` could not have been sent so many.
    pub(super) fn ghosts_stale(&mut self, from: AppId, entities: &[EntityId]) {
        if entities.len() > MAX_GHOST_MOVES {
            tracing::warn!(%from, asked = entities.len(), "more ghosts asked for than one check message holds; refused");
            return;
        }
        let mut asked = entities.to_vec();
        asked.sort_unstable();
        asked.dedup();
        let mut states = Vec::new();
        for e in &asked {
            let Some(&i) = self.slot.get(e) else {
                continue;
            };
            if self.entries[i].is_ghost() || !self.entries[i].haunts.contains(&from) {
                continue;
            }
            let stamp = self.entries[i].next_stamp();
            states.push(self.ghost_state(i, stamp));
        }
        self.send_ghost_states(from, states);
    }

    /// Sends `list` to `app` in messages of at most [`MAX_GHOST_MOVES`].
    fn send_in_parts<T>(&mut self, app: AppId, mut list: Vec<T>, wrap: fn(Vec<T>) -> AppMsg) {
        while list.len() > MAX_GHOST_MOVES {
            let rest = list.split_off(MAX_GHOST_MOVES);
            self.outbox.push((app, wrap(list)));
            list = rest;
        }
        if !list.is_empty() {
            self.outbox.push((app, wrap(list)));
        }
    }

    /// Sends `states` to `app` in [`AppMsg::GhostCreates`] batches of at
    /// most [`MAX_GHOST_STATES`] and about [`GHOST_STATES_BYTES`].
    fn send_ghost_states(&mut self, app: AppId, states: Vec<GhostState>) {
        let mut batch = Vec::new();
        let mut bytes = 0;
        for g in states {
            let size = postcard::experimental::serialized_size(&g).unwrap_or(GHOST_STATES_BYTES);
            if !batch.is_empty()
                && (batch.len() == MAX_GHOST_STATES || bytes + size > GHOST_STATES_BYTES)
            {
                let full = std::mem::take(&mut batch);
                self.outbox.push((app, AppMsg::GhostCreates(full)));
                bytes = 0;
            }
            bytes += size;
            batch.push(g);
        }
        if !batch.is_empty() {
            self.outbox.push((app, AppMsg::GhostCreates(batch)));
        }
    }

    /// The other apps whose cells meet the square of half-side `d` around
    /// `pos` (`needed`), and those whose cells meet the one of half-side
    /// `reach` (`keep`; `reach` ≥ `d`), closed (touching counts), each
    /// sorted, from `others` (each other app's cell rectangles), in one
    /// pass.
    fn apps_near(
        others: &[(Rect, AppId)],
        pos: Vec3,
        (d, reach): (f32, f32),
        needed: &mut Vec<AppId>,
        keep: &mut Vec<AppId>,
    ) {
        let square = |h: f32| Rect::new(pos.x - h, pos.z - h, pos.x + h, pos.z + h);
        let (near, far) = (square(d), square(reach));
        needed.clear();
        keep.clear();
        for (r, a) in others {
            if r.meets(&far) {
                keep.push(*a);
                if r.meets(&near) {
                    needed.push(*a);
                }
            }
        }
        for apps in [needed, keep] {
            if apps.len() > 1 {
                apps.sort_unstable();
                apps.dedup();
            }
        }
    }

    /// Drops ghosts that have heard nothing newer from their real for
    /// [`GHOST_ORPHAN_AFTER`]: it no longer counts this cellapp among its
    /// ghosts' holders (a lost deletion, a purge elsewhere), and a ghost
    /// nobody updates would show its entity where it no longer is.
    fn drop_orphans(&mut self) {
        let Some(now) = self.last_tick else { return };
        for r in self.entries.iter_mut() {
            // Made before this cell first ticked: counted from now.
            if r.refreshed == Time(0) {
                r.refreshed = now;
            }
        }
        let orphans: Vec<(EntityId, Stamp)> = self
            .entries
            .iter()
            .filter(|r| now.since(r.refreshed) > GHOST_ORPHAN_AFTER)
            .filter_map(|r| Some((r.id, r.ghost()?.1)))
            .collect();
        if !orphans.is_empty() {
            tracing::debug!(ghosts = orphans.len(), "ghosts no real refreshes dropped");
        }
        for (entity, stamp) in orphans {
            self.tombs.bury(entity, stamp);
            self.remove_real(entity);
        }
    }

    /// What real `i`'s ghosts are to hear this tick.
    fn news(&self, i: usize, tick: u64) -> News {
        let r = &self.entries[i];
        News {
            entity: r.id,
            refresh: tick
                .wrapping_add(r.id.0)
                .is_multiple_of(GHOST_REFRESH_TICKS),
            moved: r.moved_tick + 1 >= tick,
            dirty: if r.changed() {
                self.ghosted(r, Some(r.dirty()))
            } else {
                Vec::new()
            },
        }
    }

    /// Tells real `i`'s ghost on `app` what `news` says: a check on its
    /// turn, else its move (with the tick's other moves to `app`) or its
    /// move and changed properties, if it has any.
    fn tell(
        &mut self,
        i: usize,
        app: AppId,
        news: &News,
        checks: &mut ByApp<GhostCheck>,
        moves: &mut ByApp<GhostMove>,
    ) {
        if self.faulty(|f| f.no_ghost_updates) {
            return;
        }
        let entity = news.entity;
        if news.refresh {
            let digest = self.view_digest(i);
            let r = &mut self.entries[i];
            let stamp = r.next_stamp();
            checks.to(app, 0).push(GhostCheck {
                entity,
                stamp,
                pos: r.pos.to_array(),
                yaw: r.yaw,
                digest,
            });
        } else if news.moved || !news.dirty.is_empty() {
            let r = &mut self.entries[i];
            let stamp = r.next_stamp();
            if news.dirty.is_empty() {
                // Plain moves travel together, one message per neighbour
                // per tick.
                moves.to(app, MOVES_FIRST).push(GhostMove {
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
                    props: news.dirty.clone(),
                };
                self.outbox.push((app, msg));
            }
        }
    }

    /// Creates, refreshes and drops ghosts of every real. Returns the slots
    /// of the reals that stand more than [`super::OFFLOAD_HYSTERESIS`]
    /// outside this app's cells, for the offload that follows: it reads
    /// every real's position, so the offload need not read them again.
    pub(super) fn run_ghosting(&mut self) -> Vec<usize> {
        let mut outside = Vec::new();
        if self.layout.is_none() {
            return outside;
        }
        let tick = self.tick;
        if tick.is_multiple_of(GHOST_REFRESH_TICKS) {
            self.drop_orphans();
        }
        let d = self.cfg.ghost_distance;
        // A real whose keep-square lies strictly inside one of this app's
        // cells meets no other cell: with no ghosts out, nothing to do.
        let reach = d + GHOST_HYSTERESIS;
        let cells = &self.cells;
        let geometry = Geometry::new(
            cells
                .iter()
                .filter(|c| c.app == self.cfg.app)
                .map(|c| c.rect)
                .collect(),
            cells
                .iter()
                .filter(|c| c.app != self.cfg.app && !self.dead.contains(&c.app))
                .map(|c| (c.rect, c.app))
                .collect(),
        );
        // The reals' leeway holds while the cells are as the last tick
        // left them.
        let settled = geometry == self.ghost_geometry;
        let lines = Lines::new(
            &geometry,
            reach,
            &[super::OFFLOAD_HYSTERESIS, NEAR_OWN],
            &[d, reach],
        );
        let (interior, others) = (geometry.interior(), geometry.others());
        // A real within NEAR_OWN of one of this app's cells can only meet
        // the other cells near that one (a metre spare for rounding): most
        // reals look through those alone.
        let near_own: Vec<Rect> = interior.iter().map(|r| r.grow(NEAR_OWN)).collect();
        let staying: Vec<Rect> = interior
            .iter()
            .filter(|r| r.area() > 0.0)
            .map(|r| r.grow(super::OFFLOAD_HYSTERESIS))
            .collect();
        let neighbours: Vec<(Rect, AppId)> = others
            .iter()
            .filter(|(r, _)| {
                interior
                    .iter()
                    .any(|o| o.grow(NEAR_OWN + reach + 1.0).meets(r))
            })
            .copied()
            .collect();
        let (mut needed, mut keep, mut now) = (Vec::new(), Vec::new(), Vec::new());
        let mut moves: ByApp<GhostMove> = ByApp::default();
        let mut creates: ByApp<GhostState> = ByApp::default();
        let mut checks: ByApp<GhostCheck> = ByApp::default();
        for i in 0..self.entries.len() {
            if self.entries[i].is_ghost() {
                continue;
            }
            if settled && self.entries[i].leeway() > 0.0 {
                // Where it stands, nothing has changed: no ghost goes or
                // comes, and it is not outside (those get no leeway).
                if !self.entries[i].haunts.is_empty() {
                    let news = self.news(i, tick);
                    for k in 0..self.entries[i].haunts.len() {
                        let app = self.entries[i].haunts[k];
                        self.tell(i, app, &news, &mut checks, &mut moves);
                    }
                }
                continue;
            }
            let pos = self.entries[i].pos;
            // Given now, spent by its moves until it is looked at again.
            self.entries[i].set_leeway(lines.leeway(pos));
            if self.entries[i].haunts.is_empty()
                && interior.iter().any(|r| {
                    pos.x - reach > r.x0
                        && pos.x + reach < r.x1
                        && pos.z - reach > r.z0
                        && pos.z + reach < r.z1
                })
            {
                continue;
            }
            if !staying.iter().any(|r| r.holds(pos.x, pos.z)) {
                outside.push(i);
                // The offload may not take it this tick: look again next.
                self.entries[i].set_leeway(0.0);
            }
            let candidates = if near_own.iter().any(|r| r.holds(pos.x, pos.z)) {
                neighbours.as_slice()
            } else {
                others
            };
            Self::apps_near(candidates, pos, (d, reach), &mut needed, &mut keep);
            if keep.is_empty() && self.entries[i].haunts.is_empty() {
                continue;
            }
            let news = self.news(i, tick);
            // Whether a ghost goes or comes: else the haunts stay as they are
            // (they are read in place, and only replaced after the loop).
            let mut changed = false;
            now.clear();
            for k in 0..self.entries[i].haunts.len() {
                let app = self.entries[i].haunts[k];
                if keep.contains(&app) {
                    self.tell(i, app, &news, &mut checks, &mut moves);
                    now.push(app);
                } else {
                    let stamp = self.entries[i].next_stamp();
                    self.outbox.push((
                        app,
                        AppMsg::GhostDelete {
                            entity: news.entity,
                            stamp,
                        },
                    ));
                    changed = true;
                }
            }
            for &app in &needed {
                if !now.contains(&app) {
                    let stamp = self.entries[i].next_stamp();
                    let g = self.ghost_state(i, stamp);
                    creates.to(app, 0).push(g);
                    now.push(app);
                    changed = true;
                }
            }
            if changed {
                now.sort();
                let haunts = &mut self.entries[i].haunts;
                haunts.clear();
                haunts.extend_from_slice(&now);
            }
        }
        for (app, states) in creates.by_app() {
            self.send_ghost_states(app, states);
        }
        for (app, list) in checks.by_app() {
            self.send_in_parts(app, list, AppMsg::GhostChecks);
        }
        for (app, list) in moves.by_app() {
            self.send_in_parts(app, list, AppMsg::GhostMoves);
        }
        self.ghost_geometry = geometry;
        outside
    }
}
