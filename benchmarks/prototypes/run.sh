#!/usr/bin/env bash
# Issue 9's study: VarCon with batch centroids (the paper) vs running class prototypes
# (loss.prototypes=ema), with random or class-balanced batches, where the batch is small
# against the number of classes. CPU, this project's commands only; every method gets the same
# data, augmentation, optimiser, schedule and epochs (15, SGD + cosine, 1 warm-up epoch,
# CIFAR ResNet-18 at width 16), 3 seeds; the arms are prototypes batch | ema (momentum 0.9) x
# batches random | class-balanced (4 per class in "small", 2 in "many").
#
#   small:  CIFAR-10 JPEGs, 200 images per class, batch 32 (lr 0.025 = 0.2 x 32/256): 10 classes,
#           so a batch of 32 images usually holds all of them, with 1-6 images each.
#   many:   CIFAR-10 x 4 rotations x 6 channel orders = 240 classes (data.rotations=4
#           data.channel_orders=6, grayscale and horizontal flips off: a flip turns a 90-degree
#           rotation of an image into a 270-degree one of its mirror image), 480 images per
#           original class = 20 per derived class, batch 64 (lr 0.05): at most 64 of the 240
#           classes in a batch.
#
# A resumable queue like benchmarks/accuracy/run.sh: finished runs are skipped, interrupted
# ones resumed; each run's small files are copied to benchmarks/prototypes/results/.
#   nohup bash benchmarks/prototypes/run.sh > /tmp/prototypes.log 2>&1 &
#   SETTINGS=many SEEDS=0 bash benchmarks/prototypes/run.sh
set -euo pipefail
ROOT="${CIFAR_ROOT:-/tmp/data/cifar10}"
RUNS="${RUNS:-runs/prototypes}"
RESULTS="${RESULTS:-benchmarks/prototypes/results}"
SETTINGS="${SETTINGS:-small many}"
SEEDS="${SEEDS:-0 1 2}"
EPOCHS="${EPOCHS:-15}"

# shellcheck source=../queue_lib.sh
. "$(dirname "$0")/../queue_lib.sh"
require_cifar

COMMON=(
  method=varcon data.dataset=imagefolder "data.root=$ROOT" data.num_workers=1
  model.encoder=resnet18 "model.kwargs={width: 16}" "optim.epochs=$EPOCHS"
  optim.warmup_epochs=1 optim.weight_decay=1e-4 train.tau2_every=0 train.progress=lines
  train.save_every=0 linear.augment=eval linear.epochs=30 linear.lr=1.0 linear.batch_size=256
  knn.k=[20,200]
)

run_one() {  # run_one RUN_DIR overrides...
  local run="$1"; shift
  if [ -f "$run/eval/linear.json" ]; then copy_results "$run"; return 0; fi
  local start=$SECONDS
  if [ -f "$run/checkpoints/last.pt" ]; then
    log "resume $run"; varcon pretrain --resume "$run"
  else
    log "start $run"
    varcon pretrain --config cifar10 --output-dir "$run" train.overwrite=true "${COMMON[@]}" "$@"
  fi
  log "done $run in $((SECONDS - start)) s (load: $(cut -d' ' -f1-3 /proc/loadavg))"
  copy_results "$run"
}

# the four arms: prototypes (batch | ema) x batch composition (random | class_balanced, M per class)
ARMS=(batch-random ema-random batch-balanced ema-balanced)
arm_overrides() {  # arm_overrides ARM M
  case "$1" in
    batch-random) echo "loss.prototypes=batch" ;;
    ema-random) echo "loss.prototypes=ema" ;;
    batch-balanced) echo "loss.prototypes=batch data.sampler=class_balanced data.samples_per_class=$2" ;;
    ema-balanced) echo "loss.prototypes=ema data.sampler=class_balanced data.samples_per_class=$2" ;;
  esac
}

# seeds outermost: a queue stopped part-way leaves every setting and arm with as many seeds
for seed in $SEEDS; do
  for setting in $SETTINGS; do
    case "$setting" in
      small) extra=(data.per_class=200 optim.batch_size=32 optim.lr=0.025); m=4 ;;
      many) extra=(data.per_class=480 data.rotations=4 data.channel_orders=6
                   "data.augment_params={grayscale_p: 0, hflip_p: 0}" optim.batch_size=64 optim.lr=0.05); m=2 ;;
      *) echo "unknown setting '$setting' (known: small many)" >&2; exit 2 ;;
    esac
    for arm in "${ARMS[@]}"; do
      read -r -a overrides <<< "$(arm_overrides "$arm" "$m")"
      run_one "$RUNS/$setting-$arm-s$seed" "name=$setting-$arm" "seed=$seed" "${extra[@]}" \
        "${overrides[@]}" < /dev/null
    done
  done
done

log "report"
varcon report $(ls -d "$RESULTS"/*/) --output benchmarks/prototypes/report --figures none
log "queue finished"
