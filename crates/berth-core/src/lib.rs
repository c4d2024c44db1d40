//! berth-core: the pure, synchronous heart of berth.
//!
//! Everything here is a function of its inputs: the text of `berth.toml`, a
//! listing of the repository tree at one commit, the list of changed paths
//! between two commits and the last recorded deploys. No I/O, no processes,
//! no clocks. The `berth` binary gathers those inputs (git, docker, SQLite)
//! and acts on what this crate decides.
//!
//! Data flows one way: [`config`] → [`project`] (discovery + validation) →
//! [`changes`] / [`hash`] → [`plan`] → the binary's executors → [`record`].

pub mod api;
pub mod changes;
pub mod compat;
pub mod config;
pub mod dag;
pub mod dashboard;
pub mod diff;
pub mod discovery;
pub mod duration;
pub mod error;
pub mod hash;
pub mod images;
pub mod import;
pub mod ownership;
pub mod plan;
pub mod prcomment;
pub mod project;
pub mod record;
pub mod rollback;
pub mod rollout;
pub mod schema;
pub mod signing;
pub mod textdiff;
pub mod tree;
pub mod vars;
pub mod verify;
pub mod version;
pub mod webhook;
pub mod window;

pub use error::{ConfigError, Location};
pub use project::{Mode, Project, Server, Stack};
pub use tree::{Tree, TreeEntry};
