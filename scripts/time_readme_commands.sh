#!/usr/bin/env bash
# Times the README's main commands from an empty folder (the teacher's first-time training included).
# Usage: bash scripts/time_readme_commands.sh [WORKDIR]
set -euo pipefail
work=${1:-timing}
mkdir -p "$work/defaults" "$work/resnet152"
(cd "$work/defaults" && /usr/bin/time -f "distill train (all defaults): %e s wall" distill train trainer.progress=off)
(cd "$work/resnet152" && /usr/bin/time -f "distill train teacher=resnet152 student=mobilenet: %e s wall" \
    distill train teacher=resnet152 student=mobilenet trainer.progress=off)
