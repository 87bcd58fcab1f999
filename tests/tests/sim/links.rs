//! The connections between live apps dropped at random steps while
//! entities migrate, losing whatever was in flight on them, and the cores'
//! own timing driving the simulator.

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::time::Duration;
use tessera::link::LinkFaults;
use tessera::AppId;
use tessera_sim::{SimConfig, SimWorld};

use super::four_cells;

/// Seeds the link-drop test runs.
const SEEDS: u64 = 500;

/// Four cellapps and two baseapps; between 1 and 9 s, three times, the
/// connection between two live apps (chosen by the seed among every pair
/// that has one: cellapp–cellapp, baseapp–cellapp, baseapp–baseapp) is cut.
/// Then everyone stills and the world settles. Returns every check that
/// failed (tagged with its name) and how many connections were cut.
fn dropped_links(seed: u64, faults: LinkFaults) -> (Vec<String>, u64) {
    let mut cfg = four_cells(seed);
    cfg.baseapps = 2;
    cfg.faults.links = faults;
    let entities = cfg.cellapps * cfg.npcs + cfg.clients;
    let mut w = SimWorld::new(&cfg);
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x11d5);
    let mut at = 1_000_000;
    for _ in 0..3 {
        at += rng.random_range(0..2_600_000);
        w.run_until(at);
        let apps: Vec<AppId> = w.cellapps().into_iter().chain(w.baseapps()).collect();
        // Some pair has a connection once the world is up; try a few.
        for _ in 0..20 {
            let a = apps[rng.random_range(0..apps.len())];
            let b = apps[rng.random_range(0..apps.len())];
            if a != b && w.drop_link(a, b) > 0 {
                break;
            }
        }
    }
    w.run_until(11_000_000);
    w.freeze();
    w.run_until(14_000_000);
    (w.settled_failures(entities).0, w.stats.links_cut)
}

#[test]
fn dropped_links_between_live_apps_lose_nothing_across_seeds() {
    let mut cut = 0;
    for seed in 1..=SEEDS {
        let (failures, n) = dropped_links(seed, LinkFaults::default());
        if let Some(f) = failures.first() {
            panic!("seed {seed}: {f}\nreplay: dropped_links({seed}, LinkFaults::default())");
        }
        cut += n;
    }
    eprintln!("{SEEDS} seeds: {cut} connections cut");
    assert!(
        cut >= SEEDS * 2,
        "too few connections cut to mean anything: {cut} over {SEEDS} seeds"
    );
}

/// Without sending again what a dropped connection lost, the checks fail.
#[test]
fn a_link_that_does_not_resend_is_caught() {
    let planted = LinkFaults { no_resend: true };
    let caught = (1..=40).find(|seed| !dropped_links(*seed, planted).0.is_empty());
    assert!(
        caught.is_some(),
        "no resend on a new connection: no check caught it in 40 seeds"
    );
}

/// How many heartbeats the manager hears in ten seconds of a world of
/// four cellapps and one baseapp, and the median time between two dials of
/// the manager by the same app while it is down for four seconds, under the
/// given manager-link timing.
fn timing(membership: tessera::membership::MembershipConfig) -> (u64, u64) {
    let cfg = SimConfig {
        membership,
        ..four_cells(7)
    };
    let mut w = SimWorld::new(&cfg);
    let start = w.now;
    let beats = w.stats.heartbeats;
    w.run_until(start + 10_000_000);
    let beats = w.stats.heartbeats - beats;
    let before = w.stats.manager_dials.len();
    w.crash_manager(4_000_000);
    w.run_until(start + 14_000_000);
    let mut last = std::collections::BTreeMap::new();
    let mut gaps = Vec::new();
    for (pid, at) in &w.stats.manager_dials[before..] {
        if let Some(prev) = last.insert(*pid, *at) {
            gaps.push(at - prev);
        }
    }
    gaps.sort_unstable();
    (beats, gaps.get(gaps.len() / 2).copied().unwrap_or(0))
}

/// The simulator runs the cores' own timers: set the heartbeat or the
/// redial interval in the core's settings and the simulated world follows,
/// with nothing to change anywhere else.
#[test]
fn the_cores_timing_drives_the_simulator() {
    let default = tessera::membership::MembershipConfig::default();
    let (beats, gap) = timing(default);
    // Five apps, one beat a second each, for ten seconds.
    assert!((45..=55).contains(&beats), "{beats} heartbeats");
    // Dials start a redial interval apart, and one that goes unanswered
    // is given up after the dial timeout and followed at once.
    let cycle =
        |m: &tessera::membership::MembershipConfig| m.dial_timeout.max(m.redial).as_micros() as u64;
    assert_eq!(gap, cycle(&default), "between two dials");
    let faster = tessera::membership::MembershipConfig {
        heartbeat: Duration::from_millis(250),
        ..default
    };
    let (fast_beats, _) = timing(faster);
    assert!(
        (190..=210).contains(&fast_beats),
        "{fast_beats} heartbeats at 4 a second"
    );
    let slower = tessera::membership::MembershipConfig {
        redial: Duration::from_millis(1_000),
        ..default
    };
    let (_, slow_gap) = timing(slower);
    assert_eq!(
        slow_gap,
        cycle(&slower),
        "between two dials, redialling every second"
    );
}
