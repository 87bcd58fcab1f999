//! # tessera-manager
//!
//! The manager owns membership of the cluster, entity-id blocks, the layout
//! of cells, login, and the admin HTTP API. [`cluster::Manager`] is the
//! sans-IO core; [`driver`] runs it.

pub mod accounts;
pub mod admin;
pub mod balance;
pub mod cluster;
pub mod driver;
pub mod metrics;

pub use cluster::Manager;
