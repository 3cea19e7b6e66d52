"""Scores `imgsearch query -k 201 --json` output as a new user would: P@9 and similarity-weighted
kNN-200 (vote weight exp(cos / 0.07)), class = parent folder, the query itself excluded.

    python3 bench/score_query.py answers.jsonl
"""
import json, math, sys, os
p9 = []; knn = []
for line in open(sys.argv[1]):
    o = json.loads(line)
    if o.get("type", "query") != "query":
        continue
    q = os.path.abspath(o["query"]); cls = os.path.basename(os.path.dirname(q))
    res = [r for r in o["results"] if os.path.abspath(r["path"]) != q]
    p9.append(sum(os.path.basename(os.path.dirname(r["path"])) == cls for r in res[:9]) / 9)
    votes = {}
    for r in res[:200]:
        c = os.path.basename(os.path.dirname(r["path"])); votes[c] = votes.get(c, 0) + math.exp(r["score"] / 0.07)
    knn.append(max(votes, key=votes.get) == cls)
print(f"queries {len(p9)}  P@9 {sum(p9)/len(p9):.4f}  kNN-200 {sum(knn)/len(knn):.4f}")
