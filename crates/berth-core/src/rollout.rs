//! How a deploy replaces a service's containers (`rollout`): `recreate` (stop the old, start the
//! new) or `start-first` (new containers healthy beside the old ones, then the old ones drained),
//! and what a compose file must not do for start-first to work.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::config::RolloutToml;
use crate::duration;
use crate::error::{ConfigError, Location};

/// How long drained containers keep running after leaving their networks, by default.
pub const DEFAULT_DRAIN: Duration = Duration::from_secs(5);

/// The order in which a service's old and new containers swap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Order {
    /// Compose's own way: stop the old container, then start the new one.
    #[default]
    Recreate,
    /// Start the new containers beside the old ones; drain and remove the old ones once the new are healthy.
    StartFirst,
}

impl Order {
    pub fn parse(s: &str) -> Result<Order, String> {
        match s {
            "recreate" => Ok(Order::Recreate),
            "start-first" => Ok(Order::StartFirst),
            other => Err(format!("unknown rollout `{other}`; use \"recreate\" or \"start-first\"")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Order::Recreate => "recreate",
            Order::StartFirst => "start-first",
        }
    }
}

/// A stack's rollout settings: the order of its services and how long old containers drain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rollout {
    /// The order of every service not named in `services`.
    pub order: Order,
    pub services: BTreeMap<String, Order>,
    #[serde(with = "millis")]
    pub drain: Duration,
}

impl Default for Rollout {
    fn default() -> Self {
        Rollout { order: Order::Recreate, services: BTreeMap::new(), drain: DEFAULT_DRAIN }
    }
}

mod millis {
    pub fn serialize<S: serde::Serializer>(d: &std::time::Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }
}

impl Rollout {
    /// The order of `service`.
    pub fn order_of(&self, service: &str) -> Order {
        self.services.get(service).copied().unwrap_or(self.order)
    }

    /// Whether any service may roll out start-first.
    pub fn any_start_first(&self) -> bool {
        self.order == Order::StartFirst || self.services.values().any(|o| *o == Order::StartFirst)
    }

    /// `rollout = "..."` or `rollout = { order, services, drain }` applied over `base`; problems
    /// are pushed to `errors` (the base value is kept for them).
    pub fn resolve(base: &Rollout, toml: &RolloutToml, errors: &mut Vec<String>) -> Rollout {
        let mut out = base.clone();
        match toml {
            RolloutToml::Order(o) => match Order::parse(o) {
                Ok(o) => out.order = o,
                Err(e) => errors.push(e),
            },
            RolloutToml::Table(t) => {
                if let Some(o) = &t.order {
                    match Order::parse(o) {
                        Ok(o) => out.order = o,
                        Err(e) => errors.push(e),
                    }
                }
                for (svc, o) in &t.services {
                    match Order::parse(o) {
                        Ok(o) => {
                            out.services.insert(svc.clone(), o);
                        }
                        Err(e) => errors.push(format!("rollout of service `{svc}`: {e}")),
                    }
                }
                if let Some(d) = &t.drain {
                    match duration::parse(d) {
                        Ok(d) => out.drain = d,
                        Err(e) => errors.push(format!("rollout drain: {e}")),
                    }
                }
            }
        }
        out
    }
}

/// What a start-first service must not use, why, and what to do instead.
const REFUSED: [(&str, &str); 4] = [
    (
        "container_name",
        "a fixed `container_name` allows one container, and start-first runs the new one beside the old",
    ),
    (
        "ports",
        "a host-published port can be bound by one container only; publish it on a reverse proxy that reaches \
         the service by name on a shared network, or publish only the container port (`- \"80\"`)",
    ),
    (
        "network_mode",
        "`network_mode: host` shares the host's ports, so the new container cannot bind them while the old \
         one runs",
    ),
    (
        "networks",
        "a fixed `ipv4_address`/`ipv6_address` can be held by one container only, and start-first runs the \
         new one beside the old; let Docker assign the address and reach the service by name",
    ),
];

/// [`check`] for every compose-mode stack of `project` (swarm rolls out start-first itself, published
/// ports included); `text` reads a compose file by its repository path.
pub fn check_project(project: &crate::Project, text: &dyn Fn(&str) -> Option<String>) -> Vec<ConfigError> {
    let mut out = Vec::new();
    for s in project.stacks.iter().filter(|s| s.mode == crate::Mode::Compose && s.rollout.any_start_first()) {
        let texts: Vec<(&str, String)> = s.compose_files.iter().filter_map(|f| Some((f.as_str(), text(f)?))).collect();
        let files: Vec<(&str, &str)> = texts.iter().map(|(f, t)| (*f, t.as_str())).collect();
        out.extend(check(&s.name, &s.rollout, s.location.as_ref(), &files));
    }
    out
}

/// Why the start-first services of a stack's compose texts (`(file, text)`, or the one model
/// `compose config` renders) cannot roll out start-first, as errors located in the file (at the line
/// when the text tells); and the services `rollout` names that no text defines. `stack` names the
/// stack, `at` its `berth.toml` entry.
pub fn check(stack: &str, rollout: &Rollout, at: Option<&Location>, files: &[(&str, &str)]) -> Vec<ConfigError> {
    if !rollout.any_start_first() {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut defined = std::collections::BTreeSet::new();
    for (file, text) in files {
        let Ok(doc) = serde_yaml_ng::from_str::<serde_yaml_ng::Value>(text) else { continue };
        let services = doc.get("services").and_then(|s| s.as_mapping());
        defined.extend(services.into_iter().flatten().filter_map(|(k, _)| k.as_str().map(str::to_string)));
        refusals(stack, rollout, at, file, text, services, &mut out);
    }
    for svc in rollout.services.keys().filter(|s| !defined.contains(*s)) {
        out.push(
            ConfigError::new(format!("stack `{stack}`: rollout names service `{svc}`, which it does not define"))
                .at(at.cloned())
                .help("name a service of the stack's compose files"),
        );
    }
    out
}

fn refusals(
    stack: &str,
    rollout: &Rollout,
    at: Option<&Location>,
    file: &str,
    text: &str,
    services: Option<&serde_yaml_ng::Mapping>,
    out: &mut Vec<ConfigError>,
) {
    let set_at = at.map(|l| format!(" (set at {l})")).unwrap_or_default();
    for (name, svc) in services.into_iter().flatten() {
        let Some(name) = name.as_str() else { continue };
        if rollout.order_of(name) != Order::StartFirst || one_shot(svc) {
            continue;
        }
        for (key, why) in REFUSED {
            let offends = match key {
                "ports" => svc.get("ports").and_then(|p| p.as_sequence()).is_some_and(|p| p.iter().any(host_port)),
                "network_mode" => svc.get(key).and_then(|m| m.as_str()) == Some("host"),
                "networks" => svc.get(key).and_then(|n| n.as_mapping()).is_some_and(|n| {
                    n.values().any(|v| v.get("ipv4_address").is_some() || v.get("ipv6_address").is_some())
                }),
                _ => svc.get(key).is_some(),
            };
            if offends {
                out.push(
                    ConfigError::new(format!(
                        "stack `{stack}`: service `{name}` rolls out start-first{set_at} but uses `{key}`: {why}"
                    ))
                    .at(Some(locate(file, text, name, key)))
                    .help(format!(
                        "remove `{key}` from `{name}`, or keep it with rollout = {{ services = {{ {name} = \"recreate\" }} }}"
                    )),
                );
            }
        }
    }
}

/// `restart: "no"`: a one-shot job, which always runs as compose runs it.
pub fn one_shot(svc: &serde_yaml_ng::Value) -> bool {
    svc.get("restart").and_then(|r| r.as_str()) == Some("no")
}

/// Whether a `ports` entry binds a host port: `"8080:80"`, `"127.0.0.1:8080:80"`, or a long form with
/// `published`. A container port alone (`"80"`) gets a free host port per container, which scales.
fn host_port(p: &serde_yaml_ng::Value) -> bool {
    match p {
        serde_yaml_ng::Value::String(s) => {
            let s = s.split('/').next().unwrap_or(s);
            // An IPv6 host address (`[::1]:8080:80`) holds colons of its own.
            let s = s.rsplit_once(']').map_or(s, |(_, rest)| rest.trim_start_matches(':'));
            s.contains(':')
        }
        serde_yaml_ng::Value::Mapping(m) => m.get("published").is_some_and(|v| match v {
            serde_yaml_ng::Value::Null => false,
            serde_yaml_ng::Value::String(s) => !s.is_empty(),
            _ => true,
        }),
        _ => false,
    }
}

/// The position of `key` in service `service` of a compose text (block style, as people write it);
/// the file alone when the text does not say.
fn locate(file: &str, text: &str, service: &str, key: &str) -> Location {
    let lines: Vec<&str> = text.lines().collect();
    let indent = |l: &str| l.len() - l.trim_start().len();
    let is_key = |l: &str, k: &str| {
        let t = l.trim_start().trim_start_matches("- ");
        let t = t
            .strip_prefix(k)
            .or_else(|| t.strip_prefix(&format!("\"{k}\"")))
            .or_else(|| t.strip_prefix(&format!("'{k}'")));
        t.is_some_and(|r| r.trim_start().starts_with(':'))
    };
    let top = lines.iter().position(|l| indent(l) == 0 && is_key(l, "services"));
    let found = top.and_then(|top| {
        let (i, l) = lines.iter().enumerate().skip(top + 1).find(|(_, l)| indent(l) > 0 && is_key(l, service))?;
        let own = indent(l);
        lines
            .iter()
            .enumerate()
            .skip(i + 1)
            .take_while(|(_, l)| l.trim().is_empty() || l.trim_start().starts_with('#') || indent(l) > own)
            .find(|(_, l)| is_key(l, key))
            .map(|(n, l)| (n + 1, indent(l) + 1))
    });
    match found {
        Some((line, column)) => Location { file: file.to_string(), line, column },
        None => Location { file: file.to_string(), line: 1, column: 1 },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RolloutTableToml;

    fn start_first() -> Rollout {
        Rollout { order: Order::StartFirst, ..Default::default() }
    }

    #[test]
    fn orders_parse_per_stack_and_per_service() {
        let mut e = Vec::new();
        let r = Rollout::resolve(&Rollout::default(), &RolloutToml::Order("start-first".into()), &mut e);
        assert_eq!(r.order_of("web"), Order::StartFirst);
        let t = RolloutTableToml {
            order: None,
            services: [("web".to_string(), "start-first".to_string())].into(),
            drain: Some("10s".into()),
        };
        let r = Rollout::resolve(&Rollout::default(), &RolloutToml::Table(t), &mut e);
        assert!(e.is_empty(), "{e:?}");
        assert_eq!((r.order_of("web"), r.order_of("db")), (Order::StartFirst, Order::Recreate));
        assert_eq!(r.drain, Duration::from_secs(10));
        assert!(r.any_start_first() && !Rollout::default().any_start_first());
        Rollout::resolve(&Rollout::default(), &RolloutToml::Order("blue-green".into()), &mut e);
        assert!(e[0].contains("unknown rollout `blue-green`"), "{e:?}");
    }

    #[test]
    fn refuses_what_cannot_run_twice_with_the_line() {
        let yaml = "services:\n  web:\n    image: x\n    container_name: web\n    ports:\n      - \"8080:80\"\n  db:\n    image: y\n    network_mode: host\n  job:\n    image: z\n    restart: \"no\"\n    container_name: job\n  api:\n    image: a\n    ports: [\"80\", {target: 81}]\n    networks:\n      front:\n      back:\n        aliases: [api]\n  dns:\n    image: b\n    networks:\n      front:\n        ipv4_address: 10.5.0.53\n";
        let e = check("app", &start_first(), None, &[("stacks/app/compose.yaml", yaml)]);
        let shown: Vec<String> = e.iter().map(|e| e.to_string()).collect();
        assert_eq!(shown.len(), 4, "{shown:#?}");
        assert!(
            shown[3].starts_with("stacks/app/compose.yaml:23:5:")
                && shown[3].contains("`networks`: a fixed `ipv4_address`"),
            "{shown:#?}"
        );
        assert!(shown[0].starts_with("stacks/app/compose.yaml:4:5: stack `app`: service `web` rolls out start-first but uses `container_name`"), "{shown:#?}");
        assert!(shown[1].starts_with("stacks/app/compose.yaml:5:5:") && shown[1].contains("`ports`"), "{shown:#?}");
        assert!(
            shown[2].starts_with("stacks/app/compose.yaml:9:5:") && shown[2].contains("`network_mode`"),
            "{shown:#?}"
        );
        assert!(e[1].help.as_deref().unwrap().contains("web = \"recreate\""));
        // Only the services that roll out start-first are held to it.
        let only_api = Rollout { services: [("api".to_string(), Order::StartFirst)].into(), ..Default::default() };
        assert!(check("app", &only_api, None, &[("f", yaml)]).is_empty());
        assert!(check("app", &Rollout::default(), None, &[("f", yaml)]).is_empty());
    }

    #[test]
    fn host_ports_in_every_syntax() {
        let v = |s: &str| serde_yaml_ng::from_str::<serde_yaml_ng::Value>(s).unwrap();
        for bound in [
            "\"8080:80\"",
            "\"127.0.0.1:8080:80/udp\"",
            "\"[::1]:8080:80\"",
            "{target: 80, published: \"8080\"}",
            "{target: 80, published: 8080}",
        ] {
            assert!(host_port(&v(bound)), "{bound}");
        }
        for free in ["\"80\"", "80", "\"80/udp\"", "{target: 80}", "{target: 80, published: \"\"}"] {
            assert!(!host_port(&v(free)), "{free}");
        }
    }

    #[test]
    fn a_rollout_naming_a_service_no_file_defines_is_reported() {
        let r = Rollout { services: [("wbe".to_string(), Order::StartFirst)].into(), ..Default::default() };
        let e = check("app", &r, None, &[("a", "services:\n  web:\n    image: x\n")]);
        assert!(e[0].message.contains("names service `wbe`"), "{e:?}");
        let two = [("a", "services:\n  web:\n    image: x\n"), ("b", "services:\n  wbe:\n    image: x\n")];
        assert!(check("app", &r, None, &two).is_empty());
    }
}
