//! # tessera-cellapp
//!
//! The cellapp simulates cells: the real entities inside each cell, their
//! behaviours, the spatial index, and the witness (area of interest) of every
//! client-controlled real. [`cell::Cell`] is the sans-IO core;
//! [`driver`] is the thin tokio task that connects it to the cluster.

pub mod behavior;
pub mod cell;
pub mod driver;
pub mod index;
pub mod load;
pub mod metrics;
pub mod real;
pub mod witness;

pub use cell::{Cell, CellConfig, Faults};
