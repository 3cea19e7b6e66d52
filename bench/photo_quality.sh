#!/usr/bin/env bash
# Retrieval quality of a model on every labelled set, leave-one-out within each split
# (`imgsearch eval`: P@9 and similarity-weighted kNN-200), beside the raw-pixel floor:
# CIFAR-10 test, Tiny-ImageNet val, clothing and attfaces test, and last the signdigits test,
# the set kept out of every choice of the default's recipe.
#
#   bench/photo_quality.sh [MODEL_DIR]          # default: the bundled model
#   FEATURES=1 bench/photo_quality.sh MODEL_DIR  # also each search feature of that model:
#       the code (mean), the pooled backbone features, and pooled + its fitted projection
#   SETS="tinyimagenet/val clothing/test" bench/photo_quality.sh   # a subset
# Prints a Markdown table.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/data.sh
extract cifar10 clothing attfaces signdigits tinyimagenet/val
cargo build --release -q
bin=target/release/imgsearch
model=${1:-}
sets=${SETS:-cifar10/test tinyimagenet/val clothing/test attfaces/test signdigits/test}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# name and eval flags of each column
columns=("pixels|--baseline pixels")
if [ -n "$model" ]; then columns+=("model|--model $model"); else columns+=("default|"); fi
if [ -n "${FEATURES:-}" ]; then
  [ -n "$model" ] || { echo "FEATURES=1 needs a MODEL_DIR" >&2; exit 2; }
  for feature in mean pooled; do
    mkdir -p "$work/$feature"
    cp "$model/model.safetensors" "$work/$feature/"
    python3 - "$model/config.json" "$work/$feature/config.json" "$feature" <<'PY'
import json, sys
config = json.load(open(sys.argv[1]))
config["embedding"] = sys.argv[3]
config.pop("projection", None)
json.dump(config, open(sys.argv[2], "w"), indent=2)
PY
    columns+=("$feature|--model $work/$feature")
  done
fi

score() { python3 -c '
import json, sys
d = json.loads(sys.stdin.read().strip().splitlines()[-1])
print("%.4f / %.4f" % (d["precision_at_k"], d["knn_accuracy"]))'; }

lscpu | grep -E 'Model name' | sed 's/  */ /g'
header="| set (P@9 / kNN-200) |"
rule="|---|"
for column in "${columns[@]}"; do header+=" ${column%%|*} |"; rule+="---|"; done
echo "$header"
echo "$rule"
for set in $sets; do
  row="| $set |"
  for column in "${columns[@]}"; do
    # shellcheck disable=SC2086
    row+=" $($bin --quiet eval "data/$set" ${column#*|} --json | score) |"
  done
  echo "$row"
done
