#!/usr/bin/env bash
# Every index table of docs/INDEX.md and docs/BENCHMARKS.md in one run: our index against hnswlib, faiss
# and usearch (bench/peers.sh) on real CIFAR-10 embeddings (59,000 + 1,000 held-out queries, from
# an `imgsearch index` of the 60,000 images with the bundled model), 100,000 clustered, 100,000
# uniform and 1,000,000 clustered 64-d vectors (about 13 minutes on 2 cores; run it alone);
# SETS=uniform1m runs 1,000,000 uniform vectors, the slowest table (not in the default list).
#
#   bench/peers_all.sh [SETS="real clustered100k uniform100k clustered1m"]
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/data.sh
cargo build --release --quiet --bin imgsearch
lscpu | grep -E 'Model name|^CPU\(s\)' | sed 's/  */ /g'
echo "SIMD flags: $(grep -o -w -E 'avx2|fma|avx512f|avx512bw|avx512vl' /proc/cpuinfo | sort -u | tr '\n' ' ')"
git log -1 --format='commit %h %s' | cut -c1-100
for set in ${SETS:-real clustered100k uniform100k clustered1m}; do
  echo "== $set"
  case $set in
    real)
      extract cifar10
      real=${REAL_INDEX:-target/cifar-real-index}
      [ -f "$real/manifest.json" ] || target/release/imgsearch index data/cifar10 --index "$real" --quiet
      bench/peers.sh --n 59000 --queries 1000 --from-index "$real" ;;
    clustered100k) bench/peers.sh --n 100000 --clustered 1000 --queries 500 ;;
    uniform100k) bench/peers.sh --n 100000 --queries 500 ;;
    clustered1m) bench/peers.sh --n 1000000 --clustered 1000 --queries 500 ;;
    uniform1m) bench/peers.sh --n 1000000 --queries 500 ;;
    *) echo "unknown set $set" >&2; exit 2 ;;
  esac
done
