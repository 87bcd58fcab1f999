//! Levels of detail as a witness reads them: for one entity type, the
//! properties other clients see, and its distance bands with the update
//! period and the properties of each as a bit mask over that list (bit `j`
//! is the `j`-th public property). The cell builds one per type when it
//! loads the definitions; a witness reads it for every candidate.

use tessera::defs::{DetailLevel, TypeDef};

/// One band.
#[derive(Clone, Debug, PartialEq)]
pub struct Level {
    /// Outer edge in metres (the last band's is infinite).
    pub within: f32,
    /// `within` squared.
    within2: f32,
    /// Ticks between position updates.
    pub every: u16,
    /// The properties sent in this band.
    pub mask: u64,
}

/// A type's levels of detail.
#[derive(Clone, Debug, PartialEq)]
pub struct Detail {
    public: Vec<u16>,
    levels: Vec<Level>,
}

impl Detail {
    /// The levels a type declares.
    pub fn of(def: &TypeDef) -> Detail {
        let public: Vec<u16> = def
            .properties
            .iter()
            .filter(|p| p.flags.other_clients())
            .map(|p| p.index)
            .collect();
        Detail::new(public, &def.detail)
    }

    /// Levels over a list of public properties (sorted indices, at most
    /// 64); no levels: one band, every tick, every property.
    pub fn new(mut public: Vec<u16>, levels: &[DetailLevel]) -> Detail {
        public.sort_unstable();
        public.dedup();
        public.truncate(64);
        let all = if public.len() == 64 {
            u64::MAX
        } else {
            (1u64 << public.len()) - 1
        };
        let mut d = Detail {
            public,
            levels: Vec::new(),
        };
        d.levels = levels
            .iter()
            .map(|l| Level {
                within: l.within,
                within2: l.within * l.within,
                every: l.every.max(1),
                mask: l
                    .props
                    .iter()
                    .filter_map(|&p| d.bit(p))
                    .fold(0, |m, b| m | b),
            })
            .collect();
        if d.levels.is_empty() {
            d.levels.push(Level {
                within: f32::INFINITY,
                within2: f32::INFINITY,
                every: 1,
                mask: all,
            });
        }
        d
    }

    /// The band for an entity `distance` metres away, and its place (0 is
    /// the nearest).
    pub fn level(&self, distance: f32) -> (u8, &Level) {
        self.level_squared(distance * distance)
    }

    /// The bit of property `index`, if other clients see it.
    pub fn bit(&self, index: u16) -> Option<u64> {
        self.public.binary_search(&index).ok().map(|j| 1u64 << j)
    }

    /// The band for an entity whose squared distance is `d2`.
    pub fn level_squared(&self, d2: f32) -> (u8, &Level) {
        let last = self.levels.len() - 1;
        let i = self
            .levels
            .iter()
            .position(|l| d2 <= l.within2)
            .unwrap_or(last);
        (i as u8, &self.levels[i])
    }

    /// The properties of a mask, as indices.
    pub fn props_of(&self, mask: u64) -> impl Iterator<Item = u16> + '_ {
        self.public
            .iter()
            .enumerate()
            .filter(move |(j, _)| mask & (1u64 << j) != 0)
            .map(|(_, &i)| i)
    }

    /// The properties other clients see.
    pub fn public(&self) -> &[u16] {
        &self.public
    }

    /// The bands, nearest first.
    pub fn levels(&self) -> &[Level] {
        &self.levels
    }
}
