//! What a cell reports to a manager that restarted (design §1: the manager
//! is rebuilt from the apps): the newest layout it holds, the highest
//! entity id it holds or may hand out, the apps it knows (the cellapps of
//! its layout, the baseapps of its reals) and those it knows are dead. The
//! cell simulates on while the manager is away; only its reports to the
//! manager go nowhere.

use std::collections::BTreeSet;
use tessera::proto::app::{Registration, Rejoin};
use tessera::AppId;

use super::Cell;

impl Cell {
    /// The report that goes with this cellapp's [`Registration`] when it
    /// dials a manager it lost. `retiring`: it had asked to leave.
    pub fn rejoin(&self, registration: Registration, retiring: bool) -> Rejoin {
        let held = self.entries.iter().map(|r| r.id.0 + 1).max().unwrap_or(0);
        // The cellapps of the layout, and the baseapps of its reals: a
        // lone baseapp that died while the manager was away has no peer
        // to report it, and its reals wait for its death to be declared.
        let members: BTreeSet<AppId> = self
            .cells
            .iter()
            .map(|c| c.app)
            .chain(self.entries.iter().filter_map(|r| r.base))
            .filter(|a| *a != self.cfg.app && !self.dead.contains(a))
            .collect();
        Rejoin {
            app: self.cfg.app,
            registration,
            layout: self.layout.clone(),
            ids_end: self.ids.end().max(held),
            members: members.into_iter().collect(),
            dead: self.dead.iter().copied().collect(),
            retiring: retiring || self.retired,
        }
    }

    /// Back in the cluster: a request for ids that went to the lost
    /// manager is made again when the pool runs low.
    pub fn rejoined(&mut self) {
        self.ids.request_lost();
    }
}
