//! A recording of a live world replays in the simulator. `tessera up` with
//! 300 NPCs and 200 bots records its load (`--record`) for 20 s; `tessera
//! sim --replay` runs every policy on the recording, and every replayed
//! client ends with a view equal to the truth; and at each of the
//! recording's first ten samples each cell of the replay holds the reals
//! the recording saw in it, to within 5 % of the world's reals (while the
//! bots log in; within a few reals after). A copy cut short in its last
//! sample, as a manager killed mid-append leaves it, still replays.

mod procs;

use std::process::Command;
use std::time::{Duration, Instant};
use tessera::layout::Rect;
use tessera::recording::{unquantize, Recording};
use tessera_sim::scenario::Spec;

const BIN: &str = env!("CARGO_BIN_EXE_tessera");
const NPCS: usize = 300;
const BOTS: usize = 200;

/// Each recorded cell's rectangle and the reals the sample saw in it.
fn recorded(rec: &Recording, sample: usize) -> Vec<(Rect, usize)> {
    let s = &rec.samples[sample];
    let b = rec.header.bounds;
    s.cells
        .iter()
        .map(|c| {
            let inside = s
                .spots
                .iter()
                .filter(|p| {
                    let (x, z) = (unquantize(p.x, b.x0, b.x1), unquantize(p.z, b.z0, b.z1));
                    c.rect.holds(x, z)
                })
                .count();
            (c.rect, inside)
        })
        .collect()
}

#[test]
fn a_recorded_world_replays_cell_for_cell() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let rec_path = d.join("world.tsrec");
    let mut cmd = Command::new(BIN);
    cmd.args(["up", "--data"])
        .arg(d.join("data"))
        .args(["--npcs", &NPCS.to_string(), "--bots", &BOTS.to_string()])
        .args(["--policy", "static", "--record"])
        .arg(&rec_path);
    let (mut up, _) = procs::start(cmd, &d.join("up.log"), "world up");
    std::thread::sleep(Duration::from_secs(20));
    // Ctrl-C stops the world, as an operator stops it.
    let sent = Command::new("kill")
        .args(["-INT", &up.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(sent.success(), "SIGINT to up");
    let started = Instant::now();
    while up.child.try_wait().expect("wait").is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "up did not stop"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let bytes = std::fs::read(&rec_path).expect("the recording");
    let rec = tessera::recording::read(&bytes).expect("a recording");
    assert_eq!(
        rec.torn, None,
        "a world stopped by Ctrl-C ends its recording whole"
    );
    assert!(rec.samples.len() >= 15, "{} samples", rec.samples.len());
    let per_entity_second =
        bytes.len() as f64 / rec.samples.iter().map(|s| s.spots.len()).sum::<usize>() as f64;
    eprintln!(
        "{} bytes, {} samples, {per_entity_second:.1} bytes per entity a sample",
        bytes.len(),
        rec.samples.len()
    );

    // Cell for cell: the replay's first seconds hold the recording's counts.
    let spec = Spec::replay(rec.clone(), "world.tsrec", 1, 0, None).expect("a replay");
    let replay = spec.replaying().expect("replaying");
    assert_eq!(replay.counts(), (NPCS, BOTS), "NPC and client tracks");
    let mut world = spec.world("static");
    let mut bad = Vec::new();
    let laid: Vec<usize> = (0..rec.samples.len())
        .filter(|&k| !rec.samples[k].cells.is_empty())
        .take(10)
        .collect();
    for k in laid {
        // The replay a tick and a half after the moment of the sample (the
        // cells count their reals as they tick).
        let t = rec.samples[k].t_ms as f32 / 1e3;
        let at = world.follow().expect("replaying").world_time(t);
        world.run_until(at);
        replay.start(&mut world, t);
        world.run_until(at + 150_000);
        let layout = world.manager().layout().expect("a layout").clone();
        let cells = world.cells();
        let counts = recorded(&rec, k);
        // A replayed client comes in about half a second before its track
        // starts, a live one at some moment in the second before the
        // sample that first saw it; while the bots log in, a cell may be
        // a few off. Each within 5 % of the world's reals, and never more
        // than that.
        let slack = (counts.iter().map(|(_, n)| n).sum::<usize>() / 20).max(3);
        for (rect, want) in counts {
            let app = layout
                .cells()
                .into_iter()
                .find(|c| c.rect == rect)
                .unwrap_or_else(|| panic!("{t} s: no cell {rect:?} in the replay"))
                .app;
            let got = cells.get(&app).map_or(0, |c| c.stats().reals);
            eprintln!("{t:>5.1} s: {rect:?} recorded {want}, replayed {got}");
            bad.extend((got.abs_diff(want) > slack).then(|| {
                format!(
                    "{t} s: cell {rect:?} held {want} reals in the recording, {got} in the replay"
                )
            }));
        }
    }
    assert!(bad.is_empty(), "{bad:#?}");

    // Every policy on the whole recording, through the command line.
    let out = Command::new(BIN)
        .args(["sim", "--replay"])
        .arg(&rec_path)
        .args(["--compare", "--quiet", "--frame-every", "0", "--out"])
        .arg(d.join("out"))
        .output()
        .expect("tessera sim runs");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = std::fs::read_to_string(d.join("out/summary.json")).expect("summary");
    let v: serde_json::Value = serde_json::from_str(&summary).expect("JSON");
    assert_eq!(v["scenario"], "replay");
    for policy in ["static", "bigworld", "tessera"] {
        let p = &v["policies"][policy];
        assert_eq!(p["entities_lost"], 0, "{policy}: {p}");
        assert_eq!(p["clients"]["playing"], BOTS, "{policy}: {p}");
        assert_eq!(p["clients"]["views_wrong_at_end"], 0, "{policy}: {p}");
    }

    // A manager killed while appending a sample leaves it cut short: the
    // replay keeps the whole samples before it and says where it was torn.
    let torn = d.join("torn.tsrec");
    std::fs::write(&torn, &bytes[..bytes.len() - 5]).expect("write");
    let out = Command::new(BIN)
        .args(["sim", "--replay"])
        .arg(&torn)
        .args([
            "--policy",
            "static",
            "--quiet",
            "--frame-every",
            "0",
            "--out",
        ])
        .arg(d.join("out-torn"))
        .output()
        .expect("tessera sim runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("torn.tsrec") && err.contains("cut short at byte"),
        "{err}"
    );
}

#[test]
fn a_malformed_recording_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("bad.tsrec");
    std::fs::write(&path, b"not a recording at all").expect("write");
    let out = Command::new(BIN)
        .args(["sim", "--replay"])
        .arg(&path)
        .args(["--out"])
        .arg(dir.path().join("out"))
        .output()
        .expect("tessera sim runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("bad.tsrec") && err.contains("not a Tessera recording"),
        "{err}"
    );
}
