#!/usr/bin/env bash
# Builds the CUDA-enabled imgsearch on a machine without a GPU or driver, into
# target/cuda/release/imgsearch.
#
# candle 0.11 asks cudarc to link the driver and CUDA's libraries at build time
# ("dynamic-linking"), and the driver's libcuda.so exists only where a driver is installed. cudarc
# can instead load them at run time ("dynamic-loading", its own default), but Cargo features only
# add up. So this script builds against a copy of cudarc (from the local registry, same version)
# whose build script selects run-time loading when asked to link, through a `[patch]` given on the
# command line: nothing of it is committed, and the normal build is untouched. The binary then
# starts on any machine and `--device cuda` says so when the driver is missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
. .ci/cuda-env
export CUDA_COMPUTE_CAP=${GPU_COMPUTE_CAP:-90} # H200: 9.0

version=$(python3 -c '
import re
lock = open("Cargo.lock").read()
print(re.search(r"name = \"cudarc\"\nversion = \"([^\"]+)\"", lock).group(1))')
source=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"cudarc-$version" | head -n1)
patched=target/cudarc-runtime-loading
rm -rf "$patched"
cp -r "$source" "$patched"
chmod -R u+w "$patched"
# The one change: where the build script would link, it selects the run-time loader instead.
python3 - "$patched/build.rs" <<'PY'
import sys
path = sys.argv[1]
text = open(path).read()
old = '#[cfg(feature = "dynamic-linking")]\n    dynamic_linking(major, minor);'
new = '#[cfg(feature = "dynamic-linking")]\n    println!("cargo:rustc-cfg=feature=\\"dynamic-loading\\"");'
assert text.count(old) == 1, "cudarc's build script changed: update bench/gpu/build.sh"
open(path, "w").write(text.replace(old, new))
PY
rm -f "$patched/.cargo-ok" "$patched/.cargo_vcs_info.json"

# candle-kernels links the CUDA runtime as a shared library (`-lcudart`), which would make the
# binary need libcudart.so.13 to start. A linker script of that name stands in for it and pulls
# in the runtime's static archive (from the same wheels) instead; the runtime itself loads the
# driver when it is first used. LIBRARY_PATH reaches the linker without rebuilding anything.
link=$PWD/target/cuda-link
mkdir -p "$link"
echo "INPUT($CUDA_ROOT/lib/libcudart_static.a -lrt -lpthread -ldl)" >"$link/libcudart.so"
export LIBRARY_PATH=$link${LIBRARY_PATH:+:$LIBRARY_PATH}

# A patched build rewrites Cargo.lock (the patched crate has no registry source): keep the
# committed one.
cp Cargo.lock target/Cargo.lock.committed
trap 'cp target/Cargo.lock.committed Cargo.lock' EXIT
cargo build --release --features cuda --target-dir target/cuda \
  --config "patch.crates-io.cudarc.path=\"$patched\"" --bin imgsearch
bin=target/cuda/release/imgsearch
echo "built $bin ($(du -h "$bin" | cut -f1))"
if ldd "$bin" | grep -E 'libcuda|libcublas|libnvrtc|libcurand'; then
  echo "error: the binary links CUDA libraries at load time" >&2
  exit 1
fi
# On this machine (no driver) it must start and say that CUDA is unavailable.
"$bin" --version
out=$("$bin" --device cuda eval assets/samples 2>&1 || true)
echo "without a driver: $out"
grep -q "CUDA is unavailable" <<<"$out"
