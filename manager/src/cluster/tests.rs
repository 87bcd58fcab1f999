//! Direct unit tests of the manager core ([`Cluster`]), driven with handcrafted
//! app messages, login requests and account-check results on a fake clock
//! (plain [`Time`] values; nothing here reads a real clock or opens a socket).
//!
//! They check: registration (refusals for a wrong protocol, a wrong
//! definitions digest, a baseapp without a client address; distinct app ids
//! and disjoint entity-id blocks, fresh blocks on `NeedIds`), the cell layout
//! handed to baseapps, the login flow (refusals before any account check,
//! account-check outcomes, choice of the baseapp with the fewest clients,
//! tickets, timeouts) and membership upkeep (heartbeats, silent apps dropped).

use super::{AdmitError, Cluster, LoginId, Output, BALANCE_PERIOD, HEARTBEAT_TIMEOUT, TICKET_WAIT};
use std::net::SocketAddr;
use std::time::Duration;
use tessera::balance::CellReport;
use tessera::proto::app::{AppMsg, CellInfo, CertId, Load, Registration, Role, SpaceInfo};
use tessera::proto::login::{LoginReply, LoginRequest, RefuseReason, ResumeRequest};
use tessera::proto::{Ticket, PROTOCOL_MAJOR};
use tessera::storage::{Account, AccountId, DbId, StorageError};
use tessera::{AppId, Definitions, EntityId, IdBlock, Time};

/// Where the tests' clients log in from.
pub(super) const CLIENT: std::net::IpAddr =
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 7));

/// The fake clock's starting point.
const T0: Time = Time(1_700_000_000_000_000);
const US: Duration = Duration::from_micros(1);

fn space() -> SpaceInfo {
    SpaceInfo {
        bounds: [0.0, 0.0, 1000.0, 1000.0],
        tick_hz: 10,
    }
}

fn defs() -> Definitions {
    tessera_demo::definitions()
}

fn manager() -> Cluster {
    Cluster::new(&defs(), space())
}

fn internal(port: u16) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, 1], port))
}

fn public(port: u16) -> SocketAddr {
    SocketAddr::from(([192, 0, 2, 1], port))
}

pub(super) fn registration(role: Role, port: u16) -> Registration {
    Registration {
        role,
        protocol: PROTOCOL_MAJOR,
        defs_digest: defs().digest,
        internal_addr: internal(port),
        public_addr: (role == Role::Baseapp).then(|| public(port)),
        admin_addr: None,
    }
}

/// The certificate of the app whose internal port is `port`.
pub(super) fn cert(port: u16) -> CertId {
    let mut id = [0u8; 32];
    id[..2].copy_from_slice(&port.to_le_bytes());
    CertId(id)
}

/// The certificate the app sending `msg` (a `Register` or `Rejoin`)
/// presents: the one of its internal port.
pub(super) fn cert_of(msg: &AppMsg) -> CertId {
    match msg {
        AppMsg::Register(reg) => cert(reg.internal_addr.port()),
        AppMsg::Rejoin(r) => cert(r.registration.internal_addr.port()),
        _ => CertId::default(),
    }
}

fn register_msg(role: Role, port: u16) -> AppMsg {
    AppMsg::Register(registration(role, port))
}

/// Registers an app whose internal (and, for a baseapp, public) port is `port`.
fn join(m: &mut Cluster, now: Time, role: Role, port: u16) -> AppId {
    m.register(now, &register_msg(role, port), cert(port))
        .expect("a well-formed registration is accepted")
}

fn heartbeat(m: &mut Cluster, now: Time, app: AppId, busy: f32, entities: u32, clients: u32) {
    m.handle(
        now,
        app,
        AppMsg::Heartbeat(Load {
            busy,
            entities,
            clients,
        }),
    );
}

fn login_req(name: &str) -> LoginRequest {
    LoginRequest {
        protocol: PROTOCOL_MAJOR,
        defs_digest: defs().digest,
        name: name.into(),
        password: "secret".into(),
        create: false,
    }
}

fn account(id: i64, name: &str) -> Account {
    Account {
        id: AccountId(id),
        name: name.into(),
        entity: Some(DbId(id * 10)),
    }
}

/// Every message the outputs send, with its destination.
fn app_msgs(out: &[Output]) -> Vec<(AppId, AppMsg)> {
    out.iter()
        .filter_map(|o| match o {
            Output::App(to, msg) => Some((*to, msg.clone())),
            _ => None,
        })
        .collect()
}

/// Every login answer in the outputs.
fn replies(out: &[Output]) -> Vec<(LoginId, LoginReply)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Login(id, reply) => Some((*id, reply.clone())),
            _ => None,
        })
        .collect()
}

fn account_checks(out: &[Output]) -> Vec<LoginId> {
    out.iter()
        .filter_map(|o| match o {
            Output::CheckAccount(c) => Some(c.login),
            _ => None,
        })
        .collect()
}

fn drops(out: &[Output]) -> Vec<AppId> {
    out.iter()
        .filter_map(|o| match o {
            Output::Drop(app) => Some(*app),
            _ => None,
        })
        .collect()
}

/// The (req, account, name) of every `IssueTicket`, with the baseapp it goes to.
fn ticket_asks(out: &[Output]) -> Vec<(AppId, u64, i64, String)> {
    app_msgs(out)
        .into_iter()
        .filter_map(|(to, msg)| match msg {
            AppMsg::IssueTicket { req, account, name } => Some((to, req, account, name)),
            _ => None,
        })
        .collect()
}

/// The one refusal in the outputs, for `login`.
fn refusal(out: &[Output], login: LoginId) -> (RefuseReason, String) {
    let r = replies(out);
    assert_eq!(r.len(), 1, "exactly one login answer expected: {out:?}");
    match &r[0] {
        (id, LoginReply::Refused { reason, message }) if *id == login => (*reason, message.clone()),
        other => panic!("expected a refusal of login {login}, got {other:?}"),
    }
}

fn block_of(out: &[Output], app: AppId) -> IdBlock {
    app_msgs(out)
        .into_iter()
        .find_map(|(to, msg)| match msg {
            AppMsg::Registered { app: a, ids, .. } if to == app && a == app => Some(ids),
            _ => None,
        })
        .expect("the app got its Registered")
}

fn disjoint(a: IdBlock, b: IdBlock) -> bool {
    a.end <= b.next || b.end <= a.next
}

fn info(m: &Cluster, app: AppId) -> super::AppInfo {
    m.apps()
        .into_iter()
        .find(|a| a.id == app.0)
        .expect("the app is a member")
}

/// A cluster with one cellapp (port 100) and the given number of baseapps
/// (ports 200, 201, ...), outputs drained.
fn cluster(baseapps: u16) -> (Cluster, AppId, Vec<AppId>) {
    let mut m = manager();
    let cell = join(&mut m, T0, Role::Cellapp, 100);
    let bases = (0..baseapps)
        .map(|i| join(&mut m, T0, Role::Baseapp, 200 + i))
        .collect();
    m.drain();
    (m, cell, bases)
}

/// Runs a login through the account check and the search for the
/// account's entity, which no baseapp holds; returns the outputs after.
fn login_checked(m: &mut Cluster, now: Time, login: LoginId, acct: Account) -> Vec<Output> {
    m.login(now, login, CLIENT, login_req(&acct.name));
    assert_eq!(account_checks(&m.drain()), vec![login]);
    m.account_checked(now, login, Ok(acct));
    let mut out = m.drain();
    let asked: Vec<(AppId, u64)> = app_msgs(&out)
        .into_iter()
        .filter_map(|(to, msg)| match msg {
            AppMsg::FindPlayer { req, .. } => Some((to, req)),
            _ => None,
        })
        .collect();
    if asked.is_empty() {
        return out;
    }
    out.retain(|o| !matches!(o, Output::App(_, AppMsg::FindPlayer { .. })));
    for (b, req) in asked {
        m.handle(now, b, AppMsg::NoSession { req });
        out.extend(m.drain());
    }
    out
}

// ---- registration -------------------------------------------------------

#[test]
fn register_refuses_a_wrong_protocol() {
    let mut m = manager();
    let mut msg = register_msg(Role::Cellapp, 100);
    if let AppMsg::Register(reg) = &mut msg {
        reg.protocol = PROTOCOL_MAJOR + 98;
    }
    let err = m.register(T0, &msg, cert_of(&msg)).expect_err("refused");
    assert_eq!(
        err,
        AdmitError::ProtocolVersion {
            theirs: PROTOCOL_MAJOR + 98,
            ours: PROTOCOL_MAJOR
        }
    );
    assert!(m.drain().is_empty());
    assert!(m.apps().is_empty());
}

#[test]
fn register_refuses_a_wrong_digest_and_names_the_mismatch() {
    let mut m = manager();
    let mut msg = register_msg(Role::Baseapp, 200);
    let wrong = [0xab; 32];
    if let AppMsg::Register(reg) = &mut msg {
        reg.defs_digest = wrong;
    }
    let err = m.register(T0, &msg, cert_of(&msg)).expect_err("refused");
    assert_eq!(
        err,
        AdmitError::DefinitionsMismatch {
            theirs: Definitions::hex(&wrong),
            ours: defs().digest_hex(),
        }
    );
    assert!(m.drain().is_empty());
    assert!(m.apps().is_empty());
}

#[test]
fn register_refuses_a_baseapp_without_a_public_address() {
    let mut m = manager();
    let mut msg = register_msg(Role::Baseapp, 200);
    if let AppMsg::Register(reg) = &mut msg {
        reg.public_addr = None;
    }
    let err = m.register(T0, &msg, cert_of(&msg)).expect_err("refused");
    assert_eq!(err, AdmitError::NoClientAddress);
    assert!(m.drain().is_empty());
    assert!(m.apps().is_empty());
    // A cellapp needs none.
    join(&mut m, T0, Role::Cellapp, 100);
}

#[test]
fn register_refuses_a_first_message_that_is_not_register() {
    let mut m = manager();
    let err = m
        .register(T0, &AppMsg::NeedIds, CertId::default())
        .expect_err("refused");
    assert_eq!(err, AdmitError::NotAJoin);
    assert!(m.drain().is_empty());
}

#[test]
fn registered_apps_get_distinct_ids_and_disjoint_id_blocks() {
    let mut m = manager();
    let apps = [
        join(&mut m, T0, Role::Cellapp, 100),
        join(&mut m, T0, Role::Baseapp, 200),
        join(&mut m, T0, Role::Cellapp, 101),
        join(&mut m, T0, Role::Baseapp, 201),
    ];
    let out = m.drain();
    for (i, a) in apps.iter().enumerate() {
        assert_ne!(*a, tessera::MANAGER, "app 0 is the manager's");
        for b in &apps[i + 1..] {
            assert_ne!(a, b);
        }
    }
    let blocks: Vec<IdBlock> = apps.iter().map(|a| block_of(&out, *a)).collect();
    for (i, a) in blocks.iter().enumerate() {
        assert!(a.remaining() > 0, "{a:?}");
        for b in &blocks[i + 1..] {
            assert!(disjoint(*a, *b), "{a:?} overlaps {b:?}");
        }
    }
    for (to, msg) in app_msgs(&out) {
        if let AppMsg::Registered { app, space: s, .. } = msg {
            assert_eq!(app, to, "Registered goes to the app it names");
            assert_eq!(s, space());
        }
    }
    assert_eq!(m.apps().len(), 4);
    let roles: Vec<String> = m.apps().into_iter().map(|a| a.role).collect();
    assert_eq!(roles, ["cellapp", "baseapp", "cellapp", "baseapp"]);
}

#[test]
fn need_ids_grants_a_fresh_disjoint_block() {
    let mut m = manager();
    let a = join(&mut m, T0, Role::Cellapp, 100);
    let b = join(&mut m, T0, Role::Baseapp, 200);
    let out = m.drain();
    let mut blocks = vec![block_of(&out, a), block_of(&out, b)];
    for from in [a, b, a] {
        m.handle(T0, from, AppMsg::NeedIds);
        let out = m.drain();
        let msgs = app_msgs(&out);
        assert_eq!(msgs.len(), 1, "{out:?}");
        let (to, AppMsg::Ids(block)) = msgs[0].clone() else {
            panic!("expected Ids, got {out:?}");
        };
        assert_eq!(to, from);
        assert!(block.remaining() > 0);
        for old in &blocks {
            assert!(disjoint(block, *old), "{block:?} overlaps {old:?}");
        }
        blocks.push(block);
    }
    // A stranger gets nothing.
    m.handle(T0, AppId(99), AppMsg::NeedIds);
    assert!(m.drain().is_empty());
}

// ---- cells --------------------------------------------------------------

#[test]
fn a_registering_baseapp_gets_the_current_cells() {
    let mut m = manager();
    let lonely = join(&mut m, T0, Role::Baseapp, 200);
    let out = m.drain();
    assert!(
        app_msgs(&out).contains(&(lonely, AppMsg::Cells(vec![]))),
        "{out:?}"
    );

    let c1 = join(&mut m, T0, Role::Cellapp, 100);
    let c2 = join(&mut m, T0, Role::Cellapp, 101);
    m.drain();
    let b = join(&mut m, T0, Role::Baseapp, 201);
    let msgs = app_msgs(&m.drain());
    let expected = AppMsg::Cells(vec![
        CellInfo {
            app: c1,
            addr: internal(100),
            cert: cert(100),
        },
        CellInfo {
            app: c2,
            addr: internal(101),
            cert: cert(101),
        },
    ]);
    // Registered first, then the cells (other messages may follow).
    let to_b: Vec<&AppMsg> = msgs
        .iter()
        .filter(|(to, m)| *to == b && matches!(m, AppMsg::Registered { .. } | AppMsg::Cells(_)))
        .map(|(_, m)| m)
        .collect();
    assert_eq!(to_b.len(), 2, "{msgs:?}");
    assert!(matches!(to_b[0], AppMsg::Registered { .. }), "{msgs:?}");
    assert_eq!(to_b[1], &expected);
    // Nobody else is sent cells because a baseapp joined.
    assert_eq!(cells_sent(&msgs), vec![(b, expected)]);
}

/// The `Cells` messages among `msgs`.
fn cells_sent(msgs: &[(AppId, AppMsg)]) -> Vec<(AppId, AppMsg)> {
    msgs.iter()
        .filter(|(_, m)| matches!(m, AppMsg::Cells(_)))
        .cloned()
        .collect()
}

#[test]
fn a_new_cellapp_sends_every_baseapp_updated_cells() {
    let mut m = manager();
    let b1 = join(&mut m, T0, Role::Baseapp, 200);
    let b2 = join(&mut m, T0, Role::Baseapp, 201);
    let c1 = join(&mut m, T0, Role::Cellapp, 100);
    m.drain();
    let c2 = join(&mut m, T0, Role::Cellapp, 101);
    let msgs = app_msgs(&m.drain());
    let cells = AppMsg::Cells(vec![
        CellInfo {
            app: c1,
            addr: internal(100),
            cert: cert(100),
        },
        CellInfo {
            app: c2,
            addr: internal(101),
            cert: cert(101),
        },
    ]);
    // Every baseapp, and no cellapp, gets the new list.
    assert_eq!(cells_sent(&msgs), vec![(b1, cells.clone()), (b2, cells)]);

    // A cellapp leaving updates them too.
    m.handle(T0, c1, AppMsg::Goodbye);
    let msgs = app_msgs(&m.drain());
    let cells = AppMsg::Cells(vec![CellInfo {
        app: c2,
        addr: internal(101),
        cert: cert(101),
    }]);
    assert_eq!(cells_sent(&msgs), vec![(b1, cells.clone()), (b2, cells)]);
}

// ---- login: refusals before the account check ----------------------------

#[test]
fn a_login_with_a_wrong_protocol_is_refused_without_an_account_check() {
    let (mut m, _, _) = cluster(1);
    let mut req = login_req("alice");
    req.protocol = PROTOCOL_MAJOR + 1;
    m.login(T0, 7, CLIENT, req);
    let out = m.drain();
    assert!(account_checks(&out).is_empty(), "{out:?}");
    let (reason, message) = refusal(&out, 7);
    assert_eq!(reason, RefuseReason::ProtocolVersion);
    assert!(
        message.contains(&format!("protocol {}", PROTOCOL_MAJOR + 1)),
        "{message}"
    );
}

#[test]
fn a_login_with_a_wrong_digest_is_refused_without_an_account_check() {
    let (mut m, _, _) = cluster(1);
    let mut req = login_req("alice");
    req.defs_digest = [0x11; 32];
    m.login(T0, 8, CLIENT, req);
    let out = m.drain();
    assert!(account_checks(&out).is_empty(), "{out:?}");
    let (reason, message) = refusal(&out, 8);
    assert_eq!(reason, RefuseReason::DefinitionsMismatch);
    assert!(message.contains("digest mismatch"), "{message}");
    assert!(
        message.contains(&Definitions::hex(&[0x11; 32])),
        "{message}"
    );
}

#[test]
fn a_login_with_a_bad_name_or_password_length_is_refused_without_an_account_check() {
    let (mut m, _, _) = cluster(1);
    let long_name = "n".repeat(tessera::proto::login::MAX_NAME_BYTES + 1);
    let long_password = "p".repeat(tessera::proto::login::MAX_PASSWORD_BYTES + 1);
    let cases = [
        ("", "secret".to_string()),
        (long_name.as_str(), "secret".to_string()),
        ("alice", long_password),
    ];
    for (i, (name, password)) in cases.into_iter().enumerate() {
        let login = 20 + i as LoginId;
        let mut req = login_req(name);
        req.password = password;
        m.login(T0, login, CLIENT, req);
        let out = m.drain();
        assert!(account_checks(&out).is_empty(), "{out:?}");
        assert_eq!(refusal(&out, login).0, RefuseReason::InvalidRequest);
    }
}

// ---- login: the account check and the ticket -----------------------------

#[test]
fn a_good_login_asks_for_an_account_check() {
    let (mut m, _, _) = cluster(1);
    let mut req = login_req("alice");
    req.create = true;
    m.login(T0, 3, CLIENT, req);
    let out = m.drain();
    assert_eq!(out.len(), 1, "{out:?}");
    match &out[0] {
        Output::CheckAccount(c) => {
            assert_eq!(c.login, 3);
            assert_eq!(c.name, "alice");
            assert_eq!(c.password, "secret");
            assert!(c.create);
        }
        other => panic!("expected CheckAccount, got {other:?}"),
    }
}

#[test]
fn a_checked_login_gets_a_ticket_from_the_baseapp_with_the_fewest_clients() {
    let (mut m, _, b) = cluster(3);
    heartbeat(&mut m, T0, b[0], 0.1, 50, 5);
    heartbeat(&mut m, T0, b[1], 0.1, 50, 2);
    heartbeat(&mut m, T0, b[2], 0.1, 50, 2);
    let out = login_checked(&mut m, T0, 11, account(42, "alice"));
    // Only the IssueTicket; the client is not answered yet.
    assert!(replies(&out).is_empty(), "{out:?}");
    let asks = ticket_asks(&out);
    assert_eq!(asks.len(), 1, "{out:?}");
    let (to, req, acct, name) = asks[0].clone();
    // b[1] and b[2] tie on 2 clients: the lower id wins.
    assert_eq!(to, b[1]);
    assert_eq!((acct, name.as_str()), (42, "alice"));
    assert_eq!(app_msgs(&out).len(), 1, "{out:?}");

    let ticket = Ticket([7; 16]);
    m.handle(T0, b[1], AppMsg::TicketIssued { req, ticket });
    let out = m.drain();
    assert_eq!(
        replies(&out),
        vec![(
            11,
            LoginReply::Granted {
                baseapp: public(201),
                ticket
            }
        )]
    );
    // The baseapp is counted one client more at once.
    assert_eq!(info(&m, b[1]).clients, 3);

    // A second ticket for the same request is ignored.
    m.handle(T0, b[1], AppMsg::TicketIssued { req, ticket });
    assert!(m.drain().is_empty());
}

#[test]
fn granted_logins_spread_over_baseapps() {
    let (mut m, _, b) = cluster(2);
    let mut chosen = Vec::new();
    for (login, acct) in [(1, 101), (2, 102), (3, 103)] {
        let out = login_checked(&mut m, T0, login, account(acct, "p"));
        let (to, req, _, _) = ticket_asks(&out)[0].clone();
        chosen.push(to);
        m.handle(
            T0,
            to,
            AppMsg::TicketIssued {
                req,
                ticket: Ticket([login as u8; 16]),
            },
        );
        assert!(matches!(
            replies(&m.drain())[..],
            [(l, LoginReply::Granted { .. })] if l == login
        ));
    }
    // 0/0: lowest id; then 1/0: the other; then 1/1: lowest id again.
    assert_eq!(chosen, vec![b[0], b[1], b[0]]);
}

#[test]
fn wrong_password_and_no_such_account_are_bad_credentials() {
    let (mut m, _, _) = cluster(1);
    let errors = [
        StorageError::WrongPassword,
        StorageError::NoSuchAccount("alice".into()),
    ];
    for (i, e) in errors.into_iter().enumerate() {
        let login = 30 + i as LoginId;
        m.login(T0, login, CLIENT, login_req("alice"));
        m.drain();
        m.account_checked(T0, login, Err(e));
        let out = m.drain();
        assert!(ticket_asks(&out).is_empty(), "{out:?}");
        assert_eq!(refusal(&out, login).0, RefuseReason::BadCredentials);
    }
}

#[test]
fn other_account_check_failures_are_invalid_request_or_internal() {
    let (mut m, _, _) = cluster(1);
    let cases = [
        (
            StorageError::InvalidName("a b".into()),
            RefuseReason::InvalidRequest,
        ),
        (StorageError::EmptyPassword, RefuseReason::InvalidRequest),
        (
            StorageError::PasswordTooLong { len: 500, max: 128 },
            RefuseReason::InvalidRequest,
        ),
        (
            StorageError::Hash("broken hash".into()),
            RefuseReason::Internal,
        ),
    ];
    for (i, (e, expected)) in cases.into_iter().enumerate() {
        let login = 40 + i as LoginId;
        m.account_checked(T0, login, Err(e));
        let out = m.drain();
        assert!(ticket_asks(&out).is_empty(), "{out:?}");
        assert_eq!(refusal(&out, login).0, expected);
    }
}

#[test]
fn no_cellapp_means_unavailable() {
    let mut m = manager();
    join(&mut m, T0, Role::Baseapp, 200);
    m.drain();
    let out = login_checked(&mut m, T0, 5, account(1, "alice"));
    assert!(ticket_asks(&out).is_empty(), "{out:?}");
    assert_eq!(refusal(&out, 5).0, RefuseReason::Unavailable);
}

#[test]
fn no_baseapp_means_unavailable() {
    let (mut m, _, _) = cluster(0);
    let out = login_checked(&mut m, T0, 6, account(1, "alice"));
    assert!(ticket_asks(&out).is_empty(), "{out:?}");
    assert_eq!(refusal(&out, 6).0, RefuseReason::Unavailable);
}

#[test]
fn a_login_whose_baseapp_does_not_answer_in_time_is_refused_on_tick() {
    let (mut m, cell, b) = cluster(1);
    let t1 = T0.plus(Duration::from_secs(1));
    let out = login_checked(&mut m, t1, 9, account(1, "alice"));
    let (_, req, _, _) = ticket_asks(&out)[0].clone();
    // Keep both apps alive so only the login can time out.
    let t2 = t1.plus(TICKET_WAIT - Duration::from_secs(1));
    heartbeat(&mut m, t2, cell, 0.0, 0, 0);
    heartbeat(&mut m, t2, b[0], 0.0, 0, 0);

    m.tick(t1.plus(TICKET_WAIT));
    assert!(m.drain().is_empty(), "not late yet");

    m.tick(t1.plus(TICKET_WAIT + US));
    let out = m.drain();
    let (reason, message) = refusal(&out, 9);
    assert_eq!(reason, RefuseReason::Unavailable);
    assert!(message.contains("did not answer"), "{message}");
    assert!(drops(&out).is_empty(), "{out:?}");

    // A late ticket changes nothing.
    m.handle(
        t1.plus(TICKET_WAIT + US),
        b[0],
        AppMsg::TicketIssued {
            req,
            ticket: Ticket([1; 16]),
        },
    );
    assert!(m.drain().is_empty());
    assert_eq!(info(&m, b[0]).clients, 0);
}

#[test]
fn a_silent_app_is_dropped_on_tick_and_its_pending_logins_are_refused() {
    let (mut m, cell, b) = cluster(2);
    // b[0] speaks last at T0 (3 clients), answering where two accounts
    // are; b[1] and the cellapp keep talking.
    heartbeat(&mut m, T0, b[0], 0.0, 0, 3);
    heartbeat(&mut m, T0, b[1], 0.0, 0, 5);
    let finds = |out: &[Output]| -> Vec<(AppId, u64)> {
        app_msgs(out)
            .into_iter()
            .filter_map(|(to, msg)| match msg {
                AppMsg::FindPlayer { req, .. } => Some((to, req)),
                _ => None,
            })
            .collect()
    };
    let mut asks = Vec::new();
    for (login, name) in [(13, "alice"), (14, "bob")] {
        m.login(T0, login, CLIENT, login_req(name));
        m.drain();
        m.account_checked(T0, login, Ok(account(login as i64, name)));
        asks.push(finds(&m.drain()));
    }
    let t1 = T0.plus(HEARTBEAT_TIMEOUT - Duration::from_secs(1));
    // Alice's search ends at T0: a fresh ticket from b[0], the emptier.
    for (to, req) in &asks[0] {
        m.handle(T0, *to, AppMsg::NoSession { req: *req });
    }
    assert_eq!(ticket_asks(&m.drain())[0].0, b[0]);
    // Bob's at t1, when b[1] has become the emptier: its ticket is asked
    // at t1, and is not late when b[0] is dropped.
    heartbeat(&mut m, t1, cell, 0.0, 0, 0);
    heartbeat(&mut m, t1, b[1], 0.0, 0, 1);
    let (to0, req0) = asks[1]
        .iter()
        .find(|(to, _)| *to == b[0])
        .copied()
        .expect("b[0] asked");
    m.handle(T0, to0, AppMsg::NoSession { req: req0 });
    let (to1, req1) = asks[1]
        .iter()
        .find(|(to, _)| *to == b[1])
        .copied()
        .expect("b[1] asked");
    m.handle(t1, to1, AppMsg::NoSession { req: req1 });
    let (to, req14, _, _) = ticket_asks(&m.drain())[0].clone();
    assert_eq!(to, b[1]);
    heartbeat(&mut m, T0.plus(HEARTBEAT_TIMEOUT), cell, 0.0, 0, 0);

    m.tick(T0.plus(HEARTBEAT_TIMEOUT));
    assert!(m.drain().is_empty(), "exactly the timeout is not beyond it");

    let t = T0.plus(HEARTBEAT_TIMEOUT + US);
    m.tick(t);
    let out = m.drain();
    assert_eq!(drops(&out), vec![b[0]]);
    let (reason, message) = refusal(&out, 13);
    assert_eq!(reason, RefuseReason::Unavailable);
    assert!(message.contains("went away"), "{message}");
    let members: Vec<u32> = m.apps().into_iter().map(|a| a.id).collect();
    assert_eq!(members, vec![cell.0, b[1].0]);

    // b[0] is no longer heard; login 14 on b[1] still completes.
    heartbeat(&mut m, t, b[0], 0.0, 0, 0);
    m.handle(t, b[0], AppMsg::NeedIds);
    assert!(m.drain().is_empty());
    let ticket = Ticket([2; 16]);
    m.handle(t, b[1], AppMsg::TicketIssued { req: req14, ticket });
    assert_eq!(
        replies(&m.drain()),
        vec![(
            14,
            LoginReply::Granted {
                baseapp: public(201),
                ticket
            }
        )]
    );
}

#[test]
fn a_silent_cellapp_is_dropped_and_baseapps_get_the_new_cells() {
    let (mut m, cell, b) = cluster(2);
    let t = T0.plus(HEARTBEAT_TIMEOUT);
    heartbeat(&mut m, t, b[0], 0.0, 0, 0);
    heartbeat(&mut m, t, b[1], 0.0, 0, 0);
    m.tick(t.plus(US));
    let out = m.drain();
    assert_eq!(drops(&out), vec![cell]);
    let msgs = app_msgs(&out);
    assert!(msgs.contains(&(b[0], AppMsg::Cells(vec![]))), "{msgs:?}");
    assert!(msgs.contains(&(b[1], AppMsg::Cells(vec![]))), "{msgs:?}");
    // With no cellapp left, logins are refused.
    let out = login_checked(&mut m, t.plus(US), 16, account(1, "alice"));
    assert_eq!(refusal(&out, 16).0, RefuseReason::Unavailable);
}

#[test]
fn a_goodbye_removes_the_app_and_refuses_its_pending_logins() {
    let (mut m, _, b) = cluster(1);
    login_checked(&mut m, T0, 17, account(1, "alice"));
    m.handle(T0, b[0], AppMsg::Goodbye);
    let out = m.drain();
    assert_eq!(refusal(&out, 17).0, RefuseReason::Unavailable);
    assert!(drops(&out).is_empty(), "a goodbye closes its own link");
    assert_eq!(m.apps().len(), 1);
}

// ---- heartbeats ----------------------------------------------------------

#[test]
fn heartbeats_update_load_and_counts() {
    let (mut m, cell, b) = cluster(1);
    heartbeat(&mut m, T0, cell, 0.25, 300, 0);
    heartbeat(&mut m, T0, b[0], 0.5, 40, 7);
    assert!(m.drain().is_empty(), "heartbeats are not answered");
    let c = info(&m, cell);
    assert_eq!((c.load, c.entities, c.clients), (0.25, 300, 0));
    let bi = info(&m, b[0]);
    assert_eq!((bi.load, bi.entities, bi.clients), (0.5, 40, 7));
    assert_eq!(bi.public_addr, Some(public(200)));
    assert_eq!(bi.internal_addr, internal(200));

    for (busy, expected) in [
        (f32::NAN, 0.0),
        (f32::INFINITY, 0.0),
        (f32::NEG_INFINITY, 0.0),
        (3.0, 1.0),
        (-2.0, 0.0),
        (0.75, 0.75),
    ] {
        heartbeat(&mut m, T0, cell, busy, 1, 0);
        assert_eq!(info(&m, cell).load, expected, "busy {busy}");
    }
}

#[test]
fn any_message_keeps_an_app_alive() {
    let (mut m, cell, b) = cluster(1);
    let t = T0.plus(HEARTBEAT_TIMEOUT);
    m.handle(t, cell, AppMsg::NeedIds);
    heartbeat(&mut m, t, b[0], 0.0, 0, 0);
    m.drain();
    m.tick(t.plus(HEARTBEAT_TIMEOUT));
    assert!(m.drain().is_empty());
    m.tick(t.plus(HEARTBEAT_TIMEOUT + US));
    let mut dropped = drops(&m.drain());
    dropped.sort();
    assert_eq!(dropped, vec![cell, b[0]]);
    assert!(m.apps().is_empty());
}

#[test]
fn a_login_goes_to_the_baseapp_already_holding_the_accounts_entity() {
    let (mut m, _, bases) = cluster(2);
    m.login(T0, 7, CLIENT, login_req("ann"));
    m.drain();
    m.account_checked(T0, 7, Ok(account(42, "ann")));
    let asked: Vec<(AppId, u64)> = app_msgs(&m.drain())
        .into_iter()
        .filter_map(|(to, msg)| match msg {
            AppMsg::FindPlayer { req, account: 42 } => Some((to, req)),
            _ => None,
        })
        .collect();
    assert_eq!(asked.len(), 2, "every baseapp is asked");
    let req = asked[0].1;
    m.handle(T0, bases[0], AppMsg::NoSession { req });
    assert!(m.drain().is_empty(), "one no is not all");
    let ticket = Ticket([3; 16]);
    m.handle(T0, bases[1], AppMsg::TicketIssued { req, ticket });
    match &replies(&m.drain())[..] {
        [(7, LoginReply::Granted { ticket: t, baseapp })] => {
            assert_eq!(*t, ticket);
            assert_eq!(
                Some(*baseapp),
                m.apps()
                    .iter()
                    .find(|a| AppId(a.id) == bases[1])
                    .and_then(|a| a.public_addr)
            );
        }
        other => panic!("expected a grant to the holder, got {other:?}"),
    }
}

#[test]
fn a_resume_asks_every_baseapp_and_is_refused_when_none_holds_the_session() {
    let (mut m, _, bases) = cluster(2);
    let req = ResumeRequest {
        protocol: PROTOCOL_MAJOR,
        defs_digest: m.digest,
        entity: EntityId(9),
        token: Ticket([1; 16]),
    };
    m.resume(T0, 8, CLIENT, req);
    let asked: Vec<(AppId, u64)> = app_msgs(&m.drain())
        .into_iter()
        .filter_map(|(to, msg)| match msg {
            AppMsg::FindSession {
                req,
                entity: EntityId(9),
                ..
            } => Some((to, req)),
            _ => None,
        })
        .collect();
    assert_eq!(asked.iter().map(|(b, _)| *b).collect::<Vec<_>>(), bases);
    for (b, req) in asked {
        m.handle(T0, b, AppMsg::NoSession { req });
    }
    let (reason, _) = refusal(&m.drain(), 8);
    assert_eq!(reason, RefuseReason::Unavailable);
}

// ---- balancing -----------------------------------------------------------

/// Every cell reports its share of `points` at `cost` load per point.
fn report_loads(m: &mut Cluster, now: Time, points: &[(f32, f32, f32)], cost: f32) {
    let layout = m.layout().expect("a layout").clone();
    for c in layout.cells() {
        let here: Vec<(f32, f32, f32)> = points
            .iter()
            .copied()
            .filter(|(x, z, _)| layout.locate(*x, *z) == c.cell)
            .collect();
        let load = here.len() as f32 * cost;
        let report = CellReport::from_points(c.cell, layout.epoch, &c.rect, &here, load);
        m.handle(now, c.app, AppMsg::CellLoad(Box::new(report)));
    }
}

#[test]
fn lines_stay_while_every_cell_is_under_the_load_floor() {
    let mut m = manager();
    m.set_balance_floor(0.1);
    join(&mut m, T0, Role::Cellapp, 100);
    join(&mut m, T0, Role::Cellapp, 101);
    // Everything crowds one corner: a policy would move the line to it.
    let crowd: Vec<(f32, f32, f32)> = (0..100)
        .map(|i| (10.0 + (i % 10) as f32, 10.0 + (i / 10) as f32, 1.0))
        .collect();
    let epoch = m.layout().expect("a layout").epoch;
    let mut now = T0;
    for _ in 0..10 {
        report_loads(&mut m, now, &crowd, 0.0009);
        now = now.plus(BALANCE_PERIOD);
        m.tick(now);
    }
    assert_eq!(
        m.layout().expect("a layout").epoch,
        epoch,
        "a cell at 9 % of its tick, under a floor of 10 %, moved a line"
    );
    // The same crowd at a load over the floor is balanced.
    for _ in 0..10 {
        report_loads(&mut m, now, &crowd, 0.005);
        now = now.plus(BALANCE_PERIOD);
        m.tick(now);
    }
    assert!(
        m.layout().expect("a layout").epoch > epoch,
        "no line moved at 50 %"
    );
}
