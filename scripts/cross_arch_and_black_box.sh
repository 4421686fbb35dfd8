#!/usr/bin/env bash
# A CNN teacher into a ViT student, and a teacher known only as an ONNX file, on mnist5k (3 seeds).
#   bash scripts/cross_arch_and_black_box.sh [TEACHER_RUN]
# TEACHER_RUN: a finished resnet18 teacher run on mnist5k (default: trains one). EPOCHS (10),
# OUT (outputs/cross) and THREADS (torch's default) come from the environment. Each sweep ends with its table; the runs' test
# accuracies are compared by `distill report` at the end.
set -euo pipefail
out=${OUT:-outputs/cross}
epochs=${EPOCHS:-10}
teacher=${1:-}
if [ -z "$teacher" ]; then
  teacher=$out/teacher
  [ -f "$teacher/summary.json" ] || distill teacher teacher=resnet18 dataset=mnist5k trainer.progress=off hydra.run.dir="$teacher"
fi
common=(dataset=mnist5k "trainer.epochs=$epochs" trainer.progress=off seed=0,1,2 "paths.root=$out")
[ -n "${THREADS:-}" ] && common+=("trainer.threads=$THREADS")
# A small ViT for 2 CPU cores: 7x7 patches (16 tokens), 4 blocks of width 96 (0.3M parameters).
vit=(student=vit_tiny student.kwargs.patch_size=7 student.kwargs.num_layers=4 student.kwargs.hidden_dim=96
     student.kwargs.mlp_dim=192 optim=adamw optim.lr=0.001)
# CNN -> ViT: the ViT alone, with Hinton KD, and with FitNets hints from the CNN's stages to its tokens.
distill train -m "${vit[@]}" distill.alpha=0 "${common[@]}" hydra.sweep.dir="$out/vit_alone"
distill train -m "${vit[@]}" teacher=resnet18 "teacher.checkpoint=$teacher" "${common[@]}" hydra.sweep.dir="$out/vit_kd"
distill train -m "${vit[@]}" teacher=resnet18 "teacher.checkpoint=$teacher" distill=fitnet distill.alpha=0.5 \
  "${common[@]}" hydra.sweep.dir="$out/vit_fitnet_kd"
# Black box: the teacher exported to ONNX and used only through onnxruntime, beside the same
# teacher in PyTorch (same student, seeds and epochs).
distill export "run=$teacher"
distill train -m student=lenet5 teacher=onnx "teacher.path=$teacher/model.onnx" "${common[@]}" hydra.sweep.dir="$out/lenet5_onnx_teacher"
distill train -m student=lenet5 teacher=resnet18 "teacher.checkpoint=$teacher" "${common[@]}" hydra.sweep.dir="$out/lenet5_pytorch_teacher"
for sweep in vit_alone vit_kd vit_fitnet_kd lenet5_onnx_teacher lenet5_pytorch_teacher; do
  echo "== $sweep"; distill report "$out/$sweep" | tail -n 6
done
