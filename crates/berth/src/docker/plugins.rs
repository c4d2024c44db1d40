//! Where the docker CLI finds the compose plugin, and a `DOCKER_CONFIG` for registry credentials that keeps it.

use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use sha2::{Digest, Sha256};

/// Searched by the docker CLI after the config folder's `cli-plugins`, whatever `DOCKER_CONFIG` says.
pub const SYSTEM_DIRS: [&str; 4] = [
    "/usr/local/lib/docker/cli-plugins",
    "/usr/local/libexec/docker/cli-plugins",
    "/usr/lib/docker/cli-plugins",
    "/usr/libexec/docker/cli-plugins",
];

const PLUGIN: &str = "docker-compose";

/// The docker CLI's config folder for a `DOCKER_CONFIG` value (`None`: the variable is unset).
pub fn config_dir(docker_config: Option<OsString>) -> Option<PathBuf> {
    match docker_config.filter(|v| !v.is_empty()) {
        Some(d) => Some(PathBuf::from(d)),
        None => std::env::var_os("HOME").filter(|h| !h.is_empty()).map(|h| PathBuf::from(h).join(".docker")),
    }
}

/// The compose plugin the docker CLI runs with config folder `config`, in the CLI's order:
/// `cliPluginsExtraDirs` of its config.json, its `cli-plugins`, then the system folders.
pub fn find(config: Option<&Path>) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(c) = config {
        dirs.extend(extra_dirs(&c.join("config.json")));
        dirs.push(c.join("cli-plugins"));
    }
    dirs.extend(SYSTEM_DIRS.iter().map(PathBuf::from));
    dirs.into_iter().map(|d| d.join(PLUGIN)).find(|p| is_executable(p))
}

fn extra_dirs(config_json: &Path) -> Vec<PathBuf> {
    let Ok(text) = std::fs::read_to_string(config_json) else { return Vec::new() };
    let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else { return Vec::new() };
    v.get("cliPluginsExtraDirs")
        .and_then(|d| d.as_array())
        .map(|a| a.iter().filter_map(|d| d.as_str()).map(PathBuf::from).collect())
        .unwrap_or_default()
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The `DOCKER_CONFIG` for deploys that use the registry credentials in `registry` with the
/// compose plugin at `plugin`. Pointing the CLI at `registry` alone would hide a plugin kept
/// in the user's own config folder (`unknown flag: --project-name`), so unless the plugin is
/// visible from there anyway, berth uses a folder under `cache` that links every entry of
/// `registry` and has `cli-plugins` link to the plugin's folder. Nothing is copied: the
/// credentials stay where they are, and a `docker login` into `registry` is seen at once.
pub fn config_for(registry: &Path, plugin: Option<&Path>, cache: Option<&Path>) -> io::Result<PathBuf> {
    let Some((plugin, plugin_dir)) = plugin.and_then(|p| Some((p, p.parent()?))) else {
        return Ok(registry.to_path_buf());
    };
    // A relative folder means whatever it meant to compose before (links need absolute targets).
    if !registry.is_absolute() || find(Some(registry)).as_deref() == Some(plugin) {
        return Ok(registry.to_path_buf());
    }
    let Some(cache) = cache else {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            "no cache folder ($XDG_CACHE_HOME or $HOME) to keep it in",
        ));
    };
    let key = Sha256::new()
        .chain_update(registry.as_os_str().as_encoded_bytes())
        .chain_update([0])
        .chain_update(plugin_dir.as_os_str().as_encoded_bytes())
        .finalize();
    let dir = cache.join("berth").join("docker-config").join(&hex::encode(key)[..16]);
    std::fs::create_dir_all(&dir)?;
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
    let mut wanted = vec![OsString::from("cli-plugins")];
    for e in std::fs::read_dir(registry)? {
        let name = e?.file_name();
        if name != "cli-plugins" {
            link(&dir, &name, &registry.join(&name))?;
            wanted.push(name);
        }
    }
    link(&dir, "cli-plugins".as_ref(), plugin_dir)?;
    // Links to entries since removed from `registry` go too (they dangle; berth made them).
    for e in std::fs::read_dir(&dir)?.flatten() {
        let dangles = e.file_type().is_ok_and(|t| t.is_symlink()) && std::fs::metadata(e.path()).is_err();
        if dangles && !wanted.contains(&e.file_name()) {
            let _ = std::fs::remove_file(e.path());
        }
    }
    Ok(dir)
}

/// The cache folder berth keeps generated docker config folders in.
pub fn cache_dir() -> Option<PathBuf> {
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    var("XDG_CACHE_HOME").or_else(|| var("HOME").map(|h| h.join(".cache")))
}

/// `dir/name` becomes a symlink to `target`, replaced atomically so concurrent deploys never
/// see it missing.
fn link(dir: &Path, name: &std::ffi::OsStr, target: &Path) -> io::Result<()> {
    let path = dir.join(name);
    if std::fs::read_link(&path).is_ok_and(|t| t == target) {
        return Ok(());
    }
    // Unique per call: deploys of one process build the folder from several threads.
    static N: AtomicUsize = AtomicUsize::new(0);
    let mut tmp = OsString::from(".");
    tmp.push(name);
    tmp.push(format!(".{}.{}.tmp", std::process::id(), N.fetch_add(1, Ordering::Relaxed)));
    let tmp = dir.join(tmp);
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp)?;
    std::fs::rename(&tmp, &path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plugin_in(dir: &Path) -> PathBuf {
        std::fs::create_dir_all(dir).unwrap();
        let p = dir.join(PLUGIN);
        std::fs::write(&p, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        p
    }

    #[test]
    fn extra_dirs_come_before_the_config_folders_own_plugins() {
        let t = tempfile::tempdir().unwrap();
        let own = plugin_in(&t.path().join("cfg/cli-plugins"));
        assert_eq!(find(Some(&t.path().join("cfg"))), Some(own));
        let extra = plugin_in(&t.path().join("extra"));
        std::fs::write(
            t.path().join("cfg/config.json"),
            format!("{{\"cliPluginsExtraDirs\": [\"{}\"]}}", t.path().join("extra").display()),
        )
        .unwrap();
        assert_eq!(find(Some(&t.path().join("cfg"))), Some(extra));
    }

    #[test]
    fn registry_credentials_keep_the_users_plugin() {
        let t = tempfile::tempdir().unwrap();
        let plugin = plugin_in(&t.path().join("home/.docker/cli-plugins"));
        let registry = t.path().join("registry");
        std::fs::create_dir_all(registry.join("contexts")).unwrap();
        std::fs::write(registry.join("config.json"), "{\"auths\": {}}").unwrap();
        let cache = t.path().join("cache");
        let dir = config_for(&registry, Some(&plugin), Some(&cache)).unwrap();
        assert!(dir.starts_with(&cache));
        assert_eq!(find(Some(&dir)), Some(dir.join("cli-plugins").join(PLUGIN)));
        assert_eq!(std::fs::read_link(dir.join("cli-plugins")).unwrap(), plugin.parent().unwrap());
        assert_eq!(std::fs::read_to_string(dir.join("config.json")).unwrap(), "{\"auths\": {}}");
        assert!(dir.join("contexts").is_dir());
        // Built again (another deploy) after the registry folder changed: same folder, new entries.
        std::fs::remove_dir(registry.join("contexts")).unwrap();
        std::fs::write(registry.join("daemon.json"), "{}").unwrap();
        assert_eq!(config_for(&registry, Some(&plugin), Some(&cache)).unwrap(), dir);
        assert!(dir.join("daemon.json").exists() && std::fs::symlink_metadata(dir.join("contexts")).is_err());
    }

    #[test]
    fn concurrent_deploys_build_the_folder_without_failing() {
        let t = tempfile::tempdir().unwrap();
        let plugin = plugin_in(&t.path().join("home/.docker/cli-plugins"));
        let registry = t.path().join("registry");
        std::fs::create_dir_all(&registry).unwrap();
        std::fs::write(registry.join("config.json"), "{}").unwrap();
        let cache = t.path().join("cache");
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for _ in 0..50 {
                        let dir = config_for(&registry, Some(&plugin), Some(&cache)).unwrap();
                        assert_eq!(find(Some(&dir)), Some(dir.join("cli-plugins").join(PLUGIN)));
                    }
                });
            }
        });
    }

    #[test]
    fn a_plugin_the_registry_folder_already_sees_needs_no_new_folder() {
        let t = tempfile::tempdir().unwrap();
        let registry = t.path().join("registry");
        let plugin = plugin_in(&registry.join("cli-plugins"));
        assert_eq!(config_for(&registry, Some(&plugin), None).unwrap(), registry);
        assert_eq!(config_for(&registry, None, None).unwrap(), registry);
    }
}
