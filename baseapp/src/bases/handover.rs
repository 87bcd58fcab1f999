//! Retiring a baseapp without disconnecting anyone: what SIGTERM does, one
//! process at a time in a rolling restart.
//!
//! The retiring baseapp sends a final copy of every base whose real is
//! placed to the baseapp that holds its copy (the same rendezvous choice
//! as the periodic copies), then [`AppMsg::HandOver`] to every other
//! baseapp on the same ordered links, so each receives it after the copies.
//! It drops those bases and closes their clients with `MOVED`, which the
//! client library resumes: the manager asks every baseapp for the session,
//! and the one that took the base answers.
//!
//! A baseapp told `HandOver` brings back the bases it holds copies of from
//! the retiring one, exactly as for a baseapp that died ([`Bases::peer_down`]),
//! but from copies that are current: each claims its real with
//! [`AppMsg::Rebase`], and the real takes the state it has now. It answers
//! [`AppMsg::HandOverSeen`]; once every other baseapp has, the retiring one
//! has nothing left and leaves the cluster.
//!
//! The hand-over waits while any base here is being claimed (restored from
//! a copy, its real not yet answering) or waiting for a cell to place its
//! real in: such a base has nothing current to hand on. A base still
//! loading or leaving ends here as in a stop, saved, and its client must
//! log in again. If the wait outlasts [`crate::baseapp::BaseappConfig::retire_wait`],
//! every base is saved instead and the clients must log in again. Messages on a base's channel that its real had not applied when
//! the base moved are dropped (the new base's channel starts over), as when
//! a baseapp dies.

use tessera::proto::app::AppMsg;
use tessera::{AppId, EntityId, Time};

use super::{Bases, ClientOut, Closing, Half, Output, StoreOp};

impl Bases {
    /// Begins a retirement: hands every base it can to the other
    /// baseapps, once none is being claimed. Returns `false`, changing
    /// nothing, when there is no other baseapp to take them (a stop saves
    /// them instead).
    pub fn hand_over(&mut self, now: Time) -> bool {
        if self.stopping {
            return false;
        }
        if self.peers.is_empty() {
            tracing::warn!("retiring with no other baseapp to take the bases: saving them instead");
            return false;
        }
        // No new player from now on.
        self.stopping = true;
        self.handing = Handing::Waiting;
        self.try_hand_over(now);
        true
    }

    /// Hands the bases over if the retirement is waiting and every base
    /// has a real to hand on: none is being claimed (restored here, its
    /// real not yet answering) or waiting to be placed in a cell. Either
    /// would otherwise end here, its client disconnected.
    pub(super) fn try_hand_over(&mut self, now: Time) {
        let unsettled = |b: &super::Base| b.claiming() || b.half == Half::Unplaced;
        if self.handing != Handing::Waiting || self.bases.values().any(unsettled) {
            return;
        }
        self.handing = Handing::Done;
        let named = self.named_rows(true);
        if !named.is_empty() {
            self.out.push(Output::Store(StoreOp::Save(named)));
        }
        let all: Vec<EntityId> = self.bases.keys().copied().collect();
        let mut moved = 0;
        for e in all {
            let placed = self
                .bases
                .get(&e)
                .is_some_and(|b| matches!(b.half, Half::Placed { .. }));
            if !placed {
                self.end_here(e);
                continue;
            }
            // The final copy, then the base is its holder's.
            self.back_up(e);
            self.timers.remove(&e);
            let Some(base) = self.bases.remove(&e) else {
                continue;
            };
            if let Some(account) = base.account {
                if self.online.get(&account) == Some(&e) {
                    self.online.remove(&account);
                }
            }
            if let Some(client) = base.client.id() {
                self.proxies.remove(&client);
                self.out
                    .push(Output::Client(client, ClientOut::Close(Closing::Moved)));
            }
            moved += 1;
        }
        self.awaiting = self.peers.keys().copied().collect();
        for peer in self.awaiting.clone() {
            self.out.push(Output::App(peer, AppMsg::HandOver));
        }
        tracing::info!(
            bases = moved,
            baseapps = self.awaiting.len(),
            "retiring: every base handed to the other baseapps"
        );
        self.now = now;
    }

    /// Whether this baseapp's bases went to other baseapps.
    pub fn handed_over(&self) -> bool {
        self.handing == Handing::Done
    }

    /// Another baseapp is retiring: the bases whose copies are here are
    /// this baseapp's now.
    pub(super) fn take_over(&mut self, now: Time, from: AppId) {
        self.restore_copies_of(now, from);
        self.out.push(Output::App(from, AppMsg::HandOverSeen));
    }

    /// A baseapp has taken the bases it held copies of (or is gone).
    pub(super) fn hand_over_seen(&mut self, from: AppId) {
        self.awaiting.remove(&from);
    }
}

/// Where a retirement by hand-over stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Handing {
    /// Not retiring.
    #[default]
    No,
    /// Retiring: waiting for the bases being claimed here to settle.
    Waiting,
    /// The bases went to their holders.
    Done,
}
