#!/usr/bin/env bash
# A check of `imgsearch eval` from the outside: index the 10,000 CIFAR-10 test images with a model
# (default: the bundled one), query 2,000 of them (every fifth) with `imgsearch query -k 201
# --json` in one process, and score P@9 and kNN-200 from that output alone (bench/score_query.py).
#
#   bench/score_cifar.sh [--model M]
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/data.sh
extract cifar10/test
cargo build --release -q
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
target/release/imgsearch --quiet index data/cifar10/test --index "$work/index" "$@"
find data/cifar10/test -type f | sort | awk 'NR % 5 == 1' > "$work/queries"
# shellcheck disable=SC2046
target/release/imgsearch --quiet query $(cat "$work/queries") -k 201 --index "$work/index" --json "$@" > "$work/answers.jsonl"
python3 bench/score_query.py "$work/answers.jsonl"
