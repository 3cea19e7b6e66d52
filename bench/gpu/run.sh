#!/usr/bin/env bash
# The GPU run, on the machine with the GPU, from a folder packed by bench/gpu/pack.sh:
#     bash bench/gpu/run.sh target/gpu-pack
# Prints the device; times the default recipe's training step (batch 64, 128, 256) and
# embedding (batch 256, 1024, 4096) on CUDA, and the same binary's CPU figures; checks that one
# CUDA step's losses match the CPU's from the same weights and batch; then trains the default
# recipe from scratch on CIFAR-10 train for the minutes left (MINUTES, default 5) and writes the
# model and every log to $OUT. Each part's output is kept even when a later part fails.
set -uo pipefail
pack=$(cd "${1:-target/gpu-pack}" && pwd)
out=${OUT:-$PWD/gpu-out}
minutes=${MINUTES:-5}
# DEVICES=cpu rehearses the script on a machine without a GPU.
devices=${DEVICES:-cuda cpu}
train_device=${devices%% *}
mkdir -p "$out"
work=$(mktemp -d)
log() { echo "== $(date +%T) $*" | tee -a "$out/run.log"; }

log "machine"
{ nvidia-smi; nvcc --version; lscpu | grep -E 'Model name|^CPU\(s\)'; } >>"$out/run.log" 2>&1
# The binary loads the driver and cuBLAS/cuRAND at run time: make the toolkit's libraries findable.
for dir in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib /usr/local/cuda-*/lib64; do
  [ -d "$dir" ] && export LD_LIBRARY_PATH=$dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
done
{ echo "LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}"; ldconfig -p | grep -E 'libcuda\.|cublas|curand|nvrtc'; } >>"$out/run.log" 2>&1
xz -dc "$pack/imgsearch.xz" >"$work/imgsearch" && chmod +x "$work/imgsearch"
bin=$work/imgsearch
"$bin" --version | tee -a "$out/run.log"
mkdir -p "$work/cifar" && xz -dc "$pack/cifar10-train.tar.xz" | tar -C "$work/cifar" -xf -
data=$work/cifar/train
log "$(find "$data" -type f | wc -l) training images"

log "one step, CPU against CUDA, same seed (same weights, same batch)"
for device in cpu cuda; do
  [[ " $devices " == *" $device "* ]] || continue
  "$bin" --device "$device" train "$data" --out "$work/step-$device" --from scratch --epochs 1 \
    --limit 64 --batch 64 --seed 0 --json >"$out/step-$device.json" 2>>"$out/run.log"
done
[ -s "$out/step-cuda.json" ] && python3 - "$out/step-cpu.json" "$out/step-cuda.json" <<'PY' 2>&1 | tee -a "$out/run.log"
import json, sys
def losses(path):
    lines = [json.loads(l) for l in open(path) if l.strip()]
    return [l for l in lines if l.get("type") == "summary"][-1]["last_losses"]
cpu, cuda = losses(sys.argv[1]), losses(sys.argv[2])
worst = max(abs(cpu[k] - cuda[k]) / max(1e-6, abs(cpu[k])) for k in cpu)
print("cpu ", cpu); print("cuda", cuda)
print(f"largest relative difference {worst:.2e}:", "MATCH" if worst < 1e-3 else "DIFFERENT")
PY

log "training speed (images/s, one epoch of 8,192 images after the first epoch's warm-up)"
for device in $devices; do
  for batch in 64 128 256; do
    "$bin" --device "$device" train "$data" --out "$work/speed-$device-$batch" --from scratch \
      --epochs 2 --limit 8192 --batch "$batch" --seed 0 --json >"$out/train-$device-b$batch.json" 2>>"$out/run.log"
    python3 -c 'import json,sys; s=[json.loads(l) for l in open(sys.argv[1]) if l.strip()][-1]; print(sys.argv[2], "batch", sys.argv[3], "epochs images/s", s["epoch_images_per_second"])' \
      "$out/train-$device-b$batch.json" "$device" "$batch" 2>&1 | tee -a "$out/run.log"
  done
done

log "embedding speed (imgsearch index of 20,000 images, images/s)"
mkdir -p "$work/embed"
find "$data" -type f | sort | head -n 20000 >"$work/embed.list"
while read -r f; do ln -s "$f" "$work/embed/$(basename "$(dirname "$f")")-$(basename "$f")"; done <"$work/embed.list"
for device in $devices; do
  for batch in 256 1024 4096; do
    rm -rf "$work/index"
    "$bin" --device "$device" index -L "$work/embed" --index "$work/index" --batch "$batch" --json \
      >"$out/index-$device-b$batch.json" 2>>"$out/run.log"
    python3 -c 'import json,sys; s=[json.loads(l) for l in open(sys.argv[1]) if l.strip()][-1]; print(sys.argv[2], "batch", sys.argv[3], round(s["total"] / s["seconds"]), "images/s")' \
      "$out/index-$device-b$batch.json" "$device" "$batch" 2>&1 | tee -a "$out/run.log"
  done
done

log "training the default recipe from scratch for $minutes minutes on $train_device"
"$bin" --device "$train_device" train "$data" --out "$work/model" --from scratch --minutes "$minutes" --seed 0 \
  --json >"$out/train-long.json" 2>>"$out/run.log"
# The model and its checkpoint (for --resume), not the 150 MB pixel cache.
mkdir -p "$out/model"
find "$work/model" -maxdepth 1 -type f ! -name '*.cache' -exec cp {} "$out/model/" \;
ls -l "$out/model" | tee -a "$out/run.log"
tail -n1 "$out/train-long.json" | tee -a "$out/run.log"
log "done"
