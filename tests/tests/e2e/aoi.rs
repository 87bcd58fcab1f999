//! 50 bots among 200 NPCs move about; then everything stands still and every
//! bot's view must equal the truth computed from the cell's real positions:
//! every entity within the AoI radius present with its exact position and
//! public properties, nothing beyond the radius plus the leave hysteresis.

use rand::{RngExt, SeedableRng};
use std::collections::BTreeMap;
use std::time::Duration;
use tessera::client::Client;
use tessera::EntityId;
use tessera_sim::truth::check_view;
use tessera_tests::{Cluster, ClusterSpec};
use tokio::sync::watch;

const BOTS: usize = 50;
const HYSTERESIS: f32 = 5.0;

#[derive(Clone, Copy, PartialEq)]
enum Phase {
    Move,
    Still,
    Done,
}

async fn bot(mut client: Client, seed: u64, mut phase: watch::Receiver<Phase>) -> Client {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut heading: f32 = rng.random_range(0.0..std::f32::consts::TAU);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            _ = phase.changed() => {
                if *phase.borrow() == Phase::Done {
                    return client;
                }
            }
            _ = tick.tick() => {
                if *phase.borrow() == Phase::Move {
                    heading += rng.random_range(-0.3..0.3);
                    let [x, y, z] = client.view.my_pos;
                    let [x0, z0, x1, z1] = client.view.bounds;
                    let nx = (x + heading.sin() * 0.8).clamp(x0 + 1.0, x1 - 1.0);
                    let nz = (z + heading.cos() * 0.8).clamp(z0 + 1.0, z1 - 1.0);
                    if nx <= x0 + 1.0 || nx >= x1 - 1.0 || nz <= z0 + 1.0 || nz >= z1 - 1.0 {
                        heading += std::f32::consts::PI;
                    }
                    client.send_move([nx, y, nz], heading).expect("move sent");
                }
            }
            ev = client.next_event() => {
                ev.expect("bot stays connected");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bot_sees_the_truth() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = Cluster::start(
        dir.path(),
        ClusterSpec {
            npcs: 200,
            size: 400.0,
            ..Default::default()
        },
    )
    .await;
    let (phase_tx, phase_rx) = watch::channel(Phase::Move);
    let mut tasks = Vec::new();
    for i in 0..BOTS {
        let client = cluster
            .login(&format!("viewer{i}"), "password1", true)
            .await
            .expect("bot logs in");
        tasks.push(tokio::spawn(bot(client, i as u64, phase_rx.clone())));
    }
    // Everyone moves: bots by their clients, NPCs by their behaviour.
    tokio::time::sleep(Duration::from_secs(5)).await;
    phase_tx.send(Phase::Still).expect("phase");
    cluster.cellapps[0].freeze(true);
    // Two ticks for the last moves, then a second for rest messages to arrive.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    phase_tx.send(Phase::Done).expect("phase");
    let mut clients = Vec::new();
    for t in tasks {
        clients.push(t.await.expect("bot task"));
    }
    let truth = cluster.cellapps[0].snapshot().await;
    let by_id: BTreeMap<EntityId, _> = truth.iter().map(|s| (s.id, s)).collect();
    assert_eq!(
        truth.len(),
        200 + BOTS,
        "every NPC and bot is real on the cell"
    );
    let defs = &cluster.setup.defs;
    let mut checked = 0;
    for c in &clients {
        checked += check_view(&c.view, &by_id, defs, HYSTERESIS).unwrap_or_else(|e| panic!("{e}"));
    }
    assert!(
        checked > BOTS * 10,
        "the views were not trivially empty ({checked} sightings)"
    );
    cluster.stop().await;
}
