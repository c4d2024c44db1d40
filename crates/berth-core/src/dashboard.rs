//! The dashboard's settings: access modes, path prefix, trusted proxies (CIDRs) and htpasswd entries.

use std::net::IpAddr;

use crate::config::{DashboardToml, SecretRef};
use crate::error::ConfigError;

/// How a request proves who it is, separately for reading and writing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone (reading only).
    Public,
    /// A session opened by logging in with an API key.
    Key,
    /// HTTP basic auth against the htpasswd entries.
    Basic,
    /// A user header set by a trusted authenticating proxy.
    Forward,
    /// Nobody (writing only).
    None,
}

impl Access {
    pub fn parse(s: &str) -> Option<Access> {
        match s {
            "public" => Some(Access::Public),
            "key" => Some(Access::Key),
            "basic" => Some(Access::Basic),
            "forward" => Some(Access::Forward),
            "none" => Some(Access::None),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Access::Public => "public",
            Access::Key => "key",
            Access::Basic => "basic",
            Access::Forward => "forward",
            Access::None => "none",
        }
    }
}

/// An address range, `10.0.0.0/8` or `::1/128` (a bare address is a single host).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let (a, p) = s.split_once('/').unwrap_or((s, ""));
        let addr: IpAddr = a.trim().parse().map_err(|_| format!("`{s}` is not an address or CIDR"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = if p.is_empty() { max } else { p.parse().map_err(|_| format!("`{s}`: bad prefix length"))? };
        if prefix > max {
            return Err(format!("`{s}`: the prefix length is at most {max}"));
        }
        Ok(Cidr { addr, prefix })
    }

    /// Does the range hold `ip`? IPv4-mapped IPv6 addresses count as their IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        let bits = |a: IpAddr| -> u128 {
            match a {
                IpAddr::V4(v) => u128::from(u32::from(v)) << 96,
                IpAddr::V6(v) => u128::from(v),
            }
        };
        if self.addr.is_ipv4() != ip.is_ipv4() {
            return false;
        }
        if self.prefix == 0 {
            return true;
        }
        let mask = u128::MAX << (128 - u32::from(self.prefix));
        bits(self.addr) & mask == bits(ip) & mask
    }
}

/// Is `ip` in any of `ranges`?
pub fn trusted(ranges: &[Cidr], ip: IpAddr) -> bool {
    ranges.iter().any(|c| c.contains(ip))
}

/// The resolved `[dashboard]` table.
#[derive(Debug, Clone)]
pub struct Dashboard {
    pub enabled: bool,
    /// `""` or a prefix like `/berth` (leading slash, no trailing slash).
    pub base_path: String,
    pub read: Access,
    pub write: Access,
    pub writers: Option<Vec<String>>,
    /// `basic`/`forward` users who may also freeze and unfreeze (key sessions: admin keys).
    pub admins: Vec<String>,
    pub htpasswd: Option<SecretRef>,
    pub forward_header: String,
    pub forward_proxies: Vec<Cidr>,
    pub trusted_proxies: Vec<Cidr>,
    /// `public_url` without a trailing slash.
    pub public_url: Option<String>,
}

impl Default for Dashboard {
    fn default() -> Dashboard {
        Dashboard {
            enabled: true,
            base_path: String::new(),
            read: Access::Key,
            write: Access::Key,
            writers: None,
            admins: Vec::new(),
            htpasswd: None,
            forward_header: "Remote-User".into(),
            forward_proxies: Vec::new(),
            trusted_proxies: Vec::new(),
            public_url: None,
        }
    }
}

const MODES: &str = "use public, key, basic or forward (write: key, basic, forward or none)";

/// Validate a `[dashboard]` table; problems are pushed to `errors`.
pub fn resolve(t: Option<&DashboardToml>, errors: &mut Vec<ConfigError>) -> Dashboard {
    let mut d = Dashboard::default();
    let Some(t) = t else { return d };
    let mut err = |m: String| errors.push(ConfigError::new(format!("[dashboard] {m}")));
    d.enabled = t.enabled.unwrap_or(true);
    if let Some(b) = &t.base_path {
        let b = b.trim_end_matches('/');
        let ok = b.is_empty()
            || b.starts_with('/')
                && b.split('/').skip(1).all(|seg| {
                    !seg.is_empty()
                        && seg != ".."
                        && seg.chars().all(|c| c.is_ascii_alphanumeric() || "-._~".contains(c))
                });
        if ok {
            d.base_path = b.to_string();
        } else {
            err(format!("base_path `{b}` must look like `/berth` (letters, digits, `-._~` between slashes)"));
        }
    }
    for (what, v, slot) in [("read", &t.read, &mut d.read), ("write", &t.write, &mut d.write)] {
        let Some(v) = v else { continue };
        match Access::parse(v) {
            Some(Access::None) if what == "read" => err(format!("read = \"none\" makes no sense; {MODES}")),
            Some(Access::Public) if what == "write" => {
                err("write = \"public\" would let anyone deploy; use key, basic, forward or none".into())
            }
            Some(a) => *slot = a,
            None => err(format!("unknown {what} mode `{v}`; {MODES}")),
        }
    }
    if let Some(u) = &t.public_url {
        let u = u.trim_end_matches('/');
        if (u.starts_with("https://") || u.starts_with("http://")) && !u.contains(char::is_whitespace) {
            d.public_url = Some(u.to_string());
        } else {
            err(format!("public_url `{u}` must be an http:// or https:// address"));
        }
    }
    d.writers = t.writers.clone();
    d.admins = t.admins.clone().unwrap_or_default();
    d.htpasswd = t.htpasswd.clone();
    if let Some(s) = &d.htpasswd
        && s.file.is_some() == s.env.is_some()
    {
        err("htpasswd: give exactly one of file or env".into());
    }
    let uses = |a: Access| d.read == a || d.write == a;
    if uses(Access::Basic) && d.htpasswd.is_none() {
        errors.push(
            ConfigError::new("[dashboard] basic access needs htpasswd")
                .help("htpasswd = { file = \"/etc/berth/htpasswd\" } (entries from `htpasswd -nB user`)"),
        );
    }
    let cidrs = |list: &[String], errors: &mut Vec<ConfigError>, what: &str| -> Vec<Cidr> {
        list.iter()
            .filter_map(|c| {
                Cidr::parse(c).map_err(|m| errors.push(ConfigError::new(format!("[dashboard] {what}: {m}")))).ok()
            })
            .collect()
    };
    d.trusted_proxies = cidrs(&t.trusted_proxies, errors, "trusted_proxies");
    if let Some(f) = &t.forward_auth {
        d.forward_proxies = cidrs(&f.proxies, errors, "forward_auth.proxies");
        if let Some(h) = &f.header {
            if h.is_empty() || !h.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
                errors.push(ConfigError::new(format!("[dashboard] forward_auth.header `{h}` is not a header name")));
            } else {
                d.forward_header = h.clone();
            }
        }
    }
    if uses(Access::Forward) && d.forward_proxies.is_empty() {
        errors.push(
            ConfigError::new("[dashboard] forward access needs forward_auth.proxies")
                .help("forward_auth = { header = \"Remote-User\", proxies = [\"10.0.0.5/32\"] }"),
        );
    }
    d
}

/// Parse htpasswd text into (user, bcrypt hash) pairs; only bcrypt entries (`$2a$`, `$2b$`, `$2y$`) are accepted.
pub fn parse_htpasswd(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((user, hash)) = line.split_once(':') else {
            return Err(format!("line {}: not `user:hash`", n + 1));
        };
        if !["$2a$", "$2b$", "$2y$"].iter().any(|p| hash.starts_with(p)) {
            return Err(format!(
                "line {}: user `{user}` has no bcrypt hash (create entries with `htpasswd -B`)",
                n + 1
            ));
        }
        out.push((user.to_string(), hash.to_string()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_match_their_ranges() {
        let c = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(c.contains("10.1.200.3".parse().unwrap()));
        assert!(!c.contains("10.2.0.1".parse().unwrap()));
        assert!(c.contains("::ffff:10.1.0.9".parse().unwrap()));
        assert!(Cidr::parse("127.0.0.2").unwrap().contains("127.0.0.2".parse().unwrap()));
        assert!(!Cidr::parse("127.0.0.2").unwrap().contains("127.0.0.1".parse().unwrap()));
        assert!(Cidr::parse("fd00::/8").unwrap().contains("fd12::1".parse().unwrap()));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains("8.8.8.8".parse().unwrap()));
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("example.com").is_err());
    }

    fn table(text: &str) -> DashboardToml {
        crate::config::parse("berth.toml", text).unwrap().dashboard.unwrap().into_inner()
    }

    #[test]
    fn settings_are_validated() {
        let mut errors = Vec::new();
        let d = resolve(
            Some(&table(
                "[dashboard]\nbase_path = \"/berth/\"\nread = \"public\"\nwrite = \"forward\"\n\
                 forward_auth = { header = \"X-authentik-username\", proxies = [\"10.0.0.0/8\"] }\n",
            )),
            &mut errors,
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!((d.base_path.as_str(), d.read, d.write), ("/berth", Access::Public, Access::Forward));
        assert_eq!(d.forward_header, "X-authentik-username");

        let mut errors = Vec::new();
        resolve(
            Some(&table("[dashboard]\nbase_path = \"berth\"\nwrite = \"public\"\nread = \"basic\"\n")),
            &mut errors,
        );
        let all: Vec<String> = errors.iter().map(|e| e.message.clone()).collect();
        assert_eq!(all.len(), 3, "{all:?}");
        assert!(all.iter().any(|m| m.contains("needs htpasswd")), "{all:?}");
        assert!(crate::config::parse("x", "[dashboard]\nreed = \"key\"\n").is_err());
    }

    #[test]
    fn htpasswd_takes_bcrypt_only() {
        let ok = parse_htpasswd("# users\nalice:$2y$05$abcdefghijklmnopqrstuu\n").unwrap();
        assert_eq!(ok[0].0, "alice");
        assert!(parse_htpasswd("bob:{SHA}abc\n").unwrap_err().contains("bcrypt"));
    }
}
