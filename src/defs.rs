//! Entity definitions: the types of a world, their properties (with
//! BigWorld's flags), methods, AoI radius and speed limit, loaded from a TOML
//! file that every role and every client reads. The definitions' digest is
//! checked whenever a client or an app connects, so two sides never disagree
//! on what a property index means.
//!
//! Properties and methods are indexed by name order within their type, and
//! types by name order, so the same file always gives the same indices.

use crate::value::{MapType, Value, ValueType, MAX_DEPTH, MAX_MAP_KEYS};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// The largest definitions file accepted, in bytes.
pub const MAX_DEFS_BYTES: u64 = 1 << 20;

/// The index of an entity type in the definitions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TypeId(pub u16);

/// Where a property lives and who sees it: BigWorld's flags, with their meanings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[allow(non_camel_case_types, clippy::upper_case_acronyms)]
pub enum PropFlags {
    /// On the cell only.
    CELL_PRIVATE,
    /// On the cell and its ghosts.
    CELL_PUBLIC,
    /// On the cell and ghosts, sent to other clients.
    OTHER_CLIENTS,
    /// On the cell, sent to the entity's own client.
    OWN_CLIENT,
    /// On the cell and ghosts, sent to the own client and other clients.
    ALL_CLIENTS,
    /// On the cell and ghosts, sent to the own client.
    CELL_PUBLIC_AND_OWN,
    /// On the base only.
    BASE,
    /// On the base, sent to the own client.
    BASE_AND_CLIENT,
}

impl PropFlags {
    /// The property lives on the cell half.
    pub fn on_cell(self) -> bool {
        !self.on_base()
    }
    /// The property lives on the base half.
    pub fn on_base(self) -> bool {
        matches!(self, PropFlags::BASE | PropFlags::BASE_AND_CLIENT)
    }
    /// The property is copied to ghosts.
    pub fn on_ghosts(self) -> bool {
        matches!(
            self,
            PropFlags::CELL_PUBLIC
                | PropFlags::OTHER_CLIENTS
                | PropFlags::ALL_CLIENTS
                | PropFlags::CELL_PUBLIC_AND_OWN
        )
    }
    /// The entity's own client sees the property.
    pub fn own_client(self) -> bool {
        matches!(
            self,
            PropFlags::OWN_CLIENT
                | PropFlags::ALL_CLIENTS
                | PropFlags::CELL_PUBLIC_AND_OWN
                | PropFlags::BASE_AND_CLIENT
        )
    }
    /// Other clients (whose AoI holds the entity) see the property.
    pub fn other_clients(self) -> bool {
        matches!(self, PropFlags::OTHER_CLIENTS | PropFlags::ALL_CLIENTS)
    }
}

/// Which half of an entity a method runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// Runs on the base (baseapp).
    Base,
    /// Runs on the real (cellapp).
    Cell,
    /// Runs on the entity's own client; called by the server.
    Client,
}

/// One property of a type.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PropDef {
    /// Index within the type (name order).
    pub index: u16,
    /// The name.
    pub name: String,
    /// The value type.
    pub ty: ValueType,
    /// Where it lives and who sees it.
    pub flags: PropFlags,
    /// The value a new entity starts with.
    pub default: Value,
    /// Saved to the database.
    pub persistent: bool,
}

/// One method of a type.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MethodDef {
    /// Index within the type (name order).
    pub index: u16,
    /// The name.
    pub name: String,
    /// Where it runs.
    pub side: Side,
    /// Argument types, in order.
    pub args: Vec<ValueType>,
    /// A client may call it (on its own entity).
    pub exposed: bool,
}

/// Why arguments do not fit a method's definition.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ArgsError {
    /// Too many or too few.
    #[error("takes {wanted} arguments, got {got}")]
    Count {
        /// How many the method declares.
        wanted: usize,
        /// How many came.
        got: usize,
    },
    /// One argument is not of its declared type.
    #[error("argument {index}: {problem}")]
    Arg {
        /// Which argument, from 0.
        index: usize,
        /// What is wrong with it.
        problem: crate::value::ValueError,
    },
}

impl MethodDef {
    /// Checks arguments against the method's declared argument types.
    pub fn check_args(&self, args: &[Value]) -> Result<(), ArgsError> {
        if self.args.len() != args.len() {
            return Err(ArgsError::Count {
                wanted: self.args.len(),
                got: args.len(),
            });
        }
        for (index, (t, v)) in self.args.iter().zip(args).enumerate() {
            v.check(t)
                .map_err(|problem| ArgsError::Arg { index, problem })?;
        }
        Ok(())
    }
}

/// Why game code cannot call a method.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CallError {
    /// The type has no method of that name.
    #[error("type {ty} has no method {method}")]
    NoSuchMethod {
        /// The type.
        ty: String,
        /// The method asked for.
        method: String,
    },
    /// The method runs somewhere else.
    #[error("{ty}.{method} is a {side:?} method, not a {wanted:?} one")]
    WrongSide {
        /// The type.
        ty: String,
        /// The method.
        method: String,
        /// Where it runs.
        side: Side,
        /// Where the call wanted it.
        wanted: Side,
    },
    /// The arguments do not fit the method.
    #[error("{ty}.{method}: {problem}")]
    BadArguments {
        /// The type.
        ty: String,
        /// The method.
        method: String,
        /// What is wrong.
        problem: ArgsError,
    },
}

/// Why game code cannot set a property to a value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PropError {
    /// The type has no property of that name.
    #[error("type {ty} has no property {name}")]
    NoSuchProperty {
        /// The type.
        ty: String,
        /// The name asked for.
        name: String,
    },
    /// The property lives on the other half of the entity.
    #[error("{ty}.{name} lives on the other half, not the {side:?} one")]
    WrongSide {
        /// The type.
        ty: String,
        /// The property.
        name: String,
        /// The half that asked.
        side: Side,
    },
    /// The value does not fit the property.
    #[error("{ty}.{name}: {problem}")]
    WrongValue {
        /// The type.
        ty: String,
        /// The property.
        name: String,
        /// What is wrong.
        problem: crate::value::ValueError,
    },
}

/// One entity type.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TypeDef {
    /// Index in the definitions (name order).
    pub id: TypeId,
    /// The name, which also selects the type's behaviour in Rust.
    pub name: String,
    /// Controlled by a client (has a proxy and a witness).
    pub has_client: bool,
    /// Radius of its area of interest, in metres (if it has a client).
    pub aoi_radius: f32,
    /// The fastest it may move, in metres per second.
    pub max_speed: f32,
    /// Properties in index order.
    pub properties: Vec<PropDef>,
    /// Methods in index order.
    pub methods: Vec<MethodDef>,
    /// Levels of detail, nearest first: how often, and with which
    /// properties, a client sees an entity of this type at each distance.
    /// Never empty: a type that declares none has one level, every tick,
    /// every property other clients see, out to any distance.
    pub detail: Vec<DetailLevel>,
}

/// One level of detail: a band of distance from the watching client.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DetailLevel {
    /// The band's outer edge in metres (the last level's is infinite).
    pub within: f32,
    /// Ticks between two position updates in this band (1: every tick).
    pub every: u16,
    /// The properties (indices, all seen by other clients) a client is
    /// sent for an entity in this band: on entering it, and when they
    /// change while it is in it.
    pub props: Vec<u16>,
}

/// The most properties other clients may see of one type (a witness keeps
/// one bit per property for what its client holds).
pub const MAX_PUBLIC_PROPS: usize = 64;

/// The most levels of detail a type may declare.
pub const MAX_DETAIL_LEVELS: usize = 8;

impl TypeDef {
    /// The level of detail for an entity `distance` metres away: its index
    /// and the level.
    pub fn detail_at(&self, distance: f32) -> (usize, &DetailLevel) {
        let last = self.detail.len().saturating_sub(1);
        let i = self
            .detail
            .iter()
            .position(|l| distance <= l.within)
            .unwrap_or(last);
        (i, &self.detail[i])
    }

    /// A property by name.
    pub fn prop(&self, name: &str) -> Option<&PropDef> {
        self.properties.iter().find(|p| p.name == name)
    }
    /// A method by name.
    pub fn method(&self, name: &str) -> Option<&MethodDef> {
        self.methods.iter().find(|m| m.name == name)
    }
    /// The property `name`, if the `side` half (cell or base) may set it to
    /// `value`.
    pub fn settable(&self, name: &str, value: &Value, side: Side) -> Result<&PropDef, PropError> {
        let p = self.prop(name).ok_or_else(|| PropError::NoSuchProperty {
            ty: self.name.clone(),
            name: name.into(),
        })?;
        if p.flags.on_base() != (side == Side::Base) {
            return Err(PropError::WrongSide {
                ty: self.name.clone(),
                name: name.into(),
                side,
            });
        }
        value
            .check(&p.ty)
            .map_err(|problem| PropError::WrongValue {
                ty: self.name.clone(),
                name: name.into(),
                problem,
            })?;
        Ok(p)
    }

    /// The method `name`, if it runs on `side` and takes `args`.
    pub fn callable(
        &self,
        name: &str,
        side: Side,
        args: &[Value],
    ) -> Result<&MethodDef, CallError> {
        let m = self.method(name).ok_or_else(|| CallError::NoSuchMethod {
            ty: self.name.clone(),
            method: name.into(),
        })?;
        if m.side != side {
            return Err(CallError::WrongSide {
                ty: self.name.clone(),
                method: name.into(),
                side: m.side,
                wanted: side,
            });
        }
        m.check_args(args)
            .map_err(|problem| CallError::BadArguments {
                ty: self.name.clone(),
                method: name.into(),
                problem,
            })?;
        Ok(m)
    }

    /// Default values of every property, in index order.
    pub fn defaults(&self) -> Vec<Value> {
        self.properties.iter().map(|p| p.default.clone()).collect()
    }
}

/// All the entity types of a world, and the digest that identifies them.
#[derive(Clone, Debug, PartialEq)]
pub struct Definitions {
    /// Types in id order.
    pub types: Vec<TypeDef>,
    /// SHA-256 of the canonical encoding of `types`.
    pub digest: [u8; 32],
}

/// A definitions file that cannot be used; the message names the file, the
/// type and the property or method at fault.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct DefError {
    /// The file.
    pub file: PathBuf,
    /// The type at fault, if any.
    pub type_name: Option<String>,
    /// The property or method at fault, if any.
    pub item: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for DefError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(t) = &self.type_name {
            write!(f, ": type {t}")?;
        }
        if let Some(i) = &self.item {
            write!(f, ", {i}")?;
        }
        write!(f, ": {}", self.message)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    /// Map types (BigWorld's `FIXED_DICT`): name, then each key's type.
    #[serde(default)]
    maps: BTreeMap<String, BTreeMap<String, String>>,
    #[serde(default)]
    types: BTreeMap<String, RawType>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawType {
    #[serde(default)]
    has_client: bool,
    #[serde(default)]
    aoi_radius: f32,
    max_speed: f32,
    #[serde(default)]
    properties: BTreeMap<String, RawProp>,
    #[serde(default)]
    methods: BTreeMap<String, RawMethod>,
    #[serde(default)]
    detail: Vec<RawDetail>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDetail {
    within: Option<f32>,
    #[serde(default = "every_tick")]
    every: u16,
    props: Option<Vec<String>>,
}

fn every_tick() -> u16 {
    1
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProp {
    #[serde(rename = "type")]
    ty: String,
    flags: PropFlags,
    #[serde(default)]
    persistent: bool,
    default: Option<toml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMethod {
    side: Side,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    exposed: bool,
}

/// A map type's name and what is wrong with it.
type MapFault = (String, String);

/// Resolves the file's map types, each in terms of the others (a map may
/// hold another, but not itself).
fn resolve_maps(
    raw: &BTreeMap<String, BTreeMap<String, String>>,
) -> Result<BTreeMap<String, MapType>, MapFault> {
    let mut done: BTreeMap<String, MapType> = BTreeMap::new();
    // Each round resolves every map whose keys name only resolved maps; a
    // round that resolves none leaves maps that hold themselves.
    while done.len() < raw.len() {
        let before = done.len();
        for (name, keys) in raw {
            if done.contains_key(name) {
                continue;
            }
            if !valid_name(name) {
                return Err((name.clone(), "names are letters, digits and _".into()));
            }
            if keys.is_empty() || keys.len() > MAX_MAP_KEYS {
                return Err((name.clone(), format!("needs 1 to {MAX_MAP_KEYS} keys")));
            }
            let lookup = |n: &str| done.get(n).cloned();
            let mut resolved = Vec::new();
            for (key, ty) in keys {
                if !valid_name(key) {
                    return Err((
                        name.clone(),
                        format!("key {key:?}: names are letters, digits and _"),
                    ));
                }
                match ValueType::parse(ty, &lookup) {
                    Ok(t) => resolved.push((key.clone(), t)),
                    // Perhaps a map not resolved yet.
                    Err(_) => break,
                }
            }
            if resolved.len() == keys.len() {
                let m = MapType {
                    name: name.clone(),
                    keys: resolved,
                };
                if ValueType::Map(m.clone()).depth() > MAX_DEPTH {
                    return Err((
                        name.clone(),
                        format!("nests deeper than the limit of {MAX_DEPTH}"),
                    ));
                }
                done.insert(name.clone(), m);
            }
        }
        if done.len() == before {
            let stuck = raw
                .keys()
                .find(|n| !done.contains_key(*n))
                .cloned()
                .unwrap_or_default();
            return Err((
                stuck,
                "names a type that is not declared, or holds itself".into(),
            ));
        }
    }
    Ok(done)
}

/// A type's levels of detail from its `[[types.T.detail]]` tables: bands
/// nearest first, each further out than the one before; only the last may
/// leave out `within`. None declared: one level, every tick, every public
/// property.
fn detail_levels(
    raw: &[RawDetail],
    props: &[PropDef],
) -> Result<Vec<DetailLevel>, (Option<String>, String)> {
    let public: Vec<u16> = props
        .iter()
        .filter(|p| p.flags.other_clients())
        .map(|p| p.index)
        .collect();
    if public.len() > MAX_PUBLIC_PROPS {
        return Err((
            None,
            format!(
                "{} properties other clients see; at most {MAX_PUBLIC_PROPS}",
                public.len()
            ),
        ));
    }
    if raw.is_empty() {
        return Ok(vec![DetailLevel {
            within: f32::INFINITY,
            every: 1,
            props: public,
        }]);
    }
    if raw.len() > MAX_DETAIL_LEVELS {
        return Err((
            None,
            format!("at most {MAX_DETAIL_LEVELS} levels of detail"),
        ));
    }
    let mut levels: Vec<DetailLevel> = Vec::new();
    for (i, r) in raw.iter().enumerate() {
        let item = || Some(format!("detail level {}", i + 1));
        let last = i + 1 == raw.len();
        let within = match r.within {
            Some(w) if w.is_finite() && w > 0.0 => w,
            None if last => f32::INFINITY,
            None => {
                return Err((
                    item(),
                    "needs `within` (only the last level may leave it out)".into(),
                ))
            }
            Some(w) => return Err((item(), format!("within = {w}: must be a positive number"))),
        };
        if levels.last().is_some_and(|l| l.within >= within) {
            return Err((item(), "must reach further than the level before".into()));
        }
        if r.every == 0 {
            return Err((item(), "every must be at least 1 tick".into()));
        }
        let props = match &r.props {
            None => public.clone(),
            Some(names) => {
                let mut idx = Vec::new();
                for n in names {
                    match props.iter().find(|p| &p.name == n) {
                        Some(p) if p.flags.other_clients() => idx.push(p.index),
                        Some(_) => {
                            return Err((
                                item(),
                                format!("property {n} is not seen by other clients"),
                            ))
                        }
                        None => return Err((item(), format!("no property {n}"))),
                    }
                }
                idx.sort_unstable();
                idx.dedup();
                idx
            }
        };
        levels.push(DetailLevel {
            within,
            every: r.every,
            props,
        });
    }
    Ok(levels)
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit())
}

impl Definitions {
    /// Reads and checks a definitions file.
    pub fn load(path: &Path) -> Result<Definitions, DefError> {
        let err = |message: String| DefError {
            file: path.to_path_buf(),
            type_name: None,
            item: None,
            message,
        };
        let meta = std::fs::metadata(path).map_err(|e| err(format!("cannot read: {e}")))?;
        if meta.len() > MAX_DEFS_BYTES {
            return Err(err(format!(
                "file is {} bytes, more than the limit of {MAX_DEFS_BYTES}",
                meta.len()
            )));
        }
        let text = std::fs::read_to_string(path).map_err(|e| err(format!("cannot read: {e}")))?;
        Definitions::parse(&text, path)
    }

    /// Parses and checks definitions from text; `file` names the source in errors.
    pub fn parse(text: &str, file: &Path) -> Result<Definitions, DefError> {
        let at = |t: Option<&str>, item: Option<String>, message: String| DefError {
            file: file.to_path_buf(),
            type_name: t.map(str::to_string),
            item,
            message,
        };
        let raw: RawFile = toml::from_str(text).map_err(|e| at(None, None, e.to_string()))?;
        let maps =
            resolve_maps(&raw.maps).map_err(|(m, why)| at(None, Some(format!("map {m}")), why))?;
        let lookup = |name: &str| maps.get(name).cloned();
        let type_of = |text: &str| -> Result<ValueType, String> {
            let ty = ValueType::parse(text, &lookup)?;
            if ty.depth() > MAX_DEPTH {
                return Err(format!("{text} nests deeper than the limit of {MAX_DEPTH}"));
            }
            Ok(ty)
        };
        if raw.types.is_empty() {
            return Err(at(None, None, "no entity types are defined".into()));
        }
        if raw.types.len() > u16::MAX as usize {
            return Err(at(None, None, "too many types".into()));
        }
        let mut types = Vec::new();
        for (i, (name, rt)) in raw.types.into_iter().enumerate() {
            let t = Some(name.as_str());
            if !valid_name(&name) {
                return Err(at(t, None, "type names are letters, digits and _".into()));
            }
            if !(rt.max_speed.is_finite() && rt.max_speed > 0.0) {
                return Err(at(t, None, "max_speed must be a positive number".into()));
            }
            if !(rt.aoi_radius.is_finite() && rt.aoi_radius >= 0.0) {
                return Err(at(t, None, "aoi_radius must be zero or positive".into()));
            }
            if rt.has_client && rt.aoi_radius <= 0.0 {
                return Err(at(
                    t,
                    None,
                    "a type with a client needs a positive aoi_radius".into(),
                ));
            }
            let mut properties = Vec::new();
            for (j, (pname, rp)) in rt.properties.into_iter().enumerate() {
                let item = Some(format!("property {pname}"));
                if !valid_name(&pname) {
                    return Err(at(t, item, "names are letters, digits and _".into()));
                }
                let ty = type_of(&rp.ty).map_err(|e| at(t, item.clone(), e))?;
                let default = match &rp.default {
                    None => Value::zero(&ty),
                    Some(v) => Value::from_toml(v, &ty).ok_or_else(|| {
                        at(t, item.clone(), format!("default {v} is not a valid {ty}"))
                    })?,
                };
                properties.push(PropDef {
                    index: j as u16,
                    name: pname,
                    ty,
                    flags: rp.flags,
                    default,
                    persistent: rp.persistent,
                });
            }
            let mut methods = Vec::new();
            for (j, (mname, rm)) in rt.methods.into_iter().enumerate() {
                let item = Some(format!("method {mname}"));
                if !valid_name(&mname) {
                    return Err(at(t, item, "names are letters, digits and _".into()));
                }
                if rm.exposed && rm.side == Side::Client {
                    return Err(at(
                        t,
                        item,
                        "client methods are called by the server; they cannot be exposed".into(),
                    ));
                }
                if rm.args.len() > 16 {
                    return Err(at(t, item, "at most 16 arguments".into()));
                }
                let args = rm
                    .args
                    .iter()
                    .map(|a| type_of(a))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| at(t, item.clone(), e))?;
                methods.push(MethodDef {
                    index: j as u16,
                    name: mname,
                    side: rm.side,
                    args,
                    exposed: rm.exposed,
                });
            }
            if properties.len() > 256 || methods.len() > 256 {
                return Err(at(t, None, "at most 256 properties and 256 methods".into()));
            }
            let detail =
                detail_levels(&rt.detail, &properties).map_err(|(item, e)| at(t, item, e))?;
            types.push(TypeDef {
                id: TypeId(i as u16),
                name,
                has_client: rt.has_client,
                aoi_radius: rt.aoi_radius,
                max_speed: rt.max_speed,
                properties,
                methods,
                detail,
            });
        }
        Definitions::seal(types).map_err(|e| at(None, None, e))
    }

    /// The definitions of `types`, with their digest.
    fn seal(types: Vec<TypeDef>) -> Result<Definitions, String> {
        let canonical = postcard::to_stdvec(&types).map_err(|e| e.to_string())?;
        let digest: [u8; 32] = Sha256::digest(&canonical).into();
        Ok(Definitions { types, digest })
    }

    /// The same definitions with type `name`'s AoI radius set to `radius`
    /// (a new digest with it), or `None` if there is no such type with a
    /// client. The simulator uses it for a scenario's client AoI.
    pub fn with_aoi_radius(&self, name: &str, radius: f32) -> Option<Definitions> {
        let mut types = self.types.clone();
        let t = types.iter_mut().find(|t| t.name == name && t.has_client)?;
        t.aoi_radius = radius;
        Definitions::seal(types).ok()
    }

    /// A type by id.
    pub fn get(&self, id: TypeId) -> Option<&TypeDef> {
        self.types.get(id.0 as usize)
    }

    /// A type by name.
    pub fn by_name(&self, name: &str) -> Option<&TypeDef> {
        self.types.iter().find(|t| t.name == name)
    }

    /// The digest as hex, for messages and logs.
    pub fn digest_hex(&self) -> String {
        Definitions::hex(&self.digest)
    }

    /// Any digest as hex.
    pub fn hex(digest: &[u8; 32]) -> String {
        hex::encode(digest)
    }

    /// The largest AoI radius of any type.
    pub fn max_aoi_radius(&self) -> f32 {
        self.types.iter().map(|t| t.aoi_radius).fold(0.0, f32::max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Definitions, DefError> {
        Definitions::parse(text, Path::new("defs.toml"))
    }

    #[test]
    fn types_are_found_by_name_and_by_id() {
        let d = parse(
            r#"
            [types.Player]
            has_client = true
            aoi_radius = 50.0
            max_speed = 5.0
            [types.Monster]
            max_speed = 3.0
            "#,
        )
        .expect("valid");
        let player = d.by_name("Player").expect("Player");
        assert!(player.has_client);
        assert!(d.by_name("Monster").is_some_and(|m| !m.has_client));
        assert_eq!(d.get(player.id).map(|t| &t.name), Some(&player.name));
    }

    #[test]
    fn errors_name_file_type_and_property() {
        let e = parse(
            r#"
            [types.Avatar]
            max_speed = 5.0
            [types.Avatar.properties]
            level = { type = "int", flags = "ALL_CLIENTS", default = "high" }
            "#,
        )
        .expect_err("bad default");
        let msg = e.to_string();
        assert!(msg.contains("defs.toml"), "{msg}");
        assert!(msg.contains("type Avatar"), "{msg}");
        assert!(msg.contains("property level"), "{msg}");

        let e = parse(
            r#"
            [types.Avatar]
            max_speed = 5.0
            [types.Avatar.properties]
            level = { type = "int", flags = "EVERYWHERE" }
            "#,
        )
        .expect_err("bad flag");
        assert!(e.to_string().contains("EVERYWHERE"), "{e}");
    }

    #[test]
    fn digest_follows_content_not_layout() {
        let a = parse("[types.A]\nmax_speed = 1.0\n").expect("a");
        let b = parse("# comment\n[types.A]\n\nmax_speed = 1.0\n").expect("b");
        let c = parse("[types.A]\nmax_speed = 2.0\n").expect("c");
        assert_eq!(a.digest, b.digest);
        assert_ne!(a.digest, c.digest);
    }

    #[test]
    fn flags_keep_bigworld_meanings() {
        use PropFlags::*;
        assert!(!CELL_PRIVATE.on_ghosts() && !CELL_PRIVATE.own_client());
        assert!(OTHER_CLIENTS.on_ghosts() && OTHER_CLIENTS.other_clients());
        assert!(!OTHER_CLIENTS.own_client());
        assert!(OWN_CLIENT.own_client() && !OWN_CLIENT.on_ghosts());
        assert!(ALL_CLIENTS.own_client() && ALL_CLIENTS.other_clients());
        assert!(BASE.on_base() && !BASE.on_cell());
        assert!(BASE_AND_CLIENT.own_client() && BASE_AND_CLIENT.on_base());
        assert!(CELL_PUBLIC_AND_OWN.on_ghosts() && !CELL_PUBLIC_AND_OWN.other_clients());
    }

    #[test]
    fn map_types_resolve_in_terms_of_each_other_and_nest_boundedly() {
        let d = parse(
            r#"
            [maps.Stack]
            item = "Item"
            count = "int"
            [maps.Item]
            kind = "string"
            [types.Chest]
            max_speed = 1.0
            [types.Chest.properties]
            slots = { type = "list<Stack>", flags = "CELL_PRIVATE", default = [{ count = 2, item = { kind = "axe" } }] }
            owner = { type = "entity", flags = "CELL_PRIVATE" }
            seal = { type = "bytes", flags = "CELL_PRIVATE", default = [1, 2] }
            [types.Chest.methods]
            open = { side = "cell", args = ["entity", "list<list<int>>"] }
            "#,
        )
        .expect("valid");
        let chest = d.by_name("Chest").expect("Chest");
        let slots = chest.prop("slots").expect("slots");
        assert_eq!(slots.ty.to_string(), "list<Stack>");
        assert_eq!(
            slots.default,
            Value::List(vec![Value::Map(vec![
                Value::Int(2),
                Value::Map(vec![Value::String("axe".into())]),
            ])])
        );
        assert_eq!(
            chest.prop("owner").map(|p| &p.default),
            Some(&Value::Entity(crate::EntityId(0)))
        );
        assert_eq!(
            chest.prop("seal").map(|p| &p.default),
            Some(&Value::Bytes(vec![1, 2]))
        );

        let refused = |text: &str, says: &str| {
            let e = parse(text).expect_err("refused");
            assert!(e.to_string().contains(says), "{e} should say {says}");
        };
        refused(
            "[maps.Loop]\nnext = \"Loop\"\n[types.A]\nmax_speed = 1.0",
            "map Loop",
        );
        refused(
            "[types.A]\nmax_speed = 1.0\n[types.A.properties]\nx = { type = \"list<Nope>\", flags = \"CELL_PRIVATE\" }",
            "property x",
        );
        refused(
            "[types.A]\nmax_speed = 1.0\n[types.A.properties]\nx = { type = \"list<list<list<list<list<int>>>>>\", flags = \"CELL_PRIVATE\" }",
            "deeper than the limit",
        );
        refused(
            "[maps.Item]\nkind = \"string\"\n[types.A]\nmax_speed = 1.0\n[types.A.properties]\nx = { type = \"Item\", flags = \"CELL_PRIVATE\", default = { colour = \"red\" } }",
            "not a valid Item",
        );
    }

    #[test]
    fn levels_of_detail_are_read_nearest_first_with_their_properties() {
        let defs = parse(
            r#"
            [types.Npc]
            max_speed = 4.0
            [types.Npc.properties]
            name = { type = "string", flags = "ALL_CLIENTS" }
            mood = { type = "int", flags = "OTHER_CLIENTS" }
            secret = { type = "int", flags = "CELL_PRIVATE" }
            [[types.Npc.detail]]
            within = 30.0
            [[types.Npc.detail]]
            within = 60.0
            every = 2
            props = ["name"]
            [[types.Npc.detail]]
            every = 5
            props = []
            "#,
        )
        .expect("parses");
        let npc = defs.by_name("Npc").expect("Npc");
        let (mood, name) = (
            npc.prop("mood").expect("mood").index,
            npc.prop("name").expect("name").index,
        );
        let levels: Vec<(f32, u16, Vec<u16>)> = npc
            .detail
            .iter()
            .map(|l| (l.within, l.every, l.props.clone()))
            .collect();
        let mut public = vec![mood, name];
        public.sort();
        assert_eq!(
            levels,
            vec![
                (30.0, 1, public),
                (60.0, 2, vec![name]),
                (f32::INFINITY, 5, vec![])
            ]
        );
        assert_eq!(npc.detail_at(30.0).0, 0);
        assert_eq!(npc.detail_at(30.5).0, 1);
        assert_eq!(npc.detail_at(1e9).0, 2);
        // Without levels: one, every tick, every public property.
        let plain = parse("[types.A]\nmax_speed = 1.0\n").expect("parses");
        let a = &plain.types[0];
        assert_eq!(a.detail.len(), 1);
        assert_eq!((a.detail[0].within, a.detail[0].every), (f32::INFINITY, 1));
    }

    #[test]
    fn bad_levels_of_detail_are_refused_by_name() {
        let with = |levels: &str| {
            parse(&format!(
                "[types.N]\nmax_speed = 1.0\n[types.N.properties]\n\
                 name = {{ type = \"string\", flags = \"ALL_CLIENTS\" }}\n\
                 hp = {{ type = \"int\", flags = \"CELL_PRIVATE\" }}\n{levels}"
            ))
            .expect_err("refused")
            .to_string()
        };
        let level = |body: &str| format!("[[types.N.detail]]\n{body}\n");
        for (levels, says) in [
            (
                level("within = 10.0") + &level("within = 5.0"),
                "further than the level before",
            ),
            (
                level("props = [\"name\"]") + &level("within = 9.0"),
                "needs `within`",
            ),
            (level("within = -1.0"), "positive"),
            (level("within = 10.0\nevery = 0"), "at least 1 tick"),
            (
                level("within = 10.0\nprops = [\"hp\"]"),
                "not seen by other clients",
            ),
            (
                level("within = 10.0\nprops = [\"nope\"]"),
                "no property nope",
            ),
            (level("within = 10.0\ncolour = 3"), "unknown field"),
            (
                (1..=9).map(|i| level(&format!("within = {i}.0"))).collect(),
                "at most 8",
            ),
        ] {
            let e = with(&levels);
            assert!(e.contains(says), "{levels:?}: {e}");
            // Named by type, or (a key the file may not have) by line.
            assert!(e.contains("type N") || e.contains("line "), "{e}");
        }
    }

    #[test]
    fn the_digest_example_of_the_protocol_document_holds() {
        // docs/protocol.md section 10.3.
        let defs = parse("[types.A]\nmax_speed = 1.0\n").expect("parses");
        let canonical = postcard::to_stdvec(&defs.types).expect("encodes");
        assert_eq!(
            canonical,
            [
                0x01, 0x00, 0x01, 0x41, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x80, 0x3f, 0x00,
                0x00, 0x01, 0x00, 0x00, 0x80, 0x7f, 0x01, 0x00
            ]
        );
        assert_eq!(
            defs.digest_hex(),
            "2883325e8c8ba860b9570b12d4cb9ae2443aa7b749c5a44f4ed95b630d6d2618"
        );
    }
}
