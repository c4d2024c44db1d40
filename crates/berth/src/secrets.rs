//! Reading secret values from files and environment variables (never from berth.toml itself), and
//! decrypting encrypted env files through the `age` and `sops` binaries.

use berth_core::config::SecretRef;

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("cannot read secret file {path}: {source}")]
    File { path: String, source: std::io::Error },
    #[error("environment variable {0} (or {0}_FILE) is not set")]
    Env(String),
    #[error("the secret from {0} is empty")]
    Empty(String),
}

/// Resolve a reference: `{ file = .. }` reads the file (one trailing newline
/// dropped); `{ env = "X" }` reads `$X`, or the file named by `$X_FILE`
/// (the convention of Docker secrets and vault agents).
pub fn resolve(r: &SecretRef) -> Result<String, SecretError> {
    let (value, origin) = match (&r.file, &r.env) {
        (Some(path), _) => (read_file(path)?, path.clone()),
        (None, Some(var)) => match std::env::var(var) {
            Ok(v) => (v, format!("${var}")),
            Err(_) => match std::env::var(format!("{var}_FILE")) {
                Ok(path) => (read_file(&path)?, path),
                Err(_) => return Err(SecretError::Env(var.clone())),
            },
        },
        (None, None) => return Err(SecretError::Empty("an empty reference".into())),
    };
    if value.is_empty() {
        return Err(SecretError::Empty(origin));
    }
    crate::redact::register([&value]);
    Ok(value)
}

/// Register every value of decrypted dotenv text as a secret (the whole text too, when it does
/// not parse: then no line of it may show).
fn register_plaintext(plain: &[u8]) {
    let text = String::from_utf8_lossy(plain);
    match berth_core::vars::parse_env_file(&text) {
        Ok(vars) => crate::redact::register(vars.iter().map(|(_, v)| v)),
        Err(_) => crate::redact::register([&text]),
    }
}

fn read_file(path: &str) -> Result<String, SecretError> {
    let text = std::fs::read_to_string(path).map_err(|source| SecretError::File { path: path.to_string(), source })?;
    let text = text.strip_suffix('\n').unwrap_or(&text);
    Ok(text.strip_suffix('\r').unwrap_or(text).to_string())
}

/// Decrypt an age file (binary or ASCII-armored) with the `age` command (or `rage`, same flags),
/// the identities in `identity_file_text` handed over on a pipe as file descriptor 3: never a file,
/// an argument or the environment. The plaintext exists only in berth's memory.
pub fn decrypt_age(ciphertext: &[u8], identity_file_text: &str) -> Result<Vec<u8>, String> {
    let program = ["age", "rage"].into_iter().find(|p| crate::process::on_path(p)).ok_or(
        "the file is age-encrypted but there is no `age` (or `rage`) on PATH: install age where berth runs \
         (Debian/Ubuntu: apt install age; https://age-encryption.org)",
    )?;
    let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| format!("cannot make a pipe for the age identity: {e}"))?;
    // From a thread: an identity file larger than the pipe's buffer would block until age reads it.
    let identity = identity_file_text.as_bytes().to_vec();
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        let _ = std::fs::File::from(write).write_all(&identity);
    });
    let mut cmd = std::process::Command::new(program);
    cmd.args(["--decrypt", "--identity", "/dev/fd/3"]);
    let raw = std::os::fd::AsRawFd::as_raw_fd(&read);
    // SAFETY: runs in the child between fork and exec and only calls dup2/fcntl, which are
    // async-signal-safe; `read` stays open in the parent (and so in the child) meanwhile.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
            let fd = std::os::fd::BorrowedFd::borrow_raw(raw);
            if raw == 3 {
                // dup2 onto itself keeps close-on-exec: clear it instead.
                return rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::empty()).map_err(std::io::Error::from);
            }
            let mut three = std::mem::ManuallyDrop::new(std::os::fd::FromRawFd::from_raw_fd(3));
            rustix::io::dup2(fd, &mut three).map_err(std::io::Error::from)
        });
    }
    let result = crate::process::run_with_input(&mut cmd, ciphertext.to_vec(), std::time::Duration::from_secs(60));
    drop(read);
    let _ = writer.join();
    let (out, plain) = result.map_err(|e| e.to_string())?;
    if !out.success() {
        return Err(format!("{program} could not decrypt it: {}", out.error_summary()));
    }
    register_plaintext(&plain);
    Ok(plain)
}

/// The identity that decrypts `*.env.age`: the configured reference, else `$BERTH_AGE_IDENTITY`
/// (or the file named by `$BERTH_AGE_IDENTITY_FILE`).
pub fn age_identity(configured: Option<&SecretRef>) -> Result<String, SecretError> {
    match configured {
        Some(r) => resolve(r),
        None => resolve(&SecretRef { file: None, env: Some("BERTH_AGE_IDENTITY".into()) }),
    }
}

/// The SOPS input type of a file, when its content carries SOPS metadata (else `None`: an age file).
pub fn sops_format(name: &str, content: &[u8]) -> Option<&'static str> {
    let text = std::str::from_utf8(content).ok()?;
    let ext = name.rsplit('.').next().unwrap_or_default();
    match ext {
        "env" => text.lines().any(|l| l.starts_with("sops_mac=")).then_some("dotenv"),
        "yaml" | "yml" => text.lines().any(|l| l.starts_with("sops:")).then_some("yaml"),
        "json" => (text.trim_start().starts_with('{') && text.contains("\"sops\"")).then_some("json"),
        _ => None,
    }
}

/// Decrypt a SOPS file into dotenv text with the `sops` binary. The age identity, when one is
/// configured, is handed over in `SOPS_AGE_KEY`; otherwise sops uses its own key sources (KMS, PGP...).
pub fn decrypt_sops(path: &std::path::Path, input_type: &str, age_identity: Option<&str>) -> Result<Vec<u8>, String> {
    if !crate::process::on_path("sops") {
        return Err("the file is SOPS-encrypted but there is no `sops` on PATH: install sops \
                    (https://github.com/getsops/sops) where berth runs"
            .into());
    }
    let mut cmd = std::process::Command::new("sops");
    cmd.args(["--decrypt", "--input-type", input_type, "--output-type", "dotenv", "--"]).arg(path);
    if let Some(id) = age_identity {
        cmd.env("SOPS_AGE_KEY", id);
    }
    let out = crate::process::run(&mut cmd, std::time::Duration::from_secs(60)).map_err(|e| e.to_string())?;
    if !out.success() {
        return Err(format!("sops could not decrypt it: {}", out.error_summary()));
    }
    register_plaintext(out.stdout.as_bytes());
    Ok(out.stdout.into_bytes())
}

/// `n` random bytes from the kernel, hex encoded.
pub fn random_hex(n: usize) -> std::io::Result<String> {
    use std::io::Read;
    let mut buf = vec![0u8; n];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut buf)?;
    Ok(hex::encode(buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_and_env_vars_resolve() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("s");
        std::fs::write(&f, "hunter2\n").unwrap();
        let file = SecretRef { file: Some(f.display().to_string()), env: None };
        assert_eq!(resolve(&file).unwrap(), "hunter2");
        let missing = SecretRef { file: None, env: Some("BERTH_TEST_SURELY_UNSET".into()) };
        assert!(matches!(resolve(&missing), Err(SecretError::Env(_))));
        assert_eq!(random_hex(16).unwrap().len(), 32);
    }

    #[test]
    fn sops_files_are_told_from_age_files_by_their_metadata() {
        let env = b"DB_PASSWORD=ENC[AES256_GCM,data:x,iv:y,tag:z,type:str]\nsops_mac=ENC[...]\nsops_version=3.11.0\n";
        assert_eq!(sops_format("app.sops.env", env), Some("dotenv"));
        assert_eq!(sops_format("app.sops.yaml", b"DB: ENC[..]\nsops:\n    age: []\n"), Some("yaml"));
        assert_eq!(sops_format("app.sops.json", br#"{"DB": "ENC[..]", "sops": {}}"#), Some("json"));
        assert_eq!(sops_format("app.env.age", b"age-encryption.org/v1\n"), None);
        assert_eq!(sops_format("plain.env", b"A=1\n"), None);
    }

    /// The real `age`: armored and binary files decrypt; a wrong identity is an error naming age's reason.
    #[test]
    fn age_files_decrypt_through_the_age_command() {
        let key = |dir: &std::path::Path, name: &str| {
            let path = dir.join(name);
            let o = std::process::Command::new("age-keygen")
                .arg("-o")
                .arg(&path)
                .output()
                .expect("age-keygen (apt install age)");
            assert!(o.status.success());
            let public = String::from_utf8_lossy(&o.stderr).trim().trim_start_matches("Public key: ").to_string();
            (std::fs::read_to_string(path).unwrap(), public)
        };
        let dir = tempfile::tempdir().unwrap();
        let ((identity, public), (other, _)) = (key(dir.path(), "a"), key(dir.path(), "b"));
        for armor in [false, true] {
            let mut cmd = std::process::Command::new("age");
            cmd.args(["-r", &public]);
            if armor {
                cmd.arg("--armor");
            }
            let (out, cipher) =
                crate::process::run_with_input(&mut cmd, b"K=v1\n".to_vec(), std::time::Duration::from_secs(30))
                    .unwrap();
            assert!(out.success(), "{}", out.stderr);
            assert_eq!(decrypt_age(&cipher, &identity).unwrap(), b"K=v1\n");
            let e = decrypt_age(&cipher, &other).unwrap_err();
            assert!(e.contains("could not decrypt") && e.contains("no identity matched"), "{e}");
        }
    }
}
