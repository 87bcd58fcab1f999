//! The client's picture of the world: its own entity and every entity its AoI
//! holds, kept up to date by applying the server's messages in order.

use crate::defs::TypeId;
use crate::ids::EntityId;
use crate::proto::client::{Frame, PosUpdate, PropValue, ServerDatagram, ServerMsg};
use crate::proto::Pos;
use crate::value::Value;
use std::collections::BTreeMap;

/// Another entity as the client sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct Seen {
    /// Its type.
    pub type_id: TypeId,
    /// Last known position.
    pub pos: Pos,
    /// Last known facing.
    pub yaw: f32,
    /// Properties visible to other clients, by index.
    pub props: BTreeMap<u16, Value>,
    /// Server time of the last position applied, microseconds.
    pub stamp_us: u64,
    /// Its index in position updates.
    pub index: u32,
}

/// What a client knows.
#[derive(Clone, Debug, PartialEq)]
pub struct View {
    /// The client's own entity.
    pub me: EntityId,
    /// Its type.
    pub my_type: TypeId,
    /// Where the server last put it (the client's own moves update this too).
    pub my_pos: Pos,
    /// Own properties, by index.
    pub my_props: BTreeMap<u16, Value>,
    /// The space's bounds: min x, min z, max x, max z.
    pub bounds: [f32; 4],
    /// Everything in the AoI.
    pub others: BTreeMap<EntityId, Seen>,
    /// Which entity each index of position updates names (indices are
    /// small and dense: the server gives out the lowest free one).
    indices: Vec<Option<EntityId>>,
}

/// The highest index a view keeps (a server gives out the lowest free
/// index, so only a client holding a million entities would reach it); an
/// entity entered with a higher one is held but not placed by updates.
pub const MAX_INDEX: u32 = 1 << 20;

fn merge(into: &mut BTreeMap<u16, Value>, props: &[PropValue]) {
    for (i, v) in props {
        into.insert(*i, v.clone());
    }
}

impl View {
    /// A view of a client that was just welcomed.
    pub fn new(
        me: EntityId,
        my_type: TypeId,
        my_pos: Pos,
        props: &[PropValue],
        bounds: [f32; 4],
    ) -> View {
        let mut my_props = BTreeMap::new();
        merge(&mut my_props, props);
        View {
            me,
            my_type,
            my_pos,
            my_props,
            bounds,
            others: BTreeMap::new(),
            indices: Vec::new(),
        }
    }

    fn place(&mut self, entity: EntityId, pos: Pos, yaw: f32, sent_us: u64) {
        if let Some(s) = self.others.get_mut(&entity) {
            // Datagrams may arrive out of order, or after the entity's
            // index went to another: never go back in time.
            if sent_us >= s.stamp_us {
                s.pos = pos;
                s.yaw = yaw;
                s.stamp_us = sent_us;
            }
        }
    }

    /// The entity position updates name by `index`, if any.
    pub fn holder(&self, index: u32) -> Option<EntityId> {
        self.indices.get(index as usize).copied().flatten()
    }

    /// Places every update whose index names an entity held.
    fn place_all(&mut self, frame: Frame, updates: &[PosUpdate], sent_us: u64) {
        for u in updates {
            if let Some(entity) = self.holder(u.index) {
                let (pos, yaw) = frame.decode(u);
                self.place(entity, pos, yaw, sent_us);
            }
        }
    }

    fn forget(&mut self, entity: EntityId) {
        if let Some(s) = self.others.remove(&entity) {
            if let Some(slot) = self.indices.get_mut(s.index as usize) {
                if *slot == Some(entity) {
                    *slot = None;
                }
            }
        }
    }

    /// Gives `index` to `entity`; returns the entity that held it.
    fn assign(&mut self, index: u32, entity: EntityId) -> Option<EntityId> {
        if index >= MAX_INDEX {
            return None;
        }
        let i = index as usize;
        if self.indices.len() <= i {
            self.indices.resize(i + 1, None);
        }
        self.indices[i].replace(entity)
    }

    /// Applies a stream message.
    pub fn apply(&mut self, msg: &ServerMsg) {
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
                let mut p = BTreeMap::new();
                merge(&mut p, props);
                self.forget(*entity);
                if let Some(was) = self.assign(*index, *entity) {
                    // Its last holder left (the leave is on its way, or
                    // was lost with a cellapp): the index is this one's.
                    if was != *entity {
                        if let Some(s) = self.others.get_mut(&was) {
                            s.index = u32::MAX;
                        }
                    }
                }
                self.others.insert(
                    *entity,
                    Seen {
                        type_id: *type_id,
                        pos: *pos,
                        yaw: *yaw,
                        props: p,
                        stamp_us: *sent_us,
                        index: *index,
                    },
                );
            }
            ServerMsg::Leave { entity } => self.forget(*entity),
            ServerMsg::Props { entity, props } => {
                if *entity == self.me {
                    merge(&mut self.my_props, props);
                } else if let Some(s) = self.others.get_mut(entity) {
                    merge(&mut s.props, props);
                }
            }
            ServerMsg::Corrected { pos, .. } => self.my_pos = *pos,
            ServerMsg::Restored { pos, .. } => {
                self.my_pos = *pos;
                self.others.clear();
                self.indices.clear();
            }
            ServerMsg::Rest {
                entity,
                pos,
                yaw,
                sent_us,
            } => self.place(*entity, *pos, *yaw, *sent_us),
            ServerMsg::Rests {
                sent_us,
                origin,
                scale,
                updates,
            } => self.place_all(
                Frame {
                    origin: *origin,
                    scale: *scale,
                },
                updates,
                *sent_us,
            ),
            ServerMsg::Welcome { .. }
            | ServerMsg::Refused { .. }
            | ServerMsg::Call { .. }
            | ServerMsg::Session { .. } => {}
        }
    }

    /// Applies a datagram.
    pub fn apply_datagram(&mut self, d: &ServerDatagram) {
        match d {
            ServerDatagram::Positions {
                sent_us, updates, ..
            } => self.place_all(d.frame(), updates, *sent_us),
        }
    }
}
