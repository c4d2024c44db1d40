//! Unit tests of ownership: every reference kind, interpolation, fallback, shared folders.
use super::*;
use crate::changes::Index;

/// A project of the given files (path, text) and berth.toml, with the compose files' text as sources.
fn load(files: &[(&str, &str)], cfg: &str) -> (Project, Sources) {
    let tree = Tree::from_paths(files.iter().map(|(p, _)| *p));
    let project = Project::load("berth.toml", Some(cfg), &tree).unwrap();
    let mut sources = Sources::default();
    for p in needed(&project, &tree, &sources) {
        let text = files.iter().find(|(f, _)| *f == p).map(|(_, t)| *t).unwrap();
        sources.insert(p, Arc::from(text));
    }
    // Included and extended files only show up once their parents are read.
    loop {
        let more = needed(&project, &tree, &sources);
        if more.is_empty() {
            break;
        }
        for p in more {
            let text = files.iter().find(|(f, _)| *f == p).map(|(_, t)| *t).unwrap();
            sources.insert(p, Arc::from(text));
        }
    }
    (project, sources)
}

fn owners(idx: &Index<'_>, path: &str) -> Vec<String> {
    let mut out = Vec::new();
    idx.owners(path, &mut out);
    let mut names: Vec<String> = out.into_iter().map(|i| idx.project().stacks[i].name.clone()).collect();
    names.sort();
    names.dedup();
    names
}

fn why(idx: &Index<'_>, path: &str) -> Vec<String> {
    idx.explain(path).into_iter().map(|(i, w)| format!("{}: {w}", idx.project().stacks[i].name)).collect()
}

const APP: &str = r#"
include:
  - ../shared/base.yaml
services:
  web:
    build:
      context: ./src
      dockerfile: web.Dockerfile
    env_file: [web.env, {path: opt.env, required: false}]
    volumes:
      - ./nginx.conf:/etc/nginx/nginx.conf:ro
      - ${CONF_DIR}/site:/site
      - type: bind
        source: ./data
        target: /data
      - cache:/cache
      - /var/run/docker.sock:/var/run/docker.sock
  worker:
    build: ./worker
    extends:
      file: ../shared/common.yaml
      service: base
configs:
  app:
    file: ./app.ini
secrets:
  token:
    file: ./token.txt
  ext:
    external: true
"#;

fn app() -> (Project, Sources) {
    load(
        &[
            ("stacks/app/compose.yaml", APP),
            ("stacks/app/.env", "CONF_DIR=./conf\n"),
            ("stacks/app/README.md", "# app\n"),
            ("stacks/app/scripts/tool.sh", "true\n"),
            ("stacks/app/src/main.go", ""),
            ("stacks/app/conf/site/index.html", ""),
            ("stacks/app/data/seed.sql", ""),
            ("stacks/shared/base.yaml", "services:\n  base-svc:\n    env_file: base.env\n"),
            ("stacks/shared/common.yaml", "services:\n  base:\n    volumes:\n      - ./common.conf:/c\n"),
        ],
        "[discovery]\npatterns = [\"stacks/{stack}/\"]\n",
    )
}

#[test]
fn every_reference_kind_is_owned() {
    let (p, src) = app();
    let idx = Index::new(&p, &src, &HashMap::new());
    let app = p.stacks.iter().position(|s| s.name == "app").unwrap();
    assert_eq!(idx.owned(app).fallback, None);
    for path in [
        "stacks/app/compose.yaml",
        "stacks/app/.env",
        "stacks/app/web.env",
        "stacks/app/opt.env",
        "stacks/app/nginx.conf",
        "stacks/app/conf/site/index.html",
        "stacks/app/data/seed.sql",
        "stacks/app/src/main.go",
        "stacks/app/src/web.Dockerfile",
        "stacks/app/worker/Dockerfile",
        "stacks/app/app.ini",
        "stacks/app/token.txt",
        "stacks/shared/base.yaml",
        "stacks/shared/base.env",
        "stacks/shared/common.yaml",
        "stacks/shared/common.conf",
    ] {
        assert!(owners(&idx, path).contains(&"app".to_string()), "{path} is not owned by app");
    }
    for path in ["stacks/app/README.md", "stacks/app/scripts/tool.sh", "stacks/app/cache", "var/run/docker.sock"] {
        assert!(!owners(&idx, path).contains(&"app".to_string()), "{path} is owned by app");
    }
    assert_eq!(why(&idx, "stacks/app/nginx.conf"), ["app: bind mount of service `web` in stacks/app/compose.yaml"]);
    assert!(
        why(&idx, "stacks/app/src/web.Dockerfile")
            .contains(&"app: Dockerfile of service `web` in stacks/app/compose.yaml".into())
    );
    assert_eq!(
        why(&idx, "stacks/shared/common.conf"),
        ["app: bind mount of service `base` in stacks/shared/common.yaml"]
    );
    assert_eq!(why(&idx, "stacks/app/token.txt"), ["app: secret file `token` in stacks/app/compose.yaml"]);
    assert_eq!(why(&idx, "stacks/shared/base.yaml"), ["app: included compose file in stacks/app/compose.yaml"]);
    assert_eq!(why(&idx, "stacks/app/.env"), ["app: project .env"]);
}

#[test]
fn interpolation_uses_env_files_env_and_overrides() {
    let compose = "services:\n  a:\n    volumes:\n      - ${A}:/a\n      - ${B:-./b-default}:/b\n      - ./${C}:/c\n";
    let files = [("s/x/compose.yaml", compose), ("s/x/vars.env", "A=./from-env-file\n")];
    let cfg = "[discovery]\npatterns = [\"s/{stack}/\"]\n[[stack]]\nname = \"x\"\nenv_files = [\"vars.env\"]\nenv = { C = \"from-toml\" }\n";
    let (p, src) = load(&files, cfg);
    let idx = Index::new(&p, &src, &HashMap::new());
    assert_eq!(idx.owned(0).fallback, None);
    let dirs: Vec<&str> = idx.owned(0).dirs.iter().map(|(d, _)| d.as_str()).collect();
    assert_eq!(dirs, ["s/x/from-env-file", "s/x/b-default", "s/x/from-toml"]);
    // An override (`--set`, or the last deploy's) wins over berth.toml.
    let mut extra = HashMap::new();
    extra.insert("x".to_string(), BTreeMap::from([("B".to_string(), "./pinned".to_string())]));
    let idx = Index::new(&p, &src, &extra);
    assert_eq!(idx.owned(0).dirs[1].0, "s/x/pinned");
}

#[test]
fn an_unresolved_path_falls_back_to_the_folder_and_says_why() {
    let files = [
        ("s/x/compose.yaml", "services:\n  a:\n    volumes:\n      - ${SECRET_DIR}/k:/k\n"),
        ("s/x/README.md", ""),
        ("s/x/nested/compose.yaml", "services: {}\n"),
        ("s/x/nested/notes.md", ""),
    ];
    let cfg = "[discovery]\npatterns = [\"s/{stack}/\", \"s/x/{stack}/\"]\n";
    let (p, src) = load(&files, cfg);
    let idx = Index::new(&p, &src, &HashMap::new());
    let x = p.stacks.iter().position(|s| s.name == "x").unwrap();
    let reason = idx.owned(x).fallback.clone().unwrap();
    assert!(reason.contains("`SECRET_DIR`") && reason.contains("s/x/compose.yaml"), "{reason}");
    assert_eq!(owners(&idx, "s/x/README.md"), ["x"]);
    assert!(
        why(&idx, "s/x/README.md")[0]
            .starts_with("x: stack folder (`${SECRET_DIR}/k` in `s/x/compose.yaml` uses `SECRET_DIR`")
    );
    // The nested stack resolves everything: its folder is no longer anybody's whole.
    assert!(owners(&idx, "s/x/nested/notes.md").is_empty());
    assert_eq!(owners(&idx, "s/x/nested/compose.yaml"), ["nested"]);
}

#[test]
fn anchors_and_merge_keys_are_followed() {
    let compose =
        "x-common: &common\n  volumes:\n    - ./shared.conf:/s\nservices:\n  a:\n    <<: *common\n    image: x\n";
    let (p, src) = load(&[("s/x/compose.yaml", compose)], "[discovery]\npatterns = [\"s/{stack}/\"]\n");
    let idx = Index::new(&p, &src, &HashMap::new());
    assert_eq!(owners(&idx, "s/x/shared.conf"), ["x"]);
}

#[test]
fn unreadable_or_invalid_compose_files_fall_back() {
    let files = [("s/x/compose.yaml", "services: [unclosed\n"), ("s/x/any.txt", "")];
    let (p, src) = load(&files, "[discovery]\npatterns = [\"s/{stack}/\"]\n");
    let idx = Index::new(&p, &src, &HashMap::new());
    assert!(idx.owned(0).fallback.as_deref().unwrap().contains("is not valid YAML"));
    assert_eq!(owners(&idx, "s/x/any.txt"), ["x"]);
    let idx = Index::new(&p, &Sources::default(), &HashMap::new());
    assert!(idx.owned(0).fallback.as_deref().unwrap().contains("could not be read"));
}

const TWO: &str = r#"
[discovery]
patterns = []
[[stack]]
name = "media"
path = "hosts/nas"
compose = ["compose.yaml"]
[[stack]]
name = "photos"
path = "hosts/nas"
compose = ["photos-compose.yaml"]
"#;

#[test]
fn stacks_sharing_a_folder_each_own_exactly_their_files() {
    let files = [
        ("hosts/nas/compose.yaml", "services:\n  m:\n    volumes:\n      - ./media.conf:/m\n"),
        ("hosts/nas/photos-compose.yaml", "services:\n  p:\n    env_file: photos.env\n"),
        ("hosts/nas/media.conf", ""),
        ("hosts/nas/photos.env", "X=1\n"),
        ("hosts/nas/.env", "TZ=UTC\n"),
        ("hosts/nas/README.md", ""),
    ];
    let (p, src) = load(&files, TWO);
    let idx = Index::new(&p, &src, &HashMap::new());
    assert_eq!(owners(&idx, "hosts/nas/compose.yaml"), ["media"]);
    assert_eq!(owners(&idx, "hosts/nas/media.conf"), ["media"]);
    assert_eq!(owners(&idx, "hosts/nas/photos-compose.yaml"), ["photos"]);
    assert_eq!(owners(&idx, "hosts/nas/photos.env"), ["photos"]);
    assert_eq!(owners(&idx, "hosts/nas/.env"), ["media", "photos"]);
    assert!(owners(&idx, "hosts/nas/README.md").is_empty());
    assert!(shared(&p).is_empty());
}

#[test]
fn hook_scripts_belong_to_their_stack_and_other_scripts_to_nobody() {
    let files = [
        ("hosts/nas/compose.yaml", "services: {}\n"),
        ("hosts/nas/photos-compose.yaml", "services: {}\n"),
        ("hosts/nas/scripts/validate-media.sh", ""),
        ("hosts/nas/scripts/unused.sh", ""),
        ("scripts/check.sh", ""),
    ];
    let cfg = TWO.replace(
        "compose = [\"compose.yaml\"]\n",
        "compose = [\"compose.yaml\"]\npre_deploy = { run = [\"sh\", \"validate-media.sh\"], dir = \"scripts\" }\n",
    ) + "post_deploy = [\"sh\", \"scripts/check.sh\"]\n";
    let (p, src) = load(&files, &cfg);
    let idx = Index::new(&p, &src, &HashMap::new());
    assert_eq!(owners(&idx, "hosts/nas/scripts/validate-media.sh"), ["media"]);
    assert_eq!(why(&idx, "hosts/nas/scripts/validate-media.sh"), ["media: pre_deploy script in berth.toml"]);
    // Found at the repository root, as the hook runs it.
    assert_eq!(why(&idx, "scripts/check.sh"), ["photos: post_deploy script in berth.toml"]);
    assert!(owners(&idx, "hosts/nas/scripts/unused.sh").is_empty());
}

#[test]
fn shared_folders_are_reported() {
    let files = [("hosts/nas/compose.yaml", "services: {}\n"), ("hosts/nas/b.yaml", "services: {}\n")];
    let same = "[discovery]\npatterns = []\n[[stack]]\nname = \"a\"\npath = \"hosts/nas\"\n[[stack]]\nname = \"b\"\npath = \"hosts/nas\"\n";
    let (p, _) = load(&files, same);
    assert!(matches!(&shared(&p)[..], [Shared::SameProject { a, b, .. }] if a == "a" && b == "b"));
    let undeclared = same.replace("name = \"b\"\n", "name = \"b\"\nserver = \"other\"\n")
        + "[[server]]\nname = \"other\"\ndocker = \"ssh://o\"\n";
    let (p, _) = load(&files, &undeclared);
    let found = shared(&p);
    assert!(matches!(&found[..], [Shared::Undeclared { .. }]), "{found:?}");
    assert!(found[0].to_string().contains("neither declares"));
    let declared = same.replace("name = \"b\"\n", "name = \"b\"\ncompose = [\"b.yaml\"]\n");
    let (p, _) = load(&files, &declared);
    assert!(shared(&p).is_empty());
}

#[test]
fn a_compose_file_is_parsed_once_however_often_ownership_is_derived() {
    let (p, src) = app();
    let compose = src.texts.get("stacks/app/compose.yaml").unwrap().clone();
    // `needed` (which found what to read) parsed it already; deriving does not again.
    let parsed: *const _ = compose.doc.get().expect("the walk parsed the compose file");
    let first = derive(&p, &src, &HashMap::new());
    // Another commit holding the same blob shares its parse.
    let mut other = Sources::default();
    for (path, s) in &src.texts {
        other.insert_source(path.clone(), s.clone());
    }
    assert_eq!(derive(&p, &other, &HashMap::new()), first);
    assert!(std::ptr::eq(parsed, compose.doc.get().unwrap()), "the compose file was parsed again");
}

/// A repository as operators leave them: several compose files in one folder, paths built from
/// variables, includes of includes and a cycle, a compose file that is no YAML (or a symlink,
/// whose blob is its target's path), paths climbing out of the repository, absolute bind mounts.
#[test]
fn a_messy_repository_is_owned_without_panicking() {
    let files = [
        ("s/multi/compose.yaml", "include:\n  - path: ${INC}/a.yaml\nservices:\n  m:\n    image: x\n"),
        ("s/multi/compose.override.yaml", "services:\n  m:\n    volumes:\n      - ./override.conf:/o\n"),
        ("s/multi/docker-compose.yml", "services:\n  legacy:\n    volumes:\n      - ./legacy.conf:/l\n"),
        ("s/multi/.env", "INC=./inc\n"),
        ("s/multi/inc/a.yaml", "include:\n  - b.yaml\nservices:\n  a:\n    env_file: a.env\n"),
        ("s/multi/inc/b.yaml", "include:\n  - a.yaml\nservices:\n  b:\n    volumes:\n      - ./b.conf:/b\n"),
        ("s/multi/override.conf", ""),
        ("s/multi/legacy.conf", ""),
        ("s/broken/compose.yaml", "\u{0}\u{1}binary\u{ff}: [\n\t- {"),
        ("s/broken/data.txt", ""),
        ("s/link/compose.yaml", "../multi/compose.yaml"),
    ];
    let (p, src) = load(&files, "[discovery]\npatterns = [\"s/{stack}/\"]\n");
    let idx = Index::new(&p, &src, &HashMap::new());
    let owned = |name: &str| idx.owned(p.stacks.iter().position(|s| s.name == name).unwrap());

    // Discovery picks one compose file (and its override); includes of includes are followed
    // through `${INC}` from the folder's `.env`, and the cycle ends.
    assert_eq!(owned("multi").fallback, None);
    for path in ["s/multi/override.conf", "s/multi/inc/a.yaml", "s/multi/inc/b.yaml", "s/multi/inc/a.env"] {
        assert_eq!(owners(&idx, path), ["multi"], "{path}");
    }
    assert_eq!(owners(&idx, "s/multi/inc/b.conf"), ["multi"]);
    // Not a compose file of the stack: a change to it deploys nothing.
    assert!(owners(&idx, "s/multi/legacy.conf").is_empty());

    // What is no compose model makes its stack own its folder, and says why.
    for (name, file) in [("broken", "s/broken/data.txt"), ("link", "s/link/anything")] {
        assert!(owned(name).fallback.as_deref().unwrap_or("").contains("is not valid YAML"), "{name}");
        assert_eq!(owners(&idx, file), [name]);
    }

    // Paths out of the repository or absolute are nobody's; `..` inside it is.
    let files = [(
        "s/escape/compose.yaml",
        "include:\n  - ../../../../etc/compose.yaml\nservices:\n  e:\n    build: ../..\n    env_file: ../../../x.env\n    volumes:\n      - ../../../../etc:/etc\n      - /srv/data:/data\n      - ${HOST_DIR:-/var/lib/x}:/x\n      - ~/cache:/cache\n      - ..:/up\n",
    )];
    let (p, src) = load(&files, "[discovery]\npatterns = [\"s/{stack}/\"]\n");
    let idx = Index::new(&p, &src, &HashMap::new());
    let e = idx.owned(0);
    assert_eq!(e.fallback, None);
    let dirs: Vec<&str> = e.dirs.iter().map(|(d, _)| d.as_str()).collect();
    assert_eq!(dirs, ["s", ""], "`..` is `s`, the build context `../..` the repository root");
    assert!(e.files.iter().all(|(f, _)| !f.contains("..") && !f.starts_with('/')), "{:?}", e.files);
}

#[test]
fn files_read_from_outside_the_repository_are_named() {
    let files = [(
        "s/x/compose.yaml",
        "include:\n  - /etc/compose/base.yaml\nservices:\n  a:\n    env_file: [../../../../etc/berth/secrets.env, ok.env]\n    \
         extends: { file: /srv/common.yaml, service: base }\n    volumes:\n      - /var/run/docker.sock:/s\n",
    )];
    let (p, src) = load(&files, "[discovery]\npatterns = [\"s/{stack}/\"]\n");
    let owned = derive(&p, &src, &HashMap::new());
    let mut outside = owned[0].outside.clone();
    outside.sort();
    // A bind mount is no file compose reads to render the model.
    assert_eq!(outside, ["../../../../etc/berth/secrets.env", "/etc/compose/base.yaml", "/srv/common.yaml"]);
}
