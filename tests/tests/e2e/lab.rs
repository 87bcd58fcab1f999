//! A balancing policy from a crate outside the manager — `examples/lab`'s
//! `nudge`, registered on its game — runs in a live world. Two cellapps
//! over real QUIC with measured load and NPCs spread evenly; under
//! `static`, a line moved by hand puts three quarters of the space, and of
//! the NPCs, on one cellapp. Switched to `nudge` through the admin API, the
//! manager moves the line back toward the middle.

use std::time::{Duration, Instant};
use tessera_tests::{admin, space_layout, Cluster, ClusterSpec};

const SIZE: f32 = 1_000.0;

/// The layout's epoch and its one line: (id, position).
async fn line(cluster: &Cluster) -> (u64, u64, f64) {
    let v = space_layout(cluster.manager.admin_addr).await;
    let line = &v["lines"][0];
    (
        v["epoch"].as_u64().unwrap_or(0),
        line["line"].as_u64().expect("a line id"),
        line["pos"].as_f64().expect("a line position"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_from_another_crate_balances_a_live_world() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cluster = Cluster::start(
        dir.path(),
        ClusterSpec {
            cellapps: 2,
            npcs: 1_500,
            size: SIZE,
            policy: "static",
            balance_floor: 0.0,
            game: tessera_lab::game(),
            ..ClusterSpec::default()
        },
    )
    .await;
    let (_, id, middle) = line(&cluster).await;
    assert_eq!(middle, f64::from(SIZE) / 2.0);

    // Three quarters of the space to one side.
    let answer = admin(
        &cluster.data,
        cluster.manager.admin_addr,
        "POST",
        &format!("/api/spaces/1/lines/{id}"),
        r#"{"pos": 250}"#,
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (epoch0, _, pos0) = line(&cluster).await;
    assert_eq!(pos0, 250.0, "static held the line where it was put");

    // A name the game does not have is refused, naming the lab's policy
    // among those it has.
    let answer = cluster.set_policy("fastest").await;
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert!(answer.body.contains("nudge"), "{}", answer.body);

    let answer = cluster.set_policy("nudge").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let started = Instant::now();
    let mut pos = pos0;
    while started.elapsed() < Duration::from_secs(60) && pos < 400.0 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        pos = line(&cluster).await.2;
        eprintln!(
            "{:>3} s under nudge: the line at {pos:.0} m",
            started.elapsed().as_secs()
        );
    }
    let (epoch1, _, _) = line(&cluster).await;
    assert!(
        (400.0..=600.0).contains(&pos),
        "nudge did not bring the line back toward the middle: {pos:.0} m"
    );
    assert!(epoch1 > epoch0, "the layout never changed");
    cluster.stop().await;
}
