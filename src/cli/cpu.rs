//! The CPU this binary was built for (README.md, "CPU baseline").
//!
//! On x86-64, `.cargo/config.toml` compiles for `x86-64-v3` (AVX2, BMI2,
//! FMA, MOVBE: every x86-64 CPU since 2013-2015): the AEAD's AVX2 code is
//! inlined only then, and sealing runs about 1.4x faster. On an older CPU
//! such a binary would die of an illegal instruction somewhere in the
//! first request; this check says why, before anything runs.

/// The instruction-set features this build assumes and the CPU lacks.
pub fn missing_features() -> Vec<&'static str> {
    #[allow(unused_mut)]
    let mut missing = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        macro_rules! check {
            ($($feature:tt),*) => {$(
                if cfg!(target_feature = $feature) && !std::arch::is_x86_feature_detected!($feature) {
                    missing.push($feature);
                }
            )*};
        }
        // x86-64-v3 and, for builds with `-C target-cpu=native` on newer
        // CPUs, the AVX-512 features a binary built there may use.
        check!(
            "avx",
            "avx2",
            "bmi1",
            "bmi2",
            "fma",
            "f16c",
            "lzcnt",
            "movbe",
            "avx512f",
            "avx512vl",
            "avx512bw",
            "avx512dq",
            "avx512cd",
            "avx512ifma",
            "avx512vbmi"
        );
    }
    missing
}

/// The message for a CPU that lacks `missing`.
pub fn message(missing: &[&str]) -> String {
    format!(
        "vaultfs: this binary was built for CPUs with {} and this CPU lacks them; \
         build it on this machine with RUSTFLAGS=\"--cfg chacha20_avx512\" cargo build --release \
         for a binary that runs on any x86-64 CPU (README.md, \"CPU baseline\")",
        missing.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cpu_running_the_tests_has_what_the_build_assumes() {
        // The tests run on the machine that built them: nothing may be missing.
        assert_eq!(missing_features(), Vec::<&str>::new());
    }

    #[test]
    fn the_message_names_the_features_and_the_way_out() {
        let m = message(&["avx2", "bmi2"]);
        assert!(m.contains("avx2, bmi2") && m.contains("RUSTFLAGS"), "{m}");
    }
}
