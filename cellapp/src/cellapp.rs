//! The whole cellapp as one state machine with no I/O: its membership of
//! the cluster, its links to the other apps, its cell, and every timer
//! they need (ticks, heartbeats, redials, acknowledgements, the linger of a
//! retiring cellapp). Its driver and the simulator run exactly this: they
//! feed it connection events and the time, ask when to wake it
//! ([`Cellapp::poll_timeout`]), and carry out what it leaves ([`Output`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tessera::link::{ConnEvent, ConnId, LinkConfig, LinkEvent, Links, Transmit};
pub use tessera::membership::Ended;
use tessera::membership::{Membership, MembershipConfig, MembershipEvent};
use tessera::proto::app::{AppMsg, Load, Registration, Role};
use tessera::{AppId, Definitions, IdBlock, Time, MANAGER};

use crate::behavior::Behaviors;
use crate::cell::{Cell, CellConfig};

/// How often each real is backed up to its base unless configured.
pub const DEFAULT_BACKUP_PERIOD: Duration = Duration::from_secs(5);

/// How to run a cellapp core.
pub struct CellappConfig {
    /// The manager's internal address.
    pub manager: SocketAddr,
    /// What the cellapp registers as (its addresses).
    pub registration: Registration,
    /// Entity definitions.
    pub defs: Arc<Definitions>,
    /// Behaviours by entity type.
    pub behaviors: Behaviors,
    /// The cell's settings; the space's bounds and tick rate and the app's
    /// id come from the manager when it registers.
    pub cell: CellConfig,
    /// How often each real is backed up to its base.
    pub backup_period: Duration,
    /// Server-driven entities to create once the cell knows its area: how
    /// many of each type.
    pub spawns: Vec<(String, usize)>,
    /// Timing of the manager link.
    pub membership: MembershipConfig,
    /// Timing and bounds of the app links.
    pub links: LinkConfig,
    /// How long a retired, empty cellapp keeps forwarding messages that
    /// were already on their way to it before it leaves.
    pub retire_linger: Duration,
    /// The longest a retiring cellapp waits for its reals to leave.
    pub retire_wait: Duration,
}

impl CellappConfig {
    /// The defaults for a cellapp registering as `registration` with the
    /// manager at `manager`.
    pub fn new(
        manager: SocketAddr,
        registration: Registration,
        defs: Arc<Definitions>,
        behaviors: Behaviors,
    ) -> CellappConfig {
        CellappConfig {
            manager,
            registration,
            defs,
            behaviors,
            cell: CellConfig::default(),
            backup_period: DEFAULT_BACKUP_PERIOD,
            spawns: Vec::new(),
            membership: MembershipConfig::default(),
            links: LinkConfig::default(),
            retire_linger: Duration::from_secs(2),
            retire_wait: Duration::from_secs(60),
        }
    }
}

/// What the core asks its driver to do.
#[derive(Debug)]
pub enum Output {
    /// Something to do with a connection.
    Transmit(Transmit),
    /// Registered with the manager under this id.
    Joined(AppId),
    /// The cellapp has stopped; nothing more comes from it.
    Ended(Ended),
}

/// Counts of app messages by kind, for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Ghost messages received: create, update, delete, moves, checks.
    pub ghosts_in: [u64; 5],
    /// Ghost messages sent, by the same kinds.
    pub ghosts_out: [u64; 5],
}

fn ghost_kind(msg: &AppMsg) -> Option<usize> {
    match msg {
        AppMsg::GhostCreate(_) | AppMsg::GhostCreates(_) => Some(0),
        AppMsg::GhostUpdate { .. } => Some(1),
        AppMsg::GhostDelete { .. } => Some(2),
        AppMsg::GhostMoves(_) => Some(3),
        AppMsg::GhostChecks(_) => Some(4),
        _ => None,
    }
}

/// A retirement under way.
#[derive(Debug)]
struct Retiring {
    asked: Time,
    /// Since when the cell has been retired, empty, and every message it
    /// sent acknowledged.
    empty_since: Option<Time>,
}

/// A cellapp that has registered.
struct Running {
    app: AppId,
    cell: Cell,
    links: Links,
    next_tick: Time,
    period: Duration,
    retiring: Option<Retiring>,
}

enum Phase {
    /// Waiting for the manager to take it.
    Joining {
        behaviors: Behaviors,
    },
    Running(Box<Running>),
    /// Stopped.
    Over,
}

/// The cellapp core.
pub struct Cellapp {
    cfg: CellappConfig,
    membership: Membership,
    phase: Phase,
    traffic: Traffic,
    ended: bool,
    out: Vec<Output>,
}

impl Cellapp {
    /// A cellapp that registers with its manager from `now` on.
    pub fn new(now: Time, mut cfg: CellappConfig) -> Cellapp {
        let behaviors = std::mem::take(&mut cfg.behaviors);
        Cellapp {
            membership: Membership::new(now, cfg.manager, cfg.registration.clone(), cfg.membership),
            cfg,
            phase: Phase::Joining { behaviors },
            traffic: Traffic::default(),
            ended: false,
            out: Vec::new(),
        }
    }

    /// Its id, once registered.
    pub fn app(&self) -> Option<AppId> {
        self.membership.app()
    }

    /// The cell, once registered.
    pub fn cell(&self) -> Option<&Cell> {
        match &self.phase {
            Phase::Running(r) => Some(&r.cell),
            _ => None,
        }
    }

    /// The cell, once registered, to change by hand (tests and tools).
    pub fn cell_mut(&mut self) -> Option<&mut Cell> {
        match &mut self.phase {
            Phase::Running(r) => Some(&mut r.cell),
            _ => None,
        }
    }

    /// The links to the other apps, once registered.
    pub fn links(&self) -> Option<&Links> {
        match &self.phase {
            Phase::Running(r) => Some(&r.links),
            _ => None,
        }
    }

    /// Whether it has a link to its manager.
    pub fn has_manager(&self) -> bool {
        self.membership.is_up()
    }

    /// Ghost traffic so far.
    pub fn traffic(&self) -> Traffic {
        self.traffic
    }

    /// Whether it has stopped.
    pub fn is_over(&self) -> bool {
        matches!(self.phase, Phase::Over)
    }

    /// Notes time the driver measured the cell working.
    pub fn note_work(&mut self, work: Duration) {
        if let Phase::Running(r) = &mut self.phase {
            r.cell.note_work(work);
        }
    }

    /// Plants deliberate defects in the app links (tests of the
    /// simulator's checks).
    #[cfg(feature = "faults")]
    pub fn plant(&mut self, faults: tessera::link::LinkFaults) {
        if let Phase::Running(r) = &mut self.phase {
            r.links.plant(faults);
        }
    }

    /// What happened to a connection.
    pub fn handle(&mut self, now: Time, conn: ConnId, ev: ConnEvent) {
        if self.membership.owns(conn) {
            if let Some(ev) = self.membership.handle(now, conn, ev) {
                self.on_membership(now, ev);
            }
        } else if let Phase::Running(r) = &mut self.phase {
            match r.links.handle(now, conn, ev) {
                Some(LinkEvent::Msg(from, msg)) => self.on_msg(now, from, msg),
                Some(LinkEvent::Up(app)) => tracing::debug!(peer = %app, "app linked"),
                Some(LinkEvent::Down(_)) | None => {}
            }
        } else if let ConnEvent::Accepted(..) = ev {
            let refused = Transmit::refuse_unregistered(conn);
            self.out.push(Output::Transmit(refused));
        }
        self.flush(now);
    }

    fn on_membership(&mut self, now: Time, ev: MembershipEvent) {
        match ev {
            MembershipEvent::Joined { app, ids, space } => {
                self.joined(now, app, ids, space);
            }
            MembershipEvent::Msg(msg) => self.on_msg(now, MANAGER, msg),
            MembershipEvent::Lost => {}
            MembershipEvent::Rejoined => {
                tracing::info!("back in the cluster with the manager");
                if let Phase::Running(r) = &mut self.phase {
                    r.cell.rejoined();
                }
            }
            MembershipEvent::Refused(reason) => {
                tracing::error!(%reason, "the manager will not have this cellapp; stopping");
                self.end(Ended::Refused(reason));
            }
        }
    }

    fn joined(
        &mut self,
        now: Time,
        app: AppId,
        ids: IdBlock,
        space: tessera::proto::app::SpaceInfo,
    ) {
        let Phase::Joining { behaviors } = std::mem::replace(&mut self.phase, Phase::Over) else {
            return;
        };
        let hz = space.tick_hz.max(1);
        let period = Duration::from_secs(1) / u32::from(hz);
        let cell_cfg = CellConfig {
            bounds: space.bounds,
            tick_hz: hz,
            backup_ticks: (self.cfg.backup_period.as_secs_f64() * f64::from(hz)).max(1.0) as u32,
            ghost_distance: self.cfg.defs.max_aoi_radius() + 10.0,
            app,
            // Cellapps started with the same seed still draw apart.
            seed: self.cfg.cell.seed ^ u64::from(app.0),
            ..self.cfg.cell.clone()
        };
        let mut cell = Cell::new(&self.cfg.defs, behaviors, cell_cfg, ids);
        for (ty, n) in &self.cfg.spawns {
            if *n > 0 {
                cell.spawn_when_placed(ty, *n);
            }
        }
        let links = Links::new(app, self.cfg.defs.digest, self.cfg.links);
        tracing::info!(%app, "cellapp joined the cluster");
        self.phase = Phase::Running(Box::new(Running {
            app,
            cell,
            links,
            next_tick: now,
            period,
            retiring: None,
        }));
        self.out.push(Output::Joined(app));
    }

    /// A message from the manager or another app, in order.
    fn on_msg(&mut self, now: Time, from: AppId, msg: AppMsg) {
        let Phase::Running(r) = &mut self.phase else {
            return;
        };
        if let Some(k) = ghost_kind(&msg) {
            self.traffic.ghosts_in[k] += 1;
        }
        if from != MANAGER
            && r.links.role(from) == Some(Role::Baseapp)
            && !r.cell.base_may_send(from, &msg)
        {
            return;
        }
        match &msg {
            AppMsg::Layout { layout, cells } if from == MANAGER => {
                let newer = r.cell.layout().is_none_or(|l| layout.epoch > l.epoch);
                if newer {
                    // Cellapps link to each other: the higher id dials.
                    let me = r.app;
                    r.links.listed(now, Role::Cellapp, cells, |app| app < me);
                }
            }
            // Baseapps dial cellapps; a cellapp takes only those listed.
            AppMsg::Baseapps(list) if from == MANAGER => {
                r.links.listed(now, Role::Baseapp, list, |_| false);
            }
            AppMsg::AppDown { app } if from == MANAGER => {
                forget(&mut r.links, *app, "declared dead");
            }
            _ => {}
        }
        r.cell.handle(now, from, msg);
    }

    /// When the core next needs [`Cellapp::handle_timeout`].
    pub fn poll_timeout(&self) -> Option<Time> {
        let membership = self.membership.poll_timeout();
        let running = match &self.phase {
            Phase::Running(r) => {
                let links = r.links.poll_timeout();
                Some(r.next_tick).into_iter().chain(links).min()
            }
            _ => None,
        };
        membership.into_iter().chain(running).min()
    }

    /// Does what is due at `now`: the cell's tick, heartbeats, dials,
    /// acknowledgements, and the end of a retirement.
    pub fn handle_timeout(&mut self, now: Time) {
        if let Phase::Running(r) = &mut self.phase {
            if r.next_tick <= now {
                r.cell.tick(now);
                r.next_tick = r.next_tick.plus(r.period);
                if r.next_tick <= now {
                    // Late: the missed ticks are skipped, not run in a burst.
                    r.next_tick = now.plus(r.period);
                }
            }
            r.links.handle_timeout(now);
        }
        let ev = {
            let (phase, registration) = (&self.phase, self.membership.registration().clone());
            let retiring = matches!(phase, Phase::Running(r) if r.retiring.is_some());
            let report = || match phase {
                Phase::Running(r) => {
                    AppMsg::Rejoin(Box::new(r.cell.rejoin(registration, retiring)))
                }
                _ => AppMsg::Goodbye,
            };
            let beat = || match phase {
                Phase::Running(r) => {
                    let stats = r.cell.stats();
                    AppMsg::Heartbeat(Load {
                        busy: r.cell.load().min(1.0),
                        entities: stats.reals as u32,
                        clients: stats.witnesses as u32,
                    })
                }
                _ => AppMsg::Heartbeat(Load::default()),
            };
            self.membership.handle_timeout(now, report, beat)
        };
        if let Some(ev) = ev {
            self.on_membership(now, ev);
        }
        self.check_retirement(now);
        self.flush(now);
    }

    /// Asks the manager to take this cellapp's cell away; the cellapp
    /// leaves once every real has migrated (at most
    /// [`CellappConfig::retire_wait`]). What SIGTERM does.
    pub fn retire(&mut self, now: Time) {
        let Phase::Running(r) = &mut self.phase else {
            self.membership.leave();
            self.end(Ended::Left);
            return self.flush(now);
        };
        if r.retiring.is_none() {
            tracing::info!("retiring: asking the manager to take the cell away");
            r.retiring = Some(Retiring {
                asked: now,
                empty_since: None,
            });
            self.membership.send(&AppMsg::Retire);
        }
        self.flush(now);
    }

    /// Leaves the cluster at once; its reals are not handed off.
    pub fn stop(&mut self, now: Time) {
        self.membership.leave();
        self.end(Ended::Left);
        self.flush(now);
    }

    fn check_retirement(&mut self, now: Time) {
        let Phase::Running(r) = &mut self.phase else {
            return;
        };
        if r.cell.is_retired() && r.retiring.is_none() {
            // The operator asked the manager directly.
            tracing::info!("the manager retired this cellapp; leaving once empty");
            r.retiring = Some(Retiring {
                asked: now,
                empty_since: None,
            });
        }
        let Some(ret) = &mut r.retiring else { return };
        // Empty, and everything it handed on has arrived.
        let empty =
            r.cell.is_retired() && r.cell.real_ids().next().is_none() && r.links.all_acknowledged();
        ret.empty_since = if empty {
            ret.empty_since.or(Some(now))
        } else {
            None
        };
        let lingered = ret
            .empty_since
            .is_some_and(|t| now.since(t) >= self.cfg.retire_linger);
        let late = now.since(ret.asked) >= self.cfg.retire_wait;
        if !(lingered || late) {
            return;
        }
        if lingered {
            tracing::info!("retired: every real has left; stopping");
        } else {
            let reals = r.cell.real_ids().count();
            tracing::warn!(reals, "retirement took too long; stopping with reals left");
        }
        self.membership.leave();
        self.end(Ended::Left);
    }

    fn end(&mut self, why: Ended) {
        if !self.ended {
            self.ended = true;
            self.phase = Phase::Over;
            // A goodbye the membership just queued goes out before the end:
            // a driver stops carrying out transmits once the core has ended,
            // and without it the manager would take the leave for a death.
            self.out
                .extend(self.membership.drain().map(Output::Transmit));
            self.out.push(Output::Ended(why));
        }
    }

    /// Sends what the cell has to send, and takes what the tables have.
    fn flush(&mut self, now: Time) {
        if let Phase::Running(r) = &mut self.phase {
            for (to, msg) in r.cell.drain() {
                if let Some(k) = ghost_kind(&msg) {
                    self.traffic.ghosts_out[k] += 1;
                }
                if to == MANAGER {
                    // Without a manager link reports go nowhere; the next
                    // ones go to the manager that comes back.
                    self.membership.send(&msg);
                } else if !r.cell.is_dead(to) {
                    if msg.is_numbered() {
                        // A full backlog is counted and logged by the links.
                        let _ = r.links.send(now, to, &msg);
                    } else {
                        r.links.send_lossy(to, &msg);
                    }
                }
            }
            self.out.extend(r.links.drain().map(Output::Transmit));
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

#[cfg(test)]
mod tests {
    use super::*;
    use tessera::proto::app::{CertId, Role, SpaceInfo};

    fn registered(now: Time) -> Cellapp {
        let defs = Arc::new(tessera_demo::definitions());
        let manager = SocketAddr::from(([127, 0, 0, 1], 7000));
        let registration = Registration {
            role: Role::Cellapp,
            protocol: tessera::proto::PROTOCOL_MAJOR,
            defs_digest: defs.digest,
            internal_addr: SocketAddr::from(([127, 0, 0, 1], 7100)),
            public_addr: None,
            admin_addr: None,
        };
        let cfg = CellappConfig::new(manager, registration, defs, Behaviors::default());
        let mut c = Cellapp::new(now, cfg);
        c.handle_timeout(now);
        let dial = c.drain().find_map(|o| match o {
            Output::Transmit(Transmit::Dial { conn, .. }) => Some(conn),
            _ => None,
        });
        let Some(conn) = dial else {
            panic!("the cellapp dials its manager")
        };
        c.handle(now, conn, ConnEvent::Opened(CertId::default()));
        let welcome = AppMsg::Registered {
            app: AppId(3),
            ids: IdBlock { next: 1, end: 100 },
            space: SpaceInfo {
                bounds: [0.0, 0.0, 100.0, 100.0],
                tick_hz: 10,
            },
        };
        c.handle(now, conn, ConnEvent::Msg(welcome));
        assert_eq!(c.app(), Some(AppId(3)));
        c.drain().for_each(drop);
        c
    }

    #[test]
    fn a_cellapp_that_leaves_says_goodbye_before_it_ends() {
        let now = Time(1_000_000);
        let mut c = registered(now);
        c.stop(now);
        let out: Vec<Output> = c.drain().collect();
        let goodbye = out.iter().position(|o| {
            matches!(o, Output::Transmit(Transmit::Send { frame, .. })
                if tessera::frame::decode::<AppMsg>(&frame[tessera::frame::HEADER_LEN..]).ok()
                    == Some(AppMsg::Goodbye))
        });
        let ended = out
            .iter()
            .position(|o| matches!(o, Output::Ended(Ended::Left)));
        match (goodbye, ended) {
            (Some(g), Some(e)) => assert!(g < e, "{out:?}"),
            _ => panic!("a goodbye and an end: {out:?}"),
        }
    }
}
