//! What a cell does when another cellapp dies. Nothing is lost with a
//! cellapp (design §1): every real's cell data is backed up to its base, and
//! the bases restore what died. This module gives the bases complete news to
//! decide from.
//!
//! The manager declares the death to every app; each baseapp then asks
//! every live cellapp to confirm ([`AppMsg::AppDown`] from a baseapp). A
//! cell that learns of the death, from either:
//!
//! - takes nothing more from the dead app: messages still in flight from it
//!   are void, so a real it was handing over never becomes real here once
//!   the bases may be restoring it;
//! - drops the ghosts whose real was there, and stops ghosting and
//!   offloading to it;
//! - answers each asking baseapp with [`AppMsg::DownSeen`], listing that
//!   baseapp's entities whose real it had handed to the dead app (its
//!   forwarding entries): their base may never have heard of the move.
//!
//! Links are ordered, so everything the cell told a base before (a
//! `RealMoved` for a real that arrived from the dead app in time) reaches
//! the base before the answer.

use tessera::proto::app::AppMsg;
use tessera::{AppId, EntityId, MANAGER};

use super::Cell;

impl Cell {
    /// `app` is dead, says the manager or a baseapp (`from`).
    pub(super) fn app_down(&mut self, from: AppId, app: AppId) {
        if app == self.cfg.app {
            // The cluster has given this cellapp up; its driver stops it
            // when the manager drops the link.
            tracing::error!("the manager declared this cellapp dead");
            return;
        }
        if self.dead.insert(app) {
            self.purge(app);
        }
        if from != MANAGER {
            let lost = self.forward.sent_to(app, Some(from));
            self.outbox.push((from, AppMsg::DownSeen { app, lost }));
        }
    }

    /// Whether an app is known dead here.
    pub fn is_dead(&self, app: AppId) -> bool {
        self.dead.contains(&app)
    }

    /// Forgets everything the dead app held here: ghosts of its reals, and
    /// it as a holder of ghosts of reals here.
    fn purge(&mut self, app: AppId) {
        let ghosts: Vec<EntityId> = self
            .entries
            .iter()
            .filter(|r| r.ghost().is_some_and(|(a, _)| a == app))
            .map(|r| r.id)
            .collect();
        let dropped = ghosts.len();
        for e in ghosts {
            self.remove_real(e);
        }
        for r in &mut self.entries {
            r.haunts.retain(|a| *a != app);
        }
        // Reals that went from here to the dead app may have ghosts
        // elsewhere still pointing here. Every cell drops its ghost of them
        // as of the version they went with: a real that moved on, or a
        // restored one, is newer and unaffected.
        let sent = self.forward.sent_to(app, None);
        let mut others: Vec<AppId> = self
            .cells
            .iter()
            .map(|c| c.app)
            .filter(|a| *a != self.cfg.app && !self.dead.contains(a))
            .collect();
        others.sort_unstable();
        others.dedup();
        for (entity, version) in &sent {
            let stamp = (*version, u32::MAX);
            self.ghost_delete(*entity, stamp);
            for other in &others {
                self.outbox.push((
                    *other,
                    AppMsg::GhostDelete {
                        entity: *entity,
                        stamp,
                    },
                ));
            }
        }
        tracing::warn!(%app, ghosts = dropped, handed = sent.len(), "cellapp declared dead; its ghosts dropped");
    }
}
