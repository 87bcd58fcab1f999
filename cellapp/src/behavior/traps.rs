//! An entity's proximity traps: a radius around it, and who is inside.
//! Each tick the cell compares who is within the radius with who was, and
//! calls the owner's `trap` hook for every entity that came in or went out.
//! The set inside belongs to the real and travels with it
//! ([`tessera::proto::app::TrapState`]), so neither the owner's move to
//! another cell nor another entity's makes a trap see anyone leave or
//! enter again: every enter is paired with one leave.

use tessera::proto::app::TrapState;
use tessera::EntityId;

/// A trap of one entity, as [`super::Ctx::add_trap`] returned it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TrapId(pub u32);

/// The most traps one entity may have at once.
pub const MAX_TRAPS: usize = 16;

/// The traps of one real.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Traps {
    list: Vec<TrapState>,
    next: u32,
}

impl Traps {
    /// Traps as they arrived with a real from another cell (at most
    /// [`MAX_TRAPS`], each set inside sorted).
    pub fn from_parts(mut list: Vec<TrapState>, next: u32) -> Traps {
        list.truncate(MAX_TRAPS);
        for t in &mut list {
            t.inside.sort_unstable();
            t.inside.dedup();
        }
        Traps { list, next }
    }

    /// The traps and the next id, for the real's move to another cell.
    pub fn to_parts(&self) -> (Vec<TrapState>, u32) {
        (self.list.clone(), self.next)
    }

    /// The id the `k`-th trap added from now gets.
    pub(crate) fn id_after(&self, k: u32) -> TrapId {
        TrapId(self.next.wrapping_add(k))
    }

    /// How many traps are set.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// No trap is set.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The traps, in the order they were set.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &TrapState> {
        self.list.iter()
    }

    pub(crate) fn add(&mut self, t: TrapState) {
        self.next = self.next.max(t.id.wrapping_add(1));
        self.list.push(t);
    }

    pub(crate) fn cancel(&mut self, id: TrapId) {
        self.list.retain(|t| t.id != id.0);
    }

    /// Who is inside trap `id` now (sorted).
    pub(crate) fn seen(&mut self, id: TrapId, inside: Vec<EntityId>) {
        if let Some(t) = self.list.iter_mut().find(|t| t.id == id.0) {
            t.inside = inside;
        }
    }
}

/// The entities in `now` but not in `before`, and those in `before` but not
/// in `now`; both lists sorted.
pub(crate) fn diff(before: &[EntityId], now: &[EntityId]) -> (Vec<EntityId>, Vec<EntityId>) {
    let came = now
        .iter()
        .filter(|e| before.binary_search(e).is_err())
        .copied()
        .collect();
    let went = before
        .iter()
        .filter(|e| now.binary_search(e).is_err())
        .copied()
        .collect();
    (came, went)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_diff_names_who_came_and_who_went() {
        let ids = |v: &[u64]| v.iter().map(|&i| EntityId(i)).collect::<Vec<_>>();
        let (came, went) = diff(&ids(&[1, 2, 5]), &ids(&[2, 3, 5, 8]));
        assert_eq!(came, ids(&[3, 8]));
        assert_eq!(went, ids(&[1]));
    }

    #[test]
    fn the_set_inside_travels_sorted() {
        let t = TrapState {
            id: 2,
            radius: 5.0,
            tag: 1,
            inside: vec![EntityId(9), EntityId(3), EntityId(9)],
        };
        let traps = Traps::from_parts(vec![t], 3);
        assert_eq!(
            traps.iter().next().map(|t| t.inside.clone()),
            Some(vec![EntityId(3), EntityId(9)])
        );
        assert_eq!(traps.id_after(0), TrapId(3));
    }
}
