//! `tessera`: the stock binary, which runs the demo world. A game's own
//! binary is this file with its own game.

/// mimalloc: the servers and the simulator allocate many small, short-lived
/// buffers (packets, messages, effects), where it is cheaper than glibc's.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    tessera_tools::run(tessera_demo::game())
}
