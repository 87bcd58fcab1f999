//! One side's half of the session between two processes: the messages it
//! sent that the peer has not yet acknowledged, and how far it has
//! received from the peer. A session outlives the connections that carry
//! it, so a connection that drops between two live processes loses
//! nothing: on the next connection each side says how far it received and
//! the other sends again from there.
//!
//! Messages are numbered implicitly. The first message sent on a
//! connection after its handshake is the one the peer said it expects
//! next; each message after it is one more. Numbers are never written on
//! the wire.

use bytes::Bytes;
use std::collections::VecDeque;

/// What a session does with a frame offered for sending.
#[derive(Debug, PartialEq, Eq)]
pub enum Queued {
    /// Kept until acknowledged; the caller sends it now if the connection
    /// is up and caught up.
    Kept,
    /// Not kept: the backlog is full. The frame is dropped.
    Full {
        /// Bytes the backlog holds.
        held: usize,
        /// Its bound.
        max: usize,
    },
}

/// The sending half: frames numbered `acked..next`, kept until the peer
/// acknowledges them.
#[derive(Debug, Default)]
pub struct Outgoing {
    /// Frames `acked..next`, oldest first.
    unacked: VecDeque<Bytes>,
    /// Their total size.
    bytes: usize,
    /// The number of the oldest frame kept.
    acked: u64,
    /// Frames before this one have been handed to the current connection.
    sent: u64,
}

impl Outgoing {
    /// The number the next frame offered will get.
    pub fn next(&self) -> u64 {
        self.acked + self.unacked.len() as u64
    }

    /// Bytes kept until acknowledged.
    pub fn held(&self) -> usize {
        self.bytes
    }

    /// Frames kept until acknowledged.
    pub fn len(&self) -> usize {
        self.unacked.len()
    }

    /// Whether every frame offered has been acknowledged.
    pub fn is_empty(&self) -> bool {
        self.unacked.is_empty()
    }

    /// Keeps a frame until acknowledged, unless that would hold more than
    /// `max` bytes. A frame larger than `max` on its own is always refused.
    pub fn push(&mut self, frame: Bytes, max: usize) -> Queued {
        if self.bytes + frame.len() > max {
            return Queued::Full {
                held: self.bytes,
                max,
            };
        }
        self.bytes += frame.len();
        self.unacked.push_back(frame);
        Queued::Kept
    }

    /// The peer has everything before `next`. Numbers outside what was sent
    /// are ignored (a stale or wrong acknowledgement changes nothing).
    pub fn ack(&mut self, next: u64) {
        if next > self.next() {
            return;
        }
        while self.acked < next {
            match self.unacked.pop_front() {
                Some(f) => self.bytes -= f.len(),
                None => break,
            }
            self.acked += 1;
        }
        self.sent = self.sent.max(self.acked);
    }

    /// A new connection: the peer expects `from` next. Returns false if
    /// `from` lies outside what this side kept (the peer claims to have
    /// frames never sent, or asks for ones already forgotten).
    pub fn restart(&mut self, from: u64) -> bool {
        if from < self.acked || from > self.next() {
            return false;
        }
        self.ack(from);
        self.sent = from;
        true
    }

    /// Frames not yet handed to the current connection, in order; they
    /// count as handed over once taken.
    pub fn unsent(&mut self) -> impl Iterator<Item = Bytes> + '_ {
        let skip = (self.sent - self.acked) as usize;
        self.sent = self.next();
        self.unacked.iter().skip(skip).cloned()
    }

    /// Takes every frame kept, unacknowledged, for a peer that is gone.
    pub fn take(&mut self) -> Vec<Bytes> {
        self.bytes = 0;
        self.acked = self.next();
        self.sent = self.acked;
        self.unacked.drain(..).collect()
    }
}

/// The receiving half: how far the peer's frames have been taken, and how
/// far that has been acknowledged.
#[derive(Debug, Default)]
pub struct Incoming {
    /// The number of the next frame expected.
    next: u64,
    /// The last number told to the peer.
    told: u64,
    /// The number the next frame on the current connection carries.
    on_conn: u64,
}

/// What a received frame is.
#[derive(Debug, PartialEq, Eq)]
pub enum Received {
    /// The next frame: take it.
    Next,
    /// Already taken (sent again after a reconnection): drop it.
    Duplicate,
    /// Past a frame never received: the peer broke the session.
    Gap {
        /// The frame's number.
        seq: u64,
        /// The number expected.
        expected: u64,
    },
}

impl Incoming {
    /// The number of the next frame expected.
    pub fn next(&self) -> u64 {
        self.next
    }

    /// A new connection on which the peer numbers from what this side
    /// told it in the handshake: `self.next()` at that moment.
    pub fn restart(&mut self) {
        self.on_conn = self.next;
        self.told = self.next;
    }

    /// A frame arrived on the current connection.
    pub fn receive(&mut self) -> Received {
        let seq = self.on_conn;
        self.on_conn += 1;
        if seq < self.next {
            Received::Duplicate
        } else if seq > self.next {
            Received::Gap {
                seq,
                expected: self.next,
            }
        } else {
            self.next += 1;
            Received::Next
        }
    }

    /// Frames taken since the peer was last told.
    pub fn unacknowledged(&self) -> u64 {
        self.next - self.told
    }

    /// The acknowledgement to send now, if any is owed.
    pub fn ack(&mut self) -> Option<u64> {
        (self.next > self.told).then(|| {
            self.told = self.next;
            self.next
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frame(n: u8, len: usize) -> Bytes {
        Bytes::from(vec![n; len])
    }

    #[test]
    fn acknowledged_frames_are_forgotten_and_the_rest_sent_again() {
        let mut out = Outgoing::default();
        for n in 0..5 {
            assert_eq!(out.push(frame(n, 10), 1000), Queued::Kept);
        }
        assert_eq!(out.unsent().count(), 5);
        assert_eq!(out.unsent().count(), 0, "taken once");
        out.ack(2);
        assert_eq!((out.len(), out.held()), (3, 30));
        // A new connection: the peer got frame 2 too.
        assert!(out.restart(3));
        let again: Vec<u8> = out.unsent().map(|f| f[0]).collect();
        assert_eq!(again, vec![3, 4]);
    }

    #[test]
    fn the_backlog_is_bounded_in_bytes() {
        let mut out = Outgoing::default();
        assert_eq!(out.push(frame(0, 60), 100), Queued::Kept);
        assert_eq!(
            out.push(frame(1, 50), 100),
            Queued::Full { held: 60, max: 100 }
        );
        assert_eq!(out.next(), 1, "a refused frame takes no number");
        out.ack(1);
        assert_eq!(out.push(frame(1, 50), 100), Queued::Kept);
    }

    #[test]
    fn a_restart_outside_what_was_kept_is_refused() {
        let mut out = Outgoing::default();
        for n in 0..3 {
            out.push(frame(n, 1), 100);
        }
        out.ack(2);
        assert!(!out.restart(1), "frame 1 is forgotten");
        assert!(!out.restart(4), "frame 3 was never sent");
        assert!(out.restart(3));
    }

    #[test]
    fn stale_and_impossible_acks_change_nothing() {
        let mut out = Outgoing::default();
        for n in 0..3 {
            out.push(frame(n, 1), 100);
        }
        out.ack(2);
        out.ack(1);
        out.ack(9);
        assert_eq!((out.next(), out.len()), (3, 1));
    }

    #[test]
    fn duplicates_after_a_reconnection_are_dropped() {
        let mut inc = Incoming::default();
        assert_eq!(inc.receive(), Received::Next);
        assert_eq!(inc.receive(), Received::Next);
        // The peer starts a new connection from what it was told: 2.
        inc.restart();
        assert_eq!(inc.receive(), Received::Next);
        assert_eq!(inc.next(), 3);
    }

    #[test]
    fn acks_are_owed_only_for_new_frames() {
        let mut inc = Incoming::default();
        assert_eq!(inc.ack(), None);
        inc.receive();
        inc.receive();
        assert_eq!(inc.unacknowledged(), 2);
        assert_eq!(inc.ack(), Some(2));
        assert_eq!(inc.ack(), None);
    }

    proptest! {
        /// Two halves joined by connections that drop at random points,
        /// losing whatever was on them: the receiver takes every frame
        /// exactly once, in order, and the sender ends holding nothing.
        #[test]
        fn frames_arrive_once_in_order_over_dropping_connections(
            sizes in proptest::collection::vec(1usize..40, 1..200),
            drops in proptest::collection::vec(0usize..400, 0..12),
            acks in proptest::collection::vec(0usize..400, 0..40),
        ) {
            let mut tx = Outgoing::default();
            let mut rx = Incoming::default();
            let mut wire: VecDeque<Bytes> = VecDeque::new();
            let mut got = Vec::new();
            let mut step = 0usize;
            let reconnect = |tx: &mut Outgoing, rx: &mut Incoming, wire: &mut VecDeque<Bytes>| {
                wire.clear();
                rx.restart();
                assert!(tx.restart(rx.next()));
            };
            for (i, len) in sizes.iter().enumerate() {
                let mut f = vec![0u8; *len];
                f[..8.min(*len)].copy_from_slice(&(i as u64).to_le_bytes()[..8.min(*len)]);
                prop_assert_eq!(tx.push(Bytes::from(f), usize::MAX), Queued::Kept);
                wire.extend(tx.unsent());
                // Deliver some of what is on the wire.
                for _ in 0..(i % 3) {
                    step += 1;
                    if drops.contains(&step) {
                        reconnect(&mut tx, &mut rx, &mut wire);
                    }
                    let Some(f) = wire.pop_front() else { break };
                    if rx.receive() == Received::Next {
                        got.push(f);
                    }
                    if acks.contains(&step) {
                        if let Some(n) = rx.ack() {
                            tx.ack(n);
                        }
                    }
                }
            }
            // Settle: one last clean connection carries the rest.
            reconnect(&mut tx, &mut rx, &mut wire);
            wire.extend(tx.unsent());
            while let Some(f) = wire.pop_front() {
                match rx.receive() {
                    Received::Next => got.push(f),
                    other => prop_assert!(false, "{:?}", other),
                }
            }
            if let Some(n) = rx.ack() {
                tx.ack(n);
            }
            prop_assert_eq!(got.len(), sizes.len());
            for (i, f) in got.iter().enumerate() {
                prop_assert_eq!(f.len(), sizes[i]);
                let n = 8.min(f.len());
                prop_assert_eq!(&f[..n], &(i as u64).to_le_bytes()[..n]);
            }
            prop_assert!(tx.is_empty());
            prop_assert_eq!(tx.held(), 0);
        }
    }
}
