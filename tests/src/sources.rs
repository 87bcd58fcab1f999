//! The engine names no game: the role crates and the bots' core must not
//! mention a game's entity types or methods, so that a game is only ever
//! its own crate. [`game_names_in_engine`] finds every such mention as a
//! string literal in the engine's sources, test code left out (tests use
//! the demo world's definitions as a fixture).

use std::path::{Path, PathBuf};
use tessera::defs::Definitions;

/// The engine's sources that must name no game: the role crates and the
/// bots' core, relative to the workspace root.
pub const ENGINE: &[&str] = &[
    "cellapp/src",
    "baseapp/src",
    "manager/src",
    "tools/src/bots.rs",
];

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from(".."), Path::to_path_buf)
}

fn rust_files(path: &Path, out: &mut Vec<PathBuf>) {
    if path.is_file() {
        if path.extension().is_some_and(|e| e == "rs") {
            out.push(path.to_path_buf());
        }
        return;
    }
    let Ok(dir) = std::fs::read_dir(path) else {
        return;
    };
    for entry in dir.flatten() {
        let p = entry.path();
        let is_tests = p.file_stem().is_some_and(|s| s == "tests");
        if !is_tests {
            rust_files(&p, out);
        }
    }
}

/// The part of a source file that is not test code: everything before its
/// first `#[cfg(test)]`.
fn production(text: &str) -> &str {
    text.find("#[cfg(test)]").map_or(text, |i| &text[..i])
}

/// Every `"Name"` literal in the engine's sources that is a type or method
/// name of `defs`, as (file, name).
pub fn game_names_in_engine(defs: &Definitions) -> Vec<(PathBuf, String)> {
    let mut names: Vec<String> = Vec::new();
    for t in &defs.types {
        names.push(t.name.clone());
        names.extend(t.methods.iter().map(|m| m.name.clone()));
    }
    let root = workspace();
    let mut files = Vec::new();
    for part in ENGINE {
        rust_files(&root.join(part), &mut files);
    }
    let mut found = Vec::new();
    for f in files {
        let Ok(text) = std::fs::read_to_string(&f) else {
            continue;
        };
        let code = production(&text);
        for n in &names {
            if code.contains(&format!("\"{n}\"")) {
                found.push((f.clone(), n.clone()));
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_engine_names_nothing_of_the_games() {
        let files = {
            let mut v = Vec::new();
            for part in ENGINE {
                rust_files(&workspace().join(part), &mut v);
            }
            v
        };
        assert!(
            files.len() > 20,
            "the engine's sources were found: {files:?}"
        );
        let found = game_names_in_engine(&tessera_demo::definitions());
        assert!(
            found.is_empty(),
            "the engine names the demo game: {found:?}"
        );
    }

    #[test]
    fn a_name_in_production_code_is_found_and_one_in_tests_is_not() {
        let code = "fn a() { spawn(\"Npc\"); }\n#[cfg(test)]\nmod tests { \"Avatar\" }";
        assert!(production(code).contains("\"Npc\""));
        assert!(!production(code).contains("\"Avatar\""));
    }
}
