//! Run-time CPU feature detection for the hand-written kernels: the widest SIMD level this CPU
//! supports (detected once and cached) and a ceiling on it (`imgsearch --simd`), so one binary
//! can be measured at each level on one machine. The engine's dot products read it here; the
//! main crate's image kernels read the same level through `imgsearch::device`.

/// The widest vector instructions the hand-written kernels use, in increasing order. The binary
/// is built for the x86-64 baseline, so the kernels that want more ask [`simd_level`] at run time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum SimdLevel {
    /// The x86-64 baseline (SSE2), or another architecture.
    Portable = 1,
    /// AVX2 and FMA (Intel since Haswell, AMD since Excavator and Zen).
    Avx2Fma = 2,
    /// AVX-512 F on top of AVX2 and FMA (Intel Xeon since Skylake-SP, AMD since Zen 4).
    Avx512 = 3,
}

impl SimdLevel {
    /// The `--simd` spelling, also printed by the benchmarks.
    pub fn name(self) -> &'static str {
        match self {
            SimdLevel::Portable => "portable",
            SimdLevel::Avx2Fma => "avx2",
            SimdLevel::Avx512 => "avx512",
        }
    }
}

/// The cached [`SimdLevel`] (0 before the first call).
static SIMD_LEVEL: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

/// What the kernels use: the widest level this CPU supports (detected once), or less after
/// [`limit_simd`].
#[inline]
pub fn simd_level() -> SimdLevel {
    use std::sync::atomic::Ordering::Relaxed;
    match SIMD_LEVEL.load(Relaxed) {
        1 => SimdLevel::Portable,
        2 => SimdLevel::Avx2Fma,
        3 => SimdLevel::Avx512,
        _ => {
            let level = cpu_simd_level();
            SIMD_LEVEL.store(level as u8, Relaxed);
            level
        }
    }
}

/// Use at most `max` from now on (a level above what the CPU has is ignored), so one binary can
/// be measured at each level on one machine (`imgsearch --simd`). Call it before any work: a
/// kernel running meanwhile may finish on the level it started with.
pub fn limit_simd(max: SimdLevel) {
    SIMD_LEVEL.store(
        cpu_simd_level().min(max) as u8,
        std::sync::atomic::Ordering::Relaxed,
    );
}

/// The widest level this CPU supports, whatever [`limit_simd`] said.
pub fn cpu_simd_level() -> SimdLevel {
    #[cfg(target_arch = "x86_64")]
    {
        let avx2 = std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma");
        if avx2 && std::is_x86_feature_detected!("avx512f") {
            return SimdLevel::Avx512;
        }
        if avx2 {
            return SimdLevel::Avx2Fma;
        }
    }
    SimdLevel::Portable
}
