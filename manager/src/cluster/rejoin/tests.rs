//! A manager that restarts, driven with handcrafted `Rejoin` reports on a
//! fake clock: what it adopts, what waits for the window to close, who is
//! declared dead, and whom it refuses.

use super::Admission;
use crate::cluster::tests::{cert_of, registration, CLIENT};
use crate::cluster::{AdmitError, Cluster, Output};
use std::time::Duration;
use tessera::layout::Layout;
use tessera::proto::app::{AppMsg, Rejoin, Role, SpaceInfo};
use tessera::proto::login::{LoginReply, LoginRequest, RefuseReason};
use tessera::proto::PROTOCOL_MAJOR;
use tessera::{AppId, IdBlock, Time};

const T0: Time = Time(1_700_000_000_000_000);
const WINDOW: Duration = Duration::from_secs(3);

fn manager() -> Cluster {
    let space = SpaceInfo {
        bounds: [0.0, 0.0, 1000.0, 1000.0],
        tick_hz: 10,
    };
    Cluster::new(&tessera_demo::definitions(), space)
}

fn register(role: Role, port: u16) -> AppMsg {
    AppMsg::Register(registration(role, port))
}

/// A manager started again: it waits `WINDOW` from `T0` for apps.
fn restarted() -> Cluster {
    let mut m = manager();
    m.await_rejoins(T0, WINDOW);
    m
}

/// A world run by a first manager: two cellapps (ports 100, 101) and a
/// baseapp (200), one line moved by hand. Returns the ids and the layout.
fn first_world() -> (AppId, AppId, AppId, Layout) {
    let mut m = manager();
    let mut join =
        |role, port| match m.admit(T0, &register(role, port), cert_of(&register(role, port))) {
            Admission::Member(app) => app,
            other => panic!("not admitted: {other:?}"),
        };
    let (c1, c2, b) = (
        join(Role::Cellapp, 100),
        join(Role::Cellapp, 101),
        join(Role::Baseapp, 200),
    );
    let line = m.layout().expect("layout").lines()[0].line;
    m.move_line(line, 300.0).expect("line moves");
    (c1, c2, b, m.layout().expect("layout").clone())
}

/// What an app reports, knowing no other members and no deaths.
fn report(app: AppId, role: Role, port: u16, layout: Option<&Layout>, ids_end: u64) -> Box<Rejoin> {
    Box::new(Rejoin {
        app,
        registration: registration(role, port),
        layout: layout.cloned(),
        ids_end,
        members: Vec::new(),
        dead: Vec::new(),
        retiring: false,
    })
}

fn rejoin(app: AppId, role: Role, port: u16, layout: Option<&Layout>, ids_end: u64) -> AppMsg {
    AppMsg::Rejoin(report(app, role, port, layout, ids_end))
}

/// One app comes back with `layout` and is taken back.
fn back(m: &mut Cluster, app: AppId, role: Role, port: u16, layout: &Layout) {
    assert_eq!(
        admitted(m, T0, &rejoin(app, role, port, Some(layout), 0)),
        app
    );
}

/// The first world's three apps come back, each with its layout.
fn all_back(m: &mut Cluster, (c1, c2, b): (AppId, AppId, AppId), layout: &Layout) {
    back(m, b, Role::Baseapp, 200, layout);
    back(m, c1, Role::Cellapp, 100, layout);
    back(m, c2, Role::Cellapp, 101, layout);
}

fn admitted(m: &mut Cluster, now: Time, msg: &AppMsg) -> AppId {
    match m.admit(now, msg, cert_of(msg)) {
        Admission::Member(app) => app,
        other => panic!("not admitted: {other:?}"),
    }
}

fn refused(m: &mut Cluster, now: Time, msg: &AppMsg) -> AdmitError {
    match m.admit(now, msg, cert_of(msg)) {
        Admission::Refused(why) => why,
        other => panic!("not refused: {other:?}"),
    }
}

fn downs(out: &[Output]) -> Vec<(AppId, AppId)> {
    out.iter()
        .filter_map(|o| match o {
            Output::App(to, AppMsg::AppDown { app }) => Some((*to, *app)),
            _ => None,
        })
        .collect()
}

fn blocks(out: &[Output]) -> Vec<(AppId, IdBlock)> {
    out.iter()
        .filter_map(|o| match o {
            Output::App(to, AppMsg::Registered { ids, .. }) | Output::App(to, AppMsg::Ids(ids)) => {
                Some((*to, *ids))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn a_restarted_manager_takes_the_apps_back_and_keeps_their_layout_and_ids() {
    let (c1, c2, b, layout) = first_world();
    let mut m = restarted();
    // An older layout from one app, the newest from another: the newest wins.
    let mut older = layout.clone();
    older.epoch -= 1;
    admitted(
        &mut m,
        T0,
        &rejoin(c1, Role::Cellapp, 100, Some(&older), 5_000),
    );
    admitted(
        &mut m,
        T0,
        &rejoin(c2, Role::Cellapp, 101, Some(&layout), 9_000),
    );
    admitted(
        &mut m,
        T0,
        &rejoin(b, Role::Baseapp, 200, Some(&older), 7_000),
    );
    let out = m.drain();
    // Taken back under their ids, with no new ids yet.
    assert_eq!(
        blocks(&out),
        vec![
            (c1, IdBlock::EMPTY),
            (c2, IdBlock::EMPTY),
            (b, IdBlock::EMPTY)
        ]
    );
    // A fresh app waits; a request for ids waits; a login is refused.
    let fresh = AppMsg::Register(registration(Role::Cellapp, 102));
    assert_eq!(m.admit(T0, &fresh, cert_of(&fresh)), Admission::Wait);
    m.handle(T0, c1, AppMsg::NeedIds);
    let login = LoginRequest {
        protocol: PROTOCOL_MAJOR,
        defs_digest: tessera_demo::definitions().digest,
        name: "ann".into(),
        password: "password1".into(),
        create: true,
    };
    m.login(T0, 7, CLIENT, login);
    let out = m.drain();
    assert!(blocks(&out).is_empty(), "ids granted inside the window");
    assert!(
        matches!(
            &out[..],
            [Output::Login(
                7,
                LoginReply::Refused {
                    reason: RefuseReason::Unavailable,
                    ..
                }
            )]
        ),
        "{out:?}"
    );
    // Nothing changes before the window closes, not even by hand.
    let line = layout.lines()[0].line;
    assert!(matches!(
        m.move_line(line, 100.0),
        Err(crate::cluster::MoveLineError::Rejoining(_))
    ));
    m.tick(T0.plus(WINDOW / 2));
    assert!(m.is_rejoining());
    assert_eq!(m.layout(), Some(&layout));

    m.tick(T0.plus(WINDOW));
    assert!(!m.is_rejoining());
    assert_eq!(m.layout(), Some(&layout), "the layout is the same after");
    let out = m.drain();
    assert!(downs(&out).is_empty(), "nobody is missing: {out:?}");
    // Every app hears the layout again.
    for app in [c1, c2, b] {
        assert!(out.iter().any(
            |o| matches!(o, Output::App(to, AppMsg::Layout { layout: l, .. }) if *to == app && *l == layout)
        ));
    }
    // The waiting request for ids is answered past every id reported.
    let granted = blocks(&out);
    assert_eq!(granted.len(), 1, "{granted:?}");
    assert_eq!(granted[0].0, c1);
    assert!(granted[0].1.next >= 9_000, "{granted:?}");
    // The fresh app now joins under a new id, with fresh ids.
    let late = admitted(&mut m, T0.plus(WINDOW), &fresh);
    assert!(late.0 > b.0.max(c1.0).max(c2.0), "{late} reuses an id");
    let fresh_block = blocks(&m.drain())[0].1;
    assert!(fresh_block.next >= granted[0].1.end, "{fresh_block:?}");
}

#[test]
fn a_member_that_does_not_come_back_is_declared_dead_and_its_cell_given_away() {
    let (c1, c2, b, layout) = first_world();
    let mut m = restarted();
    let mut r = report(b, Role::Baseapp, 200, Some(&layout), 0);
    r.members = vec![c1, c2];
    admitted(&mut m, T0, &AppMsg::Rejoin(r));
    back(&mut m, c1, Role::Cellapp, 100, &layout);
    m.drain();
    m.tick(T0.plus(WINDOW));
    let out = m.drain();
    let after = m.layout().expect("a layout");
    assert!(after.epoch > layout.epoch);
    assert!(
        after.cells().iter().all(|c| c.app == c1),
        "{:?}",
        after.cells()
    );
    let mut told = downs(&out);
    told.sort();
    assert_eq!(told, vec![(c1, c2), (b, c2)]);
    // Coming back late, it is refused.
    let why = refused(
        &mut m,
        T0.plus(WINDOW * 2),
        &rejoin(c2, Role::Cellapp, 101, Some(&layout), 0),
    );
    assert_eq!(why, AdmitError::DeclaredDead(c2));
}

#[test]
fn an_app_the_manager_still_had_or_never_heard_of_is_refused_and_declared_dead() {
    let mut m = manager();
    let c = admitted(
        &mut m,
        T0,
        &AppMsg::Register(registration(Role::Cellapp, 100)),
    );
    let b = admitted(
        &mut m,
        T0,
        &AppMsg::Register(registration(Role::Baseapp, 200)),
    );
    m.drain();
    // A member whose link dropped dials again: this manager never died.
    let layout = m.layout().cloned();
    let why = refused(
        &mut m,
        T0,
        &rejoin(c, Role::Cellapp, 100, layout.as_ref(), 0),
    );
    assert_eq!(why, AdmitError::LostLink(c));
    let out = m.drain();
    assert_eq!(downs(&out), vec![(b, c)]);
    assert!(out.iter().any(|o| matches!(o, Output::Drop(a) if *a == c)));
    // An app nobody reported, after any window: dead now, so what it held
    // is restored by the others.
    let stranger = AppId(40);
    let why = refused(&mut m, T0, &rejoin(stranger, Role::Baseapp, 201, None, 0));
    assert_eq!(why, AdmitError::TooLate(stranger));
    assert_eq!(downs(&m.drain()), vec![(b, stranger)]);
    // And once refused, always refused.
    refused(&mut m, T0, &rejoin(stranger, Role::Baseapp, 201, None, 0));
}

#[test]
fn an_app_others_report_dead_is_dropped_when_the_window_closes() {
    let (c1, c2, b, layout) = first_world();
    let mut m = restarted();
    let mut r = report(b, Role::Baseapp, 200, Some(&layout), 0);
    r.dead = vec![c2];
    admitted(&mut m, T0, &AppMsg::Rejoin(r));
    back(&mut m, c1, Role::Cellapp, 100, &layout);
    // The zombie comes back inside the window, before anyone could tell.
    back(&mut m, c2, Role::Cellapp, 101, &layout);
    m.drain();
    m.tick(T0.plus(WINDOW));
    let out = m.drain();
    assert!(out.iter().any(|o| matches!(o, Output::Drop(a) if *a == c2)));
    let mut told = downs(&out);
    told.sort();
    assert_eq!(told, vec![(c1, c2), (b, c2)]);
    assert!(m.apps().iter().all(|a| a.id != c2.0));
    let after = m.layout().expect("a layout");
    assert!(after.cells().iter().all(|c| c.app == c1));
}

#[test]
fn a_retiring_cellapp_keeps_retiring_and_an_idle_one_without_a_cell_gets_one() {
    let (c1, c2, b, layout) = first_world();
    let mut m = restarted();
    back(&mut m, b, Role::Baseapp, 200, &layout);
    let mut r = report(c1, Role::Cellapp, 100, Some(&layout), 0);
    r.retiring = true;
    admitted(&mut m, T0, &AppMsg::Rejoin(r));
    back(&mut m, c2, Role::Cellapp, 101, &layout);
    // A cellapp that registered as the old manager died: no cell yet.
    let c3 = AppId(c2.0.max(b.0) + 1);
    admitted(&mut m, T0, &rejoin(c3, Role::Cellapp, 102, None, 0));
    m.drain();
    m.tick(T0.plus(WINDOW));
    let after = m.layout().expect("a layout");
    assert!(
        after.cells().iter().any(|c| c.app == c3),
        "{:?}",
        after.cells()
    );
    // Retiring resumes: the balancer shrinks c1's cell from now on.
    let area = |l: &Layout, app| -> f64 {
        l.cells()
            .iter()
            .filter(|c| c.app == app)
            .map(|c| c.rect.area())
            .sum()
    };
    let before = area(after, c1);
    m.tick(T0.plus(WINDOW + Duration::from_millis(1100)));
    let later = m.layout().expect("a layout");
    assert!(area(later, c1) < before, "{before} -> {}", area(later, c1));
}

#[test]
fn a_cellapp_that_comes_back_and_leaves_inside_the_window_leaves_no_orphan_cell() {
    let (c1, c2, b, layout) = first_world();
    let mut m = restarted();
    all_back(&mut m, (c1, c2, b), &layout);
    m.handle(T0, c2, AppMsg::Goodbye);
    m.drain();
    m.tick(T0.plus(WINDOW));
    let after = m.layout().expect("a layout");
    assert!(
        after.cells().iter().all(|c| c.app == c1),
        "{:?}",
        after.cells()
    );
    // It left: nobody restores what it held.
    assert!(downs(&m.drain()).is_empty());
}

#[test]
fn a_second_dial_inside_the_window_replaces_the_first() {
    let (c1, _c2, b, layout) = first_world();
    let mut m = restarted();
    back(&mut m, c1, Role::Cellapp, 100, &layout);
    assert_eq!(
        admitted(
            &mut m,
            T0,
            &rejoin(c1, Role::Cellapp, 100, Some(&layout), 0)
        ),
        c1
    );
    let out = m.drain();
    assert!(!out.iter().any(|o| matches!(o, Output::Drop(_))), "{out:?}");
    assert!(downs(&out).is_empty());
    back(&mut m, b, Role::Baseapp, 200, &layout);
}

#[test]
fn a_report_the_manager_cannot_use_is_refused_and_changes_nothing() {
    let (c1, c2, _b, layout) = first_world();
    let mut m = restarted();
    let bad = |edit: &dyn Fn(&mut Rejoin)| {
        let mut r = report(c1, Role::Cellapp, 100, Some(&layout), 0);
        edit(&mut r);
        AppMsg::Rejoin(r)
    };
    let why = refused(&mut m, T0, &bad(&|r| r.ids_end = u64::MAX));
    assert!(
        matches!(why, AdmitError::IdsOutOfRange { app, .. } if app == c1),
        "{why}"
    );
    let why = refused(&mut m, T0, &bad(&|r| r.members = vec![AppId(u32::MAX)]));
    assert!(matches!(why, AdmitError::IdsOutOfRange { .. }), "{why}");
    let other =
        Layout::equal(tessera::layout::Rect::new(0.0, 0.0, 10.0, 10.0), &[c1, c2]).expect("layout");
    let why = refused(&mut m, T0, &bad(&|r| r.layout = Some(other.clone())));
    assert!(matches!(why, AdmitError::OtherBounds { .. }), "{why}");
    // A cut whose low side is itself, as a broken peer could send it, does
    // not even decode: a Rejoin carrying it never reaches the manager.
    let mut json = serde_json::to_value(&layout).expect("encode");
    json["nodes"][0]["Cut"]["low"] = serde_json::json!(0);
    let malformed = serde_json::from_value::<Layout>(json);
    assert!(malformed.is_err(), "{malformed:?}");
    assert!(m.apps().is_empty());
    assert_eq!(m.layout(), None);
}

#[test]
fn a_cellapp_without_a_cell_gets_one_split_off_the_adopted_layout() {
    let (c1, c2, b, layout) = first_world();
    let mut m = restarted();
    all_back(&mut m, (c1, c2, b), &layout);
    let c3 = AppId(c2.0.max(b.0) + 1);
    admitted(&mut m, T0, &rejoin(c3, Role::Cellapp, 102, None, 0));
    m.tick(T0.plus(WINDOW));
    let after = m.layout().expect("a layout");
    assert!(
        after.cells().iter().any(|c| c.app == c3),
        "{:?}",
        after.cells()
    );
    // Not cut anew: c1 and c2 keep their cells, and the line moved by hand
    // stays where it was (an equal cut for three would put it at 333 m).
    for c in layout.cells() {
        assert!(
            after
                .cells()
                .iter()
                .any(|a| a.cell == c.cell && a.app == c.app),
            "{:?}",
            after.cells()
        );
    }
    let moved = &layout.lines()[0];
    assert!(
        after
            .lines()
            .iter()
            .any(|l| l.line == moved.line && l.pos == moved.pos),
        "{:?}",
        after.lines()
    );
}
