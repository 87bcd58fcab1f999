//! `tessera sim` as a user runs it: a scenario file of their own, with NPCs
//! and simulated clients, gives the same `summary.json` byte for byte for
//! the same seed; a built-in scenario is a file like any other; a malformed
//! file is refused naming its key and line.

use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_tessera");

/// A small lab scenario: NPCs wandering and gathering, clients walking a
/// path and converging, a cellapp joining half way.
const LAB: &str = r#"
name = "lab"
about = "a small crowd of NPCs and clients"
duration = 20
cellapps = 3
npcs = 600
clients = 30
client_aoi = 60

[cost]
witness_us = 50

[[event]]
at = "50%"
join = 1

[[group]]
who = "npcs"
share = 0.4
from = 2
motion = "gather"
at = [0.7, 0.3]
radius = 0.1
speed = 8

[[group]]
who = "clients"
share = 0.5
motion = "path"
path = [[0.2, 0.2], [0.8, 0.2], [0.8, 0.8]]
pace = 4
radius = 0.05
speed = 8

[[group]]
who = "clients"
share = 0.5
from = 5
motion = "converge"
at = [0.5, 0.5]
radius = 0.1
speed = 8
"#;

/// Runs `tessera sim ARGS --out DIR/out --quiet` in `dir`.
fn sim(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("sim")
        .args(args)
        .args(["--out", "out", "--quiet", "--frame-every", "0"])
        .current_dir(dir)
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("tessera sim runs")
}

/// Runs it, which must succeed, and returns `summary.json`.
fn summary(dir: &Path, args: &[&str]) -> String {
    let out = sim(dir, args);
    assert!(
        out.status.success(),
        "tessera sim {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read_to_string(dir.join("out/summary.json")).expect("summary.json")
}

#[test]
fn a_scenario_file_gives_the_same_summary_for_the_same_seed() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("lab.toml"), LAB).expect("write");
    let args = [
        "--scenario",
        "lab.toml",
        "--policy",
        "tessera",
        "--seed",
        "4",
    ];
    let first = summary(dir.path(), &args);
    let again = summary(dir.path(), &args);
    assert_eq!(first, again, "same file and seed, same bytes");
    let json: serde_json::Value = serde_json::from_str(&first).expect("JSON");
    assert_eq!(json["scenario"], "lab");
    assert_eq!(
        (json["entities"].as_u64(), json["clients"].as_u64()),
        (Some(600), Some(30))
    );
    assert_eq!(json["shifts_s"], serde_json::json!([2, 5, 10]));
    let clients = &json["policies"]["tessera"]["clients"];
    assert_eq!(clients["playing"], 30, "{clients}");
    assert_eq!(clients["views_wrong_at_end"], 0, "{clients}");
    assert_eq!(clients["corrected"], 0, "{clients}");
    assert!(
        clients["aoi_updates_per_client_s"].as_f64() > Some(0.0),
        "{clients}"
    );
    // Another seed is another run.
    let other = summary(
        dir.path(),
        &[
            "--scenario",
            "lab.toml",
            "--policy",
            "tessera",
            "--seed",
            "5",
        ],
    );
    assert_ne!(first, other);
}

#[test]
fn a_built_in_scenario_is_a_file_like_any_other() {
    let dir = tempfile::tempdir().expect("temp dir");
    let printed = sim(dir.path(), &["--scenario", "join", "--print-scenario"]);
    assert!(printed.status.success());
    std::fs::write(dir.path().join("join.toml"), &printed.stdout).expect("write");
    let small = ["--cellapps", "3", "--entities", "800", "--duration", "15"];
    let built_in = summary(dir.path(), &[&["--scenario", "join"][..], &small].concat());
    let from_file = summary(
        dir.path(),
        &[&["--scenario", "join.toml"][..], &small].concat(),
    );
    assert_eq!(built_in, from_file);
    assert!(
        built_in.contains("\"shifts_s\": [\n    5\n  ]"),
        "{built_in}"
    );
}

#[test]
fn a_malformed_scenario_is_refused_naming_the_key_and_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cases = [
        (
            LAB.replace("radius = 0.05", "radius = 0.05\nspeeed = 3"),
            vec!["lab.toml", "unknown field `speeed`", "line 33"],
        ),
        (
            LAB.replace("at = \"50%\"", "at = \"later\""),
            vec!["lab.toml", "event[1].at (line 13)", "not a time"],
        ),
        (
            LAB.replace(
                "speed = 8\n\n[[group]]\nwho = \"clients\"\nshare = 0.5\nfrom",
                "speed = 30\n\n[[group]]\nwho = \"clients\"\nshare = 0.5\nfrom",
            ),
            vec!["group.speed (line 26)", "max_speed"],
        ),
        (
            LAB.replace("at = \"50%\"", "at = 30"),
            vec!["event.at (line 13)", "after the run's end"],
        ),
    ];
    for (text, wanted) in cases {
        std::fs::write(dir.path().join("lab.toml"), &text).expect("write");
        let out = sim(dir.path(), &["--scenario", "lab.toml"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "ran: {text}");
        for w in wanted {
            assert!(err.contains(w), "{err:?} lacks {w:?}");
        }
    }
    let out = sim(dir.path(), &["--scenario", "missing.toml"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("no scenario \"missing.toml\""),
        "{err}"
    );
}

#[test]
fn a_sweep_runs_every_policy_at_every_value_in_one_table() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("lab.toml"), LAB).expect("write");
    for (key, values) in [
        ("cellapps", [2.0, 4.0]),
        ("tessera.dead_share", [0.005, 0.5]),
    ] {
        let out = sim(
            dir.path(),
            &[
                "--scenario",
                "hotspot",
                "--compare",
                "--entities",
                "1500",
                "--duration",
                "20",
                "--sweep",
                &format!("{key}={},{}", values[0], values[1]),
            ],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let table = std::fs::read_to_string(dir.path().join("out/sweep.json")).expect("sweep.json");
        let v: serde_json::Value = serde_json::from_str(&table).expect("JSON");
        assert_eq!(v["key"], key);
        let runs = v["runs"].as_array().expect("runs");
        assert_eq!(runs.len(), 2 * 3, "two values, three policies");
        let p95 = |value: f64, policy: &str| {
            runs.iter()
                .find(|r| r["value"] == value && r["policy"] == policy)
                .and_then(|r| r["score"]["imbalance"]["p95"].as_f64())
                .expect("a run")
        };
        // What varies changes the runs it should, and only those.
        assert_ne!(
            p95(values[0], "tessera"),
            p95(values[1], "tessera"),
            "{table}"
        );
        if key.starts_with("tessera.") {
            assert_eq!(p95(values[0], "static"), p95(values[1], "static"));
            assert_eq!(p95(values[0], "bigworld"), p95(values[1], "bigworld"));
        }
        let chart = std::fs::read_to_string(dir.path().join("out/sweep.svg")).expect("sweep.svg");
        assert_eq!(chart.matches("<polyline").count(), 3, "a line per policy");
    }
    for (bad, wanted) in [
        ("fastness=1,2", "neither a scenario key"),
        (
            "tessera.speed=1,2",
            "policy tessera has no parameter \"speed\"",
        ),
        ("nosuch.gain=1,2", "no policy \"nosuch\""),
        ("cellapps=4", "2 to 32 values"),
        ("cellapps=2,x", "\"x\" is not a number"),
        ("cellapps=2,0", "not a whole number from 1 to 64"),
    ] {
        let out = sim(dir.path(), &["--scenario", "lab.toml", "--sweep", bad]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(wanted),
            "{bad}: {err}"
        );
    }
}
