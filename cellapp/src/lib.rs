//! # tessera-cellapp
//!
//! The cellapp simulates cells: the real entities inside each cell, their
//! behaviours, the spatial index, and the witness (area of interest) of every
//! client-controlled real. [`cell::Cell`] is the cell's state
//! machine, and [`cellapp::Cellapp`] the whole process's (membership,
//! links, timers) around it, with no I/O; [`driver`] is the thin tokio task
//! that pumps it (feature `driver`).

pub mod behavior;
pub mod cell;
pub mod cellapp;
#[cfg(feature = "driver")]
pub mod driver;
pub mod entry;
pub mod index;
pub mod load;
pub mod metrics;
pub mod pace;
pub mod witness;

pub use cell::{Cell, CellConfig, Faults};
