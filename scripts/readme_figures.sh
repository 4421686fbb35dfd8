#!/usr/bin/env bash
# Regenerates the README's figures, scripts/figures/sweep.png and scripts/figures/compare.png, from
# small real runs on digits: a lenet5 teacher (the teacher recipe, 20 epochs), a 128-unit MLP student
# trained alone (alpha=0) and distilled at T=1,2,4,8 (alpha=0.5), 3 seeds each, 30 epochs; then
# `distill compare` of the teacher's pruned, low-rank and int8 versions beside a distilled student.
#
#   bash scripts/readme_figures.sh [WORK_DIR]     # default: outputs/readme_figures/<date>_<time>
#
# WORK_DIR must not exist yet: the student-alone line is every matching alpha=0 run under it.
# 20 runs; 1 min 30 s on this project's 2-core CPU, 8 min 52 s while other jobs shared the cores.
set -euo pipefail
figures=$(cd "$(dirname "$0")" && pwd)/figures
work=${1:-outputs/readme_figures/$(date +%Y-%m-%d_%H-%M-%S)}
if [ -e "$work" ]; then
  echo "readme_figures.sh: $work exists; give a new folder" >&2
  exit 2
fi
mkdir -p "$work" "$figures"
student=(dataset=digits student=mlp 'student.kwargs.hidden=[128]' teacher=lenet5 "teacher.checkpoint=$work/teacher")

distill teacher teacher=lenet5 dataset=digits "paths.root=$work" "hydra.run.dir=$work/teacher"
distill train -m "${student[@]}" "paths.root=$work" distill.alpha=0 seed=0,1,2 "hydra.sweep.dir=$work/alone"
distill train -m "${student[@]}" "paths.root=$work" distill.temperature=1,2,4,8 seed=0,1,2 "hydra.sweep.dir=$work/sweep"
distill train "${student[@]}" "paths.root=$work" "hydra.run.dir=$work/student"   # T=4, seed 0: the compared student
distill compare "teacher.checkpoint=$work/teacher" "students=[$work/student]" "hydra.run.dir=$work/compare"

cp "$work/sweep/sweep.png" "$figures/sweep.png"
cp "$work/compare/compare.png" "$figures/compare.png"
echo "wrote $figures/sweep.png and $figures/compare.png (runs in $work)"
