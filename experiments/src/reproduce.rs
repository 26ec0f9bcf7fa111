//! `ekvae reproduce`: the command line of [`ekvae_pipeline::reproduce`] (the grid of the
//! prediction-accuracy table: EKVAE × 20 seeds and RNN baseline × 10 seeds, each ×
//! {constrained, ELBO}) and the table's writers: `table.md`, `table.csv` (per arm), `runs.csv`
//! (per run), `prediction_error.png`, `training_curves.png`. With `--shard K/N` it runs one
//! slice of the grid and writes no table; run without `--shard` once every shard is done, it
//! finds every run finished and writes the table.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Result, bail};
use clap::Args;
use ekvae_model::train::{EpochRow, Progress, StepStats};
use ekvae_model::{Inference, Objective};
use ekvae_pipeline::eval::Evaluation;
use ekvae_pipeline::reproduce::{
    GridHooks, GridTable, Plan, RunSpec, Shard, run_grid, success_rule,
};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::figures::{Curve, TrainingRun, arm_label, color, error_vs_horizon, training_curves};
use crate::writers::{Align, Markdown};

/// Arguments of `ekvae reproduce`.
#[derive(Debug, Args)]
pub struct ReproduceArgs {
    /// Output folder (data, runs, table.md, table.csv, figures). Started again with the same
    /// command, it resumes.
    #[arg(long, default_value = "runs/reproduce")]
    pub out: PathBuf,
    /// A tiny grid (2 seeds, 2 epochs of 3 minibatches, 24 short episodes) that runs in
    /// seconds: for tests, not for conclusions.
    #[arg(long)]
    pub quick: bool,
    /// Seeds of the EKVAE configurations; the RNN ones get half as many (at least 1)
    /// [default: 20, so 10 for the RNN; 2 and 2 with --quick].
    #[arg(long)]
    pub seeds: Option<usize>,
    /// Epochs per run [default: 40; 2 with --quick].
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Run only shard K of N (runs i with i mod N = K − 1, in grid order) and write no table:
    /// for job arrays or several machines sharing --out. Run once more without --shard to
    /// write the table.
    #[arg(long, value_name = "K/N")]
    pub shard: Option<Shard>,
    /// Compute device: cpu, or cuda / wgpu when compiled with that feature.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Environment of the grid: `Pendulum-v1` (16×16, the model's defaults), or
    /// `CartPoleSwingUp-v0` (32×32, latent 8 and auxiliary 6, D0 0.025, 80 epochs, 10 EKVAE
    /// and 5 RNN seeds; a run succeeds when every target's R² ≥ 0.9 and the pole's fold
    /// diagnostic finds a ring), or `CartPoleSwingUpBigPole-v0` (the same with the pole drawn
    /// larger, D0 0.0255 and 160 epochs).
    #[arg(long, default_value = "Pendulum-v1")]
    pub env: String,
    /// No progress bar (the per-run summary lines are still printed).
    #[arg(long)]
    pub quiet: bool,
    /// Train nothing: write the table from the runs finished so far (a grid in progress; each
    /// arm counts only its finished runs, and the table says it is partial)
    #[arg(long, conflicts_with = "shard")]
    pub table_only: bool,
}

/// The grid's progress bar (one tick per epoch of any run) and the evaluation writer.
struct Hooks {
    bar: ProgressBar,
    prefix: String,
}

impl Progress for Hooks {
    fn start_epoch(&mut self, epoch: usize, epochs: usize, _steps: usize) {
        self.bar.set_message(format!("{} epoch {epoch}/{epochs}", self.prefix));
    }
    fn step(&mut self, _stats: &StepStats) {}
    fn end_epoch(&mut self, _row: &EpochRow) {
        self.bar.inc(1);
    }
}

impl GridHooks for Hooks {
    fn progress(&mut self, i: usize, total: usize, spec: &RunSpec) -> &mut dyn Progress {
        self.prefix = format!("run {}/{total} {}", i + 1, spec.name());
        self
    }
    fn evaluated(&mut self, dir: &Path, evaluation: &Evaluation) -> ekvae_pipeline::Result<()> {
        crate::eval::write_evaluation(dir, evaluation)
            .map_err(|e| ekvae_pipeline::Error::File(format!("{e:#}")))?;
        let mut line = match &evaluation.identification {
            Some(r) => {
                format!("   R²(cos θ, sin θ) = {:.4}   R²(θ̇) = {:.4}", r.r2_cos_sin, r.r2_theta_dot)
            }
            None => evaluation
                .features
                .iter()
                .fold(String::from("  "), |line, f| format!("{line} R²({}) = {:.4}", f.name, f.r2)),
        };
        if let Some(fold) = &evaluation.fold {
            line.push_str(&format!("   winding {}", fold.winding));
        }
        self.bar.suspend(|| eprintln!("{line}"));
        Ok(())
    }
    fn note(&mut self, message: &str) {
        self.bar.suspend(|| eprintln!("{message}"));
    }
    fn commit(&self) -> String {
        crate::writers::COMMIT.to_string()
    }
}

/// Run `ekvae reproduce`.
pub fn run(args: ReproduceArgs) -> Result<()> {
    let started = Instant::now();
    let plan = Plan::for_env(&args.env, args.quick, args.seeds, args.epochs)?;
    let device = ekvae_model::backend::device_from_name(&args.device)?;
    let out = &args.out;
    let runs = plan.runs();
    let mine =
        runs.iter().enumerate().filter(|(i, _)| args.shard.is_none_or(|s| s.contains(*i))).count();
    let bar = if args.quiet {
        ProgressBar::with_draw_target(
            Some((mine * plan.epochs) as u64),
            ProgressDrawTarget::hidden(),
        )
    } else {
        ProgressBar::new((mine * plan.epochs) as u64)
    };
    bar.set_style(
        ProgressStyle::with_template("grid [{bar:30}] {pos}/{len} epochs {elapsed}<{eta}  {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    eprintln!(
        "reproduce {}: {} runs (EKVAE × {} seeds, RNN × {} seeds, each × constrained/ELBO){}, {} epochs each, {} train / {} test episodes of {} steps at {}×{} → {}",
        plan.env,
        runs.len(),
        plan.seeds,
        plan.rnn_seeds,
        args.shard.map_or(String::new(), |s| format!("; shard {s}: {mine} of them")),
        plan.epochs,
        plan.train_episodes,
        plan.test_episodes,
        plan.steps,
        plan.size,
        plan.size,
        out.display()
    );
    if args.table_only {
        if !out.join("plan.json").is_file() {
            bail!(
                "{}: no grid here (no plan.json); --table-only tabulates a grid started with the same flags",
                out.display()
            );
        }
        ekvae_pipeline::reproduce::check_plan(out, &plan)?;
        let table = GridTable::read_finished(out, &plan)?;
        write_table(out, &table, started.elapsed().as_secs_f64())?;
        let (done, planned) = table.counts();
        eprintln!(
            "wrote {} and {} from the {done} of {planned} runs finished so far",
            out.join("table.md").display(),
            out.join("table.csv").display()
        );
        return Ok(());
    }
    let mut hooks = Hooks { bar: bar.clone(), prefix: String::new() };
    let done = run_grid(&plan, out, args.shard, &device, &mut hooks)?;
    bar.finish_and_clear();
    if done.failed > 0 {
        eprintln!(
            "{} of {} runs failed numerically; the table counts them per configuration",
            done.failed, done.runs
        );
    }
    if let Some(shard) = args.shard {
        eprintln!(
            "shard {shard}: {} runs done ({} now); run again without --shard once every shard is done to write the table",
            done.runs, done.ran
        );
        return Ok(());
    }
    let table = GridTable::read(out, &plan)?;
    write_table(out, &table, started.elapsed().as_secs_f64())?;
    eprintln!("wrote {} and {}", out.join("table.md").display(), out.join("table.csv").display());
    Ok(())
}

/// What is recorded about the software and machine in the table.
fn provenance() -> Vec<(String, String)> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map_or("unknown".to_string(), |s| s.trim().to_string());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|kb| kb.parse::<f64>().ok()))
        })
        .map_or("unknown".to_string(), |kb| format!("{:.1} GiB", kb / 1024.0 / 1024.0));
    let os = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("PRETTY_NAME="))
                .map(|l| l.trim_start_matches("PRETTY_NAME=").trim_matches('"').to_string())
        })
        .unwrap_or_else(|| std::env::consts::OS.to_string());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    vec![
        ("command".into(), format!("`{}`", std::env::args().collect::<Vec<_>>().join(" "))),
        (
            "version".into(),
            format!(
                "ekvae {}, built from commit {}",
                env!("CARGO_PKG_VERSION"),
                crate::writers::COMMIT
            ),
        ),
        (
            "machine".into(),
            format!(
                "{cpu}, {cores} logical CPUs, {} rayon threads, {mem}, {os}",
                rayon::current_num_threads()
            ),
        ),
    ]
}

fn fmt_mean_std((m, s): (f64, f64), digits: usize) -> String {
    if s.is_nan() { format!("{m:.digits$}") } else { format!("{m:.digits$} ± {s:.digits$}") }
}

/// `mean ± std (median)`, or a dash without values.
fn fmt_summary((m, s, med): (f64, f64, f64), digits: usize) -> String {
    if m.is_nan() {
        return "—".into();
    }
    format!("{} ({med:.digits$})", fmt_mean_std((m, s), digits))
}

/// Writes `table.md`, `table.csv`, `runs.csv` and the grid's figures into `out`.
pub fn write_table(out: &Path, t: &GridTable, wall_seconds: f64) -> Result<()> {
    let plan = &t.plan;
    let cols = &t.metrics;

    // runs.csv: one row per finished run.
    let mut header: Vec<String> =
        ["model", "objective", "seed", "success"].iter().map(|s| s.to_string()).collect();
    header.extend(cols.iter().map(|m| m.key.clone()));
    let mut rows = vec![header];
    for a in &t.arms {
        for r in &a.runs {
            let mut row = vec![
                a.model.to_string(),
                a.objective.to_string(),
                r.spec.seed.to_string(),
                u8::from(r.success).to_string(),
            ];
            row.extend(r.values.iter().map(f64::to_string));
            rows.push(row);
        }
    }
    write_records(&out.join("runs.csv"), &rows)?;

    // table.csv: one row per arm.
    let mut header: Vec<String> = [
        "model",
        "objective",
        "seeds",
        "failed",
        "successes",
        "success_rate",
        "success_wilson_lo",
        "success_wilson_hi",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for m in cols {
        for stat in ["mean", "std", "median", "ok_mean", "ok_std", "ok_median"] {
            header.push(format!("{}_{stat}", m.key));
        }
    }
    let mut rows = vec![header];
    for a in &t.arms {
        let (rate, lo, hi) = a.success_rate();
        let mut row = vec![
            a.model.to_string(),
            a.objective.to_string(),
            (a.seeds - a.failed).to_string(),
            a.failed.to_string(),
            a.successes().to_string(),
            rate.to_string(),
            lo.to_string(),
            hi.to_string(),
        ];
        for i in 0..cols.len() {
            for only_ok in [false, true] {
                let (m, s, med) = a.summary(i, only_ok);
                row.extend([m.to_string(), s.to_string(), med.to_string()]);
            }
        }
        rows.push(row);
    }
    write_records(&out.join("table.csv"), &rows)?;

    // Figures.
    let mut pixel = Vec::new();
    let mut angle = Vec::new();
    let mut histories = Vec::new();
    for (ci, a) in t.arms.iter().enumerate() {
        let label = arm_label(a.model, a.objective);
        let band = |(m, s): &(Vec<f64>, Vec<f64>)| Curve {
            label: label.clone(),
            ys: m.clone(),
            band: Some(s.clone()),
            color: color(ci),
            thin: false,
        };
        pixel.push(band(&a.pixel_curve));
        angle.push(band(&a.angle_curve));
        // D0 and the image size of the arm's runs (the seed does not change them).
        let spec = RunSpec { model: a.model, objective: a.objective, seed: 0 };
        let config = ekvae_pipeline::reproduce::fresh_config(plan, &spec, Path::new(""));
        histories.push(TrainingRun::new(label.clone(), a.history.clone(), &config));
    }
    pixel.push(Curve {
        label: "last conditioned frame held".into(),
        ys: t.last_frame_curve.clone(),
        band: None,
        color: plotters::style::RGBColor(120, 120, 120),
        thin: true,
    });
    let note = "shaded: ± 1 standard deviation over seeds; lines: mean";
    error_vs_horizon(&out.join("prediction_error.png"), &pixel, &angle, Some(note))?;
    training_curves(&out.join("training_curves.png"), &histories)?;

    // table.md.
    let mut md = Markdown::new();
    md.heading(1, "Prediction-accuracy table (`ekvae reproduce`)");
    let mut about: Vec<String> =
        provenance().into_iter().map(|(k, v)| format!("{k}: {v}")).collect();
    about.push(format!(
        "grid: {}; EKVAE × {} seeds (latent {}, auxiliary {}, D0 {} nats/pixel) and RNN baseline × {} seeds (its D0 {} nats/pixel, learning rate {}), each × {{constrained, ELBO}}; every run {} epochs of {} minibatches of {} × {}-step windows; data {} train / {} test episodes × {} steps at {}×{} (collect seeds 0 / 1, the environment's default policy)",
        plan.env,
        plan.seeds,
        plan.state_dim,
        plan.aux_dim,
        plan.d0,
        plan.rnn_seeds,
        plan.rnn_d0,
        plan.rnn_learning_rate,
        plan.epochs,
        if plan.steps_per_epoch == 0 { "one pass".to_string() } else { plan.steps_per_epoch.to_string() },
        plan.batch_size,
        plan.seq_len,
        plan.train_episodes,
        plan.test_episodes,
        plan.steps,
        plan.size,
        plan.size
    ));
    about.push(format!(
        "prediction: condition on {} frames, roll the transition mean forward under the recorded actions; errors at h steps after the last conditioned frame, mean over {} test windows",
        plan.condition, t.windows
    ));
    about.push(format!(
        "a run is a success when {}; runs that failed numerically count as unsuccessful",
        success_rule(cols)
    ));
    about.push(format!(
        "training time: {:.1} min summed over the runs (see the train time column); wall time of the invocation that wrote this table: {:.1} min (finished runs are not retrained when resumed)",
        t.total_train_seconds() / 60.0,
        wall_seconds / 60.0
    ));
    about.push("values: mean ± sample standard deviation (median) over runs".into());
    if t.partial {
        let (done, planned) = t.counts();
        about.push(format!(
            "**partial**: {done} of the {planned} runs of the grid had finished when this table was written (`ekvae reproduce --table-only`); each arm counts only its finished runs (the successes column shows finished of planned seeds)"
        ));
    }
    md.bullets(&about);
    md.heading(2, "Successful runs");
    let rows: Vec<Vec<String>> = t
        .arms
        .iter()
        .map(|a| {
            let k = a.successes();
            let (rate, lo, hi) = a.success_rate();
            let failed =
                if a.failed > 0 { format!(" ({} failed)", a.failed) } else { String::new() };
            vec![
                a.model.to_string(),
                a.objective.to_string(),
                if t.partial {
                    format!("{k}/{}{failed} (of {} planned)", a.seeds, a.planned)
                } else {
                    format!("{k}/{}{failed}", a.seeds)
                },
                format!("{:.0} % ({:.0}–{:.0} %)", 100.0 * rate, 100.0 * lo, 100.0 * hi),
            ]
        })
        .collect();
    md.table(
        &[
            ("model", Align::Left),
            ("objective", Align::Left),
            ("successes", Align::Right),
            ("rate (95 % Wilson interval)", Align::Left),
        ],
        &rows,
    );
    for model in [Inference::Kalman, Inference::Rnn] {
        let (c, e) = (t.arm(model, Objective::Constrained), t.arm(model, Objective::Elbo));
        md.paragraph(&format!(
            "Fisher exact test, {model}, constrained against ELBO: {}/{} against {}/{}, two-sided p = {:.3}",
            c.successes(),
            c.seeds,
            e.successes(),
            e.seeds,
            t.fisher_p(model)
        ));
    }
    let split = cols.iter().position(|c| c.key.starts_with("pixel_mse_h")).unwrap_or(cols.len());
    for (title, range, only_ok) in [
        ("Identification and fit, all runs", 0..split, false),
        ("Open-loop prediction, all runs", split..cols.len(), false),
        ("Identification and fit, successful runs only", 0..split, true),
        ("Open-loop prediction, successful runs only", split..cols.len(), true),
    ] {
        let mut header = vec![
            ("model".to_string(), Align::Left),
            ("objective".into(), Align::Left),
            ("runs".into(), Align::Right),
        ];
        header.extend(cols[range.clone()].iter().map(|m| (m.header.clone(), Align::Right)));
        let mut rows: Vec<Vec<String>> = t
            .arms
            .iter()
            .map(|a| {
                let n = if only_ok { a.successes() } else { a.runs.len() };
                let mut row = vec![a.model.to_string(), a.objective.to_string(), n.to_string()];
                row.extend(
                    range.clone().map(|i| fmt_summary(a.summary(i, only_ok), cols[i].digits)),
                );
                row
            })
            .collect();
        if range.start == split && !only_ok {
            let mut row = vec!["last frame held".to_string(), "—".into(), "—".into()];
            row.extend(t.last_frame.iter().map(|v| format!("{v:.5}")));
            row.extend(std::iter::repeat_n("—".to_string(), plan.horizons.len()));
            rows.push(row);
        }
        md.heading(2, title).table(&header, &rows);
    }
    md.paragraph("Figures: `prediction_error.png` (mean ± std band over seeds), `training_curves.png` (mean over seeds); per run: `runs/*/prediction_strips.png`, `latent_space.png`, `training_curves.png`.");
    ekvae_model::rundir::write_atomic(&out.join("table.md"), md.finish().as_bytes())?;
    Ok(())
}

/// Writes string records as CSV (the first is the header).
fn write_records(path: &Path, rows: &[Vec<String>]) -> Result<()> {
    let mut w = csv::Writer::from_writer(Vec::new());
    for r in rows {
        w.write_record(r)?;
    }
    let bytes = w.into_inner().map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    ekvae_model::rundir::write_atomic(path, &bytes)?;
    Ok(())
}
