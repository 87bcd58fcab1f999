//! The real's end of the entity channel (design §8): every message from
//! its base is applied exactly once and in order ([`RealChannel`]), wherever
//! it lands. A message that reaches a cellapp where the entity is not real
//! goes on towards the real: the ghost's pointer is the newest news, then
//! the forwarding entry.

use glam::Vec3;
use tessera::channel::Offer;
use tessera::proto::app::{AppMsg, EntityMsg};
use tessera::{AppId, EntityId};

use super::Cell;
use crate::behavior::Caller;

/// Messages a cell refused for who sent them, by reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Refusals {
    /// An entity's channel message or claim from a baseapp that is not
    /// the entity's base (as this cell knows it).
    pub not_its_base: u64,
    /// A client's call of a method that is not exposed.
    pub not_exposed: u64,
    /// A client's call naming an entity its client has not seen.
    pub unseen_entity: u64,
}

impl Cell {
    /// Whether baseapp `from` may send `msg` here: a message on an
    /// entity's channel only if it is the entity's base, a claim of a
    /// restored base only if the base it replaces is the entity's, as this
    /// cell knows it (the real here, or where the real went from here). A
    /// refusal is counted and logged; the message is dropped.
    pub fn base_may_send(&mut self, from: AppId, msg: &AppMsg) -> bool {
        let (entity, base) = match msg {
            AppMsg::ToEntity { entity, .. } => (*entity, from),
            AppMsg::Rebase { entity, dead, .. } if *dead != from => (*entity, *dead),
            AppMsg::Rebase { .. } => return self.refuse_base(from, None),
            _ => return true,
        };
        let real = self
            .slot
            .get(&entity)
            .map(|&i| &self.entries[i])
            .filter(|e| !e.is_ghost());
        let known = match real {
            Some(e) => e.base,
            None => self.forward.base(entity),
        };
        if known == Some(base) {
            return true;
        }
        self.refuse_base(from, Some(entity))
    }

    fn refuse_base(&mut self, from: AppId, entity: Option<EntityId>) -> bool {
        self.refusals.not_its_base += 1;
        let n = self.refusals.not_its_base;
        if n.is_power_of_two() {
            tracing::warn!(%from, ?entity, refused = n, "entity message from a baseapp that is not the entity's base dropped");
        }
        false
    }

    /// Messages refused so far for who sent them.
    pub fn refusals(&self) -> Refusals {
        self.refusals
    }

    /// A message on an entity's channel from its base, directly or forwarded.
    pub(super) fn on_channel(&mut self, entity: EntityId, seq: u64, msg: EntityMsg) {
        let here = self.slot.get(&entity).copied();
        let real_here = here.filter(|&i| !self.entries[i].is_ghost());
        let Some(i) = real_here else {
            // Send it on towards the real: the ghost's pointer is the newest
            // news, then the forwarding entry.
            let next = here
                .and_then(|i| self.entries[i].ghost().map(|(a, _)| a))
                .or_else(|| self.forward.to(entity));
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
        match self.entries[i].channel.offer(seq, msg) {
            Offer::Kept => self.apply_ready(entity),
            Offer::Duplicate => {}
            Offer::Full { expected } => {
                // The gap before it was lost on its way (through a cellapp
                // that died): the base sends again everything unconfirmed
                // once the death is recovered, this message included.
                tracing::error!(%entity, seq, expected, "entity channel reorder buffer full; message dropped");
            }
        }
    }

    /// Applies the real's next base messages while they are here, in
    /// order. A message may move the real away or destroy it; the rest
    /// then wait for it to be forwarded.
    pub(super) fn apply_ready(&mut self, entity: EntityId) {
        loop {
            let Some(&i) = self.slot.get(&entity) else {
                return;
            };
            let r = &mut self.entries[i];
            if r.is_ghost() {
                return;
            }
            let Some(msg) = r.channel.next_to_apply() else {
                return;
            };
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
            EntityMsg::Call { method, args } => self.call(entity, method, &args, Caller::Client),
            EntityMsg::BaseCall { method, args } => self.call(entity, method, &args, Caller::Base),
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
        self.forward.clear(entity);
        // A ghost message still on its way from an earlier real must not
        // bring it back here.
        self.tombs.bury_forever(entity);
    }
}
