//! The whole manager as one state machine with no I/O: the [`Cluster`]
//! (membership, layout, balancing, login), the connection of each member,
//! the apps waiting while a restarted manager takes its old members back,
//! and the manager's own period. Its driver and the simulator run exactly
//! this: they feed it app connections, login requests, account checks and
//! the time, ask when to wake it ([`Manager::poll_timeout`]), and carry out
//! what it leaves ([`Output`]).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;
use tessera::link::{encode, ConnEvent, ConnId, Transmit};
use tessera::proto::app::{AppMsg, CertId, SpaceInfo};
use tessera::proto::close;
use tessera::proto::login::{LoginReply, LoginRequest, ResumeRequest};
use tessera::storage::{Account, StorageError};
use tessera::{AppId, Definitions, Time};

use crate::balance::Policy;
use crate::cluster::throttle::LoginLimits;
use crate::cluster::{self, AccountCheck, Admission, Cluster, LoginId};

/// How to run a manager core.
#[derive(Clone, Copy, Debug)]
pub struct ManagerConfig {
    /// The period of the manager's own work: heartbeat timeouts, login
    /// timeouts, balancing.
    pub tick: Duration,
    /// How long after starting the manager waits for apps of a previous run
    /// (it may be a restart) to come back before it takes new ones. Longer
    /// than the apps' link timeout; zero for a manager that is certainly the
    /// first.
    pub rejoin_window: Duration,
    /// Login limits, checked before any password is hashed.
    pub logins: LoginLimits,
    /// How long an app may be silent before it is dropped.
    pub heartbeat_timeout: Duration,
    /// The load (share of the tick period) at least one cell must report
    /// before the balancer moves a line; 0 balances at any load.
    pub balance_floor: f32,
}

impl Default for ManagerConfig {
    fn default() -> Self {
        ManagerConfig {
            tick: Duration::from_millis(500),
            rejoin_window: DEFAULT_REJOIN_WINDOW,
            logins: LoginLimits::default(),
            heartbeat_timeout: crate::cluster::HEARTBEAT_TIMEOUT,
            balance_floor: crate::cluster::DEFAULT_BALANCE_FLOOR,
        }
    }
}

/// The rejoin window a manager opens by default.
pub const DEFAULT_REJOIN_WINDOW: Duration = Duration::from_secs(3);

/// What the core asks its driver to do.
#[derive(Debug)]
pub enum Output {
    /// Something to do with an app connection.
    Transmit(Transmit),
    /// Answer a login or resume.
    Login(LoginId, LoginReply),
    /// Check (or create) an account.
    CheckAccount(AccountCheck),
    /// Append a sample to the recording under way.
    Sample(tessera::recording::Sample),
}

/// The manager core.
pub struct Manager {
    cfg: ManagerConfig,
    cluster: Cluster,
    /// Each member's connection.
    members: BTreeMap<AppId, ConnId>,
    /// Whose each member connection is.
    conns: BTreeMap<ConnId, AppId>,
    /// Fresh apps waiting while apps of a previous run come back.
    held: Vec<(ConnId, AppMsg, CertId)>,
    next_tick: Time,
    out: Vec<Output>,
}

impl Manager {
    /// A manager for a world with these definitions and this space,
    /// starting at `now` (and, unless the window is zero, waiting for apps
    /// of a previous run first).
    pub fn new(now: Time, defs: &Definitions, space: SpaceInfo, cfg: ManagerConfig) -> Manager {
        let mut cluster = Cluster::new(defs, space);
        cluster.set_login_limits(cfg.logins);
        cluster.set_heartbeat_timeout(cfg.heartbeat_timeout);
        cluster.set_balance_floor(cfg.balance_floor);
        if !cfg.rejoin_window.is_zero() {
            cluster.await_rejoins(now, cfg.rejoin_window);
        }
        Manager {
            cfg,
            cluster,
            members: BTreeMap::new(),
            conns: BTreeMap::new(),
            held: Vec::new(),
            next_tick: now,
            out: Vec::new(),
        }
    }

    /// The settings.
    pub fn config(&self) -> &ManagerConfig {
        &self.cfg
    }

    /// The cluster: membership, layout and balancing.
    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    /// The cluster, to change by hand (the admin API: move a line, switch
    /// the policy, retire a cellapp); what it sends goes out at the next
    /// [`Manager::drain`].
    pub fn cluster_mut(&mut self) -> &mut Cluster {
        &mut self.cluster
    }

    /// Switches the balancing policy.
    pub fn set_policy(&mut self, policy: Box<dyn Policy>) {
        self.cluster.set_policy(policy);
    }

    /// What happened to an app connection.
    pub fn handle(&mut self, now: Time, conn: ConnId, ev: ConnEvent) {
        match ev {
            ConnEvent::Accepted(first, cert) => self.admit(now, conn, first, cert),
            ConnEvent::Msg(msg) => {
                if let Some(&app) = self.conns.get(&conn) {
                    self.cluster.handle(now, app, msg);
                }
            }
            ConnEvent::Closed(reason) => {
                self.held.retain(|(c, ..)| *c != conn);
                if let Some(app) = self.conns.remove(&conn) {
                    if self.members.get(&app) == Some(&conn) {
                        self.members.remove(&app);
                        self.cluster.app_gone(app, &reason);
                    }
                }
            }
            ConnEvent::Opened(_) => {}
        }
    }

    /// Lets an app in, refuses it, or holds it until the rejoin window
    /// closes. `cert` is the certificate its connection presented.
    fn admit(&mut self, now: Time, conn: ConnId, first: AppMsg, cert: CertId) {
        match self.cluster.admit(now, &first, cert) {
            Admission::Member(app) => {
                // An app that dialled again while its rejoin window was
                // open: the new link replaces the old (whose close is then
                // ignored).
                if let Some(old) = self.members.insert(app, conn) {
                    self.conns.remove(&old);
                    self.out.push(Output::Transmit(Transmit::Close {
                        conn: old,
                        code: close::SHUTDOWN,
                        reason: "replaced by a newer link".into(),
                    }));
                }
                self.conns.insert(conn, app);
            }
            Admission::Wait => self.held.push((conn, first, cert)),
            Admission::Refused(why) => {
                let reason = why.to_string();
                tracing::warn!(%conn, %reason, "app refused");
                let refused = AppMsg::RegisterRefused {
                    reason: reason.clone(),
                };
                self.out.push(Output::Transmit(Transmit::Send {
                    conn,
                    frame: encode(&refused),
                }));
                self.out.push(Output::Transmit(Transmit::Close {
                    conn,
                    code: close::REFUSED,
                    reason,
                }));
            }
        }
    }

    /// A client at `from` asks to log in.
    pub fn login(&mut self, now: Time, login: LoginId, from: IpAddr, req: LoginRequest) {
        self.cluster.login(now, login, from, req);
    }

    /// A client at `from` asks to resume its session.
    pub fn resume(&mut self, now: Time, login: LoginId, from: IpAddr, req: ResumeRequest) {
        self.cluster.resume(now, login, from, req);
    }

    /// An account check was dropped before it ran: its client had left.
    pub fn account_dropped(&mut self, login: LoginId) {
        self.cluster.account_dropped(login);
    }

    /// An account check finished.
    pub fn account_checked(
        &mut self,
        now: Time,
        login: LoginId,
        result: Result<Account, StorageError>,
    ) {
        self.cluster.account_checked(now, login, result);
    }

    /// When the core next needs [`Manager::handle_timeout`].
    pub fn poll_timeout(&self) -> Option<Time> {
        Some(self.next_tick)
    }

    /// The manager's periodic work, when due.
    pub fn handle_timeout(&mut self, now: Time) {
        if now < self.next_tick {
            return;
        }
        self.next_tick = self.next_tick.plus(self.cfg.tick);
        if self.next_tick <= now {
            self.next_tick = now.plus(self.cfg.tick);
        }
        self.cluster.tick(now);
        if !self.cluster.is_rejoining() {
            for (conn, first, cert) in std::mem::take(&mut self.held) {
                self.admit(now, conn, first, cert);
            }
        }
    }

    /// Takes what the core asks of its driver, in order.
    pub fn drain(&mut self) -> Vec<Output> {
        for out in self.cluster.drain() {
            match out {
                cluster::Output::App(to, msg) => {
                    if let Some(&conn) = self.members.get(&to) {
                        self.out.push(Output::Transmit(Transmit::Send {
                            conn,
                            frame: encode(&msg),
                        }));
                    }
                }
                cluster::Output::Drop(app) => {
                    if let Some(conn) = self.members.remove(&app) {
                        self.conns.remove(&conn);
                        self.out.push(Output::Transmit(Transmit::Close {
                            conn,
                            code: close::SHUTDOWN,
                            reason: "missed heartbeats".into(),
                        }));
                    }
                }
                cluster::Output::Login(id, reply) => self.out.push(Output::Login(id, reply)),
                cluster::Output::CheckAccount(c) => self.out.push(Output::CheckAccount(c)),
                cluster::Output::Sample(s) => self.out.push(Output::Sample(s)),
            }
        }
        std::mem::take(&mut self.out)
    }
}
