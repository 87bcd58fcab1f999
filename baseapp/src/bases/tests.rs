//! Direct unit tests of the baseapp core ([`Bases`]), driven with
//! handcrafted app messages, client inputs and storage answers on a fake
//! clock (plain [`Time`] values; no sockets, no database, no real clock).
//!
//! They check: tickets (issued to the manager, spent by any attempt, expiry),
//! the hello (refusals for an unknown ticket, a wrong digest or protocol,
//! each a `Refused` then a `REFUSED` close naming the problem; a good one asks
//! storage for the player), the welcome and the placement of the entity in a
//! cell (at once or when the cell link comes up), what a client may send
//! (calls checked against the definitions, finite moves only), forwarding of
//! cell packets to clients, and persistence (save on logout with the final
//! cell state, periodic saves of dirty entities, clean stop and forced drain).

use super::{
    BaseConfig, Bases, ClientId, ClientInput, ClientOut, Closing, Output, Refusal, StoreDone,
    StoreOp, Violation,
};
use crate::behavior::{BaseBehavior, BaseBehaviors, BaseCalled, BaseCaller, BaseCtx};
use crate::persist;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tessera::defs::TypeDef;
use tessera::frame;
use tessera::proto::app::{
    AppMsg, CellInfo, CellState, CertId, ClientPacket, Delivery, EntityMsg, SpaceInfo,
};
use tessera::proto::client::{ClientDatagram, ClientMsg, ServerMsg};
use tessera::proto::close;
use tessera::proto::{Pos, Ticket, TokenHash, PROTOCOL_MAJOR};
use tessera::storage::{DbId, StoredEntity};
use tessera::{AppId, Definitions, EntityId, IdBlock, Time, Value, MANAGER};

/// The fake clock's starting point.
const T0: Time = Time(1_700_000_000_000_000);
const US: Duration = Duration::from_micros(1);
/// This baseapp.
const ME: AppId = AppId(2);
/// The one cellapp.
const CELL: AppId = AppId(1);
/// Where fresh rows in these tests put the player.
const SPAWN: Pos = [12.0, 0.0, 34.0];

fn space() -> SpaceInfo {
    SpaceInfo {
        bounds: [0.0, 0.0, 1000.0, 1000.0],
        tick_hz: 10,
    }
}

fn cell_info() -> CellInfo {
    CellInfo {
        app: CELL,
        addr: SocketAddr::from(([10, 0, 0, 1], 100)),
        cert: CertId::default(),
    }
}

/// A baseapp core, its definitions and a fake clock.
struct Rig {
    b: Bases,
    defs: Arc<Definitions>,
    now: Time,
    next_req: u64,
}

/// One logged-in player.
#[derive(Clone, Copy, Debug)]
struct Player {
    client: ClientId,
    account: i64,
    entity: EntityId,
    db: DbId,
}

/// The base method these tests call: `add_gold(n)` adds to `gold`,
/// saturating, as a game's base behaviour would.
struct Gold;

impl BaseBehavior for Gold {
    fn call(&self, ctx: &mut BaseCtx<'_>, call: &BaseCalled<'_>) {
        if let (true, Some(n)) = (
            call.name() == "add_gold",
            call.arg(0).and_then(Value::as_int),
        ) {
            let gold = ctx.get_int("gold").saturating_add(n);
            assert_eq!(ctx.set("gold", Value::Int(gold)), Ok(()));
        }
    }
}

/// The baseapp's settings for the demo world's definitions, its players'
/// bases running `behavior`.
fn config(behavior: impl BaseBehavior) -> BaseConfig {
    let mut behaviors = BaseBehaviors::default();
    behaviors.register("Avatar", behavior);
    BaseConfig {
        player_type: "Avatar".into(),
        behaviors,
        ..BaseConfig::default()
    }
}

fn rig_with(ids: IdBlock) -> Rig {
    rig_configured(ids, config(Gold))
}

fn rig_configured(ids: IdBlock, config: BaseConfig) -> Rig {
    rig_in(tessera_demo::definitions(), ids, config)
}

fn rig_in(defs: Definitions, ids: IdBlock, config: BaseConfig) -> Rig {
    let defs = Arc::new(defs);
    let b = Bases::new(ME, defs.clone(), config, space(), ids, [7; 32]);
    Rig {
        b,
        defs,
        now: T0,
        next_req: 1,
    }
}

/// A rig whose players' bases run `behavior`.
fn rig_playing(behavior: impl BaseBehavior) -> Rig {
    rig_configured(
        IdBlock {
            next: 1000,
            end: 2000,
        },
        config(behavior),
    )
}

fn rig() -> Rig {
    rig_with(IdBlock {
        next: 1000,
        end: 1000 + (1 << 20),
    })
}

impl Rig {
    fn avatar(&self) -> &TypeDef {
        self.defs
            .by_name("Avatar")
            .expect("the demo defines Avatar")
    }

    fn prop(&self, name: &str) -> u16 {
        self.avatar().prop(name).expect("a demo property").index
    }

    fn method(&self, name: &str) -> u16 {
        self.avatar().method(name).expect("a demo method").index
    }

    fn advance(&mut self, d: Duration) -> Time {
        self.now = self.now.plus(d);
        self.now
    }

    /// The manager asks for a ticket; returns it.
    fn issue(&mut self, account: i64) -> Ticket {
        let req = self.next_req;
        self.next_req += 1;
        self.b.handle(
            self.now,
            MANAGER,
            AppMsg::IssueTicket {
                req,
                account,
                name: format!("player{account}"),
            },
        );
        let out = self.b.drain();
        assert_eq!(out.len(), 1, "{out:?}");
        match &out[0] {
            Output::App(to, AppMsg::TicketIssued { req: r, ticket }) => {
                assert_eq!(*to, MANAGER);
                assert_eq!(*r, req);
                *ticket
            }
            other => panic!("expected TicketIssued to the manager, got {other:?}"),
        }
    }

    fn hello(&mut self, client: ClientId, ticket: Ticket) -> Vec<Output> {
        let digest = self.defs.digest;
        self.b
            .hello(client, PROTOCOL_MAJOR, digest, ticket, self.now);
        self.b.drain()
    }

    /// A stored row of a new Avatar (its defaults) at [`SPAWN`].
    fn fresh_row(&self, db: DbId) -> StoredEntity {
        let ty = self.avatar();
        StoredEntity {
            db_id: db,
            type_name: ty.name.clone(),
            format_version: persist::FORMAT_VERSION,
            data: persist::encode(ty, SPAWN, 0.25, &ty.defaults()),
            fence: 0,
        }
    }

    fn loaded(&mut self, client: ClientId, result: Result<StoredEntity, String>) -> Vec<Output> {
        self.b
            .store_done(self.now, StoreDone::Player { client, result });
        self.b.drain()
    }

    /// Ticket, hello, load: a player in the world. Returns it and the
    /// outputs of the load (welcome and, with a cell, the cell creation).
    fn login(&mut self, client: ClientId, account: i64) -> (Player, Vec<Output>) {
        let ticket = self.issue(account);
        let out = self.hello(client, ticket);
        assert_eq!(loads(&out), vec![(client, account)], "{out:?}");
        let db = DbId(account * 10);
        let out = self.loaded(client, Ok(self.fresh_row(db)));
        let entity = match &sent(&out, client)[..] {
            [ServerMsg::Welcome { entity, .. }, ServerMsg::Session { .. }] => *entity,
            other => panic!("expected a Welcome and a session token, got {other:?}"),
        };
        (
            Player {
                client,
                account,
                entity,
                db,
            },
            out,
        )
    }

    /// The manager announces the cellapp and the link to it comes up.
    fn cell_up(&mut self) -> Vec<Output> {
        self.b
            .handle(self.now, MANAGER, AppMsg::Cells(vec![cell_info()]));
        self.b.link_up(CELL);
        self.b.drain()
    }

    fn input(&mut self, client: ClientId, input: ClientInput) -> Vec<Output> {
        self.b.client_input(self.now, client, input);
        self.b.drain()
    }

    fn call(&mut self, client: ClientId, method: u16, args: Vec<Value>) -> Vec<Output> {
        self.input(client, ClientInput::Msg(ClientMsg::Call { method, args }))
    }

    fn cell_says(&mut self, msg: AppMsg) -> Vec<Output> {
        self.b.handle(self.now, CELL, msg);
        self.b.drain()
    }

    fn decode_row(&self, row: &StoredEntity) -> persist::Loaded {
        assert_eq!(row.type_name, "Avatar");
        assert_eq!(row.format_version, persist::FORMAT_VERSION);
        persist::decode(self.avatar(), row.format_version, &row.data).expect("the row decodes")
    }
}

// ---- reading outputs -------------------------------------------------------

/// The stream messages sent to `client`, decoded, in order.
fn sent(out: &[Output], client: ClientId) -> Vec<ServerMsg> {
    out.iter()
        .filter_map(|o| match o {
            Output::Client(c, ClientOut::Reliable(bytes)) if *c == client => {
                Some(frame::decode::<ServerMsg>(bytes).expect("a ServerMsg the client can decode"))
            }
            _ => None,
        })
        .collect()
}

/// The closes asked for `client`, in order.
fn closes(out: &[Output], client: ClientId) -> Vec<Closing> {
    out.iter()
        .filter_map(|o| match o {
            Output::Client(c, ClientOut::Close(why)) if *c == client => Some(why.clone()),
            _ => None,
        })
        .collect()
}

fn app_msgs(out: &[Output]) -> Vec<(AppId, AppMsg)> {
    out.iter()
        .filter_map(|o| match o {
            Output::App(to, msg) => Some((*to, msg.clone())),
            _ => None,
        })
        .collect()
}

/// (client, account) of every `LoadPlayer`.
fn loads(out: &[Output]) -> Vec<(ClientId, i64)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Store(StoreOp::LoadPlayer {
                client, account, ..
            }) => Some((*client, *account)),
            _ => None,
        })
        .collect()
}

/// Every `Save` batch.
fn saves(out: &[Output]) -> Vec<Vec<StoredEntity>> {
    out.iter()
        .filter_map(|o| match o {
            Output::Store(StoreOp::Save(rows)) => Some(rows.clone()),
            _ => None,
        })
        .collect()
}

fn saved_ids(out: &[Output]) -> BTreeSet<DbId> {
    saves(out).into_iter().flatten().map(|r| r.db_id).collect()
}

/// Asserts the client was refused for `why`: a `Refused` naming it, then
/// a close with code `REFUSED`, and nothing else.
fn assert_refused(out: &[Output], client: ClientId, why: Refusal) {
    assert_eq!(out.len(), 2, "a refusal is a message and a close: {out:?}");
    match (&out[0], &out[1]) {
        (
            Output::Client(c1, ClientOut::Reliable(bytes)),
            Output::Client(c2, ClientOut::Close(closing)),
        ) if *c1 == client && *c2 == client => {
            assert_eq!(closing, &Closing::Refused(why.clone()));
            assert_eq!(closing.code(), close::REFUSED);
            let msg = frame::decode::<ServerMsg>(bytes).expect("decodes");
            assert_eq!(
                msg,
                ServerMsg::Refused {
                    reason: why.to_string()
                }
            );
        }
        _ => panic!("expected Refused then a close for client {client}: {out:?}"),
    }
}

/// Asserts the first close of `client` is the protocol violation `why`.
fn assert_violation(out: &[Output], client: ClientId, why: Violation) {
    let c = closes(out, client);
    assert_eq!(c.first(), Some(&Closing::Violation(why)), "{out:?}");
    assert_eq!(c[0].code(), close::PROTOCOL);
}

fn state(pos: Pos, yaw: f32, props: Vec<(u16, Value)>) -> CellState {
    CellState { pos, yaw, props }
}

// ---- tickets and the hello ---------------------------------------------------

/// Whether the messages to the cell include the entity's destruction.
fn destroys(msgs: &[(AppId, AppMsg)], e: EntityId) -> bool {
    msgs.iter().any(|(to, m)| {
        *to == CELL
            && matches!(m, AppMsg::ToEntity { entity, msg: EntityMsg::Destroy, .. } if *entity == e)
    })
}

#[test]
fn issue_ticket_answers_the_manager_with_a_fresh_ticket() {
    assert_eq!(MANAGER, AppId(0), "the manager is app 0");
    let mut r = rig();
    // `issue` checks the answer: one TicketIssued, to MANAGER, same req.
    let a = r.issue(42);
    let b = r.issue(42);
    assert_ne!(a, b, "each request gets its own ticket");
}

#[test]
fn a_hello_with_a_ticket_asks_storage_for_the_player() {
    let mut r = rig();
    let ticket = r.issue(42);
    let out = r.hello(5, ticket);
    assert_eq!(out.len(), 1, "only the load: {out:?}");
    let Output::Store(StoreOp::LoadPlayer {
        client,
        account,
        type_name,
        fresh,
    }) = &out[0]
    else {
        panic!("expected LoadPlayer, got {out:?}");
    };
    assert_eq!((*client, *account), (5, 42));
    assert_eq!(type_name, "Avatar");
    // The fresh row is a new Avatar somewhere on the ground in the space.
    let fresh = persist::decode(r.avatar(), persist::FORMAT_VERSION, fresh).expect("decodes");
    assert_eq!(fresh.props, r.avatar().defaults());
    let [x, y, z] = fresh.pos;
    assert_eq!(y, 0.0);
    assert!(
        (0.0..=1000.0).contains(&x) && (0.0..=1000.0).contains(&z),
        "{:?}",
        fresh.pos
    );
    assert_eq!(r.b.load().clients, 1);
}

#[test]
fn a_hello_with_an_unknown_ticket_is_refused() {
    let mut r = rig();
    r.issue(42);
    let out = r.hello(5, Ticket([9; 16]));
    assert_refused(&out, 5, Refusal::BadTicket);
    assert_eq!(r.b.load().clients, 0);
}

#[test]
fn a_hello_with_a_wrong_digest_is_refused_naming_the_mismatch() {
    let mut r = rig();
    let ticket = r.issue(42);
    let wrong = [0x5a; 32];
    r.b.hello(5, PROTOCOL_MAJOR, wrong, ticket, r.now);
    let out = r.b.drain();
    let why = Refusal::DefinitionsMismatch {
        theirs: Definitions::hex(&wrong),
        ours: r.defs.digest_hex(),
    };
    assert_refused(&out, 5, why);
}

#[test]
fn a_hello_with_a_wrong_protocol_is_refused_naming_it() {
    let mut r = rig();
    let ticket = r.issue(42);
    r.b.hello(5, PROTOCOL_MAJOR + 6, r.defs.digest, ticket, r.now);
    let out = r.b.drain();
    let why = Refusal::ProtocolVersion {
        theirs: PROTOCOL_MAJOR + 6,
        ours: PROTOCOL_MAJOR,
    };
    assert_refused(&out, 5, why);
}

#[test]
fn a_ticket_is_spent_by_any_attempt() {
    let mut r = rig();
    // Refused for its digest: the ticket is gone all the same.
    let ticket = r.issue(42);
    r.b.hello(5, PROTOCOL_MAJOR, [0; 32], ticket, r.now);
    let out = r.b.drain();
    assert!(matches!(
        closes(&out, 5)[..],
        [Closing::Refused(Refusal::DefinitionsMismatch { .. })]
    ));
    let out = r.hello(6, ticket);
    assert_refused(&out, 6, Refusal::BadTicket);

    // Refused for its protocol: likewise.
    let ticket = r.issue(43);
    r.b.hello(7, 0, r.defs.digest, ticket, r.now);
    let why = Refusal::ProtocolVersion {
        theirs: 0,
        ours: PROTOCOL_MAJOR,
    };
    assert_refused(&r.b.drain(), 7, why);
    assert_refused(&r.hello(8, ticket), 8, Refusal::BadTicket);

    // Used successfully: cannot be used twice.
    let ticket = r.issue(44);
    assert_eq!(loads(&r.hello(9, ticket)), vec![(9, 44)]);
    assert_refused(&r.hello(10, ticket), 10, Refusal::BadTicket);
}

#[test]
fn an_expired_ticket_is_refused() {
    let mut r = rig();
    let ttl = BaseConfig::default().ticket_ttl;
    let late = r.issue(42);
    let on_time = r.issue(43);
    r.advance(ttl);
    assert_eq!(
        loads(&r.hello(5, on_time)),
        vec![(5, 43)],
        "valid up to its ttl"
    );
    r.advance(US);
    assert_refused(&r.hello(6, late), 6, Refusal::BadTicket);
}

#[test]
fn tick_forgets_expired_tickets() {
    let mut r = rig();
    let ttl = BaseConfig::default().ticket_ttl;
    let ticket = r.issue(42);
    r.b.tick(T0.plus(ttl + US));
    r.b.drain();
    // Even presented at a time it would have been valid, it is gone.
    assert_refused(&r.hello(5, ticket), 5, Refusal::BadTicket);
}

#[test]
fn a_second_session_of_an_online_account_takes_over_or_is_refused_while_loading() {
    let mut r = rig();
    r.cell_up();
    let (p, _) = r.login(5, 42);
    let ticket = r.issue(42);
    let out = r.hello(6, ticket);
    assert!(
        matches!(&sent(&out, 6)[..], [ServerMsg::Welcome { entity, .. }, ServerMsg::Session { .. }] if *entity == p.entity),
        "the new connection plays the same entity: {out:?}"
    );
    assert_eq!(
        closes(&out, 5),
        vec![Closing::ResumedElsewhere],
        "the old one gives way"
    );
    assert!(loads(&out).is_empty());
    // While the first session is still loading, a second is refused.
    let t1 = r.issue(50);
    let t2 = r.issue(50);
    assert_eq!(loads(&r.hello(7, t1)), vec![(7, 50)]);
    assert_refused(&r.hello(8, t2), 8, Refusal::AlreadyInWorld);
}

// ---- welcome and the cell ---------------------------------------------------

#[test]
fn a_fresh_player_is_welcomed_with_own_client_props_and_created_on_the_cell() {
    let mut r = rig();
    assert!(r.cell_up().is_empty(), "no entities to place yet");
    let (p, out) = r.login(5, 42);
    let ty = r.avatar().clone();
    // Welcome and session token first, then the cell creation, nothing else.
    assert_eq!(out.len(), 3, "{out:?}");
    assert!(matches!(&out[0], Output::Client(5, ClientOut::Reliable(_))));

    let ServerMsg::Welcome {
        entity,
        type_id,
        pos,
        yaw,
        props,
        tick_hz,
        bounds,
    } = sent(&out, 5).remove(0)
    else {
        panic!("expected a Welcome");
    };
    assert_eq!(entity, p.entity);
    assert_eq!(entity, EntityId(1000), "the first id of the block");
    assert_eq!(type_id, ty.id);
    assert_eq!((pos, yaw), (SPAWN, 0.25));
    assert_eq!((tick_hz, bounds), (space().tick_hz, space().bounds));
    let shown: Vec<&str> = props
        .iter()
        .map(|(i, _)| ty.properties[*i as usize].name.as_str())
        .collect();
    // Own-client properties only (index order): not emote (others only),
    // last_login (base only) or pings (cell only).
    assert_eq!(shown, ["gold", "health", "name", "title"]);
    for (i, v) in &props {
        assert_eq!(v, &ty.properties[*i as usize].default);
    }

    let msgs = app_msgs(&out);
    assert_eq!(msgs.len(), 1, "{out:?}");
    let (
        to,
        AppMsg::CreateEntity {
            entity,
            type_id,
            state,
            version: 0,
        },
    ) = msgs[0].clone()
    else {
        panic!("expected CreateEntity, got {msgs:?}");
    };
    assert_eq!(to, CELL);
    assert_eq!((entity, type_id), (p.entity, ty.id));
    assert_eq!((state.pos, state.yaw), (SPAWN, 0.25));
    let on_cell: Vec<&str> = state
        .props
        .iter()
        .map(|(i, _)| ty.properties[*i as usize].name.as_str())
        .collect();
    assert_eq!(on_cell, ["emote", "health", "name", "pings", "title"]);
    assert_eq!(r.b.load().entities, 1);
}

#[test]
fn a_stored_player_comes_back_as_saved() {
    let mut r = rig();
    let gold = r.prop("gold");
    let title = r.prop("title");
    let ty = r.avatar().clone();
    let mut props = ty.defaults();
    props[gold as usize] = Value::Int(77);
    props[title as usize] = Value::String("veteran".into());
    let row = StoredEntity {
        db_id: DbId(3),
        type_name: "Avatar".into(),
        format_version: persist::FORMAT_VERSION,
        data: persist::encode(&ty, [5.0, 1.0, 6.0], 1.0, &props),
        fence: 3,
    };
    let ticket = r.issue(42);
    r.hello(5, ticket);
    let out = r.loaded(5, Ok(row));
    let [ServerMsg::Welcome { pos, props, .. }, ServerMsg::Session { .. }] = &sent(&out, 5)[..]
    else {
        panic!("expected a Welcome: {out:?}");
    };
    assert_eq!(*pos, [5.0, 1.0, 6.0]);
    assert!(props.contains(&(gold, Value::Int(77))), "{props:?}");
    assert!(props.contains(&(title, Value::String("veteran".into()))));
    // Its saves keep the fence the row had.
    let out = r.input(5, ClientInput::Msg(ClientMsg::Logout));
    let fences: Vec<u64> = saves(&out)
        .into_iter()
        .flatten()
        .map(|row| row.fence)
        .collect();
    assert_eq!(fences, vec![3]);
}

#[test]
fn a_player_that_cannot_be_loaded_is_refused() {
    let mut r = rig();
    let ticket = r.issue(42);
    r.hello(5, ticket);
    let out = r.loaded(5, Err("disk on fire".into()));
    assert_refused(&out, 5, Refusal::LoadFailed("disk on fire".into()));

    let ticket = r.issue(43);
    r.hello(6, ticket);
    let mut row = r.fresh_row(DbId(1));
    row.type_name = "Dragon".into();
    assert_refused(
        &r.loaded(6, Ok(row)),
        6,
        Refusal::StoredTypeUnknown("Dragon".into()),
    );

    let ticket = r.issue(44);
    r.hello(7, ticket);
    let mut row = r.fresh_row(DbId(1));
    row.data = vec![0xff];
    let out = r.loaded(7, Ok(row));
    assert!(
        matches!(
            closes(&out, 7)[..],
            [Closing::Refused(Refusal::Unreadable(_))]
        ),
        "{out:?}"
    );
    assert_eq!(r.b.load(), Default::default());
}

#[test]
fn waiting_entities_are_placed_when_the_cell_link_comes_up() {
    let mut r = rig();
    let (a, out) = r.login(5, 42);
    assert!(app_msgs(&out).is_empty(), "no cell yet: {out:?}");
    let (b, _) = r.login(6, 43);

    // Knowing of the cell is not enough: the link must be up.
    r.b.handle(r.now, MANAGER, AppMsg::Cells(vec![cell_info()]));
    assert!(r.b.drain().is_empty());
    // A link to an app that is not a known cell places nothing.
    r.b.link_up(AppId(9));
    assert!(r.b.drain().is_empty());

    r.b.link_up(CELL);
    let msgs = app_msgs(&r.b.drain());
    let created: Vec<(AppId, EntityId)> = msgs
        .iter()
        .map(|(to, m)| match m {
            AppMsg::CreateEntity { entity, .. } => (*to, *entity),
            other => panic!("expected CreateEntity, got {other:?}"),
        })
        .collect();
    assert_eq!(created, vec![(CELL, a.entity), (CELL, b.entity)]);

    // Placed once only.
    r.b.link_up(CELL);
    assert!(r.b.drain().is_empty());
}

#[test]
fn running_low_on_ids_asks_the_manager_once() {
    let mut r = rig_with(IdBlock { next: 1, end: 4 });
    let (_, out) = r.login(5, 42);
    assert!(
        app_msgs(&out).contains(&(MANAGER, AppMsg::NeedIds)),
        "{out:?}"
    );
    let (_, out) = r.login(6, 43);
    assert!(
        !app_msgs(&out).contains(&(MANAGER, AppMsg::NeedIds)),
        "{out:?}"
    );
    r.b.handle(
        r.now,
        MANAGER,
        AppMsg::Ids(IdBlock {
            next: 500,
            end: 600,
        }),
    );
    let (p, _) = r.login(7, 44);
    assert_eq!(p.entity, EntityId(3));
    let (p, _) = r.login(8, 45);
    assert_eq!(p.entity, EntityId(500), "the granted block");
}

// ---- client calls and moves ---------------------------------------------------

#[test]
fn an_exposed_cell_method_becomes_a_cell_call() {
    let mut r = rig();
    r.cell_up();
    let (p, _) = r.login(5, 42);
    let m = r.method("set_title");
    let args = vec![Value::String("hero".into())];
    let out = r.call(5, m, args.clone());
    assert_eq!(
        app_msgs(&out),
        vec![(
            CELL,
            AppMsg::ToEntity {
                entity: p.entity,
                seq: 0,
                msg: EntityMsg::Call { method: m, args }
            }
        )]
    );
    assert_eq!(out.len(), 1, "{out:?}");
}

#[test]
fn bad_client_calls_cost_the_client_its_connection() {
    let avatar_methods = tessera_demo::definitions();
    let ty = avatar_methods.by_name("Avatar").expect("Avatar");
    let idx = |n: &str| ty.method(n).expect("method").index;
    let named = |method: &str| ("Avatar".to_string(), method.to_string());
    let not_exposed = |m: &str| {
        let (ty, method) = named(m);
        Violation::NotExposed { ty, method }
    };
    let count = |m: &str, wanted, got| {
        let (ty, method) = named(m);
        Violation::ArgumentCount {
            ty,
            method,
            wanted,
            got,
        }
    };
    let bad_arg = |m: &str| {
        let (ty, method) = named(m);
        move |v: &Violation| matches!(v, Violation::BadArgument { ty: t, method: n, index: 0, .. } if *t == ty && *n == method)
    };
    type Check = Box<dyn Fn(&Violation) -> bool>;
    let is = |v: Violation| -> Check { Box::new(move |got: &Violation| *got == v) };
    let cases: Vec<(&str, u16, Vec<Value>, Check)> = vec![
        (
            "not exposed",
            idx("set_health"),
            vec![Value::Int(1000)],
            is(not_exposed("set_health")),
        ),
        (
            "a client method",
            idx("pong"),
            vec![Value::Int(1)],
            is(not_exposed("pong")),
        ),
        (
            "too few arguments",
            idx("set_title"),
            vec![],
            is(count("set_title", 1, 0)),
        ),
        (
            "too many arguments",
            idx("add_gold"),
            vec![Value::Int(1), Value::Int(2)],
            is(count("add_gold", 1, 2)),
        ),
        (
            "wrong type",
            idx("set_title"),
            vec![Value::Int(3)],
            Box::new(bad_arg("set_title")),
        ),
        (
            "a float where an int is due",
            idx("ping"),
            vec![Value::Float(f32::NAN)],
            Box::new(bad_arg("ping")),
        ),
        (
            "unknown index",
            99,
            vec![],
            is(Violation::NoSuchMethod {
                ty: "Avatar".into(),
                method: 99,
            }),
        ),
    ];
    for (what, method, args, check) in cases {
        let mut r = rig();
        r.cell_up();
        let (p, _) = r.login(5, 42);
        let out = r.call(5, method, args);
        match closes(&out, 5).first() {
            Some(Closing::Violation(v)) => assert!(check(v), "{what}: {v:?}"),
            other => panic!("{what}: expected a violation, got {other:?}"),
        }
        let msgs = app_msgs(&out);
        assert!(
            !msgs.iter().any(|(_, m)| matches!(
                m,
                AppMsg::ToEntity {
                    msg: EntityMsg::Call { .. },
                    ..
                }
            )),
            "{what}: nothing reaches the cell: {msgs:?}"
        );
        // The entity leaves the world.
        assert!(destroys(&msgs, p.entity), "{what}: {msgs:?}");
        assert_eq!(r.b.load().clients, 0, "{what}");
        // Later input from the closed client is ignored.
        let m = r.method("set_title");
        assert!(r.call(5, m, vec![Value::String("x".into())]).is_empty());
    }
}

#[test]
fn a_call_before_the_welcome_is_a_violation() {
    let mut r = rig();
    let ticket = r.issue(42);
    r.hello(5, ticket);
    let m = r.method("set_title");
    let out = r.call(5, m, vec![Value::String("x".into())]);
    assert_violation(&out, 5, Violation::CallBeforeWelcome);
    // A load finishing afterwards brings no one into the world.
    let row = r.fresh_row(DbId(1));
    assert!(r.loaded(5, Ok(row)).is_empty());
    assert_eq!(r.b.load(), Default::default());
}

#[test]
fn a_second_hello_is_a_violation() {
    let mut r = rig();
    r.login(5, 42);
    let out = r.input(
        5,
        ClientInput::Msg(ClientMsg::Hello {
            protocol: PROTOCOL_MAJOR,
            defs_digest: r.defs.digest,
            ticket: Ticket([0; 16]),
        }),
    );
    assert_violation(&out, 5, Violation::SecondHello);
}

#[test]
fn add_gold_updates_the_property_and_tells_the_client() {
    let mut r = rig();
    r.cell_up();
    let (p, _) = r.login(5, 42);
    let gold = r.prop("gold");
    let m = r.method("add_gold");
    let out = r.call(5, m, vec![Value::Int(25)]);
    assert!(app_msgs(&out).is_empty(), "a base method: {out:?}");
    assert_eq!(
        sent(&out, 5),
        vec![ServerMsg::Props {
            entity: p.entity,
            props: vec![(gold, Value::Int(25))]
        }]
    );
    let out = r.call(5, m, vec![Value::Int(-5)]);
    assert_eq!(
        sent(&out, 5),
        vec![ServerMsg::Props {
            entity: p.entity,
            props: vec![(gold, Value::Int(20))]
        }]
    );
    let out = r.call(5, m, vec![Value::Int(i64::MAX)]);
    assert_eq!(
        sent(&out, 5),
        vec![ServerMsg::Props {
            entity: p.entity,
            props: vec![(gold, Value::Int(i64::MAX))]
        }],
        "saturates"
    );
    // The base holds the new value: it is what gets saved.
    r.b.force_drain();
    let rows = saves(&r.b.drain()).concat();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        r.decode_row(&rows[0]).props[gold as usize],
        Value::Int(i64::MAX)
    );
}

#[test]
fn a_non_finite_move_closes_the_client() {
    for (pos, yaw) in [
        ([f32::NAN, 0.0, 0.0], 0.0),
        ([0.0, f32::INFINITY, 0.0], 0.0),
        ([0.0, 0.0, f32::NEG_INFINITY], 0.0),
        ([1.0, 0.0, 1.0], f32::NAN),
    ] {
        let mut r = rig();
        r.cell_up();
        let (p, _) = r.login(5, 42);
        let out = r.input(
            5,
            ClientInput::Datagram(ClientDatagram::Move { seq: 1, pos, yaw }),
        );
        assert_violation(&out, 5, Violation::NonFiniteMove);
        let msgs = app_msgs(&out);
        assert!(
            !msgs.iter().any(|(_, m)| matches!(
                m,
                AppMsg::ToEntity {
                    msg: EntityMsg::Move { .. },
                    ..
                }
            )),
            "{msgs:?}"
        );
        assert!(destroys(&msgs, p.entity));
    }
}

#[test]
fn a_finite_move_becomes_a_client_move() {
    let mut r = rig();
    r.cell_up();
    let (p, _) = r.login(5, 42);
    let out = r.input(
        5,
        ClientInput::Datagram(ClientDatagram::Move {
            seq: 17,
            pos: [13.0, 0.5, 35.0],
            yaw: -1.0,
        }),
    );
    assert_eq!(
        app_msgs(&out),
        vec![(
            CELL,
            AppMsg::ToEntity {
                entity: p.entity,
                seq: 0,
                msg: EntityMsg::Move {
                    seq: 17,
                    pos: [13.0, 0.5, 35.0],
                    yaw: -1.0
                }
            }
        )]
    );
    assert_eq!(out.len(), 1);
}

#[test]
fn cell_packets_are_forwarded_to_the_right_client_unchanged() {
    let mut r = rig();
    r.cell_up();
    let (a, _) = r.login(5, 42);
    let (b, _) = r.login(6, 43);
    let reliable = frame::encode_body(&ServerMsg::Leave {
        entity: EntityId(77),
    });
    let datagram = vec![1, 2, 3, 4, 5];
    let out = r.cell_says(AppMsg::ToClients(vec![
        ClientPacket {
            entity: b.entity,
            delivery: Delivery::Reliable,
            seq: 0,
            bytes: reliable.clone(),
        },
        ClientPacket {
            entity: a.entity,
            delivery: Delivery::Datagram,
            seq: 0,
            bytes: datagram.clone(),
        },
        ClientPacket {
            entity: EntityId(999_999),
            delivery: Delivery::Reliable,
            seq: 0,
            bytes: vec![9],
        },
        ClientPacket {
            entity: a.entity,
            delivery: Delivery::Reliable,
            seq: 0,
            bytes: reliable.clone(),
        },
    ]));
    let got: Vec<(ClientId, &ClientOut)> = out
        .iter()
        .map(|o| match o {
            Output::Client(c, co) => (*c, co),
            other => panic!("only client output expected, got {other:?}"),
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (b.client, &ClientOut::Reliable(reliable.clone())),
            (a.client, &ClientOut::Datagram(datagram)),
            (a.client, &ClientOut::Reliable(reliable)),
        ]
    );
}

// ---- leaving and saving ---------------------------------------------------------

#[test]
fn logout_destroys_the_cell_half_and_saves_its_final_state() {
    let mut r = rig();
    r.cell_up();
    let (p, _) = r.login(5, 42);
    let (title, health, gold, emote) = (
        r.prop("title"),
        r.prop("health"),
        r.prop("gold"),
        r.prop("emote"),
    );
    let m = r.method("add_gold");
    r.call(5, m, vec![Value::Int(30)]);

    let out = r.input(5, ClientInput::Msg(ClientMsg::Logout));
    assert_eq!(closes(&out, 5), vec![Closing::LoggedOut]);
    let msgs = app_msgs(&out);
    assert!(msgs.len() == 1 && destroys(&msgs, p.entity), "{msgs:?}");
    assert!(saves(&out).is_empty(), "not before the final state");
    assert_eq!(r.b.load().clients, 0);

    // Packets for the leaving entity go nowhere.
    let out = r.cell_says(AppMsg::ToClients(vec![ClientPacket {
        entity: p.entity,
        delivery: Delivery::Reliable,
        seq: 0,
        bytes: vec![1],
    }]));
    assert!(out.is_empty(), "{out:?}");

    let out = r.cell_says(AppMsg::EntityDestroyed {
        entity: p.entity,
        state: state(
            [40.0, 2.0, 50.0],
            1.5,
            vec![
                (title, Value::String("hero".into())),
                (health, Value::Int(42)),
                (emote, Value::Int(3)),
                // A base property in a cell state is ignored.
                (gold, Value::Int(1_000_000)),
            ],
        ),
    });
    let batches = saves(&out);
    assert_eq!(batches.len(), 1, "{out:?}");
    assert_eq!(batches[0].len(), 1);
    let row = &batches[0][0];
    assert_eq!(row.db_id, p.db);
    let back = r.decode_row(row);
    assert_eq!((back.pos, back.yaw), ([40.0, 2.0, 50.0], 1.5));
    assert_eq!(back.props[title as usize], Value::String("hero".into()));
    assert_eq!(back.props[health as usize], Value::Int(42));
    assert_eq!(back.props[gold as usize], Value::Int(30));
    assert_eq!(back.props[emote as usize], Value::Int(0), "not persistent");
    assert_eq!(r.b.load().entities, 0);

    // A repeated final state saves nothing more.
    let out = r.cell_says(AppMsg::EntityDestroyed {
        entity: p.entity,
        state: state([0.0; 3], 0.0, vec![]),
    });
    assert!(out.is_empty(), "{out:?}");

    // The account may come back.
    let ticket = r.issue(p.account);
    assert_eq!(loads(&r.hello(9, ticket)), vec![(9, p.account)]);
}

#[test]
fn a_bad_final_state_keeps_what_the_base_had() {
    let mut r = rig();
    r.cell_up();
    let (p, _) = r.login(5, 42);
    let (title, health) = (r.prop("title"), r.prop("health"));
    r.input(5, ClientInput::Msg(ClientMsg::Logout));
    let out = r.cell_says(AppMsg::EntityDestroyed {
        entity: p.entity,
        state: state(
            [f32::NAN, 0.0, 0.0],
            f32::INFINITY,
            vec![
                (title, Value::Int(5)),
                (health, Value::String("x".into())),
                (999, Value::Int(1)),
            ],
        ),
    });
    let rows = saves(&out).concat();
    assert_eq!(rows.len(), 1);
    let back = r.decode_row(&rows[0]);
    assert_eq!((back.pos, back.yaw), (SPAWN, 0.25));
    assert_eq!(back.props, r.avatar().defaults());
}

#[test]
fn logout_without_a_cell_saves_at_once() {
    let mut r = rig();
    let (p, _) = r.login(5, 42);
    let out = r.input(5, ClientInput::Msg(ClientMsg::Logout));
    assert_eq!(closes(&out, 5), vec![Closing::LoggedOut]);
    assert!(app_msgs(&out).is_empty());
    assert_eq!(saved_ids(&out), BTreeSet::from([p.db]));
}

#[test]
fn logout_while_loading_closes_without_a_save() {
    let mut r = rig();
    let ticket = r.issue(42);
    r.hello(5, ticket);
    let out = r.input(5, ClientInput::Msg(ClientMsg::Logout));
    assert_eq!(closes(&out, 5), vec![Closing::LoggedOut]);
    assert!(saves(&out).is_empty());
    let row = r.fresh_row(DbId(1));
    assert!(r.loaded(5, Ok(row)).is_empty());
}

#[test]
fn a_dropped_cell_link_changes_nothing_for_leaving_entities() {
    let mut r = rig();
    r.cell_up();
    let (p, _) = r.login(5, 42);
    let (q, _) = r.login(6, 43);
    r.cell_says(AppMsg::Backup {
        entity: p.entity,
        state: state([7.0, 0.0, 8.0], 0.5, vec![]),
        applied: 0,
    });
    r.input(5, ClientInput::Msg(ClientMsg::Logout));
    // The link sends again what it lost once it is back: the leaving
    // entity still waits for its final state, not its last backup.
    r.b.link_down(CELL);
    let out = r.b.drain();
    assert!(saves(&out).is_empty(), "{out:?}");
    let out = r.cell_says(AppMsg::EntityDestroyed {
        entity: p.entity,
        state: state([9.0, 0.0, 9.0], 0.5, vec![]),
    });
    let rows = saves(&out).concat();
    assert_eq!(rows.len(), 1, "only the leaving entity: {out:?}");
    assert_eq!(rows[0].db_id, p.db);
    assert_eq!(r.decode_row(&rows[0]).pos, [9.0, 0.0, 9.0]);
    // The other keeps its cell half: a dropped link is not a dead cellapp.
    let out = r.input(
        6,
        ClientInput::Datagram(ClientDatagram::Move {
            seq: 1,
            pos: [1.0, 0.0, 1.0],
            yaw: 0.0,
        }),
    );
    let msgs = app_msgs(&out);
    assert!(
        matches!(&msgs[..], [(CELL, AppMsg::ToEntity { entity, .. })] if *entity == q.entity),
        "{msgs:?}"
    );
}

/// A second cellapp, to restore onto.
const OTHER: AppId = AppId(3);

/// Both cellapps announced and linked.
fn two_cells(r: &mut Rig) {
    let other = CellInfo {
        app: OTHER,
        addr: SocketAddr::from(([10, 0, 0, 3], 100)),
        cert: CertId::default(),
    };
    r.b.handle(r.now, MANAGER, AppMsg::Cells(vec![cell_info(), other]));
    r.b.link_up(CELL);
    r.b.link_up(OTHER);
    r.b.drain();
}

#[test]
fn a_dead_cellapps_entities_come_back_from_their_last_backup() {
    let mut r = rig();
    two_cells(&mut r);
    let (p, _) = r.login(5, 42);
    let (q, _) = r.login(6, 43);
    let pings = r.prop("pings");
    r.cell_says(AppMsg::Backup {
        entity: p.entity,
        state: state([7.0, 0.0, 8.0], 0.5, vec![(pings, Value::Int(3))]),
        applied: 0,
    });
    // q's real moved on to the other cellapp.
    r.b.handle(
        r.now,
        OTHER,
        AppMsg::RealMoved {
            entity: q.entity,
            cell: OTHER,
            version: 1,
        },
    );
    // The manager declares CELL dead, with only OTHER left.
    let other = CellInfo {
        app: OTHER,
        addr: SocketAddr::from(([10, 0, 0, 3], 100)),
        cert: CertId::default(),
    };
    r.b.handle(r.now, MANAGER, AppMsg::Cells(vec![other]));
    r.b.handle(r.now, MANAGER, AppMsg::AppDown { app: CELL });
    let msgs = app_msgs(&r.b.drain());
    assert_eq!(msgs, vec![(OTHER, AppMsg::AppDown { app: CELL })]);
    // Nothing from the dead cellapp counts any more.
    let late = r.cell_says(AppMsg::Backup {
        entity: p.entity,
        state: state([9.0, 0.0, 9.0], 0.0, vec![]),
        applied: 0,
    });
    assert!(late.is_empty(), "{late:?}");
    // Nothing is restored before every live cellapp has answered.
    assert_eq!(r.b.restored(), 0);
    r.b.handle(
        r.now,
        OTHER,
        AppMsg::DownSeen {
            app: CELL,
            lost: vec![],
        },
    );
    let out = r.b.drain();
    assert_eq!(r.b.restored(), 1, "{out:?}");
    assert_eq!(
        sent(&out, 5),
        vec![ServerMsg::Restored {
            pos: [7.0, 0.0, 8.0],
            yaw: 0.5
        }]
    );
    let msgs = app_msgs(&out);
    let [(
        to,
        AppMsg::CreateEntity {
            entity,
            state,
            version,
            ..
        },
    )] = &msgs[..]
    else {
        panic!("expected one CreateEntity, got {msgs:?}");
    };
    assert_eq!((*to, *entity), (OTHER, p.entity));
    assert_eq!(state.pos, [7.0, 0.0, 8.0]);
    assert!(state.props.contains(&(pings, Value::Int(3))), "{state:?}");
    assert!(*version >= 2, "a restored real is newer than any lost one");
    assert!(sent(&out, 6).is_empty(), "q lived on: {out:?}");
}

/// `CELL` dies with only `OTHER` left, and `OTHER` confirms: what the
/// baseapp sends then.
fn cell_dies(r: &mut Rig) -> Vec<Output> {
    let other = CellInfo {
        app: OTHER,
        addr: SocketAddr::from(([10, 0, 0, 3], 100)),
        cert: CertId::default(),
    };
    r.b.handle(r.now, MANAGER, AppMsg::Cells(vec![other]));
    r.b.handle(r.now, MANAGER, AppMsg::AppDown { app: CELL });
    r.b.handle(
        r.now,
        OTHER,
        AppMsg::DownSeen {
            app: CELL,
            lost: vec![],
        },
    );
    r.b.drain()
}

/// Where the restored real of `e` is created.
fn created_at(out: &[Output], e: EntityId) -> Pos {
    app_msgs(out)
        .into_iter()
        .find_map(|(_, m)| match m {
            AppMsg::CreateEntity { entity, state, .. } if entity == e => Some(state.pos),
            _ => None,
        })
        .expect("a CreateEntity")
}

#[test]
fn a_restored_real_starts_where_its_client_last_moved_it_if_it_could_have() {
    let mut r = rig();
    two_cells(&mut r);
    let (p, _) = r.login(5, 42);
    let (q, _) = r.login(6, 43);
    for e in [p.entity, q.entity] {
        r.cell_says(AppMsg::Backup {
            entity: e,
            state: state([100.0, 0.0, 100.0], 0.0, vec![]),
            applied: 0,
        });
    }
    // Two seconds later p's client has walked 10 m (the Avatar may walk
    // 12 m/s); q's claims a jump of 300 m.
    r.advance(Duration::from_secs(2));
    let walk = |to: Pos| {
        ClientInput::Datagram(ClientDatagram::Move {
            seq: 1,
            pos: to,
            yaw: 1.0,
        })
    };
    r.input(5, walk([110.0, 0.0, 100.0]));
    r.input(6, walk([400.0, 0.0, 100.0]));
    let out = cell_dies(&mut r);
    assert_eq!(created_at(&out, p.entity), [110.0, 0.0, 100.0]);
    assert_eq!(
        sent(&out, 5),
        vec![ServerMsg::Restored {
            pos: [110.0, 0.0, 100.0],
            yaw: 1.0
        }],
        "the client is not pulled back"
    );
    assert_eq!(
        created_at(&out, q.entity),
        [100.0, 0.0, 100.0],
        "a move the real could not have allowed is not taken"
    );
}

#[test]
fn a_client_stream_stuck_behind_a_lost_frame_starts_over() {
    let mut r = rig();
    r.cell_up();
    let (p, _) = r.login(5, 42);
    // Frame 0 was lost on its way; frame 1 waits for it.
    let out = r.cell_says(AppMsg::ToClients(vec![ClientPacket {
        entity: p.entity,
        delivery: Delivery::Reliable,
        seq: 1,
        bytes: vec![1],
    }]));
    assert!(sent(&out, 5).is_empty(), "held: {out:?}");
    let patience = BaseConfig::default().stream_patience;
    r.advance(patience - Duration::from_millis(200));
    r.b.tick(r.now);
    assert!(app_msgs(&r.b.drain()).is_empty(), "not yet");
    r.advance(Duration::from_millis(200));
    r.b.tick(r.now);
    let msgs = app_msgs(&r.b.drain());
    let Some(out_seq) = msgs.iter().find_map(|(to, m)| match m {
        AppMsg::ToEntity {
            entity,
            msg: EntityMsg::Attach { out_seq },
            ..
        } if *to == CELL && *entity == p.entity => Some(*out_seq),
        _ => None,
    }) else {
        panic!("the real is asked to start the stream over: {msgs:?}");
    };
    assert!(out_seq > 1, "past every frame numbered before");
    // The stream flows again from there.
    let out = r.cell_says(AppMsg::ToClients(vec![ClientPacket {
        entity: p.entity,
        delivery: Delivery::Reliable,
        seq: out_seq,
        bytes: frame::encode_body(&ServerMsg::Restored {
            pos: [0.0; 3],
            yaw: 0.0,
        }),
    }]));
    assert_eq!(sent(&out, 5).len(), 1, "{out:?}");
}

#[test]
fn a_real_handed_to_a_dead_cellapp_is_restored_and_unconfirmed_messages_are_sent_again() {
    let mut r = rig();
    two_cells(&mut r);
    let (p, _) = r.login(5, 42);
    let (q, _) = r.login(6, 43);
    let ping = r.method("ping");
    // Both reals on CELL; then p's real reached OTHER (the base heard), q's
    // went from CELL to a third cellapp that dies before telling the base.
    r.b.handle(
        r.now,
        OTHER,
        AppMsg::RealMoved {
            entity: p.entity,
            cell: OTHER,
            version: 1,
        },
    );
    for n in 1..=3 {
        r.call(5, ping, vec![Value::Int(n)]);
    }
    // OTHER has applied the first of p's three calls.
    r.b.handle(
        r.now,
        OTHER,
        AppMsg::Backup {
            entity: p.entity,
            state: state([1.0, 0.0, 1.0], 0.0, vec![]),
            applied: 1,
        },
    );
    let third = AppId(4);
    let info = |app: AppId, last: u8| CellInfo {
        app,
        addr: SocketAddr::from(([10, 0, 0, last], 100)),
        cert: CertId::default(),
    };
    let (one, two, three) = (info(CELL, 1), info(OTHER, 3), info(third, 4));
    r.b.handle(
        r.now,
        MANAGER,
        AppMsg::Cells(vec![one.clone(), two.clone(), three]),
    );
    r.b.handle(r.now, MANAGER, AppMsg::Cells(vec![one, two]));
    r.b.handle(r.now, MANAGER, AppMsg::AppDown { app: third });
    let msgs = app_msgs(&r.b.drain());
    assert_eq!(
        msgs.iter().map(|(to, _)| *to).collect::<BTreeSet<_>>(),
        BTreeSet::from([CELL, OTHER])
    );
    r.cell_says(AppMsg::DownSeen {
        app: third,
        lost: vec![(q.entity, 1)],
    });
    r.b.handle(
        r.now,
        OTHER,
        AppMsg::DownSeen {
            app: third,
            lost: vec![],
        },
    );
    let out = r.b.drain();
    let msgs = app_msgs(&out);
    // q comes back from its backup; p's unconfirmed calls go again.
    assert!(
        msgs.iter()
            .any(|(_, m)| matches!(m, AppMsg::CreateEntity { entity, .. } if *entity == q.entity)),
        "{msgs:?}"
    );
    let again: Vec<u64> = msgs
        .iter()
        .filter_map(|(to, m)| match m {
            AppMsg::ToEntity { entity, seq, .. } if *entity == p.entity && *to == OTHER => {
                Some(*seq)
            }
            _ => None,
        })
        .collect();
    assert_eq!(again, vec![1, 2]);
    assert_eq!(r.b.restored(), 1);
}

#[test]
fn tick_saves_only_dirty_entities_after_the_save_period() {
    let mut r = rig();
    let period = BaseConfig::default().save_period;
    r.cell_up();
    let (a, _) = r.login(5, 42);
    let (b, _) = r.login(6, 43);
    let (c, _) = r.login(7, 44);
    let health = r.prop("health");

    r.b.tick(T0);
    assert!(
        saves(&r.b.drain()).is_empty(),
        "the first tick starts the clock"
    );

    // a changes on the cell, c on the base; b does not change.
    r.cell_says(AppMsg::Backup {
        entity: a.entity,
        state: state([1.0, 0.0, 2.0], 0.0, vec![(health, Value::Int(9))]),
        applied: 0,
    });
    let m = r.method("add_gold");
    r.call(c.client, m, vec![Value::Int(1)]);

    r.b.tick(T0.plus(period - US));
    assert!(saves(&r.b.drain()).is_empty(), "not due yet");

    r.b.tick(T0.plus(period));
    let out = r.b.drain();
    let batches = saves(&out);
    assert_eq!(batches.len(), 1, "one batch: {out:?}");
    let ids: BTreeSet<DbId> = batches[0].iter().map(|row| row.db_id).collect();
    assert_eq!(ids, BTreeSet::from([a.db, c.db]));
    assert!(!ids.contains(&b.db));
    let row_a = batches[0].iter().find(|row| row.db_id == a.db).expect("a");
    let back = r.decode_row(row_a);
    assert_eq!(back.pos, [1.0, 0.0, 2.0]);
    assert_eq!(back.props[health as usize], Value::Int(9));

    // Saved: clean until something changes again.
    r.b.tick(T0.plus(period * 2));
    assert!(saves(&r.b.drain()).is_empty());
    r.cell_says(AppMsg::Backup {
        entity: b.entity,
        state: state([3.0, 0.0, 3.0], 0.0, vec![]),
        applied: 0,
    });
    r.b.tick(T0.plus(period * 3 - US));
    assert!(
        saves(&r.b.drain()).is_empty(),
        "a period after the last save"
    );
    r.b.tick(T0.plus(period * 3));
    assert_eq!(saved_ids(&r.b.drain()), BTreeSet::from([b.db]));
}

#[test]
fn stop_then_final_states_drain_and_save_everyone() {
    let mut r = rig();
    r.cell_up();
    let players: Vec<Player> = (0..3).map(|i| r.login(5 + i, 42 + i as i64).0).collect();
    assert!(!r.b.drained());

    r.b.stop();
    let out = r.b.drain();
    for p in &players {
        let c = closes(&out, p.client);
        assert_eq!(c.first(), Some(&Closing::Shutdown), "{c:?}");
        assert!(destroys(&app_msgs(&out), p.entity), "{out:?}");
    }
    assert!(saves(&out).is_empty(), "saves wait for the final states");
    assert!(!r.b.drained());

    let mut saved = BTreeSet::new();
    for (i, p) in players.iter().enumerate() {
        assert!(!r.b.drained());
        let x = 100.0 + i as f32;
        let out = r.cell_says(AppMsg::EntityDestroyed {
            entity: p.entity,
            state: state([x, 0.0, x], 0.0, vec![]),
        });
        let rows = saves(&out).concat();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].db_id, p.db);
        assert_eq!(r.decode_row(&rows[0]).pos, [x, 0.0, x]);
        saved.insert(rows[0].db_id);
    }
    assert!(r.b.drained());
    assert_eq!(saved, players.iter().map(|p| p.db).collect());
    assert_eq!(r.b.load(), Default::default());
}

#[test]
fn stop_without_a_cell_drains_at_once() {
    let mut r = rig();
    let (p, _) = r.login(5, 42);
    r.b.stop();
    let out = r.b.drain();
    assert_eq!(saved_ids(&out), BTreeSet::from([p.db]));
    assert!(r.b.drained());
}

#[test]
fn force_drain_saves_what_the_bases_have() {
    let mut r = rig();
    r.cell_up();
    let (a, _) = r.login(5, 42);
    let (b, _) = r.login(6, 43);
    let title = r.prop("title");
    r.cell_says(AppMsg::Backup {
        entity: a.entity,
        state: state(
            [9.0, 0.0, 9.0],
            2.0,
            vec![(title, Value::String("backed up".into()))],
        ),
        applied: 0,
    });
    r.b.stop();
    let out = r.b.drain();
    assert!(saves(&out).is_empty());
    assert!(!r.b.drained());

    // The cell never answers.
    r.b.force_drain();
    let out = r.b.drain();
    let rows = saves(&out).concat();
    assert_eq!(
        rows.iter().map(|row| row.db_id).collect::<BTreeSet<_>>(),
        BTreeSet::from([a.db, b.db])
    );
    let row_a = rows.iter().find(|row| row.db_id == a.db).expect("a");
    let back = r.decode_row(row_a);
    assert_eq!((back.pos, back.yaw), ([9.0, 0.0, 9.0], 2.0));
    assert_eq!(
        back.props[title as usize],
        Value::String("backed up".into())
    );
    let row_b = rows.iter().find(|row| row.db_id == b.db).expect("b");
    assert_eq!(r.decode_row(row_b).pos, SPAWN);
    assert!(r.b.drained());

    // A final state arriving after all changes nothing.
    let out = r.cell_says(AppMsg::EntityDestroyed {
        entity: a.entity,
        state: state([0.0; 3], 0.0, vec![]),
    });
    assert!(out.is_empty());
}

// ---- bugs ------------------------------------------------------------------------

#[test]
fn a_player_loaded_during_a_stop_does_not_enter_the_world() {
    let mut r = rig();
    r.cell_up();
    let (a, _) = r.login(5, 42);
    let ticket = r.issue(43);
    assert_eq!(loads(&r.hello(6, ticket)), vec![(6, 43)]);

    r.b.stop();
    r.b.drain();
    r.cell_says(AppMsg::EntityDestroyed {
        entity: a.entity,
        state: state([1.0, 0.0, 1.0], 0.0, vec![]),
    });
    // The storage thread answers the load that was under way.
    let row = r.fresh_row(DbId(430));
    let out = r.loaded(6, Ok(row));
    assert!(
        !sent(&out, 6)
            .iter()
            .any(|m| matches!(m, ServerMsg::Welcome { .. })),
        "no welcome while stopping: {out:?}"
    );
    assert!(
        !app_msgs(&out)
            .iter()
            .any(|(_, m)| matches!(m, AppMsg::CreateEntity { .. })),
        "no new cell half while stopping: {out:?}"
    );
    assert!(
        r.b.drained(),
        "every entity that was in the world is saved: the stop is done"
    );
}

#[test]
fn a_disconnected_client_is_closed_exactly_once() {
    // A protocol violation.
    let mut r = rig();
    r.cell_up();
    r.login(5, 42);
    let out = r.input(
        5,
        ClientInput::Datagram(ClientDatagram::Move {
            seq: 1,
            pos: [f32::NAN; 3],
            yaw: 0.0,
        }),
    );
    let c = closes(&out, 5);
    assert_eq!(c, vec![Closing::Violation(Violation::NonFiniteMove)]);

    // A stop.
    let mut r = rig();
    r.cell_up();
    r.login(5, 42);
    r.b.stop();
    let c = closes(&r.b.drain(), 5);
    assert_eq!(c, vec![Closing::Shutdown]);
}

#[test]
fn backups_count_only_from_where_the_real_is() {
    let mut r = rig();
    r.cell_up();
    let (p, _) = r.login(5, 42);
    let health = r.prop("health");
    let other = AppId(7);
    let t0 = r.now;
    r.b.tick(t0);
    r.b.drain();
    // A backup still on its way from a cell the real has left is ignored.
    r.b.handle(
        r.now,
        other,
        AppMsg::Backup {
            entity: p.entity,
            state: state([1.0, 0.0, 1.0], 0.0, vec![(health, Value::Int(1))]),
            applied: 0,
        },
    );
    r.b.tick(t0.plus(BaseConfig::default().save_period));
    assert!(saves(&r.b.drain()).is_empty(), "nothing changed");
    // Once the real has moved there, its backups count.
    r.b.handle(
        r.now,
        other,
        AppMsg::RealMoved {
            entity: p.entity,
            cell: other,
            version: 1,
        },
    );
    r.b.handle(
        r.now,
        other,
        AppMsg::Backup {
            entity: p.entity,
            state: state([2.0, 0.0, 2.0], 0.0, vec![(health, Value::Int(2))]),
            applied: 0,
        },
    );
    r.b.tick(t0.plus(BaseConfig::default().save_period * 2));
    let out = r.b.drain();
    let batches = saves(&out);
    assert_eq!(batches.len(), 1, "{out:?}");
    let row = &batches[0][0];
    let back = persist::decode(r.avatar(), row.format_version, &row.data).expect("decodes");
    assert_eq!(back.pos, [2.0, 0.0, 2.0]);
    assert_eq!(back.props[health as usize], Value::Int(2));
}

// ---- sessions and base copies ----------------------------------------------

/// The session token the welcome came with.
fn token_of(out: &[Output], client: ClientId) -> Ticket {
    sent(out, client)
        .into_iter()
        .find_map(|m| match m {
            ServerMsg::Session { token } => Some(token),
            _ => None,
        })
        .expect("a session token")
}

/// Another baseapp of the cluster.
const PEER: AppId = AppId(3);

impl Rig {
    /// The manager asks who holds a session; returns its answer.
    fn find(&mut self, entity: EntityId, token: Ticket) -> AppMsg {
        let req = self.next_req;
        self.next_req += 1;
        self.b.handle(
            self.now,
            MANAGER,
            AppMsg::FindSession {
                req,
                entity,
                token: TokenHash::of(&token),
            },
        );
        match &app_msgs(&self.b.drain())[..] {
            [(MANAGER, answer)] => answer.clone(),
            other => panic!("expected one answer to the manager, got {other:?}"),
        }
    }

    fn peers(&mut self, peers: &[AppId]) {
        let list = std::iter::once(ME)
            .chain(peers.iter().copied())
            .map(|app| CellInfo {
                app,
                addr: SocketAddr::from(([10, 0, 0, 2], 200 + app.0 as u16)),
                cert: CertId::default(),
            })
            .collect();
        self.b.handle(self.now, MANAGER, AppMsg::Baseapps(list));
    }
}

#[test]
fn a_lost_client_resumes_its_entity_with_its_token_or_logs_out_after_the_grace() {
    let mut r = rig();
    r.cell_up();
    let (p, out) = r.login(5, 42);
    let token = token_of(&out, 5);
    let out = r.input(5, ClientInput::Gone("timed out".into()));
    assert!(
        !destroys(&app_msgs(&out), p.entity) && saves(&out).is_empty(),
        "a lost connection does not end the session: {out:?}"
    );
    // A wrong token, or another entity, gets a no.
    assert!(matches!(
        r.find(p.entity, Ticket([9; 16])),
        AppMsg::NoSession { .. }
    ));
    assert!(matches!(
        r.find(EntityId(1), token),
        AppMsg::NoSession { .. }
    ));
    let AppMsg::TicketIssued { ticket, .. } = r.find(p.entity, token) else {
        panic!("the right token gets a ticket");
    };
    let out = r.hello(6, ticket);
    let msgs = sent(&out, 6);
    let [ServerMsg::Welcome { entity, .. }, ServerMsg::Session { token: fresh }] = &msgs[..] else {
        panic!("expected a welcome and a new token: {msgs:?}");
    };
    assert_eq!(*entity, p.entity, "the same entity");
    assert_ne!(*fresh, token, "a new token each welcome");
    let attach = app_msgs(&out).into_iter().find_map(|(to, m)| match m {
        AppMsg::ToEntity {
            entity,
            msg: EntityMsg::Attach { out_seq },
            ..
        } if to == CELL && entity == p.entity => Some(out_seq),
        _ => None,
    });
    assert!(
        attach.is_some_and(|s| s >= 1 << 32),
        "the real starts over: {out:?}"
    );
    // While its client is connected, no token takes the session over.
    for t in [token, *fresh] {
        assert!(matches!(r.find(p.entity, t), AppMsg::NoSession { .. }));
    }
    // Lost before it said anything: the welcome with the new token may
    // never have arrived, so the old one still resumes.
    r.input(6, ClientInput::Gone("timed out".into()));
    let AppMsg::TicketIssued { ticket, .. } = r.find(p.entity, token) else {
        panic!("the old token still gets a ticket");
    };
    let out = r.hello(7, ticket);
    let newest = token_of(&out, 7);
    // Once the client speaks on its new connection, only the newest token
    // is good.
    r.call(7, r.method("ping"), vec![Value::Int(1)]);
    r.input(7, ClientInput::Gone("timed out".into()));
    for t in [token, *fresh] {
        assert!(matches!(r.find(p.entity, t), AppMsg::NoSession { .. }));
    }
    let AppMsg::TicketIssued { ticket, .. } = r.find(p.entity, newest) else {
        panic!("the newest token gets a ticket");
    };
    let out = r.hello(8, ticket);
    assert!(matches!(
        &sent(&out, 8)[..],
        [ServerMsg::Welcome { .. }, ServerMsg::Session { .. }]
    ));

    // Lost again, and never back: the entity logs out after the grace.
    r.input(8, ClientInput::Gone("timed out".into()));
    r.advance(BaseConfig::default().resume_grace - US);
    r.b.tick(r.now);
    assert!(!destroys(&app_msgs(&r.b.drain()), p.entity));
    r.advance(US * 2);
    r.b.tick(r.now);
    assert!(destroys(&app_msgs(&r.b.drain()), p.entity));
}

#[test]
fn a_password_login_takes_over_an_entity_waiting_for_its_client() {
    let mut r = rig();
    r.cell_up();
    let (p, _) = r.login(5, 42);
    r.input(5, ClientInput::Gone("timed out".into()));
    let ticket = r.issue(42);
    let out = r.hello(6, ticket);
    assert!(loads(&out).is_empty(), "nothing loaded: {out:?}");
    assert!(matches!(
        &sent(&out, 6)[..],
        [ServerMsg::Welcome { entity, .. }, ServerMsg::Session { .. }] if *entity == p.entity
    ));
}

#[test]
fn bases_are_copied_to_their_rendezvous_holder_which_forgets_them_when_they_go() {
    let mut r = rig();
    r.cell_up();
    r.peers(&[PEER, AppId(4)]);
    let (p, out) = r.login(5, 42);
    let holder = super::backup::holder(p.entity, [PEER, AppId(4)]).expect("a holder");
    let copied: Vec<_> = app_msgs(&out)
        .into_iter()
        .filter_map(|(to, m)| match m {
            AppMsg::BaseBackup(c) => Some((to, c)),
            _ => None,
        })
        .collect();
    assert_eq!(copied.len(), 1, "copied once, at once: {out:?}");
    assert_eq!(copied[0].0, holder);
    assert_eq!((copied[0].1.entity, copied[0].1.cell), (p.entity, CELL));
    assert_eq!(
        copied[0].1.token,
        TokenHash::of(&token_of(&out, 5)),
        "only the token's hash leaves the baseapp"
    );
    // Within a backup period, it is copied again.
    let mut again = 0;
    for _ in 0..20 {
        r.advance(Duration::from_millis(100));
        r.b.tick(r.now);
        again += app_msgs(&r.b.drain())
            .iter()
            .filter(|(to, m)| *to == holder && matches!(m, AppMsg::BaseBackup(_)))
            .count();
    }
    assert_eq!(again, 1);
    r.input(5, ClientInput::Msg(ClientMsg::Logout));
    let out = r.cell_says(AppMsg::EntityDestroyed {
        entity: p.entity,
        state: state(SPAWN, 0.0, vec![]),
    });
    assert!(app_msgs(&out)
        .iter()
        .any(|(to, m)| *to == holder && *m == AppMsg::BaseGone { entity: p.entity }));
}

/// Another baseapp's copy of a base of `account`'s player, on [`CELL`],
/// whose session token is `[account; 16]`.
fn base_copy(ty: &TypeDef, entity: EntityId, account: i64) -> tessera::proto::app::BaseCopy {
    tessera::proto::app::BaseCopy {
        entity,
        db_id: Some(account * 10),
        account: Some(account),
        type_id: ty.id,
        pos: [5.0, 0.0, 5.0],
        yaw: 0.0,
        props: ty.defaults(),
        cell: CELL,
        version: 3,
        next_seq: 17,
        next_out: 40,
        token: TokenHash::of(&Ticket([account as u8; 16])),
        prev_token: None,
        fence: 6,
    }
}

#[test]
fn a_dead_baseapps_bases_come_back_from_their_copies_and_claim_their_reals() {
    let mut r = rig();
    r.cell_up();
    r.peers(&[PEER]);
    let ty = r.avatar().clone();
    let copy = |entity: EntityId, account: i64| base_copy(&ty, entity, account);
    let (won, lost) = (EntityId(77), EntityId(78));
    r.b.handle(r.now, PEER, AppMsg::BaseBackup(Box::new(copy(won, 1))));
    r.b.handle(r.now, PEER, AppMsg::BaseBackup(Box::new(copy(lost, 2))));
    assert_eq!(r.b.copies_held(), 2);
    r.b.handle(r.now, MANAGER, AppMsg::AppDown { app: PEER });
    let claims = app_msgs(&r.b.drain());
    for e in [won, lost] {
        assert!(
            claims.iter().any(|(to, m)| *to == CELL
                && matches!(m, AppMsg::Rebase { entity, base, dead, seq }
                    if *entity == e && *base == ME && *dead == PEER && *seq >= 17 + (1 << 32))),
            "{e} claims its real: {claims:?}"
        );
    }
    // Until its real answers, a base is not resumable.
    assert!(matches!(
        r.find(won, Ticket([1; 16])),
        AppMsg::NoSession { .. }
    ));
    // The real accepted, then moved on to another cell, whose news comes
    // first: the answer cannot take the base back to the old cell.
    let next = AppId(8);
    r.b.handle(
        r.now,
        next,
        AppMsg::RealMoved {
            entity: won,
            cell: next,
            version: 6,
        },
    );
    r.cell_says(AppMsg::Rebased {
        entity: won,
        version: 5,
        state: state([9.0, 0.0, 9.0], 0.5, vec![]),
    });
    let out = r.cell_says(AppMsg::NotRebased { entity: lost });
    assert!(saves(&out).is_empty(), "a refused copy is not saved");
    assert_eq!(r.b.restored(), 1);
    assert_eq!(
        r.b.backed_up(won).map(|(pos, _)| pos),
        Some([9.0, 0.0, 9.0])
    );
    assert!(r.b.backed_up(lost).is_none());
    r.b.handle(
        r.now,
        next,
        AppMsg::Backup {
            entity: won,
            state: state([11.0, 0.0, 11.0], 0.0, vec![]),
            applied: 0,
        },
    );
    assert_eq!(
        r.b.backed_up(won).map(|(pos, _)| pos),
        Some([11.0, 0.0, 11.0]),
        "backups come from where the real is now"
    );
    assert!(matches!(
        r.find(won, Ticket([1; 16])),
        AppMsg::TicketIssued { .. }
    ));
    // Anything more from the dead baseapp is void.
    r.b.handle(
        r.now,
        PEER,
        AppMsg::BaseBackup(Box::new(copy(EntityId(79), 3))),
    );
    assert_eq!(r.b.copies_held(), 0);
    // The restored base is saved at the next period with a fence above its
    // copy's, so the dead baseapp, if it lives on, cannot write over it.
    let period = BaseConfig::default().save_period;
    r.b.tick(r.now);
    r.b.drain();
    r.b.tick(r.now.plus(period));
    let rows: Vec<StoredEntity> = saves(&r.b.drain()).into_iter().flatten().collect();
    let row = rows
        .iter()
        .find(|row| row.db_id == DbId(10))
        .expect("the restored base is saved");
    assert_eq!(row.fence, 7);
}

#[test]
fn calls_before_the_entity_is_placed_wait_for_it() {
    let mut r = rig();
    // No cellapp is linked yet: the player is welcomed, its entity waits.
    let (p, _) = r.login(5, 42);
    let m = r.method("set_title");
    let args = vec![Value::String("early".into())];
    let out = r.call(5, m, args.clone());
    assert!(app_msgs(&out).is_empty(), "{out:?}");
    let out = r.cell_up();
    let msgs = app_msgs(&out);
    let create = msgs
        .iter()
        .position(|(_, m)| matches!(m, AppMsg::CreateEntity { entity, .. } if *entity == p.entity))
        .expect("placed");
    let held = AppMsg::ToEntity {
        entity: p.entity,
        seq: 0,
        msg: EntityMsg::Call { method: m, args },
    };
    let call = msgs
        .iter()
        .position(|(to, msg)| *to == CELL && *msg == held)
        .expect("the held call follows the creation");
    assert!(create < call, "{msgs:?}");
}

#[test]
fn a_base_sends_again_what_a_departed_cellapp_may_have_swallowed() {
    let mut r = rig();
    r.cell_up();
    let (p, _) = r.login(5, 42);
    let m = r.method("set_title");
    let args = vec![Value::String("on its way".into())];
    r.call(5, m, args.clone());
    let other = CellInfo {
        app: OTHER,
        addr: SocketAddr::from(([10, 0, 0, 3], 100)),
        cert: CertId::default(),
    };
    // The real moved to OTHER; then its old cell left the cluster.
    r.b.handle(
        r.now,
        MANAGER,
        AppMsg::Cells(vec![cell_info(), other.clone()]),
    );
    r.b.handle(
        r.now,
        OTHER,
        AppMsg::RealMoved {
            entity: p.entity,
            cell: OTHER,
            version: 1,
        },
    );
    r.b.drain();
    r.b.handle(r.now, MANAGER, AppMsg::Cells(vec![other]));
    let out = r.b.drain();
    let again = AppMsg::ToEntity {
        entity: p.entity,
        seq: 0,
        msg: EntityMsg::Call { method: m, args },
    };
    assert_eq!(app_msgs(&out), vec![(OTHER, again)]);
}

/// Base hooks that record themselves: a login stamps `last_login`, a
/// logout adds 100 gold, and `add_gold(13)` sets the gold and then panics.
struct Hooks;

impl BaseBehavior for Hooks {
    fn login(&self, ctx: &mut BaseCtx<'_>) {
        assert_eq!(ctx.set("last_login", Value::Int(7)), Ok(()));
        assert!(matches!(
            ctx.set("title", Value::String("x".into())),
            Err(crate::behavior::BaseError::Prop(
                tessera::defs::PropError::WrongSide { .. }
            ))
        ));
    }

    fn logout(&self, ctx: &mut BaseCtx<'_>) {
        let gold = ctx.get_int("gold");
        assert_eq!(ctx.set("gold", Value::Int(gold + 100)), Ok(()));
    }

    fn call(&self, ctx: &mut BaseCtx<'_>, call: &BaseCalled<'_>) {
        assert_eq!(ctx.set("gold", Value::Int(1)), Ok(()));
        if call.arg(0) == Some(&Value::Int(13)) {
            panic!("a game bug");
        }
    }
}

#[test]
fn base_hooks_run_on_login_call_and_logout_and_a_panic_changes_nothing() {
    let mut r = rig_playing(Hooks);
    r.cell_up();
    let (p, _) = r.login(5, 42);
    let (gold, last_login) = (r.prop("gold"), r.prop("last_login"));
    let m = r.method("add_gold");

    // A panicking call: nothing changes, nothing is sent, the client stays.
    let out = r.call(5, m, vec![Value::Int(13)]);
    assert!(sent(&out, 5).is_empty(), "{out:?}");
    assert!(closes(&out, 5).is_empty());
    // A call that returns: the change reaches the client.
    let out = r.call(5, m, vec![Value::Int(1)]);
    assert_eq!(
        sent(&out, 5),
        vec![ServerMsg::Props {
            entity: p.entity,
            props: vec![(gold, Value::Int(1))]
        }]
    );

    // Logout: the hook's gold is in the final save, with the login's stamp.
    r.input(5, ClientInput::Msg(ClientMsg::Logout));
    let out = r.cell_says(AppMsg::EntityDestroyed {
        entity: p.entity,
        state: state([0.0, 0.0, 0.0], 0.0, vec![]),
    });
    let rows = saves(&out).concat();
    assert_eq!(rows.len(), 1, "{out:?}");
    let saved = r.decode_row(&rows[0]);
    assert_eq!(saved.props[gold as usize], Value::Int(101));
    assert_eq!(saved.props[last_login as usize], Value::Int(7));
}

/// A base that answers its cell: a call from the cell adds to `gold`; a
/// call from the client asks the cell to set the health (a method the
/// client may not call itself).
struct Relay;

impl BaseBehavior for Relay {
    fn call(&self, ctx: &mut BaseCtx<'_>, call: &BaseCalled<'_>) {
        let n = call.arg(0).and_then(Value::as_int).unwrap_or(0);
        match call.caller {
            BaseCaller::Cell => assert_eq!(ctx.set("gold", Value::Int(n)), Ok(())),
            BaseCaller::Entity(_) => {}
            BaseCaller::Client => {
                assert_eq!(ctx.call_cell("set_health", vec![Value::Int(n)]), Ok(()));
                assert!(matches!(
                    ctx.call_cell("add_gold", vec![Value::Int(n)]),
                    Err(crate::behavior::BaseError::Call(_))
                ));
            }
        }
    }
}

#[test]
fn the_base_and_its_cell_call_each_other() {
    let mut r = rig_playing(Relay);
    r.cell_up();
    let (p, _) = r.login(5, 42);
    let (gold, add_gold, set_health) =
        (r.prop("gold"), r.method("add_gold"), r.method("set_health"));
    // The cell calls the base: the hook runs, the client hears of its gold.
    let out = r.cell_says(AppMsg::ToBase {
        entity: p.entity,
        method: add_gold,
        args: vec![Value::Int(40)],
    });
    assert_eq!(
        sent(&out, 5),
        vec![ServerMsg::Props {
            entity: p.entity,
            props: vec![(gold, Value::Int(40))]
        }]
    );
    // A call that does not fit the definitions is dropped.
    let out = r.cell_says(AppMsg::ToBase {
        entity: p.entity,
        method: add_gold,
        args: vec![Value::String("x".into())],
    });
    assert!(out.is_empty(), "{out:?}");
    // The base calls the cell: a server-only method, on the channel.
    let out = r.call(5, add_gold, vec![Value::Int(3)]);
    assert_eq!(
        app_msgs(&out),
        vec![(
            CELL,
            AppMsg::ToEntity {
                entity: p.entity,
                seq: 0,
                msg: EntityMsg::BaseCall {
                    method: set_health,
                    args: vec![Value::Int(3)]
                }
            }
        )]
    );
}

#[test]
fn a_client_naming_an_entity_it_has_not_seen_is_dropped_with_the_reason() {
    let mut r = rig();
    r.cell_up();
    let (p, _) = r.login(5, 42);
    let m = r.method("set_title");
    let out = r.cell_says(AppMsg::UnseenEntity {
        entity: p.entity,
        method: m,
        named: EntityId(4242),
    });
    assert_eq!(
        closes(&out, 5),
        vec![Closing::Violation(Violation::UnseenEntity {
            ty: "Avatar".into(),
            method: "set_title".into(),
            entity: EntityId(4242),
        })]
    );
}

// ---- named entities -----------------------------------------------------------

const GUILDS: &str = r#"
    [types.Avatar]
    has_client = true
    aoi_radius = 50.0
    max_speed = 5.0
    [types.Avatar.methods]
    join = { side = "base", args = ["string"], exposed = true }
    [types.Guild]
    max_speed = 1.0
    [types.Guild.properties]
    members = { type = "list<int>", flags = "BASE", persistent = true }
    [types.Guild.methods]
    enlist = { side = "base", args = ["int"] }
"#;

/// A player joins a guild by name; the guild keeps its members' accounts.
struct Joins;

impl BaseBehavior for Joins {
    fn call(&self, ctx: &mut BaseCtx<'_>, call: &BaseCalled<'_>) {
        match call.name() {
            "join" => {
                let name = call
                    .arg(0)
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                let account = Value::Int(ctx.account().unwrap_or(-1));
                assert_eq!(
                    ctx.call_named("Guild", &name, "enlist", vec![account]),
                    Ok(())
                );
                assert!(ctx.call_named("Avatar", &name, "join", vec![]).is_err());
            }
            "enlist" => {
                assert!(matches!(call.caller, BaseCaller::Entity(_)));
                let mut members = ctx
                    .get("members")
                    .and_then(Value::as_list)
                    .unwrap_or(&[])
                    .to_vec();
                members.extend(call.arg(0).cloned());
                assert_eq!(ctx.set("members", Value::List(members)), Ok(()));
            }
            _ => {}
        }
    }
}

#[test]
fn named_entities_are_found_by_name_loaded_once_called_in_order_and_saved() {
    let defs = Definitions::parse(GUILDS, std::path::Path::new("guilds.toml")).expect("defs");
    let guild = defs.by_name("Guild").expect("Guild").clone();
    let mut behaviors = BaseBehaviors::default();
    behaviors.register("Avatar", Joins);
    behaviors.register("Guild", Joins);
    let cfg = BaseConfig {
        player_type: "Avatar".into(),
        behaviors,
        ..BaseConfig::default()
    };
    let ids = IdBlock {
        next: 1000,
        end: 2000,
    };
    let mut r = rig_in(defs, ids, cfg);
    r.cell_up();
    r.login(5, 42);
    r.login(6, 43);
    let join = r.method("join");

    // The first call asks the manager where "red" is.
    let out = r.call(5, join, vec![Value::String("red".into())]);
    let summons = app_msgs(&out);
    assert_eq!(
        summons,
        vec![(
            MANAGER,
            AppMsg::Summon {
                type_id: guild.id,
                name: "red".into()
            }
        )]
    );
    // A second waits behind it.
    assert!(app_msgs(&r.call(6, join, vec![Value::String("red".into())])).is_empty());
    // Here: this baseapp loads it.
    r.b.handle(
        r.now,
        MANAGER,
        AppMsg::Summoned {
            type_id: guild.id,
            name: "red".into(),
            app: ME,
        },
    );
    let out = r.b.drain();
    let fresh = out.iter().find_map(|o| match o {
        Output::Store(StoreOp::LoadNamed {
            type_name,
            name,
            fresh,
        }) => {
            assert_eq!((type_name.as_str(), name.as_str()), ("Guild", "red"));
            Some(fresh.clone())
        }
        _ => None,
    });
    let row = StoredEntity {
        db_id: DbId(900),
        type_name: "Guild".into(),
        format_version: persist::FORMAT_VERSION,
        data: fresh.expect("a load of the guild"),
        fence: 0,
    };
    r.b.store_done(
        r.now,
        StoreDone::Named {
            type_name: "Guild".into(),
            name: "red".into(),
            result: Ok(row),
        },
    );
    // Both calls ran, in order; the guild is saved with its members.
    r.b.tick(r.now);
    r.b.tick(r.now.plus(BaseConfig::default().save_period));
    let rows: Vec<StoredEntity> = saves(&r.b.drain())
        .concat()
        .into_iter()
        .filter(|row| row.db_id == DbId(900))
        .collect();
    assert_eq!(rows.len(), 1);
    let saved = persist::decode(&guild, rows[0].format_version, &rows[0].data).expect("decodes");
    let members = guild.prop("members").map_or(0, |p| p.index as usize);
    assert_eq!(
        saved.props[members],
        Value::List(vec![Value::Int(42), Value::Int(43)])
    );

    // Elsewhere: the call goes to the baseapp that holds it.
    r.call(5, join, vec![Value::String("blue".into())]);
    r.b.handle(
        r.now,
        MANAGER,
        AppMsg::Summoned {
            type_id: guild.id,
            name: "blue".into(),
            app: AppId(7),
        },
    );
    let out = r.b.drain();
    assert!(
        app_msgs(&out).iter().any(|(to, m)| *to == AppId(7)
            && matches!(m, AppMsg::NamedCall { name, .. } if name == "blue")),
        "{out:?}"
    );
}

/// Pays a coin a second from login, on a base timer.
struct Wage;

impl BaseBehavior for Wage {
    fn login(&self, ctx: &mut BaseCtx<'_>) {
        let second = Duration::from_secs(1);
        assert!(ctx.add_timer(second, Some(second), 9).is_ok());
        assert!(ctx.add_timer(second, Some(Duration::ZERO), 9).is_err());
    }

    fn timer(&self, ctx: &mut BaseCtx<'_>, _timer: tessera::timers::TimerId, tag: u32) {
        assert_eq!(tag, 9);
        let gold = ctx.get_int("gold") + 1;
        assert_eq!(ctx.set("gold", Value::Int(gold)), Ok(()));
    }
}

#[test]
fn base_timers_fire_once_a_period_and_tell_the_client() {
    let mut r = rig_playing(Wage);
    r.cell_up();
    let (p, _) = r.login(5, 42);
    let gold = r.prop("gold");
    let mut paid = Vec::new();
    for k in 1..=35u64 {
        r.b.tick(r.now.plus(Duration::from_millis(100 * k)));
        for m in sent(&r.b.drain(), 5) {
            if let ServerMsg::Props { entity, props } = m {
                assert_eq!(entity, p.entity);
                paid.extend(
                    props
                        .into_iter()
                        .filter(|(i, _)| *i == gold)
                        .map(|(_, v)| v),
                );
            }
        }
    }
    assert_eq!(paid, vec![Value::Int(1), Value::Int(2), Value::Int(3)]);
}

#[test]
fn a_spawn_area_is_kept_within_the_space() {
    let space = [0.0, 0.0, 1000.0, 1000.0];
    assert_eq!(super::spawn_area(None, space), space);
    assert_eq!(
        super::spawn_area(Some([100.0, 200.0, 300.0, 400.0]), space),
        [100.0, 200.0, 300.0, 400.0]
    );
    assert_eq!(
        super::spawn_area(Some([-50.0, 900.0, 50.0, 2000.0]), space),
        [0.0, 900.0, 50.0, 1000.0]
    );
    // Wholly outside: the whole space rather than nowhere.
    assert_eq!(
        super::spawn_area(Some([2000.0, 0.0, 3000.0, 10.0]), space),
        space
    );
}

#[test]
fn a_retiring_baseapp_hands_every_base_to_its_holder_and_its_clients_follow() {
    let other = AppId(4);
    let mut r = rig();
    r.cell_up();
    r.peers(&[PEER, other]);
    let players: Vec<_> = (0..6).map(|i| r.login(5 + i, 42 + i as i64).0).collect();
    let gold = r.method("add_gold");
    r.call(5, gold, vec![Value::Int(9)]);
    r.b.drain();
    assert!(r.b.hand_over(r.now), "two baseapps to hand to");
    let out = r.b.drain();
    let msgs = app_msgs(&out);
    for p in &players {
        let holder = super::backup::holder(p.entity, [PEER, other]).expect("a holder");
        let copied = msgs
            .iter()
            .position(|(to, m)| {
                *to == holder && matches!(m, AppMsg::BaseBackup(c) if c.entity == p.entity)
            })
            .unwrap_or_else(|| panic!("{} has no final copy: {msgs:?}", p.entity));
        let handed = msgs
            .iter()
            .position(|(to, m)| *to == holder && *m == AppMsg::HandOver)
            .expect("its holder is told");
        assert!(copied < handed, "the copy goes before the hand-over");
        assert_eq!(closes(&out, p.client), vec![Closing::Moved]);
    }
    let copy_of_5 = msgs.iter().find_map(|(_, m)| match m {
        AppMsg::BaseBackup(c) if c.entity == players[0].entity => Some(c.clone()),
        _ => None,
    });
    let gold_index = r.avatar().prop("gold").map(|p| p.index);
    assert!(
        copy_of_5.is_some_and(
            |c| gold_index.and_then(|i| c.props.get(usize::from(i))) == Some(&Value::Int(9))
        ),
        "the final copy is current"
    );
    assert!(saves(&out).is_empty(), "the holders save them from now on");
    assert_eq!(r.b.entities().count(), 0);
    // It leaves once both have taken their bases.
    assert!(!r.b.drained());
    r.b.handle(r.now, PEER, AppMsg::HandOverSeen);
    assert!(!r.b.drained());
    r.b.handle(r.now, other, AppMsg::HandOverSeen);
    assert!(r.b.drained());
}

#[test]
fn a_baseapp_told_of_a_hand_over_claims_the_bases_it_holds_copies_of() {
    let mut r = rig();
    r.cell_up();
    r.peers(&[PEER]);
    let copy = base_copy(r.avatar(), EntityId(77), 1);
    r.b.handle(r.now, PEER, AppMsg::BaseBackup(Box::new(copy)));
    r.b.handle(r.now, PEER, AppMsg::HandOver);
    let msgs = app_msgs(&r.b.drain());
    assert!(
        msgs.iter().any(|(to, m)| *to == CELL
            && matches!(m, AppMsg::Rebase { entity, dead, .. } if *entity == EntityId(77) && *dead == PEER)),
        "{msgs:?}"
    );
    assert!(msgs.contains(&(PEER, AppMsg::HandOverSeen)), "{msgs:?}");
    // Once the real is its, the client's resume finds the session here.
    r.cell_says(AppMsg::Rebased {
        entity: EntityId(77),
        version: 3,
        state: state([5.0, 0.0, 5.0], 0.0, vec![]),
    });
    assert!(matches!(
        r.find(EntityId(77), Ticket([1; 16])),
        AppMsg::TicketIssued { .. }
    ));
}

#[test]
fn a_baseapp_alone_does_not_hand_over() {
    let mut r = rig();
    r.cell_up();
    let (_, _) = r.login(5, 42);
    r.b.drain();
    assert!(!r.b.hand_over(r.now));
    assert_eq!(r.b.entities().count(), 1, "nothing changed");
}

#[test]
fn a_retirement_waits_for_the_bases_being_claimed_here() {
    let other = AppId(4);
    let mut r = rig();
    r.cell_up();
    r.peers(&[PEER, other]);
    // PEER retires first: its base is restored here and claims its real.
    let copy = base_copy(r.avatar(), EntityId(77), 1);
    r.b.handle(r.now, PEER, AppMsg::BaseBackup(Box::new(copy)));
    r.b.handle(r.now, PEER, AppMsg::HandOver);
    r.b.drain();
    // Retiring now would have nothing current to hand on for it: wait.
    assert!(r.b.hand_over(r.now));
    r.b.tick(r.now);
    let out = r.b.drain();
    assert!(
        !app_msgs(&out).iter().any(|(_, m)| *m == AppMsg::HandOver),
        "{out:?}"
    );
    assert_eq!(r.b.entities().count(), 1);
    // Its real answers; at the next tick every base goes.
    r.cell_says(AppMsg::Rebased {
        entity: EntityId(77),
        version: 3,
        state: state([5.0, 0.0, 5.0], 0.0, vec![]),
    });
    r.advance(Duration::from_millis(100));
    r.b.tick(r.now);
    let msgs = app_msgs(&r.b.drain());
    assert!(
        msgs.iter().any(|(to, m)| *to == other
            && matches!(m, AppMsg::BaseBackup(c) if c.entity == EntityId(77))),
        "{msgs:?}"
    );
    assert!(msgs.contains(&(other, AppMsg::HandOver)), "{msgs:?}");
    assert_eq!(r.b.entities().count(), 0);
    assert!(r.b.handed_over());
}
