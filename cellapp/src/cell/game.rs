//! The cell side of game code ([`crate::behavior`]): rounds of hooks run
//! against a read-only view of the cell, then what they asked for is
//! applied in the order asked. Calls between entities go to the callee's
//! real, here or on the cellapp that holds it; client calls go to the
//! clients that see the entity, here and on the cellapps holding its
//! ghost.
//!
//! A hook that panics fails alone: the panic is caught, what the hook had
//! asked for is dropped, the cell counts it ([`super::CellStats::game_panics`])
//! and ticks on.

use glam::Vec3;
use std::panic::{catch_unwind, AssertUnwindSafe};
use tessera::defs::Side;
use tessera::frame::encode_body;
use tessera::proto::app::{AppMsg, Mail, MAX_MAIL_HOPS};
use tessera::proto::client::ServerMsg;
use tessera::{AppId, EntityId, Time, Value};

use super::{xz, Cell};
use crate::behavior::{
    diff, Asked, Audience, Called, Caller, CellBehavior, Clock, Ctx, Effect, Offered, Presence,
    Stage, TrapId,
};
use crate::entry::{Entry, Kind};

#[cfg(test)]
mod tests;

/// Rounds of follow-up hooks (new entities' `created`, calls between
/// entities on this cell) run after a round; what is left waits for the
/// next tick, so calls that call back and forth cannot stall a tick.
const MAX_SETTLE_ROUNDS: usize = 4;

/// How far beyond its AoI radius (and the leave hysteresis) a client that
/// sees an entity is looked for, in metres: what a client may have moved
/// since the index was last brought up to date.
const WATCHER_MARGIN: f32 = 10.0;

/// Runs one hook of the real in slot `i`, if its type has a behaviour. A
/// panic drops what the hook asked for and is counted.
fn guarded(
    stage: &mut Stage<'_>,
    i: usize,
    hook: &'static str,
    f: impl FnOnce(&dyn CellBehavior, &mut Ctx<'_>),
) {
    let (entries, types) = (stage.entries, stage.types);
    let Some(e) = entries.get(i) else {
        return;
    };
    let Some(info) = types.get(e.type_id.0 as usize) else {
        return;
    };
    let Some(b) = info.behavior.as_deref() else {
        return;
    };
    let (mark, before) = (stage.fx.len(), stage.overlay.mark(i));
    let Some(mut ctx) = stage.ctx(i) else {
        return;
    };
    let ok = catch_unwind(AssertUnwindSafe(|| f(b, &mut ctx))).is_ok();
    if !ok {
        stage.fx.truncate(mark);
        stage.overlay.restore(i, before);
        stage.panics += 1;
        tracing::error!(entity = %e.id, ty = %info.def.name, hook, "game code panicked; what it asked for is dropped");
    }
}

impl Cell {
    /// The time of the last tick: what hooks run between ticks see.
    pub(super) fn now(&self) -> Time {
        self.last_tick.unwrap_or(Time(0))
    }

    /// Runs `round` over a read-only stage of the cell, then applies what
    /// its hooks asked for.
    fn round(&mut self, now: Time, round: impl FnOnce(&mut Stage<'_>)) {
        let mut fx = std::mem::take(&mut self.fx);
        self.overlay.clear();
        let clock = Clock {
            tick: self.tick,
            now,
            dt: 1.0 / self.cfg.tick_hz.max(1) as f32,
            bounds: self.cfg.bounds,
            trap_reach: (self.cfg.ghost_distance - super::OFFLOAD_HYSTERESIS - 2.0).max(1.0),
        };
        let mut stage = Stage {
            entries: &self.entries,
            slot: &self.slot,
            types: &self.types,
            index: &mut self.index,
            index_sync: &mut self.index_sync,
            synced: false,
            ids: &mut self.ids,
            rng: &mut self.rng,
            fx: &mut fx,
            overlay: &mut self.overlay,
            clock,
            panics: 0,
        };
        round(&mut stage);
        self.stats.game_panics += stage.panics;
        self.apply_effects(&mut fx);
        self.fx = fx;
    }

    /// The tick's behaviours: every real's due timers, then its tick hook.
    pub(super) fn run_behaviors(&mut self, now: Time) {
        if !self.has_behaviors {
            return;
        }
        let frozen = self.frozen;
        self.round(now, |stage| {
            let entries = stage.entries;
            for (i, e) in entries.iter().enumerate() {
                if e.is_ghost() || (frozen && e.witness.is_none()) {
                    continue;
                }
                // Timers and traps live past the hot part of the entry.
                if e.armed() {
                    for t in e.traps().iter() {
                        let inside: Vec<EntityId> = match stage.ctx(i) {
                            Some(mut ctx) => {
                                let mut v: Vec<EntityId> =
                                    ctx.within(e.pos, t.radius).iter().map(|n| n.id).collect();
                                v.sort_unstable();
                                v
                            }
                            None => continue,
                        };
                        let (came, went) = diff(&t.inside, &inside);
                        if came.is_empty() && went.is_empty() {
                            continue;
                        }
                        let (trap, tag) = (TrapId(t.id), t.tag);
                        stage
                            .fx
                            .push((e.id, i, Effect::TrapSeen { id: trap, inside }));
                        for x in went {
                            guarded(stage, i, "trap", |b, ctx| {
                                b.trap(ctx, trap, tag, Presence::Left(x))
                            });
                        }
                        for x in came {
                            guarded(stage, i, "trap", |b, ctx| {
                                b.trap(ctx, trap, tag, Presence::Entered(x))
                            });
                        }
                    }
                    for (timer, tag, due) in e.timers().due(now) {
                        stage.fx.push((e.id, i, Effect::Fired { id: timer, due }));
                        guarded(stage, i, "timer", |b, ctx| b.timer(ctx, timer, tag));
                    }
                }
                guarded(stage, i, "tick", |b, ctx| b.tick(ctx));
            }
        });
        self.settle(now);
    }

    /// The AoI hooks of the tick: for every client entity, who entered and
    /// who left what its client sees, in the order the client was told.
    pub(super) fn run_aoi_hooks(&mut self, now: Time) {
        if self.aoi_changes.is_empty() {
            return;
        }
        let changes = std::mem::take(&mut self.aoi_changes);
        self.round(now, |stage| {
            for (id, entered, left) in &changes {
                let Some(&i) = stage.slot.get(id) else {
                    continue;
                };
                for &e in left {
                    guarded(stage, i, "aoi", |b, ctx| b.aoi(ctx, Presence::Left(e)));
                }
                for &e in entered {
                    guarded(stage, i, "aoi", |b, ctx| b.aoi(ctx, Presence::Entered(e)));
                }
            }
        });
        self.settle(now);
    }

    /// A client or the entity's base called a cell method of the entity
    /// (checked by the caller).
    pub(super) fn run_call(
        &mut self,
        entity: EntityId,
        method: u16,
        args: &[Value],
        caller: Caller,
    ) {
        let now = self.now();
        self.round(now, |stage| {
            let (entries, types) = (stage.entries, stage.types);
            let Some(&i) = stage.slot.get(&entity) else {
                return;
            };
            let Some(m) = entries
                .get(i)
                .and_then(|e| types.get(e.type_id.0 as usize))
                .and_then(|t| t.def.methods.get(method as usize))
            else {
                return;
            };
            let called = Called {
                method: m,
                args,
                caller,
            };
            guarded(stage, i, "call", |b, ctx| b.call(ctx, &called));
        });
        self.settle(now);
    }

    /// Runs what rounds left behind: the `created` hooks of new entities and
    /// calls waiting for their callee here, a few rounds at most.
    pub(super) fn settle(&mut self, now: Time) {
        for _ in 0..MAX_SETTLE_ROUNDS {
            if self.fresh.is_empty() && self.inbox.is_empty() {
                return;
            }
            let fresh = std::mem::take(&mut self.fresh);
            let mut calls = Vec::new();
            while let Some(mail) = self.inbox.pop_front() {
                match self.slot.get(&mail.to).copied() {
                    Some(i) if !self.entries[i].is_ghost() => {
                        match self.entries[i].mail.offer(mail) {
                            Offered::Ready(ready) => calls.extend(ready),
                            Offered::Held | Offered::Duplicate => {}
                            Offered::Full => {
                                tracing::error!(entity = %self.entries[i].id, "too many calls held from one caller; a call dropped");
                            }
                        }
                    }
                    // The callee left since the call was queued.
                    _ => self.route_mail(mail),
                }
            }
            self.round(now, |stage| {
                for id in &fresh {
                    if let Some(&i) = stage.slot.get(id) {
                        guarded(stage, i, "created", |b, ctx| b.created(ctx));
                    }
                }
                let (entries, types) = (stage.entries, stage.types);
                for mail in &calls {
                    let Some(&i) = stage.slot.get(&mail.to) else {
                        continue;
                    };
                    let Some(m) = entries
                        .get(i)
                        .and_then(|e| types.get(e.type_id.0 as usize))
                        .and_then(|t| t.def.methods.get(mail.method as usize))
                    else {
                        continue;
                    };
                    if m.side != Side::Cell || m.check_args(&mail.args).is_err() {
                        tracing::warn!(to = %mail.to, from = %mail.from, method = %m.name, "a call with bad arguments dropped");
                        continue;
                    }
                    let called = Called {
                        method: m,
                        args: &mail.args,
                        caller: Caller::Entity(mail.from),
                    };
                    guarded(stage, i, "call", |b, ctx| b.call(ctx, &called));
                }
            });
        }
    }

    fn real_mut(&mut self, id: EntityId) -> Option<&mut Entry> {
        let &i = self.slot.get(&id)?;
        self.entries.get_mut(i).filter(|e| !e.is_ghost())
    }

    /// [`Cell::real_mut`], trying `hint` (where the entity was) first.
    fn real_at(&mut self, hint: usize, id: EntityId) -> Option<&mut Entry> {
        match self.entries.get(hint) {
            Some(e) if e.id == id => self.entries.get_mut(hint).filter(|e| !e.is_ghost()),
            _ => self.real_mut(id),
        }
    }

    /// Applies what a round's hooks asked for, in the order asked. Effects
    /// of an entity destroyed or gone in the meantime are dropped.
    fn apply_effects(&mut self, fx: &mut Vec<Asked>) {
        let tick = self.tick;
        let mut destroyed = Vec::new();
        for (id, hint, effect) in fx.drain(..) {
            match effect {
                Effect::Spawn {
                    id: new,
                    type_id,
                    pos,
                    yaw,
                    props,
                } => {
                    if self.types.get(type_id.0 as usize).is_some() {
                        self.add_real(Entry::new(new, type_id, pos, yaw, props, tick));
                        self.fresh.push(new);
                    }
                }
                Effect::Call { to, method, args } => {
                    let Some(r) = self.real_at(hint, id) else {
                        continue;
                    };
                    let seq = r.mail.next_to(to);
                    self.route_mail(Mail {
                        to,
                        from: id,
                        seq,
                        method,
                        args,
                        hops: 0,
                    });
                }
                Effect::Client {
                    audience,
                    method,
                    args,
                } => self.call_clients(id, audience, method, args),
                Effect::BaseCall { method, args } => {
                    if let Some(base) = self.real_at(hint, id).and_then(|r| r.base) {
                        self.outbox.push((
                            base,
                            AppMsg::ToBase {
                                entity: id,
                                method,
                                args,
                            },
                        ));
                    }
                }
                Effect::Destroy => destroyed.push(id),
                Effect::Move { pos, yaw } => {
                    let pos = self.clamp(pos);
                    if let Some(r) = self.real_at(hint, id) {
                        r.move_to(pos, yaw, tick);
                    }
                }
                Effect::Set { prop, value } => {
                    if let Some(r) = self.real_at(hint, id) {
                        r.set_prop(prop, value);
                    }
                }
                Effect::AddTimer(t) => {
                    if let Some(r) = self.real_at(hint, id) {
                        r.hooks_mut(|timers, _| timers.add(t));
                    }
                }
                Effect::CancelTimer(t) => {
                    if let Some(r) = self.real_at(hint, id) {
                        r.hooks_mut(|timers, _| timers.cancel(t));
                    }
                }
                Effect::Fired { id: timer, due } => {
                    if let Some(r) = self.real_at(hint, id) {
                        r.hooks_mut(|timers, _| timers.fired(timer, due));
                    }
                }
                Effect::AddTrap(t) => {
                    if let Some(r) = self.real_mut(id) {
                        r.hooks_mut(|_, traps| traps.add(t));
                    }
                }
                Effect::CancelTrap(t) => {
                    if let Some(r) = self.real_mut(id) {
                        r.hooks_mut(|_, traps| traps.cancel(t));
                    }
                }
                Effect::TrapSeen { id: trap, inside } => {
                    if let Some(r) = self.real_mut(id) {
                        r.hooks_mut(|_, traps| traps.seen(trap, inside));
                    }
                }
            }
        }
        // Each entity's last move and goal of the round. Slots have not
        // changed: the round's new entities went after the others, and
        // those destroyed go below.
        let overlay = std::mem::take(&mut self.overlay);
        for (i, (pos, yaw)) in overlay.moves() {
            let pos = self.clamp(pos);
            if let Some(r) = self.entries.get_mut(i).filter(|r| !r.is_ghost()) {
                r.move_to(pos, yaw, tick);
            }
        }
        for (i, goal) in overlay.goals() {
            if let Some(r) = self.entries.get_mut(i).filter(|r| !r.is_ghost()) {
                r.goal = goal;
            }
        }
        self.overlay = overlay;
        for id in destroyed {
            if self.real_mut(id).is_some_and(|r| r.base.is_none()) {
                self.destroy(id);
            }
        }
    }

    /// Sends a call toward its callee's real: into the inbox if it is real
    /// here, to the cellapp its ghost here names, or after the real that
    /// left from here. A call for an entity this cellapp knows nothing of
    /// (destroyed, or never near) is dropped.
    pub(super) fn route_mail(&mut self, mail: Mail) {
        let kind = self.slot.get(&mail.to).map(|&i| self.entries[i].kind);
        match kind {
            Some(Kind::Real) => self.inbox.push_back(mail),
            Some(Kind::Ghost { real, .. }) => self.pass_on(real, mail),
            None => match self.forward.to(mail.to) {
                Some(app) => self.pass_on(app, mail),
                None => {
                    tracing::debug!(to = %mail.to, from = %mail.from, "a call for an entity not here dropped");
                }
            },
        }
    }

    fn pass_on(&mut self, app: AppId, mut mail: Mail) {
        if app == self.cfg.app || mail.hops >= MAX_MAIL_HOPS {
            tracing::warn!(to = %mail.to, from = %mail.from, hops = mail.hops, "a call that keeps missing its callee dropped");
            return;
        }
        mail.hops += 1;
        self.outbox.push((app, AppMsg::Mail(Box::new(mail))));
    }

    /// A call between entities arrived from another cellapp.
    pub(super) fn mail_arrived(&mut self, now: Time, mail: Mail) {
        let real_here = self
            .slot
            .get(&mail.to)
            .is_some_and(|&i| !self.entries[i].is_ghost());
        if !real_here && self.faulty(|f| f.drop_forwarding) {
            return;
        }
        self.route_mail(mail);
        self.settle(now);
    }

    /// Calls a client method of `entity` on its own client, the clients
    /// that see it, or both.
    fn call_clients(
        &mut self,
        entity: EntityId,
        audience: Audience,
        method: u16,
        args: Vec<Value>,
    ) {
        let Some(&i) = self.slot.get(&entity) else {
            return;
        };
        let (pos, haunts) = {
            let r = &self.entries[i];
            if r.is_ghost() {
                return;
            }
            (r.pos, r.haunts.clone())
        };
        let bytes = encode_body(&ServerMsg::Call {
            entity,
            method,
            args: args.clone(),
        });
        if audience != Audience::Others && self.entries[i].witness.is_some() {
            self.entries[i].to_own_client.push(bytes.clone());
        }
        if audience != Audience::Own {
            self.send_to_watchers(entity, pos, &bytes);
            for app in haunts {
                self.outbox.push((
                    app,
                    AppMsg::Broadcast {
                        entity,
                        method,
                        args: args.clone(),
                    },
                ));
            }
        }
    }

    /// A real elsewhere calls a client method on the clients that see its
    /// ghost here.
    pub(super) fn broadcast_arrived(&mut self, entity: EntityId, method: u16, args: Vec<Value>) {
        let Some(&i) = self.slot.get(&entity) else {
            return;
        };
        let e = &self.entries[i];
        if !e.is_ghost() {
            return;
        }
        let fits = self
            .types
            .get(e.type_id.0 as usize)
            .and_then(|t| t.def.methods.get(method as usize))
            .is_some_and(|m| m.side == Side::Client && m.check_args(&args).is_ok());
        if !fits {
            tracing::warn!(%entity, method, "a broadcast that does not fit the entity's type dropped");
            return;
        }
        let pos = e.pos;
        let bytes = encode_body(&ServerMsg::Call {
            entity,
            method,
            args,
        });
        self.send_to_watchers(entity, pos, &bytes);
    }

    /// Queues `bytes` for every client here whose AoI holds `entity`, but
    /// not the entity's own, among the traffic each client's budget counts
    /// first.
    fn send_to_watchers(&mut self, entity: EntityId, at: Vec3, bytes: &[u8]) {
        // The index is brought up to date at most once a tick for this: a
        // watcher moves a metre or two in a tick, well inside the margin.
        if self.index_sync.behind(self.tick) {
            self.sync_index();
        }
        let reach = self.max_aoi + self.cfg.budget.hysteresis + WATCHER_MARGIN;
        let mut slots = std::mem::take(&mut self.scratch_ids);
        slots.clear();
        self.index.within(xz(at), reach, &mut slots);
        let watchers: Vec<usize> = slots
            .iter()
            .map(|k| k.0 as usize)
            .filter(|&k| {
                self.entries.get(k).is_some_and(|w| {
                    w.id != entity
                        && !w.is_ghost()
                        && w.base.is_some()
                        && w.witness.as_ref().is_some_and(|x| x.knows(entity))
                })
            })
            .collect();
        self.scratch_ids = slots;
        // With the client's own traffic: it goes at the end of the tick,
        // first within the client's budget.
        for k in watchers {
            self.entries[k].to_own_client.push(bytes.to_vec());
        }
    }
}
