//! An entity's mailboxes: the numbering that makes calls between entities
//! run exactly once and in order per caller, however they travel.
//!
//! A caller numbers its calls to each callee from 1. A call reaches the
//! callee's real directly or through cells that pass it on (a ghost's
//! cell, a cell the real has left), so a later call can overtake an
//! earlier one; the callee holds calls that came early and drops numbers it
//! has already run. Both sides' numbers belong to the reals and travel with
//! them when they move cell ([`MailState`]).

use std::collections::BTreeMap;
use tessera::proto::app::{Mail, MailState};
use tessera::EntityId;

/// The most calls held from one caller while an earlier one is on its way.
/// Links between live cellapps lose nothing, so only reordering fills it.
pub const MAX_HELD_PER_CALLER: usize = 64;

/// What became of a call offered to its callee.
#[derive(Debug, PartialEq)]
pub enum Offered {
    /// These calls (the one offered, and any held after it) are next, in order.
    Ready(Vec<Mail>),
    /// Held until the calls before it arrive.
    Held,
    /// Already run: dropped.
    Duplicate,
    /// Too many calls held from this caller: dropped.
    Full,
}

#[derive(Clone, Debug, Default, PartialEq)]
struct Inbound {
    next: u64,
    held: BTreeMap<u64, Mail>,
}

/// The mailboxes of one real.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Mailbox {
    sent: BTreeMap<EntityId, u64>,
    received: BTreeMap<EntityId, Inbound>,
}

impl Mailbox {
    /// The number of the next call to `to`.
    pub fn next_to(&mut self, to: EntityId) -> u64 {
        let n = self.sent.entry(to).or_insert(0);
        *n += 1;
        *n
    }

    /// Takes a call addressed to this real.
    pub fn offer(&mut self, mail: Mail) -> Offered {
        let inbound = self.received.entry(mail.from).or_insert(Inbound {
            next: 1,
            held: BTreeMap::new(),
        });
        if mail.seq < inbound.next || inbound.held.contains_key(&mail.seq) {
            return Offered::Duplicate;
        }
        if mail.seq > inbound.next {
            if inbound.held.len() >= MAX_HELD_PER_CALLER {
                return Offered::Full;
            }
            inbound.held.insert(mail.seq, mail);
            return Offered::Held;
        }
        let mut ready = vec![mail];
        inbound.next += 1;
        while let Some(m) = inbound.held.remove(&inbound.next) {
            ready.push(m);
            inbound.next += 1;
        }
        Offered::Ready(ready)
    }

    /// The state to carry to another cell.
    pub fn export(&self) -> MailState {
        MailState {
            sent: self.sent.iter().map(|(k, v)| (*k, *v)).collect(),
            received: self
                .received
                .iter()
                .map(|(k, i)| (*k, i.next, i.held.values().cloned().collect()))
                .collect(),
        }
    }

    /// The state as it arrived from another cell.
    pub fn import(state: MailState) -> Mailbox {
        Mailbox {
            sent: state.sent.into_iter().collect(),
            received: state
                .received
                .into_iter()
                .map(|(from, next, held)| {
                    let held = held
                        .into_iter()
                        .take(MAX_HELD_PER_CALLER)
                        .filter(|m| m.seq >= next)
                        .map(|m| (m.seq, m))
                        .collect();
                    (from, Inbound { next, held })
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn mail(from: u64, seq: u64) -> Mail {
        Mail {
            to: EntityId(1),
            from: EntityId(from),
            seq,
            method: 0,
            args: Vec::new(),
            hops: 0,
        }
    }

    fn seqs(o: Offered) -> Vec<u64> {
        match o {
            Offered::Ready(v) => v.iter().map(|m| m.seq).collect(),
            _ => Vec::new(),
        }
    }

    #[test]
    fn an_early_call_waits_for_the_one_before_it() {
        let mut b = Mailbox::default();
        assert_eq!(b.offer(mail(7, 2)), Offered::Held);
        assert_eq!(seqs(b.offer(mail(7, 1))), vec![1, 2]);
        assert_eq!(b.offer(mail(7, 2)), Offered::Duplicate);
        // Another caller's numbers are its own.
        assert_eq!(seqs(b.offer(mail(8, 1))), vec![1]);
    }

    #[test]
    fn held_calls_travel_with_the_real() {
        let mut here = Mailbox::default();
        assert_eq!(here.next_to(EntityId(9)), 1);
        assert_eq!(here.offer(mail(7, 3)), Offered::Held);
        let mut there = Mailbox::import(here.export());
        assert_eq!(there.next_to(EntityId(9)), 2);
        assert_eq!(seqs(there.offer(mail(7, 1))), vec![1]);
        assert_eq!(seqs(there.offer(mail(7, 2))), vec![2, 3]);
    }

    proptest! {
        /// Whatever order and however often calls arrive, each runs once,
        /// in the caller's order.
        #[test]
        fn every_call_runs_once_in_order(order in Just((1..=20u64).collect::<Vec<_>>()).prop_shuffle(),
                                         dups in proptest::collection::vec(1..=20u64, 0..10),
                                         cut in 0..20usize) {
            let mut b = Mailbox::default();
            let mut ran = Vec::new();
            let arrivals: Vec<u64> = order.iter().copied().chain(dups).collect();
            for (k, seq) in arrivals.into_iter().enumerate() {
                if k == cut {
                    // The real moves cell halfway.
                    b = Mailbox::import(b.export());
                }
                ran.extend(seqs(b.offer(mail(5, seq))));
            }
            prop_assert_eq!(ran, (1..=20).collect::<Vec<_>>());
        }
    }
}
