#!/usr/bin/env bash
# Bounded fuzzing for CI: when a nightly toolchain is installed, build the fuzz targets and run
# each for at most FUZZ_SECONDS (default and maximum 60) on its committed seeds; exit nonzero
# if any target finds a crash, timeout or OOM (the input is left under fuzz/artifacts/<target>/).
# Without a nightly toolchain, say so and succeed.
set -euo pipefail
cd "$(dirname "$0")"

TARGETS=(index_open model_load checkpoint_load image_decode)
SECS=${FUZZ_SECONDS:-60}
if ! [[ "$SECS" =~ ^[0-9]+$ ]] || ((SECS < 1 || SECS > 60)); then
    SECS=60
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
    # A scratch copy of the committed seeds, so the run does not grow the checkout's corpus.
    work=$(mktemp -d)
    cp corpus/"$t"/seed-* "$work"/
    echo "== fuzz $t for ${SECS} s"
    set +e
    cargo +nightly fuzz run "${BUILD_FLAGS[@]}" "$t" "$work" -- \
        -max_total_time="$SECS" -rss_limit_mb=4096 -timeout=10 -print_final_stats=1 \
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
