//! A client's entity indices: the small numbers its position updates name
//! entities by. An entity gets the lowest free index when it enters the
//! client's view; when it leaves, its index rests for a quarantine before
//! another entity gets it, so a datagram sent before the leave cannot move
//! the next holder (the client also ignores positions older than the
//! holder's enter). The indices and the quarantine travel with the witness.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, VecDeque};

/// The indices of one client.
#[derive(Debug, Default)]
pub struct Indices {
    /// Every index below this was given out at some time.
    next: u32,
    /// Indices below `next` that are free, lowest first.
    free: BinaryHeap<Reverse<u32>>,
    /// Indices resting after a leave, with the tick they were freed, oldest
    /// first.
    resting: VecDeque<(u32, u64)>,
}

impl Indices {
    /// The lowest free index at `tick`, given out. Indices that rested
    /// `quarantine` ticks are free again.
    pub fn take(&mut self, tick: u64, quarantine: u64) -> u32 {
        while let Some(&(i, at)) = self.resting.front() {
            if tick.saturating_sub(at) < quarantine {
                break;
            }
            self.resting.pop_front();
            self.free.push(Reverse(i));
        }
        match self.free.pop() {
            Some(Reverse(i)) => i,
            // Past `u32::MAX` (only a peer's numbers could get there) the
            // last index is given again; a client ignores such high ones.
            None => {
                let i = self.next;
                self.next = self.next.saturating_add(1);
                i
            }
        }
    }

    /// An index taken for an enter that was not sent after all.
    pub fn give_back(&mut self, index: u32) {
        self.free.push(Reverse(index));
    }

    /// An index whose entity left at `tick`.
    pub fn retire(&mut self, index: u32, tick: u64) {
        self.resting.push_back((index, tick));
    }

    /// The resting indices, with the ticks since each was freed.
    pub fn export(&self, tick: u64) -> Vec<(u32, u32)> {
        self.resting
            .iter()
            .map(|&(i, at)| (i, tick.saturating_sub(at).min(u64::from(u32::MAX)) as u32))
            .collect()
    }

    /// The indices of a witness arriving from another cell: those its
    /// client's entities hold and those resting; every other index below
    /// the highest is free.
    pub fn import(held: impl Iterator<Item = u32>, resting: &[(u32, u32)], tick: u64) -> Indices {
        let mut taken: BTreeSet<u32> = held.collect();
        let mut rest: Vec<(u32, u64)> = resting
            .iter()
            .filter(|(i, _)| !taken.contains(i))
            .map(|&(i, age)| (i, tick.saturating_sub(u64::from(age))))
            .collect();
        rest.sort_by_key(|&(i, at)| (at, i));
        rest.dedup_by_key(|(i, _)| *i);
        taken.extend(rest.iter().map(|(i, _)| *i));
        let next = taken.last().map_or(0, |i| i.saturating_add(1));
        // A peer's numbers are bounded by its message's size, but a free
        // list is only worth keeping for what a client could really hold.
        let free = (0..next.min(1 << 20))
            .filter(|i| !taken.contains(i))
            .map(Reverse)
            .collect();
        Indices {
            next,
            free,
            resting: rest.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowest_free_first_and_a_left_index_rests_its_quarantine() {
        let mut ix = Indices::default();
        assert_eq!((ix.take(1, 50), ix.take(1, 50), ix.take(1, 50)), (0, 1, 2));
        ix.retire(1, 10);
        assert_eq!(ix.take(59, 50), 3, "index 1 is still resting");
        assert_eq!(ix.take(60, 50), 1, "index 1 rested 50 ticks");
        assert_eq!(ix.take(60, 50), 4);
    }

    #[test]
    fn indices_travel_with_the_witness() {
        let mut ix = Indices::default();
        for _ in 0..5 {
            ix.take(1, 50);
        }
        ix.retire(2, 100);
        ix.retire(0, 120);
        // The next cell counts its own ticks: there it is tick 1000.
        let mut moved = Indices::import([1, 3, 4].into_iter(), &ix.export(130), 1000);
        // Nothing free below 5 until the quarantines end (they began 30
        // and 10 ticks ago).
        assert_eq!(moved.take(1000, 50), 5);
        assert_eq!(moved.take(1020, 50), 2);
        assert_eq!(moved.take(1040, 50), 0);
        assert_eq!(moved.take(1040, 50), 6);
    }
}
