//! berth's integration tests: one binary, one module per area, against the real Docker engine,
//! real git repositories in temp dirs and the real berth binary (shared setup in `common`).
//! `cargo test -p berth --test it -- MODULE::` runs one area.

mod common;

mod adopt;
mod apply;
mod ci_gate;
mod cli;
mod compose;
mod concurrency;
mod contract;
mod credhelpers;
mod dashboard;
mod dashboard_freezes;
mod dashboard_ops;
mod diff;
mod errors;
mod faults;
mod images;
mod komodo;
mod multi;
mod notify;
mod openapi;
mod ownership;
mod pr_plan;
mod real_repo;
mod release;
mod rollout;
mod secrets_logs;
mod serve;
mod signed;
mod ssh;
mod verify;
mod windows;
