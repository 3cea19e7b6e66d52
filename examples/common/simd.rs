//! The benchmarks' reading of `IMGSEARCH_SIMD` (`portable`, `avx2`, `avx512`), the environment
//! spelling of the binary's `--simd`: the library takes the level as an argument, never from the
//! environment.

use imgsearch::device::{limit_simd, simd_level, SimdLevel};

/// Apply `IMGSEARCH_SIMD` if set; the level the kernels will use, for the benchmark's header.
pub fn limit_from_env() -> &'static str {
    if let Ok(simd) = std::env::var("IMGSEARCH_SIMD") {
        limit_simd(match simd.as_str() {
            "portable" => SimdLevel::Portable,
            "avx2" => SimdLevel::Avx2Fma,
            _ => SimdLevel::Avx512,
        });
    }
    simd_level().name()
}
