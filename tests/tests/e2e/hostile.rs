//! Hostile peers against a real cluster: a manager, a cellapp and a
//! baseapp, each its own process (this test binary run again as one role,
//! see [`child`]), attacked over real QUIC by an intruder that speaks the
//! app protocol by hand ([`tessera_tests::intruder`]). Every attack fails,
//! and the player already in the world notices none of them:
//!
//! - without a certificate from the cluster CA (none, or another CA's), no
//!   handshake completes on any internal port;
//! - with one, a link claiming another app's id (or the manager's) is
//!   closed, and a `Rejoin` naming a live member is refused with the
//!   member left alone;
//! - a member (the intruder joined as a baseapp) may not send what only
//!   the manager says (a layout, a retirement), may not touch an entity it
//!   is not the base of, may not call a method not exposed on its own
//!   entity's behalf, and a malformed layout closes its link without a
//!   panic.

use serde::Serialize;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;
use tessera::layout::{CellId, Layout, Node, Rect};
use tessera::net::ca;
use tessera::proto::app::{AppMsg, CellState, EntityMsg, Registration, Rejoin, Role};
use tessera::proto::close;
use tessera::{AppId, EntityId, Value};
use tessera_tests::intruder::{Ended, Intruder, Peer};
use tessera_tests::{http, logs};

use crate::wait_closed;

/// The environment variable that makes [`child`] a server process.
const ROLE: &str = "TESSERA_HOSTILE_ROLE";
const DATA: &str = "TESSERA_HOSTILE_DATA";
const MANAGER: &str = "TESSERA_HOSTILE_MANAGER";

/// Not a test: the server processes of [`every_attack_fails`], started as
/// this binary with [`ROLE`] set. Serves until standard input closes.
#[test]
#[ignore = "a server process of the hostile tests"]
fn child() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let data = PathBuf::from(std::env::var(DATA).expect("data directory"));
    let manager = std::env::var(MANAGER)
        .ok()
        .map(|a| a.parse().expect("address"));
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(serve(&role, &data, manager));
}

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

async fn serve(role: &str, data: &Path, manager: Option<SocketAddr>) {
    // Four processes and a test share two cores.
    tessera::net::set_link_idle_timeout(Duration::from_secs(5));
    let defs = Arc::new(tessera_demo::definitions());
    let manager_addr = || manager.expect("the manager's address");
    let stop: std::pin::Pin<Box<dyn std::future::Future<Output = ()>>> = match role {
        "manager" => {
            let h = tessera_manager::driver::start(tessera_manager::driver::Options {
                bind_internal: loopback(),
                bind_login: loopback(),
                bind_admin: loopback(),
                data_dir: data.to_path_buf(),
                database: tessera::storage::Location::in_data_dir(data),
                public_cert: tessera::net::PublicCert::Generated,
                defs,
                space: tessera::proto::app::SpaceInfo {
                    bounds: [0.0, 0.0, 200.0, 200.0],
                    tick_hz: 10,
                },
                hash_cost: tessera::storage::HashCost {
                    memory_kib: 256,
                    iterations: 1,
                    parallelism: 1,
                },
                policy: "static".into(),
                policies: tessera_manager::balance::built_in(),
                rejoin_window: Duration::ZERO,
                logins_per_addr: 1000,
                conn_rate_per_addr: 0.0,
                login_limits: tessera_manager::cluster::throttle::LoginLimits::one_address(),
                admin_hosts: Vec::new(),
                heartbeat_timeout: Duration::from_secs(20),
                balance_floor: tessera_manager::cluster::DEFAULT_BALANCE_FLOOR,
                record: None,
            })
            .await
            .expect("manager starts");
            println!(
                "HOSTILE internal={} login={} admin={}",
                h.internal_addr, h.login_addr, h.admin_addr
            );
            Box::pin(h.stop())
        }
        "cellapp" => {
            let game = tessera_demo::game();
            let opts = tessera_tests::cellapp_options(&game, manager_addr(), data, 5, 3);
            let h = tessera_cellapp::driver::start(opts)
                .await
                .expect("cellapp starts");
            println!("HOSTILE app={}", h.app.0);
            Box::pin(h.stop())
        }
        "baseapp" => {
            let h = tessera_baseapp::driver::start(tessera_baseapp::driver::Options {
                manager: manager_addr(),
                bind_internal: loopback(),
                bind_public: loopback(),
                advertise_internal: None,
                advertise_public: None,
                data_dir: data.to_path_buf(),
                database: tessera::storage::Location::in_data_dir(data),
                public_cert: tessera::net::PublicCert::Generated,
                defs,
                config: tessera_tests::base_config(&tessera_demo::game()),
                admin: Some(loopback()),
                clients_per_addr: 1000,
                conn_rate_per_addr: 0.0,
            })
            .await
            .expect("baseapp starts");
            println!("HOSTILE app={}", h.app.0);
            Box::pin(h.stop())
        }
        other => panic!("no role {other}"),
    };
    use tokio::io::AsyncReadExt;
    let mut stdin = tokio::io::stdin();
    let mut buf = [0u8; 64];
    while let Ok(n) = stdin.read(&mut buf).await {
        if n == 0 {
            break;
        }
    }
    stop.await;
}

/// A server process; killed when dropped.
struct Server {
    child: Child,
    /// What it printed when it came up.
    line: String,
}

impl Server {
    fn start(role: &str, data: &Path, manager: Option<SocketAddr>) -> Server {
        let mut cmd = Command::new(std::env::current_exe().expect("this binary"));
        cmd.args(["hostile::child", "--exact", "--ignored", "--nocapture"])
            .env(ROLE, role)
            .env(DATA, data)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if let Some(m) = manager {
            cmd.env(MANAGER, m.to_string());
        }
        let mut child = cmd.spawn().expect("spawn a server process");
        let out = child.stdout.take().expect("stdout");
        let line = BufReader::new(out)
            .lines()
            .map_while(Result::ok)
            .find(|l| l.starts_with("HOSTILE "))
            .unwrap_or_else(|| panic!("the {role} never came up"));
        Server { child, line }
    }

    fn get(&self, key: &str) -> String {
        self.line
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("{key} in {:?}", self.line))
            .to_string()
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Each app's internal and admin addresses, from the manager's API.
async fn apps(admin: SocketAddr) -> Vec<(u32, String, SocketAddr, Option<SocketAddr>)> {
    let answer = http(admin, "GET", "/api/cluster", "").await;
    let json: serde_json::Value = serde_json::from_str(&answer.body).expect("cluster JSON");
    json["apps"]
        .as_array()
        .expect("apps")
        .iter()
        .map(|a| {
            (
                a["id"].as_u64().expect("id") as u32,
                a["role"].as_str().expect("role").to_string(),
                a["internal_addr"]
                    .as_str()
                    .expect("addr")
                    .parse()
                    .expect("addr"),
                a["admin_addr"].as_str().and_then(|s| s.parse().ok()),
            )
        })
        .collect()
}

/// The sum of a metric's samples on an app's `/metrics`, whose labels
/// include `label` if given.
async fn metric(admin: SocketAddr, name: &str, label: Option<&str>) -> f64 {
    let body = http(admin, "GET", "/metrics", "").await.body;
    body.lines()
        .filter(|l| l.starts_with(name) && label.is_none_or(|x| l.contains(x)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Waits until `metric` reaches `at_least` (counters are copied into the
/// registry once a second).
async fn metric_reaches(admin: SocketAddr, name: &str, label: Option<&str>, at_least: f64) -> f64 {
    let mut last = 0.0;
    for _ in 0..40 {
        last = metric(admin, name, label).await;
        if last >= at_least {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    last
}

/// A layout encoded as `Layout` encodes, with whatever tree it is given.
#[derive(Serialize)]
struct RawLayout {
    bounds: Rect,
    epoch: u64,
    nodes: Vec<Node>,
    root: u32,
    next_cell: u32,
    next_line: u32,
}

fn registration(role: Role, addr: SocketAddr) -> Registration {
    Registration {
        role,
        protocol: tessera::proto::PROTOCOL_MAJOR,
        defs_digest: tessera_demo::definitions().digest,
        internal_addr: addr,
        public_addr: (role == Role::Baseapp).then_some(addr),
        admin_addr: None,
    }
}

fn open(app: AppId) -> AppMsg {
    AppMsg::LinkOpen {
        app,
        defs_digest: tessera_demo::definitions().digest,
        recv_next: 0,
    }
}

/// Dials `addr` and sends `first`; returns how the connection ends (a
/// refused handshake fails it; a refusal after one closes it).
async fn attempt(intruder: &Intruder, addr: SocketAddr, first: &AppMsg) -> (Ended, Option<AppMsg>) {
    let Ok(mut peer) = intruder.dial(addr).await else {
        return (Ended::Failed("dial failed".into()), None);
    };
    peer.send(first).await;
    let answer = peer.recv(Duration::from_secs(3)).await;
    (peer.ended(Duration::from_secs(5)).await, answer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_attack_fails() {
    logs();
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path();
    ca::init(data).expect("cluster CA");
    let mut manager = Server::start("manager", data, None);
    let internal: SocketAddr = manager.get("internal").parse().expect("addr");
    let login: SocketAddr = manager.get("login").parse().expect("addr");
    let admin: SocketAddr = manager.get("admin").parse().expect("addr");
    let mut cellapp = Server::start("cellapp", data, Some(internal));
    let mut baseapp = Server::start("baseapp", data, Some(internal));
    let cell_id = AppId(cellapp.get("app").parse().expect("id"));
    let base_id = AppId(baseapp.get("app").parse().expect("id"));
    // The manager publishes its view twice a second.
    let mut listed = Vec::new();
    for _ in 0..40 {
        listed = apps(admin).await;
        if [cell_id, base_id]
            .iter()
            .all(|id| listed.iter().any(|a| a.0 == id.0))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let addr_of = |id: AppId| {
        listed
            .iter()
            .find(|a| a.0 == id.0)
            .map(|a| (a.2, a.3))
            .expect("listed")
    };
    let (cell_addr, cell_admin) = addr_of(cell_id);
    let cell_admin = cell_admin.expect("the cellapp's admin");
    let (base_addr, _) = addr_of(base_id);

    // A player in the world, who must notice nothing.
    let setup = tessera::client::Setup {
        defs: Arc::new(tessera_demo::definitions()),
        trust: tessera::net::load_trusted_cert(&tessera::net::cert_path(data)).expect("cert"),
        server_name: tessera::net::SERVER_NAME.into(),
        max_frame: tessera::frame::DEFAULT_MAX_FRAME,
    };
    let endpoint = tessera::client::endpoint().expect("client endpoint");
    let mut victim = tessera::client::Client::login_and_connect(
        &endpoint,
        &setup,
        login,
        "victim",
        "victim-password",
        true,
    )
    .await
    .expect("the victim logs in");
    let victim_entity = victim.view.me;
    let ca_cert = rustls::pki_types::CertificateDer::from(
        std::fs::read(ca::ca_path(data)).expect("CA certificate"),
    );

    // 1. No certificate, or one from another CA: no handshake completes.
    let foreign = tempfile::tempdir().expect("tempdir");
    ca::init(foreign.path()).expect("another CA");
    let foreign_id = ca::load_identity(foreign.path()).expect("a foreign certificate");
    for (who, intruder) in [
        ("no certificate", Intruder::new(None, &ca_cert)),
        ("another CA's", Intruder::new(Some(&foreign_id), &ca_cert)),
    ] {
        for (port, addr) in [
            ("manager", internal),
            ("cellapp", cell_addr),
            ("baseapp", base_addr),
        ] {
            let first = AppMsg::Register(registration(Role::Baseapp, intruder.addr()));
            let (ended, answer) = attempt(&intruder, addr, &first).await;
            assert!(answer.is_none(), "{who} on the {port}: answered {answer:?}");
            assert!(
                matches!(ended, Ended::Failed(_)),
                "{who} on the {port}: the handshake was not refused: {ended:?}"
            );
        }
    }

    // 2. A certificate from the cluster CA, claiming another app's id or
    //    the manager's: closed.
    let mine = ca::load_identity(data).expect("a certificate from the cluster CA");
    let intruder = Intruder::new(Some(&mine), &ca_cert);
    for claimed in [base_id, tessera::MANAGER] {
        let (ended, answer) = attempt(&intruder, cell_addr, &open(claimed)).await;
        assert!(answer.is_none(), "claiming {claimed}: answered {answer:?}");
        assert!(
            matches!(&ended, Ended::Closed(code, _) if *code == close::REFUSED),
            "claiming {claimed}: {ended:?}"
        );
    }
    assert!(metric_reaches(cell_admin, "tessera_link_impostors_total", None, 1.0).await >= 1.0);

    // 3. A Rejoin naming a live member: refused, and the member stays.
    let rejoin = AppMsg::Rejoin(Box::new(Rejoin {
        app: cell_id,
        registration: registration(Role::Cellapp, intruder.addr()),
        layout: None,
        ids_end: 0,
        members: Vec::new(),
        dead: Vec::new(),
        retiring: false,
    }));
    let (_, answer) = attempt(&intruder, internal, &rejoin).await;
    assert!(
        matches!(&answer, Some(AppMsg::RegisterRefused { reason }) if reason.contains("another certificate")),
        "{answer:?}"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        apps(admin).await.iter().any(|a| a.0 == cell_id.0),
        "the member named was dropped"
    );

    // 4. Joined as a baseapp (the certificate lets it), the intruder is a
    //    member: what it may not say is still refused.
    let mut to_manager = intruder.dial(internal).await.expect("dial the manager");
    to_manager
        .send(&AppMsg::Register(registration(
            Role::Baseapp,
            intruder.addr(),
        )))
        .await;
    let (me, ids) = to_manager
        .recv_until(Duration::from_secs(5), |m| match m {
            AppMsg::Registered { app, ids, .. } => Some((app, ids)),
            _ => None,
        })
        .await
        .expect("registered");
    // Heartbeats keep it a member while the rest goes on.
    let beats = tokio::spawn(async move {
        loop {
            if !to_manager
                .send(&AppMsg::Heartbeat(Default::default()))
                .await
            {
                return;
            }
            let _ = to_manager.recv(Duration::from_millis(500)).await;
        }
    });
    let mut link = linked(&intruder, cell_addr, me).await;
    let refused_before = metric(cell_admin, "tessera_link_refused_total", None).await;
    let bounds = Rect::new(0.0, 0.0, 200.0, 200.0);
    link.send(&AppMsg::Layout {
        layout: Layout::single(bounds, me),
        cells: Vec::new(),
    })
    .await;
    link.send(&AppMsg::Retired).await;
    assert!(
        metric_reaches(
            cell_admin,
            "tessera_link_refused_total",
            None,
            refused_before + 2.0
        )
        .await
            >= refused_before + 2.0,
        "a layout and a retirement from a baseapp were not refused"
    );
    let layout = tessera_tests::space_layout(admin).await;
    assert!(
        layout
            .to_string()
            .contains(&format!("\"app\":{}", cell_id.0)),
        "the layout changed: {layout}"
    );

    // Another entity's channel: its base is the real baseapp.
    link.send(&AppMsg::ToEntity {
        entity: victim_entity,
        seq: 0,
        msg: EntityMsg::Destroy,
    })
    .await;
    let not_its_base = Some("reason=\"not_its_base\"");
    assert!(
        metric_reaches(
            cell_admin,
            "tessera_entity_messages_refused_total",
            not_its_base,
            1.0
        )
        .await
            >= 1.0,
        "a forged ToEntity was not refused"
    );

    // Its own entity, with a method no client may call.
    let defs = tessera_demo::definitions();
    let avatar = defs.by_name("Avatar").expect("Avatar");
    let mine_entity = EntityId(ids.next);
    link.send(&AppMsg::CreateEntity {
        entity: mine_entity,
        type_id: avatar.id,
        state: CellState {
            pos: [100.0, 0.0, 100.0],
            yaw: 0.0,
            props: Vec::new(),
        },
        version: 0,
    })
    .await;
    let set_health = avatar.method("set_health").expect("set_health").index;
    link.send(&AppMsg::ToEntity {
        entity: mine_entity,
        seq: 0,
        msg: EntityMsg::Call {
            method: set_health,
            args: vec![Value::Int(-999)],
        },
    })
    .await;
    let not_exposed = Some("reason=\"not_exposed\"");
    assert!(
        metric_reaches(
            cell_admin,
            "tessera_entity_messages_refused_total",
            not_exposed,
            1.0
        )
        .await
            >= 1.0,
        "a call of a method not exposed was not refused"
    );

    // A malformed layout: the link closes, the cellapp lives.
    let good = RawLayout {
        bounds,
        epoch: 1,
        nodes: vec![Node::Leaf {
            cell: CellId(1),
            app: me,
        }],
        root: 0,
        next_cell: 2,
        next_line: 1,
    };
    assert_eq!(
        tessera::frame::encode_body(&good),
        tessera::frame::encode_body(&Layout::single(bounds, me)),
        "the raw layout encodes as a layout does"
    );
    let whole = tessera::frame::encode_body(&AppMsg::Layout {
        layout: Layout::single(bounds, me),
        cells: Vec::new(),
    });
    let layout_len = tessera::frame::encode_body(&good).len();
    let variant = &whole[..whole.len() - layout_len - 1];
    let bad = RawLayout { root: 7, ..good };
    let mut body = variant.to_vec();
    body.extend(tessera::frame::encode_body(&bad));
    body.push(0); // no cells
    link.send_raw(&tessera::frame::frame_bytes(&body)).await;
    let ended = link.ended(Duration::from_secs(5)).await;
    assert!(
        matches!(&ended, Ended::Closed(code, why) if *code == close::PROTOCOL && why.contains("undecodable")),
        "{ended:?}"
    );
    beats.abort();

    // Nobody was harmed.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(manager.alive() && cellapp.alive() && baseapp.alive());
    assert!(
        wait_closed(&mut victim, 1).await.is_none(),
        "the victim lost its connection"
    );
    let mut reals = 0.0;
    for _ in 0..20 {
        reals = metric(cell_admin, "tessera_reals", None).await;
        if reals == 7.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(
        reals, 7.0,
        "five NPCs, the victim and the intruder's own entity are real"
    );
}

/// A link to the cellapp at `addr` as app `me`, once the cellapp has the
/// manager's list with it (until then it refuses).
async fn linked(intruder: &Intruder, addr: SocketAddr, me: AppId) -> Peer {
    for _ in 0..40 {
        let mut peer = intruder.dial(addr).await.expect("dial the cellapp");
        peer.send(&open(me)).await;
        if let Some(AppMsg::LinkAccept { .. }) = peer.recv(Duration::from_secs(2)).await {
            return peer;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("the cellapp never took the intruder's link");
}
