//! The CLI's dispatcher: runs a plan's deploys in dependency order, in parallel up to a limit.
//!
//! One loop owns the run's ordering (which stacks wait, run, succeeded, failed or
//! are blocked); each deploy runs on its own thread through [`crate::executor`],
//! which holds the stack's lock and records it, and reports back by message. A
//! failed stack blocks its dependents while independent stacks carry on.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, mpsc};
use std::time::{Duration, Instant};

use berth_core::plan::Plan;
use berth_core::record::DeployStatus;
use berth_core::{Project, vars};

use crate::deploy::{Job, Outcome};
use crate::docker::Engine;
use crate::error::Result;
use crate::executor::{self, Ran, Request};
use crate::state::{NewDeploy, State, WithState};
use crate::workspace::Workspace;

/// What the dispatcher tells its observer.
#[derive(Debug)]
pub enum Event<'a> {
    Started {
        stack: &'a str,
        id: i64,
    },
    Finished {
        stack: &'a str,
        id: i64,
        outcome: &'a Outcome,
        took: Duration,
    },
    Blocked {
        stack: &'a str,
        id: i64,
        by: &'a str,
    },
    Phase {
        stack: &'a str,
        id: i64,
        phase: &'a str,
    },
    /// Another deploy holds the stack's lock; this one waits for it.
    Waiting {
        stack: &'a str,
        holder: &'a str,
    },
    /// Another process deployed this exact config meanwhile: nothing was recorded.
    Current {
        stack: &'a str,
        by: i64,
    },
    /// It never started (refused while another deploy held the stack, or failed before it).
    NotRun {
        stack: &'a str,
        reason: &'a str,
    },
}

/// The result of one stack.
#[derive(Debug, Clone)]
pub struct Done {
    pub stack: String,
    pub id: Option<i64>,
    pub status: DeployStatus,
    pub reason: Option<String>,
}

/// Inputs shared by every deploy of a run.
pub struct Context<'a> {
    pub ws: &'a Workspace,
    pub state: &'a Mutex<State>,
    pub engines: &'a HashMap<String, Engine>,
    pub trigger: &'a str,
    pub max_parallel: usize,
    pub notifier: &'a crate::notify::Notifier,
    /// Wait (up to the stack's timeout) for a stack another deploy holds; else refuse it.
    pub wait: bool,
    /// A reconcile (`apply`): skip stacks another process brought to this config meanwhile.
    pub reconcile: bool,
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
    let mut started: Vec<Option<Instant>> = vec![None; steps.len()];
    let mut done = Vec::new();
    let empty = BTreeMap::new();
    enum Msg {
        Waiting(usize, String),
        Started(usize, i64),
        Phase(usize, i64, String),
        Done(usize, Ran),
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
                if let Some(&bad) = deps[i].iter().find(|&&d| matches!(slots[d], Slot::Failed)) {
                    let by = steps[bad].stack.as_str();
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
                    let reason = format!("dependency `{by}` did not deploy");
                    let id = ctx.state.with_state(|s| s.record_blocked(&record, &reason))?;
                    slots[i] = Slot::Failed;
                    done.push(Done {
                        stack: step.stack.clone(),
                        id: Some(id),
                        status: DeployStatus::Blocked,
                        reason: Some(reason),
                    });
                    observe(Event::Blocked { stack: &step.stack, id, by });
                    continue;
                }
                if running >= ctx.max_parallel || !deps[i].iter().all(|&d| matches!(slots[d], Slot::Ok)) {
                    continue;
                }
                let Some(stack) = project.stack(&step.stack).cloned() else { continue };
                let Some(engine) = ctx.engines.get(&stack.server).cloned() else { continue };
                let step_timeout = stack.timeout;
                slots[i] = Slot::Running;
                started[i] = Some(Instant::now());
                running += 1;
                let tx = tx.clone();
                scope.spawn(move || {
                    let ci = ctx.ws.ci_gate(project, &stack);
                    let ran = match ci {
                        // A gate that cannot be asked fails this stack, not the whole run.
                        Err(e) => Ran::NotRun { id: None, status: DeployStatus::Failed, reason: e.to_string() },
                        Ok(ci) => {
                            let job = Job::new(stack, plan.commit.clone(), engine)
                                .overrides(overrides.clone())
                                .changed_paths(step.paths.clone())
                                .ci(ci);
                            let req = Request {
                                job,
                                config_hash: step.config_hash.clone(),
                                trigger: ctx.trigger.to_string(),
                                queued: None,
                                wait: if ctx.wait { step_timeout } else { Duration::ZERO },
                                reconcile: ctx.reconcile,
                                if_unreachable: None,
                            };
                            let on = |e: executor::Event<'_>| {
                                let _ = tx.send(match e {
                                    executor::Event::Waiting { holder } => Msg::Waiting(i, holder.to_string()),
                                    executor::Event::Started { id } => Msg::Started(i, id),
                                    executor::Event::Phase { id, phase } => Msg::Phase(i, id, phase.to_string()),
                                });
                            };
                            executor::run(ctx.ws, ctx.state, ctx.notifier, req, &on)
                        }
                    };
                    let _ = tx.send(Msg::Done(i, ran));
                });
            }
            if running == 0 {
                break;
            }
            let (i, ran) = match rx.recv() {
                Ok(Msg::Waiting(i, holder)) => {
                    observe(Event::Waiting { stack: &steps[i].stack, holder: &holder });
                    continue;
                }
                Ok(Msg::Started(i, id)) => {
                    observe(Event::Started { stack: &steps[i].stack, id });
                    continue;
                }
                Ok(Msg::Phase(i, id, phase)) => {
                    observe(Event::Phase { stack: &steps[i].stack, id, phase: &phase });
                    continue;
                }
                Ok(Msg::Done(i, ran)) => (i, ran),
                Err(_) => break,
            };
            running -= 1;
            let stack = steps[i].stack.as_str();
            let took = started[i].map(|t| t.elapsed()).unwrap_or_default();
            slots[i] = if ran.status() == DeployStatus::Succeeded { Slot::Ok } else { Slot::Failed };
            match &ran {
                Ran::Deployed { id, outcome, .. } => observe(Event::Finished { stack, id: *id, outcome, took }),
                Ran::Current { by } => observe(Event::Current { stack, by: *by }),
                Ran::NotRun { reason, .. } => observe(Event::NotRun { stack, reason }),
            }
            done.push(Done { stack: stack.to_string(), id: ran.id(), status: ran.status(), reason: ran.reason() });
        }
        Ok(())
    })?;
    Ok(done)
}
