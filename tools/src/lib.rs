//! The library half of `tessera-tools`: [`viz`], which draws layout
//! snapshots for `tessera viz` and the simulator's frames, and [`http`], the
//! HTTP client the tools and the tests share. The `tessera` binary is a thin
//! shell over the roles, the simulator (`tessera-sim`) and this library.

pub mod http;
pub mod viz;
