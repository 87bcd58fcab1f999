//! Migration (design §8): a real farther than the hysteresis outside its
//! cellapp's cell moves whole — properties, witness, channel state — to the
//! cellapp that covers it, which first gets a ghost on the same ordered
//! link. The old entry becomes a ghost that knows where the real went, and
//! a forwarding entry ([`Forwarding`]) outlives it, so that a message for
//! the entity still reaching this cellapp goes on towards the real, until
//! the entity is real here again or destroyed. Every hop moves the real to
//! a higher version, so its base and its ghosts take the newest news.

use glam::Vec3;
use rustc_hash::FxHashMap;
use tessera::channel::RealChannel;
use tessera::proto::app::{AppMsg, Onload};
use tessera::{AppId, EntityId, Time};

use super::Cell;
use crate::behavior::{Mailbox, Timers, Traps};
use crate::entry::{Entry, Kind};
use crate::pace::Pace;
use crate::witness::Witness;

/// How far outside its cell a real may go before it moves. Below the
/// 10 m the ghost distance adds to the largest AoI radius, so a witness this
/// far out still sees everything within its radius; wide enough that a line
/// following a crowd a few metres a round moves nobody.
pub const OFFLOAD_HYSTERESIS: f32 = 8.0;
/// Handoff latencies kept until someone takes them.
const MAX_HANDOFF_SAMPLES: usize = 100_000;

/// Where a real that left this cell went.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Forward {
    /// The cellapp it went to.
    pub to: AppId,
    /// Its base, to tell if that cellapp dies.
    pub base: Option<AppId>,
    /// The version it left with.
    pub version: u32,
}

/// Where the reals that left this cell went.
#[derive(Debug, Default)]
pub(super) struct Forwarding(FxHashMap<EntityId, Forward>);

impl Forwarding {
    /// Where the entity's real went from here, if it left.
    pub(super) fn to(&self, entity: EntityId) -> Option<AppId> {
        self.0.get(&entity).map(|f| f.to)
    }

    /// The base of an entity whose real left from here.
    pub(super) fn base(&self, entity: EntityId) -> Option<AppId> {
        self.0.get(&entity).and_then(|f| f.base)
    }

    /// A restored base claimed the entity through here: it is the base
    /// from now on.
    pub(super) fn rebased(&mut self, entity: EntityId, dead: AppId, base: AppId) {
        if let Some(f) = self.0.get_mut(&entity) {
            if f.base == Some(dead) {
                f.base = Some(base);
            }
        }
    }

    /// The real left for another cellapp.
    pub(super) fn left(&mut self, entity: EntityId, forward: Forward) {
        self.0.insert(entity, forward);
    }

    /// The entity is real here again, or gone: nothing to forward.
    pub(super) fn clear(&mut self, entity: EntityId) {
        self.0.remove(&entity);
    }

    /// The reals handed to `app`, with the version each left with, sorted;
    /// of those only the ones whose base is `base`, if given.
    pub(super) fn sent_to(&self, app: AppId, base: Option<AppId>) -> Vec<(EntityId, u32)> {
        let mut sent: Vec<(EntityId, u32)> = self
            .0
            .iter()
            .filter(|(_, f)| f.to == app && base.is_none_or(|b| f.base == Some(b)))
            .map(|(e, f)| (*e, f.version))
            .collect();
        sent.sort_unstable();
        sent
    }
}

impl Cell {
    /// Takes the handoff latencies measured so far (offload sent at the
    /// source to real live here, microseconds).
    pub fn take_handoffs(&mut self) -> Vec<u32> {
        std::mem::take(&mut self.handoffs_us)
    }

    /// The ids of every real here (cheap: no copies of state).
    pub fn real_ids(&self) -> impl Iterator<Item = EntityId> + '_ {
        self.entries.iter().filter(|r| !r.is_ghost()).map(|r| r.id)
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
            if !self.entries[i].is_ghost() {
                tracing::error!(entity = %o.entity, "onload for an entity that is already real here");
                return;
            }
            if let Some(mut ghost) = self.remove_real(o.entity) {
                dirty = ghost.take_dirty();
                for (idx, (old, new)) in ghost.props.iter().zip(&o.props).enumerate() {
                    if old != new && !dirty.contains(&(idx as u16)) {
                        dirty.push(idx as u16);
                    }
                }
            }
        }
        self.forward.clear(o.entity);
        self.tombs.lift(o.entity);
        let mut r = Entry::new(
            o.entity,
            o.type_id,
            Vec3::from_array(o.pos),
            o.yaw,
            o.props,
            tick.saturating_sub(u64::from(o.moved_ago)),
        );
        r.base = o.base;
        let skip_refresh = self.faulty(|f| f.no_witness_refresh);
        self.witnessed |= o.witness.is_some();
        r.witness = o.witness.map(|state| {
            let mut w = Witness::import(&state, tick);
            if skip_refresh {
                w.skip_refresh();
            }
            Box::new(w)
        });
        r.pace = Pace {
            seq: o.move_seq,
            allowance: o.allowance,
            at: self.clock,
        };
        r.goal = o.goal.map(Vec3::from_array);
        r.version = o.version;
        *r.channel = RealChannel::resume(o.next_seq, o.pending, o.out_seq);
        let mut timers = o.timers;
        if self.faulty(|f| f.refire_timers) {
            for t in &mut timers {
                t.due = Time(t.due.0.saturating_sub(t.period_us));
            }
        }
        r.hooks_mut(|t, p| {
            *t = Timers::from_parts(timers, o.next_timer);
            *p = Traps::from_parts(o.traps, o.next_trap);
        });
        *r.mail = Mailbox::import(o.mail);
        r.set_dirty(dirty);
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
            let stamp = self.entries[i].next_stamp();
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
        self.apply_ready(entity);
    }

    /// Moves every real that is more than the hysteresis outside its cell
    /// (or outside a cell shrunk to nothing) to the cellapp that covers it:
    /// those in `outside`, the slots the ghosting pass found there.
    pub(super) fn run_offload(&mut self, tick: u64, outside: &[usize]) {
        if self.faulty(|f| f.no_offload) {
            return;
        }
        let Some(layout) = &self.layout else { return };
        let mut leaving = Vec::new();
        for r in outside.iter().filter_map(|&i| self.entries.get(i)) {
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
        if !self.entries[i].haunts.contains(&dest) {
            let stamp = self.entries[i].next_stamp();
            let g = self.ghost_state(i, stamp);
            self.outbox.push((dest, AppMsg::GhostCreate(Box::new(g))));
        }
        // What its client has not been sent yet goes now, in its order.
        if let Some(base) = self.entries[i].base {
            for bytes in std::mem::take(&mut self.entries[i].to_own_client) {
                self.queue_for_client(base, entity, tessera::proto::app::Delivery::Reliable, bytes);
            }
        }
        let Some(&i) = self.slot.get(&entity) else {
            return;
        };
        let me = self.cfg.app;
        let keep_real = self.faulty(|f| f.keep_real_on_offload);
        // The allowance as of now: the time until the next cell takes it
        // over counts like any delay of the client's moves.
        let mut pace = self.entries[i].pace;
        pace.fill(self.limit(self.entries[i].type_id), self.clock);
        let witness = self.entries[i].witness.take().map(|w| {
            let (entries, slot, types) = (&self.entries, &self.slot, &self.types);
            w.export(tick, |id| {
                let e = entries.get(*slot.get(&id)?)?;
                let t = types.get(e.type_id.0 as usize)?;
                Some((e.props.as_slice(), e.dirty(), t.detail()))
            })
        });
        let r = &mut self.entries[i];
        r.version += 1;
        r.ghost_n = 0;
        let mut haunts: Vec<AppId> = r.haunts.iter().copied().filter(|a| *a != dest).collect();
        haunts.push(me);
        let (next_seq, pending, out_seq) = r.channel.export();
        let (timers, next_timer) = r.timers().to_parts();
        let (traps, next_trap) = r.traps().to_parts();
        let onload = Onload {
            entity,
            type_id: r.type_id,
            pos: r.pos.to_array(),
            yaw: r.yaw,
            props: r.props.clone(),
            base: r.base.take(),
            witness,
            move_seq: r.pace.seq,
            allowance: pace.allowance,
            goal: r.goal.take().map(|g| g.to_array()),
            moved_ago: tick.saturating_sub(r.moved_tick).min(u64::from(u32::MAX)) as u32,
            haunts,
            version: r.version,
            next_seq,
            pending,
            out_seq,
            sent_us: self.last_tick.map_or(0, |t| t.0),
            timers,
            next_timer,
            mail: r.mail.export(),
            traps,
            next_trap,
        };
        // What stays here is a ghost that knows where the real went.
        if keep_real {
            r.base = onload.base;
            self.outbox.push((dest, AppMsg::Onload(Box::new(onload))));
            return;
        }
        r.kind = Kind::Ghost {
            real: dest,
            stamp: (r.version, 0),
        };
        r.refreshed = self.last_tick.unwrap_or(Time(0));
        r.haunts.clear();
        r.to_own_client.clear();
        self.forward.left(
            entity,
            Forward {
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
