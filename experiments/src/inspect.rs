//! `ekvae inspect`: what a dataset holds, and a contact sheet of its frames as PNG.

use anyhow::{Context, Result};
use clap::Args;
use ekvae_envs::Dataset;
use ekvae_envs::pendulum::angle_normalize;
use std::path::{Path, PathBuf};

/// Describe a dataset file: shapes, metadata, θ and θ̇ ranges, action and reward statistics;
/// write a contact sheet of sample frames as PNG.
///
/// The sheet has one row per sampled episode (evenly spread over the file) and one column per
/// sampled time step (evenly spread over the episode, first and last included).
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The dataset (.npz) written by `ekvae collect`.
    pub file: PathBuf,
    /// Where to write the contact sheet [default: next to FILE, named <stem>-sheet.png].
    #[arg(long)]
    pub sheet: Option<PathBuf>,
    /// Episodes (rows) on the contact sheet.
    #[arg(long, default_value_t = 8)]
    pub rows: usize,
    /// Time steps (columns) on the contact sheet.
    #[arg(long, default_value_t = 10)]
    pub cols: usize,
}

/// Summary statistics of a list of numbers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stats {
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
    /// Mean.
    pub mean: f64,
    /// Standard deviation (population).
    pub std: f64,
}

impl Stats {
    /// Statistics of `xs` (all NaN if empty).
    pub fn of(xs: impl Iterator<Item = f64>) -> Stats {
        let (mut n, mut sum, mut sum2) = (0usize, 0.0, 0.0);
        let (mut min, mut max) = (f64::INFINITY, f64::NEG_INFINITY);
        for x in xs {
            n += 1;
            sum += x;
            sum2 += x * x;
            min = min.min(x);
            max = max.max(x);
        }
        if n == 0 {
            return Stats { min: f64::NAN, max: f64::NAN, mean: f64::NAN, std: f64::NAN };
        }
        let mean = sum / n as f64;
        Stats { min, max, mean, std: (sum2 / n as f64 - mean * mean).max(0.0).sqrt() }
    }
}

impl std::fmt::Display for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "min {:+.4}  max {:+.4}  mean {:+.4}  std {:.4}",
            self.min, self.max, self.mean, self.std
        )
    }
}

/// Run `ekvae inspect`.
pub fn run(args: InspectArgs) -> Result<()> {
    if args.rows == 0 || args.cols == 0 {
        anyhow::bail!(
            "invalid --rows/--cols: the contact sheet needs at least one row and one column"
        );
    }
    let sheet = args.sheet.clone().unwrap_or_else(|| default_sheet_path(&args.file));
    // The sheet never replaces the dataset (or any non-regular file), checked before the work.
    ekvae_envs::fsio::check_output(&sheet)?;
    ekvae_envs::fsio::check_distinct(&sheet, &[&args.file])?;
    let d = Dataset::load(&args.file)?;
    let m = &d.meta;
    let (n, t, s) = (d.episodes, d.steps, d.size);
    say!("file        {}", args.file.display());
    say!("format      version {} ({})", m.format_version, m.generator);
    let env = if m.env.is_empty() { "(none: recorded data)" } else { m.env.as_str() };
    say!("env         {env}  {}", m.params);
    say!("collection  policy {}  seed {}  first episode {}", m.policy, m.seed, m.first_episode);
    let (c, a, k) = (d.channels, d.action_dim, d.state_dim);
    if c == 1 {
        say!("images      u8  [N, T, H, W] = [{n}, {t}, {s}, {s}]");
    } else {
        say!("images      u8  [N, T, H, W, C] = [{n}, {t}, {s}, {s}, {c}]");
    }
    say!("actions     f32 [N, T, A]    = [{n}, {t}, {a}]");
    if d.has_states() {
        say!("states      f64 [N, T, D]    = [{n}, {t}, {k}]  ({})", state_names(&d).join(", "));
    } else {
        say!("states      none (no true states: identification is not possible on this file)");
    }
    if d.rewards.is_empty() {
        say!("rewards     none");
    } else {
        say!("rewards     f32 [N, T]       = [{n}, {t}]");
    }
    for (i, name) in state_names(&d).iter().enumerate() {
        let v = Stats::of(d.states.iter().skip(i).step_by(k).copied());
        say!("{name:<11} {v}");
        if name == "theta" {
            let w = Stats::of(d.states.iter().skip(i).step_by(k).map(|&x| angle_normalize(x)));
            say!("{:<11} {w}   (angle_normalize, in [-π, π))", "  wrapped");
        }
    }
    for i in 0..a {
        let v = Stats::of(d.actions.iter().skip(i).step_by(a).map(|&x| x as f64));
        say!("{:<11} {v}", if a == 1 { "actions".to_string() } else { format!("action {i}") });
    }
    if let Some(max) = m.params.get("max_torque").and_then(|v| v.as_f64()) {
        let clipped = d.actions.iter().filter(|&&u| (u as f64).abs() >= max).count();
        say!(
            "            at or beyond ±max_torque: {:.2} %",
            100.0 * clipped as f64 / d.actions.len() as f64
        );
    }
    if !d.rewards.is_empty() {
        say!("rewards     {}", Stats::of(d.rewards.iter().map(|&x| x as f64)));
    }
    let lit = d.images.iter().filter(|&&v| v > 0).count() as f64 / d.images.len() as f64;
    let mean_px = d.images.iter().map(|&v| v as f64).sum::<f64>() / d.images.len() as f64;
    say!("pixels      mean {mean_px:.2} / 255, {:.2} % non-zero", 100.0 * lit);

    let (rows, cols) = contact_sheet(&d, &sheet, args.rows, args.cols)?;
    say!("sheet       {}  (rows: episodes {rows:?}; columns: steps {cols:?})", sheet.display());
    Ok(())
}

/// The state coordinates' names: the metadata's, or `s0, s1, …`.
fn state_names(d: &Dataset) -> Vec<String> {
    if d.meta.state_names.len() == d.state_dim {
        d.meta.state_names.clone()
    } else {
        (0..d.state_dim).map(|i| format!("s{i}")).collect()
    }
}

/// Frame `t` of episode `ep` as grayscale bytes (the mean of the channels).
pub fn gray_frame(d: &Dataset, ep: usize, t: usize) -> Vec<u8> {
    let f = d.frame(ep, t);
    if d.channels == 1 {
        return f.to_vec();
    }
    f.chunks_exact(d.channels)
        .map(|px| (px.iter().map(|&v| u32::from(v)).sum::<u32>() / d.channels as u32) as u8)
        .collect()
}

/// `<folder>/<stem>-sheet.png` next to the dataset.
pub fn default_sheet_path(file: &Path) -> PathBuf {
    let stem = file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "dataset".into());
    file.with_file_name(format!("{stem}-sheet.png"))
}

/// `k` indices spread evenly over `0..n`, first and last included (fewer if `n < k`).
fn spread(n: usize, k: usize) -> Vec<usize> {
    let k = k.min(n);
    if k == 1 {
        return vec![0];
    }
    (0..k).map(|i| i * (n - 1) / (k - 1)).collect()
}

/// Write a grid of frames (rows = episodes, columns = time steps) as a PNG, frames scaled up
/// (nearest neighbour) to at least 80 pixels, each row labelled with its episode and each
/// column with its step. Returns the episodes and steps shown.
pub fn contact_sheet(
    d: &Dataset,
    path: &Path,
    rows: usize,
    cols: usize,
) -> Result<(Vec<usize>, Vec<usize>)> {
    use crate::figures::{FrameGrid, GridRow, frame_grid_png};
    let eps = spread(d.episodes, rows);
    let steps = spread(d.steps, cols);
    let grid = FrameGrid {
        title: format!(
            "{} of {} episodes (rows) × {} of {} steps (columns), {} × {} pixels",
            eps.len(),
            d.episodes,
            steps.len(),
            d.steps,
            d.size,
            d.size
        ),
        size: d.size,
        columns: steps.iter().map(|t| format!("step {t}")).collect(),
        rows: eps
            .iter()
            .map(|&ep| GridRow {
                label: format!("episode {ep}"),
                cells: steps.iter().map(|&t| Some(gray_frame(d, ep, t))).collect(),
                gap_before: false,
            })
            .collect(),
        empty: String::new(),
    };
    frame_grid_png(path, &grid).context("cannot write the contact sheet")?;
    Ok((eps, steps))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_includes_ends() {
        assert_eq!(spread(100, 5), vec![0, 24, 49, 74, 99]);
        assert_eq!(spread(3, 10), vec![0, 1, 2]);
        assert_eq!(spread(1, 4), vec![0]);
    }

    #[test]
    fn stats_reference() {
        let s = Stats::of([1.0, 2.0, 3.0, 4.0].into_iter());
        assert_eq!((s.min, s.max, s.mean), (1.0, 4.0, 2.5));
        assert!((s.std - 1.25f64.sqrt()).abs() < 1e-12);
    }

    #[test]
    fn default_sheet_next_to_file() {
        assert_eq!(
            default_sheet_path(Path::new("a/b/data.npz")),
            PathBuf::from("a/b/data-sheet.png")
        );
    }
}
