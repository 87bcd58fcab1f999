//! Migration on real QUIC: four cellapps, 200 NPCs, 200 bots walking across
//! the cut lines for 30 seconds, in the demo world's shape (1,000 × 1,000 m)
//! and in a small, crowded one (200 × 200 m) where crossings are frequent.
//! Prints migrations per second, handoff latency (offload sent at the source
//! to real live at the destination) p50/p99, and ghosts per real.
//!
//! Run: `cargo bench -p tessera-tests --bench handoff`.

use std::time::{Duration, Instant};
use tessera::client::Client;
use tessera_tests::{Cluster, ClusterSpec};
use tokio::sync::watch;

const BOTS: usize = 200;
const SECS: u64 = 30;

async fn walk(mut client: Client, mut stop: watch::Receiver<bool>) {
    let start = client.view.my_pos;
    let [x0, z0, x1, z1] = client.view.bounds;
    let far = [x0 + x1 - start[0], start[1], z0 + z1 - start[2]];
    let mut target = far;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tick.tick() => {
                let [x, y, z] = client.view.my_pos;
                let (dx, dz) = (target[0] - x, target[2] - z);
                let d = (dx * dx + dz * dz).sqrt();
                let next = if d <= 0.8 {
                    target = if target == far { start } else { far };
                    [x, y, z]
                } else {
                    [x + dx / d * 0.8, y, z + dz / d * 0.8]
                };
                if client.send_move(next, 0.0).is_err() {
                    return;
                }
            }
            ev = client.next_event() => {
                if ev.is_err() {
                    return;
                }
            }
        }
    }
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    f64::from(sorted[i]) / 1000.0
}

fn main() {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => panic!("runtime: {e}"),
    };
    for size in [1000.0, 200.0] {
        runtime.block_on(run(size));
    }
}

async fn run(size: f32) {
    {
        let dir = match tempfile::tempdir() {
            Ok(d) => d,
            Err(e) => panic!("tempdir: {e}"),
        };
        let cluster = Cluster::start(
            dir.path(),
            ClusterSpec {
                cellapps: 4,
                npcs: 50,
                size,
                ..Default::default()
            },
        )
        .await;
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut tasks = Vec::new();
        for i in 0..BOTS {
            match cluster
                .login(&format!("walker{i}"), "password1", true)
                .await
            {
                Ok(c) => tasks.push(tokio::spawn(walk(c, stop_rx.clone()))),
                Err(e) => panic!("login: {e}"),
            }
        }
        for c in &cluster.cellapps {
            c.take_handoffs().await;
        }
        let before: u64 = {
            let mut n = 0;
            for c in &cluster.cellapps {
                n += c.stats().await.offloads;
            }
            n
        };
        let started = Instant::now();
        tokio::time::sleep(Duration::from_secs(SECS)).await;
        let (mut offloads, mut reals, mut ghosts, mut lat) = (0, 0, 0, Vec::new());
        for c in &cluster.cellapps {
            let s = c.stats().await;
            offloads += s.offloads;
            reals += s.reals;
            ghosts += s.ghosts;
            lat.extend(c.take_handoffs().await);
        }
        let secs = started.elapsed().as_secs_f64();
        let _ = stop_tx.send(true);
        for t in tasks {
            let _ = t.await;
        }
        lat.sort_unstable();
        println!("handoff: {BOTS} bots crossing, 4 cellapps, {size} x {size} m, {secs:.0} s");
        println!(
            "  migrations        {} ({:.1}/s over the world, {:.1}/s per cellapp)",
            offloads - before,
            (offloads - before) as f64 / secs,
            (offloads - before) as f64 / secs / 4.0
        );
        println!(
            "  handoff latency   p50 {:.2} ms, p99 {:.2} ms ({} samples)",
            percentile(&lat, 0.5),
            percentile(&lat, 0.99),
            lat.len()
        );
        println!(
            "  ghosts per real   {:.3} ({ghosts} ghosts, {reals} reals)",
            ghosts as f64 / reals.max(1) as f64
        );
        cluster.stop().await;
    }
}
