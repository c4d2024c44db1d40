//! Fuzz target: decoding of stored deploy rows (maps as JSON text, status as text) and the map encoding.
#![no_main]

use std::collections::BTreeMap;

use arbitrary::Arbitrary;
use berth_core::record::{DeployStatus, StoredDeploy, decode_list, decode_map, encode_map};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Row {
    id: i64,
    stack: String,
    server: String,
    commit: String,
    config_hash: String,
    vars: String,
    overrides: String,
    status: String,
    reason: Option<String>,
    trigger: String,
    started_at: i64,
    finished_at: Option<i64>,
    phase: String,
    /// A map as berth writes it, read back.
    written: BTreeMap<String, String>,
}

fuzz_target!(|row: Row| {
    let stored = StoredDeploy {
        id: row.id,
        stack: row.stack,
        server: row.server,
        commit: row.commit,
        config_hash: row.config_hash,
        vars: row.vars,
        overrides: row.overrides,
        status: row.status,
        reason: row.reason,
        trigger: row.trigger,
        started_at: row.started_at,
        finished_at: row.finished_at,
        phase: row.phase,
    };
    let r = stored.clone().decode();
    assert_eq!(
        (r.id, &r.stack, &r.phase, r.finished_at),
        (stored.id, &stored.stack, &stored.phase, stored.finished_at)
    );
    match DeployStatus::parse(&stored.status) {
        Some(s) => assert_eq!(r.status, s),
        None => assert_eq!(r.status, DeployStatus::Interrupted),
    }
    // Decoding is stable: what it yields encodes and decodes to itself.
    for (text, map) in [(&stored.vars, &r.vars), (&stored.overrides, &r.overrides)] {
        assert_eq!(&decode_map(&encode_map(map)), map, "{text:?}");
    }
    let _ = decode_list(&stored.vars);
    assert_eq!(decode_map(&encode_map(&row.written)), row.written);
});
