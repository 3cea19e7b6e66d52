"""Query expansion and database-side augmentation on an imgsearch index, leave-one-out.

    imgsearch index data/cifar10/test --index I
    bench/.venv-peers/bin/python bench/query_expansion.py I     # any Python with numpy

Reads the index's vectors and paths straight from its segment files (format: crates/index/src/segment.rs),
takes each image's class from its parent folder, and scores exact-cosine P@9 and weighted kNN-200
(weight exp(cos / 0.07)), every image queried with itself left out:
- plain: the embeddings as indexed;
- QE: each query replaced by the normalised sum of itself and its n nearest neighbours, each
  weighted by its cosine^alpha (alpha = 0: the plain average), searched among the plain vectors;
- DBA+QE: every vector, query and database alike, replaced that way.
"""
import json
import struct
import sys
from pathlib import Path

import numpy as np


def read_index(root):
    manifest = json.loads((root / "manifest.json").read_text())["manifest"]
    vectors, paths = [], []
    for seg in manifest["segments"]:
        if seg["deleted"]:
            sys.exit("segments with deleted entries are not supported; index into a fresh folder")
        raw = (root / seg["vec_file"]).read_bytes()
        assert raw[:8] == b"IMGS-VEC", seg["vec_file"]
        dim, count = struct.unpack_from("<IQ", raw, 12)
        vectors.append(np.frombuffer(raw, "<f4", count * dim, 64).reshape(count, dim))
        ent = (root / seg["entries_file"]).read_bytes()
        assert ent[:8] == b"IMGS-ENT", seg["entries_file"]
        (n,) = struct.unpack_from("<Q", ent, 16)
        base = 64 + 32 * n
        for i in range(n):
            _, _, offset, length = struct.unpack_from("<QqQI", ent, 64 + 32 * i)
            paths.append(ent[base + offset : base + offset + length].decode())
    return np.concatenate(vectors).astype(np.float32), paths


def normalise(v):
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)


def top(sim, k):
    idx = np.argpartition(-sim, k, axis=1)[:, :k]
    scores = np.take_along_axis(sim, idx, 1)
    order = np.argsort(-scores, 1)
    return np.take_along_axis(idx, order, 1), np.take_along_axis(scores, order, 1)


def leave_one_out(a, b):
    sim = a @ b.T
    np.fill_diagonal(sim, -np.inf)
    return sim


def score(sim, y, classes, k=9, knn=200):
    idx, scores = top(sim, knn)
    near = y[idx]
    precision = (near[:, :k] == y[:, None]).mean()
    weight = np.exp(scores / 0.07)
    votes = np.stack([(weight * (near == c)).sum(1) for c in range(classes)], 1)
    return precision, (votes.argmax(1) == y).mean()


def expand(v, plain_sim, n, alpha):
    idx, scores = top(plain_sim, n)
    weight = np.maximum(scores, 0) ** alpha
    return normalise(v + (weight[:, :, None] * v[idx]).sum(1))


def main():
    vectors, paths = read_index(Path(sys.argv[1]))
    names = [Path(p).parent.name for p in paths]
    classes = sorted(set(names))
    y = np.array([classes.index(c) for c in names])
    v = normalise(vectors)
    plain = leave_one_out(v, v)
    print(f"{len(v)} images, {len(classes)} classes")
    print("plain         P@9 %.4f  kNN-200 %.4f" % score(plain, y, len(classes)))
    for n in (1, 2, 3, 5, 10):
        for alpha in (0.0, 1.0, 3.0):
            q = expand(v, plain, n, alpha)
            qe = score(leave_one_out(q, v), y, len(classes))
            dba = score(leave_one_out(q, q), y, len(classes))
            print(
                f"n {n:2} alpha {alpha:.0f}  QE P@9 {qe[0]:.4f} kNN-200 {qe[1]:.4f}"
                f"   DBA+QE P@9 {dba[0]:.4f} kNN-200 {dba[1]:.4f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
