//! Processes of a simulated world killed as `kill -9` would: a cellapp or
//! baseapp whose core vanishes, or the manager, started again later and
//! rebuilt from what the apps report; and the apps' side of that, dialling
//! a lost manager until it takes them back or refuses them.

use rand::RngExt;
use tessera::proto::app::AppMsg;
use tessera::{AppId, Time};
use tessera_manager::cluster::Manager;

use super::{SimWorld, CLIENT_TIMEOUT_US, LINK_TIMEOUT_US, REDIAL_US, REJOIN_WINDOW_US};
use crate::sim::net::{Delivery, Node, Payload};

impl SimWorld {
    /// Kills a cellapp or baseapp now, as `kill -9` would: its core and
    /// everything in it are gone, and whatever is still on its way to it is
    /// lost. Returns false if there was no such app.
    pub fn crash(&mut self, app: AppId) -> bool {
        let gone = self.cells.remove(&app).is_some() || self.bases.remove(&app).is_some();
        if gone {
            self.dead.insert(app);
        }
        // Its clients notice when their connections time out.
        let homed: Vec<u64> = self
            .home
            .iter()
            .filter(|(_, b)| **b == app)
            .map(|(c, _)| *c)
            .collect();
        for c in homed {
            self.home.remove(&c);
            let at = self.now + CLIENT_TIMEOUT_US;
            self.net.send(
                &mut self.rng,
                at,
                Node::App(app),
                Node::Client(c),
                Payload::Lost,
            );
        }
        gone
    }

    /// Kills the manager now, as `kill -9` would, and starts a new one
    /// `down_us` later that waits for the apps to come back. Whatever was
    /// on its way to or from the dead manager is lost with its links; the
    /// apps notice after their link timeout and dial until it is back.
    pub fn crash_manager(&mut self, down_us: u64) {
        let up = self.now + down_us;
        self.manager = Manager::new(&self.defs, self.manager.space().clone());
        if let Some(p) = tessera_manager::balance::policy(self.cfg.policy) {
            self.manager.set_policy(p);
        }
        self.manager
            .await_rejoins(Time(up), std::time::Duration::from_micros(REJOIN_WINDOW_US));
        self.manager_up_at = up;
        self.net
            .purge(|d| (d.to == Node::Manager || d.from == Node::Manager) && d.from != d.to);
        let apps: Vec<AppId> = self
            .cells
            .keys()
            .chain(self.bases.keys())
            .copied()
            .collect();
        for app in apps {
            let at = (self.now + LINK_TIMEOUT_US).max(up) + self.rng.random_range(0..REDIAL_US);
            self.net.send(
                &mut self.rng,
                at,
                Node::App(app),
                Node::App(app),
                Payload::Redial,
            );
        }
    }

    /// Apps the manager refused back since the start.
    pub fn refused(&self) -> &[AppId] {
        &self.refused
    }

    /// The newest layout any running app holds.
    pub fn newest_layout(&self) -> Option<tessera::layout::Layout> {
        self.cells
            .values()
            .filter_map(|c| c.layout())
            .chain(self.bases.values().filter_map(|b| b.layout()))
            .max_by_key(|l| l.epoch)
            .cloned()
    }

    /// An app's side of its membership, as its driver keeps it: dialling a
    /// manager it lost with its report, getting back in, or stopping when
    /// refused. Returns the delivery if it is for the core.
    pub(super) fn membership(&mut self, app: AppId, d: Delivery) -> Option<Delivery> {
        match d.payload {
            Payload::Redial if d.at < self.manager_up_at => {
                let at = d.at + REDIAL_US;
                self.net
                    .send(&mut self.rng, at, d.to, d.to, Payload::Redial);
            }
            Payload::Redial => {
                let reg = self.regs.get(&app)?.clone();
                let report = match (self.cells.get(&app), self.bases.get(&app)) {
                    (Some(cell), _) => cell.rejoin(reg, false),
                    (None, Some(base)) => base.rejoin(reg),
                    (None, None) => return None,
                };
                let msg = Payload::App(AppMsg::Rejoin(Box::new(report)));
                self.net.send(&mut self.rng, d.at, d.to, Node::Manager, msg);
            }
            Payload::App(AppMsg::Registered { .. }) => {
                if let Some(cell) = self.cells.get_mut(&app) {
                    cell.rejoined();
                }
                if let Some(base) = self.bases.get_mut(&app) {
                    base.rejoined();
                }
            }
            Payload::App(AppMsg::RegisterRefused { .. }) => {
                self.refused.push(app);
                self.crash(app);
            }
            _ => return Some(d),
        }
        None
    }
}
