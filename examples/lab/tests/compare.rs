//! `lab sim --compare` scores the lab's own policy beside the built-in
//! ones, on the same seed: it loses nothing, and on a hotspot it evens the
//! load out better than the static layout.

use std::process::Command;

#[test]
fn the_labs_policy_is_compared_with_the_built_in_ones() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = Command::new(env!("CARGO_BIN_EXE_lab"))
        .args([
            "sim",
            "--compare",
            "--scenario",
            "hotspot",
            "--cellapps",
            "4",
        ])
        .args(["--entities", "3000", "--duration", "60", "--seed", "2"])
        .args(["--frame-every", "0", "--quiet", "--out", "out"])
        .current_dir(dir.path())
        .output()
        .expect("lab sim runs");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{table}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(table.contains("\nnudge "), "{table}");
    let summary = std::fs::read_to_string(dir.path().join("out/summary.json")).expect("summary");
    let v: serde_json::Value = serde_json::from_str(&summary).expect("JSON");
    let policies = v["policies"].as_object().expect("policies");
    let mut names: Vec<&str> = policies.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(names, ["bigworld", "nudge", "static", "tessera"]);
    let nudge = &policies["nudge"];
    assert_eq!(nudge["entities_lost"], 0, "{nudge}");
    assert_eq!(nudge["entities_duplicated"], 0, "{nudge}");
    let p95 = |p: &str| policies[p]["imbalance"]["p95"].as_f64().expect("p95");
    assert!(p95("nudge") < p95("static"), "{summary}");
}
