//! The subcommands: `show`, `up`, `test`, `down`, `exec`. Each returns the process exit
//! status: 0 success, 1 a failed check or a failed build, 2 a bad file or command line,
//! 128+N when signal N stopped it (after a full teardown).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Result};

use crate::checks;
use crate::lab::{self, Bins, Lab};
use crate::plan::{self, CheckKind, Plan};
use crate::proc::{self, RunError};
use crate::render;
use crate::state::{Mode, State};

/// Exit status for a bad file or usage.
pub const EXIT_USAGE: i32 = 2;

fn load(file: &Path) -> Result<Plan, i32> {
    plan::load(file).map_err(|e| {
        eprintln!("{e}");
        eprintln!(
            "vstopo: {}: {} error(s); nothing was built",
            file.display(),
            e.0.len()
        );
        EXIT_USAGE
    })
}

/// The file's canonical path: the key under which its runs are recorded.
fn canonical(file: &Path) -> PathBuf {
    std::fs::canonicalize(file).unwrap_or_else(|_| {
        std::env::current_dir()
            .map(|d| d.join(file))
            .unwrap_or_else(|_| file.to_path_buf())
    })
}

/// What the build and the checks need that is not ours to provide.
fn preflight(plan: &Plan) -> Result<Bins> {
    if !testlab::is_root() {
        bail!("vstopo builds network namespaces and needs root: sudo vstopo …");
    }
    let mut tools = vec!["ip", "sysctl", "ss"];
    if plan.etcd.is_some() {
        tools.extend(["etcd", "etcdctl"]);
    }
    for c in &plan.checks {
        match c.kind {
            CheckKind::Ping { .. } | CheckKind::Pingall { .. } => tools.push("ping"),
            CheckKind::Iperf { .. } => tools.push("iperf3"),
            CheckKind::Http { .. } => tools.extend(["python3", "curl"]),
            CheckKind::Exec { .. } => tools.push("sh"),
            CheckKind::Ipam { .. } => tools.push("etcdctl"),
            CheckKind::Tcp { .. } | CheckKind::Fdb { .. } | CheckKind::Broadcast { .. } => {}
        }
    }
    tools.sort_unstable();
    tools.dedup();
    let missing = proc::missing_tools(&tools);
    if !missing.is_empty() {
        bail!(
            "missing tool(s): {} — install them with: sudo bash scripts/deps.sh",
            missing.join(", ")
        );
    }
    Bins::find()
}

fn exit_for(sig: i32) -> i32 {
    128 + sig
}

/// `vstopo show FILE [--steps]`.
pub fn show(file: &Path, steps: bool) -> i32 {
    match load(file) {
        Ok(p) => {
            print!("{}", render::show(&p, steps));
            0
        }
        Err(c) => c,
    }
}

/// Builds `plan` as a new run; on any failure (or a signal) tears it down again.
fn build<'p>(plan: &'p Plan, file: &Path, mode: Mode, verbose: bool) -> Result<Lab<'p>, i32> {
    let bins = match preflight(plan) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("vstopo: {e:#}");
            return Err(1);
        }
    };
    if let Err(e) = proc::catch_signals() {
        eprintln!("vstopo: cannot install signal handlers: {e}");
        return Err(1);
    }
    let mut lab = match Lab::new(plan, &canonical(file), mode, bins, verbose) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("vstopo: {e:#}");
            return Err(1);
        }
    };
    println!(
        "vstopo: {}: building run {} ({} namespace(s), {} switch(es), {} link(s))",
        plan.name,
        lab.run(),
        plan.namespaces().len(),
        plan.switches.len(),
        plan.links.len()
    );
    let t0 = Instant::now();
    match lab.up() {
        Ok(()) => {
            println!(
                "vstopo: {}: up in {:.1} s",
                plan.name,
                t0.elapsed().as_secs_f64()
            );
            Ok(lab)
        }
        Err(e) => {
            let code = match e.downcast_ref::<RunError>() {
                Some(RunError::Stopped(s)) => {
                    eprintln!(
                        "vstopo: {}: stopped by {} while building; tearing down",
                        plan.name,
                        proc::signal_name(*s)
                    );
                    exit_for(*s)
                }
                _ => {
                    eprintln!("vstopo: {}: build failed: {e:#}", plan.name);
                    eprint!("{}", lab.diag());
                    1
                }
            };
            finish(&mut lab);
            Err(code)
        }
    }
}

/// Tears the lab down and says so; false if something was left behind.
fn finish(lab: &mut Lab<'_>) -> bool {
    let t0 = Instant::now();
    match lab.down() {
        Ok(()) => {
            println!(
                "vstopo: {}: run {} torn down in {:.1} s",
                lab.plan.name,
                lab.run(),
                t0.elapsed().as_secs_f64()
            );
            true
        }
        Err(e) => {
            eprintln!("vstopo: {e:#}");
            false
        }
    }
}

/// `vstopo test FILE`.
pub fn test(file: &Path, verbose: bool) -> i32 {
    let plan = match load(file) {
        Ok(p) => p,
        Err(c) => return c,
    };
    let mut lab = match build(&plan, file, Mode::Test, verbose) {
        Ok(l) => l,
        Err(c) => return c,
    };
    let n = plan.checks.len();
    let mut failed: Vec<String> = Vec::new();
    let mut passed = 0;
    for (i, c) in plan.checks.iter().enumerate() {
        let t0 = Instant::now();
        match checks::run(&mut lab, c) {
            Ok(o) => {
                println!(
                    "{} [{}/{n}] {}: {} ({:.1} s)",
                    if o.pass { "PASS" } else { "FAIL" },
                    i + 1,
                    c.label,
                    o.figure,
                    t0.elapsed().as_secs_f64()
                );
                if o.pass {
                    passed += 1;
                } else {
                    failed.push(format!("[{}] {} (line {})", i + 1, c.label, c.line));
                }
            }
            Err(e) => {
                let code = match e {
                    RunError::Stopped(s) => {
                        eprintln!(
                            "vstopo: {}: stopped by {} during check {}; tearing down",
                            plan.name,
                            proc::signal_name(s),
                            i + 1
                        );
                        exit_for(s)
                    }
                    other => {
                        eprintln!("vstopo: {other}");
                        1
                    }
                };
                finish(&mut lab);
                return code;
            }
        }
    }
    if !failed.is_empty() {
        eprint!("{}", lab.diag());
    }
    let clean = finish(&mut lab);
    if failed.is_empty() {
        println!("vstopo: {}: all {passed} check(s) passed", plan.name);
    } else {
        println!(
            "vstopo: {}: {passed} check(s) passed, {} failed: {}",
            plan.name,
            failed.len(),
            failed.join("; ")
        );
    }
    if failed.is_empty() && clean {
        0
    } else {
        1
    }
}

/// `vstopo up FILE`.
pub fn up(file: &Path, verbose: bool) -> i32 {
    let plan = match load(file) {
        Ok(p) => p,
        Err(c) => return c,
    };
    let canon = canonical(file).display().to_string();
    if let Some(st) = State::all()
        .into_iter()
        .find(|s| s.file == canon && s.mode == Mode::Up)
    {
        eprintln!(
            "vstopo: {} is already up as run {}; run `vstopo down {}` first",
            file.display(),
            st.run,
            file.display()
        );
        return 1;
    }
    let lab = match build(&plan, file, Mode::Up, verbose) {
        Ok(l) => l,
        Err(c) => return c,
    };
    let w = lab.state.nodes.keys().map(String::len).max().unwrap_or(4);
    for (node, ns) in &lab.state.nodes {
        let extra = match lab.state.switches.get(node) {
            Some(r) => format!(
                "  vswitchd pid {}, socket {}",
                r.pid.map(|p| p.to_string()).unwrap_or_default(),
                r.sock.display()
            ),
            None => String::new(),
        };
        println!("  {node:<w$}  namespace {ns}{extra}");
    }
    println!(
        "vstopo: a command in a node:  vstopo exec {f} NODE -- CMD…   (in a switch's node, plain `vsctl` talks to it)\nvstopo: tear it down:        vstopo down {f}",
        f = file.display()
    );
    lab.detach();
    0
}

/// `vstopo down FILE`: every `up` run of the file, and every run of it whose owner died.
pub fn down(file: &Path) -> i32 {
    let canon = canonical(file).display().to_string();
    let runs: Vec<State> = State::all()
        .into_iter()
        .filter(|s| s.file == canon && (s.mode == Mode::Up || !s.owner_alive()))
        .collect();
    if runs.is_empty() {
        println!("vstopo: nothing of {} is up", file.display());
        return 0;
    }
    let mut code = 0;
    for st in runs {
        match lab::teardown(&st) {
            Ok(()) => println!(
                "vstopo: {}: run {} ({}) torn down: {} namespace(s) removed",
                st.topology,
                st.run,
                match st.mode {
                    Mode::Up => "up",
                    Mode::Test => "test whose runner died",
                },
                st.namespaces.len()
            ),
            Err(e) => {
                eprintln!("vstopo: {e:#}");
                code = 1;
            }
        }
    }
    code
}

/// `vstopo exec FILE NODE -- CMD…`.
pub fn exec(file: &Path, node: &str, argv: &[String]) -> i32 {
    let canon = canonical(file).display().to_string();
    let Some(st) = State::all()
        .into_iter()
        .find(|s| s.file == canon && s.mode == Mode::Up && s.complete)
    else {
        eprintln!(
            "vstopo: {} is not up (vstopo up {})",
            file.display(),
            file.display()
        );
        return 1;
    };
    let Some(ns) = st.nodes.get(node) else {
        let known: Vec<&str> = st.nodes.keys().map(String::as_str).collect();
        eprintln!(
            "vstopo: no node `{node}` in {} (nodes: {})",
            file.display(),
            known.join(", ")
        );
        return EXIT_USAGE;
    };
    let bins = match Bins::find() {
        Ok(b) => b,
        Err(e) => {
            eprintln!("vstopo: {e:#}");
            return 1;
        }
    };
    let status = std::process::Command::new("ip")
        .args(["netns", "exec", ns])
        .args(argv)
        .envs(lab::node_env(&st, node, &bins))
        .status();
    match status {
        Ok(s) => s.code().unwrap_or_else(|| {
            128 + std::os::unix::process::ExitStatusExt::signal(&s).unwrap_or(0)
        }),
        Err(e) => {
            eprintln!("vstopo: cannot run ip netns exec: {e}");
            1
        }
    }
}
