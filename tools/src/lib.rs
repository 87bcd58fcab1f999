//! The library half of `tessera-tools`: the deterministic simulator that runs
//! the real cores of manager, cellapps and baseapps in one thread, over an
//! in-memory network and a virtual clock. The `tessera` binary is a thin shell
//! over the roles and this library; the test suite drives the simulator
//! directly. [`viz`] draws layout snapshots for `tessera viz` and the
//! simulator's frames; [`http`] is the HTTP client the tools and the tests
//! share.

pub mod http;
pub mod sim;
pub mod viz;
