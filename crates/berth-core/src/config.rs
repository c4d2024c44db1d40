//! The `berth.toml` file format: strict serde types and parsing with located errors.
//!
//! This module only knows the file's shape. Meaning (discovery, defaults,
//! cross-references) is given to it by [`crate::project`].

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use crate::error::{ConfigError, Location, did_you_mean};

/// Name of the configuration file at the root of a stacks repository.
pub const FILE_NAME: &str = "berth.toml";

/// The whole file. Every section is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    #[serde(default)]
    pub berth: Settings,
    #[serde(default)]
    pub server: Vec<Spanned<ServerToml>>,
    #[serde(default)]
    pub discovery: Option<DiscoveryToml>,
    #[serde(default)]
    pub defaults: DefaultsToml,
    #[serde(default)]
    pub stack: Vec<Spanned<StackToml>>,
    #[serde(default)]
    pub repo: Vec<Spanned<RepoToml>>,
    #[serde(default)]
    pub environment: Vec<Spanned<EnvironmentToml>>,
    #[serde(default)]
    pub notify: Vec<Spanned<NotifyToml>>,
    #[serde(default)]
    pub dashboard: Option<Spanned<DashboardToml>>,
    #[serde(default)]
    pub window: Vec<Spanned<WindowToml>>,
    /// `[[image]]`: image update rules for every stack (by image pattern, or for all images).
    #[serde(default)]
    pub image: Vec<Spanned<ImageToml>>,
    /// `[updates]`: how image updates are written back.
    #[serde(default)]
    pub updates: Option<Spanned<crate::images::settings::UpdatesToml>>,
}

/// `[[stack.image]]` / `[[image]]`: how berth looks for newer versions of images.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageToml {
    /// The compose service it applies to (default: every service of the stack).
    pub service: Option<String>,
    /// The images it applies to: a glob over the image name without tag, e.g. `grafana/*` or `ghcr.io/me/app`.
    pub image: Option<String>,
    /// A version range of the tags to adopt: `^1.4`, `~2.3`, `>=1.2, <2`.
    pub semver: Option<String>,
    /// A pattern over tags whose first capture group (or `(?P<version>..)`) is the version, e.g. `^RELEASE\.(\d{4}-\d{2}-\d{2})`.
    pub regex: Option<String>,
    /// `digest`: follow the digest of the tag (a moving tag like `latest` or `1.4`), written as `tag@sha256:..`.
    pub pin: Option<String>,
    /// Adopt pre-releases (`2.0.0-rc1`): `true` or `false` (default: only when the range names one).
    pub prerelease: Option<bool>,
    /// How old a version must be before it is adopted, e.g. `3d`.
    pub min_age: Option<String>,
    /// Tags never adopted (globs, e.g. `11.3.*`, `*-alpine`).
    #[serde(default)]
    pub ignore: Vec<String>,
    /// `report` (default: only `berth updates` shows them), `commit` (written to the branch by `berth updates --apply`)
    /// or `pull_request`.
    pub mode: Option<String>,
}

/// `[[window]]`: when deploys may (`allow`) or may not (`deny`) start.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowToml {
    /// A label for messages (default: its position, `#1`).
    pub name: Option<String>,
    /// `allow` or `deny`.
    pub kind: String,
    /// A 5-field cron expression for when the window opens, e.g. `0 18 * * FRI`; needs `duration`.
    pub schedule: Option<String>,
    /// How long the window stays open after each `schedule` time, e.g. `62h`.
    pub duration: Option<String>,
    /// Weekdays, e.g. `["mon-fri"]` or `["sat", "sun"]` (default every day when `hours` is set).
    pub days: Option<Vec<String>>,
    /// Wall-clock hours, e.g. `08:00-18:00`; `22:00-06:00` runs across midnight.
    pub hours: Option<String>,
    /// IANA time zone of `schedule`/`days`/`hours` (default `UTC`).
    pub timezone: Option<String>,
    /// Stacks it applies to (default: every stack).
    #[serde(default)]
    pub stacks: Vec<String>,
    /// Environments it applies to (default: every environment).
    #[serde(default)]
    pub environments: Vec<String>,
    /// Servers it applies to (default: every server).
    #[serde(default)]
    pub servers: Vec<String>,
    /// Self-heal and `berth rollback` ignore this window (default true).
    pub self_heal: Option<bool>,
}

/// `[dashboard]`: the web dashboard of `berth serve`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DashboardToml {
    /// Serve the dashboard (default true).
    pub enabled: Option<bool>,
    /// Path prefix when a reverse proxy serves berth under a sub-path, e.g. `/berth`.
    pub base_path: Option<String>,
    /// Who may view: `public`, `key` (login with an API key, the default), `basic` or `forward`.
    pub read: Option<String>,
    /// Who may deploy and roll back: `key` (the default; the key's scope decides), `basic`, `forward` or `none`.
    pub write: Option<String>,
    /// Users of `basic`/`forward` write access allowed to deploy (default: every signed-in user).
    pub writers: Option<Vec<String>>,
    /// Users of `basic`/`forward` write access allowed to freeze and unfreeze (default: nobody).
    pub admins: Option<Vec<String>>,
    /// An htpasswd file's text (bcrypt entries, `htpasswd -B`) for `basic`.
    pub htpasswd: Option<SecretRef>,
    /// Identity from a reverse proxy that authenticates (Authelia, Authentik, oauth2-proxy).
    pub forward_auth: Option<ForwardAuthToml>,
    /// Proxies (CIDRs) whose `X-Forwarded-Proto` and `X-Forwarded-Host` are honoured.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// The dashboard's address as people reach it (with any base path), e.g.
    /// `https://berth.example.com/berth`: commit statuses link to deploy pages under it.
    pub public_url: Option<String>,
}

/// `forward_auth = { header = "Remote-User", proxies = ["10.0.0.5/32"] }`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardAuthToml {
    /// The header carrying the signed-in user (default `Remote-User`).
    pub header: Option<String>,
    /// Addresses (CIDRs) the header is honoured from; from anywhere else it is ignored.
    pub proxies: Vec<String>,
}

/// `[[notify]]`: where berth tells what happened.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyToml {
    /// `webhook`, `ntfy`, `slack`, `discord` or `gotify`.
    pub kind: String,
    pub url: String,
    /// Events to send (default all): started, succeeded, failed, rolled_back, blocked, waiting, drift, config_rejected.
    pub events: Option<Vec<String>>,
    /// `webhook`: HMAC-SHA256 key for the `X-Berth-Signature-256` header.
    pub secret: Option<SecretRef>,
    /// `gotify` application token, `ntfy` access token.
    pub token: Option<SecretRef>,
}

/// Every event a `[[notify]]` target can subscribe to.
pub const NOTIFY_EVENTS: [&str; 8] =
    ["started", "succeeded", "failed", "rolled_back", "blocked", "waiting", "drift", "config_rejected"];

/// A secret value that never sits in the file itself: read from a file or an env var.
/// `{ file = "/run/secrets/x" }` or `{ env = "X" }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct SecretRef {
    pub file: Option<String>,
    pub env: Option<String>,
}

/// A variable's value in `env = { .. }`: text, or a secret read at deploy time.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(untagged)]
pub enum EnvValue {
    Plain(String),
    Secret(SecretRef),
}

/// `[[repo]]`: a remote repository `berth serve` mirrors and deploys from.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepoToml {
    pub name: String,
    /// Anything `git clone` accepts (https, ssh, a local path).
    pub url: String,
    pub branch: Option<String>,
    /// Fallback poll interval when no webhook arrives (default 5m; "0" disables).
    pub poll: Option<String>,
    /// HTTP token for fetching (sent as a header, never put in the URL).
    pub token: Option<SecretRef>,
    /// Shared secret of the forge's webhook (HMAC-SHA256) and of `POST /sync` and `/deploy`.
    pub webhook_secret: Option<SecretRef>,
    /// Deploy only commits signed by an allowed key (checked whatever the repository's own `berth.toml` says).
    pub verify_commits: Option<VerifyCommitsToml>,
    /// Comment the plan and effective diff on pull/merge requests and post a `berth/plan` status.
    pub pr_plans: Option<bool>,
    /// Plan only pull requests from branches of this repository (forks are ignored).
    pub pr_plans_same_repo: Option<bool>,
    /// The forge's API for PR comments and statuses (default: guessed from the webhook and `url`).
    pub forge: Option<ForgeToml>,
}

/// `forge = { provider = "gitea", url = "https://git.example.com", token = { file = ".." } }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForgeToml {
    /// `github`, `gitea`, `forgejo` or `gitlab` (default: the forge the webhook came from).
    pub provider: Option<String>,
    /// The API's base URL (default: `https://api.github.com` for GitHub, else the origin of the repo's `url`).
    pub url: Option<String>,
    /// A token allowed to comment and post statuses (default: the repo's `token`).
    pub token: Option<SecretRef>,
}

/// `verify_commits = { format = "ssh", allowed_signers = ".." }` or `{ format = "gpg", keyring = ".." }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyCommitsToml {
    /// `ssh` or `gpg`.
    pub format: String,
    /// `ssh`: git's allowed-signers file (an absolute path on the host, or a secret reference to its text).
    pub allowed_signers: Option<KeyRef>,
    /// `gpg`: a GNUPGHOME folder or a keyring file (an absolute path on the host), or a secret reference to armored public keys.
    pub keyring: Option<KeyRef>,
}

/// Key material: a path on the host, or a secret reference to its text.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum KeyRef {
    Path(String),
    Secret(SecretRef),
}

/// `[[environment]]`: a named set of servers (and optionally stacks) deploys can target.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentToml {
    pub name: String,
    #[serde(default)]
    pub servers: Vec<String>,
    #[serde(default)]
    pub stacks: Vec<String>,
    pub auto: Option<bool>,
    pub require_ci: Option<CiToml>,
}

/// `require_ci = { provider = "gitea", url = "...", repo = "owner/name", token = { env = "..." } }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct CiToml {
    /// `woodpecker`, `gitea`, `forgejo`, `github` or `gitlab`.
    pub provider: String,
    /// Base URL of the CI or forge API (GitHub: default https://api.github.com, GitLab: https://gitlab.com).
    pub url: Option<String>,
    /// `owner/name` (default: taken from the repository's URL).
    pub repo: Option<String>,
    pub token: Option<SecretRef>,
    /// How long to wait for a pending pipeline (default 30m).
    pub timeout: Option<String>,
    /// Post each deploy's progress and outcome as a commit status (Gitea/Forgejo, GitHub, GitLab).
    pub report: Option<bool>,
    /// The checks that must pass (status contexts, check-run or job names; `*` matches any text).
    /// Default: every check reported for the commit.
    pub contexts: Option<Vec<String>>,
    /// Checks that never block (same patterns). berth's own `berth/*` statuses are always ignored.
    pub ignore_contexts: Option<Vec<String>>,
    /// `berth rollback` waits for CI too (default false: restoring a known-good version does not wait).
    pub gate_rollbacks: Option<bool>,
}

/// `[berth]`: settings of berth itself.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// State directory (SQLite, work trees), relative to the repository root.
    pub state_dir: Option<String>,
    /// Stacks deployed at once when the dependency graph allows.
    pub max_parallel: Option<usize>,
    /// Address `berth serve` listens on (default 127.0.0.1:8080).
    pub listen: Option<String>,
    /// Largest request body `berth serve` accepts, in bytes (default 1 MiB).
    pub max_body: Option<usize>,
    /// The age identity that decrypts `*.env.age` files (default: `$BERTH_AGE_IDENTITY` or `$BERTH_AGE_IDENTITY_FILE`).
    pub age_identity: Option<SecretRef>,
    /// Take down stacks removed from the repository (default false: only report them).
    pub prune: Option<bool>,
    /// How often `berth serve` checks for drift (default 5m; "0" disables).
    pub drift_interval: Option<String>,
    /// Named tiers in deploy order: every stack of a tier comes after all stacks of the tiers before it.
    #[serde(default)]
    pub tiers: Vec<String>,
    /// Deploy only commits of this repository signed by an allowed key.
    pub verify_commits: Option<VerifyCommitsToml>,
}

/// `[[server]]`: a Docker endpoint stacks can be bound to.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerToml {
    pub name: String,
    /// Anything `DOCKER_HOST` accepts; unset means the local engine.
    pub docker: Option<String>,
    /// Client certificates for a `tcp://` endpoint with TLS.
    pub tls: Option<TlsToml>,
    /// A Docker client config file (`config.json` with registry auths) for pulls from private registries.
    pub registry_auth: Option<String>,
    /// Overrides `[berth] prune` for stacks of this server.
    pub prune: Option<bool>,
}

/// `tls = { ca = "...", cert = "...", key = "..." }` of a server.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsToml {
    pub ca: String,
    pub cert: String,
    pub key: String,
}

/// `[discovery]`: folder conventions that make stacks without configuration.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscoveryToml {
    #[serde(default)]
    pub patterns: Option<Vec<String>>,
    /// Repo-relative globs whose changes never trigger a deploy.
    #[serde(default)]
    pub ignore: Vec<String>,
}

/// `[defaults]`: values every stack inherits unless it sets its own.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DefaultsToml {
    pub server: Option<String>,
    pub mode: Option<String>,
    pub timeout: Option<String>,
    /// `auto` (default) or `manual`.
    pub rollback: Option<String>,
    pub verify: Option<VerifyToml>,
    /// Redeploy the recorded deploy when a stack drifts.
    pub self_heal: Option<bool>,
    /// How services' containers are replaced, for every stack (`[[stack]]` refines it).
    pub rollout: Option<RolloutToml>,
}

/// `rollout = "start-first"` or `rollout = { order = "..", services = { web = ".." }, drain = "5s" }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RolloutToml {
    Order(String),
    Table(RolloutTableToml),
}

/// `[stack.rollout]`: the order of every service, per-service exceptions, and the drain time.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolloutTableToml {
    /// `recreate` (default) or `start-first`, for the services not in `services`.
    pub order: Option<String>,
    /// Service name → order.
    #[serde(default)]
    pub services: BTreeMap<String, String>,
    /// How long old containers keep running after leaving their networks (default 5s).
    pub drain: Option<String>,
}

/// `verify = { ... }` / `[stack.verify]`: how berth knows a deploy really serves.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyToml {
    /// Upper bound for containers to converge (default 2m).
    pub timeout: Option<String>,
    /// How long every container must stay up and healthy to count (default 5s).
    pub stable: Option<String>,
    /// Services judged by exiting 0 instead of running (init or migration jobs).
    #[serde(default)]
    pub ignore_services: Vec<String>,
    /// HTTP smoke checks run after the containers converged.
    #[serde(default)]
    pub http: Vec<HttpCheckToml>,
}

/// `[[stack.verify.http]]`: one smoke check.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpCheckToml {
    pub url: String,
    /// Expected status (default: any 2xx).
    pub status: Option<u16>,
    /// A substring the body must contain.
    pub body: Option<String>,
    /// Tries before giving up (default 10).
    pub retries: Option<u32>,
    /// Pause between tries (default 3s).
    pub interval: Option<String>,
    /// Per-request timeout (default 5s).
    pub timeout: Option<String>,
    pub basic_auth: Option<BasicAuthToml>,
    /// Dial this address but keep the URL's host for TLS SNI and the Host header.
    pub resolve: Option<String>,
    /// PEM file of a CA to trust.
    pub ca: Option<String>,
    /// Accept any certificate (explicitly insecure).
    pub insecure: Option<bool>,
    /// Also fail when a stylesheet, script or image URL has another scheme than the page.
    pub assets: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuthToml {
    pub user: String,
    pub password: SecretRef,
}

/// `[[stack]]`: declares a stack or refines a discovered one (matched by name, then path).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StackToml {
    pub name: Option<String>,
    pub path: Option<String>,
    /// Compose files relative to the stack folder.
    pub compose: Option<Vec<String>>,
    pub server: Option<String>,
    pub mode: Option<String>,
    #[serde(default)]
    pub after: Vec<String>,
    /// Repo-relative globs whose changes also redeploy this stack.
    #[serde(default)]
    pub watch: Vec<String>,
    /// Stack-relative globs whose changes never redeploy it.
    #[serde(default)]
    pub ignore: Vec<String>,
    pub manual: Option<bool>,
    /// Variables: a value, or a secret reference `{ file = ".." }` / `{ env = ".." }`.
    #[serde(default)]
    pub env: BTreeMap<String, EnvValue>,
    /// Encrypted env files (age) relative to the stack folder, besides the folder's `*.env.age`.
    #[serde(default)]
    pub secrets: Vec<String>,
    /// Env files (KEY=VALUE lines) relative to the stack folder, read at deploy time.
    #[serde(default)]
    pub env_files: Vec<String>,
    pub timeout: Option<String>,
    /// `auto` (default) or `manual`.
    pub rollback: Option<String>,
    pub verify: Option<VerifyToml>,
    /// A command (argument vector, or a table with `run`) run before deploying; failing stops the deploy.
    pub pre_deploy: Option<HookToml>,
    /// A command run after the deploy verified; failing fails the deploy.
    pub post_deploy: Option<HookToml>,
    /// Image pull policy before `up`: `missing` (compose's default) or `always`.
    pub pull: Option<String>,
    /// How services' containers are replaced: `recreate` (default) or `start-first`, or a table.
    pub rollout: Option<RolloutToml>,
    /// The tier (from `[berth] tiers`) the stack belongs to.
    pub tier: Option<String>,
    /// Wait for a green CI status of the commit before deploying it.
    pub require_ci: Option<CiToml>,
    /// Redeploy the recorded deploy when the stack drifts.
    pub self_heal: Option<bool>,
    /// `[[stack.image]]`: image update rules of this stack.
    #[serde(default)]
    pub image: Vec<Spanned<ImageToml>>,
}

/// A `pre_deploy`/`post_deploy` hook: an argument vector, or a table saying where it runs.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum HookToml {
    Argv(Vec<String>),
    Table(HookTableToml),
}

/// `pre_deploy = { run = [...], dir = "..", on = "engine", image = "..", volumes = [..] }`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HookTableToml {
    /// The argument vector.
    pub run: Vec<String>,
    /// Folder the hook runs in, relative to the stack folder (default: the stack folder).
    pub dir: Option<String>,
    /// `local` (default: the machine running berth, aimed at the stack's engine) or `engine`
    /// (a one-shot container on the stack's engine).
    pub on: Option<String>,
    /// The image of the one-shot container (`on = "engine"`).
    pub image: Option<String>,
    /// Volumes of the one-shot container (`on = "engine"`), as `docker run -v` takes them.
    #[serde(default)]
    pub volumes: Vec<String>,
}

/// Parse the text of a configuration file. A syntax error stops the parse (there is no tree to
/// check further); otherwise every unknown key is reported at once, then the first shape error.
/// Each comes with its location, and a misspelt key with a "did you mean".
pub fn parse(file: &str, text: &str) -> Result<ConfigFile, Vec<ConfigError>> {
    if let Some(unknown) = crate::schema::unknown_keys(file, text)
        && !unknown.is_empty()
    {
        return Err(unknown);
    }
    toml::from_str::<ConfigFile>(text).map_err(|e| {
        let location = e.span().map(|s| Location::from_offset(file, text, s.start));
        let message = e.message().trim().to_string();
        let mut err = ConfigError::new(message.clone()).at(location);
        if let Some(hint) = unknown_key_hint(&message) {
            err = err.help(hint);
        }
        vec![err]
    })
}

/// Turn serde's "unknown field `x`, expected one of `a`, `b`" into a hint.
fn unknown_key_hint(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    let (key, expected) = rest.split_once('`')?;
    let candidates: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
    match did_you_mean(key, candidates.iter().copied()) {
        Some(best) => Some(format!("did you mean `{best}`?")),
        None => Some(format!("valid keys here: {}", candidates.join(", "))),
    }
}

/// Location of a spanned value.
pub fn locate<T>(file: &str, text: &str, value: &Spanned<T>) -> Location {
    Location::from_offset(file, text, value.span().start)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_located_with_a_hint() {
        let text = "[[stack]]\nname = \"app\"\nwach = [\"libs/**\"]\n";
        let err = parse("berth.toml", text).unwrap_err().remove(0);
        assert_eq!(err.location.as_ref().unwrap().line, 3, "{err}");
        assert!(err.message.contains("wach"), "{err}");
        assert_eq!(err.help.as_deref(), Some("did you mean `watch`?"));
    }

    #[test]
    fn every_unknown_key_is_reported_not_only_the_first() {
        let text = "[berth]\nmax_paralel = 2\n[[stack]]\nname = \"app\"\nwach = [\"libs/**\"]\n";
        let errs = parse("berth.toml", text).unwrap_err();
        let shown: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            shown,
            ["berth.toml:2:1: unknown key `max_paralel` in [berth]", "berth.toml:5:1: unknown key `wach` in [stack]"]
        );
    }

    #[test]
    fn malformed_toml_is_located() {
        let err = parse("berth.toml", "[berth]\nmax_parallel = = 3\n").unwrap_err().remove(0);
        assert_eq!(err.location.unwrap().line, 2);
    }

    #[test]
    fn unknown_sections_are_rejected() {
        let err = parse("berth.toml", "[sever]\nname = \"x\"\n").unwrap_err().remove(0);
        assert_eq!(err.help.as_deref(), Some("did you mean `server`?"));
    }

    #[test]
    fn full_file_parses() {
        let text = r#"
[berth]
max_parallel = 2
[[server]]
name = "onyx"
[discovery]
patterns = ["nodes/{server}/{stack}/"]
ignore = ["**/README.md"]
[defaults]
mode = "compose"
[[stack]]
name = "app"
watch = ["libs/**"]
env = { TAG = "1" }
"#;
        let cfg = parse("berth.toml", text).unwrap();
        assert_eq!(cfg.server.len(), 1);
        assert_eq!(cfg.stack[0].get_ref().env["TAG"], EnvValue::Plain("1".into()));
    }
}
