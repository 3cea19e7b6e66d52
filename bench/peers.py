"""The peers of imgsearch's index on the same vectors: hnswlib, faiss-cpu (IndexHNSWFlat) and usearch.

Called by `examples/index_bench.rs --peers PYTHON` (see bench/peers.sh), which writes the vectors
and the exact top-k; not meant to be run by hand, though it can be:

    python bench/peers.py DIR --recall 0.99 --threads 2 --m 16 --ef-construction 200

DIR holds base.npy (n x d float32, L2-normalised), queries.npy (q x d) and truth.npy (q x k int64,
row ids of the exact top-k by inner product). Each library builds an index with the same M and
ef_construction, then the smallest ef of a fixed ladder that reaches the recall target is taken,
and its single-thread and parallel QPS measured (batch calls, so no per-query Python overhead).
Cold query: a new process loads the saved index and answers one query; its time (load + query,
interpreter start and imports excluded) and peak RSS are measured. Prints one JSON object per
library on stdout.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

EF_LADDER = [10, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024]


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class Hnswlib:
    name = "hnswlib"

    def __init__(self, d, m, efc):
        import hnswlib

        self.lib, self.d, self.m, self.efc = hnswlib, d, m, efc

    def build(self, base, threads):
        self.index = self.lib.Index(space="ip", dim=self.d)
        self.index.init_index(max_elements=len(base), M=self.m, ef_construction=self.efc)
        self.index.set_num_threads(threads)
        self.index.add_items(base, np.arange(len(base)))

    def search(self, queries, k, ef, threads):
        self.index.set_ef(ef)
        self.index.set_num_threads(threads)
        return self.index.knn_query(queries, k=k)[0]

    def save(self, path):
        self.index.save_index(path)

    @staticmethod
    def cold(path, d, query, k, ef):
        import hnswlib

        index = hnswlib.Index(space="ip", dim=d)
        index.load_index(path)
        index.set_ef(ef)
        return index.knn_query(query, k=k)[0]


class Faiss:
    name = "faiss"

    def __init__(self, d, m, efc):
        import faiss

        self.lib, self.d, self.m, self.efc = faiss, d, m, efc

    def build(self, base, threads):
        self.lib.omp_set_num_threads(threads)
        self.index = self.lib.IndexHNSWFlat(self.d, self.m, self.lib.METRIC_INNER_PRODUCT)
        self.index.hnsw.efConstruction = self.efc
        self.index.add(base)

    def search(self, queries, k, ef, threads):
        self.lib.omp_set_num_threads(threads)
        self.index.hnsw.efSearch = ef
        return self.index.search(queries, k)[1]

    def save(self, path):
        self.lib.write_index(self.index, path)

    @staticmethod
    def cold(path, d, query, k, ef):
        import faiss

        index = faiss.read_index(path)
        index.hnsw.efSearch = ef
        return index.search(query, k)[1]


class Usearch:
    name = "usearch"

    def __init__(self, d, m, efc):
        from usearch.index import Index

        self.cls, self.d, self.m, self.efc = Index, d, m, efc

    def build(self, base, threads):
        self.index = self.cls(
            ndim=self.d, metric="ip", dtype="f32", connectivity=self.m, expansion_add=self.efc
        )
        self.index.add(np.arange(len(base)), base, threads=threads)

    def search(self, queries, k, ef, threads):
        self.index.expansion_search = ef
        return self.index.search(queries, k, threads=threads).keys

    def save(self, path):
        self.index.save(path)

    @staticmethod
    def cold(path, d, query, k, ef):
        from usearch.index import Index

        index = Index.restore(path, view=True)  # memory-mapped, like imgsearch
        index.expansion_search = ef
        return index.search(query, k, threads=1).keys


PEERS = {p.name: p for p in (Hnswlib, Faiss, Usearch)}


def recall(found, truth):
    k = truth.shape[1]
    hits = sum(len(set(f[:k].tolist()) & set(t.tolist())) for f, t in zip(found, truth))
    return hits / truth.size


def cold_child(args):
    """Runs in a fresh process: import, then time load + one query."""
    peer = PEERS[args.cold]
    query = np.load(os.path.join(args.dir, "queries.npy"))[:1]
    t = time.perf_counter()
    peer.cold(args.index_path, query.shape[1], query, args.k, args.ef)
    ms = (time.perf_counter() - t) * 1e3
    print(json.dumps({"cold_ms": ms, "cold_rss_mb": peak_rss_mb()}))


def run(args):
    base = np.load(os.path.join(args.dir, "base.npy"))
    queries = np.load(os.path.join(args.dir, "queries.npy"))
    truth = np.load(os.path.join(args.dir, "truth.npy"))
    n, d = base.shape
    k = truth.shape[1]
    for name in args.only.split(","):
        peer = PEERS[name](d, args.m, args.ef_construction)
        t = time.perf_counter()
        peer.build(base, args.threads)
        build_s = time.perf_counter() - t
        ladder = []
        chosen = None
        for ef in EF_LADDER:
            if ef < k:
                continue
            t = time.perf_counter()
            found = peer.search(queries, k, ef, 1)
            secs = time.perf_counter() - t
            r = recall(np.asarray(found), truth)
            ladder.append({"ef": ef, "recall": r, "qps1": len(queries) / secs})
            if r >= args.recall:
                chosen = ladder[-1]
                break
        if chosen is None:
            chosen = ladder[-1]
        # Repeat at the chosen ef for steadier figures: single thread, then all threads.
        reps = max(1, int(2000 / len(queries)))
        t = time.perf_counter()
        for _ in range(reps):
            peer.search(queries, k, chosen["ef"], 1)
        qps1 = reps * len(queries) / (time.perf_counter() - t)
        t = time.perf_counter()
        for _ in range(reps):
            peer.search(queries, k, chosen["ef"], args.threads)
        qpsn = reps * len(queries) / (time.perf_counter() - t)
        path = os.path.join(args.dir, f"{name}.index")
        peer.save(path)
        del peer
        child = subprocess.run(
            [sys.executable, __file__, args.dir, "--cold", name, "--index-path", path,
             "--k", str(k), "--ef", str(chosen["ef"])],
            check=True, capture_output=True, text=True,
        )
        cold = json.loads(child.stdout.strip().splitlines()[-1])
        os.remove(path)
        print(json.dumps({
            "name": name, "n": n, "dim": d, "build_s": build_s, "ef": chosen["ef"],
            "recall": chosen["recall"], "qps1": qps1, "qpsn": qpsn, **cold,
            "ladder": ladder,
        }), flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--recall", type=float, default=0.99)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--m", type=int, default=16)
    ap.add_argument("--ef-construction", type=int, default=200)
    ap.add_argument("--only", default="hnswlib,faiss,usearch")
    ap.add_argument("--cold")
    ap.add_argument("--index-path")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--ef", type=int, default=64)
    args = ap.parse_args()
    if args.cold:
        cold_child(args)
    else:
        run(args)


if __name__ == "__main__":
    main()
