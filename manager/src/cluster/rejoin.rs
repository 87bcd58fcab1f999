//! A manager that restarts: the apps kept simulating while it was down, and
//! they are the truth. It rebuilds the cluster from what they report.
//!
//! - A manager that may be a restart (a real process always may) waits a
//!   window for apps to come back with [`AppMsg::Rejoin`]: each keeps its
//!   id and reports the newest layout it holds, the highest entity id it
//!   holds or may hand out, the members it knows and the apps it knows are
//!   dead. Fresh registrations wait until the window closes; logins are
//!   refused ("try again"); the layout does not change.
//! - When the window closes the manager adopts the newest layout reported,
//!   continues entity ids past every id reported and app ids past every id
//!   seen, and declares dead every member somebody reported that did not
//!   come back (its cells go to their siblings, its entities are restored
//!   as for any death). An app another reported dead is dropped: it was
//!   given up before the restart and its entities live elsewhere.
//! - A `Rejoin` the manager cannot take back is refused, and the app stops:
//!   this manager declared it dead, or still had it as a member (its link
//!   dropped: the manager treats that as a death), or it came back after the
//!   window from nowhere (it is declared dead now, so what it held is
//!   restored by the others).

use std::collections::BTreeSet;
use std::time::Duration;
use tessera::layout::Rect;
use tessera::proto::app::{AppMsg, CertId, Rejoin, Role};
use tessera::{AppId, IdBlock, Time};

use super::{AdmitError, AppInfo, Cluster, Output};

/// App ids a `Rejoin` may name: far more than any cluster has, with room
/// to count on.
const MAX_APP: u32 = 1 << 24;
/// Entity ids a `Rejoin` may claim to hold: room for 2^42 more blocks.
const MAX_ENTITY_ID: u64 = 1 << 62;

/// What the manager learns while apps come back.
#[derive(Debug)]
pub(super) struct Rejoining {
    /// When the window closes.
    until: Time,
    /// The highest entity-id end reported.
    ids_end: u64,
    /// Every app somebody reported as a member (themselves included).
    members: BTreeSet<AppId>,
    /// Every app somebody reported dead.
    dead: BTreeSet<AppId>,
    /// Apps that asked for ids meanwhile.
    want_ids: BTreeSet<AppId>,
    /// Cellapps that had asked to retire.
    retiring: BTreeSet<AppId>,
    /// Apps that came back and then said goodbye.
    left: BTreeSet<AppId>,
}

/// What becomes of an app that dialled the manager.
#[derive(Debug, PartialEq)]
pub enum Admission {
    /// A member: its link starts.
    Member(AppId),
    /// A fresh app while apps may still come back: ask again after the next
    /// [`Cluster::tick`].
    Wait,
    /// Refused, and why; the link closes.
    Refused(AdmitError),
}

impl Cluster {
    /// This manager may be a restart: for `window` from `now`, apps that
    /// were members come back and fresh ones wait.
    pub fn await_rejoins(&mut self, now: Time, window: Duration) {
        self.rejoining = Some(Rejoining {
            until: now.plus(window),
            ids_end: 0,
            members: BTreeSet::new(),
            dead: BTreeSet::new(),
            want_ids: BTreeSet::new(),
            retiring: BTreeSet::new(),
            left: BTreeSet::new(),
        });
    }

    /// True while the manager waits for apps to come back.
    pub fn is_rejoining(&self) -> bool {
        self.rejoining.is_some()
    }

    /// An app dialled with its first message: a fresh [`AppMsg::Register`]
    /// or an [`AppMsg::Rejoin`].
    /// `cert` is the certificate its connection presented: the app's
    /// from now on, and for a `Rejoin` of a live member, the one it must
    /// have registered with.
    pub fn admit(&mut self, now: Time, first: &AppMsg, cert: CertId) -> Admission {
        let result = match first {
            AppMsg::Register(_) if self.rejoining.is_some() => return Admission::Wait,
            AppMsg::Register(_) => self.register(now, first, cert),
            AppMsg::Rejoin(r) => self.rejoin(now, r, cert),
            _ => Err(AdmitError::NotAJoin),
        };
        match result {
            Ok(app) => Admission::Member(app),
            Err(reason) => Admission::Refused(reason),
        }
    }

    fn rejoin(&mut self, now: Time, r: &Rejoin, cert: CertId) -> Result<AppId, AdmitError> {
        self.check(&r.registration)?;
        self.check_report(r)?;
        let app = r.app;
        if let Some(member) = self.apps.get(&app) {
            if member.cert != cert {
                // Somebody else naming a member: it changes nothing.
                return Err(AdmitError::NotItsCertificate {
                    app,
                    listed: member.cert,
                    presented: cert,
                });
            }
        }
        if self.apps.contains_key(&app) && self.rejoining.is_none() {
            // The app lost its link to a manager that is still here.
            self.app_gone(app, "its link dropped and it dialled again");
            self.out.push(Output::Drop(app));
            return Err(AdmitError::LostLink(app));
        }
        if self.dead.contains(&app) {
            return Err(AdmitError::DeclaredDead(app));
        }
        let Some(w) = self.rejoining.as_mut() else {
            // Nobody reported it in time: dead now, so what it held is
            // restored by the others.
            self.announce_down(app);
            return Err(AdmitError::TooLate(app));
        };
        w.ids_end = w.ids_end.max(r.ids_end);
        w.members.insert(app);
        w.members.extend(r.members.iter().copied());
        w.dead.extend(r.dead.iter().copied());
        if r.retiring {
            w.retiring.insert(app);
        }
        if let Some(layout) = &r.layout {
            if self.layout.as_ref().is_none_or(|l| layout.epoch > l.epoch) {
                self.layout = Some(layout.clone());
            }
        }
        let reg = &r.registration;
        // A second dial while the window is open (the app took its first
        // for failed) replaces the first: the driver closes the old link.
        self.apps.insert(app, AppInfo::new(app, reg, cert, now));
        self.out.push(Output::App(
            app,
            AppMsg::Registered {
                app,
                ids: IdBlock::EMPTY,
                space: self.space.clone(),
            },
        ));
        tracing::info!(%app, role = %reg.role, "app came back");
        Ok(app)
    }

    /// What a `Rejoin` reports must be usable: ids the manager can count
    /// past, and a layout of this space (decoding made sure it is a sound tree).
    fn check_report(&self, r: &Rejoin) -> Result<(), AdmitError> {
        let app = r.app;
        if app == tessera::MANAGER {
            return Err(AdmitError::ManagersId);
        }
        let ids = r.members.iter().chain(&r.dead).chain([&app]);
        if ids.clone().any(|a| a.0 >= MAX_APP) || r.ids_end > MAX_ENTITY_ID {
            return Err(AdmitError::IdsOutOfRange {
                app,
                max_app: MAX_APP,
                max_entity: MAX_ENTITY_ID,
            });
        }
        // Decoding checked the layout's tree (`Layout::validate`).
        if let Some(layout) = &r.layout {
            if layout.bounds != Rect::from_bounds(self.space.bounds) {
                return Err(AdmitError::OtherBounds {
                    app,
                    theirs: layout.bounds,
                    ours: self.space.bounds,
                });
            }
        }
        Ok(())
    }

    /// A member left while apps are coming back; true if the window's end
    /// deals with it (a dead one is among the missing then).
    pub(super) fn left_while_rejoining(&mut self, app: AppId, died: bool) -> bool {
        let Some(w) = self.rejoining.as_mut() else {
            return false;
        };
        if !died {
            w.left.insert(app);
        }
        true
    }

    /// A message that waits for the window to close; true if it was kept.
    pub(super) fn hold_while_rejoining(&mut self, from: AppId, msg: &AppMsg) -> bool {
        let Some(w) = self.rejoining.as_mut() else {
            return false;
        };
        match msg {
            AppMsg::NeedIds => w.want_ids.insert(from),
            AppMsg::Retire => w.retiring.insert(from),
            _ => return false,
        };
        true
    }

    /// Closes the window once it is over: adopts what the apps reported
    /// and declares dead whoever did not come back.
    pub(super) fn settle(&mut self, now: Time) {
        if self.rejoining.as_ref().is_none_or(|w| now < w.until) {
            return;
        }
        let Some(w) = self.rejoining.take() else {
            return;
        };
        self.next_id = self.next_id.max(w.ids_end);
        self.dead.extend(w.dead.iter().copied());
        let in_layout: BTreeSet<AppId> = self
            .layout
            .as_ref()
            .map(|l| l.cells().iter().map(|c| c.app).collect())
            .unwrap_or_default();
        let seen = self
            .apps
            .keys()
            .chain(&w.members)
            .chain(&self.dead)
            .chain(&in_layout)
            .map(|a| a.0)
            .max()
            .unwrap_or(0);
        // Below MAX_APP (checked on every Rejoin): no overflow.
        self.next_app = self.next_app.max(seen.saturating_add(1));
        if let Some(l) = &self.layout {
            self.epoch = self.epoch.max(l.epoch);
        }
        // Given up before the restart: its entities live elsewhere.
        let zombies: Vec<AppId> = self
            .apps
            .keys()
            .filter(|a| self.dead.contains(a))
            .copied()
            .collect();
        for app in &zombies {
            tracing::warn!(%app, "an app reported dead by others came back; dropped");
            self.apps.remove(app);
            self.out.push(Output::Drop(*app));
        }
        let missing: Vec<AppId> = w
            .members
            .iter()
            .chain(&in_layout)
            .filter(|a| !self.apps.contains_key(a) && !self.dead.contains(a) && !w.left.contains(a))
            .copied()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        tracing::info!(
            members = self.apps.len(),
            missing = missing.len(),
            epoch = self.epoch,
            next_id = self.next_id,
            "the apps have reported back; the cluster is rebuilt"
        );
        // Every app that is gone: announced again even if somebody knew, as
        // not everybody may have heard before the old manager died.
        let gone: BTreeSet<AppId> = zombies
            .into_iter()
            .chain(missing)
            .chain(w.dead.iter().copied())
            .collect();
        // Cells of apps that are gone go to their siblings, as do those of
        // cellapps that came back and then left.
        for app in &gone {
            if in_layout.contains(app) {
                tracing::warn!(%app, "cellapp did not come back; its cell goes to its sibling");
                self.cellapp_left(*app);
            }
        }
        for app in &w.left {
            if in_layout.contains(app) && !gone.contains(app) {
                self.cellapp_left(*app);
            }
        }
        // A cellapp with no cell (it joined as the old manager died) gets
        // one, unless it is leaving.
        let homeless: Vec<AppId> = self
            .apps
            .iter()
            .filter(|(a, i)| i.kind == Role::Cellapp && !w.retiring.contains(a))
            .map(|(a, _)| *a)
            .collect();
        for app in homeless {
            let has_cell = self
                .layout
                .as_ref()
                .is_some_and(|l| l.cells().iter().any(|c| c.app == app));
            if !has_cell {
                self.give_cell(app, true);
            }
        }
        self.layout_changed();
        self.tell_baseapps(Role::Cellapp);
        self.tell_baseapps(Role::Baseapp);
        for app in gone {
            self.announce_down(app);
        }
        for app in w.want_ids {
            if self.apps.contains_key(&app) {
                let block = self.grant_ids();
                self.out.push(Output::App(app, AppMsg::Ids(block)));
            }
        }
        for app in w.retiring {
            if !self.apps.contains_key(&app) {
                continue;
            }
            if let Err(e) = self.retire(now, app) {
                // Its cell is already gone: it may leave.
                tracing::info!(%app, reason = %e, "retiring cellapp has no cell; it may go");
                self.out.push(Output::App(app, AppMsg::Retired));
            }
        }
    }
}

#[cfg(test)]
mod tests;
