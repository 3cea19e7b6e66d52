#!/usr/bin/env bash
# The fuzz targets under libFuzzer and AddressSanitizer (needs a nightly toolchain): build them,
# replay each target's committed seeds and regression inputs once (`-runs=0`), and with
# FUZZ_SECONDS=N (at most 600) also explore each target for N seconds, leaving any finding under
# fuzz/artifacts/<target>/; exit nonzero on a crash, timeout or out-of-memory. Not part of CI:
# the ASAN build alone took 895 s on 2 cores, and the same inputs are replayed without it by
# `cargo test` (tests/fuzz_replay.rs). Without a nightly toolchain, say so and succeed.
set -euo pipefail
cd "$(dirname "$0")"

TARGETS=(index_open model_load checkpoint_load image_decode)
SECS=${FUZZ_SECONDS:-0}
if ! [[ "$SECS" =~ ^[0-9]+$ ]] || ((SECS > 600)); then
    echo "FUZZ_SECONDS must be a whole number of seconds from 0 to 600" >&2
    exit 2
fi
# Build settings shared by `build` and `run` (so `run` does not rebuild); see README.md for the
# build times behind this choice.
BUILD_FLAGS=(--codegen-units 16)

if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    echo "fuzzing skipped: no nightly toolchain"
    exit 0
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi
cargo +nightly fuzz --version

start=$(date +%s)
cargo +nightly fuzz build "${BUILD_FLAGS[@]}"
echo "fuzz build: $(($(date +%s) - start)) s"

# Candle and rayon on the calling thread only: one fuzzer, one core.
export CANDLE_NUM_THREADS=1 RAYON_NUM_THREADS=1
failed=()
for t in "${TARGETS[@]}"; do
    # A scratch copy of the committed inputs, so that a run never grows the checkout's corpus.
    work=$(mktemp -d)
    cp corpus/"$t"/seed-* "$work"/
    if [[ -d regressions/$t ]]; then
        cp regressions/"$t"/* "$work"/
    fi
    if ((SECS > 0)); then
        echo "== fuzz $t: replay $(ls "$work" | wc -l) inputs, then explore for ${SECS} s"
        limits=(-max_total_time="$SECS")
    else
        echo "== fuzz $t: replay $(ls "$work" | wc -l) committed inputs"
        limits=(-runs=0)
    fi
    set +e
    cargo +nightly fuzz run "${BUILD_FLAGS[@]}" "$t" "$work" -- \
        "${limits[@]}" -rss_limit_mb=4096 -timeout=10 -print_final_stats=1 \
        2>&1 | grep -v -E '^#[0-9]+[[:space:]]+(NEW|REDUCE|pulse)'
    status=${PIPESTATUS[0]}
    set -e
    if ((status != 0)); then
        echo "fuzz $t FAILED (exit $status): see fuzz/artifacts/$t/"
        failed+=("$t")
    fi
    rm -rf "$work"
done
if ((${#failed[@]})); then
    echo "fuzzing found problems in: ${failed[*]}"
    exit 1
fi
echo "fuzzing: no findings"
