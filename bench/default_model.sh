#!/usr/bin/env bash
# How the bundled default (assets/default) was made from the previous one: fine-tuned on CIFAR-10
# train plus the train splits of the three real photo sets, each photo set copied REPEAT times so
# that photos are about a fifth of what the encoder sees (alone they would be 7% of 53,610 images).
# Copies, not links: training counts one file once however it is reached. Labels are not used.
#
#   bench/default_model.sh [MINUTES=110] [REPEAT=3] [OUT=target/default-model] [LR=5e-4] [SEED=2]
# Then score it: bench/default_model.sh score MODEL_DIR
set -euo pipefail
cd "$(dirname "$0")/.."
sets="clothing signdigits attfaces"
. bench/data.sh
# shellcheck disable=SC2086
extract cifar10 $sets
cargo build --release -q
bin=target/release/imgsearch
if [ "${1:-}" = score ]; then
  model=${2:?model folder}
  for set in cifar10 $sets; do
    for what in "--model $model" "--baseline pixels"; do
      [ "$set" = cifar10 ] && [ "$what" = "--baseline pixels" ] && continue
      # shellcheck disable=SC2086
      echo "$set $what: $($bin eval "data/$set/test" $what --json | tail -1)"
    done
  done
  exit 0
fi
repeat=${REPEAT:-3}
mix=data/default-mix-x$repeat
if [ ! -d "$mix" ]; then
  for copy in $(seq 1 "$repeat"); do
    for set in $sets; do
      mkdir -p "$mix/$copy" && cp -r "data/$set/train" "$mix/$copy/$set"
    done
  done
fi
lscpu | grep -E 'Model name' | sed 's/  */ /g'
time $bin train data/cifar10/train "$mix" --from default --out "${OUT:-target/default-model}" \
  --minutes "${MINUTES:-110}" --lr "${LR:-5e-4}" --seed "${SEED:-2}" --json
