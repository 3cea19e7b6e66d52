#!/usr/bin/env bash
# Packs what the GPU run needs into target/gpu-pack (under 64 MiB, to copy to a GPU machine): the
# CUDA binary from bench/gpu/build.sh (stripped, xz), CIFAR-10 train as a compressed tar of its
# JPEGs (data/cifar10/train, fetched with `bench/data.sh cifar10/train`), and bench/gpu/run.sh. Then, on the GPU
# machine, from the repository root:
#     bash bench/gpu/run.sh target/gpu-pack        # writes into $OUT (or ./gpu-out)
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=target/cuda/release/imgsearch
[ -x "$bin" ] || { echo "build it first: bench/gpu/build.sh" >&2; exit 1; }
[ -d data/cifar10/train ] || { echo "fetch CIFAR-10 first: bench/data.sh cifar10/train" >&2; exit 1; }
out=target/gpu-pack
limit=$((60 * 1024 * 1024))
rm -rf "$out"
mkdir -p "$out"
strip -o "$out/imgsearch" "$bin"
xz -9e -T0 "$out/imgsearch"
tar -C data/cifar10 -cf - train | xz -6 -T0 >"$out/cifar10-train.tar.xz"
cp bench/gpu/run.sh "$out/"
du -b "$out"/* | sort -n
total=$(du -cb "$out"/* | tail -n1 | cut -f1)
echo "total $((total / 1024 / 1024)) MiB in $out"
if [ "$total" -gt "$limit" ]; then
  echo "error: over $((limit / 1024 / 1024)) MiB" >&2
  exit 1
fi
