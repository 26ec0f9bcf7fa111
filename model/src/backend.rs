//! Choosing the compute device at run time. The CPU backend (burn-flex, with SIMD and rayon)
//! is always compiled; GPU backends only with this crate's cargo features `cuda` or `wgpu`.

use burn::tensor::Device;

use crate::{Error, Result};

/// Device names this build accepts for `--device`.
pub fn available_devices() -> Vec<&'static str> {
    #[allow(unused_mut)]
    let mut names = vec!["cpu"];
    #[cfg(feature = "cuda")]
    names.push("cuda");
    #[cfg(feature = "wgpu")]
    names.push("wgpu");
    names
}

/// The device called `name`: `cpu` (burn-flex), `cuda` (first CUDA GPU, feature `cuda`) or
/// `wgpu` (default wgpu adapter, feature `wgpu`). Autodiff is added by the trainer.
pub fn device_from_name(name: &str) -> Result<Device> {
    match name {
        "cpu" | "flex" => Ok(Device::flex()),
        #[cfg(feature = "cuda")]
        "cuda" => Ok(Device::cuda(0)),
        #[cfg(feature = "wgpu")]
        "wgpu" => Ok(Device::wgpu(Default::default())),
        other => Err(Error::InvalidSetting(format!(
            "unknown or not compiled-in device {other:?}; this build has {} (GPU backends need `--features cuda` or `--features wgpu`)",
            available_devices().join(", ")
        ))),
    }
}
