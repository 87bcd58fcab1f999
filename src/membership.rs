//! An app's membership of the cluster: its link to the manager, as a state
//! machine with no I/O. It registers the app, sends its heartbeats, and
//! gets it back in when the manager link drops.
//!
//! The manager may die and be restarted while cellapps and baseapps keep
//! simulating (design §1: it is rebuilt from the apps). When the manager
//! link closes, the app carries on and dials the manager again every
//! [`MembershipConfig::redial`] with an [`AppMsg::Rejoin`] describing what
//! it holds. A restarted manager takes it back under the same id; a
//! manager that declared it dead refuses it, and the app must stop, since
//! its entities are being restored elsewhere.
//!
//! Like [`crate::link::Links`], it takes connection events and the time and
//! leaves [`Transmit`]s for its caller; the timers (redials, dial
//! deadlines, heartbeats, the first join's deadline) are its own.

use std::net::SocketAddr;
use std::time::Duration;

use crate::link::{encode, ConnEvent, ConnId, ConnIds, Transmit};
use crate::proto::app::{AppMsg, Registration, SpaceInfo};
use crate::proto::close;
use crate::{AppId, IdBlock, Time};

/// Timing of the manager link.
#[derive(Clone, Copy, Debug)]
pub struct MembershipConfig {
    /// How often an app without a manager dials it again.
    pub redial: Duration,
    /// How long one dial may take. A dial sent while no manager listened
    /// waits for its packets to be resent, which QUIC spaces out ever more;
    /// a fresh dial reaches a restarted manager sooner. A dial the manager
    /// took but the app gave up on is replaced by the next (inside the
    /// rejoin window) or refused (outside it, where every `Rejoin` is
    /// refused anyway).
    pub dial_timeout: Duration,
    /// How often a member sends its heartbeat.
    pub heartbeat: Duration,
    /// How long the first registration may keep failing before the app
    /// gives up.
    pub join_timeout: Duration,
}

impl Default for MembershipConfig {
    fn default() -> Self {
        MembershipConfig {
            redial: Duration::from_millis(250),
            dial_timeout: Duration::from_millis(500),
            heartbeat: Duration::from_secs(1),
            join_timeout: Duration::from_secs(10),
        }
    }
}

/// Why an app stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ended {
    /// It was asked to stop or to retire (or retired when the operator
    /// asked the manager), and handed off or saved what it held.
    Left,
    /// The manager would not have it: it never registered, or it was
    /// declared dead while cut off (what it held is restored elsewhere).
    Refused(String),
}

/// What the manager link brings the app.
#[derive(Debug)]
pub enum MembershipEvent {
    /// Registered: the app's id, its first entity ids and the space.
    Joined {
        /// Its id.
        app: AppId,
        /// Entity ids it may hand out.
        ids: IdBlock,
        /// The space.
        space: SpaceInfo,
    },
    /// The manager link dropped; the app carries on and dials again.
    Lost,
    /// Back in the cluster after the manager link dropped.
    Rejoined,
    /// The manager will not have the app (it was declared dead, or its
    /// registration is wrong), or never answered the first registration:
    /// the app must stop.
    Refused(String),
    /// A message from the manager.
    Msg(AppMsg),
}

/// Where the manager link stands.
#[derive(Debug)]
enum Phase {
    /// Not registered yet: the dial under way and its deadline, or when to
    /// dial next; since when it has been trying.
    Joining {
        conn: Option<(ConnId, Time)>,
        at: Time,
        since: Time,
    },
    /// A member, linked.
    Member { conn: ConnId, beat: Time },
    /// A member whose manager link dropped; it dials at `at`.
    Lost { at: Time, failures: u32 },
    /// A member dialling its manager with a `Rejoin`, since `started`.
    Rejoining {
        conn: ConnId,
        started: Time,
        failures: u32,
    },
    /// Refused, left, or never joined: nothing more.
    Over,
}

/// An app's link to its manager.
#[derive(Debug)]
pub struct Membership {
    addr: SocketAddr,
    registration: Registration,
    cfg: MembershipConfig,
    ids: ConnIds,
    phase: Phase,
    app: Option<AppId>,
    out: Vec<Transmit>,
}

impl Membership {
    /// An app about to register with the manager at `addr`; the first dial
    /// goes at once.
    pub fn new(
        now: Time,
        addr: SocketAddr,
        registration: Registration,
        cfg: MembershipConfig,
    ) -> Membership {
        Membership {
            addr,
            registration,
            cfg,
            ids: ConnIds::tagged(ConnIds::MEMBERSHIP),
            phase: Phase::Joining {
                conn: None,
                at: now,
                since: now,
            },
            app: None,
            out: Vec::new(),
        }
    }

    /// The settings.
    pub fn config(&self) -> &MembershipConfig {
        &self.cfg
    }

    /// What the app registered as.
    pub fn registration(&self) -> &Registration {
        &self.registration
    }

    /// The app's id, once registered.
    pub fn app(&self) -> Option<AppId> {
        self.app
    }

    /// Whether `conn` is a connection of this membership.
    pub fn owns(&self, conn: ConnId) -> bool {
        self.ids.owns(conn)
    }

    /// Whether the app has a manager link.
    pub fn is_up(&self) -> bool {
        matches!(self.phase, Phase::Member { .. })
    }

    /// Sends to the manager; false (the message is dropped) while there is
    /// no link: reports go nowhere, and the next ones go to the manager
    /// that comes back.
    pub fn send(&mut self, msg: &AppMsg) -> bool {
        let Phase::Member { conn, .. } = self.phase else {
            return false;
        };
        self.out.push(Transmit::Send {
            conn,
            frame: encode(msg),
        });
        true
    }

    /// Leaves the cluster on purpose: a last `Goodbye`, then nothing more.
    pub fn leave(&mut self) {
        if let Phase::Member { conn, .. } = self.phase {
            self.out.push(Transmit::Send {
                conn,
                frame: encode(&AppMsg::Goodbye),
            });
            self.out.push(Transmit::Close {
                conn,
                code: close::DONE,
                reason: "goodbye".into(),
            });
        }
        self.phase = Phase::Over;
    }

    /// What happened to a connection of this membership.
    pub fn handle(&mut self, now: Time, conn: ConnId, ev: ConnEvent) -> Option<MembershipEvent> {
        match (&mut self.phase, ev) {
            (Phase::Member { conn: c, .. }, ConnEvent::Msg(msg)) if *c == conn => {
                Some(MembershipEvent::Msg(msg))
            }
            (Phase::Member { conn: c, .. }, ConnEvent::Closed(reason)) if *c == conn => {
                tracing::warn!(%reason, "manager link closed; carrying on and dialling the manager again");
                self.phase = Phase::Lost {
                    at: now.plus(self.cfg.redial),
                    failures: 0,
                };
                Some(MembershipEvent::Lost)
            }
            (
                Phase::Joining {
                    conn: Some((c, _)), ..
                },
                ConnEvent::Msg(msg),
            ) if *c == conn => self.answered(now, conn, msg, true),
            (Phase::Joining { conn: dial, at, .. }, ConnEvent::Closed(reason))
                if dial.is_some_and(|(c, _)| c == conn) =>
            {
                tracing::warn!(%reason, manager = %self.addr, "cannot reach the manager; dialling again");
                *dial = None;
                *at = now.plus(self.cfg.redial);
                None
            }
            (Phase::Rejoining { conn: c, .. }, ConnEvent::Msg(msg)) if *c == conn => {
                self.answered(now, conn, msg, false)
            }
            (
                Phase::Rejoining {
                    conn: c,
                    started,
                    failures,
                },
                ConnEvent::Closed(reason),
            ) if *c == conn => {
                let (failures, started) = (*failures + 1, *started);
                if failures == 1 {
                    tracing::warn!(%reason, "manager unreachable; dialling it again until it is back");
                }
                self.phase = Phase::Lost {
                    at: self.next_dial(started, now),
                    failures,
                };
                None
            }
            _ => None,
        }
    }

    /// The manager answered a registration (`first`) or a rejoin.
    fn answered(
        &mut self,
        now: Time,
        conn: ConnId,
        msg: AppMsg,
        first: bool,
    ) -> Option<MembershipEvent> {
        match msg {
            AppMsg::Registered { app, ids, space } => {
                self.app = Some(app);
                self.phase = Phase::Member {
                    conn,
                    beat: now.plus(self.cfg.heartbeat),
                };
                Some(if first {
                    MembershipEvent::Joined { app, ids, space }
                } else {
                    MembershipEvent::Rejoined
                })
            }
            AppMsg::RegisterRefused { reason } => {
                self.phase = Phase::Over;
                Some(MembershipEvent::Refused(reason))
            }
            other => {
                tracing::warn!(msg = ?std::mem::discriminant(&other), "the manager answered a registration with something else");
                None
            }
        }
    }

    /// When the membership next needs [`Membership::handle_timeout`].
    pub fn poll_timeout(&self) -> Option<Time> {
        match self.phase {
            Phase::Joining { conn, at, since } => {
                let next = conn.map_or(at, |(_, deadline)| deadline);
                Some(next.min(since.plus(self.cfg.join_timeout)))
            }
            Phase::Member { beat, .. } => Some(beat),
            Phase::Lost { at, .. } => Some(at),
            Phase::Rejoining { started, .. } => Some(started.plus(self.cfg.dial_timeout)),
            Phase::Over => None,
        }
    }

    /// Dials what is due, gives up dials that took too long, and sends the
    /// heartbeat when due. `rejoin` makes the app's report for a dial of a
    /// manager it lost, `heartbeat` its heartbeat.
    pub fn handle_timeout(
        &mut self,
        now: Time,
        rejoin: impl FnOnce() -> AppMsg,
        heartbeat: impl FnOnce() -> AppMsg,
    ) -> Option<MembershipEvent> {
        match self.phase {
            Phase::Joining { since, .. } if now >= since.plus(self.cfg.join_timeout) => {
                self.phase = Phase::Over;
                return Some(MembershipEvent::Refused(format!(
                    "the manager at {} did not answer within {} s",
                    self.addr,
                    self.cfg.join_timeout.as_secs()
                )));
            }
            Phase::Joining {
                conn: Some((conn, deadline)),
                since,
                ..
            } if deadline <= now => {
                self.out.push(Transmit::Close {
                    conn,
                    code: close::SHUTDOWN,
                    reason: "no answer in time".into(),
                });
                self.phase = Phase::Joining {
                    conn: None,
                    at: now.plus(self.cfg.redial),
                    since,
                };
            }
            Phase::Joining {
                conn: None,
                at,
                since,
            } if at <= now => {
                let conn = self.ids.fresh();
                self.out.push(Transmit::Dial {
                    conn,
                    addr: self.addr,
                    hello: encode(&AppMsg::Register(self.registration.clone())),
                });
                // The first registration waits for its answer (or for the
                // transport to give up): a manager that registered the app
                // after the app gave up would hold a member that never was.
                self.phase = Phase::Joining {
                    conn: Some((conn, since.plus(self.cfg.join_timeout))),
                    at,
                    since,
                };
            }
            Phase::Member { conn, beat } if beat <= now => {
                self.out.push(Transmit::Send {
                    conn,
                    frame: encode(&heartbeat()),
                });
                self.phase = Phase::Member {
                    conn,
                    beat: now.plus(self.cfg.heartbeat),
                };
            }
            Phase::Rejoining {
                conn,
                started,
                failures,
            } if started.plus(self.cfg.dial_timeout) <= now => {
                self.out.push(Transmit::Close {
                    conn,
                    code: close::SHUTDOWN,
                    reason: "no answer in time".into(),
                });
                if failures == 0 {
                    tracing::warn!(
                        "manager did not answer within {} ms; dialling it again until it is back",
                        self.cfg.dial_timeout.as_millis()
                    );
                }
                self.phase = Phase::Lost {
                    at: self.next_dial(started, now),
                    failures: failures + 1,
                };
            }
            Phase::Lost { at, failures } if at <= now => {
                let conn = self.ids.fresh();
                self.out.push(Transmit::Dial {
                    conn,
                    addr: self.addr,
                    hello: encode(&rejoin()),
                });
                self.phase = Phase::Rejoining {
                    conn,
                    started: now,
                    failures,
                };
            }
            _ => {}
        }
        None
    }

    /// When to dial again after a dial made at `started` failed at `now`:
    /// dials start at most every [`MembershipConfig::redial`], so one that
    /// timed out is followed at once.
    fn next_dial(&self, started: Time, now: Time) -> Time {
        started.plus(self.cfg.redial).max(now)
    }

    /// Takes what the membership asks of the driver, in order.
    pub fn drain(&mut self) -> std::vec::Drain<'_, Transmit> {
        self.out.drain(..)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::app::Role;

    fn reg() -> Registration {
        Registration {
            role: Role::Cellapp,
            protocol: crate::proto::PROTOCOL_MAJOR,
            defs_digest: [0; 32],
            internal_addr: SocketAddr::from(([127, 0, 0, 1], 2)),
            public_addr: None,
            admin_addr: None,
        }
    }

    fn manager() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 1))
    }

    fn dialled(m: &mut Membership) -> ConnId {
        let out: Vec<_> = m.drain().collect();
        match out.as_slice() {
            [Transmit::Dial { conn, .. }] => *conn,
            other => panic!("expected one dial, got {other:?}"),
        }
    }

    fn tick(m: &mut Membership, now: Time) -> Option<MembershipEvent> {
        m.handle_timeout(now, || AppMsg::NeedIds, || AppMsg::Retire)
    }

    fn registered() -> AppMsg {
        AppMsg::Registered {
            app: AppId(4),
            ids: IdBlock { next: 1, end: 9 },
            space: SpaceInfo {
                bounds: [0.0; 4],
                tick_hz: 10,
            },
        }
    }

    fn joined(cfg: MembershipConfig) -> (Membership, ConnId) {
        let mut m = Membership::new(Time(0), manager(), reg(), cfg);
        tick(&mut m, Time(0));
        let conn = dialled(&mut m);
        let ev = m.handle(Time(10), conn, ConnEvent::Msg(registered()));
        assert!(matches!(
            ev,
            Some(MembershipEvent::Joined { app: AppId(4), .. })
        ));
        (m, conn)
    }

    #[test]
    fn heartbeats_follow_the_configured_period() {
        let cfg = MembershipConfig {
            heartbeat: Duration::from_millis(300),
            ..MembershipConfig::default()
        };
        let (mut m, _) = joined(cfg);
        let mut beats = 0;
        let mut now = Time(10);
        while now < Time(3_000_010) {
            now = m.poll_timeout().expect("a member always has a timer");
            tick(&mut m, now);
            beats += m
                .drain()
                .filter(|t| matches!(t, Transmit::Send { .. }))
                .count();
        }
        assert_eq!(beats, 10, "one beat every 300 ms for 3 s");
    }

    #[test]
    fn a_lost_manager_is_dialled_again_until_it_takes_the_app_back() {
        let (mut m, conn) = joined(MembershipConfig::default());
        let ev = m.handle(Time(1_000), conn, ConnEvent::Closed("gone".into()));
        assert!(matches!(ev, Some(MembershipEvent::Lost)));
        assert!(!m.send(&AppMsg::NeedIds), "nothing goes while lost");
        // Redial after 250 ms and give it 500 ms; dials start at most
        // every 250 ms, so the next follows the timed-out one at once.
        assert_eq!(m.poll_timeout(), Some(Time(251_000)));
        tick(&mut m, Time(251_000));
        let first = dialled(&mut m);
        assert_eq!(m.poll_timeout(), Some(Time(751_000)));
        tick(&mut m, Time(751_000));
        assert!(matches!(
            m.drain().collect::<Vec<_>>().as_slice(),
            [Transmit::Close { conn, .. }] if *conn == first
        ));
        assert_eq!(m.poll_timeout(), Some(Time(751_000)));
        tick(&mut m, Time(751_000));
        let second = dialled(&mut m);
        assert_ne!(first, second);
        let ev = m.handle(Time(1_100_000), second, ConnEvent::Msg(registered()));
        assert!(matches!(ev, Some(MembershipEvent::Rejoined)));
        assert!(m.is_up());
    }

    #[test]
    fn a_refusal_ends_the_membership() {
        let (mut m, conn) = joined(MembershipConfig::default());
        m.handle(Time(1), conn, ConnEvent::Closed("gone".into()));
        tick(&mut m, Time(300_000));
        let again = dialled(&mut m);
        let refused = AppMsg::RegisterRefused {
            reason: "declared dead".into(),
        };
        let ev = m.handle(Time(300_100), again, ConnEvent::Msg(refused));
        assert!(matches!(ev, Some(MembershipEvent::Refused(r)) if r == "declared dead"));
        assert_eq!(m.poll_timeout(), None);
    }

    #[test]
    fn a_manager_that_never_answers_the_first_registration_is_given_up() {
        let mut m = Membership::new(Time(0), manager(), reg(), MembershipConfig::default());
        let mut now = Time(0);
        let mut dials = 0;
        loop {
            if let Some(ev) = tick(&mut m, now) {
                assert!(matches!(ev, MembershipEvent::Refused(_)));
                break;
            }
            for t in m.drain().collect::<Vec<_>>() {
                if let Transmit::Dial { conn, .. } = t {
                    dials += 1;
                    m.handle(now, conn, ConnEvent::Closed("unreachable".into()));
                }
            }
            now = m.poll_timeout().expect("a timer while joining");
        }
        assert_eq!(now, Time(10_000_000));
        assert!(dials > 30, "dialled every 250 ms: {dials}");
    }
}
