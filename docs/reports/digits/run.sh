#!/usr/bin/env bash
# varcon vs supcon vs ce on scikit-learn's digits, 3 seeds each, the quickstart budget
# (digits config: small_cnn, 40 epochs, batch 256). Resumable: finished runs are skipped.
#   nohup bash docs/reports/digits/run.sh > /tmp/digits.log 2>&1 &
set -euo pipefail
RUNS="${RUNS:-runs/digits-cmp}"
for seed in 0 1 2; do
  for method in varcon supcon ce; do
    run="$RUNS/$method-s$seed"
    if [ -f "$run/eval/robustness.json" ]; then echo "done: $run"; continue; fi
    if [ ! -f "$run/eval/linear.json" ]; then
      if [ -f "$run/checkpoints/last.pt" ]; then
        varcon pretrain --resume "$run"
      else
        varcon pretrain --output-dir "$run" "name=digits-$method" "method=$method" \
          "seed=$seed" train.overwrite=true train.progress=off train.tau2_every=5
      fi
    fi
    varcon fewshot --checkpoint "$run" fewshot.episodes=1000
    varcon robustness --checkpoint "$run"
    varcon figures "$run"
  done
done
varcon report $(ls -d "$RUNS"/*/) --output "$RUNS/report"
