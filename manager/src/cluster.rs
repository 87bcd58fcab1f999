//! The manager core: membership of the cluster (apps register, heartbeat and
//! leave), entity-id blocks, where the cells are, the login flow (check
//! the account, pick the baseapp with the fewest clients, get a ticket from
//! it, answer the client) and the resume flow (ask every baseapp which one
//! holds the entity of a session token, get a ticket from it). A restarted
//! manager rebuilds all this from what the apps report ([`rejoin`]). A
//! sans-IO state machine: account checks go out as
//! [`Output::CheckAccount`] and come back through [`Cluster::account_checked`].

use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::net::SocketAddr;
use std::time::Duration;
use tessera::layout::{Layout, LayoutError, LineId};
use tessera::proto::app::{AppMsg, CellInfo, CertId, Load, Registration, Role, SpaceInfo};
use tessera::proto::login::{
    LoginReply, LoginRequest, RefuseReason, ResumeRequest, MAX_NAME_BYTES, MAX_PASSWORD_BYTES,
};
use tessera::proto::{TokenHash, PROTOCOL_MAJOR};
use tessera::storage::{Account, StorageError};
use tessera::{AppId, Definitions, IdBlock, Time};
use throttle::{LoginLimits, Throttle, Throttled};

/// A login connection's id.
pub type LoginId = u64;

/// How many entity ids one block holds.
pub const ID_BLOCK: u64 = 1 << 20;
/// A login waiting longer than this for a ticket is refused.
pub const TICKET_WAIT: Duration = Duration::from_secs(5);
/// By default, an app silent for this long is dropped from the cluster
/// ([`Cluster::set_heartbeat_timeout`]).
pub const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(5);

/// One app as the manager knows it.
#[derive(Clone, Debug, Serialize)]
pub struct AppInfo {
    /// Its id.
    pub id: u32,
    /// What it does.
    pub role: String,
    /// Where other apps reach it.
    pub internal_addr: SocketAddr,
    /// Where clients reach it (baseapps).
    pub public_addr: Option<SocketAddr>,
    /// Its admin HTTP address, if any.
    pub admin_addr: Option<SocketAddr>,
    /// Its last load report.
    pub load: f32,
    /// Entities it holds.
    pub entities: u32,
    /// Clients connected to it.
    pub clients: u32,
    #[serde(skip)]
    last_seen: Time,
    #[serde(skip)]
    kind: Role,
    /// The certificate it registered with.
    #[serde(skip)]
    cert: CertId,
}

impl AppInfo {
    fn new(app: AppId, reg: &Registration, cert: CertId, now: Time) -> AppInfo {
        AppInfo {
            id: app.0,
            role: reg.role.to_string(),
            internal_addr: reg.internal_addr,
            public_addr: reg.public_addr,
            admin_addr: reg.admin_addr,
            load: 0.0,
            entities: 0,
            clients: 0,
            last_seen: now,
            kind: reg.role,
            cert,
        }
    }
}

/// Why a line was not moved.
#[derive(Debug, thiserror::Error)]
pub enum MoveLineError {
    /// The layout refused.
    #[error(transparent)]
    Layout(#[from] LayoutError),
    /// A restarted manager is waiting for the apps to report back.
    #[error("line {} stays: the manager is waiting for the apps to report back", .0 .0)]
    Rejoining(LineId),
}

/// Why an app is not let into the cluster (or back into it).
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum AdmitError {
    /// Its first message is neither `Register` nor `Rejoin`.
    #[error("the first message must be Register or Rejoin")]
    NotAJoin,
    /// It speaks another protocol version.
    #[error("protocol {theirs} is not supported; the manager speaks {ours}")]
    ProtocolVersion {
        /// The app's.
        theirs: u16,
        /// The manager's.
        ours: u16,
    },
    /// It has other entity definitions.
    #[error("entity definitions digest mismatch: app has {theirs}, manager has {ours}")]
    DefinitionsMismatch {
        /// The app's digest, in hex.
        theirs: String,
        /// The manager's digest, in hex.
        ours: String,
    },
    /// A baseapp that gave no address for clients.
    #[error("a baseapp must give its client address")]
    NoClientAddress,
    /// It lost its link to this manager (which never died): a member whose
    /// link drops is declared dead.
    #[error("app {0} lost its link to this manager and was declared dead")]
    LostLink(AppId),
    /// This manager declared it dead.
    #[error("app {0} was declared dead")]
    DeclaredDead(AppId),
    /// It came back after the rejoin window closed.
    #[error("app {0} came back after the manager had rebuilt the cluster; it is declared dead")]
    TooLate(AppId),
    /// It names a live member whose certificate is not the one it
    /// presented; the member is left alone.
    #[error("app {app} is a live member under another certificate ({listed}); this link presented {presented}")]
    NotItsCertificate {
        /// The app it claims to be.
        app: AppId,
        /// The certificate the app registered with.
        listed: CertId,
        /// The one this link presented.
        presented: CertId,
    },
    /// It claims the manager's id.
    #[error("app id 0 is the manager's")]
    ManagersId,
    /// It reports ids this manager could never have handed out.
    #[error("app {app} reports ids beyond what this manager hands out (apps below {max_app}, entities below {max_entity})")]
    IdsOutOfRange {
        /// The app.
        app: AppId,
        /// The bound on app ids.
        max_app: u32,
        /// The bound on entity ids.
        max_entity: u64,
    },
    /// It reports a layout of another space.
    #[error("app {app} reports a layout of other bounds ({theirs:?}) than this manager's space ({ours:?}); was the manager started with another --size?")]
    OtherBounds {
        /// The app.
        app: AppId,
        /// The layout's bounds.
        theirs: tessera::layout::Rect,
        /// The space's bounds.
        ours: [f32; 4],
    },
}

/// Everything the core asks its driver to do.
#[derive(Debug)]
pub enum Output {
    /// Send to an app.
    App(AppId, AppMsg),
    /// Answer a login.
    Login(LoginId, LoginReply),
    /// Check (or create) an account.
    CheckAccount(AccountCheck),
    /// Close the link of an app that is no longer a member.
    Drop(AppId),
    /// A sample of the recording under way, to append to its file.
    Sample(tessera::recording::Sample),
}

/// An account to check (or create), for a login.
#[derive(Debug)]
pub struct AccountCheck {
    /// The login.
    pub login: LoginId,
    /// Account name.
    pub name: String,
    /// Password.
    pub password: String,
    /// Create if free.
    pub create: bool,
}

/// A login or resume waiting for a ticket.
struct Pending {
    login: LoginId,
    /// Baseapps asked that have not said no: one for a fresh login, every
    /// live one for a resume or to find an account's entity. When the last
    /// says no or leaves, the client is refused, or for an account no
    /// baseapp holds, one is asked for a fresh ticket.
    asked: BTreeSet<AppId>,
    since: Time,
    /// The account being found: (id, name).
    account: Option<(i64, String)>,
}

/// The manager core.
pub struct Cluster {
    digest: [u8; 32],
    space: SpaceInfo,
    apps: BTreeMap<AppId, AppInfo>,
    next_app: u32,
    next_id: u64,
    next_req: u64,
    pending: HashMap<u64, Pending>,
    layout: Option<Layout>,
    /// The last layout epoch handed out; never goes back, even when the
    /// last cellapp leaves and the layout is gone for a while.
    epoch: u64,
    out: Vec<Output>,
    /// The balancer and what it knows.
    balance: space::Balance,
    /// Which baseapp holds each named entity.
    directory: directory::Directory,
    /// Apps declared dead: they never come back.
    dead: BTreeSet<AppId>,
    /// While apps may still come back to a restarted manager.
    rejoining: Option<rejoin::Rejoining>,
    /// Login limits, checked before any password is hashed.
    throttle: Throttle,
    /// An app silent for this long is dropped.
    heartbeat_timeout: Duration,
    /// The recording under way, if any.
    recorder: Option<record::Recorder>,
}

impl Cluster {
    /// A manager for a world with these definitions and this space.
    pub fn new(defs: &Definitions, space: SpaceInfo) -> Cluster {
        Cluster {
            digest: defs.digest,
            space,
            apps: BTreeMap::new(),
            next_app: 1,
            next_id: 1,
            next_req: 1,
            pending: HashMap::new(),
            layout: None,
            epoch: 0,
            out: Vec::new(),
            balance: space::Balance::new(),
            directory: Default::default(),
            dead: BTreeSet::new(),
            rejoining: None,
            throttle: Throttle::new(LoginLimits::default()),
            heartbeat_timeout: HEARTBEAT_TIMEOUT,
            recorder: None,
        }
    }

    /// Takes what the core has to do.
    pub fn drain(&mut self) -> Vec<Output> {
        std::mem::take(&mut self.out)
    }

    /// The space this manager runs.
    pub fn space(&self) -> &SpaceInfo {
        &self.space
    }

    /// Every member, for the admin API.
    pub fn apps(&self) -> Vec<AppInfo> {
        self.apps.values().cloned().collect()
    }

    fn grant_ids(&mut self) -> IdBlock {
        let block = IdBlock {
            next: self.next_id,
            end: self.next_id + ID_BLOCK,
        };
        self.next_id += ID_BLOCK;
        block
    }

    fn cells(&self) -> Vec<CellInfo> {
        self.apps
            .iter()
            .filter(|(_, a)| a.kind == Role::Cellapp)
            .map(|(id, a)| CellInfo {
                app: *id,
                addr: a.internal_addr,
                cert: a.cert,
            })
            .collect()
    }

    /// The current layout, once a cellapp has registered.
    pub fn layout(&self) -> Option<&Layout> {
        self.layout.as_ref()
    }

    fn send_layout(&mut self, app: AppId) {
        if let Some(layout) = &self.layout {
            let msg = AppMsg::Layout {
                layout: layout.clone(),
                cells: self.cells(),
            };
            self.out.push(Output::App(app, msg));
        }
    }

    /// Moves a cut line (an operator's hand, or later the balancer) and tells
    /// every app. Returns where the line went (clamped to its range). Lines
    /// stay while a restarted manager waits for the apps to report back.
    pub fn move_line(&mut self, line: LineId, pos: f32) -> Result<f32, MoveLineError> {
        if self.rejoining.is_some() {
            return Err(MoveLineError::Rejoining(line));
        }
        let layout = self.layout.as_mut().ok_or(LayoutError::NoLine(line))?;
        let before = layout.epoch;
        let at = layout.move_line(line, pos)?;
        if layout.epoch != before {
            self.layout_changed();
        }
        Ok(at)
    }

    fn baseapps(&self) -> Vec<CellInfo> {
        self.apps
            .iter()
            .filter(|(_, a)| a.kind == Role::Baseapp)
            .map(|(id, a)| CellInfo {
                app: *id,
                addr: a.internal_addr,
                cert: a.cert,
            })
            .collect()
    }

    /// Sends every baseapp the cellapps, or every app the baseapps
    /// (cellapps take links only from the baseapps listed).
    fn tell_baseapps(&mut self, which: Role) {
        let (list, make): (_, fn(Vec<CellInfo>) -> AppMsg) = match which {
            Role::Cellapp => (self.cells(), AppMsg::Cells),
            Role::Baseapp => (self.baseapps(), AppMsg::Baseapps),
        };
        let to: Vec<AppId> = match which {
            Role::Cellapp => self.baseapps().iter().map(|b| b.app).collect(),
            Role::Baseapp => self.apps.keys().copied().collect(),
        };
        for app in to {
            self.out.push(Output::App(app, make(list.clone())));
        }
    }

    /// Whether an app of this protocol, definitions and addresses may be a
    /// member.
    fn check(&self, reg: &Registration) -> Result<(), AdmitError> {
        if reg.protocol != PROTOCOL_MAJOR {
            return Err(AdmitError::ProtocolVersion {
                theirs: reg.protocol,
                ours: PROTOCOL_MAJOR,
            });
        }
        if reg.defs_digest != self.digest {
            return Err(AdmitError::DefinitionsMismatch {
                theirs: Definitions::hex(&reg.defs_digest),
                ours: Definitions::hex(&self.digest),
            });
        }
        if reg.role == Role::Baseapp && reg.public_addr.is_none() {
            return Err(AdmitError::NoClientAddress);
        }
        Ok(())
    }

    /// An app asks to join (through [`Cluster::admit`]). Returns its new
    /// id, or why it is refused.
    pub(crate) fn register(
        &mut self,
        now: Time,
        msg: &AppMsg,
        cert: CertId,
    ) -> Result<AppId, AdmitError> {
        let AppMsg::Register(reg) = msg else {
            return Err(AdmitError::NotAJoin);
        };
        self.check(reg)?;
        let app = AppId(self.next_app);
        self.next_app += 1;
        self.apps.insert(app, AppInfo::new(app, reg, cert, now));
        let (role, internal_addr) = (reg.role, reg.internal_addr);
        let ids = self.grant_ids();
        self.out.push(Output::App(
            app,
            AppMsg::Registered {
                app,
                ids,
                space: self.space.clone(),
            },
        ));
        tracing::info!(%app, %role, %internal_addr, "app registered");
        match role {
            Role::Cellapp => {
                // It takes links only from the baseapps listed.
                let baseapps = self.baseapps();
                self.out.push(Output::App(app, AppMsg::Baseapps(baseapps)));
                self.tell_baseapps(Role::Cellapp);
                self.cellapp_joined(app);
                self.record_joined(app);
            }
            Role::Baseapp => {
                let cells = self.cells();
                self.out.push(Output::App(app, AppMsg::Cells(cells)));
                self.send_layout(app);
                self.tell_baseapps(Role::Baseapp);
            }
        }
        Ok(app)
    }

    /// An app's link closed, or it went silent: it is dead.
    pub fn app_gone(&mut self, app: AppId, reason: &str) {
        self.remove_app(app, reason, true);
    }

    /// Tells every member that `app` is dead: they stop hearing from it,
    /// and the baseapps restore what it held (design §1).
    fn announce_down(&mut self, app: AppId) {
        self.dead.insert(app);
        let others: Vec<AppId> = self.apps.keys().copied().collect();
        for other in others {
            self.out.push(Output::App(other, AppMsg::AppDown { app }));
        }
    }

    /// Takes an app out of the cluster. Only a dead one (not one that said
    /// goodbye after handing everything off) is announced with `AppDown`.
    /// While apps are coming back nothing else changes yet: the window's
    /// end deals with an app that is not there.
    fn remove_app(&mut self, app: AppId, reason: &str, died: bool) {
        let Some(info) = self.apps.remove(&app) else {
            return;
        };
        tracing::warn!(%app, role = %info.role, %reason, "app left the cluster");
        self.directory.forget(app);
        if !self.left_while_rejoining(app, died) {
            match info.kind {
                Role::Cellapp => {
                    self.tell_baseapps(Role::Cellapp);
                    self.cellapp_left(app);
                }
                Role::Baseapp => self.tell_baseapps(Role::Baseapp),
            }
            // After the layout without it.
            if died {
                self.announce_down(app);
            }
        }
        let asked: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| p.asked.contains(&app))
            .map(|(r, _)| *r)
            .collect();
        for req in asked {
            self.said_no(None, req, app, "the baseapp went away; try again");
        }
    }

    /// A baseapp asked for a ticket will not give one: when none is left to
    /// ask, the client is refused.
    fn said_no(&mut self, now: Option<Time>, req: u64, app: AppId, why: &str) {
        let Some(p) = self.pending.get_mut(&req) else {
            return;
        };
        p.asked.remove(&app);
        if p.asked.is_empty() {
            let (login, since) = (p.login, p.since);
            let account = p.account.take();
            self.pending.remove(&req);
            match account {
                // Nobody holds the account's entity: a fresh session.
                Some((id, name)) => self.fresh_ticket(now.unwrap_or(since), login, id, name),
                None => self.refuse(login, RefuseReason::Unavailable, why),
            }
        }
    }

    fn ask(&mut self, now: Time, login: LoginId, asked: BTreeSet<AppId>) -> u64 {
        let req = self.next_req;
        self.next_req += 1;
        self.pending.insert(
            req,
            Pending {
                login,
                asked,
                since: now,
                account: None,
            },
        );
        req
    }

    /// Asks the baseapp with the fewest clients for a ticket of a fresh
    /// session of an account.
    fn fresh_ticket(&mut self, now: Time, login: LoginId, account: i64, name: String) {
        let has_cell = self.apps.values().any(|a| a.kind == Role::Cellapp);
        let baseapp = self
            .apps
            .iter()
            .filter(|(_, a)| a.kind == Role::Baseapp)
            .min_by_key(|(id, a)| (a.clients, **id))
            .map(|(id, _)| *id);
        let Some(baseapp) = baseapp.filter(|_| has_cell) else {
            return self.refuse(
                login,
                RefuseReason::Unavailable,
                "the world is not up yet; try again",
            );
        };
        let req = self.ask(now, login, [baseapp].into());
        self.out.push(Output::App(
            baseapp,
            AppMsg::IssueTicket { req, account, name },
        ));
    }

    /// A message from a member.
    pub fn handle(&mut self, now: Time, from: AppId, msg: AppMsg) {
        let Some(info) = self.apps.get_mut(&from) else {
            return;
        };
        info.last_seen = now;
        if self.hold_while_rejoining(from, &msg) {
            return;
        }
        match msg {
            AppMsg::Heartbeat(Load {
                busy,
                entities,
                clients,
            }) => {
                let Some(info) = self.apps.get_mut(&from) else {
                    return;
                };
                info.load = if busy.is_finite() {
                    busy.clamp(0.0, 1.0)
                } else {
                    0.0
                };
                info.entities = entities;
                info.clients = clients;
            }
            AppMsg::NeedIds => {
                let block = self.grant_ids();
                self.out.push(Output::App(from, AppMsg::Ids(block)));
            }
            AppMsg::TicketIssued { req, ticket } => {
                if !self
                    .pending
                    .get(&req)
                    .is_some_and(|p| p.asked.contains(&from))
                {
                    return;
                }
                let Some(p) = self.pending.remove(&req) else {
                    return;
                };
                match self.apps.get_mut(&from).and_then(|a| {
                    a.clients += 1;
                    a.public_addr
                }) {
                    Some(baseapp) => self.out.push(Output::Login(
                        p.login,
                        LoginReply::Granted { baseapp, ticket },
                    )),
                    None => {
                        self.refuse(p.login, RefuseReason::Unavailable, "the baseapp went away")
                    }
                }
            }
            AppMsg::NoSession { req } => self.said_no(
                Some(now),
                req,
                from,
                "no baseapp holds that session (yet); try again or log in",
            ),
            AppMsg::Goodbye => self.remove_app(from, "said goodbye", false),
            AppMsg::Summon { type_id, name } => {
                let is_baseapp = self
                    .apps
                    .get(&from)
                    .is_some_and(|a| a.kind == Role::Baseapp);
                if !is_baseapp || name.len() > tessera::proto::app::MAX_ENTITY_NAME {
                    tracing::warn!(app = %from, "a summons that is not a baseapp's, or names too long a name, ignored");
                    return;
                }
                let app = self.directory.summon(type_id, name.clone(), from);
                self.out
                    .push(Output::App(from, AppMsg::Summoned { type_id, name, app }));
            }
            AppMsg::CellLoad(report) => self.cell_load(from, *report),
            AppMsg::Positions(spots) => self.positions(from, spots),
            AppMsg::Retire => {
                if let Err(e) = self.retire(now, from) {
                    tracing::warn!(app = %from, error = %e, "retirement refused");
                }
            }
            other => {
                tracing::debug!(%from, msg = ?std::mem::discriminant(&other), "manager ignores message");
            }
        }
    }

    fn refuse(&mut self, login: LoginId, reason: RefuseReason, message: &str) {
        self.out.push(Output::Login(
            login,
            LoginReply::Refused {
                reason,
                message: message.to_string(),
            },
        ));
    }

    /// Refuses a client that speaks another protocol or has other
    /// definitions, or comes while the apps are still reporting back to a
    /// restarted manager; true if it was refused.
    fn refuse_stranger(&mut self, login: LoginId, protocol: u16, digest: &[u8; 32]) -> bool {
        if self.rejoining.is_some() {
            let m = "the manager is restarting; try again in a few seconds";
            self.refuse(login, RefuseReason::Unavailable, m);
            return true;
        }
        if protocol != PROTOCOL_MAJOR {
            let m = format!(
                "protocol {protocol} is not supported; this server speaks {PROTOCOL_MAJOR}"
            );
            self.refuse(login, RefuseReason::ProtocolVersion, &m);
            return true;
        }
        if *digest != self.digest {
            let m = format!(
                "entity definitions digest mismatch: client has {}, server has {}",
                Definitions::hex(digest),
                Definitions::hex(&self.digest)
            );
            self.refuse(login, RefuseReason::DefinitionsMismatch, &m);
            return true;
        }
        false
    }

    /// A client whose connection was lost asks to get back into its entity
    /// with its session token: every baseapp is asked; the one holding the
    /// entity issues a ticket.
    pub fn resume(&mut self, now: Time, login: LoginId, from: IpAddr, req: ResumeRequest) {
        if let Err(why) = self.throttle.resume(now, from) {
            return self.refuse(login, RefuseReason::RateLimited, &why.to_string());
        }
        if self.refuse_stranger(login, req.protocol, &req.defs_digest) {
            return;
        }
        let asked: BTreeSet<AppId> = self.baseapps().into_iter().map(|b| b.app).collect();
        if asked.is_empty() {
            return self.refuse(
                login,
                RefuseReason::Unavailable,
                "no baseapp is up; try again",
            );
        }
        let id = self.ask(now, login, asked.clone());
        for b in asked {
            self.out.push(Output::App(
                b,
                AppMsg::FindSession {
                    req: id,
                    entity: req.entity,
                    token: TokenHash::of(&req.token),
                },
            ));
        }
    }

    /// A client asks to log in.
    pub fn login(&mut self, now: Time, login: LoginId, from: IpAddr, req: LoginRequest) {
        if self.refuse_stranger(login, req.protocol, &req.defs_digest) {
            return;
        }
        if req.name.is_empty()
            || req.name.len() > MAX_NAME_BYTES
            || req.password.len() > MAX_PASSWORD_BYTES
        {
            return self.refuse(
                login,
                RefuseReason::InvalidRequest,
                "name or password has a bad length",
            );
        }
        if let Err(why) = self.throttle.login(now, from, &req.name, req.create) {
            let reason = match why {
                Throttled::Busy => RefuseReason::Unavailable,
                _ => RefuseReason::RateLimited,
            };
            return self.refuse(login, reason, &why.to_string());
        }
        self.out.push(Output::CheckAccount(AccountCheck {
            login,
            name: req.name,
            password: req.password,
            create: req.create,
        }));
    }

    /// Sets how long an app may be silent before it is dropped (and, if
    /// it did not say goodbye, declared dead).
    pub fn set_heartbeat_timeout(&mut self, timeout: Duration) {
        self.heartbeat_timeout = timeout;
    }

    /// Sets the login limits.
    pub fn set_login_limits(&mut self, limits: LoginLimits) {
        self.throttle = Throttle::new(limits);
    }

    /// An account check was dropped unchecked: its client had left.
    pub fn account_dropped(&mut self, _login: LoginId) {
        self.throttle.checked();
    }

    /// The account check finished.
    pub fn account_checked(
        &mut self,
        now: Time,
        login: LoginId,
        result: Result<Account, StorageError>,
    ) {
        self.throttle.checked();
        let account = match result {
            Ok(a) => a,
            Err(StorageError::WrongPassword) | Err(StorageError::NoSuchAccount(_)) => {
                return self.refuse(
                    login,
                    RefuseReason::BadCredentials,
                    "unknown account or wrong password",
                )
            }
            Err(
                e @ (StorageError::InvalidName(_)
                | StorageError::EmptyPassword
                | StorageError::PasswordTooShort { .. }
                | StorageError::PasswordTooLong { .. }),
            ) => return self.refuse(login, RefuseReason::InvalidRequest, &e.to_string()),
            Err(e) => {
                tracing::error!(error = %e, "account check failed");
                return self.refuse(login, RefuseReason::Internal, "account check failed");
            }
        };
        // The account's entity may be in the world still (its client lost
        // its connection): the login goes where it is.
        let asked: BTreeSet<AppId> = self.baseapps().into_iter().map(|b| b.app).collect();
        if asked.is_empty() {
            return self.fresh_ticket(now, login, account.id.0, account.name);
        }
        let req = self.ask(now, login, asked.clone());
        if let Some(p) = self.pending.get_mut(&req) {
            p.account = Some((account.id.0, account.name));
        }
        for b in asked {
            self.out.push(Output::App(
                b,
                AppMsg::FindPlayer {
                    req,
                    account: account.id.0,
                },
            ));
        }
    }

    /// Periodic work: time out logins and silent apps, and once a second
    /// balance the cells.
    pub fn tick(&mut self, now: Time) {
        self.settle(now);
        self.throttle.tick(now);
        self.balance_tick(now);
        self.record_tick(now);
        let silent: Vec<AppId> = self
            .apps
            .iter()
            .filter(|(_, a)| now.since(a.last_seen) > self.heartbeat_timeout)
            .map(|(id, _)| *id)
            .collect();
        for app in silent {
            self.app_gone(app, "missed heartbeats");
            self.out.push(Output::Drop(app));
        }
        let late: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| now.since(p.since) > TICKET_WAIT)
            .map(|(r, _)| *r)
            .collect();
        for req in late {
            if let Some(p) = self.pending.remove(&req) {
                self.refuse(
                    p.login,
                    RefuseReason::Unavailable,
                    "the baseapp did not answer; try again",
                );
            }
        }
    }
}

mod directory;
mod record;
mod rejoin;
mod space;
pub mod throttle;
pub use rejoin::Admission;
pub use space::{RetireError, BALANCE_PERIOD, DEFAULT_BALANCE_FLOOR};

#[cfg(test)]
mod tests;
