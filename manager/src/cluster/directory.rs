//! Where named entities live. A base-only entity found by a unique name
//! within its type (a guild, an auction house) is held by one baseapp at a
//! time; the manager remembers which, so that every baseapp sends its
//! calls there. The first baseapp to ask for a name nobody holds becomes
//! its holder and loads it; a holder that leaves the cluster is forgotten,
//! and the next to ask loads the entity again from its last save.

use std::collections::BTreeMap;
use tessera::defs::TypeId;
use tessera::AppId;

/// Named entities and their holders.
#[derive(Debug, Default)]
pub(crate) struct Directory {
    held: BTreeMap<(TypeId, String), AppId>,
}

impl Directory {
    /// The holder of a named entity: whoever holds it, or `asker`, which
    /// holds it from now on.
    pub(crate) fn summon(&mut self, type_id: TypeId, name: String, asker: AppId) -> AppId {
        *self.held.entry((type_id, name)).or_insert(asker)
    }

    /// A baseapp left: it holds nothing any more.
    pub(crate) fn forget(&mut self, app: AppId) {
        self.held.retain(|_, holder| *holder != app);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_to_ask_holds_until_it_leaves() {
        let mut d = Directory::default();
        let red = || "red".to_string();
        assert_eq!(d.summon(TypeId(1), red(), AppId(3)), AppId(3));
        assert_eq!(d.summon(TypeId(1), red(), AppId(4)), AppId(3));
        assert_eq!(d.summon(TypeId(2), red(), AppId(4)), AppId(4));
        d.forget(AppId(3));
        assert_eq!(d.summon(TypeId(1), red(), AppId(4)), AppId(4));
    }
}
