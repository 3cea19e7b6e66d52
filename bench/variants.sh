#!/usr/bin/env bash
# The DIM variants at one equal budget: each trained from the same seed on the same
# CIFAR-10 train images for the same number of steps, then scored on CIFAR-10 test
# (2,000 leave-one-out queries). Prints a Markdown table (docs/RESULTS.md, "Training recipes").
#
#   bench/variants.sh [IMAGES] [EPOCHS]     (default 10000 images × 1 epoch)
#   VARIANTS_ONLY='adversarial|D = 128' bench/variants.sh    (only rows whose name matches)
set -euo pipefail
cd "$(dirname "$0")/.."
images=${1:-10000}
epochs=${2:-1}
. bench/data.sh
extract cifar10
cargo build --release -q
bin=target/release/imgsearch
out=${VARIANTS_DIR:-data/variants}
mkdir -p "$out"

# name | flags (the rest are train's defaults: batch 64, lr 1e-3 cosine, D 64, KL prior γ 0.01)
variants=(
  "concat critics, JSD, 1 view, no augmentation (the DIM paper)|--critic concat --estimator jsd --views 1 --augment none"
  "concat critics, DV, 1 view, no augmentation|--critic concat --estimator dv --views 1 --augment none"
  "dot critics, JSD, 2 views|--estimator jsd"
  "dot critics, DV, 2 views|--estimator dv"
  "dot critics, InfoNCE, 2 views (default)|"
  "default, no prior|--prior none"
  "default, adversarial prior|--prior adversarial"
  "default, 1 view, no augmentation|--views 1 --augment none"
  "default, D = 128|--dim 128"
  "default, narrower encoder (32, 64, 128 channels)|--channels 32,64,128"
  "default, wider encoder (128, 256, 512 channels)|--channels 128,256,512"
  "default, deeper encoder (a 3×3 convolution at each resolution)|--stage-convs 1"
  "default, BatchNorm|--norm batch"
  "default, deeper encoder with BatchNorm|--stage-convs 1 --norm batch"
  "default, occlusion of half the side for the code|--occlude 0.5"
  "default, prior weight γ = 0.001|--gamma 0.001"
  "default, prior weight γ = 0.003|--gamma 0.003"
  "default, prior weight γ = 0.03|--gamma 0.03"
  "default, prior weight γ = 0.1|--gamma 0.1"
  "default, critic temperature 0.05|--temperature 0.05"
  "default, critic temperature 0.2|--temperature 0.2"
)

echo "| variant | images × epochs | P@9 | kNN-200 | train flags |"
echo "|---|---|---|---|---|"
for row in "${variants[@]}"; do
  name=${row%%|*}
  flags=${row#*|}
  dir="$out/$(echo "$name" | tr -c 'a-zA-Z0-9\n' '-' | tr -s '-')"
  if [ -n "${VARIANTS_ONLY:-}" ] && ! [[ "$name" =~ $VARIANTS_ONLY ]]; then
    continue
  fi
  # shellcheck disable=SC2086
  if ! train=$($bin --json train data/cifar10/train --limit "$images" --epochs "$epochs" --seed 0 --out "$dir" $flags 2>"$dir.err"); then
    echo "| $name | $(printf "%'d" "$images") × $epochs | — | — | \`$flags\` — $(tail -1 "$dir.err" | cut -c1-80) |"
    continue
  fi
  score=$($bin --json eval data/cifar10/test --model "$dir" --queries 2000)
  python3 - "$name" "$images" "$epochs" "$flags" "$train" "$score" <<'PY'
import json, sys
name, images, epochs, flags, train, score = sys.argv[1:]
# The last line of each command's --json output is its summary record.
t, s = (json.loads(out.strip().splitlines()[-1]) for out in (train, score))
print(f"| {name} | {int(images):,} × {epochs} | {s['precision_at_k']:.4f} | {s['knn_accuracy']:.4f} "
      f"| `{flags or '(defaults)'}` |", flush=True)
PY
done
