//! The library half of `tessera-tools`: [`viz`], which draws layout
//! snapshots for `tessera viz` and the simulator's frames. The `tessera`
//! binary is a thin shell over the roles, the simulator (`tessera-sim`) and
//! this library.

pub mod viz;
