//! What a player saves comes back: after logging out and in, and after the
//! whole world is stopped and started again on the same data directory. Also:
//! wrong passwords and mismatched definitions are refused with a reason.

use tessera::client::{Client, ClientError, Setup};
use tessera::proto::login::RefuseReason;
use tessera::Value;
use tessera_tests::{Cluster, ClusterSpec};

use crate::{wait_for, walk_to};

pub(crate) fn prop(client: &Client, setup: &Setup, name: &str) -> Option<Value> {
    let ty = setup.defs.get(client.view.my_type)?;
    client.view.my_props.get(&ty.prop(name)?.index).cloned()
}

/// Walks a few metres, takes `title` and `gold` (persistent properties of
/// the demo's players), and waits to see them: what a saved player must
/// bring back. Returns where it stopped.
pub(crate) async fn leave_a_mark(
    client: &mut Client,
    setup: &Setup,
    title: &str,
    gold: i64,
) -> [f32; 3] {
    let [x, y, z] = client.view.my_pos;
    let target = [(x + 6.0).clamp(1.0, 399.0), y, (z - 4.0).clamp(1.0, 399.0)];
    walk_to(client, target).await;
    client
        .call("set_title", vec![Value::String(title.into())])
        .await
        .expect("call");
    client
        .call("add_gold", vec![Value::Int(gold)])
        .await
        .expect("call");
    wait_for(client, 5, |c, _| {
        prop(c, setup, "title") == Some(Value::String(title.into()))
            && prop(c, setup, "gold") == Some(Value::Int(gold))
    })
    .await
    .expect("own client sees its new title and gold");
    target
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn position_and_properties_survive_logout_and_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = Cluster::start(dir.path(), ClusterSpec::default()).await;
    let mut alice = cluster
        .login("alice", "secret-password", true)
        .await
        .expect("alice logs in");
    let setup = cluster.setup.clone();
    let target = leave_a_mark(&mut alice, &setup, "explorer", 42).await;
    alice.logout().await.expect("logout");

    let check = |c: &Client| {
        assert_eq!(c.view.my_pos, target, "saved position comes back");
        assert_eq!(
            prop(c, &setup, "title"),
            Some(Value::String("explorer".into()))
        );
        assert_eq!(prop(c, &setup, "gold"), Some(Value::Int(42)));
    };
    let again = cluster
        .login("alice", "secret-password", false)
        .await
        .expect("alice logs in again");
    check(&again);
    again.logout().await.expect("logout");

    // The whole world stops and starts again on the same files.
    cluster.stop().await;
    let cluster = Cluster::start(dir.path(), ClusterSpec::default()).await;
    let back = cluster
        .login("alice", "secret-password", false)
        .await
        .expect("alice after restart");
    check(&back);
    back.logout().await.expect("logout");
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsaved_session_is_saved_on_shutdown() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = Cluster::start(dir.path(), ClusterSpec::default()).await;
    let mut bob = cluster
        .login("bob", "password1", true)
        .await
        .expect("bob logs in");
    bob.call("set_title", vec![Value::String("stayed".into())])
        .await
        .expect("call");
    let setup = cluster.setup.clone();
    wait_for(&mut bob, 5, |c, _| {
        prop(c, &setup, "title") == Some(Value::String("stayed".into()))
    })
    .await
    .expect("title set");
    // No logout: the world stops under the player.
    cluster.stop().await;
    drop(bob);
    let cluster = Cluster::start(dir.path(), ClusterSpec::default()).await;
    let back = cluster
        .login("bob", "password1", false)
        .await
        .expect("bob after restart");
    assert_eq!(
        prop(&back, &setup, "title"),
        Some(Value::String("stayed".into()))
    );
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_and_other_definitions_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = Cluster::start(dir.path(), ClusterSpec::default()).await;
    let carol = cluster
        .login("carol", "right-password", true)
        .await
        .expect("carol created");
    carol.logout().await.expect("logout");
    match cluster.login("carol", "wrong", false).await {
        Err(ClientError::LoginRefused {
            reason: RefuseReason::BadCredentials,
            ..
        }) => {}
        Err(e) => panic!("wrong password refused for the wrong reason: {e}"),
        Ok(_) => panic!("wrong password accepted"),
    }

    // A client built with other definitions.
    let mut other = cluster.setup.clone();
    let mut text = tessera_demo::DEFINITIONS_TOML.to_string();
    text.push_str("\n[types.Extra]\nmax_speed = 1.0\n");
    other.defs = std::sync::Arc::new(
        tessera::Definitions::parse(&text, std::path::Path::new("client.toml")).expect("defs"),
    );
    let refused = Client::login_and_connect(
        &cluster.endpoint,
        &other,
        cluster.manager.login_addr,
        "carol",
        "right-password",
        false,
    )
    .await;
    match refused {
        Err(ClientError::LoginRefused {
            reason: RefuseReason::DefinitionsMismatch,
            message,
        }) => assert!(message.contains("definitions digest mismatch"), "{message}"),
        Err(e) => panic!("refused for the wrong reason: {e}"),
        Ok(_) => panic!("mismatched definitions accepted at login"),
    }
    // The baseapp checks too: a valid ticket with another digest.
    let (baseapp, ticket) = tessera::client::login(
        &cluster.endpoint,
        &cluster.setup,
        cluster.manager.login_addr,
        "carol",
        "right-password",
        false,
    )
    .await
    .expect("login");
    match Client::connect_with_digest(
        &cluster.endpoint,
        &cluster.setup,
        baseapp,
        ticket,
        other.defs.digest,
    )
    .await
    {
        Err(ClientError::Refused(reason)) => {
            assert!(reason.contains("definitions digest mismatch"), "{reason}")
        }
        Err(e) => panic!("refused for the wrong reason: {e}"),
        Ok(_) => panic!("mismatched definitions accepted by the baseapp"),
    }
    // A ticket is good for one connection only.
    match Client::connect(&cluster.endpoint, &cluster.setup, baseapp, ticket).await {
        Err(ClientError::Refused(reason)) => assert!(reason.contains("ticket"), "{reason}"),
        Err(e) => panic!("reused ticket refused for the wrong reason: {e}"),
        Ok(_) => panic!("a ticket was used twice"),
    }
    cluster.stop().await;
}
