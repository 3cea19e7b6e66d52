#!/usr/bin/env bash
# The training runs of the bundled default (assets/default; its model card, "Training").
# Labels are never used.
#
#   FROM=DIR [MINUTES=100] [OUT=target/default-model] [LR=5e-4] [SEED=5] bench/default_model.sh
#       the last run: Tiny-ImageNet train (less its tune split: bench/data.sh's
#       carve_tinyimagenet_tune) and CIFAR-10 train, 148,980 images, from the run-4 model in
#       FROM, the last epoch kept, then the 128-dim search projection fitted on 20,000 of them.
#   MIX="clothing:3 signdigits:3 attfaces:3" FROM=DIR SEED=2 MINUTES=110 KEEP=probe bench/default_model.sh
#       runs 2-4: CIFAR-10 train plus copies of the photo sets' train splits (MIX names each set
#       with its number of copies; copies, not links, since training counts one file once).
#   bench/default_model.sh score MODEL_DIR     # bench/photo_quality.sh MODEL_DIR
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = score ]; then
  exec bench/photo_quality.sh "${2:?model folder}"
fi
. bench/data.sh
extract cifar10/train
cargo build --release -q
bin=target/release/imgsearch
: "${FROM:?FROM=DIR: the model to start from (model card, runs 1-4)}"
out=${OUT:-target/default-model}
lscpu | grep -E 'Model name' | sed 's/  */ /g'
if [ -z "${MIX:-}" ]; then
  carve_tinyimagenet_tune
  time $bin train data/tinyimagenet/train data/cifar10/train --from "$FROM" --out "$out" \
    --minutes "${MINUTES:-100}" --lr "${LR:-5e-4}" --seed "${SEED:-5}" --keep last \
    --embedding pooled --projection 128 --json
  exit 0
fi
mix=data/default-mix-$(echo "$MIX" | tr ' :' '-x')
if [ ! -d "$mix" ]; then
  for entry in $MIX; do
    set=${entry%%:*}
    extract "$set/train"
    for copy in $(seq 1 "${entry##*:}"); do
      mkdir -p "$mix/$copy" && cp -r "data/$set/train" "$mix/$copy/$set"
    done
  done
fi
time $bin train data/cifar10/train "$mix" --from "$FROM" --out "$out" \
  --minutes "${MINUTES:-110}" --lr "${LR:-5e-4}" --seed "${SEED:-2}" --keep "${KEEP:-probe}" \
  --embedding mean --projection none --json
