//! Running one role as its own process: parse its flags, start it, and stop
//! it cleanly on Ctrl-C, SIGTERM, or (under `tessera up`) when standard input
//! closes.

use anyhow::Context;
use clap::builder::TypedValueParser;
use clap::Args;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use tessera::proto::app::SpaceInfo;
use tessera::storage::HashCost;
use tessera::Definitions;
use tessera_cellapp::index::IndexKind;
use tessera_game::Game;
use tessera_manager::cluster::throttle::LoginLimits;

/// Flags every role shares.
#[derive(Args, Clone, Debug)]
pub struct Common {
    /// Data directory: TLS certificate and the SQLite database.
    #[arg(long, default_value = "data", env = "TESSERA_DATA")]
    pub data: PathBuf,
    /// An entity definitions file to use instead of the game's own (it must
    /// still define every type the game's code registers).
    #[arg(long, env = "TESSERA_DEFS")]
    pub defs: Option<PathBuf>,
    /// Stop cleanly when standard input closes (used by `tessera up`).
    #[arg(long, hide = true)]
    pub stop_on_eof: bool,
    /// Milliseconds of silence after which a link to another process of the
    /// cluster is closed and, if that process is gone, it is declared dead
    /// (100–60000).
    #[arg(long, default_value_t = 750, env = "TESSERA_LINK_TIMEOUT_MS",
          value_parser = clap::value_parser!(u64).range(100..=60_000))]
    pub link_timeout_ms: u64,
    /// Milliseconds of silence after which a client's connection is closed
    /// (its entity then waits for it to resume) (100–60000).
    #[arg(long, default_value_t = 2000, env = "TESSERA_CLIENT_TIMEOUT_MS",
          value_parser = clap::value_parser!(u64).range(100..=60_000))]
    pub client_timeout_ms: u64,
    /// Client and login connections one IP address may hold at once on
    /// this process's public ports (1–1000000).
    #[arg(long, default_value_t = tessera::net::gate::DEFAULT_PER_ADDR, env = "TESSERA_CONNS_PER_ADDR",
          value_parser = clap::value_parser!(u64).range(1..=1_000_000).map(|n| n as usize))]
    pub conns_per_addr: usize,
    /// New client and login connections one IP address may open a second
    /// on this process's public ports, after a burst of twice as many
    /// (0: no limit). Refused before any TLS handshake.
    #[arg(long, default_value_t = tessera::net::gate::DEFAULT_RATE_PER_ADDR, env = "TESSERA_CONN_RATE_PER_ADDR")]
    pub conn_rate_per_addr: f64,
}

impl Common {
    /// Creates the data directory and applies the link timeout.
    fn prepare(&self) -> anyhow::Result<()> {
        ensure_dir(&self.data)?;
        tessera::net::set_link_idle_timeout(std::time::Duration::from_millis(self.link_timeout_ms));
        tessera::net::set_client_idle_timeout(std::time::Duration::from_millis(
            self.client_timeout_ms,
        ));
        Ok(())
    }

    /// The game as this process runs it: with the `--defs` file if one is
    /// given, and checked against its definitions.
    pub fn game(&self, game: Game) -> anyhow::Result<Game> {
        let game = match &self.defs {
            Some(path) => game.replace_definitions(Definitions::load(path)?),
            None => game,
        };
        game.check()
            .with_context(|| format!("game {} does not fit its definitions", game.name()))?;
        Ok(game)
    }
}

/// Where the manager listens and how big the space is; shared by
/// `tessera manager` and `tessera up`.
#[derive(Args, Clone, Debug)]
pub struct WorldArgs {
    /// Where apps connect (QUIC).
    #[arg(long, default_value = "127.0.0.1:7000")]
    pub internal: SocketAddr,
    /// Where clients log in (QUIC).
    #[arg(long, default_value = "127.0.0.1:7001")]
    pub login: SocketAddr,
    /// Admin HTTP.
    #[arg(long, default_value = "127.0.0.1:7080")]
    pub admin: SocketAddr,
    /// Space size in metres (x and z).
    #[arg(long, default_value_t = 1000.0)]
    pub size: f32,
    /// Load-balancing policy: static, bigworld or tessera.
    #[arg(long, default_value = "tessera")]
    pub policy: String,
    /// The load (share of the tick period, 0–1) at least one cellapp must
    /// report before the balancer moves a line; 0 balances at any load.
    #[arg(long, default_value_t = tessera_manager::cluster::DEFAULT_BALANCE_FLOOR,
          env = "TESSERA_BALANCE_FLOOR", value_parser = parse_share)]
    pub balance_floor: f32,
    /// A host name the admin HTTP answers to, besides IP addresses and
    /// `localhost` (repeat for more; a request naming any other host is
    /// refused, against DNS rebinding).
    #[arg(
        long = "admin-host",
        env = "TESSERA_ADMIN_HOSTS",
        value_delimiter = ','
    )]
    pub admin_hosts: Vec<String>,
}

/// `tessera manager`.
#[derive(Args, Clone, Debug)]
pub struct ManagerArgs {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub world: WorldArgs,
    /// Cell ticks per second.
    #[arg(long, default_value_t = 10)]
    pub tick_hz: u16,
    /// Milliseconds the manager waits at start for cellapps and baseapps of
    /// a previous run to come back (it may be a restart) before it takes
    /// new ones; longer than the link timeout (which must be the same on
    /// every process: each app notices a dead manager only after its own).
    /// 0 for a manager that is certainly the first (0–600000).
    #[arg(long, default_value_t = 3000, env = "TESSERA_REJOIN_WINDOW_MS",
          value_parser = clap::value_parser!(u64).range(0..=600_000))]
    pub rejoin_window_ms: u64,
    /// Login limits: `default` (per address, per account, accounts made per
    /// address, checks in flight), or `one-address` for a world whose
    /// clients all share one address, as bots on this machine do (rates
    /// unlimited).
    #[arg(long, default_value = "default", env = "TESSERA_LOGIN_LIMITS",
          value_parser = ["default", "one-address"])]
    pub login_limits: String,
    /// Milliseconds an app may go without a heartbeat before the manager
    /// drops it (and, if it did not say goodbye, declares it dead)
    /// (1000–600000).
    #[arg(long, default_value_t = 5000, env = "TESSERA_HEARTBEAT_TIMEOUT_MS",
          value_parser = clap::value_parser!(u64).range(1000..=600_000))]
    pub heartbeat_timeout_ms: u64,
}

/// `tessera cellapp`.
#[derive(Args, Clone, Debug)]
pub struct CellappArgs {
    #[command(flatten)]
    pub common: Common,
    /// The manager's internal address.
    #[arg(long, default_value = "127.0.0.1:7000")]
    pub manager: SocketAddr,
    /// Where to listen for other apps.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub bind: SocketAddr,
    /// Server-driven entities (NPCs) to create.
    #[arg(long, default_value_t = 0)]
    pub npcs: usize,
    /// Spatial index: rtree or grid.
    #[arg(long, default_value = "rtree")]
    pub index: IndexKind,
    /// Random seed for NPC behaviour.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Bytes a second each client may be sent, everything counted
    /// (positions, enters, leaves, properties, rests, calls) (1000–10000000).
    #[arg(long, default_value_t = tessera_cellapp::witness::DEFAULT_CLIENT_BUDGET,
          env = "TESSERA_CLIENT_BUDGET",
          value_parser = clap::value_parser!(u32).range(1000..=10_000_000))]
    pub client_budget: u32,
    /// Milliseconds of a client entity's speed limit it may bank: moves
    /// whose delays in transit differ by up to half of this (less the
    /// client's send interval) are never corrected (200–10000).
    #[arg(long, default_value_t = tessera_cellapp::pace::DEFAULT_MOVE_WINDOW_MS, env = "TESSERA_MOVE_WINDOW_MS",
          value_parser = clap::value_parser!(u64).range(200..=10_000))]
    pub move_window_ms: u64,
    /// Where to serve `/metrics` and `/healthz` (port 0: any free port; the
    /// manager's `/api/cluster` lists where each app's is).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub admin: SocketAddr,
}

/// `tessera baseapp`.
#[derive(Args, Clone, Debug)]
pub struct BaseappArgs {
    #[command(flatten)]
    pub common: Common,
    /// The manager's internal address.
    #[arg(long, default_value = "127.0.0.1:7000")]
    pub manager: SocketAddr,
    /// Where to listen for other apps.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub bind: SocketAddr,
    /// Where to listen for clients.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub public: SocketAddr,
    /// Seconds between periodic saves of changed entities.
    #[arg(long, default_value_t = 10)]
    pub save_secs: u64,
    /// Where to serve `/metrics` and `/healthz` (port 0: any free port; the
    /// manager's `/api/cluster` lists where each app's is).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub admin: SocketAddr,
}

/// Why a process was asked to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// Ctrl-C or SIGTERM: an operator (or an orchestrator) asked.
    Signal,
    /// Standard input closed: `tessera up` is stopping the whole world.
    Eof,
}

/// Waits for Ctrl-C, SIGTERM, or (with `stop_on_eof`) the end of standard input.
pub async fn stop_requested(stop_on_eof: bool) -> StopReason {
    let eof = async {
        if stop_on_eof {
            use tokio::io::AsyncReadExt;
            let mut stdin = tokio::io::stdin();
            let mut buf = [0u8; 64];
            while let Ok(n) = stdin.read(&mut buf).await {
                if n == 0 {
                    break;
                }
            }
        } else {
            std::future::pending::<()>().await;
        }
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => StopReason::Signal,
        _ = term => StopReason::Signal,
        _ = eof => StopReason::Eof,
    }
}

/// A share between 0 and 1, as a flag gives it.
fn parse_share(s: &str) -> Result<f32, String> {
    match s.parse::<f32>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        Ok(v) => Err(format!("{v} is not between 0 and 1")),
        Err(e) => Err(format!("{s:?} is not a number: {e}")),
    }
}

fn ensure_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create data directory {}", dir.display()))
}

/// Runs the manager until asked to stop.
pub async fn manager(a: ManagerArgs, game: Game) -> anyhow::Result<()> {
    a.common.prepare()?;
    let game = a.common.game(game)?;
    anyhow::ensure!(
        a.world.size.is_finite() && a.world.size > 0.0,
        "--size must be a positive number of metres"
    );
    anyhow::ensure!(
        a.tick_hz > 0 && a.tick_hz <= 100,
        "--tick-hz must be between 1 and 100"
    );
    anyhow::ensure!(
        a.rejoin_window_ms == 0 || a.rejoin_window_ms > a.common.link_timeout_ms,
        "--rejoin-window-ms ({}) must be 0 or longer than --link-timeout-ms ({}): apps notice a dead manager only after the link timeout",
        a.rejoin_window_ms,
        a.common.link_timeout_ms
    );
    let handle = tessera_manager::driver::start(tessera_manager::driver::Options {
        bind_internal: a.world.internal,
        bind_login: a.world.login,
        bind_admin: a.world.admin,
        data_dir: a.common.data.clone(),
        defs: game.definitions().clone(),
        space: SpaceInfo {
            bounds: [0.0, 0.0, a.world.size, a.world.size],
            tick_hz: a.tick_hz,
        },
        hash_cost: HashCost::default(),
        policy: a.world.policy.clone(),
        rejoin_window: std::time::Duration::from_millis(a.rejoin_window_ms),
        logins_per_addr: a.common.conns_per_addr,
        conn_rate_per_addr: a.common.conn_rate_per_addr,
        login_limits: match a.login_limits.as_str() {
            "one-address" => LoginLimits::one_address(),
            _ => LoginLimits::default(),
        },
        admin_hosts: a.world.admin_hosts.clone(),
        heartbeat_timeout: std::time::Duration::from_millis(a.heartbeat_timeout_ms),
        balance_floor: a.world.balance_floor,
    })
    .await?;
    println!("internal: {}", handle.internal_addr);
    println!("login: {}", handle.login_addr);
    println!("admin: http://{}", handle.admin_addr);
    println!(
        "admin token: in {}",
        tessera_manager::admin::guard::token_path(&a.common.data).display()
    );
    println!("cell view: http://{}/", handle.admin_addr);
    stop_requested(a.common.stop_on_eof).await;
    handle.stop().await;
    Ok(())
}

/// Runs a cellapp until asked to stop.
pub async fn cellapp(a: CellappArgs, game: Game) -> anyhow::Result<()> {
    a.common.prepare()?;
    let game = a.common.game(game)?;
    let app = tessera_cellapp::driver::start(tessera_cellapp::driver::Options {
        manager: a.manager,
        bind: a.bind,
        data_dir: a.common.data.clone(),
        defs: game.definitions().clone(),
        behaviors: game.cell_behaviors().clone(),
        spawns: game.spawns(a.npcs),
        index: a.index,
        budget: tessera_cellapp::witness::Budget {
            bytes_per_sec: a.client_budget,
            ..Default::default()
        },
        move_window: std::time::Duration::from_millis(a.move_window_ms),
        seed: a.seed,
        admin: Some(a.admin),
    })
    .await
    .context("cellapp could not join the cluster")?;
    println!("cellapp {} on {}", app.app, app.addr);
    if let Some(admin) = app.admin_addr {
        println!("cellapp {} admin: http://{admin}", app.app);
    }
    let mut app = app;
    let reason = tokio::select! {
        r = stop_requested(a.common.stop_on_eof) => r,
        ended = app.wait() => return match ended {
            tessera_cellapp::driver::Ended::Left => Ok(()),
            tessera_cellapp::driver::Ended::DeclaredDead(why) => {
                anyhow::bail!("the manager declared this cellapp dead: {why}")
            }
            tessera_cellapp::driver::Ended::Failed(why) => anyhow::bail!(why),
        },
    };
    match reason {
        // Hand every real to the other cells before going.
        StopReason::Signal => app.retire().await,
        // The whole world is stopping: nobody to hand to.
        StopReason::Eof => app.stop().await,
    }
    Ok(())
}

/// Runs a baseapp until asked to stop; every entity is saved before it exits.
pub async fn baseapp(a: BaseappArgs, game: Game) -> anyhow::Result<()> {
    a.common.prepare()?;
    let game = a.common.game(game)?;
    let handle = tessera_baseapp::driver::start(tessera_baseapp::driver::Options {
        manager: a.manager,
        bind_internal: a.bind,
        bind_public: a.public,
        data_dir: a.common.data.clone(),
        defs: game.definitions().clone(),
        config: tessera_baseapp::BaseConfig {
            save_period: std::time::Duration::from_secs(a.save_secs.max(1)),
            player_type: game.player_type().to_string(),
            behaviors: game.base_behaviors().clone(),
            ..Default::default()
        },
        admin: Some(a.admin),
        clients_per_addr: a.common.conns_per_addr,
        conn_rate_per_addr: a.common.conn_rate_per_addr,
    })
    .await
    .context("baseapp could not join the cluster")?;
    println!(
        "baseapp {} serving clients on {}",
        handle.app, handle.public_addr
    );
    if let Some(admin) = handle.admin_addr {
        println!("baseapp {} admin: http://{admin}", handle.app);
    }
    let mut handle = handle;
    tokio::select! {
        _ = stop_requested(a.common.stop_on_eof) => {}
        why = handle.stopped() => {
            anyhow::bail!("the baseapp stopped: {why}")
        }
    }
    handle.stop().await;
    Ok(())
}
