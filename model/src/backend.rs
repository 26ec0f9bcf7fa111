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

/// mimalloc's `mi_option_purge_delay`: its position in the `mi_option_e` enum of the mimalloc
/// (v3) sources that `libmimalloc-sys` 0.1.49 builds (its header mimalloc.h).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Tells mimalloc (the `ekvae` binary's allocator) to keep freed memory instead of returning it
/// to the operating system after its default delay of one second. A training step frees and
/// allocates the same few hundred megabytes every ~100 ms, so returning them costs a page fault
/// and a page clear per page on the next step (`clear_page_erms` was 8 % of a 32×32 step under
/// `perf`); keeping them made a 32×32 step 139–169 → 116–117 ms (README, "Dependencies and
/// why"). A user's `MIMALLOC_PURGE_DELAY` takes precedence. Without mimalloc as the global
/// allocator this changes nothing.
pub fn keep_freed_memory() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    #[allow(unsafe_code)]
    // SAFETY: `mi_option_set` stores an integer in mimalloc's option table; it takes no pointer
    // and may be called at any time from any thread. −1 means "never purge".
    unsafe {
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1)
    };
}

#[cfg(test)]
mod allocator_tests {
    /// The option index is mimalloc's purge delay: before it is set it holds that option's
    /// default (1000 ms in the options table of the mimalloc v3 sources), afterwards −1.
    #[test]
    #[allow(unsafe_code)]
    fn the_purge_delay_option_is_found_and_set() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
            return; // the user's setting wins (and changes the default read below)
        }
        // SAFETY: `mi_option_get` reads an integer from mimalloc's option table.
        let before = unsafe { libmimalloc_sys::mi_option_get(super::MI_OPTION_PURGE_DELAY) };
        assert_eq!(before, 1000);
        super::keep_freed_memory();
        // SAFETY: as above.
        let after = unsafe { libmimalloc_sys::mi_option_get(super::MI_OPTION_PURGE_DELAY) };
        assert_eq!(after, -1);
    }
}
