#!/usr/bin/env bash
# Fine-tunes a model on CIFAR-10 train plus the train splits of the three real photo sets, each
# copied a number of times so that photos weigh more than their share (once each they would be 7%
# of 53,610 images). Copies, not links: training counts one file once however it is reached.
# Labels are not used. This is how the bundled default (assets/default) was made; see its model
# card, "Training".
#
#   [MIX="clothing:3 signdigits:3 attfaces:3"] [MINUTES=110] [OUT=target/default-model] \
#   [LR=5e-4] [SEED=2] [FROM=default] [KEEP=probe] bench/default_model.sh
# MIX names each photo set with its number of copies (REPEAT=N is short for
# "clothing:N signdigits:N attfaces:N"). KEEP is `train --keep`: probe (the epoch the label-free
# probe liked best) or last. The bundled default's three fine-tunes, in order, each from the
# model the previous one wrote (FROM=DIR):
#   MIX="clothing:3 signdigits:3 attfaces:3" SEED=2 MINUTES=110 KEEP=probe
#   MIX="clothing:5 signdigits:2 attfaces:20" SEED=3 MINUTES=95 KEEP=last
#   MIX="clothing:12 signdigits:2 attfaces:20" SEED=4 MINUTES=70 KEEP=last
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
spec=${MIX:-clothing:$repeat signdigits:$repeat attfaces:$repeat}
if [ "$spec" = "clothing:$repeat signdigits:$repeat attfaces:$repeat" ]; then
  mix=data/default-mix-x$repeat # the folder name of the equal-copies mix
else
  mix=data/default-mix-$(echo "$spec" | tr ' :' '-x')
fi
if [ ! -d "$mix" ]; then
  for entry in $spec; do
    set=${entry%%:*}
    for copy in $(seq 1 "${entry##*:}"); do
      mkdir -p "$mix/$copy" && cp -r "data/$set/train" "$mix/$copy/$set"
    done
  done
fi
lscpu | grep -E 'Model name' | sed 's/  */ /g'
time $bin train data/cifar10/train "$mix" --from "${FROM:-default}" --out "${OUT:-target/default-model}" \
  --minutes "${MINUTES:-110}" --lr "${LR:-5e-4}" --seed "${SEED:-2}" --keep "${KEEP:-probe}" --json
