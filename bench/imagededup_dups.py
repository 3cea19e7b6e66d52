"""imagededup's hash methods on a folder, for examples/dups_bench.rs.

    python bench/imagededup_dups.py DIR [--methods PHash,DHash,WHash,AHash] [--thresholds 10]

For each method the folder's images are hashed once (timed), then each Hamming-distance
threshold is applied (timed). Prints one JSON line per (method, threshold):
{"method", "threshold", "encode_s", "find_s", "pairs": [[PATH, PATH], ...]} with absolute paths.
imagededup's CNN method is not run: it downloads MobileNetV3 weights at run time, which needs network access.
Its package imports that method (and so downloads the weights) on `import imagededup.methods`;
the hash methods are imported from their own module, with the package's __init__ left unrun.
"""

import argparse
import json
import os
import sys
import time


def hash_methods():
    """imagededup.methods.hashing without imagededup.methods' __init__ (which imports CNN)."""
    import importlib
    import types

    import imagededup

    package = types.ModuleType("imagededup.methods")
    package.__path__ = [os.path.join(os.path.dirname(imagededup.__file__), "methods")]
    sys.modules["imagededup.methods"] = package
    try:
        import torch  # noqa: F401  (imagededup.utils imports its CNN model class)
    except ImportError:
        # The hash methods never touch the CNN model class that imagededup.utils imports, and
        # that class needs torch: without torch (`pip install --no-deps imagededup` and its
        # other requirements), a stand-in lets the hash methods load.
        models = types.ModuleType("imagededup.utils.models")
        models.CustomModel = None
        sys.modules["imagededup.utils.models"] = models
    return importlib.import_module("imagededup.methods.hashing")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--methods", default="PHash,DHash,WHash,AHash")
    ap.add_argument("--thresholds", default="10")
    args = ap.parse_args()
    methods = hash_methods()

    root = os.path.abspath(args.dir)
    for name in args.methods.split(","):
        hasher = getattr(methods, name)(verbose=False)
        started = time.perf_counter()
        encodings = hasher.encode_images(image_dir=root, recursive=True)
        encode_s = time.perf_counter() - started
        print(f"{name}: {len(encodings)} images hashed in {encode_s:.1f} s", file=sys.stderr, flush=True)
        for threshold in [int(t) for t in args.thresholds.split(",")]:
            started = time.perf_counter()
            found = hasher.find_duplicates(
                encoding_map=encodings, max_distance_threshold=threshold
            )
            find_s = time.perf_counter() - started
            pairs = set()
            for a, dups in found.items():
                for b in dups:
                    pa, pb = os.path.join(root, a), os.path.join(root, b)
                    pairs.add((min(pa, pb), max(pa, pb)))
            print(
                json.dumps(
                    {
                        "method": name,
                        "threshold": threshold,
                        "images": len(encodings),
                        "encode_s": encode_s,
                        "find_s": find_s,
                        "pairs": sorted(pairs),
                    }
                ),
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
