//! Running one role as its own process: its flags (each the override of a
//! setting, see [`crate::config`]), starting it with its settings, and
//! stopping it cleanly on Ctrl-C, SIGTERM, or (under `tessera up`) when
//! standard input closes.

use crate::config::Settings;
use anyhow::Context;
use clap::Args;
use serde::Serialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tessera::proto::app::SpaceInfo;
use tessera::Definitions;
use tessera_cellapp::index::IndexKind;
use tessera_game::Game;
use tessera_manager::cluster::throttle::LoginLimits;

/// Flags every role shares; each overrides the setting of its name (see
/// [`crate::config`]), and one not given leaves the setting as the file,
/// the environment or the default has it.
#[derive(Args, Clone, Debug, Default, Serialize)]
pub struct Common {
    /// Data directory: TLS certificate and the SQLite database.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<PathBuf>,
    /// The database: postgres://USER:PASSWORD@HOST/DB, or sqlite:PATH
    /// (default: world.db in the data directory).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// An entity definitions file to use instead of the game's own (it must
    /// still define every type the game's code registers).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub defs: Option<PathBuf>,
    /// Stop cleanly when standard input closes (used by `tessera up`).
    #[arg(long, hide = true)]
    #[serde(skip)]
    pub stop_on_eof: bool,
    /// Milliseconds of silence after which a link to another process of the
    /// cluster is closed and, if that process is gone, it is declared dead
    /// (100–60000; default 750).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link_timeout_ms: Option<u64>,
    /// Milliseconds of silence after which a client's connection is closed
    /// (its entity then waits for it to resume) (100–60000; default 2000).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_timeout_ms: Option<u64>,
    /// Client and login connections one IP address may hold at once on
    /// this process's public ports (1–1000000; default 256).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conns_per_addr: Option<usize>,
    /// New client and login connections one IP address may open a second
    /// on this process's public ports, after a burst of twice as many
    /// (0: no limit; default 10). Refused before any TLS handshake.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conn_rate_per_addr: Option<f64>,
}

/// Where the manager listens and how big the space is; shared by
/// `tessera manager` and `tessera up` (settings of `[manager]`).
#[derive(Args, Clone, Debug, Default, Serialize)]
pub struct WorldArgs {
    /// Where apps connect (QUIC; default 127.0.0.1:7000).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub internal: Option<SocketAddr>,
    /// Where clients log in (QUIC; default 127.0.0.1:7001).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub login: Option<SocketAddr>,
    /// Admin HTTP (default 127.0.0.1:7080).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin: Option<SocketAddr>,
    /// Space size in metres, x and z (default 1000).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<f64>,
    /// Load-balancing policy: static, bigworld, tessera (the default) or
    /// one the game registered.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// Record the world's load into this file while the manager runs, for
    /// `tessera sim --replay` (the file is overwritten).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record: Option<PathBuf>,
    /// The load (share of the tick period, 0–1) at least one cellapp must
    /// report before the balancer moves a line; 0 balances at any load
    /// (default 0.1).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub balance_floor: Option<f64>,
    /// A host name the admin HTTP answers to, besides IP addresses and
    /// `localhost` (repeat for more; a request naming any other host is
    /// refused, against DNS rebinding).
    #[arg(long = "admin-host")]
    #[serde(rename = "admin_hosts", skip_serializing_if = "Vec::is_empty")]
    pub admin_hosts: Vec<String>,
}

/// `tessera manager`.
#[derive(Args, Clone, Debug, Default, Serialize)]
pub struct ManagerArgs {
    #[command(flatten)]
    #[serde(flatten)]
    pub common: Common,
    #[command(flatten)]
    #[serde(rename = "manager")]
    pub manager: ManagerFlags,
}

/// The manager's own flags (settings of `[manager]`).
#[derive(Args, Clone, Debug, Default, Serialize)]
pub struct ManagerFlags {
    #[command(flatten)]
    #[serde(flatten)]
    pub world: WorldArgs,
    /// Cell ticks per second (1–100; default 10).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tick_hz: Option<u16>,
    /// Milliseconds the manager waits at start for cellapps and baseapps of
    /// a previous run to come back (it may be a restart) before it takes
    /// new ones; longer than the link timeout (which must be the same on
    /// every process: each app notices a dead manager only after its own).
    /// 0 for a manager that is certainly the first (0–600000; default 3000).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rejoin_window_ms: Option<u64>,
    /// Login limits: `default` (per address, per account, accounts made per
    /// address, checks in flight), or `one-address` for a world whose
    /// clients all share one address, as bots on this machine do (rates
    /// unlimited).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub login_limits: Option<String>,
    /// Milliseconds an app may go without a heartbeat before the manager
    /// drops it (and, if it did not say goodbye, declares it dead)
    /// (1000–600000; default 5000).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heartbeat_timeout_ms: Option<u64>,
}

/// `tessera cellapp`.
#[derive(Args, Clone, Debug, Default, Serialize)]
pub struct CellappArgs {
    #[command(flatten)]
    #[serde(flatten)]
    pub common: Common,
    #[command(flatten)]
    #[serde(rename = "cellapp")]
    pub cellapp: CellappFlags,
}

/// A cellapp's own flags (settings of `[cellapp]`).
#[derive(Args, Clone, Debug, Default, Serialize)]
pub struct CellappFlags {
    /// The manager's internal address, HOST:PORT (default 127.0.0.1:7000).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manager: Option<String>,
    /// Where to listen for other apps (default 127.0.0.1:0).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bind: Option<SocketAddr>,
    /// The address other apps are told to reach it at, if not the bound one
    /// (needed with --bind 0.0.0.0:PORT; port 0: the bound port).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub advertise: Option<SocketAddr>,
    /// Server-driven entities (NPCs) to create (default 0).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub npcs: Option<usize>,
    /// Spatial index: rtree or grid (default rtree).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<IndexKind>,
    /// Random seed for NPC behaviour (default 1).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Bytes a second each client may be sent, everything counted
    /// (positions, enters, leaves, properties, rests, calls)
    /// (1000–10000000; default 8000).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_budget: Option<u32>,
    /// Milliseconds of a client entity's speed limit it may bank: moves
    /// whose delays in transit differ by up to half of this (less the
    /// client's send interval) are never corrected (200–10000; default 2000).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub move_window_ms: Option<u64>,
    /// Where to serve `/metrics` and `/healthz` (port 0: any free port; the
    /// manager's `/api/cluster` lists where each app's is; default 127.0.0.1:0).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin: Option<SocketAddr>,
}

/// `tessera baseapp`.
#[derive(Args, Clone, Debug, Default, Serialize)]
pub struct BaseappArgs {
    #[command(flatten)]
    #[serde(flatten)]
    pub common: Common,
    #[command(flatten)]
    #[serde(rename = "baseapp")]
    pub baseapp: BaseappFlags,
}

/// A baseapp's own flags (settings of `[baseapp]`).
#[derive(Args, Clone, Debug, Default, Serialize)]
pub struct BaseappFlags {
    /// The manager's internal address, HOST:PORT (default 127.0.0.1:7000).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manager: Option<String>,
    /// Where to listen for other apps (default 127.0.0.1:0).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bind: Option<SocketAddr>,
    /// Where to listen for clients (default 127.0.0.1:0).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public: Option<SocketAddr>,
    /// The address other apps are told to reach it at, if not the bound one
    /// (needed with --bind 0.0.0.0:PORT; port 0: the bound port).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub advertise: Option<SocketAddr>,
    /// The address clients are told to reach it at, if not the bound one
    /// (needed with --public 0.0.0.0:PORT; port 0: the bound port).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub advertise_public: Option<SocketAddr>,
    /// Seconds between periodic saves of changed entities (1–3600; default 10).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub save_secs: Option<u64>,
    /// Where to serve `/metrics` and `/healthz` (port 0: any free port; the
    /// manager's `/api/cluster` lists where each app's is; default 127.0.0.1:0).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin: Option<SocketAddr>,
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

fn ensure_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create data directory {}", dir.display()))
}

/// Creates the data directory and applies the link and client timeouts.
fn prepare(s: &Settings) -> anyhow::Result<()> {
    ensure_dir(&s.data)?;
    tessera::net::set_link_idle_timeout(Duration::from_millis(s.link_timeout_ms));
    tessera::net::set_client_idle_timeout(Duration::from_millis(s.client_timeout_ms));
    Ok(())
}

/// The address of `HOST:PORT` (the first a name resolves to).
async fn resolve(key: &str, host_port: &str) -> anyhow::Result<SocketAddr> {
    tokio::net::lookup_host(host_port)
        .await
        .with_context(|| format!("setting {key}: cannot look up {host_port}"))?
        .next()
        .with_context(|| format!("setting {key}: {host_port} has no address"))
}

/// The database the settings name (checked when they were loaded).
fn database(s: &Settings) -> anyhow::Result<tessera::storage::Location> {
    s.database()
        .map_err(|e| anyhow::anyhow!("setting {}: {}", e.key, e.why))
}

/// The game as this process runs it: with the `defs` file if one is set,
/// and checked against its definitions.
pub fn checked_game(s: &Settings, game: Game) -> anyhow::Result<Game> {
    let game = match &s.defs {
        Some(path) => game.replace_definitions(Definitions::load(path)?),
        None => game,
    };
    game.check()
        .with_context(|| format!("game {} does not fit its definitions", game.name()))?;
    Ok(game)
}

/// Checks that the manager's policy is one the game has (a built-in one or
/// its own).
pub fn check_policy(s: &Settings, game: &Game) -> anyhow::Result<()> {
    let known = tessera_manager::balance::with(game.policies());
    if !known.contains(&s.manager.policy) {
        anyhow::bail!(
            "setting manager.policy: {:?} is not a policy of game {} (one of {})",
            s.manager.policy,
            game.name(),
            known.names().join(", ")
        );
    }
    Ok(())
}

/// Runs the manager until asked to stop.
pub async fn manager(s: Settings, stop_on_eof: bool, game: Game) -> anyhow::Result<()> {
    prepare(&s)?;
    let game = checked_game(&s, game)?;
    let m = &s.manager;
    let handle = tessera_manager::driver::start(tessera_manager::driver::Options {
        bind_internal: m.internal,
        bind_login: m.login,
        bind_admin: m.admin,
        data_dir: s.data.clone(),
        database: database(&s)?,
        public_cert: s.public_cert(),
        defs: game.definitions().clone(),
        space: SpaceInfo {
            bounds: [0.0, 0.0, m.size as f32, m.size as f32],
            tick_hz: m.tick_hz,
        },
        hash_cost: m.hash_cost(),
        policy: m.policy.clone(),
        policies: tessera_manager::balance::with(game.policies()),
        record: m.record.clone(),
        rejoin_window: Duration::from_millis(m.rejoin_window_ms),
        logins_per_addr: s.conns_per_addr,
        conn_rate_per_addr: s.conn_rate_per_addr,
        login_limits: match m.login_limits.as_str() {
            "one-address" => LoginLimits::one_address(),
            _ => LoginLimits::default(),
        },
        admin_hosts: m.admin_hosts.clone(),
        heartbeat_timeout: Duration::from_millis(m.heartbeat_timeout_ms),
        balance_floor: m.balance_floor as f32,
    })
    .await?;
    println!("internal: {}", handle.internal_addr);
    println!("login: {}", handle.login_addr);
    println!("admin: http://{}", handle.admin_addr);
    println!(
        "admin token: in {}",
        tessera_manager::admin::guard::token_path(&s.data).display()
    );
    println!("cell view: http://{}/", handle.admin_addr);
    stop_requested(stop_on_eof).await;
    handle.stop().await;
    Ok(())
}

/// Runs a cellapp until asked to stop.
pub async fn cellapp(s: Settings, stop_on_eof: bool, game: Game) -> anyhow::Result<()> {
    prepare(&s)?;
    let game = checked_game(&s, game)?;
    let c = &s.cellapp;
    let app = tessera_cellapp::driver::start(tessera_cellapp::driver::Options {
        manager: resolve("cellapp.manager", &c.manager).await?,
        bind: c.bind,
        advertise: c.advertise,
        data_dir: s.data.clone(),
        defs: game.definitions().clone(),
        behaviors: game.cell_behaviors().clone(),
        spawns: game.spawns(c.npcs),
        index: c.index,
        budget: tessera_cellapp::witness::Budget {
            bytes_per_sec: c.client_budget,
            hysteresis: c.aoi_hysteresis as f32,
            ..Default::default()
        },
        move_window: Duration::from_millis(c.move_window_ms),
        backup_period: Duration::from_millis(c.backup_ms),
        seed: c.seed,
        admin: Some(c.admin),
    })
    .await
    .context("cellapp could not join the cluster")?;
    println!("cellapp {} on {}", app.app, app.addr);
    if let Some(admin) = app.admin_addr {
        println!("cellapp {} admin: http://{admin}", app.app);
    }
    let mut app = app;
    let reason = tokio::select! {
        r = stop_requested(stop_on_eof) => r,
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

/// Runs a baseapp until asked to stop. On SIGTERM (or Ctrl-C) it hands its
/// entities to the other baseapps, whose clients follow; when `tessera up`
/// stops the world, or no other baseapp is left, every entity is saved.
pub async fn baseapp(s: Settings, stop_on_eof: bool, game: Game) -> anyhow::Result<()> {
    prepare(&s)?;
    let game = checked_game(&s, game)?;
    let b = &s.baseapp;
    let player_type = b.player_type.as_deref().unwrap_or(game.player_type());
    anyhow::ensure!(
        game.definitions().by_name(player_type).is_some(),
        "setting baseapp.player_type: {player_type:?} is not a type of the definitions"
    );
    let handle = tessera_baseapp::driver::start(tessera_baseapp::driver::Options {
        manager: resolve("baseapp.manager", &b.manager).await?,
        bind_internal: b.bind,
        bind_public: b.public,
        advertise_internal: b.advertise,
        advertise_public: b.advertise_public,
        data_dir: s.data.clone(),
        database: database(&s)?,
        public_cert: s.public_cert(),
        defs: game.definitions().clone(),
        config: tessera_baseapp::BaseConfig {
            save_period: Duration::from_secs(b.save_secs),
            ticket_ttl: Duration::from_secs(b.ticket_ttl_secs),
            player_type: player_type.to_string(),
            behaviors: game.base_behaviors().clone(),
            spawn_area: b.spawn_area.map(|a| a.map(|v| v as f32)),
            backup_period: Duration::from_millis(b.backup_ms),
            resume_grace: Duration::from_secs(b.resume_grace_secs),
            ..Default::default()
        },
        admin: Some(b.admin),
        clients_per_addr: s.conns_per_addr,
        conn_rate_per_addr: s.conn_rate_per_addr,
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
    let reason = tokio::select! {
        r = stop_requested(stop_on_eof) => r,
        why = handle.stopped() => {
            anyhow::bail!("the baseapp stopped: {why}")
        }
    };
    match reason {
        // Hand every entity to the other baseapps; their clients follow.
        StopReason::Signal => handle.retire().await,
        // The whole world is stopping: save everything.
        StopReason::Eof => handle.stop().await,
    }
    Ok(())
}
