#!/usr/bin/env bash
# Our index against hnswlib, faiss-cpu (IndexHNSWFlat) and usearch from PyPI, on the same vectors
# at the same recall@10 target, in one run. Creates bench/.venv-peers on first use.
#
#   bench/peers.sh --n 100000 --dim 64                 # uniform random normalised vectors
#   bench/peers.sh --n 59000 --from-index DIR          # real embeddings (an `imgsearch index` folder)
#
# Any other flag of examples/index_bench.rs may follow (--recall, --queries, --only, --keep).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x bench/.venv-peers/bin/python ]; then
  python3 -m venv bench/.venv-peers
  bench/.venv-peers/bin/pip install -q hnswlib faiss-cpu usearch numpy
fi
cargo build --release --quiet --example index_bench
exec target/release/examples/index_bench --peers bench/.venv-peers/bin/python "$@"
