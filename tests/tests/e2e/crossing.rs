//! Four cellapps, 100 bots walking back and forth across the cut lines for
//! 30 seconds on real QUIC: every bot's walk takes it through the middle of
//! the space, where the lines cross, so each migrates at least once; no bot is
//! disconnected, a numbered call sent every tick comes back exactly once and
//! in order, and in the end every bot's view equals the truth.

use std::collections::BTreeMap;
use std::time::Duration;
use tessera::client::{Client, Event};
use tessera::{EntityId, Value};
use tessera_sim::truth::check_view;
use tessera_tests::{Cluster, ClusterSpec};
use tokio::sync::watch;

const BOTS: usize = 100;
const HYSTERESIS: f32 = 5.0;

struct Outcome {
    client: Client,
    pinged: i64,
    pongs: Vec<i64>,
}

async fn crosser(mut client: Client, mut walking: watch::Receiver<bool>) -> Outcome {
    let start = client.view.my_pos;
    let [x0, z0, x1, z1] = client.view.bounds;
    // Head for the mirror point through the middle of the space, and back.
    let far = [x0 + x1 - start[0], start[1], z0 + z1 - start[2]];
    let mut target = far;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let (mut pinged, mut pongs) = (0i64, Vec::new());
    loop {
        tokio::select! {
            _ = walking.changed() => {
                if !*walking.borrow() {
                    // Stop, then drain until the test collects us.
                    loop {
                        tokio::select! {
                            _ = walking.changed() => return Outcome { client, pinged, pongs },
                            ev = client.next_event() => {
                                if let Event::Called { method, args, .. } = ev.expect("bot stays connected") {
                                    if method == "pong" {
                                        pongs.extend(args.first().and_then(Value::as_int));
                                    }
                                }
                            }
                        }
                    }
                }
            }
            _ = tick.tick() => {
                let [x, y, z] = client.view.my_pos;
                let (dx, dz) = (target[0] - x, target[2] - z);
                let d = (dx * dx + dz * dz).sqrt();
                let step = 0.8;
                let next = if d <= step {
                    target = if target == far { start } else { far };
                    [x, y, z]
                } else {
                    [x + dx / d * step, y, z + dz / d * step]
                };
                client.send_move(next, 0.0).expect("move sent");
                pinged += 1;
                client.call("ping", vec![Value::Int(pinged)]).await.expect("ping sent");
            }
            ev = client.next_event() => {
                if let Event::Called { method, args, .. } = ev.expect("bot stays connected") {
                    if method == "pong" {
                        pongs.extend(args.first().and_then(Value::as_int));
                    }
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bots_cross_cells_and_lose_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = Cluster::start(
        dir.path(),
        ClusterSpec {
            cellapps: 4,
            npcs: 10,
            size: 200.0,
            ..Default::default()
        },
    )
    .await;
    let (walk_tx, walk_rx) = watch::channel(true);
    let mut tasks = Vec::new();
    for i in 0..BOTS {
        let client = cluster
            .login(&format!("crosser{i}"), "password1", true)
            .await
            .expect("bot logs in");
        tasks.push(tokio::spawn(crosser(client, walk_rx.clone())));
    }
    tokio::time::sleep(Duration::from_secs(30)).await;
    walk_tx.send(false).expect("stop");
    for c in &cluster.cellapps {
        c.freeze(true);
    }
    tokio::time::sleep(Duration::from_millis(2000)).await;
    walk_tx.send(true).expect("collect");
    let mut outcomes = Vec::new();
    for t in tasks {
        outcomes.push(t.await.expect("bot task"));
    }
    let mut migrations = 0;
    for c in &cluster.cellapps {
        migrations += c.stats().await.offloads;
    }
    // Each walk passes the middle (at most 141 m away at 8 m/s) within 18 s;
    // the lines stay where they are (the cellapps are under the balancer's
    // load floor).
    assert!(
        migrations >= BOTS as u64,
        "only {migrations} migrations for {BOTS} bots"
    );
    let truth = cluster.reals_once(4 * 10 + BOTS).await;
    let by_id: BTreeMap<EntityId, _> = truth.iter().map(|(id, s)| (*id, s)).collect();
    for o in &outcomes {
        let expected: Vec<i64> = (1..=o.pinged).collect();
        assert_eq!(
            o.pongs, expected,
            "pings of {} came back wrong",
            o.client.view.me
        );
        check_view(&o.client.view, &by_id, &cluster.setup.defs, HYSTERESIS)
            .unwrap_or_else(|e| panic!("{e}"));
    }
    eprintln!("{migrations} migrations");
    cluster.stop().await;
}
