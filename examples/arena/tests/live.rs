//! The arena on real processes: `arena up` starts a manager, four cellapps
//! and two baseapps, each its own process (the arena binary); `arena bots`
//! runs 200 bots playing it for 60 s in another, while the test moves the
//! cut lines through the admin API. The bots' report shows no error, no
//! failed login and no disconnect. Then the world is stopped (Ctrl-C, which
//! saves everything) and started again on the same data: every fighter's
//! gold and guild, read back by logging in, are what the database held
//! before the restart, and the guilds' rolls are unchanged.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tessera::client::{Client, Setup};
use tessera::storage::{HashCost, SqliteStorage, Storage};
use tessera::{Definitions, Value};

const BIN: &str = env!("CARGO_BIN_EXE_arena");
const BOTS: usize = 200;

/// A child process, stopped with Ctrl-C (or killed) when dropped.
struct Proc(Child);

impl Proc {
    /// Asks it to stop as Ctrl-C does and waits for it to exit.
    fn interrupt(mut self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.0.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("the world did not stop within 60 s");
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Ports {
    internal: SocketAddr,
    login: SocketAddr,
    admin: SocketAddr,
}

fn free_ports() -> Ports {
    let udp = || {
        UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .expect("a free UDP port")
    };
    let tcp = TcpListener::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("a free TCP port");
    Ports {
        internal: udp(),
        login: udp(),
        admin: tcp,
    }
}

/// `arena up` on `data`, once it says the world is up.
fn up(data: &Path, ports: &Ports) -> Proc {
    let mut child = Command::new(BIN)
        .args(["up", "--cellapps", "4", "--baseapps", "2", "--npcs", "160"])
        .args(["--size", "400", "--policy", "static", "--data"])
        .arg(data)
        .args(["--internal", &ports.internal.to_string()])
        .args(["--login", &ports.login.to_string()])
        .args(["--admin", &ports.admin.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("arena up starts");
    let stdout = child.stdout.take().expect("its output");
    let (ready_tx, ready) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.starts_with("world up") {
                let _ = ready_tx.send(());
            }
        }
    });
    ready
        .recv_timeout(Duration::from_secs(60))
        .expect("the world came up");
    Proc(child)
}

fn admin(data: &Path, ports: &Ports, method: &str, path: &str, body: &str) -> String {
    let token = std::fs::read_to_string(data.join("admin.token")).expect("the admin token");
    let url = format!("http://{}{path}", ports.admin);
    let answer = tessera_tools::http::request_with(method, &url, body, Some(token.trim()))
        .expect("the admin API answers");
    assert_eq!(answer.status, 200, "{path}: {}", answer.body);
    answer.body
}

fn move_line(data: &Path, ports: &Ports, pos: f32) {
    let layout: serde_json::Value =
        serde_json::from_str(&admin(data, ports, "GET", "/api/spaces/1/layout", ""))
            .expect("layout JSON");
    let id = layout["lines"][0]["line"].as_u64().expect("a line");
    admin(
        data,
        ports,
        "POST",
        &format!("/api/spaces/1/lines/{id}"),
        &format!(r#"{{"pos": {pos}}}"#),
    );
}

/// Every bot's gold and guild as the database holds them, and each
/// guild's roll.
fn saved(data: &Path) -> (Vec<(i64, String)>, Vec<usize>) {
    let defs = tessera_arena::definitions();
    let fighter = defs.by_name("Fighter").expect("Fighter");
    let guild = defs.by_name("Guild").expect("Guild");
    let prop = |t: &tessera::TypeDef, name: &str| t.prop(name).map_or(0, |p| p.index as usize);
    let mut db =
        SqliteStorage::open(&data.join("world.db"), HashCost::default()).expect("the database");
    let bots = (0..BOTS)
        .map(|n| {
            let account = db
                .login(&format!("bot{n}"), &format!("bot{n}-password"), false)
                .expect("the bot's account");
            let row = db
                .load_entity(account.entity.expect("a fighter"))
                .expect("storage")
                .expect("the fighter's row");
            let f = tessera_baseapp::persist::decode(fighter, row.format_version, &row.data)
                .expect("the fighter decodes");
            (
                f.props[prop(fighter, "gold")].as_int().unwrap_or(0),
                f.props[prop(fighter, "guild")]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            )
        })
        .collect();
    let rolls = (0..5)
        .map(|g| {
            let id = db
                .find_named("Guild", &format!("guild{g}"))
                .expect("storage")
                .unwrap_or_else(|| panic!("guild{g} was saved"));
            let row = db
                .load_entity(id)
                .expect("storage")
                .expect("the guild's row");
            let saved = tessera_baseapp::persist::decode(guild, row.format_version, &row.data)
                .expect("the guild decodes");
            saved.props[prop(guild, "members")]
                .as_list()
                .map_or(0, <[Value]>::len)
        })
        .collect();
    (bots, rolls)
}

#[test]
fn the_arena_fights_on_real_processes_and_keeps_gold_and_guilds_over_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path();
    let ports = free_ports();
    let world = up(data, &ports);
    let report = data.join("bots.json");
    let mut bots = Command::new(BIN)
        .args(["bots", "--count", &BOTS.to_string(), "--duration", "60"])
        .args(["--login", &ports.login.to_string(), "--cert"])
        .arg(data.join("tls").join("cert.der"))
        .arg("--report")
        .arg(&report)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("arena bots starts");
    // The lines move under the fight.
    for pos in [140.0, 260.0, 200.0] {
        std::thread::sleep(Duration::from_secs(16));
        move_line(data, &ports, pos);
    }
    assert!(
        bots.wait().expect("the bots end").success(),
        "the bots failed"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).expect("the report")).expect("JSON");
    assert_eq!(report["connected"], BOTS, "{report}");
    assert_eq!(report["login_failures"], 0, "{report}");
    assert_eq!(report["disconnects"], 0, "{report}");
    assert_eq!(report["errors"], serde_json::json!({}), "{report}");
    assert!(
        report["calls_made"].as_u64() > Some(BOTS as u64),
        "{report}"
    );
    assert!(
        report["calls_received"].as_u64() > Some(BOTS as u64),
        "{report}"
    );

    // The bots logged out: their bases are saved as they leave.
    std::thread::sleep(Duration::from_secs(3));
    let (before, rolls) = saved(data);
    assert!(before.iter().any(|(gold, _)| *gold > 0), "someone looted");
    assert!(
        before.iter().all(|(_, g)| g.starts_with("guild")),
        "all joined"
    );
    assert_eq!(
        rolls.iter().sum::<usize>(),
        BOTS,
        "every fighter on one roll"
    );
    world.interrupt();

    let world = up(data, &ports);
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    runtime.block_on(async {
        let defs: Arc<Definitions> = Arc::new(tessera_arena::definitions());
        let setup = Setup {
            defs: defs.clone(),
            trust: tessera::net::load_trusted_cert(&data.join("tls").join("cert.der"))
                .expect("the certificate"),
            server_name: tessera::net::SERVER_NAME.into(),
            max_frame: tessera::frame::DEFAULT_MAX_FRAME,
        };
        let endpoint = tessera::client::endpoint().expect("an endpoint");
        let fighter = defs.by_name("Fighter").expect("Fighter");
        for n in (0..BOTS).step_by(20) {
            let name = format!("bot{n}");
            let client = Client::login_and_connect(
                &endpoint,
                &setup,
                ports.login,
                &name,
                &format!("{name}-password"),
                false,
            )
            .await
            .unwrap_or_else(|e| panic!("{name} could not log in again: {e}"));
            let own = |p: &str| {
                fighter
                    .prop(p)
                    .and_then(|p| client.view.my_props.get(&p.index).cloned())
            };
            let (gold, guild) = &before[n];
            assert_eq!(own("gold"), Some(Value::Int(*gold)), "{name}'s gold");
            assert_eq!(
                own("guild"),
                Some(Value::String(guild.clone())),
                "{name}'s guild"
            );
            client.logout().await.expect("logout");
        }
    });
    world.interrupt();
    assert_eq!(saved(data).1, rolls, "the guilds' rolls");
}
