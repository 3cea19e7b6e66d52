"""Cold `imgsearch query` (a new process each time) on each index given, against a 1-image index
so that the model's own cost (load + forward pass) can be subtracted.

    python3 bench/cold_query.py IMAGE INDEX... [--runs 15] [--bin target/release/imgsearch]

For each index: median and min wall time of `imgsearch query IMAGE -k 10 --index INDEX --json`
over the runs, and the process's peak RSS (from wait4). The baseline index is built in a
temporary folder from IMAGE alone. Page cache warm (the index files are not evicted).
"""

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time


def run_once(argv):
    t = time.perf_counter()
    pid = os.spawnv(os.P_NOWAIT, argv[0], argv)
    _, status, usage = os.wait4(pid, 0)
    wall = (time.perf_counter() - t) * 1e3
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(argv)}")
    return wall, usage.ru_maxrss / 1024.0


def measure(binary, image, index, runs):
    argv = [binary, "query", image, "-k", "10", "--index", index, "--json", "--quiet"]
    with open(os.devnull, "w") as null:
        subprocess.run(argv, check=True, stdout=null)  # warm the page cache once
    walls, rss = [], []
    for _ in range(runs):
        fd = os.dup(1)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        try:
            w, r = run_once(argv)
        finally:
            os.dup2(fd, 1)
            os.close(fd)
            os.close(devnull)
        walls.append(w)
        rss.append(r)
    return statistics.median(walls), min(walls), max(rss)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("image")
    ap.add_argument("indexes", nargs="+")
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--bin", default="target/release/imgsearch")
    args = ap.parse_args()
    binary = os.path.abspath(args.bin)
    tmp = tempfile.mkdtemp()
    try:
        lib = os.path.join(tmp, "lib")
        os.mkdir(lib)
        shutil.copy(args.image, lib)
        base_index = os.path.join(tmp, "index")
        subprocess.run([binary, "index", lib, "--index", base_index, "--quiet"], check=True)
        base = measure(binary, args.image, base_index, args.runs)
        print(f"| index | median ms | min ms | peak RSS MB | median ms beyond the 1-image index |")
        print("|---|---|---|---|---|")
        print(f"| 1 image (model only) | {base[0]:.1f} | {base[1]:.1f} | {base[2]:.0f} | 0 |")
        for index in args.indexes:
            m = measure(binary, args.image, index, args.runs)
            print(f"| {index} | {m[0]:.1f} | {m[1]:.1f} | {m[2]:.0f} | {m[0] - base[0]:.1f} |")
    finally:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
