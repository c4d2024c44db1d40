//! berth's error type and exit codes; rendered (`error:` and `help:` lines) only in `main`.

use berth_core::ConfigError;

use crate::docker::DockerError;
use crate::git::GitError;
use crate::lock::LockError;
use crate::state::StateError;

/// Exit codes (documented in the README).
pub mod exit {
    pub const OK: i32 = 0;
    /// A deploy failed or was blocked, or a runtime dependency (docker, git, state) failed.
    pub const FAILED: i32 = 1;
    /// Bad usage or invalid configuration: nothing was done.
    pub const USAGE: i32 = 2;
    /// A deploy failed verification and the previous version was put back.
    pub const ROLLED_BACK: i32 = 3;
    /// stdout was closed by its reader (`berth logs 7 | head`): 128 + SIGPIPE, as a shell reports a tool killed by it.
    pub const BROKEN_PIPE: i32 = 141;
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid configuration ({} problem{})", .0.len(), if .0.len() == 1 { "" } else { "s" })]
    Config(Vec<ConfigError>),
    #[error("{0}")]
    Usage(String),
    /// A name or revision given on the command line that does not exist, with a suggestion.
    #[error("{}", .0.message)]
    Unknown(ConfigError),
    #[error(transparent)]
    Git(#[from] GitError),
    #[error(transparent)]
    Docker(#[from] DockerError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error("{0}")]
    Io(String),
    /// The commit to deploy is not signed by a key `verify_commits` allows: nothing was deployed.
    #[error("{0}")]
    Unsigned(String),
}

impl From<Vec<ConfigError>> for Error {
    fn from(e: Vec<ConfigError>) -> Self {
        Error::Config(e)
    }
}

impl From<ConfigError> for Error {
    fn from(e: ConfigError) -> Self {
        Error::Config(vec![e])
    }
}

impl Error {
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Config(_) | Error::Usage(_) | Error::Unknown(_) | Error::Unsigned(_) => exit::USAGE,
            Error::Docker(DockerError::BadChoice(_)) => exit::USAGE,
            Error::Git(GitError::UnknownRev { .. } | GitError::NotARepo(_)) => exit::USAGE,
            _ => exit::FAILED,
        }
    }

    /// What the user can do about it.
    pub fn help(&self) -> Option<String> {
        match self {
            Error::Docker(DockerError::Unreachable { .. }) => Some(
                "start the Docker engine (systemctl start docker) or point the server's `docker` endpoint at a running one; `berth doctor` checks every server".into(),
            ),
            Error::Docker(DockerError::NoCompose) => {
                Some("install the compose plugin (docker-compose-plugin) or docker-compose".into())
            }
            Error::Docker(DockerError::Forced { .. } | DockerError::BadChoice(_)) => Some(
                "unset BERTH_COMPOSE to use whichever works (the plugin first), or install the one it names".into(),
            ),
            Error::Git(GitError::NotARepo(_)) => {
                Some("run berth inside a checkout of your stacks repository or pass --repo PATH".into())
            }
            Error::Git(GitError::UnknownRev { .. }) => {
                Some("check the revision with `git log`; fetch first if it is new".into())
            }
            Error::Unknown(e) => e.help.clone(),
            Error::Unsigned(_) => Some(
                "sign the commit with an allowed key (git commit -S) and deploy that; `berth rollback` can still put back a commit berth deployed before".into(),
            ),
            Error::Lock(LockError::Busy { .. }) => Some("wait for the other deploy to finish, then retry".into()),
            _ => None,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
