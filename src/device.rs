//! `--device auto|cpu|cuda[:N]`: one parser and one resolver shared by every command.

use crate::{Error, Result};
use candle_core::Device;
use std::str::FromStr;

/// What the user asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    /// CUDA when this binary has it and a device answers, else the CPU.
    #[default]
    Auto,
    Cpu,
    Cuda(usize),
}

impl FromStr for DeviceChoice {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "auto" => Ok(DeviceChoice::Auto),
            "cpu" => Ok(DeviceChoice::Cpu),
            "cuda" => Ok(DeviceChoice::Cuda(0)),
            other => match other.strip_prefix("cuda:").map(str::parse) {
                Some(Ok(n)) => Ok(DeviceChoice::Cuda(n)),
                _ => Err(format!(
                    "unknown device '{other}': expected auto, cpu, cuda or cuda:N"
                )),
            },
        }
    }
}

impl DeviceChoice {
    /// The candle device to run on.
    pub fn resolve(self) -> Result<Device> {
        match self {
            DeviceChoice::Cpu => Ok(Device::Cpu),
            DeviceChoice::Auto => Ok(cuda(0).unwrap_or(Device::Cpu)),
            DeviceChoice::Cuda(n) => {
                if !candle_core::utils::cuda_is_available() {
                    return Err(Error::Usage(
                        "--device cuda: this binary was built without CUDA; rebuild with `--features cuda`"
                            .into(),
                    ));
                }
                cuda(n).map_err(|why| {
                    Error::Usage(format!("--device cuda:{n}: CUDA is unavailable: {why}"))
                })
            }
        }
    }
}

/// CUDA device `n`, or why not. The CUDA build loads the driver and CUDA's libraries when it
/// first uses them (bench/gpu/build.sh), so that it starts on a machine without them: check for
/// the driver first, and turn a library that fails to load (cudarc panics then) into an error.
fn cuda(n: usize) -> std::result::Result<Device, String> {
    if !candle_core::utils::cuda_is_available() {
        return Err("this binary was built without CUDA".into());
    }
    if !cuda_driver_present() {
        return Err("the NVIDIA driver (libcuda.so.1) is not installed on this machine".into());
    }
    // Called before any other thread runs (commands resolve their device first): swapping the
    // panic hook cannot hide another thread's panic.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let made = std::panic::catch_unwind(|| Device::new_cuda(n));
    std::panic::set_hook(hook);
    match made {
        Ok(Ok(device)) => Ok(device),
        Ok(Err(e)) => Err(e.to_string()),
        Err(panic) => Err(panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "a CUDA library could not be loaded".into())),
    }
}

/// Whether the NVIDIA driver's library loads.
fn cuda_driver_present() -> bool {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: dlopen gets a valid NUL-terminated name and flags; the handle is only
        // checked for null and closed. Loading runs libcuda's initialisers, which the first
        // CUDA call would run anyway.
        unsafe {
            let handle = libc::dlopen(c"libcuda.so.1".as_ptr(), libc::RTLD_LAZY | libc::RTLD_LOCAL);
            if handle.is_null() {
                return false;
            }
            libc::dlclose(handle);
        }
        true
    }
    #[cfg(not(target_os = "linux"))]
    {
        true
    }
}

/// candle 0.11 runs its CPU element-wise ops on a pool of its own (N−1 spinning workers plus
/// the caller) beside rayon's N threads, which run the matmuls (gemm) and this crate's fused
/// ops: 2N busy threads on N cores. On 2 cores the spinning took 9–11% of a training step's
/// samples and made step times swing by ±25%. With `CANDLE_NUM_THREADS=1` that pool has no
/// workers and the few element-wise ops left run on the calling thread; measured
/// interleaved, 3 runs each, train b64/b128 went from 403/415 to 437/451 images/s (embedding
/// unchanged). A value the user set is kept. Call at the start of `main`, before any
/// thread exists.
pub fn tune_threads() {
    const THREADS: &str = "CANDLE_NUM_THREADS";
    if std::env::var_os(THREADS).is_none() {
        // Changing the environment is sound while this is the only thread (see above).
        std::env::set_var(THREADS, "1");
    }
}

/// Large tensors are freed and re-allocated every step; glibc's default returns such buffers to
/// the kernel each time, which made candle's ops 1.3–3× slower here. Raising the thresholds keeps
/// them in the process.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        const BIG: libc::c_int = 1 << 30;
        // SAFETY: mallopt only changes glibc allocator parameters; it is called before any
        // threads allocate heavily and takes plain integers, so no memory is touched unsafely.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, BIG);
            libc::mallopt(libc::M_TRIM_THRESHOLD, BIG);
        }
    }
}

/// The SIMD level the hand-written kernels use. The index engine owns the one copy of the
/// detection (its dot products need it); the image kernels and `--simd` use it from here.
pub use imgsearch_index::simd::{cpu_simd_level, limit_simd, simd_level, SimdLevel};
