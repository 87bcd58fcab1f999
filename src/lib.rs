//! # Tessera
//!
//! What every role of a Tessera world shares: ids, entity definitions and
//! property values, the wire protocol, the QUIC transport, time, and the
//! client library that bots and game clients use.
//!
//! The roles themselves live in their own crates (`tessera-cellapp`,
//! `tessera-baseapp`, `tessera-manager`); `docs/architecture.md` explains how
//! the pieces fit together.

#[cfg(feature = "admin")]
pub mod admin;
pub mod balance;
pub mod channel;
#[cfg(feature = "transport")]
pub mod client;
pub mod defs;
pub mod frame;
pub mod ids;
pub mod layout;
pub mod link;
pub mod membership;
pub mod metrics;
#[cfg(feature = "transport")]
pub mod net;
pub mod proto;
pub mod recording;
#[cfg(feature = "storage")]
pub mod storage;
pub mod time;
pub mod timers;
pub mod value;
pub mod view;

pub use defs::{Definitions, PropFlags, Side, TypeDef, TypeId};
pub use ids::{AppId, EntityId, IdBlock, IdPool, MANAGER};
pub use time::Time;
pub use value::{Value, ValueType};
