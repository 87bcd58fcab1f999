//! # tessera-manager
//!
//! The manager owns membership of the cluster, entity-id blocks, the layout
//! of cells, login, and the admin HTTP API. [`cluster::Cluster`] is the
//! state machine of membership, layout and login, and [`manager::Manager`]
//! the whole process's (app connections, timers) around it, with no I/O;
//! [`driver`] pumps it (feature `driver`).

#[cfg(feature = "driver")]
pub mod accounts;
#[cfg(feature = "driver")]
pub mod admin;
pub mod balance;
pub mod cluster;
#[cfg(feature = "driver")]
pub mod driver;
pub mod manager;
pub mod metrics;

pub use cluster::Cluster;
pub use manager::Manager;
