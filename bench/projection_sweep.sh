#!/usr/bin/env bash
# The search projection's shape (components kept, whitening power) on tuning splits only: fitted
# on 40 photos of each Tiny-ImageNet class taken from its train split, scored on the tune split
# (10 other photos of each class, never trained on) and on the clothing and attfaces train
# splits. No test split is read. Needs Python 3 with numpy.
#
#   bench/projection_sweep.sh [MODEL_DIR]      # default: assets/default
# Prints a Markdown table (bench/projection_sweep.py).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/data.sh
extract clothing attfaces tinyimagenet/train
carve_tinyimagenet_tune
cargo build --release -q
bin=target/release/imgsearch
model=${1:-assets/default}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The model searching its embedding as it is: the sweep fits projections of its own.
mkdir -p "$work/model" "$work/fit"
cp "$model/model.safetensors" "$work/model/"
python3 - "$model/config.json" "$work/model/config.json" <<'PY'
import json, sys
config = json.load(open(sys.argv[1]))
config.pop("projection", None)
json.dump(config, open(sys.argv[2], "w"), indent=2)
PY
# The last 40 files (by name) of each class of the train split, copied (index follows no links).
for class in data/tinyimagenet/train/*/; do
  name=$(basename "$class")
  mkdir -p "$work/fit/$name"
  find "$class" -type f | sort | tail -40 | xargs cp -t "$work/fit/$name/"
done
indexes=()
for set in fit tinyimagenet/tune clothing/train attfaces/train; do
  dir=$work/$set
  [ "$set" = fit ] || dir=data/$set
  name=$(echo "$set" | tr / -)
  $bin index "$dir" --model "$work/model" --index "$work/index-$name" --quiet
  indexes+=("$work/index-$name")
done
lscpu | grep -E 'Model name' | sed 's/  */ /g'
python3 bench/projection_sweep.py "${indexes[@]}"
