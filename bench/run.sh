#!/usr/bin/env bash
# Speed benchmark, candle against a PyTorch twin of the same model, on 2 threads.
# Installs PyTorch for the CPU into bench/.venv (first run: a large download), extracts
# CIFAR-10 train images if needed, then runs the benchmark.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x bench/.venv/bin/python ]; then
  python3 -m venv bench/.venv
  bench/.venv/bin/pip install -q torch numpy safetensors
fi
if [ ! -d data/cifar10/train ]; then
  mkdir -p data && tar -xf ../shared/data/cifar10-train.tar -C data
fi
export RAYON_NUM_THREADS=2
IMGSEARCH_PYTHON=bench/.venv/bin/python cargo run --release --example train_bench -- data/cifar10/train --torch "$@"
