use super::*;
use crate::roles::{CellappArgs, ManagerArgs};
use std::io::Write;

fn file(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().expect("temp file");
    f.write_all(text.as_bytes()).expect("write");
    f
}

fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn load_err(text: &str, env: &[(&str, &str)]) -> String {
    let f = file(text);
    match load_with(Some(f.path()), vars(env), &NoFlags {}) {
        Ok(_) => panic!("{text:?} with {env:?} was taken"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn the_defaults_are_within_their_bounds_and_every_key_is_shown() {
    let loaded = load_with(None, Vec::new(), &NoFlags {}).expect("defaults load");
    assert_eq!(loaded.settings, Settings::default());
    let shown = loaded.render();
    for key in keys::all() {
        let name = key.rsplit('.').next().unwrap_or(&key);
        assert!(
            shown.contains(&format!("{name} = "))
                || shown.contains(&format!("# {name} is not set")),
            "{key} missing from\n{shown}"
        );
    }
    // What `tessera config` prints is itself a settings file giving the same.
    let again = file(&shown);
    let reread =
        load_with(Some(again.path()), Vec::new(), &NoFlags {}).expect("rendered file loads");
    assert_eq!(reread.settings, loaded.settings);
}

#[test]
fn keys_come_from_the_settings_types() {
    let all = keys::all();
    assert!(all.contains(&"link_timeout_ms".to_string()));
    assert!(all.contains(&"cellapp.client_budget".to_string()));
    assert!(all.contains(&"baseapp.resume_grace_secs".to_string()));
    assert!(!all
        .iter()
        .any(|k| k == "manager" || k == "cellapp" || k == "baseapp"));
    assert_eq!(
        keys::from_env("cellapp_client_budget").as_deref(),
        Some("cellapp.client_budget")
    );
    assert_eq!(keys::from_env("data").as_deref(), Some("data"));
    assert_eq!(keys::from_env("log_json"), None);
}

#[test]
fn an_unknown_key_in_the_file_names_the_key_and_its_line() {
    let e = load_err("data = \"d\"\n\n[cellapp]\nclient_budgte = 9000\n", &[]);
    assert!(e.contains("line 4"), "{e}");
    assert!(e.contains("client_budgte"), "{e}");
    let e = load_err("[cellap]\nseed = 3\n", &[]);
    assert!(e.contains("line 1") && e.contains("cellap"), "{e}");
}

#[test]
fn a_value_of_the_wrong_type_names_its_line_or_its_variable() {
    let e = load_err("[manager]\ntick_hz = \"fast\"\n", &[]);
    assert!(e.contains("line 2") && e.contains("string"), "{e}");
    let e = load_err("", &[("TESSERA_CELLAPP_SEED", "seven")]);
    assert!(
        e.contains("cellapp.seed") && e.contains("TESSERA_CELLAPP_SEED"),
        "{e}"
    );
    let e = load_err("", &[("TESSERA_MANAGER_INTERNAL", "nowhere")]);
    assert!(
        e.contains("manager.internal") && e.contains("TESSERA_MANAGER_INTERNAL"),
        "{e}"
    );
}

#[test]
fn a_value_out_of_bounds_names_its_key_and_origin() {
    let e = load_err("[cellapp]\nclient_budget = 5\n", &[]);
    assert!(
        e.contains("cellapp.client_budget") && e.contains("5 is not between"),
        "{e}"
    );
    let e = load_err("", &[("TESSERA_LINK_TIMEOUT_MS", "99")]);
    assert!(
        e.contains("link_timeout_ms") && e.contains("TESSERA_LINK_TIMEOUT_MS"),
        "{e}"
    );
    let e = load_err("[manager]\npolicy = \"Fastest!\"\n", &[]);
    assert!(
        e.contains("manager.policy") && e.contains("Fastest!"),
        "{e}"
    );
    let e = load_err("[manager]\nrejoin_window_ms = 500\n", &[]);
    assert!(e.contains("longer than link_timeout_ms"), "{e}");
    let e = load_err("[manager]\npassword_iterations = 0\n", &[]);
    assert!(e.contains("hash cost"), "{e}");
    let e = load_err("[baseapp]\nspawn_area = [10.0, 0.0, 5.0, 5.0]\n", &[]);
    assert!(e.contains("baseapp.spawn_area"), "{e}");
}

#[test]
fn an_unknown_variable_under_a_role_is_refused_and_others_are_left_alone() {
    let e = load_err("", &[("TESSERA_CELLAPP_SEEED", "7")]);
    assert!(e.contains("TESSERA_CELLAPP_SEEED"), "{e}");
    let f = file("");
    let env = vars(&[
        ("TESSERA_LOG_JSON", "1"),
        ("TESSERA_BROWSER_TESTS", "required"),
    ]);
    assert!(load_with(Some(f.path()), env, &NoFlags {}).is_ok());
}

#[test]
fn flags_win_over_the_environment_which_wins_over_the_file() {
    let f = file("link_timeout_ms = 900\nclient_timeout_ms = 3000\n[cellapp]\nseed = 2\nclient_budget = 16000\nindex = \"grid\"\n");
    let env = vars(&[
        ("TESSERA_CELLAPP_SEED", "7"),
        ("TESSERA_CELLAPP_CLIENT_BUDGET", "12000"),
    ]);
    let mut flags = CellappArgs::default();
    flags.cellapp.client_budget = Some(20_000);
    flags.common.link_timeout_ms = Some(800);
    let loaded = load_with(Some(f.path()), env, &flags).expect("loads");
    let s = &loaded.settings;
    assert_eq!(s.link_timeout_ms, 800);
    assert_eq!(s.client_timeout_ms, 3000);
    assert_eq!(s.cellapp.seed, 7);
    assert_eq!(s.cellapp.client_budget, 20_000);
    assert_eq!(s.cellapp.index, tessera_cellapp::index::IndexKind::Grid);
    assert_eq!(s.cellapp.npcs, 0);
    assert_eq!(loaded.origin("link_timeout_ms"), "--link-timeout-ms");
    assert_eq!(
        loaded.origin("client_timeout_ms"),
        f.path().display().to_string()
    );
    assert_eq!(loaded.origin("cellapp.seed"), "TESSERA_CELLAPP_SEED");
    assert_eq!(loaded.origin("cellapp.client_budget"), "--client-budget");
    assert_eq!(loaded.origin("cellapp.npcs"), "default");
}

#[test]
fn a_flag_not_given_leaves_the_setting_alone() {
    let f = file("[manager]\nsize = 2000.0\ntick_hz = 20\nadmin_hosts = [\"ops.example\"]\n");
    let mut flags = ManagerArgs::default();
    flags.manager.tick_hz = Some(30);
    let s = load_with(Some(f.path()), Vec::new(), &flags)
        .expect("loads")
        .settings;
    assert_eq!(s.manager.size, 2000.0);
    assert_eq!(s.manager.tick_hz, 30);
    assert_eq!(s.manager.admin_hosts, vec!["ops.example".to_string()]);
}

#[test]
fn a_missing_settings_file_that_was_named_is_an_error() {
    let e = load_with(
        Some(Path::new("/nonexistent/tessera.toml")),
        Vec::new(),
        &NoFlags {},
    )
    .err()
    .map(|e| e.to_string())
    .unwrap_or_default();
    assert!(e.contains("cannot read the settings file"), "{e}");
}

#[test]
fn a_database_is_checked_at_load_and_its_password_never_printed() {
    let e = load_err("database = \"mysql://u:pw@h/db\"\n", &[]);
    assert!(e.contains("database") && !e.contains("pw@"), "{e}");
    let f = file("");
    let env = vars(&[(
        "TESSERA_DATABASE",
        "postgres://tessera:hunter2@db.internal/world",
    )]);
    let loaded = load_with(Some(f.path()), env, &NoFlags {}).expect("loads");
    assert_eq!(
        loaded.settings.database(),
        Ok(tessera::storage::Location::Postgres(
            "postgres://tessera:hunter2@db.internal/world".into()
        ))
    );
    let shown = loaded.render();
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(
        shown.contains(
            "database = \"postgres://tessera:***@db.internal/world\"  # TESSERA_DATABASE"
        ),
        "{shown}"
    );
}

#[test]
fn the_manager_may_be_named_by_host_name() {
    let f = file(
        "[cellapp]\nmanager = \"tessera-manager:7000\"\n[baseapp]\nmanager = \"10.0.0.5:7000\"\n",
    );
    let s = load_with(Some(f.path()), Vec::new(), &NoFlags {})
        .expect("loads")
        .settings;
    assert_eq!(s.cellapp.manager, "tessera-manager:7000");
    for bad in ["tessera-manager", ":7000", "host:port", "a b:7000"] {
        let e = load_err(&format!("[cellapp]\nmanager = {bad:?}\n"), &[]);
        assert!(
            e.contains("cellapp.manager") && e.contains("HOST:PORT"),
            "{bad}: {e}"
        );
    }
}
