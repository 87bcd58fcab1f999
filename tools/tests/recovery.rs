//! Recovery on real processes: a world of `tessera` processes (manager, four
//! cellapps, two baseapps, each its own process on loopback QUIC, one
//! SQLite file) with 200 clients walking, and one process killed with
//! SIGKILL.
//!
//! - A cellapp: no client is disconnected; every entity that was real on
//!   the dead cellapp is live again on a neighbour with the state of its
//!   last backup, and every client sees every other client near it.
//! - A baseapp: its clients lose their connections, resume their sessions
//!   by themselves on the other baseapp (which restored their bases from
//!   its copies) as the same entities, with nothing persistent lost, and
//!   every client again sees every other near it.
//! - The manager, started again three seconds later: every cell ticks on
//!   meanwhile, no client notices, every app comes back under its id, and
//!   the layout (with a line moved by hand) is the same after.
//!
//! The time from the kill to the last affected entity being live again is
//! printed (`recovery: ...`); `docs/benchmarks.md` records it over runs.
//! The two worlds take turns: together they would be four hundred clients
//! and fourteen processes on two cores.

mod procs;

use procs::Proc;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tessera::client::{Client, Event, Setup};
use tessera::{EntityId, Value};

/// One world at a time.
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const BIN: &str = env!("CARGO_BIN_EXE_tessera");
const BOTS: usize = 200;
const SIZE: f32 = 400.0;

/// Starts `tessera <args>` logging to `<data>/<name>.log`, and waits for a
/// line of its output containing `ready`. Returns the lines up to it.
fn start(data: &Path, name: &str, args: &[String], ready: &str) -> (Proc, Vec<String>) {
    let mut cmd = Command::new(BIN);
    cmd.args(args);
    procs::start(cmd, &data.join(format!("{name}.log")), ready)
}

/// The address after `prefix` on one of `lines`.
fn addr_after(lines: &[String], prefix: &str) -> SocketAddr {
    lines
        .iter()
        .find_map(|l| l.strip_prefix(prefix))
        .map(|a| a.trim().trim_start_matches("http://").trim_end_matches('/'))
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no {prefix:?} in {lines:?}"))
}

/// What the test knows of one client, updated by its task.
#[derive(Default)]
struct BotState {
    me: Option<EntityId>,
    pos: [f32; 3],
    title: Option<Value>,
    /// Who it sees, with the title it sees on them.
    sees: BTreeMap<EntityId, Option<Value>>,
    gold: Option<Value>,
    error: Option<String>,
    restored_at: Option<Instant>,
    live_at: Option<Instant>,
    /// When its session was resumed on a new connection, and to where.
    resumed_at: Option<Instant>,
    /// Sessions resumed so far.
    resumes: u32,
    baseapp: Option<SocketAddr>,
    /// Moves the server refused, pulling the client back.
    corrected: u32,
}

type Shared = Arc<Mutex<BotState>>;

fn lock(s: &Shared) -> std::sync::MutexGuard<'_, BotState> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

/// One client: walks while `walking`, and keeps `state` current.
async fn bot(mut client: Client, i: usize, state: Shared, walking: Arc<AtomicBool>) {
    let prop = |name: &str| {
        tessera_demo::definitions()
            .by_name("Avatar")
            .and_then(|t| t.prop(name))
            .map(|p| p.index)
    };
    let (title_index, gold_index) = (prop("title"), prop("gold"));
    let me = client.view.me;
    {
        let mut s = lock(&state);
        s.me = Some(me);
        s.baseapp = Some(client.connection().remote_address());
    }
    let mut heading = (i as f32) * 2.399;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            ev = client.next_event() => match ev {
                Err(e) => {
                    lock(&state).error = Some(e.to_string());
                    return;
                }
                Ok(Event::Resumed) => {
                    let mut s = lock(&state);
                    s.resumed_at = Some(Instant::now());
                    s.resumes += 1;
                    s.me = Some(client.view.me);
                    s.baseapp = Some(client.connection().remote_address());
                }
                // After a resume, the real's first word: live again.
                Ok(Event::Restored) if lock(&state).resumed_at.is_some() => {
                    let mut s = lock(&state);
                    if s.live_at.is_none() {
                        s.live_at = Some(Instant::now());
                    }
                }
                Ok(Event::Restored) => lock(&state).restored_at = Some(Instant::now()),
                Ok(Event::Corrected { .. }) => lock(&state).corrected += 1,
                Ok(Event::Props(e)) if e == me => {
                    let mut s = lock(&state);
                    if s.restored_at.is_some() && s.live_at.is_none() {
                        s.live_at = Some(Instant::now());
                    }
                }
                Ok(_) => {}
            },
            _ = tick.tick() => {
                if walking.load(Ordering::Relaxed) {
                    let [x, y, z] = client.view.my_pos;
                    let (mut nx, mut nz) = (x + heading.cos() * 0.5, z + heading.sin() * 0.5);
                    if !(10.0..SIZE - 10.0).contains(&nx) || !(10.0..SIZE - 10.0).contains(&nz) {
                        heading += std::f32::consts::FRAC_PI_2;
                        (nx, nz) = (x.clamp(10.0, SIZE - 10.0), z.clamp(10.0, SIZE - 10.0));
                    }
                    if let Err(e) = client.send_move([nx, y, nz], heading) {
                        lock(&state).error = Some(e.to_string());
                        return;
                    }
                }
                let mut s = lock(&state);
                s.pos = client.view.my_pos;
                s.title = title_index.and_then(|t| client.view.my_props.get(&t).cloned());
                s.gold = gold_index.and_then(|t| client.view.my_props.get(&t).cloned());
                s.sees = client
                    .view
                    .others
                    .iter()
                    .map(|(e, seen)| (*e, title_index.and_then(|t| seen.props.get(&t).cloned())))
                    .collect();
            }
        }
    }
}

fn title_of(i: usize) -> Value {
    Value::String(format!("bot-{i}"))
}

/// Kills a process with SIGKILL, lets the world recover for `secs` with the
/// clients walking, then stops them for two seconds. Returns when it killed.
async fn kill(mut proc: Proc, secs: u64, walking: &AtomicBool) -> Instant {
    let killed_at = Instant::now();
    proc.child.kill().expect("SIGKILL");
    let _ = proc.child.wait();
    drop(proc);
    tokio::time::sleep(Duration::from_secs(secs)).await;
    walking.store(false, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(2)).await;
    killed_at
}

/// For a bot whose entity came back (`back`), how long after the kill it
/// was live again.
fn live_after(
    i: usize,
    back: Option<Instant>,
    live: Option<Instant>,
    killed_at: Instant,
) -> Option<Duration> {
    let at = back?;
    let live = live.unwrap_or_else(|| panic!("bot {i} came back but was never live again"));
    assert!(
        at >= killed_at && live >= at,
        "bot {i}: came back before the kill"
    );
    Some(live - killed_at)
}

/// The warnings and errors the processes logged, for a failure's message.
fn warnings(data: &Path) -> String {
    let mut all = String::new();
    for entry in std::fs::read_dir(data).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "log") {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            for line in text
                .lines()
                .filter(|l| l.contains("WARN") || l.contains("ERROR"))
            {
                all.push_str(&format!("{}: {line}\n", path.display()));
            }
        }
    }
    all
}

/// A running world and its clients.
struct World {
    _dir: tempfile::TempDir,
    manager: Proc,
    /// The manager's arguments (with the ports it took), to start it again.
    manager_args: Vec<String>,
    /// The manager's admin HTTP address.
    admin: SocketAddr,
    /// Cellapps by app id.
    cellapps: BTreeMap<u32, Proc>,
    /// Baseapps by client address.
    baseapps: BTreeMap<SocketAddr, Proc>,
    setup: Setup,
    login: SocketAddr,
    /// The manager's internal address.
    internal: String,
    endpoints: Vec<quinn::Endpoint>,
    walking: Arc<AtomicBool>,
    bots: Vec<Shared>,
}

/// The arguments every process of a world takes.
fn role_args(data: &Path, role: &str) -> Vec<String> {
    vec![
        role.into(),
        "--data".into(),
        data.display().to_string(),
        "--stop-on-eof".into(),
        // The bots all connect from this machine's one address.
        "--conn-rate-per-addr".into(),
        "0".into(),
    ]
}

/// Starts a cellapp with ten NPCs; returns its app id.
fn start_cellapp(data: &Path, manager: &str, name: &str, seed: usize) -> (u32, Proc) {
    let mut args = role_args(data, "cellapp");
    args.extend([
        "--manager".into(),
        manager.into(),
        "--npcs".into(),
        "10".into(),
    ]);
    args.extend(["--seed".into(), seed.to_string()]);
    let (p, lines) = start(data, name, &args, "cellapp");
    let app: u32 = lines
        .last()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|a| a.trim_start_matches("app").parse().ok())
        .unwrap_or_else(|| panic!("no cellapp id in {lines:?}"));
    (app, p)
}

/// Starts a baseapp; returns where its clients connect.
fn start_baseapp(data: &Path, manager: &str, name: &str) -> (SocketAddr, Proc) {
    let mut args = role_args(data, "baseapp");
    args.extend(["--manager".into(), manager.into()]);
    let (p, lines) = start(data, name, &args, "baseapp");
    let public = lines
        .iter()
        .find_map(|l| l.split(" serving clients on ").nth(1))
        .and_then(|a| a.trim().parse().ok())
        .unwrap_or_else(|| panic!("no client address in {lines:?}"));
    (public, p)
}

/// Asks a process to go as an operator (or an orchestrator) does, with
/// SIGTERM, and waits for it to exit on its own.
async fn terminate(mut proc: Proc, name: &str, log: &Path) {
    let pid = proc.child.id().to_string();
    let sent = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(sent.success(), "SIGTERM to {name}");
    // `Child::wait` closes the child's standard input, which a process
    // started with `--stop-on-eof` takes as "the whole world is stopping":
    // keep it open until the process is gone, so SIGTERM alone decides.
    let stdin = proc.child.stdin.take();
    let waited = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::task::spawn_blocking(move || {
            let status = proc.child.wait();
            (proc, status)
        }),
    )
    .await;
    drop(stdin);
    match waited {
        Ok(Ok((_, Ok(status)))) => assert!(status.success(), "{name} exited with {status}"),
        _ => {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(15).collect();
            panic!("{name} did not exit within 60 s of SIGTERM; its log ends:\n{tail:#?}")
        }
    }
}

/// Starts the processes, then logs in [`BOTS`] clients that each set their
/// title (a persistent cell property) and add their index in gold (a
/// persistent base property), and walk.
async fn world() -> World {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path();
    // Every process signs its own certificate with this CA.
    tessera::net::ca::init(data).expect("cluster CA");
    let common = |role: &str| role_args(data, role);
    let mut args = common("manager");
    for a in [
        "--internal",
        "127.0.0.1:0",
        "--login",
        "127.0.0.1:0",
        "--admin",
        "127.0.0.1:0",
        "--size",
        "400",
        "--policy",
        "static",
        // Its bots log in from this machine's one address.
        "--login-limits",
        "one-address",
    ] {
        args.push(a.into());
    }
    let (manager, lines) = start(data, "manager", &args, "admin:");
    let internal = addr_after(&lines, "internal: ").to_string();
    let login = addr_after(&lines, "login: ");
    let admin = addr_after(&lines, "admin: ");
    // Started again, it takes the same ports.
    let mut manager_args = common("manager");
    for (flag, value) in [
        ("--internal", internal.clone()),
        ("--login", login.to_string()),
        ("--admin", admin.to_string()),
        ("--size", "400".into()),
        ("--policy", "static".into()),
        ("--login-limits", "one-address".into()),
    ] {
        manager_args.extend([flag.to_string(), value]);
    }
    let mut cellapps = BTreeMap::new();
    for i in 0..4 {
        let (app, p) = start_cellapp(data, &internal, &format!("cellapp-{i}"), i + 1);
        cellapps.insert(app, p);
    }
    let mut baseapps = BTreeMap::new();
    for i in 0..2 {
        let (public, p) = start_baseapp(data, &internal, &format!("baseapp-{i}"));
        baseapps.insert(public, p);
    }
    let setup = Setup {
        defs: Arc::new(tessera_demo::definitions()),
        trust: tessera::net::load_trusted_cert(&tessera::net::cert_path(data)).expect("cert"),
        server_name: tessera::net::SERVER_NAME.into(),
        max_frame: tessera::frame::DEFAULT_MAX_FRAME,
    };
    // quinn's own errors (a stopped endpoint, say) go to the test's output.
    let _ = tracing_subscriber::fmt()
        .with_env_filter("quinn=warn")
        .with_writer(std::io::stderr)
        .try_init();
    let mut w = World {
        _dir: dir,
        manager,
        manager_args,
        admin,
        cellapps,
        baseapps,
        setup,
        login,
        internal,
        // One endpoint (one UDP socket) per client, as on players' machines.
        endpoints: (0..BOTS)
            .map(|_| tessera::client::endpoint().expect("endpoint"))
            .collect(),
        walking: Arc::new(AtomicBool::new(true)),
        bots: Vec::new(),
    };
    for i in 0..BOTS {
        let ep = &w.endpoints[i % w.endpoints.len()];
        let name = format!("bot{i}");
        let mut client = Client::login_and_connect(ep, &w.setup, w.login, &name, "password1", true)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        client
            .call("set_title", vec![title_of(i)])
            .await
            .expect("set_title");
        client
            .call("add_gold", vec![Value::Int(i as i64)])
            .await
            .expect("add_gold");
        let state = Shared::default();
        tokio::spawn(bot(client, i, state.clone(), w.walking.clone()));
        w.bots.push(state);
    }
    // Past a cell backup period (5 s) and a base copy period (2 s): every
    // title and every gold is in a backup and a copy.
    tokio::time::sleep(Duration::from_secs(7)).await;
    for (i, b) in w.bots.iter().enumerate() {
        let s = lock(b);
        assert_eq!(s.error, None, "bot {i} before the kill");
        assert_eq!(s.title, Some(title_of(i)), "bot {i} before the kill");
        assert_eq!(
            s.gold,
            Some(Value::Int(i as i64)),
            "bot {i} before the kill"
        );
    }
    w
}

/// Every bot stayed connected, on one connection, no move of it was
/// refused, and its entity kept its title (cell side) and gold (base side).
fn all_played_on(states: &[std::sync::MutexGuard<'_, BotState>]) {
    for (i, s) in states.iter().enumerate() {
        assert_eq!(s.error, None, "bot {i} was disconnected");
        assert_eq!(s.resumed_at, None, "bot {i} lost its connection");
        kept_everything(i, s);
    }
}

/// No move of bot `i` was refused, and its entity kept its title (cell
/// side) and gold (base side).
fn kept_everything(i: usize, s: &BotState) {
    assert_eq!(s.corrected, 0, "bot {i} was pulled back");
    assert_eq!(s.title, Some(title_of(i)), "bot {i}: its title after");
    assert_eq!(
        s.gold,
        Some(Value::Int(i as i64)),
        "bot {i}: its gold after"
    );
}

/// Every client sees every other client within 80 m (the AoI is 100 m),
/// with its title.
fn neighbours_seen(states: &[std::sync::MutexGuard<'_, BotState>]) {
    let by_id: BTreeMap<EntityId, (usize, [f32; 3])> = states
        .iter()
        .enumerate()
        .filter_map(|(i, s)| Some((s.me?, (i, s.pos))))
        .collect();
    let mut pairs = 0;
    for (i, s) in states.iter().enumerate() {
        for (other, (j, pos)) in &by_id {
            if *j == i {
                continue;
            }
            let d = ((pos[0] - s.pos[0]).powi(2) + (pos[2] - s.pos[2]).powi(2)).sqrt();
            if d < 80.0 {
                pairs += 1;
                assert_eq!(
                    s.sees.get(other),
                    Some(&Some(title_of(*j))),
                    "bot {i} does not see bot {j} ({d:.0} m away) with its title"
                );
            }
        }
    }
    assert!(pairs > BOTS, "too few neighbours to mean anything: {pairs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_cellapp_costs_no_client_anything() {
    let _turn = TURN.lock().await;
    let mut w = world().await;
    // Kill the cellapp with the lowest id (it has a quarter of the space).
    let (victim, proc) = w.cellapps.pop_first().expect("a cellapp");
    // Recovery, then the clients stand still so views settle.
    let killed_at = kill(proc, 5, &w.walking).await;

    let states: Vec<_> = w.bots.iter().map(lock).collect();
    all_played_on(&states);
    let mut restored = Vec::new();
    for (i, s) in states.iter().enumerate() {
        restored.extend(live_after(i, s.restored_at, s.live_at, killed_at));
    }
    assert!(
        restored.len() >= 5,
        "only {} clients' entities were on app{victim}",
        restored.len()
    );
    neighbours_seen(&states);
    let worst = restored.iter().max().copied().unwrap_or_default();
    let corrected: u32 = states.iter().map(|s| s.corrected).sum();
    let disconnected = states.iter().filter(|s| s.error.is_some()).count();
    println!(
        "recovery: {} entities on the killed cellapp live again {} ms after the kill; {corrected} moves corrected, {disconnected} clients disconnected",
        restored.len(),
        worst.as_millis()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_baseapps_clients_resume_as_the_same_entities() {
    let _turn = TURN.lock().await;
    let mut w = world().await;
    let (victim, proc) = w.baseapps.pop_first().expect("a baseapp");
    let before: Vec<(Option<EntityId>, Option<SocketAddr>)> = w
        .bots
        .iter()
        .map(|b| {
            let s = lock(b);
            (s.me, s.baseapp)
        })
        .collect();
    // Detection (client idle timeout 2 s), restore and resume; then the
    // clients stand still so views settle.
    let killed_at = kill(proc, 6, &w.walking).await;

    let states: Vec<_> = w.bots.iter().map(lock).collect();
    let mut resumed = Vec::new();
    for (i, s) in states.iter().enumerate() {
        assert_eq!(s.error, None, "bot {i} did not carry on");
        assert_eq!(s.me, before[i].0, "bot {i} plays another entity");
        assert_eq!(s.title, Some(title_of(i)), "bot {i}: its title after");
        assert_eq!(
            s.gold,
            Some(Value::Int(i as i64)),
            "bot {i}: its gold after"
        );
        let was_there = before[i].1 == Some(victim);
        if s.resumed_at.is_some() != was_there {
            panic!(
                "bot {i} (entity {:?}, on the killed baseapp: {was_there}) resumed: {:?}\n{}",
                s.me,
                s.resumed_at,
                warnings(w._dir.path())
            );
        }
        resumed.extend(live_after(i, s.resumed_at, s.live_at, killed_at));
    }
    assert!(
        resumed.len() >= 20,
        "only {} clients were on the killed baseapp",
        resumed.len()
    );
    neighbours_seen(&states);
    let worst = resumed.iter().max().copied().unwrap_or_default();
    println!(
        "recovery: {} clients of the killed baseapp resumed, all live again {} ms after the kill",
        resumed.len(),
        worst.as_millis()
    );
    drop(states);
    database_holds_everything(w).await;
}

/// A rolling restart, as an orchestrator does one: every cellapp, then
/// every baseapp, in turn gets SIGTERM, exits, and a new process takes its
/// place. No client is disconnected or pulled back; the clients of each
/// baseapp follow their entities to another baseapp (a resume, which the
/// client library does by itself); every client plays the same entity,
/// with its title (cell side) and gold (base side), and sees its
/// neighbours; and the database holds everything after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_disconnects_nobody_and_loses_nothing() {
    let _turn = TURN.lock().await;
    let mut w = world().await;
    let data = w._dir.path().to_path_buf();
    let before: Vec<Option<EntityId>> = w.bots.iter().map(|b| lock(b).me).collect();
    let started = Instant::now();
    let old_cellapps = std::mem::take(&mut w.cellapps);
    for (n, (app, proc)) in old_cellapps.into_iter().enumerate() {
        let log = if n < 4 {
            format!("cellapp-{n}.log")
        } else {
            String::new()
        };
        terminate(proc, &format!("cellapp app{app}"), &data.join(log)).await;
        let (new, p) = start_cellapp(&data, &w.internal, &format!("cellapp-new-{n}"), 10 + n);
        w.cellapps.insert(new, p);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let old_baseapps = std::mem::take(&mut w.baseapps);
    for (n, (addr, proc)) in old_baseapps.into_iter().enumerate() {
        terminate(
            proc,
            &format!("baseapp at {addr}"),
            &data.join(format!("baseapp-{n}.log")),
        )
        .await;
        let (new, p) = start_baseapp(&data, &w.internal, &format!("baseapp-new-{n}"));
        w.baseapps.insert(new, p);
        // Past a copy period, so the new baseapp holds copies too.
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    let took = started.elapsed();
    // The clients stand still so views settle.
    w.walking.store(false, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(3)).await;

    let states: Vec<_> = w.bots.iter().map(lock).collect();
    let mut resumed = 0;
    for (i, s) in states.iter().enumerate() {
        if s.error.is_some() {
            panic!(
                "bot {i} was disconnected: {:?}\n{}",
                s.error,
                warnings(&data)
            );
        }
        assert_eq!(s.me, before[i], "bot {i} plays another entity");
        kept_everything(i, s);
        resumed += usize::from(s.resumes > 0);
    }
    // Every client was on one of the two old baseapps.
    assert_eq!(
        resumed,
        BOTS,
        "every client followed its entity\n{}",
        warnings(&data)
    );
    neighbours_seen(&states);
    let resumes: u32 = states.iter().map(|s| s.resumes).sum();
    println!(
        "rolling restart: 4 cellapps and 2 baseapps replaced in {:.1} s; {resumed} clients followed their entities ({resumes} resumes), 0 disconnected",
        took.as_secs_f64()
    );
    drop(states);
    database_holds_everything(w).await;
}

/// What the database holds: the baseapps stop cleanly (saving every
/// entity), a new one starts, and every client logs in again with its
/// password; title and gold are as they were.
async fn database_holds_everything(mut w: World) {
    let setup = w.setup.clone();
    let login = w.login;
    let endpoint = w.endpoints[0].clone();
    w.walking.store(false, Ordering::Relaxed);
    drop(w.bots);
    // The bot tasks hold the clients; a fresh login of each account takes
    // over its entity only once the old session has gone, so end them by
    // stopping the baseapps cleanly (they save every entity).
    for (_, mut p) in std::mem::take(&mut w.baseapps) {
        drop(p.child.stdin.take());
        let _ = p.child.wait();
    }
    let data = w._dir.path();
    let mut args = vec![
        "baseapp".to_string(),
        "--data".into(),
        data.display().to_string(),
        "--stop-on-eof".into(),
        "--conn-rate-per-addr".into(),
        "0".into(),
        "--manager".into(),
    ];
    args.push(w.internal.clone());
    let (_again, _) = start(data, "baseapp-again", &args, "baseapp");
    for i in 0..BOTS {
        let name = format!("bot{i}");
        let c = Client::login_and_connect(&endpoint, &setup, login, &name, "password1", false)
            .await
            .unwrap_or_else(|e| panic!("{name} logs in again: {e}"));
        let title = setup
            .defs
            .by_name("Avatar")
            .and_then(|t| t.prop("title"))
            .map(|p| p.index);
        let gold = setup
            .defs
            .by_name("Avatar")
            .and_then(|t| t.prop("gold"))
            .map(|p| p.index);
        assert_eq!(
            title.and_then(|t| c.view.my_props.get(&t).cloned()),
            Some(title_of(i)),
            "{name}: saved title"
        );
        assert_eq!(
            gold.and_then(|t| c.view.my_props.get(&t).cloned()),
            Some(Value::Int(i as i64)),
            "{name}: saved gold"
        );
        c.logout().await.expect("logout");
    }
}

/// A GET from an admin HTTP port: the body of its 200 answer.
fn get(addr: SocketAddr, path: &str) -> String {
    tessera_tools::viz::fetch(&format!("http://{addr}{path}"))
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

/// A POST to an admin HTTP port: the status code and the body.
async fn post(data: &Path, addr: SocketAddr, path: &str, body: &str) -> (u16, String) {
    let (url, body) = (format!("http://{addr}{path}"), body.to_string());
    let token = std::fs::read_to_string(tessera_manager::admin::guard::token_path(data))
        .expect("the admin token");
    let answer = tokio::task::spawn_blocking(move || {
        tessera_tools::http::request_with("POST", &url, &body, Some(token.trim()))
            .unwrap_or_else(|e| panic!("POST {url}: {e}"))
    })
    .await
    .expect("the request's thread");
    (answer.status, answer.body)
}

/// The manager's layout as (epoch, every cell's id, cellapp and rectangle).
fn layout(manager: SocketAddr) -> (u64, Vec<serde_json::Value>) {
    let body = get(manager, "/api/spaces/1/layout");
    let v: serde_json::Value = serde_json::from_str(&body).expect("layout JSON");
    let cells = v["cells"]
        .as_array()
        .expect("cells")
        .iter()
        .map(|c| serde_json::json!([c["cell"], c["app"], c["rect"]]))
        .collect();
    (v["epoch"].as_u64().expect("epoch"), cells)
}

/// The members the manager lists: (id, role, admin address).
fn members(manager: SocketAddr) -> Vec<(u64, String, Option<SocketAddr>)> {
    let body = get(manager, "/api/cluster");
    let v: serde_json::Value = serde_json::from_str(&body).expect("cluster JSON");
    let mut apps: Vec<_> = v["apps"]
        .as_array()
        .expect("apps")
        .iter()
        .map(|a| {
            (
                a["id"].as_u64().expect("id"),
                a["role"].as_str().expect("role").to_string(),
                a["admin_addr"].as_str().and_then(|s| s.parse().ok()),
            )
        })
        .collect();
    apps.sort();
    apps
}

/// Ticks each cellapp has run, from its `/metrics`.
fn ticks(cellapps: &[SocketAddr]) -> Vec<u64> {
    let mut all = Vec::new();
    for addr in cellapps {
        let text = get(*addr, "/metrics");
        let n = text
            .lines()
            .find(|l| l.starts_with("tessera_tick_seconds_count"))
            .and_then(|l| l.split_whitespace().last())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no tick count from {addr}"));
        all.push(n);
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_manager_started_again_finds_the_world_where_it_was() {
    let _turn = TURN.lock().await;
    let mut w = world().await;
    // A line moved by hand: a layout no fresh manager would cut.
    let (status, body) = post(
        w._dir.path(),
        w.admin,
        "/api/spaces/1/lines/1",
        r#"{"pos": 130}"#,
    )
    .await;
    assert_eq!(status, 200, "moving a line: {body}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = layout(w.admin);
    let apps = members(w.admin);
    assert_eq!(apps.len(), 6, "{apps:?}");
    let cell_admins: Vec<SocketAddr> = apps
        .iter()
        .filter(|(_, role, _)| role == "cellapp")
        .map(|(id, _, a)| a.unwrap_or_else(|| panic!("cellapp {id} has no admin address")))
        .collect();
    let ticks_before = ticks(&cell_admins);

    let killed_at = Instant::now();
    w.manager.child.kill().expect("SIGKILL");
    let _ = w.manager.child.wait();
    tokio::time::sleep(Duration::from_secs(3)).await;
    // The world ticked on (10 Hz) while the manager was dead.
    let ticks_down = ticks(&cell_admins);
    for (b, d) in ticks_before.iter().zip(&ticks_down) {
        assert!(
            d - b >= 25,
            "a cell stood still: {ticks_before:?} -> {ticks_down:?}"
        );
    }
    let data = w._dir.path().to_path_buf();
    let (again, _) = start(&data, "manager-again", &w.manager_args, "admin:");
    let restarted_at = Instant::now();
    w.manager = again;
    // Every app comes back under its id (one that missed the rejoin window
    // would be refused and stop, so waiting longer would not help it), and
    // the layout is the one they had.
    let mut back = members(w.admin);
    while back != apps && restarted_at.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        back = members(w.admin);
    }
    let back_after = restarted_at.elapsed();
    assert_eq!(back, apps, "the apps that came back");
    assert_eq!(layout(w.admin), before, "the layout once the apps are back");
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(layout(w.admin), before, "the layout after");
    w.walking.store(false, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let ticks_after = ticks(&cell_admins);
    for (d, a) in ticks_down.iter().zip(&ticks_after) {
        assert!(
            a - d >= 40,
            "a cell stood still after the restart: {ticks_down:?} -> {ticks_after:?}"
        );
    }

    // No await while the bots' states are held: their tasks block on them.
    let states: Vec<_> = w.bots.iter().map(lock).collect();
    all_played_on(&states);
    neighbours_seen(&states);
    println!(
        "manager restart: killed, started again {} ms later, every app back {} ms after that; cell ticks {ticks_before:?} -> {ticks_down:?} -> {ticks_after:?}",
        (restarted_at - killed_at).as_millis(),
        back_after.as_millis()
    );
    drop(states);
    // Logins go through the new manager.
    database_holds_everything(w).await;
}
