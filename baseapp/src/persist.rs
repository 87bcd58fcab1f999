//! How a persistent entity is written to the database: position, facing and
//! its persistent properties *by name*, so rows stay readable after the
//! definitions change (a property that no longer exists is dropped; one whose
//! type changed falls back to its default). Format 1 is postcard of
//! [`SavedV1`].

use serde::{Deserialize, Serialize};
use tessera::defs::TypeDef;
use tessera::proto::client::PropValue;
use tessera::proto::Pos;
use tessera::Value;

/// The format version this build writes.
pub const FORMAT_VERSION: u32 = 1;

/// The largest entity row this build reads.
pub const MAX_SAVED_BYTES: usize = 1 << 20;

/// Format 1 of a saved entity.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SavedV1 {
    /// Position.
    pub pos: Pos,
    /// Facing.
    pub yaw: f32,
    /// Persistent properties by name.
    pub props: Vec<(String, Value)>,
}

/// Why a stored row could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    /// Written by a newer build.
    #[error("entity format {0} is newer than this build reads ({FORMAT_VERSION})")]
    FutureFormat(u32),
    /// Too large.
    #[error("entity row of {0} bytes exceeds the limit")]
    TooLarge(usize),
    /// Not decodable.
    #[error("entity row does not decode: {0}")]
    Decode(#[from] postcard::Error),
}

/// An entity's state as the base holds it: every property by index.
#[derive(Clone, Debug, PartialEq)]
pub struct Loaded {
    /// Position.
    pub pos: Pos,
    /// Facing.
    pub yaw: f32,
    /// All properties in index order.
    pub props: Vec<Value>,
}

/// Encodes the persistent part of an entity.
pub fn encode(ty: &TypeDef, pos: Pos, yaw: f32, props: &[Value]) -> Vec<u8> {
    let saved = SavedV1 {
        pos,
        yaw,
        props: ty
            .properties
            .iter()
            .filter(|p| p.persistent)
            .filter_map(|p| {
                props
                    .get(p.index as usize)
                    .map(|v| (p.name.clone(), v.clone()))
            })
            .collect(),
    };
    postcard::to_stdvec(&saved).unwrap_or_default()
}

/// Decodes a stored entity into a full property list (defaults where the row
/// has nothing usable).
pub fn decode(ty: &TypeDef, format: u32, data: &[u8]) -> Result<Loaded, PersistError> {
    if format > FORMAT_VERSION {
        return Err(PersistError::FutureFormat(format));
    }
    if data.len() > MAX_SAVED_BYTES {
        return Err(PersistError::TooLarge(data.len()));
    }
    let saved: SavedV1 = postcard::from_bytes(data)?;
    let mut props = ty.defaults();
    for (name, value) in saved.props {
        if let Some(p) = ty.prop(&name) {
            if p.persistent && value.check(&p.ty).is_ok() {
                props[p.index as usize] = value;
            }
        }
    }
    let pos = if saved.pos.iter().all(|c| c.is_finite()) {
        saved.pos
    } else {
        [0.0; 3]
    };
    Ok(Loaded {
        pos,
        yaw: if saved.yaw.is_finite() {
            saved.yaw
        } else {
            0.0
        },
        props,
    })
}

/// The values at the given indices.
pub fn pick(props: &[Value], indices: impl Iterator<Item = u16>) -> Vec<PropValue> {
    indices
        .filter_map(|i| props.get(i as usize).map(|v| (i, v.clone())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_keeps_persistent_props_only() {
        let defs = tessera_demo::definitions();
        let ty = defs.by_name("Avatar").expect("Avatar");
        let mut props = ty.defaults();
        let title = ty.prop("title").expect("title").index as usize;
        let emote = ty.prop("emote").expect("emote").index as usize;
        props[title] = Value::String("hero".into());
        props[emote] = Value::Int(3);
        let bytes = encode(ty, [1.0, 2.0, 3.0], 0.5, &props);
        let back = decode(ty, FORMAT_VERSION, &bytes).expect("decodes");
        assert_eq!(back.pos, [1.0, 2.0, 3.0]);
        assert_eq!(back.props[title], Value::String("hero".into()));
        // emote is not persistent: it comes back as the default.
        assert_eq!(back.props[emote], Value::Int(0));
    }

    #[test]
    fn renamed_and_retyped_props_fall_back_to_defaults() {
        let defs = tessera_demo::definitions();
        let ty = defs.by_name("Avatar").expect("Avatar");
        let saved = SavedV1 {
            pos: [0.0; 3],
            yaw: 0.0,
            props: vec![
                ("gone".into(), Value::Int(1)),
                ("title".into(), Value::Int(7)),
            ],
        };
        let bytes = postcard::to_stdvec(&saved).expect("encodes");
        let back = decode(ty, 1, &bytes).expect("decodes");
        assert_eq!(back.props, ty.defaults());
        assert!(matches!(
            decode(ty, 2, &bytes),
            Err(PersistError::FutureFormat(2))
        ));
        assert!(decode(ty, 1, &[0xff]).is_err());
    }
}
