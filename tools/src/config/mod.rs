//! Where a process's settings come from, in layers, each over the last:
//! the defaults, `tessera.toml` (or the file `--config` names), `TESSERA_*`
//! environment variables, and the command line's flags. The file is read
//! with its line numbers, so an unknown key or a value of the wrong type
//! names its line; every layer's values are then checked against their
//! bounds, and a bad one names its key and the layer it came from.
//! `tessera config` prints the result, each value with its layer.
//!
//! A top-level key `k` is the environment variable `TESSERA_K`; a key `k`
//! of the table `[cellapp]` is `TESSERA_CELLAPP_K`. Other `TESSERA_*`
//! variables are not settings and are left alone, except those naming a
//! role's table, where an unknown key is a mistake.

mod keys;
mod settings;
#[cfg(test)]
mod tests;

pub use settings::{Baseapp, Cellapp, Invalid, Manager, Settings};

use figment::providers::Serialized;
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider, Source};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// The file read when `--config` names none (if it exists).
pub const DEFAULT_FILE: &str = "tessera.toml";

/// The prefix of every environment variable that is a setting.
pub const ENV_PREFIX: &str = "TESSERA_";

/// The environment variable of every setting (`TESSERA_CELLAPP_SEED`, …).
pub fn variables() -> Vec<String> {
    keys::all()
        .iter()
        .map(|k| format!("{ENV_PREFIX}{}", keys::env_name(k)))
        .collect()
}

/// The flags of a command that has none.
#[derive(Serialize)]
pub struct NoFlags {}

/// Why the settings could not be had.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The settings file could not be read.
    #[error("cannot read the settings file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The settings file is not valid: bad TOML, an unknown key, a value
    /// of the wrong type (the message names the line).
    #[error("settings file {path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// toml's report, with the line and the key.
        message: String,
    },
    /// An environment variable under a role's prefix that is no setting.
    #[error("environment variable {0} is not a setting (see `tessera config`)")]
    UnknownVariable(String),
    /// A value of the wrong type from the environment or a flag.
    #[error("setting {key} (from {origin}): {message}")]
    Value {
        /// The key, dotted.
        key: String,
        /// Where the value came from.
        origin: String,
        /// What is wrong.
        message: String,
    },
    /// A value outside its bounds.
    #[error("setting {key} (from {origin}): {why}")]
    Invalid {
        /// The key, dotted.
        key: String,
        /// Where the value came from.
        origin: String,
        /// What is wrong.
        why: String,
    },
}

/// The settings a process runs with, and where each came from.
pub struct Loaded {
    /// The settings.
    pub settings: Settings,
    /// The settings file read, if any.
    pub file: Option<PathBuf>,
    figment: Figment,
}

/// Names of the layers, as [`Loaded::origin`] reports them.
const DEFAULTS: &str = "default";
const ENVIRONMENT: &str = "environment";
const COMMAND_LINE: &str = "command line";

/// A provider under a name of ours, so each value's origin reads plainly.
struct Layer<P> {
    name: &'static str,
    source: Option<Source>,
    inner: P,
}

impl<P: Provider> Provider for Layer<P> {
    fn metadata(&self) -> Metadata {
        let named = Metadata::named(self.name);
        match &self.source {
            Some(s) => named.source(s.clone()),
            None => named,
        }
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        self.inner.data()
    }
}

/// The settings file to read: the one named, or [`DEFAULT_FILE`] if it
/// exists here.
fn settings_file(named: Option<&Path>) -> Option<PathBuf> {
    match named {
        Some(p) => Some(p.to_path_buf()),
        None => Some(PathBuf::from(DEFAULT_FILE)).filter(|p| p.is_file()),
    }
}

/// Reads and checks a settings file: its own keys, as a table.
fn read_file(path: &Path) -> Result<toml::Table, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let bad = |e: toml::de::Error| ConfigError::File {
        path: path.to_path_buf(),
        message: e.to_string().trim_end().to_string(),
    };
    // Whole, for unknown keys and wrong types with their lines ...
    toml::from_str::<Settings>(&text).map_err(bad)?;
    // ... and as a table, so that the layer holds only what the file says.
    toml::from_str::<toml::Table>(&text).map_err(bad)
}

/// The settings among `vars`: each `TESSERA_*` variable that names a key,
/// with its value parsed as figment parses the environment (numbers,
/// booleans, `[a, b]` arrays, anything else a string).
fn environment(
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<Vec<(String, Value)>, ConfigError> {
    let mut found = Vec::new();
    for (name, value) in vars {
        let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let rest = rest.to_ascii_lowercase();
        match keys::from_env(&rest) {
            Some(key) => match value.parse::<Value>() {
                Ok(v) => found.push((key, v)),
                Err(never) => match never {},
            },
            None if keys::names_a_table(&rest) => return Err(ConfigError::UnknownVariable(name)),
            None => {}
        }
    }
    Ok(found)
}

/// Loads the settings: defaults, then the settings file (`file`, or
/// [`DEFAULT_FILE`] if it exists), then the process's environment, then
/// `flags` (a value serializing to the keys the command line gave, and
/// only those).
pub fn load(file: Option<&Path>, flags: &impl Serialize) -> Result<Loaded, ConfigError> {
    let vars = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)));
    load_with(file, vars, flags)
}

/// [`load`] with the environment given.
fn load_with(
    file: Option<&Path>,
    vars: impl IntoIterator<Item = (String, String)>,
    flags: &impl Serialize,
) -> Result<Loaded, ConfigError> {
    let mut figment = Figment::from(Layer {
        name: DEFAULTS,
        source: None,
        inner: Serialized::defaults(Settings::default()),
    });
    let file = settings_file(file);
    if let Some(path) = &file {
        let table = read_file(path)?;
        figment = figment.merge(Layer {
            name: DEFAULT_FILE,
            source: Some(Source::File(path.clone())),
            inner: Serialized::defaults(table),
        });
    }
    for (key, value) in environment(vars)? {
        figment = figment.merge(Layer {
            name: ENVIRONMENT,
            source: None,
            inner: Serialized::default(&key, value),
        });
    }
    figment = figment.merge(Layer {
        name: COMMAND_LINE,
        source: None,
        inner: Serialized::defaults(flags),
    });
    let mut loaded = Loaded {
        settings: Settings::default(),
        file,
        figment,
    };
    loaded.settings = loaded.figment.extract::<Settings>().map_err(|e| {
        let key = e.path.join(".");
        ConfigError::Value {
            origin: loaded.origin(&key),
            key,
            message: e.kind.to_string(),
        }
    })?;
    loaded
        .settings
        .check()
        .map_err(|Invalid { key, why }| ConfigError::Invalid {
            origin: loaded.origin(key),
            key: key.to_string(),
            why,
        })?;
    Ok(loaded)
}

impl Loaded {
    /// Where the value of `key` (dotted) came from: `default`, the file,
    /// the environment variable, or the command line.
    pub fn origin(&self, key: &str) -> String {
        let Some(meta) = self.figment.find_metadata(key) else {
            return DEFAULTS.into();
        };
        match (meta.name.as_ref(), &meta.source) {
            (ENVIRONMENT, _) => format!("{ENV_PREFIX}{}", keys::env_name(key)),
            (COMMAND_LINE, _) => format!(
                "--{}",
                key.rsplit('.').next().unwrap_or(key).replace('_', "-")
            ),
            (_, Some(Source::File(path))) => path.display().to_string(),
            (name, _) => name.to_string(),
        }
    }

    /// The effective settings as a TOML document, each value with its
    /// origin in a comment; keys with no value are commented out, and a
    /// database URL's password is shown as `***`.
    pub fn render(&self) -> String {
        let table = toml::Table::try_from(&self.settings).unwrap_or_default();
        let mut out = String::new();
        let mut section = "";
        for key in &keys::all() {
            let (table_name, name) = key.split_once('.').unwrap_or(("", key));
            if table_name != section {
                section = table_name;
                out.push_str(&format!("\n[{section}]\n"));
            }
            let value = match table_name {
                "" => table.get(name),
                t => table.get(t).and_then(|v| v.get(name)),
            };
            // A database URL's password is never printed.
            let value = match (key.as_str(), value) {
                ("database", Some(toml::Value::String(url))) => {
                    Some(toml::Value::String(tessera::storage::redact(url)))
                }
                (_, v) => v.cloned(),
            };
            match value {
                Some(v) => out.push_str(&format!("{name} = {v}  # {}\n", self.origin(key))),
                None => out.push_str(&format!("# {name} is not set  # {}\n", self.origin(key))),
            }
        }
        out
    }
}
