//! The cellapp's metrics, served at `/metrics` on its admin port: its
//! ticks, the cell's entity counts and load, migrations, ghost messages, the
//! layout epoch it acts on, and the traffic of its app links.
//! `docs/operations.md` lists them.

use crate::cell::{Cell, CellStats};
use crate::cellapp::Traffic;
use tessera::metrics::{Counter, Gauge, LinkMeter, Registry, SessionMeter, TickMeter};

/// The kinds of ghost message, in the order of the counters.
const GHOST_KINDS: [&str; 5] = ["create", "update", "delete", "moves", "checks"];

/// The cellapp's metric handles.
#[derive(Clone, Debug)]
pub struct Metrics {
    /// The registry `/metrics` renders.
    pub registry: Registry,
    /// Cell ticks.
    pub tick: TickMeter,
    /// Real entities.
    pub reals: Gauge,
    /// Ghosts of entities real elsewhere.
    pub ghosts: Gauge,
    /// Reals with a witness.
    pub witnesses: Gauge,
    /// The cell's smoothed load.
    pub load: Gauge,
    /// The layout epoch the cell acts on.
    pub epoch: Gauge,
    /// Reals arrived from other cells.
    pub migrations_in: Counter,
    /// Reals handed to other cells.
    pub migrations_out: Counter,
    /// Client moves refused.
    pub moves_refused: Counter,
    /// Hooks of game code that panicked.
    pub game_panics: Counter,
    /// Entity messages refused for who sent them: not the entity's base,
    /// clients' calls of methods not exposed, and clients' calls naming
    /// entities they have not been shown.
    refused: [Counter; 3],
    /// Ghost messages received, by kind.
    ghosts_in: [Counter; 5],
    /// Ghost messages sent, by kind.
    ghosts_out: [Counter; 5],
    /// App links.
    pub link: LinkMeter,
    /// What the app links' sessions did.
    pub sessions: SessionMeter,
}

impl Metrics {
    /// The cellapp's metrics in a fresh registry labelled `role="cellapp"`.
    pub fn new() -> Metrics {
        let r = Registry::new("cellapp");
        let gauge = |name: &str, help: &str| r.gauge(name, help, &[]);
        let migrations = |dir: &str| {
            r.counter(
                "tessera_migrations_total",
                "Reals that moved cell, by direction.",
                &[("direction", dir)],
            )
        };
        let ghost = |dir: &str| {
            GHOST_KINDS.map(|kind| {
                r.counter(
                    "tessera_ghost_messages_total",
                    "Ghost messages, by direction and kind.",
                    &[("direction", dir), ("kind", kind)],
                )
            })
        };
        Metrics {
            tick: TickMeter::new(&r),
            reals: gauge("tessera_reals", "Entry entities in the cell."),
            ghosts: gauge("tessera_ghosts", "Ghosts of entities real in other cells."),
            witnesses: gauge("tessera_witnesses", "Reals with a witness (a client)."),
            load: gauge(
                "tessera_cell_load",
                "Smoothed share of the tick period the cell spends working.",
            ),
            epoch: gauge("tessera_layout_epoch", "The layout epoch the cell acts on."),
            migrations_in: migrations("in"),
            migrations_out: migrations("out"),
            moves_refused: r.counter(
                "tessera_moves_refused_total",
                "Client moves refused (too fast, out of bounds, not finite).",
                &[],
            ),
            game_panics: r.counter(
                "tessera_game_panics_total",
                "Hooks of game code that panicked (each failed alone; the cell ticked on).",
                &[],
            ),
            refused: ["not_its_base", "not_exposed", "unseen_entity"].map(|why| {
                r.counter(
                    "tessera_entity_messages_refused_total",
                    "Entity messages refused for who sent them, by reason.",
                    &[("reason", why)],
                )
            }),
            ghosts_in: ghost("in"),
            ghosts_out: ghost("out"),
            link: LinkMeter::new(&r, "app"),
            sessions: SessionMeter::new(&r),
            registry: r,
        }
    }

    /// Copies the cell's counts `s` (its [`Cell::stats`], taken once a
    /// second: counting walks the cell) and the ghost traffic.
    pub fn observe(&self, cell: &Cell, s: &CellStats, traffic: &Traffic) {
        for (counter, n) in self.ghosts_in.iter().zip(traffic.ghosts_in) {
            counter.advance_to(n);
        }
        for (counter, n) in self.ghosts_out.iter().zip(traffic.ghosts_out) {
            counter.advance_to(n);
        }
        self.reals.set(s.reals as f64);
        self.ghosts.set(s.ghosts as f64);
        self.witnesses.set(s.witnesses as f64);
        self.load.set(f64::from(cell.load()));
        self.epoch
            .set(cell.layout().map_or(0.0, |l| l.epoch as f64));
        self.migrations_in.advance_to(s.onloads);
        self.migrations_out.advance_to(s.offloads);
        self.moves_refused.advance_to(s.moves_refused);
        self.game_panics.advance_to(s.game_panics);
        let refused = cell.refusals();
        self.refused[0].advance_to(refused.not_its_base);
        self.refused[1].advance_to(refused.not_exposed);
        self.refused[2].advance_to(refused.unseen_entity);
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
