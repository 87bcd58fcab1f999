//! A layout from the wire: decoding checks it, and a layout that decodes
//! can be walked (every query answers without a panic; every cell has its
//! rectangle).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tessera::frame;
use tessera::layout::Layout;

fuzz_target!(|data: &[u8]| {
    let Ok(layout) = frame::decode::<Layout>(data) else {
        return;
    };
    assert_eq!(layout.validate(), Ok(()));
    let cells = layout.cells();
    assert!(!cells.is_empty());
    let b = layout.bounds;
    for (fx, fz) in [(0.0, 0.0), (0.5, 0.5), (1.0, 1.0), (0.25, 0.75)] {
        let x = b.x0 + (b.x1 - b.x0) * fx;
        let z = b.z0 + (b.z1 - b.z0) * fz;
        let _ = layout.app_at(x, z);
    }
    let _ = layout.lines();
    for c in &cells {
        assert_eq!(layout.rect(c.cell), Some(c.rect));
        let _ = layout.cells_meeting(&c.rect.grow(10.0));
    }
});
