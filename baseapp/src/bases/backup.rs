//! Copies of bases on other baseapps, and bringing back the bases of a
//! baseapp that died (design §1, BigWorld's scheme).
//!
//! Every base is copied whole, every [`BaseConfig::backup_period`] (spread
//! over the period by entity id), to one other live baseapp: the one that
//! ranks highest for the entity id by rendezvous hashing, so every baseapp
//! agrees where a copy lives and a change of membership moves few copies.
//! When a copy moves, the old holder is told to forget it; so is the holder
//! of a base that logs out.
//!
//! When the manager declares a baseapp dead, each holder restores the bases
//! it holds copies of: without a client (the client resumes with its
//! session token) and claiming the real, which lives on, with
//! [`AppMsg::Rebase`]. The real accepts the first claim while its base is
//! still the dead one and refuses any later one, so however copies were
//! spread when the baseapp died, each base comes back once. An accepted
//! base takes the real's state as it is now; a refused one is dropped
//! unsaved. A copy may be a backup period old: base properties changed
//! since are lost with the dead baseapp, never the cell's.
//!
//! [`BaseConfig::backup_period`]: super::BaseConfig::backup_period

use tessera::channel::BaseChannel;
use tessera::proto::app::{AppMsg, BaseCopy, CellInfo, CellState};
use tessera::storage::DbId;
use tessera::{AppId, EntityId, Time};

use super::{Base, Bases, Client, Half, Output};

/// The baseapp that holds the copy of `entity`'s base: the highest ranked
/// by rendezvous hashing among `peers`.
pub fn holder(entity: EntityId, peers: impl IntoIterator<Item = AppId>) -> Option<AppId> {
    peers
        .into_iter()
        .max_by_key(|app| (rank(entity, *app), *app))
}

/// A well-mixed 64-bit score of an (entity, baseapp) pair (splitmix64).
fn rank(entity: EntityId, app: AppId) -> u64 {
    let mut z = entity
        .0
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .wrapping_add(u64::from(app.0));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Bases {
    /// The manager's list of live baseapps.
    pub(super) fn baseapps(&mut self, list: Vec<CellInfo>) {
        self.peers = list
            .iter()
            .filter(|b| b.app != self.app && !self.dead.contains(&b.app))
            .map(|b| (b.app, b.addr))
            .collect();
        // A baseapp that left will not answer a hand-over.
        let peers = &self.peers;
        self.awaiting.retain(|a| peers.contains_key(a));
        self.named_holders_left();
    }

    /// Sends this tick's share of the bases to their holders.
    pub(super) fn back_up_share(&mut self) {
        let tick = self.cfg.tick.as_micros().max(1) as u64;
        let slots = (self.cfg.backup_period.as_micros() as u64 / tick).max(1);
        let slot = self.ticks % slots;
        let due: Vec<EntityId> = self
            .bases
            .iter()
            .filter(|(e, b)| e.0 % slots == slot && matches!(b.half, Half::Placed { .. }))
            .map(|(e, _)| *e)
            .collect();
        for e in due {
            self.back_up(e);
        }
    }

    /// Copies one base to its holder now (a new base is copied at once,
    /// not a period later), telling a former holder to forget it.
    pub(super) fn back_up(&mut self, e: EntityId) {
        let Some(to) = holder(e, self.peers.keys().copied()) else {
            return;
        };
        let Some(copy) = self.copy_of(e) else { return };
        let Some(b) = self.bases.get_mut(&e) else {
            return;
        };
        if let Some(old) = b.holder.replace(to).filter(|old| *old != to) {
            self.out
                .push(Output::App(old, AppMsg::BaseGone { entity: e }));
        }
        self.out
            .push(Output::App(to, AppMsg::BaseBackup(Box::new(copy))));
    }

    fn copy_of(&self, e: EntityId) -> Option<BaseCopy> {
        let b = self.bases.get(&e)?;
        Some(BaseCopy {
            entity: e,
            db_id: b.db_id.map(|d| d.0),
            account: b.account,
            type_id: self.ty(b.ty)?.id,
            pos: b.pos,
            yaw: b.yaw,
            props: b.props.clone(),
            cell: b.half.cell()?,
            version: b.version,
            next_seq: b.channel.next_seq(),
            next_out: b.channel.next_frame(),
            token: b.token,
            prev_token: b.prev_token,
            fence: b.fence,
        })
    }

    /// Keeps a copy of another baseapp's base.
    pub(super) fn hold(&mut self, from: AppId, copy: BaseCopy) {
        if self.defs.get(copy.type_id).is_none() {
            tracing::warn!(%from, entity = %copy.entity, "copy of a base of an unknown type refused");
            return;
        }
        self.copies.insert(copy.entity, (from, copy));
    }

    /// Copies of other baseapps' bases held here.
    pub fn copies_held(&self) -> usize {
        self.copies.len()
    }

    /// Another baseapp died: bring back the bases this one holds copies of.
    pub(super) fn peer_down(&mut self, now: Time, app: AppId) {
        let n = self.restore_copies_of(now, app);
        if n > 0 {
            tracing::warn!(%app, bases = n, "baseapp declared dead; restoring its bases from their copies");
        }
    }

    /// Brings back the bases this baseapp holds copies of from `app`,
    /// which is gone or going; returns how many.
    pub(super) fn restore_copies_of(&mut self, now: Time, app: AppId) -> usize {
        self.peers.remove(&app);
        let mine: Vec<EntityId> = self
            .copies
            .iter()
            .filter(|(_, (owner, _))| *owner == app)
            .map(|(e, _)| *e)
            .collect();
        let n = mine.len();
        for e in mine {
            let Some((_, copy)) = self.copies.remove(&e) else {
                continue;
            };
            self.restore_base(now, app, copy);
        }
        n
    }

    fn restore_base(&mut self, now: Time, dead: AppId, copy: BaseCopy) {
        let e = copy.entity;
        if self.bases.contains_key(&e) {
            return;
        }
        let Some(ty) = self.defs.get(copy.type_id) else {
            return;
        };
        let channel = BaseChannel::restored(copy.next_seq, copy.next_out);
        let seq = channel.next_seq();
        // Its real died too: it is made anew from the copy.
        let lost = self.dead.contains(&copy.cell);
        let base = Base {
            db_id: copy.db_id.map(DbId),
            account: copy.account,
            ty: ty.id.0 as usize,
            pos: copy.pos,
            yaw: copy.yaw,
            props: copy.props,
            client: Client::Away { since: now },
            half: if lost {
                Half::Unplaced
            } else {
                Half::Claiming {
                    cell: copy.cell,
                    dead,
                }
            },
            version: if lost {
                copy.version.saturating_add(super::recovery::VERSION_LEAP)
            } else {
                copy.version
            },
            channel,
            // Saved at the next period, so that its fence shuts out its
            // old baseapp if that lives on.
            dirty: true,
            token: copy.token,
            prev_token: copy.prev_token,
            holder: None,
            fence: copy.fence.saturating_add(1),
            last_move: None,
            held: Vec::new(),
            resend: false,
            backed_up: Some(now),
        };
        if let Some(account) = base.account {
            self.online.insert(account, e);
        }
        self.bases.insert(e, base);
        if lost {
            self.restored += 1;
            return self.place_in_cell(e);
        }
        self.out.push(Output::App(
            copy.cell,
            AppMsg::Rebase {
                entity: e,
                base: self.app,
                dead,
                seq,
            },
        ));
    }

    /// The real took this baseapp as its base: the base is back.
    pub(super) fn rebased(&mut self, from: AppId, e: EntityId, version: u32, state: CellState) {
        let Some(b) = self.bases.get_mut(&e) else {
            return;
        };
        let Half::Claiming { cell, .. } = b.half else {
            return;
        };
        // A `RealMoved` from a cell the real went on to may have come
        // first: the newer news wins.
        let cell = if version >= b.version {
            b.version = version;
            from
        } else {
            cell
        };
        b.half = Half::Placed { cell };
        self.restored += 1;
        self.absorb(e, state);
        self.back_up(e);
    }

    /// The real refused the claim (another baseapp restored it, or it is
    /// gone): this copy was not the one to restore.
    pub(super) fn not_rebased(&mut self, e: EntityId) {
        if self.bases.get(&e).is_none_or(|b| !b.claiming()) {
            return;
        }
        if let Some(b) = self.bases.remove(&e) {
            if let Some(account) = b.account {
                if self.online.get(&account) == Some(&e) {
                    self.online.remove(&account);
                }
            }
        }
    }
}
