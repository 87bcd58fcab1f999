//! The manager's admin HTTP answers `/healthz` and lists the cluster, with
//! client counts that follow logins.

use std::time::Duration;
use tessera_tests::{admin, http, Cluster, ClusterSpec};

/// A GET: the status and the body.
async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let answer = http(addr, "GET", path, "").await;
    (answer.status, answer.body)
}

/// A POST of a JSON body with the admin token: the status and the body.
async fn post(
    data: &std::path::Path,
    addr: std::net::SocketAddr,
    path: &str,
    body: &str,
) -> (u16, String) {
    let answer = admin(data, addr, "POST", path, body).await;
    (answer.status, answer.body)
}

/// Sends `request` (a whole HTTP/1.1 request) as it is; returns the status.
async fn raw(addr: std::net::SocketAddr, request: String) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(request.as_bytes()).await.expect("write");
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).await.expect("read");
    let text = String::from_utf8_lossy(&answer);
    text.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"))
}

/// A POST by hand: to `path` naming `host`, with extra header lines.
fn request(path: &str, host: &str, headers: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n{headers}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_take_the_token_from_this_host_and_origin() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = Cluster::start(dir.path(), ClusterSpec::default()).await;
    let addr = cluster.manager.admin_addr;
    let token = std::fs::read_to_string(tessera_manager::admin::guard::token_path(dir.path()))
        .expect("the token was generated into the data directory");
    let token = token.trim();
    let host = addr.to_string();
    let json = "Content-Type: application/json\r\n";
    let body = r#"{"policy": "static"}"#;
    let with = |extra: &str| format!("{json}Authorization: Bearer {token}\r\n{extra}");
    // No token, a wrong one.
    assert_eq!(
        raw(addr, request("/api/balance", &host, json, body)).await,
        401
    );
    let wrong = format!("{json}Authorization: Bearer {}\r\n", "0".repeat(64));
    assert_eq!(
        raw(addr, request("/api/balance", &host, &wrong, body)).await,
        401
    );
    // The right token under a host this server is not (DNS rebinding).
    assert_eq!(
        raw(
            addr,
            request("/api/balance", "attacker.example:7080", &with(""), body)
        )
        .await,
        421
    );
    let get = "GET /api/cluster HTTP/1.1\r\nHost: attacker.example\r\nConnection: close\r\n\r\n";
    assert_eq!(raw(addr, get.to_string()).await, 421, "reads too");
    // A cross-site form post, with or without the token.
    let form = "Content-Type: application/x-www-form-urlencoded\r\nOrigin: http://evil.example\r\n";
    assert_eq!(
        raw(addr, request("/api/balance", &host, form, "policy=static")).await,
        403
    );
    let cross = with("Origin: http://evil.example\r\n");
    assert_eq!(
        raw(addr, request("/api/balance", &host, &cross, body)).await,
        403
    );
    // The token, from this host (and its own origin): it works.
    assert_eq!(
        raw(addr, request("/api/balance", &host, &with(""), body)).await,
        200
    );
    let same = with(&format!("Origin: http://{host}\r\n"));
    assert_eq!(
        raw(addr, request("/api/balance", &host, &same, body)).await,
        200
    );
    // Reading needs no token.
    assert_eq!(http(addr, "GET", "/api/cluster", "").await.status, 200);
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_and_cluster() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = Cluster::start(dir.path(), ClusterSpec::default()).await;
    let admin = cluster.manager.admin_addr;
    let (status, body) = get(admin, "/healthz").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body.trim(), "ok");

    let _client = cluster
        .login("watcher", "password1", true)
        .await
        .expect("login");
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
        &cluster.data,
        admin,
        &format!("/api/spaces/1/lines/{id}"),
        r#"{"pos": 150.0}"#,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let moved: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(moved["lines"][0]["pos"], 150.0);
    assert!(moved["epoch"].as_u64().expect("epoch") > epoch);
    let (status, body) = post(
        &cluster.data,
        admin,
        "/api/spaces/1/lines/999",
        r#"{"pos": 1.0}"#,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("no line"), "{body}");
    let (status, _) = post(
        &cluster.data,
        admin,
        &format!("/api/spaces/1/lines/{id}"),
        r#"{"pos": "far"}"#,
    )
    .await;
    assert!((400..500).contains(&status), "{status}");
    // The balancing policy can be switched; an unknown one is refused by name.
    let (status, body) = post(
        &cluster.data,
        admin,
        "/api/balance",
        r#"{"policy": "bigworld"}"#,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = post(
        &cluster.data,
        admin,
        "/api/balance",
        r#"{"policy": "magic"}"#,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("\"magic\"") && body.contains("tessera"),
        "{body}"
    );
    cluster.stop().await;
}
