//! `ekvae reproduce --quick` end to end: the whole grid, the tables, resuming after an
//! interruption (same numbers), and a refused change of grid.

use super::{assert_clean_failure, ekvae, stderr};
use std::path::Path;

fn reproduce(out: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["reproduce", "--quick", "--quiet", "--out", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    ekvae(&args)
}

/// The table rows of table.csv as (model, objective, seeds, values).
fn table_rows(out: &Path) -> Vec<(String, String, usize, Vec<f64>)> {
    let text = std::fs::read_to_string(out.join("table.csv")).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(&header[..4], ["model", "objective", "seeds", "failed"]);
    for key in ["r2_cos_sin_mean", "r2_theta_dot_std", "pixel_mse_h40_mean", "angle_err_deg_h5_std"]
    {
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
                f[4..].iter().map(|v| v.parse().unwrap()).collect(),
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
        assert!(values.iter().all(|v| v.is_finite()), "{model} {objective}: {values:?}");
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
    ] {
        assert!(md.contains(needle), "table.md lacks {needle:?}:\n{md}");
    }
    let runs_csv = std::fs::read_to_string(out.join("runs.csv")).unwrap();
    assert_eq!(runs_csv.lines().count(), 1 + 8);
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
        let cols: Vec<usize> = (0..a.3.len()).filter(|&i| !(8..10).contains(&i)).collect();
        for i in cols {
            assert_eq!(a.3[i], b.3[i], "{} {} column {i}", a.0, a.1);
        }
    }

    // Another grid in the same folder is refused without touching it.
    let o = reproduce(&out, &["--seeds", "3"]);
    assert_clean_failure(&o, "was started with another grid");
}
