//! Fuzz target: the Komodo ResourceSync import; whatever it accepts must come out as valid `berth.toml` syntax.
#![no_main]

use berth_core::config;
use berth_core::import::komodo;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(out) = komodo(text) else { return };
    if let Err(e) = config::parse("berth.toml", &out.toml) {
        panic!("import wrote a berth.toml that does not parse: {e:?}\n{}", out.toml);
    }
});
