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

/// Everything in a view's AoI, by entity id. The entries sit in a table
/// that position updates reach by index without a search (a view applies
/// hundreds of updates a tick); the map by id serves enters, leaves and
/// lookups.
#[derive(Clone, Debug, Default)]
pub struct Others {
    /// Where each entity's entry is in `slots`.
    by_id: BTreeMap<EntityId, u32>,
    slots: Vec<Option<(EntityId, Seen)>>,
    /// Slots emptied, to fill first.
    free: Vec<u32>,
}

impl Others {
    /// The entity's entry, if the view holds it.
    pub fn get(&self, entity: &EntityId) -> Option<&Seen> {
        let slot = *self.by_id.get(entity)?;
        self.seen(slot)
    }

    /// Whether the view holds the entity.
    pub fn contains_key(&self, entity: &EntityId) -> bool {
        self.by_id.contains_key(entity)
    }

    /// How many entities the view holds.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether the view holds none.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// The entities held, in id order.
    pub fn keys(&self) -> impl Iterator<Item = &EntityId> {
        self.by_id.keys()
    }

    /// The entries, in id order.
    pub fn values(&self) -> impl Iterator<Item = &Seen> {
        self.iter().map(|(_, s)| s)
    }

    /// The entities and their entries, in id order.
    pub fn iter(&self) -> impl Iterator<Item = (&EntityId, &Seen)> {
        self.by_id
            .iter()
            .filter_map(|(id, slot)| Some((id, self.seen(*slot)?)))
    }

    fn seen(&self, slot: u32) -> Option<&Seen> {
        self.slots.get(slot as usize)?.as_ref().map(|(_, s)| s)
    }

    fn entry_mut(&mut self, slot: u32) -> Option<&mut (EntityId, Seen)> {
        self.slots.get_mut(slot as usize)?.as_mut()
    }

    fn get_mut(&mut self, entity: &EntityId) -> Option<&mut Seen> {
        let slot = *self.by_id.get(entity)?;
        self.entry_mut(slot).map(|(_, s)| s)
    }

    /// Holds an entity the view does not hold yet; returns its slot.
    fn insert(&mut self, entity: EntityId, seen: Seen) -> u32 {
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot as usize] = Some((entity, seen));
                slot
            }
            None => {
                self.slots.push(Some((entity, seen)));
                (self.slots.len() - 1) as u32
            }
        };
        self.by_id.insert(entity, slot);
        slot
    }

    /// Lets go of an entity; returns its slot and entry.
    fn remove(&mut self, entity: &EntityId) -> Option<(u32, Seen)> {
        let slot = self.by_id.remove(entity)?;
        let (_, seen) = self.slots.get_mut(slot as usize)?.take()?;
        self.free.push(slot);
        Some((slot, seen))
    }

    fn clear(&mut self) {
        *self = Others::default();
    }
}

impl PartialEq for Others {
    fn eq(&self, other: &Others) -> bool {
        self.len() == other.len() && self.iter().all(|(id, s)| other.get(id) == Some(s))
    }
}

impl std::ops::Index<&EntityId> for Others {
    type Output = Seen;

    fn index(&self, entity: &EntityId) -> &Seen {
        match self.get(entity) {
            Some(s) => s,
            None => panic!("the view does not hold entity {entity}"),
        }
    }
}

impl<'a> IntoIterator for &'a Others {
    type Item = (&'a EntityId, &'a Seen);
    type IntoIter = Box<dyn Iterator<Item = (&'a EntityId, &'a Seen)> + 'a>;

    fn into_iter(self) -> Self::IntoIter {
        Box::new(self.iter())
    }
}

/// What a client knows.
#[derive(Clone, Debug)]
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
    pub others: Others,
    /// The slot in `others` of the entity each index of position updates
    /// names, or [`NO_SLOT`] (indices are small and dense: the server gives
    /// out the lowest free one).
    indices: Vec<u32>,
}

/// An index of position updates that names no entity.
const NO_SLOT: u32 = u32::MAX;

/// Two views are equal when they know the same: the index table is how a
/// view finds what it holds, and each entry says its index.
impl PartialEq for View {
    fn eq(&self, other: &View) -> bool {
        self.me == other.me
            && self.my_type == other.my_type
            && self.my_pos == other.my_pos
            && self.my_props == other.my_props
            && self.bounds == other.bounds
            && self.others == other.others
    }
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

/// Moves an entry to a position sent at `sent_us`, unless it holds a later
/// one: datagrams may arrive out of order, or after the entity's index went
/// to another, and a view never goes back in time.
fn place(s: &mut Seen, pos: Pos, yaw: f32, sent_us: u64) {
    if sent_us >= s.stamp_us {
        s.pos = pos;
        s.yaw = yaw;
        s.stamp_us = sent_us;
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
            others: Others::default(),
            indices: Vec::new(),
        }
    }

    /// The entity position updates name by `index`, if any.
    pub fn holder(&self, index: u32) -> Option<EntityId> {
        let slot = *self.indices.get(index as usize)?;
        self.others
            .slots
            .get(slot as usize)?
            .as_ref()
            .map(|(e, _)| *e)
    }

    /// Places every update whose index names an entity held.
    fn place_all(&mut self, frame: Frame, updates: &[PosUpdate], sent_us: u64) {
        for u in updates {
            let Some(&slot) = self.indices.get(u.index as usize) else {
                continue;
            };
            if let Some((_, s)) = self.others.entry_mut(slot) {
                let (pos, yaw) = frame.decode(u);
                place(s, pos, yaw, sent_us);
            }
        }
    }

    fn forget(&mut self, entity: EntityId) {
        if let Some((slot, s)) = self.others.remove(&entity) {
            if let Some(at) = self.indices.get_mut(s.index as usize) {
                if *at == slot {
                    *at = NO_SLOT;
                }
            }
        }
    }

    /// Gives `index` to the entity in `slot`; returns the slot that held it.
    fn assign(&mut self, index: u32, slot: u32) -> Option<u32> {
        if index >= MAX_INDEX {
            return None;
        }
        let i = index as usize;
        if self.indices.len() <= i {
            self.indices.resize(i + 1, NO_SLOT);
        }
        let was = std::mem::replace(&mut self.indices[i], slot);
        (was != NO_SLOT).then_some(was)
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
                let slot = self.others.insert(
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
                if let Some(was) = self.assign(*index, slot) {
                    // Its last holder left (the leave is on its way, or
                    // was lost with a cellapp): the index is this one's.
                    if let Some((_, s)) = self.others.entry_mut(was) {
                        s.index = u32::MAX;
                    }
                }
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
            } => {
                if let Some(s) = self.others.get_mut(entity) {
                    place(s, *pos, *yaw, *sent_us);
                }
            }
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
