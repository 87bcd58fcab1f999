//! Bringing back the cell halves a dead cellapp took with it (design §1 and
//! §6 step 7): each real's cell data reaches its base as a backup every few
//! seconds, so the base can recreate it on the cell that now covers it.
//!
//! The manager declares the cellapp dead (its link closed or its heartbeats
//! stopped), after sending the layout without its cells. The baseapp then:
//!
//! 1. takes nothing more from the dead app;
//! 2. asks every live cellapp to confirm the death ([`AppMsg::AppDown`]).
//!    Each answers [`AppMsg::DownSeen`] once it too has stopped taking the
//!    dead app's messages, listing this baseapp's entities whose real it
//!    had handed to the dead app. Links are ordered, so a real that reached
//!    a live cell from the dead one in time has already said so
//!    (`RealMoved`);
//! 3. once every live cellapp has answered, knows for each entity whether
//!    its real died: its real was on the dead app, or went there with a
//!    version newer than any the base heard of since. Those are recreated
//!    from their last backup with a version above any the lost real could
//!    have reached, and their clients are told ([`ServerMsg::Restored`]).
//!    The others get every channel message not yet confirmed applied sent
//!    again: one routed through the dead app is otherwise lost, and the
//!    real drops those it already has.
//!
//! An entity that was leaving when its real died is saved from its last
//! backup instead.

use std::collections::{BTreeMap, BTreeSet};
use tessera::proto::app::AppMsg;
use tessera::proto::client::ServerMsg;
use tessera::{AppId, EntityId};

use super::{Bases, Half, Output};

/// How far above the highest known version a restored real starts: the
/// lost real may have moved once more without the base hearing of it.
pub(super) const VERSION_LEAP: u32 = 2;

/// One cellapp death being recovered from.
#[derive(Debug, Default)]
pub(crate) struct Recovery {
    /// Live cellapps that have not confirmed the death yet.
    waiting: BTreeSet<AppId>,
    /// Entities whose real a live cellapp handed to the dead app, with the
    /// version it went with.
    lost: BTreeMap<EntityId, u32>,
}

impl Bases {
    /// The manager declared `app` dead.
    pub(super) fn app_down(&mut self, now: tessera::Time, app: AppId) {
        if !self.dead.insert(app) {
            return;
        }
        self.linked.remove(&app);
        // A cellapp that has not answered for an earlier death never will.
        let done: Vec<AppId> = self
            .recovering
            .iter_mut()
            .filter_map(|(dead, r)| {
                (r.waiting.remove(&app) && r.waiting.is_empty()).then_some(*dead)
            })
            .collect();
        for dead in done {
            self.recover(dead);
        }
        if !self.cellapps.contains(&app) {
            // Another baseapp: none of this baseapp's cell halves were
            // there, but copies of its bases may be here.
            return self.peer_down(now, app);
        }
        let waiting: BTreeSet<AppId> = self
            .cells
            .iter()
            .map(|c| c.app)
            .filter(|a| *a != app && !self.dead.contains(a))
            .collect();
        tracing::warn!(%app, cellapps = waiting.len(), "app declared dead; confirming with the cellapps");
        for cell in &waiting {
            self.out.push(Output::App(*cell, AppMsg::AppDown { app }));
        }
        let empty = waiting.is_empty();
        self.recovering.insert(
            app,
            Recovery {
                waiting,
                lost: BTreeMap::new(),
            },
        );
        if empty {
            self.recover(app);
        }
    }

    /// A cellapp confirmed a death.
    pub(super) fn down_seen(&mut self, from: AppId, app: AppId, lost: Vec<(EntityId, u32)>) {
        let Some(r) = self.recovering.get_mut(&app) else {
            return;
        };
        if !r.waiting.remove(&from) {
            return;
        }
        for (e, v) in lost {
            let at = r.lost.entry(e).or_insert(v);
            *at = (*at).max(v);
        }
        if r.waiting.is_empty() {
            self.recover(app);
        }
    }

    /// Every live cellapp has confirmed `app` dead: restore what died with it.
    fn recover(&mut self, app: AppId) {
        let Some(r) = self.recovering.remove(&app) else {
            return;
        };
        let mut restore = Vec::new();
        let mut resend = Vec::new();
        for (e, b) in &self.bases {
            let Some(cell) = b.half.cell() else { continue };
            let handed = r.lost.get(e).copied().filter(|v| *v >= b.version);
            if cell == app || handed.is_some() {
                let known = handed.unwrap_or(0).max(b.version);
                restore.push((*e, known.saturating_add(VERSION_LEAP), b.leaving()));
            } else if b.channel.has_unconfirmed() {
                resend.push(*e);
            }
        }
        tracing::warn!(%app, restored = restore.len(), "restoring entities from their backups");
        for (e, version, leaving) in restore {
            let bounds = self.space.bounds;
            let speed = self
                .bases
                .get(&e)
                .and_then(|b| self.ty(b.ty))
                .map_or(0.0, |t| t.max_speed);
            if let Some(b) = self.bases.get_mut(&e) {
                // A claim sent to the dead cellapp is void: made anew.
                b.half = Half::Unplaced;
                b.version = version;
                b.resume_where_the_client_is(speed, bounds);
            }
            if leaving {
                // Its cell half is gone: save the last backup.
                self.finish(e);
                continue;
            }
            self.restored += 1;
            if let Some((client, pos, yaw)) = self
                .bases
                .get(&e)
                .and_then(|b| Some((b.client.id()?, b.pos, b.yaw)))
            {
                self.send(client, &ServerMsg::Restored { pos, yaw });
            }
            self.place_in_cell(e);
        }
        for e in resend {
            self.resend_unconfirmed(e);
        }
    }

    /// Whether the manager declared an app dead.
    pub fn is_dead(&self, app: AppId) -> bool {
        self.dead.contains(&app)
    }

    /// Entities restored from their backups since the start.
    pub fn restored(&self) -> u64 {
        self.restored
    }

    /// What a base holds of its entity's cell half (its last backup, or the
    /// state it was loaded with): position and every property.
    pub fn backed_up(&self, e: EntityId) -> Option<(tessera::proto::Pos, &[tessera::Value])> {
        self.bases.get(&e).map(|b| (b.pos, b.props.as_slice()))
    }
}
