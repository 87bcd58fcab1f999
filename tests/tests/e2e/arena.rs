//! The arena on real processes' cores over loopback QUIC: four cellapps,
//! two baseapps, 200 bots playing it (the arena's own bot behaviour) for
//! 60 s while the test moves the cut lines under them. No bot is
//! disconnected and none is refused; they strike, are struck, loot and
//! join guilds. After a full stop and a restart on the same data, every
//! fighter's gold and guild are what they were, and every guild (a named
//! entity) still lists its members.

use rand::SeedableRng;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tessera::client::{Client, Event};
use tessera::storage::{SqliteStorage, Storage};
use tessera::{Definitions, Value};
use tessera_arena::bots::Brawler;
use tessera_game::bot::{Bot, BotBehavior};
use tessera_tests::{admin, Cluster, ClusterSpec};
use tokio::sync::watch;

const BOTS: usize = 200;
const FIGHT: Duration = Duration::from_secs(60);

/// What one bot saw.
#[derive(Default)]
struct Tally {
    calls_made: u64,
    calls_received: u64,
}

/// Plays the arena until told to stop; an error if the connection is lost.
async fn play(
    mut client: Client,
    n: u64,
    defs: Arc<Definitions>,
    mut stop: watch::Receiver<bool>,
) -> Result<(Client, Tally), String> {
    let mut brawler = Brawler::new(n);
    let mut rng = rand::rngs::StdRng::seed_from_u64(n);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut tally = Tally::default();
    let mut step = 0;
    loop {
        tokio::select! {
            _ = stop.changed() => return Ok((client, tally)),
            _ = tick.tick() => {
                step += 1;
                let mut bot = Bot::new(&client.view, &defs, &mut rng, step);
                brawler.step(&mut bot);
                let asked = bot.finish();
                if let Some([gx, gz]) = asked.walk {
                    let [x, y, z] = client.view.my_pos;
                    let (dx, dz) = (gx - x, gz - z);
                    let d = (dx * dx + dz * dz).sqrt();
                    let reach = 0.6;
                    let (nx, nz) = if d > reach {
                        (x + dx / d * reach, z + dz / d * reach)
                    } else {
                        (gx, gz)
                    };
                    client
                        .send_move([nx, y, nz], dx.atan2(dz))
                        .map_err(|e| format!("bot {n}: {e}"))?;
                }
                for c in asked.calls {
                    client
                        .call(&c.method, c.args)
                        .await
                        .map_err(|e| format!("bot {n}: {e}"))?;
                    tally.calls_made += 1;
                }
            }
            ev = client.next_event() => match ev {
                Ok(Event::Called { .. }) => tally.calls_received += 1,
                Ok(_) => {}
                Err(e) => return Err(format!("bot {n} lost its connection: {e}")),
            },
        }
    }
}

/// A property of the client's own entity, by name.
fn own(client: &Client, defs: &Definitions, name: &str) -> Option<Value> {
    let p = defs.get(client.view.my_type)?.prop(name)?;
    client.view.my_props.get(&p.index).cloned()
}

async fn move_line(cluster: &Cluster, pos: f32) {
    let answer = admin(
        &cluster.data,
        cluster.manager.admin_addr,
        "GET",
        "/api/spaces/1/layout",
        "",
    )
    .await;
    let layout: serde_json::Value = serde_json::from_str(&answer.body).expect("layout JSON");
    let id = layout["lines"][0]["line"].as_u64().expect("a line");
    let answer = admin(
        &cluster.data,
        cluster.manager.admin_addr,
        "POST",
        &format!("/api/spaces/1/lines/{id}"),
        &format!(r#"{{"pos": {pos}}}"#),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
}

fn spec() -> ClusterSpec {
    ClusterSpec {
        game: tessera_arena::game(),
        cellapps: 4,
        baseapps: 2,
        npcs: 40,
        size: 400.0,
        policy: "static",
        ..ClusterSpec::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_arena_fights_across_moving_lines_and_keeps_gold_and_guilds_over_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cluster = Cluster::start(dir.path(), spec()).await;
    let defs = cluster.setup.defs.clone();
    let mut clients = Vec::new();
    for n in 0..BOTS {
        let client = cluster
            .login(&format!("fighter{n}"), "password1", true)
            .await
            .unwrap_or_else(|e| panic!("fighter{n} could not log in: {e}"));
        clients.push(client);
    }
    let (stop_tx, stop) = watch::channel(false);
    let tasks: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(n, c)| tokio::spawn(play(c, n as u64, defs.clone(), stop.clone())))
        .collect();
    // The lines move under the fight.
    for pos in [140.0, 260.0, 200.0] {
        tokio::time::sleep(FIGHT / 4).await;
        move_line(&cluster, pos).await;
    }
    tokio::time::sleep(FIGHT / 4).await;
    let _ = stop_tx.send(true);
    let mut kept = BTreeMap::new();
    let (mut made, mut received) = (0, 0);
    for (n, t) in tasks.into_iter().enumerate() {
        let (client, tally) = t.await.expect("bot task").unwrap_or_else(|e| panic!("{e}"));
        made += tally.calls_made;
        received += tally.calls_received;
        let gold = own(&client, &defs, "gold");
        let guild = own(&client, &defs, "guild");
        kept.insert(n, (gold, guild));
        client.logout().await.expect("logout");
    }
    assert!(made > BOTS as u64, "the bots attacked: {made} calls");
    assert!(
        received > BOTS as u64,
        "strikes were told: {received} calls"
    );
    let looted = kept
        .values()
        .filter(|(g, _)| g.as_ref().and_then(Value::as_int).unwrap_or(0) > 0)
        .count();
    assert!(looted > 0, "someone looted gold");
    assert!(
        kept.values().all(|(_, g)| g
            .as_ref()
            .and_then(Value::as_str)
            .is_some_and(|s| s.starts_with("guild"))),
        "every fighter joined a guild"
    );
    cluster.stop().await;

    // A full restart on the same data: gold and guilds are as they were.
    let cluster = Cluster::start(dir.path(), spec()).await;
    for n in (0..BOTS).step_by(10) {
        let client = cluster
            .login(&format!("fighter{n}"), "password1", false)
            .await
            .unwrap_or_else(|e| panic!("fighter{n} could not log in again: {e}"));
        assert_eq!(
            (own(&client, &defs, "gold"), own(&client, &defs, "guild")),
            kept[&n],
            "fighter{n} after the restart"
        );
        client.logout().await.expect("logout");
    }
    cluster.stop().await;

    // And each guild lists its members' accounts.
    let mut db = SqliteStorage::open(&dir.path().join("world.db"), spec().hash_cost)
        .expect("the world's database");
    let guild_type = defs.by_name("Guild").expect("Guild");
    let members = guild_type.prop("members").map_or(0, |p| p.index as usize);
    for g in 0..5 {
        let name = format!("guild{g}");
        let id = db
            .find_named("Guild", &name)
            .expect("storage")
            .unwrap_or_else(|| panic!("{name} was saved"));
        let row = db
            .load_entity(id)
            .expect("storage")
            .expect("the guild's row");
        let saved = tessera_baseapp::persist::decode(guild_type, row.format_version, &row.data)
            .expect("the guild decodes");
        let listed = saved.props[members].as_list().map_or(0, <[Value]>::len);
        let joined = kept
            .values()
            .filter(|(_, guild)| guild.as_ref().and_then(Value::as_str) == Some(&name))
            .count();
        assert_eq!(listed, joined, "{name}'s members");
    }
}
