//! Ownership from what compose reads, on the real engine: two stacks in one folder each own exactly
//! their files; a README deploys nothing; a bind-mounted file still recreates its service.

use crate::common::*;

/// A service that bind-mounts `file` (relative to the folder) at /conf.
fn mounting(service: &str, file: &str, color: &str) -> String {
    format!(
        "services:\n  {service}:\n    image: {IMAGE}\n    command: [\"sleep\", \"2147483647\"]\n    stop_signal: SIGKILL\n    \
         environment:\n      COLOR: {color}\n    volumes:\n      - ./{file}:/conf:ro\n"
    )
}

#[test]
fn two_stacks_in_one_folder_each_own_exactly_their_files() {
    let f = Fixture::bare(&["media", "photos"]);
    let (a, b) = (f.stacks[0].clone(), f.stacks[1].clone());
    let repo = &f.repo;
    repo.write("hosts/nas/compose.yaml", &mounting("app", "media.conf", "blue"));
    repo.write("hosts/nas/other-compose.yaml", &mounting("app", "photos.conf", "blue"));
    repo.write("hosts/nas/media.conf", "media=1\n");
    repo.write("hosts/nas/photos.conf", "photos=1\n");
    repo.write("hosts/nas/README.md", "# nas\n");
    repo.write(
        "berth.toml",
        &format!(
            "[discovery]\npatterns = []\n\n[[stack]]\nname = \"{a}\"\npath = \"hosts/nas\"\ncompose = [\"compose.yaml\"]\n\n\
             [[stack]]\nname = \"{b}\"\npath = \"hosts/nas\"\ncompose = [\"other-compose.yaml\"]\n"
        ),
    );
    let first = repo.commit("two stacks in one folder");
    let v = repo.berth(&["validate"]).ok();
    assert!(!v.stderr.contains("share the folder"), "declared stacks warned: {}", v.stderr);
    let out = repo.berth(&["apply"]).ok();
    assert!(out.stdout.contains("apply: 2 deployed, 0 failed"), "{}", out.stdout);
    let (a_id, b_id) = (container(&a, "app"), container(&b, "app"));
    assert_eq!(docker_out(&["exec", &b_id, "cat", "/conf"]), "photos=1");

    // Editing the second stack's compose file redeploys that stack only.
    repo.write("hosts/nas/other-compose.yaml", &mounting("app", "photos.conf", "green"));
    let second = repo.commit("photos turn green");
    let changed = repo.json(&["changed", "--from", &first, "--to", &second, "--json"]);
    assert_eq!(changed["stacks"].as_array().unwrap().len(), 1, "{changed}");
    assert_eq!(changed["stacks"][0]["name"], b.as_str());
    assert_eq!(changed["stacks"][0]["why"]["hosts/nas/other-compose.yaml"][0], "compose file");
    assert_eq!(repo.planned_deploys(), [b.as_str()]);
    repo.berth(&["apply"]).ok();
    assert_eq!(container(&a, "app"), a_id, "the other stack of the folder was recreated");
    let b_green = container(&b, "app");
    assert_ne!(b_green, b_id, "the edited stack was not redeployed");
    assert!(inspect(&b_green, "{{json .Config.Env}}").contains("COLOR=green"));

    // A README commit inside the folder deploys nothing.
    repo.write("hosts/nas/README.md", "# nas\nmore notes\n");
    repo.write("hosts/nas/docs/setup.md", "steps\n");
    let third = repo.commit("docs only");
    let changed = repo.json(&["changed", "--from", &second, "--to", &third, "--json"]);
    assert_eq!(changed["stacks"].as_array().unwrap().len(), 0, "{changed}");
    let out = repo.berth(&["apply"]).ok();
    assert!(out.stdout.contains("nothing to deploy"), "{}", out.stdout);

    // A bind-mounted file of the first stack recreates its service, and only that stack's.
    repo.write("hosts/nas/media.conf", "media=2\n");
    repo.commit("media conf v2");
    assert_eq!(repo.planned_deploys(), [a.as_str()]);
    let out = repo.berth(&["apply"]).ok();
    assert!(out.stdout.contains("recreated app"), "{}", out.stdout);
    let a_new = container(&a, "app");
    assert_ne!(a_new, a_id, "the service mounting the changed file kept its container");
    assert_eq!(docker_out(&["exec", &a_new, "cat", "/conf"]), "media=2");
    assert_eq!(container(&b, "app"), b_green, "the stack that does not mount the file was recreated");
}

#[test]
fn validate_reports_shared_folders_and_unresolved_paths_own_the_folder() {
    let repo = Repo::new();
    repo.write("hosts/nas/compose.yaml", &sleeper(&["app"]));
    repo.write("hosts/nas/other.yaml", &sleeper(&["app"]));
    let same = "[discovery]\npatterns = []\n[[stack]]\nname = \"one\"\npath = \"hosts/nas\"\n[[stack]]\nname = \"two\"\npath = \"hosts/nas\"\n";
    repo.write("berth.toml", same);
    repo.commit("the same project twice");
    let out = repo.berth(&["validate"]);
    assert_eq!(out.code, 2, "{}{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("would be the same compose project"), "{}", out.stderr);

    let other = same.replace("name = \"two\"\n", "name = \"two\"\nserver = \"nas\"\n")
        + "[[server]]\nname = \"nas\"\ndocker = \"ssh://nas.invalid\"\n";
    repo.write("berth.toml", &other);
    repo.commit("two servers");
    let out = repo.berth(&["validate"]).ok();
    assert!(out.stderr.contains("warning: stacks `one` and `two` share the folder `hosts/nas`"), "{}", out.stderr);

    // A path whose variable berth cannot know: the stack owns its whole folder, and the plan says so.
    repo.write("hosts/nas/other.yaml", &format!("{}    volumes:\n      - ${{DATA}}/x:/x\n", sleeper(&["app"])));
    repo.write(
        "berth.toml",
        "[discovery]\npatterns = []\n[[stack]]\nname = \"two\"\npath = \"hosts/nas\"\ncompose = [\"other.yaml\"]\n",
    );
    let before = repo.commit("unresolved");
    repo.write("hosts/nas/notes.txt", "x\n");
    let after = repo.commit("notes");
    let changed = repo.json(&["changed", "--from", &before, "--to", &after, "--json"]);
    assert_eq!(changed["stacks"][0]["name"], "two", "{changed}");
    let whole = changed["stacks"][0]["whole_folder"].as_str().unwrap();
    assert!(whole.contains("`DATA`"), "{whole}");
    let plan = repo.berth(&["plan"]).ok();
    assert!(plan.stdout.contains("owns its whole folder `hosts/nas`"), "{}", plan.stdout);
}
