#!/usr/bin/env bash
# The GPU check, in one call of at most 5 minutes on a machine with a CUDA GPU:
#   1. every stage on a tiny built-in dataset with runtime.device: cuda (dvc repro where dvc is
#      installed, else the same commands in order: bench/stages_in_order.py);
#   2. training-step speed of both models at 224 and 512 px, fp32 and bf16 autocast, with and
#      without torch.compile (bench/precision.py), in images per second.
# Usage, in the repository root:  bash bench/gpu_check.sh [OUT_DIR]    (figures go to docs/benchmarks.md)
# A rehearsal of the script itself on a CPU: DEVICE=cpu STEPS=2 SIZES=64 bash bench/gpu_check.sh
set -euo pipefail
out=${1:-${OUT:-/tmp/gpu_check}}
mkdir -p "$out"
py=${PYTHON:-python3}
device=${DEVICE:-cuda}
repo=$(pwd)
export PYTHONUNBUFFERED=1
if [ "$device" = cuda ]; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
    "$py" -c "import torch; assert torch.cuda.is_available(), 'no CUDA GPU visible'; print('torch', torch.__version__, torch.cuda.get_device_name())"
fi

work=$(mktemp -d)
cp -r seglib stages bench dvc.yaml params.yaml "$work/"
cd "$work"
"$py" -m seglib synth --out data --subjects 8 --slices 2 --seed 0
"$py" -c "from bench.scratch import set_params; set_params('.', {
    'data.val_fraction': 0.2, 'data.test_fraction': 0.2, 'preprocess.base_size': [64, 64],
    'train.epochs': 2, 'runtime.device': '$device', 'models.unet.batch_size': 4, 'models.deeplabv3.batch_size': 4,
    'models.deeplabv3.precision': 'bf16', 'compare.bootstrap': 200, 'compare.permutations': 200})"
start=$SECONDS
if command -v dvc >/dev/null; then
    git init -q && dvc init -q && dvc repro 2>&1 | tee "$out/pipeline.log"
else
    "$py" -m bench.stages_in_order 2>&1 | tee "$out/pipeline.log"
fi
echo "tiny pipeline on $device: $((SECONDS - start)) s" | tee -a "$out/pipeline.log"
cp metrics/eval.json "$out/tiny_eval.json"

cd "$repo"
"$py" -m bench.precision --device "$device" --models unet deeplabv3 --sizes ${SIZES:-224 512} --batch 8 --steps ${STEPS:-200} \
    --precisions fp32 bf16 --compile --budget-s 150 2>&1 | tee "$out/speed.txt"
