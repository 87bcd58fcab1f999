//! The entity channel: how a base and its entity's real talk, in order and
//! exactly once, wherever the real moves (design §8).
//!
//! Two streams run on it. Base → real, every [`EntityMsg`] is numbered; the
//! real applies each exactly once and in order, holding ones that come
//! early (a message sent to the cell the real just left is forwarded and
//! can arrive after one sent straight to its new cell), and the base keeps
//! what the real has not yet confirmed applied, to send again if a cellapp
//! on the way dies. Real → client, every stream frame is numbered; the
//! base holds frames that come early and hands them to the client in order,
//! whichever cell sent them.
//!
//! [`BaseChannel`] is the base's end, [`RealChannel`] the real's; the real's
//! end travels with it when it moves cell. Both are built from
//! [`Sender`] (numbering, unacknowledged messages) and [`Reorder`] (the
//! reorder buffer). Every buffer has a bound: the unacknowledged messages
//! forget their oldest (the real confirms with every backup, every few
//! seconds), and a reorder buffer that fills refuses what comes next (the
//! gap before it is never going to fill) so the caller can reset the stream.
//!
//! A dropped connection between two live apps does not reach this level:
//! app links resend what was lost ([`crate::link`]).

use std::collections::{BTreeMap, VecDeque};

use crate::proto::app::EntityMsg;
use crate::Time;

/// Most messages a base keeps unconfirmed; past it the oldest is forgotten.
/// A backup confirms them, and backups come every few seconds, so this is
/// many times what a client sends between two.
pub const MAX_UNACKED: usize = 4096;

/// Most messages or frames a reorder buffer holds ahead of a gap.
pub const MAX_EARLY: usize = 4096;

/// How far a client's stream numbering jumps when a new connection takes
/// over the entity: past any frame a real can have numbered for the old one.
pub const OUT_LEAP: u64 = 1 << 32;

/// How far a restored base's numbering jumps past its copy's: past anything
/// the dead base can have sent.
pub const SEQ_LEAP: u64 = 1 << 32;

/// Numbers what it sends and keeps what has not been confirmed.
#[derive(Clone, Debug)]
pub struct Sender<M> {
    next: u64,
    unacked: VecDeque<(u64, M)>,
}

impl<M> Default for Sender<M> {
    fn default() -> Self {
        Sender {
            next: 0,
            unacked: VecDeque::new(),
        }
    }
}

impl<M: Clone> Sender<M> {
    /// A sender whose first message gets `next`.
    pub fn starting_at(next: u64) -> Sender<M> {
        Sender {
            next,
            unacked: VecDeque::new(),
        }
    }

    /// The number the next message gets.
    pub fn next(&self) -> u64 {
        self.next
    }

    /// Numbers a message and keeps a copy until confirmed (forgetting the
    /// oldest beyond [`MAX_UNACKED`]).
    pub fn send(&mut self, msg: M) -> (u64, M) {
        let seq = self.next;
        self.next += 1;
        if self.unacked.len() >= MAX_UNACKED {
            self.unacked.pop_front();
        }
        self.unacked.push_back((seq, msg.clone()));
        (seq, msg)
    }

    /// Every message before `applied` has been applied: forget them.
    pub fn confirm(&mut self, applied: u64) {
        while self.unacked.front().is_some_and(|(seq, _)| *seq < applied) {
            self.unacked.pop_front();
        }
    }

    /// What has been sent and not confirmed, oldest first.
    pub fn unconfirmed(&self) -> impl Iterator<Item = &(u64, M)> {
        self.unacked.iter()
    }

    /// Whether anything sent is unconfirmed.
    pub fn has_unconfirmed(&self) -> bool {
        !self.unacked.is_empty()
    }
}

/// What a reorder buffer made of an arrival.
#[derive(Debug, PartialEq, Eq)]
pub enum Offer {
    /// Kept: taken in its turn by [`Reorder::pop`].
    Kept,
    /// Already taken: dropped.
    Duplicate,
    /// The buffer is full: dropped. The stream is stuck behind a gap.
    Full {
        /// The number expected next.
        expected: u64,
    },
}

/// Hands out arrivals in number order, each once.
#[derive(Clone, Debug)]
pub struct Reorder<M> {
    next: u64,
    early: BTreeMap<u64, M>,
}

impl<M> Default for Reorder<M> {
    fn default() -> Self {
        Reorder::starting_at(0, Vec::new())
    }
}

impl<M> Reorder<M> {
    /// A buffer expecting `next`, holding `early` (as exported with
    /// [`Reorder::export`]; entries before `next` or beyond the bound are
    /// dropped).
    pub fn starting_at(next: u64, early: Vec<(u64, M)>) -> Reorder<M> {
        let early = early
            .into_iter()
            .filter(|(seq, _)| *seq >= next)
            .take(MAX_EARLY)
            .collect();
        Reorder { next, early }
    }

    /// The number expected next: everything before it has been taken.
    pub fn next(&self) -> u64 {
        self.next
    }

    /// How many arrivals wait for a gap to fill.
    pub fn waiting(&self) -> usize {
        self.early.len()
    }

    /// An arrival numbered `seq`.
    pub fn offer(&mut self, seq: u64, msg: M) -> Offer {
        if seq < self.next || self.early.contains_key(&seq) {
            return Offer::Duplicate;
        }
        if self.early.len() >= MAX_EARLY {
            return Offer::Full {
                expected: self.next,
            };
        }
        self.early.insert(seq, msg);
        Offer::Kept
    }

    /// The next arrival in order, if it is here.
    pub fn pop(&mut self) -> Option<M> {
        let msg = self.early.remove(&self.next)?;
        self.next += 1;
        Some(msg)
    }

    /// Starts over at `next`, dropping what was held.
    pub fn restart(&mut self, next: u64) {
        self.next = next;
        self.early.clear();
    }

    /// Takes the held arrivals, for moving the buffer elsewhere.
    pub fn export(&mut self) -> Vec<(u64, M)> {
        std::mem::take(&mut self.early).into_iter().collect()
    }
}

/// The real's end of an entity channel: the base's messages in order, and
/// the numbering of its client's stream frames. It moves with the real.
#[derive(Clone, Debug, Default)]
pub struct RealChannel {
    from_base: Reorder<EntityMsg>,
    to_client: u64,
}

impl RealChannel {
    /// The end of a real that arrived from another cell: as the old cell
    /// exported it.
    pub fn resume(next: u64, early: Vec<(u64, EntityMsg)>, out: u64) -> RealChannel {
        RealChannel {
            from_base: Reorder::starting_at(next, early),
            to_client: out,
        }
    }

    /// The base's message numbered `seq` arrived.
    pub fn offer(&mut self, seq: u64, msg: EntityMsg) -> Offer {
        self.from_base.offer(seq, msg)
    }

    /// The next base message to apply, if it is here.
    pub fn next_to_apply(&mut self) -> Option<EntityMsg> {
        self.from_base.pop()
    }

    /// The number of the next base message: every one before it is applied.
    pub fn applied(&self) -> u64 {
        self.from_base.next()
    }

    /// Messages waiting for an earlier one.
    pub fn waiting(&self) -> usize {
        self.from_base.waiting()
    }

    /// A restored base took over: its messages number from `seq`, and what
    /// the dead base sent that is not yet applied is void.
    pub fn rebase(&mut self, seq: u64) {
        self.from_base.restart(seq);
    }

    /// Numbers the next stream frame for the client.
    pub fn number_frame(&mut self) -> u64 {
        let seq = self.to_client;
        self.to_client += 1;
        seq
    }

    /// A new client connection: its frames number from `out`.
    pub fn attach(&mut self, out: u64) {
        self.to_client = out;
    }

    /// Everything the real's next cell needs: the next base message, the
    /// ones held, and the next frame number.
    pub fn export(&mut self) -> (u64, Vec<(u64, EntityMsg)>, u64) {
        let next = self.from_base.next();
        (next, self.from_base.export(), self.to_client)
    }
}

/// What a base may hand its client now.
#[derive(Debug, PartialEq, Eq)]
pub enum Frames {
    /// These frames, in order (possibly none).
    Ready(Vec<Vec<u8>>),
    /// The client's stream is stuck behind a gap that will not fill: the
    /// base closes its connection, and the client resumes on a fresh one.
    Stuck {
        /// The frame expected next.
        expected: u64,
    },
}

/// The base's end of an entity channel: numbering messages to the real and
/// keeping them until confirmed, and putting the real's frames for the
/// client back in order.
#[derive(Clone, Debug, Default)]
pub struct BaseChannel {
    to_real: Sender<EntityMsg>,
    from_real: Reorder<Vec<u8>>,
    /// Since when a frame has been missing with later ones held.
    gap_since: Option<Time>,
}

impl BaseChannel {
    /// The end of a restored base, numbering from a copy's `next` (plus a
    /// leap past what the dead base may have sent) and expecting frames
    /// from `out`.
    pub fn restored(next: u64, out: u64) -> BaseChannel {
        BaseChannel {
            to_real: Sender::starting_at(next.saturating_add(SEQ_LEAP)),
            from_real: Reorder::starting_at(out, Vec::new()),
            gap_since: None,
        }
    }

    /// Numbers a message for the real, keeping a copy until confirmed.
    pub fn send(&mut self, msg: EntityMsg) -> (u64, EntityMsg) {
        self.to_real.send(msg)
    }

    /// The number the next message gets.
    pub fn next_seq(&self) -> u64 {
        self.to_real.next()
    }

    /// The next frame expected from the real.
    pub fn next_frame(&self) -> u64 {
        self.from_real.next()
    }

    /// The real applied everything before `applied` (from its backup).
    pub fn confirm(&mut self, applied: u64) {
        self.to_real.confirm(applied);
    }

    /// Messages sent and not confirmed, oldest first: sent again if a
    /// cellapp on their way died.
    pub fn unconfirmed(&self) -> impl Iterator<Item = &(u64, EntityMsg)> {
        self.to_real.unconfirmed()
    }

    /// Whether anything sent is unconfirmed.
    pub fn has_unconfirmed(&self) -> bool {
        self.to_real.has_unconfirmed()
    }

    /// A new cell half: both streams start over.
    pub fn reset(&mut self) {
        *self = BaseChannel::default();
    }

    /// A client frame from the real, numbered `seq`, arriving at `now`.
    pub fn frame(&mut self, now: Time, seq: u64, bytes: Vec<u8>) -> Frames {
        if let Offer::Full { expected } = self.from_real.offer(seq, bytes) {
            return Frames::Stuck { expected };
        }
        let mut ready = Vec::new();
        while let Some(f) = self.from_real.pop() {
            ready.push(f);
        }
        self.gap_since = match self.from_real.waiting() {
            0 => None,
            _ if !ready.is_empty() => Some(now),
            _ => self.gap_since.or(Some(now)),
        };
        Frames::Ready(ready)
    }

    /// Whether the client's stream has waited for a missing frame for
    /// `patience` or longer.
    pub fn stuck(&self, now: Time, patience: std::time::Duration) -> bool {
        self.gap_since.is_some_and(|t| now.since(t) >= patience)
    }

    /// A new client connection takes over: frames number from past
    /// anything the real sent for the old one. Returns where they start.
    pub fn attach(&mut self) -> u64 {
        let out = self.from_real.next().saturating_add(OUT_LEAP);
        self.from_real.restart(out);
        self.gap_since = None;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn call(n: u16) -> EntityMsg {
        EntityMsg::Call {
            method: n,
            args: Vec::new(),
        }
    }

    fn method(m: &EntityMsg) -> u16 {
        match m {
            EntityMsg::Call { method, .. } => *method,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn early_messages_wait_for_their_turn() {
        let mut real = RealChannel::default();
        assert_eq!(real.offer(1, call(1)), Offer::Kept);
        assert_eq!(real.next_to_apply(), None, "0 has not come");
        assert_eq!(real.offer(0, call(0)), Offer::Kept);
        let applied: Vec<u16> = std::iter::from_fn(|| real.next_to_apply())
            .map(|m| method(&m))
            .collect();
        assert_eq!(applied, vec![0, 1]);
        assert_eq!(real.applied(), 2);
    }

    #[test]
    fn duplicates_are_dropped() {
        let mut real = RealChannel::default();
        real.offer(0, call(0));
        real.next_to_apply();
        assert_eq!(real.offer(0, call(0)), Offer::Duplicate, "already applied");
        real.offer(2, call(2));
        assert_eq!(real.offer(2, call(2)), Offer::Duplicate, "already held");
    }

    #[test]
    fn unconfirmed_messages_are_kept_for_resending() {
        let mut base = BaseChannel::default();
        for n in 0..5 {
            base.send(call(n));
        }
        base.confirm(3);
        let resend: Vec<u64> = base.unconfirmed().map(|(s, _)| *s).collect();
        assert_eq!(resend, vec![3, 4]);
        // Sent again, the real takes only what it lacks.
        let mut real = RealChannel::resume(4, Vec::new(), 0);
        for (seq, msg) in base.unconfirmed() {
            real.offer(*seq, msg.clone());
        }
        assert_eq!(real.next_to_apply().map(|m| method(&m)), Some(4));
        assert_eq!(real.next_to_apply(), None);
    }

    #[test]
    fn the_bounds_hold() {
        let mut base = BaseChannel::default();
        for n in 0..MAX_UNACKED + 10 {
            base.send(call(n as u16));
        }
        assert_eq!(base.unconfirmed().count(), MAX_UNACKED);
        assert_eq!(base.unconfirmed().next().map(|(s, _)| *s), Some(10));

        let mut real = RealChannel::default();
        for n in 1..=MAX_EARLY as u64 {
            assert_eq!(real.offer(n, call(0)), Offer::Kept);
        }
        assert_eq!(
            real.offer(MAX_EARLY as u64 + 1, call(0)),
            Offer::Full { expected: 0 }
        );
        assert_eq!(real.waiting(), MAX_EARLY);

        let mut base = BaseChannel::default();
        for n in 1..=MAX_EARLY as u64 {
            assert_eq!(base.frame(Time(0), n, vec![1]), Frames::Ready(Vec::new()));
        }
        assert_eq!(
            base.frame(Time(0), 9_999, vec![1]),
            Frames::Stuck { expected: 0 }
        );
    }

    #[test]
    fn a_new_client_connection_numbers_past_the_old_one() {
        let mut base = BaseChannel::default();
        assert_eq!(
            base.frame(Time(0), 0, vec![0]),
            Frames::Ready(vec![vec![0]])
        );
        base.frame(Time(0), 5, vec![5]);
        let out = base.attach();
        assert_eq!(out, 1 + OUT_LEAP);
        let mut real = RealChannel::default();
        real.attach(out);
        let seq = real.number_frame();
        assert_eq!(
            base.frame(Time(0), seq, vec![7]),
            Frames::Ready(vec![vec![7]])
        );
        // A late frame for the old connection is dropped.
        assert_eq!(base.frame(Time(0), 6, vec![6]), Frames::Ready(Vec::new()));
    }

    #[test]
    fn a_moved_real_keeps_its_place() {
        let mut real = RealChannel::default();
        real.offer(0, call(0));
        real.next_to_apply();
        real.offer(2, call(2));
        real.number_frame();
        let (next, early, out) = real.export();
        let mut moved = RealChannel::resume(next, early, out);
        moved.offer(1, call(1));
        let applied: Vec<u16> = std::iter::from_fn(|| moved.next_to_apply())
            .map(|m| method(&m))
            .collect();
        assert_eq!(applied, vec![1, 2]);
        assert_eq!(moved.number_frame(), 1);
    }

    #[test]
    fn a_gap_that_does_not_fill_is_noticed() {
        let patience = std::time::Duration::from_secs(3);
        let mut base = BaseChannel::default();
        base.frame(Time(0), 1, vec![1]);
        assert!(!base.stuck(Time(2_999_999), patience));
        assert!(base.stuck(Time(3_000_000), patience));
        // The gap fills: nothing is stuck any more.
        assert_eq!(
            base.frame(Time(3_000_001), 0, vec![0]),
            Frames::Ready(vec![vec![0], vec![1]])
        );
        assert!(!base.stuck(Time(9_000_000), patience));
    }

    proptest! {
        /// Whatever order and however often messages arrive (each at least
        /// once, within the bound), the real applies each exactly once, in
        /// order.
        #[test]
        fn any_arrival_order_applies_each_once_in_order(
            n in 1usize..300,
            shuffle in proptest::collection::vec(any::<u32>(), 0..600),
            dups in proptest::collection::vec(0usize..300, 0..100),
        ) {
            let mut base = BaseChannel::default();
            let mut wire: Vec<(u64, EntityMsg)> =
                (0..n).map(|i| base.send(call(i as u16))).collect();
            for d in &dups {
                if let Some(m) = wire.get(*d % n).cloned() {
                    wire.push(m);
                }
            }
            for (i, s) in shuffle.iter().enumerate() {
                let len = wire.len();
                wire.swap(i % len, *s as usize % len);
            }
            let mut real = RealChannel::default();
            let mut applied = Vec::new();
            for (seq, msg) in wire {
                prop_assert_ne!(real.offer(seq, msg), Offer::Full { expected: real.applied() });
                while let Some(m) = real.next_to_apply() {
                    applied.push(method(&m));
                }
            }
            prop_assert_eq!(applied, (0..n as u16).collect::<Vec<_>>());
            base.confirm(real.applied());
            prop_assert!(!base.has_unconfirmed());
        }
    }
}
