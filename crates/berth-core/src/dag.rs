//! Dependency order between stacks (`after = [..]`): topological order and cycle reporting.

use std::collections::{BTreeSet, HashMap};

use crate::project::Stack;

/// Indices of `stacks` in dependency order (dependencies first, ties by name).
/// On a cycle, returns the stack names along it, first name repeated at the end.
pub fn order(stacks: &[Stack]) -> Result<Vec<usize>, Vec<String>> {
    let index: HashMap<&str, usize> = stacks.iter().enumerate().map(|(i, s)| (s.name.as_str(), i)).collect();
    let mut pending = vec![0usize; stacks.len()];
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); stacks.len()];
    for (i, s) in stacks.iter().enumerate() {
        for d in &s.after {
            if let Some(&j) = index.get(d.as_str()) {
                pending[i] += 1;
                dependents[j].push(i);
            }
        }
    }
    let by_name = |i: &usize| (stacks[*i].name.as_str(), *i);
    let mut ready: BTreeSet<(&str, usize)> =
        (0..stacks.len()).filter(|i| pending[*i] == 0).map(|i| by_name(&i)).collect();
    let mut out = Vec::with_capacity(stacks.len());
    while let Some(next) = ready.pop_first() {
        let i = next.1;
        out.push(i);
        for &k in &dependents[i] {
            pending[k] -= 1;
            if pending[k] == 0 {
                ready.insert(by_name(&k));
            }
        }
    }
    if out.len() == stacks.len() {
        return Ok(out);
    }
    // Walk `after` edges among the stuck stacks until one repeats.
    let Some(start) = (0..stacks.len()).filter(|i| pending[*i] > 0).min_by_key(|i| stacks[*i].name.as_str()) else {
        return Err(Vec::new());
    };
    let mut path = vec![start];
    loop {
        let cur = path[path.len() - 1];
        let next = stacks[cur].after.iter().filter_map(|d| index.get(d.as_str()).copied()).find(|j| pending[*j] > 0);
        let Some(next) = next else {
            return Err(path.iter().map(|i| stacks[*i].name.clone()).collect());
        };
        if let Some(pos) = path.iter().position(|p| *p == next) {
            let mut cycle: Vec<String> = path[pos..].iter().map(|i| stacks[*i].name.clone()).collect();
            cycle.push(stacks[next].name.clone());
            return Err(cycle);
        }
        path.push(next);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::project::Mode;

    pub(crate) fn stack(name: &str, after: &[&str]) -> Stack {
        Stack {
            name: name.into(),
            path: format!("stacks/{name}"),
            compose_files: vec![format!("stacks/{name}/compose.yaml")],
            compose_declared: false,
            server: "local".into(),
            mode: Mode::Compose,
            after: after.iter().map(|s| s.to_string()).collect(),
            watch: vec![],
            ignore: vec![],
            manual: false,
            env: Default::default(),
            secret_env: Default::default(),
            secrets: vec![],
            env_files: vec![],
            timeout: std::time::Duration::from_secs(60),
            pre_deploy: Default::default(),
            post_deploy: Default::default(),
            pull: None,
            tier: None,
            require_ci: None,
            self_heal: false,
            age_identity: None,
            verify: Default::default(),
            rollback: Default::default(),
            rollout: Default::default(),
            origin: String::new(),
            location: None,
            images: vec![],
        }
    }

    #[test]
    fn dependencies_come_first() {
        let s = vec![stack("app", &["db", "proxy"]), stack("db", &[]), stack("proxy", &["db"])];
        let names: Vec<_> = order(&s).unwrap().into_iter().map(|i| s[i].name.as_str()).collect();
        assert_eq!(names, ["db", "proxy", "app"]);
    }

    #[test]
    fn cycles_are_reported_along_their_edges() {
        let s = vec![stack("a", &["b"]), stack("b", &["c"]), stack("c", &["b"]), stack("d", &[])];
        assert_eq!(order(&s).unwrap_err(), ["b", "c", "b"]);
    }
}
