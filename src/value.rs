//! Property values and their types. Every value that comes from outside the
//! process (a client's method arguments, a stored entity, a definitions file)
//! is checked against its declared type here before anything uses it.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The longest string a property or argument may hold, in bytes.
pub const MAX_STRING_BYTES: usize = 1024;

/// The type of a property or method argument, as written in a definitions file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
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
}

impl fmt::Display for ValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ValueType::Bool => "bool",
            ValueType::Int => "int",
            ValueType::Float => "float",
            ValueType::String => "string",
            ValueType::Vec3 => "vec3",
        })
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
}

/// Why a value does not fit its declared type.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ValueError {
    /// The value is of another type.
    #[error("expected {expected}, got {got}")]
    WrongType {
        /// The declared type.
        expected: ValueType,
        /// The type that came.
        got: ValueType,
    },
    /// A float is NaN or infinite.
    #[error("{0} is not a finite number")]
    NotFinite(f32),
    /// A string is too long.
    #[error("string of {0} bytes is longer than the limit of {MAX_STRING_BYTES}")]
    TooLong(usize),
}

impl Value {
    /// The type of this value.
    pub fn ty(&self) -> ValueType {
        match self {
            Value::Bool(_) => ValueType::Bool,
            Value::Int(_) => ValueType::Int,
            Value::Float(_) => ValueType::Float,
            Value::String(_) => ValueType::String,
            Value::Vec3(_) => ValueType::Vec3,
        }
    }

    /// Checks that this value is a valid value of type `ty`.
    pub fn check(&self, ty: ValueType) -> Result<(), ValueError> {
        if self.ty() != ty {
            return Err(ValueError::WrongType {
                expected: ty,
                got: self.ty(),
            });
        }
        match self {
            Value::Float(f) if !f.is_finite() => Err(ValueError::NotFinite(*f)),
            Value::Vec3(v) => match v.iter().find(|f| !f.is_finite()) {
                Some(f) => Err(ValueError::NotFinite(*f)),
                None => Ok(()),
            },
            Value::String(s) if s.len() > MAX_STRING_BYTES => Err(ValueError::TooLong(s.len())),
            _ => Ok(()),
        }
    }

    /// The zero value of a type: the default of a property that declares none.
    pub fn zero(ty: ValueType) -> Value {
        match ty {
            ValueType::Bool => Value::Bool(false),
            ValueType::Int => Value::Int(0),
            ValueType::Float => Value::Float(0.0),
            ValueType::String => Value::String(String::new()),
            ValueType::Vec3 => Value::Vec3([0.0; 3]),
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

    /// Converts a TOML value (a default in a definitions file) to a value of type `ty`.
    pub fn from_toml(v: &toml::Value, ty: ValueType) -> Option<Value> {
        let value = match (ty, v) {
            (ValueType::Bool, toml::Value::Boolean(b)) => Value::Bool(*b),
            (ValueType::Int, toml::Value::Integer(i)) => Value::Int(*i),
            (ValueType::Float, toml::Value::Float(f)) => Value::Float(*f as f32),
            (ValueType::Float, toml::Value::Integer(i)) => Value::Float(*i as f32),
            (ValueType::String, toml::Value::String(s)) => Value::String(s.clone()),
            (ValueType::Vec3, toml::Value::Array(a)) if a.len() == 3 => {
                let mut out = [0.0f32; 3];
                for (o, x) in out.iter_mut().zip(a) {
                    *o = match x {
                        toml::Value::Float(f) => *f as f32,
                        toml::Value::Integer(i) => *i as f32,
                        _ => return None,
                    };
                }
                Value::Vec3(out)
            }
            _ => return None,
        };
        value.check(ty).ok().map(|_| value)
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => write!(f, "{x}"),
            Value::String(s) => write!(f, "{s:?}"),
            Value::Vec3(v) => write!(f, "({}, {}, {})", v[0], v[1], v[2]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_rejects_wrong_type_nan_and_long_strings() {
        assert!(Value::Int(3).check(ValueType::Int).is_ok());
        assert_eq!(
            Value::Int(3).check(ValueType::String),
            Err(ValueError::WrongType {
                expected: ValueType::String,
                got: ValueType::Int
            })
        );
        assert!(matches!(
            Value::Float(f32::NAN).check(ValueType::Float),
            Err(ValueError::NotFinite(_))
        ));
        assert!(matches!(
            Value::Vec3([0.0, f32::INFINITY, 0.0]).check(ValueType::Vec3),
            Err(ValueError::NotFinite(_))
        ));
        let long = "x".repeat(MAX_STRING_BYTES + 1);
        assert_eq!(
            Value::String(long).check(ValueType::String),
            Err(ValueError::TooLong(MAX_STRING_BYTES + 1))
        );
    }

    #[test]
    fn toml_defaults_convert_by_type() {
        assert_eq!(
            Value::from_toml(&toml::Value::Integer(2), ValueType::Float),
            Some(Value::Float(2.0))
        );
        assert_eq!(
            Value::from_toml(&toml::Value::String("a".into()), ValueType::Int),
            None
        );
    }
}
