#!/usr/bin/env bash
# The checks a machine with CUDA runs (under 8 minutes on one GPU): the gpu-marked tests (bf16/fp16 AMP with
# the GradScaler, channels-last, the automatic teacher precision, a student distilled on CUDA as on the CPU)
# and a 224-px KD benchmark (resnet50 -> mobilenet_v2 on a generated 2,000-image folder, 8 workers), printing
# images/s for distill and for a hand-written loop; with two GPUs or more, a 2-rank DDP run on NCCL. On a machine without CUDA it says so, runs the parts
# that need none (the gpu tests' collection, the folder generator), and exits 0.
#   bash scripts/gpu_check.sh [WORK_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-$(mktemp -d)}
python - <<'PY'
import torch
print("torch", torch.__version__, "| CUDA:", torch.cuda.is_available(),
      *( [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else [] ))
PY
python -m pytest -q -m gpu tests/ -p no:cacheprovider   # skipped, with the reason, without CUDA
if ! python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    python scripts/make_image_folder.py "$work/folder" --images 30 --glyphs digits >/dev/null
    echo "gpu_check: no CUDA device here; the gpu tests were skipped and the 224-px benchmark needs one (the folder"
    echo "generator ran: $work/folder). On a CPU, run scripts/bench_kd_epoch.py directly (minutes per epoch)."
    exit 0
fi
if [ "$(python -c 'import torch; print(torch.cuda.device_count())')" -ge 2 ]; then
    # DistributedDataParallel on NCCL: 2 ranks, one GPU each (the teacher must exist before a distributed run)
    distill teacher teacher=lenet5 dataset=digits trainer.epochs=1 trainer.device=cuda paths.root="$work/ddp"
    torchrun --standalone --nproc_per_node=2 -m distill train teacher=lenet5 student=lenet5 dataset=digits \
        trainer.epochs=2 trainer.device=cuda paths.root="$work/ddp"
fi
python scripts/make_image_folder.py "$work/folder" --images 2000
python scripts/bench_kd_epoch.py --folder "$work/folder" --teacher resnet50 --student mobilenet_v2 --workers 8 \
    --epochs 2 --device cuda
echo "gpu_check: ok"
