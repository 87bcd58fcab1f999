//! End-to-end tests: whole clusters over real QUIC on loopback with a real
//! SQLite file. One test binary, so the workspace links it once.

mod admin;
mod aoi;
mod bad_clients;
mod balancing;
mod bounds;
mod crossing;
mod hostile;
mod lab;
mod logins;
mod machines;
mod metrics;
mod persistence;
mod report;
mod view;
mod viz;

use std::time::Duration;
use tessera::client::{Client, ClientError, Event};

/// Reads events until `pred` accepts one, or fails after `secs`.
pub async fn wait_for(
    client: &mut Client,
    secs: u64,
    mut pred: impl FnMut(&Client, &Event) -> bool,
) -> Result<Event, String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        match tokio::time::timeout_at(deadline, client.next_event()).await {
            Err(_) => return Err("timed out waiting for an event".into()),
            Ok(Err(e)) => return Err(format!("connection ended: {e}")),
            Ok(Ok(ev)) => {
                if pred(client, &ev) {
                    return Ok(ev);
                }
            }
        }
    }
}

/// Reads events until the connection ends; returns why.
pub async fn wait_closed(client: &mut Client, secs: u64) -> Option<ClientError> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        match tokio::time::timeout_at(deadline, client.next_event()).await {
            Err(_) => return None,
            Ok(Err(e)) => return Some(e),
            Ok(Ok(_)) => {}
        }
    }
}

/// Moves a client in small steps (within its speed limit) to `to`, reading
/// events meanwhile.
pub async fn walk_to(client: &mut Client, to: [f32; 3]) {
    let step = 0.8; // metres per 100 ms: 8 m/s, under the Avatar's 12 m/s
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        let [x, y, z] = client.view.my_pos;
        let (dx, dz) = (to[0] - x, to[2] - z);
        let d = (dx * dx + dz * dz).sqrt();
        let next = if d <= step {
            [to[0], y, to[2]]
        } else {
            [x + dx / d * step, y, z + dz / d * step]
        };
        client.send_move(next, 0.0).expect("move sent");
        if d <= step {
            break;
        }
        loop {
            tokio::select! {
                _ = tick.tick() => break,
                ev = client.next_event() => { ev.expect("connected while walking"); }
            }
        }
    }
    // Let the last move land.
    let settle = tokio::time::sleep(Duration::from_millis(300));
    tokio::pin!(settle);
    loop {
        tokio::select! {
            _ = &mut settle => break,
            ev = client.next_event() => { ev.expect("connected while settling"); }
        }
    }
}
