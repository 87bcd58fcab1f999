//! Sessions: who may enter the world through this baseapp, and how a client
//! gets back into its entity after its connection is lost or its baseapp
//! dies.
//!
//! A ticket admits a client once: the manager gets one after checking a
//! password ([`Admit::Account`]) or after the client presented its session
//! token ([`Admit::Entity`]). Each welcome comes with a fresh session token
//! (`ServerMsg::Session`); the base keeps only its hash, which travels with
//! the base's copy, so the baseapp that restores a dead baseapp's base
//! knows it too. A token resumes only a session whose client is away, and
//! at most [`BaseConfig::resume_grace`] after it left; the token before the
//! newest stays good only until the client speaks on its new connection.
//!
//! An entity whose client is gone waits [`BaseConfig::resume_grace`] for it
//! to come back, still in the world, then logs out and is saved. A client
//! that comes back gets a new welcome and its entity's witness starts over
//! ([`EntityMsg::Attach`]): everything in range is sent again.
//!
//! [`BaseConfig::resume_grace`]: super::BaseConfig::resume_grace

use rand::Rng;
use tessera::proto::app::{AppMsg, EntityMsg};
use tessera::proto::client::ServerMsg;
use tessera::proto::{Ticket, TokenHash};
use tessera::{EntityId, Time, MANAGER};

use super::{Bases, Client, ClientId, Closing, Output, Phase, Proxy, Refusal};

/// What a ticket lets in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Admit {
    /// The player of an account (after its password was checked).
    Account(i64),
    /// The client of an entity here (after its session token was checked).
    Entity(EntityId),
}

impl Bases {
    /// A fresh unguessable ticket or token.
    pub(super) fn new_ticket(&mut self) -> Ticket {
        let mut bytes = [0u8; 16];
        self.rng.fill_bytes(&mut bytes);
        Ticket(bytes)
    }

    /// Issues a ticket for the manager to hand to a client.
    pub(super) fn issue(&mut self, now: Time, req: u64, admit: Admit) {
        let ticket = self.new_ticket();
        self.tickets
            .insert(ticket, (admit, now.plus(self.cfg.ticket_ttl)));
        self.out
            .push(Output::App(MANAGER, AppMsg::TicketIssued { req, ticket }));
    }

    /// The manager asks who holds a session: a ticket if this baseapp holds
    /// the entity, its client is away, and the token is its own; a no
    /// otherwise. A connected client is not taken over (a stolen token
    /// cannot kick a player out): its own resume waits until its lost
    /// connection has timed out. A base still claiming its real says no
    /// until the real has answered.
    pub(super) fn find_session(&mut self, now: Time, req: u64, entity: EntityId, token: TokenHash) {
        let ours = self.bases.get(&entity).is_some_and(|b| {
            (b.token == token || b.prev_token == Some(token))
                && matches!(b.client, Client::Away { .. })
                && !b.claiming()
                && !b.leaving()
        });
        if ours {
            self.issue(now, req, Admit::Entity(entity));
        } else {
            self.out
                .push(Output::App(MANAGER, AppMsg::NoSession { req }));
        }
    }

    /// The manager asks where an account's entity is: a ticket if here,
    /// even while it is being restored (the hello is then refused and the
    /// player tries again), so that no other baseapp loads a second one.
    pub(super) fn find_player(&mut self, now: Time, req: u64, account: i64) {
        let here = self
            .online
            .get(&account)
            .and_then(|e| self.bases.get(e))
            .is_some_and(|b| !b.leaving());
        if here {
            self.issue(now, req, Admit::Account(account));
        } else {
            self.out
                .push(Output::App(MANAGER, AppMsg::NoSession { req }));
        }
    }

    /// A client comes (back) to an entity that is already in the world.
    pub(super) fn attach(&mut self, client: ClientId, e: EntityId, _now: Time) {
        let Some(b) = self.bases.get(&e).filter(|b| !b.leaving()) else {
            return self.refuse(client, Refusal::SessionEnded);
        };
        let Some(ty) = self.ty(b.ty) else {
            return self.refuse(client, Refusal::UnknownType);
        };
        let (Some(account), old) = (b.account, b.client.id()) else {
            return self.refuse(client, Refusal::NoPlayer);
        };
        let welcome = self.welcome(e, ty, b.pos, b.yaw, &b.props);
        // A connection the client gave up on gives way to the new one (it
        // was away when the ticket was issued; it may have come back
        // since on another ticket).
        if let Some(old) = old {
            self.proxies.remove(&old);
            self.close(old, Closing::ResumedElsewhere);
        }
        let token = self.new_ticket();
        let Some(b) = self.bases.get_mut(&e) else {
            return;
        };
        b.client = Client::Connected(client);
        // The old token stays good (only it) until the client speaks on
        // this connection: the welcome carrying the new one may be lost.
        b.prev_token = Some(b.token);
        b.token = TokenHash::of(&token);
        let out_seq = b.channel.attach();
        self.proxies.insert(
            client,
            Proxy {
                account,
                phase: Phase::Playing(e),
            },
        );
        tracing::info!(entity = %e, client, "client resumed its session");
        self.send(client, &welcome);
        self.send(client, &ServerMsg::Session { token });
        self.send_on_channel(e, EntityMsg::Attach { out_seq });
        // The new token goes to the copy at once: if this baseapp dies
        // next, the client resumes with it.
        self.back_up(e);
    }

    /// Entities whose client did not come back in time log out.
    pub(super) fn expire_detached(&mut self, now: Time) {
        let grace = self.cfg.resume_grace;
        let late: Vec<EntityId> = self
            .bases
            .iter()
            .filter(|(_, b)| {
                !b.leaving()
                    && matches!(b.client, Client::Away { since } if now.since(since) >= grace)
            })
            .map(|(e, _)| *e)
            .collect();
        for e in late {
            if self.bases.get(&e).is_some_and(|b| b.claiming()) {
                // Never accepted by its real: not this baseapp's to save.
                self.not_rebased(e);
            } else {
                self.leave(e);
            }
        }
    }
}
