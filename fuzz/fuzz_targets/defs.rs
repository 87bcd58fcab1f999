//! An entity definitions file, as a studio writes it: parsing fails with
//! an error that names the problem, or gives definitions.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;
use tessera::Definitions;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Definitions::parse(text, Path::new("fuzz.toml"));
    }
});
