#!/usr/bin/env bash
# The self-supervised CIFAR-10 study (issue 19): simclr vs varcon_ssl at equal budget, the
# ablations of varcon_ssl, and the few-label comparison. CPU, this project's commands only.
#
# A resumable queue (as benchmarks/accuracy/run.sh): a run whose evaluations are written is
# skipped, an interrupted one continues with --resume (bit-exact), and each run's small
# files (config, metrics, tau2, eval/*.json; no checkpoints) are copied to
# benchmarks/self_supervised/results/ as soon as it finishes. Usage, from the repository root:
#
#   tar xzf ../shared/data/cifar10-jpeg.tar.gz -C /tmp/data          # once
#   nohup bash benchmarks/self_supervised/run.sh > /tmp/ssl.log 2>&1 &
#   PHASES="main" SEEDS="0" bash benchmarks/self_supervised/run.sh   # one part only
#
# A dry run of the whole queue, about 4 minutes (tiny runs elsewhere; checks every command;
# the batch must hold K = 300 prototypes over 2 views and fit in 10% of the images):
#   RUNS=/tmp/dry/runs RESULTS=/tmp/dry/results REPORT=/tmp/dry SEEDS=0 \
#     EXTRA="data.per_class=200 optim.epochs=1 optim.warmup_epochs=0 optim.batch_size=160 \
#            linear.epochs=1 train.eval_every=1" SUP_EPOCHS=2 bash benchmarks/self_supervised/run.sh
#
# Phases, in queue order: main (simclr and varcon_ssl, seeds in SEEDS, labels hidden),
# semi (10% of the labels: varcon_ssl using them, supervised varcon on them alone, and the
# main varcon_ssl encoder probed with them; seeds in SEMI_SEEDS), ablate (varcon_ssl:
# instance term only, prototypes only, fixed tau2, K = 10 and 300; seed 0).
set -euo pipefail
ROOT="${CIFAR_ROOT:-/tmp/data/cifar10}"
RUNS="${RUNS:-runs/self_supervised}"
RESULTS="${RESULTS:-benchmarks/self_supervised/results}"
PHASES="${PHASES:-main semi ablate}"
SEEDS="${SEEDS:-0 1 2}"
# The few-label comparison uses seeds 1 and 2: seed 0's label-free encoders were trained in an
# earlier session whose checkpoints are gone (results/ keeps no checkpoints), and the 10% probe
# needs one.
SEMI_SEEDS="${SEMI_SEEDS:-1 2}"
# Supervised varcon on the labelled 10% (1,000 images, 3 full batches an epoch) gets the
# steps of the others (20 epochs x 39 batches): 260 epochs, 13 of warm-up.
SUP_EPOCHS="${SUP_EPOCHS:-260}"
SUP_WARMUP="${SUP_WARMUP:-13}"

# shellcheck source=../queue_lib.sh
. "$(dirname "$0")/../queue_lib.sh"
require_cifar

# One recipe for every method: the supervised study's (benchmarks/accuracy/), kNN k = 200,
# T = 0.1 on the 5,000 val images every 2 epochs and after training, and the linear probe.
# Each method keeps its own published temperature: SimCLR's 0.5 (CIFAR-10), VarCon's
# tau1 = 0.1, eps = 0.02. varcon_ssl: K = 100 prototypes, both terms weighted 1.
COMMON=(
  data.dataset=imagefolder "data.root=$ROOT" data.per_class=1000 data.num_workers=1
  model.encoder=resnet18 "model.kwargs={width: 16}"
  optim.batch_size=256 optim.epochs=20 optim.warmup_epochs=1 optim.lr=0.2
  optim.weight_decay=1e-4 train.tau2_every=2 train.eval_every=2 train.progress=lines
  train.save_every=0 linear.augment=eval linear.epochs=30 linear.lr=1.0 linear.batch_size=256
  knn.k=200 knn.temperature=0.1 cluster.enabled=false
)
SIMCLR=(method=simclr loss.temperature=0.5 data.labels=none)
VARCON_SSL=(method=varcon_ssl loss.temperature=0.1 loss.epsilon=0.02 ssl.num_prototypes=100)

# pretrain RUN ARGS...: pre-train and evaluate (kNN, linear probe) unless done.
pretrain() {
  local run="$1"; shift
  if [ -f "$run/eval/linear.json" ]; then return 0; fi
  if [ ! -d "$run" ] && [ -f "$RESULTS/$(basename "$run")/eval/linear.json" ]; then
    log "done $run (its results are in $RESULTS; a fresh checkout holds no runs/)"
    return 0
  fi
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

# probe_with_fraction RUN SEED: the run's encoder evaluated with 10% of the labels (the images
# the semi-supervised runs of SEED label), into RUN/eval-labeled10.
probe_with_fraction() {
  local run="$1" out="$1/eval-labeled10"
  [ -f "$out/linear.json" ] || varcon linear --checkpoint "$run" --output-dir "$out" \
    data.labeled_fraction=0.1 > /dev/null
  [ -f "$out/knn.json" ] || varcon knn --checkpoint "$run" --output-dir "$out" \
    data.labeled_fraction=0.1 > /dev/null
}

# probe_if_semi_seed RUN SEED: the 10% probe of a label-free encoder, right after its
# pre-training while its checkpoint is here (a later session may not have it).
probe_if_semi_seed() {
  local run="$1" seed="$2"
  case " $SEMI_SEEDS " in *" $seed "*) ;; *) return 0 ;; esac
  if [ -f "$run/checkpoints/last.pt" ] && [ -f "$run/eval/linear.json" ]; then
    probe_with_fraction "$run"
  fi
}

# retrain_for_probe RUN SEED ARGS...: a label-free encoder of a few-label seed whose results
# are committed but whose checkpoint is gone (an earlier session's) is pre-trained again with
# its own command, so that it can be probed with 10% of the labels. Training is seeded, so
# the same command in the same environment gives the same encoder (a run from another
# session's environment need not: simclr seed 1 did not). The retrained run's loss curve and
# evaluations are compared with the committed ones; the probe is kept only if equal. If they
# differ, the differences go to RESULTS/<run>/not_reproduced.txt (committed with the results),
# and later queues do not train it again.
retrain_for_probe() {
  local run="$1" seed="$2" name committed; shift 2
  name="$(basename "$run")"; committed="$RESULTS/$name"
  case " $SEMI_SEEDS " in *" $seed "*) ;; *) return 0 ;; esac
  [ -f "$committed/eval/linear.json" ] && [ ! -f "$committed/eval-labeled10/linear.json" ] \
    || return 0
  if [ -f "$committed/not_reproduced.txt" ]; then
    log "not retrained: $run was trained again once and did not reproduce" \
      "($committed/not_reproduced.txt)"
    return 0
  fi
  if [ ! -f "$run/eval/linear.json" ]; then
    log "retrain $run for its 10% probe (its checkpoint is gone)"
    mkdir -p "$run"  # a run directory here: pretrain trains (or resumes) it, not skips it
    pretrain "$run" "$@"
  fi
  if ! python benchmarks/self_supervised/same_run.py "$committed" "$run" \
      2> "$committed/not_reproduced.txt"; then
    cat "$committed/not_reproduced.txt" >&2
    log "not probed: $run differs from $committed ($committed/not_reproduced.txt)"
    return 0
  fi
  rm -f "$committed/not_reproduced.txt"
  probe_with_fraction "$run"
  mkdir -p "$committed/eval-labeled10"
  cp "$run"/eval-labeled10/*.json "$committed/eval-labeled10/"
  log "probed $run with 10% of the labels into $committed/eval-labeled10"
}

copy_ssl_results() {
  local run="$1"
  [ -d "$run" ] || return 0  # finished in an earlier checkout: results/ has it already
  copy_results "$run"
  if [ -d "$run/eval-labeled10" ]; then
    mkdir -p "$RESULTS/$(basename "$run")/eval-labeled10"
    cp "$run"/eval-labeled10/*.json "$RESULTS/$(basename "$run")/eval-labeled10/"
  fi
}

for phase in $PHASES; do
  case "$phase" in
    main)
      for seed in $SEEDS; do
        run="$RUNS/simclr-s$seed"
        pretrain "$run" name=simclr "seed=$seed" "${SIMCLR[@]}"
        probe_if_semi_seed "$run" "$seed"
        copy_ssl_results "$run"
        run="$RUNS/varcon_ssl-s$seed"
        pretrain "$run" name=varcon_ssl "seed=$seed" "${VARCON_SSL[@]}" data.labels=none
        probe_if_semi_seed "$run" "$seed"
        copy_ssl_results "$run"
      done ;;
    semi)
      for seed in $SEMI_SEEDS; do
        run="$RUNS/semi-varcon_ssl-s$seed"
        pretrain "$run" name=semi-varcon_ssl "seed=$seed" "${VARCON_SSL[@]}" \
          data.labeled_fraction=0.1
        copy_ssl_results "$run"
        run="$RUNS/sup10-varcon-s$seed"
        pretrain "$run" name=sup10-varcon "seed=$seed" method=varcon data.labeled_fraction=0.1 \
          "optim.epochs=$SUP_EPOCHS" "optim.warmup_epochs=$SUP_WARMUP" train.eval_every=26 \
          train.tau2_every=26
        copy_ssl_results "$run"
        # the label-free encoders of this seed, probed with the same 10% of the labels (done in
        # the main phase already when their checkpoints were here)
        for name in varcon_ssl simclr; do
          run="$RUNS/$name-s$seed"
          if [ ! -f "$run/eval-labeled10/linear.json" ]; then
            probe_if_semi_seed "$run" "$seed"
            copy_ssl_results "$run"
          fi
        done
        # ... and, where a checkpoint was gone before its probe, that encoder trained again
        retrain_for_probe "$RUNS/simclr-s$seed" "$seed" name=simclr "seed=$seed" "${SIMCLR[@]}"
        retrain_for_probe "$RUNS/varcon_ssl-s$seed" "$seed" name=varcon_ssl "seed=$seed" \
          "${VARCON_SSL[@]}" data.labels=none
      done ;;
    ablate)
      for spec in "inst:ssl.prototype_weight=0" "proto:ssl.instance_weight=0" \
                  "eps0:loss.epsilon=0" "k10:ssl.num_prototypes=10" \
                  "k300:ssl.num_prototypes=300"; do
        tag="${spec%%:*}"; override="${spec#*:}"
        run="$RUNS/varcon_ssl-$tag-s0"
        pretrain "$run" "name=varcon_ssl-$tag" seed=0 "${VARCON_SSL[@]}" data.labels=none \
          "$override"
        copy_ssl_results "$run"
      done ;;
    *) echo "unknown phase '$phase' (known: main semi ablate)" >&2; exit 2 ;;
  esac
done
log "queue finished"

# the verdicts and the figure, from whatever runs have finished
REPORT="${REPORT:-benchmarks/self_supervised}"
python benchmarks/self_supervised/claims.py "$RESULTS" --json "$REPORT/claims.json" \
  --figure "$REPORT/study.png" > "$REPORT/claims.md"
log "claims written to $REPORT/claims.md"
