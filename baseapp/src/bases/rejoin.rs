//! What a baseapp reports to a manager that restarted (design §1: the
//! manager is rebuilt from the apps): the newest layout it holds, the
//! highest entity id among its bases and the copies it holds or that it
//! may hand out, the live apps it knows and those it knows are dead.
//! Clients keep playing while the manager is away; only logins and resumes
//! wait for it.

use std::collections::BTreeSet;
use tessera::proto::app::{Registration, Rejoin};
use tessera::AppId;

use super::Bases;

impl Bases {
    /// The report that goes with this baseapp's [`Registration`] when it
    /// dials a manager it lost.
    pub fn rejoin(&self, registration: Registration) -> Rejoin {
        let held = self
            .bases
            .keys()
            .chain(self.copies.keys())
            .map(|e| e.0 + 1)
            .max()
            .unwrap_or(0);
        let members: BTreeSet<AppId> = self
            .cells
            .iter()
            .map(|c| c.app)
            .chain(self.peers.keys().copied())
            .filter(|a| *a != self.app)
            .collect();
        Rejoin {
            app: self.app,
            registration,
            layout: self.layout.clone(),
            ids_end: self.ids.end().max(held),
            members: members.into_iter().collect(),
            dead: self.dead.iter().copied().collect(),
            retiring: false,
        }
    }

    /// Back in the cluster: a request for ids that went to the lost
    /// manager is made again when the pool runs low.
    pub fn rejoined(&mut self) {
        self.ids.request_lost();
    }
}
