//! The deployment files in `tools/deploy/` cannot drift from the binary:
//! every `tessera` invocation in them names commands and flags the binary
//! has, every `TESSERA_*` variable is one it reads, their settings file
//! loads, and every port a container opens is one those settings bind.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

/// Every file under `tools/deploy/`, with its text.
fn files() -> Vec<(PathBuf, String)> {
    fn walk(dir: &Path, out: &mut Vec<(PathBuf, String)>) {
        for entry in std::fs::read_dir(dir).expect("deploy directory") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else {
                let text = std::fs::read_to_string(&path).expect("text file");
                out.push((path, text));
            }
        }
    }
    let mut out = Vec::new();
    walk(&deploy_dir(), &mut out);
    out.sort();
    assert!(out.len() >= 6, "the deployment files are missing: {out:?}");
    out
}

/// The words of one command: a shell command's, or a YAML list's.
fn words(segment: &str) -> Vec<String> {
    segment
        .split(|c: char| c.is_whitespace() || c == ',')
        .map(|w| w.trim_matches(|c| matches!(c, '[' | ']' | '"' | '\'')))
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

/// The `tessera` invocations on a line: the words after `tessera` in a
/// shell command, or a YAML list given to the image (whose entrypoint is
/// `tessera`).
fn invocations(line: &str, top: &clap::Command) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    let list = line.trim_start().trim_start_matches("- ");
    for key in ["args:", "command:"] {
        if let Some(rest) = list.strip_prefix(key) {
            let w = words(rest);
            if w.first().is_some_and(|c| top.find_subcommand(c).is_some()) {
                found.push(w);
            }
        }
    }
    for segment in line.split("&&").flat_map(|s| s.split(';')) {
        let w = words(segment);
        if let Some(at) = w.iter().position(|x| x == "tessera") {
            if w.get(at + 1)
                .is_some_and(|c| top.find_subcommand(c).is_some())
            {
                found.push(w[at + 1..].to_vec());
            }
        }
    }
    found
}

/// Checks one invocation's commands and flags against the binary's.
fn check(words: &[String], top: &clap::Command, at: &str) {
    let mut cmd = top;
    let mut flags: BTreeSet<String> = top
        .get_arguments()
        .filter_map(|a| a.get_long().map(str::to_string))
        .collect();
    for w in words {
        if let Some(flag) = w.strip_prefix("--") {
            let flag = flag.split('=').next().unwrap_or(flag);
            assert!(
                flags.contains(flag),
                "{at}: `tessera {}` has no flag --{flag}",
                cmd.get_name()
            );
        } else if let Some(sub) = cmd.find_subcommand(w) {
            cmd = sub;
            flags.extend(
                cmd.get_arguments()
                    .filter_map(|a| a.get_long().map(str::to_string)),
            );
        }
    }
}

#[test]
fn every_invocation_names_commands_and_flags_the_binary_has() {
    let top = tessera_tools::command();
    let mut seen = 0;
    for (path, text) in files() {
        for (n, line) in text.lines().enumerate() {
            for words in invocations(line, &top) {
                check(&words, &top, &format!("{}:{}", path.display(), n + 1));
                seen += 1;
            }
        }
    }
    // The compose file and the three workloads all start processes.
    assert!(seen >= 10, "only {seen} invocations found");
}

#[test]
fn every_variable_is_one_the_binary_reads() {
    let top = tessera_tools::command();
    let mut known: BTreeSet<String> = tessera_tools::config::variables().into_iter().collect();
    fn clap_env(cmd: &clap::Command, into: &mut BTreeSet<String>) {
        for a in cmd.get_arguments() {
            if let Some(e) = a.get_env() {
                into.insert(e.to_string_lossy().into_owned());
            }
        }
        for sub in cmd.get_subcommands() {
            clap_env(sub, into);
        }
    }
    clap_env(&top, &mut known);
    let mut seen = 0;
    for (path, text) in files() {
        for (at, _) in text.match_indices("TESSERA_") {
            let name: String = text[at..]
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            assert!(
                known.contains(&name),
                "{}: {name} is not a variable tessera reads",
                path.display()
            );
            seen += 1;
        }
    }
    assert!(seen >= 10, "only {seen} variables found");
}

#[test]
fn every_port_a_container_opens_is_one_the_settings_bind() {
    let settings = tessera_tools::config::load(
        Some(&deploy_dir().join("tessera.toml")),
        &tessera_tools::config::NoFlags {},
    )
    .expect("the deployment's settings file loads")
    .settings;
    let bound: BTreeSet<u16> = [
        settings.manager.internal.port(),
        settings.manager.login.port(),
        settings.manager.admin.port(),
        settings.cellapp.bind.port(),
        settings.cellapp.admin.port(),
        settings.baseapp.bind.port(),
        settings.baseapp.public.port(),
        settings.baseapp.admin.port(),
    ]
    .into_iter()
    .collect();
    assert!(
        !bound.contains(&0),
        "a deployment binds fixed ports: {bound:?}"
    );
    const POSTGRES: u16 = 5432;
    let mut seen = BTreeSet::new();
    for (path, text) in files() {
        let mut ports = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if let Some(rest) = line.strip_prefix("EXPOSE") {
                ports.extend(
                    rest.split_whitespace()
                        .filter_map(|p| p.split('/').next()?.parse::<u16>().ok()),
                );
            }
            // Kubernetes: a container's ports, a service's, a probe's.
            for key in ["containerPort:", "hostPort:", " port:", "{ port:"] {
                for (at, _) in line.match_indices(key) {
                    let digits: String = line[at + key.len()..]
                        .trim_start()
                        .chars()
                        .take_while(char::is_ascii_digit)
                        .collect();
                    ports.extend(digits.parse::<u16>().ok());
                }
            }
            // Compose: "HOST:CONTAINER/proto", the container's side.
            if let Some(mapping) = line.strip_prefix("- \"").and_then(|m| m.strip_suffix('"')) {
                let container = mapping.split('/').next().and_then(|m| m.rsplit(':').next());
                ports.extend(container.and_then(|p| p.parse::<u16>().ok()));
            }
        }
        for p in ports {
            assert!(
                bound.contains(&p) || p == POSTGRES,
                "{}: port {p} is not one the settings bind ({bound:?})",
                path.display()
            );
            seen.insert(p);
        }
    }
    // Each role's ports appear somewhere.
    for p in &bound {
        assert!(
            seen.contains(p),
            "port {p} is bound but no deployment file opens it"
        );
    }
}
