//! Tests that run the `ekvae` command line.

mod envs;
mod export;
mod files;
mod model;
mod mpc;
mod pixmpc;
mod reproduce;

use std::process::{Command, Output};

/// The `ekvae` binary under test, as a command to add arguments to.
pub fn ekvae_cmd() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ekvae"))
}

/// Runs `ekvae args…` to completion.
pub fn ekvae(args: &[&str]) -> Output {
    ekvae_cmd().args(args).output().expect("run ekvae")
}

/// A command's standard error as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A failed command: non-zero exit, one `error:` line naming `needle`, no panic.
pub fn assert_clean_failure(o: &Output, needle: &str) {
    let err = stderr(o);
    assert!(!o.status.success(), "expected failure, got success; stderr: {err}");
    assert!(!err.contains("panicked"), "panic: {err}");
    let last = err.lines().last().unwrap_or_default();
    assert!(last.starts_with("error:"), "no error line: {err}");
    assert!(last.contains(needle), "error line does not mention '{needle}': {last}");
}

/// The rows of an `ekvae mpc` `steps.csv`, after checking its header.
pub fn read_steps_csv(path: &std::path::Path) -> Vec<Vec<f64>> {
    let csv = std::fs::read_to_string(path).unwrap();
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("episode,t,theta,theta_dot,u,reward,plan_ms,iterations"));
    lines.map(|l| l.split(',').map(|v| v.parse().unwrap()).collect()).collect()
}
