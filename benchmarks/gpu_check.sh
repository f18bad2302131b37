#!/usr/bin/env bash
# On a GPU machine, from the repository root: the gpu-marked tests, the forced-bf16 precision
# matrix, and the training headline (airbench, shipped recipe) at two widths. Under 10 minutes on
# one H200. Figures go to $OUT (default ./gpu_check_out): nvidia-smi.txt, tests.txt, headline-*.json.
# Needs the project's venv (or `pip install -e '.[dev]'`) and cifar10-train.tar.gz under
# shared/data/ or $IMGPIPE_CIFAR_ARCHIVE for the headline.
set -u
OUT="${OUT:-$PWD/gpu_check_out}"
export OUT
mkdir -p "$OUT"
export DVC_NO_ANALYTICS=1 TQDM_DISABLE=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY="${PYTHON:-python}"
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1 || echo "nvidia-smi failed" >> "$OUT/nvidia-smi.txt"
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')" | tee "$OUT/torch.txt"
# 1. the CUDA tests (~1 min), then the precision matrix with bf16 forced (CPU paths, ~1 min)
timeout 240 "$PY" -m pytest -n 0 -p no:cacheprovider -q -rs -m gpu tests/train/test_gpu.py 2>&1 | tee "$OUT/tests.txt"
IMGPIPE_FORCE_BF16=1 timeout 120 "$PY" -m pytest -n 0 -p no:cacheprovider -q tests/train/test_training_models.py \
  -k "precision_matrix or rgb" 2>&1 | tail -3 | tee -a "$OUT/tests.txt"
# 2. the headline: shipped defaults (width 16, 10 epochs) and airbench94's width 64
timeout 150 "$PY" benchmarks/gpu_headline.py 2>&1 | tee "$OUT/headline-default.txt"
timeout 150 "$PY" benchmarks/gpu_headline.py --width 64 2>&1 | tee "$OUT/headline-w64.txt"
echo "gpu_check: figures in $OUT"
