"""Sweep the search projection's shape on tuning splits, leave-one-out.

    bench/projection_sweep.sh [MODEL_DIR]     # builds the indexes, then runs this

    python3 bench/projection_sweep.py FIT_INDEX EVAL_INDEX...

Every index must hold a model's unprojected embedding (the shell script indexes with a copy of
the model whose config has no `projection`). The projection is fitted as `imgsearch train` fits
it (src/model/projection.rs): PCA of the L2-normalised vectors of FIT_INDEX, the first `dim`
components, each divided by its eigenvalue to the power `power` (0: a rotation, 0.5: full
whitening). Each EVAL_INDEX is scored with exact cosine, P@9 and weighted kNN-200 (weight
exp(cos / 0.07)), each image's class its parent folder, itself left out.
"""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from query_expansion import read_index  # noqa: E402


def normalised(v):
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)


def scores(v, labels, k=9, knn=200, temperature=0.07):
    v = normalised(v)
    s = v @ v.T
    np.fill_diagonal(s, -np.inf)
    top = np.argpartition(-s, k, axis=1)[:, :k]
    precision = float((labels[top] == labels[:, None]).mean())
    knn = min(knn, len(v) - 1)
    near = np.argpartition(-s, knn, axis=1)[:, :knn]
    weights = np.exp(np.take_along_axis(s, near, 1) / temperature)
    classes, index = np.unique(labels, return_inverse=True)
    votes = np.zeros((len(v), len(classes)))
    np.add.at(votes, (np.repeat(np.arange(len(v)), knn), index[near].ravel()), weights.ravel())
    return precision, float((votes.argmax(1) == index).mean())


def fit(x):
    mean = x.mean(0)
    values, vectors = np.linalg.eigh(np.cov((x - mean).T))
    order = np.argsort(-values)
    values = np.maximum(values[order], 0) + values.max() * 1e-6 + 1e-12
    return mean, values, vectors[:, order]


def project(x, fitted, dim, power):
    mean, values, vectors = fitted
    return (x - mean) @ vectors[:, :dim] / values[:dim] ** power


def labelled(root):
    vectors, paths = read_index(Path(root))
    return normalised(vectors), np.array([Path(p).parent.name for p in paths])


def main():
    fit_vectors, _ = labelled(sys.argv[1])
    fitted = fit(fit_vectors)
    width = fit_vectors.shape[1]
    dims = [d for d in (64, 128, 256) if d <= width]
    columns = [("none", None, None)] + [
        (f"{d}, p {p}", d, p) for d in dims for p in (0.0, 0.25, 0.5)
    ]
    print(f"fitted on {len(fit_vectors)} vectors of {width} dims ({sys.argv[1]}); P@9 / kNN-200")
    print("| set | " + " | ".join(name for name, _, _ in columns) + " |")
    print("|---|" + "---|" * len(columns))
    for root in sys.argv[2:]:
        vectors, labels = labelled(root)
        row = []
        for _, dim, power in columns:
            v = vectors if dim is None else project(vectors, fitted, dim, power)
            row.append("%.4f / %.4f" % scores(v, labels))
        print(f"| {Path(root).name} | " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
