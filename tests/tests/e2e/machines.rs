//! What a world spread over machines needs: its data in PostgreSQL rather
//! than in a data directory, and a certificate of its own on the public
//! ports. The PostgreSQL test needs `TESSERA_TEST_POSTGRES` (a server where
//! it may create a schema); without one it says so and checks nothing,
//! unless `TESSERA_POSTGRES_TESTS=required` (as `.ci/run` sets).

use std::path::Path;
use tessera::client::ClientError;
use tessera::net::PublicCert;
use tessera::storage::Location;
use tessera::Value;
use tessera_tests::{Cluster, ClusterSpec};

use crate::persistence::{leave_a_mark, prop};

/// A schema of this test's own on the test server, dropped after.
struct Schema {
    server: String,
    name: String,
}

impl Schema {
    async fn new() -> Option<Schema> {
        let server = match std::env::var("TESSERA_TEST_POSTGRES") {
            Ok(url) if !url.is_empty() => url,
            _ => {
                let required =
                    std::env::var("TESSERA_POSTGRES_TESTS").is_ok_and(|v| v == "required");
                assert!(
                    !required,
                    "TESSERA_POSTGRES_TESTS=required but no TESSERA_TEST_POSTGRES"
                );
                eprintln!("skipped: no PostgreSQL server (TESSERA_TEST_POSTGRES is not set)");
                return None;
            }
        };
        let name = format!("tessera_e2e_{}", std::process::id());
        admin(
            &server,
            &format!("DROP SCHEMA IF EXISTS {name} CASCADE; CREATE SCHEMA {name};"),
        )
        .await;
        Some(Schema { server, name })
    }

    fn location(&self) -> Location {
        let sep = if self.server.contains('?') { '&' } else { '?' };
        Location::Postgres(format!(
            "{}{sep}options=-c%20search_path%3D{}",
            self.server, self.name
        ))
    }

    async fn drop_it(self) {
        admin(
            &self.server,
            &format!("DROP SCHEMA IF EXISTS {} CASCADE;", self.name),
        )
        .await;
    }
}

async fn admin(url: &str, sql: &str) {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("the test server answers");
    let driven = tokio::spawn(conn);
    client.batch_execute(sql).await.expect("admin SQL");
    drop(client);
    let _ = driven.await;
}

/// Two worlds, one after the other, with nothing in common but the
/// database: a player made and saved by the first comes back whole in the
/// second, whose data directory holds no database at all. (With SQLite,
/// the second would not know the account.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn players_live_in_postgres_not_in_a_data_directory() {
    let Some(schema) = Schema::new().await else {
        return;
    };
    let spec = || ClusterSpec {
        baseapps: 2,
        database: Some(schema.location()),
        ..ClusterSpec::default()
    };
    let first = tempfile::tempdir().expect("tempdir");
    let cluster = Cluster::start(first.path(), spec()).await;
    let mut alice = cluster
        .login("alice", "secret-password", true)
        .await
        .expect("alice logs in");
    let setup = cluster.setup.clone();
    let target = leave_a_mark(&mut alice, &setup, "wanderer", 7).await;
    alice.logout().await.expect("logout");
    cluster.stop().await;
    assert!(
        !first.path().join("world.db").exists(),
        "nothing went to SQLite"
    );

    let second = tempfile::tempdir().expect("tempdir");
    let cluster = Cluster::start(second.path(), spec()).await;
    for i in 0..2 {
        // Two logins: with two baseapps, each is likely served by another.
        let back = cluster
            .login("alice", "secret-password", false)
            .await
            .unwrap_or_else(|e| panic!("alice on a new machine ({i}): {e}"));
        assert_eq!(back.view.my_pos, target);
        assert_eq!(
            prop(&back, &setup, "title"),
            Some(Value::String("wanderer".into()))
        );
        assert_eq!(prop(&back, &setup, "gold"), Some(Value::Int(7)));
        back.logout().await.expect("logout");
    }
    assert!(
        !second.path().join("world.db").exists(),
        "nothing went to SQLite"
    );
    cluster.stop().await;
    schema.drop_it().await;
}

/// Writes a CA and a certificate it signed for `name` as PEM files.
fn issue(dir: &Path, name: &str) -> (std::path::PathBuf, std::path::PathBuf, Vec<u8>) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).expect("CA");
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().expect("key");
    let cert = CertificateParams::new(vec![name.to_string()])
        .expect("params")
        .signed_by(&key, &issuer)
        .expect("certificate");
    let (cert_file, key_file) = (dir.join("play.pem"), dir.join("play.key.pem"));
    std::fs::write(&cert_file, cert.pem()).expect("write");
    std::fs::write(&key_file, key.serialize_pem()).expect("write");
    (cert_file, key_file, ca.der().to_vec())
}

/// The public ports present a certificate a CA issued for the world's own
/// name: a client trusting that CA and expecting that name gets in; one
/// expecting another name does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_public_ports_present_a_certificate_of_the_worlds_own() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key, ca) = issue(dir.path(), "play.example.test");
    let mut cluster = Cluster::start(
        dir.path(),
        ClusterSpec {
            public_cert: PublicCert::Pem { cert, key },
            ..ClusterSpec::default()
        },
    )
    .await;
    cluster.setup.trust = ca.into();
    cluster.setup.server_name = "play.example.test".into();
    let player = cluster
        .login("carol", "secret-password", true)
        .await
        .expect("a client that trusts the CA and expects the name gets in");
    player.logout().await.expect("logout");

    cluster.setup.server_name = tessera::net::SERVER_NAME.into();
    match cluster.login("carol", "secret-password", false).await {
        Err(ClientError::Net(_)) => {}
        Err(other) => panic!("refused for another reason: {other}"),
        Ok(_) => panic!("a client expecting another name got in"),
    }
    cluster.stop().await;
}
