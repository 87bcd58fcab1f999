use super::*;

fn group(share: f32, motion: Motion) -> Group {
    Group {
        share,
        from: 10.0,
        until: 50.0,
        speed: Some(5.0),
        motion,
    }
}

#[test]
fn a_gathering_follows_its_waypoints() {
    let m = Motion::Gather {
        track: vec![(10.0, 0.0, 0.0), (20.0, 100.0, 50.0)],
        radius: 10.0,
    };
    assert_eq!(m.centre(5.0, 10.0), None);
    assert_eq!(m.centre(10.0, 10.0), Some((0.0, 0.0)));
    assert_eq!(m.centre(15.0, 10.0), Some((50.0, 25.0)));
    assert_eq!(m.centre(99.0, 10.0), Some((100.0, 50.0)));
}

#[test]
fn groups_take_their_shares_and_members_their_places() {
    let crowds = Crowds {
        groups: vec![
            group(
                0.5,
                Motion::Gather {
                    track: vec![(10.0, 0.0, 0.0)],
                    radius: 10.0,
                },
            ),
            group(0.25, Motion::Wander),
        ],
    };
    let (mut gathered, mut wandering, mut free) = (0, 0, 0);
    for id in 0..10_000 {
        match crowds.way(20.0, id, (500.0, 500.0)) {
            Way::To(x, z, speed) => {
                gathered += 1;
                assert!((x * x + z * z).sqrt() <= 10.0 + 1e-3);
                assert_eq!(speed, Some(5.0));
            }
            Way::Wander(Some(_)) => wandering += 1,
            Way::Wander(None) => free += 1,
        }
        // Outside the window everyone wanders at the type's pace.
        assert_eq!(crowds.way(5.0, id, (0.0, 0.0)), Way::Wander(None));
        assert_eq!(crowds.way(50.0, id, (0.0, 0.0)), Way::Wander(None));
    }
    assert!((4_500..5_500).contains(&gathered), "{gathered}");
    assert!((2_200..2_800).contains(&wandering), "{wandering}");
    assert!((2_200..2_800).contains(&free), "{free}");
}

#[test]
fn a_path_is_walked_at_its_pace_and_round_again_when_looped() {
    let points = vec![(0.0, 0.0), (100.0, 0.0), (100.0, 100.0)];
    assert_eq!(along(&points, false, 50.0), Some((50.0, 0.0)));
    assert_eq!(along(&points, false, 150.0), Some((100.0, 50.0)));
    assert_eq!(along(&points, false, 1_000.0), Some((100.0, 100.0)));
    // Looped: 100 + 100 + 141.4 m round, then from the start again.
    let round = 200.0 + 2f32.sqrt() * 100.0;
    let (x, z) = along(&points, true, round + 50.0).expect("a point");
    assert!((x - 50.0).abs() < 1e-2 && z.abs() < 1e-2, "{x} {z}");
    let m = Motion::Path {
        points,
        pace: 10.0,
        looped: false,
        radius: 0.0,
    };
    assert_eq!(m.centre(15.0, 10.0), Some((50.0, 0.0)));
}

#[test]
fn converging_members_keep_their_bearing_and_stop_short() {
    let crowds = Crowds {
        groups: vec![group(
            1.0,
            Motion::Converge {
                at: (0.0, 0.0),
                radius: 20.0,
            },
        )],
    };
    for id in 0..1_000 {
        let Way::To(x, z, _) = crowds.way(20.0, id, (300.0, 400.0)) else {
            panic!("member {id} wanders");
        };
        let d = (x * x + z * z).sqrt();
        assert!(d <= 20.0 + 1e-3, "{d}");
        // On the line from where it stands to the point.
        assert!((x * 400.0 - z * 300.0).abs() < 1e-2, "{x} {z}");
    }
}
