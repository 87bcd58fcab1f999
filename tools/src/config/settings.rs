//! Every setting of a Tessera process with its default and its bounds: the
//! shape of `tessera.toml`. Keys every role reads sit at the top; each
//! role's own sit in its table (`[manager]`, `[cellapp]`, `[baseapp]`).
//! Unknown keys are refused, so a misspelt setting never silently keeps its
//! default.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;
use tessera::storage::Location;
use tessera_cellapp::index::IndexKind;

/// Everything a process of the cluster is run with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Data directory: TLS certificates, the admin token and the SQLite database.
    pub data: PathBuf,
    /// The database of accounts and entities: `postgres://USER:PASSWORD@HOST/DB`
    /// for PostgreSQL (a cluster on several machines), or `sqlite:PATH`
    /// (relative to `data`); `world.db` in `data` if not set.
    pub database: Option<String>,
    /// An entity definitions file to use instead of the game's own (it must
    /// still define every type the game's code registers).
    pub defs: Option<PathBuf>,
    /// The public ports' certificate chain (PEM, the certificate first), in
    /// place of the self-signed one made in `data`; with `tls_key`.
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Milliseconds of silence after which a link to another process of the
    /// cluster is closed and, if that process is gone, it is declared dead;
    /// the same on every process (100–60000).
    pub link_timeout_ms: u64,
    /// Milliseconds of silence after which a client's connection is closed
    /// and its entity waits for it to resume (100–60000).
    pub client_timeout_ms: u64,
    /// Client and login connections one IP address may hold at once on this
    /// process's public ports (1–1000000).
    pub conns_per_addr: usize,
    /// New client and login connections one IP address may open a second,
    /// after a burst of twice as many (0: no limit).
    pub conn_rate_per_addr: f64,
    /// The manager's settings.
    pub manager: Manager,
    /// Every cellapp's settings.
    pub cellapp: Cellapp,
    /// Every baseapp's settings.
    pub baseapp: Baseapp,
}

/// `[manager]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Manager {
    /// Where apps connect (QUIC).
    pub internal: SocketAddr,
    /// Where clients log in (QUIC).
    pub login: SocketAddr,
    /// Admin HTTP and the cell view.
    pub admin: SocketAddr,
    /// Host names the admin HTTP answers to besides IP addresses and
    /// `localhost` (a request naming any other host is refused).
    pub admin_hosts: Vec<String>,
    /// The space's size in metres, x and z (at most 1000000).
    pub size: f64,
    /// Cell ticks per second (1–100).
    pub tick_hz: u16,
    /// Load-balancing policy: static, bigworld, tessera or one the game
    /// registered.
    pub policy: String,
    /// Record the world's load into this file while the manager runs, for
    /// `tessera sim --replay` (it is overwritten).
    pub record: Option<PathBuf>,
    /// The load (share of the tick, 0–1) at least one cellapp must report
    /// before the balancer moves a line; 0 balances at any load.
    pub balance_floor: f64,
    /// Milliseconds the manager waits at start for the apps of a previous
    /// run to come back before it takes new ones: 0, or longer than
    /// `link_timeout_ms` (at most 600000).
    pub rejoin_window_ms: u64,
    /// Milliseconds an app may go without a heartbeat before the manager
    /// drops it (1000–600000).
    pub heartbeat_timeout_ms: u64,
    /// Login limits: `default`, or `one-address` for a world whose clients
    /// all share one address (bots on one machine).
    pub login_limits: String,
    /// Memory of one password hash (argon2id), KiB (8 per lane – 1048576).
    pub password_memory_kib: u32,
    /// Passes of one password hash over its memory (at least 1).
    pub password_iterations: u32,
    /// Lanes of one password hash (at least 1).
    pub password_parallelism: u32,
}

/// `[cellapp]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Cellapp {
    /// The manager's internal address, `HOST:PORT` (a name is looked up
    /// at start).
    pub manager: String,
    /// Where to listen for other apps.
    pub bind: SocketAddr,
    /// The address other apps are told to reach it at, if not the bound
    /// one (needed when binding 0.0.0.0; port 0: the bound port).
    pub advertise: Option<SocketAddr>,
    /// Where to serve `/metrics` and `/healthz` (port 0: any free port).
    pub admin: SocketAddr,
    /// Server-driven entities (NPCs) to create.
    pub npcs: usize,
    /// Random seed of NPC behaviour.
    pub seed: u64,
    /// Spatial index: `rtree` or `grid`.
    pub index: IndexKind,
    /// Bytes a second each client may be sent, everything counted
    /// (1000–10000000).
    pub client_budget: u32,
    /// Metres past its AoI radius an entity may go before it leaves a
    /// client's view (0–100).
    pub aoi_hysteresis: f64,
    /// Milliseconds of its speed limit a client may bank against delivery
    /// jitter (200–10000).
    pub move_window_ms: u64,
    /// Milliseconds between two backups of a real to its base (100–60000).
    pub backup_ms: u64,
}

/// `[baseapp]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Baseapp {
    /// The manager's internal address, `HOST:PORT` (a name is looked up
    /// at start).
    pub manager: String,
    /// Where to listen for other apps.
    pub bind: SocketAddr,
    /// Where to listen for clients.
    pub public: SocketAddr,
    /// The address other apps are told to reach it at, if not the bound
    /// one (needed when binding 0.0.0.0; port 0: the bound port).
    pub advertise: Option<SocketAddr>,
    /// The address clients are told to reach it at, if not the bound one.
    pub advertise_public: Option<SocketAddr>,
    /// Where to serve `/metrics` and `/healthz` (port 0: any free port).
    pub admin: SocketAddr,
    /// The entity type players get; the game's own if not set.
    pub player_type: Option<String>,
    /// Where new players appear: min x, min z, max x, max z; the whole
    /// space if not set.
    pub spawn_area: Option<[f64; 4]>,
    /// Seconds between periodic saves of changed entities (1–3600).
    pub save_secs: u64,
    /// Milliseconds over which every base is copied once to another
    /// baseapp (100–60000).
    pub backup_ms: u64,
    /// Seconds an entity whose client's connection was lost waits for the
    /// client to resume before it logs out (1–3600).
    pub resume_grace_secs: u64,
    /// Seconds a login ticket stays valid (1–600).
    pub ticket_ttl_secs: u64,
}

/// The largest space, in metres a side.
const MAX_SIZE: f64 = 1_000_000.0;

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            data: PathBuf::from("data"),
            database: None,
            defs: None,
            tls_cert: None,
            tls_key: None,
            link_timeout_ms: 750,
            client_timeout_ms: 2000,
            conns_per_addr: tessera::net::gate::DEFAULT_PER_ADDR,
            conn_rate_per_addr: tessera::net::gate::DEFAULT_RATE_PER_ADDR,
            manager: Manager::default(),
            cellapp: Cellapp::default(),
            baseapp: Baseapp::default(),
        }
    }
}

impl Default for Manager {
    fn default() -> Self {
        let cost = tessera::storage::HashCost::default();
        Manager {
            internal: loopback(7000),
            login: loopback(7001),
            admin: loopback(7080),
            admin_hosts: Vec::new(),
            size: 1000.0,
            tick_hz: 10,
            policy: "tessera".into(),
            record: None,
            balance_floor: f64::from(tessera_manager::cluster::DEFAULT_BALANCE_FLOOR),
            rejoin_window_ms: 3000,
            heartbeat_timeout_ms: 5000,
            login_limits: "default".into(),
            password_memory_kib: cost.memory_kib,
            password_iterations: cost.iterations,
            password_parallelism: cost.parallelism,
        }
    }
}

impl Default for Cellapp {
    fn default() -> Self {
        let budget = tessera_cellapp::witness::Budget::default();
        Cellapp {
            manager: loopback(7000).to_string(),
            bind: loopback(0),
            advertise: None,
            admin: loopback(0),
            npcs: 0,
            seed: 1,
            index: IndexKind::RTree,
            client_budget: budget.bytes_per_sec,
            aoi_hysteresis: f64::from(budget.hysteresis),
            move_window_ms: tessera_cellapp::pace::DEFAULT_MOVE_WINDOW_MS,
            backup_ms: tessera_cellapp::cellapp::DEFAULT_BACKUP_PERIOD.as_millis() as u64,
        }
    }
}

impl Default for Baseapp {
    fn default() -> Self {
        let config = tessera_baseapp::BaseConfig::default();
        Baseapp {
            manager: loopback(7000).to_string(),
            bind: loopback(0),
            public: loopback(0),
            advertise: None,
            advertise_public: None,
            admin: loopback(0),
            player_type: None,
            spawn_area: None,
            save_secs: config.save_period.as_secs(),
            backup_ms: config.backup_period.as_millis() as u64,
            resume_grace_secs: config.resume_grace.as_secs(),
            ticket_ttl_secs: config.ticket_ttl.as_secs(),
        }
    }
}

/// A setting outside its bounds.
#[derive(Debug, Clone, PartialEq)]
pub struct Invalid {
    /// The key, dotted (`cellapp.client_budget`).
    pub key: &'static str,
    /// What is wrong with its value.
    pub why: String,
}

fn within<T: PartialOrd + std::fmt::Display>(
    key: &'static str,
    v: T,
    lo: T,
    hi: T,
) -> Result<(), Invalid> {
    if v >= lo && v <= hi {
        Ok(())
    } else {
        Err(Invalid {
            key,
            why: format!("{v} is not between {lo} and {hi}"),
        })
    }
}

fn holds(key: &'static str, ok: bool, why: impl FnOnce() -> String) -> Result<(), Invalid> {
    if ok {
        Ok(())
    } else {
        Err(Invalid { key, why: why() })
    }
}

impl Settings {
    /// The database these settings name.
    pub fn database(&self) -> Result<Location, Invalid> {
        match &self.database {
            Some(setting) => Location::parse(setting, &self.data).map_err(|e| Invalid {
                key: "database",
                why: e.to_string(),
            }),
            None => Ok(Location::in_data_dir(&self.data)),
        }
    }

    /// The certificate the public ports present.
    pub fn public_cert(&self) -> tessera::net::PublicCert {
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => tessera::net::PublicCert::Pem {
                cert: cert.clone(),
                key: key.clone(),
            },
            _ => tessera::net::PublicCert::Generated,
        }
    }

    /// The first setting outside its bounds, if any.
    pub fn check(&self) -> Result<(), Invalid> {
        self.database()?;
        holds(
            if self.tls_cert.is_some() {
                "tls_key"
            } else {
                "tls_cert"
            },
            self.tls_cert.is_some() == self.tls_key.is_some(),
            || "a certificate and its key are set together or not at all".into(),
        )?;
        within("link_timeout_ms", self.link_timeout_ms, 100, 60_000)?;
        within("client_timeout_ms", self.client_timeout_ms, 100, 60_000)?;
        within("conns_per_addr", self.conns_per_addr, 1, 1_000_000)?;
        holds(
            "conn_rate_per_addr",
            self.conn_rate_per_addr.is_finite() && self.conn_rate_per_addr >= 0.0,
            || {
                format!(
                    "{} is not a rate (0 or more a second)",
                    self.conn_rate_per_addr
                )
            },
        )?;
        self.manager.check(self.link_timeout_ms)?;
        self.cellapp.check()?;
        self.baseapp.check()
    }
}

impl Manager {
    fn check(&self, link_timeout_ms: u64) -> Result<(), Invalid> {
        holds(
            "manager.size",
            self.size > 0.0 && self.size <= MAX_SIZE,
            || {
                format!(
                    "{} is not a size in metres (more than 0, at most {MAX_SIZE})",
                    self.size
                )
            },
        )?;
        within("manager.tick_hz", self.tick_hz, 1, 100)?;
        // Which policies there are depends on the game: the role checks
        // the name against them (`roles::check_policy`).
        holds(
            "manager.policy",
            !self.policy.is_empty()
                && self
                    .policy
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
            || {
                format!(
                    "{:?} is not a policy name (lowercase letters, digits and '-')",
                    self.policy
                )
            },
        )?;
        holds(
            "manager.balance_floor",
            (0.0..=1.0).contains(&self.balance_floor),
            || format!("{} is not between 0 and 1", self.balance_floor),
        )?;
        within(
            "manager.rejoin_window_ms",
            self.rejoin_window_ms,
            0,
            600_000,
        )?;
        holds(
            "manager.rejoin_window_ms",
            self.rejoin_window_ms == 0 || self.rejoin_window_ms > link_timeout_ms,
            || {
                format!(
                    "{} must be 0 or longer than link_timeout_ms ({link_timeout_ms}): \
                     apps notice a dead manager only after the link timeout",
                    self.rejoin_window_ms
                )
            },
        )?;
        within(
            "manager.heartbeat_timeout_ms",
            self.heartbeat_timeout_ms,
            1000,
            600_000,
        )?;
        holds(
            "manager.login_limits",
            matches!(self.login_limits.as_str(), "default" | "one-address"),
            || format!("{:?} is not `default` or `one-address`", self.login_limits),
        )?;
        self.hash_cost().check().map_err(|e| Invalid {
            key: "manager.password_memory_kib",
            why: e.to_string(),
        })
    }

    /// The password hashing cost these settings give.
    pub fn hash_cost(&self) -> tessera::storage::HashCost {
        tessera::storage::HashCost {
            memory_kib: self.password_memory_kib,
            iterations: self.password_iterations,
            parallelism: self.password_parallelism,
        }
    }
}

/// Whether `s` reads as `HOST:PORT` (a name or an address, and a port).
fn host_port(key: &'static str, s: &str) -> Result<(), Invalid> {
    let ok = s.parse::<SocketAddr>().is_ok()
        || s.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty() && !host.contains(['[', ']', ' ', '/']) && port.parse::<u16>().is_ok()
        });
    holds(key, ok, || format!("{s:?} is not HOST:PORT"))
}

impl Cellapp {
    fn check(&self) -> Result<(), Invalid> {
        host_port("cellapp.manager", &self.manager)?;
        within(
            "cellapp.client_budget",
            self.client_budget,
            1000,
            10_000_000,
        )?;
        holds(
            "cellapp.aoi_hysteresis",
            (0.0..=100.0).contains(&self.aoi_hysteresis),
            || format!("{} is not between 0 and 100 metres", self.aoi_hysteresis),
        )?;
        within("cellapp.move_window_ms", self.move_window_ms, 200, 10_000)?;
        within("cellapp.backup_ms", self.backup_ms, 100, 60_000)
    }
}

impl Baseapp {
    fn check(&self) -> Result<(), Invalid> {
        host_port("baseapp.manager", &self.manager)?;
        if let Some(t) = &self.player_type {
            holds("baseapp.player_type", !t.trim().is_empty(), || {
                "is empty (leave it out for the game's own)".into()
            })?;
        }
        if let Some([x0, z0, x1, z1]) = self.spawn_area {
            holds(
                "baseapp.spawn_area",
                [x0, z0, x1, z1].iter().all(|v| v.is_finite()) && x0 <= x1 && z0 <= z1,
                || format!("[{x0}, {z0}, {x1}, {z1}] is not [min x, min z, max x, max z]"),
            )?;
        }
        within("baseapp.save_secs", self.save_secs, 1, 3600)?;
        within("baseapp.backup_ms", self.backup_ms, 100, 60_000)?;
        within("baseapp.resume_grace_secs", self.resume_grace_secs, 1, 3600)?;
        within("baseapp.ticket_ttl_secs", self.ticket_ttl_secs, 1, 600)
    }
}
