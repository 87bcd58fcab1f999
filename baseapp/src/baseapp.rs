//! The whole baseapp as one state machine with no I/O: its membership of
//! the cluster, its links to the cellapps and the other baseapps, its bases
//! and proxies ([`Bases`]), and every timer they need (the bases' tick,
//! heartbeats, redials, acknowledgements, the deadline of a clean stop).
//! Its driver and the simulator run exactly this: they feed it connection
//! events, client input, storage answers and the time, ask when to wake it
//! ([`Baseapp::poll_timeout`]), and carry out what it leaves ([`Output`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tessera::link::{ConnEvent, ConnId, LinkConfig, LinkEvent, Links, Transmit};
pub use tessera::membership::Ended;
use tessera::membership::{Membership, MembershipConfig, MembershipEvent};
use tessera::proto::app::{AppMsg, Registration, Role, SpaceInfo};
use tessera::proto::Ticket;
use tessera::{AppId, Definitions, IdBlock, Time, MANAGER};

use crate::bases::{
    self, BaseConfig, Bases, ClientId, ClientInput, ClientOut, Refusal, StoreDone, StoreOp,
    Violation,
};

/// How to run a baseapp core.
#[derive(Clone, Debug)]
pub struct BaseappConfig {
    /// The manager's internal address.
    pub manager: SocketAddr,
    /// What the baseapp registers as (its addresses).
    pub registration: Registration,
    /// Entity definitions.
    pub defs: Arc<Definitions>,
    /// The bases' settings.
    pub bases: BaseConfig,
    /// Seeds tickets and session tokens; drivers pass OS entropy.
    pub seed: [u8; 32],
    /// Timing of the manager link.
    pub membership: MembershipConfig,
    /// Timing and bounds of the app links.
    pub links: LinkConfig,
    /// How long a clean stop waits for the cells to send their entities'
    /// final state before it saves the last backups instead.
    pub stop_wait: Duration,
    /// How long a retiring baseapp waits for its bases to settle and the
    /// other baseapps to take them before it saves what is left instead.
    pub retire_wait: Duration,
}

impl BaseappConfig {
    /// The defaults for a baseapp registering as `registration` with the
    /// manager at `manager`.
    pub fn new(
        manager: SocketAddr,
        registration: Registration,
        defs: Arc<Definitions>,
        seed: [u8; 32],
    ) -> BaseappConfig {
        BaseappConfig {
            manager,
            registration,
            defs,
            bases: BaseConfig::default(),
            seed,
            membership: MembershipConfig::default(),
            links: LinkConfig::default(),
            stop_wait: Duration::from_secs(5),
            retire_wait: Duration::from_secs(20),
        }
    }
}

/// What the core asks its driver to do.
#[derive(Debug)]
pub enum Output {
    /// Something to do with an app connection.
    Transmit(Transmit),
    /// Something to do with a client connection.
    Client(ClientId, ClientOut),
    /// Use storage.
    Store(StoreOp),
    /// Registered with the manager under this id.
    Joined(AppId),
    /// The baseapp has stopped; nothing more comes from it.
    Ended(Ended),
}

/// A baseapp that has registered.
struct Running {
    app: AppId,
    bases: Bases,
    links: Links,
    next_tick: Time,
    /// A clean stop under way: until when it waits for the cells.
    stopping: Option<Time>,
}

/// The baseapp core.
pub struct Baseapp {
    cfg: BaseappConfig,
    membership: Membership,
    running: Option<Box<Running>>,
    ended: bool,
    /// It retired by handing its bases to other baseapps.
    handed_over: bool,
    out: Vec<Output>,
}

impl Baseapp {
    /// A baseapp that registers with its manager from `now` on.
    pub fn new(now: Time, cfg: BaseappConfig) -> Baseapp {
        Baseapp {
            membership: Membership::new(now, cfg.manager, cfg.registration.clone(), cfg.membership),
            cfg,
            running: None,
            ended: false,
            handed_over: false,
            out: Vec::new(),
        }
    }

    /// Whether it retired by handing its bases to other baseapps (its
    /// clients were told to resume elsewhere).
    pub fn handed_over(&self) -> bool {
        self.handed_over
    }

    /// The settings.
    pub fn config(&self) -> &BaseappConfig {
        &self.cfg
    }

    /// Its id, once registered.
    pub fn app(&self) -> Option<AppId> {
        self.membership.app()
    }

    /// The bases, once registered.
    pub fn bases(&self) -> Option<&Bases> {
        self.running.as_ref().map(|r| &r.bases)
    }

    /// The links to the other apps, once registered.
    pub fn links(&self) -> Option<&Links> {
        self.running.as_ref().map(|r| &r.links)
    }

    /// Whether it has a link to its manager.
    pub fn has_manager(&self) -> bool {
        self.membership.is_up()
    }

    /// Whether it has stopped.
    pub fn is_over(&self) -> bool {
        self.ended
    }

    /// Plants deliberate defects in the app links (tests of the
    /// simulator's checks).
    #[cfg(feature = "faults")]
    pub fn plant(&mut self, faults: tessera::link::LinkFaults) {
        if let Some(r) = &mut self.running {
            r.links.plant(faults);
        }
    }

    /// What happened to an app connection.
    pub fn handle(&mut self, now: Time, conn: ConnId, ev: ConnEvent) {
        if self.membership.owns(conn) {
            if let Some(ev) = self.membership.handle(now, conn, ev) {
                self.on_membership(now, ev);
            }
        } else if let Some(r) = &mut self.running {
            match r.links.handle(now, conn, ev) {
                Some(LinkEvent::Msg(from, msg)) => self.on_msg(now, from, msg),
                Some(LinkEvent::Up(app)) => {
                    tracing::info!(peer = %app, "linked to app");
                    r.bases.link_up(app);
                }
                Some(LinkEvent::Down(app)) => r.bases.link_down(app),
                None => {}
            }
        } else if let ConnEvent::Accepted(..) = ev {
            let refused = Transmit::refuse_unregistered(conn);
            self.out.push(Output::Transmit(refused));
        }
        self.flush(now);
    }

    /// A client connected and said hello.
    pub fn hello(
        &mut self,
        now: Time,
        client: ClientId,
        protocol: u16,
        digest: [u8; 32],
        ticket: Ticket,
    ) {
        match &mut self.running {
            Some(r) => r.bases.hello(client, protocol, digest, ticket, now),
            None => self.out.push(Output::Client(
                client,
                ClientOut::Close(Refusal::NotUp.into()),
            )),
        }
        self.flush(now);
    }

    /// Something from a client that already said hello.
    pub fn client_input(&mut self, now: Time, client: ClientId, input: ClientInput) {
        if let Some(r) = &mut self.running {
            r.bases.client_input(now, client, input);
        }
        self.flush(now);
    }

    /// A client broke the protocol: it loses its connection, nothing else.
    pub fn violation(&mut self, now: Time, client: ClientId, why: Violation) {
        if let Some(r) = &mut self.running {
            r.bases.violation(client, why);
        }
        self.flush(now);
    }

    /// Storage answered.
    pub fn store_done(&mut self, now: Time, done: StoreDone) {
        if let Some(r) = &mut self.running {
            r.bases.store_done(now, done);
        }
        self.flush(now);
    }

    fn on_membership(&mut self, now: Time, ev: MembershipEvent) {
        match ev {
            MembershipEvent::Joined { app, ids, space } => self.joined(now, app, ids, space),
            MembershipEvent::Msg(msg) => self.on_msg(now, MANAGER, msg),
            MembershipEvent::Lost => {}
            MembershipEvent::Rejoined => {
                tracing::info!("back in the cluster with the manager");
                if let Some(r) = &mut self.running {
                    r.bases.rejoined();
                }
            }
            MembershipEvent::Refused(reason) => {
                // Declared dead: its bases are restored from their copies
                // elsewhere, and its clients resume there.
                tracing::error!(%reason, "the manager will not have this baseapp; stopping");
                self.end(Ended::Refused(reason));
            }
        }
    }

    fn joined(&mut self, now: Time, app: AppId, ids: IdBlock, space: SpaceInfo) {
        let bases = Bases::new(
            app,
            self.cfg.defs.clone(),
            self.cfg.bases.clone(),
            space,
            ids,
            self.cfg.seed,
        );
        tracing::info!(%app, "baseapp joined the cluster");
        self.running = Some(Box::new(Running {
            app,
            bases,
            links: Links::new(app, self.cfg.defs.digest, self.cfg.links),
            next_tick: now,
            stopping: None,
        }));
        self.out.push(Output::Joined(app));
    }

    /// A message from the manager or another app, in order.
    fn on_msg(&mut self, now: Time, from: AppId, msg: AppMsg) {
        let Some(r) = &mut self.running else { return };
        if from == MANAGER {
            match &msg {
                // Every cellapp is dialled; of the other baseapps, those
                // with a lower id (the higher id dials).
                AppMsg::Cells(cells) => r.links.listed(now, Role::Cellapp, cells, |_| true),
                AppMsg::Layout { layout, cells }
                    if r.bases.layout().is_none_or(|l| layout.epoch > l.epoch) =>
                {
                    r.links.listed(now, Role::Cellapp, cells, |_| true)
                }
                AppMsg::Baseapps(list) => {
                    let me = r.app;
                    r.links.listed(now, Role::Baseapp, list, |app| app < me)
                }
                AppMsg::AppDown { app } => forget(&mut r.links, *app, "declared dead"),
                _ => {}
            }
        }
        r.bases.handle(now, from, msg);
    }

    /// When the core next needs [`Baseapp::handle_timeout`].
    pub fn poll_timeout(&self) -> Option<Time> {
        let running = self.running.as_ref().map(|r| {
            [Some(r.next_tick), r.links.poll_timeout(), r.stopping]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(r.next_tick)
        });
        [self.membership.poll_timeout(), running]
            .into_iter()
            .flatten()
            .min()
    }

    /// Does what is due at `now`: the bases' tick, heartbeats, dials,
    /// acknowledgements, and the end of a clean stop.
    pub fn handle_timeout(&mut self, now: Time) {
        if let Some(r) = &mut self.running {
            if r.next_tick <= now {
                r.bases.tick(now);
                let tick = self.cfg.bases.tick;
                r.next_tick = r.next_tick.plus(tick);
                if r.next_tick <= now {
                    r.next_tick = now.plus(tick);
                }
            }
            r.links.handle_timeout(now);
            if r.stopping.is_some_and(|t| t <= now) && !r.bases.drained() {
                tracing::warn!("cells did not answer in time; saving the last backups");
                r.bases.force_drain();
            }
        }
        let ev = {
            let (running, registration) = (&self.running, self.membership.registration().clone());
            let report = || match running {
                Some(r) => AppMsg::Rejoin(Box::new(r.bases.rejoin(registration))),
                None => AppMsg::Goodbye,
            };
            let beat =
                || AppMsg::Heartbeat(running.as_ref().map(|r| r.bases.load()).unwrap_or_default());
            self.membership.handle_timeout(now, report, beat)
        };
        if let Some(ev) = ev {
            self.on_membership(now, ev);
        }
        self.flush(now);
    }

    /// Begins a retirement: every base goes to another baseapp and its
    /// client follows ([`Bases::hand_over`]); then the baseapp leaves the
    /// cluster. With no other baseapp to take them, a clean stop.
    pub fn retire(&mut self, now: Time) {
        let handed = match &mut self.running {
            Some(r) if r.stopping.is_none() => {
                let handed = r.bases.hand_over(now);
                if handed {
                    r.stopping = Some(now.plus(self.cfg.retire_wait));
                }
                handed
            }
            _ => false,
        };
        if !handed {
            return self.stop(now);
        }
        self.flush(now);
    }

    /// Begins a clean stop: every entity leaves its cell and is saved
    /// (giving up on cells that do not answer within
    /// [`BaseappConfig::stop_wait`]); then the baseapp leaves the cluster.
    pub fn stop(&mut self, now: Time) {
        match &mut self.running {
            Some(r) => {
                if r.stopping.is_none() {
                    tracing::info!("baseapp stopping: saving every entity");
                    r.stopping = Some(now.plus(self.cfg.stop_wait));
                    r.bases.stop();
                }
            }
            None => {
                self.membership.leave();
                self.end(Ended::Left);
            }
        }
        self.flush(now);
    }

    fn end(&mut self, why: Ended) {
        if !self.ended {
            self.ended = true;
            self.running = None;
            // What the membership queued (a goodbye) goes out before the
            // end: a driver carries out nothing after it.
            self.out
                .extend(self.membership.drain().map(Output::Transmit));
            self.out.push(Output::Ended(why));
        }
    }

    /// Sends what the bases have to send, and takes what the tables have.
    fn flush(&mut self, now: Time) {
        if let Some(r) = &mut self.running {
            for out in r.bases.drain() {
                match out {
                    bases::Output::App(to, msg) if to == MANAGER => {
                        // Without a manager link this is lost, like the
                        // requests it answers.
                        self.membership.send(&msg);
                    }
                    bases::Output::App(to, msg) => {
                        if !r.bases.is_dead(to) {
                            // A full backlog is counted and logged by the links.
                            let _ = r.links.send(now, to, &msg);
                        }
                    }
                    bases::Output::Client(c, out) => self.out.push(Output::Client(c, out)),
                    bases::Output::Store(op) => self.out.push(Output::Store(op)),
                }
            }
            self.out.extend(r.links.drain().map(Output::Transmit));
            if r.stopping.is_some() && r.bases.drained() {
                self.handed_over = r.bases.handed_over();
                if self.handed_over {
                    tracing::info!("baseapp retired; every base handed on");
                } else {
                    tracing::info!("baseapp stopped; everything saved");
                }
                // The goodbye goes out before the end.
                self.membership.leave();
                self.out
                    .extend(self.membership.drain().map(Output::Transmit));
                return self.end(Ended::Left);
            }
        }
        self.out
            .extend(self.membership.drain().map(Output::Transmit));
    }

    /// Takes what the core asks of its driver, in order.
    pub fn drain(&mut self) -> std::vec::Drain<'_, Output> {
        self.out.drain(..)
    }
}

fn forget(links: &mut Links, app: AppId, why: &str) {
    let lost = links.forget(app, why);
    if !lost.is_empty() {
        tracing::info!(peer = %app, messages = lost.len(), why, "app gone; messages it never acknowledged are dropped");
    }
}
