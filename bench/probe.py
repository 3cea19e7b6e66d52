#!/usr/bin/env python3
"""Replays the hostile probe of imgsearch: every command given what a careless user or an
attacker gives it (a damaged index and the repair it advises, decompression bombs, a file
swapped for a link, undo and moves that cannot finish, values out of range) and `serve` under
abuse (uploads over the limit, broken multipart, bad parameters, 600 silent connections).

Prints one row per probe: what was tried, what came of it, the exit code (or HTTP status),
and whether that is the expected answer; exits 1 if any row is not. Python's standard
library only, real images from tests/fixtures, about half a minute.

    IMGSEARCH_BIN=target/release/imgsearch bench/probe.py
"""

import concurrent.futures
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
import zlib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.abspath(os.environ.get("IMGSEARCH_BIN", os.path.join(ROOT, "target/release/imgsearch")))
FIXTURES = os.path.join(ROOT, "tests/fixtures")
BUDGET_MIB = 256
ROWS = []


def row(probe, outcome, code, good):
    ROWS.append((probe, outcome, str(code), "ok" if good else "FAIL"))


def run(*args):
    """Runs the binary; (exit code, stdout, stderr, None)."""
    done = subprocess.run([BIN, *args], capture_output=True)
    return done.returncode, done.stdout.decode(errors="replace"), done.stderr.decode(errors="replace"), None


def run_peak(*args):
    """Runs the binary; (exit code, stdout, stderr, its peak RSS in MiB, from wait4)."""
    proc = subprocess.Popen([BIN, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out = proc.stdout.read()
    err = proc.stderr.read()
    # Reaped here, not by subprocess: wait4 gives the kernel's accounting of this child alone.
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, out.decode(), err.decode(errors="replace"), usage.ru_maxrss / 1024


def one_line(text):
    """The error line of an output, else its last line."""
    lines = [l for l in text.strip().splitlines() if l.strip()]
    errors = [l for l in lines if l.startswith("error")]
    return (errors or lines or [""])[-1][:110]


def photos(into, classes=("cat", "ship", "frog", "truck"), n=10):
    for c in classes:
        os.makedirs(os.path.join(into, c), exist_ok=True)
        for f in sorted(os.listdir(os.path.join(FIXTURES, "test", c)))[:n]:
            shutil.copy(os.path.join(FIXTURES, "test", c, f), os.path.join(into, c, f))


def flip(path, at):
    data = bytearray(open(path, "rb").read())
    data[at] ^= 1
    open(path, "wb").write(data)


def entries(index):
    code, out, _, _ = run("verify", "--index", index, "--json")
    return json.loads(out.strip().splitlines()[-1])["entries"] if code == 0 else None


def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png(side):
    """A valid side × side black RGB PNG (a megabyte for 20000)."""
    z = zlib.compressobj(9)
    row_bytes = b"\0" * (1 + 3 * side)
    data = b"".join(z.compress(row_bytes) for _ in range(side)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


def gif(screen, frames):
    """A GIF with a screen × screen logical screen and `frames` frames covering it."""
    out = b"GIF89a" + struct.pack("<HH", screen, screen) + bytes([0x80, 0, 0, 0, 0, 0, 255, 255, 255])
    for _ in range(frames):
        out += bytes([0x2C]) + struct.pack("<HHHH", 0, 0, 1, 1) + b"\0" + bytes([2, 2, 0x44, 1, 0])
    return out + b";"


def webp(side):
    """A lossless WebP header saying side × side (no pixel data)."""
    bits = (side - 1) | ((side - 1) << 14)
    vp8l = b"\x2f" + struct.pack("<I", bits) + b"\0" * 8
    body = b"WEBP" + b"VP8L" + struct.pack("<I", len(vp8l)) + vp8l
    return b"RIFF" + struct.pack("<I", len(body)) + body


def bmp(side):
    """A 24-bit BMP header saying side × side, then a little of its pixels."""
    header = struct.pack("<2sIHHI", b"BM", 54 + 3 * side * side, 0, 0, 54)
    info = struct.pack("<IiiHHIIiiII", 40, side, side, 1, 24, 0, 3 * side * side, 0, 0, 0, 0)
    return header + info + b"\0" * 4096


def tiff(side):
    """A little-endian TIFF saying side × side RGB, one strip, no compression."""
    entries = [(256, 4, 1, side), (257, 4, 1, side), (258, 3, 1, 8), (259, 3, 1, 1),
               (262, 3, 1, 2), (273, 4, 1, 8), (277, 3, 1, 3), (278, 4, 1, side),
               (279, 4, 1, 3 * side * side)]
    ifd = struct.pack("<H", len(entries)) + b"".join(struct.pack("<HHII", *e) for e in entries) + b"\0\0\0\0"
    return b"II*\0" + struct.pack("<I", 8 + 4096) + b"\0" * 4096 + ifd


def cli_probes(tmp):
    lib = os.path.join(tmp, "photos")
    photos(lib)
    index = os.path.join(tmp, "index")
    run("index", lib, "--index", index, "--quiet")
    total = entries(index)

    # 1. One flipped byte in the manifest, then the repair `query` and `verify` advise.
    manifest = os.path.join(index, "manifest.json")
    text = open(manifest).read()
    flip(manifest, text.index('"committed_unix": ') + len('"committed_unix": ') + 3)
    code, out, _, _ = run("verify", "--index", index)
    row("verify: manifest with a flipped byte", one_line(out).split("checked: ")[-1][:60], code, code == 1 and "of 0 segments" not in out)
    code, _, err, _ = run("index", "--repair", "--index", index, "--quiet")
    after = entries(index)
    row("index --repair (no folder), flipped manifest", f"{after} of {total} entries kept", code, code == 0 and after == total)
    flip(manifest, open(manifest).read().index('"manifest":') + len('"manifest":'))
    before = sorted(os.listdir(index))
    code, _, err, _ = run("index", "--repair", "--index", index)
    kept = sorted(os.listdir(index)) == before
    row("index --repair (no folder), unreadable manifest", ("nothing deleted; " if kept else "FILES DELETED; ") + one_line(err).split(": ", 1)[-1][:60], code, code == 1 and kept)
    code, _, _, _ = run("index", "--repair", lib, "--index", index, "--quiet")
    row("index --repair FOLDER, unreadable manifest", f"{entries(index)} of {total} entries", code, code == 0 and entries(index) == total)

    # dups on a damaged index.
    vec = next(os.path.join(index, f) for f in sorted(os.listdir(index)) if f.endswith(".vec"))
    saved = open(vec, "rb").read()
    flip(vec, 64 + 1000)
    code, _, err, _ = run("dups", "--index", index, "--no-rotations")
    row("dups on an index with a flipped vector byte", one_line(err)[:70], code, code == 1)
    open(vec, "wb").write(saved)

    # 3. Decompression bombs: peak memory of one decode against the budget.
    for name, data in [("p.png", png(20000)), ("two-frames.gif", gif(16000, 2)), ("w.webp", webp(16383)),
                       ("b.bmp", bmp(20000)), ("t.tiff", tiff(20000))]:
        path = os.path.join(tmp, name)
        open(path, "wb").write(data)
        code, _, err, peak = run_peak("query", path, "--index", index)
        row(f"query {name} ({len(data) // 1024} KB)", f"peak {peak:.0f} MiB; " + one_line(err).split(": ", 2)[-1][:60], code,
            code == 1 and peak < BUDGET_MIB)

    # 4, 5. dups --move that cannot finish, and undo with a path taken.
    dup = os.path.join(tmp, "dup")
    photos(dup, ("ship",), 6)
    for sub in "abc":
        os.makedirs(os.path.join(dup, sub))
        shutil.copy(os.path.join(FIXTURES, "test/frog/0000.jpg"), os.path.join(dup, sub, "frog.jpg"))
    dindex = os.path.join(tmp, "dindex")
    run("index", dup, "--index", dindex, "--quiet")
    blocked = os.path.join(tmp, "blocked")
    os.makedirs(blocked)
    for sub in "abc":
        open(os.path.join(blocked, sub), "w").write("in the way")
    code, _, err, _ = run("dups", "--index", dindex, "--move", blocked)
    row("dups --move that stops midway", "..." + one_line(err)[one_line(err).find("stopped"):][:70], code, code == 1 and "--undo" in err and "stopped after moving" in err)
    dest = os.path.join(tmp, "dest")
    code, out, _, _ = run("dups", "--index", dindex, "--move", dest, "--json")
    log = json.loads(out.strip().splitlines()[-1])["log"]
    moved = [os.path.join(dup, s, "frog.jpg") for s in "abc" if not os.path.exists(os.path.join(dup, s, "frog.jpg"))]
    open(moved[0], "w").write("new")
    code, out, err, _ = run("dups", "--undo", log)
    left = os.path.exists(os.path.join(dest, os.path.relpath(moved[0], dup)))
    row("dups --undo with a moved file's path taken", one_line(out) + ("; kept in DEST" if left else "; LOST"), code, code == 1 and left)

    # 7. Values and inputs the command line must refuse or name.
    model = os.path.join(tmp, "m")
    q = os.path.join(lib, "cat", sorted(os.listdir(os.path.join(lib, "cat")))[0])
    for args in (["train", lib, "--out", model, "--batch", "8", "--epochs", "0"],
                 ["train", lib, "--out", model, "--batch", "8", "--lr", "NaN"],
                 ["query", q, "--index", index, "--min-score", "2"], ["query", q, "--index", index, "--min-score", "NaN"],
                 ["dups", "--index", index, "--copy-score", "5"]):
        code, _, err, _ = run(*args)
        row(" ".join(a if not a.startswith("/") else os.path.basename(a) for a in args), one_line(err)[:70], code, code == 2)
    code, _, err, _ = run("index", "/dev/null", "--index", os.path.join(tmp, "devnull"))
    row("index /dev/null", one_line(err)[:70], code, code == 1 and not os.path.exists(os.path.join(tmp, "devnull")))
    os.mkfifo(os.path.join(lib, "cat", "pipe.jpg"))
    code, _, err, _ = run("index", lib, "--index", index)
    row("index a folder holding a FIFO", next((l for l in err.splitlines() if "pipe.jpg" in l), "no message")[-60:], code,
        code == 0 and "FIFO" in err)
    code, _, err, _ = run("query", q, "--index", index, "--model", q)
    row("query --model IMAGE.jpg", os.path.basename(one_line(err))[:70], code, code == 1 and "config.json" not in err)
    bad = os.path.join(tmp, "zero-std")
    os.makedirs(bad)
    shutil.copy(os.path.join(ROOT, "assets/default/model.safetensors"), bad)
    config = json.load(open(os.path.join(ROOT, "assets/default/config.json")))
    config["preprocess"]["std"] = [0, 0, 0]
    json.dump(config, open(os.path.join(bad, "config.json"), "w"))
    fresh = os.path.join(tmp, "fresh")
    code, _, err, _ = run("index", lib, "--index", fresh, "--model", bad)
    row("index --model with std=[0,0,0]", one_line(err).split("/")[-1][:70], code, code == 1 and not os.path.exists(fresh))
    return lib, index


def http(port, request, timeout=30):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.sendall(request)
    data = b""
    while True:
        part = s.recv(65536)
        if not part:
            break
        data += part
    s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode(errors="replace").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (l.partition(":") for l in lines[1:])}
    if "chunked" in headers.get("transfer-encoding", ""):
        out, rest = b"", body
        while rest:
            size, _, rest = rest.partition(b"\r\n")
            n = int(size, 16)
            if n == 0:
                break
            out, rest = out + rest[:n], rest[n + 2:]
        body = out
    return status, headers, body


def req(method, target, body=b"", ctype=None):
    head = f"{method} {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {len(body)}\r\n"
    if ctype:
        head += f"Content-Type: {ctype}\r\n"
    return head.encode() + b"\r\n" + body


def multipart(data, name="image"):
    return (b"--b\r\nContent-Disposition: form-data; name=\"" + name.encode() + b"\"; filename=\"x.jpg\"\r\n\r\n"
            + data + b"\r\n--b--\r\n")


def serve_probes(lib, index):
    server = subprocess.Popen([BIN, "serve", "--index", index, "--bind", "127.0.0.1:0", "--json", "--max-upload", "20MB"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        url = json.loads(server.stdout.readline())["url"]
        port = int(url.rstrip("/").rsplit(":", 1)[1])

        def answer(probe, request, want, check=lambda message: True):
            status, headers, body = http(port, request)
            is_json = headers.get("content-type", "").startswith("application/json")
            message = json.loads(body).get("message", "") if is_json else body.decode(errors="replace")
            row(probe, f"{headers.get('content-type', '?')}: {message[:60]}", status,
                status == want and is_json and check(message))

        answer("upload over --max-upload (21 MB)", req("POST", "/api/search", multipart(b"\0" * (21 << 20)), "multipart/form-data; boundary=b"), 413)
        cut = b"--b\r\nContent-Disposition: form-data; name=\"image\"; filename=\"x.jpg\"\r\n\r\nabc"
        answer("multipart cut after 3 bytes of its file", req("POST", "/api/search", cut, "multipart/form-data; boundary=b"), 400,
               lambda m: "larger than" not in m)
        answer("multipart without a boundary", req("POST", "/api/search", multipart(b"x"), "multipart/form-data"), 400)
        answer("neighbours?k=-1", req("GET", "/api/images/1/neighbours?k=-1"), 400)
        answer("thumbnail?side=-1", req("GET", "/api/images/1/thumbnail?side=-1"), 400)
        answer("neighbours?min_score=2", req("GET", "/api/images/1/neighbours?min_score=2"), 400,
               lambda m: "min_score" in m)
        # Four decompression bombs uploaded at once: the server's peak memory.
        bomb = multipart(png(20000))
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda _: http(port, req("POST", "/api/search", bomb, "multipart/form-data; boundary=b")),
                                    range(4)))
        peak = next(int(l.split()[1]) for l in open(f"/proc/{server.pid}/status") if l.startswith("VmHWM")) / 1024
        row("4 uploads of a 20000x20000 PNG at once", f"serve peaked at {peak:.0f} MiB; "
            + json.loads(answers[0][2])["message"].split(": ")[-1][:50], answers[0][0],
            all(a[0] == 400 for a in answers) and peak < 2 * BUDGET_MIB)
        status, _, body = http(port, req("GET", "/api/dups"))
        text = body.decode()
        row("/api/dups copy score", "copy_score " + text.split('"copy_score":', 1)[-1].split(",", 1)[0], status,
            status == 200 and '"copy_score":0.93,' in text)

        # 2. An indexed file replaced by a link to /etc/passwd.
        victim = os.path.join(lib, "ship", sorted(os.listdir(os.path.join(lib, "ship")))[0])
        code, out, _, _ = run("query", victim, "--index", index, "-k", "1", "--json")
        image_id = json.loads(out.splitlines()[0])["results"][0]["id"]
        os.remove(victim)
        os.symlink("/etc/passwd", victim)
        status, _, body = http(port, req("GET", f"/api/images/{image_id}/original"))
        row("original of a file swapped for a link to /etc/passwd", body.decode(errors="replace")[:70], status,
            status == 404 and b"root:" not in body)

        # 600 connections that send nothing, over the cap of 512.
        silent = [socket.create_connection(("127.0.0.1", port)) for _ in range(600)]
        status, _, _ = http(port, req("GET", "/api/stats"), timeout=60)
        still = 0
        for s in silent:
            s.setblocking(False)
            try:
                still += 0 if s.recv(1) == b"" else 0
            except BlockingIOError:
                still += 1
            s.close()
        row("a client after 600 silent connections", f"answered; {600 - still} of them closed to make room (89 needed)",
            status, status == 200 and 600 - still <= 89)
    finally:
        server.kill()
        server.wait()


def main():
    if not os.path.exists(BIN):
        sys.exit(f"{BIN}: no such binary (cargo build --release, or set IMGSEARCH_BIN)")
    started = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        lib, index = cli_probes(tmp)
        serve_probes(lib, index)
    width = [max(len(r[i]) for r in ROWS + [("probe", "outcome", "exit", "")]) for i in range(4)]
    print(f"{'probe':<{width[0]}}  {'exit':>{width[2]}}  {'':<4}  outcome")
    for probe, outcome, code, verdict in ROWS:
        print(f"{probe:<{width[0]}}  {code:>{width[2]}}  {verdict:<4}  {outcome}")
    failed = sum(r[3] != "ok" for r in ROWS)
    print(f"{len(ROWS)} probes, {failed} not as expected, {time.time() - started:.0f} s")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
