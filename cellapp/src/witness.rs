//! The witness: the area of interest of one client-controlled real. Each tick
//! it compares what its client knows with what is within its radius and
//! produces the client-ready bytes that close the gap: *enter* (reliable),
//! *leave* (reliable, with a hysteresis band on the radius), property changes
//! (reliable), and position updates (datagrams), nearest first within a
//! per-client byte budget so a crowd degrades the update rate of far entities
//! before anything else. An entity that comes to rest after updates that went
//! by datagram gets one reliable *rest* position, so a lost datagram never
//! leaves a stale position behind.

use glam::Vec3;
use rustc_hash::FxHashMap;
use tessera::defs::TypeId;
use tessera::frame::encode_body;
use tessera::proto::client::{PosUpdate, PropValue, ServerDatagram, ServerMsg};
use tessera::{EntityId, Value};

/// Limits on what one witness sends per tick.
#[derive(Clone, Copy, Debug)]
pub struct Budget {
    /// Bytes of position updates per tick.
    pub bytes: usize,
    /// Position updates per tick.
    pub updates: usize,
    /// Largest datagram payload.
    pub datagram: usize,
    /// Extra distance beyond the radius before an entity leaves.
    pub hysteresis: f32,
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            bytes: 8 * 1024,
            updates: 300,
            datagram: 1100,
            hysteresis: 5.0,
        }
    }
}

/// What the witness needs to know of an entity it may see.
#[derive(Clone, Copy, Debug)]
pub struct Visible<'a> {
    /// Its type.
    pub type_id: TypeId,
    /// Position.
    pub pos: Vec3,
    /// Facing.
    pub yaw: f32,
    /// All its properties, by index.
    pub props: &'a [Value],
    /// Indices of properties other clients see.
    pub public: &'a [u16],
    /// Indices of properties changed this tick.
    pub dirty: &'a [u16],
    /// The tick it last moved.
    pub moved_tick: u64,
}

#[derive(Clone, Copy, Debug)]
struct Known {
    sent: Vec3,
    sent_yaw: f32,
    sent_tick: u64,
    unconfirmed: bool,
    seen: u64,
}

/// Client-ready bytes from one witness update.
#[derive(Debug, Default)]
pub struct WitnessOut {
    /// Encoded `ServerMsg`s, in order, for the client's stream.
    pub reliable: Vec<Vec<u8>>,
    /// Encoded `ServerDatagram`s.
    pub datagrams: Vec<Vec<u8>>,
}

impl WitnessOut {
    /// Empties both lists.
    pub fn clear(&mut self) {
        self.reliable.clear();
        self.datagrams.clear();
    }
}

/// The AoI state of one client-controlled entity.
#[derive(Debug)]
pub struct Witness {
    /// AoI radius in metres.
    pub radius: f32,
    known: FxHashMap<EntityId, Known>,
    leaving: Vec<EntityId>,
    moving: Vec<(f32, EntityId)>,
}

fn public_props(v: &Visible<'_>, only: Option<&[u16]>) -> Vec<PropValue> {
    let pick = |i: &u16| v.props.get(*i as usize).map(|p| (*i, p.clone()));
    match only {
        None => v.public.iter().filter_map(pick).collect(),
        Some(dirty) => dirty
            .iter()
            .filter(|i| v.public.contains(i))
            .filter_map(pick)
            .collect(),
    }
}

impl Witness {
    /// A witness that knows nothing yet.
    pub fn new(radius: f32) -> Witness {
        Witness {
            radius,
            known: FxHashMap::default(),
            leaving: Vec::new(),
            moving: Vec::new(),
        }
    }

    /// How many entities the client knows.
    pub fn known_len(&self) -> usize {
        self.known.len()
    }

    /// Whether the client knows an entity.
    pub fn knows(&self, id: EntityId) -> bool {
        self.known.contains_key(&id)
    }

    /// The radius to query the index with: the AoI plus the leave hysteresis.
    pub fn query_radius(&self, budget: &Budget) -> f32 {
        self.radius + budget.hysteresis
    }

    /// One tick. `candidates` holds every entity within
    /// [`Witness::query_radius`] of `center` (it may hold `me` and more);
    /// `lookup` finds an entity's state.
    #[allow(clippy::too_many_arguments)]
    pub fn update<'a>(
        &mut self,
        me: EntityId,
        center: Vec3,
        tick: u64,
        now_us: u64,
        candidates: &[EntityId],
        lookup: impl Fn(EntityId) -> Option<Visible<'a>>,
        budget: &Budget,
        out: &mut WitnessOut,
    ) {
        let r2 = self.radius * self.radius;
        let outer = self.radius + budget.hysteresis;
        let outer2 = outer * outer;
        self.moving.clear();
        for &id in candidates {
            if id == me {
                continue;
            }
            let Some(v) = lookup(id) else { continue };
            let d2 = (v.pos.x - center.x).powi(2) + (v.pos.z - center.z).powi(2);
            match self.known.get_mut(&id) {
                None if d2 <= r2 => {
                    self.known.insert(
                        id,
                        Known {
                            sent: v.pos,
                            sent_yaw: v.yaw,
                            sent_tick: tick,
                            unconfirmed: false,
                            seen: tick,
                        },
                    );
                    out.reliable.push(encode_body(&ServerMsg::Enter {
                        entity: id,
                        type_id: v.type_id,
                        pos: v.pos.to_array(),
                        yaw: v.yaw,
                        props: public_props(&v, None),
                        sent_us: now_us,
                    }));
                }
                None => {}
                Some(k) if d2 <= outer2 => {
                    k.seen = tick;
                    if !v.dirty.is_empty() {
                        let props = public_props(&v, Some(v.dirty));
                        if !props.is_empty() {
                            out.reliable
                                .push(encode_body(&ServerMsg::Props { entity: id, props }));
                        }
                    }
                    if k.sent != v.pos || k.sent_yaw != v.yaw {
                        // Nearest first, but an update that waited gets closer to the front.
                        let age = (tick - k.sent_tick) as f32;
                        self.moving.push((d2.sqrt() / (1.0 + age), id));
                    } else if k.unconfirmed && v.moved_tick + 1 < tick {
                        k.unconfirmed = false;
                        out.reliable.push(encode_body(&ServerMsg::Rest {
                            entity: id,
                            pos: v.pos.to_array(),
                            yaw: v.yaw,
                            sent_us: now_us,
                        }));
                    }
                }
                Some(_) => {}
            }
        }
        // Whatever was not seen within the outer radius leaves.
        self.leaving.clear();
        self.leaving.extend(
            self.known
                .iter()
                .filter(|(_, k)| k.seen != tick)
                .map(|(id, _)| *id),
        );
        self.leaving.sort_unstable();
        for id in &self.leaving {
            self.known.remove(id);
            out.reliable
                .push(encode_body(&ServerMsg::Leave { entity: *id }));
        }
        self.send_positions(tick, now_us, &lookup, budget, out);
    }

    fn send_positions<'a>(
        &mut self,
        tick: u64,
        now_us: u64,
        lookup: &impl Fn(EntityId) -> Option<Visible<'a>>,
        budget: &Budget,
        out: &mut WitnessOut,
    ) {
        if self.moving.is_empty() {
            return;
        }
        self.moving
            .sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        // Variant, timestamp and count.
        const HEADER: usize = 1 + 10 + 3;
        let mut spent = 0usize;
        let mut batch: Vec<PosUpdate> = Vec::new();
        let mut batch_bytes = HEADER;
        for &(_, id) in self.moving.iter().take(budget.updates) {
            let Some(v) = lookup(id) else { continue };
            let size = varint_len(id.0) + 16;
            if spent + size > budget.bytes {
                break;
            }
            if batch_bytes + size > budget.datagram && !batch.is_empty() {
                out.datagrams.push(encode_body(&ServerDatagram::Positions {
                    sent_us: now_us,
                    updates: std::mem::take(&mut batch),
                }));
                batch_bytes = HEADER;
            }
            spent += size;
            batch_bytes += size;
            batch.push(PosUpdate {
                entity: id,
                pos: v.pos.to_array(),
                yaw: v.yaw,
            });
            if let Some(k) = self.known.get_mut(&id) {
                k.sent = v.pos;
                k.sent_yaw = v.yaw;
                k.sent_tick = tick;
                k.unconfirmed = true;
            }
        }
        if !batch.is_empty() {
            out.datagrams.push(encode_body(&ServerDatagram::Positions {
                sent_us: now_us,
                updates: batch,
            }));
        }
    }
}

fn varint_len(v: u64) -> usize {
    ((64 - (v | 1).leading_zeros() as usize) + 6) / 7
}

#[cfg(test)]
mod tests;
