//! The simulation harness: the same sans-IO cores the servers run, many of
//! them in one thread, over an in-memory network ([`net`]) with a virtual
//! clock and seeded delays and reordering (each link keeps its own order, as
//! a QUIC stream does; different links interleave freely), plus simulated
//! clients ([`client`]). A run is a pure function of its seed, so a failing
//! seed replays exactly.

pub mod client;
pub mod crowd;
pub mod figure;
pub mod net;
pub mod scenario;
pub mod score;
pub mod truth;
pub mod world;

pub use world::{SimConfig, SimWorld, REJOIN_WINDOW_US};
