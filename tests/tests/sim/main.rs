//! Deterministic simulation tests: the real cores of manager, cellapp and
//! baseapp in one thread over an in-memory network with seeded delays,
//! reordering and datagram loss. A failing seed is printed and replays
//! exactly (`SimConfig { seed, .. }`).

use std::time::{Duration, Instant};
use tessera_cellapp::Faults;
use tessera_sim::scenario::{self, Overrides, Scenario, Spec, BUILT_IN};
use tessera_sim::score::Score;
use tessera_sim::{SimConfig, SimWorld};

mod clients;
mod crash;
mod game;
mod links;
mod truth;

/// Walk for a while, freeze, let everything settle, then compare every
/// client's view with the truth.
fn run(seed: u64) -> Result<(u64, usize), String> {
    let cfg = SimConfig {
        seed,
        ..SimConfig::default()
    };
    let mut w = SimWorld::new(&cfg);
    w.run_until(6_000_000);
    w.freeze();
    w.run_until(9_000_000);
    let checked = w
        .check_views(5.0)
        .map_err(|e| format!("seed {seed}: {e}"))?;
    Ok((w.fingerprint(), checked))
}

#[test]
fn views_equal_the_truth_across_seeds() {
    // At least 200 seeds, and more while there is time (bounded).
    let started = Instant::now();
    let mut seeds = 0u64;
    let mut sightings = 0usize;
    while seeds < 200 || (seeds < 2_000 && started.elapsed() < Duration::from_secs(20)) {
        let seed = 1 + seeds;
        match run(seed) {
            Ok((_, n)) => sightings += n,
            Err(e) => panic!("{e}\nreplay: SimConfig {{ seed: {seed}, ..SimConfig::default() }}"),
        }
        seeds += 1;
    }
    assert!(
        sightings > seeds as usize * 20,
        "views were trivially empty: {sightings} sightings over {seeds} seeds"
    );
}

#[test]
fn same_seed_same_run() {
    for seed in [3, 17, 99] {
        let a = run(seed).expect("run");
        let b = run(seed).expect("run");
        assert_eq!(a, b, "seed {seed} did not replay");
    }
    assert_ne!(
        run(3).expect("run").0,
        run(4).expect("run").0,
        "different seeds give different runs"
    );
}

/// Four cells, clients and NPCs walking across the lines: ghosts, migration
/// and the entity channel. After every delivery no entity has two reals;
/// after settling every entity is real once in the cell that covers it,
/// ghosts match their reals, every ping came back once and in order, and
/// every view equals the truth.
fn run_cells(seed: u64) -> Result<(u64, usize, u64), String> {
    let (failures, fingerprint, checked, offloads) = checks(seed, Faults::default());
    match failures.first() {
        Some(f) => Err(format!("seed {seed}: {f}")),
        None => Ok((fingerprint, checked, offloads)),
    }
}

/// Runs a four-cell world and evaluates every check on its own, so a planted
/// fault can be matched to the check that catches it. Returns the failures
/// (each tagged with its check), the fingerprint, the sightings checked and
/// the migrations.
fn checks(seed: u64, faults: Faults) -> (Vec<String>, u64, usize, u64) {
    let cfg = SimConfig {
        seed,
        faults: tessera_sim::Faults {
            cell: faults,
            ..Default::default()
        },
        cellapps: 4,
        npcs: 15,
        clients: 16,
        size: 400.0,
        ..SimConfig::default()
    };
    let entities = cfg.cellapps * cfg.npcs + cfg.clients;
    let mut w = SimWorld::new(&cfg);
    let mut failures = Vec::new();
    // While everyone walks, views keep up (membership, within a tick or two).
    w.run_until(2_000_000);
    for t in 0..16 {
        w.run_until(2_000_000 + t * 500_000);
        if let Err(e) = w.check_membership(5.0, 6.0) {
            failures.push(format!("membership: {e}"));
            break;
        }
    }
    w.run_until(10_000_000);
    w.freeze();
    w.run_until(13_000_000);
    let (settled, checked) = w.settled_failures(entities);
    failures.extend(settled);
    (failures, w.fingerprint(), checked, w.offloads())
}

#[test]
fn four_cells_lose_nothing_across_seeds() {
    let started = Instant::now();
    let mut seeds = 0u64;
    let mut offloads = 0u64;
    // At least 1,000 seeds; more while there is time (bounded).
    while seeds < 1_000 || (seeds < 5_000 && started.elapsed() < Duration::from_secs(60)) {
        let seed = 1 + seeds;
        match run_cells(seed) {
            Ok((_, _, n)) => offloads += n,
            Err(e) => panic!("{e}\nreplay: run_cells({seed})"),
        }
        seeds += 1;
    }
    eprintln!(
        "four cells: {seeds} seeds, {offloads} migrations in {:?}",
        started.elapsed()
    );
    assert!(
        offloads > seeds * 5,
        "too few migrations to mean anything: {offloads} over {seeds} seeds"
    );
}

/// Each check catches the fault it is there for: plant it and some seed
/// among the first few fails that check.
#[test]
fn every_check_catches_its_planted_fault() {
    let plants: [(&str, Faults, &str); 6] = [
        (
            "an offloaded real that stays real",
            Faults {
                keep_real_on_offload: true,
                ..Faults::default()
            },
            "single real:",
        ),
        (
            "a forwarding step dropped",
            Faults {
                drop_forwarding: true,
                ..Faults::default()
            },
            "pings:",
        ),
        (
            "a channel message applied twice",
            Faults {
                apply_twice: true,
                ..Faults::default()
            },
            "pings:",
        ),
        (
            "ghosts never updated",
            Faults {
                no_ghost_updates: true,
                ..Faults::default()
            },
            "ghosts:",
        ),
        (
            "reals that never move cell",
            Faults {
                no_offload: true,
                ..Faults::default()
            },
            "placement:",
        ),
        (
            "a moved witness that does not resend changed properties",
            Faults {
                no_witness_refresh: true,
                ..Faults::default()
            },
            "views:",
        ),
    ];
    // (A witness that skips its refresh shows only when an entity it sees
    // changed a property while it travelled: the first seed that does so
    // is 83.)
    for (what, faults, check) in plants {
        let caught =
            (1..=100).any(|seed| checks(seed, faults).0.iter().any(|f| f.starts_with(check)));
        assert!(
            caught,
            "{what}: the {check} check never caught it in 100 seeds"
        );
    }
    // And the while-moving membership check catches ghosts left standing
    // where their reals no longer are.
    let blind = Faults {
        no_ghost_updates: true,
        ..Faults::default()
    };
    let caught = (1..=40).any(|seed| {
        checks(seed, blind)
            .0
            .iter()
            .any(|f| f.starts_with("membership:"))
    });
    assert!(
        caught,
        "stale ghosts: the membership check never caught them in 40 seeds"
    );
}

/// Four cellapps, 60 NPCs and 16 clients walking on 400 m: the world of the
/// line, crash and elastic-cell tests.
fn four_cells(seed: u64) -> SimConfig {
    SimConfig {
        seed,
        cellapps: 4,
        npcs: 15,
        clients: 16,
        size: 400.0,
        ..SimConfig::default()
    }
}

/// After the world is stilled: every entity real once where it belongs, and
/// every view equal to the truth.
fn settled_and_seen(w: &SimWorld, entities: usize, seed: u64) {
    let ctx = |e: String| format!("seed {seed}: {e}\nreplay with this seed");
    w.check_settled(entities)
        .map_err(ctx)
        .unwrap_or_else(|e| panic!("{e}"));
    w.check_views(5.0)
        .map_err(ctx)
        .unwrap_or_else(|e| panic!("{e}"));
}

/// A line moved by hand while everyone walks: entities on the side that
/// changed hands migrate, and nothing is lost.
#[test]
fn a_moved_line_migrates_entities_without_loss() {
    for seed in 1..=50 {
        let cfg = four_cells(seed);
        let mut w = SimWorld::new(&cfg);
        w.run_until(4_000_000);
        let before = w.offloads();
        assert!(
            w.move_line(0, 0.2).is_some(),
            "seed {seed}: no line to move"
        );
        w.run_until(8_000_000);
        assert!(w.offloads() > before, "seed {seed}: nothing migrated");
        w.freeze();
        w.run_until(11_000_000);
        settled_and_seen(&w, cfg.cellapps * cfg.npcs + cfg.clients, seed);
    }
}

/// Elastic cells: a cellapp that joins a running world gets a cell that
/// grows from nothing, and one that retires hands everything over and
/// leaves. Clients keep walking and pinging throughout; nothing is lost or
/// doubled, and every view equals the truth after.
#[test]
fn cellapps_join_and_retire_without_loss() {
    for seed in 1..=30 {
        let cfg = four_cells(seed);
        let entities = cfg.cellapps * cfg.npcs + cfg.clients;
        let mut w = SimWorld::new(&cfg);
        w.run_until(3_000_000);
        let joined = w.add_cellapp().expect("a cellapp joins");
        w.run_until(9_000_000);
        let area = |w: &SimWorld, app| {
            w.manager().layout().map_or(0.0, |l| {
                l.cells()
                    .iter()
                    .filter(|c| c.app == app)
                    .map(|c| c.rect.area())
                    .sum::<f64>()
            })
        };
        assert!(
            area(&w, joined) > 0.0,
            "seed {seed}: the new cell never grew"
        );
        assert!(
            w.cells()[&joined].stats().reals > 0,
            "seed {seed}: the new cellapp took no reals"
        );
        let leaving = w.cellapps()[0];
        assert!(w.retire(leaving), "seed {seed}: retirement refused");
        w.run_until(35_000_000);
        assert!(
            !w.cellapps().contains(&leaving),
            "seed {seed}: the retiring cellapp is still running"
        );
        assert_eq!(area(&w, leaving), 0.0, "seed {seed}");
        w.freeze();
        w.run_until(39_000_000);
        settled_and_seen(&w, entities, seed);
    }
}

/// A built-in scenario, small: four cellapps, 3,000 NPCs (and 60 clients
/// if it has clients), a minute.
fn small(name: &str, seed: u64) -> Spec {
    let scenario = Scenario::load(name).expect("built in");
    let clients = (scenario.clients > 0).then_some(60);
    let scenario = scenario.with(&Overrides {
        cellapps: Some(4),
        npcs: Some(3_000),
        clients,
        duration: Some(60),
        ..Overrides::default()
    });
    Spec::new(scenario, seed, 0, None).expect("a spec")
}

/// The same seed gives byte-identical `summary.json`.
#[test]
fn the_balancing_simulator_is_deterministic() {
    let spec = small("join", 7);
    let once = |policy| scenario::run(&spec, policy, &mut |_| {});
    let (a, b) = (once("tessera"), once("tessera"));
    let text = |s: &Score| scenario::summary_json(&spec, &[("tessera", s)]);
    assert_eq!(text(&a), text(&b));
    assert!(text(&a).contains("\"entities_lost\": 0"), "{}", text(&a));
    // A different seed is a different run.
    let other = scenario::run(&small("join", 8), "tessera", &mut |_| {});
    assert_ne!(a.series, other.series);
}

/// Every scenario under every policy loses nothing, and where a crowd
/// forms the balancing policies even the load out better than the static
/// layout, `tessera` best of all.
#[test]
fn policies_lose_nothing_and_tessera_evens_a_hotspot() {
    for (i, (name, _)) in BUILT_IN.iter().enumerate() {
        let spec = small(name, 100 + i as u64);
        let mut p95 = std::collections::BTreeMap::new();
        for policy in tessera_manager::balance::POLICIES {
            let s = scenario::run(&spec, policy, &mut |_| {});
            assert_eq!(
                (s.entities_lost, s.entities_duplicated, &s.broken),
                (0, 0, &None),
                "{name} under {policy}"
            );
            if let Some(c) = &s.clients {
                assert_eq!(
                    (c.playing, c.views_wrong_at_end, c.corrected),
                    (60, 0, 0),
                    "{name} under {policy}: {c:?}"
                );
            }
            p95.insert(policy, s.imbalance.p95);
        }
        if *name == "hotspot" || *name == "converge" {
            assert!(p95["tessera"] < p95["static"], "{name}: {p95:?}");
            assert!(p95["tessera"] <= p95["bigworld"], "{name}: {p95:?}");
        }
    }
}
