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

/// Runs `ekvae mpc ARGS --episodes 1 --select-horizon 3,8 --select-seed 50 --select-episodes 1`
/// into `out`
/// and checks the selection against plain runs of each candidate (`ekvae mpc ARGS --horizon H
/// --seed 50 --episodes 1`): `selection.csv` holds each candidate's success rate and mean
/// return as its own run gives them, marks the best by the rule (success, then return, then the
/// shorter horizon) and no other, and the evaluation planned with the chosen horizon.
pub fn check_horizon_selection(args: &[&str], out: &std::path::Path) {
    let json = |p: &std::path::Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
    };
    let mut sel = args.to_vec();
    sel.extend(["--episodes", "1", "--select-horizon", "3,8", "--select-seed", "50"]);
    sel.extend(["--select-episodes", "1"]);
    sel.extend(["--quiet", "--out", out.to_str().unwrap()]);
    let o = ekvae(&sel);
    assert!(o.status.success(), "mpc --select-horizon failed: {}", stderr(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("selected horizon"), "{stdout}");
    let csv = std::fs::read_to_string(out.join("selection.csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("horizon,seed,episodes,success_rate,mean_return,std_return,chosen")
    );
    let rows: Vec<Vec<String>> = lines.map(|l| l.split(',').map(String::from).collect()).collect();
    assert_eq!(rows.len(), 2, "{csv}");
    let mut scored = Vec::new();
    for (row, h) in rows.iter().zip(["3", "8"]) {
        assert_eq!((row[0].as_str(), row[1].as_str(), row[2].as_str()), (h, "50", "1"));
        let single = out.with_extension(format!("h{h}"));
        let mut plain = args.to_vec();
        plain.extend(["--horizon", h, "--seed", "50", "--episodes", "1", "--quiet", "--out"]);
        plain.push(single.to_str().unwrap());
        let o = ekvae(&plain);
        assert!(o.status.success(), "mpc --horizon {h} failed: {}", stderr(&o));
        let s = json(&single.join("summary.json"));
        let (rate, ret): (f64, f64) = (row[3].parse().unwrap(), row[4].parse().unwrap());
        assert_eq!(rate, s["success_rate"].as_f64().unwrap(), "horizon {h}");
        assert_eq!(ret, s["mean_return"].as_f64().unwrap(), "horizon {h}");
        scored.push((rate, ret, h.parse::<usize>().unwrap(), row[6] == "true"));
    }
    let best = if (scored[1].0, scored[1].1) > (scored[0].0, scored[0].1) { 1 } else { 0 };
    assert_eq!(
        scored.iter().map(|s| s.3).collect::<Vec<_>>(),
        (0..2).map(|i| i == best).collect::<Vec<_>>(),
        "{csv}"
    );
    let summary = json(&out.join("summary.json"));
    let horizon = summary.pointer("/mpc/horizon").or(summary.pointer("/settings/mpc/horizon"));
    assert_eq!(horizon.and_then(|h| h.as_u64()), Some(scored[best].2 as u64), "{summary}");
}
