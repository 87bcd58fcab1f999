//! What a peer costs before it is trusted: announcing huge frames reserves
//! nothing (a frame's buffer grows as its bytes arrive), and a client that
//! finishes its stream is closed with a reason instead of being kept
//! alive by keep-alives.

use std::net::SocketAddr;
use std::time::Duration;
use tessera::frame;
use tessera::link::MAX_APP_FRAME;
use tessera::net::ca;
use tessera::proto::client::{ClientMsg, ServerMsg};
use tessera::proto::{close, ALPN_CLIENT, PROTOCOL_MAJOR};
use tessera_tests::intruder::{Ended, Intruder};
use tessera_tests::{http, logs, Cluster, ClusterSpec};

/// This process's resident set, in bytes (from `/proc/self/status`).
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS");
    kib * 1024
}

/// Why the server closed a connection, as it said.
fn reason(e: &quinn::ConnectionError) -> String {
    match e {
        quinn::ConnectionError::ApplicationClosed(c) => {
            String::from_utf8_lossy(&c.reason).into_owned()
        }
        other => format!("not closed by the server on purpose: {other}"),
    }
}

/// The baseapp's internal address, from the manager's API.
async fn baseapp_internal(cluster: &Cluster) -> SocketAddr {
    // The view is published twice a second.
    for _ in 0..40 {
        let answer = http(cluster.manager.admin_addr, "GET", "/api/cluster", "").await;
        let json: serde_json::Value = serde_json::from_str(&answer.body).expect("cluster JSON");
        let found = json["apps"].as_array().and_then(|apps| {
            apps.iter()
                .find(|a| a["role"] == "baseapp")
                .and_then(|a| a["internal_addr"].as_str()?.parse().ok())
        });
        if let Some(addr) = found {
            return addr;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("the manager never listed the baseapp");
}

/// Set in the process [`announcing_huge_frames_reserves_nothing`] starts.
const ALONE: &str = "TESSERA_RSS_ALONE";

/// Other tests of this binary run beside each other and would count in
/// this process's RSS: the measurement runs alone, in a process of its own
/// ([`rss_alone`]).
#[test]
fn announcing_huge_frames_reserves_nothing() {
    let out = std::process::Command::new(std::env::current_exe().expect("this binary"))
        .args(["bounds::rss_alone", "--exact", "--ignored", "--nocapture"])
        .env(ALONE, "1")
        .output()
        .expect("run the measurement");
    let text = String::from_utf8_lossy(&out.stderr);
    for line in text.lines().filter(|l| l.contains("RSS")) {
        eprintln!("{line}");
    }
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("RSS grew"),
        "the measurement did not run: {text}"
    );
}

/// Not a test alone: the measurement of
/// [`announcing_huge_frames_reserves_nothing`], in its own process.
#[test]
#[ignore = "run in its own process by announcing_huge_frames_reserves_nothing"]
fn rss_alone() {
    if std::env::var(ALONE).is_err() {
        return;
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(announce_huge_frames());
}

async fn announce_huge_frames() {
    logs();
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = Cluster::start(dir.path(), ClusterSpec::default()).await;
    let internal = baseapp_internal(&cluster).await;
    // Peers with a cluster certificate, so their connections get as far as
    // a first frame on the internal port; and strangers on the client port.
    let identity = ca::load_identity(dir.path()).expect("a cluster certificate");
    let ca_cert = identity.ca.clone();
    let intruder = Intruder::new(Some(&identity), &ca_cert);
    let before = rss();
    let mut held = Vec::new();

    for _ in 0..12 {
        let mut peer = intruder.dial(internal).await.expect("dial the baseapp");
        let mut announce = (MAX_APP_FRAME as u32).to_le_bytes().to_vec();
        announce.extend(vec![0u8; 4096]);
        assert!(peer.send_raw(&announce).await, "sent");
        held.push(peer);
    }
    let endpoint = tessera::client::endpoint().expect("client endpoint");
    let cfg = tessera::net::client_config(&cluster.setup.trust, ALPN_CLIENT).expect("config");
    let mut clients = Vec::new();
    for b in &cluster.baseapps {
        for _ in 0..4 {
            let conn = tessera::net::connect(&endpoint, cfg.clone(), b.public_addr)
                .await
                .expect("connect");
            let (mut send, recv) = conn.open_bi().await.expect("stream");
            send.write_all(&(16u32 << 20).to_le_bytes())
                .await
                .expect("announce");
            send.write_all(&[0u8; 4096]).await.expect("some of it");
            clients.push((conn, send, recv));
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let grown = rss().saturating_sub(before);
    eprintln!(
        "{} connections announcing 16 MiB frames: RSS grew {} KiB",
        held.len() + clients.len(),
        grown / 1024
    );
    assert!(grown < 16 << 20, "RSS grew by {} MiB", grown >> 20);
    // The client port refused the announcement outright.
    for (conn, ..) in &clients {
        let why = tokio::time::timeout(Duration::from_secs(5), conn.closed())
            .await
            .expect("closed");
        assert!(reason(&why).contains("exceeds the limit"), "{why}");
    }
    // The internal port still waits for the rest (the sender holds a
    // cluster certificate), up to the first-message deadline.
    for peer in &held {
        assert!(matches!(
            peer.ended(Duration::from_millis(10)).await,
            Ended::Open
        ));
    }
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_finishes_its_stream_is_closed() {
    logs();
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = Cluster::start(dir.path(), ClusterSpec::default()).await;
    let endpoint = tessera::client::endpoint().expect("client endpoint");
    let cfg = tessera::net::client_config(&cluster.setup.trust, ALPN_CLIENT).expect("config");
    let public = cluster.baseapps[0].public_addr;

    // Before its hello.
    let conn = tessera::net::connect(&endpoint, cfg.clone(), public)
        .await
        .expect("connect");
    let (mut send, _recv) = conn.open_bi().await.expect("stream");
    send.write_all(&[]).await.expect("open the stream");
    send.finish().expect("finish");
    let why = tokio::time::timeout(Duration::from_secs(10), conn.closed())
        .await
        .expect("closed within the hello timeout");
    assert!(reason(&why).contains("before the hello"), "{why}");

    // After it, playing.
    let (baseapp, ticket) = tessera::client::login(
        &endpoint,
        &cluster.setup,
        cluster.manager.login_addr,
        "quitter",
        "quitter-password",
        true,
    )
    .await
    .expect("login");
    let conn = tessera::net::connect(&endpoint, cfg, baseapp)
        .await
        .expect("connect");
    let (mut send, mut recv) = conn.open_bi().await.expect("stream");
    let hello = ClientMsg::Hello {
        protocol: PROTOCOL_MAJOR,
        defs_digest: cluster.setup.defs.digest,
        ticket,
    };
    send.write_all(&frame::encode(&hello)).await.expect("hello");
    let mut buf = Vec::new();
    let welcome = frame::read_msg::<ServerMsg>(&mut recv, 1 << 20, &mut buf)
        .await
        .expect("a frame");
    assert!(
        matches!(welcome, Some(ServerMsg::Welcome { .. })),
        "{welcome:?}"
    );
    send.finish().expect("finish");
    let why = tokio::time::timeout(Duration::from_secs(5), conn.closed())
        .await
        .expect("closed at once, not kept by keep-alives");
    match why {
        quinn::ConnectionError::ApplicationClosed(c) => {
            assert_eq!(c.error_code, close::DONE.into());
            assert_eq!(&c.reason[..], b"stream finished");
        }
        other => panic!("closed by {other}"),
    }
    cluster.stop().await;
}
