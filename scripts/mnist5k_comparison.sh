#!/usr/bin/env bash
# Teacher, student alone and distilled student on mnist5k over 3 seeds, plus a 4-temperature sweep.
# Usage: bash scripts/mnist5k_comparison.sh [WORKDIR]   (about 30 minutes on 2 CPU cores)
# The first KD job trains the resnet18 teacher (teacher stage defaults); every later job reuses it.
set -euo pipefail
work=${1:-comparison}
mkdir -p "$work" && cd "$work"
distill train -m experiment=mnist5k_resnet18_mlp distill.alpha=0 seed=0,1,2 trainer.progress=off
distill train -m experiment=mnist5k_resnet18_mlp distill.temperature=1,2,4,8 seed=0,1,2 trainer.progress=off
for sweep in outputs/multirun/*/*; do distill report "$sweep"; done
