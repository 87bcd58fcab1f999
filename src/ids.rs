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

/// The manager's app id: apps address it as app 0.
pub const MANAGER: AppId = AppId(0);

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

/// The ids an app hands out: the current block, a spare one, and whether it
/// has asked the manager for more.
#[derive(Clone, Debug)]
pub struct IdPool {
    current: IdBlock,
    spare: Option<IdBlock>,
    asked: bool,
}

impl IdPool {
    /// Ask for more when fewer than this many are left.
    pub const LOW_WATER: u64 = 1024;

    /// A pool starting with one block.
    pub fn new(block: IdBlock) -> IdPool {
        IdPool {
            current: block,
            spare: None,
            asked: false,
        }
    }

    /// Takes an id, moving to the spare block when the current one runs out.
    pub fn take(&mut self) -> Option<EntityId> {
        if let Some(id) = self.current.take() {
            return Some(id);
        }
        self.current = self.spare.take()?;
        self.current.take()
    }

    /// Adds a block granted by the manager.
    pub fn grant(&mut self, block: IdBlock) {
        self.spare = Some(block);
        self.asked = false;
    }

    /// One past the last id this pool may ever hand out.
    pub fn end(&self) -> u64 {
        self.current.end.max(self.spare.map_or(0, |b| b.end))
    }

    /// A request for more ids went to a manager that died: the next
    /// [`IdPool::should_ask`] asks again.
    pub fn request_lost(&mut self) {
        self.asked = false;
    }

    /// True once when the pool runs low and no request is outstanding; the
    /// caller then asks the manager.
    pub fn should_ask(&mut self) -> bool {
        if self.current.remaining() < Self::LOW_WATER && self.spare.is_none() && !self.asked {
            self.asked = true;
            true
        } else {
            false
        }
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

    #[test]
    fn pool_moves_to_the_granted_block_and_asks_once() {
        let mut p = IdPool::new(IdBlock { next: 0, end: 1 });
        assert!(p.should_ask());
        assert!(!p.should_ask());
        assert_eq!(p.take(), Some(EntityId(0)));
        assert_eq!(p.take(), None);
        p.grant(IdBlock {
            next: 100,
            end: 5000,
        });
        assert_eq!(p.take(), Some(EntityId(100)));
        assert!(!p.should_ask());
    }

    #[test]
    fn a_lost_request_is_asked_again_and_the_end_covers_both_blocks() {
        let mut p = IdPool::new(IdBlock { next: 0, end: 10 });
        assert!(p.should_ask());
        p.request_lost();
        assert!(p.should_ask());
        assert_eq!(p.end(), 10);
        p.grant(IdBlock { next: 50, end: 80 });
        assert_eq!(p.end(), 80);
    }
}
