//! What a cell does when a baseapp dies. The real lives on; its base is
//! restored from a copy on another baseapp (design §1), which claims the
//! real with [`AppMsg::Rebase`]. The first claim for a real whose base is
//! still the dead one wins; every later one is refused, so a base is never
//! restored twice. The real keeps its state; its channel from the base
//! starts over at the claimant's sequence number, dropping what the dead
//! base sent that was not yet applied.
//!
//! When the client comes back ([`EntityMsg::Attach`] on the channel) its
//! witness starts over, since the new connection's view is empty.

use tessera::defs::TypeId;
use tessera::frame::encode_body;
use tessera::proto::app::{AppMsg, Delivery};
use tessera::proto::client::ServerMsg;
use tessera::{AppId, EntityId};

use super::Cell;
use crate::witness::Witness;

impl Cell {
    /// A restored base claims its real, directly or forwarded here.
    pub(super) fn rebase(&mut self, entity: EntityId, base: AppId, dead: AppId, seq: u64) {
        let here = self.slot.get(&entity).copied();
        let Some(i) = here.filter(|&i| !self.entries[i].is_ghost()) else {
            // On towards the real, as channel messages go.
            let next = here
                .and_then(|i| self.entries[i].ghost().map(|(a, _)| a))
                .or_else(|| self.forward.to(entity))
                .filter(|a| *a != self.cfg.app && !self.dead.contains(a));
            if next.is_some() {
                // The claimant's messages come this way too until it hears
                // where the real is.
                self.forward.rebased(entity, dead, base);
            }
            let msg = match next {
                Some(_) => AppMsg::Rebase {
                    entity,
                    base,
                    dead,
                    seq,
                },
                None => AppMsg::NotRebased { entity },
            };
            self.outbox.push((next.unwrap_or(base), msg));
            return;
        };
        // Nothing more is taken from the dead baseapp (the manager says so
        // too, perhaps later): a message of its still on the way would
        // otherwise land in the new channel.
        self.dead.insert(dead);
        let r = &mut self.entries[i];
        if r.base != Some(dead) {
            self.outbox.push((base, AppMsg::NotRebased { entity }));
            return;
        }
        r.base = Some(base);
        r.channel.rebase(seq);
        let version = r.version;
        let state = self.cell_state(&self.entries[i]);
        self.outbox.push((
            base,
            AppMsg::Rebased {
                entity,
                version,
                state,
            },
        ));
    }

    /// A client connected to the entity again: it sees everything anew.
    pub(super) fn attach(&mut self, entity: EntityId, out_seq: u64) {
        let Some(&i) = self.slot.get(&entity) else {
            return;
        };
        let r = &mut self.entries[i];
        let Some(base) = r.base else { return };
        let Some(w) = r.witness.as_mut() else { return };
        **w = Witness::new(w.radius);
        r.channel.attach(out_seq);
        r.to_own_client.clear();
        // The new connection numbers its moves afresh.
        r.pace.seq = 0;
        let (pos, yaw, type_id) = (r.pos.to_array(), r.yaw, r.type_id);
        let restored = encode_body(&ServerMsg::Restored { pos, yaw });
        self.queue_for_client(base, entity, Delivery::Reliable, restored);
        let props = self.own_props(i, type_id);
        let props = encode_body(&ServerMsg::Props { entity, props });
        self.queue_for_client(base, entity, Delivery::Reliable, props);
    }

    /// The cell-side properties a real's own client sees.
    fn own_props(&self, i: usize, type_id: TypeId) -> Vec<tessera::proto::client::PropValue> {
        let own = self
            .types
            .get(type_id.0 as usize)
            .map(|t| t.own.as_slice())
            .unwrap_or(&[]);
        own.iter()
            .filter_map(|&p| {
                self.entries[i]
                    .props
                    .get(p as usize)
                    .map(|v| (p, v.clone()))
            })
            .collect()
    }
}
