//! Identifiers: runtime entity ids (unique in the world, handed out in blocks
//! by the manager) and app ids (one per registered process).

use serde::{Deserialize, Serialize};
use std::fmt;

/// A runtime entity id, unique in the world for the world's lifetime.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct EntityId(pub u64);

impl fmt::Display for EntityId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "e{}", self.0)
    }
}

/// The id the manager gives a process (cellapp or baseapp) when it registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AppId(pub u32);

impl fmt::Display for AppId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "app{}", self.0)
    }
}

/// A half-open block `[next, end)` of entity ids granted to one app.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdBlock {
    /// The next id to hand out.
    pub next: u64,
    /// One past the last id of the block.
    pub end: u64,
}

impl IdBlock {
    /// An empty block: every `take` fails until more ids are granted.
    pub const EMPTY: IdBlock = IdBlock { next: 0, end: 0 };

    /// Takes the next id, or `None` when the block is used up.
    pub fn take(&mut self) -> Option<EntityId> {
        if self.next < self.end {
            let id = EntityId(self.next);
            self.next += 1;
            Some(id)
        } else {
            None
        }
    }

    /// How many ids are left.
    pub fn remaining(&self) -> u64 {
        self.end.saturating_sub(self.next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_hands_out_each_id_once() {
        let mut b = IdBlock { next: 10, end: 12 };
        assert_eq!(b.take(), Some(EntityId(10)));
        assert_eq!(b.remaining(), 1);
        assert_eq!(b.take(), Some(EntityId(11)));
        assert_eq!(b.take(), None);
    }
}
