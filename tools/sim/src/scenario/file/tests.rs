use super::*;

/// The error reading `text`, as a string.
fn refused(text: &str) -> String {
    match Scenario::parse(text, "lab.toml") {
        Ok(s) => panic!("read {s:?}"),
        Err(e) => e.to_string(),
    }
}

const HEAD: &str = "name = \"lab\"\nduration = 60\ncellapps = 4\nnpcs = 1000\n";

#[test]
fn every_built_in_scenario_reads() {
    for (name, text) in BUILT_IN {
        let s = Scenario::parse(text, name).expect(name);
        assert_eq!(s.name, name);
        assert!(!s.about.is_empty(), "{name} says what happens");
        assert_eq!(Scenario::load(name).expect(name), s);
    }
    let join = Scenario::load("join").expect("join");
    assert_eq!(join.events.len(), 1);
    assert_eq!(join.events[0].change, Change::Join(1));
    assert_eq!(join.events[0].at.at(300), 100.0);
    let moving = Scenario::load("moving-hotspot").expect("moving");
    let MotionSpec::Gather { track, .. } = &moving.groups[0].motion else {
        panic!("{:?}", moving.groups[0].motion);
    };
    assert_eq!(
        track.iter().map(|(w, _, _)| w.at(300)).collect::<Vec<_>>(),
        [5.0, 60.0, 270.0]
    );
    assert_eq!(moving.groups[0].from, When::Seconds(5.0));
}

#[test]
fn a_scenario_with_every_motion_reads() {
    let text = format!(
        "{HEAD}clients = 200\nclient_aoi = 80\n\
         [cost]\nwitness_us = 60\n\
         [[event]]\nat = \"50%\"\njoin = 2\n\
         [[event]]\nat = 50\nretire = 1\n\
         [[group]]\nwho = \"npcs\"\nshare = 0.2\nmotion = \"wander\"\nspeed = 2\n\
         [[group]]\nwho = \"npcs\"\nshare = 0.3\nfrom = 10\nuntil = \"90%\"\nmotion = \"path\"\n\
         path = [[0.1, 0.1], [0.9, 0.1]]\npace = 3\nloop = true\nradius = 0.05\n\
         [[group]]\nwho = \"clients\"\nshare = 0.5\nmotion = \"converge\"\nat = [0.5, 0.5]\nradius = 0.1\n\
         [[group]]\nwho = \"clients\"\nshare = 0.5\nmotion = \"waypoints\"\n\
         waypoints = [[\"1/4\", 0.2, 0.2], [40, 0.8, 0.8]]\nradius = 0.1\n"
    );
    let s = Scenario::parse(&text, "lab.toml").expect("reads");
    assert_eq!((s.clients, s.client_aoi), (200, Some(80.0)));
    assert_eq!(s.cost.witness_us, 60.0);
    assert_eq!(s.cost.real_us, CostModel::default().real_us);
    assert_eq!(s.events[0].at.at(60), 30.0);
    assert_eq!(s.events[1].change, Change::Retire(1));
    assert_eq!(s.groups.len(), 4);
    assert_eq!(s.groups[1].until, Some(When::Share(0.9)));
    assert!(matches!(
        s.groups[1].motion,
        MotionSpec::Path { looped: true, .. }
    ));
    // A waypoints group starts with its first waypoint.
    assert_eq!(s.groups[3].from, When::Share(0.25));
    assert_eq!(s.groups[3].line, Some(36), "its [[group]] line");
}

#[test]
fn bad_files_are_refused_naming_the_key_and_line() {
    let cases: &[(&str, &[&str])] = &[
        // TOML's own checks: unknown keys and wrong types, with the line.
        ("nmae = \"x\"\n", &["unknown field `nmae`", "line 1"]),
        (
            "name = \"x\"\nduration = \"long\"\ncellapps = 4\n",
            &["duration", "line 2"],
        ),
        (
            &format!("{HEAD}[[group]]\nwho = \"npcs\"\nmotion = \"teleport\"\n"),
            &["teleport", "line 7"],
        ),
        (
            &format!("{HEAD}[[group]]\nwho = \"bots\"\nmotion = \"wander\"\n"),
            &["bots", "line 6"],
        ),
        // Ours: bounds, missing and stray keys, times, shares.
        (
            "name = \"x\"\nduration = 60\ncellapps = 65\n",
            &["cellapps (line 3)", "1 to 64"],
        ),
        (
            &format!("{HEAD}size = 10\n"),
            &["size (line 5)", "out of bounds"],
        ),
        (
            &format!("{HEAD}[[group]]\nwho = \"npcs\"\nmotion = \"gather\"\nradius = 0.1\n"),
            &["group[1].at (line 5)", "missing"],
        ),
        (
            &format!(
                "{HEAD}[[group]]\nwho = \"npcs\"\nmotion = \"gather\"\nat = [1.5, 0.5]\nradius = 0.1\n"
            ),
            &["group[1].at", "outside the space"],
        ),
        (
            &format!(
                "{HEAD}[[group]]\nwho = \"npcs\"\nmotion = \"wander\"\nwaypoints = [[1, 0.5, 0.5]]\n"
            ),
            &["group[1].waypoints", "does not apply"],
        ),
        (
            &format!(
                "{HEAD}[[group]]\nwho = \"npcs\"\nmotion = \"wander\"\nfrom = \"soon\"\n"
            ),
            &["group[1].from", "\"soon\" is not a time"],
        ),
        (
            &format!("{HEAD}[[group]]\nwho = \"npcs\"\nmotion = \"wander\"\nfrom = \"150%\"\n"),
            &["group[1].from", "within the run"],
        ),
        (
            &format!(
                "{HEAD}[[group]]\nwho = \"npcs\"\nshare = 0.7\nmotion = \"wander\"\n\
                 [[group]]\nwho = \"npcs\"\nshare = 0.6\nmotion = \"wander\"\n"
            ),
            &["group.share (line 9)", "130 %"],
        ),
        (
            &format!("{HEAD}[[event]]\nat = 10\njoin = 1\nretire = 1\n"),
            &["event[1] (line 5)", "one of join"],
        ),
        (
            &format!("{HEAD}[[group]]\nwho = \"npcs\"\nmotion = \"path\"\npath = [[0.1, 0.1]]\npace = 2\n"),
            &["group[1].path", "two points"],
        ),
    ];
    for (text, wanted) in cases {
        let e = refused(text);
        assert!(e.starts_with("scenario lab.toml: "), "{e}");
        for w in *wanted {
            assert!(e.contains(w), "{text:?}: {e:?} lacks {w:?}");
        }
    }
}

#[test]
fn a_name_that_is_neither_built_in_nor_a_file_is_refused() {
    let e = Scenario::load("no-such-scenario").expect_err("refused");
    let text = e.to_string();
    assert!(
        text.contains("no-such-scenario") && text.contains("moving-hotspot"),
        "{text}"
    );
}

#[test]
fn waypoints_that_a_short_run_puts_out_of_order_are_refused_saying_where_they_fell() {
    // moving-hotspot's centre waits at 5 s, then at 20 % and 90 % of the
    // run: in a 5-second run those are 1 s and 4.5 s (rounded to 5 s).
    let mut s = Scenario::load("moving-hotspot").expect("built in");
    s.duration = 5;
    let e = crate::scenario::Spec::new(s, 1, 1, None).expect_err("refused");
    let text = e.to_string();
    assert!(
        text.contains("group (line 10)") && text.contains("in a run of 5 s they fall at 5 s, 1 s"),
        "{text}"
    );
}
