//! Property values and their types. Every value that comes from outside the
//! process (a client's method arguments, a stored entity, a definitions file)
//! is checked against its declared type here before anything uses it: its
//! shape, and the limits on strings, bytes, lists and nesting.
//!
//! Besides scalars a value may be a byte string, a reference to an entity,
//! a list of values of one type, or a map with fixed keys (BigWorld's
//! `FIXED_DICT`), declared by name in the definitions file. A map travels
//! as its values in the order of its keys, so the keys cost nothing on the
//! wire.

use crate::ids::EntityId;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The longest string a property or argument may hold, in bytes.
pub const MAX_STRING_BYTES: usize = 1024;
/// The longest byte string.
pub const MAX_BYTES: usize = 4096;
/// The most items a list may hold.
pub const MAX_LIST_LEN: usize = 256;
/// How deep lists and maps may nest: a list of maps of lists is 3 deep.
pub const MAX_DEPTH: usize = 4;
/// The most keys a map type may have.
pub const MAX_MAP_KEYS: usize = 32;

/// The type of a property or method argument, as declared in a definitions
/// file: `bool`, `int`, `float`, `string`, `vec3`, `bytes`, `entity`,
/// `list<T>`, or the name of a map type.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ValueType {
    /// `true` or `false`.
    Bool,
    /// A signed 64-bit integer.
    Int,
    /// A finite 32-bit float.
    Float,
    /// A UTF-8 string of at most [`MAX_STRING_BYTES`].
    String,
    /// Three finite 32-bit floats.
    Vec3,
    /// At most [`MAX_BYTES`] bytes.
    Bytes,
    /// A reference to an entity: its id (0 for none).
    Entity,
    /// At most [`MAX_LIST_LEN`] values of one type.
    List(Box<ValueType>),
    /// A map with fixed keys.
    Map(MapType),
}

/// A map type: its name in the definitions file and its keys, in name
/// order, each with the type of its value.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MapType {
    /// The name it is declared under.
    pub name: String,
    /// Its keys and their types, in name order.
    pub keys: Vec<(String, ValueType)>,
}

impl ValueType {
    /// How deep lists and maps nest in it: 0 for a scalar, one more for
    /// each list or map around it.
    pub fn depth(&self) -> usize {
        match self {
            ValueType::List(of) => 1 + of.depth(),
            ValueType::Map(m) => 1 + m.keys.iter().map(|(_, t)| t.depth()).max().unwrap_or(0),
            _ => 0,
        }
    }

    /// Reads a type as a definitions file writes it; `maps` are the map
    /// types declared so far. Lists nested deeper than [`MAX_DEPTH`] are
    /// refused as they are read.
    pub fn parse(text: &str, maps: &dyn Fn(&str) -> Option<MapType>) -> Result<ValueType, String> {
        let mut t = text.trim();
        let mut lists = 0;
        while let Some(of) = t.strip_prefix("list<").and_then(|r| r.strip_suffix('>')) {
            lists += 1;
            if lists > MAX_DEPTH {
                return Err(format!(
                    "{} nests deeper than the limit of {MAX_DEPTH}",
                    text.trim()
                ));
            }
            t = of.trim();
        }
        let mut ty = match t {
            "bool" => ValueType::Bool,
            "int" => ValueType::Int,
            "float" => ValueType::Float,
            "string" => ValueType::String,
            "vec3" => ValueType::Vec3,
            "bytes" => ValueType::Bytes,
            "entity" => ValueType::Entity,
            _ => ValueType::Map(maps(t).ok_or_else(|| format!("unknown type {t:?}"))?),
        };
        for _ in 0..lists {
            ty = ValueType::List(Box::new(ty));
        }
        Ok(ty)
    }
}

impl fmt::Display for ValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ValueType::Bool => f.write_str("bool"),
            ValueType::Int => f.write_str("int"),
            ValueType::Float => f.write_str("float"),
            ValueType::String => f.write_str("string"),
            ValueType::Vec3 => f.write_str("vec3"),
            ValueType::Bytes => f.write_str("bytes"),
            ValueType::Entity => f.write_str("entity"),
            ValueType::List(of) => write!(f, "list<{of}>"),
            ValueType::Map(m) => f.write_str(&m.name),
        }
    }
}

/// A property value or method argument. The variant order is part of the wire
/// format: append new variants, never reorder.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Value {
    /// A boolean.
    Bool(bool),
    /// A signed integer.
    Int(i64),
    /// A finite float.
    Float(f32),
    /// A string.
    String(String),
    /// A vector.
    Vec3([f32; 3]),
    /// A byte string.
    Bytes(#[serde(with = "serde_bytes")] Vec<u8>),
    /// A reference to an entity.
    Entity(EntityId),
    /// A list.
    List(#[serde(deserialize_with = "nested")] Vec<Value>),
    /// A map's values, in the order of its type's keys.
    Map(#[serde(deserialize_with = "nested")] Vec<Value>),
}

thread_local! {
    /// How many lists and maps the value being decoded on this thread is
    /// inside of.
    static DECODING_DEPTH: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Decodes the items of a list or map, refusing values that nest deeper
/// than [`MAX_DEPTH`] before they are read: decoding recurses, and a sender
/// must not be able to exhaust the stack with a few bytes per level.
fn nested<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Value>, D::Error> {
    /// Leaves the level however decoding ends.
    struct Level;
    impl Drop for Level {
        fn drop(&mut self) {
            DECODING_DEPTH.with(|c| c.set(c.get().saturating_sub(1)));
        }
    }
    let depth = DECODING_DEPTH.with(|c| {
        c.set(c.get() + 1);
        c.get()
    });
    let _level = Level;
    if depth > MAX_DEPTH {
        return Err(serde::de::Error::custom(format!(
            "values nest deeper than the limit of {MAX_DEPTH}"
        )));
    }
    Vec::<Value>::deserialize(d)
}

/// Why a value does not fit its declared type.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ValueError {
    /// The value is of another type.
    #[error("expected {expected}, got {got}")]
    WrongType {
        /// The declared type.
        expected: ValueType,
        /// What kind of value came.
        got: &'static str,
    },
    /// A float is NaN or infinite.
    #[error("{0} is not a finite number")]
    NotFinite(f32),
    /// A string is too long.
    #[error("string of {0} bytes is longer than the limit of {MAX_STRING_BYTES}")]
    TooLong(usize),
    /// A byte string is too long.
    #[error("{0} bytes are more than the limit of {MAX_BYTES}")]
    TooManyBytes(usize),
    /// A list is too long.
    #[error("a list of {0} items is longer than the limit of {MAX_LIST_LEN}")]
    ListTooLong(usize),
    /// Lists and maps nest too deep.
    #[error("values nest deeper than the limit of {MAX_DEPTH}")]
    TooDeep,
    /// A map has too many or too few values.
    #[error("map {map} has {wanted} keys, got {got} values")]
    MapShape {
        /// The map type.
        map: String,
        /// How many keys it has.
        wanted: usize,
        /// How many values came.
        got: usize,
    },
    /// A list item does not fit.
    #[error("item {index}: {problem}")]
    Item {
        /// Which item, from 0.
        index: usize,
        /// What is wrong with it.
        problem: Box<ValueError>,
    },
    /// A map's value does not fit its key's type.
    #[error("key {key}: {problem}")]
    Key {
        /// The key.
        key: String,
        /// What is wrong with its value.
        problem: Box<ValueError>,
    },
}

impl Value {
    /// What kind of value this is, for errors.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::String(_) => "string",
            Value::Vec3(_) => "vec3",
            Value::Bytes(_) => "bytes",
            Value::Entity(_) => "entity",
            Value::List(_) => "list",
            Value::Map(_) => "map",
        }
    }

    /// Checks that this value is a valid value of type `ty`: its shape, and
    /// every limit.
    pub fn check(&self, ty: &ValueType) -> Result<(), ValueError> {
        self.check_at(ty, 1)
    }

    fn check_at(&self, ty: &ValueType, depth: usize) -> Result<(), ValueError> {
        match (self, ty) {
            (Value::Bool(_), ValueType::Bool)
            | (Value::Int(_), ValueType::Int)
            | (Value::Entity(_), ValueType::Entity) => Ok(()),
            (Value::Float(f), ValueType::Float) if !f.is_finite() => Err(ValueError::NotFinite(*f)),
            (Value::Float(_), ValueType::Float) => Ok(()),
            (Value::Vec3(v), ValueType::Vec3) => match v.iter().find(|f| !f.is_finite()) {
                Some(f) => Err(ValueError::NotFinite(*f)),
                None => Ok(()),
            },
            (Value::String(s), ValueType::String) if s.len() > MAX_STRING_BYTES => {
                Err(ValueError::TooLong(s.len()))
            }
            (Value::String(_), ValueType::String) => Ok(()),
            (Value::Bytes(b), ValueType::Bytes) if b.len() > MAX_BYTES => {
                Err(ValueError::TooManyBytes(b.len()))
            }
            (Value::Bytes(_), ValueType::Bytes) => Ok(()),
            (Value::List(_) | Value::Map(_), _) if depth > MAX_DEPTH => Err(ValueError::TooDeep),
            (Value::List(items), ValueType::List(of)) => {
                if items.len() > MAX_LIST_LEN {
                    return Err(ValueError::ListTooLong(items.len()));
                }
                for (index, v) in items.iter().enumerate() {
                    v.check_at(of, depth + 1)
                        .map_err(|problem| ValueError::Item {
                            index,
                            problem: Box::new(problem),
                        })?;
                }
                Ok(())
            }
            (Value::Map(values), ValueType::Map(m)) => {
                if values.len() != m.keys.len() {
                    return Err(ValueError::MapShape {
                        map: m.name.clone(),
                        wanted: m.keys.len(),
                        got: values.len(),
                    });
                }
                for (v, (key, t)) in values.iter().zip(&m.keys) {
                    v.check_at(t, depth + 1)
                        .map_err(|problem| ValueError::Key {
                            key: key.clone(),
                            problem: Box::new(problem),
                        })?;
                }
                Ok(())
            }
            (v, ty) => Err(ValueError::WrongType {
                expected: ty.clone(),
                got: v.kind(),
            }),
        }
    }

    /// The zero value of a type: the default of a property that declares none.
    pub fn zero(ty: &ValueType) -> Value {
        match ty {
            ValueType::Bool => Value::Bool(false),
            ValueType::Int => Value::Int(0),
            ValueType::Float => Value::Float(0.0),
            ValueType::String => Value::String(String::new()),
            ValueType::Vec3 => Value::Vec3([0.0; 3]),
            ValueType::Bytes => Value::Bytes(Vec::new()),
            ValueType::Entity => Value::Entity(EntityId(0)),
            ValueType::List(_) => Value::List(Vec::new()),
            ValueType::Map(m) => Value::Map(m.keys.iter().map(|(_, t)| Value::zero(t)).collect()),
        }
    }

    /// The integer inside, if this is an `Int`.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The string inside, if this is a `String`.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The entity referred to, if this is an `Entity` other than none.
    pub fn as_entity(&self) -> Option<EntityId> {
        match self {
            Value::Entity(e) if e.0 != 0 => Some(*e),
            _ => None,
        }
    }

    /// The items, if this is a `List`.
    pub fn as_list(&self) -> Option<&[Value]> {
        match self {
            Value::List(v) => Some(v),
            _ => None,
        }
    }

    /// Every entity this value refers to, however deep.
    pub fn entities(&self, out: &mut Vec<EntityId>) {
        match self {
            Value::Entity(e) if e.0 != 0 => out.push(*e),
            Value::List(v) | Value::Map(v) => v.iter().for_each(|x| x.entities(out)),
            _ => {}
        }
    }

    /// Converts a TOML value (a default in a definitions file) to a value of
    /// type `ty`: arrays for lists, vectors and bytes, tables for maps.
    pub fn from_toml(v: &toml::Value, ty: &ValueType) -> Option<Value> {
        let number = |x: &toml::Value| match x {
            toml::Value::Float(f) => Some(*f as f32),
            toml::Value::Integer(i) => Some(*i as f32),
            _ => None,
        };
        let value = match (ty, v) {
            (ValueType::Bool, toml::Value::Boolean(b)) => Value::Bool(*b),
            (ValueType::Int, toml::Value::Integer(i)) => Value::Int(*i),
            (ValueType::Float, x) => Value::Float(number(x)?),
            (ValueType::String, toml::Value::String(s)) => Value::String(s.clone()),
            (ValueType::Vec3, toml::Value::Array(a)) if a.len() == 3 => {
                let mut out = [0.0f32; 3];
                for (o, x) in out.iter_mut().zip(a) {
                    *o = number(x)?;
                }
                Value::Vec3(out)
            }
            (ValueType::Bytes, toml::Value::Array(a)) => Value::Bytes(
                a.iter()
                    .map(|x| x.as_integer().and_then(|i| u8::try_from(i).ok()))
                    .collect::<Option<_>>()?,
            ),
            (ValueType::Entity, toml::Value::Integer(i)) => {
                Value::Entity(EntityId(u64::try_from(*i).ok()?))
            }
            (ValueType::List(of), toml::Value::Array(a)) => Value::List(
                a.iter()
                    .map(|x| Value::from_toml(x, of))
                    .collect::<Option<_>>()?,
            ),
            (ValueType::Map(m), toml::Value::Table(t)) => {
                if t.keys().any(|k| !m.keys.iter().any(|(key, _)| key == k)) {
                    return None;
                }
                Value::Map(
                    m.keys
                        .iter()
                        .map(|(k, kt)| match t.get(k) {
                            Some(x) => Value::from_toml(x, kt),
                            None => Some(Value::zero(kt)),
                        })
                        .collect::<Option<_>>()?,
                )
            }
            _ => return None,
        };
        value.check(ty).ok().map(|_| value)
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |f: &mut fmt::Formatter<'_>, v: &[Value], open: &str, close: &str| {
            f.write_str(open)?;
            for (i, x) in v.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "{x}")?;
            }
            f.write_str(close)
        };
        match self {
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => write!(f, "{x}"),
            Value::String(s) => write!(f, "{s:?}"),
            Value::Vec3(v) => write!(f, "({}, {}, {})", v[0], v[1], v[2]),
            Value::Bytes(b) => write!(f, "<{} bytes>", b.len()),
            Value::Entity(e) => write!(f, "entity {e}"),
            Value::List(v) => list(f, v, "[", "]"),
            Value::Map(v) => list(f, v, "{", "}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item() -> MapType {
        MapType {
            name: "Item".into(),
            keys: vec![
                ("count".into(), ValueType::Int),
                ("kind".into(), ValueType::String),
            ],
        }
    }

    #[test]
    fn check_rejects_wrong_type_nan_and_long_strings() {
        assert!(Value::Int(3).check(&ValueType::Int).is_ok());
        assert_eq!(
            Value::Int(3).check(&ValueType::String),
            Err(ValueError::WrongType {
                expected: ValueType::String,
                got: "int"
            })
        );
        assert!(matches!(
            Value::Float(f32::NAN).check(&ValueType::Float),
            Err(ValueError::NotFinite(_))
        ));
        assert!(matches!(
            Value::Vec3([0.0, f32::INFINITY, 0.0]).check(&ValueType::Vec3),
            Err(ValueError::NotFinite(_))
        ));
        let long = "x".repeat(MAX_STRING_BYTES + 1);
        assert_eq!(
            Value::String(long).check(&ValueType::String),
            Err(ValueError::TooLong(MAX_STRING_BYTES + 1))
        );
    }

    #[test]
    fn lists_maps_bytes_and_references_are_checked_whole() {
        let items = ValueType::List(Box::new(ValueType::Map(item())));
        let good = Value::List(vec![Value::Map(vec![
            Value::Int(2),
            Value::String("arrow".into()),
        ])]);
        assert_eq!(good.check(&items), Ok(()));
        // A map with a value of the wrong type: the key and item are named.
        let bad = Value::List(vec![Value::Map(vec![Value::Int(2), Value::Int(3)])]);
        assert_eq!(
            bad.check(&items),
            Err(ValueError::Item {
                index: 0,
                problem: Box::new(ValueError::Key {
                    key: "kind".into(),
                    problem: Box::new(ValueError::WrongType {
                        expected: ValueType::String,
                        got: "int"
                    })
                })
            })
        );
        let short = Value::List(vec![Value::Map(vec![Value::Int(2)])]);
        assert!(matches!(short.check(&items), Err(ValueError::Item { .. })));
        let long = Value::List(vec![Value::Int(1); MAX_LIST_LEN + 1]);
        assert_eq!(
            long.check(&ValueType::List(Box::new(ValueType::Int))),
            Err(ValueError::ListTooLong(MAX_LIST_LEN + 1))
        );
        assert_eq!(
            Value::Bytes(vec![0; MAX_BYTES + 1]).check(&ValueType::Bytes),
            Err(ValueError::TooManyBytes(MAX_BYTES + 1))
        );
        assert_eq!(Value::Entity(EntityId(9)).check(&ValueType::Entity), Ok(()));
    }

    #[test]
    fn nesting_is_bounded() {
        let mut ty = ValueType::Int;
        let mut v = Value::Int(1);
        for _ in 0..MAX_DEPTH {
            ty = ValueType::List(Box::new(ty));
            v = Value::List(vec![v]);
        }
        // MAX_DEPTH lists around an int: the lists are 1..=MAX_DEPTH deep.
        assert_eq!(v.check(&ty), Ok(()));
        let deeper = ValueType::List(Box::new(ty));
        assert!(Value::List(vec![v]).check(&deeper).is_err());
    }

    #[test]
    fn deep_nesting_is_refused_while_decoding_without_exhausting_the_stack() {
        // A list in a list in ..., 100,000 deep: two bytes a level.
        let mut bytes = [0x07, 0x01].repeat(100_000);
        bytes.extend([0x01, 0x02]);
        assert!(postcard::from_bytes::<Value>(&bytes).is_err());
        // The limit itself decodes, and the counter is left at zero.
        let mut ok = [0x07, 0x01].repeat(MAX_DEPTH);
        ok.extend([0x01, 0x02]);
        let v: Value = postcard::from_bytes(&ok).expect("at the limit");
        assert_eq!(postcard::to_stdvec(&v).expect("encodes"), ok);
        let again: Value = postcard::from_bytes(&ok).expect("and again");
        assert_eq!(again, v);
    }

    #[test]
    fn types_parse_as_written() {
        let maps = |name: &str| (name == "Item").then(item);
        assert_eq!(
            ValueType::parse("list<Item>", &maps),
            Ok(ValueType::List(Box::new(ValueType::Map(item()))))
        );
        assert_eq!(ValueType::parse(" entity ", &maps), Ok(ValueType::Entity));
        assert!(ValueType::parse("list<Nothing>", &maps).is_err());
        let deep = format!("{}int{}", "list<".repeat(100_000), ">".repeat(100_000));
        assert!(ValueType::parse(&deep, &maps).is_err_and(|e| e.contains("deeper")));
        assert_eq!(
            ValueType::parse("list<list<int>>", &maps).map(|t| t.depth()),
            Ok(2)
        );
        assert_eq!(ValueType::Map(item()).to_string(), "Item");
    }

    #[test]
    fn toml_defaults_convert_by_type() {
        assert_eq!(
            Value::from_toml(&toml::Value::Integer(2), &ValueType::Float),
            Some(Value::Float(2.0))
        );
        assert_eq!(
            Value::from_toml(&toml::Value::String("a".into()), &ValueType::Int),
            None
        );
        let t: toml::Value = toml::from_str("v = { kind = \"axe\" }").expect("toml");
        assert_eq!(
            Value::from_toml(&t["v"], &ValueType::Map(item())),
            Some(Value::Map(vec![Value::Int(0), Value::String("axe".into())]))
        );
        let t: toml::Value = toml::from_str("v = { colour = \"red\" }").expect("toml");
        assert_eq!(Value::from_toml(&t["v"], &ValueType::Map(item())), None);
    }
}
