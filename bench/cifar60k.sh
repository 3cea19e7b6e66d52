#!/usr/bin/env bash
# The index's acceptance check, scripted as a new user would run it, on the 60,000 CIFAR-10 images:
#
#  1. index 59,900 of them                                  -> total 59,900
#  2. add the other 100, delete 100, re-index               -> added 100, removed 100, total 59,900
#  3. 200 queries -k 10 (the 100 deleted images among them), default search and --exact:
#     no deleted path is ever returned; recall@10 of the default against --exact >= 0.99;
#     the graph is used (a segment of the index has one)
#  4. a fresh index run killed with kill -9 after 45 s, then re-run
#                                                           -> total 59,900, embedded < 59,900
#
# Prints each figure and one PASS/FAIL line per check; exits non-zero if any check fails.
# Usage: bench/cifar60k.sh [KILL_AFTER_SECONDS]   (fetches CIFAR-10 into data/ with bench/data.sh if it is missing)
set -euo pipefail
cd "$(dirname "$0")/.."
KILL_AFTER=${1:-45}

. bench/data.sh
extract cifar10
DATA=$(cd data/cifar10 && pwd -P)

echo "== build"
cargo build --release --quiet --bin imgsearch
BIN=$PWD/target/release/imgsearch

WORK=$(mktemp -d)
child=""
cleanup() {
  if [ -n "$child" ]; then kill -9 "$child" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT
LIB=$WORK/library
mkdir -p "$LIB" "$WORK/held" "$WORK/deleted"
# The library: a tree of symlinks to the 60,000 images (imgsearch follows links).
cp -rs "$DATA/train" "$LIB/train"
cp -rs "$DATA/test" "$LIB/test"
(cd "$LIB" && find . -name '*.jpg' | LC_ALL=C sort) > "$WORK/all.txt"
echo "images found: $(wc -l < "$WORK/all.txt")"
# 100 held back (added later), 100 to delete later, 100 more queries: fixed strides, no overlap.
awk 'NR % 600 == 1' "$WORK/all.txt" > "$WORK/held.txt"
awk 'NR % 600 == 301' "$WORK/all.txt" > "$WORK/delete.txt"
awk 'NR % 600 == 151' "$WORK/all.txt" > "$WORK/kept-queries.txt"
move() { # move the files listed in $1 from $2 to $3, keeping relative paths
  while read -r f; do mkdir -p "$3/$(dirname "$f")" && mv "$2/$f" "$3/$f"; done < "$1"
}
move "$WORK/held.txt" "$LIB" "$WORK/held"

failures=0
check() { # check NAME 1|0
  if [ "$2" = 1 ]; then echo "PASS $1"; else echo "FAIL $1"; failures=$((failures + 1)); fi
}
field() { python3 -c 'import json,sys; print(json.loads(sys.stdin.read().strip().splitlines()[-1])[sys.argv[1]])' "$1"; }

INDEX=$WORK/index
echo "== 1. index 59,900 images"
t0=$(date +%s.%N)
out=$("$BIN" index "$LIB" --index "$INDEX" --json)
echo "$out"
echo "wall: $(python3 -c "print(round($(date +%s.%N) - $t0, 1))") s"
check "first index: total 59900 (got $(echo "$out" | field total))" \
  "$([ "$(echo "$out" | field total)" = 59900 ] && echo 1 || echo 0)"

echo "== 2. add 100, delete 100, re-index"
move "$WORK/held.txt" "$WORK/held" "$LIB"
move "$WORK/delete.txt" "$LIB" "$WORK/deleted"
out=$("$BIN" index "$LIB" --index "$INDEX" --json)
echo "$out"
added=$(echo "$out" | field added); removed=$(echo "$out" | field removed); total=$(echo "$out" | field total)
check "re-index: added 100 (got $added)" "$([ "$added" = 100 ] && echo 1 || echo 0)"
check "re-index: removed 100 (got $removed)" "$([ "$removed" = 100 ] && echo 1 || echo 0)"
check "re-index: total 59900 (got $total)" "$([ "$total" = 59900 ] && echo 1 || echo 0)"

echo "== 3. 200 queries -k 10: default and --exact"
python3 - "$INDEX/manifest.json" <<'EOF'
import json, sys
text = open(sys.argv[1]).read()
body = json.loads(text)["manifest"]
for s in body["segments"]:
    print(f"segment {s['id']}: {s['count'] - s['deleted']} live of {s['count']}, graph: {s.get('graph_file')}")
EOF
graphed=$(python3 -c '
import json, sys
m = json.loads(open(sys.argv[1]).read())["manifest"]
print(max([s["count"] - s["deleted"] for s in m["segments"] if s.get("graph_file")] or [0]))' "$INDEX/manifest.json")
check "graph used: largest graphed segment has $graphed live vectors (threshold 5000)" \
  "$([ "$graphed" -ge 5000 ] && echo 1 || echo 0)"
# Queries: the 100 deleted images (still on disk, outside the library) and 100 indexed ones.
{ sed "s|^\./|$WORK/deleted/|" "$WORK/delete.txt"; sed "s|^\./|$LIB/|" "$WORK/kept-queries.txt"; } > "$WORK/queries.txt"
t0=$(date +%s.%N)
xargs -d '\n' "$BIN" query -k 10 --index "$INDEX" --json < "$WORK/queries.txt" > "$WORK/default.jsonl"
t1=$(date +%s.%N)
xargs -d '\n' "$BIN" query -k 10 --index "$INDEX" --json --exact < "$WORK/queries.txt" > "$WORK/exact.jsonl"
t2=$(date +%s.%N)
echo "wall (one process each, model load and 200 embeddings included): default $(python3 -c "print(round($t1 - $t0, 2))") s, --exact $(python3 -c "print(round($t2 - $t1, 2))") s"
read -r recall leaked nq selves < <(python3 - "$WORK" "$LIB" <<'EOF'
import json, os, sys
work, lib = sys.argv[1], sys.argv[2]
def load(name):
    records = map(json.loads, open(os.path.join(work, name)))
    return {r["query"]: [h["path"] for h in r["results"]] for r in records if r.get("type") == "query"}
approx, exact = load("default.jsonl"), load("exact.jsonl")
deleted = {os.path.join(lib, l.strip()[2:]) for l in open(os.path.join(work, "delete.txt"))}
found = sum(len(set(approx[q]) & set(exact[q])) for q in exact)
wanted = sum(len(exact[q]) for q in exact)
leaked = sum(p in deleted for hits in list(approx.values()) + list(exact.values()) for p in hits)
# An indexed image finds itself first: shows that result paths match the library's paths.
selves = sum(bool(approx[q]) and approx[q][0] == q for q in approx if q.startswith(lib + "/"))
print(f"{found / max(wanted, 1):.4f} {leaked} {len(exact)} {selves}")
EOF
)
echo "queries answered: $nq; recall@10 default vs --exact: $recall; deleted paths returned: $leaked"
echo "indexed queries whose first hit is themselves: $selves of 100"
check "200 queries answered (got $nq)" "$([ "$nq" = 200 ] && echo 1 || echo 0)"
check "indexed queries find themselves first (got $selves of 100)" "$([ "$selves" = 100 ] && echo 1 || echo 0)"
check "no deleted path returned (got $leaked)" "$([ "$leaked" = 0 ] && echo 1 || echo 0)"
check "recall@10 >= 0.99 (got $recall)" "$(python3 -c "print(int($recall >= 0.99))")"

echo "== 4. kill -9 after $KILL_AFTER s, then re-run (fresh index)"
INDEX2=$WORK/index2
"$BIN" index "$LIB" --index "$INDEX2" --json > "$WORK/killed.json" 2>/dev/null &
child=$!
sleep "$KILL_AFTER"
kill -9 "$child" 2>/dev/null && echo "killed pid $child after $KILL_AFTER s" || echo "run had already ended"
wait "$child" 2>/dev/null || true
child=""
out=$("$BIN" index "$LIB" --index "$INDEX2" --json)
echo "$out"
added=$(echo "$out" | field added); total=$(echo "$out" | field total)
echo "kept by the killed run: $((59900 - added)) images"
check "after kill -9: total 59900 (got $total)" "$([ "$total" = 59900 ] && echo 1 || echo 0)"
check "after kill -9: re-run embedded fewer than 59900 (got $added)" \
  "$([ "$added" -lt 59900 ] && echo 1 || echo 0)"

echo "== $failures check(s) failed"
[ "$failures" = 0 ]
