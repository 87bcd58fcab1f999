//! # tessera-baseapp
//!
//! The baseapp holds the location-free half of entities (*bases*), one
//! *proxy* per connected client, and persistence. [`bases::Bases`] is the
//! state machine of the bases, and [`baseapp::Baseapp`] the whole
//! process's (membership, links, timers) around it, with no I/O;
//! [`driver`] pumps it over QUIC with a storage thread (feature `driver`).

pub mod baseapp;
pub mod bases;
pub mod behavior;
#[cfg(feature = "driver")]
pub mod driver;
pub mod metrics;
pub mod persist;
pub mod store;

pub use baseapp::Baseapp;
pub use bases::{BaseConfig, Bases};
