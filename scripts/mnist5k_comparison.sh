#!/usr/bin/env bash
# Teacher, student alone and distilled student on mnist5k over 3 seeds, plus a 4-temperature sweep.
# Usage: bash scripts/mnist5k_comparison.sh [WORKDIR]   (about 30 minutes on 2 CPU cores)
# The teacher is trained first with the recipe the README's figures were measured with (30 epochs,
# no warm-up, BatchNorm statistics from 50 batches; the teacher stage now defaults to 20 epochs, 2 warm-up
# epochs, 10 batches); the sweeps reuse it.
set -euo pipefail
work=${1:-comparison}
mkdir -p "$work" && cd "$work"
distill teacher teacher=resnet18 dataset=mnist5k trainer.epochs=30 sched.warmup_epochs=0 trainer.bn_recalibrate_batches=50 \
    trainer.progress=off
distill train -m experiment=mnist5k_resnet18_mlp distill.alpha=0 seed=0,1,2 trainer.progress=off
distill train -m experiment=mnist5k_resnet18_mlp distill.temperature=1,2,4,8 seed=0,1,2 trainer.progress=off
for sweep in outputs/multirun/*/*; do distill report "$sweep"; done
