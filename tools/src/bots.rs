//! `tessera bots`: N bot clients, each with its own account and QUIC
//! connection, moving about and counting what they see. How they move is
//! the `--behavior` pattern; what they do in the game is the game's bot
//! behaviour for their type ([`tessera_game::bot`]), which may also steer
//! them. Prints progress while it runs, a summary at the end, and
//! optionally a JSON report.

use anyhow::Context;
use clap::Args;
use rand::{RngExt, SeedableRng};
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tessera::client::{Client, ClientError, Event, Setup};
use tessera_game::bot::{Bot, BotBehaviors, BotCall};
use tessera_game::Game;
use tokio::sync::Semaphore;

/// Bots sharing one QUIC endpoint (one UDP socket).
const BOTS_PER_ENDPOINT: usize = 100;

/// `tessera bots`.
#[derive(Args, Clone, Debug)]
pub struct BotsArgs {
    /// The manager's login address.
    #[arg(long, default_value = "127.0.0.1:7001")]
    pub login: SocketAddr,
    /// How many bots.
    #[arg(long, default_value_t = 10)]
    pub count: usize,
    /// Seconds to run; 0 runs until stopped.
    #[arg(long, default_value_t = 60)]
    pub duration: u64,
    /// How bots move: wander, cross (back and forth through the middle of
    /// the space, across the cut lines), or hotspot (everyone gathers around
    /// one point, 30 % into the space on both axes).
    #[arg(long, default_value = "wander")]
    pub behavior: Behavior,
    /// Write a JSON report here at the end.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// The server certificate to trust: the world's own (DER), or the root
    /// of its chain (DER or PEM).
    #[arg(long, default_value = "data/tls/cert.der")]
    pub cert: PathBuf,
    /// The name the server's certificate must carry.
    #[arg(long, default_value = tessera::net::SERVER_NAME)]
    pub server_name: String,
    /// An entity definitions file to use instead of the game's own.
    #[arg(long)]
    pub defs: Option<PathBuf>,
    /// Account names are this prefix and the bot's number.
    #[arg(long, default_value = "bot")]
    pub prefix: String,
    /// Logins in flight at once.
    #[arg(long, default_value_t = 32)]
    pub ramp: usize,
    /// Stop when standard input closes (used by `tessera up`).
    #[arg(long, hide = true)]
    pub stop_on_eof: bool,
}

/// How a bot moves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Behavior {
    /// Walk in a straight line, turning now and then and at the edges.
    Wander,
    /// Walk to the point mirrored through the space's centre and back, again
    /// and again: across the cut lines of an evenly cut space.
    Cross,
    /// Walk to a place near one point of the space and stay there: a crowd
    /// that loads one cell.
    Hotspot,
}

#[derive(Default)]
struct Counters {
    connected: AtomicU64,
    login_failures: AtomicU64,
    disconnects: AtomicU64,
    enters: AtomicU64,
    leaves: AtomicU64,
    position_updates: AtomicU64,
    calls_made: AtomicU64,
    calls_received: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
}

#[derive(Default)]
struct Shared {
    counters: Counters,
    errors: Mutex<BTreeMap<String, u64>>,
    latencies_us: Mutex<Vec<u32>>,
    /// Latencies sampled once every bot had logged in (no login storm).
    steady_us: Mutex<Vec<u32>>,
    /// Set when the last bot has logged in (or failed to).
    ramped: std::sync::atomic::AtomicBool,
    /// Bots done logging in, in or out.
    settled: AtomicU64,
}

impl Shared {
    fn settle(&self, total: usize) {
        if self.settled.fetch_add(1, Ordering::Relaxed) + 1 >= total as u64 {
            self.ramped.store(true, Ordering::Relaxed);
        }
    }
}

impl Shared {
    fn error(&self, kind: &str) {
        if let Ok(mut e) = self.errors.lock() {
            *e.entry(kind.to_string()).or_default() += 1;
        }
    }
}

/// Percentiles of AoI latency.
#[derive(Serialize, Debug)]
pub struct Latency {
    /// Median, milliseconds.
    pub p50: f64,
    /// 99th percentile, milliseconds.
    pub p99: f64,
    /// Samples taken.
    pub samples: usize,
}

/// The JSON report.
#[derive(Serialize, Debug)]
pub struct Report {
    /// Bots asked for.
    pub bots: usize,
    /// Seconds measured.
    pub duration_secs: f64,
    /// Bots that got into the world.
    pub connected: u64,
    /// Logins that failed.
    pub login_failures: u64,
    /// Connections lost while running.
    pub disconnects: u64,
    /// Errors by kind.
    pub errors: BTreeMap<String, u64>,
    /// Entities entering a bot's AoI.
    pub aoi_enters: u64,
    /// Entities leaving a bot's AoI.
    pub aoi_leaves: u64,
    /// Position updates received per second, over all bots.
    pub position_updates_per_sec: f64,
    /// Method calls the bots' game behaviour made.
    pub calls_made: u64,
    /// Client method calls the server made on the bots.
    pub calls_received: u64,
    /// Bytes received per bot per second.
    pub bytes_in_per_bot_per_sec: f64,
    /// Bytes sent per bot per second.
    pub bytes_out_per_bot_per_sec: f64,
    /// Server send to bot receive.
    pub aoi_latency_ms: Latency,
    /// The same, counting only samples taken after every bot had logged in.
    pub aoi_latency_after_logins_ms: Latency,
}

fn classify(e: &ClientError) -> &'static str {
    match e {
        ClientError::Net(_) => "connect",
        ClientError::LoginRefused { .. } => "login_refused",
        ClientError::Refused(_) => "refused",
        ClientError::Frame(_) => "bad_message",
        ClientError::Lost(_) => "connection_lost",
        ClientError::Send(_) => "send",
        ClientError::BadCall(_) => "bad_call",
        ClientError::Protocol(_) => "protocol",
    }
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    f64::from(sorted[i.min(sorted.len() - 1)]) / 1000.0
}

/// Runs the bots.
pub async fn run(a: BotsArgs, game: Game) -> anyhow::Result<()> {
    let game = match &a.defs {
        Some(p) => game.replace_definitions(tessera::Definitions::load(p)?),
        None => game,
    };
    game.check()
        .with_context(|| format!("game {} does not fit its definitions", game.name()))?;
    let defs = game.definitions().clone();
    let trust = tessera::net::load_trusted_cert(&a.cert)
        .with_context(|| format!("cannot read the server certificate {}", a.cert.display()))?;
    let setup = Setup {
        defs,
        trust,
        server_name: a.server_name.clone(),
        max_frame: tessera::frame::DEFAULT_MAX_FRAME,
    };
    // One endpoint per BOTS_PER_ENDPOINT bots: each has its own socket and
    // driver task, so a thousand connections are not all funnelled through
    // one socket buffer and one task.
    let endpoints = (0..a.count.div_ceil(BOTS_PER_ENDPOINT).max(1))
        .map(|_| tessera::client::endpoint())
        .collect::<Result<Vec<_>, _>>()?;
    let shared = Arc::new(Shared::default());
    let ramp = Arc::new(Semaphore::new(a.ramp.max(1)));
    let run_for = (a.duration > 0).then(|| Duration::from_secs(a.duration));
    println!("bots: starting {} against {}", a.count, a.login);
    let start = Instant::now();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::new();
    for i in 0..a.count {
        let (setup, endpoint, shared, ramp, prefix) = (
            setup.clone(),
            endpoints[i / BOTS_PER_ENDPOINT].clone(),
            shared.clone(),
            ramp.clone(),
            a.prefix.clone(),
        );
        let stop = stop_rx.clone();
        let (login, behavior, count) = (a.login, a.behavior, a.count);
        let plays = game.bot_behaviors().clone();
        tasks.push(tokio::spawn(async move {
            bot(
                i, count, &prefix, login, behavior, plays, setup, endpoint, shared, ramp, stop,
            )
            .await
        }));
    }
    let progress = {
        let shared = shared.clone();
        async move {
            let mut every = tokio::time::interval(Duration::from_secs(5));
            every.tick().await;
            loop {
                every.tick().await;
                let c = &shared.counters;
                println!(
                    "bots: t={:>4}s connected={} enters={} leaves={} updates={} disconnects={} login_failures={}",
                    start.elapsed().as_secs(),
                    c.connected.load(Ordering::Relaxed),
                    c.enters.load(Ordering::Relaxed),
                    c.leaves.load(Ordering::Relaxed),
                    c.position_updates.load(Ordering::Relaxed),
                    c.disconnects.load(Ordering::Relaxed),
                    c.login_failures.load(Ordering::Relaxed),
                );
            }
        }
    };
    let until = async {
        match run_for {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = until => {}
        _ = crate::roles::stop_requested(a.stop_on_eof) => {}
        _ = progress => {}
    }
    let elapsed = start.elapsed().as_secs_f64().max(1e-3);
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    let c = &shared.counters;
    let sorted = |m: &Mutex<Vec<u32>>| {
        let mut v = m.lock().map(|l| l.clone()).unwrap_or_default();
        v.sort_unstable();
        v
    };
    let lat = sorted(&shared.latencies_us);
    let steady = sorted(&shared.steady_us);
    let bots = a.count.max(1) as f64;
    let report = Report {
        bots: a.count,
        duration_secs: elapsed,
        connected: c.connected.load(Ordering::Relaxed),
        login_failures: c.login_failures.load(Ordering::Relaxed),
        disconnects: c.disconnects.load(Ordering::Relaxed),
        errors: shared.errors.lock().map(|e| e.clone()).unwrap_or_default(),
        aoi_enters: c.enters.load(Ordering::Relaxed),
        aoi_leaves: c.leaves.load(Ordering::Relaxed),
        position_updates_per_sec: c.position_updates.load(Ordering::Relaxed) as f64 / elapsed,
        calls_made: c.calls_made.load(Ordering::Relaxed),
        calls_received: c.calls_received.load(Ordering::Relaxed),
        bytes_in_per_bot_per_sec: c.bytes_in.load(Ordering::Relaxed) as f64 / elapsed / bots,
        bytes_out_per_bot_per_sec: c.bytes_out.load(Ordering::Relaxed) as f64 / elapsed / bots,
        aoi_latency_ms: Latency {
            p50: percentile(&lat, 0.50),
            p99: percentile(&lat, 0.99),
            samples: lat.len(),
        },
        aoi_latency_after_logins_ms: Latency {
            p50: percentile(&steady, 0.50),
            p99: percentile(&steady, 0.99),
            samples: steady.len(),
        },
    };
    println!("──────── bots summary ────────");
    println!(
        "bots            {} ({} connected, {} login failures, {} disconnects)",
        report.bots, report.connected, report.login_failures, report.disconnects
    );
    println!("duration        {:.1} s", report.duration_secs);
    println!("errors          {:?}", report.errors);
    println!(
        "AoI enters      {}   leaves {}",
        report.aoi_enters, report.aoi_leaves
    );
    println!(
        "positions       {:.0} updates/s",
        report.position_updates_per_sec
    );
    println!(
        "game calls      {} made, {} received",
        report.calls_made, report.calls_received
    );
    println!(
        "bytes per bot   {:.0} B/s in, {:.0} B/s out",
        report.bytes_in_per_bot_per_sec, report.bytes_out_per_bot_per_sec
    );
    println!(
        "AoI latency     p50 {:.1} ms, p99 {:.1} ms ({} samples)",
        report.aoi_latency_ms.p50, report.aoi_latency_ms.p99, report.aoi_latency_ms.samples
    );
    let s = &report.aoi_latency_after_logins_ms;
    println!(
        "  after logins  p50 {:.1} ms, p99 {:.1} ms ({} samples)",
        s.p50, s.p99, s.samples
    );
    if let Some(path) = &a.report {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("cannot write the report {}", path.display()))?;
        println!("report written to {}", path.display());
    }
    Ok(())
}

/// Makes a bot's calls. A call the bot's own definitions refuse (a bug in
/// the game's bot) is counted as `bad_call` and skipped; anything else
/// ends the bot.
async fn make_calls(
    client: &mut Client,
    shared: &Shared,
    calls: Vec<BotCall>,
) -> Result<(), ClientError> {
    for BotCall { method, args } in calls {
        match client.call(&method, args).await {
            Ok(()) => {
                shared.counters.calls_made.fetch_add(1, Ordering::Relaxed);
            }
            Err(ClientError::BadCall(why)) => {
                shared.error("bad_call");
                tracing::debug!(%method, %why, "a bot's call refused by its definitions");
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn sample(shared: &Shared, all: &mut Vec<u32>, steady: &mut Vec<u32>, latency_us: u64) {
    let v = latency_us.min(u64::from(u32::MAX)) as u32;
    all.push(v);
    if shared.ramped.load(Ordering::Relaxed) {
        steady.push(v);
    }
}

#[allow(clippy::too_many_arguments)]
async fn bot(
    i: usize,
    total: usize,
    prefix: &str,
    login: SocketAddr,
    behavior: Behavior,
    plays: BotBehaviors,
    setup: Setup,
    endpoint: quinn::Endpoint,
    shared: Arc<Shared>,
    ramp: Arc<Semaphore>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let name = format!("{prefix}{i}");
    let password = format!("{name}-password");
    let connected = {
        let _permit = ramp.acquire().await;
        Client::login_and_connect(&endpoint, &setup, login, &name, &password, true).await
    };
    shared.settle(total);
    let mut client = match connected {
        Ok(c) => c,
        Err(e) => {
            shared
                .counters
                .login_failures
                .fetch_add(1, Ordering::Relaxed);
            shared.error(classify(&e));
            tracing::warn!(bot = %name, error = %e, "bot could not log in");
            return;
        }
    };
    shared.counters.connected.fetch_add(1, Ordering::Relaxed);
    let mut rng = rand::rngs::StdRng::seed_from_u64(i as u64);
    let mut game_rng = rand::rngs::StdRng::seed_from_u64(i as u64 ^ 0x9e37_79b9);
    let mut plays = setup
        .defs
        .get(client.view.my_type)
        .and_then(|t| plays.make(&t.name, i as u64));
    let speed = setup
        .defs
        .get(client.view.my_type)
        .map(|t| t.max_speed * 0.7)
        .unwrap_or(1.0);
    let mut heading: f32 = rng.random_range(0.0..std::f32::consts::TAU);
    let mut step = tokio::time::interval(Duration::from_millis(100));
    let mut latencies = Vec::new();
    let mut steady = Vec::new();
    // For `cross`: where the bot started and the far end of its walk.
    let mut cross: Option<([f32; 2], [f32; 2])> = None;
    let mut tick = 0u64;
    let outcome: Result<(), ClientError> = loop {
        tokio::select! {
            _ = stop.changed() => break Ok(()),
            _ = step.tick() => {
                tick += 1;
                let [x0, z0, x1, z1] = client.view.bounds;
                let [x, y, z] = client.view.my_pos;
                let (mut nx, mut nz);
                match behavior {
                    Behavior::Wander => {
                        if rng.random_ratio(1, 30) {
                            heading += rng.random_range(-1.5..1.5);
                        }
                        nx = x + heading.sin() * speed * 0.1;
                        nz = z + heading.cos() * speed * 0.1;
                        if nx < x0 + 1.0 || nx > x1 - 1.0 || nz < z0 + 1.0 || nz > z1 - 1.0 {
                            heading += std::f32::consts::PI;
                        }
                    }
                    Behavior::Cross => {
                        let (ends, leg) = cross.get_or_insert(([x, z], [x0 + x1 - x, z0 + z1 - z]));
                        let (dx, dz) = (leg[0] - x, leg[1] - z);
                        let d = (dx * dx + dz * dz).sqrt();
                        let step = speed * 0.1;
                        if d <= step {
                            std::mem::swap(ends, leg);
                            (nx, nz) = (x, z);
                        } else {
                            (nx, nz) = (x + dx / d * step, z + dz / d * step);
                            heading = dx.atan2(dz);
                        }
                    }
                    Behavior::Hotspot => {
                        let crowd = tessera_sim::crowd::Crowds::hotspot(client.view.bounds, speed);
                        (nx, nz) = (x, z);
                        if let Some((gx, gz)) = crowd.goal(0.0, i as u64, (x, z)) {
                            let (dx, dz) = (gx - x, gz - z);
                            let d = (dx * dx + dz * dz).sqrt();
                            let step = speed * 0.1;
                            if d > step {
                                (nx, nz) = (x + dx / d * step, z + dz / d * step);
                                heading = dx.atan2(dz);
                            } else if d > 0.01 {
                                (nx, nz) = (gx, gz);
                            }
                        }
                    }
                }
                // The game's bot: it may steer, and it makes its calls.
                let mut calls = Vec::new();
                if let Some(play) = plays.as_mut() {
                    let mut b = Bot::new(&client.view, &setup.defs, &mut game_rng, tick);
                    play.step(&mut b);
                    let asked = b.finish();
                    calls = asked.calls;
                    if let Some([gx, gz]) = asked.walk {
                        let (dx, dz) = (gx - x, gz - z);
                        let d = (dx * dx + dz * dz).sqrt();
                        let step = speed * 0.1;
                        (nx, nz) = if d > step {
                            heading = dx.atan2(dz);
                            (x + dx / d * step, z + dz / d * step)
                        } else {
                            (gx, gz)
                        };
                    }
                }
                nx = nx.clamp(x0 + 1.0, x1 - 1.0);
                nz = nz.clamp(z0 + 1.0, z1 - 1.0);
                if let Err(e) = client.send_move([nx, y, nz], heading) {
                    break Err(e);
                }
                if let Err(e) = make_calls(&mut client, &shared, calls).await {
                    break Err(e);
                }
            }
            ev = client.next_event() => match ev {
                Ok(Event::Entered { latency_us, .. }) => {
                    shared.counters.enters.fetch_add(1, Ordering::Relaxed);
                    sample(&shared, &mut latencies, &mut steady, latency_us);
                }
                Ok(Event::Left(_)) => {
                    shared.counters.leaves.fetch_add(1, Ordering::Relaxed);
                }
                Ok(Event::Positions { count, latency_us }) => {
                    shared.counters.position_updates.fetch_add(count as u64, Ordering::Relaxed);
                    sample(&shared, &mut latencies, &mut steady, latency_us);
                }
                Ok(Event::Corrected { .. }) => shared.error("move_corrected"),
                Ok(Event::Called { entity, method, args }) => {
                    shared.counters.calls_received.fetch_add(1, Ordering::Relaxed);
                    let Some(play) = plays.as_mut() else { continue };
                    let mut b = Bot::new(&client.view, &setup.defs, &mut game_rng, tick);
                    play.called(&mut b, entity, &method, &args);
                    let calls = b.finish().calls;
                    if let Err(e) = make_calls(&mut client, &shared, calls).await {
                        break Err(e);
                    }
                }
                Ok(_) => {}
                Err(e) => break Err(e),
            }
        }
    };
    shared
        .counters
        .bytes_in
        .fetch_add(client.traffic.bytes_in, Ordering::Relaxed);
    shared
        .counters
        .bytes_out
        .fetch_add(client.traffic.bytes_out, Ordering::Relaxed);
    if let Ok(mut l) = shared.latencies_us.lock() {
        l.extend(latencies);
    }
    if let Ok(mut l) = shared.steady_us.lock() {
        l.extend(steady);
    }
    match outcome {
        Ok(()) => {
            let _ = client.logout().await;
        }
        Err(e) => {
            shared.counters.disconnects.fetch_add(1, Ordering::Relaxed);
            shared.error(classify(&e));
            tracing::warn!(bot = %name, error = %e, "bot lost its connection");
        }
    }
}
