//! # tessera-baseapp
//!
//! The baseapp holds the location-free half of entities (*bases*), one
//! *proxy* per connected client, and persistence. [`bases::Baseapp`] is the
//! sans-IO core; [`driver`] runs it over QUIC with a storage thread.

pub mod bases;
pub mod driver;
pub mod metrics;
pub mod persist;
pub mod store;

pub use bases::{BaseConfig, Baseapp};
