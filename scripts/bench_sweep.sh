#!/usr/bin/env bash
# A sweep's end-to-end time against its members' training epochs (issue 18's sweep target: <= 1.3x).
# The bench_speed workload: resnet50 teacher (trained 1 epoch here, once), mobilenet_v2, synthetic 1,024
# images at 32 px, 2 epochs, batch 64, 2 threads, the teacher cache on; 4 temperatures x 3 seeds.
#   bash scripts/bench_sweep.sh [WORK_DIR]
set -euo pipefail
work=$(realpath -m "${1:-outputs/bench_sweep}")
mkdir -p "$work"
if [ ! -f "$work/teacher/summary.json" ]; then
    distill teacher teacher=resnet50 dataset=synthetic trainer.epochs=1 trainer.threads=2 trainer.progress=off \
        hydra.run.dir="$work/teacher" > "$work/teacher.log" 2>&1
fi
rm -rf "$work/sweep"
start=$(date +%s.%N)
distill train -m teacher=resnet50 teacher.checkpoint="$work/teacher" dataset=synthetic student=mobilenet_v2 \
    optim.lr=0.01 optim.weight_decay=0 sched=none trainer.batch_size=64 trainer.threads=2 trainer.progress=off \
    trainer.bn_recalibrate=false trainer.epochs=2 distill.alpha=0.9 distill.temperature=1,2,4,8 seed=0,1,2 \
    paths.root="$work/runs" hydra.sweep.dir="$work/sweep" > "$work/sweep.log" 2>&1
end=$(date +%s.%N)
python - "$work/sweep" "$start" "$end" <<'PY'
import json, pathlib, sys
sweep = pathlib.Path(sys.argv[1])
epochs = sum(json.loads(line)["epoch_s"] for p in sweep.glob("*/metrics.jsonl") for line in p.read_text().splitlines())
wall = float(sys.argv[3]) - float(sys.argv[2])
members = len(list(sweep.glob("*/summary.json")))
print(f"{members} members: sweep {wall:.1f} s, members' epochs {epochs:.1f} s, ratio {wall / epochs:.2f}")
PY
