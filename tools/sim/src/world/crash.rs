//! Faults a simulated world suffers: a cellapp or baseapp killed as
//! `kill -9` would, the manager killed and started again later (rebuilt
//! from what the apps report), and the connection between two live apps
//! cut mid-way. Only the world does anything here; how each core notices
//! and recovers is its own code, the same its driver runs.

use tessera::{AppId, Time};
use tessera_manager::manager::Manager;

use super::{manager_addr, Proc, SimWorld};
use crate::net::{Node, Payload};

impl SimWorld {
    /// Kills a cellapp or baseapp now, as `kill -9` would: its core and
    /// everything in it are gone, whatever is still on its way to it is
    /// lost, and its peers notice when their connections time out. Returns
    /// false if there was no such app.
    pub fn crash(&mut self, app: AppId) -> bool {
        let Some(pid) = self.apps.get(&app).copied() else {
            return false;
        };
        if !self.procs.contains_key(&pid) {
            return false;
        }
        self.remove(pid);
        let node = Node::Proc(pid);
        self.net.cut(
            self.now,
            |ends| ends.iter().any(|(n, _)| *n == node),
            "peer went silent",
        );
        self.net.purge(|d| d.to == node);
        // Its clients notice when their connections time out.
        let homed: Vec<u64> = self
            .home
            .iter()
            .filter(|(_, b)| **b == pid)
            .map(|(c, _)| *c)
            .collect();
        let at = self.now + self.net.conditions().client_timeout_us;
        for c in homed {
            self.home.remove(&c);
            self.net.at(at, node, Node::Client(c), Payload::Lost);
        }
        true
    }

    /// Kills the manager now, as `kill -9` would, and starts a new one
    /// `down_us` later that waits for the apps to come back. Whatever was
    /// on its way to or from the dead manager is lost with its links; the
    /// apps notice after their link timeout and dial until it is back.
    pub fn crash_manager(&mut self, down_us: u64) {
        let up = self.now + down_us;
        let policy = self.make_policy().ok();
        self.manager = Manager::new(Time(up), &self.defs, self.space.clone(), self.cfg.manager);
        if let Some(p) = policy {
            self.manager.set_policy(p);
        }
        self.manager_up_at = up;
        self.net.cut(
            self.now,
            |ends| ends.iter().any(|(n, _)| *n == Node::Manager),
            "manager went silent",
        );
        self.net
            .purge(|d| (d.to == Node::Manager || d.from == Node::Manager) && d.from != d.to);
        self.wake.remove(&Node::Manager);
        self.reschedule(Node::Manager);
    }

    /// Cuts the connections between two live apps, losing what was in
    /// flight on them; each side notices after its link timeout, and the
    /// one that dials dials again. Returns how many connection ends were
    /// cut (0 if they had none).
    pub fn drop_link(&mut self, a: AppId, b: AppId) -> usize {
        let (Some(&pa), Some(&pb)) = (self.apps.get(&a), self.apps.get(&b)) else {
            return 0;
        };
        let (na, nb) = (Node::Proc(pa), Node::Proc(pb));
        let cut = self.net.cut(
            self.now,
            |ends| {
                let (x, y) = (ends[0].0, ends[1].0);
                (x == na && y == nb) || (x == nb && y == na)
            },
            "link dropped",
        );
        if cut > 0 {
            self.stats.links_cut += 1;
        }
        cut
    }

    /// Apps the manager refused back since the start.
    pub fn refused(&self) -> &[AppId] {
        &self.refused
    }

    /// The newest layout any running app holds.
    pub fn newest_layout(&self) -> Option<tessera::layout::Layout> {
        self.procs
            .values()
            .filter_map(|p| match p {
                Proc::Cell(c) => c.cell().and_then(|c| c.layout()),
                Proc::Base(b) => b.bases().and_then(|b| b.layout()),
            })
            .max_by_key(|l| l.epoch)
            .cloned()
    }

    /// Whether the manager is up and every running app is linked to it.
    pub fn all_with_manager(&self) -> bool {
        self.now >= self.manager_up_at
            && self.procs.values().all(|p| match p {
                Proc::Cell(c) => c.has_manager(),
                Proc::Base(b) => b.has_manager(),
            })
    }

    /// Where the manager listens (the address the apps dial).
    pub fn manager_addr(&self) -> std::net::SocketAddr {
        manager_addr()
    }
}
