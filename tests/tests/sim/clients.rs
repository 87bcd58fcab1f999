//! Simulated clients in the balancing lab: the `town` scenario, 2,000
//! clients with witnesses among 18,000 NPCs, under every policy. The
//! witnesses' cost shows in the loads the cells report (the same world
//! without its clients is measurably lighter, by what the cost model says a
//! witness costs), and every client's view equals the truth at the end.

use tessera_cellapp::load::CostModel;
use tessera_sim::scenario::{self, Overrides, Scenario, Spec};

/// The built-in `town`, cut to `duration` seconds, with `clients`.
fn town(clients: Option<usize>, duration: u32) -> Spec {
    let town = Scenario::load("town").expect("built in").with(&Overrides {
        clients,
        duration: Some(duration),
        ..Overrides::default()
    });
    Spec::new(town, 11, 0, None).expect("a spec")
}

#[test]
fn two_thousand_clients_among_npcs_under_every_policy() {
    let spec = town(None, 20);
    assert_eq!((spec.scenario.clients, spec.scenario.npcs), (2_000, 18_000));
    let mut loads = Vec::new();
    for policy in tessera_manager::balance::POLICIES {
        let s = scenario::run(&spec, policy, &mut |_| {});
        assert_eq!(
            (s.entities_lost, s.entities_duplicated, &s.broken),
            (0, 0, &None),
            "{policy}"
        );
        let c = s.clients.as_ref().expect("the clients' side");
        assert_eq!(c.playing, 2_000, "{policy}: {c:?}");
        assert_eq!(c.views_wrong_at_end, 0, "{policy}: {c:?}");
        assert_eq!(c.corrected, 0, "{policy}: {c:?}");
        assert!(c.aoi_updates_per_client_s > 10.0, "{policy}: {c:?}");
        assert!(c.views_behind < 0.5, "{policy}: {c:?}");
        loads.push(s.mean_load);
    }
    // The same world without its clients: each client adds its real and
    // its witness to the cost of some cell. Spread over 8 cellapps at 10 Hz
    // that is what the model says, to within ghosts and logins.
    let bare = scenario::run(&town(Some(0), 20), "tessera", &mut |_| {});
    assert!(bare.clients.is_none());
    let cost = CostModel::default();
    let expected = 2_000.0 * f64::from(cost.real_us + cost.witness_us) / 8.0 / 100_000.0;
    for (policy, with) in tessera_manager::balance::POLICIES.iter().zip(&loads) {
        let added = with - bare.mean_load;
        assert!(
            (0.7 * expected..1.3 * expected).contains(&added),
            "{policy}: the clients added {added:.4} to the mean load, the model {expected:.4} \
             ({with} with, {} without)",
            bare.mean_load
        );
    }
}
