//! The keys `berth.toml` knows, table by table, read from the serde types themselves: a walk over
//! the parsed document reports every unknown key at once (serde's `deny_unknown_fields` stops at
//! the first), each with its location and a "did you mean".

use serde::Deserialize;
use serde::de::{self, Visitor};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::config::{
    BasicAuthToml, CiToml, ConfigFile, DashboardToml, DefaultsToml, DiscoveryToml, EnvironmentToml, ForgeToml,
    ForwardAuthToml, HookTableToml, HttpCheckToml, ImageToml, NotifyToml, RepoToml, RolloutTableToml, SecretRef,
    ServerToml, Settings, StackToml, TlsToml, VerifyCommitsToml, VerifyToml, WindowToml,
};
use crate::error::{ConfigError, Location, did_you_mean};

/// One kind of table: its keys and the kind of table below each key.
#[derive(Clone, Copy)]
enum Shape {
    /// A serde struct: `keys` are its fields.
    Struct { keys: &'static [&'static str], below: fn(&str) -> Option<Shape> },
    /// Free keys (a stack's `env`), every value of the given shape when it is a table.
    Map(fn() -> Shape),
}

fn shape<'de, T: Deserialize<'de>>(below: fn(&str) -> Option<Shape>) -> Shape {
    Shape::Struct { keys: fields::<T>(), below }
}

fn leaf<'de, T: Deserialize<'de>>() -> Shape {
    shape::<T>(|_| None)
}

fn secret(_: &str) -> Option<Shape> {
    Some(leaf::<SecretRef>())
}

fn top() -> Shape {
    shape::<ConfigFile>(|k| match k {
        "berth" => Some(shape::<Settings>(|k| match k {
            "age_identity" => Some(leaf::<SecretRef>()),
            "verify_commits" => Some(signing()),
            _ => None,
        })),
        "server" => Some(shape::<ServerToml>(|k| (k == "tls").then(leaf::<TlsToml>))),
        "discovery" => Some(leaf::<DiscoveryToml>()),
        "defaults" => Some(shape::<DefaultsToml>(|k| match k {
            "verify" => Some(verify()),
            "rollout" => Some(leaf::<RolloutTableToml>()),
            _ => None,
        })),
        "stack" => Some(stack()),
        "repo" => Some(shape::<RepoToml>(|k| match k {
            "verify_commits" => Some(signing()),
            "forge" => Some(shape::<ForgeToml>(secret)),
            _ => secret(k),
        })),
        "environment" => Some(shape::<EnvironmentToml>(|k| (k == "require_ci").then(ci))),
        "notify" => Some(shape::<NotifyToml>(secret)),
        "window" => Some(leaf::<WindowToml>()),
        "image" => Some(leaf::<ImageToml>()),
        "dashboard" => Some(shape::<DashboardToml>(|k| match k {
            "htpasswd" => Some(leaf::<SecretRef>()),
            "forward_auth" => Some(leaf::<ForwardAuthToml>()),
            _ => None,
        })),
        _ => None,
    })
}

fn stack() -> Shape {
    shape::<StackToml>(|k| match k {
        "verify" => Some(verify()),
        "require_ci" => Some(ci()),
        "env" => Some(Shape::Map(leaf::<SecretRef>)),
        "pre_deploy" | "post_deploy" => Some(leaf::<HookTableToml>()),
        "rollout" => Some(leaf::<RolloutTableToml>()),
        "image" => Some(leaf::<ImageToml>()),
        _ => None,
    })
}

fn verify() -> Shape {
    shape::<VerifyToml>(|k| {
        (k == "http").then(|| {
            shape::<HttpCheckToml>(|k| {
                (k == "basic_auth").then(|| shape::<BasicAuthToml>(|k| (k == "password").then(leaf::<SecretRef>)))
            })
        })
    })
}

fn signing() -> Shape {
    shape::<VerifyCommitsToml>(secret)
}

fn ci() -> Shape {
    shape::<CiToml>(secret)
}

/// Every key of `text` that no berth table knows, in file order. `None` when `text` is not TOML
/// at all (the full parse reports that).
pub fn unknown_keys(file: &str, text: &str) -> Option<Vec<ConfigError>> {
    let doc = DeTable::parse(text).ok()?;
    let mut errors = Vec::new();
    walk(file, text, doc.get_ref(), top(), "", &mut errors);
    // Tables hold their keys sorted by name: put the reports back in file order.
    errors.sort_by_key(|e| e.location.as_ref().map(|l| (l.line, l.column)));
    Some(errors)
}

fn walk(file: &str, text: &str, table: &DeTable<'_>, shape: Shape, path: &str, errors: &mut Vec<ConfigError>) {
    for (key, value) in table {
        let name = key.get_ref().as_ref();
        let below = match shape {
            Shape::Map(values) => Some(values()),
            Shape::Struct { keys, below } => {
                if !keys.contains(&name) {
                    errors.push(unknown(file, text, key, path, keys));
                    continue;
                }
                below(name)
            }
        };
        let Some(below) = below else { continue };
        let here = if path.is_empty() { name.to_string() } else { format!("{path}.{name}") };
        match value.get_ref() {
            DeValue::Table(t) => walk(file, text, t, below, &here, errors),
            DeValue::Array(items) => {
                for item in items.iter() {
                    if let DeValue::Table(t) = item.get_ref() {
                        walk(file, text, t, below, &here, errors);
                    }
                }
            }
            _ => {}
        }
    }
}

fn unknown(file: &str, text: &str, key: &Spanned<std::borrow::Cow<'_, str>>, path: &str, keys: &[&str]) -> ConfigError {
    let name = key.get_ref();
    let table = if path.is_empty() { "at the top level".to_string() } else { format!("in [{path}]") };
    let err = ConfigError::new(format!("unknown key `{name}` {table}")).at(Some(Location::from_offset(
        file,
        text,
        key.span().start,
    )));
    match did_you_mean(name, keys.iter().copied()) {
        Some(best) => err.help(format!("did you mean `{best}`?")),
        None => err.help(format!("valid keys here: {}", keys.join(", "))),
    }
}

/// The field names of a serde struct, as its derived `Deserialize` announces them.
fn fields<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    let mut found = None;
    let _ = T::deserialize(Fields(&mut found));
    found.unwrap_or(&[])
}

/// A deserializer that only records the fields a struct asks for, then stops.
struct Fields<'a>(&'a mut Option<&'static [&'static str]>);

impl<'de> de::Deserializer<'de> for Fields<'_> {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("not a struct"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Self::Error> {
        *self.0 = Some(fields);
        Err(de::Error::custom("fields recorded"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit
        unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unknown(text: &str) -> Vec<String> {
        unknown_keys("berth.toml", text)
            .unwrap()
            .iter()
            .map(|e| format!("{e} ({})", e.help.as_deref().unwrap_or("")))
            .collect()
    }

    #[test]
    fn field_names_come_from_the_serde_types() {
        assert!(fields::<TlsToml>().iter().eq(["ca", "cert", "key"].iter()));
        assert!(fields::<StackToml>().contains(&"watch"));
    }

    #[test]
    fn every_unknown_key_is_reported_with_its_place() {
        let text = "[berth]\nmax_paralel = 2\n\n[[stack]]\nname = \"a\"\nwach = [\"x\"]\nverify = { stabel = \"1s\", http = [{ url = \"u\", retrys = 3 }] }\n\n[[stack]]\nname = \"b\"\nenv = { A = \"1\", B = { fiel = \"/x\" } }\nzzzzzz = 1\n[sever]\n";
        assert_eq!(
            unknown(text),
            [
                "berth.toml:2:1: unknown key `max_paralel` in [berth] (did you mean `max_parallel`?)",
                "berth.toml:6:1: unknown key `wach` in [stack] (did you mean `watch`?)",
                "berth.toml:7:12: unknown key `stabel` in [stack.verify] (did you mean `stable`?)",
                "berth.toml:7:48: unknown key `retrys` in [stack.verify.http] (did you mean `retries`?)",
                "berth.toml:11:24: unknown key `fiel` in [stack.env.B] (did you mean `file`?)",
                "berth.toml:12:1: unknown key `zzzzzz` in [stack] (valid keys here: name, path, compose, server, mode, after, watch, ignore, manual, env, secrets, env_files, timeout, rollback, verify, pre_deploy, post_deploy, pull, rollout, tier, require_ci, self_heal, image)",
                "berth.toml:13:2: unknown key `sever` at the top level (did you mean `server`?)",
            ]
        );
    }

    #[test]
    fn a_valid_file_has_no_unknown_keys() {
        let text = "[berth]\nage_identity = { env = \"K\" }\n[[server]]\nname = \"s\"\ntls = { ca = \"a\", cert = \"b\", key = \"c\" }\n[dashboard]\nforward_auth = { header = \"X\", proxies = [] }\n[[environment]]\nname = \"prod\"\nrequire_ci = { provider = \"github\", token = { env = \"T\" } }\n[[stack]]\nname = \"a\"\nenv = { X = { file = \"/f\" } }\n[[stack.verify.http]]\nurl = \"u\"\nbasic_auth = { user = \"u\", password = { env = \"P\" } }\n";
        assert_eq!(unknown(text), Vec::<String>::new());
        assert!(unknown_keys("berth.toml", "[berth\n").is_none());
    }
}
