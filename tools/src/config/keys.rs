//! The names of the settings, read from the settings' own types (serde hands
//! every struct's field names to its deserializer), so the list of keys
//! the environment may set cannot drift from the settings themselves.

use super::settings::{Baseapp, Cellapp, Manager, Settings};
use serde::de::{self, Deserialize, Visitor};

/// The roles' tables, in the order a settings file shows them.
const TABLES: [&str; 3] = ["manager", "cellapp", "baseapp"];

/// A deserializer that only asks a struct for its field names.
struct FieldNames<'a>(&'a mut &'static [&'static str]);

impl<'de> de::Deserializer<'de> for FieldNames<'_> {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("only a struct has field names"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Self::Error> {
        *self.0 = fields;
        Err(de::Error::custom("field names taken"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

/// The field names of the struct `T`, in the order they are declared.
fn fields<T: for<'de> Deserialize<'de>>() -> &'static [&'static str] {
    let mut names: &'static [&'static str] = &[];
    // The deserializer always ends in an error, once it has the names.
    let _ = T::deserialize(FieldNames(&mut names));
    names
}

/// Every key, dotted, in the order a settings file shows them: the
/// top-level keys, then each role's table.
pub fn all() -> Vec<String> {
    let top = fields::<Settings>()
        .iter()
        .filter(|k| !TABLES.contains(k))
        .map(|k| k.to_string());
    let tables = [
        ("manager", fields::<Manager>()),
        ("cellapp", fields::<Cellapp>()),
        ("baseapp", fields::<Baseapp>()),
    ];
    top.chain(
        tables
            .into_iter()
            .flat_map(|(t, keys)| keys.iter().map(move |k| format!("{t}.{k}"))),
    )
    .collect()
}

/// The environment variable of `key` after the prefix: `cellapp.seed` is
/// `CELLAPP_SEED`.
pub fn env_name(key: &str) -> String {
    key.replace('.', "_").to_ascii_uppercase()
}

/// The key a lower-cased environment variable (after the prefix) sets, if any.
pub fn from_env(name: &str) -> Option<String> {
    all()
        .into_iter()
        .find(|k| env_name(k).eq_ignore_ascii_case(name))
}

/// Whether a lower-cased environment variable (after the prefix) falls in
/// a role's table (`cellapp_…`).
pub fn names_a_table(name: &str) -> bool {
    TABLES
        .iter()
        .any(|t| name.strip_prefix(t).is_some_and(|r| r.starts_with('_')))
}
