#!/usr/bin/env bash
# Short CIFAR-10 comparison of varcon, supcon and ce at equal budget (CPU).
# Resumable queue: a finished run (eval/robustness.json present) is skipped, an interrupted
# one continues with --resume. Usage (from the repository root):
#   tar xzf ../shared/data/cifar10-jpeg.tar.gz -C /tmp/data      # once
#   nohup bash docs/reports/cifar10-short/run.sh > /tmp/cifar10-short.log 2>&1 &
set -euo pipefail
ROOT="${CIFAR_ROOT:-/tmp/data/cifar10}"
RUNS="${RUNS:-runs/cifar10-short}"
SEEDS="${SEEDS:-0}"
COMMON=(
  data.dataset=imagefolder "data.root=$ROOT" data.per_class=300 data.num_workers=1
  model.encoder=resnet18 "model.kwargs={width: 16}"
  optim.batch_size=128 optim.epochs=12 optim.warmup_epochs=1 optim.lr=0.1
  optim.weight_decay=1e-4 train.tau2_every=1 train.progress=lines train.save_every=0
  linear.augment=eval linear.epochs=30 linear.lr=1.0 linear.batch_size=256
  knn.k=[20,200]
)
for seed in $SEEDS; do
  for method in varcon supcon ce; do
    run="$RUNS/$method-s$seed"
    if [ -f "$run/eval/robustness.json" ]; then echo "done: $run"; continue; fi
    if [ ! -f "$run/eval/linear.json" ]; then
      if [ -f "$run/checkpoints/last.pt" ]; then
        varcon pretrain --resume "$run"
      else
        varcon pretrain --config cifar10 --output-dir "$run" "name=$method" "method=$method" \
          "seed=$seed" train.overwrite=true "${COMMON[@]}"
      fi
    fi
    varcon fewshot --checkpoint "$run" fewshot.episodes=1000
    varcon robustness --checkpoint "$run" robustness.max_images=1000
    varcon figures "$run"
  done
done
varcon report $(ls -d "$RUNS"/*/) --output "$RUNS/report"
