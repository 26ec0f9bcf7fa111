//! `ekvae export --pytorch RUN OUT`: a trained run's weights as a PyTorch `state_dict` in one
//! safetensors file (layout and metadata: `ekvae_model::export`).

use anyhow::{Context, Result, bail};
use clap::Args;
use std::path::PathBuf;

/// Export a trained run's weights for another framework.
///
/// `--pytorch`: a safetensors file in the layout of a PyTorch `state_dict` (Linear weights
/// [out, in], conv weights [out, in, kh, kw], softplus parameters transformed, transition bases
/// [K, n, n]); its metadata describes every tensor and the forward pass. Load it with
/// `safetensors.torch.load_file(OUT)`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Write a PyTorch `state_dict` (safetensors); the only format so far.
    #[arg(long)]
    pub pytorch: bool,
    /// The run directory of `ekvae train` (its last checkpoint is exported).
    pub run: PathBuf,
    /// Output file (e.g. `weights.safetensors`); written atomically, its folder created if missing.
    pub out: PathBuf,
}

/// Runs `ekvae export`.
pub fn run(args: ExportArgs) -> Result<()> {
    if !args.pytorch {
        bail!("choose the format to export: --pytorch (a PyTorch state_dict in safetensors)");
    }
    if let Some(dir) = args.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        if dir.exists() && !dir.is_dir() {
            bail!("{}: not a folder, so {} cannot be written", dir.display(), args.out.display());
        }
        std::fs::create_dir_all(dir)
            .with_context(|| format!("{}: cannot create the output folder", dir.display()))?;
    }
    let tensors = ekvae_model::export::export_pytorch(&args.run, &args.out)?;
    let bytes = std::fs::metadata(&args.out).map(|m| m.len()).unwrap_or(0);
    crate::say!(
        "exported {tensors} tensors of {} to {} ({:.1} KB, PyTorch state_dict in safetensors)",
        args.run.display(),
        args.out.display(),
        bytes as f64 / 1e3
    );
    Ok(())
}
