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
use tessera::defs::TypeId;
use tessera::frame::{encode_body, encode_body_sized};
use tessera::proto::app::KnownState;
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

/// The hot part of an entity's state: what the witness reads for every
/// candidate every tick. Kept small so a tick's reads stay in cache.
#[derive(Clone, Copy, Debug)]
pub struct Brief {
    /// Its id.
    pub id: EntityId,
    /// Its type.
    pub type_id: TypeId,
    /// Position.
    pub pos: Vec3,
    /// Facing.
    pub yaw: f32,
    /// The tick it last moved.
    pub moved_tick: u64,
    /// Whether any property changed this tick.
    pub dirty: bool,
}

/// Property data of an entity, read only when the witness has to send it.
#[derive(Clone, Copy, Debug)]
pub struct PropsView<'a> {
    /// All its properties, by index.
    pub props: &'a [Value],
    /// Indices of properties other clients see.
    pub public: &'a [u16],
    /// Indices of properties changed this tick.
    pub dirty: &'a [u16],
}

/// Where a witness looks entities up.
pub trait Scene<'a> {
    /// The hot fields of an entity, if it exists.
    fn brief(&self, id: EntityId) -> Option<Brief>;
    /// Its properties, if it exists.
    fn props(&self, id: EntityId) -> Option<PropsView<'a>>;
}

/// Any function from id to [`Visible`] is a scene (handy in tests).
impl<'a, F: Fn(EntityId) -> Option<Visible<'a>>> Scene<'a> for F {
    fn brief(&self, id: EntityId) -> Option<Brief> {
        self(id).map(|v| Brief {
            id,
            type_id: v.type_id,
            pos: v.pos,
            yaw: v.yaw,
            moved_tick: v.moved_tick,
            dirty: !v.dirty.is_empty(),
        })
    }
    fn props(&self, id: EntityId) -> Option<PropsView<'a>> {
        self(id).map(|v| PropsView {
            props: v.props,
            public: v.public,
            dirty: v.dirty,
        })
    }
}

#[derive(Clone, Copy, Debug)]
struct Known {
    sent: Vec3,
    sent_yaw: f32,
    sent_tick: u64,
    unconfirmed: bool,
    /// [`props_digest`] of the public properties the client has.
    props: u64,
}

/// Updates after arriving from another cell in which missing entities are
/// kept (see `Witness::grace`): half a second at 10 Hz.
pub const ARRIVAL_GRACE: u8 = 5;

/// A digest of an entity's public properties (FNV-1a over their encoding):
/// equal digests mean the client has what the cell has. Fixed, not seeded,
/// so every cell computes the same one.
fn props_digest(v: &PropsView<'_>) -> u64 {
    let mut h = Fnv(0xcbf2_9ce4_8422_2325);
    for i in v.public {
        if let Some(value) = v.props.get(*i as usize) {
            // Writing into the hasher cannot fail.
            let _ = postcard::to_io(&(i, value), &mut h);
        }
    }
    h.0
}

/// FNV-1a, fed by postcard without an intermediate buffer.
struct Fnv(u64);

impl std::io::Write for Fnv {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Client-ready bytes from one witness update.
#[derive(Debug, Default)]
pub struct WitnessOut {
    /// Encoded `ServerMsg`s, in order, for the client's stream.
    pub reliable: Vec<Vec<u8>>,
    /// Encoded `ServerDatagram`s.
    pub datagrams: Vec<Vec<u8>>,
    /// Entities the client was sent an `Enter` for, in order.
    pub entered: Vec<EntityId>,
    /// Entities the client was sent a `Leave` for, in order.
    pub left: Vec<EntityId>,
}

impl WitnessOut {
    /// Empties every list.
    pub fn clear(&mut self) {
        self.reliable.clear();
        self.datagrams.clear();
        self.entered.clear();
        self.left.clear();
    }

    fn leave(&mut self, entity: EntityId) {
        self.reliable
            .push(encode_body(&ServerMsg::Leave { entity }));
        self.left.push(entity);
    }
}

/// The AoI state of one client-controlled entity.
///
/// What the client knows is a list sorted by entity id; each tick it is
/// merged with the sorted candidates, so the work is two sequential passes
/// rather than a hash probe per visible entity.
#[derive(Debug)]
pub struct Witness {
    /// AoI radius in metres.
    pub radius: f32,
    known: Vec<(EntityId, Known)>,
    next: Vec<(EntityId, Known)>,
    order: Vec<(EntityId, u32)>,
    /// Set when the witness arrives from another cell: property changes made
    /// while it travelled were not seen here, so the next update resends the
    /// public properties of every known entity whose digest differs from
    /// the one the client has (BigWorld compares event numbers instead).
    refresh: bool,
    /// Updates left in which a known entity missing from the candidates,
    /// last seen within the radius, is kept rather than sent a `Leave`. Set when the witness arrives from
    /// another cell: that cell's ghosts of entities across other lines may
    /// still be on their way (a line that moves far at once widens the area
    /// the cell must ghost), and a leave then an enter of each would resend
    /// whole entities to the client for nothing.
    grace: u8,
    /// Movers: (priority bits << 32 | slot in `known`, candidate index).
    moving: Vec<(u64, u32)>,
}

fn public_props(v: &PropsView<'_>, only: Option<&[u16]>) -> Vec<PropValue> {
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
            known: Vec::new(),
            next: Vec::new(),
            order: Vec::new(),
            refresh: false,
            grace: 0,
            moving: Vec::new(),
        }
    }

    /// What the client knows, for a witness moving to another cell; ticks
    /// become ages because cells count ticks independently.
    pub fn export(&self, tick: u64) -> Vec<KnownState> {
        self.known
            .iter()
            .map(|(id, k)| KnownState {
                entity: *id,
                sent: k.sent.to_array(),
                sent_yaw: k.sent_yaw,
                age: tick.saturating_sub(k.sent_tick).min(u64::from(u32::MAX)) as u32,
                unconfirmed: k.unconfirmed,
                props: k.props,
            })
            .collect()
    }

    /// A witness arriving from another cell.
    pub fn import(radius: f32, known: &[KnownState], tick: u64) -> Witness {
        let mut w = Witness::new(radius);
        w.known = known
            .iter()
            .map(|k| {
                (
                    k.entity,
                    Known {
                        sent: Vec3::from_array(k.sent),
                        sent_yaw: k.sent_yaw,
                        sent_tick: tick.saturating_sub(u64::from(k.age)),
                        unconfirmed: k.unconfirmed,
                        props: k.props,
                    },
                )
            })
            .collect();
        w.known.sort_by_key(|(id, _)| *id);
        w.known.dedup_by_key(|(id, _)| *id);
        w.refresh = true;
        w.grace = ARRIVAL_GRACE;
        w
    }

    /// Forgets the property resend an imported witness owes its client (a
    /// planted fault for tests; see `Faults::no_witness_refresh`).
    pub fn skip_refresh(&mut self) {
        self.refresh = false;
    }

    /// How many entities the client knows.
    pub fn known_len(&self) -> usize {
        self.known.len()
    }

    /// Whether the client knows an entity.
    pub fn knows(&self, id: EntityId) -> bool {
        self.known.binary_search_by_key(&id, |(k, _)| *k).is_ok()
    }

    /// The radius to query the index with: the AoI plus the leave hysteresis.
    pub fn query_radius(&self, budget: &Budget) -> f32 {
        self.radius + budget.hysteresis
    }

    /// One tick. `candidates` holds every entity within
    /// [`Witness::query_radius`] of `center` (it may hold `me` and more);
    /// `scene` finds an entity's state.
    #[allow(clippy::too_many_arguments)]
    pub fn update<'a>(
        &mut self,
        me: EntityId,
        center: Vec3,
        tick: u64,
        now_us: u64,
        candidates: &[EntityId],
        scene: impl Scene<'a>,
        budget: &Budget,
        out: &mut WitnessOut,
    ) {
        let briefs: Vec<Brief> = candidates
            .iter()
            .filter_map(|&id| scene.brief(id))
            .collect();
        self.update_briefs(me, center, tick, now_us, &briefs, scene, budget, out);
    }

    /// One tick, with the candidates' hot state already at hand (the cell's
    /// fast path: no lookup per candidate). `scene` is asked only for
    /// properties, when an entity enters or changes them.
    #[allow(clippy::too_many_arguments)]
    pub fn update_briefs<'a>(
        &mut self,
        me: EntityId,
        center: Vec3,
        tick: u64,
        now_us: u64,
        candidates: &[Brief],
        scene: impl Scene<'a>,
        budget: &Budget,
        out: &mut WitnessOut,
    ) {
        let r2 = self.radius * self.radius;
        let outer = self.radius + budget.hysteresis;
        let outer2 = outer * outer;
        self.moving.clear();
        self.next.clear();
        // Sort small (id, position) pairs, not whole briefs.
        self.order.clear();
        self.order.extend(
            candidates
                .iter()
                .enumerate()
                .filter(|(_, b)| b.id != me)
                .map(|(i, b)| (b.id, i as u32)),
        );
        self.order.sort_unstable();
        self.order.dedup_by_key(|(id, _)| *id);
        let (mut i, mut j) = (0, 0);
        loop {
            let k = self.known.get(i).map(|(id, _)| *id);
            let c = self.order.get(j).map(|(id, _)| *id);
            let (id, old, cand) = match (k, c) {
                (None, None) => break,
                (Some(k), Some(c)) if k == c => {
                    i += 1;
                    j += 1;
                    (k, Some(self.known[i - 1].1), Some(self.order[j - 1].1))
                }
                (Some(k), Some(c)) if k < c => {
                    i += 1;
                    (k, Some(self.known[i - 1].1), None)
                }
                (Some(k), None) => {
                    i += 1;
                    (k, Some(self.known[i - 1].1), None)
                }
                (_, Some(c)) => {
                    j += 1;
                    (c, None, Some(self.order[j - 1].1))
                }
            };
            // An id the candidates lack (known only) has left the outer
            // radius, or, just after arriving, may not be ghosted here yet.
            let Some(cand) = cand else {
                // Kept only if last seen within the radius, so one that
                // really walks off is gone a few metres past the band.
                let near =
                    |k: &Known| (k.sent.x - center.x).powi(2) + (k.sent.z - center.z).powi(2) <= r2;
                match old {
                    Some(k) if self.grace > 0 && near(&k) => self.next.push((id, k)),
                    _ => out.leave(id),
                }
                continue;
            };
            let v = candidates[cand as usize];
            let d2 = (v.pos.x - center.x).powi(2) + (v.pos.z - center.z).powi(2);
            match old {
                None if d2 <= r2 => {
                    let p = scene.props(id);
                    self.next.push((
                        id,
                        Known {
                            sent: v.pos,
                            sent_yaw: v.yaw,
                            sent_tick: tick,
                            unconfirmed: false,
                            props: p.as_ref().map(props_digest).unwrap_or(0),
                        },
                    ));
                    out.reliable.push(encode_body(&ServerMsg::Enter {
                        entity: id,
                        type_id: v.type_id,
                        pos: v.pos.to_array(),
                        yaw: v.yaw,
                        props: p.map(|p| public_props(&p, None)).unwrap_or_default(),
                        sent_us: now_us,
                    }));
                    out.entered.push(id);
                }
                None => {}
                Some(mut k) if d2 <= outer2 => {
                    if let Some(p) = (v.dirty || self.refresh).then(|| scene.props(id)).flatten() {
                        // After a move only entities whose digest differs
                        // are resent, and whole; otherwise the changed
                        // public properties, if any.
                        let props = if self.refresh {
                            let digest = props_digest(&p);
                            let stale = digest != k.props;
                            k.props = digest;
                            if stale {
                                public_props(&p, None)
                            } else {
                                Vec::new()
                            }
                        } else {
                            let changed = public_props(&p, Some(p.dirty));
                            if !changed.is_empty() {
                                k.props = props_digest(&p);
                            }
                            changed
                        };
                        if !props.is_empty() {
                            out.reliable
                                .push(encode_body(&ServerMsg::Props { entity: id, props }));
                        }
                    }
                    if k.sent != v.pos || k.sent_yaw != v.yaw {
                        // Nearest first, but an update that waited gets closer to the front.
                        let age = (tick - k.sent_tick) as f32;
                        // A non-negative float's bits order like the float.
                        let priority = (d2.sqrt() / (1.0 + age)).to_bits();
                        self.moving
                            .push(((u64::from(priority) << 32) | self.next.len() as u64, cand));
                    } else {
                        // The client is current: an update it needs later waits from now.
                        k.sent_tick = tick;
                        if k.unconfirmed && v.moved_tick + 1 < tick {
                            k.unconfirmed = false;
                            out.reliable.push(encode_body(&ServerMsg::Rest {
                                entity: id,
                                pos: v.pos.to_array(),
                                yaw: v.yaw,
                                sent_us: now_us,
                            }));
                        }
                    }
                    self.next.push((id, k));
                }
                Some(_) => out.leave(id),
            }
        }
        std::mem::swap(&mut self.known, &mut self.next);
        self.refresh = false;
        self.grace = self.grace.saturating_sub(1);
        self.send_positions(tick, now_us, candidates, budget, out);
    }

    fn send_positions(
        &mut self,
        tick: u64,
        now_us: u64,
        candidates: &[Brief],
        budget: &Budget,
        out: &mut WitnessOut,
    ) {
        if self.moving.is_empty() || budget.updates == 0 {
            return;
        }
        if self.moving.len() > budget.updates {
            self.moving.select_nth_unstable(budget.updates - 1);
            self.moving.truncate(budget.updates);
        }
        // Order matters only where the byte budget cuts the list; the count
        // limit was applied by the selection above.
        let needed: usize = self
            .moving
            .iter()
            .filter_map(|&(key, _)| self.known.get((key & 0xffff_ffff) as usize))
            .map(|(id, _)| varint_len(id.0) + 16)
            .sum();
        if needed > budget.bytes {
            self.moving.sort_unstable();
        }
        // Variant, timestamp and count.
        const HEADER: usize = 1 + 10 + 3;
        let mut spent = 0usize;
        let mut batch: Vec<PosUpdate> = Vec::with_capacity(self.moving.len().min(64));
        let mut batch_bytes = HEADER;
        for &(key, cand) in &self.moving {
            let Some((id, k)) = self.known.get_mut((key & 0xffff_ffff) as usize) else {
                continue;
            };
            let Some(v) = candidates.get(cand as usize) else {
                continue;
            };
            let size = varint_len(id.0) + 16;
            if spent + size > budget.bytes {
                break;
            }
            if batch_bytes + size > budget.datagram && !batch.is_empty() {
                out.datagrams.push(encode_body_sized(
                    &ServerDatagram::Positions {
                        sent_us: now_us,
                        updates: std::mem::take(&mut batch),
                    },
                    batch_bytes,
                ));
                batch_bytes = HEADER;
            }
            spent += size;
            batch_bytes += size;
            batch.push(PosUpdate {
                entity: *id,
                pos: v.pos.to_array(),
                yaw: v.yaw,
            });
            k.sent = v.pos;
            k.sent_yaw = v.yaw;
            k.sent_tick = tick;
            k.unconfirmed = true;
        }
        if !batch.is_empty() {
            out.datagrams.push(encode_body_sized(
                &ServerDatagram::Positions {
                    sent_us: now_us,
                    updates: batch,
                },
                batch_bytes,
            ));
        }
    }
}

fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

#[cfg(test)]
mod tests;
