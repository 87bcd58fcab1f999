//! A flood of wrong-password logins from one address is stopped before any
//! password is hashed — most of its connections turned away at the port,
//! the rest answered by the login limits — and a player logging in from
//! another address meanwhile gets in.
//!
//! Run with `TESSERA_LOGIN_BENCH=1` (release), it hashes at argon2's real
//! cost and prints the legitimate login's latency against idle: the
//! numbers in docs/benchmarks.md.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tessera::client::{Client, ClientError};
use tessera::proto::login::RefuseReason;
use tessera::storage::HashCost;
use tessera_manager::cluster::throttle::LoginLimits;
use tessera_tests::{logs, Cluster, ClusterSpec};

/// Tasks flooding the login port.
const FLOODERS: usize = 20;

fn endpoint_at(ip: [u8; 4]) -> quinn::Endpoint {
    tessera::net::endpoint(SocketAddr::from((ip, 0)), None).expect("client endpoint")
}

/// Logs `name` in from `endpoint` and connects; returns how long it took.
async fn timed_login(cluster: &Cluster, endpoint: &quinn::Endpoint, name: &str) -> Duration {
    let started = Instant::now();
    let client = Client::login_and_connect(
        endpoint,
        &cluster.setup,
        cluster.manager.login_addr,
        name,
        &format!("{name}-password"),
        false,
    )
    .await
    .unwrap_or_else(|e| panic!("{name} logs in: {e}"));
    let took = started.elapsed();
    client.logout().await.expect("logout");
    took
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_flood_is_limited_and_a_player_gets_in() {
    logs();
    let bench = std::env::var("TESSERA_LOGIN_BENCH").is_ok();
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = Cluster::start(
        dir.path(),
        ClusterSpec {
            login_limits: LoginLimits::default(),
            conn_rate_per_addr: tessera::net::gate::DEFAULT_RATE_PER_ADDR,
            hash_cost: if bench {
                HashCost::default()
            } else {
                ClusterSpec::default().hash_cost
            },
            ..Default::default()
        },
    )
    .await;
    let player = endpoint_at([127, 0, 0, 2]);
    // The accounts, made before the flood.
    for name in ["player", "victim"] {
        let c = Client::login_and_connect(
            &player,
            &cluster.setup,
            cluster.manager.login_addr,
            name,
            &format!("{name}-password"),
            true,
        )
        .await
        .expect("account made");
        c.logout().await.expect("logout");
    }
    let mut idle = Vec::new();
    for _ in 0..5 {
        idle.push(timed_login(&cluster, &player, "player").await);
        // Within the player's own rate.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // Twenty tasks guess the victim's password from one address.
    let stop = Arc::new(AtomicBool::new(false));
    let limited = Arc::new(AtomicU64::new(0));
    let wrong = Arc::new(AtomicU64::new(0));
    let turned_away = Arc::new(AtomicU64::new(0));
    let flood = endpoint_at([127, 0, 0, 1]);
    let mut tasks = Vec::new();
    for _ in 0..FLOODERS {
        let (stop, limited, wrong, flood) =
            (stop.clone(), limited.clone(), wrong.clone(), flood.clone());
        let turned_away = turned_away.clone();
        let (setup, login) = (cluster.setup.clone(), cluster.manager.login_addr);
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let got = tessera::client::login(
                    &flood,
                    &setup,
                    login,
                    "victim",
                    "guess-password",
                    false,
                )
                .await;
                match got {
                    Err(ClientError::LoginRefused {
                        reason: RefuseReason::RateLimited,
                        ..
                    }) => limited.fetch_add(1, Ordering::Relaxed),
                    Err(ClientError::LoginRefused {
                        reason: RefuseReason::BadCredentials,
                        ..
                    }) => wrong.fetch_add(1, Ordering::Relaxed),
                    // Refused at the port, before any handshake: too many
                    // new connections from this address.
                    Err(ClientError::Net(_)) => turned_away.fetch_add(1, Ordering::Relaxed),
                    other => panic!("a wrong password got {other:?}"),
                };
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut flooded = Vec::new();
    for _ in 0..5 {
        flooded.push(timed_login(&cluster, &player, "player").await);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("flooder");
    }
    let (limited, wrong, turned_away) = (
        limited.load(Ordering::Relaxed),
        wrong.load(Ordering::Relaxed),
        turned_away.load(Ordering::Relaxed),
    );
    eprintln!(
        "login latency (median of 5): idle {:?}, under a flood from {FLOODERS} tasks {:?}; flood: {turned_away} connections turned away at the port, {limited} answered rate-limited, {wrong} checked and wrong (hash cost {})",
        median(idle),
        median(flooded),
        if bench { "argon2 default" } else { "test" }
    );
    assert!(
        limited + turned_away > 0,
        "the flood was never rate limited"
    );
    assert!(
        limited + turned_away > wrong,
        "most of the flood must be stopped before hashing: {turned_away} turned away, {limited} limited, {wrong} hashed"
    );
    cluster.stop().await;
}
