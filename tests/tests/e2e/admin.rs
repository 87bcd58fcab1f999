//! The manager's admin HTTP answers `/healthz` and lists the cluster, with
//! client counts that follow logins.

use std::time::Duration;
use tessera_tests::{http, Cluster, ClusterSpec};

/// A GET: the status and the body.
async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let answer = http(addr, "GET", path, "").await;
    (answer.status, answer.body)
}

/// A POST of a JSON body: the status and the body.
async fn post(addr: std::net::SocketAddr, path: &str, body: &str) -> (u16, String) {
    let answer = http(addr, "POST", path, body).await;
    (answer.status, answer.body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_and_cluster() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = Cluster::start(dir.path(), ClusterSpec::default()).await;
    let admin = cluster.manager.admin_addr;
    let (status, body) = get(admin, "/healthz").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body.trim(), "ok");

    let _client = cluster.login("watcher", "pw", true).await.expect("login");
    // The view is republished twice a second; heartbeats come once a second.
    let mut seen = serde_json::Value::Null;
    for _ in 0..40 {
        let (status, body) = get(admin, "/api/cluster").await;
        assert_eq!(status, 200, "{body}");
        seen = serde_json::from_str(&body).expect("JSON");
        if seen["clients"] == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(seen["clients"], 1, "{seen}");
    let apps = seen["apps"].as_array().expect("apps");
    let roles: Vec<&str> = apps.iter().filter_map(|a| a["role"].as_str()).collect();
    assert!(
        roles.contains(&"cellapp") && roles.contains(&"baseapp"),
        "{seen}"
    );
    let baseapp = apps
        .iter()
        .find(|a| a["role"] == "baseapp")
        .expect("baseapp");
    assert!(baseapp["public_addr"].is_string(), "{baseapp}");
    assert_eq!(seen["login_addr"], cluster.manager.login_addr.to_string());
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layout_is_cut_per_cellapp_and_lines_move_by_hand() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = Cluster::start(
        dir.path(),
        ClusterSpec {
            cellapps: 2,
            ..Default::default()
        },
    )
    .await;
    let admin = cluster.manager.admin_addr;
    let mut layout = serde_json::Value::Null;
    for _ in 0..40 {
        let (status, body) = get(admin, "/api/spaces/1/layout").await;
        if status == 200 {
            layout = serde_json::from_str(&body).expect("JSON");
            if layout["cells"].as_array().map(Vec::len) == Some(2) {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let cells = layout["cells"].as_array().expect("cells");
    assert_eq!(cells.len(), 2, "{layout}");
    let owners: std::collections::BTreeSet<u64> =
        cells.iter().filter_map(|c| c["app"].as_u64()).collect();
    assert_eq!(owners.len(), 2, "one cell per cellapp: {layout}");
    let line = &layout["lines"][0];
    let id = line["line"].as_u64().expect("line id");
    let epoch = layout["epoch"].as_u64().expect("epoch");
    let (status, body) = post(
        admin,
        &format!("/api/spaces/1/lines/{id}"),
        r#"{"pos": 150.0}"#,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let moved: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(moved["lines"][0]["pos"], 150.0);
    assert!(moved["epoch"].as_u64().expect("epoch") > epoch);
    let (status, body) = post(admin, "/api/spaces/1/lines/999", r#"{"pos": 1.0}"#).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("no line"), "{body}");
    let (status, _) = post(
        admin,
        &format!("/api/spaces/1/lines/{id}"),
        r#"{"pos": "far"}"#,
    )
    .await;
    assert!((400..500).contains(&status), "{status}");
    // The balancing policy can be switched; an unknown one is refused by name.
    let (status, body) = post(admin, "/api/balance", r#"{"policy": "bigworld"}"#).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = post(admin, "/api/balance", r#"{"policy": "magic"}"#).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("\"magic\"") && body.contains("tessera"),
        "{body}"
    );
    cluster.stop().await;
}
