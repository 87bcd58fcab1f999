//! The manager's metrics, served at `/metrics` on its admin port: its loop's
//! ticks, logins, the cluster's size and the layout epoch, and the traffic
//! of its app links and login connections. `docs/operations.md` lists them.

use tessera::metrics::{Counter, Gauge, LinkMeter, Registry, TickMeter};

/// The manager's metric handles.
#[derive(Clone, Debug)]
pub struct Metrics {
    /// The registry `/metrics` renders.
    pub registry: Registry,
    /// The manager loop's ticks.
    pub tick: TickMeter,
    /// Logins granted.
    pub logins_ok: Counter,
    /// Logins refused or broken.
    pub logins_failed: Counter,
    /// The space's layout epoch.
    pub epoch: Gauge,
    /// Registered cellapps.
    pub cellapps: Gauge,
    /// Registered baseapps.
    pub baseapps: Gauge,
    /// Clients connected over all baseapps.
    pub clients: Gauge,
    /// Entities over all cellapps.
    pub entities: Gauge,
    /// App links.
    pub app_link: LinkMeter,
    /// Login connections.
    pub login_link: LinkMeter,
}

impl Metrics {
    /// The manager's metrics in a fresh registry labelled `role="manager"`,
    /// `app="0"`.
    pub fn new() -> Metrics {
        let r = Registry::new("manager");
        r.set_label("app", &tessera::MANAGER.0.to_string());
        let logins = |result: &str| {
            r.counter(
                "tessera_logins_total",
                "Logins answered, by result.",
                &[("result", result)],
            )
        };
        let apps = |role: &str| {
            r.gauge(
                "tessera_apps",
                "Apps registered with the manager, by role.",
                &[("kind", role)],
            )
        };
        Metrics {
            tick: TickMeter::new(&r),
            logins_ok: logins("ok"),
            logins_failed: logins("failed"),
            epoch: r.gauge(
                "tessera_layout_epoch",
                "The layout epoch of the space.",
                &[],
            ),
            cellapps: apps("cellapp"),
            baseapps: apps("baseapp"),
            clients: r.gauge(
                "tessera_cluster_clients",
                "Clients connected over all baseapps, as last reported.",
                &[],
            ),
            entities: r.gauge(
                "tessera_cluster_entities",
                "Entities over all cellapps, as last reported.",
                &[],
            ),
            app_link: LinkMeter::new(&r, "app"),
            login_link: LinkMeter::new(&r, "login"),
            registry: r,
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
