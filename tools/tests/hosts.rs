//! A world on four hosts: network namespaces joined by veth pairs to one
//! bridge, each host with an address of its own.
//!
//! - host 1: PostgreSQL and the manager;
//! - host 2: two cellapps;
//! - host 3: a baseapp bound to `0.0.0.0`, advertising its host's address;
//! - host 4: `tessera bots`, 100 of them crossing the cell line for 30 s.
//!
//! Accounts are created through the manager on host 1 and the players'
//! entities loaded and saved by the baseapp on host 3, both in the one
//! PostgreSQL database. The bots must all get in, with no errors and no
//! disconnects; the cellapps must have handed entities to each other; and
//! the database must hold every bot's account linked to its saved entity.
//!
//! Making namespaces needs root and iproute2, and the test needs
//! PostgreSQL's server binaries (`/usr/lib/postgresql/*/bin`). Where either
//! is missing it says so and checks nothing, unless
//! `TESSERA_NETNS_TESTS=required` (as `.ci/run` sets), when that fails.

mod procs;

use procs::start;
use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_tessera");
const REQUIRED: &str = "TESSERA_NETNS_TESTS";
const BOTS: usize = 100;

/// Runs a command, failing the test with its output if it fails.
fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn ip(args: &[&str]) -> String {
    run(Command::new("ip").args(args))
}

/// Why this machine cannot run the test, if it cannot.
fn missing() -> Option<String> {
    if !Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
    {
        return Some("network namespaces need root".into());
    }
    let probe = format!("tessera-probe-{}", std::process::id());
    match Command::new("ip").args(["netns", "add", &probe]).output() {
        Ok(o) if o.status.success() => {
            let _ = Command::new("ip").args(["netns", "del", &probe]).output();
        }
        Ok(o) => {
            return Some(format!(
                "`ip netns add` is not permitted here: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            ))
        }
        Err(e) => return Some(format!("no `ip` command (iproute2): {e}")),
    }
    if pg_bin().is_none() {
        return Some("no PostgreSQL server binaries in /usr/lib/postgresql/*/bin".into());
    }
    None
}

/// The newest PostgreSQL's binaries.
fn pg_bin() -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|b| b.join("initdb").exists())
        .collect();
    found.sort();
    found.pop()
}

/// Four hosts on one bridge; removed when dropped.
struct Hosts {
    switch: String,
    hosts: Vec<String>,
    subnet: String,
}

impl Hosts {
    fn new(n: usize) -> Hosts {
        let tag = std::process::id() % 100_000;
        let switch = format!("tsw{tag}");
        let subnet = format!("10.77.{}", tag % 200 + 20);
        ip(&["netns", "add", &switch]);
        let mut made = Hosts {
            switch: switch.clone(),
            hosts: Vec::new(),
            subnet: subnet.clone(),
        };
        ip(&["-n", &switch, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &switch, "link", "set", "br0", "up"]);
        for i in 1..=n {
            let host = format!("th{tag}h{i}");
            ip(&["netns", "add", &host]);
            made.hosts.push(host.clone());
            let (inside, outside) = (format!("tv{tag}a{i}"), format!("tv{tag}b{i}"));
            ip(&[
                "link", "add", &inside, "type", "veth", "peer", "name", &outside,
            ]);
            ip(&["link", "set", &inside, "netns", &host]);
            ip(&["link", "set", &outside, "netns", &switch]);
            ip(&[
                "-n", &switch, "link", "set", &outside, "master", "br0", "up",
            ]);
            ip(&[
                "-n",
                &host,
                "addr",
                "add",
                &format!("{subnet}.{i}/24"),
                "dev",
                &inside,
            ]);
            ip(&["-n", &host, "link", "set", &inside, "up"]);
            ip(&["-n", &host, "link", "set", "lo", "up"]);
        }
        made
    }

    /// Host `i`'s address (1-based).
    fn addr(&self, i: usize) -> String {
        format!("{}.{i}", self.subnet)
    }

    /// A command run on host `i`.
    fn on(&self, i: usize, program: &Path) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.hosts[i - 1]]).arg(program);
        c
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for h in self.hosts.iter().chain([&self.switch]) {
            let _ = Command::new("ip").args(["netns", "del", h]).output();
        }
    }
}

/// A PostgreSQL server of the test's own on host 1; stopped when dropped.
struct Postgres {
    bin: PathBuf,
    dir: tempfile::TempDir,
    host: String,
}

impl Postgres {
    fn start(hosts: &Hosts) -> Postgres {
        let bin = pg_bin().expect("PostgreSQL binaries");
        let dir = tempfile::tempdir().expect("temp dir");
        run(Command::new("chown").arg("postgres:").arg(dir.path()));
        let data = dir.path().join("data");
        let as_pg = |program: &str| {
            let mut c = hosts.on(1, Path::new("runuser"));
            c.args(["-u", "postgres", "--"]).arg(bin.join(program));
            c
        };
        run(as_pg("initdb").arg("-D").arg(&data).args([
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
        ]));
        let hba = data.join("pg_hba.conf");
        let mut rules = std::fs::read_to_string(&hba).expect("pg_hba.conf");
        rules.push_str(&format!("host all all {}.0/24 trust\n", hosts.subnet));
        std::fs::write(&hba, rules).expect("pg_hba.conf");
        let options = format!(
            "-p 5432 -k {} -c listen_addresses={}",
            dir.path().display(),
            hosts.addr(1)
        );
        run(as_pg("pg_ctl")
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(dir.path().join("log"))
            .args(["-w", "-o", &options, "start"]));
        Postgres {
            bin,
            dir,
            host: hosts.hosts[0].clone(),
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args([
                "netns", "exec", &self.host, "runuser", "-u", "postgres", "--",
            ])
            .arg(self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "stop"])
            .output();
    }
}

/// An HTTP GET run on host `i` (the admin ports listen there only).
fn get_on(hosts: &Hosts, i: usize, url: &str) -> String {
    let script = format!(
        "import urllib.request; print(urllib.request.urlopen({url:?}, timeout=10).read().decode())"
    );
    run(hosts.on(i, Path::new("python3")).args(["-c", &script]))
}

/// The value of a counter summed over its series in a Prometheus text page.
fn counter(page: &str, name: &str) -> f64 {
    page.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn a_world_on_four_hosts_shares_one_postgres() {
    if let Some(why) = missing() {
        let required = std::env::var(REQUIRED).is_ok_and(|v| v == "required");
        assert!(!required, "{REQUIRED}=required but {why}");
        eprintln!("skipped: {why}");
        return;
    }
    let hosts = Hosts::new(4);
    let _pg = Postgres::start(&hosts);
    let work = tempfile::tempdir().expect("temp dir");
    let dir = |name: &str| {
        let d = work.path().join(name);
        std::fs::create_dir_all(&d).expect("data dir");
        d
    };
    let (d1, d2, d3, d4) = (dir("host1"), dir("host2"), dir("host3"), dir("host4"));
    // The cluster CA lives on host 1; every other host gets a certificate
    // from it, and the clients' certificate is the same on both public
    // ports (the manager's and the baseapp's).
    tessera::net::ca::init(&d1).expect("cluster CA");
    for d in [&d2, &d3] {
        tessera::net::ca::issue(&d1, d, 30).expect("cluster certificate");
    }
    tessera::net::load_or_create_identity(&d1).expect("public certificate");
    for d in [&d3, &d4] {
        std::fs::create_dir_all(d.join("tls")).expect("tls dir");
        for f in ["cert.der", "key.der"] {
            std::fs::copy(d1.join("tls").join(f), d.join("tls").join(f)).expect("copy");
        }
    }
    let database = format!("postgres://postgres@{}:5432/postgres", hosts.addr(1));
    let manager_addr = format!("{}:7000", hosts.addr(1));
    let tessera = Path::new(BIN);
    let path = |p: &Path| p.display().to_string();

    let mut manager = hosts.on(1, tessera);
    manager.arg("manager").args([
        "--data",
        &path(&d1),
        "--database",
        &database,
        "--internal",
        &manager_addr,
        "--login",
        &format!("{}:7001", hosts.addr(1)),
        "--admin",
        &format!("{}:7080", hosts.addr(1)),
        "--size",
        "400",
        "--rejoin-window-ms",
        "0",
        "--login-limits",
        "one-address",
        "--conn-rate-per-addr",
        "0",
    ]);
    let (_manager, _) = start(manager, &work.path().join("manager.log"), "admin:");

    let mut cellapps = Vec::new();
    for i in 1..=2 {
        let mut c = hosts.on(2, tessera);
        c.arg("cellapp").args([
            "--data",
            &path(&d2),
            "--manager",
            &manager_addr,
            "--bind",
            &format!("{}:0", hosts.addr(2)),
            "--seed",
            &i.to_string(),
        ]);
        cellapps.push(start(
            c,
            &work.path().join(format!("cellapp{i}.log")),
            "admin:",
        ));
    }

    let mut baseapp = hosts.on(3, tessera);
    baseapp.arg("baseapp").args([
        "--data",
        &path(&d3),
        "--database",
        &database,
        "--manager",
        &manager_addr,
        "--bind",
        "0.0.0.0:7100",
        "--advertise",
        &format!("{}:0", hosts.addr(3)),
        "--public",
        "0.0.0.0:7101",
        "--advertise-public",
        &format!("{}:0", hosts.addr(3)),
        "--conn-rate-per-addr",
        "0",
    ]);
    let (_baseapp, lines) = start(baseapp, &work.path().join("baseapp.log"), "serving clients");
    let serving = format!("serving clients on {}:7101", hosts.addr(3));
    assert!(lines.iter().any(|l| l.contains(&serving)), "{lines:?}");

    let report = d4.join("report.json");
    let out = run(hosts.on(4, tessera).arg("bots").args([
        "--login",
        &format!("{}:7001", hosts.addr(1)),
        "--count",
        &BOTS.to_string(),
        "--duration",
        "30",
        "--behavior",
        "cross",
        "--cert",
        &path(&d4.join("tls").join("cert.der")),
        "--report",
        &path(&report),
    ]));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).expect("report")).expect("json");
    let field = |k: &str| report[k].as_u64().unwrap_or(u64::MAX);
    assert_eq!(field("connected"), BOTS as u64, "{out}");
    assert_eq!(field("login_failures"), 0, "{out}");
    assert_eq!(field("disconnects"), 0, "{out}");
    assert_eq!(report["errors"], serde_json::json!({}), "{out}");
    assert!(field("aoi_enters") > 0, "{out}");

    // The two cells handed entities to each other.
    let mut handed = 0.0;
    for (_, lines) in &cellapps {
        let admin = lines
            .iter()
            .find_map(|l| l.split("admin: ").nth(1))
            .unwrap_or_else(|| panic!("no admin address in {lines:?}"));
        handed += counter(
            &get_on(&hosts, 2, &format!("{admin}/metrics")),
            "tessera_migrations_total",
        );
    }
    assert!(handed > 0.0, "no entity crossed the cell line");

    // Every bot's account, made through the manager on host 1, is linked to
    // the entity the baseapp on host 3 made and saved.
    let psql = pg_bin().expect("PostgreSQL binaries").join("psql");
    let linked = run(hosts.on(1, &psql).args([
        "-h",
        &hosts.addr(1),
        "-U",
        "postgres",
        "-tAc",
        "SELECT count(*) FROM accounts a JOIN entities e ON e.id = a.entity_id",
    ]));
    assert_eq!(linked.trim(), BOTS.to_string());
}
