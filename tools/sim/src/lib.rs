//! # tessera-sim
//!
//! The deterministic simulator: the very cores the servers' drivers pump
//! (manager, cellapps, baseapps, with every timer of theirs), many of them
//! in one thread, over an in-memory network ([`net`]) with a virtual clock,
//! seeded delays and reordering (each connection keeps its own order, as a
//! QUIC stream does; different ones interleave freely), crashes and cut
//! connections, plus simulated clients ([`client`]). A run is a pure
//! function of its seed, so a failing seed replays exactly.
//!
//! It builds on the cores alone: neither tokio nor quinn is in its
//! dependency tree, and CI checks that this stays so. [`scenario`] and
//! [`score`] are the load-balancing lab behind `tessera sim`.

pub mod client;
pub mod crowd;
pub mod net;
pub mod replay;
pub mod scenario;
pub mod score;
pub mod truth;
pub mod world;

#[cfg(feature = "faults")]
pub use world::Faults;
pub use world::{SimConfig, SimStats, SimWorld};
