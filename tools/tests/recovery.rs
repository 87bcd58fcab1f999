//! Recovery on real processes: a world of `tessera` processes (manager, four
//! cellapps, two baseapps, each its own process on loopback QUIC, one
//! SQLite file) with 200 clients walking, and one cellapp killed with
//! SIGKILL. No client is disconnected; every entity that was real on the
//! dead cellapp is live again on a neighbour with the state of its last
//! backup, and every client sees every other client near it.
//!
//! The time from the kill to the last affected entity being live again is
//! printed (`recovery: ...`); `docs/benchmarks.md` records it over runs.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};
use tessera::client::{Client, Event, Setup};
use tessera::{EntityId, Value};

const BIN: &str = env!("CARGO_BIN_EXE_tessera");
const BOTS: usize = 200;
const SIZE: f32 = 400.0;

/// A child process, killed if still running when dropped.
struct Proc {
    child: Child,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `tessera <args>` logging to `<data>/<name>.log`, and waits for a
/// line of its output starting with `ready`. Returns the lines up to it.
fn start(data: &Path, name: &str, args: &[String], ready: &str) -> (Proc, Vec<String>) {
    let log = std::fs::File::create(data.join(format!("{name}.log"))).expect("log file");
    let mut child = Command::new(BIN)
        .args(args)
        .env("RUST_LOG", "info")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("start tessera");
    let out = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            // Keep draining after the test stops listening.
            let _ = tx.send(line);
        }
    });
    let proc = Proc { child };
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut lines = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("{name} not ready: {lines:?}"));
        let done = line.starts_with(ready);
        lines.push(line);
        if done {
            return (proc, lines);
        }
    }
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
    error: Option<String>,
    restored_at: Option<Instant>,
    live_at: Option<Instant>,
}

type Shared = Arc<Mutex<BotState>>;

fn lock(s: &Shared) -> std::sync::MutexGuard<'_, BotState> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

/// One client: walks while `walking`, and keeps `state` current.
async fn bot(mut client: Client, i: usize, state: Shared, walking: Arc<AtomicBool>) {
    let title_index = tessera::demo::definitions()
        .by_name("Avatar")
        .and_then(|t| t.prop("title"))
        .map(|p| p.index);
    let me = client.view.me;
    lock(&state).me = Some(me);
    let mut heading = (i as f32) * 2.399;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            ev = client.next_event() => match ev {
                Err(e) => {
                    lock(&state).error = Some(e.to_string());
                    return;
                }
                Ok(Event::Restored) => lock(&state).restored_at = Some(Instant::now()),
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_cellapp_costs_no_client_anything() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path();
    let d = data.display().to_string();
    let common = |role: &str| -> Vec<String> {
        vec![
            role.into(),
            "--data".into(),
            d.clone(),
            "--stop-on-eof".into(),
        ]
    };
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
    ] {
        args.push(a.into());
    }
    let (_manager, lines) = start(data, "manager", &args, "admin:");
    let internal = addr_after(&lines, "internal: ").to_string();
    let login = addr_after(&lines, "login: ");
    let mut cellapps = BTreeMap::new();
    for i in 0..4 {
        let mut args = common("cellapp");
        args.extend([
            "--manager".into(),
            internal.clone(),
            "--npcs".into(),
            "10".into(),
        ]);
        args.extend(["--seed".into(), (i + 1).to_string()]);
        let (p, lines) = start(data, &format!("cellapp-{i}"), &args, "cellapp");
        let app: u32 = lines
            .last()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|a| a.trim_start_matches("app").parse().ok())
            .unwrap_or_else(|| panic!("no cellapp id in {lines:?}"));
        cellapps.insert(app, p);
    }
    let mut _baseapps = Vec::new();
    for i in 0..2 {
        let mut args = common("baseapp");
        args.extend(["--manager".into(), internal.clone()]);
        _baseapps.push(start(data, &format!("baseapp-{i}"), &args, "baseapp").0);
    }

    // 200 clients, each with its own title (a persistent cell property).
    let setup = Setup {
        defs: Arc::new(tessera::demo::definitions()),
        trust: tessera::net::load_trusted_cert(&tessera::net::cert_path(data)).expect("cert"),
        max_frame: tessera::frame::DEFAULT_MAX_FRAME,
    };
    let endpoints: Vec<quinn::Endpoint> = (0..4)
        .map(|_| tessera::client::endpoint().expect("endpoint"))
        .collect();
    let walking = Arc::new(AtomicBool::new(true));
    let mut bots = Vec::new();
    for i in 0..BOTS {
        let ep = &endpoints[i % endpoints.len()];
        let name = format!("bot{i}");
        let mut client = Client::login_and_connect(ep, &setup, login, &name, "pw", true)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        client
            .call("set_title", vec![title_of(i)])
            .await
            .expect("set_title");
        let state = Shared::default();
        tokio::spawn(bot(client, i, state.clone(), walking.clone()));
        bots.push(state);
    }
    // Past a backup period (5 s): every title is in a backup.
    tokio::time::sleep(Duration::from_secs(7)).await;
    for (i, b) in bots.iter().enumerate() {
        let s = lock(b);
        assert_eq!(s.error, None, "bot {i} before the kill");
        assert_eq!(s.title, Some(title_of(i)), "bot {i} before the kill");
    }

    // Kill the cellapp with the lowest id (it has a quarter of the space).
    let (victim, mut proc) = cellapps.pop_first().expect("a cellapp");
    let killed_at = Instant::now();
    proc.child.kill().expect("SIGKILL");
    let _ = proc.child.wait();
    drop(proc);
    // Recovery, then the clients stand still so views settle.
    tokio::time::sleep(Duration::from_secs(5)).await;
    walking.store(false, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(2)).await;

    let states: Vec<_> = bots.iter().map(lock).collect();
    let mut restored = Vec::new();
    for (i, s) in states.iter().enumerate() {
        assert_eq!(s.error, None, "bot {i} was disconnected");
        assert_eq!(s.title, Some(title_of(i)), "bot {i}: its title after");
        if let Some(at) = s.restored_at {
            let live = s
                .live_at
                .unwrap_or_else(|| panic!("bot {i} was restored but never live again"));
            assert!(at >= killed_at && live >= at);
            restored.push(live - killed_at);
        }
    }
    assert!(
        restored.len() >= 5,
        "only {} clients' entities were on app{victim}",
        restored.len()
    );
    // Every client sees every other client within 80 m (the AoI is 100 m),
    // with its title.
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
    let worst = restored.iter().max().copied().unwrap_or_default();
    println!(
        "recovery: {} entities on the killed cellapp live again {} ms after the kill",
        restored.len(),
        worst.as_millis()
    );
}
