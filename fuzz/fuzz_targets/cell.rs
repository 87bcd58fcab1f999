//! A cell handling whatever its peers send: the input is a run of
//! length-prefixed app messages, each from the sender its first byte
//! names, with a tick between some of them. Nothing a peer sends may
//! panic a cellapp (messages that do not decode are what the link's
//! reader refuses; those that do reach the cell as they are).
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use tessera::proto::app::AppMsg;
use tessera::{frame, AppId, Definitions, IdBlock, Time};
use tessera_cellapp::cell::{Cell, CellConfig};

fn defs() -> &'static Definitions {
    static DEFS: OnceLock<Definitions> = OnceLock::new();
    DEFS.get_or_init(tessera_demo::definitions)
}

fuzz_target!(|data: &[u8]| {
    let mut cell = Cell::new(
        defs(),
        tessera_demo::game().cell_behaviors().clone(),
        CellConfig::default(),
        IdBlock { next: 1, end: 1000 },
    );
    let mut now = Time(1_000_000);
    let mut rest = data;
    while rest.len() >= 3 {
        let from = AppId(u32::from(rest[0] % 8));
        let len = usize::from(u16::from_le_bytes([rest[1], rest[2]]));
        rest = &rest[3..];
        let body = &rest[..len.min(rest.len())];
        rest = &rest[body.len()..];
        if let Ok(msg) = frame::decode::<AppMsg>(body) {
            cell.handle(now, from, msg);
        }
        if from.0 == 7 {
            now = now.plus(std::time::Duration::from_millis(100));
            cell.tick(now);
        }
        let _ = cell.drain();
    }
});
