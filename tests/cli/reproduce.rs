//! `ekvae reproduce --quick` end to end: the whole grid, the tables, resuming after an
//! interruption (same numbers), and a refused change of grid.

use super::{assert_clean_failure, ekvae, stderr};
use std::path::Path;

fn reproduce(out: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["reproduce", "--quick", "--quiet", "--out", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    ekvae(&args)
}

/// The table rows of table.csv as (model, objective, seeds, values by column name).
#[allow(clippy::type_complexity)]
fn table_rows(out: &Path) -> Vec<(String, String, usize, Vec<(String, f64)>)> {
    let text = std::fs::read_to_string(out.join("table.csv")).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(&header[..4], ["model", "objective", "seeds", "failed"]);
    for key in [
        "successes",
        "success_wilson_lo",
        "r2_cos_sin_mean",
        "r2_theta_dot_std",
        "winding_median",
        "pixel_mse_h40_mean",
        "angle_err_deg_h5_std",
        "r2_theta_dot_ok_median",
    ] {
        assert!(header.contains(&key), "{key} not in {header:?}");
    }
    lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            assert_eq!(f.len(), header.len(), "{l}");
            assert_eq!(f[3], "0", "no run of the quick grid fails: {l}");
            (
                f[0].to_string(),
                f[1].to_string(),
                f[2].parse().unwrap(),
                header[4..]
                    .iter()
                    .zip(&f[4..])
                    .map(|(h, v)| (h.to_string(), v.parse().unwrap()))
                    .collect(),
            )
        })
        .collect()
}

#[test]
fn quick_grid_writes_the_table_and_resumes_where_it_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("grid");
    let o = reproduce(&out, &[]);
    assert!(o.status.success(), "reproduce failed: {}", stderr(&o));

    let rows = table_rows(&out);
    let configs: Vec<(&str, &str)> = rows.iter().map(|r| (r.0.as_str(), r.1.as_str())).collect();
    assert_eq!(
        configs,
        [("ekvae", "constrained"), ("ekvae", "elbo"), ("rnn", "constrained"), ("rnn", "elbo")]
    );
    for (model, objective, seeds, values) in &rows {
        assert_eq!(*seeds, 2, "{model} {objective}");
        // Over all runs every statistic is finite (the success-only ones are NaN when no tiny
        // run succeeds, which is the expected outcome of 2 epochs).
        assert!(
            values.iter().filter(|(h, _)| !h.contains("_ok_")).all(|(_, v)| v.is_finite()),
            "{model} {objective}: {values:?}"
        );
    }
    // The runs really are different models: the RNN baseline has its GRU in the checkpoint.
    let rnn_cfg = std::fs::read_to_string(out.join("runs/rnn-elbo-s1/config.toml")).unwrap();
    assert!(rnn_cfg.contains("inference = \"rnn\""), "{rnn_cfg}");
    assert!(rnn_cfg.contains("objective = \"elbo\""), "{rnn_cfg}");
    let md = std::fs::read_to_string(out.join("table.md")).unwrap();
    for needle in [
        "- command: `",
        "reproduce --quick",
        "- version: ekvae ",
        "- machine: ",
        "| ekvae | constrained |",
        "| rnn | elbo |",
        "pixel MSE h=40",
        "±",
        "## Successful runs",
        "95 % Wilson interval",
        "Fisher exact test, ekvae, constrained against ELBO",
        "successful runs only",
    ] {
        assert!(md.contains(needle), "table.md lacks {needle:?}:\n{md}");
    }
    let runs_csv = std::fs::read_to_string(out.join("runs.csv")).unwrap();
    assert_eq!(runs_csv.lines().count(), 1 + 8);
    assert!(runs_csv.starts_with("model,objective,seed,success,"), "{runs_csv}");
    for fig in [
        "prediction_error.png",
        "training_curves.png",
        "runs/ekvae-constrained-s0/prediction_strips.png",
    ] {
        assert_eq!(&std::fs::read(out.join(fig)).unwrap()[..4], b"\x89PNG", "{fig}");
    }

    // "Interrupt" one run: drop its evaluation and go back to an empty folder for another.
    // The rerun retrains only those two, from the same seeds, and gets the same numbers.
    let metrics_before = std::fs::read(out.join("runs/ekvae-elbo-s0/metrics.csv")).unwrap();
    std::fs::remove_file(out.join("runs/rnn-constrained-s1/eval.json")).unwrap();
    std::fs::remove_dir_all(out.join("runs/ekvae-constrained-s1")).unwrap();
    std::fs::create_dir_all(out.join("runs/ekvae-constrained-s1")).unwrap();
    let o = reproduce(&out, &[]);
    assert!(o.status.success(), "resume failed: {}", stderr(&o));
    let log = stderr(&o);
    assert!(log.contains("== ekvae-constrained-s1"), "{log}");
    assert!(log.contains("== rnn-constrained-s1"), "{log}");
    assert!(!log.contains("== ekvae-elbo-s0"), "a finished run was evaluated again: {log}");
    assert_eq!(std::fs::read(out.join("runs/ekvae-elbo-s0/metrics.csv")).unwrap(), metrics_before);
    let again = table_rows(&out);
    for (a, b) in rows.iter().zip(&again) {
        // Training time differs between runs; every other column is reproduced exactly.
        for ((name, x), (_, y)) in a.3.iter().zip(&b.3) {
            if !name.starts_with("train_seconds") {
                assert!(x == y || (x.is_nan() && y.is_nan()), "{} {} {name}: {x} vs {y}", a.0, a.1);
            }
        }
    }

    // The same grid in three shards (as a job array would run it), then one run without
    // --shard that only tabulates: the shards' union is the whole grid, with the same numbers.
    let sharded = dir.path().join("sharded");
    let mut trained = Vec::new();
    for k in 1..=3 {
        let o = reproduce(&sharded, &["--shard", &format!("{k}/3")]);
        assert!(o.status.success(), "shard {k}/3 failed: {}", stderr(&o));
        let log = stderr(&o);
        assert!(!sharded.join("table.md").exists(), "a shard wrote the table");
        trained.extend(
            log.lines()
                .filter_map(|l| l.strip_prefix("== "))
                .map(|l| l.split_whitespace().next().unwrap().to_string()),
        );
        if k == 1 {
            // A grid in progress tabulated as it stands: shard 1/3 holds runs 0, 3 and 6 of 8.
            let o = reproduce(&sharded, &["--table-only"]);
            assert!(o.status.success(), "--table-only failed: {}", stderr(&o));
            assert!(stderr(&o).contains("from the 3 of 8 runs"), "{}", stderr(&o));
            assert!(!stderr(&o).contains("== "), "--table-only trained: {}", stderr(&o));
            let md = std::fs::read_to_string(sharded.join("table.md")).unwrap();
            assert!(md.contains("**partial**: 3 of the 8 runs"), "{md}");
            let seeds: usize = table_rows(&sharded).iter().map(|r| r.2).sum();
            assert_eq!(seeds, 3);
            for f in
                ["table.md", "table.csv", "runs.csv", "prediction_error.png", "training_curves.png"]
            {
                std::fs::remove_file(sharded.join(f)).unwrap();
            }
        }
    }
    let o = reproduce(&sharded, &["--table-only", "--shard", "1/3"]);
    assert!(!o.status.success(), "--table-only with --shard accepted");
    let o = reproduce(&dir.path().join("nothing"), &["--table-only"]);
    assert_clean_failure(&o, "no grid here");
    trained.sort();
    let mut all: Vec<String> = std::fs::read_dir(out.join("runs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    all.sort();
    assert_eq!(trained, all, "every run trained by exactly one shard");
    let o = reproduce(&sharded, &[]);
    assert!(o.status.success(), "tabulating the shards failed: {}", stderr(&o));
    assert!(!stderr(&o).contains("== "), "the final run retrained: {}", stderr(&o));
    for (a, b) in rows.iter().zip(&table_rows(&sharded)) {
        for ((name, x), (_, y)) in a.3.iter().zip(&b.3) {
            if !name.starts_with("train_seconds") {
                assert!(x == y || (x.is_nan() && y.is_nan()), "{} {} {name}: {x} vs {y}", a.0, a.1);
            }
        }
    }
    for bad in ["0/3", "4/3", "1/0", "a/b", "1"] {
        let o = reproduce(&sharded, &["--shard", bad]);
        assert!(!o.status.success(), "--shard {bad} accepted");
        assert!(stderr(&o).contains("expected K/N"), "--shard {bad}: {}", stderr(&o));
    }

    // Another grid in the same folder is refused without touching it.
    let o = reproduce(&out, &["--seeds", "3"]);
    assert_clean_failure(&o, "was started with another grid");
}

#[test]
fn quick_grid_on_the_cartpole_scores_each_target_and_refuses_unknown_ids() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("grid");
    let o = reproduce(&out, &["--env", "CartPoleSwingUp-v0"]);
    assert!(o.status.success(), "reproduce failed: {}", stderr(&o));
    let log = stderr(&o);
    assert!(log.contains("reproduce CartPoleSwingUp-v0: 8 runs"), "{log}");
    assert!(log.contains("R²(sin theta) = "), "{log}");
    // The cart-pole's recipe is in every run's config and in plan.json.
    let cfg = std::fs::read_to_string(out.join("runs/ekvae-constrained-s1/config.toml")).unwrap();
    for needle in ["env = \"CartPoleSwingUp-v0\"", "state_dim = 8", "aux_dim = 6", "d0 = 0.025"] {
        assert!(cfg.contains(needle), "{needle} not in {cfg}");
    }
    let data = std::fs::read_to_string(out.join("plan.json")).unwrap();
    assert!(data.contains("\"env\": \"CartPoleSwingUp-v0\""), "{data}");
    // One R² column per target, each a number in every run's row.
    let runs = std::fs::read_to_string(out.join("runs.csv")).unwrap();
    let header: Vec<&str> = runs.lines().next().unwrap().split(',').collect();
    for target in ["x", "cos theta", "sin theta", "x_dot", "theta_dot"] {
        let col = header.iter().position(|h| *h == format!("r2/{target}")).unwrap_or_else(|| {
            panic!("no r2/{target} column in {header:?}");
        });
        for line in runs.lines().skip(1) {
            let v: f64 = line.split(',').nth(col).unwrap().parse().unwrap();
            assert!(v.is_finite() && v <= 1.0, "{target}: {line}");
        }
    }
    assert!(!header.contains(&"r2_cos_sin"), "{header:?}");
    let md = std::fs::read_to_string(out.join("table.md")).unwrap();
    assert!(md.contains("R² sin theta ≥ 0.9"), "{md}");
    assert!(
        md.contains("grid: CartPoleSwingUp-v0; EKVAE × 2 seeds (latent 8, auxiliary 6"),
        "{md}"
    );

    // Pixel MPC on one of its models with the cost fitted to the training data's rewards
    // (found through the run's config.toml); the summary says which cost it planned on.
    let run = out.join("runs/ekvae-elbo-s1");
    let reward_mpc = |out: &Path, extra: &[&str]| {
        let mut args = vec!["mpc", "--env", "CartPoleSwingUp-v0", "--cost", "reward"];
        args.extend(["--run", run.to_str().unwrap(), "--out", out.to_str().unwrap()]);
        args.extend(["--episodes", "1", "--steps", "15", "--gif-size", "32", "--quiet"]);
        args.extend(extra);
        ekvae(&args)
    };
    let mpc_out = dir.path().join("mpc");
    let o = reward_mpc(&mpc_out, &[]);
    assert!(o.status.success(), "mpc --cost reward failed: {}", stderr(&o));
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(mpc_out.join("summary.json")).unwrap())
            .unwrap();
    let cost = &summary["controller"]["cost"];
    assert_eq!(cost["kind"], "learned reward", "{summary}");
    assert!(cost["fit"]["r2_held_out"].as_f64().is_some_and(f64::is_finite), "{cost}");
    // Rewards of another environment's data are refused.
    let pendulum_data = dir.path().join("p.npz");
    let data = pendulum_data.to_str().unwrap();
    let o = ekvae(&[
        "collect",
        "--episodes",
        "2",
        "--steps",
        "10",
        "--size",
        "16",
        "--quiet",
        "--out",
        data,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = reward_mpc(&dir.path().join("mpc2"), &["--reward-data", data]);
    assert_clean_failure(&o, "are of Pendulum-v1");

    // The pendulum's grid in the cart-pole's folder is another grid, refused untouched.
    let o = reproduce(&out, &[]);
    assert_clean_failure(&o, "was started with another grid");
    // An environment without a grid recipe: one error naming the ones with a recipe.
    let other = dir.path().join("other");
    let o = reproduce(&other, &["--env", "Acrobot-v1"]);
    assert_clean_failure(&o, "no recipe for environment 'Acrobot-v1'");
    assert!(
        stderr(&o).contains(
            "Pendulum-v1, CartPoleSwingUp-v0, CartPoleSwingUpBigPole-v0 and CartPoleSwingUpBigPoleGhost-v0"
        ),
        "{}",
        stderr(&o)
    );
    assert!(!other.exists(), "a refused grid wrote {}", other.display());
}
