//! The command line: every verb and flag berth accepts.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[cfg(test)]
mod reference;

#[derive(Debug, Parser)]
#[command(
    name = "berth",
    version,
    about = "GitOps for self-hosted Docker: keep Compose stacks in step with a git repository"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Global {
    /// The stacks repository (default: the git checkout containing the current directory).
    #[arg(long, global = true, env = "BERTH_REPO", value_name = "PATH")]
    pub repo: Option<PathBuf>,
    /// Where berth keeps its database and work trees (default: [berth] state_dir, else .berth/ in the repo).
    #[arg(long, global = true, env = "BERTH_STATE_DIR", value_name = "PATH")]
    pub state_dir: Option<PathBuf>,
    /// More detail on stderr (repeat for more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check berth.toml and the repository layout; report every problem at once.
    Validate {
        /// Validate a commit instead of the work tree (uncommitted edits included by default).
        #[arg(long, value_name = "REV")]
        r#ref: Option<String>,
    },
    /// List the stacks touched between two commits, with the paths that touched each.
    Changed {
        #[arg(long, value_name = "REV")]
        from: String,
        #[arg(long, value_name = "REV", default_value = "HEAD")]
        to: String,
        #[arg(long, conflicts_with = "names")]
        json: bool,
        /// Print only the names of the changed stacks, one per line (for scripts).
        #[arg(long)]
        names: bool,
    },
    /// Show what a change would do: per touched stack, each service recreated, updated, unchanged,
    /// added or removed, with the diff of compose's rendered configuration (secrets masked).
    Diff {
        /// The old side (default: the merge base of HEAD with its upstream branch, else main or master).
        #[arg(long, value_name = "REV")]
        base: Option<String>,
        /// The new side.
        #[arg(long, value_name = "REV", default_value = "HEAD")]
        head: String,
        /// Only these stacks (default: every stack the change touches).
        #[arg(value_name = "STACK")]
        stacks: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// List, for every image a `[[stack.image]]` or `[[image]]` rule governs, the current version,
    /// the newest the rule allows (asking the registries) and why other tags were skipped.
    Updates {
        /// Only these stacks (default: every stack).
        #[arg(value_name = "STACK")]
        stacks: Vec<String>,
        #[arg(long, value_name = "REV", default_value = "HEAD")]
        r#ref: String,
        #[arg(long)]
        json: bool,
        /// Write the updates of `mode = "commit"` rules into their files, commit them on the current
        /// branch and push it when a remote is configured; push the updates of `mode =
        /// "pull_request"` rules to a branch per stack and open or edit its pull request.
        #[arg(long)]
        apply: bool,
    },
    /// Show, in dependency order, what `apply` would do with each stack and why.
    Plan {
        #[arg(long, value_name = "REV", default_value = "HEAD")]
        r#ref: String,
        #[arg(long)]
        json: bool,
        /// Also show, per service, what each deploy changes since the stack's last successful
        /// deploy (compose's rendered config on both sides, secrets never shown).
        #[arg(long)]
        diff: bool,
    },
    /// Make the Docker hosts match the repository: deploy every stack whose config changed.
    Apply {
        #[arg(long, value_name = "REV", default_value = "HEAD")]
        r#ref: String,
        /// Refuse stacks another deploy is running instead of waiting for it.
        #[arg(long)]
        no_wait: bool,
        /// Deploy even when a deploy window is closed or the stack is frozen (recorded with --reason).
        #[arg(long, requires = "reason")]
        force: bool,
        /// Why the window or freeze is overridden (needs --force); recorded on the deploy.
        #[arg(long, requires = "force", value_name = "TEXT")]
        reason: Option<String>,
    },
    /// Deploy an environment at a release: promote another environment's release under a new
    /// minor version, or deploy an existing tag (a hotfix) directly.
    Promote {
        /// The environment whose release is promoted (its newest, unless --tag).
        #[arg(long)]
        from: Option<String>,
        #[arg(long)]
        to: String,
        /// The release to promote or deploy, e.g. v1.2.4.
        #[arg(long, required_unless_present = "from")]
        tag: Option<String>,
        /// Promote even when a deploy window is closed or the environment is frozen (recorded
        /// with --reason).
        #[arg(long, requires = "reason")]
        force: bool,
        /// Why the window or freeze is overridden (needs --force); recorded on each deploy.
        #[arg(long, requires = "force", value_name = "TEXT")]
        reason: Option<String>,
    },
    /// CI of a commit (default HEAD) on Woodpecker, Gitea/Forgejo or GitHub, from the repo's remote.
    Ci {
        #[command(subcommand)]
        command: CiCommand,
    },
    /// Record compose projects that already run (started without berth) as deployed at a commit,
    /// when their services, images and compose config hashes match it; report every mismatch.
    Adopt {
        /// Stack names (default: every stack).
        stacks: Vec<String>,
        #[arg(long, value_name = "REV", default_value = "HEAD")]
        r#ref: String,
    },
    /// Compare what runs with the last successful deploys; exit 1 when something drifted.
    Drift {
        #[arg(long)]
        json: bool,
        /// Redeploy drifted stacks that have self_heal (or all, with --heal=all).
        #[arg(long)]
        heal: bool,
    },
    /// Stop deploying and healing a stack automatically (an operator stopped it on purpose).
    Pause {
        stack: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Let berth deploy and heal a paused stack again.
    Resume { stack: String },
    /// Stop deploys (of everything, an environment, or some stacks) until a time; self-heal and
    /// rollbacks still run, `--force --reason` overrides.
    Freeze {
        /// Stacks to freeze (default: every stack, unless --env).
        #[arg(conflicts_with = "env")]
        stacks: Vec<String>,
        /// Freeze the stacks of this environment.
        #[arg(long)]
        env: Option<String>,
        /// When it ends: a duration (48h, 3d), an instant (2026-12-24T18:00:00+01:00) or a local
        /// date and time (2026-12-24 18:00).
        #[arg(long, value_name = "TIME")]
        until: String,
        #[arg(long, value_name = "TEXT")]
        reason: String,
    },
    /// Lift freezes (default: every freeze; or an environment's, or some stacks').
    Unfreeze {
        #[arg(conflicts_with = "env")]
        stacks: Vec<String>,
        #[arg(long)]
        env: Option<String>,
    },
    /// Convert another tool's configuration into berth.toml (printed on stdout).
    Import {
        #[command(subcommand)]
        from: ImportFrom,
    },
    /// Bring up the `manual = true` stacks (secrets, reverse proxy, berth itself) in dependency order.
    Bootstrap {
        #[arg(long, value_name = "REV", default_value = "HEAD")]
        r#ref: String,
    },
    /// Deploy one stack now, whatever its state, optionally with variables.
    Deploy {
        stack: String,
        #[arg(long, value_name = "REV", default_value = "HEAD")]
        r#ref: String,
        /// A variable for compose interpolation (repeatable), recorded with the deploy.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Refuse stacks another deploy is running instead of waiting for it.
        #[arg(long)]
        no_wait: bool,
        /// Deploy even when a deploy window is closed or the stack is frozen (recorded with --reason).
        #[arg(long, requires = "reason")]
        force: bool,
        /// Why the window or freeze is overridden (needs --force); recorded on the deploy.
        #[arg(long, requires = "force", value_name = "TEXT")]
        reason: Option<String>,
    },
    /// One line per stack: last deploy, commit, status, age.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Past deploys of a stack, newest first; or, with --env, an environment's releases.
    History {
        #[arg(required_unless_present = "env")]
        stack: Option<String>,
        /// List the releases (version tags) of an environment with their deploy outcomes.
        #[arg(long, conflicts_with = "stack")]
        env: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// Print the captured log and verification results of one deploy.
    Logs { id: i64 },
    /// Put an earlier version of a stack back (default: the success before the current one).
    Rollback {
        stack: String,
        /// The deploy to put back (its commit and variables).
        #[arg(long, value_name = "DEPLOY_ID", conflicts_with = "ref")]
        to: Option<i64>,
        /// A revision to put back.
        #[arg(long = "ref", value_name = "REV")]
        r#ref: Option<String>,
        /// Refuse stacks another deploy is running instead of waiting for it.
        #[arg(long)]
        no_wait: bool,
        /// Roll back even when a window with `self_heal = false` is closed (recorded with --reason).
        #[arg(long, requires = "reason")]
        force: bool,
        /// Why the window is overridden (needs --force); recorded on the deploy.
        #[arg(long, requires = "force", value_name = "TEXT")]
        reason: Option<String>,
    },
    /// Follow deploys until they settle: exit 0 succeeded, 1 failed, 3 rolled back.
    Watch {
        /// A deploy id.
        id: Option<i64>,
        /// Wait for and follow the deploys of this commit (call it right after a push).
        #[arg(long, value_name = "SHA", conflicts_with_all = ["id", "stack"])]
        commit: Option<String>,
        /// Follow the newest deploy of this stack.
        #[arg(long, conflicts_with = "id")]
        stack: Option<String>,
        /// Ask a running `berth serve` instead of the local state (API key from BERTH_API_KEY/SECRET).
        #[arg(long, env = "BERTH_SERVER", value_name = "URL")]
        server: Option<String>,
        #[arg(long, env = "BERTH_API_KEY", hide_env_values = true)]
        api_key: Option<String>,
        #[arg(long, env = "BERTH_API_SECRET", hide_env_values = true)]
        api_secret: Option<String>,
        /// Give up after this long.
        #[arg(long, default_value = "30m")]
        timeout: String,
    },
    /// Check git, docker, compose, every server's engine, the config and the state dir.
    Doctor,
    /// Run the controller: mirror the repositories, serve webhooks and the API, deploy on push.
    Serve {
        /// A config file with [berth] and [[repo]] (default: berth.toml of --repo's committed HEAD).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Listen address (default: [berth] listen, else 127.0.0.1:8080).
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
        /// How long running deploys may take to finish on SIGTERM.
        #[arg(long, default_value = "2m", value_name = "DURATION")]
        shutdown_grace: String,
        /// Log as JSON lines (default on when stderr is not a terminal).
        #[arg(long)]
        json_logs: Option<bool>,
    },
    /// Manage API keys of the controller.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Ask a running berth (or Komodo) server to deploy stacks: the CI-side client.
    Trigger {
        /// Stack names.
        #[arg(required = true)]
        stacks: Vec<String>,
        /// Base URL of the server.
        #[arg(long, env = "BERTH_SERVER", value_name = "URL")]
        server: String,
        #[arg(long, env = "BERTH_API_KEY", hide_env_values = true)]
        api_key: String,
        #[arg(long, env = "BERTH_API_SECRET", hide_env_values = true)]
        api_secret: String,
        /// Wait for each deploy to finish and fail if it failed.
        #[arg(long)]
        wait: bool,
    },
}

#[derive(Debug, Args)]
pub struct CiTarget {
    /// The commit (default: HEAD).
    #[arg(long, value_name = "SHA")]
    pub commit: Option<String>,
    /// woodpecker, gitea, forgejo or github (default: the first require_ci in berth.toml).
    #[arg(long)]
    pub provider: Option<String>,
    /// Base URL of the CI or forge API.
    #[arg(long)]
    pub url: Option<String>,
    /// owner/name (default: from the `origin` remote).
    #[arg(long = "ci-repo", value_name = "OWNER/NAME")]
    pub ci_repo: Option<String>,
    /// Environment variable holding the API token.
    #[arg(long, value_name = "VAR", default_value = "BERTH_CI_TOKEN")]
    pub token_env: String,
}

#[derive(Debug, Subcommand)]
pub enum CiCommand {
    /// Print the CI state once: exit 0 success, 1 failure, 4 pending.
    Status {
        #[command(flatten)]
        target: CiTarget,
    },
    /// Follow CI until it finishes: exit 0 success, 1 failure.
    Watch {
        #[command(flatten)]
        target: CiTarget,
        #[arg(long, default_value = "30m")]
        timeout: String,
    },
    /// Plan a pull request from CI: comment the plan and diff on it (edited in place) and post
    /// the `berth/plan` status: exit 0 when it plans cleanly, 1 when not.
    Plan {
        #[command(flatten)]
        target: CiTarget,
        /// The pull (merge) request's number.
        #[arg(long, value_name = "N")]
        pr: u64,
        /// Compare with this revision (default: the merge base with the upstream branch, `main` or `master`).
        #[arg(long, value_name = "REV")]
        base: Option<String>,
        /// Never decrypt secrets (a request from a fork): they show as `(secret reference)`.
        #[arg(long)]
        no_secrets: bool,
        /// Print the comment; post nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ImportFrom {
    /// A Komodo ResourceSync file: `berth import komodo resources.toml > berth.toml`.
    Komodo {
        file: PathBuf,
        /// Exit with 2 when anything was not mapped.
        #[arg(long)]
        strict: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key; its secret is printed once and only a hash is stored.
    Create {
        #[arg(long)]
        name: String,
        /// read, deploy or admin.
        #[arg(long, default_value = "deploy")]
        scope: String,
        /// Glob of stacks the key may deploy.
        #[arg(long, default_value = "*")]
        stacks: String,
    },
    /// List keys (never their secrets).
    List,
    /// Delete a key by name.
    Delete { name: String },
}
