//! The baseapp's metrics, served at `/metrics` on its admin port: its
//! loop's ticks, clients and bases, database writes, and the traffic of its
//! app links and client connections. `docs/operations.md` lists them.

use tessera::metrics::{Counter, DbMeter, Gauge, LinkMeter, Registry, SessionMeter, TickMeter};

/// The baseapp's metric handles.
#[derive(Clone, Debug)]
pub struct Metrics {
    /// The registry `/metrics` renders.
    pub registry: Registry,
    /// The baseapp loop's ticks.
    pub tick: TickMeter,
    /// Clients connected.
    pub clients: Gauge,
    /// Bases held.
    pub bases: Gauge,
    /// Clients disconnected for falling too far behind.
    pub slow_clients: Counter,
    /// Entities written to the database.
    pub entities_saved: Counter,
    /// Entities whose cell half was restored from a backup after its
    /// cellapp died.
    pub entities_restored: Counter,
    /// Database writes.
    pub db: DbMeter,
    /// App links.
    pub app_link: LinkMeter,
    /// Client connections (stream frames and datagrams).
    pub client_link: LinkMeter,
    /// What the app links' sessions did.
    pub sessions: SessionMeter,
}

impl Metrics {
    /// The baseapp's metrics in a fresh registry labelled `role="baseapp"`.
    pub fn new() -> Metrics {
        let r = Registry::new("baseapp");
        Metrics {
            tick: TickMeter::new(&r),
            clients: r.gauge("tessera_clients_connected", "Clients connected.", &[]),
            bases: r.gauge(
                "tessera_bases",
                "Bases (base halves of entities) held.",
                &[],
            ),
            slow_clients: r.counter(
                "tessera_clients_too_slow_total",
                "Clients disconnected because their stream queue passed its limit.",
                &[],
            ),
            entities_saved: r.counter(
                "tessera_entities_saved_total",
                "Entities written to the database.",
                &[],
            ),
            entities_restored: r.counter(
                "tessera_entities_restored_total",
                "Entities whose cell half was restored from its last backup after its cellapp died.",
                &[],
            ),
            db: DbMeter::new(&r),
            app_link: LinkMeter::new(&r, "app"),
            client_link: LinkMeter::new(&r, "client"),
            sessions: SessionMeter::new(&r),
            registry: r,
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
