#!/usr/bin/env bash
# The seeded CIFAR-10 study (issue 8): varcon vs supcon vs cross-entropy at equal budget, and
# the ablations. CPU, this project's commands only.
#
# A resumable queue: a run whose evaluations are all written is skipped, a run interrupted in
# pre-training continues with --resume, an evaluation already written is not redone. After
# each run its small result files (config, metrics, tau2 statistics, eval/*.json, figures; no
# checkpoints) are copied to benchmarks/accuracy/results/, which is what is committed and what
# the report is generated from. Usage, from the repository root:
#
#   tar xzf ../shared/data/cifar10-jpeg.tar.gz -C /tmp/data          # once
#   nohup bash benchmarks/accuracy/run.sh > /tmp/accuracy.log 2>&1 &
#   PHASES="main" SEEDS="0 1 2" bash benchmarks/accuracy/run.sh      # one part only
#
# A dry run of the whole queue in a few minutes (tiny runs elsewhere; checks every command):
#   RUNS=/tmp/dry/runs RESULTS=/tmp/dry/results REPORT=/tmp/dry/report SEEDS=0 \
#     EXTRA="data.per_class=20 optim.epochs=1 optim.warmup_epochs=0 optim.batch_size=32 linear.epochs=1" \
#     FEWSHOT_EPISODES=20 ROBUSTNESS_IMAGES=50 bash benchmarks/accuracy/run.sh
#
# Phases, in queue order: main (3 methods x 3 seeds), epsilon (varcon with a fixed temperature,
# epsilon=0, 2 seeds), batch (varcon, supcon at batch 64 and 512, lr scaled linearly), augment
# (varcon, supcon with autoaugment and randaugment), novel (pre-train on 5 classes, few-shot and
# linear transfer on the other 5).
set -euo pipefail
ROOT="${CIFAR_ROOT:-/tmp/data/cifar10}"
RUNS="${RUNS:-runs/accuracy}"
RESULTS="${RESULTS:-benchmarks/accuracy/results}"
REPORT="${REPORT:-benchmarks/accuracy}"  # report/<phase>/, claims.md and claims.json go here
FEWSHOT_EPISODES="${FEWSHOT_EPISODES:-1000}"
ROBUSTNESS_IMAGES="${ROBUSTNESS_IMAGES:-1000}"
PHASES="${PHASES:-main epsilon batch augment novel}"
SEEDS="${SEEDS:-0 1 2}"

# shellcheck source=../queue_lib.sh
. "$(dirname "$0")/../queue_lib.sh"
require_cifar

# One recipe for every method (the issue's setting). lr 0.2 at batch 256 is the linear scaling
# of SupCon's cross-entropy recipe (0.8 at 1024) and of this project's short study (0.1 at 128);
# no method is tuned separately.
COMMON=(
  data.dataset=imagefolder "data.root=$ROOT" data.per_class=1000 data.num_workers=1
  model.encoder=resnet18 "model.kwargs={width: 16}"
  optim.batch_size=256 optim.epochs=20 optim.warmup_epochs=1 optim.lr=0.2
  optim.weight_decay=1e-4 train.tau2_every=1 train.eval_every=2 train.progress=lines
  train.save_every=0 linear.augment=eval linear.epochs=30 linear.lr=1.0 linear.batch_size=256
  knn.k=[20,200]
)
NOVEL="[cat,dog,horse,ship,truck]"

# pretrain RUN ARGS...: pre-train (and the built-in linear/kNN/cluster evaluation) unless done.
pretrain() {
  local run="$1"; shift
  if [ -f "$run/eval/linear.json" ]; then return 0; fi
  local start=$SECONDS
  if [ -f "$run/checkpoints/last.pt" ]; then
    log "resume $run"
    varcon pretrain --resume "$run"
  else
    log "start $run"
    # shellcheck disable=SC2086  # EXTRA: overrides for a dry run of the queue, split on spaces
    varcon pretrain --config cifar10 --output-dir "$run" train.overwrite=true "${COMMON[@]}" "$@" \
      ${EXTRA:-}
  fi
  log "pretrained $run in $((SECONDS - start)) s (load: $(cut -d' ' -f1-3 /proc/loadavg))"
}

# full_eval RUN: few-shot, robustness and figures (the suite of the evaluation issue).
full_eval() {
  local run="$1"
  [ -f "$run/eval/fewshot.json" ] || varcon fewshot --checkpoint "$run" "fewshot.episodes=$FEWSHOT_EPISODES"
  [ -f "$run/eval/robustness.json" ] || varcon robustness --checkpoint "$run" \
    "robustness.max_images=$ROBUSTNESS_IMAGES"
  figures "$run"
}

for phase in $PHASES; do
  case "$phase" in
    main)
      for seed in $SEEDS; do
        for method in varcon supcon ce; do
          run="$RUNS/$method-s$seed"
          pretrain "$run" "name=$method" "method=$method" "seed=$seed"
          full_eval "$run"
          copy_results "$run"
        done
      done ;;
    epsilon)
      for seed in 0 1; do
        run="$RUNS/varcon-eps0-s$seed"
        pretrain "$run" name=varcon-eps0 method=varcon loss.epsilon=0 "seed=$seed"
        figures "$run"
        copy_results "$run"
      done ;;
    batch)
      for spec in 64:0.05 512:0.4; do
        bs="${spec%%:*}"; lr="${spec##*:}"
        for method in varcon supcon; do
          run="$RUNS/$method-b$bs-s0"
          pretrain "$run" "name=$method-b$bs" "method=$method" seed=0 \
            "optim.batch_size=$bs" "optim.lr=$lr"
          copy_results "$run"
        done
      done ;;
    augment)
      for aug in autoaugment randaugment; do
        for method in varcon supcon; do
          run="$RUNS/$method-$aug-s0"
          pretrain "$run" "name=$method-$aug" "method=$method" seed=0 "data.augment=$aug"
          copy_results "$run"
        done
      done ;;
    novel)
      for method in varcon supcon ce; do
        run="$RUNS/$method-novel-s0"
        pretrain "$run" "name=$method-novel" "method=$method" seed=0 "data.exclude_classes=$NOVEL"
        [ -f "$run/eval/fewshot.json" ] || varcon fewshot --checkpoint "$run" \
          data.exclude_classes=null "fewshot.classes=$NOVEL" "fewshot.episodes=$FEWSHOT_EPISODES"
        ls "$run"/eval/transfer_*.json > /dev/null 2>&1 || varcon transfer --checkpoint "$run" \
          data.exclude_classes=null "data.classes=$NOVEL"
        copy_results "$run"
      done ;;
    *) echo "unknown phase '$phase' (known: main epsilon batch augment novel)" >&2; exit 2 ;;
  esac
done

# report PHASE FIGURES BASELINE OWN... [-- SHARED...]: one report per question, over the runs of
# it that have results, written once one of the phase's OWN runs has (the SHARED main runs alone
# answer nothing); BASELINE: the group the others are compared with, paired by seed ("-": none,
# for single-seed questions). PNG files are linked from the HTML, not inlined: the reports are
# committed.
report() {
  local phase="$1" figures="$2" baseline="$3" dirs=() own=0 shared=0 run
  shift 3
  for run in "$@"; do
    if [ "$run" = "--" ]; then shared=1; continue; fi
    [ -d "$RESULTS/$run" ] || continue
    dirs+=("$RESULTS/$run")
    [ "$shared" = 1 ] || own=1
  done
  [ "$own" = 1 ] || return 0
  local compare=()
  [ "$baseline" = "-" ] || compare=(--baseline "$baseline")
  varcon report "${dirs[@]}" --output "$REPORT/report/$phase" --figures "$figures" \
    --html-images link "${compare[@]}" > /dev/null
}

log "reports"
report main groups supcon {varcon,supcon,ce}-s{0,1,2}
report epsilon curves varcon varcon-eps0-s{0,1} -- varcon-s{0,1}
report batch curves - {varcon,supcon}-{b64,b512}-s0 -- {varcon,supcon}-s0
report augment curves - {varcon,supcon}-{autoaugment,randaugment}-s0 -- {varcon,supcon}-s0
report novel curves - {varcon,supcon,ce}-novel-s0
python benchmarks/accuracy/claims.py "$RESULTS" --json "$REPORT/claims.json" \
  --figure "$REPORT/ablations.png" > "$REPORT/claims.md"
log "queue finished"
