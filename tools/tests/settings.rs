//! A bad configuration stops a process at start, with a message that names
//! the problem: an unknown key (with its line), a value of the wrong type,
//! an address to advertise that nobody could reach, a database that does
//! not answer. The real binary, run as an operator would.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_tessera");

/// Runs `tessera <args>` in `dir`; it must fail within 30 s. Returns what
/// it printed on standard error.
fn fails(dir: &Path, args: &[&str]) -> String {
    let mut child = Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env("RUST_LOG", "error")
        .env("RUST_BACKTRACE", "0")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("tessera starts");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let out = child.wait_with_output().expect("output");
            let err = String::from_utf8_lossy(&out.stderr).into_owned();
            assert!(!status.success(), "tessera {args:?} started: {err}");
            return err;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("tessera {args:?} did not stop at start");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_bad_configuration_stops_the_process_naming_the_problem() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let data = d.join("data");
    tessera::net::ca::init(&data).expect("cluster CA");
    let data_arg = data.display().to_string();

    std::fs::write(
        d.join("tessera.toml"),
        "[cellapp]\nseed = 1\nbogus_key = 3\n",
    )
    .expect("file");
    let err = fails(d, &["cellapp", "--data", &data_arg]);
    assert!(err.contains("bogus_key") && err.contains("line 3"), "{err}");

    std::fs::write(d.join("tessera.toml"), "[manager]\ntick_hz = \"fast\"\n").expect("file");
    let err = fails(d, &["manager", "--data", &data_arg]);
    assert!(err.contains("tick_hz") || err.contains("line 2"), "{err}");
    assert!(err.contains("string"), "{err}");
    std::fs::remove_file(d.join("tessera.toml")).expect("file");

    // A policy the game does not have, named with those it has.
    let err = fails(d, &["manager", "--data", &data_arg, "--policy", "fastest"]);
    assert!(
        err.contains("manager.policy") && err.contains("fastest") && err.contains("bigworld"),
        "{err}"
    );

    // Bound to every interface with nothing to advertise: refused before
    // it asks the manager anything.
    let err = fails(
        d,
        &[
            "cellapp",
            "--data",
            &data_arg,
            "--bind",
            "0.0.0.0:0",
            "--manager",
            "127.0.0.1:9",
        ],
    );
    assert!(
        err.contains("0.0.0.0") && err.contains("advertise"),
        "{err}"
    );

    // A database nobody answers for: named, without its password.
    let err = fails(
        d,
        &[
            "baseapp",
            "--data",
            &data_arg,
            "--database",
            "postgres://tessera:hunter2@127.0.0.1:1/world",
        ],
    );
    assert!(
        err.contains("127.0.0.1:1") && err.contains("cannot reach"),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "{err}");
}
