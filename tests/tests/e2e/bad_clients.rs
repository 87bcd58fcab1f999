//! Clients that misbehave lose their own connection, with a reason that is
//! logged and sent to them; a well-behaved client beside them carries on.

use std::time::Duration;
use tessera::client::{ClientError, Event};
use tessera::frame::frame_bytes;
use tessera::Value;
use tessera_tests::{logs, Cluster, ClusterSpec};

use crate::{wait_closed, wait_for};

fn reason(e: Option<ClientError>) -> String {
    match e {
        Some(e) => e.to_string(),
        None => panic!("the offender was not disconnected"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offenders_are_disconnected_and_others_carry_on() {
    logs();
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = Cluster::start(
        dir.path(),
        ClusterSpec {
            npcs: 50,
            size: 200.0,
            ..Default::default()
        },
    )
    .await;
    let mut good = cluster
        .login("good", "password1", true)
        .await
        .expect("good client");

    let mut garbage = cluster
        .login("garbage", "password1", true)
        .await
        .expect("login");
    garbage
        .send_raw(&frame_bytes(&[0xff, 0xff, 0xff, 0xff, 0xff]))
        .await
        .expect("sent");
    let why = reason(wait_closed(&mut garbage, 5).await);
    assert!(why.contains("undecodable frame"), "{why}");

    let mut oversize = cluster
        .login("oversize", "password1", true)
        .await
        .expect("login");
    oversize
        .send_raw(&(10_000_000u32).to_le_bytes())
        .await
        .expect("sent");
    let why = reason(wait_closed(&mut oversize, 5).await);
    assert!(why.contains("exceeds the limit"), "{why}");

    let mut bad_datagram = cluster
        .login("baddgram", "password1", true)
        .await
        .expect("login");
    bad_datagram.send_raw_datagram(vec![7; 12]).expect("sent");
    let why = reason(wait_closed(&mut bad_datagram, 5).await);
    assert!(why.contains("undecodable datagram"), "{why}");

    let mut nan = cluster
        .login("nan", "password1", true)
        .await
        .expect("login");
    nan.send_move([f32::NAN, 0.0, 1.0], 0.0).expect("sent");
    let why = reason(wait_closed(&mut nan, 5).await);
    assert!(why.contains("non-finite"), "{why}");

    let mut forbidden = cluster
        .login("forbidden", "password1", true)
        .await
        .expect("login");
    forbidden
        .call("set_health", vec![Value::Int(1_000_000)])
        .await
        .expect("sent");
    let why = reason(wait_closed(&mut forbidden, 5).await);
    assert!(why.contains("may not be called by clients"), "{why}");

    let mut wrong_args = cluster
        .login("wrongargs", "password1", true)
        .await
        .expect("login");
    wrong_args
        .call("set_title", vec![Value::Int(3)])
        .await
        .expect("sent");
    let why = reason(wait_closed(&mut wrong_args, 5).await);
    assert!(why.contains("argument 0"), "{why}");

    // Too fast: the move is refused and the client is put back, but keeps its connection.
    let mut speeder = cluster
        .login("speeder", "password1", true)
        .await
        .expect("login");
    let start = speeder.view.my_pos;
    let far = [
        (start[0] + 150.0) % 200.0,
        start[1],
        (start[2] + 150.0) % 200.0,
    ];
    speeder.send_move(far, 0.0).expect("sent");
    let ev = wait_for(&mut speeder, 5, |_, e| matches!(e, Event::Corrected { .. }))
        .await
        .expect("corrected");
    match ev {
        Event::Corrected { reason } => assert!(reason.contains("allowed"), "{reason}"),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(
        speeder.view.my_pos, start,
        "the client is put back where it was"
    );
    let truth = cluster.cellapps[0].snapshot().await;
    let real = truth
        .iter()
        .find(|s| s.id == speeder.view.me)
        .expect("speeder is real");
    assert_eq!(real.pos.to_array(), start, "the server did not move it");
    assert!(
        speeder.close_reason().is_none(),
        "a refused move costs no connection"
    );

    // Every disconnection was logged with its reason.
    let log = logs();
    for needle in [
        "undecodable frame",
        "exceeds the limit",
        "undecodable datagram",
        "non-finite",
        "may not be called by clients",
    ] {
        assert!(log.contains(needle), "no log line says {needle:?}");
    }

    // The good client is still connected and still gets updates.
    let mut updates = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while updates < 5 {
        match tokio::time::timeout_at(deadline, good.next_event()).await {
            Ok(Ok(Event::Positions { count, .. })) => updates += count,
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!("the good client lost its connection: {e}"),
            Err(_) => panic!("the good client stopped getting updates"),
        }
    }
    assert!(good.close_reason().is_none());
    cluster.stop().await;
}

/// Game calls that break the definitions cost the caller its connection,
/// with the reason: a method only the server may call, an argument of the
/// wrong shape, a list over the limit, a map with the wrong keys, and an
/// entity the client has never been shown. A player beside them plays on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_game_calls_cost_only_the_caller() {
    logs();
    // The arena, with two more exposed methods that take a list and a map.
    let text = tessera_arena::DEFINITIONS_TOML
        .replace(
            "[types.Fighter.methods]\n",
            "[types.Fighter.methods]\nbulk = { side = \"cell\", args = [\"list<int>\"], exposed = true }\ntrade = { side = \"cell\", args = [\"Offer\"], exposed = true }\n",
        )
        + "\n[maps.Offer]\nitem = \"string\"\ncount = \"int\"\n";
    let defs = tessera::Definitions::parse(&text, std::path::Path::new("arena+.toml"))
        .expect("the extended arena's definitions");
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = Cluster::start(
        dir.path(),
        ClusterSpec {
            npcs: 20,
            size: 200.0,
            game: tessera_arena::game().replace_definitions(defs),
            ..Default::default()
        },
    )
    .await;
    let mut good = cluster
        .login("good", "password1", true)
        .await
        .expect("good client");
    let offences: [(&str, &str, Vec<Value>, &str); 6] = [
        (
            "serveronly",
            "take_hit",
            vec![Value::Int(5), Value::Entity(tessera::EntityId(1))],
            "may not be called by clients",
        ),
        (
            "shape",
            "attack",
            vec![Value::Int(5)],
            "expected entity, got int",
        ),
        (
            "longlist",
            "bulk",
            vec![Value::List(vec![Value::Int(1); 257])],
            "longer than the limit",
        ),
        (
            "nested",
            "bulk",
            vec![Value::List(vec![Value::List(vec![])])],
            "expected int, got list",
        ),
        (
            "badmap",
            "trade",
            vec![Value::Map(vec![Value::String("axe".into())])],
            "map Offer has 2 keys, got 1 values",
        ),
        (
            "unseen",
            "attack",
            vec![Value::Entity(tessera::EntityId(987_654_321))],
            "which this client has not seen",
        ),
    ];
    for (name, method, args, says) in offences {
        let mut offender = cluster.login(name, "password1", true).await.expect("login");
        offender.call(method, args).await.expect("sent");
        let why = reason(wait_closed(&mut offender, 5).await);
        assert!(why.contains(says), "{name}: {why}");
    }
    // The good player is still in the world, and its calls still work.
    good.call("join_guild", vec![Value::String("guild1".into())])
        .await
        .expect("a good call");
    wait_for(&mut good, 5, |c, e| {
        matches!(e, Event::Props(id) if *id == c.view.me)
            && c.view
                .my_props
                .values()
                .any(|v| v.as_str() == Some("guild1"))
    })
    .await
    .expect("the good player joined its guild");
    cluster.stop().await;
}
