#!/usr/bin/env bash
# Speed benchmark, candle against a PyTorch twin of the same model, on 2 threads.
# Installs PyTorch for the CPU into bench/.venv (first run: a large download), fetches
# CIFAR-10 train images with bench/data.sh if needed, then runs the benchmark.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x bench/.venv/bin/python ]; then
  python3 -m venv bench/.venv
  bench/.venv/bin/pip install -q torch numpy safetensors
fi
. bench/data.sh
extract cifar10/train
export RAYON_NUM_THREADS=2
IMGSEARCH_PYTHON=bench/.venv/bin/python cargo run --release --example train_bench -- data/cifar10/train --torch "$@"
