//! Every role serves `/metrics` in the Prometheus text format: a real
//! parser reads each scrape, every metric `docs/operations.md` lists is
//! served by the roles it names, and the numbers follow the world: reals
//! counted, migrations counted after bots cross a line, clients and logins
//! counted, a save written. The manager's layout API carries the same
//! per-cell numbers. No NPCs: every migration is a bot crossing the line.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;
use tessera_tests::{http, space_layout, Cluster, ClusterSpec};

use crate::walk_to;

const NPCS: usize = 0;
const BOTS: usize = 4;

/// One scrape, parsed.
struct Scrape {
    role: &'static str,
    inner: prometheus_parse::Scrape,
}

impl Scrape {
    async fn of(addr: SocketAddr, role: &'static str) -> Scrape {
        let answer = http(addr, "GET", "/metrics", "").await;
        assert_eq!(answer.status, 200, "{role}: {}", answer.body);
        let kind = answer.content_type.unwrap_or_default();
        assert!(kind.contains("text/plain; version=0.0.4"), "{role}: {kind}");
        let lines = answer.body.lines().map(|l| Ok(l.to_string()));
        let inner = prometheus_parse::Scrape::parse(lines).expect("Prometheus text format");
        for s in &inner.samples {
            assert_eq!(s.labels.get("role"), Some(role), "{}", s.metric);
            assert!(
                s.labels.get("app").is_some(),
                "{} has no app label",
                s.metric
            );
        }
        Scrape { role, inner }
    }

    /// The sum of a counter's or gauge's samples whose labels include `with`.
    fn sum(&self, metric: &str, with: &[(&str, &str)]) -> f64 {
        self.inner
            .samples
            .iter()
            .filter(|s| s.metric == metric)
            .filter(|s| with.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => 0.0,
            })
            .sum()
    }

    fn has(&self, metric: &str) -> bool {
        self.inner.docs.contains_key(metric)
    }
}

/// The metrics table of `docs/operations.md`: name → roles.
fn documented() -> BTreeMap<String, Vec<String>> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/operations.md");
    let text = std::fs::read_to_string(path).expect("docs/operations.md");
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let cols: Vec<&str> = line.split('|').map(str::trim).collect();
        // | `name` | type | roles | meaning |
        if cols.len() >= 5 && cols[1].starts_with("`tessera_") {
            let name = cols[1].trim_matches('`').to_string();
            let roles = cols[3].split(',').map(|r| r.trim().to_string()).collect();
            out.insert(name, roles);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_role_serves_documented_metrics_that_follow_the_world() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = Cluster::start(
        dir.path(),
        ClusterSpec {
            cellapps: 2,
            npcs: NPCS,
            size: 200.0,
            // Lines held, so each cell's density grid stays on its rectangle.
            policy: "static",
            ..Default::default()
        },
    )
    .await;
    let admin = cluster.manager.admin_addr;
    let mut bots = Vec::new();
    for i in 0..BOTS {
        bots.push(
            cluster
                .login(&format!("metered{i}"), "password1", true)
                .await
                .expect("login"),
        );
    }
    // Where the line between the two cells is.
    let l = space_layout(admin).await;
    let line = &l["lines"][0];
    let pos = line["pos"].as_f64().expect("line pos") as f32;
    let along_x = line["axis"] == "X";
    let before = {
        let mut m = 0.0;
        for c in &cluster.cellapps {
            let addr = c.admin_addr.expect("cellapp admin");
            m += Scrape::of(addr, "cellapp")
                .await
                .sum("tessera_migrations_total", &[("direction", "out")]);
        }
        m
    };
    // Every bot walks to the far side of the line from where it is.
    for bot in &mut bots {
        let [x, y, z] = bot.view.my_pos;
        let here = if along_x { x } else { z };
        let there = if here < pos { pos + 30.0 } else { pos - 30.0 };
        let to = if along_x {
            [there, y, z]
        } else {
            [x, y, there]
        };
        walk_to(bot, to).await;
    }

    // The numbers follow, within a few reports (a hang guard, not a timing).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let manager = Scrape::of(admin, "manager").await;
        let mut cells = Vec::new();
        for c in &cluster.cellapps {
            cells.push(Scrape::of(c.admin_addr.expect("cellapp admin"), "cellapp").await);
        }
        let base = Scrape::of(
            cluster.baseapps[0].admin_addr.expect("baseapp admin"),
            "baseapp",
        )
        .await;
        let reals: f64 = cells.iter().map(|s| s.sum("tessera_reals", &[])).sum();
        let migrated: f64 = cells
            .iter()
            .map(|s| s.sum("tessera_migrations_total", &[("direction", "out")]))
            .sum::<f64>()
            - before;
        let ok = reals == (2 * NPCS + BOTS) as f64
            && migrated >= BOTS as f64
            && base.sum("tessera_clients_connected", &[]) == BOTS as f64
            && manager.sum("tessera_logins_total", &[("result", "ok")]) >= BOTS as f64
            && manager.sum("tessera_apps", &[("kind", "cellapp")]) == 2.0;
        if ok {
            // Every documented metric is served by every role it names.
            let all = [&manager, &base, &cells[0], &cells[1]];
            for (name, roles) in documented() {
                for s in all.iter().filter(|s| roles.iter().any(|r| r == s.role)) {
                    assert!(s.has(&name), "{} does not serve {name}", s.role);
                }
            }
            assert!(documented().len() >= 20, "the table was not read");
            // Each role's tick histogram and traffic moved.
            for s in all {
                let ticks = s.sum("tessera_tick_seconds_count", &[]);
                assert!(ticks > 0.0, "{}: no ticks counted", s.role);
                assert!(
                    s.sum(
                        "tessera_link_bytes_total",
                        &[("link", "app"), ("direction", "in")]
                    ) > 0.0,
                    "{}: no app link traffic",
                    s.role
                );
            }
            let ghosts: f64 = cells
                .iter()
                .map(|s| s.sum("tessera_ghost_messages_total", &[("direction", "out")]))
                .sum();
            assert!(ghosts > 0.0, "no ghost messages after crossing a line");
            assert!(
                base.sum(
                    "tessera_link_bytes_total",
                    &[("link", "client"), ("direction", "in")]
                ) > 0.0
            );
            assert!(
                manager.sum("tessera_link_messages_total", &[("link", "login")])
                    >= 2.0 * BOTS as f64
            );
            assert!(manager.sum("tessera_layout_epoch", &[]) >= 1.0);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "metrics never caught up: reals {reals}, migrated {migrated}, clients {}, logins {}",
            base.sum("tessera_clients_connected", &[]),
            manager.sum("tessera_logins_total", &[("result", "ok")])
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // The layout API carries the cells' reports: counts that add up, a
    // density grid per cell, and migrations.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let l = space_layout(admin).await;
        let cells = l["cells"].as_array().expect("cells").clone();
        assert_eq!(cells.len(), 2);
        let reals: u64 = cells.iter().filter_map(|c| c["reals"].as_u64()).sum();
        let dense: u64 = cells
            .iter()
            .flat_map(|c| {
                c["density"]["counts"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .filter_map(|n| n.as_u64())
            .sum();
        if reals == (2 * NPCS + BOTS) as u64 && dense == reals {
            for c in &cells {
                assert!(c["load"].as_f64().is_some_and(|v| v >= 0.0), "{c}");
                assert!(
                    c["migrations_in"].is_number() && c["flows"].is_array(),
                    "{c}"
                );
                assert_eq!(c["density"]["nx"], 8, "{c}");
            }
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "layout numbers never added up: {l}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // A logout saves the bot (a periodic save may come first; either is a
    // write): the write counter, the saved entities and the latency
    // histogram move together.
    let base_admin = cluster.baseapps[0].admin_addr.expect("baseapp admin");
    let writes = Scrape::of(base_admin, "baseapp")
        .await
        .sum("tessera_db_writes_total", &[]);
    if let Some(bot) = bots.pop() {
        bot.logout().await.expect("logout");
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let s = Scrape::of(base_admin, "baseapp").await;
        let now = s.sum("tessera_db_writes_total", &[]);
        if now > writes {
            assert!(s.sum("tessera_entities_saved_total", &[]) >= 1.0);
            let timed = s.sum("tessera_db_write_seconds_count", &[]);
            let failed = s.sum("tessera_db_write_failures_total", &[]);
            assert_eq!(timed, now + failed, "every write is timed once");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the logout was never written"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let answer = http(base_admin, "GET", "/healthz", "").await;
    assert!(
        answer.status == 200 && answer.body.trim() == "ok",
        "{answer:?}"
    );
    cluster.stop().await;
}
