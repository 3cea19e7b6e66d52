#!/usr/bin/env bash
# What ten minutes of `train` do for a folder of photos: on each real photo set, the pixel floor and the bundled default on the
# test split, then `imgsearch train` on the train split with a wall-time budget, fine-tuned from
# the bundled model and from scratch, each scored on the test split before and after (--eval).
# Runs one after another (never two at once: the budget is wall time). Prints a Markdown table.
#
#   bench/your_photos.sh [MINUTES=10] [SETS="clothing signdigits attfaces"] [FROM="default scratch"]
#   OUT=dir keeps the models and JSON (default: a temporary folder); EXTRA="--size 64" adds flags.
set -euo pipefail
cd "$(dirname "$0")/.."
minutes=${MINUTES:-10}
sets=${SETS:-clothing signdigits attfaces}
starts=${FROM:-default scratch}
. bench/data.sh
# shellcheck disable=SC2086
extract $sets
cargo build --release -q
bin=target/release/imgsearch
work=${OUT:-$(mktemp -d)}
mkdir -p "$work"
lscpu | grep -E 'Model name' | sed 's/  */ /g'
scores() { python3 -c '
import json, sys
d = json.loads(sys.stdin.read().strip().splitlines()[-1])
e = d.get("eval") or {"after": d}
print("%.4f | %.4f" % (e["after"]["precision_at_k"], e["after"]["knn_accuracy"]))'; }
echo "| set | what | P@9 | kNN-200 | P@1 | steps | probe survival@9 before → kept |"
echo "|---|---|---:|---:|---:|---:|---|"
for set in $sets; do
  test_dir=data/$set/test
  echo "| $set | pixel floor | $($bin eval "$test_dir" --baseline pixels --json | scores) | $($bin eval "$test_dir" -k 1 --baseline pixels --json | scores | cut -d' ' -f1) | | |"
  echo "| $set | bundled default | $($bin eval "$test_dir" --json | scores) | $($bin eval "$test_dir" -k 1 --json | scores | cut -d' ' -f1) | | |"
  for from in $starts; do
    out=$work/$set-$from
    # shellcheck disable=SC2086
    $bin train "data/$set/train" --out "$out" --from "$from" --minutes "$minutes" \
      --eval "$test_dir" --cache "$work/cache-$set" --json ${EXTRA:-} > "$out.json"
    probe=$(python3 -c '
import json, sys
d = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
p = d["probe"]; kept = p["kept"] or p["last"]
print("%d | %.3f → %.3f" % (d["steps"], p["before"]["survival_at_9"], kept["survival_at_9"]))' "$out.json")
    p1=$($bin eval "$test_dir" -k 1 --model "$out" --json | scores | cut -d' ' -f1)
    echo "| $set | $from + $minutes min train | $(scores < "$out.json") | $p1 | $probe |"
  done
done
echo "(models and JSON in $work)"
