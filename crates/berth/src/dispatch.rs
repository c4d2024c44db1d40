//! The dispatcher: runs a plan's deploys in dependency order, in parallel up to a limit.
//!
//! One loop owns all state (which stacks wait, run, succeeded, failed or are
//! blocked) and is the only writer of the state store; executors run on
//! their own threads and talk to it only by messages. A failed stack blocks
//! its dependents while independent stacks carry on.

use std::collections::{BTreeMap, HashMap};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use berth_core::plan::Plan;
use berth_core::record::DeployStatus;
use berth_core::{Project, vars};

use crate::deploy::{self, Job, Outcome};
use crate::docker::Engine;
use crate::error::Result;
use crate::state::{NewDeploy, State};
use crate::workspace::Workspace;

/// What the dispatcher tells its observer.
#[derive(Debug)]
pub enum Event<'a> {
    Started { stack: &'a str, id: i64 },
    Finished { stack: &'a str, id: i64, outcome: &'a Outcome, took: Duration },
    Blocked { stack: &'a str, id: i64, by: &'a str },
    Phase { stack: &'a str, id: i64, phase: &'a str },
}

/// The result of one stack.
#[derive(Debug, Clone)]
pub struct Done {
    pub stack: String,
    pub id: i64,
    pub status: DeployStatus,
    pub reason: Option<String>,
}

/// Inputs shared by every deploy of a run.
pub struct Context<'a> {
    pub ws: &'a Workspace,
    pub state: &'a State,
    pub engines: &'a HashMap<String, Engine>,
    pub trigger: &'a str,
    pub max_parallel: usize,
    pub notifier: &'a crate::notify::Notifier,
}

enum Slot {
    Waiting,
    Running,
    Ok,
    Failed,
}

/// Run every `deploy` step of `plan`. `vars` holds each stack's override variables.
pub fn run(
    ctx: &Context<'_>,
    project: &Project,
    plan: &Plan,
    vars: &crate::workspace::VarsByStack,
    mut observe: impl FnMut(Event<'_>),
) -> Result<Vec<Done>> {
    let steps: Vec<_> = plan.to_deploy().collect();
    let pos: HashMap<&str, usize> = steps.iter().enumerate().map(|(i, s)| (s.stack.as_str(), i)).collect();
    let deps: Vec<Vec<usize>> =
        steps.iter().map(|s| s.after.iter().filter_map(|d| pos.get(d.as_str()).copied()).collect()).collect();
    let mut slots: Vec<Slot> = steps.iter().map(|_| Slot::Waiting).collect();
    let mut ids = vec![0i64; steps.len()];
    let mut done = Vec::new();
    let empty = BTreeMap::new();
    enum Msg {
        Phase(usize, String),
        Done(usize, Box<Outcome>, Duration),
    }
    let (tx, rx) = mpsc::channel::<Msg>();

    std::thread::scope(|scope| -> Result<()> {
        let mut running = 0usize;
        loop {
            // Start or block everything that can move, in plan order.
            for i in 0..steps.len() {
                if !matches!(slots[i], Slot::Waiting) {
                    continue;
                }
                let step = steps[i];
                let overrides = vars.get(&step.stack).unwrap_or(&empty);
                let redacted = vars::redact(overrides);
                let record = NewDeploy {
                    stack: &step.stack,
                    server: &step.server,
                    commit: &plan.commit,
                    config_hash: &step.config_hash,
                    vars: &redacted,
                    overrides: &redacted,
                    trigger: ctx.trigger,
                };
                if let Some(&bad) = deps[i].iter().find(|&&d| matches!(slots[d], Slot::Failed)) {
                    let by = steps[bad].stack.as_str();
                    let id = ctx.state.record_blocked(&record, &format!("dependency `{by}` did not deploy"))?;
                    slots[i] = Slot::Failed;
                    done.push(Done {
                        stack: step.stack.clone(),
                        id,
                        status: DeployStatus::Blocked,
                        reason: Some(format!("dependency `{by}` did not deploy")),
                    });
                    observe(Event::Blocked { stack: &step.stack, id, by });
                    continue;
                }
                if running >= ctx.max_parallel || !deps[i].iter().all(|&d| matches!(slots[d], Slot::Ok)) {
                    continue;
                }
                let Some(stack) = project.stack(&step.stack).cloned() else { continue };
                let Some(engine) = ctx.engines.get(&stack.server).cloned() else { continue };
                let id = ctx.state.begin(&record)?;
                let ci = match ctx.ws.ci_gate(project, &stack) {
                    Ok(ci) => ci,
                    Err(e) => {
                        // A gate that cannot be asked fails this stack, not the whole run.
                        let reason = e.to_string();
                        ctx.state.finish(id, DeployStatus::Failed, Some(&reason), "", &BTreeMap::new())?;
                        slots[i] = Slot::Failed;
                        done.push(Done {
                            stack: step.stack.clone(),
                            id,
                            status: DeployStatus::Failed,
                            reason: Some(reason),
                        });
                        continue;
                    }
                };
                ids[i] = id;
                slots[i] = Slot::Running;
                running += 1;
                observe(Event::Started { stack: &step.stack, id });
                ctx.notifier.send(&crate::notify::Event::deploy(
                    "started",
                    &step.stack,
                    &step.server,
                    &plan.commit,
                    id,
                    None,
                ));
                let rollback = ctx.ws.previous_job(ctx.state, &step.stack, None, &engine, &step.paths).map(Box::new);
                let job = Job {
                    stack,
                    commit: plan.commit.clone(),
                    overrides: overrides.clone(),
                    changed_paths: step.paths.clone(),
                    engine,
                    rollback,
                    verify_only: false,
                    ci,
                };
                let tx = tx.clone();
                let (repo, state_dir) = (&ctx.ws.repo, &ctx.ws.state_dir);
                scope.spawn(move || {
                    let start = Instant::now();
                    let progress = |phase: &str| {
                        let _ = tx.send(Msg::Phase(i, phase.to_string()));
                    };
                    let outcome = deploy::run(repo, state_dir, &job, &progress);
                    let _ = tx.send(Msg::Done(i, Box::new(outcome), start.elapsed()));
                });
            }
            if running == 0 {
                break;
            }
            let (i, outcome, took) = match rx.recv() {
                Ok(Msg::Phase(i, phase)) => {
                    ctx.state.set_phase(ids[i], &phase)?;
                    observe(Event::Phase { stack: &steps[i].stack, id: ids[i], phase: &phase });
                    continue;
                }
                Ok(Msg::Done(i, outcome, took)) => (i, outcome, took),
                Err(_) => break,
            };
            running -= 1;
            let id = ids[i];
            ctx.state.set_verify(id, &outcome.verify.to_string())?;
            ctx.state.finish(id, outcome.status, outcome.reason.as_deref(), &outcome.log, &outcome.vars)?;
            slots[i] = if outcome.status == DeployStatus::Succeeded { Slot::Ok } else { Slot::Failed };
            observe(Event::Finished { stack: &steps[i].stack, id, outcome: &outcome, took });
            let what = match outcome.status {
                DeployStatus::Succeeded => "succeeded",
                DeployStatus::RolledBack => "rolled_back",
                _ => "failed",
            };
            let event = crate::notify::Event::deploy(
                what,
                &steps[i].stack,
                &steps[i].server,
                &plan.commit,
                id,
                outcome.reason.clone(),
            );
            ctx.notifier.send(&event);
            done.push(Done { stack: steps[i].stack.clone(), id, status: outcome.status, reason: outcome.reason });
        }
        Ok(())
    })?;
    Ok(done)
}
