//! Two link tables joined by a fake wire whose connections can be cut:
//! messages arrive once and in order whatever the wire does.

use super::*;
use crate::ids::EntityId;
use std::collections::VecDeque;

const A: AppId = AppId(1);
const B: AppId = AppId(2);

fn addr(app: AppId) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 10_000 + app.0 as u16))
}

/// The certificate each test app presents.
fn cert(app: AppId) -> CertId {
    CertId([app.0 as u8; 32])
}

fn member(app: AppId) -> CellInfo {
    CellInfo {
        app,
        addr: addr(app),
        cert: cert(app),
    }
}

fn ping(n: u64) -> AppMsg {
    AppMsg::Forget {
        entity: EntityId(n),
    }
}

fn number(msg: &AppMsg) -> u64 {
    match msg {
        AppMsg::Forget { entity } => entity.0,
        other => panic!("not a test message: {other:?}"),
    }
}

/// A connection on the fake wire: frames in flight each way.
#[derive(Default)]
struct Wire {
    /// (dialler's id, acceptor's id) of the live connection, if any.
    conn: Option<(ConnId, ConnId)>,
    to_b: VecDeque<AppMsg>,
    to_a: VecDeque<AppMsg>,
    accepted: u64,
    /// Events waiting for each side, after the wire moved.
    for_a: VecDeque<(ConnId, ConnEvent)>,
    for_b: VecDeque<(ConnId, ConnEvent)>,
}

struct World {
    now: Time,
    a: Links,
    b: Links,
    wire: Wire,
    got_at_b: Vec<u64>,
    got_at_a: Vec<u64>,
    /// What else reached B, and A.
    other_at_b: Vec<AppMsg>,
    other_at_a: Vec<AppMsg>,
    ups: u32,
}

impl World {
    fn new(cfg: LinkConfig) -> World {
        let mut a = Links::new(A, [7; 32], cfg);
        let mut b = Links::new(B, [7; 32], cfg);
        a.learn(Time(0), &member(B), Role::Cellapp, true);
        b.learn(Time(0), &member(A), Role::Cellapp, false);
        World {
            now: Time(0),
            a,
            b,
            wire: Wire::default(),
            got_at_b: Vec::new(),
            got_at_a: Vec::new(),
            other_at_b: Vec::new(),
            other_at_a: Vec::new(),
            ups: 0,
        }
    }

    /// Carries out what both tables asked of the wire.
    fn pump_transmits(&mut self) {
        let from_a: Vec<Transmit> = self.a.drain().collect();
        for t in from_a {
            match t {
                Transmit::Dial { conn, hello, .. } => {
                    self.wire.accepted += 1;
                    let theirs = ConnId::accepted(self.wire.accepted);
                    self.wire.conn = Some((conn, theirs));
                    self.wire.to_b.clear();
                    self.wire.to_a.clear();
                    let first = decode(&hello);
                    self.wire
                        .for_a
                        .push_back((conn, ConnEvent::Opened(cert(B))));
                    self.wire
                        .for_b
                        .push_back((theirs, ConnEvent::Accepted(first, cert(A))));
                }
                Transmit::Send { conn, frame } | Transmit::SendLossy { conn, frame } => {
                    if self.wire.conn.is_some_and(|(c, _)| c == conn) {
                        self.wire.to_b.push_back(decode(&frame));
                    }
                }
                Transmit::Close { conn, .. } => self.cut_if(conn),
            }
        }
        let from_b: Vec<Transmit> = self.b.drain().collect();
        for t in from_b {
            match t {
                Transmit::Send { conn, frame } | Transmit::SendLossy { conn, frame } => {
                    if self.wire.conn.is_some_and(|(_, c)| c == conn) {
                        self.wire.to_a.push_back(decode(&frame));
                    }
                }
                Transmit::Close { conn, .. } => self.cut_if(conn),
                Transmit::Dial { .. } => panic!("B never dials A"),
            }
        }
    }

    fn cut_if(&mut self, conn: ConnId) {
        if let Some((a, b)) = self.wire.conn {
            if a == conn || b == conn {
                self.cut();
            }
        }
    }

    /// The connection drops, losing what was in flight.
    fn cut(&mut self) {
        if let Some((a, b)) = self.wire.conn.take() {
            self.wire.to_a.clear();
            self.wire.to_b.clear();
            self.wire
                .for_a
                .push_back((a, ConnEvent::Closed("cut".into())));
            self.wire
                .for_b
                .push_back((b, ConnEvent::Closed("cut".into())));
        }
    }

    /// Delivers up to `n` frames each way, then every pending event.
    fn step(&mut self, n: usize) {
        self.pump_transmits();
        if let Some((a, b)) = self.wire.conn {
            for _ in 0..n {
                if self.wire.to_a.is_empty() && self.wire.to_b.is_empty() {
                    break;
                }
                if let Some(m) = self.wire.to_b.pop_front() {
                    self.wire.for_b.push_back((b, ConnEvent::Msg(m)));
                }
                if let Some(m) = self.wire.to_a.pop_front() {
                    self.wire.for_a.push_back((a, ConnEvent::Msg(m)));
                }
            }
        }
        while let Some((conn, ev)) = self.wire.for_b.pop_front() {
            match self.b.handle(self.now, conn, ev) {
                Some(LinkEvent::Msg(from, m)) => {
                    assert_eq!(from, A);
                    match m {
                        AppMsg::Forget { .. } => self.got_at_b.push(number(&m)),
                        other => self.other_at_b.push(other),
                    }
                }
                Some(LinkEvent::Up(_)) => self.ups += 1,
                _ => {}
            }
        }
        while let Some((conn, ev)) = self.wire.for_a.pop_front() {
            if let Some(LinkEvent::Msg(from, m)) = self.a.handle(self.now, conn, ev) {
                assert_eq!(from, B);
                match m {
                    AppMsg::Forget { .. } => self.got_at_a.push(number(&m)),
                    other => self.other_at_a.push(other),
                }
            }
        }
        self.pump_transmits();
    }

    fn advance(&mut self, ms: u64) {
        self.now = self.now.plus(Duration::from_millis(ms));
        self.a.handle_timeout(self.now);
        self.b.handle_timeout(self.now);
    }

    /// Lets the links settle: every frame delivered, acks exchanged.
    fn settle(&mut self) {
        for _ in 0..200 {
            self.advance(100);
            self.step(usize::MAX / 4);
        }
    }
}

fn decode(frame: &Bytes) -> AppMsg {
    frame::decode(&frame[frame::HEADER_LEN..]).expect("a frame the table made")
}

#[test]
fn a_dropped_connection_loses_nothing_and_duplicates_nothing() {
    let mut w = World::new(LinkConfig::default());
    w.advance(0);
    let mut sent = 0;
    for round in 0..40u64 {
        for _ in 0..5 {
            w.a.send(w.now, B, &ping(sent)).expect("kept");
            w.b.send(w.now, A, &ping(sent)).expect("kept");
            sent += 1;
        }
        w.step(3);
        if round % 7 == 3 {
            w.cut();
        }
        w.advance(100);
        w.step(2);
    }
    w.settle();
    let want: Vec<u64> = (0..sent).collect();
    assert_eq!(w.got_at_b, want, "A → B once, in order");
    assert_eq!(w.got_at_a, want, "B → A once, in order");
    assert!(w.ups > 3, "the connection came back after each cut");
    assert!(w.a.all_acknowledged() && w.b.all_acknowledged());
    assert!(w.a.stats().resent > 0, "something was sent again");
}

#[test]
fn messages_wait_for_the_first_connection() {
    let mut w = World::new(LinkConfig::default());
    for n in 0..10 {
        w.a.send(w.now, B, &ping(n)).expect("kept");
    }
    assert!(!w.a.is_up(B));
    w.settle();
    assert_eq!(w.got_at_b, (0..10).collect::<Vec<_>>());
}

#[test]
fn a_dial_that_never_answers_is_made_again() {
    let mut w = World::new(LinkConfig::default());
    w.advance(0);
    // The dial goes nowhere: B never hears of it.
    let dials =
        w.a.drain()
            .filter(|t| matches!(t, Transmit::Dial { .. }))
            .count();
    assert_eq!(dials, 1);
    w.advance(1_000);
    assert_eq!(w.a.drain().count(), 0, "not before the dial timeout");
    w.advance(1_000);
    let again: Vec<_> = w.a.drain().collect();
    assert!(
        matches!(
            again.as_slice(),
            [Transmit::Close { .. }, Transmit::Dial { .. }]
        ),
        "{again:?}"
    );
}

#[test]
fn a_full_backlog_drops_the_message_and_closes_the_link() {
    let cfg = LinkConfig {
        max_backlog: 64,
        ..LinkConfig::default()
    };
    let mut w = World::new(cfg);
    w.advance(0);
    w.step(1);
    w.step(1);
    assert!(w.a.is_up(B));
    let mut full = None;
    for n in 0..20 {
        if let Err(e) = w.a.send(w.now, B, &ping(n)) {
            full = Some((n, e));
            break;
        }
    }
    let (n, e) = full.expect("the bound is reached");
    assert!(
        matches!(
            e,
            SendError::Full {
                peer: B,
                max: 64,
                ..
            }
        ),
        "{e}"
    );
    assert!(!w.a.is_up(B), "the link is closed with the reason");
    assert_eq!(w.a.stats().overflowed, 1);
    w.settle();
    assert_eq!(
        w.got_at_b,
        (0..n).collect::<Vec<_>>(),
        "what was kept arrives"
    );
}

#[test]
fn a_forgotten_peer_gives_back_what_it_never_acknowledged() {
    let mut w = World::new(LinkConfig::default());
    for n in 0..3 {
        w.a.send(w.now, B, &ping(n)).expect("kept");
    }
    let back = w.a.forget(B, "declared dead");
    assert_eq!(back.len(), 3);
    assert_eq!(w.a.send(w.now, B, &ping(9)), Err(SendError::Gone(B)));
    w.advance(1_000);
    assert!(
        w.a.drain().all(|t| !matches!(t, Transmit::Dial { .. })),
        "a forgotten peer is not dialled"
    );
}

#[test]
fn strangers_are_refused() {
    let mut b = Links::new(B, [7; 32], LinkConfig::default());
    b.learn(Time(0), &member(A), Role::Cellapp, false);
    let conn = ConnId::accepted(1);
    let mut refused = |first: AppMsg, cert: CertId, code: u32| {
        assert!(b
            .handle(Time(0), conn, ConnEvent::Accepted(first.clone(), cert))
            .is_none());
        let out: Vec<_> = b.drain().collect();
        assert!(
            matches!(out.as_slice(), [Transmit::Close { code: c, .. }] if *c == code),
            "{first:?}: {out:?}"
        );
    };
    let open = |app: AppId, defs_digest: [u8; 32], recv_next: u64| AppMsg::LinkOpen {
        app,
        defs_digest,
        recv_next,
    };
    refused(open(A, [8; 32], 0), cert(A), close::REFUSED);
    refused(AppMsg::Goodbye, cert(A), close::PROTOCOL);
    // A peer claiming to have received messages never sent.
    refused(open(A, [7; 32], 5), cert(A), close::PROTOCOL);
    // An app the manager has not listed, and one whose certificate is
    // another's: the manager's id among them.
    refused(open(AppId(3), [7; 32], 0), cert(AppId(3)), close::REFUSED);
    refused(open(crate::MANAGER, [7; 32], 0), cert(A), close::REFUSED);
    refused(open(A, [7; 32], 0), cert(AppId(3)), close::REFUSED);
    assert_eq!(b.stats().impostors, 1);
    assert!(!b.is_up(A));
}

#[test]
fn a_dialled_process_must_be_the_app_listed() {
    let mut a = Links::new(A, [7; 32], LinkConfig::default());
    a.learn(Time(0), &member(B), Role::Cellapp, true);
    a.handle_timeout(Time(0));
    let Some(Transmit::Dial { conn, .. }) = a.drain().next() else {
        panic!("A dials B")
    };
    assert!(a
        .handle(Time(1), conn, ConnEvent::Opened(cert(AppId(9))))
        .is_none());
    let out: Vec<_> = a.drain().collect();
    assert!(
        matches!(out.as_slice(), [Transmit::Close { code, .. }] if *code == close::REFUSED),
        "{out:?}"
    );
    assert_eq!(a.stats().impostors, 1);
}

#[test]
fn messages_a_role_may_not_send_are_dropped_in_step() {
    let mut w = World::new(LinkConfig::default());
    // B takes A for a baseapp: ghost and migration traffic (cellapps')
    // from it is dropped, yet numbered, so what follows still arrives.
    w.b.learn(Time(0), &member(A), Role::Baseapp, false);
    w.a.send(w.now, B, &ping(1)).expect("kept");
    w.a.send(w.now, B, &AppMsg::Retired).expect("kept");
    let to_entity = AppMsg::ToEntity {
        entity: EntityId(5),
        seq: 0,
        msg: crate::proto::app::EntityMsg::Destroy,
    };
    w.a.send(w.now, B, &to_entity).expect("kept");
    w.settle();
    assert!(w.got_at_b.is_empty(), "{:?}", w.got_at_b);
    assert_eq!(w.b.stats().refused, 2, "the ping and the manager's message");
    assert_eq!(
        w.other_at_b,
        vec![to_entity],
        "ToEntity may come from a base"
    );
    assert!(
        w.a.all_acknowledged(),
        "the dropped ones were acknowledged too"
    );
}

#[test]
fn datagrams_go_beside_the_session_and_only_while_connected() {
    let mut w = World::new(LinkConfig::default());
    let lossy = AppMsg::ClientDatagrams(Vec::new());
    assert!(!w.a.send_lossy(B, &lossy), "no connection yet: not sent");
    w.a.send(w.now, B, &ping(0)).expect("kept");
    w.settle();
    assert!(w.a.send_lossy(B, &lossy), "sent while up");
    w.a.send(w.now, B, &ping(1)).expect("kept");
    w.settle();
    assert_eq!(
        w.got_at_b,
        vec![0, 1],
        "the session's numbering is untouched"
    );
    assert_eq!(w.other_at_b, vec![lossy.clone()]);
    // Lost with a cut connection, it is not sent again.
    assert!(w.a.send_lossy(B, &lossy));
    w.cut();
    w.settle();
    assert_eq!(w.other_at_b.len(), 1, "a lost datagram stays lost");
    assert_eq!(w.a.stats().lossy_dropped, 1);
    assert!(w.a.all_acknowledged());
}

#[test]
fn the_accepting_side_sends_datagrams_to_the_dialler() {
    let mut w = World::new(LinkConfig::default());
    w.settle();
    // B accepted A's connection; B → A goes beside the session too.
    let lossy = AppMsg::ClientDatagrams(Vec::new());
    assert!(w.b.send_lossy(A, &lossy));
    w.b.send(w.now, A, &ping(7)).expect("kept");
    w.settle();
    assert_eq!(w.got_at_a, vec![7], "the session's numbering is untouched");
    assert_eq!(w.other_at_a, vec![lossy]);
    assert!(w.b.all_acknowledged());
}
